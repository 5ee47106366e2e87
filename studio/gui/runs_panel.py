"""The runs browser: every run in the project, what each one did, and what to do with it next.

Everything here is read from run folders on disk (run.json, config.json, events.jsonl,
previews/), the same files `studio runs` reads, so a run started from the CLI shows up like one
started from the window. The panel never starts training itself: Resume and Duplicate hand the
run to the training panel through signals, Open hands it to the session.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QPoint, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QBrush, QColor, QDesktopServices, QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QDialog, QDialogButtonBox,
                               QFormLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QMenu, QMessageBox, QPushButton, QScrollArea, QSlider,
                               QStackedWidget, QTableWidget, QTableWidgetItem, QTabWidget,
                               QVBoxLayout, QWidget)

from studio import api
from studio.errors import StudioError
from studio.gui import theme, workers
from studio.gui.config_form import ConfigForm
from studio.gui.messages import for_window
from studio.gui.serve_dialog import ServeDialog
from studio.gui.session import title_of, why_not_a_base
from studio.gui.views import SampleGrid
from studio.runstore import RunDir, list_previews, load_samples

EMPTY_TEXT = "No runs yet — start one in the Train tab"
REFRESH_MS = 3000  # a refresh reads a few small JSON files per run: cheap enough to poll
COLUMNS = ["Run", "Generator", "Status", "Step", "Held-out metric", "Best", "Checkpoints"]
PATH_ROLE = Qt.ItemDataRole.UserRole
# Columns other than the run's name are at most this wide (long extractor names are cut, and
# shown whole in the tooltip): the name column takes the rest of the width.
MAX_COLUMN_WIDTH = 240

# A run with a live training process: its folder is being written, so it is neither resumed
# by a second process nor deleted under it.
LIVE_STATUSES = ("running", "paused")
STATUS_COLORS = {"running": "#2e7d32", "paused": "#b26a00", "failed": "#c62828",
                 "diverged": "#c62828", "interrupted": "#b26a00", "stopped: disk full": "#c62828",
                 "demo": "#5c6bc0"}
STATUS_TIPS = {
    "running": "training now",
    "paused": "paused by its training process; Resume continues it",
    "stopped": "stopped with a checkpoint; Resume continues it",
    "done": "reached its step limit",
    "failed": "training ended with an error; Resume continues from the last checkpoint",
    "diverged": "the loss became NaN or infinite; try a lower learning rate",
    "interrupted": "its process ended without saying so; Resume continues from the last checkpoint",
    "stopped: disk full": "the disk had no room for a checkpoint; the last good one is intact: "
                          "free some space, then Resume",
    "demo": "a built-in demo run: open it or duplicate it, it cannot be changed",
}

# One color per run in the compare view, distinguishable on light and dark backgrounds.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]
DIFF_BACKGROUND = QColor("#ffe8a3")
MISSING = object()  # a key one run's config has and another's lacks
# The rows under a report's classes, in scikit-learn's and seqeval's order and words.
REPORT_AVERAGES = ("accuracy", "micro avg", "macro avg", "weighted avg", "samples avg")
REPORT_COLUMNS = ("precision", "recall", "F1", "support")


def confirm(parent, title: str, text: str) -> bool:
    """Ask yes/no (tests replace this function to answer without a dialog)."""
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def warn(parent, title: str, text: str) -> None:
    """Tell the user something went wrong (tests replace this function too)."""
    QMessageBox.warning(parent, title, text)


def open_folder(path: str) -> None:
    """Show a folder in the platform's file manager (tests replace this function)."""
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


def run_name(path: str) -> str:
    return Path(path).name


def display_name(row: dict) -> str:
    """What the table calls a run: as the title bar does (`session.title_of`)."""
    return title_of(run_name(row["run"]), row.get("name"), demo=row.get("status") == "demo")


# --- what the compare view plots and tabulates (plain functions over run files) ------------------

def event_series(events: list[dict], kind: str, value_of) -> tuple[list[int], list[float]]:
    """(steps, values) of one kind of event, one point per step. A resumed run logs again the
    steps after its last checkpoint; the later value is kept because training went on from it.
    Non-finite values (a diverged run) are left out so they do not wreck the plot's range."""
    by_step: dict[int, float] = {}
    for event in events:
        if event.get("event") != kind or "step" not in event:
            continue
        value = value_of(event)
        if isinstance(value, (int, float)) and math.isfinite(value):
            by_step[int(event["step"])] = float(value)
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def loss_series(events: list[dict]) -> tuple[list[int], list[float]]:
    return event_series(events, "progress", lambda e: e.get("loss"))


def held_out_metric(events: list[dict], row: dict) -> str | None:
    """The metric the run picks its best checkpoint by (run.json says; else its eval events)."""
    if row.get("best_metric"):
        return row["best_metric"]
    for event in reversed(events):
        if event.get("event") == "eval":
            if event.get("best_metric"):
                return event["best_metric"]
            names = [k for k in event.get("metrics", {}) if k.startswith("val_")]
            if names:
                return names[0]
    return None


def metric_series(events: list[dict], metric: str) -> tuple[list[int], list[float]]:
    return event_series(events, "eval", lambda e: e.get("metrics", {}).get(metric))


def eval_extractor(events: list[dict], step: int | None = None) -> str | None:
    """The feature extractor a run's held-out metric was measured with (an image GAN's FID:
    "own-classifier:0aa0896b41ae"), from its eval event at `step` (else its last one); None for
    metrics that need none (text's bits per byte). FIDs of different extractors are different
    measures: never compared as if they were one."""
    evals = [e for e in events if e.get("event") == "eval"]
    at_step = [e for e in evals if step is not None and e.get("step") == step]
    for event in reversed(at_step or evals):
        for key, value in (event.get("metrics") or {}).items():
            if key.endswith("extractor") and isinstance(value, str):
                return value
    return None


