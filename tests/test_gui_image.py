"""The built-in image GAN in the window, through the plugin contract alone: its data report with
thumbnails, its config as the training form, live image previews, and the shipped demo model
in the Generate panel."""

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from image_fixtures import TINY
from studio.gui import generate_panel
from studio.gui.data_panel import DataPanel
from studio.gui.generate_panel import GeneratePanel
from studio.gui.session import Session
from studio.gui.settings import Settings
from studio.gui.train_panel import TrainPanel
from studio.gui.views import ImageView
from studio.runstore import RunDir


@pytest.fixture
def session(tmp_path):
    return Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="image",
                            default_device="cpu"))


def test_train_the_gan_on_the_built_in_shapes_with_image_previews(qtbot, session):
    data, train = DataPanel(session), None
    qtbot.addWidget(data)
    train = TrainPanel(session, data)
    qtbot.addWidget(train)
    try:
        data.run_check()
        qtbot.waitUntil(lambda: data.report is not None, timeout=60_000)
        assert data.report.used and data.preview.views
        assert all(isinstance(v, ImageView) for v in data.preview.views)  # thumbnails
        assert {"resolution", "g_width", "augment", "ada_target"} <= set(train.gen_form.widgets)
        train.gen_form.set_values({k: str(v) for k, v in TINY.items()})
        train.train_form.set_values({"max_steps": "12", "log_every": "2", "preview_every": "6",
                                     "eval_every": "12", "checkpoint_every": "12"})
        train.device.setCurrentText("cpu")
        assert train.start_button.isEnabled(), train.problem.text()
        train.start_button.click()
        qtbot.waitUntil(lambda: not train.trainer.running, timeout=120_000)
        assert RunDir(train.run_dir).info()["status"] == "done"
        assert train.charts.steps[-1] == 12 and "done at step 12" in train.stats.text()
        train._refresh_previews()
        assert train.preview_steps == [6, 12]
        assert train.previews.views and all(isinstance(v, ImageView) for v in train.previews.views)
        assert train.charts.eval_steps == [12]  # FID, the held-out metric, is charted
        train.charts.redraw()
        assert train.charts.metric_plot.titleLabel.text == "held-out FID"
        assert train.charts.rate_plot.titleLabel.text == "throughput (images/s)"
        # the learning rate the form says, and the discriminator's (lr x d_lr_ratio) beside it
        lr = float(train.train_form.raw_values()["lr"])
        g_lr, d_lr = train.charts.lr.getData()[1], train.charts.d_lr.getData()[1]
        assert max(g_lr) == pytest.approx(lr) and max(d_lr) == pytest.approx(2 * lr)
        assert [label.text for _, label in train.charts.lr_plot.legend.items] == [
            "generator (lr)", "discriminator (lr × 2)"]

        # The preview (one grid) is drawn as large as the preview area allows.
        train.resize(1280, 760)
        train.show()
        qtbot.waitExposed(train)
        qtbot.wait(50)
        view, area = train.previews.views[0], train.previews.viewport().size()
        shown = view.shown_rect()
        assert shown.width() >= 0.9 * area.width() or shown.height() >= 0.9 * area.height()
        assert shown.height() > 200
    finally:
        train.trainer.kill()


def test_the_shipped_demo_gan_draws_a_grid_in_the_generate_panel(qtbot, session, monkeypatch):
    shown = []
    monkeypatch.setattr(generate_panel, "show_error", lambda parent, message: shown.append(message))
    panel = GeneratePanel(session)
    qtbot.addWidget(panel)
    names = [Path(r["run"]).name for r in panel.rows]
    panel.run_combo.setCurrentIndex(names.index("image"))  # assets/demo/image
    assert {"truncation", "class_label", "interpolate_to"} <= set(panel.form.widgets)
    panel.form.widgets["class_label"].setText("3")  # stars
    panel.count_spin.setValue(4)
    qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.busy, timeout=60_000)
    assert shown == []
    assert [type(v) for v in panel.grid.views] == [ImageView] * 4
    assert panel.grid.views[0].array.shape == (32, 32, 3)
    assert {s.meta["class"] for s in panel.history[-1].samples} == {"star"}


def test_a_two_class_preview_is_laid_out_about_as_wide_as_the_preview_area(tmp_path):
    """A 2-class preview was a 2 x 32 grid (70 x 1090 px) squeezed into a 140 px box: now about
    4:3, each column still one class (the probes cycle through the classes)."""
    from generators.image import ImageGenerator
    from image_fixtures import tiny_settings, write_shapes_folder
    from studio import api
    from studio.callbacks import EvalMode
    engine, _ = api.prepare_training(
        ImageGenerator, data=str(write_shapes_folder(tmp_path / "shapes")), run_dir=str(tmp_path / "run"),
        settings=tiny_settings() + ["device=cpu", "eval_every=0", "preview_every=0"], max_steps=1,
        events="none")
    gen = engine.generator
    assert len(gen.classes) == 2 and len(gen.probes["seeds"]) == 64
    with EvalMode(engine):
        (preview,) = gen.preview()
    height, width = preview.data.shape[:2]
    assert 1.0 <= width / height <= 1.8, preview.data.shape
    cell = 32 + 2
    columns = (width - 2) // cell
    assert columns % 2 == 0  # so that each column keeps one class
