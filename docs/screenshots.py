"""Drive the real window through its panels and save PNGs of each (run via make_screenshots.sh).

It uses a fresh settings folder and runs folder, the built-in demo data and demo models, and a
short real training run so the charts and previews have something to show. Every panel is
shot at 1280x800 and at the window's minimum size, 900x600, in the light and the dark theme:
docs/screenshot-<panel>-<width>x<height>-<theme>.png.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
work = Path(tempfile.mkdtemp(prefix="studio-shots-"))
os.environ["STUDIO_CONFIG_DIR"] = str(work / "config")

from PySide6.QtWidgets import QApplication  # noqa: E402

from studio.gui import theme  # noqa: E402
from studio.gui.session import Session  # noqa: E402
from studio.gui.settings import Settings  # noqa: E402
from studio.gui.window import MainWindow  # noqa: E402

SIZES = [(1280, 800), (900, 600)]
THEMES = ["light", "dark"]


def wait(app, condition, timeout=300.0):
    deadline = time.monotonic() + timeout
    while not condition():
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not get there in time")


def settle(app, seconds=0.4):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)


def shoot(app, window, name):
    settle(app)
    path = OUT / f"screenshot-{name}.png"
    screen = app.primaryScreen()
    pixmap = screen.grabWindow(window.winId()) if screen else window.grab()
    if pixmap.isNull():
        pixmap = window.grab()
    pixmap.save(str(path))
    print(f"saved {path} ({pixmap.width()}x{pixmap.height()})")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    app = QApplication(sys.argv)
    session = Session(Settings(runs_folder=str(work / "runs"), last_generator="text"))
    theme.apply_theme("light")
    window = MainWindow(session)
    window.resize(*SIZES[0])
    window.show()
    wait(app, lambda: window.train_panel is not None and window.data_panel.report is not None)

    # One short real run, so Train has charts and previews and Runs has a row of its own.
    train = window.train_panel
    train.train_form.set_values({"max_steps": "600", "log_every": "10"})
    train.device.setCurrentText("cpu")
    window.tabs.setCurrentWidget(train)
    train.start()
    wait(app, lambda: not train.trainer.running)
    settle(app, 2)

    generate = window.generate_panel
    window.tabs.setCurrentWidget(generate)
    generate.prompt_edit.setPlainText("Return the")
    generate.generate()
    wait(app, lambda: not generate.busy, timeout=120)

    panels = [("data", window.data_panel), ("train", train), ("generate", generate),
              ("runs", window.runs_panel)]
    for theme_name in THEMES:
        theme.apply_theme(theme_name)
        session.theme_changed.emit(theme_name)
        for width, height in SIZES:
            window.resize(width, height)
            for name, panel in panels:
                window.tabs.setCurrentWidget(panel)
                if name == "train":
                    train.charts.redraw()
                shoot(app, window, f"{name}-{width}x{height}-{theme_name}")
    window.close()


if __name__ == "__main__":
    main()
