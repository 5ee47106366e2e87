"""The data panel: pick a file, a folder or the built-in demo data; see what the generator
makes of it before any training -- items used, items skipped with the reason, a preview."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (QFileDialog, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QPushButton, QRadioButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from studio.gui import theme, workers
from studio.gui.messages import for_window
from studio.gui.views import SampleGrid

BUILTIN_LABEL = "Built-in demo data (works offline)"
# What a report counts its items in, best first: "4,000 images used" says more than "1 file".
COUNT_UNITS = ("images", "clips", "examples", "tokens", "characters")
# Summary keys a person has no use for (an internal cache key) or that are shown elsewhere.
HIDDEN_SUMMARY_KEYS = ("notes", "dataset_key", "format")
LABELS = {"held_out_images": "held-out images",
          "val_tokens": "held-out tokens", "val_examples": "held-out examples",
          "train_tokens": "training tokens", "vocab_size": "vocabulary size"}
LIST_SHOWN = 12  # items of a long list shown before "… (N in all)"
# The status line's colours, readable on each theme's background.
STATUS_COLORS = {"light": {"ok": "#2e7d32", "error": "#c62828"},
                 "dark": {"ok": "#81c784", "error": "#ef9a9a"}}


class CheckFailed(NamedTuple):
    """A check that found the data unusable: why, and the report of what it read and skipped
    (None when it got no further than the path). A task's `failed` signal carries only text."""
    message: str
    report: object


# --- the report in words (plain functions: no Qt) -----------------------------------------------

def format_value(value) -> str:
    """A summary value as a person reads it: 4,000 not 4000; "circle 12 · square 11" not
    {'circle': 12, 'square': 11}; "circle, square" not ['circle', 'square']."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, dict):
        return " · ".join(f"{k} {format_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        items = [format_value(v) for v in value]
        shown = ", ".join(items[:LIST_SHOWN])
        return shown + (f", … ({len(items)} in all)" if len(items) > LIST_SHOWN else "")
    return str(value)


def _is_blank(value) -> bool:
    """Nothing worth a line: None, 0, an empty list. ("held-out images: 0" only puzzles: the
    held-out set is then a share of the training data, which the report says elsewhere.)"""
    return value is None or value == 0 or (isinstance(value, (list, tuple, dict, str)) and not value)


def summary_lines(summary: dict) -> list[str]:
    """One "label: value" line per meaningful summary entry, then its notes. Class counts are
    named in the data's own unit ("clips per class" for videos)."""
    unit = next((u for u in COUNT_UNITS if u in summary), "items")
    labels = {**LABELS, "class_counts": f"{unit} per class"}
    lines = [f"{labels.get(key, key.replace('_', ' '))}: {format_value(value)}"
             for key, value in summary.items()
             if key not in HIDDEN_SUMMARY_KEYS and not _is_blank(value)]
    return lines + [f"note: {note}" for note in summary.get("notes") or []]


def count(n: int, noun: str) -> str:
    """"1 image", "4,000 images" (`noun` is plural)."""
    return f"{n:,} {noun[:-1] if n == 1 and noun.endswith('s') else noun}"


def usable_headline(report) -> str:
    """"4,000 images used, 2 skipped": counted in the data's own unit when the summary has one,
    else in files."""
    summary = report.summary or {}
    unit = next((u for u in COUNT_UNITS if isinstance(summary.get(u), int)), None)
    used = count(summary[unit], unit) if unit else \
        count(report.used if isinstance(report.used, int) else len(report.used), "files")
    return f"{used} used, {len(report.skipped):,} skipped"


