"""``dmt data download NAME --to DIR``: the CoSOD datasets from the community's mirrors.

Each dataset is one archive. The download goes to a cache folder first
(``$DMT_CACHE_DIR`` or ``~/.cache/dmt/downloads``), resumes there when it was cut
(HTTP ``Range``; gdown's ``resume`` for Google Drive), is checked against its recorded
sha256 where one is known (and the sha256 is printed where not, to record), is unpacked
into a temporary folder inside ``DIR`` and moved into place as ``DIR/NAME`` only when it
holds a layout that :mod:`dmt_core.data.groups` reads. A failed or refused download
leaves nothing in ``DIR``; ``DIR/NAME`` that already exists is never touched.

Where each URL comes from is in :data:`DATASETS` (``origin``). Hosts go away and
Google Drive rations downloads: ``--mirror URL`` fetches ``URL/<archive name>`` instead
(an institutional mirror, a local server), and a dataset you already have needs no
download at all (pass its folder to the commands).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class Dataset:
    """One downloadable dataset.

    Attributes:
        archive: the archive's file name (also what ``--mirror URL/archive`` fetches).
        gdrive_id: its Google Drive file id on the default mirror (or ``url``).
        origin: where the link is published.
        sha256: the archive's checksum, where one has been recorded.
    """

    name: str
    archive: str
    origin: str
    gdrive_id: str = ""
    url: str = ""
    sha256: str = ""


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "DUTS_class",
            "DUTS_class.zip",
            "CADC's README (github.com/nnizhang/CADC), 'original DUTS Class', Google Drive",
            gdrive_id="1XCeHbuuhy17Q8q6oT-uIWHDIZyGy7cFk",
        ),
        Dataset(
            "COCO-9k",
            "COCO9213-os.zip",
            "ICNet's README (github.com/blanclist/ICNet), "
            "'COCO9213-os.zip, images with original size, 4.53GB', Google Drive",
            gdrive_id="1fOfSX_CtWizDapB0OeTJxAydL2yDOP5H",
        ),
        # The test sets are published as files in GCoNet+'s Google Drive folder
        # (github.com/ZhengPeng7/GCoNet_plus, "datasets preparation"); their file ids
        # are not listed anywhere, so they need --mirror (or the folder's bundle).
        Dataset(
            "CoCA",
            "CoCA.zip",
            "GCoNet+'s Google Drive folder "
            "(drive.google.com/drive/folders/1jRJKv56QSa3gOp4w_64tVmzNMT_te-Kv)",
        ),
        Dataset("CoSal2015", "CoSal2015.zip", "GCoNet+'s Google Drive folder (as CoCA)"),
        Dataset("CoSOD3k", "CoSOD3k.zip", "GCoNet+'s Google Drive folder (as CoCA)"),
    )
}


class DownloadError(OSError):
    """A host refused, a checksum did not match, or an archive is not a dataset."""


def cache_dir() -> Path:
    return Path(os.environ.get("DMT_CACHE_DIR") or Path.home() / ".cache" / "dmt" / "downloads")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _http_fetch(url: str, part: Path, say: Callable[[str], None]) -> None:
    """``url`` into ``part``, continuing a partial file with an HTTP Range request."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=60)  # noqa: S310 - http(s) only, checked
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is already complete
            return
        hint = {
            404: "not found: the link may be dead; try --mirror URL",
            403: "forbidden: the host refuses (a quota or a login); try later or --mirror",
            429: "too many requests (a quota); try later or --mirror",
        }.get(e.code, e.reason)
        raise DownloadError(f"{url}: HTTP {e.code}, {hint}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(
            f"{url}: cannot connect ({getattr(e, 'reason', e)}); offline? "
            "Download the archive elsewhere and pass --mirror, or copy the "
            "dataset folder here"
        ) from e
    with resp:
        resumed = have and resp.status == 206
        if have and not resumed:
            say("the host does not resume; downloading from the start")
        length = resp.headers.get("Content-Length")
        expected = int(length) + (have if resumed else 0) if length else None
        try:
            with part.open("ab" if resumed else "wb") as f:
                while block := resp.read(CHUNK):
                    f.write(block)
        except (http.client.HTTPException, OSError) as e:
            raise DownloadError(
                f"{url}: the transfer was cut ({e!r}); run the same command again to resume it"
            ) from e
    got = part.stat().st_size
    if expected is not None and got < expected:
        raise DownloadError(
            f"{url}: the transfer was cut at {got:,} of {expected:,} bytes; "
            "run the same command again to resume it"
        )


