"""The main window: panels load after it shows, the generator picker, plugins, settings,
closing while training, and previews of images and video from any generator."""

import numpy as np
import pytest

from studio.contract import Sample
from studio.gui import window as window_module
from studio.gui.session import Session
from studio.gui.settings import Settings
from studio.gui.views import ImageView, SampleGrid, TextView, VideoPlayer
from studio.registry import GeneratorEntry, Registry, default_registry


@pytest.fixture
def session(tmp_path):
    return Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="text"))


def open_window(qtbot, session):
    win = window_module.MainWindow(session)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.train_panel is not None, timeout=60_000)
    return win


def test_window_builds_every_panel_and_lists_generators(qtbot, session):
    win = open_window(qtbot, session)
    tabs = [win.tabs.tabText(i).replace("&", "") for i in range(win.tabs.count())]
    assert tabs == ["Data", "Train", "Generate", "Runs"]
    names = [win.picker.itemData(i) for i in range(win.picker.count())]
    assert "text" in names and win.picker.currentData() == "text"
    assert "text — text" in win.picker.currentText()


def test_broken_plugin_shows_in_the_plugins_dialog(qtbot, tmp_path):
    registry = Registry([GeneratorEntry("text", "generators.text:TextGenerator", "aigc-studio"),
                         GeneratorEntry("broken", "no_such_module_abc:Gen", "broken-plugin")])
    session = Session(Settings(runs_folder=str(tmp_path / "runs")), registry)
    win = open_window(qtbot, session)
    assert "1 broken" in win.plugins_button.text()
    dialog = window_module.PluginsDialog(session, win)
    qtbot.addWidget(dialog)
    rows = {dialog.table.item(r, 0).text(): r for r in range(dialog.table.rowCount())}
    broken = rows["broken"]
    assert dialog.table.item(broken, 3).text() == "broken"
    assert "ModuleNotFoundError" in dialog.table.item(broken, 4).text()
    assert dialog.table.item(rows["text"], 3).text() == "ok"
    names = [win.picker.itemData(i) for i in range(win.picker.count())]
    assert names == ["text"]  # the broken one is not offered


def test_settings_and_geometry_persist(qtbot, session, tmp_path):
    win = open_window(qtbot, session)
    win.resize(900, 650)  # within the offscreen screen, which clamps wider windows
    size_at_close = (win.width(), win.height())
    dialog = window_module.SettingsDialog(session, win)
    dialog.runs_folder.setText(str(tmp_path / "elsewhere"))
    dialog.device.setCurrentText("cpu")
    dialog.apply()
    win.close()
    again = Settings.load()
    assert again.runs_folder == str(tmp_path / "elsewhere") and again.default_device == "cpu"
    win2 = window_module.MainWindow(Session(again))
    qtbot.addWidget(win2)
    assert again.geometry  # saved on close
    assert (win2.width(), win2.height()) == size_at_close != (1280, 820)  # restored, not the default


def test_closing_while_training_asks_and_stops_with_a_checkpoint(qtbot, session, monkeypatch):
    win = open_window(qtbot, session)
    train = win.train_panel
    train.gen_form.set_values({"n_layer": "1", "n_head": "2", "n_embd": "16", "block_size": "16"})
    train.train_form.set_values({"max_steps": "100000", "log_every": "5", "eval_every": "0",
                                 "preview_every": "0", "checkpoint_every": "0"})
    train.device.setCurrentText("cpu")
    qtbot.waitUntil(lambda: win.data_panel.report is not None, timeout=60_000)
    train.start_button.click()
    qtbot.waitUntil(lambda: len(train.charts.steps) >= 2, timeout=60_000)
    asked = []
    monkeypatch.setattr(window_module, "ask_on_close", lambda parent: asked.append(1) or "cancel")
    win.close()
    assert asked and win.isVisible() and train.trainer.running  # cancel keeps everything
    monkeypatch.setattr(window_module, "ask_on_close", lambda parent: "stop")
    win.close()
    assert not train.trainer.running
    from studio.runstore import RunDir
    run = RunDir(train.run_dir)
    assert run.info()["status"] == "stopped" and run.checkpoints()


