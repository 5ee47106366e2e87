"""Stop/resume is exact, and a crash mid-checkpoint loses nothing (real processes, real signals)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from conftest import ROOT, run_cli
from studio.runstore import RunDir

SMALL = ["--set", "n_layer=2", "--set", "n_head=2", "--set", "n_embd=32", "--set", "block_size=32",
         "--set", "batch_size=8", "--set", "dropout=0.1", "--set", "device=cpu",
         "--set", "log_every=1", "--set", "eval_every=100", "--set", "preview_every=150",
         "--set", "checkpoint_every=0", "--set", "warmup_steps=20", "--set", "threads=1"]


def start_training(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "studio", "train", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for(predicate, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    raise AssertionError("timed out")


def progress_losses(run: Path) -> dict[int, float]:
    """step -> loss, the last record winning (a resumed run repeats nothing, but be exact)."""
    out = {}
    for event in RunDir(run).events():
        if event["event"] == "progress":
            out[event["step"]] = event["loss"]
    return out


def latest_steps(run: Path) -> int:
    steps = [e["step"] for e in RunDir(run).events() if e["event"] == "progress"]
    return max(steps, default=0)


def final_weights(run: Path) -> dict:
    folder = RunDir(run).checkpoints()[-1].folder
    return load_file(str(folder / "model.safetensors")), load_file(str(folder / "trainer.safetensors"))


def test_sigterm_then_resume_equals_a_straight_run(tmp_path, corpus):
    steps = 400
    straight, split = tmp_path / "straight", tmp_path / "split"
    code, out, err = run_cli("train", "text", "--data", corpus, "--run-dir", straight,
                             "--max-steps", steps, "--events", "none", *SMALL)
    assert code == 0, err

    proc = start_training("text", "--data", corpus, "--run-dir", split, "--max-steps", steps,
                          "--events", "none", *SMALL)
    assert wait_for(lambda: latest_steps(split) >= 120, proc), "finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    stopped_at = RunDir(split).checkpoints()[-1].step
    assert 120 <= stopped_at < steps
    assert RunDir(split).info()["status"] == "stopped"

    code, out, err = run_cli("train", "--resume", split, "--events", "none")
    assert code == 0, err
    a, b = progress_losses(straight), progress_losses(split)
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    assert [a[s] for s in sorted(a)] == [b[s] for s in sorted(b)]  # bit-identical losses
    (wa, ta), (wb, tb) = final_weights(straight), final_weights(split)
    assert wa.keys() == wb.keys() and ta.keys() == tb.keys()
    for name in wa:
        assert np.array_equal(wa[name], wb[name]), name
    for name in ta:
        assert np.array_equal(ta[name], tb[name]), name


def test_sigkill_during_checkpoint_write_keeps_the_previous_one(tmp_path, corpus):
    """Checkpoint every step with a model big enough that writing dominates, and kill the
    process at once: tries until a kill lands mid-write (a partial folder is left)."""
    big = ["--set", "n_layer=4", "--set", "n_head=4", "--set", "n_embd=256", "--set", "block_size=32",
           "--set", "batch_size=2", "--set", "checkpoint_every=1", "--set", "keep_last=2",
           "--set", "eval_every=0", "--set", "preview_every=0", "--set", "device=cpu"]
    hit_mid_write = False
    for attempt in range(8):
        run = tmp_path / f"run{attempt}"
        proc = start_training("text", "--data", corpus, "--run-dir", run, "--max-steps", 10_000,
                              "--events", "none", *big)
        ckpts = run / "checkpoints"
        assert wait_for(lambda: len([p for p in ckpts.glob("step_*")]) >= 2, proc)
        time.sleep(0.05 * attempt)
        proc.kill()
        proc.wait(timeout=60)
        partial = list(ckpts.glob(".tmp-*"))
        hit_mid_write |= bool(partial)
        complete = RunDir(run).checkpoints()
        assert complete, "no complete checkpoint survived"
        for ckpt in complete:
            RunDir(run).load_checkpoint(ckpt.folder)  # sizes and hashes verified
        code, out, err = run_cli("train", "--resume", run, "--max-steps", complete[-1].step + 1,
                                 "--events", "none")
        assert code == 0, err
        assert RunDir(run).checkpoints()[-1].step == complete[-1].step + 1
        assert not list(ckpts.glob(".tmp-*")), "leftovers of the crash are cleaned up"
        if hit_mid_write:
            break
    assert hit_mid_write, "no kill landed during a checkpoint write"


def test_pause_resume_and_stop_through_the_control_file(tmp_path, corpus):
    run = tmp_path / "run"
    proc = start_training("text", "--data", corpus, "--run-dir", run, "--max-steps", 100_000,
                          "--events", "json", *SMALL)
    assert wait_for(lambda: latest_steps(run) >= 5, proc)
    assert run_cli("control", run, "pause")[0] == 0
    assert wait_for(lambda: RunDir(run).info().get("status") == "paused", proc)
    paused_at = latest_steps(run)
    time.sleep(0.5)
    assert latest_steps(run) == paused_at  # no steps while paused
    assert RunDir(run).checkpoints(), "pausing checkpoints first"
    assert run_cli("control", run, "resume")[0] == 0
    assert wait_for(lambda: latest_steps(run) > paused_at + 5, proc)
    assert run_cli("control", run, "stop")[0] == 0
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert "paused" in kinds and "resumed" in kinds and "checkpoint" in kinds
    assert events[-1]["status"] == "stopped"
    progress = [e for e in events if e["event"] == "progress"]
    assert all({"step", "loss", "items_per_s", "eta_s", "lr"} <= e.keys() for e in progress)
    assert run_cli("control", run, "pause")[1:] and run_cli("control", run, "pause")[0] == 2