class DataPanel(QWidget):
    report_ready = Signal(object)  # the DataReport, or None when the data is unusable

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.task = None
        self.report = None
        self.problem: str | None = None
        self.setAcceptDrops(True)

        self.builtin = QRadioButton(BUILTIN_LABEL)
        self.builtin.setToolTip("Data that ships with AIGC Studio: no download, no files to pick")
        self.own = QRadioButton("My files:")
        self.path = QLineEdit()
        self.path.setPlaceholderText("a file or folder -- or drop it here")
        self.path.setToolTip("Text: .txt/.md files or .jsonl prompt/response pairs; images: a "
                             "folder (subfolders are classes); video: a folder of clips")
        self.pick_file = QPushButton("File…")
        self.pick_file.setToolTip("Choose a data file")
        self.pick_folder = QPushButton("Folder…")
        self.pick_folder.setToolTip("Choose a folder of data files")
        self.check = QPushButton("Check data")
        self.check.setToolTip("Read the data as training will, and report what is used and skipped")
        self.builtin.setChecked(True)
        source = QHBoxLayout()
        source.addWidget(self.own)
        source.addWidget(self.path, 1)
        source.addWidget(self.pick_file)
        source.addWidget(self.pick_folder)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status_kind = ""  # "ok", "error" or "" (plain): what the status line's colour says
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.skipped = QTableWidget(0, 2)
        self.skipped.setHorizontalHeaderLabels(["skipped item", "why"])
        self.skipped.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.skipped.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.skipped.verticalHeader().setVisible(False)
        self.preview = SampleGrid(columns=6, size=96)

        box = QGroupBox("Data")
        top = QVBoxLayout(box)
        top.addWidget(self.builtin)
        top.addLayout(source)
        top.addWidget(self.check, alignment=Qt.AlignmentFlag.AlignLeft)
        layout = QVBoxLayout(self)
        layout.addWidget(box)
        layout.addWidget(self.status)
        layout.addWidget(self.summary)
        layout.addWidget(QLabel("Skipped items"))
        layout.addWidget(self.skipped, 1)
        layout.addWidget(QLabel("Preview"))
        layout.addWidget(self.preview, 2)

        if session.data_source:  # the data chosen in an earlier session
            self.path.setText(session.data_source)
            self.own.setChecked(True)
        self.builtin.toggled.connect(self._source_changed)
        self.path.textEdited.connect(self._typing)
        # Enter, or leaving the field after a change: check what was typed.
        self.path.editingFinished.connect(self._source_changed)
        self.pick_file.clicked.connect(self._choose_file)
        self.pick_folder.clicked.connect(self._choose_folder)
        self.check.clicked.connect(self._source_changed)
        session.generator_changed.connect(lambda _: self.run_check())
        session.theme_changed.connect(self._restyle_status)
        self._show_empty()

    # -- choosing
    def source(self) -> str | None:
        return None if self.builtin.isChecked() else (self.path.text().strip() or None)

    def set_source(self, path: str | None) -> None:
        """Choose the data (a dropped or picked file, a duplicated run's data) and check it."""
        blocker = QSignalBlocker(self.builtin)  # one check below, not one per radio toggle
        if path:
            self.path.setText(str(path))
            self.own.setChecked(True)
        else:
            self.builtin.setChecked(True)
        del blocker
        self._source_changed()

    def _choose_file(self):
        path, _ = QFileDialog.getOpenFileName(self, "Choose a data file")
        if path:
            self.set_source(path)

    def _choose_folder(self):
        path = QFileDialog.getExistingDirectory(self, "Choose a data folder")
        if path:
            self.set_source(path)

    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):
        urls = event.mimeData().urls()
        if urls:
            self.set_source(urls[0].toLocalFile())

    def _typing(self, text: str) -> None:
        """Typing a path means "my files": select it, quietly (the path is checked on Enter,
        on leaving the field or on Check data, not at every key)."""
        if text.strip() and not self.own.isChecked():
            blocker = QSignalBlocker(self.builtin)
            self.own.setChecked(True)
            del blocker
        self._say("press Enter or Check data to check this path", "")

    def _source_changed(self, *_):
        if self.own.isChecked():
            typed = self.path.text().strip()
            if not typed:
                self._refuse("choose a file or folder, or use the built-in demo data")
                return
            from studio import api
            if not api.is_builtin_source(typed) and not Path(typed).expanduser().exists():
                self._refuse(f"there is no file or folder at {typed}. Check the spelling, or "
                             f"choose one with File… or Folder… (or drop it here).")
                return
        self.session.set_data(self.source())
        self.run_check()

    def _refuse(self, problem: str) -> None:
        """A source that cannot be checked at all: say why, inline, and forget any old report
        (it was about other data)."""
        if self.task is not None:
            self.task.cancel()
            self.task = None  # a check still running reports nothing now
        self.report, self.problem = None, problem
        self._say(f"✗ {problem}", "error")
        self._show_empty()
        self.report_ready.emit(None)

    def _restyle_status(self, _theme: str) -> None:
        self._say(self.status.text(), self.status_kind)

    def _say(self, text: str, kind: str) -> None:
        """Show `text` in the status line; `kind` "ok" or "error" colours it for the theme."""
        self.status_kind = kind
        self.status.setText(text)
        color = STATUS_COLORS[theme.current()].get(kind)
        self.status.setStyleSheet(f"color: {color};" if color else "")

    # -- checking
    def _show_empty(self):
        self.summary.setText("")
        self._show_skipped([])
        self.preview.set_samples([], "the preview appears here after the check")

    def _show_skipped(self, skipped) -> None:
        self.skipped.setRowCount(len(skipped))
        for row, (item, why) in enumerate(skipped):
            self.skipped.setItem(row, 0, QTableWidgetItem(Path(item).name if "/" in item else item))
            self.skipped.item(row, 0).setToolTip(item)
            self.skipped.setItem(row, 1, QTableWidgetItem(for_window(why)))
            self.skipped.item(row, 1).setToolTip(for_window(why))

    def run_check(self) -> None:
        """Validate the data in the background (reading and tokenizing can take a while)."""
        if self.task is not None:
            self.task.cancel()
        source = self.source()
        name = self.session.generator
        self._say(f"checking {source or 'the built-in data'} for '{name}'…", "")

        def inspect(ctx, generator, data):
            from studio import api
            from studio.errors import DataError
            try:
                return api.inspect_data(generator, data)
            except DataError as exc:  # unusable, but what was skipped and why is still shown
                return CheckFailed(str(exc), exc.report)

        task = workers.Task(inspect, name, source)
        # Bound methods (not lambdas): Qt drops the connection if this panel is closed first.
        task.signals.done.connect(self._checked)
        task.signals.failed.connect(self._failed)
        self.task = workers.start(task)

    def _current(self) -> bool:
        """Whether the signal comes from the latest check (an older one was overtaken)."""
        return self.task is not None and self.sender() is self.task.signals

    def _checked(self, report) -> None:
        if not self._current():
            return
        if isinstance(report, CheckFailed):
            self._show_failure(report.message, report.report)
            return
        self.report, self.problem = report, None
        self._say(f"✓ usable: {usable_headline(report)}", "ok")
        self.summary.setText("\n".join(for_window(line) for line in summary_lines(report.summary)))
        self._show_skipped(report.skipped)
        self.preview.set_samples(report.preview[:12], "no preview for this data")
        self.report_ready.emit(report)

    def _failed(self, message: str) -> None:
        if self._current():
            self._show_failure(message, None)

    def _show_failure(self, message: str, report) -> None:
        self.report, self.problem = None, for_window(message)
        self._say(f"✗ {self.problem}", "error")
        self._show_empty()
        if report is not None:
            self._show_skipped(report.skipped)
        self.report_ready.emit(None)
