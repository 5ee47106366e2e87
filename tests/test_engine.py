"""Engine behaviour: schedule, NaN guard, time limit, checkpoint retention, other modalities."""

import json

import pytest
import torch

from studio import api
from studio.engine import TrainConfig, lr_factor
from studio.errors import TrainingDiverged
from studio.runstore import RunDir
from studio.testing import GeneratorConformance
from toy_generators import ToyImageGenerator, ToyVideoGenerator

QUIET = ["device=cpu", "eval_every=0", "preview_every=0"]


@pytest.fixture(autouse=True)
def _toys_registered():
    from studio.registry import default_registry
    for cls in (ToyImageGenerator, ToyVideoGenerator):
        default_registry().add(cls.name, cls)


def test_lr_warmup_then_cosine_to_the_floor():
    train = TrainConfig(max_steps=1000, warmup_steps=100, min_lr_ratio=0.1)
    factors = [lr_factor(s, train) for s in range(1000)]
    assert factors[0] < factors[50] < factors[99] <= 1.0
    assert factors[100] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[100:], factors[101:]))  # never rises after warmup
    assert lr_factor(1000, train) == pytest.approx(0.1)
    assert lr_factor(5000, train) == pytest.approx(0.1)
    constant = TrainConfig(max_steps=1000, warmup_steps=0, lr_schedule="constant")
    assert {lr_factor(s, constant) for s in range(0, 1000, 100)} == {1.0}


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="NaN or infinite.*step_0000010 is kept"):
        api.train(ToyImageGenerator, run_dir=str(run), max_steps=50, events="none",
                  settings=QUIET + ["explode_at=15", "checkpoint_every=10", "log_every=5"])
    store = RunDir(run)
    assert [c.step for c in store.checkpoints()] == [10]
    state, tensors = store.load_checkpoint(store.checkpoints()[0].folder)
    import torch
    assert all(torch.isfinite(t).all() for t in tensors["model.safetensors"].values())
    assert store.info()["status"] == "diverged"
    assert any(e["event"] == "error" and "NaN" in e["message"] for e in store.events())


def test_time_limit_stops_with_a_checkpoint(tmp_path):
    status, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "run"), max_steps=10**9,
                            max_minutes=0.02, events="none", settings=QUIET)
    assert status == "stopped"
    assert run.checkpoints() and run.checkpoints()[-1].step > 0
    done = [e for e in run.events() if e["event"] == "done"][-1]
    assert "time limit" in done["reason"]


def test_keeps_the_last_k_and_the_best_checkpoint(tmp_path):
    status, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "run"), max_steps=60,
                            events="none", settings=["device=cpu", "preview_every=0",
                                                     "eval_every=10", "checkpoint_every=10",
                                                     "keep_last=2", "lr=0.05"])
    steps = [c.step for c in run.checkpoints()]
    best = run.best_checkpoint()
    evals = [e for e in run.events() if e["event"] == "eval"]
    best_eval = min(evals, key=lambda e: e["metrics"]["val_loss"])
    assert best == f"step_{best_eval['step']:07d}"
    assert steps[-2:] == [50, 60] and len(steps) <= 3
    assert run.info()["best"]["step"] == best_eval["step"]
    assert api.load_run(str(run.path), checkpoint="best")[2].name == best


def test_rates_leave_out_evaluation_time_and_the_eta_counts_it_in(tmp_path, fake_clock):
    """On a fake clock: every training step takes 1 s, and a side job (as evaluation, previews
    and checkpoints are) takes 5 s every 4th step. The rate is that of the steps alone; the ETA
    is the steps left at 1 s each plus the side jobs' share."""
    from studio import callbacks

    class SlowEvaluation(callbacks.Callback):
        side_work = True

        def on_step_end(self, engine, metrics):
            if engine.step % 4 == 0:
                fake_clock.now += 5.0

    status, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "run"), max_steps=40,
                            events="none", settings=QUIET + ["log_every=2"],
                            callbacks=[SlowEvaluation()])
    progress = [e for e in run.events() if e["event"] == "progress"]
    assert len(progress) == 20
    assert {e["steps_per_s"] for e in progress} == {1.0}
    for e in progress:
        side_per_step = 5.0 * ((e["step"] - 1) // 4) / e["step"]  # step N's comes after its log
        assert e["eta_s"] == pytest.approx((40 - e["step"]) * (1 + side_per_step), abs=0.1)
        assert e["train_s"] == pytest.approx(e["step"])


def test_with_a_time_budget_the_eta_is_the_budget_left_when_that_is_sooner(tmp_path, fake_clock):
    """On a fake clock (1 s a step), a 0.5-minute budget with 1000 steps to go: the ETA is the
    30 s budget's remainder, not 1000 steps' worth."""
    status, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "run"), max_steps=1000,
                            max_minutes=0.5, events="none", settings=QUIET + ["log_every=5"])
    assert status == "stopped"
    progress = [e for e in run.events() if e["event"] == "progress"]
    assert progress and all(e["eta_s"] <= 30 - e["elapsed_s"] + 1e-6 for e in progress), progress
    assert progress[0]["eta_s"] > 15 and progress[-1]["eta_s"] < 2


