"""The main window: a generator picker and four panels (Data, Train, Generate, Runs).

The window appears before torch is imported: the panels that need a generator's code are
built right after it is shown, from a background import, so a cold start stays short.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QApplication, QComboBox, QDialog, QDialogButtonBox, QFormLayout,
                               QLabel, QLineEdit, QMainWindow, QMessageBox, QPushButton,
                               QTableWidget, QTableWidgetItem, QTabWidget, QToolBar, QVBoxLayout)

from studio.gui import workers
from studio.gui.session import Session


class PluginsDialog(QDialog):
    """Every registered generator with its status; broken plugins with their error."""

    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Plugins")
        self.resize(720, 320)
        rows = [e.info() for e in session.registry.entries()]
        self.table = QTableWidget(len(rows), 5)
        self.table.setHorizontalHeaderLabels(["name", "modality", "version", "status", "error / package"])
        for r, row in enumerate(rows):
            cells = [row["name"], row["modality"], row["version"], row["status"],
                     row["error"] or row["source"]]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                if row["status"] != "ok":
                    item.setForeground(Qt.GlobalColor.red)
                self.table.setItem(r, c, item)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Generators are found through the 'aigc_studio.generators' entry "
                                "point. A broken one is listed here and the rest keep working."))
        layout.addWidget(self.table)
        layout.addWidget(buttons)


class SettingsDialog(QDialog):
    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.session = session
        self.runs_folder = QLineEdit(session.settings.runs_folder)
        self.runs_folder.setToolTip("Where new runs are created and listed")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        self.device.setCurrentText(session.settings.default_device)
        self.theme = QComboBox()
        self.theme.addItems(["system", "light", "dark"])
        self.theme.setCurrentText(session.settings.theme)
        form = QFormLayout(self)
        form.addRow("Runs folder", self.runs_folder)
        form.addRow("Default device", self.device)
        form.addRow("Theme", self.theme)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                                   QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def apply(self) -> None:
        s = self.session.settings
        s.runs_folder = self.runs_folder.text().strip() or s.runs_folder
        s.default_device = self.device.currentText()
        s.theme = self.theme.currentText()
        s.save()
        apply_theme(s.theme)
        self.session.runs_changed.emit()


def apply_theme(theme: str) -> None:
    app = QApplication.instance()
    if app is None:
        return
    if theme == "dark":
        app.setStyleSheet("QWidget { background: #2b2b2b; color: #e6e6e6; } "
                          "QLineEdit, QPlainTextEdit, QTableWidget { background: #1e1e1e; }")
    else:
        app.setStyleSheet("")


def ask_on_close(parent) -> str:
    """While training runs: "stop" (checkpoint first), "leave" it running, or "cancel"."""
    box = QMessageBox(parent)
    box.setWindowTitle("Training is running")
    box.setText("A run is still training. Stop it (a checkpoint is written first), or leave it "
                "running in the background?")
    stop = box.addButton("Stop and close", QMessageBox.ButtonRole.DestructiveRole)
    leave = box.addButton("Leave running", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return "stop" if box.clickedButton() is stop else "leave" if box.clickedButton() is leave else "cancel"


class MainWindow(QMainWindow):
    def __init__(self, session: Session | None = None):
        super().__init__()
        self.session = session or Session()
        self.setWindowTitle("AIGC Studio")
        self.resize(1280, 820)
        self.setMinimumSize(900, 600)
        if self.session.settings.geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.session.settings.geometry.encode()))
        self.data_panel = self.train_panel = self.generate_panel = self.runs_panel = None
        self._build_chrome()
        self.tabs = QTabWidget()
        self.loading = QLabel("Loading generators…", alignment=Qt.AlignmentFlag.AlignCenter)
        self.tabs.addTab(self.loading, "…")
        self.setCentralWidget(self.tabs)
        self.statusBar().showMessage("starting…")
        QTimer.singleShot(0, self._load_generator)

    # -- menus, toolbar
    def _build_chrome(self) -> None:
        toolbar = QToolBar("Generator")
        toolbar.setMovable(False)
        self.addToolBar(toolbar)
        toolbar.addWidget(QLabel(" Generator: "))
        self.picker = QComboBox()
        self.picker.setToolTip("The generator every panel works with")
        self.picker.setMinimumWidth(260)
        toolbar.addWidget(self.picker)
        self.plugins_button = QPushButton("Plugins…")
        self.plugins_button.setToolTip("All generators, and the error of any broken plugin")
        toolbar.addWidget(self.plugins_button)
        self.plugins_button.clicked.connect(self.show_plugins)
        file_menu = self.menuBar().addMenu("&File")
        settings = QAction("&Settings…", self)
        settings.triggered.connect(self.show_settings)
        file_menu.addAction(settings)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        help_menu = self.menuBar().addMenu("&Help")
        plugins = QAction("&Plugins…", self)
        plugins.triggered.connect(self.show_plugins)
        help_menu.addAction(plugins)

    def _load_generator(self) -> None:
        """Import the generators off the GUI thread, then build the panels."""
        def describe(ctx, session):
            rows = [e.info() for e in session.registry.entries()]
            for row in rows:  # import the chosen generator's code (torch) here, not on the GUI thread
                if row["status"] == "ok" and row["name"] == session.generator:
                    session.generator_class()
            return rows

        task = workers.Task(describe, self.session)
        task.signals.done.connect(self._build_panels)
        task.signals.failed.connect(self._load_failed)
        self._load_task = workers.start(task)

    def _load_failed(self, message: str) -> None:
        self.loading.setText(f"Cannot load generators: {message}")

    def _build_panels(self, rows: list[dict]) -> None:
        from studio.gui.data_panel import DataPanel
        from studio.gui.generate_panel import GeneratePanel
        from studio.gui.runs_panel import RunsPanel
        from studio.gui.train_panel import TrainPanel

        usable = [r for r in rows if r["status"] == "ok"]
        broken = [r for r in rows if r["status"] != "ok"]
        if not usable:
            self.loading.setText("No generator is installed. Reinstall aigc-studio.")
            return
        if self.session.generator not in {r["name"] for r in usable}:
            self.session.generator = usable[0]["name"]
        self.picker.blockSignals(True)
        for row in usable:
            self.picker.addItem(f"{row['name']} — {row['modality']} {row['version']}", row["name"])
        self.picker.setCurrentIndex([r["name"] for r in usable].index(self.session.generator))
        self.picker.blockSignals(False)
        self.picker.currentIndexChanged.connect(
            lambda i: self.session.set_generator(self.picker.itemData(i)))
        if broken:
            self.plugins_button.setText(f"Plugins… ({len(broken)} broken)")
            self.plugins_button.setStyleSheet("color: #c62828;")

        self.data_panel = DataPanel(self.session)
        self.train_panel = TrainPanel(self.session, self.data_panel)
        self.generate_panel = GeneratePanel(self.session)
        self.runs_panel = RunsPanel(self.session)
        self.tabs.clear()
        self.tabs.addTab(self.data_panel, "&Data")
        self.tabs.addTab(self.train_panel, "&Train")
        self.tabs.addTab(self.generate_panel, "&Generate")
        self.tabs.addTab(self.runs_panel, "&Runs")
        self.runs_panel.resume_requested.connect(self._resume)
        self.runs_panel.duplicate_requested.connect(self._duplicate)
        self.session.run_changed.connect(lambda _: self.tabs.setCurrentWidget(self.generate_panel))
        self.train_panel.run_started.connect(lambda path: self.statusBar().showMessage(f"training {path}"))
        self.train_panel.trainer.finished.connect(
            lambda code, status: self.statusBar().showMessage(f"training {status}"))
        generate = QAction("Generate", self)
        generate.setShortcut(QKeySequence("Ctrl+G"))
        generate.triggered.connect(self._generate_shortcut)
        self.addAction(generate)
        self.data_panel.run_check()
        self.statusBar().showMessage(f"runs folder: {self.session.runs_folder}")

    # -- actions
    def _generate_shortcut(self) -> None:
        self.tabs.setCurrentWidget(self.generate_panel)
        self.generate_panel.generate()

    def _resume(self, path: str) -> None:
        self.tabs.setCurrentWidget(self.train_panel)
        self.train_panel.resume_run(path)

    def _duplicate(self, doc: dict) -> None:
        self.train_panel.duplicate(doc)
        self.tabs.setCurrentWidget(self.train_panel)

    def show_plugins(self) -> None:
        PluginsDialog(self.session, self).exec()

    def show_settings(self) -> None:
        dialog = SettingsDialog(self.session, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            dialog.apply()

    def closeEvent(self, event) -> None:
        trainer = self.train_panel.trainer if self.train_panel else None
        if trainer is not None and trainer.running:
            choice = ask_on_close(self)
            if choice == "cancel":
                event.ignore()
                return
            if choice == "stop":
                trainer.stop()
                trainer.wait(120)
            else:  # it trains on by itself; the Runs tab finds it again next time
                trainer.detach()
        self.session.settings.geometry = bytes(self.saveGeometry().toBase64()).decode()
        self.session.settings.save()
        event.accept()


def main(argv: list[str] | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv if argv is None else argv)
    app.setApplicationName("AIGC Studio")
    session = Session()
    apply_theme(session.settings.theme)
    window = MainWindow(session)
    window.show()
    return app.exec()
