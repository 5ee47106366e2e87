"""The event schema is declared once (studio/events.py): every event a run writes fits it,
the engine refuses one that does not, and readers skip a line cut short by a crash."""

import json

import pytest

from studio import api, events
from studio.runstore import RunDir
from toy_generators import ToyImageGenerator


def test_every_event_of_a_tiny_run_fits_the_schema(tmp_path):
    status, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "run"), max_steps=12,
                            events="none", settings=["device=cpu", "eval_every=4",
                                                     "preview_every=6", "checkpoint_every=6",
                                                     "log_every=3"])
    records = run.events()
    for record in records:
        events.check(record)
    kinds = {r["event"] for r in records}
    assert {"start", "progress", "eval", "preview", "checkpoint", "done"} <= kinds
    assert kinds <= set(events.KINDS)


def test_the_declared_kinds_are_those_the_readme_lists():
    assert set(events.KINDS) == {"start", "progress", "eval", "preview", "checkpoint", "warning",
                                 "error", "paused", "resumed", "done"}


@pytest.mark.parametrize("kind, fields, problem", [
    ("finished", {"step": 1}, "unknown event kind 'finished'"),
    ("checkpoint", {"step": 1, "path": "x"}, "lacks best"),
    ("paused", {"step": 1, "why": "asked"}, "undeclared field"),
])
def test_an_event_that_does_not_fit_is_a_bug_the_engine_refuses(kind, fields, problem):
    with pytest.raises(events.EventError, match=problem):
        events.make(kind, **fields)


def test_progress_carries_the_generators_own_metrics():
    record = events.make("progress", step=1, max_steps=2, loss=0.5, lr=1e-3, steps_per_s=1.0,
                         items_per_s=16.0, unit="images", eta_s=1.0, elapsed_s=1.0, train_s=1.0,
                         d_loss=0.25)
    assert record["d_loss"] == 0.25 and record["event"] == "progress" and "time" in record


def test_readers_skip_a_line_cut_short_and_stray_output(tmp_path):
    good = events.make("paused", step=3)
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(good) + "\n" + "some library's print\n" + "[1, 2]\n"
                    + '{"event": "resumed", "st')
    assert events.read(path) == [good]
    assert RunDir(tmp_path).events() == [good]
    assert events.parse_line(json.dumps(good).encode()) == good
    assert events.parse_line("") is None
    assert events.read(tmp_path / "missing.jsonl") == []


def test_the_engine_emits_through_the_schema(tmp_path):
    from studio.callbacks import Callback

    class EmitsAnUndeclaredKind(Callback):
        def on_step_end(self, engine, metrics):
            engine.emit("finished", step=engine.step)

    with pytest.raises(events.EventError, match="unknown event kind"):
        api.train(ToyImageGenerator, run_dir=str(tmp_path / "run"), max_steps=2, events="none",
                  settings=["device=cpu", "eval_every=0", "preview_every=0"],
                  callbacks=[EmitsAnUndeclaredKind()])
