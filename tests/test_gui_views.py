"""The sample views scale to the space they are given: images keep their aspect ratio, small
ones enlarge with whole pixels, a grid picks the columns that fit its shape, and none of the
views hides a Qt method under an attribute."""

import numpy as np
import pytest
from PySide6.QtCore import QRect, QSize, SignalInstance
from PySide6.QtWidgets import QWidget

from studio.contract import Sample
from studio.gui.generate_panel import GeneratePanel, RunCombo
from studio.gui.session import Session
from studio.gui.settings import Settings
from studio.gui.views import (ImageView, SampleGrid, TextView, VideoPlayer, fit_columns, fit_rect)


def checker(h=2, w=2):
    """An image whose neighbouring pixels differ: blending would show between them."""
    colours = np.array([[250, 10, 10], [10, 250, 10], [10, 10, 250], [240, 240, 20]], np.uint8)
    return colours[np.arange(h * w).reshape(h, w) % 4]


def shown(qtbot, widget, width, height):
    widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)
    return widget.grab().toImage()


def test_a_small_image_fills_its_view_with_whole_pixels(qtbot):
    view = ImageView(checker(), size=64)
    qtbot.addWidget(view)
    picture = shown(qtbot, view, 200, 200)
    assert view.shown_rect() == QRect(0, 0, 200, 200)
    # Nearest neighbour: right up to the edge between two source pixels, no blend.
    assert picture.pixelColor(98, 10).getRgb()[:3] == (250, 10, 10)
    assert picture.pixelColor(101, 10).getRgb()[:3] == (10, 250, 10)
    assert picture.pixelColor(101, 101).getRgb()[:3] == (240, 240, 20)


def test_an_image_keeps_its_aspect_ratio(qtbot):
    view = ImageView(checker(2, 4), size=64)
    qtbot.addWidget(view)
    shown(qtbot, view, 400, 400)
    assert view.shown_rect() == QRect(0, 100, 400, 200)  # centred, 2:1
    assert fit_rect(QSize(10, 10), QRect(0, 0, 300, 100)) == QRect(100, 0, 100, 100)


def test_a_grid_picks_the_columns_that_fit_its_shape(qtbot):
    assert fit_columns(2, aspect=16, width=1000, height=1000) == 1  # a wide strip: stacked
    assert fit_columns(2, aspect=1 / 16, width=1000, height=1000) == 2  # tall ones: side by side
    assert fit_columns(16, aspect=1, width=800, height=800) == 4
    assert fit_columns(16, aspect=1, width=800, height=800, most=2) == 2

    grid = SampleGrid(columns=None, size=64)
    qtbot.addWidget(grid)
    wide = [Sample("image", checker(2, 16)) for _ in range(2)]
    grid.set_samples(wide)
    shown(qtbot, grid, 600, 600)
    assert grid.media_columns() == 1
    first, second = (view.geometry() for view in grid.views)
    assert first.left() == second.left() and second.top() > first.bottom()
    grid.resize(1600, 60)  # now wide and short: side by side
    qtbot.waitUntil(lambda: grid.views[1].geometry().left() > grid.views[0].geometry().right())


def test_a_single_sample_fills_the_grid_and_nothing_scrolls(qtbot):
    grid = SampleGrid(columns=3, size=140)  # the Train panel's previews keep this API
    qtbot.addWidget(grid)
    grid.set_samples([Sample("image", checker(8, 8))], empty="no preview yet")
    shown(qtbot, grid, 700, 500)
    (view,) = grid.views
    assert view.shown_rect().height() >= 480  # not a 140 px thumbnail in a big box
    assert not grid.verticalScrollBar().isVisible() and not grid.horizontalScrollBar().isVisible()


def test_a_video_player_scales_its_frames(qtbot):
    frames = np.stack([checker(4, 4)] * 3)
    player = VideoPlayer(frames, size=64, fps=8)
    qtbot.addWidget(player)
    shown(qtbot, player, 500, 500)
    assert player.screen_.shown_rect().width() > 400
    player.toggle()