def test_progress_text_repaints_only_itself_not_the_window(qtbot, session):
    """It changes every second while training; a plain label asked the layouts to recompute
    and the whole window was repainted each time."""
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QWidget
    win = open_window(qtbot, session)
    qtbot.waitUntil(lambda: win.data_panel.report is not None, timeout=60_000)  # done loading
    train = win.train_panel
    win.tabs.setCurrentWidget(train)
    qtbot.waitExposed(train)
    train.progress.setRange(0, 100)
    qtbot.wait(300)

    class Painted(QObject):
        widgets = set()

        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.Paint:
                self.widgets.add(obj)
            return False
    painted = Painted()
    for widget in [win, *win.findChildren(QWidget)]:
        widget.installEventFilter(painted)
    for step in (10, 20):
        train._on_event({"event": "progress", "step": step, "max_steps": 100, "loss": 1.5,
                         "lr": 1e-3, "items_per_s": 12345.0, "unit": "tokens", "eta_s": 80})
        train.charts.dirty = False  # the charts' own repaint is not what this test is about
        train._refresh_display()
        qtbot.wait(100)
    assert "step 20 / 100" in train.stats.text() and train.progress.value() == 20
    behind = set()  # the panels under the two, which paint the background of their rectangles
    for widget in (train.stats, train.progress):
        while widget is not None:
            behind.add(widget)
            widget = widget.parentWidget()
    assert {train.stats, train.progress} <= painted.widgets <= behind


def test_views_show_text_images_and_video(qtbot):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    grey = rng.integers(0, 255, (28, 28, 1), dtype=np.uint8)
    video = rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    grid = SampleGrid()
    qtbot.addWidget(grid)
    grid.set_samples([Sample("text", "hello"), Sample("image", image), Sample("image", grey),
                      Sample("video", video)])
    kinds = [type(v) for v in grid.views]
    assert kinds == [TextView, ImageView, ImageView, VideoPlayer]
    assert grid.views[0].toPlainText() == "hello"
    assert not grid.views[1].pixmap().isNull() and grid.views[2].pixmap().width() > 0
    player = grid.views[3]
    assert player.slider.maximum() == 5 and player.playing
    player.toggle()
    assert not player.playing
    player.slider.setValue(4)
    assert player.slider.value() == 4
    grid.set_samples([], "nothing yet")
    assert grid.views == []


def test_new_samples_of_the_same_kinds_go_into_the_views_already_shown(qtbot):
    """Each preview during training replaces the last: the views are reused, not rebuilt."""
    rng = np.random.default_rng(0)
    image = lambda: rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    grid = SampleGrid()
    qtbot.addWidget(grid)
    grid.set_samples([Sample("text", "first"), Sample("image", image())])
    views = list(grid.views)
    newer = image()
    grid.set_samples([Sample("text", "second"), Sample("image", newer)])
    assert grid.views == views and grid.views[0].toPlainText() == "second"
    assert grid.views[1].array is newer
    grid.set_samples([Sample("image", image()), Sample("text", "kinds swapped")])
    assert [type(v) for v in grid.views] == [ImageView, TextView] and grid.views[0] is not views[1]
    grid.set_samples([Sample("text", "one fewer")])
    assert len(grid.views) == 1 and grid.views[0].toPlainText() == "one fewer"


def test_training_previews_of_an_image_generator_render(qtbot, tmp_path):
    """A generator that returns images gets live previews with no window-specific code."""
    from studio import api
    from studio.gui.train_panel import TrainPanel
    from toy_generators import ToyImageGenerator
    default_registry().add("toy-image", ToyImageGenerator)
    status, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "runs" / "toy"),
                            max_steps=10, events="none",
                            settings=["device=cpu", "preview_every=5", "eval_every=5"])
    session = Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="toy-image"))
    panel = TrainPanel(session)
    qtbot.addWidget(panel)
    panel.run_dir = str(run.path)
    panel._refresh_previews()
    assert panel.preview_steps == [5, 10]
    assert all(isinstance(v, ImageView) for v in panel.previews.views) and panel.previews.views
    panel.scrubber.setValue(0)
    assert "step 5" in panel.preview_label.text()
