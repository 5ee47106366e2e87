"""The training panel: a form built from the generator's config, device, Start / Pause /
Resume / Stop, progress with rate and ETA, live charts and live previews.

Training runs in a child process (studio/gui/trainer.py); this panel only sends it commands
and draws what its events say. It redraws once after each time the child's output is read (once
a second), so a fast stream of events never floods the event loop.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QPainter, QShortcut
from PySide6.QtWidgets import (QComboBox, QFileDialog, QGroupBox, QHBoxLayout, QLabel,
                               QMessageBox, QPlainTextEdit, QProgressBar, QPushButton,
                               QScrollArea, QSizePolicy, QSlider, QSplitter, QVBoxLayout,
                               QWidget)

from studio.config import TrainConfig
from studio.gui import workers
from studio.gui.config_form import ConfigForm
from studio.gui.settings import config_dir
from studio.gui.trainer import TrainerProcess
from studio.gui.views import SampleGrid
from studio.runstore import RunDir, list_previews, load_samples, write_json

# Progress text is repainted once a second (when the child's output has been read) and charts
# every other time, and only while the panel is on screen: the training child needs the cores.
# Following each event as it came took 3.5% of a core, and on 2 cores every wake-up of the
# window stalls both of the child's compute threads (bench/bench_gui.py).
CHART_EVERY = 2  # redraws: a chart repaint costs several times the progress text's


def show_error(parent, title: str, message: str) -> None:
    """A clear message in a dialog (tests replace this to read it)."""
    QMessageBox.warning(parent, title, message)


# Weight of each new point in the smoothed loss. TensorBoard's default smoothing (0.6) is 0.4;
# 0.1 lagged a whole eval interval behind a falling loss and drew "smoothed" above every raw
# point (seen in docs/screenshot-train.png).
SMOOTHING_ALPHA = 0.3


class StatusLine(QWidget):
    """One line of text that changes every second while training. A QLabel asks the layouts
    above it to recompute on every setText, and the whole window was then repainted (40 widgets
    for one changed label, measured offscreen); this one repaints only its own rectangle."""

    def __init__(self, text: str = "", parent=None):
        super().__init__(parent)
        self._text = text
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self.setFixedHeight(self.fontMetrics().height() + 4)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        if text != self._text:
            self._text = text
            self.setToolTip(text)  # the whole line, when the panel is too narrow to show it
            self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        shown = self.fontMetrics().elidedText(self._text, Qt.TextElideMode.ElideRight, self.width())
        painter.drawText(self.rect(), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, shown)


class Charts(pg.GraphicsLayoutWidget):
    """Loss (raw, smoothed, held-out, best), learning rate and throughput. `redraw` does
    nothing unless points arrived; the Train panel calls it every other second."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground("w")
        self.loss_plot = self.addPlot(row=0, col=0, title="loss")
        self.loss_plot.addLegend(offset=(-10, 10))
        # No grid lines: pyqtgraph draws them with the axes at every repaint, and they made a
        # repaint 46 ms instead of 7.5 ms (measured, offscreen raster) -- the window's longest
        # stall while training.
        self.raw = self.loss_plot.plot(pen=pg.mkPen((150, 180, 220), width=1), name="train")
        self.smooth = self.loss_plot.plot(pen=pg.mkPen((30, 90, 180), width=2), name="train (smoothed)")
        self.held_out = self.loss_plot.plot(pen=pg.mkPen((220, 90, 30), width=2), symbol="o",
                                            symbolSize=6, symbolBrush=(220, 90, 30), name="held-out")
        self.best = self.loss_plot.plot(pen=None, symbol="star", symbolSize=16,
                                        symbolBrush=(240, 190, 0), name="best checkpoint")
        self.lr_plot = self.addPlot(row=1, col=0, title="learning rate")
        self.lr = self.lr_plot.plot(pen=pg.mkPen((90, 150, 90), width=2))
        self.rate_plot = self.addPlot(row=2, col=0, title="throughput (items/s)")
        self.rate = self.rate_plot.plot(pen=pg.mkPen((130, 90, 170), width=2))
        for plot in (self.lr_plot, self.rate_plot):
            plot.setXLink(self.loss_plot)
        for plot in (self.loss_plot, self.lr_plot, self.rate_plot):
            plot.disableAutoRange()  # the ranges are set in redraw(): see _fit_y
        for curve in (self.raw, self.smooth, self.lr, self.rate):
            # A long run's thousands of points drawn as one segment per pixel column, through its
            # min and max there (pyqtgraph's default keeps 5 points a pixel): drawing 20,000
            # points took 10 ms a curve, every redraw.
            curve.setDownsampling(auto=True, method="peak")
            curve.opts["autoDownsampleFactor"] = 1.0
        self.ci.layout.setRowStretchFactor(0, 3)
        self._title = None
        self.reset()

    def reset(self):
        self.steps, self.losses, self.smoothed, self.lrs, self.rates = [], [], [], [], []
        self.eval_steps, self.eval_values, self.best_point = [], [], None
        self.metric = "val_loss"
        self.max_steps, self.horizon = 0, None
        self.y_ranges: dict = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.dirty = self.evals_dirty = True
        self.redraw()

    def add(self, record: dict) -> None:
        kind = record["event"]
        if kind == "start":
            self.max_steps = record.get("max_steps") or 0
            return
        if kind == "progress" and record.get("loss") is not None and math.isfinite(record["loss"]):
            loss = record["loss"]
            self.steps.append(record["step"])
            self.losses.append(loss)
            self.smoothed.append(loss if not self.smoothed else
                                 (1 - SMOOTHING_ALPHA) * self.smoothed[-1] + SMOOTHING_ALPHA * loss)
            self.lrs.append(record.get("lr") or 0.0)
            self.rates.append(record.get("items_per_s") or 0.0)
        elif kind == "eval":
            # Held-out loss shares the training loss's units; otherwise the run's best metric.
            metrics = record["metrics"]
            self.metric = "val_loss" if "val_loss" in metrics else record.get("best_metric", self.metric)
            value = metrics.get(self.metric)
            if value is not None:
                self.eval_steps.append(record["step"])
                self.eval_values.append(value)
                if record.get("is_best"):
                    self.best_point = (record["step"], value)
                self.evals_dirty = True
        else:
            return
        self.dirty = True

    def redraw(self) -> None:
        if not self.dirty:
            return
        self._extend_horizon()
        steps, losses, lrs, rates = (self._array(name) for name in ("steps", "losses", "lrs", "rates"))
        self.raw.setData(steps, losses)
        self.smooth.setData(steps, self._array("smoothed"))
        self.lr.setData(steps, lrs)
        self.rate.setData(steps, rates)
        if self.evals_dirty:  # the symbols are rebuilt on every setData: only when they changed
            self.held_out.setData(self.eval_steps, self.eval_values)
            self.best.setData(*([[self.best_point[0]], [self.best_point[1]]] if self.best_point else [[], []]))
            self.evals_dirty = False
        title = f"loss (held-out: {self.metric})"
        if title != self._title:  # a new title re-lays out the whole chart: only on a change
            self.loss_plot.setTitle(title)
            self._title = title
        self._fit_y(self.loss_plot, min(losses.min(initial=math.inf), min(self.eval_values, default=math.inf)),
                    max(losses.max(initial=-math.inf), max(self.eval_values, default=-math.inf)))
        self._fit_y(self.lr_plot, 0.0, lrs.max(initial=-math.inf), from_zero=True)
        self._fit_y(self.rate_plot, 0.0, rates.max(initial=-math.inf), from_zero=True)
        self.dirty = False

    def _array(self, name: str) -> np.ndarray:
        """One of the lists as a numpy array, converting only what was appended since the last
        redraw: converting a long run's 20,000 Python floats took 0.5 ms a curve, every redraw."""
        values, array = getattr(self, name), self.arrays.get(name, np.empty(0))  # reset() empties both
        if len(array) < len(values):
            array = self.arrays[name] = np.concatenate([array, np.asarray(values[len(array):], dtype=float)])
        return array

    def _fit_y(self, plot, low: float, high: float, from_zero: bool = False) -> None:
        """Fit the y axis to the values' span, with room to spare, only when they leave it or
        fill less than half of it. pyqtgraph's auto-range refitted after every new point, and
        each refit repainted the charts once more: 2.4 repaints per redraw instead of 1."""
        if not (math.isfinite(low) and math.isfinite(high)):
            return  # no points yet
        current = self.y_ranges.get(plot)
        if current and current[0] <= low and high <= current[1] and high - low >= 0.5 * (current[1] - current[0]):
            return
        pad = 0.15 * ((high - low) or abs(high) or 1.0)  # a falling loss refits every few redraws
        low, high = (low if from_zero else low - pad), high + pad
        plot.setYRange(low, high, padding=0)
        self.y_ranges[plot] = (low, high)

    def _extend_horizon(self) -> None:
        """The step axis grows by doubling (capped at the run's max_steps) instead of following
        every new point: an unchanged range spares re-laying out the three linked x axes and
        redrawing their labels, which was most of a repaint's cost on a busy CPU."""
        last = max(self.steps[-1:] + self.eval_steps[-1:], default=0)
        horizon = 64
        while horizon < last:
            horizon *= 2
        if self.max_steps:
            horizon = min(horizon, self.max_steps)
        if horizon != self.horizon:
            self.loss_plot.setXRange(0, horizon, padding=0.02)
            self.horizon = horizon