def measure_label(metric: str | None, extractor: str | None) -> str:
    """"val_fid (own-classifier:0aa0896b41ae)": the metric and, when it has one, its extractor."""
    if not metric:
        return "—"
    return f"{metric} ({extractor})" if extractor else metric


def config_rows(docs: list[dict]) -> list[tuple[str, list]]:
    """(key, one value per run) for every setting of any of the runs: generator, model config
    ("config.n_layer"), training config ("train.lr") and data; MISSING where a run lacks it."""
    sections = [("config", "config"), ("train", "train"), ("data", "data")]
    keys = ["generator"]
    for section, prefix in sections:
        for doc in docs:
            for name in (doc.get(section) or {}):
                key = f"{prefix}.{name}"
                if key not in keys:
                    keys.append(key)

    def value(doc: dict, key: str):
        if key == "generator":
            return doc.get("generator", MISSING)
        section, name = key.split(".", 1)
        return (doc.get(section) or {}).get(name, MISSING)

    return [(key, [value(doc, key) for doc in docs]) for key in keys]


def values_differ(values: list) -> bool:
    first = values[0]
    return any(v is MISSING or first is MISSING or v != first for v in values[1:])


def format_value(value) -> str:
    if value is MISSING:
        return "—"
    if value is None:
        return "none"
    if isinstance(value, (list, dict, bool)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def run_task(doc: dict) -> str:
    """What a run learned, from its config.json: the text generator's `task` setting
    ("classify", "tag"), "generate" for every other run."""
    return str((doc.get("config") or {}).get("task") or "generate")


def measured_on(doc: dict) -> str:
    """The data a run's report is measured on when it is evaluated on its own held-out data:
    its held-out file, or the share of its training data it held out (a fixed shuffle, so the
    same examples every time)."""
    data = doc.get("data") or {}
    if data.get("val_source"):
        return str(data["val_source"])
    share = (doc.get("config") or {}).get("val_fraction")
    part = f"the held-out {share:.0%}" if isinstance(share, (int, float)) else "the held-out part"
    return f"{part} of {data.get('source') or 'the built-in data'}"


def report_row_names(reports: list[dict]) -> list[str]:
    """The rows of reports shown side by side: every class of any of them (the first report's
    order, then classes only later ones have), then each average row any of them has."""
    classes: list[str] = []
    for report in reports:
        classes += [str(name) for name in report.get("classes", {}) if str(name) not in classes]
    return classes + [name for name in REPORT_AVERAGES if any(name in r for r in reports)]


def report_cells(report: dict, row: str) -> list[str]:
    """Precision, recall, F1 and support of one row of a report, as text ("—" where the report
    has no such row: a class the run never saw). Accuracy is one number, shown as the F1 (as
    scikit-learn prints it under f1-score)."""
    classes = {str(name): values for name, values in report.get("classes", {}).items()}
    if row == "accuracy" and isinstance(report.get("accuracy"), (int, float)):
        support = sum(values["support"] for values in classes.values())
        return ["", "", f"{report['accuracy']:.3f}", str(support)]
    values = classes.get(row, report.get(row))
    if not isinstance(values, dict):
        return ["—"] * len(REPORT_COLUMNS)
    return [f"{values['precision']:.3f}", f"{values['recall']:.3f}", f"{values['f1']:.3f}",
            str(values["support"])]


def evaluate_runs(ctx, paths: list[str], device: str) -> None:
    """Each run's best checkpoint evaluated on its own held-out data, one after the other; each
    result (index, metrics with the report, None) or failure (index, None, why) reported as
    progress, so a column fills as soon as its run is done and one failure spares the others."""
    for index, path in enumerate(paths):
        if ctx.cancelled:
            return
        try:
            result = api.evaluate(path, checkpoint="best", device=device)
        except StudioError as exc:
            ctx.progress((index, None, for_window(str(exc))))
        except BaseException as exc:  # noqa: BLE001 - a generator's bug (or its sys.exit) is
            # said in its run's column, and the other runs are still evaluated
            ctx.progress((index, None, f"{type(exc).__name__}: {exc}"))
        else:
            ctx.progress((index, result, None))


class SortableItem(QTableWidgetItem):
    """A cell that sorts by a key (a number, for steps and metrics) rather than by its text."""

    def __init__(self, text: str, sort_key):
        super().__init__(text)
        self.sort_key = sort_key

    def __lt__(self, other):
        # Not super().__lt__: PySide dispatches that back to this method, endlessly.
        mine, theirs = self.sort_key, getattr(other, "sort_key", None)
        if (mine is None) != (theirs is None):
            return theirs is None  # rows without a value sort after those with one
        if mine is not None and mine != theirs:
            return mine < theirs
        return self.text().lower() < other.text().lower()


# --- the panel ------------------------------------------------------------------------------------

class RunsPanel(QWidget):
    resume_requested = Signal(str)  # a run folder the training panel should continue
    duplicate_requested = Signal(dict)  # a config.json document for a new run, "name" set
    fine_tune_requested = Signal(str)  # a run folder the next run in Train starts from

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.rows: list[dict] | None = None  # what the table shows; None before the first read
        self.compare_dialog: CompareDialog | None = None
        self.duplicate_dialog: DuplicateDialog | None = None
        self.menu: QMenu | None = None  # the context menu last shown
        # The Serve dialogs opened, by the run folders they serve: Serve… again shows the one
        # there is, and the window stops their servers when it closes.
        self.serve_dialogs: dict[frozenset, ServeDialog] = {}
        # (run folder, best step) -> the extractor its best value was measured with: read from
        # events.jsonl once per new best, not at every refresh.
        self._extractors: dict[tuple[str, int | None], str | None] = {}

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        # No sort column until the user clicks a header: the first order is newest first.
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.setToolTip("Runs in the runs folder. Click a header to sort; Ctrl+click to "
                              "select several runs to compare; right-click for what to do.")
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._show_context_menu)
        self.empty_label = QLabel(EMPTY_TEXT, alignment=Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.table)
        self.stack.addWidget(self.empty_label)

        self.open_button = QPushButton("Open")
        self.resume_button = QPushButton("Resume")
        self.duplicate_button = QPushButton("Duplicate with changes…")
        self.fine_tune_button = QPushButton("Fine-tune from this run…")
        self.serve_button = QPushButton("Serve…")
        self.delete_button = QPushButton("Delete…")
        self.compare_button = QPushButton("Compare")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read the runs folder again (it is also read every few "
                                       "seconds while this tab is shown)")
        self.open_button.clicked.connect(self.open_selected)
        self.resume_button.clicked.connect(self.resume_selected)
        self.duplicate_button.clicked.connect(self.duplicate_selected)
        self.fine_tune_button.clicked.connect(self.fine_tune_selected)
        self.serve_button.clicked.connect(self.serve_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.compare_button.clicked.connect(self.compare_selected)
        self.refresh_button.clicked.connect(self.refresh)
        buttons = QHBoxLayout()
        for button in (self.open_button, self.resume_button, self.duplicate_button,
                       self.fine_tune_button, self.serve_button, self.delete_button,
                       self.compare_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)

        self.folder_label = QLabel()
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(self.folder_label)
        layout.addWidget(self.stack, 1)  # the table scrolls; the buttons below stay in view
        layout.addLayout(buttons)

        self.table.itemSelectionChanged.connect(self.update_buttons)
        self.table.doubleClicked.connect(lambda _index: self.open_selected())
        # Only while the table has focus: Delete typed in another panel's field must not ask to
        # delete runs.
        for keys, action in ((QKeySequence(QKeySequence.StandardKey.Delete), self.delete_selected),
                             (QKeySequence(Qt.Key.Key_Return), self.open_selected)):
            shortcut = QShortcut(keys, self.table, action)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)

        self.refresh_timer = QTimer(self)
        self.refresh_timer.setInterval(REFRESH_MS)
        self.refresh_timer.timeout.connect(self.refresh)
        session.runs_changed.connect(self.refresh)
        self.refresh()

    # -- keeping the table current
    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.refresh()
        self.refresh_timer.start()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.refresh_timer.stop()  # nobody looks: no need to read the disk

    def refresh(self) -> None:
        self.folder_label.setText(f"Runs folder: {self.session.runs_folder}")
        problem = None
        try:
            rows = self.session.all_runs()
        except (StudioError, OSError) as exc:
            rows, problem = [], for_window(str(exc))
        for row in rows:
            row["extractor"] = self._extractor(row)
        if rows == self.rows and problem is None:
            return  # unchanged: leave selection, scroll position and sort order alone
        self.rows = rows
        self.empty_label.setText(f"Cannot read the runs folder: {problem}" if problem else EMPTY_TEXT)
        self.stack.setCurrentWidget(self.table if rows else self.empty_label)
        self._fill_table(rows)
        self.update_buttons()

    def _extractor(self, row: dict) -> str | None:
        if row.get("best") is None:
            return None
        key = (row["run"], row.get("best_step"))
        if key not in self._extractors:
            try:
                events = RunDir(Path(row["run"])).events()
            except (StudioError, OSError):
                return None  # unreadable now: asked again at the next refresh
            self._extractors[key] = eval_extractor(events, row.get("best_step"))
        return self._extractors[key]

    def _fill_table(self, rows: list[dict]) -> None:
        keep_selected = {row["run"] for row in self.selected_rows()}
        self.table.setSortingEnabled(False)  # sorting while filling would scatter a row's cells
        self.table.clearContents()
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, item in enumerate(self._row_items(row)):
                item.setData(PATH_ROLE, row["run"])
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        selection = self.table.selectionModel()
        self.table.clearSelection()
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(PATH_ROLE) in keep_selected:
                selection.select(self.table.model().index(r, 0),
                                 selection.SelectionFlag.Select | selection.SelectionFlag.Rows)
        self.table.resizeColumnsToContents()
        header = self.table.horizontalHeader()
        for column in range(1, self.table.columnCount()):
            header.resizeSection(column, min(header.sectionSize(column), MAX_COLUMN_WIDTH))
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)

    @staticmethod
    def _row_items(row: dict) -> list[QTableWidgetItem]:
        name = SortableItem(display_name(row), display_name(row).lower())
        notes = (row.get("notes") or "").strip()
        name.setToolTip(row["run"] + (f"\n\n{notes}" if notes else ""))
        status = SortableItem(row["status"], row["status"])
        status.setToolTip(STATUS_TIPS.get(row["status"], row["status"]))
        if row["status"] in STATUS_COLORS:
            status.setForeground(QBrush(QColor(STATUS_COLORS[row["status"]])))
        max_steps = row.get("max_steps")
        step = SortableItem(f"{row['step']} / {max_steps}" if max_steps else str(row["step"]),
                            row["step"])
        best_value = row.get("best")
        measure = measure_label(row.get("best_metric"), row.get("extractor"))
        # Sorted by measure first, then value: an FID never ranks against another extractor's
        # FID or against bits per byte, each measure's runs stay together.
        best = SortableItem("—" if best_value is None else f"{best_value:.4f}",
                            None if best_value is None else (measure, best_value))
        if best_value is not None:
            best.setToolTip(f"best {measure} = {best_value} at step {row.get('best_step')}; "
                            f"comparable only with runs of the same measure")
        metric = SortableItem(measure, measure if row.get("best_metric") else None)
        metric.setToolTip(f"{measure}: the held-out measure its best checkpoint is chosen by"
                          + (" (FID-like values depend on the feature extractor: only runs "
                             "measured with the same one compare)" if row.get("extractor") else ""))
        checkpoints = SortableItem(str(row.get("checkpoints", 0)), row.get("checkpoints", 0))
        generator = SortableItem(row["generator"], row["generator"])
        return [name, generator, status, step, metric, best, checkpoints]

    # -- selection and what can be done with it
    def selected_rows(self) -> list[dict]:
        by_path = {row["run"]: row for row in self.rows or []}
        paths = []
        for index in self.table.selectionModel().selectedRows():
            path = self.table.item(index.row(), 0).data(PATH_ROLE)
            if path in by_path and path not in paths:
                paths.append(path)
        return [by_path[p] for p in paths]

    def select_runs(self, paths: list[str]) -> None:
        """Select the rows of these run folders (as a Ctrl+click would)."""
        wanted = {str(p) for p in paths}
        self.table.clearSelection()
        selection = self.table.selectionModel()
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(PATH_ROLE) in wanted:
                selection.select(self.table.model().index(r, 0),
                                 selection.SelectionFlag.Select | selection.SelectionFlag.Rows)

    def _why_not_open(self, rows) -> str | None:
        return None if len(rows) == 1 else "Select one run to open it"

    def _why_not_resume(self, rows) -> str | None:
        if len(rows) != 1:
            return "Select one run to resume it"
        status = rows[0]["status"]
        if status == "running":
            return f"{run_name(rows[0]['run'])} is training now"
        if status == "demo":
            return "Demo runs cannot be trained further; duplicate it to train your own"
        return None

    def _why_not_duplicate(self, rows) -> str | None:
        if len(rows) != 1:
            return "Select one run to duplicate it"
        if rows[0]["generator"] not in self.session.registry.names():
            return f"The generator '{rows[0]['generator']}' of this run is not installed"
        return None

    def _why_not_fine_tune(self, rows) -> str | None:
        if len(rows) != 1:
            return "Select one run to fine-tune from it"
        if rows[0]["generator"] not in self.session.registry.names():
            return f"The generator '{rows[0]['generator']}' of this run is not installed"
        return why_not_a_base({**rows[0], "name": display_name(rows[0])})

    def _why_not_serve(self, rows) -> str | None:
        if not rows:
            return "Select the runs to serve (Ctrl+click for several: one server answers for all)"
        installed = self.session.registry.names()
        for row in rows:
            if row["generator"] not in installed:
                return (f"The generator '{row['generator']}' of {run_name(row['run'])} is not "
                        f"installed")
            if not row.get("checkpoints"):
                return f"{run_name(row['run'])} has no checkpoint yet: train it until it saves one"
        names = [run_name(row["run"]) for row in rows]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:  # clients name a model by its run folder's name
            return (f"Two selected runs have the folder name {twice[0]}, which the server uses "
                    f"as their model id: serve them one at a time")
        return None

    def _why_not_delete(self, rows) -> str | None:
        if not rows:
            return "Select the runs to delete"
        for row in rows:
            if row["status"] in LIVE_STATUSES:
                return f"{run_name(row['run'])} is training now; stop it first"
            if row["status"] == "demo":
                return f"{run_name(row['run'])} is a built-in demo run and cannot be deleted"
        return None

    def _why_not_compare(self, rows) -> str | None:
        return None if len(rows) >= 2 else "Select two or more runs (Ctrl+click) to compare them"

    def _why_not_open_folder(self, rows) -> str | None:
        if len(rows) != 1:
            return "Select one run to open its folder"
        return None if Path(rows[0]["run"]).is_dir() else f"{rows[0]['run']} is no longer there"

    def run_actions(self) -> list[tuple[str, object, str | None]]:
        """(label, slot, why it cannot act now or None) for what can be done with the selected
        runs: the buttons and the context menu offer the same, refused for the same reasons."""
        rows = self.selected_rows()
        return [("Open", self.open_selected, self._why_not_open(rows)),
                ("Resume", self.resume_selected, self._why_not_resume(rows)),
                ("Duplicate with changes…", self.duplicate_selected, self._why_not_duplicate(rows)),
                ("Fine-tune from this run…", self.fine_tune_selected, self._why_not_fine_tune(rows)),
                ("Serve…", self.serve_selected, self._why_not_serve(rows)),
                ("Open run folder", self.open_selected_folder, self._why_not_open_folder(rows)),
                ("Compare", self.compare_selected, self._why_not_compare(rows)),
                ("Delete…", self.delete_selected, self._why_not_delete(rows))]

    def context_menu(self) -> QMenu:
        """The right-click menu for the selected runs; an entry that cannot act is disabled and
        its tooltip says why."""
        menu = QMenu(self)
        menu.setToolTipsVisible(True)
        for label, slot, why_not in self.run_actions():
            if label == "Delete…":
                menu.addSeparator()
            action = menu.addAction(label)
            action.triggered.connect(slot)
            action.setEnabled(why_not is None)
            if why_not is not None:
                action.setToolTip(why_not)
        return menu

    def _show_context_menu(self, position: QPoint) -> None:
        item = self.table.itemAt(position)
        if item is None:
            return
        path = item.data(PATH_ROLE)
        if path not in {row["run"] for row in self.selected_rows()}:
            self.select_runs([path])  # right-click on another row acts on that row
        if self.menu is not None:
            self.menu.deleteLater()
        self.menu = self.context_menu()
        self.menu.popup(self.table.viewport().mapToGlobal(position))

    def update_buttons(self) -> None:
        rows = self.selected_rows()
        resume_tip = ("Tell its training process to continue" if rows and rows[0]["status"] == "paused"
                      else "Continue training from the run's last checkpoint (in the Train tab)")
        for button, why_not, tip in (
                (self.open_button, self._why_not_open(rows),
                 "Make it the current run: its charts and previews in Train, Generate samples from "
                 "it (Enter or double-click)"),
                (self.resume_button, self._why_not_resume(rows), resume_tip),
                (self.duplicate_button, self._why_not_duplicate(rows),
                 "Start a new run with this run's settings, changed as you like"),
                (self.fine_tune_button, self._why_not_fine_tune(rows),
                 "Start a new run from this run's best checkpoint (in the Train tab): adapt it "
                 "to a task or to your data"),
                (self.serve_button, self._why_not_serve(rows),
                 "Answer HTTP requests with the selected runs: an OpenAI-compatible API your "
                 "own programs can use"),
                (self.delete_button, self._why_not_delete(rows),
                 "Delete the selected runs from disk, after asking (Delete key)"),
                (self.compare_button, self._why_not_compare(rows),
                 "Overlay the selected runs' curves, previews and settings")):
            button.setEnabled(why_not is None)
            button.setToolTip(tip if why_not is None else why_not)

    # -- actions
    def open_selected(self) -> None:
        rows = self.selected_rows()
        if self._why_not_open(rows) is None:
            self.session.open_run(rows[0]["run"])

    def open_selected_folder(self) -> None:
        rows = self.selected_rows()
        if self._why_not_open_folder(rows) is None:
            open_folder(rows[0]["run"])

    def resume_selected(self) -> None:
        rows = self.selected_rows()
        if self._why_not_resume(rows) is not None:
            return
        path = rows[0]["run"]
        if rows[0]["status"] == "paused":
            # Its process is alive and waiting: a second `studio train --resume` would fight it
            # over the folder, so the process itself is told to go on (as `studio control` does).
            try:
                api.control(path, "resume")
            except StudioError as exc:
                warn(self, "Cannot resume", for_window(str(exc)))
            self.refresh()
            return
        self.resume_requested.emit(path)

    def duplicate_selected(self) -> None:
        rows = self.selected_rows()
        if self._why_not_duplicate(rows) is not None:
            return
        try:
            run = RunDir.open(Path(rows[0]["run"]))
            doc = run.config()
            # As loading and resuming do: the plugin named when it is missing, and the settings
            # of a run made by an older version renamed by its migrate_config.
            gen_cls = api.run_generator(doc, run.path, self.session.registry)
            doc = {**doc, "config": api.run_settings(gen_cls, doc, run.config_path)}
            dialog = DuplicateDialog(gen_cls, doc, display_name(rows[0]), self)
        except StudioError as exc:
            warn(self, "Cannot duplicate", for_window(str(exc)))
            return
        dialog.accepted.connect(lambda: self.duplicate_requested.emit(dialog.document()))
        self.duplicate_dialog = dialog
        dialog.open()  # window-modal without blocking: the panel keeps refreshing behind it

    def fine_tune_selected(self) -> None:
        rows = self.selected_rows()
        why_not = self._why_not_fine_tune(rows)
        if why_not is not None:
            if rows:
                warn(self, "Cannot fine-tune from it", why_not)
            return
        self.fine_tune_requested.emit(rows[0]["run"])

    def serve_selected(self) -> None:
        rows = self.selected_rows()
        why_not = self._why_not_serve(rows)
        if why_not is not None:
            if rows:
                warn(self, "Cannot serve", why_not)
            return
        paths = [row["run"] for row in rows]
        dialog = self.serve_dialogs.get(frozenset(paths))
        if dialog is None:
            try:
                dialog = ServeDialog(paths, self.session, self)
            except StudioError as exc:
                warn(self, "Cannot serve", for_window(str(exc)))
                return
            self.serve_dialogs[frozenset(paths)] = dialog
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def stop_servers(self) -> None:
        """Stop every server started from this tab, and wait until each is gone."""
        for dialog in self.serve_dialogs.values():
            dialog.stop()  # all told at once, so they end side by side, not one after the other
        for dialog in self.serve_dialogs.values():
            dialog.stop_now()

    def delete_selected(self) -> None:
        rows = self.selected_rows()
        why_not = self._why_not_delete(rows)
        if why_not is not None:
            if rows:
                warn(self, "Cannot delete", why_not)
            return
        names = "\n".join(f"  {display_name(row)}   ({row['run']})" for row in rows)
        what = f"the run “{display_name(rows[0])}”" if len(rows) == 1 else f"{len(rows)} runs"
        if not confirm(self, "Delete runs", f"Delete {what}?\n\n{names}\n\nIts checkpoints, "
                                            f"previews and logs are removed from disk. This "
                                            f"cannot be undone."):
            return
        problems = []
        for row in rows:
            # The table may be a few seconds old: a run resumed from the CLI since is now live.
            fresh = api.runs_table(row["run"]) if Path(row["run"]).exists() else []
            if fresh and fresh[0]["status"] in LIVE_STATUSES:
                problems.append(f"{display_name(row)} started training again; not deleted.")
                continue
            try:
                shutil.rmtree(row["run"])
            except OSError as exc:
                problems.append(f"{row['run']}: {exc.strerror or exc}")
        # The session hears of it and moves a deleted current run on to the newest run of its
        # generator (a demo run at least): no panel goes on showing or resuming a deleted run.
        self.session.runs_changed.emit()
        if problems:
            warn(self, "Some runs were not deleted", "\n".join(problems))

    def compare_selected(self) -> None:
        rows = self.selected_rows()
        if self._why_not_compare(rows) is not None:
            return
        if self.compare_dialog is not None:
            self.compare_dialog.close()
            self.compare_dialog.deleteLater()
        self.compare_dialog = CompareDialog(rows, self.session, self)
        self.compare_dialog.show()


