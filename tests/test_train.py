"""``dmt train``: the loss goes down, resume is exact, signals save, torchrun works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dmt_core.checkpoint import load_checkpoint
from dmt_core.data.synthetic import write_benchmark
from dmt_core.train import DrawSampler, Schedule, TrainOptions, parse_overrides, train

SMALL = {"input_size": 64}  # a smaller tiny model: fast tests


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "train"
    write_benchmark(root, "train", groups=10, seed=0, size=64)
    return root


def _opts(synth: Path, out: Path, **kw) -> TrainOptions:
    base = dict(
        train_data=(str(synth),),
        out=str(out),
        preset="tiny",
        steps=6,
        overrides=dict(SMALL),
        val_groups=2,
        val_every=0,
        workers=0,
        max_num=4,
        ckpt_every=0,
        quiet=True,
    )
    base.update(kw)
    return TrainOptions(**base)


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_schedule_warmup_and_milestones():
    s = Schedule(steps=1000, time_budget=None, warmup=0.1, milestones=(0.5, 0.8), gamma=0.1)
    assert s.factor(0, 0) == pytest.approx(0.001)
    assert s.factor(50, 0) == pytest.approx(0.001 + 0.999 * 0.5)
    assert s.factor(100, 0) == 1.0 and s.factor(499, 0) == 1.0
    assert s.factor(500, 0) == pytest.approx(0.1) and s.factor(900, 0) == pytest.approx(0.01)
    t = Schedule(steps=None, time_budget=100.0, warmup=0.0, milestones=(0.75,), gamma=0.1)
    assert t.factor(10**6, 74.0) == 1.0 and t.factor(0, 76.0) == pytest.approx(0.1)
    assert t.progress(0, 150.0) == 1.0


def test_draw_stream_is_balanced_sharded_and_resumable():
    s = DrawSampler(5, seed=1)
    first = [next(iter(DrawSampler(5, 1, start_step=k)))[0] for k in range(10)]
    it = iter(s)
    assert [next(it)[0] for _ in range(10)] == first  # resuming at step k = the k-th draw
    assert sorted(first[:5]) == list(range(5)) and sorted(first[5:]) == list(range(5))
    r0, r1 = iter(DrawSampler(5, 1, rank=0, world=2)), iter(DrawSampler(5, 1, rank=1, world=2))
    pairs = [(next(r0)[1], next(r1)[1]) for _ in range(3)]
    assert pairs == [(0, 1), (2, 3), (4, 5)]


def test_overrides_parse_and_reject_unknown_fields():
    assert parse_overrides(["use_r2r=false", "hidden_dim=32", "r2r_scales=[1, 2]"]) == {
        "use_r2r": False,
        "hidden_dim": 32,
        "r2r_scales": [1, 2],
    }
    with pytest.raises(ValueError, match="not a DMTConfig field"):
        parse_overrides(["use_r2rr=false"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["use_r2r"])


def test_short_run_lowers_the_loss_and_writes_everything(synth, tmp_path):
    run = tmp_path / "run"
    summary = train(_opts(synth, run, steps=40, val_every=20))
    log = _log(run)
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 41))
    assert all(len([k for k in r if k.startswith(("bce", "iou", "stage_"))]) == 12 for r in steps)
    first = sum(r["loss"] for r in steps[:5]) / 5
    last = sum(r["loss"] for r in steps[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    vals = [r for r in log if "val" in r]
    assert [v["step"] for v in vals] == [20, 40] and 0 <= vals[-1]["val"]["Sm"] <= 1
    ck = load_checkpoint(run / "final.pt")
    assert {"model", "optimizer", "scheduler", "step", "config"} <= set(ck) and ck["step"] == 40
    assert summary["finished"] and summary["steps"] == 40
    held = json.loads((run / "val_groups.json").read_text())
    assert len(held) == 2 and not {r["group"] for r in steps} & set(held)
    assert (run / "config.yaml").is_file() and json.loads((run / "summary.json").read_text())


def test_resume_continues_exactly(synth, tmp_path):
    straight = tmp_path / "straight"
    train(_opts(synth, straight, steps=6))
    split = tmp_path / "split"
    train(_opts(synth, split, steps=3))
    (split / "final.pt").rename(split / "last.pt")  # as if stopped at step 3
    train(_opts(synth, split, steps=6, resume=True))
    a, b = load_checkpoint(straight / "final.pt"), load_checkpoint(split / "final.pt")
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k]["step"] == sb[k]["step"]
        torch.testing.assert_close(sa[k]["exp_avg"], sb[k]["exp_avg"], rtol=0, atol=0)
    groups = [[r["group"] for r in _log(run) if "loss" in r] for run in (straight, split)]
    assert groups[0] == groups[1] and len(groups[0]) == 6


def test_a_new_run_refuses_an_existing_run_dir(synth, tmp_path):
    run = tmp_path / "run"
    train(_opts(synth, run, steps=1))
    with pytest.raises(ValueError, match="already holds a run"):
        train(_opts(synth, run, steps=1))
    with pytest.raises(FileNotFoundError, match="no last.pt or final.pt"):
        train(_opts(synth, tmp_path / "empty", steps=1, resume=True))


def test_time_budget_stops_cleanly(synth, tmp_path):
    run = tmp_path / "run"
    t0 = time.perf_counter()
    summary = train(_opts(synth, run, steps=None, time_budget=4.0))
    assert summary["finished"] and summary["steps"] >= 1
    assert 4.0 <= summary["elapsed_s"] < 30 and time.perf_counter() - t0 < 60
    assert load_checkpoint(run / "final.pt")["step"] == summary["steps"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dmt_core", "train", *args]


def test_sigterm_saves_a_loadable_checkpoint_and_resume_says_so(synth, tmp_path):
    run = tmp_path / "run"
    common = ["--train-data", str(synth), "--out", str(run), "--set", "input_size=64",
              "--max-num", "4", "--val-groups", "2", "--workers", "0"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cli(*common, "--steps", "100000"), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    log = run / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    assert "stopped by SIGTERM" in out
    ck = load_checkpoint(run / "last.pt")
    assert ck["step"] >= 2 and not (run / "final.pt").exists()
    res = subprocess.run(_cli(*common, "--steps", str(ck["step"] + 1), "--resume"), env=env,
                         text=True, capture_output=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"resumed from step {ck['step']}" in res.stdout
    assert load_checkpoint(run / "final.pt")["step"] == ck["step"] + 1


def test_torchrun_two_cpu_processes(synth, tmp_path):
    run = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    res = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "dmt_core", "train",
         "--train-data", str(synth), "--out", str(run), "--steps", "3", "--set", "input_size=64",
         "--max-num", "3", "--val-groups", "2", "--workers", "0", "--device", "cpu"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ck = load_checkpoint(run / "final.pt")
    assert ck["step"] == 3
    steps = [r for r in _log(run) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]  # rank 0 alone writes the log
    assert sorted(p.name for p in run.iterdir()) == [
        "config.yaml", "final.pt", "log.jsonl", "options.json", "summary.json", "val_groups.json",
    ]  # fmt: skip


# --------------------------------------------------------------------------- the CLI and the step
def _parse(*argv: str):
    from dmt_core.cli import build_parser

    return build_parser().parse_args(["train", *argv])


def test_every_option_is_a_flag_and_each_default_lives_in_the_dataclass(synth, tmp_path):
    import dataclasses

    from dmt_core.train import flag_of, options_from_args

    parser_help = " ".join(_help_of_train())
    fields = [f for f in dataclasses.fields(TrainOptions) if f.name != "command"]
    for f in fields:
        assert flag_of(f.name) in parser_help, f.name
    # no flag given: exactly the dataclass defaults
    args = _parse("--train-data", str(synth), "--out", str(tmp_path / "r"))
    got = options_from_args(args)
    want = TrainOptions(train_data=(str(synth),), out=str(tmp_path / "r"))
    assert got == want
    # the options that used to exist only in Python are reachable
    args = _parse("--train-data", str(synth), "--out", "o", "--warmup", "0", "--milestones",
                  "0.5", "0.9", "--gamma", "0.5", "--backbone-lr-scale", "0.1", "--no-pretrained",
                  "--set", "use_r2r=false")  # fmt: skip
    got = options_from_args(args)
    assert (got.warmup, got.milestones, got.gamma, got.backbone_lr_scale) == (0.0, (0.5, 0.9),
                                                                              0.5, 0.1)  # fmt: skip
    assert got.pretrained is False and got.overrides == {"use_r2r": False}


def _help_of_train() -> list[str]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        _parse("--help")
    return buf.getvalue().split()


def test_train_step_is_the_step_train_takes(synth, tmp_path):
    """train() logs, at step 1, the loss that train_step gives on the same group and seed."""
    from dmt_core.data.groups import GroupDataset
    from dmt_core.data.sampling import TrainGroups
    from dmt_core.model.config import DMTConfig
    from dmt_core.train import DrawSampler, train_step
    from dmt_core.weights import create_model

    opts = _opts(synth, tmp_path / "r", steps=1, val_groups=0, pretrained=False)
    train(opts)
    logged = _log(tmp_path / "r")[0]

    torch.manual_seed(opts.seed)
    cfg = DMTConfig.tiny(**SMALL)
    model = create_model(cfg, pretrained=False)
    optimizer = torch.optim.Adam(model.param_groups(1e-3 * 0.001, 1.0), betas=(0.9, 0.99))
    data = TrainGroups([GroupDataset(synth)], input_size=64, max_num=4, seed=opts.seed)
    batch = data[next(iter(DrawSampler(len(data), opts.seed)))]
    torch.manual_seed(opts.seed)
    model.train()
    loss, terms = train_step(model, batch, optimizer)
    assert len(terms) == 12 and loss.requires_grad is False
    assert loss.item() == pytest.approx(logged["loss"], rel=1e-5)


def test_the_log_times_every_part_of_a_step_and_syncs_every_k_steps(synth, tmp_path, monkeypatch):
    """data wait, forward, backward and optimizer seconds per step; images/s counts the data
    wait; the loss is read back from the device once per --log-every steps."""
    import dmt_core.train as T

    reads = []
    real = T._write_log
    monkeypatch.setattr(
        T, "_write_log", lambda log, bar, r, p: (reads.append(len(p)), real(log, bar, r, p))
    )
    run = tmp_path / "run"
    summary = train(_opts(synth, run, steps=7, log_every=3))
    steps = [r for r in _log(run) if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 8))
    assert [n for n in reads if n] == [3, 3, 1]
    for r in steps:
        parts = r["data_s"] + r["forward_s"] + r["backward_s"] + r["optimizer_s"]
        assert min(r["data_s"], r["forward_s"], r["backward_s"], r["optimizer_s"]) >= 0
        assert parts <= r["sec"] + 1e-6 and r["forward_s"] > 0 and r["backward_s"] > 0
    want = sum(r["images"] for r in steps) / sum(r["sec"] for r in steps)
    assert summary["images_per_s"] == pytest.approx(want, abs=0.01)
    with pytest.raises(ValueError, match="--log-every"):
        _opts(synth, tmp_path / "x", log_every=0)


def test_the_progress_bar_has_a_total(synth, tmp_path):
    """Steps when --steps ends the run, seconds when only a time budget does (no "135/?")."""
    from dmt_core.train import _progress_bar

    class _R:
        is_main, step, elapsed = True, 3, 12.4

    by_steps = _progress_bar(_opts(synth, tmp_path / "a", steps=50), _R())
    assert (by_steps.total, by_steps.n, by_steps.dmt_seconds) == (50, 3, False)
    by_time = _progress_bar(
        _opts(synth, tmp_path / "b", steps=None, time_budget=300, quiet=False), _R()
    )
    assert (by_time.total, by_time.n, by_time.dmt_seconds) == (300, 12, True)
    assert "12/300 [" in str(by_time) and "s/s" in str(by_time)
    by_steps.close()
    by_time.close()
    summary = train(_opts(synth, tmp_path / "c", steps=None, time_budget=3.0, quiet=True))
    assert summary["finished"] and summary["steps"] >= 1


def test_the_optimizer_is_fused_adam_and_resumes_from_a_per_tensor_adam_state(synth, tmp_path):
    """dmt train takes Adam's fused kernel (runtime.adam); a run written by the per-tensor
    Adam of earlier releases resumes into it with its moments and step counts intact."""
    from dmt_core.runs import load_optimizer_state
    from dmt_core.runtime import adam

    run = tmp_path / "run"
    train(_opts(synth, run, steps=2))
    ckpt = load_checkpoint(run / "final.pt")
    assert all(g["fused"] for g in ckpt["optimizer"]["param_groups"])
    p = torch.nn.Parameter(torch.ones(4))
    old = torch.optim.Adam([{"params": [p], "name": "all", "initial_lr": 1e-3}], lr=1e-3)
    p.grad = torch.full((4,), 0.5)
    old.step()
    fused = adam([{"params": [p], "name": "all", "initial_lr": 1e-3}], lr=1e-3)
    load_optimizer_state(fused, old.state_dict(), "test")
    assert fused.param_groups[0]["fused"] is True
    state = fused.state[p]
    assert state["step"].item() == 1 and state["step"].dtype == torch.float32
    torch.testing.assert_close(state["exp_avg"], torch.full((4,), 0.05))
    fused.step()  # the fused kernel accepts the loaded state
    assert fused.state[p]["step"].item() == 2


def test_compile_wraps_the_step_and_checkpoints_keep_plain_keys(synth, tmp_path, monkeypatch):
    compiled = []

    def fake_compile(module, **kw):  # torch.compile takes minutes on a CPU: record the call
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    retained = []
    monkeypatch.setattr("dmt_core.train.retain_freed_memory", lambda: retained.append(1))
    run = tmp_path / "run"
    train(_opts(synth, run, steps=2, compile=True))
    assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)
    keys = load_checkpoint(run / "final.pt")["model"].keys()
    assert not any(k.startswith("_orig_mod") for k in keys)
    assert json.loads((run / "options.json").read_text())["compile"] is True
    train(_opts(synth, tmp_path / "plain", steps=1))
    assert len(compiled) == 1  # off by default
    assert len(retained) == 2  # each CPU run keeps its freed activations mapped


def test_training_on_the_cpu_keeps_freed_activations_mapped(tmp_path):
    """runtime.retain_freed_memory (called by dmt train on a CPU): a freed 256 MB block
    stays resident for the next step instead of going back to the OS (fresh process)."""
    code = (
        "import sys, torch\n"
        "from dmt_core.runtime import retain_freed_memory\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20\n"
        "if sys.argv[1] == 'on': assert retain_freed_memory()\n"
        "before = rss(); x = torch.ones(64, 2**20); del x\n"
        "print(rss() - before)\n"
    )
    kept = {
        mode: float(subprocess.run([sys.executable, "-c", code, mode], check=True,
                                   capture_output=True, text=True).stdout.split()[-1])
        for mode in ("off", "on")
    }  # fmt: skip
    assert kept["off"] < 64 and kept["on"] > 200, kept
