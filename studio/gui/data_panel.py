"""The data panel: pick a file, a folder or the built-in demo data; see what the generator
makes of it before any training -- items used, items skipped with the reason, a preview.

Held-out data (what a run is evaluated on) is optional: a file or folder of its own, checked
with the training data (its counts beside the training counts, its skipped items and notes with
theirs), or none, and the generator holds out a part of the training data.

Data is read for the task the Train form has chosen (the session's `task`): a classify or tag
run's labelled file shows its labels with their counts and any line that cannot be read, by its
line number; a labelled file checked for text generation is said to be one."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
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
# A training count and the held-out count of the same thing, shown on one line ("examples: 120
# · held-out examples: 30") so the split reads at a glance.
HELD_OUT_BESIDE = {"examples": "val_examples", "train_tokens": "val_tokens",
                   "images": "held_out_images"}
# The setting that decides how much of the training data is held out when no held-out data is
# given (the text and video generators have it); the Train tab's form labels it with spaces.
HOLD_OUT_SETTING = "val_fraction"
LIST_SHOWN = 12  # items of a long list shown before "… (N in all)"
# The status line's colours, readable on each theme's background ("warning": the notes line).
STATUS_COLORS = {"light": {"ok": "#2e7d32", "error": "#c62828", "warning": "#9a5b00"},
                 "dark": {"ok": "#81c784", "error": "#ef9a9a", "warning": "#ffcc80"}}
# Summary entries that count examples per label: a classifier's classes, a tagger's entities,
# an image folder's classes. They get the labels table (label, count, share).
LABEL_COUNTS = {"classes": "examples", "entity_types": "entities", "class_counts": "items"}
# Of those, the ones the table shows instead of a summary line (an image folder's "images per
# class" line stays: its summary's "classes" is a list of names, not counts).
TABLE_ONLY = ("classes", "entity_types")
BAR_WIDTH = 24  # characters of the largest label's bar
LABEL_ROWS_SHOWN = 8  # rows of the labels table in view; more scroll
# What labelled data looks like, to tell a labelled file checked for text generation (where it
# would be read as plain text, or refused as prompt/response pairs) from a corpus: the task that
# reads it, and its fields in words.
LABELLED_FIELDS = {"classify": "texts with a label each", "tag": "tokens with a tag each"}
TAGGED_SUFFIXES = (".conll", ".bio", ".iob", ".iobes")
# The text generator's built-in labelled sets (generators/text/tasks.py), by the task they are for.
BUILTIN_LABELLED = {"builtin:sentiment": "classify", "builtin:entities": "tag"}
SNIFF_BYTES = 64 * 1024  # of a file's start: its first line or header is in it


class CheckFailed(NamedTuple):
    """A check that found the data unusable: why, and the report of what it read and skipped
    (None when it got no further than the path). A task's `failed` signal carries only text."""
    message: str
    report: object


class Checked(NamedTuple):
    """What a check found: the DataReport or a CheckFailed, and a hint when the data looks
    made for another task than the one chosen (None otherwise)."""
    outcome: object
    hint: str | None


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


def summary_lines(summary: dict, notes: bool = True) -> list[str]:
    """One "label: value" line per meaningful summary entry, then its notes (unless `notes` is
    False: the panel shows them apart, as warnings). Class counts are named in the data's own
    unit ("clips per class" for videos)."""
    unit = next((u for u in COUNT_UNITS if u in summary), "items")
    labels = {**LABELS, "class_counts": f"{unit} per class"}
    line = lambda key: f"{labels.get(key, key.replace('_', ' '))}: {format_value(summary[key])}"
    shown = [key for key, value in summary.items()
             if key not in HIDDEN_SUMMARY_KEYS and not _is_blank(value)]
    beside = {key: HELD_OUT_BESIDE[key] for key in shown if HELD_OUT_BESIDE.get(key) in shown}
    lines = [" · ".join([line(key), line(beside[key])]) if key in beside else line(key)
             for key in shown if key not in beside.values()]
    return lines + ([f"note: {note}" for note in summary.get("notes") or []] if notes else [])


