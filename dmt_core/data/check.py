"""``dmt data check``: decode every file of a dataset and list what is wrong.

Checks: unreadable or truncated files, images without masks (and masks without
images), masks whose size matches neither orientation of their image, empty groups and
stray files. Valid files are not listed. Masks that are not binary (more than 5 % gray
pixels) or come out empty are listed as warnings: they decode, but probably not as
meant (:func:`dmt_core.data.io.read_mask` says how each is read). Every file is decoded
once, so the check runs at decoding speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .groups import Problem, scan, size_mismatch
from .io import load_image, read_mask


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`: counts, the problems and warnings, one per file."""

    root: Path
    layout: str
    groups: int = 0
    images: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        text = f"groups: {self.groups} images: {self.images} problems: {len(self.problems)}"
        return text + (f" warnings: {len(self.warnings)}" if self.warnings else "")

    def lines(self) -> list[str]:
        """One line per problem, then one per warning (``warning: ...``), then the summary."""
        return (
            [str(p) for p in self.problems]
            + [f"warning: {w}" for w in self.warnings]
            + [self.summary()]
        )


def check_dataset(root: str | Path, *, subset: str | None = None) -> CheckReport:
    """Check every group, image and mask under ``root`` (see :mod:`dmt_core.data.groups`).

    ``images`` counts the image files found (matched or not); ``groups`` the group folders
    holding at least one image.
    """
    groups, problems, layout = scan(root, subset=subset)
    report = CheckReport(Path(root), layout, problems=list(problems))
    unmatched = [p for p in problems if p.message.startswith("image without mask")]
    report.images = sum(len(g) for g in groups) + len(unmatched)
    group_names = {g.name for g in groups} | {p.path.parent.name for p in unmatched}
    report.groups = len(group_names)
    for g in groups:
        for i, img_path in enumerate(g.images):
            mask = None
            if g.masks is not None:
                try:
                    reading = read_mask(g.masks[i])
                except (ValueError, OSError) as e:
                    report.problems.append(Problem(g.masks[i], _strip(e, g.masks[i])))
                else:
                    mask = reading.mask
                    report.warnings += [Problem(g.masks[i], w) for w in reading.warnings()]
            try:
                if mask is None:
                    load_image(img_path)
                else:
                    h, w = mask.shape
                    load_image(img_path, expect_size=(w, h))
            except ValueError as e:
                msg = _strip(e, img_path)
                if mask is not None and "does not match" in msg:
                    mask_path = g.masks[i]  # type: ignore[index]
                    h, w = mask.shape
                    msg = _strip(ValueError(size_mismatch(mask_path, img_path, (w, h))), mask_path)
                    report.problems.append(Problem(mask_path, msg))
                else:
                    report.problems.append(Problem(img_path, msg))
            except OSError as e:
                report.problems.append(Problem(img_path, f"unreadable file ({e})"))
    report.problems.sort(key=lambda p: str(p.path))
    with_problems = {p.path for p in report.problems}  # one line per file: problems first
    report.warnings = sorted(
        (w for w in report.warnings if w.path not in with_problems), key=lambda p: str(p.path)
    )
    return report


def _strip(err: Exception, path: Path) -> str:
    """The message of ``err`` without the leading ``"<path>: "`` (the Problem adds it)."""
    msg = str(err)
    prefix = f"{path}: "
    return msg[len(prefix) :] if msg.startswith(prefix) else msg
