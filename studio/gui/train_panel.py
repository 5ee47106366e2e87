"""The training panel: a form built from the generator's config, device, Start / Pause /
Resume / Stop, progress with rate and ETA, live charts and live previews.

A new run starts from nothing, from a run's best checkpoint or from an imported model folder
(Start from); starting from weights fills the forms with what `studio train --init-from` gives
such a run (api.build_configs): the model's shape from the weights, fixed, and the generator's
fine-tuning defaults.

Training runs in a child process (studio/gui/trainer.py); this panel only sends it commands
and draws what its events say. It redraws once after each time the child's output is read (once
a second), so a fast stream of events never floods the event loop.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QPainter, QShortcut
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QFrame, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QMessageBox, QPlainTextEdit,
                               QProgressBar, QPushButton, QScrollArea, QSizePolicy, QSlider,
                               QSplitter, QVBoxLayout, QWidget)

from studio import api
from studio.config import TrainConfig, to_dict
from studio.contract import Generator, Sample
from studio.errors import StudioError
from studio.gui import workers
from studio.gui.charts import Charts
from studio.gui.config_form import ConfigForm
from studio.gui.messages import duration_text, for_window
from studio.gui.session import why_not_a_base
from studio.gui.settings import config_dir
from studio.gui.trainer import TrainerProcess
from studio.gui.views import SampleGrid
from studio.runstore import RunDir, busy_message, list_previews, load_samples, write_json

# Progress text is repainted once a second (when the child's output has been read) and charts
# every other time, and only while the panel is on screen: the training child needs the cores.
# Following each event as it came took 3.5% of a core, and on 2 cores every wake-up of the
# window stalls both of the child's compute threads (bench/bench_gui.py).
CHART_EVERY = 2  # redraws: a chart repaint costs several times the progress text's

PREVIEW_SIZE = 140  # px: a text preview's width, an image's at least (views scale them up)
PREVIEW_MIN_HEIGHT = 200  # px: the preview area never shrinks below this; the panel scrolls
SAMPLE_NOW_GRID = 16  # images in "Sample now"'s grid
SAMPLE_NOW_COUNT = 2  # samples of a generator that draws no grids (texts)

# The settings that decide the shapes of a model's weights: a run that starts from weights takes
# them from there (api._describe_init) and cannot change them. The contract declares no such
# list yet, so these are the built-in generators' names (text; image and video GANs).
FROM_SCRATCH = "Nothing — train from scratch"
IMPORT_FOLDER = "Imported model folder…"  # the entry that asks for a folder (its item data too)


def choice_help(help_text: str, choice: str) -> str:
    """What one choice of a setting means, from its help written as "a: ...; b: ..." (the text
    generator's task: "generate: continue text ...; classify: a class per text ..."); the whole
    help when it is not written so."""
    for part in help_text.split("; "):
        name, _, meaning = part.partition(": ")
        if name.strip() == choice and meaning:
            return meaning
    return help_text


def task_only(help_text: str, tasks: list[str]) -> set[str] | None:
    """The tasks a setting applies to, when its help starts with them ("classify: the text's
    vector ...", "classify/tag: balanced weighs ..."); None for a setting of every task."""
    prefix, colon, _ = help_text.partition(":")
    named = set(prefix.strip().split("/")) if colon else set()
    return named if named and named <= set(tasks) else None


def show_error(parent, title: str, message: str) -> None:
    """A clear message in a dialog (tests replace this to read it)."""
    QMessageBox.warning(parent, title, message)


def pick_model_folder(parent) -> str:
    """A model folder chosen in a dialog, "" when cancelled (tests replace this)."""
    return QFileDialog.getExistingDirectory(parent, "Imported model folder (Hugging Face GPT-2)")


def shape_settings(gen_cls) -> tuple[str, ...]:
    """The generator's settings that the weights a run starts from fix (Generator.shape_settings);
    a plugin's odd declaration fixes none rather than take the window down."""
    try:
        return tuple(str(name) for name in gen_cls.shape_settings)
    except Exception:
        return ()


def imports_models(gen_cls) -> bool:
    """Whether the generator reads foreign pretrained folders (it overrides the contract's
    pretrained_config, which refuses them)."""
    return gen_cls.pretrained_config.__func__ is not Generator.pretrained_config.__func__


def start_label(record: dict, title: str = "") -> str:
    """How Start from names a record of what a run starts from (config.json's "init")."""
    if record.get("pretrained"):
        return f"imported model {Path(record['pretrained']).name}"
    return f"{title or Path(record['run']).name} · {record['checkpoint']}"


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


class TrainPanel(QWidget):
    """Shows the session's current run: live while it trains here, otherwise its charts and
    previews from its folder."""

    run_started = Signal(str)
    # Short progress for the window title: "step 45/200 (22%)", "paused at 45/200"; "" when idle.
    progress_changed = Signal(str)

    def __init__(self, session, data_panel=None, parent=None):
        super().__init__(parent)
        self.session = session
        self.data_panel = data_panel
        self.trainer = TrainerProcess(self)
        self.run_dir: str | None = None  # the run shown: training here, or opened
        self.shown_run_title = ""
        self.max_steps = 0
        self.follow_latest = True
        self.preview_steps: list[int] = []
        self.preview_folders: list[Path] = []
        self.sample_task = None
        self.start_applied: dict | None = None  # the Start from choice the forms were filled for
        self.lora_rank_shown: int | None = None  # the LoRA rank whose learning rate the form shows
        self.pending_progress: dict | None = None  # the latest progress event, not yet shown
        self.latest_progress: dict | None = None  # ... and for the window title
        self.progress_text = ""
        self.refreshes = 0
        self._build()
        self.trainer.event_read.connect(self._on_event)
        self.trainer.failed.connect(self._on_failed)
        self.trainer.finished.connect(self._on_finished)
        self.trainer.polled.connect(self._refresh_display)
        session.generator_changed.connect(self._generator_changed)
        session.data_changed.connect(lambda _: self.update_buttons())
        session.val_data_changed.connect(lambda _: self.update_buttons())
        session.run_changed.connect(self.show_run)
        session.runs_changed.connect(self._check_shown_run)
        session.runs_changed.connect(self._fill_start_choices)  # a new run to start from
        session.theme_changed.connect(self._theme_changed)
        if data_panel is not None:
            data_panel.report_ready.connect(lambda _: self.update_buttons())
        self.rebuild_forms()
        self._fill_start_choices()
        self._detect_devices()
        if session.current_run:
            self.show_run(session.current_run)

    # -- layout
    def _build(self):
        self.run_name = QLineEdit()
        self.run_name.setPlaceholderText("optional: names the new run and its folder")
        self.run_name.setToolTip("A name for the next run (shown in Runs and the title bar)")
        self.run_notes = QLineEdit()
        self.run_notes.setPlaceholderText("optional: what this run tries")
        self.run_notes.setToolTip("Notes kept with the run (shown in Runs)")
        self.start_from = QComboBox()
        self.start_from.setToolTip("What the new run's model starts from: new weights, the best "
                                   "checkpoint of one of your runs, or an imported model")
        self.start_from.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.start_from_note = QLabel("")
        self.start_from_note.setWordWrap(True)
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
        self.problem = QLabel("")
        self.problem.setStyleSheet("color: #c62828;")
        self.problem.setWordWrap(True)
        self.notice = QLabel("")  # what just happened to the form or the run, in a sentence
        self.notice.setWordWrap(True)
        self.notice.hide()
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m steps")
        self.stats = StatusLine("not started")
        self.run_label = QLabel("")
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.run_label.hide()

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
        self.preview_label.setWordWrap(True)
        self.sample_prompt = QLineEdit()
        self.sample_prompt.setPlaceholderText("your prompt (optional)")
        self.sample_prompt.setMinimumWidth(170)
        self.sample_prompt.setToolTip("What Sample now starts from: text, or a class name for "
                                      "images. Empty: no prompt.")
        self.sample_seed = QLineEdit()
        self.sample_seed.setPlaceholderText("seed: random")
        self.sample_seed.setToolTip("A whole number; empty: a new random seed each time")
        self.sample_seed.setMaximumWidth(110)
        self.sample_button = QPushButton("Sample now")
        self.sample_button.setToolTip("Sample from the latest checkpoint with your prompt and "
                                      "seed, while training goes on")
        self.scrubber = QSlider(Qt.Orientation.Horizontal)
        self.scrubber.setToolTip("Look back at earlier previews")
        self.scrubber.setEnabled(False)
        self.previews = SampleGrid(columns=3, size=PREVIEW_SIZE)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        names = QFormLayout()
        names.addRow("Run name", self.run_name)
        names.addRow("Notes", self.run_notes)
        left_layout.addLayout(names)
        start_box = QGroupBox("Start from")
        start_layout = QVBoxLayout(start_box)
        start_layout.addWidget(self.start_from)
        start_layout.addWidget(self.start_from_note)
        left_layout.addWidget(start_box)
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
        for button in (self.start_button, self.pause_button, self.resume_button, self.stop_button):
            controls.addWidget(button)
        controls.addStretch(1)
        preview_box = QWidget()
        preview_box.setMinimumHeight(PREVIEW_MIN_HEIGHT)
        preview_layout = QVBoxLayout(preview_box)
        preview_layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.sample_prompt, 1)
        row.addWidget(self.sample_seed)
        row.addWidget(self.sample_button)
        preview_layout.addLayout(row)
        preview_layout.addWidget(self.preview_label)
        preview_layout.addWidget(self.scrubber)
        preview_layout.addWidget(self.previews, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.charts)
        split.addWidget(preview_box)
        split.setChildrenCollapsible(False)  # a chart dragged to nothing is lost to the user
        split.setSizes([1000, 1000])  # previews get as much room as the charts

        # The primary buttons and the progress stay in view; charts and previews keep their
        # minimum heights and scroll together when the window is small (900x600).
        self.body = QScrollArea()
        self.body.setWidgetResizable(True)
        self.body.setFrameShape(QFrame.Shape.NoFrame)
        self.body.setWidget(split)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addLayout(controls)
        right_layout.addWidget(self.problem)
        right_layout.addWidget(self.notice)
        right_layout.addWidget(self.progress)
        right_layout.addWidget(self.stats)
        right_layout.addWidget(self.run_label)
        right_layout.addWidget(self.error_box)
        right_layout.addWidget(self.body, 1)
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
        self.sample_seed.returnPressed.connect(self.sample_now)
        self.sample_prompt.returnPressed.connect(self.sample_now)
        self.error_resume.clicked.connect(lambda: self.resume_run(self.run_dir))
        self.preset.activated.connect(self._apply_preset)
        self.start_from.activated.connect(self._start_from_activated)
        self.save_preset.clicked.connect(self._save_preset)
        self.load_preset.clicked.connect(self._load_preset)
        self.scrubber.valueChanged.connect(self._scrub)
        # Start while this panel is shown (a hidden tab's shortcuts do not fire). Stop is the
        # window's Ctrl+. : it stops whatever runs, training or generating.
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self, activated=self.start)

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
        self.start_from.clear()  # a run of another generator is no start for this one
        self.rebuild_forms()
        self._fill_start_choices()

    def _theme_changed(self, name: str) -> None:
        self.charts.apply_style()
        for form in (self.gen_form, self.train_form):
            form.validate()  # invalid fields take the theme's colours

    def rebuild_forms(self, values: dict | None = None) -> None:
        """Forms for the current generator's config and the training config."""
        gen_cls = self.session.generator_class()
        train_cls = TrainConfig
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addWidget(QLabel(f"<b>{gen_cls.name}</b> model and data"))
        self.gen_form = ConfigForm(gen_cls.Config, (values or {}).get("config"))
        self.task_box = self._lift_task_choice(self.gen_form)
        if self.task_box is not None:
            layout.addWidget(self.task_box)
        layout.addWidget(self.gen_form)
        layout.addWidget(QLabel("<b>training</b>"))
        self.train_form = ConfigForm(train_cls, {**gen_cls.train_defaults, **(values or {}).get("train", {})})
        layout.addWidget(self.train_form)
        self.train_form.widgets["device"].setEnabled(False)  # the device box above sets it
        self.train_form.widgets["device"].setToolTip("set with the Device box above")
        self.forms_area.setWidget(body)
        self.gen_form.changed.connect(self.update_buttons)
        self.gen_form.changed.connect(self._task_chosen)  # a preset or a loaded file may change it
        self.train_form.changed.connect(self.update_buttons)
        self.train_form.changed.connect(self._lora_rank_changed)
        self.lora_rank_shown = self._lora_rank()
        self.preset.clear()
        self.preset.addItems(["(defaults)", *gen_cls.presets])
        self._task_chosen()
        self.update_buttons()

    def _lift_task_choice(self, form: ConfigForm) -> QGroupBox | None:
        """A generator's `task` setting (what the run learns: the text generator generates,
        classifies or tags) taken out of the form's long list and put above it, in a box of its
        own with what the chosen task reads as data: it decides what the data must be, and the
        Data tab checks the data for it. None when the generator has no task setting."""
        choice = form.widgets.get("task")
        if choice is None:
            return None
        taken = form.layout().takeRow(choice)
        if taken.labelItem is not None and taken.labelItem.widget() is not None:
            taken.labelItem.widget().deleteLater()
        box = QGroupBox("Task")
        box.setToolTip("What the new run learns; the Data tab checks your data for it")
        self.task_meaning = QLabel("")
        self.task_meaning.setWordWrap(True)
        row = QHBoxLayout(box)
        row.addWidget(choice)
        row.addWidget(self.task_meaning, 1)
        return box

    def _task_chosen(self) -> None:
        """The task shown: its meaning beside it, only its settings in the form, and the
        session told (the Data tab checks the data again for it)."""
        choice = self.gen_form.widgets.get("task")
        if choice is None or self.task_box is None:
            self.session.set_task(None)
            return
        task = choice.currentText()
        field = self.gen_form.schema["task"]
        self.task_meaning.setText(choice_help(field.get("help", ""), task))
        tasks = [str(c) for c in field.get("choices") or []]
        for name, widget in self.gen_form.widgets.items():
            applies = task_only(self.gen_form.schema[name].get("help", ""), tasks)
            if name != "task" and applies is not None:
                self.gen_form.layout().setRowVisible(widget, task in applies)
        self.session.set_task(task)

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

    # -- what the new run starts from
    @property
    def init_record(self) -> dict | None:
        """What the new run starts from, as its config.json's "init" records it: {"run",
        "checkpoint"} or {"pretrained"}; None: from scratch. Start from's current entry is the
        one place this is kept."""
        data = self.start_from.currentData()
        return data if isinstance(data, dict) else None

    def _fill_start_choices(self) -> None:
        """Start from's entries for the current generator: from scratch; each run of it that
        can be a base, by its name, step and best held-out value (its best checkpoint is
        taken, as `--init-from RUN` takes it); an imported model folder where the generator
        reads them. The entry chosen stays chosen."""
        chosen = self.init_record
        gen_cls = self.session.generator_class()
        self.start_from.blockSignals(True)
        self.start_from.clear()
        self.start_from.addItem(FROM_SCRATCH, None)
        try:
            rows = self.session.all_runs()
        except (StudioError, OSError):
            rows = []  # the Runs tab says what is wrong with the runs folder
        for row in rows:
            if row["generator"] != gen_cls.name or why_not_a_base(row) is not None:
                continue
            try:
                best = RunDir(Path(row["run"])).resolve_checkpoint("best").name
            except StudioError:
                continue
            value = row.get("best")
            measured = f", best {row.get('best_metric')} {value:.4f}" if value is not None else ""
            title = self.session.run_title(row["run"])
            self.start_from.addItem(f"{title} — step {row['step']}{measured}",
                                    {"run": row["run"], "checkpoint": best})
            self.start_from.setItemData(self.start_from.count() - 1, row["run"], Qt.ItemDataRole.ToolTipRole)
        if imports_models(gen_cls):
            self.start_from.addItem(IMPORT_FOLDER, IMPORT_FOLDER)
        self.start_from.blockSignals(False)
        self._select_start(chosen)

    def _select_start(self, record: dict | None) -> None:
        """Make `record` Start from's entry, adding one for it when it is not listed (a
        duplicated run's base at another checkpoint, an imported folder, a base that is gone:
        the new run still names it, and its start says what is wrong)."""
        index = self.start_from.findData(record) if record else 0
        if index < 0:
            title = self.session.run_title(record["run"]) if record.get("run") and \
                Path(record["run"]).is_dir() else ""
            index = self.start_from.count() - (self.start_from.itemData(self.start_from.count() - 1)
                                               == IMPORT_FOLDER)
            self.start_from.insertItem(index, start_label(record, title), record)
        self.start_from.setCurrentIndex(index)
        self.start_applied = record
        self._show_start_note()
        self.update_buttons()

    def _show_start_note(self) -> None:
        record = self.init_record
        if record is None:
            note = "A new model, shaped by the settings below."
        else:
            what = (f"the imported model {Path(record['pretrained']).name}" if record.get("pretrained")
                    else self.session.run_title(record["run"]) if Path(record["run"]).is_dir()
                    else f"{record['run']} (no longer there)")
            note = (f"Fine-tunes {what}: the model's "
                    f"shape comes from its weights (greyed out below); learning rate, warm-up "
                    f"and steps start at the fine-tuning defaults.")
        self.start_from_note.setText(note)

    def _start_from_activated(self, index: int) -> None:
        """The user chose an entry: an imported folder is asked for and checked first (a
        folder that is not a model is refused with why, and the choice before stays)."""
        record = self.start_from.itemData(index)
        if record == IMPORT_FOLDER:
            folder = pick_model_folder(self)
            record = self._imported_record(folder) if folder else None
            if record is None:
                self._select_start(self.start_applied)
                return
        self.choose_start(record)

    def _imported_record(self, folder: str) -> dict | None:
        try:
            self.session.generator_class().pretrained_config(folder)
        except StudioError as exc:
            show_error(self, "Cannot start from this folder", for_window(str(exc)))
            return None
        return {"pretrained": str(Path(folder).resolve())}

    def choose_start(self, record: dict | None) -> None:
        """Start the next run from `record` (None: from scratch), with the forms filled for it:
        the values `studio train --init-from` gives such a run (api.build_configs with the
        model started from): its shape from the weights, fixed; the generator's fine-tuning
        settings (learning rate, warm-up, steps; a classifier's pooling). A value the user
        changed by hand stays, unless it is part of the shape. From scratch, the fine-tuning
        values give way to the generator's defaults again and the shape can be changed."""
        try:
            start_config = self._start_config(record)
        except StudioError as exc:
            show_error(self, "Cannot start from it", for_window(str(exc)))
            self._select_start(self.start_applied)
            return
        gen_cls = self.session.generator_class()
        rank = self._lora_rank()
        gen_config, train_config = api.build_configs(
            gen_cls, start_from=start_config, fine_tune=record is not None,
            settings=[f"lora_rank={rank}"] if rank else None)
        gen_values, train_values = to_dict(gen_config), to_dict(train_config)
        if record is None:
            self.gen_form.fix_values({}, "")
            # The shape the user sees stays; only the settings fine-tuning changed go back.
            gen_values = {name: gen_values[name] for name in gen_cls.finetune_config}
        else:
            shape = {name: gen_values[name] for name in shape_settings(gen_cls)
                     if name in start_config and name in gen_values}
            self.gen_form.fix_values(shape, "From the weights this run starts from: a model "
                                            "that starts from them keeps their shape")
        self.gen_form.set_values({name: value for name, value in gen_values.items()
                                  if name not in self.gen_form.edited})
        empty = {name for name, value in self.train_form.raw_values().items() if value is None}
        # Left empty, an interval is scaled to the run's length by the run itself: it stays so.
        self.train_form.set_values({name: value for name, value in train_values.items()
                                    if name not in self.train_form.edited | empty | {"device"}})
        self.lora_rank_shown = self._lora_rank()
        self._select_start(record)

    def _start_config(self, record: dict | None) -> dict | None:
        """The generator settings that what the run starts from implies (None: nothing), read
        as the core reads them."""
        if record is None:
            return None
        gen_cls = self.session.generator_class()
        if record.get("pretrained"):
            return gen_cls.pretrained_config(record["pretrained"])
        run = RunDir.open(Path(record["run"]))
        return api.run_settings(gen_cls, run.config(), run.config_path)

    def fine_tune_from(self, path: str) -> None:
        """Runs › Fine-tune from this run: Start from that run's best checkpoint, the forms
        filled for it."""
        self.session.set_generator(self.session.run_generator(path) or self.session.generator)
        self._fill_start_choices()
        try:
            best = RunDir.open(Path(path)).resolve_checkpoint("best").name
        except StudioError as exc:
            show_error(self, "Cannot start from it", for_window(str(exc)))
            return
        self.choose_start({"run": str(path), "checkpoint": best})
        self._say(f"The next run fine-tunes {self.session.run_title(path)}: choose its task and "
                  f"data, then press Start.")

    def _lora_rank(self) -> int | None:
        """The form's LoRA rank, None while it is not a valid number."""
        try:
            return int(self.train_form.raw_values().get("lora_rank") or 0)
        except ValueError:
            return None

    def _lora_rank_changed(self) -> None:
        """A new LoRA rank takes the learning rate a run of that rank gets when nobody sets one
        (api.build_configs: 10x for LoRA); a learning rate typed by hand stays."""
        rank = self._lora_rank()
        if rank is None or rank == self.lora_rank_shown:
            return
        self.lora_rank_shown = rank
        if "lr" in self.train_form.edited:
            return
        try:
            _, train_config = api.build_configs(self.session.generator_class(),
                                                fine_tune=self.init_record is not None,
                                                settings=[f"lora_rank={rank}"])
        except StudioError:
            return  # the form marks the invalid value
        self.train_form.set_values({"lr": train_config.lr})

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
        self.sample_button.setEnabled(self.run_dir is not None and self.sample_task is None
                                      and bool(RunDir(self.run_dir).checkpoints()))
        self.problem.setText(f"Cannot start: {problem}" if problem and not running else "")
        self.problem.setVisible(bool(self.problem.text()))  # an empty line would push the charts down
        from_weights = self.init_record is not None
        self.preset.setEnabled(not running and not from_weights)
        self.preset.setToolTip("The model's shape comes from the weights it starts from"
                               if from_weights else "Start from a named shape of this generator")
        self.start_from.setEnabled(not running)
        self.forms_area.setEnabled(not running)

    def _resumable(self) -> bool:
        return bool(self.run_dir) and RunDir.is_run(self.run_dir) and \
            RunDir(self.run_dir).status() in ("stopped", "failed", "interrupted", "paused",
                                              "stopped: disk full")

    def _say(self, text: str) -> None:
        """A sentence above the progress bar ("" hides it)."""
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    def _name_run(self, text: str) -> None:
        """The line that names the run shown ("" hides it)."""
        self.run_label.setText(text)
        self.run_label.setVisible(bool(text))

    def _announce(self, text: str) -> None:
        """The window title's progress, only when it changed."""
        if text != self.progress_text:
            self.progress_text = text
            self.progress_changed.emit(text)

    # -- the run shown
    def show_run(self, path: str) -> None:
        """The session's current run, when nothing trains here: its charts from its events, its
        previews, and a label naming it. While a run trains, the panel stays on that one."""
        if self.trainer.running or (path or None) == self.run_dir:
            return
        if self.run_dir and not Path(self.run_dir).exists():  # the session moves on from a deleted run
            self._forget_deleted_run()
        self._clear_display()
        self.error_box.hide()
        self.run_dir = path or None
        if not path:
            self._name_run("")
            self.stats.setText("not started")
            self.update_buttons()
            return
        run = RunDir(path)
        info = run.info()
        self._follow_config(run)
        for record in run.events():
            self.charts.add(record)
        self.charts.redraw()
        self.max_steps = self.charts.max_steps or info.get("step", 0)
        self.progress.setRange(0, max(self.max_steps, 1))
        self._set_progress(info.get("step", 0))
        self.shown_run_title = self.session.run_title(path)
        self._name_run(f"showing run {self.shown_run_title} · {path}")
        self.stats.setText(f"{run.status() if info else 'not started'} at step {info.get('step', 0)}")
        self._refresh_previews()
        self.update_buttons()

    def _clear_display(self) -> None:
        """No charts, previews or progress of the run shown before."""
        self.charts.reset()
        self.preview_steps, self.preview_folders, self.follow_latest = [], [], True
        self.scrubber.blockSignals(True)
        self.scrubber.setRange(0, 0)
        self.scrubber.setEnabled(False)
        self.scrubber.blockSignals(False)
        self.previews.set_samples([], empty="no previews yet")
        self.preview_label.setText("Live previews appear here during training")
        self.pending_progress = self.latest_progress = None
        self.progress.setRange(0, 1)
        self._set_progress(0)

    def _follow_config(self, run: RunDir) -> None:
        """What the charts need from the run's config: a GAN's discriminator learning rate
        multiple (its progress events carry the lr setting only)."""
        try:
            config = run.config().get("config", {})
        except (StudioError, OSError):
            return
        self.charts.set_d_lr_ratio(config.get("d_lr_ratio"))

    def _check_shown_run(self) -> None:
        """Runs were added or deleted: if the run shown was deleted, say so and let it go."""
        if self.run_dir and not self.trainer.running and not Path(self.run_dir).exists():
            self._forget_deleted_run()

    def _forget_deleted_run(self) -> None:
        name = self.shown_run_title or Path(self.run_dir).name  # as the Runs tab called it
        self._clear_display()
        self.error_box.hide()
        self.run_dir = None
        self._name_run("")
        self.stats.setText("not started")
        self._say(f"The run {name} was deleted: there is nothing to resume. Start a new run, or "
                  f"open another in the Runs tab.")
        self.update_buttons()

    # -- commands
    def start(self) -> None:
        if not self.start_button.isEnabled():
            return
        doc = self.settings_document()
        settings_file = config_dir() / "last-start.json"
        settings_file.parent.mkdir(parents=True, exist_ok=True)
        write_json(settings_file, doc)
        name, notes = self.run_name.text().strip(), self.run_notes.text().strip()
        run_dir = self.session.new_run_dir(name)
        args = [self.session.generator, "--run-dir", str(run_dir), "--config", str(settings_file)]
        if name:
            args += ["--name", name]
        if notes:
            args += ["--notes", notes]
        if self.session.data_source:
            args += ["--data", self.session.data_source]
        if self.session.val_source:  # else the run holds out a part of its training data
            args += ["--val-data", self.session.val_source]
        init = self.init_record or {}
        if init.get("run"):
            args += ["--init-from", str(RunDir(init["run"]).checkpoint_dir(init["checkpoint"]))]
        elif init.get("pretrained"):
            args += ["--init-from-hf", init["pretrained"]]
        self._launch(args, str(run_dir), name or run_dir.name)

    def resume_clicked(self) -> None:
        if self.trainer.running:
            self.trainer.resume()
        else:
            self.resume_run(self.run_dir)

    def resume_run(self, run_dir: str | None) -> None:
        if not run_dir or self.trainer.running:
            return
        if not Path(run_dir).exists():
            if run_dir != self.run_dir:
                self.run_dir, self.shown_run_title = run_dir, ""
            self._forget_deleted_run()
            return
        owner = RunDir(run_dir).owner()
        if owner is not None:  # another process trains it (a terminal, another window)
            show_error(self, "Run in use", for_window(busy_message(Path(run_dir), owner)))
            return
        self._launch(["--resume", str(run_dir)], str(run_dir), self.session.run_title(run_dir), history=True)
        self.session.open_run(str(run_dir))
        try:
            data = RunDir(run_dir).config().get("data") or {}
        except (StudioError, OSError):  # the run's own process says what is wrong with it
            return
        self._show_run_data(data, only_if_changed=True)

    def duplicate(self, doc: dict) -> None:
        """Start from another run's settings (the runs browser's 'duplicate with changes'): the
        forms filled, the new run's name (doc["name"], "<old name> (copy)" as the Runs tab's
        dialog proposes it) in the Run name field, the starting weights kept, and its data
        (training and held-out) chosen in the Data tab."""
        self.session.set_generator(doc["generator"])
        self.rebuild_forms({"config": doc.get("config", {}), "train": doc.get("train", {})})
        # A duplicated fine-tuning run starts from the same weights, with the settings copied
        # (not the fine-tuning defaults): its shape is its base's, fixed as choosing it fixes it.
        init = doc.get("init")
        self._fill_start_choices()
        self._select_start(init)
        shape = set(shape_settings(self.session.generator_class())) & set(doc.get("config", {})) \
            if init else set()
        values = self.gen_form.raw_values()
        self.gen_form.fix_values({name: values[name] for name in shape if name in values},
                                 "From the weights this run starts from: a model that starts "
                                 "from them keeps their shape")
        self._show_run_data(doc.get("data") or {})
        name = doc.get("name") or ""  # a config.json document has none
        self.run_name.setText(name)
        self.run_notes.setText(doc.get("notes") or "")
        self._say((f"Settings copied for the new run “{name}”" if name else "Settings copied") +
                  " — change what you like, then press Start.")

    def _show_run_data(self, data: dict, only_if_changed: bool = False) -> None:
        """The Data tab on a run's data (its config.json "data"): training and held-out, so a
        duplicate starts on the same data and a resumed run's is what the tab shows.
        `only_if_changed`: no new check of the data the tab shows already."""
        if self.data_panel is None:
            return
        chosen = (data.get("source") or None, data.get("val_source") or None)
        if only_if_changed and (self.data_panel.source(), self.data_panel.val_source()) == chosen:
            return
        self.data_panel.set_sources(*chosen)

    def _launch(self, args: list[str], run_dir: str, title: str, history: bool = False) -> None:
        self._clear_display()  # nothing of the run shown before stays on screen
        self.run_dir = run_dir
        self.error_box.hide()
        self._say("")
        if history:  # a resumed run: draw what it has done so far
            self._follow_config(RunDir(run_dir))
            for record in RunDir(run_dir).events():
                self.charts.add(record)
            self._refresh_previews()
        self.shown_run_title = title
        self._name_run(f"training run {title} · {run_dir}")
        self.stats.setText("starting…")
        self._announce("starting…")
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
            if self.run_dir:
                self._follow_config(RunDir(self.run_dir))
                if self.session.current_run != self.run_dir:
                    # The run folder exists now: it becomes the current run everywhere.
                    self.session.open_run(self.run_dir)
        elif kind == "progress":
            self.pending_progress = self.latest_progress = record  # shown by the next _refresh_display
        elif kind == "preview":
            QTimer.singleShot(0, self._refresh_previews)  # a turn of its own: see _refresh_display
        elif kind in ("paused", "resumed", "checkpoint"):
            if kind == "paused":
                self.latest_progress = None
                self._show_final_state(record["step"], f"paused at step {record['step']} (checkpoint written)")
                self._announce(f"paused at {record['step']}/{self.max_steps}")
            self.update_buttons()
        elif kind == "done":
            self.latest_progress = None
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
        """The title's progress always; the progress line and the charts if anything changed
        and the panel is visible."""
        if self.latest_progress is not None:
            self._announce(_progress_title(self.latest_progress))
        if not self.isVisible():
            return
        record, self.pending_progress = self.pending_progress, None
        if record is not None:
            self._set_progress(record["step"])
            eta = record.get("eta_s")
            eta_text = f" · ETA {duration_text(eta)}" if eta is not None else ""
            rate = record.get("items_per_s")
            rate_text = f" · {rate:,.0f} {record['unit']}/s" if rate is not None else ""
            self.stats.setText(f"step {record['step']} / {record['max_steps']} · loss "
                               f"{record['loss']:.4f}{rate_text}{eta_text}")
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
        message = for_window(message)
        self.error_message.setText(message)
        self.error_log.setPlainText(log)
        self.error_resume.setEnabled(self.run_dir is not None and RunDir.is_run(self.run_dir))
        self.error_box.show()
        if not self.trainer.started:  # it never began: "starting…" must not stay on screen
            self.stats.setText(f"could not start: {message}")

    def _on_finished(self, code: int, status: str) -> None:
        self.latest_progress = None
        self._announce("")
        self.charts.redraw()
        self.update_buttons()
        self.session.runs_changed.emit()

    # -- previews
    def _refresh_previews(self) -> None:
        if not self.run_dir:
            return
        found = list_previews(RunDir(self.run_dir))
        self.preview_steps = [step for step, _ in found]
        self.preview_folders = [folder for _, folder in found]
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
        _, samples = load_samples(self.preview_folders[index])
        self.preview_label.setText(f"preview at step {self.preview_steps[index]} (fixed prompts and seeds)")
        self._show_samples(samples)

    def _show_samples(self, samples: list) -> None:
        """Images in the grid, scaled to the space; texts in one box that wraps them, each under
        a header and its prompt in bold (a box per text scrolled inside the panel's scrolling)."""
        if not samples or any(s.kind != "text" for s in samples):
            self.previews.set_samples(samples)
            return
        self.previews.set_samples([Sample("text", "", {})])
        headers = [f"[{i + 1}] seed {s.meta.get('seed', '?')}" for i, s in enumerate(samples)]
        self.previews.views[0].show_texts([s.data for s in samples],
                                          [s.meta.get("prompt") for s in samples],
                                          headers if len(samples) > 1 else None)

    def sample_now(self) -> None:
        """Sample from the run's latest checkpoint with the user's prompt and seed (a new random
        seed when none is given), in the background; the next scheduled preview replaces it."""
        run_dir = self.run_dir
        if not run_dir or self.sample_task is not None:
            return
        prompt = self.sample_prompt.text().strip() or None
        seed_text = self.sample_seed.text().strip()
        try:
            seed = int(seed_text) if seed_text else random.randrange(1_000_000)
        except ValueError:
            show_error(self, "Cannot sample", f"The seed must be a whole number, not '{seed_text}'. "
                                              f"Leave it empty for a new random seed.")
            return
        choice = {"seed": seed, "random_seed": not seed_text, "prompt": prompt}
        task = workers.Task(sample_from_run, run_dir, prompt, seed)
        task.signals.done.connect(lambda result: self._sampled(result, choice))
        task.signals.failed.connect(self._sample_failed)
        task.signals.finished.connect(self._sample_finished)
        self.sample_task = workers.start(task)
        self.sample_button.setEnabled(False)
        self.preview_label.setText("sampling from the latest checkpoint…")

    def _sample_finished(self) -> None:
        self.sample_task = None
        self.update_buttons()

    def _sample_failed(self, message: str) -> None:
        show_error(self, "Cannot sample", for_window(message))

    def _sampled(self, result, choice: dict) -> None:
        checkpoint, samples = result
        seed = f"seed {choice['seed']}" + (" (new random seed)" if choice["random_seed"] else "")
        prompt = f"your prompt “{choice['prompt']}”" if choice["prompt"] else "no prompt"
        self.preview_label.setText(f"sampled now from {checkpoint} · {seed} · {prompt}")
        self._show_samples(samples)


def sample_from_run(ctx, path: str, prompt, seed: int):
    """(checkpoint name, samples) from a run's latest checkpoint, on the CPU while the GPU (if
    any) trains: one grid of images where the generator draws grids, else a few samples."""
    import dataclasses

    import torch

    from studio import api
    from studio.config import from_dict
    run, gen, folder = api.load_run(path, device="cpu")
    fields = {f.name for f in dataclasses.fields(gen.SampleConfig)}
    grid = "grid" in fields
    params = from_dict(gen.SampleConfig, {"grid": True} if grid else {}, "sampling settings")
    with torch.no_grad():
        samples = gen.sample(params, n=SAMPLE_NOW_GRID if grid else SAMPLE_NOW_COUNT, seed=seed,
                             prompt=prompt)
    return folder.name, samples


def _progress_title(record: dict) -> str:
    """'step 45/200 (22%)' for the window title."""
    step, total = record["step"], record.get("max_steps") or 0
    return f"step {step}/{total} ({100 * step // total}%)" if total else f"step {step}"