def label_rows(summary: dict) -> list[tuple[str, int, float]]:
    """(label, count, share) per label of the summary's label counts, most frequent first. The
    share is of the examples for multi-label data (an example counts once per label it has),
    else of all the counts."""
    key = next((k for k in LABEL_COUNTS if isinstance(summary.get(k), dict) and summary[k]), None)
    if key is None:
        return []
    counts = summary[key]
    total = summary.get("examples") if summary.get("multi_label") else sum(counts.values())
    return [(str(label), n, n / total if total else 0.0)
            for label, n in sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))]


def labelled_task(source: str | None) -> str | None:
    """The task a data file looks made for: "classify" for JSONL with text and label fields or
    a CSV/TSV with text and label columns, "tag" for JSONL tokens/tags or a CoNLL file; None
    for anything else (plain text, prompt/response pairs, a folder, an unreadable file)."""
    if not source:
        return None
    if source in BUILTIN_LABELLED:
        return BUILTIN_LABELLED[source]
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if not path.is_file():
        return None
    if suffix in TAGGED_SUFFIXES:
        return "tag"
    if suffix not in (".jsonl", ".csv", ".tsv"):
        return None
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            head = file.read(SNIFF_BYTES)
    except OSError:
        return None
    first = next((line.strip() for line in head.splitlines() if line.strip()), "")
    if suffix == ".jsonl":
        import json
        try:
            fields = json.loads(first)
        except ValueError:
            return None
        if not isinstance(fields, dict):
            return None
        if "text" in fields and ("label" in fields or "labels" in fields):
            return "classify"
        return "tag" if "tokens" in fields and "tags" in fields else None
    columns = {c.strip().strip('"').lower() for c in first.split("\t" if suffix == ".tsv" else ",")}
    return "classify" if "text" in columns and columns & {"label", "labels"} else None


def task_hint(source: str | None, task: str | None) -> str | None:
    """What to say when labelled data is checked for text generation: it would train a model
    to write such lines, which is seldom what a person with labelled data wants."""
    looks = labelled_task(source) if task == "generate" else None
    if looks is None:
        return None
    return (f"This looks like labelled data ({LABELLED_FIELDS[looks]}), but the task is "
            f"generate, which reads it as text to imitate. To train a {'classifier' if looks == 'classify' else 'tagger'}, "
            f"choose the task {looks} at the top of the Train tab's settings.")


def without_held_out(gen_cls) -> str:
    """What happens when no held-out data is given, for a generator (its class or declarations;
    None when they cannot be read): a part of the training data is held out where a setting
    decides how much; otherwise the generator decides, and its report says what it did."""
    config = getattr(gen_cls, "Config", None)
    fields = getattr(config, "__dataclass_fields__", {})
    if HOLD_OUT_SETTING in fields:
        return (f"a part of the training data is held out "
                f"({HOLD_OUT_SETTING.replace('_', ' ')} in the Train tab says how much)")
    return "the generator decides what to evaluate on (the check says what)"


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


