"""Every dialog of the window opens, paints and closes, in the light and the dark theme.

A dialog over the Train panel once killed the process in the dark theme (an attribute of the
charts hid Qt's metric(); see test_gui_qt_names.py), and the theme was saved, so every later
launch died too. Modal dialogs are found from a timer while they run and closed from there:
no test waits on a person.
"""

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialog, QMessageBox

from studio import api
from studio.gui import theme
from studio.gui import window as window_module
from studio.gui.session import Session
from studio.gui.settings import Settings


class ModalCloser:
    """Waits for the next modal dialog, paints it (`grab()`) and closes it."""

    def __init__(self):
        self.seen: list[tuple[str, str]] = []
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self._poll)

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()

    def _poll(self) -> None:
        dialog = QApplication.activeModalWidget()
        if dialog is None:
            return
        self.timer.stop()
        assert not dialog.grab().isNull()
        self.seen.append((type(dialog).__name__, dialog.windowTitle()))
        dialog.reject()


@pytest.fixture(params=["light", "dark"])
def themed_window(request, qtbot, tmp_path):
    # Qt's own file dialog (a native one could not be closed from here); offscreen has no
    # native dialogs anyway.
    QApplication.setAttribute(Qt.ApplicationAttribute.AA_DontUseNativeDialogs, True)
    session = Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="text"))
    win = window_module.MainWindow(session)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.train_panel is not None, timeout=60_000)
    settings = window_module.SettingsDialog(session, win)  # as a person sets it: File › Settings
    settings.theme.setCurrentText(request.param)
    settings.apply()
    settings.deleteLater()
    assert theme.current() == request.param
    yield win
    theme.apply_theme("light")


def test_window_dialogs_open_paint_and_close(themed_window):
    win = themed_window
    for open_dialog in (win.show_settings, win.show_plugins, win.show_about, win.show_shortcuts):
        with ModalCloser() as closer:
            open_dialog()
        assert len(closer.seen) == 1
    with ModalCloser() as closer:
        assert window_module.ask_on_close(win) == "cancel"  # closing while training
    titles = [title for _, title in closer.seen]
    assert titles == ["Training is running"]


def test_train_panel_preset_file_dialogs_open_paint_and_close_over_the_charts(themed_window, qtbot):
    win = themed_window
    train = win.train_panel
    win.tabs.setCurrentWidget(train)
    qtbot.waitExposed(train)
    train.charts.add({"event": "progress", "step": 10, "loss": 2.0, "lr": 1e-3,
                      "items_per_s": 100.0, "max_steps": 100})
    train.charts.redraw()
    for button in (train.save_preset, train.load_preset):
        with ModalCloser() as closer:
            button.click()
        assert [kind for kind, _ in closer.seen] == ["QFileDialog"]
    assert not win.grab().isNull()  # the window under them paints afterwards too


def test_runs_panel_duplicate_and_compare_dialogs_open_paint_and_close(themed_window, qtbot):
    win = themed_window
    runs = win.runs_panel
    win.tabs.setCurrentWidget(runs)
    runs.refresh()
    demos = [str(path) for path in api.demo_runs()]
    runs.select_runs(demos[:1])
    runs.duplicate_selected()
    dialog = runs.duplicate_dialog
    qtbot.waitExposed(dialog)
    assert isinstance(dialog, QDialog) and not dialog.grab().isNull()
    dialog.reject()
    runs.select_runs(demos)
    assert len(runs.selected_rows()) == len(demos) >= 2
    runs.compare_selected()
    compare = runs.compare_dialog
    qtbot.waitExposed(compare)
    assert not compare.grab().isNull()
    compare.close()


def test_every_tab_paints_in_the_theme(themed_window, qtbot):
    win = themed_window
    for index in range(win.tabs.count()):
        win.tabs.setCurrentIndex(index)
        qtbot.waitExposed(win.tabs.currentWidget())
        assert not win.grab().isNull()


def test_switching_themes_back_and_forth_keeps_the_window_alive(themed_window, qtbot):
    win = themed_window
    changes = []
    win.session.theme_changed.connect(changes.append)
    for name in ("dark", "light", "dark", "system", "dark"):
        dialog = window_module.SettingsDialog(win.session, win)
        dialog.theme.setCurrentText(name)
        dialog.apply()
        assert theme.current() == ("dark" if name == "dark" else "light")
        assert not win.grab().isNull()
    assert changes[-1] == "dark" and all(a != b for a, b in zip(changes, changes[1:]))
    with ModalCloser() as closer:
        QMessageBox.information(win, "Still here", "ok")
    assert closer.seen == [("QMessageBox", "Still here")]


def test_every_widget_answers_qt_s_questions_about_it_in_both_themes(tmp_path):
    """What killed the process: Qt asking a widget for its metrics (dots per inch, pixel ratio;
    it does when a dialog opens over it or the theme changes) and finding a Python attribute
    where the method should be. A crash takes the process down, so this runs in its own."""
    import os
    import subprocess
    import sys
    script = (
        "import time\n"
        "from PySide6.QtWidgets import QApplication, QWidget\n"
        "app = QApplication([])\n"
        "from studio.gui import theme\n"
        "from studio.gui.window import MainWindow\n"
        "win = MainWindow()\n"
        "win.show()\n"
        "deadline = time.time() + 120\n"
        "while win.train_panel is None and time.time() < deadline:\n"
        "    app.processEvents()\n"
        "for name in ('light', 'dark'):\n"
        "    theme.apply_theme(name)\n"
        "    for widget in [win, *win.findChildren(QWidget)]:\n"
        "        widget.logicalDpiX(), widget.devicePixelRatioF(), widget.widthMM()\n"
        "print('asked', len(win.findChildren(QWidget)), 'widgets')\n")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "STUDIO_CONFIG_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0 and "asked" in out.stdout, \
        f"the window died (exit {out.returncode}); see test_gui_qt_names.py. {out.stderr[-2000:]}"