# --- duplicate with changes -------------------------------------------------------------------------

class DuplicateDialog(QDialog):
    """The run's settings in forms, prefilled from its config.json; OK gives the edited document."""

    def __init__(self, gen_cls, doc: dict, name: str, parent=None):
        super().__init__(parent)
        from studio.engine import TrainConfig  # imports torch: only once a dialog opens
        self.source_doc = doc
        self.generator = doc["generator"]
        self.default_name = f"{name} (copy)"
        self.setWindowTitle(f"Duplicate {name} with changes")
        self.intro = QLabel("A new run starts from these settings. The original run is not "
                            "changed. Duplicate fills the Train tab with them: press Start there.")
        self.intro.setWordWrap(True)
        self.name_edit = QLineEdit(self.default_name)
        self.name_edit.setToolTip("What the new run is called in the title bar and the Runs tab")
        name_row = QFormLayout()
        name_row.addRow("New run's name", self.name_edit)
        self.model_form = ConfigForm(gen_cls.Config, doc.get("config") or {})
        self.train_form = ConfigForm(TrainConfig, doc.get("train") or {})
        data = doc.get("data") or {}
        self.data_edit = QLineEdit(data.get("source") or "")
        self.data_edit.setPlaceholderText("empty = the generator's built-in data")
        self.data_edit.setToolTip("Training data: a file or folder")
        self.val_data_edit = QLineEdit(data.get("val_source") or "")
        self.val_data_edit.setPlaceholderText("empty = hold out part of the training data")
        self.val_data_edit.setToolTip("Held-out data to evaluate on: a file or folder")
        data_page = QWidget()
        data_layout = QFormLayout(data_page)
        data_layout.addRow("data", self.data_edit)
        data_layout.addRow("held-out data", self.val_data_edit)

        tabs = QTabWidget()
        tabs.addTab(self._scrolling(self.model_form), f"Model ({self.generator})")
        tabs.addTab(self._scrolling(self.train_form), "Training")
        tabs.addTab(data_page, "Data")
        self.problem_label = QLabel()
        self.problem_label.setStyleSheet("color: #c62828;")
        self.problem_label.setWordWrap(True)
        self.button_box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                           | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.button_box.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Duplicate")
        self.button_box.accepted.connect(self.accept)
        self.button_box.rejected.connect(self.reject)
        self.button_box.button(QDialogButtonBox.StandardButton.Cancel).setToolTip(
            "Close without starting a run")
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addLayout(name_row)
        layout.addWidget(tabs, 1)
        layout.addWidget(self.problem_label)
        layout.addWidget(self.button_box)
        self.model_form.changed.connect(self._check)
        self.train_form.changed.connect(self._check)
        self._check()
        self.resize(520, 640)

    @staticmethod
    def _scrolling(widget: QWidget) -> QScrollArea:
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setWidget(widget)
        return area

    def _check(self) -> None:
        problem = self.model_form.validate()[1] or self.train_form.validate()[1]
        self.problem_label.setText(problem or "")
        self.ok_button.setEnabled(problem is None)
        self.ok_button.setToolTip(problem or "Hand these settings to the Train tab for a new run")

    def document(self) -> dict:
        """The new run's config.json document: {"name", "generator", "config", "train", "data"}
        (and "init" when the run was fine-tuned from another, so the duplicate starts from it
        too)."""
        doc = {"name": self.name_edit.text().strip() or self.default_name,
               "generator": self.generator, "config": self.model_form.config_values(),
               "train": self.train_form.config_values(),
               "data": {"source": self.data_edit.text().strip() or None,
                        "val_source": self.val_data_edit.text().strip() or None}}
        if self.source_doc.get("init"):
            doc["init"] = self.source_doc["init"]
        return doc


