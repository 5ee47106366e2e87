"""One current run: the toolbar, the title bar, Train, Generate and Ctrl+G agree on it.

The toolbar once showed text while Generate showed the image demo, and Ctrl+G from Train
generated an image.
"""

import pytest
from PySide6.QtCore import Qt

from studio import api
from studio.gui import window as window_module
from studio.gui.session import Session
from studio.gui.settings import Settings

TINY = ["n_layer=1", "n_head=2", "n_embd=16", "block_size=16", "device=cpu", "eval_every=0",
        "preview_every=0", "checkpoint_every=1000", "log_every=1", "warmup_steps=1"]


@pytest.fixture
def text_run(tmp_path, corpus):
    """A run of our own of the text generator; the runs folder has no image run."""
    status, run = api.train("text", data=str(corpus), run_dir=str(tmp_path / "runs" / "mine"),
                            settings=TINY, max_steps=2, events="none", name="my sea story")
    assert status == "done"
    return str(run.path)


@pytest.fixture
def win(qtbot, tmp_path, text_run):
    session = Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="image"))
    window = window_module.MainWindow(session)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.train_panel is not None, timeout=60_000)
    return window


def image_demo() -> str:
    return next(str(p) for p in api.demo_runs() if p.name == "image")


def test_at_start_the_current_run_is_the_newest_of_the_chosen_generator(win):
    assert win.session.current_run == image_demo()  # no image run of our own: its demo run
    assert win.generate_panel.selected_run() == image_demo()
    assert win.windowTitle() == "AIGC Studio — image demo"
    assert win.picker.currentData() == "image"


def test_picking_text_in_the_toolbar_moves_every_panel_and_the_title_to_a_text_run(win, text_run, qtbot):
    win.picker.setCurrentIndex(win.picker.findData("text"))
    assert win.session.generator == "text"
    assert win.session.current_run == text_run  # our own run comes before the text demo
    assert win.generate_panel.selected_run() == text_run
    assert win.windowTitle() == "AIGC Studio — my sea story"

    # Ctrl+G from the Train tab: Generate, from that run, text.
    win.tabs.setCurrentWidget(win.train_panel)
    qtbot.waitExposed(win.train_panel)
    win.activateWindow()
    with qtbot.waitSignal(win.generate_panel.generation_finished, timeout=120_000) as finished:
        qtbot.keyClick(win.train_panel, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)
        assert win.tabs.currentWidget() is win.generate_panel
    entry = finished.args[0]
    assert entry.kind == "text" and entry.lineage["run"] == text_run


def test_opening_a_run_of_another_generator_in_runs_shows_it_in_train_and_moves_the_picker(win, text_run):
    win.tabs.setCurrentWidget(win.runs_panel)
    win.runs_panel.refresh()
    win.runs_panel.select_runs([text_run])
    win.runs_panel.open_selected()
    assert win.tabs.currentWidget() is win.train_panel  # not Generate, blindly
    assert win.picker.currentData() == "text" and win.session.generator == "text"
    assert win.generate_panel.selected_run() == text_run
    assert win.windowTitle() == "AIGC Studio — my sea story"
    # Choosing a run in Generate does not pull the window to Train.
    win.tabs.setCurrentWidget(win.generate_panel)
    win.session.open_run(image_demo())
    assert win.tabs.currentWidget() is win.generate_panel and win.picker.currentData() == "image"


def test_training_progress_shows_in_the_title_bar(win):
    win.train_panel.progress_changed.emit("step 45/200 (22%)")
    assert win.windowTitle() == "AIGC Studio — image demo — training step 45/200 (22%)"
    win.train_panel.progress_changed.emit("")
    assert win.windowTitle() == "AIGC Studio — image demo"


def test_the_first_steps_hint_is_shown_until_a_run_exists(qtbot, tmp_path, text_run):
    fresh = window_module.MainWindow(Session(Settings(runs_folder=str(tmp_path / "empty"))))
    qtbot.addWidget(fresh)
    assert fresh.notice.text() == window_module.FIRST_STEPS and not fresh.notice_bar.isHidden()
    fresh._training_started(str(tmp_path / "empty" / "new-run"))  # what Start reports
    assert fresh.notice_bar.isHidden()
    with_runs = window_module.MainWindow(Session(Settings(runs_folder=str(tmp_path / "runs"))))
    qtbot.addWidget(with_runs)
    assert with_runs.notice_bar.isHidden()


def test_deleting_the_current_run_moves_everything_to_the_next_run_of_the_generator(win, text_run):
    import shutil
    win.session.open_run(text_run)
    moved = []
    win.session.run_changed.connect(moved.append)
    shutil.rmtree(text_run)
    win.session.runs_changed.emit()  # what the Runs panel says after deleting
    text_demo = next(str(p) for p in api.demo_runs() if p.name == "text")
    assert win.session.current_run == text_demo and moved == [text_demo]
    assert win.generate_panel.selected_run() == text_demo
    assert win.windowTitle() == "AIGC Studio — text demo"


def test_ctrl_and_a_number_shows_that_tab(win, qtbot):
    win.activateWindow()
    for number, panel in ((3, win.generate_panel), (1, win.data_panel), (4, win.runs_panel),
                          (2, win.train_panel)):
        qtbot.keyClick(win.tabs.currentWidget(), Qt.Key(Qt.Key.Key_0.value + number),
                       Qt.KeyboardModifier.ControlModifier)
        assert win.tabs.currentWidget() is panel
