"""The main window: a generator picker, five panels (Data, Train, Generate, Runs, Compose),
menus.

One notion of the current run (the session's) runs through it: the title bar names it, Train
shows it, Generate samples from it, Ctrl+G generates from it. The window appears before torch
is imported: the picker is filled from the plugins' entry points at once, and the panels that
need a generator's code are built right after it is shown, from a background import.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import PySide6
from PySide6.QtCore import QByteArray, Qt, QTimer, QUrl, qVersion
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (QApplication, QComboBox, QDialog, QDialogButtonBox, QFormLayout,
                               QFrame, QHBoxLayout, QLabel, QLineEdit, QMainWindow, QMessageBox,
                               QPlainTextEdit, QPushButton, QTableWidget, QTableWidgetItem,
                               QTabWidget, QToolBar, QToolButton, QVBoxLayout, QWidget)

from studio import __version__
from studio.gui import theme, workers
from studio.gui.session import Session
from studio.gui.settings import LaunchGuard
from studio.registry import BUILTIN_DISTRIBUTION, CODE, LIGHT

README = Path(__file__).resolve().parents[2] / "README.md"
SAFE_MODE_NOTE = ("Safe mode: only the built-in generators are loaded, no plugins. Start "
                  "`studio` without --safe-mode to load them again.")
FIRST_STEPS = ("New here? Data: pick your files or use the demo data · Train: press Start · "
               "Generate: try the demo models (Ctrl+G)")
SHORTCUTS = [
    ("Ctrl+Enter", "Train: start training · Generate: generate · Compose: preview the ad"),
    ("Ctrl+.", "Stop: training if it runs, else a generation, else a Compose batch (in any tab)"),
    ("Ctrl+G", "Go to Generate and generate from the current run"),
    ("Ctrl+1 … Ctrl+5", "Show Data, Train, Generate, Runs, Compose"),
    ("Alt+D, Alt+T, Alt+G, Alt+R, Alt+C", "The same tabs by their underlined letter"),
    ("Return / Delete", "Runs table: open / delete the selected runs"),
    ("F1", "This list"),
    ("Ctrl+Q", "Quit"),
]


def _table(rows: list[tuple[str, str]], headers: list[str]) -> QTableWidget:
    table = QTableWidget(len(rows), len(headers))
    table.setHorizontalHeaderLabels(headers)
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(text))
    table.horizontalHeader().setStretchLastSection(True)
    table.verticalHeader().hide()
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.resizeColumnsToContents()
    return table


class PluginsDialog(QDialog):
    """Every registered generator with its status; a broken plugin's error, and below the
    table the details of the selected one: where in its code it failed, and the traceback."""

    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Plugins")
        self.resize(760, 480)
        self.rows = [e.info() for e in session.registry.entries()]
        self.table = QTableWidget(len(self.rows), 5)
        self.table.setHorizontalHeaderLabels(["name", "modality", "version", "status", "error / package"])
        for r, row in enumerate(self.rows):
            cells = [row["name"], row["modality"], row["version"], row["status"],
                     row["error"] or row["source"]]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                if row["status"] != "ok":
                    item.setForeground(Qt.GlobalColor.red)
                self.table.setItem(r, c, item)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.details.setPlaceholderText("Select a broken plugin to see where it failed.")
        self.table.currentCellChanged.connect(lambda row, *_: self._show_details(row))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        intro = ("Generators are found through the 'aigc_studio.generators' entry point. A "
                 "broken one is listed here and the rest keep working.")
        if session.registry.safe_mode:
            intro += " Safe mode: only the built-in generators are loaded."
        layout.addWidget(QLabel(intro, wordWrap=True))
        layout.addWidget(self.table, 2)
        layout.addWidget(QLabel("Details"))
        layout.addWidget(self.details, 1)
        layout.addWidget(buttons)
        broken = [r for r, row in enumerate(self.rows) if row["status"] != "ok"]
        if broken:
            self.table.setCurrentCell(broken[0], 0)

    def _show_details(self, index: int) -> None:
        if not 0 <= index < len(self.rows):
            self.details.setPlainText("")
            return
        row = self.rows[index]
        if row["status"] == "ok":
            self.details.setPlainText(f"{row['name']}: ok (package {row['source']})")
            return
        lines = [f"{row['name']} (package {row['source']}) is broken: {row['error']}"]
        if row["where"]:
            lines.append(f"at {row['where']}")
        if row["details"] and row["details"].strip() != (row["error"] or "").strip():
            lines += ["", row["details"].rstrip()]
        self.details.setPlainText("\n".join(lines))


def installed_version(distribution: str) -> str:
    """A package's version from its metadata, without importing it (torch takes seconds)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def component_versions(session: Session, load_plugins: bool) -> list[tuple[str, str]]:
    """What About lists: the studio, Python, the libraries, and every plugin. Plugins are
    imported only if `load_plugins` (once the window has loaded them anyway)."""
    rows = [("AIGC Studio", __version__),
            ("Python", f"{platform.python_version()} ({sys.executable})"),
            ("torch", installed_version("torch")),
            ("PySide6 / Qt", f"{PySide6.__version__} / Qt {qVersion()}"),  # its wheel's name varies
            ("pyqtgraph", installed_version("pyqtgraph")),
            ("numpy", installed_version("numpy"))]
    for entry in session.registry.entries():
        info = entry.info(load=load_plugins)
        package = f"{entry.distribution} {installed_version(entry.distribution)}" \
            if entry.distribution not in ("?", "(in-process)") else entry.distribution
        state = f"{info['modality']} {info['version']}" if info["status"] == "ok" else info["status"]
        if info["error"]:
            state += f": {info['error']}"
        rows.append((f"plugin '{entry.name}'", f"{state} · package {package}"))
    return rows