def test_a_grid_of_video_players_leaves_room_for_their_controls(qtbot):
    """Four small clips in a wide, short grid: as many columns as whole players fit (their
    pictures alone would fit four side by side), no sideways scrolling, every scrubber long
    enough to drag."""
    grid = SampleGrid(columns=4, size=64)
    qtbot.addWidget(grid)
    grid.set_samples([Sample("video", np.stack([checker(8, 8)] * 4), {"fps": 8}) for _ in range(4)])
    shown(qtbot, grid, 900, 300)
    need = grid.views[0].minimumSizeHint().width()
    assert 1 <= grid.media_columns() <= 900 // need < 4
    qtbot.waitUntil(lambda: all(p.slider.width() >= 60 for p in grid.views))
    assert not grid.horizontalScrollBar().isVisible()
    for player in grid.views:
        player.timer.stop()


def test_a_video_player_scrubs_loops_or_stops_and_plays_at_the_chosen_rate(qtbot):
    frames = np.stack([np.full((4, 4, 3), 40 * i, np.uint8) for i in range(4)])
    player = VideoPlayer(frames, size=64, fps=12)
    qtbot.addWidget(player)
    assert player.fps_spin.value() == 12 and player.timer.interval() == 83
    player.fps_spin.setValue(25)
    assert player.timer.interval() == 40
    player.toggle()  # paused: scrub by hand
    player.slider.setValue(2)
    assert player.frame_label.text() == "3/4" and player.screen_.array[0, 0, 0] == 80
    player.slider.setValue(3)
    player._advance()  # looping: from the last frame to the first
    assert player.slider.value() == 0
    player.loop_box.setChecked(False)
    player.slider.setValue(3)
    player.toggle()  # play from the end: starts again at the first frame
    assert player.playing and player.slider.value() == 0
    for _ in range(3):
        player._advance()
    player._advance()  # not looping: stops on the last frame
    assert not player.playing and player.slider.value() == 3
    assert player.play_button.text() == "Play"
    assert VideoPlayer(frames, fps=500).fps_spin.value() == 50  # GIF players cap it too


def qt_methods(cls) -> set[str]:
    """Names the Qt base classes of `cls` define (methods, signals, properties)."""
    qt_bases = [base for base in cls.__mro__ if base.__module__.startswith("PySide6")]
    return {name for base in qt_bases for name in vars(base)}


@pytest.fixture
def panel(qtbot, tmp_path):
    session = Session(Settings(runs_folder=str(tmp_path / "runs"), default_device="cpu"))
    panel = GeneratePanel(session)
    qtbot.addWidget(panel)
    return panel


def test_no_view_sets_an_attribute_named_like_a_qt_method(qtbot, panel):
    """`self.size = 160` on a QWidget hides QWidget.size(); Qt calling it crashes the app."""
    widgets = [ImageView(checker()), VideoPlayer(np.stack([checker()] * 2)), TextView("x"),
               SampleGrid(columns=2, size=96), panel, panel.run_combo]
    assert isinstance(panel.run_combo, RunCombo)
    for widget in widgets:
        if widget is not panel:
            qtbot.addWidget(widget)
        # PySide keeps the widget's own bound signals in its __dict__: those are not clashes.
        set_by_us = {k for k, v in vars(widget).items() if not isinstance(v, SignalInstance)}
        clashes = set_by_us & qt_methods(type(widget))
        assert not clashes, f"{type(widget).__name__} shadows Qt's {sorted(clashes)}"
        assert isinstance(widget, QWidget)


def test_a_text_view_copies_all_its_text_from_its_menu(qtbot):
    from PySide6.QtGui import QGuiApplication
    view = TextView()
    qtbot.addWidget(view)
    view.show_texts(["ANNA: hello there", "ANNA: goodbye"], ["ANNA:", "ANNA:"],
                    ["— sample 1 of 2 —", "— sample 2 of 2 —"])
    view.copy_all()  # the "Copy all text" action of its context menu
    assert QGuiApplication.clipboard().text() == \
        "— sample 1 of 2 —\nANNA: hello there\n\n— sample 2 of 2 —\nANNA: goodbye"
