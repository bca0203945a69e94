"""Training: ``dmt train`` and its Python API :func:`train`.

One optimisation step = one group per process (at most ``max_num`` images), as DMT
trains. The run directory holds

    config.yaml       the model config            options.json   the training options
    log.jsonl         one JSON line per step (every loss term) and per validation
    last.pt           the newest periodic / interrupt checkpoint (atomic writes)
    final.pt          the end-of-run checkpoint   summary.json   steps, time, metrics

A checkpoint is a dict of tensors and plain types (``model``, ``optimizer``,
``scheduler``, ``scaler``, ``step``, ``config``, ``options``, ``rng``, ``elapsed``), so
it loads with ``weights_only=True``. Ctrl-C or SIGTERM finishes the current step, saves
``last.pt`` and exits; ``--resume`` continues from the newest checkpoint with the same
step, optimiser, schedule and random streams.

Multi-process: ``torchrun --standalone --nproc_per_node=N -m dmt_core train ...`` runs
DistributedDataParallel (gloo on CPU, nccl on GPU); every process draws its own groups
(draw ``step * N + rank`` of one shared seeded stream) and only rank 0 writes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import numbers
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, Sampler

from .checkpoint import load_checkpoint, save_checkpoint
from .config import PRESETS, DMTConfig, field_type_error
from .files import atomic_write, lock_directory, remove_stale_temp_files
from .loss import dmt_loss
from .model import DMT
from .runtime import DEVICES, amp_dtype, git_commit, select_device

#: preset -> default training options (the paper's; the tiny preset learns from scratch)
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {"steps": 80_000, "lr": 1e-4, "backbone_lr_scale": 0.01},
    "tiny": {"steps": 3_000, "lr": 1e-3, "backbone_lr_scale": 1.0},
}


@dataclass
class TrainOptions:
    """Everything ``dmt train`` takes (model architecture: ``overrides`` of DMTConfig).

    ``steps`` and ``time_budget`` (seconds) both end the run, whichever comes first; the
    learning-rate schedule follows the run's progress, max(step / steps, time / budget):
    linear warm-up from 0.001x over the first ``warmup`` fraction, then x``gamma`` at each
    fraction in ``milestones`` (the paper: 1,000 and 60,000 of 80,000 iterations).

    ``group_bn_anneal`` (a fraction of the run; 0 = off) trains a per-image model
    (``bn_scope="image"``) with group BatchNorm statistics at first: at progress p a step
    uses them with probability ``1 - p / group_bn_anneal``. ``group_loss_weight``
    scales the loss terms of the group-token maps; ``module_lr_scale`` the learning
    rate of the attention modules (R2R, CtP2T, CoT2T).
    """

    train_data: tuple[str, ...] = ()
    out: str = "runs/train"
    preset: str = "tiny"
    steps: int | None = None
    time_budget: float | None = None
    resume: bool = False
    device: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)
    val_data: str | None = None
    val_groups: int = 6
    val_every: int = 250
    lr: float | None = None
    backbone_lr_scale: float | None = None
    warmup: float = 1_000 / 80_000
    milestones: tuple[float, ...] = (60_000 / 80_000,)
    gamma: float = 0.1
    max_num: int = 8
    grad_clip: float | None = None
    group_bn_anneal: float = 0.0
    group_loss_weight: float = 1.0
    module_lr_scale: float = 1.0
    amp: str = "auto"
    seed: int = 0
    workers: int | None = None
    synthesis: str = "auto"
    ckpt_every: int = 500
    pretrained: bool | None = None
    quiet: bool = False
    command: str = ""  # the command line that started the run (recorded in options.json)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {self.preset!r}")
        if not self.train_data:
            raise ValueError("train_data: give at least one training set folder")
        self.train_data = tuple(str(p) for p in self.train_data)
        self.milestones = tuple(float(m) for m in self.milestones)
        defaults = PRESET_DEFAULTS[self.preset]
        if self.steps is None and self.time_budget is None:
            self.steps = defaults["steps"]
        if self.lr is None:
            self.lr = defaults["lr"]
        if self.backbone_lr_scale is None:
            self.backbone_lr_scale = defaults["backbone_lr_scale"]
        for name, flag in _NUMBER_OPTIONS.items():
            value = getattr(self, name)
            if value is not None and not _finite_number(value):
                raise ValueError(f"{flag}: expected a finite number, got {value!r}")
        if not all(math.isfinite(m) for m in self.milestones):
            raise ValueError(f"milestones must be finite fractions, got {self.milestones}")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if self.steps is not None and (isinstance(self.steps, bool) or not _integer(self.steps)):
            raise ValueError(f"--steps must be a whole number, got {self.steps!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise ValueError(f"time_budget must be positive seconds, got {self.time_budget}")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise ValueError(f"amp must be auto, off, bf16 or fp16, got {self.amp!r}")
        if self.synthesis not in ("auto", "on", "off"):
            raise ValueError(f"synthesis must be auto, on or off, got {self.synthesis!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


#: numeric options that must be finite (None is allowed), and how the command line names them
_NUMBER_OPTIONS = {
    "lr": "--lr",
    "time_budget": "--time-budget",
    "backbone_lr_scale": "backbone_lr_scale",
    "warmup": "warmup",
    "gamma": "gamma",
    "grad_clip": "--grad-clip",
    "group_bn_anneal": "--group-bn-anneal",
    "group_loss_weight": "--group-loss-weight",
    "module_lr_scale": "--module-lr-scale",
}


def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# --------------------------------------------------------------------------- schedule
@dataclass
class Schedule:
    """Learning-rate factor as a function of run progress (see :class:`TrainOptions`)."""

    steps: int | None
    time_budget: float | None
    warmup: float
    milestones: tuple[float, ...]
    gamma: float

    def progress(self, step: int, elapsed: float) -> float:
        p = 0.0
        if self.steps:
            p = max(p, step / self.steps)
        if self.time_budget:
            p = max(p, elapsed / self.time_budget)
        return min(p, 1.0)

    def factor(self, step: int, elapsed: float) -> float:
        p = self.progress(step, elapsed)
        warm = 0.001 + 0.999 * p / self.warmup if self.warmup > 0 and p < self.warmup else 1.0
        return warm * self.gamma ** sum(p >= m for m in self.milestones)

    def state_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d


# --------------------------------------------------------------------------- data stream
class DrawSampler(Sampler):
    """An endless, resumable stream of ``(group index, draw id)``.

    Draw ``d`` takes group ``perm_e[d % n]`` with ``e = d // n`` and ``perm_e`` a seeded
    permutation, so every group is equally likely and each epoch sees each group once.
    Process ``rank`` of ``world`` takes draws ``step * world + rank``, steps ``start..``.
    """

    def __init__(self, n: int, seed: int, start_step: int = 0, rank: int = 0, world: int = 1):
        self.n, self.seed, self.start, self.rank, self.world = n, seed, start_step, rank, world

    def draw(self, d: int) -> int:
        epoch, pos = divmod(d, self.n)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return int(torch.randperm(self.n, generator=g)[pos])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step = self.start
        while True:
            d = step * self.world + self.rank
            yield self.draw(d), d
            step += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return sys.maxsize


def _split_validation(
    sets: list[Any], opts: TrainOptions
) -> tuple[list[Any], Any | None, list[str]]:
    """Hold out ``val_groups`` groups of the first set (seeded), unless ``val_data`` is given."""
    from .data.groups import GroupDataset

    if opts.val_data:
        return sets, GroupDataset(Path(opts.val_data), require_masks=True), []
    if opts.val_groups <= 0:
        return sets, None, []
    first = sets[0]
    if len(first) <= opts.val_groups:
        raise ValueError(
            f"{first.root}: {len(first)} groups, too few to hold out {opts.val_groups} for "
            "validation; pass --val-data DIR or --val-groups 0"
        )
    rng = np.random.default_rng(opts.seed)
    held = sorted(rng.choice(len(first), size=opts.val_groups, replace=False).tolist())
    train = _subset(first, [i for i in range(len(first)) if i not in set(held)])
    return [train, *sets[1:]], _subset(first, held), [first[i].name for i in held]


def _subset(ds: Any, indices: Sequence[int]) -> Any:
    import copy

    sub = copy.copy(ds)
    sub.groups = [ds.groups[i] for i in indices]
    return sub


# --------------------------------------------------------------------------- helpers
def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """``--amp``: auto is on for GPUs only (bf16 where supported, else fp16)."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp) or amp_dtype(device)


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


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["use_r2r=false", "hidden_dim=32"]`` -> {"use_r2r": False, "hidden_dim": 32}.

    Values are YAML (``true``/``false``, numbers, ``[1, 2]``) and must have the field's
    type; every error names the key.
    """
    out: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(DMTConfig)}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        key = key.strip()
        if key not in known:
            raise ValueError(f"--set {key}: not a DMTConfig field; known: {sorted(known)}")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {key}={value}: not a valid value ({e})") from e
        problem = field_type_error(key, out[key])
        if problem:
            raise ValueError(f"--set {key}={value}: {problem}")
    return out


# --------------------------------------------------------------------------- resume
#: options that say nothing about the training itself (never recorded as changes)
_NOT_RECORDED = ("resume", "command", "quiet", "pretrained", "preset", "overrides", "out")


def _options_record(run: Path) -> dict[str, Any]:
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


def _write_options(
    run: Path, opts: TrainOptions, changes: list[dict[str, Any]], resumed_at: int | None
) -> None:
    """``options.json``: a new run's options; on resume the original ones plus ``changes``.

    Changes recorded at or after the resumed step are dropped first (they belong to a
    run that was stopped before its next checkpoint).
    """
    if resumed_at is None:
        record = opts.to_dict()
    else:
        record = _options_record(run) or opts.to_dict()  # a lost record restarts from here
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


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any], source: Any) -> None:
    """Load the checkpoint's optimizer state, keeping this run's learning rates.

    The state dict carries each group's ``lr`` and ``initial_lr``; those of this run's
    options (a new ``--lr``, say) replace them, so the new rate is the one applied.
    """
    fresh = [(g.get("name"), g["initial_lr"]) for g in optimizer.param_groups]
    names = [g.get("name") for g in state.get("param_groups", [])]
    if len(names) != len(fresh):
        raise ValueError(
            f"--resume: {source} has {len(names)} parameter group(s) {names}, this run "
            f"{len(fresh)} {[n for n, _ in fresh]}; options that split the parameters "
            "(--module-lr-scale 1 or not) cannot change on --resume"
        )
    optimizer.load_state_dict(state)
    for g, (_, lr) in zip(optimizer.param_groups, fresh, strict=True):
        g["initial_lr"] = lr


class _StopFlag:
    """Set by SIGINT/SIGTERM; the loop saves and stops after the current step."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# --------------------------------------------------------------------------- validation