class AboutDialog(QDialog):
    def __init__(self, session: Session, load_plugins: bool, parent=None):
        super().__init__(parent)
        self.setWindowTitle("About AIGC Studio")
        self.resize(640, 360)
        self.versions = component_versions(session, load_plugins)
        text = QLabel("<b>AIGC Studio</b>: train, fine-tune, evaluate and sample generative "
                      "models on your own data. The same runs from the window and the "
                      "<tt>studio</tt> command line.")
        text.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(_table(self.versions, ["component", "version"]))
        layout.addWidget(buttons)


class ShortcutsDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(560, 340)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(_table(SHORTCUTS, ["keys", "what they do"]))
        layout.addWidget(buttons)


class SettingsDialog(QDialog):
    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.session = session
        self.runs_folder = QLineEdit(session.settings.runs_folder)
        self.runs_folder.setToolTip("Where new runs are created and listed")
        # Wide enough to read a whole runs folder path (it was cut to "np/hand/config/runs").
        self.runs_folder.setMinimumWidth(self.runs_folder.fontMetrics().horizontalAdvance("x" * 60))
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        self.device.setCurrentText(session.settings.default_device)
        self.theme = QComboBox()
        self.theme.addItems(list(theme.THEMES))
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
        before = theme.current()
        now = theme.apply_theme(s.theme)
        if now != before:  # charts and other hand-coloured parts take the new colours
            self.session.theme_changed.emit(now)
        self.session.runs_changed.emit()


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
    def __init__(self, session: Session | None = None, notice: str | None = None):
        """`notice`: a sentence to show once above the panels (e.g. why the settings were
        reset after a launch that crashed)."""
        super().__init__()
        self.session = session or Session()
        self.resize(1280, 820)
        self.setMinimumSize(900, 600)
        if self.session.settings.geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.session.settings.geometry.encode()))
        self.data_panel = self.train_panel = self.generate_panel = self.runs_panel = None
        self.compose_panel = None
        self.training_progress = ""  # e.g. "step 45/200 (22%)" while the Train panel trains
        self._build_chrome()
        # Now, before torch: names, and modality and version from the generators' light
        # declarations (a plugin without them shows its name until its code is loaded).
        self._fill_picker([e.info(load=LIGHT) for e in self.session.registry.entries()])
        self.tabs = QTabWidget()
        self.loading = QLabel("Loading generators…", alignment=Qt.AlignmentFlag.AlignCenter)
        self.tabs.addTab(self.loading, "…")
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self._build_notice_bar())
        column.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        notices = [text for text in (notice, self.session.data_note) if text]
        if self.session.registry.safe_mode:
            notices.append(SAFE_MODE_NOTE)
        if not notices and not self.session.has_own_runs():
            notices.append(FIRST_STEPS)
        self.show_notice("\n".join(notices))
        self.session.generator_changed.connect(self._select_in_picker)
        self.session.run_changed.connect(self._run_changed)
        self.session.runs_changed.connect(self._update_title)
        self._update_title()
        self.statusBar().showMessage("starting…")
        QTimer.singleShot(0, self._load_generator)

    # -- menus, toolbar, notices
    def _build_chrome(self) -> None:
        toolbar = QToolBar("Generator")
        toolbar.setMovable(False)
        self.addToolBar(toolbar)
        toolbar.addWidget(QLabel(" Generator: "))
        self.picker = QComboBox()
        self.picker.setToolTip("The generator every panel works with")
        self.picker.setMinimumWidth(260)
        self.picker.currentIndexChanged.connect(self._picker_changed)
        toolbar.addWidget(self.picker)
        self.plugins_button = QPushButton("Plugins…")
        self.plugins_button.setToolTip("All generators, and the error of any broken plugin")
        toolbar.addWidget(self.plugins_button)
        self.plugins_button.clicked.connect(self.show_plugins)

        file_menu = self.menuBar().addMenu("&File")
        self.open_folder_action = self._action(file_menu, "&Open run folder", self.open_run_folder)
        self.open_folder_action.setToolTip("Show the current run's folder in the file manager")
        self._action(file_menu, "&Settings…", self.show_settings)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", self.show_shortcuts, QKeySequence("F1"))
        self.readme_action = self._action(help_menu, "&README", self.open_readme)
        self.readme_action.setEnabled(README.exists())  # not shipped with every install
        self._action(help_menu, "&Plugins…", self.show_plugins)
        self.safe_mode_action = self._action(help_menu, "Restart in &safe mode (built-in "
                                             "generators only)", self.restart_in_safe_mode)
        self.safe_mode_action.setEnabled(not self.session.registry.safe_mode)
        self._action(help_menu, "&About AIGC Studio", self.show_about)

        # Window-wide keys: they act from any tab, so they live here, not in a panel.
        self.stop_action = self._action(None, "Stop", self.stop_shortcut, QKeySequence("Ctrl+."))
        self.generate_action = self._action(None, "Generate", self.generate_shortcut,
                                            QKeySequence("Ctrl+G"))
        for number in range(1, 6):
            self._action(None, f"Tab {number}", lambda _=False, i=number - 1: self._show_tab(i),
                         QKeySequence(f"Ctrl+{number}"))

    def _action(self, menu, text: str, slot, keys=None) -> QAction:
        action = QAction(text, self)
        if keys is not None:
            action.setShortcut(keys)
        action.triggered.connect(slot)
        (menu or self).addAction(action)
        return action

    def _build_notice_bar(self) -> QWidget:
        """One line above the panels for what to do first, or what happened at start."""
        self.notice_bar = QFrame()
        self.notice_bar.setFrameShape(QFrame.Shape.StyledPanel)
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        dismiss = QToolButton()
        dismiss.setText("×")
        dismiss.setToolTip("Hide this note")
        dismiss.clicked.connect(lambda: self.show_notice(""))
        row = QHBoxLayout(self.notice_bar)
        row.setContentsMargins(8, 2, 2, 2)
        row.addWidget(self.notice, 1)
        row.addWidget(dismiss)
        return self.notice_bar

    def show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice_bar.setVisible(bool(text))

    # -- the generator picker
    def _fill_picker(self, rows: list[dict]) -> None:
        self.picker.blockSignals(True)
        self.picker.clear()
        for row in rows:
            known = row["status"] == "ok"
            self.picker.addItem(f"{row['name']} — {row['modality']} {row['version']}" if known
                                else row["name"], row["name"])
        self.picker.blockSignals(False)
        self._select_in_picker(self.session.generator)

    def _select_in_picker(self, name: str) -> None:
        """Show `name` in the picker (e.g. after a run of another generator was opened)."""
        index = self.picker.findData(name)
        if index >= 0 and index != self.picker.currentIndex():
            self.picker.blockSignals(True)
            self.picker.setCurrentIndex(index)
            self.picker.blockSignals(False)

    def _picker_changed(self, index: int) -> None:
        name = self.picker.itemData(index)
        if not name or name == self.session.generator:
            return
        problem = self.train_panel is not None and self._panels_problem(name)
        if problem:  # keep the generator that works; say why this one cannot be used
            self._select_in_picker(self.session.generator)
            self._tell(f"'{name}' cannot be used: {problem} Plugins… shows the details; "
                       f"'{self.session.generator}' stays chosen.")
            return
        self.session.set_generator(name)

    # -- loading
    def _load_generator(self) -> None:
        """Import the generators off the GUI thread, then build the panels."""
        def describe(ctx, session):
            # Importing their code here (torch too) keeps the GUI thread free; the registry's
            # guard makes a plugin that fails a "broken" row instead of an error.
            return [e.info(load=CODE) for e in session.registry.entries()]

        task = workers.Task(describe, self.session)
        task.signals.done.connect(self._build_panels)
        task.signals.failed.connect(self._load_failed)
        self._load_task = workers.start(task)

    def _load_failed(self, message: str) -> None:
        self.loading.setText(f"Cannot load generators: {message}\nStart with `studio --safe-mode` "
                             f"to load the built-in generators only.")

    def _panels_problem(self, name: str) -> str | None:
        """Why the panels cannot be built for generator `name` (None: they can): it does not
        load, or a form cannot be made from its Config or SampleConfig."""
        from studio.errors import StudioError
        from studio.gui.config_form import ConfigForm
        try:
            gen_cls = self.session.registry.get(name)
            for config_cls in (gen_cls.Config, gen_cls.SampleConfig):
                ConfigForm(config_cls).deleteLater()
        except StudioError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - a plugin's config the form cannot show
            return f"its settings cannot be shown as a form ({type(exc).__name__}: {exc})."
        return None

    def _fallback(self, usable: list[dict]) -> str:
        """The generator to use when the chosen one cannot be: the first built-in that
        works, else the first that works."""
        builtin = [r["name"] for r in usable if r["source"] == BUILTIN_DISTRIBUTION]
        return (builtin or [r["name"] for r in usable])[0]

    def _tell(self, text: str) -> None:
        """What the window did on its own and why: above the panels and in the status bar."""
        self.show_notice(text)
        self.statusBar().showMessage(text, 15_000)

    def _build_panels(self, rows: list[dict]) -> None:
        usable = [r for r in rows if r["status"] == "ok"]
        broken = [r for r in rows if r["status"] != "ok"]
        if not usable:
            self.picker.clear()
            self.loading.setText("No generator is installed. Reinstall aigc-studio.")
            return
        if broken:
            self.plugins_button.setText(f"Plugins… ({len(broken)} broken)")
            self.plugins_button.setStyleSheet("color: #c62828;")
        chosen, note = self.session.generator, None
        problem = (f"'{chosen}' is not installed." if chosen not in {r["name"] for r in rows}
                   else self._panels_problem(chosen))
        if problem:
            usable = [r for r in usable if r["name"] != chosen]
            if not usable:
                self.loading.setText(f"No generator can be used: {problem}")
                return
            self.session.generator = self._fallback(usable)
            note = (f"The generator chosen last time cannot be used: {problem} Using "
                    f"'{self.session.generator}' instead; Plugins… shows the details.")
        self._fill_picker(usable)  # broken ones leave the picker; Plugins… lists them
        try:
            self._make_panels()
        except Exception as exc:  # noqa: BLE001 - last resort: a built-in that works instead
            failed = self.session.generator
            others = [r for r in usable if r["name"] != failed]
            if not others:
                self.loading.setText(f"Cannot build the panels: {type(exc).__name__}: {exc}")
                self.tabs.clear()
                self.tabs.addTab(self.loading, "…")
                return
            self.session.generator = self._fallback(others)
            note = (f"The panels for '{failed}' cannot be built ({type(exc).__name__}: {exc}). "
                    f"Using '{self.session.generator}' instead.")
            self._fill_picker(others)
            self._make_panels()
        if note:
            self._tell(note)

    def _make_panels(self) -> None:
        from studio.gui.compose_panel import ComposePanel
        from studio.gui.data_panel import DataPanel
        from studio.gui.generate_panel import GeneratePanel
        from studio.gui.runs_panel import RunsPanel
        from studio.gui.train_panel import TrainPanel

        self.data_panel = self.train_panel = self.generate_panel = self.runs_panel = None
        self.compose_panel = None
        data_panel = DataPanel(self.session)
        train_panel = TrainPanel(self.session, data_panel)
        generate_panel = GeneratePanel(self.session)
        runs_panel = RunsPanel(self.session)
        # Compose uses runs of every generator at once: it does not follow the picker.
        compose_panel = ComposePanel(self.session)
        self.data_panel, self.train_panel = data_panel, train_panel
        self.generate_panel, self.runs_panel = generate_panel, runs_panel
        self.compose_panel = compose_panel
        self.tabs.clear()
        self.tabs.addTab(self.data_panel, "&Data")
        self.tabs.addTab(self.train_panel, "&Train")
        self.tabs.addTab(self.generate_panel, "&Generate")
        self.tabs.addTab(self.runs_panel, "&Runs")
        self.tabs.addTab(self.compose_panel, "&Compose")
        self.runs_panel.resume_requested.connect(self._resume)
        self.runs_panel.duplicate_requested.connect(self._duplicate)
        self.runs_panel.fine_tune_requested.connect(self._fine_tune)
        self.train_panel.run_started.connect(self._training_started)
        self.train_panel.progress_changed.connect(self._training_progress)
        self.train_panel.trainer.finished.connect(
            lambda code, status: self.statusBar().showMessage(f"training {status}"))
        # The current run at start: the newest run of the generator, or its demo run.
        self.session.open_run(self.session.current_run or self.session.newest_run(self.session.generator))
        if self.data_panel.source() != self.session.data_source:  # remembered from last time
            self.data_panel.set_source(self.session.data_source)
        else:
            self.data_panel.run_check()
        self.statusBar().showMessage(f"runs folder: {self.session.runs_folder}")

    # -- the current run
    def _run_changed(self, path: str) -> None:
        # Runs › Open shows the run where it can be looked at: Train (charts, previews); the
        # panels follow the session's current run by themselves.
        if path and self.runs_panel is not None and self.tabs.currentWidget() is self.runs_panel:
            self.tabs.setCurrentWidget(self.train_panel)
        self._update_title()

    def _training_started(self, path: str) -> None:
        self.statusBar().showMessage(f"training {path}")
        if self.notice.text() == FIRST_STEPS:
            self.show_notice("")

    def _training_progress(self, text: str) -> None:
        self.training_progress = text
        self._update_title()

    def _update_title(self) -> None:
        parts = ["AIGC Studio"]
        if self.session.current_run:
            parts.append(self.session.run_title(self.session.current_run))
        if self.training_progress:
            parts.append(f"training {self.training_progress}")
        self.setWindowTitle(" — ".join(parts))
        self.open_folder_action.setEnabled(bool(self.session.current_run)
                                           and Path(self.session.current_run).is_dir())

    # -- actions
    def _show_tab(self, index: int) -> None:
        if self.train_panel is not None:
            self.tabs.setCurrentIndex(index)

    def generate_shortcut(self) -> None:
        """Ctrl+G: Generate, from the current run (never a run of another generator)."""
        if self.generate_panel is None:
            return
        self.tabs.setCurrentWidget(self.generate_panel)
        run = self.session.current_run
        if not run:
            self.statusBar().showMessage(f"No run of '{self.session.generator}' yet: train one "
                                         f"in Train first.")
            return
        if self.generate_panel.selected_run() != run:
            self.generate_panel.select_run(run)
        if not self.generate_panel.generate():
            self.statusBar().showMessage(f"Cannot generate now: "
                                         f"{self.generate_panel.problem() or 'already generating'}")

    def stop_shortcut(self) -> None:
        """Ctrl+.: stop training if it runs, else a generation that runs, else a Compose batch
        (from any tab)."""
        if self.train_panel is None:
            return
        if self.train_panel.trainer.running:
            self.train_panel.stop()
        elif self.generate_panel.busy:
            self.generate_panel.stop()
        elif self.compose_panel.batch_running:
            self.compose_panel.stop_batch()

    def _resume(self, path: str) -> None:
        self.tabs.setCurrentWidget(self.train_panel)
        self.train_panel.resume_run(path)

    def _duplicate(self, doc: dict) -> None:
        self.train_panel.duplicate(doc)
        self.tabs.setCurrentWidget(self.train_panel)

    def _fine_tune(self, path: str) -> None:
        self.train_panel.fine_tune_from(path)
        self.tabs.setCurrentWidget(self.train_panel)

    def open_run_folder(self) -> None:
        if self.session.current_run:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(self.session.current_run).resolve())))

    def open_readme(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(README)))

    def show_plugins(self) -> None:
        PluginsDialog(self.session, self).exec()

    def restart_in_safe_mode(self) -> None:
        """Close (asking first if training runs), then open again with the built-ins only."""
        if self.close():
            subprocess.Popen([sys.executable, "-m", "studio", "--safe-mode", "gui"])

    def show_about(self) -> None:
        # Plugins are imported (torch) only once the panels have loaded them anyway.
        AboutDialog(self.session, load_plugins=self.train_panel is not None, parent=self).exec()

    def show_shortcuts(self) -> None:
        ShortcutsDialog(self).exec()

    def show_settings(self) -> None:
        dialog = SettingsDialog(self.session, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            dialog.apply()

    def closeEvent(self, event) -> None:
        if self.compose_panel is not None and not self.compose_panel.may_discard():
            event.ignore()  # an unsaved recipe, and the user chose Cancel
            return
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
        if self.runs_panel is not None:
            self.runs_panel.stop_servers()  # no server outlives the window that started it
        if self.compose_panel is not None:
            self.compose_panel.stop_batch()  # it ends after the ad it is making
        self.session.settings.geometry = bytes(self.saveGeometry().toBase64()).decode()
        self.session.settings.save()
        event.accept()


def open_window(guard: LaunchGuard) -> MainWindow:
    """The window as `studio` opens it: a launch that crashed last time resets the look first,
    then the theme is applied and the window shown."""
    notice = guard.begin()
    session = Session()
    theme.apply_theme(session.settings.theme)
    window = MainWindow(session, notice=notice)
    window.show()
    return window


def main(argv: list[str] | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv if argv is None else argv)
    app.setApplicationName("AIGC Studio")
    guard = LaunchGuard()
    window = open_window(guard)
    try:
        return app.exec()
    finally:
        window.deleteLater()
        guard.end()  # reached only if Qt returned: a crash leaves the marker for next time
