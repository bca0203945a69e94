"""Official DMT checkpoints -> this implementation.

The official ``CoSODNet.state_dict()`` (737 entries, as in the official repository's checkpoint)
maps key by key onto :class:`dmt_core.DMT` by the rules in :data:`RULES`. Wrappers
(``{"state_dict": ...}``, ``{"model": ...}``) and DataParallel's ``module.`` prefix
are accepted. The result is checked against the model's own layout, so a mismatched
checkpoint fails here with the offending keys and shapes, not later inside
``load_state_dict``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .model.config import DMTConfig

_BN = r"norm\.(weight|bias|running_mean|running_var|num_batches_tracked)"


def _stage(k: str) -> str:
    return f"decoder.stages.{6 - int(k)}"


#: (official key regex, replacement) applied in order; the first match wins.
RULES: list[tuple[str, Any]] = [
    (r"^encoder\.conv\d\.(conv\d_\d)\.(weight|bias)$", r"encoder.\1.\2"),
    # detectron2 Conv2d(norm=BN): conv weight at <name>.weight, BN at <name>.norm.*
    (r"^daspp_block\.adap_layer\.weight$", "daspp.adapt.0.weight"),
    (rf"^daspp_block\.adap_layer\.{_BN}$", r"daspp.adapt.1.\1"),
    (
        r"^daspp_block\.conv_brach_(\d)\.conv([12])\.(.*)$",
        lambda m: (
            f"daspp.branches.{int(m[1]) - 1}."
            f"{'reduce' if m[2] == '1' else 'dilated'}.{_conv_bn_leaf(m[3])}"
        ),
    ),
    (r"^daspp_block\.after_daspp\.(.*)$", lambda m: f"daspp.fuse.{_conv_bn_leaf(m[1])}"),
    (r"^group_att\.(.*)$", r"r2r.\1"),
    (r"^cosod_former\.group_pos\.weight$", "decoder.token_embed.weight"),
    (r"^cosod_former\.com_pos\.weight$", "decoder.group_embed.weight"),
    (r"^cosod_former\.input_proj\.(weight|bias)$", r"decoder.memory_proj.\1"),
    (r"^cosod_former\.norm\.(weight|bias)$", r"decoder.memory_norm.\1"),
    (
        r"^cosod_former\.parse_(\d)\.trans_feat2gr\.cross_attn\.mlp\.(weight|bias)$",
        lambda m: f"{_stage(m[1])}.tokens.ctp2t.cross_attn.gate_{m[2]}",
    ),
    (
        r"^cosod_former\.parse_(\d)\.trans_feat2gr\.(.*)$",
        lambda m: f"{_stage(m[1])}.tokens.ctp2t.{m[2]}",
    ),
    (
        r"^cosod_former\.parse_(\d)\.trans_gr2com\.(.*)$",
        lambda m: f"{_stage(m[1])}.tokens.cot2t.gather.{m[2]}",
    ),
    (
        r"^cosod_former\.parse_(\d)\.trans_com2gr\.(.*)$",
        lambda m: f"{_stage(m[1])}.tokens.cot2t.distribute.{m[2]}",
    ),
    (
        r"^cosod_former\.decoder_(\d)\.(lateral_conv|output_conv)\.(.*)$",
        lambda m: (
            f"{_stage(m[1])}.fpn.{'lateral' if m[2] == 'lateral_conv' else 'conv'}."
            f"{_conv_bn_leaf(m[3])}"
        ),
    ),
    (r"^cosod_former\.group_att_(\d)\.(.*)$", lambda m: f"{_stage(m[1])}.r2r.{m[2]}"),
    (
        r"^cosod_former\.proto_refine_(\d)\.(gr_sal_pred|com_sal_pred_2|com_sal_pred_3)\.(.*)$",
        lambda m: (
            f"{_stage(m[1])}.tgfr."
            + {
                "gr_sal_pred": "token_head",
                "com_sal_pred_2": "co_head_1",
                "com_sal_pred_3": "co_head_2",
            }[m[2]]
            + f".{m[3]}"
        ),
    ),
    (
        r"^cosod_former\.proto_refine_(\d)\.(fuse_co|fuse_bg)\.(.*)$",
        lambda m: f"{_stage(m[1])}.tgfr.{m[2]}.block.{_conv_bn_leaf(m[3])}",
    ),
    (r"^cosod_former\.gr_sal_preds\.(.*)$", r"decoder.final_head.\1"),
]
_COMPILED = [(re.compile(p), r) for p, r in RULES]


def _conv_bn_leaf(leaf: str) -> str:
    """detectron2 ``weight`` / ``norm.X`` -> Conv2dNormActivation ``0.weight`` / ``1.X``."""
    if leaf == "weight":
        return "0.weight"
    if leaf.startswith("norm."):
        return "1." + leaf[len("norm.") :]
    raise KeyError(leaf)


def official_to_dmt_key(key: str) -> str:
    """Translate one official key; ``KeyError`` if no rule knows it."""
    for pattern, repl in _COMPILED:
        m = pattern.match(key)
        if m:
            try:
                return repl(m) if callable(repl) else m.expand(repl)
            except KeyError:
                break
    raise KeyError(key)


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, Tensor]:
    """Accept a raw state dict, ``{"state_dict": sd}`` / ``{"model": sd}``, ``module.`` keys."""
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model", "model_state_dict"):
            if wrapper in obj and isinstance(obj[wrapper], Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{source}: expected a (non-empty) state dict, got {type(obj).__name__}")
    out: dict[str, Tensor] = {}
    for k, v in obj.items():
        if not isinstance(v, Tensor):
            raise ValueError(f"{source}: entry {k!r} is a {type(v).__name__}, not a tensor")
        out[k[len("module.") :] if k.startswith("module.") else k] = v
    return out


def expected_layout(config: DMTConfig | None = None) -> dict[str, torch.Size]:
    """Key -> shape of ``DMT(config).state_dict()``, built on the meta device (no memory)."""
    from .model import DMT

    with torch.device("meta"):
        model = DMT(config or DMTConfig.paper())
    return {k: v.shape for k, v in model.state_dict().items()}


def _mismatch_report(title: str, rows: list[str], source: str, limit: int = 10) -> str:
    more = f"\n  ... and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{source}: {title} ({len(rows)}):\n  " + "\n  ".join(rows[:limit]) + more


def convert_official_state_dict(
    state_dict: Any, config: DMTConfig | None = None, source: str = "official checkpoint"
) -> dict[str, Tensor]:
    """Official ``CoSODNet`` state dict -> ``DMT(config)`` state dict (strict-loadable).

    Raises ``ValueError`` listing the first offending keys and shapes when the checkpoint
    has unknown keys, misses keys, or has tensors of the wrong shape.
    """
    sd = unwrap_state_dict(state_dict, source)
    converted: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        try:
            converted[official_to_dmt_key(key)] = value
        except KeyError:
            unknown.append(f"{key} {tuple(value.shape)}")
    if unknown:
        raise ValueError(
            _mismatch_report("keys that are not in the official DMT layout", unknown, source)
        )
    check_layout(converted, config, source, naming=_official_name_of(sd))
    return converted


def _official_name_of(sd: Mapping[str, Tensor]) -> dict[str, str]:
    return {official_to_dmt_key(k): k for k in sd}


def check_layout(
    state_dict: Mapping[str, Tensor],
    config: DMTConfig | None = None,
    source: str = "checkpoint",
    naming: Mapping[str, str] | None = None,
) -> None:
    """Raise ``ValueError`` unless ``state_dict`` has the keys and shapes of ``DMT(config)``."""
    expected = expected_layout(config)
    naming = naming or {}

    def name(k: str) -> str:
        return f"{naming[k]} (-> {k})" if k in naming else k

    wrong = [
        f"{name(k)}: checkpoint {tuple(v.shape)}, model {tuple(expected[k])}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k])
    ]
    missing = [f"{k} {tuple(s)}" for k, s in expected.items() if k not in state_dict]
    extra = [f"{name(k)} {tuple(v.shape)}" for k, v in state_dict.items() if k not in expected]
    problems = []
    if wrong:
        problems.append(_mismatch_report("tensors with the wrong shape", wrong, source))
    if missing:
        problems.append(
            _mismatch_report("keys the model needs but the checkpoint lacks", missing, source)
        )
    if extra:
        problems.append(_mismatch_report("keys the model does not have", extra, source))
    if problems:
        raise ValueError("\n".join(problems))
