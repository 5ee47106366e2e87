"""The training charts: what their titles and legends say, lines that follow the theme, no
drops to 0 from missing values, room at small window sizes, and no attribute that shadows a
Qt method (Charts.metric = "val_loss" crashed the app on QGraphicsView::metric())."""

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QPaintDevice
from PySide6.QtWidgets import QWidget

from studio.gui import theme
from studio.gui.charts import CHARTS_MIN_HEIGHT, LOSS_MIN_HEIGHT, SMALL_CHART_MIN_HEIGHT, Charts
from studio.gui.session import Session
from studio.gui.settings import Settings
from studio.gui.train_panel import PREVIEW_MIN_HEIGHT, TrainPanel


@pytest.fixture
def charts(qtbot):
    widget = Charts()
    qtbot.addWidget(widget)
    return widget


@pytest.fixture
def light_again():
    """Tests that switch to the dark theme leave the application light for the next."""
    yield
    theme.apply_theme("light")


def progress(step, loss=2.0, lr=1e-3, rate=500.0, unit="tokens"):
    return {"event": "progress", "step": step, "max_steps": 100, "loss": loss, "lr": lr,
            "items_per_s": rate, "unit": unit}


def legend_texts(plot) -> list[str]:
    return [label.text for _, label in plot.legend.items]


def shadowing_attributes(obj) -> list[str]:
    """Attributes set on a Qt object (or its class) whose names are methods of its Qt base."""
    qt_base = next(c for c in type(obj).__mro__ if c.__module__.startswith("PySide6"))
    names = set(vars(obj)) | {name for cls in type(obj).__mro__ if not cls.__module__.startswith(("PySide6", "Shiboken"))
                              and cls is not object for name in vars(cls)}
    own_methods = {name for cls in type(obj).__mro__ if not cls.__module__.startswith(("PySide6", "Shiboken"))
                   for name, value in vars(cls).items() if callable(value) and not isinstance(value, Signal)}
    return sorted(name for name in names - own_methods
                  if not name.startswith("__") and callable(getattr(qt_base, name, None))
                  and not isinstance(getattr(qt_base, name), Signal))


def test_charts_answer_qts_metric_call_under_both_themes(charts, light_again):
    """The crash: an eval event set `self.metric`, and Qt's next call of metric() (a repaint
    after the theme changed, a file dialog) found a string."""
    for name in ("light", "dark"):
        theme.apply_theme(name)
        charts.apply_style()
        charts.add({"event": "eval", "step": 10, "metrics": {"val_loss": 2.0, "val_bits_per_byte": 1.1},
                    "best_metric": "val_bits_per_byte", "is_best": True})
        charts.redraw()
        assert charts.metric(QPaintDevice.PaintDeviceMetric.PdmDepth) > 0
        assert charts.grab().width() > 0  # paints


def test_no_attribute_of_the_train_panels_qt_classes_shadows_a_qt_method(qtbot, tmp_path):
    session = Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="text"))
    panel = TrainPanel(session)
    qtbot.addWidget(panel)
    panel.charts.add({"event": "eval", "step": 1, "metrics": {"val_fid": 3.0}, "best_metric": "val_fid"})
    panel.charts.add(progress(1))
    panel.charts.redraw()
    objects = [panel, panel.charts, panel.stats, panel.gen_form, panel.train_form, panel.trainer]
    assert {type(o).__name__ for o in objects} >= {"TrainPanel", "Charts", "StatusLine", "ConfigForm",
                                                    "TrainerProcess"}
    for obj in objects:
        assert shadowing_attributes(obj) == [], type(obj).__name__


def test_the_shadowing_check_finds_what_crashed_the_app():
    class Bad(QWidget):
        changed = Signal()  # a signal of its own: fine

        def __init__(self):
            super().__init__()
            self.metric = "val_loss"
            self.layout_ = "fine: not a Qt name"

    class BadObject(QObject):
        event = Signal(dict)  # QObject.event() is what Qt calls for every event it sends

    assert shadowing_attributes(Bad()) == ["metric"]
    assert shadowing_attributes(BadObject()) == ["event"]


def test_text_run_labels_say_units_and_which_metric_picks_the_best(charts):
    charts.add({"event": "start", "max_steps": 100, "unit": "tokens"})
    charts.add(progress(10, loss=3.0))
    charts.add({"event": "eval", "step": 10, "metrics": {"val_loss": 2.9, "val_bits_per_byte": 1.3},
                "best_metric": "val_bits_per_byte", "is_best": True})
    charts.redraw()
    assert charts.loss_plot.titleLabel.text == "training loss (nats/token)"
    assert legend_texts(charts.loss_plot) == ["train", "train (smoothed)", "held-out loss",
                                              "best checkpoint (by bits per byte)"]
    assert charts.rate_plot.titleLabel.text == "throughput (tokens/s)"
    assert not charts.metric_plot_shown  # the held-out loss shares the loss chart's units
    assert list(charts.best.getData()[1]) == [2.9]