class PauseThenResume:
    """Writes "pause" into the run's control file after step `at`; the engine then pauses
    (`hold` seconds on the clock) and reads "resume" from the same file."""

    side_work = False

    def __init__(self, at: int, clock=None, hold: float = 0.0):
        self.at, self.clock, self.hold = at, clock, hold

    def on_train_start(self, engine): ...
    def on_train_end(self, engine, status): ...
    def on_event(self, engine, record): ...
    def state_dict(self): return {}
    def load_state_dict(self, state): ...

    def on_step_end(self, engine, metrics):
        if engine.step == self.at:
            engine.run.write_control("pause")

    def on_pause(self, engine):
        if self.clock is not None:
            self.clock.now += self.hold
        engine.run.write_control("resume")


def test_rate_and_eta_after_a_pause_are_those_of_training(tmp_path, fake_clock):
    """Paused for 100 s at step 20 of 40 (1 s a step): the progress after the resume reports
    the same rate as before (16 images a step), and the ETA of the 18 steps left."""
    status, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "run"), max_steps=40,
                            events="none", settings=QUIET + ["log_every=2", "checkpoint_every=0"],
                            callbacks=[PauseThenResume(20, fake_clock, hold=100.0)])
    events = run.events()
    kinds = [e["event"] for e in events]
    assert "paused" in kinds and "resumed" in kinds
    after = [e for e in events[kinds.index("resumed"):] if e["event"] == "progress"]
    assert after[0]["step"] == 22
    assert after[0]["steps_per_s"] == 1.0
    assert after[0]["items_per_s"] == 16.0  # batch_size images a second
    assert after[0]["eta_s"] == pytest.approx(18.0)
    assert after[0]["train_s"] == pytest.approx(22.0)  # the pause is not training time


def test_first_progress_after_a_real_pause_and_resume_has_a_rate(tmp_path):
    """The same through the control file on the real clock: a rate above 0 and an ETA no
    shorter than the steps left take at the rate measured before the pause."""
    status, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "run"), max_steps=2000,
                            events="none", settings=QUIET + ["log_every=50", "checkpoint_every=0"],
                            callbacks=[PauseThenResume(1000)])
    events = run.events()
    kinds = [e["event"] for e in events]
    before = [e for e in events[:kinds.index("paused")] if e["event"] == "progress"][-1]
    after = [e for e in events[kinds.index("resumed"):] if e["event"] == "progress"][0]
    assert after["items_per_s"] > 0
    assert after["steps_per_s"] < 10 * before["steps_per_s"]
    assert after["eta_s"] > 0.1 * (2000 - after["step"]) / before["steps_per_s"]


def test_events_log_is_append_only_json_lines(tmp_path):
    status, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "run"), max_steps=20,
                            events="none", settings=QUIET)
    first = run.events_path.read_text()
    api.train(resume=str(run.path), max_steps=30, events="none", generator=ToyImageGenerator)
    second = run.events_path.read_text()
    assert second.startswith(first)
    kinds = [json.loads(l)["event"] for l in second.splitlines()]
    assert kinds.count("start") == 2 and kinds.count("done") == 2


class TestToyImageConformance(GeneratorConformance):
    """The conformance suite carries image generators (and saves their previews as PNG)."""

    generator = ToyImageGenerator
    tiny_config = {"size": 4}
    train_steps = 4

    def make_data(self, folder):
        return str(folder)


class TestToyVideoConformance(TestToyImageConformance):
    generator = ToyVideoGenerator