# --- compare -----------------------------------------------------------------------------------------

class CompareDialog(QDialog):
    """Two or more runs side by side: curves overlaid, previews at matching steps, settings."""

    def __init__(self, rows: list[dict], session, parent=None):
        super().__init__(parent)
        self.rows = rows
        self.runs = [RunDir(Path(row["run"])) for row in rows]
        self.names = [display_name(row) for row in rows]
        self.colors = [PALETTE[i % len(PALETTE)] for i in range(len(rows))]
        self.setWindowTitle("Compare " + ", ".join(self.names))
        events = [run.events() for run in self.runs]

        self.loss_plot = self._plot("Training loss", "loss")
        self.metric_plot = self._plot("Held-out metric", "")
        self.metric_note = QLabel()
        self.metric_note.setWordWrap(True)
        self._draw_curves(events)
        self.apply_chart_style()
        session.theme_changed.connect(self.apply_chart_style)
        curves = QWidget()
        curves_layout = QVBoxLayout(curves)
        curves_layout.addWidget(self.loss_plot, 1)
        curves_layout.addWidget(self.metric_plot, 1)
        curves_layout.addWidget(self.metric_note)

        self.previews = PreviewComparison(self.runs, self.names, self.colors)
        self.config_view = ConfigComparison(self.runs, self.names, self.colors)
        # Classifiers and taggers: their per-class reports, measured when the tab is made.
        self.reports: ReportComparison | None = None
        if any(run_task(doc) != "generate" for doc in self.config_view.docs):
            self.reports = ReportComparison(self.runs, self.config_view.docs, self.names,
                                            self.colors, session.settings.default_device)

        self.tabs = QTabWidget()
        self.tabs.addTab(curves, "Curves")
        if self.reports is not None:
            self.tabs.addTab(self.reports, "Reports")
        self.tabs.addTab(self.previews, "Previews")
        self.tabs.addTab(self.config_view, "Settings")
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        self.resize(960, 720)

    def done(self, result: int) -> None:
        if self.reports is not None:
            self.reports.cancel()  # closed: the runs not yet evaluated are not
        super().done(result)

    @staticmethod
    def _plot(title: str, y_label: str) -> pg.PlotWidget:
        plot = pg.PlotWidget(title=title)
        plot.setLabel("bottom", "step")
        plot.setLabel("left", y_label)
        plot.showGrid(x=True, y=True, alpha=0.3)
        plot.addLegend()
        return plot

    def apply_chart_style(self, *_) -> None:
        """The charts in the window's theme (pyqtgraph does not follow the palette)."""
        style = theme.chart_style()
        for plot in (self.loss_plot, self.metric_plot):
            plot.setBackground(style["background"])
            item = plot.getPlotItem()
            for side in ("left", "bottom"):
                item.getAxis(side).setPen(style["foreground"])
                item.getAxis(side).setTextPen(style["foreground"])
            item.titleLabel.setText(item.titleLabel.text, color=style["foreground"])
            if item.legend is not None:
                item.legend.setLabelTextColor(style["foreground"])

    def _draw_curves(self, events: list[list[dict]]) -> None:
        """Losses of every run; the held-out metric only of runs measured the same way (same
        metric, same feature extractor): the others are named below the chart, not drawn."""
        measures = [measure_label(held_out_metric(run_events, row), eval_extractor(run_events))
                    if held_out_metric(run_events, row) else None
                    for run_events, row in zip(events, self.rows)]
        measured = [m for m in measures if m]
        # The measure most of the runs share (the first run's on a tie).
        shown = max(measured, key=lambda m: (measured.count(m), -measured.index(m)), default=None)
        self.shown_measure = shown
        self.metric_plot.setLabel("left", shown or "")
        left_out = []
        for name, color, run_events, row, measure in zip(self.names, self.colors, events,
                                                          self.rows, measures):
            pen = pg.mkPen(color, width=2)
            steps, losses = loss_series(run_events)
            self.loss_plot.plot(steps, losses, pen=pen, name=name)
            if measure is None:
                continue  # never evaluated: nothing to draw, the legend says so by its absence
            if measure != shown:
                left_out.append(f"{name} — {measure}")
                continue
            steps, values = metric_series(run_events, held_out_metric(run_events, row))
            self.metric_plot.plot(steps, values, pen=pen, symbol="o", symbolSize=5,
                                  symbolBrush=color, symbolPen=None, name=name)
        self.metric_note.setText(
            f"Not drawn, measured otherwise than {shown} (the values are not comparable): "
            f"{'; '.join(left_out)}." if left_out else "")


