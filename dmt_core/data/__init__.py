"""Co-saliency data: benchmark groups, the synthetic benchmark, training and inference.

- :mod:`.io`: decoding images (any mode -> RGB) and masks (-> bool), EXIF orientation.
- :mod:`.groups`: layouts, :class:`Group`, :class:`GroupDataset`, :func:`find_groups`.
- :mod:`.check`: ``dmt data check``; :mod:`.commands`: ``dmt synth`` and ``dmt data``.
- :mod:`.transforms`: ImageNet normalisation (:func:`normalize`, :func:`denormalize`).
- :mod:`.sampling`: :class:`TrainGroups` (DMT's one-group-per-step sampling, augmentation).
- :mod:`.paste`: forward / reverse synthesis (pasting objects between images) for training.
- :mod:`.synthetic`: the procedural co-saliency benchmark (``dmt synth``).
- :mod:`.chunks`: inference chunking (:func:`chunk_indices`), :class:`InferenceGroups`.
"""

from .check import CheckReport, check_dataset
from .chunks import InferenceGroups, chunk_indices, resize_to_original
from .groups import Group, GroupDataset, Problem, detect_layout, find_groups, scan
from .io import load_image, load_mask
from .paste import SynthesisConfig, forward_synthesis, reverse_synthesis, synthesize
from .sampling import TrainGroups, augment_pair, train_sizes
from .synthetic import PRESETS, SynthConfig, categories, load_meta, preset_config, write_benchmark
from .transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize, normalize

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
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