class PathField(QLineEdit):
    """A path to type, or a file or folder to drop: a drop puts its path in the field (a plain
    QLineEdit would insert the file's URL as text) and says so with `dropped`."""
    dropped = Signal(str)

    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event):
        urls = [url for url in event.mimeData().urls() if url.isLocalFile()]
        if not urls:
            super().dropEvent(event)
            return
        event.acceptProposedAction()
        self.dropped.emit(urls[0].toLocalFile())


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
        self.path = PathField()
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
        # Held-out data: optional, and independent of the choice above (the built-in data can
        # be evaluated on a file of one's own). Empty: see without_held_out().
        self.val_path = PathField()
        self.val_path.setToolTip("Data kept apart to evaluate the run on, never trained on: a "
                                 "file or folder in the same form as the training data")
        self.val_pick_file = QPushButton("File…")
        self.val_pick_file.setToolTip("Choose a held-out data file")
        self.val_pick_folder = QPushButton("Folder…")
        self.val_pick_folder.setToolTip("Choose a folder of held-out data files")
        self.val_clear = QPushButton("Clear")
        self.val_clear.setToolTip("No held-out data of your own")
        held_out = QHBoxLayout()
        held_out.addWidget(QLabel("Held-out data:"))
        held_out.addWidget(self.val_path, 1)
        held_out.addWidget(self.val_pick_file)
        held_out.addWidget(self.val_pick_folder)
        held_out.addWidget(self.val_clear)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status_kind = ""  # "ok", "error" or "" (plain): what the status line's colour says
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        # Notes on the data (class imbalance, a label with different texts, a labelled file
        # read for generation): warnings, apart from the figures above them.
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.notes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.labels_title = QLabel("Labels")
        self.labels = QTableWidget(0, 4)
        self.labels.setHorizontalHeaderLabels(["label", "count", "share", ""])
        self.labels.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.labels.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.labels.verticalHeader().setVisible(False)
        self.labels.setToolTip("How many examples each label has in the data, and its share")
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
        top.addLayout(held_out)
        top.addWidget(self.check, alignment=Qt.AlignmentFlag.AlignLeft)
        layout = QVBoxLayout(self)
        layout.addWidget(box)
        layout.addWidget(self.status)
        layout.addWidget(self.summary)
        layout.addWidget(self.notes)
        layout.addWidget(self.labels_title)
        layout.addWidget(self.labels)
        layout.addWidget(QLabel("Skipped items"))
        layout.addWidget(self.skipped, 1)
        layout.addWidget(QLabel("Preview"))
        layout.addWidget(self.preview, 2)

        if session.data_source:  # the data chosen in an earlier session
            self.path.setText(session.data_source)
            self.own.setChecked(True)
        self.val_path.setText(session.val_source or "")
        self._describe_held_out()
        self.builtin.toggled.connect(self._source_changed)
        self.path.textEdited.connect(self._typing)
        self.val_path.textEdited.connect(self._typing_held_out)
        # Enter, or leaving the field after a change: check what was typed.
        self.path.editingFinished.connect(self._source_changed)
        self.val_path.editingFinished.connect(self._source_changed)
        self.path.dropped.connect(self.set_source)
        self.val_path.dropped.connect(self.set_held_out)
        self.pick_file.clicked.connect(self._choose_file)
        self.pick_folder.clicked.connect(self._choose_folder)
        self.val_pick_file.clicked.connect(self._choose_held_out_file)
        self.val_pick_folder.clicked.connect(self._choose_held_out_folder)
        self.val_clear.clicked.connect(lambda: self.set_held_out(None))
        self.check.clicked.connect(self._source_changed)
        # A new generator and the task its form then shows arrive one after the other: one
        # check, once both are known (a check started for each would read the data twice).
        self.recheck = QTimer(self)
        self.recheck.setSingleShot(True)
        self.recheck.setInterval(0)
        self.recheck.timeout.connect(self.run_check)
        session.generator_changed.connect(lambda _: self.recheck.start())
        session.generator_changed.connect(lambda _: self._describe_held_out())
        session.task_changed.connect(lambda _: self.recheck.start())
        session.theme_changed.connect(self._restyle_status)
        self._show_empty()

    # -- choosing
    def source(self) -> str | None:
        return None if self.builtin.isChecked() else (self.path.text().strip() or None)

    def val_source(self) -> str | None:
        """The held-out data (None: none of one's own, see without_held_out())."""
        return self.val_path.text().strip() or None

    def set_source(self, path: str | None) -> None:
        """Choose the training data (a dropped or picked file) and check it, with the held-out
        data as it is."""
        self.set_sources(path, self.val_source())

    def set_held_out(self, path: str | None) -> None:
        """Choose the held-out data (a dropped or picked file; None: none) and check it, with
        the training data as it is."""
        self.val_path.setText(str(path) if path else "")
        self._source_changed()

    def set_sources(self, path: str | None, held_out: str | None) -> None:
        """Choose the training and the held-out data together (a duplicated or resumed run's)
        and check them once."""
        blocker = QSignalBlocker(self.builtin)  # one check below, not one per radio toggle
        if path:
            self.path.setText(str(path))
            self.own.setChecked(True)
        else:
            self.builtin.setChecked(True)
        del blocker
        self.val_path.setText(str(held_out) if held_out else "")
        self._source_changed()

    def _describe_held_out(self) -> None:
        """What an empty held-out row means, for the generator chosen now."""
        from studio.errors import StudioError
        try:  # its declarations only: no torch for a placeholder
            meaning = without_held_out(self.session.registry.declarations(self.session.generator))
        except StudioError:  # a broken plugin: the window says why elsewhere
            meaning = without_held_out(None)
        self.held_out_default = meaning
        self.val_path.setPlaceholderText(f"optional; empty: {meaning}")
        self._update_clear()

    def _update_clear(self) -> None:
        self.val_clear.setEnabled(bool(self.val_path.text().strip()))

    def _choose_file(self):
        path, _ = QFileDialog.getOpenFileName(self, "Choose a data file")
        if path:
            self.set_source(path)

    def _choose_folder(self):
        path = QFileDialog.getExistingDirectory(self, "Choose a data folder")
        if path:
            self.set_source(path)

    def _choose_held_out_file(self):
        path, _ = QFileDialog.getOpenFileName(self, "Choose a held-out data file")
        if path:
            self.set_held_out(path)

    def _choose_held_out_folder(self):
        path = QFileDialog.getExistingDirectory(self, "Choose a held-out data folder")
        if path:
            self.set_held_out(path)

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

    def _typing_held_out(self, text: str) -> None:
        self._update_clear()
        self._say("press Enter or Check data to check this path", "")

    def _source_changed(self, *_):
        from studio import api
        self._update_clear()
        if self.own.isChecked():
            typed = self.path.text().strip()
            if not typed:
                self._refuse("choose a file or folder, or use the built-in demo data")
                return
            if not api.is_builtin_source(typed) and not Path(typed).expanduser().exists():
                self._refuse(f"there is no file or folder at {typed}. Check the spelling, or "
                             f"choose one with File… or Folder… (or drop it here).")
                return
        self.session.set_data(self.source())
        held_out = self.val_source()
        if held_out and not api.is_builtin_source(held_out) and not Path(held_out).expanduser().exists():
            self._refuse(f"there is no file or folder at {held_out} for the held-out data. Check "
                         f"the spelling, or choose one with File… or Folder… in the Held-out data "
                         f"row (or drop it there). Or press Clear: then {self.held_out_default}.")
            return
        self.session.set_val_data(held_out)
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
        self._warn(self.notes.text())

    def _say(self, text: str, kind: str) -> None:
        """Show `text` in the status line; `kind` "ok" or "error" colours it for the theme."""
        self.status_kind = kind
        self.status.setText(text)
        color = STATUS_COLORS[theme.current()].get(kind)
        self.status.setStyleSheet(f"color: {color};" if color else "")

    def _warn(self, text: str) -> None:
        """Show the notes on the data, in the theme's warning colour ("" hides them)."""
        self.notes.setText(text)
        self.notes.setVisible(bool(text))
        self.notes.setStyleSheet(f"color: {STATUS_COLORS[theme.current()]['warning']};")

    # -- checking
    def _show_empty(self):
        self.summary.setText("")
        self._warn("")
        self._show_labels({})
        self._show_skipped([])
        self.preview.set_samples([], "the preview appears here after the check")

    def _show_labels(self, summary: dict) -> None:
        """The labels table (label, count, share, a bar), shown only for data with labels."""
        rows = label_rows(summary)
        self.labels.setRowCount(len(rows))
        largest = max((n for _, n, _ in rows), default=0)
        for row, (label, n, share) in enumerate(rows):
            bar = "█" * max(1, round(BAR_WIDTH * n / largest)) if n else ""
            for column, text in enumerate((label, f"{n:,}", f"{share:.1%}", bar)):
                item = QTableWidgetItem(text)
                if column in (1, 2):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.labels.setItem(row, column, item)
        unit = next((LABEL_COUNTS[k] for k in LABEL_COUNTS if isinstance(summary.get(k), dict)), "")
        self.labels.setHorizontalHeaderItem(1, QTableWidgetItem(unit or "count"))
        self.labels.resizeColumnsToContents()
        # As tall as its rows (up to LABEL_ROWS_SHOWN): the skipped lines and the preview
        # below keep their room, and two labels do not float in an empty table.
        shown = min(len(rows), LABEL_ROWS_SHOWN)
        self.labels.setFixedHeight(self.labels.horizontalHeader().height() + 2 * self.labels.frameWidth()
                                   + sum(self.labels.rowHeight(r) for r in range(shown)))
        for widget in (self.labels_title, self.labels):
            widget.setVisible(bool(rows))

    def _show_skipped(self, skipped) -> None:
        self.skipped.setRowCount(len(skipped))
        for row, (item, why) in enumerate(skipped):
            self.skipped.setItem(row, 0, QTableWidgetItem(Path(item).name if "/" in item else item))
            self.skipped.item(row, 0).setToolTip(item)
            self.skipped.setItem(row, 1, QTableWidgetItem(for_window(why)))
            self.skipped.item(row, 1).setToolTip(for_window(why))

    def run_check(self) -> None:
        """Validate the data in the background (reading and tokenizing can take a while), for
        the task the Train form has chosen."""
        self.recheck.stop()  # this is the check a pending one would have run
        if self.task is not None:
            self.task.cancel()
        source, held_out = self.source(), self.val_source()
        name = self.session.generator
        chosen = self.session.task
        for_what = f"'{name}'" + (f", task {chosen}" if chosen else "")
        with_held_out = f" with the held-out data {held_out}" if held_out else ""
        self._say(f"checking {source or 'the built-in data'}{with_held_out} for {for_what}…", "")

        def inspect(ctx, generator, data, val_data, settings, task):
            from studio import api
            from studio.errors import StudioError
            hint = task_hint(data, task)
            try:
                return Checked(api.inspect_data(generator, data, settings, val_source=val_data), hint)
            except StudioError as exc:  # unusable, but what was skipped and why is still shown
                return Checked(CheckFailed(str(exc), getattr(exc, "report", None)), hint)

        task = workers.Task(inspect, name, source, held_out, self.session.data_settings(), chosen)
        # Bound methods (not lambdas): Qt drops the connection if this panel is closed first.
        task.signals.done.connect(self._checked)
        task.signals.failed.connect(self._failed)
        self.task = workers.start(task)

    def _current(self) -> bool:
        """Whether the signal comes from the latest check (an older one was overtaken)."""
        return self.task is not None and self.sender() is self.task.signals

    def _checked(self, checked: Checked) -> None:
        if not self._current():
            return
        report, hint = checked
        if isinstance(report, CheckFailed):
            self._show_failure(report.message, report.report, hint)
            return
        self.report, self.problem = report, None
        self._say(f"✓ usable: {usable_headline(report)}", "ok")
        summary = report.summary or {}
        lines = summary_lines({key: value for key, value in summary.items()
                               if not (key in TABLE_ONLY and isinstance(value, dict))}, notes=False)
        self.summary.setText("\n".join(for_window(line) for line in lines))
        self._warn("\n".join(f"⚠ {for_window(note)}" for note in [hint, *(summary.get("notes") or [])]
                             if note))
        self._show_labels(summary)
        self._show_skipped(report.skipped)
        self.preview.set_samples(report.preview[:12], "no preview for this data")
        self.report_ready.emit(report)

    def _failed(self, message: str) -> None:
        if self._current():
            self._show_failure(message, None)

    def _show_failure(self, message: str, report, hint: str | None = None) -> None:
        """Why the data is unusable (led by the hint, when it was read for the wrong task: the
        message then only says how it fails as the other kind of data)."""
        self.report = None
        self.problem = f"{hint} Read for generation, it fails: {for_window(message)}" if hint \
            else for_window(message)
        self._say(f"✗ {self.problem}", "error")
        self._show_empty()
        if report is not None:
            self._show_skipped(report.skipped)
        self.report_ready.emit(None)