class PreviewComparison(QWidget):
    """Each run's previews in a column, at the step the slider picks. The slider moves over every
    step at which any run has a preview; a run without one at that step shows its latest earlier
    preview, and says so."""

    def __init__(self, runs: list[RunDir], names: list[str], colors: list[str], parent=None):
        super().__init__(parent)
        self.runs = runs
        self.previews = [dict(list_previews(run)) for run in runs]
        self.steps = sorted(set().union(*self.previews))
        self.shown_steps: list[int | None] = [None] * len(runs)
        self._cache: dict[Path, list] = {}

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, max(0, len(self.steps) - 1))
        self.slider.setToolTip("The training step whose previews are shown")
        self.slider.setEnabled(len(self.steps) > 1)
        self.step_label = QLabel()
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Step"))
        controls.addWidget(self.slider, 1)
        controls.addWidget(self.step_label)

        self.captions: list[QLabel] = []
        self.grids: list[SampleGrid] = []
        columns = QHBoxLayout()
        for name, color in zip(names, colors):
            box = QGroupBox(name)
            box.setStyleSheet(f"QGroupBox {{ color: {color}; font-weight: bold; }}")
            caption = QLabel()
            caption.setStyleSheet("font-weight: normal;")
            grid = SampleGrid(columns=2, size=128)
            box_layout = QVBoxLayout(box)
            box_layout.addWidget(caption)
            box_layout.addWidget(grid, 1)
            columns.addWidget(box, 1)
            self.captions.append(caption)
            self.grids.append(grid)
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addLayout(columns, 1)

        self.slider.valueChanged.connect(lambda index: self.show_step(self.steps[index]))
        if self.steps:
            shared = set.intersection(*(set(p) for p in self.previews))
            self.show_step(max(shared) if shared else self.steps[-1])  # where all runs compare
        else:
            self.step_label.setText("no previews")
            for grid in self.grids:
                grid.set_samples([], empty="no previews in this run")

    def show_step(self, step: int) -> None:
        if self.steps and self.steps[self.slider.value()] != step and step in self.steps:
            self.slider.setValue(self.steps.index(step))  # comes back here through the signal
            return
        self.step_label.setText(f"step {step}")
        for i, previews in enumerate(self.previews):
            earlier = [s for s in previews if s <= step]
            shown = max(earlier) if earlier else None
            self.shown_steps[i] = shown
            if shown is None:
                self.captions[i].setText(f"no preview yet at step {step}")
                self.grids[i].set_samples([], empty="—")
                continue
            self.captions[i].setText(f"step {shown}" if shown == step
                                     else f"step {shown} (no preview at step {step})")
            self.grids[i].set_samples(self._samples(previews[shown]))

    def _samples(self, folder: Path) -> list:
        if folder not in self._cache:
            try:
                self._cache[folder] = load_samples(folder)[1]
            except (StudioError, OSError) as exc:
                from studio.contract import Sample
                self._cache[folder] = [Sample("text", f"(cannot read {folder}: {exc})", {})]
        return self._cache[folder]


