"""The LR schedule under a time budget (max_minutes): warmup and cosine decay end when the budget
runs out, or at max_steps if that comes first; a resumed run goes on down the schedule. The
schedule is a pure function of (step, elapsed minutes, settings); the training runs below move
the engine's clock by hand, one second per step, so nothing here is timed."""

import math

import pytest

from studio import api
from studio.callbacks import Callback
from studio.engine import DecayStart, TrainConfig, lr_factor, schedule_progress
from toy_generators import ToyImageGenerator

QUIET = ["device=cpu", "eval_every=0", "preview_every=0", "log_every=1"]
PEAK, FLOOR = 0.01, 0.1  # the runs' lr and min_lr_ratio


def formula_before_time_budgets(step: int, train: TrainConfig) -> float:
    """lr_factor as it was before the time budget took part, copied to hold it still."""
    if step < train.warmup_steps:
        return (step + 1) / (train.warmup_steps + 1)
    if train.lr_schedule == "constant":
        return 1.0
    span = max(1, train.max_steps - train.warmup_steps)
    progress = min(1.0, (step - train.warmup_steps) / span)
    return train.min_lr_ratio + (1 - train.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def cosine(progress: float, floor: float = FLOOR) -> float:
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


# --- the schedule as a function -----------------------------------------------------------------

def test_the_floor_is_reached_when_the_budget_runs_out_long_before_max_steps():
    train = TrainConfig(max_steps=100_000, warmup_steps=0, min_lr_ratio=FLOOR, max_minutes=10)
    assert lr_factor(500, train, elapsed_minutes=0) == pytest.approx(cosine(500 / 100_000))
    assert lr_factor(500, train, elapsed_minutes=5) == pytest.approx(cosine(0.5))
    assert lr_factor(500, train, elapsed_minutes=10) == pytest.approx(FLOOR)
    assert lr_factor(500, train, elapsed_minutes=25) == pytest.approx(FLOOR)  # stays there


def test_progress_is_the_larger_of_steps_and_time():
    train = TrainConfig(max_steps=1000, warmup_steps=0, min_lr_ratio=FLOOR, max_minutes=10)
    for step, minutes, expected in [(800, 2, 0.8), (100, 6, 0.6), (500, 5, 0.5), (0, 0, 0.0),
                                    (1000, 1, 1.0), (3000, 1, 1.0)]:
        assert schedule_progress(step, train, minutes) == pytest.approx(expected)
        assert lr_factor(step, train, minutes) == pytest.approx(cosine(expected))


def test_a_resumed_session_spreads_what_is_left_of_the_decay_over_its_budget():
    train = TrainConfig(max_steps=100_000, warmup_steps=0, min_lr_ratio=FLOOR, max_minutes=10)
    resumed = DecayStart(minutes=0.0, progress=0.6)
    assert schedule_progress(1000, train, 0, resumed) == pytest.approx(0.6)  # not back at 0
    assert schedule_progress(1000, train, 5, resumed) == pytest.approx(0.8)
    assert schedule_progress(1000, train, 10, resumed) == pytest.approx(1.0)
    after_warmup = DecayStart(minutes=4.0, progress=0.0)  # warmup took the first 4 minutes
    assert schedule_progress(1000, train, 4, after_warmup) == pytest.approx(0.01)  # the steps'
    assert schedule_progress(1000, train, 7, after_warmup) == pytest.approx(0.5)
    assert schedule_progress(1000, train, 10, after_warmup) == pytest.approx(1.0)


def test_warmup_counts_steps_whatever_the_clock_says():
    train = TrainConfig(max_steps=100_000, warmup_steps=100, min_lr_ratio=FLOOR, max_minutes=1)
    for minutes in (0.0, 0.5, 1.0, 3.0):
        assert [lr_factor(s, train, minutes) for s in range(100)] == \
            [(s + 1) / 101 for s in range(100)]
    # the decay starts at the peak where warmup ended, however late in the budget that was
    warmup_ended = DecayStart(minutes=0.75, progress=0.0)
    assert lr_factor(100, train, 0.75, warmup_ended) == pytest.approx(1.0)
    assert lr_factor(150, train, 0.875, warmup_ended) == pytest.approx(cosine(0.5))
    assert lr_factor(200, train, 1.0, warmup_ended) == pytest.approx(FLOOR)


def test_a_constant_schedule_stays_constant_under_a_budget():
    train = TrainConfig(max_steps=1000, warmup_steps=10, lr_schedule="constant", max_minutes=2)
    assert {lr_factor(s, train, m) for s in range(10, 2000, 97) for m in (0, 1, 2, 5)} == {1.0}
    assert lr_factor(4, train, 2) == 5 / 11


@pytest.mark.parametrize("settings", [
    dict(max_steps=1000, warmup_steps=100, min_lr_ratio=0.1),
    dict(max_steps=1000, warmup_steps=0, min_lr_ratio=0.0),
    dict(max_steps=7, warmup_steps=7, min_lr_ratio=0.5),
    dict(max_steps=1, warmup_steps=0, min_lr_ratio=0.3),
    dict(max_steps=300, warmup_steps=50, lr_schedule="constant"),
])
def test_without_a_budget_every_step_is_as_before(settings):
    train = TrainConfig(**settings)
    for step in range(train.max_steps + 50):
        old = formula_before_time_budgets(step, train)
        assert lr_factor(step, train) == old  # exactly: runs without a budget are unchanged
        assert lr_factor(step, train, 123.0, DecayStart(4.0, 0.9)) == old  # the clock unread


# --- training on a clock moved by hand -------------------------------------------------------------

@pytest.fixture(autouse=True)
def _toys_registered():
    from studio.registry import default_registry
    default_registry().add(ToyImageGenerator.name, ToyImageGenerator)


class StopAt(Callback):
    """Asks the engine to stop after step `at` (as Ctrl-C or `studio stop` would)."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, engine, metrics):
        if engine.step == self.at:
            engine.request_stop("stopped by the test")


def scheduled_lrs(run, session: int = 0) -> dict[int, float]:
    """{step: the LR it trained at} from one session's progress events (a progress event at
    step N reports the LR of the step that took the run to N)."""
    starts = [i for i, e in enumerate(run.events()) if e["event"] == "start"]
    events = run.events()[starts[session]:]
    if session + 1 < len(starts):
        events = events[:starts[session + 1] - starts[session]]
    return {e["step"] - 1: e["lr"] for e in events if e["event"] == "progress"}


def test_a_time_budgeted_run_anneals_to_the_floor_as_the_time_runs_out(tmp_path, fake_clock):
    """One minute at a second a step: 60 steps of 10,000; warmup (10 steps) then the decay over
    the other 50 seconds, ending at the floor instead of a whisker below the peak."""
    status, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "run"), max_steps=10_000,
                            max_minutes=1, events="none",
                            settings=QUIET + [f"lr={PEAK}", "warmup_steps=10", f"min_lr_ratio={FLOOR}"])
    assert status == "stopped" and run.checkpoints()[-1].step == 60
    lrs = scheduled_lrs(run)
    assert sorted(lrs) == list(range(60))
    assert lrs[9] == pytest.approx(PEAK * 10 / 11)  # warmup, by steps
    assert lrs[10] == pytest.approx(PEAK)  # the decay starts at the peak: no jump
    decay = [lrs[s] for s in range(10, 60)]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    assert lrs[35] == pytest.approx(PEAK * cosine(0.5))  # half the time after warmup
    assert lrs[59] == pytest.approx(PEAK * FLOOR, rel=0.01)  # the last second: at the floor
    assert lrs[59] == pytest.approx(PEAK * cosine(49 / 50))


def test_without_a_budget_the_run_follows_the_steps_as_before(tmp_path, fake_clock):
    status, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "run"), max_steps=40,
                            events="none",
                            settings=QUIET + [f"lr={PEAK}", "warmup_steps=5", f"min_lr_ratio={FLOOR}"])
    train = TrainConfig(max_steps=40, warmup_steps=5, min_lr_ratio=FLOOR, lr=PEAK)
    assert status == "done"
    assert scheduled_lrs(run) == {s: PEAK * formula_before_time_budgets(s, train) for s in range(40)}


def test_a_resume_mid_budget_continues_down_the_schedule(tmp_path, fake_clock):
    """Stopped after 30 of its 60 seconds, the run resumes with a fresh minute (the budget is a
    session's): the LR goes on from where it was, not back to the peak, and what is left of the
    decay is spread over the new minute, ending at the floor."""
    path = str(tmp_path / "run")
    settings = QUIET + [f"lr={PEAK}", "warmup_steps=10", f"min_lr_ratio={FLOOR}"]
    api.train(ToyImageGenerator, run_dir=path, max_steps=10_000, max_minutes=1, events="none",
              settings=settings, callbacks=[StopAt(30)])
    status, run = api.train(resume=path, events="none", generator=ToyImageGenerator)
    assert status == "stopped"
    before, after = scheduled_lrs(run, 0), scheduled_lrs(run, 1)
    assert max(before) == 29 and sorted(after) == list(range(30, 90))
    progress_at_stop = (29 - 10) / 50
    assert before[29] == pytest.approx(PEAK * cosine(progress_at_stop))
    assert after[30] == pytest.approx(before[29])  # on from where it stopped
    assert after[30] < 0.75 * PEAK  # a restarted schedule would be back at the peak here
    lrs = [after[s] for s in range(30, 90)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert after[89] == pytest.approx(PEAK * cosine(progress_at_stop + (1 - progress_at_stop) * 59 / 60))
    assert after[89] == pytest.approx(PEAK * FLOOR, rel=0.01)
