"""The data panel: pick a file, a folder or the built-in demo data; see what the generator
makes of it before any training -- items used, items skipped with the reason, a preview."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFileDialog, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QPushButton, QRadioButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from studio.gui import workers
from studio.gui.views import SampleGrid

BUILTIN_LABEL = "Built-in demo data (works offline)"


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
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.skipped = QTableWidget(0, 2)
        self.skipped.setHorizontalHeaderLabels(["skipped item", "why"])
        self.skipped.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.skipped.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
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

        self.builtin.toggled.connect(self._source_changed)
        self.path.editingFinished.connect(self._source_changed)
        self.pick_file.clicked.connect(self._choose_file)
        self.pick_folder.clicked.connect(self._choose_folder)
        self.check.clicked.connect(self.run_check)
        session.generator_changed.connect(lambda _: self.run_check())
        self._show_empty()

    # -- choosing
    def source(self) -> str | None:
        return None if self.builtin.isChecked() else (self.path.text().strip() or None)

    def set_source(self, path: str | None) -> None:
        if path:
            self.path.setText(str(path))
            self.own.setChecked(True)
        else:
            self.builtin.setChecked(True)
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

    def _source_changed(self, *_):
        if self.own.isChecked() and not self.path.text().strip():
            self.problem = "choose a file or folder, or use the built-in demo data"
            self.status.setText(self.problem)
            return
        self.session.set_data(self.source())
        self.run_check()

    # -- checking
    def _show_empty(self):
        self.summary.setText("")
        self.skipped.setRowCount(0)
        self.preview.set_samples([], "the preview appears here after the check")

    def run_check(self) -> None:
        """Validate the data in the background (reading and tokenizing can take a while)."""
        if self.task is not None:
            self.task.cancel()
        source = self.source()
        name = self.session.generator
        self.status.setText(f"checking {source or 'the built-in data'} for '{name}'…")
        self.status.setStyleSheet("")

        def inspect(ctx, generator, data):
            from studio import api
            return api.inspect_data(generator, data)

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
        self.report, self.problem = report, None
        self.status.setText(f"✓ usable: {len(report.used)} item(s) used, "
                            f"{len(report.skipped)} skipped")
        self.status.setStyleSheet("color: #2e7d32;")
        shown = {k: v for k, v in report.summary.items() if k != "notes"}
        notes = report.summary.get("notes", [])
        self.summary.setText(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in shown.items())
                             + ("".join(f"\nnote: {n}" for n in notes)))
        self.skipped.setRowCount(len(report.skipped))
        for row, (item, why) in enumerate(report.skipped):
            self.skipped.setItem(row, 0, QTableWidgetItem(Path(item).name if "/" in item else item))
            self.skipped.item(row, 0).setToolTip(item)
            self.skipped.setItem(row, 1, QTableWidgetItem(why))
        self.preview.set_samples(report.preview[:12], "no preview for this data")
        self.report_ready.emit(report)

    def _failed(self, message: str) -> None:
        if not self._current():
            return
        self.report, self.problem = None, message
        self.status.setText(f"✗ {message}")
        self.status.setStyleSheet("color: #c62828;")
        self._show_empty()
        self.report_ready.emit(None)