def test_a_gan_run_charts_fid_apart_and_both_learning_rates(charts):
    """The image GAN's discriminator learns at lr x d_lr_ratio: with the ratio known, its rate
    is drawn beside the progress events' `lr` (the form's), and each line says which."""
    charts.set_d_lr_ratio(2.0)
    for step in (10, 20):
        charts.add(progress(step, loss=1.5, lr=2e-4, rate=80.0, unit="images"))
    charts.add({"event": "eval", "step": 20, "metrics": {"val_fid": 30.0, "val_kid": 0.02},
                "best_metric": "val_fid", "is_best": True})
    charts.redraw()
    assert charts.metric_plot_shown and charts.metric_plot.titleLabel.text == "held-out FID"
    assert legend_texts(charts.metric_plot) == ["FID", "best checkpoint (by FID)"]
    assert charts.loss_plot.titleLabel.text == "training loss"  # no units claimed
    assert charts.rate_plot.titleLabel.text == "throughput (images/s)"
    assert legend_texts(charts.lr_plot) == ["generator (lr)", "discriminator (lr × 2)"]
    assert list(charts.lr.getData()[1]) == pytest.approx([2e-4, 2e-4])
    assert list(charts.d_lr.getData()[1]) == pytest.approx([4e-4, 4e-4])
    assert charts.lr_plot.viewRange()[1][1] > 4e-4  # both lines in view
    low, high = charts.loss_plot.viewRange()[1]
    assert high < 10  # the loss axis is not stretched to the FID's 30
    charts.reset()  # the next run (a text one) starts with the loss chart alone again
    assert not charts.metric_plot_shown and charts.lr.getData()[0] is None


def test_missing_rates_and_learning_rates_are_left_out_not_drawn_as_zero(charts):
    charts.add(progress(10, rate=500.0))
    charts.add(progress(20, rate=None, lr=None))
    charts.add(progress(30, rate=520.0))
    charts.redraw()
    xs, ys = charts.rate.getData()
    assert list(xs) == [10, 30] and list(ys) == [500.0, 520.0]
    assert list(charts.lr.getData()[0]) == [10, 30]
    assert list(charts.raw.getData()[0]) == [10, 20, 30]  # the loss is there all the same


def test_charts_take_the_themes_colours_when_built_and_when_it_changes(qtbot, tmp_path, light_again):
    session = Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="text"))
    theme.apply_theme("dark")
    panel = TrainPanel(session)  # built under the dark theme
    qtbot.addWidget(panel)
    dark = theme.chart_style()
    assert panel.charts.backgroundBrush().color().name() == dark["background"]
    axis = panel.charts.loss_plot.getAxis("left")
    assert axis.textPen().color().name() == dark["foreground"]
    theme.apply_theme("light")
    session.theme_changed.emit("light")
    light = theme.chart_style()
    assert panel.charts.backgroundBrush().color().name() == light["background"]
    assert axis.textPen().color().name() == light["foreground"]
    labels = [label for _, label in panel.charts.loss_plot.legend.items]
    assert labels and all(label.opts["color"] == light["foreground"] for label in labels)


def test_charts_and_previews_keep_their_height_at_900_by_600(qtbot, tmp_path):
    """The window's smallest size leaves the Train panel about 900 x 480: charts and previews
    keep readable heights (the area below the buttons scrolls), and Start stays in view."""
    session = Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="text"))
    panel = TrainPanel(session)
    qtbot.addWidget(panel)
    panel.resize(900, 480)
    panel.show()
    qtbot.waitExposed(panel)
    qtbot.wait(50)
    charts = panel.charts
    assert charts.height() >= CHARTS_MIN_HEIGHT
    assert charts.loss_plot.geometry().height() >= LOSS_MIN_HEIGHT
    assert charts.lr_plot.geometry().height() >= SMALL_CHART_MIN_HEIGHT
    assert panel.previews.parentWidget().height() >= PREVIEW_MIN_HEIGHT
    start = panel.start_button.mapTo(panel, panel.start_button.rect().bottomRight())
    assert panel.rect().contains(start) and panel.start_button.isVisible()


def test_a_resume_at_an_earlier_step_replaces_the_steps_it_runs_again(charts):
    """After a crash, a resume from the checkpoint at step 20 runs steps 21-30 again: the chart
    shows each step once, the re-run values (it drew both, doubling back on itself)."""
    charts.add({"event": "start", "step": 0, "max_steps": 100})
    for step in (10, 20, 30):
        charts.add(progress(step, rate=500.0))
    charts.add({"event": "eval", "step": 30, "metrics": {"val_loss": 2.0}, "best": 2.0,
                "best_step": 30, "best_metric": "val_loss", "is_best": True})
    charts.add({"event": "start", "step": 20, "max_steps": 100})
    charts.add(progress(30, rate=510.0, loss=1.5))
    charts.redraw()
    assert list(charts.raw.getData()[0]) == [10, 20, 30]
    assert list(charts.raw.getData()[1])[-1] == 1.5
    assert list(charts.rate.getData()[1]) == [500.0, 500.0, 510.0]
    assert charts.held_out.getData()[0] is None or len(charts.held_out.getData()[0]) == 0
    assert charts.best_point is None
