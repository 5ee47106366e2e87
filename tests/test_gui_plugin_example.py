"""The example plugin (examples/studio-charlstm) in the window, driven as a user would: picked
in the generator picker, trained with its `tiny` preset by a real child process, stopped,
resumed from the Runs tab, and sampled in the Generate tab. It is installed as pip would
(tests/test_plugin_new.py's install: a dist-info with its entry point), seen by this process
and, through PYTHONPATH, by the training child."""

import json
import os
import sys

import pytest

from conftest import ROOT
from generate_panel_support import errors  # noqa: F401 (a fixture)
from studio import api
from studio import registry as registry_module
from studio.gui.session import Session
from studio.gui.settings import Settings
from studio.runstore import RunDir
from test_gui_window import open_window
from test_plugin_new import install

EXAMPLE = ROOT / "examples" / "studio-charlstm"


@pytest.fixture
def charlstm(tmp_path, monkeypatch):
    """The example plugin installed for this test only: on sys.path, in a registry discovered
    afresh, and in the environment the training child inherits."""
    before = set(sys.modules)
    env = install(EXAMPLE, tmp_path / "site")
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for folder in reversed(env["PYTHONPATH"].split(os.pathsep)):
        monkeypatch.syspath_prepend(folder)
    monkeypatch.setattr(registry_module, "_default", None)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("studio_charlstm"):
            del sys.modules[name]


def steps_trained(run_dir: str) -> int:
    return RunDir(run_dir).checkpoints()[-1].step


def test_the_example_plugin_trains_resumes_and_generates_in_the_window(qtbot, charlstm, corpus,
                                                                       tmp_path, errors):
    session = Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="text",
                               default_device="cpu"))
    win = open_window(qtbot, session)
    names = [win.picker.itemData(i) for i in range(win.picker.count())]
    assert "charlstm" in names, names
    win.picker.setCurrentIndex(names.index("charlstm"))
    assert session.generator == "charlstm"
    train = win.train_panel
    assert "hidden" in train.gen_form.widgets  # the plugin's own settings

    win.data_panel.set_source(str(corpus))
    qtbot.waitUntil(lambda: win.data_panel.report is not None, timeout=60_000)
    assert win.data_panel.problem is None, win.data_panel.problem
    tiny = train.preset.findText("tiny")
    train.preset.setCurrentIndex(tiny)
    train.preset.activated.emit(tiny)  # as a click on the entry does
    assert train.gen_form.config_values()["hidden"] == 32
    train.train_form.set_values({"max_steps": "100000", "log_every": "1", "eval_every": "0",
                                 "preview_every": "0", "checkpoint_every": "0"})
    train.device.setCurrentText("cpu")
    assert train.start_button.isEnabled(), train.problem.text()

    # Train a few steps, then stop (a checkpoint is written).
    train.start_button.click()
    qtbot.waitUntil(lambda: len(train.charts.steps) >= 3 or not train.trainer.running,
                    timeout=60_000)
    assert train.trainer.running, train.error_message.text() + train.error_log.toPlainText()
    run_dir = train.run_dir
    train.stop_button.click()
    qtbot.waitUntil(lambda: not train.trainer.running, timeout=60_000)
    assert RunDir(run_dir).status() == "stopped"
    stopped_at = steps_trained(run_dir)
    assert stopped_at >= 3

    # Resume it from the Runs tab: training goes on from the checkpoint, in the Train tab.
    win.tabs.setCurrentWidget(win.runs_panel)
    win.runs_panel.refresh()
    win.runs_panel.select_runs([run_dir])
    assert win.runs_panel.resume_button.isEnabled(), win.runs_panel.resume_button.toolTip()
    win.runs_panel.resume_button.click()
    assert win.tabs.currentWidget() is train and train.trainer.running
    qtbot.waitUntil(lambda: (train.charts.steps and train.charts.steps[-1] >= stopped_at + 3)
                    or not train.trainer.running, timeout=60_000)
    assert train.trainer.running, train.error_message.text() + train.error_log.toPlainText()
    train.stop_button.click()
    qtbot.waitUntil(lambda: not train.trainer.running, timeout=60_000)
    assert RunDir(run_dir).status() == "stopped" and steps_trained(run_dir) >= stopped_at + 3

    # Generate from the run's last checkpoint: text of the plugin's vocabulary.
    win.tabs.setCurrentWidget(win.generate_panel)
    panel = win.generate_panel
    assert panel.selected_run() == run_dir
    panel.form.widgets["length"].setText("40")
    assert panel.generate_button.isEnabled(), panel.problem()
    panel.generate_button.click()
    qtbot.waitUntil(lambda: not panel.busy, timeout=60_000)
    assert errors == []
    entry = panel.history[-1]
    assert entry.lineage["generator"] == "charlstm"
    assert entry.lineage["checkpoint"] == RunDir(run_dir).checkpoints()[-1].name
    text = panel.text_view.toPlainText()
    assert text == entry.samples[0].data and len(text) == 40
    # The text `studio generate` gives for the same seed: no newline put before it (the
    # built-in text generator's start) when the plugin's own sample starts with none.
    assert text == api.generate(run_dir, seed=panel.seed_spin.value(), device="cpu",
                                settings=["length=40"])[0].data
    vocab = json.loads(next(RunDir(run_dir).path.rglob("vocab.json")).read_text())
    assert set(vocab) == set(corpus.read_text()) and set(text) <= set(vocab), text
