"""The training charts: loss (raw, smoothed, held-out, best checkpoint), learning rate and
throughput, drawn from a run's progress and eval events. A run whose best checkpoint is chosen
by a score (a classifier's macro F1, a tagger's entity F1) gets that score on a chart of its own
beside the loss, on its 0..1 scale, with the best checkpoint marked on it.

The Train panel feeds every event to `add` and calls `redraw` every other second while it is
on screen; `redraw` does nothing unless points arrived. Colours come from the window's theme
(`studio.gui.theme.chart_style()`) when the charts are built and on each `apply_style()`.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg

from studio.gui import theme

# Weight of each new point in the smoothed loss. TensorBoard's default smoothing (0.6) is 0.4;
# 0.1 lagged a whole eval interval behind a falling loss and drew "smoothed" above every raw
# point (seen in docs/screenshot-train.png).
SMOOTHING_ALPHA = 0.3

# Below these heights a chart is a line with a title (seen at 900x600): the panel scrolls
# instead of squeezing them.
LOSS_MIN_HEIGHT = 150
SMALL_CHART_MIN_HEIGHT = 120
CHARTS_MIN_HEIGHT = LOSS_MIN_HEIGHT + SMALL_CHART_MIN_HEIGHT + 20  # + the layout's spacing

# What the held-out metrics of the eval events are, in words.
METRIC_NAMES = {"val_loss": "held-out loss", "val_bits_per_byte": "bits per byte",
                "val_perplexity": "perplexity", "val_fid": "FID", "val_kid": "KID",
                "val_macro_f1": "macro F1", "val_entity_f1": "entity F1",
                "val_accuracy": "accuracy", "val_tag_accuracy": "tag accuracy"}
# Metrics that are shares, from 0 (none right) to 1 (all right), higher better: F1 scores and
# accuracies. Drawn on a 0..1 axis, not in the loss's units.
SCORE_SUFFIXES = ("f1", "accuracy")
SCORE_RANGE = (-0.02, 1.02)  # the 0..1 axis, with the points at 0 and 1 in view
# The training loss's units, by what the run counts (the progress event's `unit`): text
# generators report cross-entropy in nats per token.
LOSS_UNITS = {"tokens": "nats/token"}

# Line colours that read on each theme's background (the raw loss takes the theme's muted one).
LINE_COLOURS = {
    "light": {"smooth": (30, 90, 180), "held_out": (220, 90, 30), "best": (240, 190, 0),
              "lr": (90, 150, 90), "d_lr": (30, 100, 60), "rate": (130, 90, 170),
              "score": (0, 140, 140)},
    "dark": {"smooth": (100, 170, 255), "held_out": (255, 140, 70), "best": (255, 210, 60),
             "lr": (130, 210, 130), "d_lr": (200, 230, 120), "rate": (190, 150, 240),
             "score": (90, 210, 200)},
}


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric.removeprefix("val_").replace("_", " "))


def is_score(metric: str | None) -> bool:
    """Whether a metric is a share between 0 and 1 (an F1, an accuracy)."""
    return bool(metric) and metric.endswith(SCORE_SUFFIXES)


def style_plot(plot: pg.PlotItem, style: dict) -> None:
    """Axes, title and legend text of one plot in the theme's colours (the Compare view's
    charts can use this too)."""
    for side in ("left", "bottom"):
        axis = plot.getAxis(side)
        axis.setPen(pg.mkPen(style["foreground"]))
        axis.setTextPen(pg.mkPen(style["foreground"]))
    if plot.titleLabel.text:
        plot.setTitle(plot.titleLabel.text, color=style["foreground"])
    if plot.legend is not None:
        # on a veil of the background: the legend sits on the lines where they run high
        veil = pg.mkColor(style["background"])
        veil.setAlpha(200)
        plot.legend.setBrush(pg.mkBrush(veil))
        plot.legend.setLabelTextColor(style["foreground"])  # for entries added later
        for _, label in plot.legend.items:  # and those there (setLabelTextColor only records it)
            label.setText(label.text, color=style["foreground"])


class Charts(pg.GraphicsLayoutWidget):
    """Loss (raw, smoothed, held-out, best) on top; learning rate and throughput below. A
    held-out metric in other units than the loss (a GAN's FID), or a score that picks the best
    checkpoint (a classifier's macro F1), gets a chart of its own."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss_plot = pg.PlotItem()
        self.loss_plot.addLegend(offset=(-10, 10), colCount=2)  # two rows: the lines stay in view
        # No grid lines: pyqtgraph draws them with the axes at every repaint, and they made a
        # repaint 46 ms instead of 7.5 ms (measured, offscreen raster) -- the window's longest
        # stall while training.
        self.raw = self.loss_plot.plot(name="train")
        self.smooth = self.loss_plot.plot(name="train (smoothed)")
        self.held_out = self.loss_plot.plot(symbol="o", symbolSize=6, name="held-out")
        self.best = self.loss_plot.plot(pen=None, symbol="star", symbolSize=16, name="best checkpoint")
        # The score that picks the best checkpoint, when it is not the held-out line above:
        # on the metric chart only while a run has one (see _place).
        self.score = pg.PlotDataItem(symbol="o", symbolSize=6, name="score")
        self.metric_plot = pg.PlotItem()  # in the layout only while a run needs it
        self.metric_plot.addLegend(offset=(-10, 10))
        self.lr_plot = pg.PlotItem()
        self.lr = self.lr_plot.plot()
        self.d_lr = self.lr_plot.plot()  # a GAN discriminator's own rate, when it differs
        self.rate_plot = pg.PlotItem()
        self.rate = self.rate_plot.plot()
        self.plots = (self.loss_plot, self.metric_plot, self.lr_plot, self.rate_plot)
        for plot in self.plots:
            # The ranges are set in redraw(): see _fit_y and _extend_horizon. (No x links:
            # pyqtgraph aligns linked views on screen, which shifts charts side by side.)
            plot.disableAutoRange()
        self.loss_plot.setMinimumHeight(LOSS_MIN_HEIGHT)
        self.metric_plot.setMinimumHeight(LOSS_MIN_HEIGHT)
        for plot in (self.lr_plot, self.rate_plot):
            plot.setMinimumHeight(SMALL_CHART_MIN_HEIGHT)
        for curve in (self.raw, self.smooth, self.lr, self.d_lr, self.rate):
            # A long run's thousands of points drawn as one segment per pixel column, through its
            # min and max there (pyqtgraph's default keeps 5 points a pixel): drawing 20,000
            # points took 10 ms a curve, every redraw.
            curve.setDownsampling(auto=True, method="peak")
            curve.opts["autoDownsampleFactor"] = 1.0
        self.ci.addItem(self.loss_plot, row=0, col=0, colspan=2)
        self.ci.addItem(self.lr_plot, row=1, col=0)
        self.ci.addItem(self.rate_plot, row=1, col=1)
        self.ci.layout.setRowStretchFactor(0, 3)
        self.ci.layout.setRowStretchFactor(1, 2)
        self.setMinimumHeight(CHARTS_MIN_HEIGHT)
        self.metric_plot_shown = False
        self.titles: dict = {}  # plot -> the title it shows (a new title re-lays out the chart)
        self.colours: dict = {}
        self.apply_style()
        self.reset()

    # -- what the charts say
    def reset(self) -> None:
        self.steps, self.losses, self.smoothed = [], [], []
        self.lr_steps, self.lrs = [], []
        self.rate_steps, self.rates = [], []
        self.eval_steps, self.eval_values, self.best_point = [], [], None
        self.score_steps, self.score_values = [], []
        # Names in the eval events: the held-out line's metric, the one that picks the best
        # checkpoint, and that one again when it is a score charted apart (else None).
        self.held_out_metric = self.best_metric = self.score_metric = None
        self.loss_unit = self.rate_unit = None
        self.d_lr_ratio: float | None = None
        self.max_steps, self.horizon = 0, None
        self.y_ranges: dict = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.dirty = self.evals_dirty = self.labels_dirty = True
        self._place()
        self.redraw()

    def set_d_lr_ratio(self, ratio: float | None) -> None:
        """For a GAN whose discriminator learns at lr x ratio: the progress events' `lr` is the
        scheduled `lr` setting (the generator's), and the discriminator's is drawn beside it,
        each line saying which (one unlabelled line once showed twice the rate the form said)."""
        self.d_lr_ratio = ratio if ratio and ratio != 1 else None
        self.labels_dirty = self.dirty = True

    def add(self, record: dict) -> None:
        kind = record["event"]
        if kind == "start":
            self.max_steps = record.get("max_steps") or 0
            self._forget_after(record.get("step") or 0)
            return
        if kind == "progress" and _finite(record.get("loss")):
            step, loss = record["step"], record["loss"]
            self.steps.append(step)
            self.losses.append(loss)
            self.smoothed.append(loss if not self.smoothed else
                                 (1 - SMOOTHING_ALPHA) * self.smoothed[-1] + SMOOTHING_ALPHA * loss)
            # A missing rate or learning rate is left out, never drawn as a drop to 0.
            if _finite(record.get("lr")):
                self.lr_steps.append(step)
                self.lrs.append(record["lr"])
            if _finite(record.get("items_per_s")):
                self.rate_steps.append(step)
                self.rates.append(record["items_per_s"])
            unit = record.get("unit")
            if unit and unit != self.rate_unit:
                self.rate_unit, self.loss_unit = unit, LOSS_UNITS.get(unit)
                self.labels_dirty = True
        elif kind == "eval":
            self._add_eval(record)
        else:
            return
        self.dirty = True

    def _forget_after(self, step: int) -> None:
        """A (re)start at `step`: what was drawn for later steps was superseded (steps re-run
        after a crash; see studio/events.py), so it goes."""
        if not any(s > step for s in (*self.steps[-1:], *self.eval_steps[-1:])):
            return
        for steps, *values in ((self.steps, self.losses, self.smoothed),
                               (self.lr_steps, self.lrs), (self.rate_steps, self.rates),
                               (self.eval_steps, self.eval_values),
                               (self.score_steps, self.score_values)):
            keep = sum(1 for s in steps if s <= step)
            for series in (steps, *values):
                del series[keep:]
        if self.best_point and self.best_point[0] > step:
            self.best_point = None
        self.dirty = self.evals_dirty = True

    def _add_eval(self, record: dict) -> None:
        # The held-out loss when there is one (it shares the training loss's units);
        # otherwise the metric that picks the best checkpoint, on a chart of its own. A score
        # that picks it (macro F1) is drawn too, on its own chart: the loss alone does not
        # show which checkpoint is best, nor how good it is.
        metrics = record["metrics"]
        best_metric = record.get("best_metric") or self.best_metric
        metric = "val_loss" if "val_loss" in metrics else best_metric or self.held_out_metric
        score = best_metric if is_score(best_metric) and best_metric != metric else None
        if (metric, best_metric, score) != (self.held_out_metric, self.best_metric, self.score_metric):
            self.held_out_metric, self.best_metric, self.score_metric = metric, best_metric, score
            self.labels_dirty = True
        value = metrics.get(metric) if metric else None
        if _finite(value):
            self.eval_steps.append(record["step"])
            self.eval_values.append(value)
            self.evals_dirty = True
        score_value = metrics.get(score) if score else None
        if _finite(score_value):
            self.score_steps.append(record["step"])
            self.score_values.append(score_value)
            self.evals_dirty = True
        marked = score_value if score else value  # the star sits on the line of the metric that chose it
        if record.get("is_best") and _finite(marked):
            self.best_point = (record["step"], marked)

    def redraw(self) -> None:
        if not self.dirty:
            return
        if self.labels_dirty:
            self._label()
        self._extend_horizon()
        steps, losses = self._array("steps"), self._array("losses")
        self.raw.setData(steps, losses)
        self.smooth.setData(steps, self._array("smoothed"))
        lr_steps, lrs = self._array("lr_steps"), self._array("lrs")
        self.lr.setData(lr_steps, lrs)
        if self.d_lr_ratio:
            self.d_lr.setData(lr_steps, lrs * self.d_lr_ratio)
        else:
            self.d_lr.setData([], [])
        rates = self._array("rates")
        self.rate.setData(self._array("rate_steps"), rates)
        if self.evals_dirty:  # the symbols are rebuilt on every setData: only when they changed
            self.held_out.setData(self.eval_steps, self.eval_values)
            self.score.setData(self.score_steps, self.score_values)
            self.best.setData(*([[self.best_point[0]], [self.best_point[1]]] if self.best_point else [[], []]))
            self.evals_dirty = False
        evals_low, evals_high = min(self.eval_values, default=math.inf), max(self.eval_values, default=-math.inf)
        losses_low, losses_high = losses.min(initial=math.inf), losses.max(initial=-math.inf)
        if self._held_out_on_loss_plot():
            self._fit_y(self.loss_plot, min(losses_low, evals_low), max(losses_high, evals_high))
        else:
            self._fit_y(self.loss_plot, losses_low, losses_high)
        if self.metric_plot_shown and is_score(self.score_metric or self.held_out_metric):
            self._fit_y(self.metric_plot, *SCORE_RANGE, fixed=True)
        elif self.metric_plot_shown:
            self._fit_y(self.metric_plot, evals_low, evals_high)
        self._fit_y(self.lr_plot, 0.0, lrs.max(initial=-math.inf) * max(1.0, self.d_lr_ratio or 1.0),
                    from_zero=True)
        self._fit_y(self.rate_plot, 0.0, rates.max(initial=-math.inf), from_zero=True)
        self.dirty = False

    def _label(self) -> None:
        """Titles and legend entries that say what each line is, in which units, and which
        metric picks the best checkpoint."""
        self._place()
        self._set_title(self.loss_plot, f"training loss ({self.loss_unit})" if self.loss_unit else "training loss")
        held_out = metric_name(self.held_out_metric or "val_loss")
        if self.metric_plot_shown:
            self._set_title(self.metric_plot, f"held-out {metric_name(self.score_metric or self.held_out_metric)}")
        self._rename(self.held_out, held_out)
        if self.score_metric:
            self._rename(self.score, metric_name(self.score_metric))
        best = f"best checkpoint (by {metric_name(self.best_metric)})" if self.best_metric else "best checkpoint"
        self._rename(self.best, best)
        if self.d_lr_ratio:
            self._set_title(self.lr_plot, "learning rate")
            if self.lr_plot.legend is None:
                self.lr_plot.addLegend(offset=(-10, 10))
                style_plot(self.lr_plot, self.colours)
            self._rename(self.lr, "generator (lr)")
            self._rename(self.d_lr, f"discriminator (lr × {self.d_lr_ratio:g})")
        else:
            self._set_title(self.lr_plot, "learning rate")
            if self.lr_plot.legend is not None:
                self.lr_plot.legend.clear()
        self._set_title(self.rate_plot, f"throughput ({self.rate_unit}/s)" if self.rate_unit else "throughput")
        self.labels_dirty = False

    def _held_out_on_loss_plot(self) -> bool:
        return self.held_out_metric in (None, "val_loss")

    def _place(self) -> None:
        """Each held-out line on its chart: the held-out loss on the loss chart, a metric in
        other units (FID) on a chart of its own beside it (top right), and a score that picks
        the best checkpoint on that chart too; the best checkpoint's star on the line of the
        metric that picked it. The metric chart is in the layout only while it has a line."""
        on_loss = self._held_out_on_loss_plot()
        homes = {self.held_out: self.loss_plot if on_loss else self.metric_plot,
                 self.score: self.metric_plot if self.score_metric else None,
                 self.best: self.metric_plot if self.score_metric or not on_loss else self.loss_plot}
        for curve, home in homes.items():  # in this order: the legends list them so
            now = next((p for p in (self.loss_plot, self.metric_plot) if curve in p.items), None)
            if now is not home:
                if now is not None:
                    now.removeItem(curve)
                if home is not None:
                    home.addItem(curve)
        show_metric_plot = self.metric_plot in homes.values()
        if show_metric_plot == self.metric_plot_shown:
            return
        self.ci.removeItem(self.loss_plot)
        if show_metric_plot:
            self.ci.addItem(self.loss_plot, row=0, col=0)
            self.ci.addItem(self.metric_plot, row=0, col=1)
        else:
            self.ci.removeItem(self.metric_plot)
            self.ci.addItem(self.loss_plot, row=0, col=0, colspan=2)
        self.metric_plot_shown = show_metric_plot
        self.y_ranges.clear()

    def _set_title(self, plot: pg.PlotItem, title: str) -> None:
        if self.titles.get(plot) != title:  # a new title re-lays out the whole chart: only on a change
            plot.setTitle(title, color=self.colours["foreground"])
            self.titles[plot] = title

    def _rename(self, curve, name: str) -> None:
        """A legend entry's text (pyqtgraph has no rename: the entry is added again)."""
        plot = next((p for p in (self.loss_plot, self.metric_plot, self.lr_plot) if curve in p.items), None)
        if plot is None or plot.legend is None:
            return
        label = plot.legend.getLabel(curve)
        if curve.name() == name and label is not None:
            return
        curve.opts["name"] = name
        plot.legend.removeItem(curve)
        plot.legend.addItem(curve, name)

    # -- colours
    def apply_style(self) -> None:
        """The current theme's colours: background, axes, titles, legend text and lines."""
        self.colours = theme.chart_style()
        lines = LINE_COLOURS["dark" if theme.current() == "dark" else "light"]
        self.setBackground(self.colours["background"])
        self.raw.setPen(pg.mkPen(self.colours["muted"], width=1))
        self.smooth.setPen(pg.mkPen(lines["smooth"], width=2))
        self.held_out.setPen(pg.mkPen(lines["held_out"], width=2))
        self.held_out.setSymbolBrush(lines["held_out"])
        self.held_out.setSymbolPen(pg.mkPen(lines["held_out"]))
        self.score.setPen(pg.mkPen(lines["score"], width=2))
        self.score.setSymbolBrush(lines["score"])
        self.score.setSymbolPen(pg.mkPen(lines["score"]))
        self.best.setSymbolBrush(lines["best"])
        self.best.setSymbolPen(pg.mkPen(self.colours["foreground"]))
        self.lr.setPen(pg.mkPen(lines["lr"], width=2))
        self.d_lr.setPen(pg.mkPen(lines["d_lr"], width=2, style=pg.QtCore.Qt.PenStyle.DashLine))
        self.rate.setPen(pg.mkPen(lines["rate"], width=2))
        for plot in self.plots:
            style_plot(plot, self.colours)

    # -- ranges
    def _array(self, name: str) -> np.ndarray:
        """One of the lists as a numpy array, converting only what was appended since the last
        redraw: converting a long run's 20,000 Python floats took 0.5 ms a curve, every redraw."""
        values, array = getattr(self, name), self.arrays.get(name, np.empty(0))  # reset() empties both
        if len(array) < len(values):
            array = self.arrays[name] = np.concatenate([array, np.asarray(values[len(array):], dtype=float)])
        return array

    def _fit_y(self, plot, low: float, high: float, from_zero: bool = False, fixed: bool = False) -> None:
        """Fit the y axis to the values' span, with room to spare, only when they leave it or
        fill less than half of it. pyqtgraph's auto-range refitted after every new point, and
        each refit repainted the charts once more: 2.4 repaints per redraw instead of 1.
        `fixed`: exactly low..high (a score's 0..1), set once."""
        if not (math.isfinite(low) and math.isfinite(high)):
            return  # no points yet
        current = self.y_ranges.get(plot)
        if fixed:
            if current != (low, high):
                plot.setYRange(low, high, padding=0)
                self.y_ranges[plot] = (low, high)
            return
        if current and current[0] <= low and high <= current[1] and high - low >= 0.5 * (current[1] - current[0]):
            return
        pad = 0.15 * ((high - low) or abs(high) or 1.0)  # a falling loss refits every few redraws
        low, high = (low if from_zero else low - pad), high + pad
        plot.setYRange(low, high, padding=0)
        self.y_ranges[plot] = (low, high)

    def _extend_horizon(self) -> None:
        """The step axis grows by doubling (capped at the run's max_steps) instead of following
        every new point: an unchanged range spares re-laying out the x axes and
        redrawing their labels, which was most of a repaint's cost on a busy CPU."""
        last = max(self.steps[-1:] + self.eval_steps[-1:], default=0)
        horizon = 64
        while horizon < last:
            horizon *= 2
        if self.max_steps:
            horizon = min(horizon, self.max_steps)
        if horizon != self.horizon:
            for plot in self.plots:
                plot.setXRange(0, horizon, padding=0.02)
            self.horizon = horizon


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
