"""The run folder of ``dmt train``: which checkpoint to resume, what options a resumed run
applies and records, and a log that holds each step once.

A run folder holds ``options.json``: the options the run started with, plus a list of
``changes`` (``{"step", "option", "from", "to"}``) that later ``--resume`` calls applied.
:func:`effective_options` replays them; :func:`resume_options` refuses what cannot
change on a resume (the architecture) and lists what does.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .checkpoint import load_checkpoint
from .files import atomic_write
from .model.config import DMTConfig

if TYPE_CHECKING:
    from .train import TrainOptions


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint of ``run_dir`` with the highest step (``final.pt`` or ``last.pt``)."""
    best: tuple[int, Path] | None = None
    for name in ("last.pt", "final.pt"):
        p = Path(run_dir) / name
        if p.is_file():
            step = int(load_checkpoint(p).get("step", -1))
            if best is None or step >= best[0]:
                best = (step, p)
    return None if best is None else best[1]


#: options that say nothing about the training itself (never recorded as changes)
_NOT_RECORDED = ("resume", "command", "quiet", "pretrained", "preset", "overrides", "out")


def options_record(run: Path) -> dict[str, Any]:
    """``RUN/options.json`` (the original options and the ``changes``), ``{}`` if unreadable."""
    try:
        data = json.loads((run / "options.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def effective_options(record: dict[str, Any], before_step: int | None = None) -> dict[str, Any]:
    """The options in force according to an ``options.json`` record: the original ones
    with the recorded ``changes`` applied (only those before ``before_step``, if given)."""
    out = {k: v for k, v in record.items() if k != "changes"}
    for c in record.get("changes", []):
        if before_step is None or c.get("step", 0) < before_step:
            out[c["option"]] = c["to"]
    return out


def resume_options(
    opts: TrainOptions,
    ckpt: dict[str, Any],
    cfg: DMTConfig,
    record: dict[str, Any],
    source: str | os.PathLike = "checkpoint",
) -> tuple[TrainOptions, list[dict[str, Any]]]:
    """The options a resumed run applies, and what changed since the checkpoint's run.

    The architecture comes from the checkpoint: ``opts.preset`` must be the checkpoint
    run's, and every ``opts.overrides`` value must equal the checkpoint config's (else a
    ValueError naming the option). Other options are taken from ``opts``; the returned
    changes (``{"step", "option", "from", "to"}``) list those that differ from the
    options in force at the checkpoint's step.
    """
    step = int(ckpt["step"])
    ck_opts = ckpt.get("options") or {}
    before = effective_options(record, step) if record else dict(ck_opts)
    old_preset = before.get("preset") or ck_opts.get("preset")
    if old_preset and opts.preset != old_preset:
        raise ValueError(
            f"--resume: {source} was trained with --preset {old_preset}, not {opts.preset}; "
            "the architecture cannot change on --resume (drop --preset, or start a new --out)"
        )
    have = cfg.to_dict()
    wrong = [
        f"{k}={v!r} (the checkpoint has {have[k]!r})"
        for k, v in opts.overrides.items()
        if k in have and (list(v) if isinstance(v, tuple) else v) != have[k]
    ]
    if wrong:
        raise ValueError(
            f"--resume: --set {', '.join(wrong[:3])}: {source} was trained with another "
            "architecture, which cannot change on --resume (drop --set, or start a new --out)"
        )
    applied = dataclasses.replace(
        opts, overrides=dict(before.get("overrides", ck_opts.get("overrides", {})))
    )
    now = applied.to_dict()
    changes = [
        {"step": step, "option": k, "from": before[k], "to": now[k]}
        for k in now
        if k not in _NOT_RECORDED and k in before and before[k] != now[k]
    ]
    return applied, changes


def write_options(
    run: Path, opts: TrainOptions, changes: list[dict[str, Any]], resumed_at: int | None
) -> None:
    """``options.json``: a new run's options; on resume the original ones plus ``changes``.

    Changes recorded at or after the resumed step are dropped first (they belong to a
    run that was stopped before its next checkpoint).
    """
    if resumed_at is None:
        record = opts.to_dict()
    else:
        record = options_record(run) or opts.to_dict()  # a lost record restarts from here
        kept = [c for c in record.get("changes", []) if c.get("step", 0) < resumed_at]
        record["changes"] = kept + changes
    with atomic_write(run / "options.json", "w") as f:
        f.write(json.dumps(record, indent=2))


def truncate_log(path: Path, step: int) -> int:
    """Drop the lines of ``log.jsonl`` past ``step`` (and unreadable ones, e.g. a line
    cut by ``kill -9``), so that a resumed run logs each step once; returns how many."""
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if line.endswith("\n") and isinstance(rec, dict) and int(rec.get("step", 0)) <= step:
            kept.append(line)
    if len(kept) != len(lines):
        with atomic_write(path, "w") as f:
            f.writelines(kept)
    return len(lines) - len(kept)


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, state: dict[str, Any], source: Any
) -> None:
    """Load the checkpoint's optimizer state, keeping this run's learning rates.

    The state dict carries each group's ``lr`` and ``initial_lr``; those of this run's
    options (a new ``--lr``, say) replace them, so the new rate is the one applied.
    """
    fresh = [(g.get("name"), g["initial_lr"]) for g in optimizer.param_groups]
    # the fused kernel is this process's choice (runtime.adam), not the checkpoint's
    fused = [g.get("fused") for g in optimizer.param_groups]
    names = [g.get("name") for g in state.get("param_groups", [])]
    if len(names) != len(fresh):
        raise ValueError(
            f"--resume: {source} has {len(names)} parameter group(s) {names}, this run "
            f"{len(fresh)} {[n for n, _ in fresh]}; options that split the parameters "
            "(--module-lr-scale 1 or not) cannot change on --resume"
        )
    optimizer.load_state_dict(state)
    for g, (_, lr), f in zip(optimizer.param_groups, fresh, fused, strict=True):
        g["initial_lr"] = lr
        if "fused" in g:
            g["fused"] = f
        for p in g["params"] if f else ():  # the fused kernel wants its step on the device
            st = optimizer.state.get(p, {})
            if torch.is_tensor(st.get("step")):
                st["step"] = st["step"].to(p.device, torch.float32)