@torch.no_grad()
def validate(model: DMT, dataset: Any, input_size: int, device: torch.device) -> dict[str, float]:
    """S-measure and MAE (pysodmetrics) at the original sizes of a held-out set."""
    from py_sod_metrics import MAE, Smeasure

    from .data.inference import InferenceGroups, resize_to_original, to_uint8
    from .data.io import load_mask

    was_training = model.training
    model.eval()
    sm, mae = Smeasure(), MAE()
    try:
        for item in InferenceGroups(dataset, input_size=input_size, max_num=25):
            probs = model.predict(item["images"].to(device))
            for pred, mask_path in zip(
                resize_to_original(probs, item["sizes"]), item["mask_paths"], strict=True
            ):
                gt = load_mask(mask_path).astype(np.uint8) * 255
                p = to_uint8(pred)
                sm.step(pred=p, gt=gt)
                mae.step(pred=p, gt=gt)
    finally:
        model.train(was_training)
    return {"Sm": float(sm.get_results()["sm"]), "MAE": float(mae.get_results()["mae"])}


# --------------------------------------------------------------------------- the loop
def train(opts: TrainOptions) -> dict[str, Any]:
    """Run (or resume) a training run; returns the summary written to ``summary.json``.

    The run directory is held for the whole run by an OS lock on ``RUN/.lock``
    (:func:`dmt_core.files.lock_directory`, rank 0): a second run into the same ``out``
    fails at once with :class:`~dmt_core.files.InUseError` naming the holder; a killed
    run leaves no lock behind. Temporary files that a killed run left are removed first.

    ``resume=True`` continues the newest checkpoint. Its architecture cannot change:
    a ``preset`` or an ``overrides`` value that differs from the checkpoint's is refused
    (leave ``overrides`` empty to keep the checkpoint's). Every other option that
    differs (``steps``, ``time_budget``, ``lr``, ...) is applied and recorded in
    ``options.json`` under ``changes`` with the step it took effect; log lines past the
    checkpoint's step (from a run that was killed) are dropped from ``log.jsonl``.
    """
    run = Path(opts.out)
    if _dist_info()[0] != 0:  # rank 0 holds the lock and alone writes
        return _train_locked(opts)
    if run.exists() and not run.is_dir():
        raise NotADirectoryError(f"--out {run}: a file, not a run folder; choose another --out")
    created = not run.exists()
    try:
        with lock_directory(run, "dmt train", opts.command):
            remove_stale_temp_files(run)
            return _train_locked(opts)
    finally:
        if created:
            with contextlib.suppress(OSError):
                run.rmdir()  # only when empty: the run failed before writing anything


