"""The DMT model, one module per paper component."""

from .config import DMTConfig
from .cot2t import CoT2T
from .ctp2t import ContrastAttention, CtP2TLayer
from .daspp import DASPP
from .decoder import DMTDecoder
from .dmt import DMT, DMTOutput
from .encoder import VGG16Encoder
from .heads import TokenHead
from .r2r import R2R
from .tgfr import TGFR, StageMaps

__all__ = [
    "DMT",
    "DMTConfig",
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
]
