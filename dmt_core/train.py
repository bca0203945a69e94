"""Training: ``dmt train``, its Python API :func:`train`, and the step :func:`train_step`.

One optimisation step = one group per process (at most ``max_num`` images), as DMT
trains; :func:`train_step` is that step (forward with the side outputs, the 12-term
loss, backward, Adam), and :func:`train` a short loop around it. The run directory holds

    config.yaml       the model config            options.json   the training options
    log.jsonl         one JSON line per step (every loss term) and per validation
    last.pt           the newest periodic / interrupt checkpoint (atomic writes)
    final.pt          the end-of-run checkpoint   summary.json   steps, time, metrics

A checkpoint is a dict of tensors and plain types (``model``, ``optimizer``,
``scheduler``, ``scaler``, ``step``, ``config``, ``options``, ``rng``, ``elapsed``), so
it loads with ``weights_only=True``. Ctrl-C or SIGTERM finishes the current step, saves
``last.pt`` and exits; ``--resume`` continues from the newest checkpoint with the same
step, optimiser, schedule and random streams (:mod:`dmt_core.runs`).

Every :class:`TrainOptions` field is a ``dmt train`` flag (``--time-budget`` for
``time_budget``; ``--set KEY=VALUE`` for ``overrides``), generated from the field with
its help text, so each default is written once, here.

Multi-process: ``torchrun --standalone --nproc_per_node=N -m dmt_core train ...`` runs
DistributedDataParallel (gloo on CPU, nccl on GPU); every process draws its own groups
(draw ``step * N + rank`` of one shared seeded stream) and only rank 0 writes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
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
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from .checkpoint import load_checkpoint, save_checkpoint
from .files import lock_directory, remove_stale_temp_files
from .loss import dmt_loss
from .metrics import SODMetrics
from .model import DMT
from .model.config import PRESETS, DMTConfig, field_type_error
from .runs import (
    effective_options,
    load_optimizer_state,
    newest_checkpoint,
    options_record,
    resume_options,
    truncate_log,
    write_options,
)
from .runtime import (
    AMP_MODES,
    DEVICES,
    adam,
    autocast_dtype,
    git_commit,
    retain_freed_memory,
    select_device,
)
from .weights import create_model

#: preset -> default training options (the paper's; the tiny preset learns from scratch)
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {"steps": 80_000, "lr": 1e-4, "backbone_lr_scale": 0.01},
    "tiny": {"steps": 3_000, "lr": 1e-3, "backbone_lr_scale": 1.0},
}


def _opt(default: Any = None, help: str = "", **cli: Any) -> Any:
    """A :class:`TrainOptions` field: its default, its doc (the flag's help) and how the
    command line spells it (``flag``, ``choices``, ``metavar``, ``required``)."""
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"help": help, **cli})
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainOptions:
    """Everything ``dmt train`` takes (model architecture: ``overrides`` of DMTConfig).

    ``steps`` and ``time_budget`` (seconds) both end the run, whichever comes first; the
    learning-rate schedule follows the run's progress, max(step / steps, time / budget):
    linear warm-up from 0.001x over the first ``warmup`` fraction, then x``gamma`` at each
    fraction in ``milestones`` (the paper: 1,000 and 60,000 of 80,000 iterations).
    Each field's help text is its documentation (``dmt train --help`` prints them all).
    """

    train_data: tuple[str, ...] = _opt(
        (),
        "training set folders, any layout with masks (groups of all sets are mixed)",
        required=True,
        metavar="DIR",
    )
    out: str = _opt(
        "runs/train",
        "the run folder (locked while the run lives)",
        required=True,
        metavar="RUN_DIR",
    )
    preset: str = _opt("tiny", "model preset (on --resume: the run's)", choices=PRESETS)
    steps: int | None = _opt(
        None,
        "optimisation steps (default: the preset's, unless --time-budget; on --resume: the run's)",
    )
    time_budget: float | None = _opt(
        None, "stop when this many seconds of training are up", metavar="SECONDS"
    )
    resume: bool = _opt(
        False,
        "continue the newest checkpoint; the architecture (--preset, --set) stays, new "
        "--steps, --time-budget, --lr, ... apply and are recorded in options.json",
    )
    device: str = _opt("auto", "where to train", choices=DEVICES)
    overrides: dict[str, Any] = _opt(
        {},
        "override a DMTConfig field (YAML value; repeat for several)",
        flag="--set",
        metavar="KEY=VALUE",
    )
    val_data: str | None = _opt(
        None, "validation set (default: groups held out of the first training set)", metavar="DIR"
    )
    val_groups: int = _opt(6, "groups held out for validation when there is no --val-data")
    val_every: int = _opt(
        250, "validate every this many steps (0: only at the end)", metavar="STEPS"
    )
    lr: float | None = _opt(
        None, "base learning rate (default: the preset's; on --resume: the run's)"
    )
    backbone_lr_scale: float | None = _opt(
        None,
        "learning-rate factor of the trainable encoder layers (default: the preset's, "
        "0.01 for the paper)",
    )
    warmup: float = _opt(
        1_000 / 80_000, "linear warm-up over this fraction of the run", metavar="FRACTION"
    )
    milestones: tuple[float, ...] = _opt(
        (60_000 / 80_000,),
        "fractions of the run at which the learning rate is multiplied by --gamma",
        metavar="FRACTION",
    )
    gamma: float = _opt(0.1, "learning-rate factor at each milestone")
    max_num: int = _opt(8, "images per group and step")
    grad_clip: float | None = _opt(None, "clip the gradient norm to this value", metavar="NORM")
    group_bn_anneal: float = _opt(
        0.0,
        "per-image models: use group BatchNorm statistics at first, with probability "
        "1 - progress / FRACTION (0: off)",
        metavar="FRACTION",
    )
    group_loss_weight: float = _opt(1.0, "weight of the group-token map's loss terms")
    module_lr_scale: float = _opt(
        1.0, "learning-rate factor of the R2R, CtP2T and CoT2T parameters"
    )
    amp: str = _opt(
        "auto", "mixed precision (auto: on GPUs only)", choices=("auto", "off", "bf16", "fp16")
    )
    compile: bool = _opt(
        False,
        "compile the model with torch.compile (minutes at the first step; on a 2-core CPU "
        "the compiled paper step was slower than eager, see the README)",
    )
    seed: int = _opt(0, "seed of the model init, the group stream and the augmentation")
    workers: int | None = _opt(None, "loader processes (default 0 on CPU, 4 on GPU)")
    synthesis: str = _opt(
        "auto",
        "forward/reverse synthesis (auto: on DUTS-like sets only)",
        choices=("auto", "on", "off"),
    )
    ckpt_every: int = _opt(500, "write last.pt every this many steps", metavar="STEPS")
    log_every: int = _opt(
        10,
        "read the loss back from the device (a host sync) and write log.jsonl every this "
        "many steps; every step still gets its line",
        metavar="STEPS",
    )
    pretrained: bool | None = _opt(
        None,
        "start the encoder from its registered weights (default: the config's "
        "pretrained_backbone, on for both presets)",
    )
    quiet: bool = _opt(False, "no progress bar")
    #: the command line that started the run (recorded in options.json; not a flag)
    command: str = ""

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
        for name in _NUMBER_OPTIONS:
            value = getattr(self, name)
            if value is not None and not _finite_number(value):
                raise ValueError(f"{flag_of(name)}: expected a finite number, got {value!r}")
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
        if self.amp not in AMP_MODES:
            raise ValueError(f"--amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if not _integer(self.log_every) or self.log_every < 1:
            raise ValueError(f"--log-every must be a whole number >= 1, got {self.log_every!r}")
        if self.synthesis not in ("auto", "on", "off"):
            raise ValueError(f"synthesis must be auto, on or off, got {self.synthesis!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


#: numeric options that must be finite (None is allowed)
_NUMBER_OPTIONS = (
    "lr", "time_budget", "backbone_lr_scale", "warmup", "gamma", "grad_clip",
    "group_bn_anneal", "group_loss_weight", "module_lr_scale",
)  # fmt: skip


def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def flag_of(name: str) -> str:
    """The flag of a :class:`TrainOptions` field (``time_budget`` -> ``--time-budget``)."""
    f = _FIELDS[name]
    return f.metadata.get("flag") or "--" + name.replace("_", "-")


_FIELDS = {f.name: f for f in dataclasses.fields(TrainOptions)}


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
    """S-measure and MAE (:mod:`dmt_core.metrics`) at the original sizes of a held-out set."""
    from .data.chunks import InferenceGroups, resize_to_original
    from .data.io import load_mask

    was_training = model.training
    model.eval()
    metrics = SODMetrics(("Sm", "MAE"))
    try:
        for item in InferenceGroups(dataset, input_size=input_size, max_num=25):
            probs = model.predict(item["images"].to(device))
            for pred, mask_path in zip(
                resize_to_original(probs, item["sizes"]), item["mask_paths"], strict=True
            ):
                metrics.step(pred, load_mask(mask_path))
    finally:
        model.train(was_training)
    return metrics.results()


# --------------------------------------------------------------------------- the step
class StepTimer:
    """Where a step's time goes, without a host sync per step.

    ``mark(name)`` closes the phase that ends there: on a GPU with a CUDA event (read
    later, when the log is written), on a CPU with the clock. ``seconds()`` gives
    ``{"forward_s", "backward_s", "optimizer_s"}``.
    """

    PHASES = ("forward", "backward", "optimizer")

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def seconds(self) -> dict[str, float]:
        if len(self.marks) != len(self.PHASES) + 1:
            return {}
        if self.cuda:
            self.marks[-1].synchronize()
            spans = [a.elapsed_time(b) / 1000 for a, b in itertools.pairwise(self.marks)]
        else:
            spans = [b - a for a, b in itertools.pairwise(self.marks)]
        return {f"{p}_s": s for p, s in zip(self.PHASES, spans, strict=True)}


def train_step(
    model: torch.nn.Module,
    batch: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    *,
    amp_dtype: torch.dtype | None = None,
    grad_clip: float | None = None,
    group_loss_weight: float = 1.0,
    timer: StepTimer | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One optimisation step on one group, as DMT trains.

    batch["images"] (N, 3, S, S) and batch["masks"] (N, 1, S, S) go to the model's device;
    the forward runs with the side outputs (``aux=True``) under autocast when
    ``amp_dtype`` is given; :func:`dmt_core.loss.dmt_loss` gives the 12-term loss; then
    backward (through ``scaler`` for fp16), optional gradient clipping, and the step.
    A :class:`StepTimer` records the three phases.

    Returns the loss and its terms, detached, on the device (reading them is the only
    host sync, left to the caller).
    """
    device = next(model.parameters()).device
    images = batch["images"].to(device, non_blocking=True)
    masks = batch["masks"].to(device, non_blocking=True)
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    if timer is not None:
        timer.mark()
    with autocast:
        out = model(images, aux=True)
    loss, terms = dmt_loss(out, masks, group_loss_weight)
    if timer is not None:
        timer.mark()
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        scaler = torch.amp.GradScaler(device.type, enabled=False)
    scaler.scale(loss).backward()
    if timer is not None:
        timer.mark()
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    if timer is not None:
        timer.mark()
    return loss.detach(), {k: v.detach() for k, v in terms.items()}


# --------------------------------------------------------------------------- the run
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


@dataclass
class _Run:
    """What the loop carries: the model and its optimiser state, where it stands, the data."""

    opts: TrainOptions
    cfg: DMTConfig
    device: torch.device
    model: DMT
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: Schedule
    amp_dtype: torch.dtype | None
    rank: int = 0
    world: int = 1
    step: int = 0
    elapsed: float = 0.0
    val_set: Any = None
    held_out: list[str] = field(default_factory=list)
    val_metrics: dict[str, float] = field(default_factory=dict)
    val_step: int = -1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def finished(self) -> bool:
        return self.schedule.progress(self.step, self.elapsed) >= 1.0


def _train_locked(opts: TrainOptions) -> dict[str, Any]:
    """:func:`train` once the run directory is held: set up, loop, finish."""
    rank, local_rank, world = _dist_info()
    device = _setup_process(opts, local_rank, world)
    ckpt, source, cfg, opts, changes = _start_or_resume(opts)
    r = _build(opts, cfg, device, ckpt, source, rank, world)
    if ckpt is not None and r.is_main:
        _report_resume(Path(opts.out), r.step, source, changes)
    r.val_set, loader, r.held_out = _data(opts, cfg, device, r.step, rank, world)
    out = Path(opts.out)
    if r.is_main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.to_yaml(out / "config.yaml")
        write_options(out, opts, changes, r.step if ckpt is not None else None)
        if r.held_out:
            (out / "val_groups.json").write_text(json.dumps(r.held_out, indent=2))
    log = (out / "log.jsonl").open("a") if r.is_main else None
    bar = _progress_bar(opts, r)
    stopped_by: str | None = None
    # the dropout stream: restored exactly in one process, reseeded per rank otherwise
    if ckpt is not None and world == 1:
        torch.set_rng_state(ckpt["rng"]["torch"])
    elif world > 1:
        torch.manual_seed(opts.seed + 7919 * rank + r.step)
    data = iter(loader)
    r.model.train()
    t_start = time.perf_counter() - r.elapsed
    pending: list[dict[str, Any]] = []  # steps whose loss is still on the device
    with _StopFlag() as stop:
        while not r.finished:
            t0 = time.perf_counter()
            batch = next(data)
            data_s = time.perf_counter() - t0
            _set_learning_rate(r)
            timer = StepTimer(r.device)
            loss, terms = train_step(
                r.net, batch, r.optimizer, r.scaler, amp_dtype=r.amp_dtype,
                grad_clip=opts.grad_clip, group_loss_weight=opts.group_loss_weight, timer=timer,
            )  # fmt: skip
            r.step += 1
            r.elapsed = time.perf_counter() - t_start
            if log is not None:
                pending.append(_step_record(r, loss, terms, batch, data_s, timer, t0))
            validate_now = r.val_set is not None and opts.val_every and not r.step % opts.val_every
            save_now = opts.ckpt_every and r.step % opts.ckpt_every == 0
            stopped_by, done = _should_stop(r, stop)
            if log is not None and (len(pending) >= opts.log_every or validate_now or save_now
                                    or stopped_by or done):  # fmt: skip
                _write_log(log, bar, r, pending)
            if r.is_main and validate_now:
                _validate(r, log)
            if r.is_main and save_now:
                _save(r, "last.pt")
            if stopped_by or done:
                break
    if log is not None:
        _write_log(log, bar, r, pending)
    bar.close()
    r.model.set_bn_scope(cfg.bn_scope)
    summary = _finish(r, stopped_by, log) if r.is_main else {}
    if log is not None:
        log.close()
    del data
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    if stopped_by is not None and stop.signal is not None:
        raise KeyboardInterrupt(stopped_by)
    return summary


def _setup_process(opts: TrainOptions, local_rank: int, world: int) -> torch.device:
    """The device of this process; the process group and thread count of a torchrun run."""
    device = select_device(opts.device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        retain_freed_memory()  # large activations stay mapped between steps
        if world > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    return device


def _start_or_resume(
    opts: TrainOptions,
) -> tuple[dict[str, Any] | None, Path | None, DMTConfig, TrainOptions, list[dict[str, Any]]]:
    """A fresh run's config, or the newest checkpoint with the options a resume applies."""
    run = Path(opts.out)
    if not opts.resume:
        if (run / "last.pt").exists() or (run / "final.pt").exists():
            raise ValueError(f"{run} already holds a run; pass --resume or choose another --out")
        try:
            return None, None, DMTConfig.preset(opts.preset, **opts.overrides), opts, []
        except ValueError as e:
            raise ValueError(f"--set / --preset {opts.preset}: {e}") from e
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
    opts, changes = resume_options(opts, ckpt, cfg, options_record(run), source=path)
    return ckpt, path, cfg, opts, changes


def _build(
    opts: TrainOptions,
    cfg: DMTConfig,
    device: torch.device,
    ckpt: dict[str, Any] | None,
    source: Path | None,
    rank: int,
    world: int,
) -> _Run:
    """Model, optimiser, scaler and schedule; restored from ``ckpt`` when resuming."""
    torch.manual_seed(opts.seed)
    pretrained = cfg.pretrained_backbone if opts.pretrained is None else opts.pretrained
    model = create_model(cfg, pretrained=bool(pretrained) and ckpt is None).to(device)
    optimizer = adam(
        model.param_groups(opts.lr, opts.backbone_lr_scale, opts.module_lr_scale),
        betas=(0.9, 0.99),
        eps=1e-8,
    )
    for g in optimizer.param_groups:
        g["initial_lr"] = g["lr"]
    dtype = autocast_dtype(opts.amp, device)
    r = _Run(
        opts=opts, cfg=cfg, device=device, model=model, net=model, optimizer=optimizer,
        scaler=torch.amp.GradScaler(device.type, enabled=dtype is torch.float16),
        schedule=Schedule(opts.steps, opts.time_budget, opts.warmup, opts.milestones, opts.gamma),
        amp_dtype=dtype, rank=rank, world=world,
    )  # fmt: skip
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        load_optimizer_state(optimizer, ckpt["optimizer"], source)
        if ckpt.get("scaler"):
            r.scaler.load_state_dict(ckpt["scaler"])
        r.step, r.elapsed = int(ckpt["step"]), float(ckpt.get("elapsed", 0.0))
    if world > 1:
        r.net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if opts.compile:  # checkpoints keep saving r.model, the module itself
        r.net = torch.compile(r.net)
    return r


def _report_resume(run: Path, step: int, source: Path | None, changes: list[dict]) -> None:
    dropped = truncate_log(run / "log.jsonl", step)
    print(f"resumed from step {step} ({source})", flush=True)
    if dropped:
        print(f"dropped {dropped} log line(s) past step {step} (lost with the stopped run)")
    for c in changes:
        print(f"resume: {c['option']} {c['to']!r} from step {step} (was {c['from']!r})")


def _data(
    opts: TrainOptions, cfg: DMTConfig, device: torch.device, step: int, rank: int, world: int
) -> tuple[Any, DataLoader, list[str]]:
    """The validation set, the training loader (resumed at ``step``) and the held-out names."""
    from .data.groups import GroupDataset
    from .data.paste import SynthesisConfig
    from .data.sampling import TrainGroups

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
    loader = DataLoader(
        dataset,
        batch_size=None,
        sampler=DrawSampler(len(dataset), opts.seed, step, rank, world),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(opts.seed),  # keeps the global RNG untouched
    )
    return val_set, loader, held_out


def _progress_bar(opts: TrainOptions, r: _Run) -> Any:
    """A bar with a total: steps, or seconds when only a time budget ends the run."""
    from tqdm.auto import tqdm

    seconds = opts.steps is None and opts.time_budget is not None
    bar = tqdm(
        total=round(opts.time_budget) if seconds else opts.steps,
        initial=round(r.elapsed) if seconds else r.step,
        disable=not r.is_main or opts.quiet,
        unit="s" if seconds else "step",
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        dynamic_ncols=True,
    )
    bar.dmt_seconds = seconds
    return bar


def _set_learning_rate(r: _Run) -> None:
    """The schedule's rate for this step (and, when annealing, this step's BN scope)."""
    factor = r.schedule.factor(r.step, r.elapsed)
    if r.opts.group_bn_anneal > 0 and r.cfg.bn_scope == "image":
        progress = r.schedule.progress(r.step, r.elapsed)
        r.model.set_bn_scope(_step_bn_scope(r.opts, progress, r.step))
    for g in r.optimizer.param_groups:
        g["lr"] = g["initial_lr"] * factor


def _base_lr(r: _Run) -> float:
    """The learning rate the log reports: the one the decoder's parameters get."""
    groups = r.optimizer.param_groups
    return next((g for g in groups if g.get("name") == "decoder"), groups[-1])["lr"]


def _step_record(
    r: _Run,
    loss: Tensor,
    terms: dict[str, Tensor],
    batch: dict,
    data_s: float,
    timer: StepTimer,
    t0: float,
) -> dict[str, Any]:
    """A step's log line, its loss still a device tensor (read in :func:`_write_log`)."""
    return {
        "step": r.step, "lr": _base_lr(r), "values": torch.stack([loss, *terms.values()]),
        "terms": list(terms), "images": len(batch["images"]), "group": batch["group"],
        "sec": time.perf_counter() - t0, "data_s": data_s, "timer": timer,
        "elapsed": r.elapsed,
    }  # fmt: skip


def _write_log(log: Any, bar: Any, r: _Run, pending: list[dict[str, Any]]) -> None:
    """``log.jsonl`` lines of the pending steps: the loss and its terms, lr, images, group,
    seconds (``sec``: the whole step, data wait included; ``data_s``, ``forward_s``,
    ``backward_s``, ``optimizer_s``: its parts). One host sync for all of them."""
    if not pending:
        return
    values = torch.stack([p["values"] for p in pending]).tolist()
    for p, v in zip(pending, values, strict=True):
        if not math.isfinite(v[0]):
            raise FloatingPointError(
                f"training diverged: the loss is {v[0]} at step {p['step']} (learning "
                f"rate {p['lr']:.3g}); lower --lr or set --grad-clip"
            )
        rec = {"step": p["step"], "lr": p["lr"], "loss": v[0]}
        rec.update(dict(zip(p["terms"], v[1:], strict=True)))
        rec.update({"images": p["images"], "group": p["group"], "sec": p["sec"]})
        rec.update({"data_s": p["data_s"], **p["timer"].seconds(), "elapsed": p["elapsed"]})
        log.write(json.dumps(rec) + "\n")
    log.flush()
    last = pending[-1]
    if getattr(bar, "dmt_seconds", False):  # a time budget: the bar counts seconds
        bar.update(max(0, min(round(last["elapsed"]), bar.total) - bar.n))
    else:
        bar.update(len(pending))
    bar.set_postfix(
        step=last["step"], loss=f"{values[-1][0]:.3f}", img_s=f"{last['images'] / last['sec']:.1f}"
    )
    pending.clear()


def _validate(r: _Run, log: Any) -> None:
    r.model.set_bn_scope(r.cfg.bn_scope)
    r.val_metrics = validate(r.model, r.val_set, r.cfg.input_size, r.device)
    r.val_step = r.step
    _log_val(log, r.step, r.elapsed, r.val_metrics)


def _save(r: _Run, name: str) -> Path:
    """An atomic checkpoint with everything an exact resume needs."""
    return save_checkpoint(
        {
            "format": "dmt_core",
            "model": r.model.state_dict(),
            "optimizer": r.optimizer.state_dict(),
            "scheduler": {**r.schedule.state_dict(), "step": r.step, "elapsed": r.elapsed},
            "scaler": r.scaler.state_dict() if r.scaler.is_enabled() else None,
            "step": r.step,
            "elapsed": r.elapsed,
            "config": r.cfg.to_dict(),
            "options": r.opts.to_dict(),
            "rng": {"torch": torch.get_rng_state()},
        },
        Path(r.opts.out) / name,
    )


def _should_stop(r: _Run, stop: _StopFlag) -> tuple[str | None, bool]:
    """(what signal stopped the run, whether it is done): every process stops at the same
    step, on a signal or the clock of any rank."""
    on_gpu = r.world > 1 and r.device.type == "cuda"
    flags = torch.tensor(
        [float(stop.signal is not None), float(r.finished)], device=r.device if on_gpu else "cpu"
    )
    if r.world > 1:
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    stopped_by = (stop.signal or "a signal to another process") if flags[0] else None
    return stopped_by, bool(flags[1])


def _finish(r: _Run, stopped_by: str | None, log: Any) -> dict[str, Any]:
    """The final validation and checkpoint (or last.pt when stopped), and ``summary.json``."""
    out = Path(r.opts.out)
    if stopped_by is not None:
        path = _save(r, "last.pt")
        print(
            f"stopped by {stopped_by} at step {r.step}; checkpoint saved to {path}; "
            "continue with --resume",
            flush=True,
        )
    else:
        if r.val_set is not None and r.val_step != r.step:
            r.val_metrics = validate(r.model, r.val_set, r.cfg.input_size, r.device)
            _log_val(log, r.step, r.elapsed, r.val_metrics)
        _save(r, "final.pt")
    summary = {
        "steps": r.step,
        "elapsed_s": round(r.elapsed, 1),
        "finished": stopped_by is None,
        "stopped_by": stopped_by,
        "preset": r.opts.preset,
        "config": r.cfg.to_dict(),
        "val": r.val_metrics,
        "val_groups": r.held_out or (r.opts.val_data and "val_data"),
        "option_changes": options_record(out).get("changes", []),
        "images_per_s": _images_per_s(out / "log.jsonl"),
        "commit": git_commit(Path(__file__).resolve().parents[1]),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
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
#: options that take the run's own value on --resume when not given
_RESUME_DEFAULTS = ("preset", "lr")


def add_option_flags(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainOptions` field, typed from its annotation, helped by its
    doc, defaulting to nothing (so the dataclass default, written once, applies)."""
    for f in dataclasses.fields(TrainOptions):
        md = f.metadata
        if "help" not in md:
            continue
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        kw.update({k: md[k] for k in ("choices", "metavar", "required") if k in md})
        default = f.default if f.default is not dataclasses.MISSING else None
        hidden = default is None or default is False or default == () or "required" in md
        shown = "" if hidden else f" (default: {_show(default)})"
        kw["help"] = md["help"] + shown
        typ = str(f.type).replace(" | None", "")
        if f.name == "overrides":
            kw["action"] = "append"
        elif typ == "bool" and f.default is None:
            kw["action"] = argparse.BooleanOptionalAction
        elif typ == "bool":
            kw["action"] = "store_true"
        elif typ.startswith("tuple["):
            kw["nargs"] = "+"
            kw["type"] = float if "float" in typ else str
        else:
            kw["type"] = {"int": int, "float": float, "str": str}[typ]
        p.add_argument(flag_of(f.name), **kw)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(_show(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def options_from_args(args: argparse.Namespace, command: str = "") -> TrainOptions:
    """The :class:`TrainOptions` of a parsed ``dmt train`` command line.

    Flags that were not given keep the dataclass defaults; on ``--resume``, ``--preset``,
    ``--lr`` and the run length (``--steps`` / ``--time-budget``) default to the run's own.
    """
    flags = {n for n, f in _FIELDS.items() if "help" in f.metadata}  # not "command"
    given = {k: v for k, v in vars(args).items() if k in flags}
    given["overrides"] = parse_overrides(given.get("overrides") or [])
    if given.get("resume"):
        run = effective_options(options_record(Path(given["out"])))
        for key in _RESUME_DEFAULTS:
            if key not in given and run.get(key) is not None:
                given[key] = run[key]
        if "steps" not in given and "time_budget" not in given:
            given["steps"], given["time_budget"] = run.get("steps"), run.get("time_budget")
    for key in ("train_data", "milestones"):
        if key in given:
            given[key] = tuple(given[key])
    return TrainOptions(**given, command=command)


def _cmd_train(args: argparse.Namespace) -> int:
    argv = sys.argv[1:]
    command = shlex.join(["dmt", *argv]) if argv[:1] == ["train"] else ""
    try:
        summary = train(options_from_args(args, command))
    except KeyboardInterrupt as e:
        return 143 if str(e) == "SIGTERM" else 130
    if summary:
        print(json.dumps({k: summary[k] for k in ("steps", "elapsed_s", "val", "images_per_s")}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``dmt`` command: one flag per :class:`TrainOptions` field."""
    p = subparsers.add_parser("train", help="train DMT on co-saliency groups (CPU, GPU, torchrun)")
    add_option_flags(p)
    p.set_defaults(func=_cmd_train)