def _gdrive_fetch(file_id: str, part: Path) -> None:
    try:
        import gdown
    except ImportError as e:  # a dependency; only a broken install lacks it
        raise DownloadError("Google Drive downloads need gdown (pip install gdown)") from e
    try:
        out = gdown.download(id=file_id, output=str(part), quiet=False, resume=True)
    except Exception as e:  # noqa: BLE001 - gdown's errors name quota and permission problems
        raise DownloadError(
            f"Google Drive file {file_id}: {str(e).strip().splitlines()[0][:300]} (Drive "
            "limits downloads of popular files per day; try later, or --mirror URL)"
        ) from e
    if out is None:
        raise DownloadError(f"Google Drive file {file_id}: gdown fetched nothing")


def _unpack(archive: Path, into: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for m in z.namelist():  # refuse paths that climb out of the folder
                if Path(m).is_absolute() or ".." in Path(m).parts:
                    raise DownloadError(f"{archive}: unsafe path {m!r} in the archive")
            z.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            try:
                t.extractall(into, filter="data")  # refuses links and paths out of the folder
            except TypeError:  # Python without extraction filters
                for m in t.getmembers():
                    if (
                        m.issym()
                        or m.islnk()
                        or ".." in Path(m.name).parts
                        or m.name.startswith("/")
                    ):
                        raise DownloadError(f"{archive}: unsafe member {m.name!r}") from None
                t.extractall(into)
    else:
        raise DownloadError(f"{archive}: neither a zip nor a tar archive")


def _dataset_root(folder: Path, name: str) -> Path:
    """The folder inside an unpacked archive that holds a dataset layout."""
    from .groups import detect_layout

    candidates = [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]
    for c in candidates:
        if c.name.startswith((".", "__MACOSX")):
            continue
        try:
            layout = detect_layout(c)
        except (ValueError, OSError):
            continue
        if layout != "plain":
            return c
    raise DownloadError(
        f"the {name} archive holds no dataset layout that dmt reads "
        "(Image/ + GroundTruth/, img/ + gt/, or images/ + gts/)"
    )


def download(
    name: str,
    to: str | os.PathLike,
    mirror: str | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    """Download and install dataset ``name`` as ``to/name``; returns that folder."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; one of {', '.join(DATASETS)}")
    d = DATASETS[name]
    dest_root = Path(to).expanduser()
    dest = dest_root / name
    if dest.exists():
        raise FileExistsError(
            f"{dest} already exists; nothing was downloaded (remove it first "
            "or choose another --to)"
        )
    if mirror:
        url = f"{mirror.rstrip('/')}/{d.archive}"
    elif d.url or d.gdrive_id:
        url = d.url or f"gdrive:{d.gdrive_id}"
    else:
        raise DownloadError(
            f"{name}: no direct download link is published ({d.origin}); get "
            f"{d.archive} there and pass --mirror with its folder's URL"
        )
    if not url.startswith(("http://", "https://", "gdrive:")):
        raise ValueError(f"--mirror must be an http(s) URL, got {mirror!r}")
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    part = cache / f"{d.archive}.part"
    say(f"{name}: {url} (from {d.origin if not mirror else 'the mirror'})")
    if url.startswith("gdrive:"):
        _gdrive_fetch(url.split(":", 1)[1], part)
    else:
        _http_fetch(url, part, say)
    digest = _sha256(part)
    if d.sha256 and digest != d.sha256:
        part.unlink()
        raise DownloadError(
            f"{name}: the archive's sha256 is {digest}, not the recorded "
            f"{d.sha256}; refused and deleted (a damaged or changed file)"
        )
    if not d.sha256:
        say(f"{name}: sha256 {digest} (no recorded checksum to compare with)")
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".dmt-download-{name}-", dir=dest_root))
    try:
        _unpack(part, tmp)
        root = _dataset_root(tmp, name)
        if dest.exists():
            raise FileExistsError(f"{dest} appeared during the download; left as it was")
        os.replace(root, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    part.unlink()
    say(f"{name}: installed in {dest}; check it with 'dmt data check {dest}'")
    return dest
