"""Every weight the project knows, in one registry, and the one way to load a model.

    model = load_model("tiny-synthetic-modules")      # a registered name
    model = load_model("runs/train/final.pt")         # a dmt train / convert-official file
    model = create_model(DMTConfig.paper(), pretrained=True)   # ImageNet VGG16 encoder

:data:`WEIGHTS` maps a name to a :class:`Weights` entry, as torchvision's weights enums
and timm's ``pretrained_cfg`` do:

- **encoders** (loaded into ``model.encoder`` by :func:`create_model`):
  ``vgg16-imagenet`` and ``vgg16-bn-imagenet`` through torchvision's weights API
  (downloaded once into ``$TORCH_HOME/hub/checkpoints``; offline, the error says where
  to put the file), and ``tiny-vgg16bn-synthetic``, the tiny preset's encoder pretrained
  on the synthetic benchmark's categories (:mod:`dmt_core.recipes.pretrain_backbone`);
- **models** (whole DMTs, :func:`load_model`): the shipped tiny models, trained on the
  synthetic benchmark, and ``dmt-official``, the authors' released checkpoint once
  ``dmt convert-official`` has written it into the weights folder;
- **user files**: any path to a checkpoint that ``dmt train`` or ``dmt convert-official``
  wrote (or a run folder: its ``final.pt``) goes through the same :func:`load_model`.

Files of shipped and local entries live in the weights folder, ``$DMT_PRETRAINED_DIR``
or ``data/pretrained`` of the repository; each has a JSON card beside it (config, the
commands that reproduce it, the commit, the training time and the metrics).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from .checkpoint import load_checkpoint
from .model import DMT
from .model.config import PRESETS, DMTConfig

ENV_DIR = "DMT_PRETRAINED_DIR"
ENV_VGG16 = "DMT_VGG16_WEIGHTS"
#: where a clone of the repository keeps the shipped files
REPO_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "data" / "pretrained"
PAPER_WIDTHS = (64, 128, 256, 512, 512)
TINY_WIDTHS = (16, 32, 64, 128, 128)


@dataclass(frozen=True)
class Weights:
    """One registered set of weights.

    Attributes:
        name: the registry key (also the file stem of shipped and local entries).
        kind: ``"encoder"`` (a torchvision ``vgg16``/``vgg16_bn`` state dict) or
            ``"model"`` (a whole DMT checkpoint with its config).
        source: ``"torchvision"`` (downloaded through torchvision's weights API),
            ``"shipped"`` (a file in the repository) or ``"local"`` (a file the user
            makes, e.g. with ``dmt convert-official``).
        description: one line for listings and errors.
        widths, batch_norm: the encoder this fits (encoders only).
        make: how a missing local file is made (local entries only).
    """

    name: str
    kind: Literal["encoder", "model"]
    source: Literal["torchvision", "shipped", "local"]
    description: str
    widths: tuple[int, ...] = ()
    batch_norm: bool = False
    make: str = ""

    @property
    def filename(self) -> str:
        """The file's name: torchvision's for its weights, ``NAME.pt`` otherwise."""
        if self.source == "torchvision":
            return "vgg16_bn-6c64b313.pth" if self.batch_norm else "vgg16-397923af.pth"
        return f"{self.name}.pt"


WEIGHTS: dict[str, Weights] = {
    w.name: w
    for w in (
        Weights("vgg16-imagenet", "encoder", "torchvision",
                "torchvision's ImageNet VGG16 (IMAGENET1K_V1), DMT's encoder",
                PAPER_WIDTHS, False),
        Weights("vgg16-bn-imagenet", "encoder", "torchvision",
                "torchvision's ImageNet VGG16-BN (IMAGENET1K_V1)", PAPER_WIDTHS, True),
        Weights("tiny-vgg16bn-synthetic", "encoder", "shipped",
                "the tiny VGG16-BN pretrained on the synthetic benchmark's object categories",
                TINY_WIDTHS, True, "dmt pretrain-backbone --out data/pretrained/"
                "tiny-vgg16bn-synthetic.pt"),
        Weights("tiny-synthetic", "model", "shipped",
                "the tiny preset of the previous release trained on the synthetic co-saliency "
                "benchmark (CPU), with the official group BatchNorm statistics: the most "
                "accurate shipped model, whose group reasoning runs largely through BatchNorm"),
        Weights("tiny-synthetic-modules", "model", "shipped",
                "the tiny preset trained on the synthetic co-saliency benchmark (CPU), with "
                "per-image BatchNorm statistics: R2R and CoT2T are its only paths between the "
                "images (the model notebooks 02-05 and 08 analyse)"),
        Weights("tiny-synthetic-single-image", "model", "shipped",
                "the tiny preset's recipe with R2R and CoT2T off: no path between the images "
                "of a group, the single-image baseline"),
        Weights("dmt-official", "model", "local",
                "the authors' released DMT checkpoint (paper preset), converted",
                make="dmt convert-official OFFICIAL.pth data/pretrained/dmt-official.pt"),
    )
}  # fmt: skip

#: the models that ship in the repository (the guard tests re-score each)
SHIPPED_MODELS: tuple[str, ...] = tuple(
    n for n, w in WEIGHTS.items() if w.kind == "model" and w.source == "shipped"
)


def list_weights(kind: str | None = None) -> list[str]:
    """Registered names, optionally of one ``kind`` (``"encoder"`` or ``"model"``)."""
    return [n for n, w in WEIGHTS.items() if kind is None or w.kind == kind]


def is_present(name: str) -> bool:
    """Whether the file of registered entry ``name`` is on this machine (torchvision's
    in its hub cache, the others in :func:`weights_dir`)."""
    w = _entry(name)
    if w.source == "torchvision":
        return (Path(torch.hub.get_dir()) / "checkpoints" / w.filename).is_file()
    return (weights_dir() / w.filename).is_file()


def present_models() -> list[str]:
    """The registered models whose files are here (shipped ones, and ``dmt-official``
    once ``dmt convert-official`` has written it)."""
    return [n for n in list_weights("model") if is_present(n)]


def weights_dir() -> Path:
    """The folder of shipped and local files (``$DMT_PRETRAINED_DIR`` or the repo's)."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else REPO_WEIGHTS_DIR


def _entry(name: str, kind: str | None = None) -> Weights:
    w = WEIGHTS.get(name)
    if w is None or (kind is not None and w.kind != kind):
        known = ", ".join(list_weights(kind))
        what = f"{kind} weights" if kind else "weights"
        raise ValueError(f"unknown {what} {name!r}; registered: {known}")
    return w


def weights_path(name: str) -> Path:
    """The file of a shipped or local entry; a clear error when it is not there."""
    w = _entry(name)
    if w.source == "torchvision":
        return Path(torch.hub.get_dir()) / "checkpoints" / w.filename
    path = weights_dir() / w.filename
    if path.is_file():
        return path
    if w.source == "local":
        raise FileNotFoundError(f"{name!r}: {path} does not exist; make it with '{w.make}'")
    hint = f", rebuild it with '{w.make}'" if w.make else ""
    raise FileNotFoundError(
        f"{name!r}: {path} does not exist. It ships in the repository's data/pretrained/ "
        f"folder: install from a clone (git clone ...; pip install -e .) or set {ENV_DIR} to "
        f"a folder holding {w.filename} and its card{hint}"
    )


def weights_card(name: str) -> dict[str, Any]:
    """The JSON card beside a shipped or local file (config, command, commit, metrics)."""
    path = weights_path(name).with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"{name!r}: its card {path} does not exist")
    return json.loads(path.read_text())


# ----------------------------------------------------------------- encoders
def _torchvision_state_dict(w: Weights) -> dict[str, torch.Tensor]:
    from torchvision.models import VGG16_BN_Weights, VGG16_Weights

    tv = VGG16_BN_Weights.IMAGENET1K_V1 if w.batch_norm else VGG16_Weights.IMAGENET1K_V1
    try:
        return tv.get_state_dict(progress=True, check_hash=False, weights_only=True)
    except Exception as e:  # noqa: BLE001 - offline machines get a clear instruction
        raise RuntimeError(
            f"Could not download the ImageNet weights from {tv.url} ({e}).\n"
            f"Provide the file {w.filename} by one of:\n"
            f"  * copying it to {weights_path(w.name)} (torchvision's cache),\n"
            f"  * setting {ENV_VGG16}=/path/to/{w.filename},\n"
            f"  * passing pretrained='/path/to/{w.filename}',\n"
            f"or build the model with pretrained=False."
        ) from e


def _state_dict_file(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what} weights file {p} does not exist")
    state = load_checkpoint(p)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{p}: not a state dict of tensors ({what} weights expected)")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def default_encoder(config: DMTConfig) -> str:
    """The registered encoder that fits ``config`` (by widths and BatchNorm)."""
    for n in list_weights("encoder"):
        w = WEIGHTS[n]
        if w.widths == tuple(config.encoder_widths) and w.batch_norm == config.encoder_bn:
            return n
    raise ValueError(
        f"no pretrained encoder for widths {tuple(config.encoder_widths)} (batch_norm="
        f"{config.encoder_bn}): ImageNet weights fit {PAPER_WIDTHS}, the synthetic backbone "
        f"{TINY_WIDTHS} with BatchNorm; pass a weights file or pretrained=False"
    )


def encoder_state_dict(
    config: DMTConfig, weights: bool | str | os.PathLike = True
) -> dict[str, torch.Tensor]:
    """Encoder weights for ``config`` in torchvision's ``vgg16``/``vgg16_bn`` key layout.

    ``weights``: ``True`` (``$DMT_VGG16_WEIGHTS`` if set, else the registered encoder
    that fits the config), a registered encoder name, or a file path.
    """
    if weights is True:
        weights = os.environ.get(ENV_VGG16) or default_encoder(config)
    key = str(weights)
    if key in WEIGHTS:
        w = _entry(key, "encoder")
        if w.source == "torchvision":
            return _torchvision_state_dict(w)  # torchvision's cache first, then the download
        return _state_dict_file(weights_path(key), w.description)
    return _state_dict_file(weights, "encoder")


def create_model(
    config: DMTConfig | None = None,
    pretrained: bool | str | os.PathLike = False,
    channels_last: bool = True,
) -> DMT:
    """A new DMT (train mode) whose encoder starts from ``pretrained`` weights.

    ``pretrained``: ``False`` keeps the random init; ``True`` the registered encoder
    that fits the config (ImageNet VGG16 for the paper, the synthetic backbone for the
    tiny preset); a registered encoder name or a weights file.
    """
    cfg = config or DMTConfig.paper()
    model = DMT(cfg, channels_last=False)
    if pretrained is not False:
        source = "" if pretrained is True else str(pretrained)
        model.encoder.load_torchvision_vgg16(encoder_state_dict(cfg, pretrained), source=source)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


# ----------------------------------------------------------------- whole models
def resolve(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint file of a registered model name, a file, or a run folder (final.pt)."""
    key = str(name_or_path)
    if key in WEIGHTS:
        _entry(key, "model")
        return weights_path(key)
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "final.pt").is_file():
        return path / "final.pt"
    if path.is_file():
        return path
    if path.is_dir():
        raise FileNotFoundError(f"{path}: a folder without final.pt (not a finished dmt train run)")
    raise FileNotFoundError(
        f"checkpoint {key!r}: no such file; registered models: {', '.join(list_weights('model'))}"
    )


def load_model(
    name_or_path: str | os.PathLike | dict[str, Any], device: str | torch.device = "cpu"
) -> DMT:
    """A DMT in eval mode, float32, on ``device``: from a registered model name, a
    checkpoint file (``dmt train``, ``dmt convert-official``), a run folder, or an
    already loaded checkpoint dict. The config is ``model.config``.

    >>> model = load_model("tiny-synthetic-modules")
    >>> probs = model.predict(images)   # images: (N, 3, 128, 128), one group
    """
    if isinstance(name_or_path, dict):
        source, ck = "checkpoint", name_or_path
    else:
        path = resolve(name_or_path)
        source, ck = str(path), load_checkpoint(path)
    if not isinstance(ck, dict) or "model" not in ck or "config" not in ck:
        keys = sorted(ck)[:8] if isinstance(ck, dict) else type(ck).__name__
        raise ValueError(
            f"{source}: not a dmt_core checkpoint (expected a dict with 'model' and 'config', "
            f"got {keys}); convert official weights with 'dmt convert-official IN OUT' first"
        )
    if not isinstance(ck["config"], dict) or not isinstance(ck["model"], dict):
        raise ValueError(f"{source}: 'config' and 'model' must be dicts in a dmt_core checkpoint")
    try:
        config = DMTConfig.from_dict(ck["config"])
    except ValueError as e:
        raise ValueError(f"{source}: its config is not valid here ({e})") from e
    model = DMT(config)
    problems = weight_mismatches(model.state_dict(), ck["model"])
    if problems:
        raise ValueError(
            f"{source}: the weights do not fit the config it holds ({describe_config(config)}):"
            "\n  " + "\n  ".join(problems)
        )
    try:
        model.load_state_dict(ck["model"], strict=True)
    except RuntimeError as e:
        raise ValueError(f"{source}: weights do not fit its config ({str(e)[:300]})") from e
    return model.to(device).eval()


#: how many mismatching keys of each kind a message names
SHOW_KEYS = 3


def weight_mismatches(
    expected: dict[str, torch.Tensor], got: dict[str, Any], show: int = SHOW_KEYS
) -> list[str]:
    """Short lines on how state dict ``got`` differs from ``expected`` ([] when it fits):
    the counts of missing, unexpected and mis-shaped keys and the first ``show`` of each."""

    def first(keys: list[str]) -> str:
        more = f", ... ({len(keys) - show} more)" if len(keys) > show else ""
        return ", ".join(keys[:show]) + more

    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k} {tuple(got[k].shape)} instead of {tuple(v.shape)}"
        for k, v in expected.items()
        if k in got and isinstance(got[k], torch.Tensor) and got[k].shape != v.shape
    ]
    lines = []
    if missing:
        lines.append(f"{len(missing)} missing key(s): {first(missing)}")
    if unexpected:
        lines.append(f"{len(unexpected)} unexpected key(s): {first(unexpected)}")
    if shapes:
        lines.append(f"{len(shapes)} tensor(s) of another shape: {first(shapes)}")
    return lines


def describe_config(config: DMTConfig) -> str:
    """A few words on a config: its preset when it matches one's widths, and its sizes."""
    preset = next(
        (
            name
            for name in PRESETS
            if DMTConfig.preset(name).encoder_widths == config.encoder_widths
            and DMTConfig.preset(name).hidden_dim == config.hidden_dim
        ),
        None,
    )
    what = f"the {preset} preset's widths" if preset else "a custom config"
    return (
        f"{what}: encoder_widths {list(config.encoder_widths)}, hidden_dim "
        f"{config.hidden_dim}, input_size {config.input_size}"
    )


def _cmd_weights(args: Any) -> int:
    for n, w in WEIGHTS.items():
        where = "torchvision" if w.source == "torchvision" else str(weights_dir() / w.filename)
        print(f"{n:28} {w.kind:8} {'present' if is_present(n) else 'missing':8} {where}")
        if args.verbose:
            print(f"{'':28} {w.description}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``weights`` (the registry, with which files are present) to the ``dmt`` command."""
    p = subparsers.add_parser("weights", help="list the registered weights and which are present")
    p.add_argument("-v", "--verbose", action="store_true", help="with their descriptions")
    p.set_defaults(func=_cmd_weights)
