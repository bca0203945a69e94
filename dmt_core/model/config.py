"""Model configuration: one dataclass, two presets, a YAML round trip.

``DMTConfig.paper()`` is the CVPR 2023 architecture (VGG16 widths, hidden size 256);
``DMTConfig.tiny()`` is a CPU preset, a quarter of the VGG widths with BatchNorm and a
hidden size of 32 at 128x128, that trains on a laptop in minutes. Every ablation switch
is on by default.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import yaml

BNInference = Literal["running", "group"]
BNScope = Literal["group", "image"]
FrozenBN = Literal["scope", "running"]
EncoderTrainable = Literal["last", "all", "none"]


@dataclass
class DMTConfig:
    """Everything that shapes a DMT model.

    Architecture:
        encoder_widths: output channels of the five VGG16 blocks (conv1_2 .. conv5_3).
        encoder_bn: a BatchNorm after every encoder conv (VGG16-BN). DMT uses plain
            VGG16 (off); the tiny preset, trained from scratch, needs it on.
        hidden_dim: width of the decoder, the tokens and the token memory (C).
        num_heads: heads of every token attention (CtP2T, CoT2T).
        token_ffn_dim: hidden width of the token feed-forward networks.
        r2r_heads: heads of the region-to-region attention.
        r2r_scales: adaptive average-pool sizes that make the R2R key/value regions.
        r2r_query_side: maps taller than this are max-pooled to this side for R2R queries.
        r2r_init: ``"official"`` or ``"centering"`` (see :class:`~dmt_core.model.r2r.R2R`):
            only matters when training from scratch.
        daspp_dilations: dilations of the dense ASPP branches.
        drop_path: DropPath rate of every R2R block.
        token_dropout: largest per-stage dropout of the token blocks (see ``stage_dropouts``).
        input_size: side of the square training/inference images.

    Ablations (all on reproduces the paper):
        use_r2r: region-to-region correlation after DASPP and in decoder stages 5-2.
        use_contrast: contrast gate in pixel-to-token attention (off: plain attention).
        use_cot2t: group token gathering from / distributing to the co-saliency tokens.
        use_tgfr: prototype refinement of the decoder features by the tokens.
        use_bg_token: the background token, its maps and its prototype (without it the
            contrast gate has nothing to contrast with and is left out as well).

    Inference and training:
        bn_scope: what a BatchNorm's statistics cover in training (and with
            ``bn_inference="group"``): ``"group"``, all images of the group (the
            official; normalisation then also carries information between images), or
            ``"image"``, each image alone (only R2R and CoT2T connect the images).
        bn_inference: ``"running"`` uses BatchNorm running statistics in eval mode;
            ``"group"`` normalises with the group's own statistics (what the official
            test script effectively does, as it never calls ``eval()``), without dropout
            and without touching the running statistics.
        image_norm_groups: with ``bn_scope="image"``, the statistics of each image are
            taken per channel (0, instance statistics) or over G groups of channels
            (G > 0, as ``GroupNorm(G)``; 1 = one mean and variance per image).
        frozen_bn_stats: the BNs of frozen encoder layers use the model's statistics
            (``"scope"``, as every other BN) or always their pretrained running
            statistics (``"running"``).
        encoder_trainable: ``"last"`` trains only conv5_3 (paper), ``"all"`` or ``"none"``.
        pretrained_backbone: whether the paper preset expects ImageNet VGG16 weights.
    """

    encoder_widths: tuple[int, int, int, int, int] = (64, 128, 256, 512, 512)
    encoder_bn: bool = False
    hidden_dim: int = 256
    num_heads: int = 8
    token_ffn_dim: int = 512
    r2r_heads: int = 8
    r2r_scales: tuple[int, ...] = (1, 3, 6)
    r2r_query_side: int = 16
    r2r_init: str = "official"
    daspp_dilations: tuple[int, ...] = (2, 4, 8)
    drop_path: float = 0.1
    token_dropout: float = 0.1
    input_size: int = 256

    use_r2r: bool = True
    use_contrast: bool = True
    use_cot2t: bool = True
    use_tgfr: bool = True
    use_bg_token: bool = True

    bn_scope: BNScope = "group"
    bn_inference: BNInference = "running"
    image_norm_groups: int = 0
    frozen_bn_stats: FrozenBN = "scope"
    encoder_trainable: EncoderTrainable = "last"
    pretrained_backbone: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):  # types first: bool fields take True/False only, and so on
            problem = field_type_error(f.name, getattr(self, f.name))
            if problem:
                raise ValueError(problem)
        self.encoder_widths = tuple(int(w) for w in self.encoder_widths)  # type: ignore[assignment]
        self.r2r_scales = tuple(int(s) for s in self.r2r_scales)
        self.daspp_dilations = tuple(int(d) for d in self.daspp_dilations)
        if len(self.encoder_widths) != 5:
            raise ValueError(f"encoder_widths must have 5 entries, got {self.encoder_widths}")
        for name in ("hidden_dim", "num_heads", "token_ffn_dim", "r2r_heads", "input_size"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        for dim in (self.daspp_dim, self.hidden_dim):
            if dim % self.r2r_heads:
                raise ValueError(
                    f"R2R width {dim} must be divisible by r2r_heads ({self.r2r_heads})"
                )
        if self.input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16, got {self.input_size}")
        if self.bn_inference not in ("running", "group"):
            raise ValueError(
                f"bn_inference must be 'running' or 'group', got {self.bn_inference!r}"
            )
        if self.bn_scope not in ("group", "image"):
            raise ValueError(f"bn_scope must be 'group' or 'image', got {self.bn_scope!r}")
        if self.r2r_init not in ("official", "centering"):
            raise ValueError(f"r2r_init must be 'official' or 'centering', got {self.r2r_init!r}")
        if int(self.image_norm_groups) < 0:
            raise ValueError(f"image_norm_groups must be >= 0, got {self.image_norm_groups}")
        if self.frozen_bn_stats not in ("scope", "running"):
            raise ValueError(
                f"frozen_bn_stats must be 'scope' or 'running', got {self.frozen_bn_stats!r}"
            )
        if self.encoder_trainable not in ("last", "all", "none"):
            raise ValueError(
                f"encoder_trainable must be 'last', 'all' or 'none', got {self.encoder_trainable!r}"
            )
        if not 0.0 <= self.drop_path < 1.0 or not 0.0 <= self.token_dropout < 1.0:
            raise ValueError("drop_path and token_dropout must be in [0, 1)")

    # ----------------------------------------------------------------- derived sizes
    @property
    def daspp_dim(self) -> int:
        """Width of DASPP and of the encoder R2R (the conv5_3 width: 512 in the paper)."""
        return self.encoder_widths[-1]

    @property
    def daspp_branch_dim(self) -> int:
        """Width of one dilated DASPP branch: ceil(C / branches / 32) * 32 (192 for C=512)."""
        return math.ceil(self.daspp_dim / len(self.daspp_dilations) / 32) * 32

    def stage_dropouts(self) -> dict[int, float]:
        """Dropout of the token blocks per decoder stage, as the official code assigns it.

        The official code indexes ``torch.linspace(0, p, 5)`` with ``[-idx]`` for stage
        ``idx + 1``, so stage 1 and stage 6 both get 0 and stage 2 gets the largest rate.
        These are plain floats here (the official keeps 0-dim tensors).
        """
        ramp = [self.token_dropout * i / 4 for i in range(5)]
        return {idx + 1: float(ramp[-idx]) for idx in range(6)}

    # ----------------------------------------------------------------- presets
    @classmethod
    def paper(cls, **overrides: Any) -> DMTConfig:
        """The CVPR 2023 architecture (40.4 M parameters)."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> DMTConfig:
        """A CPU preset (1.7 M parameters) that learns the synthetic benchmark in minutes.

        A quarter of the VGG16 widths with BatchNorm, hidden width 32, 128x128 input, no
        dropout or DropPath (a few minutes of training does not overfit), the encoder
        pretrained on synthetic object categories (the stand-in for ImageNet, see
        :mod:`dmt_core.recipes.pretrain_backbone`) with only conv5_3 fine-tuned as in the paper.

        Where it departs from the official model, and why:

        * ``bn_scope="image"``: BatchNorm statistics per image in training and inference,
          so R2R and CoT2T are the only paths between the images (the official's group
          statistics are a path of their own, which a small model learns to rely on
          instead of the modules); ``image_norm_groups=1``: one mean and variance per
          image, shared by the channels, which keeps what a channel's level says about
          the image (per-channel statistics erase it); the frozen encoder BNs keep their
          pretrained running statistics (``frozen_bn_stats="running"``).
        * ``r2r_init="centering"``: each R2R block starts as "feature minus the mean of
          the group's regions"; from the official near-zero initialisation the modules
          do not learn the group consensus in CPU minutes
          (``benchmarks/modules_experiments.md``).
        """
        base: dict[str, Any] = dict(
            encoder_widths=(16, 32, 64, 128, 128),
            encoder_bn=True,
            hidden_dim=32,
            num_heads=4,
            token_ffn_dim=128,
            r2r_heads=4,
            input_size=128,
            drop_path=0.0,
            token_dropout=0.0,
            encoder_trainable="last",
            pretrained_backbone=True,
            bn_scope="image",
            image_norm_groups=1,
            frozen_bn_stats="running",
            r2r_init="centering",
            bn_inference="group",
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DMTConfig:
        """``DMTConfig.preset("paper")`` or ``DMTConfig.preset("tiny")``."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
        return getattr(cls, name)(**overrides)

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only (lists, not tuples), safe for YAML, JSON and checkpoints."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DMTConfig:
        if not isinstance(data, dict):
            raise ValueError(f"a DMTConfig needs a mapping of fields, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DMTConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**data)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> DMTConfig:
        """Read a config file written by :meth:`to_yaml`."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} does not exist")
        return cls.from_yaml_text(p.read_text(), source=str(p))

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "YAML text") -> DMTConfig:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{source}: not valid YAML ({e})") from e
        if not isinstance(data, dict):
            raise ValueError(
                f"{source}: expected a mapping of DMTConfig fields, got {type(data).__name__}"
            )
        return cls.from_dict(data)

    def with_overrides(self, **overrides: Any) -> DMTConfig:
        return self.from_dict({**self.to_dict(), **overrides})


PRESETS = ("paper", "tiny")


def field_type_error(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be the DMTConfig field ``name`` (None when its type fits).

    The type is the default's: a bool field takes ``True``/``False`` only (YAML
    ``true``/``false``, not the string ``"false"``), an int field an integer, a float
    field a finite number, a tuple field a list of integers, a text field a string.
    """
    default = next((f.default for f in fields(DMTConfig) if f.name == name), None)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            return f"{name} must be true or false, got {value!r}"
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return f"{name} must be an integer, got {value!r}"
    elif isinstance(default, float):
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
        ):
            return f"{name} must be a finite number, got {value!r}"
    elif isinstance(default, tuple):
        if (
            isinstance(value, str | bytes)
            or not isinstance(value, Sequence)
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in value)
        ):
            return f"{name} must be a list of integers, got {value!r}"
    elif isinstance(default, str) and not isinstance(value, str):
        return f"{name} must be a string, got {value!r}"
    return None
