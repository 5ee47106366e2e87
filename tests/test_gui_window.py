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
    assert tabs == ["Data", "Train", "Generate", "Runs", "Compose"]
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


# --- work off the GUI thread ---------------------------------------------------------------------

def test_a_task_that_raises_systemexit_reports_failure_instead_of_leaving_the_window_waiting(qtbot):
    from studio.gui import workers

    def plugin_code(ctx):
        raise SystemExit(3)  # a plugin calling sys.exit() in the worker thread
    task = workers.Task(plugin_code)
    failures = []
    task.signals.failed.connect(failures.append)
    with qtbot.waitSignal(task.signals.finished, timeout=10_000):
        workers.start(task)
    assert failures == ["SystemExit: 3"]


# --- a launch after a crash -------------------------------------------------------------------

def test_a_launch_after_one_that_crashed_starts_with_the_default_look_and_says_so(tmp_path):
    from studio.gui.settings import LaunchGuard, config_dir
    Settings(runs_folder=str(tmp_path / "my-runs"), theme="dark", data_source=str(tmp_path),
             geometry="AAAA").save()
    first = LaunchGuard()
    assert first.begin() is None  # a clean start: nothing to say, nothing reset
    assert Settings.load().theme == "dark"
    # ...and the process dies in Qt's code: end() never runs, its marker stays behind.
    marker = config_dir() / "window-running.json"
    marker.write_text('{"pid": 999999999}', encoding="utf-8")  # no such process any more

    notice = LaunchGuard().begin()
    assert notice and "default look" in notice and "'dark'" in notice
    restored = Settings.load()
    assert restored.theme == "system" and restored.geometry == ""  # the look is reset...
    assert restored.runs_folder == str(tmp_path / "my-runs")  # ...the rest is kept
    assert restored.data_source == str(tmp_path)
    import json
    backup = json.loads((config_dir() / "settings.before-crash.json").read_text(encoding="utf-8"))
    assert backup["theme"] == "dark" and str(config_dir() / "settings.before-crash.json") in notice


def test_a_window_that_closes_normally_leaves_no_marker_and_the_next_launch_keeps_the_theme(qtbot):
    from studio.gui.settings import LaunchGuard
    Settings(theme="dark").save()
    guard = LaunchGuard()
    win = window_module.open_window(guard)
    qtbot.addWidget(win)
    assert win.notice.text() == window_module.FIRST_STEPS  # no crash to report: the first-steps hint
    guard.end()
    assert not guard.marker.exists()
    assert LaunchGuard().begin() is None and Settings.load().theme == "dark"
    window_module.theme.apply_theme("light")


def test_the_window_shows_the_notice_of_a_crashed_launch(qtbot):
    from studio.gui.settings import LaunchGuard
    Settings(theme="dark").save()
    guard = LaunchGuard()
    guard.folder.mkdir(parents=True, exist_ok=True)
    guard.marker.write_text('{"pid": 999999999}', encoding="utf-8")
    win = window_module.open_window(guard)
    qtbot.addWidget(win)
    assert "did not close normally" in win.notice.text() and win.notice_bar.isVisibleTo(win)
    assert window_module.theme.current() == "light"
    guard.end()


# --- the dark theme -----------------------------------------------------------------------------

def _brightest(widget) -> int:
    image = widget.grab().toImage()
    return max(image.pixelColor(x, y).lightness()
               for x in range(image.width()) for y in range(image.height()))


def test_dark_theme_from_settings_dims_disabled_buttons_and_shows_radio_buttons(qtbot, session):
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QApplication, QPushButton, QRadioButton
    themes = []
    session.theme_changed.connect(themes.append)
    dialog = window_module.SettingsDialog(session)
    qtbot.addWidget(dialog)
    dialog.theme.setCurrentText("dark")
    try:
        dialog.apply()
        assert themes == ["dark"] and Settings.load().theme == "dark"
        palette = QApplication.instance().palette()
        enabled = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.ButtonText)
        disabled = palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText)
        assert enabled.lightness() - disabled.lightness() > 60
        # What a person sees: the disabled button's text is clearly dimmer when drawn.
        on, off = QPushButton("Resume"), QPushButton("Resume")
        off.setEnabled(False)
        for button in (on, off):
            qtbot.addWidget(button)
            button.resize(120, 30)
        assert _brightest(on) - _brightest(off) > 60
        # A radio button's circle stands out from the window behind it.
        radio = QRadioButton("")
        qtbot.addWidget(radio)
        radio.resize(24, 24)
        window = palette.color(QPalette.ColorRole.Window).lightness()
        image = radio.grab().toImage()
        contrast = max(abs(image.pixelColor(x, y).lightness() - window)
                       for x in range(image.width()) for y in range(image.height()))
        assert contrast > 40
    finally:
        window_module.theme.apply_theme("light")


