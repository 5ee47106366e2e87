import os
import sys
from pathlib import Path

import pytest

# Qt aborts the process without a display; tests never need a real one.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
SHAKESPEARE_TRAIN = SHARED / "text" / "shakespeare_train.txt"
SHAKESPEARE_VAL = SHARED / "text" / "shakespeare_val.txt"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path, monkeypatch):
    """The window's settings (and default runs folder) live in a fresh folder per test."""
    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A small English corpus: a few thousand characters of made-up dialogue."""
    lines = []
    names = ["ANNA", "BORIS", "CLARA", "DMITRI"]
    words = "the sea is calm and the night is long we sail at dawn to find the light".split()
    for i in range(300):
        speaker = names[i % 4]
        sentence = " ".join(words[(i * 7 + j) % len(words)] for j in range(8))
        lines.append(f"{speaker}:\n{sentence.capitalize()}.\n")
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run `studio ARGS` in a fresh process; returns (exit code, stdout, stderr)."""
    import subprocess
    proc = subprocess.run([sys.executable, "-m", "studio", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def fake_clock(monkeypatch):
    """The engine's clock, moved by hand: every training step takes 1 s on it, nothing else
    (tests of rates, ETAs and time budgets, without timing anything)."""
    import time
    from studio import engine as engine_module

    class Clock:
        now = 1000.0

        def monotonic(self):
            return self.now

        def sleep(self, seconds):
            self.now += seconds

        def __getattr__(self, name):
            return getattr(time, name)
    clock = Clock()
    monkeypatch.setattr(engine_module, "time", clock)

    train_step = engine_module.Engine._train_step

    def step_takes_a_second(engine, ctx):
        clock.now += 1.0
        return train_step(engine, ctx)
    monkeypatch.setattr(engine_module.Engine, "_train_step", step_takes_a_second)
    return clock
