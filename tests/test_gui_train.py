"""The data and training panels, driven as a user would (offscreen Qt, a real child process)."""

import json
import os
import shutil
import sys

import pytest
from PySide6.QtGui import QKeySequence, QShortcut

from conftest import ROOT
from studio import api
from studio.contract import Sample
from studio.gui import train_panel
from studio.gui.data_panel import DataPanel
from studio.gui.session import Session
from studio.gui.settings import Settings
from studio.gui.train_panel import TrainPanel
from studio.registry import default_registry
from studio.runstore import RunDir, save_samples

TINY = {"n_layer": "1", "n_head": "2", "n_embd": "16", "block_size": "16", "batch_size": "4"}
TINY_RUN = ["n_layer=1", "n_head=2", "n_embd=16", "block_size=16", "batch_size=4", "device=cpu",
            "log_every=5", "eval_every=10", "preview_every=10", "checkpoint_every=10",
            "warmup_steps=0", "preview_tokens=8"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny text run of 20 steps (progress every 5, previews and checkpoints every 10),
    trained once for the module; tests take copies of it."""
    root = tmp_path_factory.mktemp("trained")
    corpus = root / "corpus.txt"
    words = "the sea is calm and the night is long we sail at dawn to find the light".split()
    corpus.write_text("\n".join(f"{['ANNA', 'BORIS'][i % 2]}:\n"
                                f"{' '.join(words[(i * 7 + j) % len(words)] for j in range(8))}.\n"
                                for i in range(200)), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:  # the per-test cache fixture is not active yet
        mp.setenv("STUDIO_CACHE_DIR", str(root / "cache"))
        api.train("text", data=str(corpus), run_dir=str(root / "base"), max_steps=20,
                  events="none", settings=TINY_RUN)
    return root / "base"


@pytest.fixture
def session(tmp_path):
    return Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="text"))


@pytest.fixture
def panels(qtbot, session):
    data = DataPanel(session)
    train = TrainPanel(session, data)
    qtbot.addWidget(data)
    qtbot.addWidget(train)
    train.show()  # on screen, as a user has it: hidden panels skip their repaints
    yield data, train
    train.trainer.kill()


def fill(train, gen=None, **settings):
    train.gen_form.set_values({**TINY, **(gen or {})})
    train.train_form.set_values({k: str(v) for k, v in settings.items()})
    train.device.setCurrentText("cpu")


def test_train_on_builtin_data_with_progress_charts_previews_pause_resume_stop(qtbot, panels):
    data, train = panels
    data.run_check()
    qtbot.waitUntil(lambda: data.report is not None, timeout=60_000)
    assert "used" in data.status.text() and data.preview.views  # a text excerpt is shown
    fill(train, max_steps=100_000, log_every=5, eval_every=40, preview_every=40,
         checkpoint_every=200, warmup_steps=0)
    assert train.start_button.isEnabled(), train.problem.text()
    train.start_button.click()
    qtbot.waitUntil(lambda: len(train.charts.steps) >= 3, timeout=60_000)
    # progress text is shown at most once a second
    qtbot.waitUntil(lambda: train.progress.value() >= 5 and "tokens/s" in train.stats.text(), timeout=5_000)
    assert "ETA" in train.stats.text()
    qtbot.waitUntil(lambda: bool(train.preview_steps and train.charts.eval_steps), timeout=60_000)
    train.charts.redraw()
    xs, ys = train.charts.raw.getData()
    assert list(xs) == train.charts.steps and len(ys) == len(train.charts.losses)
    assert train.previews.views and "preview at step" in train.preview_label.text()

    train.pause_button.click()
    qtbot.waitUntil(lambda: train.trainer.status == "paused", timeout=30_000)
    assert train.resume_button.isEnabled() and not train.pause_button.isEnabled()
    paused_steps = len(train.charts.steps)
    qtbot.wait(600)
    assert len(train.charts.steps) == paused_steps
    train.resume_button.click()
    qtbot.waitUntil(lambda: len(train.charts.steps) > paused_steps + 2, timeout=30_000)

    train.sample_button.click()  # from the latest checkpoint while training goes on
    qtbot.waitUntil(lambda: "sampled now" in train.preview_label.text(), timeout=60_000)

    train.stop_button.click()
    qtbot.waitUntil(lambda: not train.trainer.running, timeout=60_000)
    run = RunDir(train.run_dir)
    assert run.info()["status"] == "stopped" and run.checkpoints()
    assert train.start_button.isEnabled() and train.resume_button.isEnabled()


def test_invalid_config_blocks_start_with_a_visible_reason(qtbot, panels):
    data, train = panels
    fill(train)
    train.gen_form.set_values({"n_layer": "three"})
    assert not train.start_button.isEnabled()
    assert "'n_layer' must be int" in train.problem.text()
    assert "must be int" in train.gen_form.widgets["n_layer"].toolTip()
    train.gen_form.set_values({"n_layer": "2", "n_embd": "15"})  # a cross-field rule
    assert not train.start_button.isEnabled() and "multiple of n_head" in train.problem.text()
    train.gen_form.set_values({"n_embd": "16"})
    train.train_form.set_values({"lr": "-1"})
    assert not train.start_button.isEnabled() and "lr" in train.problem.text()
    train.train_form.set_values({"lr": "0.001"})
    assert train.start_button.isEnabled() and train.problem.text() == ""


def test_invalid_data_shows_the_report_and_blocks_start(qtbot, panels, tmp_path):
    data, train = panels
    fill(train)
    (tmp_path / "empty.txt").write_text("")
    data.set_source(str(tmp_path / "empty.txt"))
    qtbot.waitUntil(lambda: data.problem is not None, timeout=30_000)
    assert "empty file" in data.status.text()
    train.update_buttons()
    assert not train.start_button.isEnabled() and "data:" in train.problem.text()

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.txt").write_text("Some perfectly fine text for training. " * 40)
    (folder / "blob.txt").write_bytes(b"\x00\x01\x02" * 100)
    data.set_source(str(folder))
    qtbot.waitUntil(lambda: data.report is not None and data.problem is None, timeout=30_000)
    assert data.skipped.rowCount() == 1
    assert data.skipped.item(0, 0).text() == "blob.txt" and "binary" in data.skipped.item(0, 1).text()
    train.update_buttons()
    assert train.start_button.isEnabled()


CRASHY = '''
import os
from pathlib import Path
from toy_generators import ToyImageGenerator

class CrashyGenerator(ToyImageGenerator):
    """Dies hard (as an out-of-memory kill would) at step 5 of its first run."""
    name = "crashy"

    def training_step(self, batch, ctx):
        marker = Path(os.environ["CRASHY_MARKER"])
        if ctx.step == 5 and not marker.exists():
            marker.write_text("crashed once")
            print("error: simulated out-of-memory in training_step", flush=True)
            os._exit(3)
        return super().training_step(batch, ctx)
'''


def test_a_crashing_trainer_leaves_the_window_alive_and_resume_works(qtbot, panels, tmp_path):
    from tests_support import install_plugin
    data, train = panels
    site = tmp_path / "site"
    install_plugin(site, "crashy-plugin", "crashy_plugin", CRASHY, "crashy = crashy_plugin:CrashyGenerator")
    sys.path.insert(0, str(site))
    try:
        import importlib
        crashy = importlib.import_module("crashy_plugin").CrashyGenerator
    finally:
        sys.path.remove(str(site))
    default_registry().add("crashy", crashy)
    train.trainer.extra_env = {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "tests")]),
                               "CRASHY_MARKER": str(tmp_path / "crashed")}
    train.session.set_generator("crashy")
    data.set_source(str(tmp_path))
    qtbot.waitUntil(lambda: data.report is not None, timeout=30_000)
    fill(train, gen={}, max_steps=12, log_every=1, checkpoint_every=2, eval_every=0,
         preview_every=0)
    train.gen_form.set_values({"size": "4"})
    assert train.start_button.isEnabled(), train.problem.text()
    train.start_button.click()
    qtbot.waitUntil(lambda: train.error_box.isVisible() if train.isVisible() else
                    not train.error_box.isHidden(), timeout=60_000)
    assert "simulated out-of-memory" in train.error_message.text()
    assert "simulated out-of-memory" in train.error_log.toPlainText()
    assert train.error_resume.isEnabled() and not train.trainer.running
    assert RunDir(train.run_dir).checkpoints()[-1].step == 4
    train.error_resume.click()
    qtbot.waitUntil(lambda: not train.trainer.running and train.trainer.status == "done",
                    timeout=60_000)
    assert RunDir(train.run_dir).checkpoints()[-1].step == 12
    assert train.error_box.isHidden()


def test_duplicate_with_changes_fills_the_forms_names_the_run_and_keeps_the_starting_weights(
        qtbot, panels, tmp_path):
    data, train = panels
    doc = {"generator": "text", "config": {**{k: int(v) for k, v in TINY.items()}, "dropout": 0.1},
           "train": {"lr": 0.0005, "max_steps": 77}, "data": {"source": str(tmp_path)},
           "init": {"run": str(tmp_path / "base"), "checkpoint": "step_0000010"},
           "name": "baseline (copy)"}  # the new run's name, as the Runs tab's dialog proposes it
    train.duplicate(doc)
    assert train.run_name.text() == "baseline (copy)"
    assert train.notice.text() == ("Settings copied for the new run “baseline (copy)” — change what "
                                   "you like, then press Start.") and not train.notice.isHidden()
    values = train.gen_form.raw_values()
    assert values["dropout"] == "0.1" and values["n_embd"] == "16"
    assert train.train_form.raw_values()["max_steps"] == "77"
    assert data.source() == str(tmp_path)
    assert train.init_record == doc["init"]
    train.session.set_generator("text")  # same generator: the record stays
    assert train.init_record == doc["init"]


def test_a_hidden_panel_skips_repaints_and_catches_up_when_shown(qtbot, panels):
    _, train = panels
    train.hide()  # another tab is in front
    train._on_event({"event": "start", "max_steps": 100, "step": 0, "device": "cpu",
                     "precision": "fp32", "params": 1000})
    for step in (10, 20):
        train._on_event({"event": "progress", "step": step, "max_steps": 100, "loss": 2.0 - step / 100,
                         "lr": 1e-3, "items_per_s": 500.0, "unit": "tokens", "eta_s": 8})
    train.trainer.polled.emit()  # the child's output was read: time to redraw, if shown
    assert train.progress.value() == 0 and train.charts.raw.getData()[0] is None
    train.show()
    qtbot.waitUntil(lambda: train.progress.value() == 20, timeout=3_000)
    assert "step 20 / 100" in train.stats.text() and "ETA" in train.stats.text()
    assert list(train.charts.raw.getData()[0]) == [10, 20]


def test_charts_fit_their_y_axes_with_room_and_keep_them_while_points_stay_inside(qtbot):
    from studio.gui.charts import SMOOTHING_ALPHA, Charts
    charts = Charts()
    qtbot.addWidget(charts)
    add = lambda step, loss: charts.add({"event": "progress", "step": step, "loss": loss,
                                         "lr": 1e-3, "items_per_s": 1000.0 + step})
    add(10, 3.0)
    add(20, 2.0)
    charts.redraw()
    low, high = charts.loss_plot.viewRange()[1]
    assert 1.5 < low < 2.0 and 3.0 < high < 3.5
    assert charts.smoothed == [3.0, pytest.approx((1 - SMOOTHING_ALPHA) * 3.0 + SMOOTHING_ALPHA * 2.0)]
    add(30, 1.95)
    charts.redraw()
    assert charts.loss_plot.viewRange()[1] == [low, high]  # inside its room: the axis stays put
    add(40, 1.0)
    charts.add({"event": "eval", "step": 40, "metrics": {"val_loss": 3.6}, "is_best": False})
    charts.redraw()
    low, high = charts.loss_plot.viewRange()[1]
    assert 0.5 < low < 1.0 and 3.6 < high < 4.1
    assert charts.lr_plot.viewRange()[1][0] == 0 and 1e-3 < charts.lr_plot.viewRange()[1][1] < 2e-3
    assert 1040 < charts.rate_plot.viewRange()[1][1] < 1500


def test_a_long_run_is_drawn_with_about_one_segment_per_pixel_column(qtbot):
    import math
    from studio.gui.charts import Charts
    charts = Charts()
    qtbot.addWidget(charts)
    charts.resize(600, 400)
    charts.show()
    qtbot.waitExposed(charts)
    charts.add({"event": "start", "max_steps": 200_000})
    for i in range(1, 20_001):
        charts.add({"event": "progress", "step": 10 * i, "loss": 2 + math.sin(i), "lr": 1e-3,
                    "items_per_s": 1000.0})
    charts.redraw()
    qtbot.wait(100)
    x, y = charts.raw.curve.getData()
    assert len(x) <= 2 * charts.width()  # a min and a max per column, not 20,000 points
    assert y.min() == pytest.approx(1.0, abs=1e-3) and y.max() == pytest.approx(3.0, abs=1e-3)


# -- the run the panel shows ------------------------------------------------------------------

def copy_run(trained_run, session, name: str) -> str:
    path = session.runs_folder / name
    shutil.copytree(trained_run, path)
    return str(path)


def test_the_current_run_is_shown_with_its_charts_previews_and_name(qtbot, panels, trained_run):
    _, train = panels
    run = copy_run(trained_run, train.session, "seen")
    train.session.open_run(run)  # Runs › Open, or the newest run of the generator
    assert train.run_dir == run
    assert train.charts.steps == [5, 10, 15, 20] and train.charts.eval_steps == [10, 20]
    assert train.preview_steps == [10, 20] and train.previews.views
    assert "preview at step 20" in train.preview_label.text()
    # the probes' texts in one box that wraps them, not a box each scrolled inside the panel
    assert len(train.previews.views) == 1 and "[2] seed" in train.previews.views[0].toPlainText()
    qtbot.wait(20)
    assert not train.previews.verticalScrollBar().isVisible()
    assert "seen" in train.run_label.text() and "done at step 20" in train.stats.text()
    train.session.open_run(None)  # no current run: nothing of this one stays on screen
    assert train.run_dir is None and train.charts.steps == [] and train.previews.views == []


def test_start_names_the_run_and_shows_nothing_of_the_run_shown_before(qtbot, panels, trained_run,
                                                                        monkeypatch):
    _, train = panels
    train.session.open_run(copy_run(trained_run, train.session, "before"))
    assert train.charts.steps and train.previews.views
    launched = []
    monkeypatch.setattr(train.trainer, "start", lambda args, run_dir: launched.append((args, run_dir)))
    fill(train, max_steps=50)
    train.run_name.setText("wider model")
    train.run_notes.setText("n_embd 16 -> 32")
    train.start_button.click()
    (args, run_dir), = launched
    assert args[args.index("--name") + 1] == "wider model"
    assert args[args.index("--notes") + 1] == "n_embd 16 -> 32"
    assert args[args.index("--run-dir") + 1] == run_dir and os.path.basename(run_dir).startswith("wider-model-")
    assert train.charts.steps == [] and train.charts.eval_steps == [] and train.previews.views == []
    assert train.preview_steps == [] and not train.scrubber.isEnabled()
    assert train.run_label.text().startswith("training run wider model · ")
    # once the child has made the folder, it is the current run everywhere (the title bar, Generate)
    train._on_event({"event": "start", "step": 0, "max_steps": 50, "device": "cpu",
                     "precision": "fp32", "params": 1000, "unit": "tokens", "run": run_dir})
    assert train.session.current_run == run_dir and train.run_dir == run_dir


def test_sample_now_takes_your_prompt_and_seed_and_previews_keep_following(qtbot, panels, trained_run,
                                                                           monkeypatch):
    shown = []
    monkeypatch.setattr(train_panel, "show_error", lambda parent, title, message: shown.append(message))
    _, train = panels
    run = copy_run(trained_run, train.session, "sampled")
    train.session.open_run(run)
    scheduled = train.previews.views[0].toPlainText()
    assert train.sample_button.isEnabled()
    train.sample_prompt.setText("ANNA:")
    train.sample_seed.setText("1234")
    train.sample_button.click()
    qtbot.waitUntil(lambda: "sampled now" in train.preview_label.text(), timeout=30_000)
    assert shown == []
    assert train.preview_label.text() == "sampled now from step_0000020 · seed 1234 · your prompt “ANNA:”"
    text = train.previews.views[0].toPlainText()
    assert text.startswith("[1] seed 1234\nANNA:") and text != scheduled
    qtbot.waitUntil(train.sample_button.isEnabled, timeout=5_000)

    train.sample_prompt.setText("")
    train.sample_seed.setText("")  # a new random seed, and the label says so
    train.sample_button.click()
    qtbot.waitUntil(lambda: "new random seed" in train.preview_label.text(), timeout=30_000)
    assert "no prompt" in train.preview_label.text()

    # the next scheduled preview replaces the sample: the panel still follows the latest
    save_samples(RunDir(run).previews_dir / "step_0000030", [Sample("text", "the step 30 preview", {"seed": 0})])
    train._on_event({"event": "preview", "step": 30, "path": "", "kinds": ["text"]})
    qtbot.waitUntil(lambda: "preview at step 30" in train.preview_label.text(), timeout=3_000)
    assert "the step 30 preview" in train.previews.views[0].toPlainText()

    train.sample_seed.setText("seven")
    train.sample_button.click()
    assert shown and "whole number" in shown[-1]


def test_a_deleted_run_is_let_go_and_cannot_be_resumed(qtbot, panels, trained_run, monkeypatch):
    _, train = panels
    monkeypatch.setattr(train.trainer, "start", lambda *args: pytest.fail("nothing may be started"))
    run = copy_run(trained_run, train.session, "doomed")
    RunDir(run).update(status="stopped")
    train.session.open_run(run)
    assert train.resume_button.isEnabled() and train.charts.steps
    shutil.rmtree(run)  # the Runs tab deletes it
    train.session.runs_changed.emit()  # the session moves on to the newest run (the text demo)
    assert train.run_dir == train.session.current_run != run
    assert "doomed" not in train.run_label.text() and not train.resume_button.isEnabled()
    assert "The run doomed was deleted" in train.notice.text() and train.notice.isVisible()

    other = copy_run(trained_run, train.session, "gone-behind-its-back")
    RunDir(other).update(status="stopped")
    train.session.open_run(other)
    shutil.rmtree(other)  # deleted outside the window: no signal
    train.resume_button.click()
    assert "gone-behind-its-back was deleted" in train.notice.text()
    assert not train.resume_button.isEnabled() and train.stats.text() != "starting…"
    assert train.charts.steps == [] and train.previews.views == [] and train.run_dir is None
    assert train.charts.lr_plot.geometry().height() > 0  # cleared, not collapsed


def test_a_resume_that_never_starts_says_why_and_returns_to_idle(qtbot, panels, tmp_path):
    _, train = panels
    titles = []
    train.progress_changed.connect(titles.append)
    run = train.session.runs_folder / "broken"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"generator": "text", "config": {"n_layer": "three"},
                                                 "train": {}}))
    RunDir(run).update(status="stopped", step=10)
    fill(train)
    train.session.open_run(str(run))
    assert train.resume_button.isEnabled()
    train.resume_button.click()
    assert train.stats.text() == "starting…"
    qtbot.waitUntil(lambda: not train.trainer.running, timeout=60_000)
    assert train.stats.text().startswith("could not start: ") and "n_layer" in train.stats.text()
    assert not train.error_box.isHidden() and "n_layer" in train.error_message.text()
    assert train.start_button.isEnabled() and not train.stop_button.isEnabled()
    assert titles[-1] == ""  # the title bar no longer says training is under way


def test_progress_for_the_window_title_and_shortcuts(qtbot, panels):
    _, train = panels
    titles = []
    train.progress_changed.connect(titles.append)
    train.hide()  # the title follows even while another tab is shown
    train._on_event({"event": "start", "max_steps": 200, "step": 0, "device": "cpu",
                     "precision": "fp32", "params": 1000, "unit": "tokens"})
    train._on_event({"event": "progress", "step": 45, "max_steps": 200, "loss": 2.0, "lr": 1e-3,
                     "items_per_s": None, "unit": "tokens", "eta_s": None})
    train.trainer.polled.emit()
    assert titles[-1] == "step 45/200 (22%)"
    train._on_event({"event": "paused", "step": 45})
    assert titles[-1] == "paused at 45/200"
    train.trainer.finished.emit(0, "stopped")
    assert titles[-1] == ""
    train.show()
    train._on_event({"event": "progress", "step": 50, "max_steps": 200, "loss": 2.0, "lr": 1e-3,
                     "items_per_s": None, "unit": "tokens", "eta_s": None})
    train.trainer.polled.emit()
    assert train.stats.text() == "step 50 / 200 · loss 2.0000"  # no rate yet: none shown
    keys = {shortcut.key().toString() for shortcut in train.findChildren(QShortcut)}
    assert QKeySequence("Ctrl+Return").toString() in keys
    assert QKeySequence("Ctrl+.").toString() not in keys  # the window's: it stops whatever runs


def test_an_empty_interval_says_it_is_scaled_to_the_runs_length(qtbot, panels):
    _, train = panels
    for name in ("eval_every", "preview_every", "checkpoint_every"):
        assert train.train_form.widgets[name].placeholderText() == "empty = scaled to max_steps"
    assert train.train_form.widgets["max_minutes"].placeholderText() == "empty = no limit"


def test_invalid_fields_stay_readable_on_the_dark_theme(qtbot, panels):
    from studio.gui import theme
    from studio.gui.config_form import INVALID_STYLES
    _, train = panels
    try:
        theme.apply_theme("dark")
        train.session.theme_changed.emit("dark")
        train.gen_form.set_values({"n_layer": "three"})
        field = train.gen_form.widgets["n_layer"]
        assert field.styleSheet() == INVALID_STYLES["dark"] and "#4a2222" in field.styleSheet()
        theme.apply_theme("light")
        train.session.theme_changed.emit("light")  # an invalid field shown before takes the new colours
        assert field.styleSheet() == INVALID_STYLES["light"]
        assert train.gen_form.widgets["n_head"].styleSheet() == ""
    finally:
        theme.apply_theme("light")


def test_resume_of_a_run_another_process_trains_says_which_and_starts_nothing(qtbot, panels, trained_run,
                                                                              tmp_path, monkeypatch):
    """The window takes the same lock as the command line: a run being trained elsewhere (here:
    this process holds its lock) is not resumed a second time."""
    _, train = panels
    copy = tmp_path / "busy"
    shutil.copytree(trained_run, copy)
    errors = []
    monkeypatch.setattr(train_panel, "show_error", lambda parent, title, text: errors.append((title, text)))
    holder = RunDir(copy)
    holder.lock()
    try:
        train.resume_run(str(copy))
        assert not train.trainer.running
        assert errors and errors[0][0] == "Run in use"
        assert f"process {os.getpid()}" in errors[0][1] and "--" not in errors[0][1]
    finally:
        holder.unlock()
    train.resume_run(str(copy))  # free again: it resumes
    assert train.trainer.running
    train.trainer.kill()


def test_a_run_whose_process_died_reads_interrupted_and_can_be_resumed(qtbot, panels, trained_run, tmp_path):
    """run.json still says "running" (its process was killed): the panel says interrupted, as
    the Runs tab does, and offers Resume."""
    _, train = panels
    copy = tmp_path / "killed"
    shutil.copytree(trained_run, copy)
    RunDir(copy).update(status="running", pid=os.getpid())  # no process holds its lock
    train.show_run(str(copy))
    assert train.stats.text().startswith("interrupted")
    assert train.resume_button.isEnabled()