# --- first launch -------------------------------------------------------------------------------

def test_the_generator_list_is_shown_before_torch_is_imported(tmp_path):
    """Filling the picker waited for the background import of torch (6-10 s on a cold start)."""
    import os
    import subprocess
    import sys
    script = (
        "import sys\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from studio.gui.window import MainWindow, FIRST_STEPS\n"
        "win = MainWindow()\n"
        "win.show()\n"
        "names = [win.picker.itemData(i) for i in range(win.picker.count())]\n"
        "print('torch' in sys.modules, sorted(names), win.notice.text() == FIRST_STEPS)\n")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "STUDIO_CONFIG_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "False ['image', 'text', 'video'] True"


# --- Help and File menus, window-wide keys ------------------------------------------------------

def _menu_action(win, menu_title: str, text: str):
    menu = next(a.menu() for a in win.menuBar().actions() if a.text().replace("&", "") == menu_title)
    return next(a for a in menu.actions() if a.text().replace("&", "") == text)


def test_help_menu_lists_shortcuts_versions_and_opens_the_readme(qtbot, session, monkeypatch):
    import importlib.metadata
    from PySide6.QtCore import QUrl
    win = open_window(qtbot, session)
    dialog = window_module.ShortcutsDialog(win)
    qtbot.addWidget(dialog)
    listed = {dialog.findChild(window_module.QTableWidget).item(r, 0).text()
              for r in range(len(window_module.SHORTCUTS))}
    assert {"Ctrl+Enter", "Ctrl+.", "Ctrl+G", "Ctrl+Q", "F1"} <= listed
    assert _menu_action(win, "Help", "Keyboard shortcuts").shortcut().toString() == "F1"

    about = window_module.AboutDialog(session, load_plugins=True, parent=win)
    qtbot.addWidget(about)
    versions = dict(about.versions)
    assert versions["torch"] == importlib.metadata.version("torch")
    assert versions["pyqtgraph"] == importlib.metadata.version("pyqtgraph")
    import PySide6
    assert versions["PySide6 / Qt"].startswith(f"{PySide6.__version__} / Qt 6") and versions["AIGC Studio"]
    assert versions["plugin 'text'"].startswith("text ") and "aigc-studio" in versions["plugin 'text'"]

    opened = []
    monkeypatch.setattr(window_module.QDesktopServices, "openUrl", staticmethod(opened.append))
    _menu_action(win, "Help", "README").trigger()
    assert opened and opened[-1] == QUrl.fromLocalFile(str(window_module.README))
    assert window_module.README.exists()


def test_open_run_folder_opens_the_current_run_and_is_disabled_without_one(qtbot, session, monkeypatch):
    from pathlib import Path
    from PySide6.QtCore import QUrl
    opened = []
    monkeypatch.setattr(window_module.QDesktopServices, "openUrl", staticmethod(opened.append))
    win = open_window(qtbot, session)
    action = _menu_action(win, "File", "Open run folder")
    assert session.current_run and action.isEnabled()  # the text demo run at start
    action.trigger()
    assert opened == [QUrl.fromLocalFile(str(Path(session.current_run).resolve()))]
    session.open_run(None)
    assert not action.isEnabled() and win.windowTitle() == "AIGC Studio"