def test_tensorboard_scalars_are_written_beside_the_event_log(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    status, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "run"), max_steps=20,
                            events="none", settings=QUIET + ["eval_every=10", "log_every=5"])
    acc = EventAccumulator(str(run.path / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "train/lr", "eval/val_loss"} <= set(tags)
    assert [e.step for e in acc.Scalars("train/loss")] == [5, 10, 15, 20]
    logged = [e["loss"] for e in run.events() if e["event"] == "progress"]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx(logged)



FAULTS_PER_TRAINING_STEP = r"""
import resource, sys
import torch
torch.set_num_threads(1)
if sys.argv[1] == "keep":
    from studio.engine import keep_freed_memory
    assert keep_freed_memory()
model = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
                            torch.nn.Conv2d(64, 64, 3, padding=1))
x = torch.randn(128, 3, 32, 32)  # activations of 32 MiB, as in a GAN or a long-context step
def step():
    model(x).square().mean().backward()
for _ in range(6):  # the heap settles into the step's pattern of sizes
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="tunes glibc's malloc")
def test_training_processes_reuse_freed_memory_instead_of_faulting_it_in_again():
    import subprocess
    import sys

    def page_faults(mode):
        out = subprocess.run([sys.executable, "-c", FAULTS_PER_TRAINING_STEP, mode], check=True,
                             capture_output=True, text=True).stdout
        return int(out.split()[-1])
    activation_pages = 5 * (32 << 20) // 4096
    # glibc's default: every step's activations come fresh from the kernel, zeroed page by page
    default = page_faults("default")
    assert default > activation_pages
    # ... now from memory the process kept (measured: 0 to 8k faults against 700k)
    assert page_faults("keep") < default // 10


def test_a_run_has_a_name_and_notes_that_resuming_keeps(tmp_path, capsys):
    from studio import cli
    run = tmp_path / "runs" / "toy-20260101-000000"
    quiet = [arg for pair in QUIET for arg in ("--set", pair)]
    assert cli.main(["train", "toy-image", "--run-dir", str(run), "--max-steps", "4",
                     "--events", "none", "--name", "  first try ", "--notes", "lr 1e-3, 4 steps",
                     *quiet]) == 0
    assert RunDir(run).info()["name"] == "first try"
    assert RunDir(run).info()["notes"] == "lr 1e-3, 4 steps"
    assert cli.main(["train", "--resume", str(run), "--max-steps", "6", "--events", "none"]) == 0
    [row] = api.runs_table(str(tmp_path / "runs"))
    assert (row["name"], row["notes"], row["step"]) == ("first try", "lr 1e-3, 4 steps", 6)
    capsys.readouterr()
    assert cli.main(["runs", str(tmp_path / "runs")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[0] == "NAME" and table[1].startswith("first try")
    assert cli.main(["train", "--resume", str(run), "--max-steps", "7", "--events", "none",
                     "--name", "second name"]) == 0
    assert api.runs_table(str(run))[0]["name"] == "second name"


def test_a_run_without_a_name_is_named_by_its_folder(tmp_path):
    status, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "plain"), max_steps=2,
                            events="none", settings=QUIET)
    assert "name" not in run.info()
    assert api.runs_table(str(run.path))[0]["name"] == "plain"


def test_a_short_run_evaluates_previews_and_checkpoints_as_it_goes(tmp_path):
    """No intervals given: a 40-step run evaluates and previews every 5 steps and checkpoints
    every 10, and its config.json records those numbers (so it can be run again)."""
    status, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "run"), max_steps=40,
                            events="none", settings=["device=cpu", "keep_last=10"])
    train = run.config()["train"]
    assert (train["eval_every"], train["preview_every"], train["checkpoint_every"]) == (5, 5, 10)
    events = run.events()
    assert [e["step"] for e in events if e["event"] == "eval"] == list(range(5, 41, 5))
    assert [e["step"] for e in events if e["event"] == "preview"] == list(range(5, 41, 5))
    assert {10, 20, 30, 40} <= {c.step for c in run.checkpoints()}
    # resumed further, the run keeps the intervals it recorded
    api.train(resume=str(run.path), max_steps=80, events="none", generator=ToyImageGenerator)
    assert run.config()["train"]["eval_every"] == 5


class GAndD(torch.nn.ModuleDict):
    def __init__(self, pixels):
        super().__init__({"g": torch.nn.Linear(1, pixels), "d": torch.nn.Linear(1, 1)})

    def forward(self, x):
        return self["g"](x)


class TwoOptimizerToy(ToyImageGenerator):
    """As a GAN: a second optimizer runs at twice the LR setting (d_lr_ratio 2)."""

    name = "toy-two-lr"
    manual_optimization = True

    def build(self):
        return GAndD(self.config.size ** 2 * 3)

    def configure_optimizers(self, train):
        self.g_opt = torch.optim.SGD(self.model["g"].parameters(), lr=train.lr)
        self.d_opt = torch.optim.SGD(self.model["d"].parameters(), lr=2 * train.lr)
        return [self.d_opt, self.g_opt]

    def training_step(self, batch, ctx):
        ones = torch.ones(len(batch), 1)
        loss = torch.nn.functional.mse_loss(self.model["g"](ones), batch)
        ctx.backward(loss + self.model["d"](ones).square().mean())
        ctx.step_optimizer(self.d_opt)
        ctx.step_optimizer(self.g_opt)
        return {"loss": loss.detach()}

    def evaluate(self, source=None, max_batches=None):
        return {"val_loss": 0.0}


def test_progress_reports_the_lr_setting_and_a_resume_can_change_it(tmp_path):
    constant = ["lr_schedule=constant", "warmup_steps=0", "lr=0.0002", "log_every=2"]
    status, run = api.train(TwoOptimizerToy, run_dir=str(tmp_path / "run"), max_steps=4,
                            events="none", settings=QUIET + constant)
    assert {e["lr"] for e in run.events() if e["event"] == "progress"} == {0.0002}
    engine, checkpoint = api.prepare_training(TwoOptimizerToy, resume=str(run.path), max_steps=6,
                                              events="none", settings=["lr=0.0001"])
    engine.fit(resume_from=checkpoint)
    assert [g["lr"] for opt in engine.optimizers for g in opt.param_groups] == \
        pytest.approx([0.0002, 0.0001])
    assert [e["lr"] for e in run.events() if e["event"] == "progress"][-1] == pytest.approx(0.0001)


class MeasuredToy(ToyImageGenerator):
    name = "toy-measured"

    def evaluate(self, source=None, max_batches=None):
        return {**super().evaluate(source, max_batches), "val_extractor": "features-a"}


def test_runs_say_how_their_best_value_was_measured(tmp_path, capsys):
    """Held-out values measured differently (an image run's FID from another feature network)
    are not comparable: run.json and `studio runs` name how the best one was measured."""
    from studio import cli
    from studio.registry import default_registry
    default_registry().add(MeasuredToy.name, MeasuredToy)
    api.train(MeasuredToy, run_dir=str(tmp_path / "runs" / "a"), max_steps=4, events="none",
              settings=QUIET)
    api.train(ToyImageGenerator, run_dir=str(tmp_path / "runs" / "b"), max_steps=4,
              events="none", settings=QUIET)
    rows = {row["name"]: row for row in api.runs_table(str(tmp_path / "runs"))}
    assert rows["a"]["measured_with"] == "features-a" and rows["b"]["measured_with"] is None
    capsys.readouterr()
    assert cli.main(["runs", str(tmp_path / "runs")]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert "MEASURED_WITH" in header
    assert any(line.startswith("a ") and "features-a" in line for line in lines)


def test_auto_precision_on_a_cpu_follows_the_generators_declared_size(monkeypatch):
    """precision=auto takes bf16 on a CPU with native bf16 from the generator's
    cpu_bf16_min_params on: the text generator gains at any size, a GAN's convolutions do not."""
    from generators.image import ImageGenerator
    from generators.text import TextGenerator
    from studio import engine
    cpu = torch.device("cpu")
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: True)
    assert TextGenerator.cpu_bf16_min_params == 0
    assert engine.resolve_precision("auto", cpu, 800_000, TextGenerator.cpu_bf16_min_params) == "bf16"
    assert engine.resolve_precision("auto", cpu, 800_000, ImageGenerator.cpu_bf16_min_params) == "fp32"
    assert engine.resolve_precision("auto", cpu, 800_000) == "fp32"  # the contract's default
    assert engine.resolve_precision("fp32", cpu, 800_000, 0) == "fp32"  # asked for: kept
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: False)
    assert engine.resolve_precision("auto", cpu, 800_000, 0) == "fp32"  # no native bf16: fp32