class TrainPanel(QWidget):
    run_started = Signal(str)

    def __init__(self, session, data_panel=None, parent=None):
        super().__init__(parent)
        self.session = session
        self.data_panel = data_panel
        self.trainer = TrainerProcess(self)
        self.run_dir: str | None = None
        self.max_steps = 0
        self.follow_latest = True
        self.preview_steps: list[int] = []
        self.sample_task = None
        self.init_record: dict | None = None  # weights a duplicated fine-tuning run starts from
        self._build()
        self.trainer.event.connect(self._on_event)
        self.trainer.failed.connect(self._on_failed)
        self.trainer.finished.connect(self._on_finished)
        session.generator_changed.connect(self._generator_changed)
        session.data_changed.connect(lambda _: self.update_buttons())
        if data_panel is not None:
            data_panel.report_ready.connect(lambda _: self.update_buttons())
        self.pending_progress: dict | None = None  # the latest progress event, not yet shown
        self.refreshes = 0
        self.trainer.polled.connect(self._refresh_display)
        self.rebuild_forms()
        self._detect_devices()

    # -- layout
    def _build(self):
        self.preset = QComboBox()
        self.preset.setToolTip("Start from a named shape of this generator")
        self.save_preset = QPushButton("Save preset…")
        self.save_preset.setToolTip("Save these settings as a JSON file (usable with `studio train --config`)")
        self.load_preset = QPushButton("Load preset…")
        self.load_preset.setToolTip("Load settings from a JSON file")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu"])
        self.device.setToolTip("Where to train: auto picks a GPU when there is one")
        self.forms_area = QScrollArea()
        self.forms_area.setWidgetResizable(True)
        self.forms_area.setMinimumWidth(330)

        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Start training a new run (Ctrl+Enter)")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Pause after the current step (a checkpoint is written)")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the paused or stopped run")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop with a checkpoint (Ctrl+.)")
        self.sample_button = QPushButton("Sample now")
        self.sample_button.setToolTip("Sample from the latest checkpoint while training goes on")
        self.problem = QLabel("")
        self.problem.setStyleSheet("color: #c62828;")
        self.problem.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m steps")
        self.stats = StatusLine("not started")
        self.run_label = QLabel("")
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.error_box = QGroupBox("Training stopped with an error")
        self.error_box.setStyleSheet("QGroupBox { color: #c62828; }")
        self.error_message = QLabel("")
        self.error_message.setWordWrap(True)
        self.error_log = QPlainTextEdit()
        self.error_log.setReadOnly(True)
        self.error_log.setMaximumHeight(140)
        self.error_resume = QPushButton("Resume from the last checkpoint")
        error_layout = QVBoxLayout(self.error_box)
        error_layout.addWidget(self.error_message)
        error_layout.addWidget(self.error_log)
        error_layout.addWidget(self.error_resume, alignment=Qt.AlignmentFlag.AlignLeft)
        self.error_box.hide()

        self.charts = Charts()
        self.preview_label = QLabel("Live previews appear here during training")
        self.scrubber = QSlider(Qt.Orientation.Horizontal)
        self.scrubber.setToolTip("Look back at earlier previews")
        self.scrubber.setEnabled(False)
        self.previews = SampleGrid(columns=3, size=140)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        row = QHBoxLayout()
        row.addWidget(QLabel("Preset"))
        row.addWidget(self.preset, 1)
        left_layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.save_preset)
        row.addWidget(self.load_preset)
        left_layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Device"))
        row.addWidget(self.device, 1)
        left_layout.addLayout(row)
        left_layout.addWidget(self.forms_area, 1)

        controls = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.resume_button, self.stop_button,
                       self.sample_button):
            controls.addWidget(button)
        controls.addStretch(1)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addLayout(controls)
        right_layout.addWidget(self.problem)
        right_layout.addWidget(self.progress)
        right_layout.addWidget(self.stats)
        right_layout.addWidget(self.run_label)
        right_layout.addWidget(self.error_box)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.charts)
        preview_box = QWidget()
        preview_layout = QVBoxLayout(preview_box)
        preview_layout.addWidget(self.preview_label)
        preview_layout.addWidget(self.scrubber)
        preview_layout.addWidget(self.previews, 1)
        split.addWidget(preview_box)
        right_layout.addWidget(split, 1)
        outer = QSplitter(Qt.Orientation.Horizontal)
        outer.addWidget(left)
        outer.addWidget(right)
        outer.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(outer)

        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.trainer.pause)
        self.resume_button.clicked.connect(self.resume_clicked)
        self.stop_button.clicked.connect(self.stop)
        self.sample_button.clicked.connect(self.sample_now)
        self.error_resume.clicked.connect(lambda: self.resume_run(self.run_dir))
        self.preset.activated.connect(self._apply_preset)
        self.save_preset.clicked.connect(self._save_preset)
        self.load_preset.clicked.connect(self._load_preset)
        self.scrubber.valueChanged.connect(self._scrub)
        QShortcut(QKeySequence("Ctrl+Return"), self, activated=self.start)
        QShortcut(QKeySequence("Ctrl+."), self, activated=self.stop)

    def _detect_devices(self):
        def detect(ctx):
            from studio.engine import available_devices
            return available_devices()
        task = workers.Task(detect)
        task.signals.done.connect(self._devices_found)
        self._device_task = workers.start(task)

    def _devices_found(self, devices):
        current = self.device.currentText()
        self.device.clear()
        self.device.addItems(["auto", *devices])
        preferred = self.session.settings.default_device
        self.device.setCurrentText(preferred if preferred in ("auto", *devices) else current)

    # -- forms
    def _generator_changed(self, name: str) -> None:
        self.init_record = None
        self.rebuild_forms()

    def rebuild_forms(self, values: dict | None = None) -> None:
        """Forms for the current generator's config and the training config."""
        gen_cls = self.session.generator_class()
        train_cls = TrainConfig
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addWidget(QLabel(f"<b>{gen_cls.name}</b> model and data"))
        self.gen_form = ConfigForm(gen_cls.Config, (values or {}).get("config"))
        layout.addWidget(self.gen_form)
        layout.addWidget(QLabel("<b>training</b>"))
        self.train_form = ConfigForm(train_cls, {**gen_cls.train_defaults, **(values or {}).get("train", {})})
        layout.addWidget(self.train_form)
        self.train_form.widgets["device"].setEnabled(False)  # the device box above sets it
        self.train_form.widgets["device"].setToolTip("set with the Device box above")
        self.forms_area.setWidget(body)
        self.gen_form.changed.connect(self.update_buttons)
        self.train_form.changed.connect(self.update_buttons)
        self.preset.clear()
        self.preset.addItems(["(defaults)", *gen_cls.presets])
        self.update_buttons()

    def _apply_preset(self, index: int) -> None:
        gen_cls = self.session.generator_class()
        name = self.preset.itemText(index)
        defaults = {f["name"]: f["default"] for f in self.gen_form.schema.values()}
        self.gen_form.set_values({**defaults, **gen_cls.presets.get(name, {})})

    def settings_document(self) -> dict:
        return {"config": self.gen_form.config_values(),
                "train": {**self.train_form.config_values(), "device": self.device.currentText()}}

    def _save_preset(self):
        path, _ = QFileDialog.getSaveFileName(self, "Save settings", "", "JSON (*.json)")
        if path:
            write_json(Path(path), self.settings_document())

    def _load_preset(self):
        path, _ = QFileDialog.getOpenFileName(self, "Load settings", "", "JSON (*.json)")
        if path:
            self.load_settings_file(path)

    def load_settings_file(self, path: str) -> None:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                raise ValueError("expected a JSON object")
        except (OSError, ValueError) as exc:
            show_error(self, "Cannot load settings", f"{path}: {exc}")
            return
        self.gen_form.set_values(doc.get("config", {}))
        self.train_form.set_values(doc.get("train", {}))

    # -- state
    def blocking_problem(self) -> str | None:
        """Why Start cannot act now, in words (None: it can)."""
        if self.trainer.running:
            return None
        for form, label in ((self.gen_form, "model"), (self.train_form, "training")):
            config, problem = form.validate()
            if config is None:
                return f"{label} settings: {problem}"
        if self.data_panel is not None and self.data_panel.problem:
            return f"data: {self.data_panel.problem}"
        return None

    def update_buttons(self) -> None:
        running = self.trainer.running
        paused = self.trainer.status == "paused"
        problem = self.blocking_problem()
        self.start_button.setEnabled(not running and problem is None)
        self.pause_button.setEnabled(running and not paused)
        self.resume_button.setEnabled((running and paused) or (not running and self._resumable()))
        self.stop_button.setEnabled(running)
        self.sample_button.setEnabled(self.run_dir is not None and bool(RunDir(self.run_dir).checkpoints()))
        self.problem.setText(f"Cannot start: {problem}" if problem and not running else "")
        self.preset.setEnabled(not running)
        self.forms_area.setEnabled(not running)

    def _resumable(self) -> bool:
        return bool(self.run_dir) and RunDir(self.run_dir).config_path.exists() and \
            RunDir(self.run_dir).info().get("status") in ("stopped", "failed", "interrupted", "paused")

    # -- commands
    def start(self) -> None:
        if not self.start_button.isEnabled():
            return
        doc = self.settings_document()
        settings_file = config_dir() / "last-start.json"
        settings_file.parent.mkdir(parents=True, exist_ok=True)
        write_json(settings_file, doc)
        run_dir = self.session.new_run_dir()
        args = [self.session.generator, "--run-dir", str(run_dir), "--config", str(settings_file)]
        if self.session.data_source:
            args += ["--data", self.session.data_source]
        init = self.init_record or {}
        if init.get("run"):
            args += ["--init-from", str(Path(init["run"]) / "checkpoints" / init["checkpoint"])]
        elif init.get("pretrained"):
            args += ["--init-from-hf", init["pretrained"]]
        self._launch(args, str(run_dir))

    def resume_clicked(self) -> None:
        if self.trainer.running:
            self.trainer.resume()
        else:
            self.resume_run(self.run_dir)

    def resume_run(self, run_dir: str | None) -> None:
        if not run_dir or self.trainer.running:
            return
        self._launch(["--resume", str(run_dir)], str(run_dir), history=True)

    def duplicate(self, doc: dict) -> None:
        """Start from another run's settings (the runs browser's 'duplicate with changes')."""
        self.session.set_generator(doc["generator"])
        self.rebuild_forms({"config": doc.get("config", {}), "train": doc.get("train", {})})
        self.init_record = doc.get("init")  # a duplicated fine-tuning run starts from the same weights
        if self.data_panel is not None:
            self.data_panel.set_source((doc.get("data") or {}).get("source"))

    def _launch(self, args: list[str], run_dir: str, history: bool = False) -> None:
        self.run_dir = run_dir
        self.error_box.hide()
        self.charts.reset()
        self.preview_steps, self.follow_latest = [], True
        if history:  # a resumed run: draw what it has done so far
            for record in RunDir(run_dir).events():
                self.charts.add(record)
            self._refresh_previews()
        self.run_label.setText(f"run folder: {run_dir}")
        self.stats.setText("starting…")
        self.trainer.start(args, run_dir)
        self.update_buttons()
        self.run_started.emit(run_dir)

    def stop(self) -> None:
        if self.trainer.running:
            self.trainer.stop()
            self.stats.setText(self.stats.text() + " — stopping (writing a checkpoint)…")

    # -- events from the child process
    def _on_event(self, record: dict) -> None:
        kind = record["event"]
        self.charts.add(record)
        if kind == "start":
            self.max_steps = record["max_steps"]
            self.progress.setRange(0, self.max_steps)
            self._set_progress(record["step"])
            self.stats.setText(f"training on {record['device']} ({record['precision']}) · "
                               f"{record['params'] / 1e6:.2f}M parameters")
        elif kind == "progress":
            self.pending_progress = record  # shown by the next _refresh_display
        elif kind == "preview":
            QTimer.singleShot(0, self._refresh_previews)  # a turn of its own: see _refresh_display
        elif kind in ("paused", "resumed", "checkpoint"):
            if kind == "paused":
                self._show_final_state(record["step"], f"paused at step {record['step']} (checkpoint written)")
            self.update_buttons()
        elif kind == "done":
            self._show_final_state(record["step"], f"{record['status']} at step {record['step']} "
                                                   f"({record['reason']})")

    def _show_final_state(self, step: int, text: str) -> None:
        """At once, and not overwritten by a progress event still waiting to be shown."""
        self.pending_progress = None
        self._set_progress(step)
        self.stats.setText(text)

    def _set_progress(self, step: int) -> None:
        """QProgressBar.setValue repaints the bar at once, out of turn (3 ms a call, measured);
        with its updates off for the call, the bar is only marked, and painted with the rest of
        the window in one pass."""
        self.progress.setUpdatesEnabled(False)
        self.progress.setValue(step)
        self.progress.setUpdatesEnabled(True)

    def _refresh_display(self) -> None:
        """The latest progress and the charts, if anything changed and the panel is visible."""
        if not self.isVisible():
            return
        record, self.pending_progress = self.pending_progress, None
        if record is not None:
            self._set_progress(record["step"])
            eta = record.get("eta_s")
            eta_text = f" · ETA {_duration(eta)}" if eta is not None else ""
            self.stats.setText(f"step {record['step']} / {record['max_steps']} · loss "
                               f"{record['loss']:.4f} · {record['items_per_s']:,.0f} "
                               f"{record['unit']}/s{eta_text}")
        self.refreshes += 1
        if self.refreshes % CHART_EVERY == 0:
            # In a turn of the event loop of its own, so that a click or a keypress waiting
            # since the log was read is handled before it, not after (shorter stalls).
            QTimer.singleShot(0, self.charts.redraw)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self._catch_up)

    def _catch_up(self) -> None:
        """What arrived while another tab was shown, at once."""
        self._refresh_display()
        self.charts.redraw()

    def _on_failed(self, message: str, log: str) -> None:
        self.error_message.setText(message)
        self.error_log.setPlainText(log)
        self.error_resume.setEnabled(self.run_dir is not None and RunDir(self.run_dir).config_path.exists())
        self.error_box.show()

    def _on_finished(self, code: int, status: str) -> None:
        self.charts.redraw()
        self.update_buttons()
        self.session.runs_changed.emit()

    # -- previews
    def _refresh_previews(self) -> None:
        if not self.run_dir:
            return
        self.preview_steps = [step for step, _ in list_previews(RunDir(self.run_dir))]
        if not self.preview_steps:
            return
        self.scrubber.blockSignals(True)
        self.scrubber.setRange(0, len(self.preview_steps) - 1)
        if self.follow_latest:
            self.scrubber.setValue(len(self.preview_steps) - 1)
        self.scrubber.setEnabled(len(self.preview_steps) > 1)
        self.scrubber.blockSignals(False)
        self._show_preview(self.scrubber.value())

    def _scrub(self, index: int) -> None:
        self.follow_latest = index == len(self.preview_steps) - 1
        self._show_preview(index)

    def _show_preview(self, index: int) -> None:
        if not 0 <= index < len(self.preview_steps):
            return
        step = self.preview_steps[index]
        _, samples = load_samples(RunDir(self.run_dir).previews_dir / f"step_{step:07d}")
        self.preview_label.setText(f"preview at step {step} (fixed prompts and seeds)")
        self.previews.set_samples(samples)

    def sample_now(self) -> None:
        """Sample the probe set from the latest checkpoint, in the background."""
        run_dir = self.run_dir
        if not run_dir:
            return

        def sample(ctx, path):
            import torch
            from studio import api
            run, gen, folder = api.load_run(path, device="cpu")
            with torch.no_grad():
                return folder.name, gen.preview()

        task = workers.Task(sample, run_dir)
        task.signals.done.connect(self._sampled)
        task.signals.failed.connect(self._sample_failed)
        self.sample_button.setEnabled(False)
        task.signals.finished.connect(self.update_buttons)
        self.sample_task = workers.start(task)

    def _sample_failed(self, message: str) -> None:
        show_error(self, "Cannot sample", message)

    def _sampled(self, result) -> None:
        checkpoint, samples = result
        self.follow_latest = False
        self.preview_label.setText(f"sampled now from {checkpoint}")
        self.previews.set_samples(samples)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