class ConfigComparison(QWidget):
    """One column per run, one row per setting; rows whose values differ are bold and tinted."""

    def __init__(self, runs: list[RunDir], names: list[str], colors: list[str], parent=None):
        super().__init__(parent)
        docs = []
        for run in runs:
            try:
                docs.append(run.config())
            except StudioError:
                docs.append({})  # deleted or damaged since it was listed: every row differs
        self.docs = docs  # the runs' config.json documents, for the other tabs too
        self.rows = config_rows(docs)
        self.differing_keys = [key for key, values in self.rows if values_differ(values)]

        self.table = QTableWidget(len(self.rows), len(runs))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for c, (name, color) in enumerate(zip(names, colors)):
            header = QTableWidgetItem(name)
            header.setForeground(QBrush(QColor(color)))
            self.table.setHorizontalHeaderItem(c, header)
        bold = QFont()
        bold.setBold(True)
        for r, (key, values) in enumerate(self.rows):
            differs = key in self.differing_keys
            header = QTableWidgetItem(key)
            if differs:
                header.setFont(bold)
                header.setToolTip("differs between the runs")
            self.table.setVerticalHeaderItem(r, header)
            for c, value in enumerate(values):
                item = QTableWidgetItem(format_value(value))
                item.setToolTip(item.text())  # long values (data paths) are cut at the column width
                if differs:
                    item.setFont(bold)
                    item.setBackground(QBrush(DIFF_BACKGROUND))
                    # The tint alone can be unreadable on a dark theme: keep the text dark on it.
                    item.setForeground(QBrush(QColor("#000000")))
                self.table.setItem(r, c, item)
        self.table.horizontalHeader().setMaximumSectionSize(220)
        self.table.resizeColumnsToContents()

        self.only_differences = QCheckBox(f"Only the {len(self.differing_keys)} settings that differ")
        self.only_differences.setToolTip("Hide the settings all runs share")
        self.only_differences.toggled.connect(self._filter)
        layout = QVBoxLayout(self)
        layout.addWidget(self.only_differences)
        layout.addWidget(self.table, 1)

    def row_differs(self, key: str) -> bool:
        return key in self.differing_keys

    def _filter(self, only_differences: bool) -> None:
        for r, (key, _) in enumerate(self.rows):
            self.table.setRowHidden(r, only_differences and key not in self.differing_keys)


