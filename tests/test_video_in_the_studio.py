"""The built-in video generator in the studio, a peer of text and image: its data previewed as
clips, its training previews animated, clips generated, played and exported (offscreen Qt)."""

import pytest
from PySide6.QtCore import Qt

from studio import api
from studio.gui import generate_panel
from studio.gui.data_panel import DataPanel
from studio.gui.generate_panel import GeneratePanel
from studio.gui.session import Session
from studio.gui.settings import Settings
from studio.gui.train_panel import TrainPanel
from studio.gui.views import VideoPlayer
from test_video_conformance import TINY

WAIT_MS = 120_000
QUIET = ["device=cpu", "threads=1", "warmup_steps=0", "eval_every=0", "checkpoint_every=2",
         "preview_every=2"]


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    """A tiny video run on the built-in bouncing shapes: 2 steps, a preview and a checkpoint."""
    root = tmp_path_factory.mktemp("video-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDIO_CACHE_DIR", str(root / "cache"))
        api.train("video", run_dir=str(root / "runs" / "clips"), max_steps=2, events="none",
                  settings=[f"{k}={v}" for k, v in TINY.items()] + QUIET)
    return root / "runs" / "clips"


def players(grid) -> list:
    return [view for view in grid.views if isinstance(view, VideoPlayer)]


def test_the_data_panel_previews_the_built_in_clips_as_animations(qtbot, tmp_path):
    session = Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="video"))
    panel = DataPanel(session)
    qtbot.addWidget(panel)
    panel.run_check()
    qtbot.waitUntil(lambda: panel.report is not None or panel.problem is not None, timeout=WAIT_MS)
    assert panel.problem is None, panel.problem
    shown = players(panel.preview)
    assert shown and all(p.frames.ndim == 4 and len(p.frames) > 1 for p in shown)
    assert shown[0].playing


def test_train_previews_of_a_video_run_play_as_clips(qtbot, tmp_path, video_run):
    session = Session(Settings(runs_folder=str(video_run.parent), last_generator="video"))
    train = TrainPanel(session, DataPanel(session))
    qtbot.addWidget(train)
    train.show_run(str(video_run))
    shown = players(train.previews)
    assert shown and len(shown[0].frames) == TINY["frames"]


def test_generate_plays_a_clip_of_a_real_video_run_and_exports_it(qtbot, tmp_path, video_run, monkeypatch):
    errors = []
    monkeypatch.setattr(generate_panel, "show_error", lambda parent, message: errors.append(message))
    session = Session(Settings(runs_folder=str(video_run.parent), default_device="cpu",
                               last_generator="video"))
    panel = GeneratePanel(session)
    qtbot.addWidget(panel)
    panel.run_combo.setCurrentIndex([r["run"] for r in panel.rows].index(str(video_run)))
    panel.form.widgets["frames"].setText("10")  # longer than the training clips
    qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.busy, timeout=WAIT_MS)
    assert errors == []
    (player,) = players(panel.grid)
    assert len(player.frames) == 10 and player.playing
    player.toggle()
    player.slider.setValue(9)
    assert player.frame_label.text() == "10/10"
    entry = panel.history[-1]
    written = generate_panel.export(entry, tmp_path / "clip.gif")
    assert (tmp_path / "clip.gif").stat().st_size > 0 and len(written) == 2


def test_studio_eval_of_a_video_run_reports_the_baselines_beside_its_scores(capsys, video_run):
    """What the numbers mean: the same scores, in the same networks, for real clips and for
    static, shuffled and independent-frame clips."""
    import json
    from studio.cli import main
    assert main(["eval", str(video_run), "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"tfd", "frame_fid", "flicker"} <= set(report)
    assert set(report["baselines"]) == {"real", "static", "shuffled", "independent"}
    assert all("tfd" in scores for scores in report["baselines"].values())
    assert report["baselines"]["real"]["tfd"] < report["baselines"]["independent"]["tfd"]
