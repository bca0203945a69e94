"""Co-saliency data: benchmark groups, the synthetic benchmark, training and inference.

- :mod:`.io`: decoding images (any mode -> RGB) and masks (-> bool), EXIF orientation.
- :mod:`.groups`: layouts, :class:`Group`, :class:`GroupDataset`, :func:`find_groups`.
- :mod:`.check`: ``dmt data check``.
- :mod:`.train`: :class:`TrainGroups` (DMT's one-group-per-step sampling).
- :mod:`.synthesis`: forward / reverse synthesis for training.
- :mod:`.synthetic`: the procedural benchmark (``dmt synth``).
- :mod:`.inference`: chunking (:func:`chunk_indices`), :class:`InferenceGroups`.
"""

from .check import CheckReport, check_dataset
from .groups import Group, GroupDataset, Problem, detect_layout, find_groups, scan
from .inference import InferenceGroups, chunk_indices, resize_to_original
from .io import load_image, load_mask
from .synthesis import SynthesisConfig, forward_synthesis, reverse_synthesis, synthesize
from .synthetic import PRESETS, SynthConfig, categories, load_meta, preset_config, write_benchmark
from .train import TrainGroups, augment_pair, denormalize, normalize, train_sizes

__all__ = [
    "PRESETS",
    "CheckReport",
    "Group",
    "GroupDataset",
    "InferenceGroups",
    "Problem",
    "SynthConfig",
    "SynthesisConfig",
    "TrainGroups",
    "augment_pair",
    "categories",
    "check_dataset",
    "chunk_indices",
    "denormalize",
    "detect_layout",
    "find_groups",
    "forward_synthesis",
    "load_image",
    "load_mask",
    "load_meta",
    "normalize",
    "preset_config",
    "resize_to_original",
    "reverse_synthesis",
    "scan",
    "synthesize",
    "train_sizes",
    "write_benchmark",
]