class ReportComparison(QWidget):
    """Classifiers' (or taggers') per-class precision, recall and F1 side by side, with their
    averages: each run's best checkpoint evaluated on its own held-out data, in the background,
    one run after the other. Only runs of one task compare (the task most of them have); the
    others, generation runs among them, are named with why they are left out."""

    def __init__(self, runs: list[RunDir], docs: list[dict], names: list[str], colors: list[str],
                 device: str, parent=None):
        super().__init__(parent)
        tasks = [run_task(doc) for doc in docs]
        adapted = [t for t in tasks if t != "generate"]
        self.task = max(adapted, key=lambda t: (adapted.count(t), -adapted.index(t)))
        # Indexes (into the runs) of the runs compared: one column group each.
        self.compared = [i for i, t in enumerate(tasks) if t == self.task]
        self.names = [names[i] for i in self.compared]
        self.results: dict[int, dict] = {}  # position among the compared -> api.evaluate's result
        self.problems: dict[int, str] = {}

        what = {"classify": "classifiers", "tag": "taggers"}.get(self.task, f"{self.task} runs")
        self.intro = QLabel(f"Per-class scores of the {what}, each from its best checkpoint on "
                            f"its own held-out data:")
        self.intro.setWordWrap(True)
        self.docs = [docs[i] for i in self.compared]
        self.sources: list[QLabel] = []  # per compared run: what it was measured on, or why not
        lines = QVBoxLayout()
        for i in self.compared:
            label = QLabel(f"{names[i]}: measuring on {measured_on(docs[i])}…")
            label.setWordWrap(True)
            label.setStyleSheet(f"color: {colors[i]};")
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            lines.addWidget(label)
            self.sources.append(label)
        left_out = [f"{names[i]} — {self._why_not_compared(t)}" for i, t in enumerate(tasks)
                    if t != self.task]
        self.not_comparable = QLabel("Not comparable, so not shown: " + "; ".join(left_out) + "."
                                     if left_out else "")
        self.not_comparable.setWordWrap(True)
        self.not_comparable.setVisible(bool(left_out))

        self.table = QTableWidget(0, len(self.compared) * len(REPORT_COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for position, i in enumerate(self.compared):
            for k, column in enumerate(REPORT_COLUMNS):
                header = QTableWidgetItem(f"{names[i]}\n{column}")
                header.setForeground(QBrush(QColor(colors[i])))
                self.table.setHorizontalHeaderItem(position * len(REPORT_COLUMNS) + k, header)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addLayout(lines)
        layout.addWidget(self.not_comparable)
        layout.addWidget(self.table, 1)

        evaluation = workers.Task(evaluate_runs, [str(runs[i].path) for i in self.compared], device)
        evaluation.signals.progress.connect(self._measured)  # bound methods: gone with the dialog
        evaluation.signals.failed.connect(self._failed)
        self.evaluation = workers.start(evaluation)

    def _why_not_compared(self, task: str) -> str:
        if task == "generate":
            return "a generation run: it has no per-class report"
        return f"a {task} run: its scores are not those of a {self.task} run"

    def cancel(self) -> None:
        self.evaluation.cancel()

    def finished_all(self) -> bool:
        """Whether every compared run has its report or its problem."""
        return len(self.results) + len(self.problems) == len(self.compared)

    def _measured(self, outcome) -> None:
        position, result, problem = outcome
        label, doc = self.sources[position], self.docs[position]
        if problem is not None or not isinstance((result or {}).get("report"), dict):
            self.problems[position] = problem or "its evaluation gave no per-class report"
            label.setText(f"{self.names[position]}: could not be evaluated: {self.problems[position]}")
        else:
            self.results[position] = result
            label.setText(f"{self.names[position]}: {result.get('checkpoint')} measured on "
                          f"{measured_on(doc)}")
            notes = result.get("notes") or []
            label.setToolTip("\n".join(for_window(note) for note in notes))
        self._fill()

    def _failed(self, message: str) -> None:
        for position in range(len(self.compared)):
            if position not in self.results and position not in self.problems:
                self._measured((position, None, for_window(message)))

    def _fill(self) -> None:
        """The table from the reports there are so far (a run still measuring: empty cells)."""
        reports = {position: result["report"] for position, result in self.results.items()}
        rows = report_row_names([reports[p] for p in sorted(reports)])
        self.table.setRowCount(len(rows))
        self.table.setVerticalHeaderLabels(rows)
        bold = QFont()
        bold.setBold(True)
        for r, row in enumerate(rows):
            for position, report in reports.items():
                for k, text in enumerate(report_cells(report, row)):
                    item = QTableWidgetItem(text)
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    if row in REPORT_AVERAGES:
                        item.setFont(bold)
                    self.table.setItem(r, position * len(REPORT_COLUMNS) + k, item)
        self.table.resizeColumnsToContents()