def test_ctrl_period_stops_training_if_it_runs_else_the_generation_from_any_tab(qtbot, session, monkeypatch):
    from PySide6.QtCore import Qt
    win = open_window(qtbot, session)
    qtbot.waitExposed(win)
    win.activateWindow()
    calls = []
    monkeypatch.setattr(win.train_panel, "stop", lambda: calls.append("training"))
    monkeypatch.setattr(win.generate_panel, "stop", lambda: calls.append("generation"))
    running = {"train": False}
    monkeypatch.setattr(type(win.train_panel.trainer), "running",
                        property(lambda self: running["train"]))
    monkeypatch.setattr(type(win.generate_panel), "busy", property(lambda self: True))
    for tab in (win.data_panel, win.runs_panel):
        win.tabs.setCurrentWidget(tab)
        qtbot.keyClick(win.tabs.currentWidget(), Qt.Key.Key_Period, Qt.KeyboardModifier.ControlModifier)
    assert calls == ["generation", "generation"]
    running["train"] = True
    win.tabs.setCurrentWidget(win.generate_panel)
    qtbot.keyClick(win.generate_panel, Qt.Key.Key_Period, Qt.KeyboardModifier.ControlModifier)
    running["train"] = False  # closing the window must not ask about a training that is not there
    assert calls[-1] == "training"


def test_the_toolbar_fits_the_smallest_window(qtbot, session):
    win = open_window(qtbot, session)
    win.resize(900, 600)
    qtbot.waitUntil(lambda: win.width() == 900)
    for widget in (win.picker, win.plugins_button):
        assert widget.isVisible()
        right = widget.mapTo(win, widget.rect().topRight()).x()
        assert right < win.width()
    assert (win.minimumWidth(), win.minimumHeight()) == (900, 600)


# --- the chosen data is remembered ---------------------------------------------------------------

def test_the_chosen_data_is_remembered_for_the_next_launch(tmp_path, corpus):
    first = Session(Settings(runs_folder=str(tmp_path / "runs")))
    first.set_data(str(corpus))
    again = Session(Settings.load())
    assert again.data_source == str(corpus) and again.data_note is None
    corpus.unlink()
    gone = Session(Settings.load())
    assert gone.data_source is None and str(corpus) in gone.data_note and "built-in" in gone.data_note


def test_the_window_opens_on_the_remembered_data(qtbot, tmp_path, corpus):
    Settings(runs_folder=str(tmp_path / "runs"), data_source=str(corpus)).save()
    win = open_window(qtbot, Session(Settings.load()))
    assert win.data_panel.source() == str(corpus) and win.data_panel.own.isChecked()


# --- `studio` without a usable display ------------------------------------------------------------

def test_studio_without_a_display_says_how_to_run_it_instead_of_aborting(tmp_path):
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = subprocess.run([sys.executable, "-m", "studio"], capture_output=True, text=True,
                         env={**env, "STUDIO_CONFIG_DIR": str(tmp_path)}, timeout=120)
    assert out.returncode == 2
    assert "no display" in out.stderr and "xvfb-run -a studio" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_x11_libraries_are_named_with_the_apt_line(tmp_path, monkeypatch):
    import ctypes
    import shutil
    from studio import cli
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")

    def cannot_load(path):
        raise OSError("libxcb-cursor.so.0: cannot open shared object file: No such file or directory")
    monkeypatch.setattr(ctypes, "CDLL", cannot_load)
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no ldd: the loader's message is used
    message = cli.display_problem({"DISPLAY": ":0"}, "linux", plugin)
    assert "libxcb-cursor.so.0" in message and cli.XCB_APT_LINE in message
    assert cli.XCB_APT_LINE.startswith("sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1 "
                                       "libxcb-cursor0 libxkbcommon-x11-0 libgl1 libegl1")
    monkeypatch.setattr(ctypes, "CDLL", lambda path: None)
    assert cli.display_problem({"DISPLAY": ":0"}, "linux", plugin) is None  # it loads
    assert cli.display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux", plugin) is None


def test_settings_show_a_whole_runs_folder_path(qtbot, session):
    """The runs folder field was as narrow as its label column: a path read "np/hand/config/runs"."""
    dialog = window_module.SettingsDialog(session)
    qtbot.addWidget(dialog)
    path = "/home/someone/.local/share/aigc-studio/runs"  # the usual place on Linux
    dialog.runs_folder.setText(path)
    dialog.show()
    qtbot.waitExposed(dialog)
    field = dialog.runs_folder
    assert field.width() > field.fontMetrics().horizontalAdvance(path)
