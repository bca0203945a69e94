"""Nothing lost, nothing silently wrong: no command writes over its inputs, bad values are
refused where they enter, resume is honest, and errors are short messages (issue 11)."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import make_dataset
from helpers import REPO, tiny_model
from PIL import Image

from dmt_core import DMTConfig
from dmt_core import predict as P
from dmt_core.checkpoint import load_checkpoint, model_checkpoint, save_checkpoint
from dmt_core.cli import format_error, main
from dmt_core.data.io import image_size_candidates, load_image, max_pixels, set_max_pixels
from dmt_core.data.synthetic import load_meta, write_benchmark, written_by_generator
from dmt_core.evaluate import evaluate
from dmt_core.files import LOCK_NAME, InUseError, lock_directory
from dmt_core.train import TrainOptions, parse_overrides, train

SMALL = {"input_size": 64}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "train"
    write_benchmark(root, "train", groups=4, seed=0, size=64)
    return root


@pytest.fixture
def data(tmp_path) -> Path:
    """A CoCA-layout dataset: Set/Image/<g>/*.jpg + Set/GroundTruth/<g>/*.png, 40x30."""
    return make_dataset(tmp_path / "ds", "image_gt", {"cat": 2, "dog": 2})


def _opts(synth: Path, out: Path, **kw) -> TrainOptions:
    base = dict(
        train_data=(str(synth),), out=str(out), preset="tiny", steps=2, overrides=dict(SMALL),
        val_groups=0, val_every=0, workers=0, max_num=3, ckpt_every=0, quiet=True,
        pretrained=False,
    )  # fmt: skip
    base.update(kw)
    return TrainOptions(**base)


def _log_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _predict(model, data: Path, out: Path, **kw):
    return P.predict_folder(model, data, out, input_size=32, device="cpu", progress=False, **kw)


# ---------------------------------------------------------------- 1. no writing over inputs


def test_predict_refuses_an_out_that_is_in_or_around_the_data(data, tmp_path, capsys):
    before = _tree(data)
    model = tiny_model()
    link = tmp_path / "link"
    link.symlink_to(data / "GroundTruth")
    for out, where in [
        (data / "GroundTruth", "lies inside"),  # would overwrite every mask
        (data, "is"),
        (data.parent, "contains"),
        (link, "lies inside"),  # a symbolic link into the dataset
    ]:
        with pytest.raises(ValueError, match=f"{where} the dataset folder"):
            _predict(model, data, out)
    # a plain folder of photos: --data P --out P
    photos = tmp_path / "photos"
    (photos / "mine").mkdir(parents=True)
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(photos / "mine" / "a.png")
    ckpt = save_checkpoint(model_checkpoint(model, model.config), tmp_path / "m.pt")
    photo_bytes = _tree(photos)
    rc = main(["predict", "--checkpoint", str(ckpt), "--data", str(photos), "--out", str(photos),
               "--input-size", "32", "--no-progress"])  # fmt: skip
    assert rc == 2 and "choose a folder outside the dataset" in capsys.readouterr().err
    assert _tree(photos) == photo_bytes and _tree(data) == before


def test_predict_records_its_model_and_refuses_another_unless_overwrite(data, tmp_path):
    out = tmp_path / "pred"
    a, b = tiny_model(seed=0), tiny_model(seed=1)
    ckpt = save_checkpoint(model_checkpoint(a, a.config), tmp_path / "a.pt")
    _predict(ckpt, data, out)
    record = json.loads((out / P.RECORD_NAME).read_text())
    assert record["checkpoint"] == str(ckpt.resolve())
    assert record["source"]["model_sha256"] == P.weights_sha256(a) != P.weights_sha256(b)
    assert record["groups"] == {"cat": ["cat_0", "cat_1"], "dog": ["dog_0", "dog_1"]}
    _predict(ckpt, data, out, groups=["cat"])  # the same model again: fine
    first = _tree(out)
    with pytest.raises(ValueError, match="predictions of another model.*--overwrite"):
        _predict(b, data, out)
    with pytest.raises(ValueError, match="another model"):  # other settings: another source
        _predict(ckpt, data, out, bn="running")
    assert _tree(out) == first  # nothing written
    _predict(b, data, out, groups=["dog"], overwrite=True)
    record = json.loads((out / P.RECORD_NAME).read_text())
    assert record["source"]["model_sha256"] == P.weights_sha256(b) and record["checkpoint"] is None
    # the other model's predictions went with it: no group left from model a
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "dog/dog_0.png", "dog/dog_1.png",
    ]  # fmt: skip


def test_predict_refuses_a_folder_of_unrecorded_predictions(data, tmp_path):
    out = tmp_path / "pred"
    (out / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(out / "cat" / "cat_0.png")
    with pytest.raises(ValueError, match="does not account for"):
        _predict(tiny_model(), data, out)
    assert not (out / P.RECORD_NAME).exists()
    _predict(tiny_model(), data, out, overwrite=True)  # asked for: written over
    assert np.asarray(Image.open(out / "cat" / "cat_0.png")).any()


def test_evaluate_warns_when_a_folder_mixes_sources(data, tmp_path, capsys):
    out = tmp_path / "pred"
    _predict(tiny_model(), data, out)
    assert evaluate(out, data, progress=False).warnings == []
    # predictions of somewhere else appear beside the recorded ones
    record = json.loads((out / P.RECORD_NAME).read_text())
    record["groups"].pop("dog")
    (out / P.RECORD_NAME).write_text(json.dumps(record))
    ev = evaluate(out, data, progress=False)
    assert len(ev.warnings) == 1 and "2 of 4 predictions were not written" in ev.warnings[0]
    assert "mixes sources" in ev.warnings[0] and ev.to_dict()["warnings"] == ev.warnings
    rc = main(["evaluate", "--pred", str(out), "--data", str(data), "--no-progress"])
    assert rc == 0 and "warning:" in capsys.readouterr().err
    (out / P.RECORD_NAME).unlink()
    assert "no dmt_predict.json" in evaluate(out, data, progress=False).warnings[0]


def test_synth_overwrite_removes_only_a_benchmark_it_wrote(tmp_path, capsys):
    ours = write_benchmark(tmp_path / "s", "train", groups=1)
    assert written_by_generator(ours) and load_meta(ours)["generator"]
    write_benchmark(ours, "train", groups=2, overwrite=True)
    assert len(load_meta(ours)["groups"]) == 2
    # a real dataset in the same layout: never removed, and --overwrite is not suggested
    real = make_dataset(tmp_path / "real", "image_gt", {"cat": 2})
    before = _tree(real)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="did not write") as e:
            write_benchmark(real, "train", groups=1, overwrite=overwrite)
        assert "--overwrite" not in str(e.value) and "overwrite=" not in str(e.value)
    assert main(["synth", str(real), "--groups", "1", "--overwrite"]) == 2
    assert "--overwrite" not in capsys.readouterr().err and _tree(real) == before
    # a benchmark someone added a file to, or a meta.json without the generator's mark
    (next((ours / "Image").iterdir()) / "mine.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="mine.jpg is not in its meta.json"):
        write_benchmark(ours, "train", groups=1, overwrite=True)
    other = tmp_path / "other"
    (other / "Image").mkdir(parents=True)
    (other / "meta.json").write_text(json.dumps({"groups": []}))
    with pytest.raises(ValueError, match="lacks the generator's mark"):
        write_benchmark(other, "train", groups=1, overwrite=True)
    assert (other / "Image").is_dir()


def test_a_second_run_into_a_locked_run_dir_fails_at_once_naming_the_holder(
    synth, tmp_path, capsys
):
    run = tmp_path / "run"
    with lock_directory(run, "dmt train", "dmt train --out run"):
        t0 = time.perf_counter()
        with pytest.raises(InUseError, match=f"process {os.getpid()} on {socket.gethostname()}"):
            train(_opts(synth, run))
        assert time.perf_counter() - t0 < 5
        rc = main(["train", "--train-data", str(synth), "--out", str(run), "--steps", "1",
                   "--set", "input_size=64", "--no-pretrained"])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 2 and "is in use by dmt train" in err and "started" in err
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]
    train(_opts(synth, run))  # free again; the lock file goes with the run
    assert not (run / LOCK_NAME).exists() and (run / "final.pt").is_file()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    folder = tmp_path / "run"
    files_py = REPO / "dmt_core" / "files.py"  # loaded alone: no torch import, fast
    code = (
        "import importlib.util, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('files', {str(files_py)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "with m.lock_directory(sys.argv[1], 'holder'):\n"
        "    print('locked', flush=True); time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(InUseError, match=f"process {proc.pid}") as e, lock_directory(folder):
            pass
        assert e.value.holder["purpose"] == "holder"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert (folder / LOCK_NAME).exists()  # the file stays, the lock does not
    with lock_directory(folder, "next"):
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()


# ---------------------------------------------------------------- 3. honest resume


def test_resume_refuses_architecture_changes(synth, tmp_path, capsys):
    run = tmp_path / "run"
    train(_opts(synth, run, steps=1))
    with pytest.raises(ValueError, match=r"--set input_size=128 \(the checkpoint has 64\)"):
        train(_opts(synth, run, steps=2, resume=True, overrides={"input_size": 128}))
    with pytest.raises(ValueError, match="trained with --preset tiny, not paper"):
        train(_opts(synth, run, steps=2, resume=True, preset="paper"))
    common = ["train", "--train-data", str(synth), "--out", str(run), "--resume", "--steps", "2"]
    assert main([*common, "--set", "use_r2r=false"]) == 2
    assert "cannot change on --resume" in capsys.readouterr().err
    assert load_checkpoint(run / "final.pt")["step"] == 1  # nothing ran


def test_resume_applies_and_records_steps_and_lr(synth, tmp_path):
    run = tmp_path / "run"
    train(_opts(synth, run, steps=2))
    original = json.loads((run / "options.json").read_text())
    summary = train(_opts(synth, run, steps=3, lr=5e-4, resume=True))
    record = json.loads((run / "options.json").read_text())
    assert {k: v for k, v in record.items() if k != "changes"} == original  # the original kept
    assert record["changes"] == [
        {"step": 2, "option": "steps", "from": 2, "to": 3},
        {"step": 2, "option": "lr", "from": 1e-3, "to": 5e-4},
    ]
    assert summary["option_changes"] == record["changes"]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and log[-1]["lr"] == pytest.approx(5e-4)
    ck = load_checkpoint(run / "final.pt")
    assert ck["options"]["lr"] == 5e-4
    assert {g["name"]: g["initial_lr"] for g in ck["optimizer"]["param_groups"]}["decoder"] == 5e-4
    # the command line's --resume keeps the run's --steps and --lr when not given again
    rc = main(["train", "--train-data", str(synth), "--out", str(run), "--resume",
               "--set", "input_size=64", "--val-groups", "0", "--workers", "0", "--max-num", "3",
               "--steps", "4", "--no-pretrained"])  # fmt: skip
    assert rc == 0
    changes = json.loads((run / "options.json").read_text())["changes"]
    # the CLI's own defaults differ from the first run's options: recorded too
    assert {c["option"] for c in changes if c["step"] == 3} == {"steps", "val_every", "ckpt_every"}
    assert load_checkpoint(run / "final.pt")["options"]["lr"] == 5e-4


def test_resume_after_a_crash_logs_each_step_once_and_cleans_temp_files(synth, tmp_path):
    run = tmp_path / "run"
    train(_opts(synth, run, steps=3, ckpt_every=2))
    # as if killed at step 3: last.pt of step 2, a log line cut short, a half-written file
    (run / "final.pt").unlink()
    with (run / "log.jsonl").open("a") as f:
        f.write('{"step": 4, "lo')
    (run / ".last.pt.k1ll3d.tmp").write_bytes(b"partial")
    assert len((run / "log.jsonl").read_text().splitlines()) == 4
    train(_opts(synth, run, steps=4, ckpt_every=2, resume=True))
    assert _log_steps(run) == [1, 2, 3, 4]
    assert not list(run.glob(".*.tmp")) and not (run / LOCK_NAME).exists()


def test_kill_9_then_resume(synth, tmp_path):
    run = tmp_path / "run"
    args = ["--train-data", str(synth), "--out", str(run), "--set", "input_size=64",
            "--max-num", "3", "--val-groups", "0", "--workers", "0", "--ckpt-every", "2",
            "--no-pretrained"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dmt_core", "train", *args, "--steps", "100000"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = run / "log.jsonl"
    deadline = time.time() + 180
    try:
        while time.time() < deadline and not (
            (run / "last.pt").exists() and log.exists() and len(log.read_text().splitlines()) >= 3
        ):
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    step = load_checkpoint(run / "last.pt")["step"]
    assert step >= 2
    assert main(["train", *args, "--resume", "--steps", str(step + 2)]) == 0  # no stale lock
    assert _log_steps(run) == list(range(1, step + 3))
    assert not list(run.glob(".*.tmp")) and not (run / LOCK_NAME).exists()


# ---------------------------------------------------------------- 4. bad values refused


@pytest.mark.parametrize("value", ["false", "maybe", 0, 1, None])
def test_bool_fields_take_true_or_false_only(value):
    with pytest.raises(ValueError, match="use_r2r must be true or false"):
        DMTConfig.tiny(use_r2r=value)


def test_config_types_in_yaml_and_set(synth, tmp_path, capsys):
    assert DMTConfig.from_yaml_text("use_r2r: false").use_r2r is False
    with pytest.raises(ValueError, match="use_r2r must be true or false"):
        DMTConfig.from_yaml_text("use_r2r: 'false'")
    with pytest.raises(ValueError, match="hidden_dim must be an integer"):
        DMTConfig.from_dict({"hidden_dim": "32"})
    with pytest.raises(ValueError, match="drop_path must be a finite number"):
        DMTConfig.from_dict({"drop_path": float("nan")})
    with pytest.raises(ValueError, match="r2r_scales must be a list of integers"):
        DMTConfig.from_dict({"r2r_scales": "136"})
    assert parse_overrides(["use_r2r=no"]) == {"use_r2r": False}  # YAML's booleans
    for pair, key in [("use_r2r=maybe", "use_r2r"), ("hidden_dim=abc", "hidden_dim"),
                      ("r2r_scales=[1, 2", "r2r_scales")]:  # fmt: skip
        with pytest.raises(ValueError, match=f"--set {key}="):
            parse_overrides([pair])
        out = str(tmp_path / "r")
        rc = main(["train", "--train-data", str(synth), "--out", out, "--set", pair])
        assert rc == 2 and f"--set {key}=" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag", ["--time-budget", "--lr"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_times_and_learning_rates_are_refused(synth, tmp_path, capsys, flag, value):
    out = str(tmp_path / "r")
    rc = main(["train", "--train-data", str(synth), "--out", out, f"{flag}={value}"])
    assert rc == 2 and f"{flag}: expected a finite number" in capsys.readouterr().err
    with pytest.raises(ValueError, match="finite"):
        _opts(synth, tmp_path / "r", **{flag.strip("-").replace("-", "_"): float(value)})


def test_non_finite_pixels_are_refused_naming_the_image(tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "g").mkdir(parents=True)
    arr = np.full((30, 40), 0.5, np.float32)
    arr[3, 4] = np.nan
    Image.fromarray(arr, mode="F").save(photos / "g" / "nan.tif")
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(photos / "g" / "ok.png")
    with pytest.raises(ValueError, match="nan.tif: float image with NaN"):
        load_image(photos / "g" / "nan.tif")
    with pytest.raises(ValueError, match="nan.tif"):
        _predict(tiny_model(), photos, tmp_path / "pred")
    # and a chunk whose tensor is not finite (an API user's dataset) names its image
    item = {"images": torch.zeros(2, 3, 32, 32), "paths": [Path("a.png"), Path("b.png")]}
    item["images"][1, 0, 0, 0] = math.inf
    with pytest.raises(ValueError, match="b.png: NaN or infinite"):
        P._check_finite(item)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_predict(data, tmp_path, dtype):
    s = _predict(tiny_model().to(dtype), data, tmp_path / "pred")
    assert s.images == 4


def test_images_too_small_to_evaluate_are_refused_by_name(data, tmp_path):
    out = tmp_path / "pred"
    _predict(tiny_model(), data, out)
    tiny_mask = data / "GroundTruth" / "dog" / "dog_1.png"
    Image.fromarray(np.full((1, 1), 255, np.uint8)).save(tiny_mask)
    Image.fromarray(np.full((1, 1), 200, np.uint8)).save(out / "dog" / "dog_1.png")
    with pytest.raises(ValueError, match=f"smaller than 8x8.*\n  {tiny_mask} is 1x1"):
        evaluate(out, data, progress=False)


def test_huge_images_are_refused_with_the_limit(data, capsys):
    default = max_pixels()
    assert default == 178_956_970
    old = set_max_pixels(1000)
    try:
        with pytest.raises(ValueError, match=r"cat_0.jpg: image too large .* 1,000 pixels"):
            load_image(data / "Image" / "cat" / "cat_0.jpg")  # 40 x 30 = 1,200 pixels
        with pytest.raises(ValueError, match=r"cat_0.png: image too large .* --max-pixels"):
            image_size_candidates(data / "GroundTruth" / "cat" / "cat_0.png")  # header only
    finally:
        set_max_pixels(old)
    assert main(["data", "check", str(data), "--max-pixels", "1000"]) == 1
    out = capsys.readouterr().out
    assert "too large" in out and "--max-pixels" in out and "problems: 8" in out
    assert max_pixels() == default  # the command line restores the limit
    assert main(["--max-pixels", "2000", "data", "check", str(data)]) == 0


# ---------------------------------------------------------------- 5. one error path


def test_expected_errors_are_one_or_two_lines(data, synth, tmp_path, capsys, monkeypatch):
    model = tiny_model()
    good = save_checkpoint(model_checkpoint(model, model.config), tmp_path / "good.pt")
    _predict(good, data, tmp_path / "p")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    pred = ["predict", "--data", str(data), "--input-size", "32", "--no-progress"]
    json_in_a_file = ["--json", str(a_file / "x.json"), "--no-progress"]
    cases = [
        ([*pred, "--checkpoint", str(empty), "--out", str(tmp_path / "p")], "empty file (0 bytes)"),
        ([*pred, "--checkpoint", str(cut), "--out", str(tmp_path / "p")], "truncated or damaged"),
        ([*pred, "--checkpoint", str(good), "--out", str(a_file)], "a file, not a folder"),
        (["train", "--train-data", str(synth), "--out", str(a_file)], "a file, not a run folder"),
        (
            ["evaluate", "--pred", str(tmp_path / "p"), "--data", str(data), *json_in_a_file],
            "a file is in the way",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) <= 2, err
        assert err.startswith(f"dmt {argv[0]}: error: ")
    # a divergence during training
    monkeypatch.setattr(
        "dmt_core.train.dmt_loss",
        lambda out, masks, w=1.0: (out.co.sum() * float("nan"), {"bce": out.co.sum() * 0}),
    )
    rc = main(["train", "--train-data", str(synth), "--out", str(tmp_path / "div"),
               "--set", "input_size=64", "--val-groups", "0", "--steps", "2", "--max-num", "3",
               "--no-pretrained"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "training diverged: the loss is nan at step 1" in err and "--lr" in err
    # --debug and DMT_DEBUG=1 show the traceback instead
    with pytest.raises(ValueError, match="empty file"):
        main([*pred, "--checkpoint", str(empty), "--out", str(tmp_path / "p"), "--debug"])
    monkeypatch.setenv("DMT_DEBUG", "1")
    with pytest.raises(ValueError, match="empty file"):
        main([*pred, "--checkpoint", str(empty), "--out", str(tmp_path / "p")])


def test_file_system_errors_name_the_file_and_say_what_to_do():
    e = PermissionError(13, "Permission denied", "/data/out/a.png")
    assert format_error("predict", e) == (
        "dmt predict: error: /data/out/a.png: Permission denied\n"
        "  check the permissions, or choose another location"
    )
    e = OSError(28, "No space left on device", "/data/out/a.png")
    assert "disk is full" in format_error("predict", e)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_is_a_message(data, tmp_path, capsys):
    model = tiny_model()
    ckpt = save_checkpoint(model_checkpoint(model, model.config), tmp_path / "m.pt")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc = main(["predict", "--checkpoint", str(ckpt), "--data", str(data), "--input-size",
                   "32", "--out", str(ro / "p"), "--no-progress"])  # fmt: skip
    finally:
        ro.chmod(0o700)
    assert rc == 2 and "Permission denied" in capsys.readouterr().err


def test_a_checkpoint_for_another_config_is_a_short_message(tmp_path, capsys):
    other = tiny_model(use_r2r=False, hidden_dim=64)
    ck = model_checkpoint(other, other.config)
    ck["config"] = DMTConfig.tiny().to_dict()  # says tiny, holds other weights
    path = save_checkpoint(ck, tmp_path / "wrong.pt")
    data = make_dataset(tmp_path / "ds", "image_gt", {"cat": 1})
    rc = main(["predict", "--checkpoint", str(path), "--data", str(data), "--out",
               str(tmp_path / "p")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and len(err) < 1500, len(err)
    assert "the tiny preset's widths" in err and "hidden_dim 32" in err
    assert "missing key(s)" in err and "tensor(s) of another shape" in err
    assert "more)" in err  # the first few keys, then a count


def test_python_m_dmt_core_error_exit_status(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "dmt_core", "data", "check", str(tmp_path / "nowhere")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2, res.stderr
