"""The DMT model, one module per paper component."""

from .cot2t import CoT2T
from .ctp2t import ContrastAttention, CtP2TLayer
from .daspp import DASPP
from .decoder import DMTDecoder
from .dmt import DMT, IMAGENET_MEAN, IMAGENET_STD, DMTOutput
from .encoder import VGG16Encoder, load_vgg16_imagenet
from .heads import TokenHead
from .r2r import R2R
from .tgfr import TGFR, StageMaps

__all__ = [
    "DMT",
    "DMTOutput",
    "StageMaps",
    "VGG16Encoder",
    "DASPP",
    "R2R",
    "ContrastAttention",
    "CtP2TLayer",
    "CoT2T",
    "TGFR",
    "TokenHead",
    "DMTDecoder",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "load_vgg16_imagenet",
]
