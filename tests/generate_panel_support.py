"""What the Generate tab's tests share: its panel on a runs folder, the run picked by name, and
the messages it would show in a dialog."""

import shutil
from pathlib import Path

import pytest

from studio.export import HISTORY_FOLDER
from studio.gui import generate_panel
from studio.gui.generate_panel import GeneratePanel
from studio.gui.session import Session
from studio.gui.settings import Settings


@pytest.fixture
def errors(monkeypatch):
    """Messages the panel would show in a dialog."""
    shown = []
    monkeypatch.setattr(generate_panel, "show_error", lambda parent, message: shown.append(message))
    return shown


def make_panel(qtbot, runs_folder, keep_history=False):
    if not keep_history:  # a module's runs folder is shared: each test starts its own history
        shutil.rmtree(runs_folder / HISTORY_FOLDER, ignore_errors=True)
    panel = GeneratePanel(Session(Settings(runs_folder=str(runs_folder), default_device="cpu")))
    qtbot.addWidget(panel)
    return panel


def pick(panel, run_name):
    names = [Path(r["run"]).name for r in panel.rows]
    panel.run_combo.setCurrentIndex(names.index(run_name))