def _train_locked(opts: TrainOptions) -> dict[str, Any]:
    """:func:`train` once the run directory is held."""
    from tqdm.auto import tqdm

    from .data.groups import GroupDataset
    from .data.synthesis import SynthesisConfig
    from .data.train import TrainGroups

    rank, local_rank, world = _dist_info()
    distributed = world > 1
    device = select_device(opts.device, local_rank)
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    elif distributed:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    is_main = rank == 0
    run = Path(opts.out)

    # ---- resume state or fresh start
    ckpt: dict[str, Any] | None = None
    changes: list[dict[str, Any]] = []
    if opts.resume:
        path = newest_checkpoint(run)
        if path is None:
            raise FileNotFoundError(f"--resume: no last.pt or final.pt in {run}")
        ckpt = load_checkpoint(path)
        missing = [k for k in ("model", "optimizer", "config", "step") if k not in ckpt]
        if missing:
            raise ValueError(
                f"{path}: not a training checkpoint (no {', '.join(missing)}); --resume "
                "needs the last.pt or final.pt of a dmt train run"
            )
        try:
            cfg = DMTConfig.from_dict(ckpt["config"])
        except ValueError as e:
            raise ValueError(f"{path}: its config is not valid here ({e})") from e
        opts, changes = resume_options(opts, ckpt, cfg, _options_record(run), source=path)
    else:
        if (run / "last.pt").exists() or (run / "final.pt").exists():
            raise ValueError(f"{run} already holds a run; pass --resume or choose another --out")
        try:
            cfg = DMTConfig.preset(opts.preset, **opts.overrides)
        except ValueError as e:
            raise ValueError(f"--set / --preset {opts.preset}: {e}") from e

    torch.manual_seed(opts.seed)
    pretrained = cfg.pretrained_backbone if opts.pretrained is None else opts.pretrained
    model = DMT(cfg, pretrained=bool(pretrained) and ckpt is None).to(device)
    optimizer = torch.optim.Adam(
        model.param_groups(opts.lr, opts.backbone_lr_scale, opts.module_lr_scale),
        betas=(0.9, 0.99),
        eps=1e-8,
    )
    for g in optimizer.param_groups:
        g["initial_lr"] = g["lr"]
    schedule = Schedule(opts.steps, opts.time_budget, opts.warmup, opts.milestones, opts.gamma)
    amp_dtype = _amp_dtype(opts.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16)
    step, elapsed = 0, 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        _load_optimizer(optimizer, ckpt["optimizer"], path)
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        step, elapsed = int(ckpt["step"]), float(ckpt.get("elapsed", 0.0))
        if is_main:
            dropped = truncate_log(run / "log.jsonl", step)
            print(f"resumed from step {step} ({path})", flush=True)
            if dropped:
                print(f"dropped {dropped} log line(s) past step {step} (lost with the stopped run)")
            for c in changes:
                print(f"resume: {c['option']} {c['to']!r} from step {step} (was {c['from']!r})")
    # the learning rate the log reports: the one the decoder's parameters get
    base_group = next(
        (g for g in optimizer.param_groups if g.get("name") == "decoder"),
        optimizer.param_groups[-1],
    )
    net: torch.nn.Module = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    # ---- data
    sets = [GroupDataset(Path(p), require_masks=True) for p in opts.train_data]
    sets, val_set, held_out = _split_validation(sets, opts)
    if opts.synthesis == "off":
        synth_sets: list[int] = []
    elif opts.synthesis == "on":
        synth_sets = list(range(len(sets)))
    else:  # DMT synthesises DUTS-like sets only
        synth_sets = [i for i, s in enumerate(sets) if "duts" in s.name.lower()]
    dataset = TrainGroups(
        sets,
        input_size=cfg.input_size,
        max_num=opts.max_num,
        synthesis=SynthesisConfig() if synth_sets else None,
        synthesis_sets=synth_sets or None,
        seed=opts.seed,
    )
    # on a CPU the loader shares the cores with the model: load in-process by default
    workers = opts.workers if opts.workers is not None else (4 if device.type == "cuda" else 0)
    sampler = DrawSampler(len(dataset), opts.seed, step, rank, world)
    loader = DataLoader(
        dataset,
        batch_size=None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(opts.seed),  # keeps the global RNG untouched
    )

    if is_main:
        run.mkdir(parents=True, exist_ok=True)
        cfg.to_yaml(run / "config.yaml")
        _write_options(run, opts, changes, step if ckpt is not None else None)
        if held_out:
            (run / "val_groups.json").write_text(json.dumps(held_out, indent=2))
    log = (run / "log.jsonl").open("a") if is_main else None

    def checkpoint(name: str) -> Path:
        return save_checkpoint(
            {
                "format": "dmt_core",
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": {**schedule.state_dict(), "step": step, "elapsed": elapsed},
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "step": step,
                "elapsed": elapsed,
                "config": cfg.to_dict(),
                "options": opts.to_dict(),
                "rng": {"torch": torch.get_rng_state()},
            },
            run / name,
        )

    def finished() -> bool:
        return schedule.progress(step, elapsed) >= 1.0

    val_metrics: dict[str, float] = {}
    val_step = -1
    stopped_by: str | None = None
    model.train()
    bar = tqdm(
        total=opts.steps,
        initial=step,
        disable=not is_main or opts.quiet,
        unit="step",
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        dynamic_ncols=True,
    )
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    t_start = time.perf_counter() - elapsed
    data_iter = iter(loader)
    # the dropout stream: restored exactly in one process, reseeded per rank otherwise
    if ckpt is not None and world == 1:
        torch.set_rng_state(ckpt["rng"]["torch"])
    elif world > 1:
        torch.manual_seed(opts.seed + 7919 * rank + step)
    with _StopFlag() as stop:
        while not finished():
            batch = next(data_iter)
            images = batch["images"].to(device, non_blocking=True)
            masks = batch["masks"].to(device, non_blocking=True)
            lr_factor = schedule.factor(step, elapsed)
            if opts.group_bn_anneal > 0 and cfg.bn_scope == "image":
                model.set_bn_scope(_step_bn_scope(opts, schedule.progress(step, elapsed), step))
            for g in optimizer.param_groups:
                g["lr"] = g["initial_lr"] * lr_factor
            t0 = time.perf_counter()
            with autocast:
                out = net(images, aux=True)
            loss, terms = dmt_loss(out, masks, opts.group_loss_weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if opts.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            elapsed = time.perf_counter() - t_start

            if log is not None:
                values = torch.stack([loss.detach(), *terms.values()]).tolist()
                if not math.isfinite(values[0]):
                    raise FloatingPointError(
                        f"training diverged: the loss is {values[0]} at step {step} (learning "
                        f"rate {base_group['lr']:.3g}); lower --lr or set --grad-clip"
                    )
                rec = {"step": step, "lr": base_group["lr"], "loss": values[0]}
                rec.update(dict(zip(terms, values[1:], strict=True)))
                rec.update(
                    {
                        "images": len(images),
                        "group": batch["group"],
                        "sec": time.perf_counter() - t0,
                        "elapsed": elapsed,
                    }
                )
                log.write(json.dumps(rec) + "\n")
                log.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{values[0]:.3f}", img_s=f"{len(images) / rec['sec']:.1f}")
            if is_main and val_set is not None and opts.val_every and step % opts.val_every == 0:
                model.set_bn_scope(cfg.bn_scope)
                val_metrics, val_step = validate(model, val_set, cfg.input_size, device), step
                _log_val(log, step, elapsed, val_metrics)
            if is_main and opts.ckpt_every and step % opts.ckpt_every == 0:
                checkpoint("last.pt")
            # every process stops at the same step: a signal or the clock on any rank
            flags = torch.tensor(
                [float(stop.signal is not None), float(finished())],
                device=device if distributed and device.type == "cuda" else "cpu",
            )
            if distributed:
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            if flags[0]:
                stopped_by = stop.signal or "a signal to another process"
                break
            if flags[1]:
                break
    bar.close()
    model.set_bn_scope(cfg.bn_scope)

    summary: dict[str, Any] = {}
    if is_main:
        if stopped_by is not None:
            path = checkpoint("last.pt")
            print(
                f"stopped by {stopped_by} at step {step}; checkpoint saved to {path}; "
                "continue with --resume",
                flush=True,
            )
        else:
            if val_set is not None and val_step != step:
                val_metrics = validate(model, val_set, cfg.input_size, device)
                _log_val(log, step, elapsed, val_metrics)
            checkpoint("final.pt")
        summary = {
            "steps": step,
            "elapsed_s": round(elapsed, 1),
            "finished": stopped_by is None,
            "stopped_by": stopped_by,
            "preset": opts.preset,
            "config": cfg.to_dict(),
            "val": val_metrics,
            "val_groups": held_out or (opts.val_data and "val_data"),
            "option_changes": _options_record(run).get("changes", []),
            "images_per_s": _images_per_s(run / "log.jsonl"),
            "commit": git_commit(Path(__file__).resolve().parents[1]),
        }
        (run / "summary.json").write_text(json.dumps(summary, indent=2))
    if log is not None:
        log.close()
    del data_iter
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    if stopped_by is not None and stop.signal is not None:
        raise KeyboardInterrupt(stopped_by)
    return summary


def _step_bn_scope(opts: TrainOptions, progress: float, step: int) -> str:
    """``"group"`` with probability 1 - progress / anneal, drawn from the step (resumable)."""
    p_group = max(0.0, 1.0 - progress / opts.group_bn_anneal)
    draw = np.random.default_rng([opts.seed, step, 17]).random()
    return "group" if draw < p_group else "image"


def _log_val(log: Any, step: int, elapsed: float, metrics: dict[str, float]) -> None:
    if log is not None:
        log.write(json.dumps({"step": step, "elapsed": elapsed, "val": metrics}) + "\n")
        log.flush()


def _images_per_s(log_path: Path) -> float | None:
    images = seconds = 0.0
    with log_path.open() as f:
        for line in f:
            rec = json.loads(line)
            if "sec" in rec:
                images += rec["images"]
                seconds += rec["sec"]
    return round(images / seconds, 2) if seconds else None


# --------------------------------------------------------------------------- CLI
def _cmd_train(args: argparse.Namespace) -> int:
    # on --resume, --preset, --steps / --time-budget and --lr default to the run's own
    run = effective_options(_options_record(Path(args.out))) if args.resume else {}
    length_given = args.steps is not None or args.time_budget is not None
    opts = TrainOptions(
        train_data=tuple(args.train_data),
        out=args.out,
        preset=args.preset or run.get("preset") or "tiny",
        steps=args.steps if length_given else run.get("steps"),
        time_budget=args.time_budget if length_given else run.get("time_budget"),
        resume=args.resume,
        device=args.device,
        overrides=parse_overrides(args.set or []),
        val_data=args.val_data,
        val_groups=args.val_groups,
        val_every=args.val_every,
        lr=args.lr if args.lr is not None else run.get("lr"),
        max_num=args.max_num,
        grad_clip=args.grad_clip,
        group_bn_anneal=args.group_bn_anneal,
        group_loss_weight=args.group_loss_weight,
        module_lr_scale=args.module_lr_scale,
        amp=args.amp,
        seed=args.seed,
        workers=args.workers,
        synthesis=args.synthesis,
        ckpt_every=args.ckpt_every,
        pretrained=args.pretrained,
        command=shlex.join(["dmt", *sys.argv[1:]]) if sys.argv[1:2] == ["train"] else "",
    )
    try:
        summary = train(opts)
    except KeyboardInterrupt as e:
        return 143 if str(e) == "SIGTERM" else 130
    if summary:
        print(json.dumps({k: summary[k] for k in ("steps", "elapsed_s", "val", "images_per_s")}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train DMT on co-saliency groups (CPU, GPU, torchrun)")
    p.add_argument(
        "--preset", choices=PRESETS, default=None, help="default: tiny (on --resume: the run's)"
    )
    p.add_argument("--train-data", nargs="+", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    p.add_argument(
        "--steps", type=int, help="optimisation steps (default: the preset's; --resume: the run's)"
    )
    p.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop when time is up")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the newest checkpoint; the architecture (--preset, --set) stays, new "
        "--steps, --time-budget, --lr, ... apply and are recorded in options.json",
    )
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a DMTConfig field")
    p.add_argument("--val-data", metavar="DIR", help="validation set (default: held-out groups)")
    p.add_argument("--val-groups", type=int, default=6, help="groups held out when no --val-data")
    p.add_argument("--val-every", type=int, default=250, metavar="STEPS")
    p.add_argument(
        "--lr", type=float, help="base learning rate (default: the preset's; on --resume the run's)"
    )
    p.add_argument("--max-num", type=int, default=8, help="images per group and step")
    p.add_argument("--grad-clip", type=float, metavar="NORM")
    p.add_argument(
        "--group-bn-anneal",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="per-image models: group BN statistics at first, phased out over this fraction",
    )
    p.add_argument(
        "--group-loss-weight", type=float, default=1.0, help="weight of the group-map loss terms"
    )
    p.add_argument(
        "--module-lr-scale",
        type=float,
        default=1.0,
        help="learning-rate factor of the R2R, CtP2T and CoT2T parameters",
    )
    p.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, help="loader processes (default 0 on CPU, 4 on GPU)")
    p.add_argument("--synthesis", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--ckpt-every", type=int, default=500, metavar="STEPS")
    p.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ImageNet VGG16 encoder (default: yes for paper, no for tiny)",
    )
    p.set_defaults(func=_cmd_train)
