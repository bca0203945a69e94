"""dmt_core: DMT (CVPR 2023) co-salient object detection.

from dmt_core import load_model
model = load_model("tiny-synthetic-modules")   # or a checkpoint file (dmt_core.weights)
probs = model.predict(images)                  # images: (N, 3, H, W), one group
                                               # -> (N, 1, H, W) co-saliency in [0, 1]
"""

from .convert import convert_official_state_dict
from .model import DMT, DMTConfig, DMTOutput, StageMaps
from .weights import WEIGHTS, create_model, load_model, weights_card

__version__ = "0.1.0"
__all__ = [
    "DMT",
    "DMTConfig",
    "DMTOutput",
    "StageMaps",
    "WEIGHTS",
    "convert_official_state_dict",
    "create_model",
    "load_model",
    "weights_card",
]
