"""dmt_core: DMT (CVPR 2023) co-salient object detection.

from dmt_core import DMT, DMTConfig
model = DMT(DMTConfig.tiny()).eval()
out = model(images)          # images: (N, 3, H, W), one group
probs = out.co.sigmoid()     # (N, 1, H, W)
"""

from .config import DMTConfig
from .convert import convert_official_state_dict
from .model import DMT, DMTOutput, StageMaps
from .pretrained import load_pretrained, pretrained_card

__version__ = "0.1.0"
__all__ = [
    "DMT",
    "DMTConfig",
    "DMTOutput",
    "StageMaps",
    "convert_official_state_dict",
    "load_pretrained",
    "pretrained_card",
]
