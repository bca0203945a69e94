"""``dmt data download`` against a loopback HTTP server serving archives the test builds."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from dmt_core.cli import main
from dmt_core.data import download as D
from dmt_core.data.synthetic import write_benchmark


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; honours ``Range``; can cut a response short or answer 404/429."""

    cut_after: int | None = None  # bytes of the next full response, then the line drops

    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        path = Path(self.directory) / self.path.lstrip("/")
        if self.path.endswith("quota.zip"):
            self.send_error(429)
            return
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = type(self).cut_after
        if cut is not None and not rng:
            type(self).cut_after = None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(body)


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _Handler(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture()
def archive(tmp_path, server, monkeypatch):
    """A CoCA-layout zip on the server, registered with its checksum."""
    root, _ = server
    data = write_benchmark(tmp_path / "src" / "CoCA", "test", groups=2, seed=0, size=32)
    zpath = root / "CoCA.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for f in sorted(data.rglob("*")):
            if f.is_file():
                z.write(f, Path("CoCA") / f.relative_to(data))
    digest = hashlib.sha256(zpath.read_bytes()).hexdigest()
    entry = dataclasses.replace(D.DATASETS["CoCA"], sha256=digest)
    monkeypatch.setitem(D.DATASETS, "CoCA", entry)
    monkeypatch.setenv("DMT_CACHE_DIR", str(tmp_path / "cache"))
    return zpath


def test_a_good_archive_installs_in_a_layout_data_check_accepts(server, archive, tmp_path, capsys):
    _, url = server
    to = tmp_path / "datasets"
    assert main(["data", "download", "CoCA", "--to", str(to), "--mirror", url]) == 0
    assert "installed" in capsys.readouterr().out
    assert main(["data", "check", str(to / "CoCA")]) == 0
    assert sorted(p.name for p in to.iterdir()) == ["CoCA"]  # nothing else left behind
    assert not list((tmp_path / "cache").iterdir())
    # an existing dataset is never replaced
    assert main(["data", "download", "CoCA", "--to", str(to), "--mirror", url]) == 2
    assert "already exists" in capsys.readouterr().err


def test_a_corrupted_archive_is_refused_by_checksum(server, archive, tmp_path, capsys):
    _, url = server
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    to = tmp_path / "datasets"
    assert main(["data", "download", "CoCA", "--to", str(to), "--mirror", url]) == 2
    assert "sha256" in capsys.readouterr().err
    assert not (to / "CoCA").exists() and not list(to.glob(".dmt-download-*"))


def test_an_interrupted_download_resumes(server, archive, tmp_path, monkeypatch):
    _, url = server
    to = tmp_path / "datasets"
    _Handler.cut_after = archive.stat().st_size // 3
    with pytest.raises(D.DownloadError):  # the cut transfer is incomplete: the zip is unreadable
        D.download("CoCA", to, mirror=url, say=lambda s: None)
    part = tmp_path / "cache" / "CoCA.zip.part"
    assert 0 < part.stat().st_size < archive.stat().st_size and not (to / "CoCA").exists()
    ranges = []
    real = D.urllib.request.urlopen
    monkeypatch.setattr(
        D.urllib.request,
        "urlopen",
        lambda req, **k: (ranges.append(req.get_header("Range")), real(req, **k))[1],
    )
    assert D.download("CoCA", to, mirror=url, say=lambda s: None) == to / "CoCA"
    assert ranges == [f"bytes={archive.stat().st_size // 3}-"]


def test_refusing_hosts_get_a_clear_message(server, tmp_path, monkeypatch, capsys):
    _, url = server
    monkeypatch.setenv("DMT_CACHE_DIR", str(tmp_path / "cache"))
    to = tmp_path / "datasets"
    assert main(["data", "download", "CoSal2015", "--to", str(to), "--mirror", url]) == 2
    assert "HTTP 404, not found" in capsys.readouterr().err
    monkeypatch.setitem(
        D.DATASETS, "CoSOD3k", dataclasses.replace(D.DATASETS["CoSOD3k"], archive="quota.zip")
    )
    assert main(["data", "download", "CoSOD3k", "--to", str(to), "--mirror", url]) == 2
    assert "429" in capsys.readouterr().err
    # no published direct link: says where the archive is and what to do
    assert main(["data", "download", "CoCA", "--to", str(to)]) == 2
    err = capsys.readouterr().err
    assert "GCoNet+" in err and "--mirror" in err
    assert not to.exists() or not list(to.iterdir())


def test_every_dataset_says_where_its_link_comes_from():
    assert set(D.DATASETS) == {"CoCA", "CoSal2015", "CoSOD3k", "DUTS_class", "COCO-9k"}
    for d in D.DATASETS.values():
        assert d.origin and d.archive.endswith(".zip")
    assert D.DATASETS["DUTS_class"].gdrive_id and D.DATASETS["COCO-9k"].gdrive_id
