"""The same `studio train` under torchrun: two CPU processes (gloo) train one run together."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from studio.runstore import RunDir


def test_two_processes_under_torchrun_write_one_run(tmp_path, corpus):
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    run = tmp_path / "run"
    args = [torchrun, "--nproc_per_node", "2", "--standalone", "-m", "studio", "train",
            "text", "--data", str(corpus), "--run-dir", str(run), "--max-steps", "30",
            "--set", "n_layer=1", "--set", "n_embd=32", "--set", "n_head=2",
            "--set", "device=cpu", "--set", "eval_every=10", "--set", "log_every=5", "--events", "none"]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = RunDir(run)
    events = store.events()
    assert [e["event"] for e in events].count("start") == 1  # rank 0 alone logs
    start = next(e for e in events if e["event"] == "start")
    assert start["world_size"] == 2
    assert store.info()["status"] == "done" and store.checkpoints()[-1].step == 30
    evals = [e["metrics"]["val_loss"] for e in events if e["event"] == "eval"]
    assert len(evals) == 3 and evals[-1] < evals[0]
