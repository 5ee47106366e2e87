"""Drive the real window through its panels and save a PNG of each (run via make_screenshots.sh).

It uses a fresh settings folder and runs folder, the built-in demo data and demo model, and a
short real training run so the charts and previews have something to show.
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

from studio.gui.session import Session  # noqa: E402
from studio.gui.settings import Settings  # noqa: E402
from studio.gui.window import MainWindow  # noqa: E402


def wait(app, condition, timeout=300.0):
    deadline = time.monotonic() + timeout
    while not condition():
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not get there in time")


def shoot(app, window, name):
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    path = OUT / f"screenshot-{name}.png"
    screen = app.primaryScreen()
    pixmap = screen.grabWindow(window.winId()) if screen else window.grab()
    if pixmap.isNull():
        pixmap = window.grab()
    pixmap.save(str(path))
    print(f"saved {path}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    app = QApplication(sys.argv)
    window = MainWindow(Session(Settings(runs_folder=str(work / "runs"), last_generator="text")))
    window.resize(1360, 860)
    window.show()
    wait(app, lambda: window.train_panel is not None and window.data_panel.report is not None)
    shoot(app, window, "data")

    train = window.train_panel
    train.train_form.set_values({"max_steps": "600", "eval_every": "100", "preview_every": "100",
                                 "log_every": "10"})
    train.device.setCurrentText("cpu")
    window.tabs.setCurrentWidget(train)
    train.start()
    wait(app, lambda: not train.trainer.running)
    train.charts.redraw()
    shoot(app, window, "train")

    generate = window.generate_panel
    window.tabs.setCurrentWidget(generate)
    generate.generate()
    wait(app, lambda: not getattr(generate, "busy", False), timeout=120)
    time.sleep(1)
    shoot(app, window, "generate")

    window.tabs.setCurrentWidget(window.runs_panel)
    window.session.runs_changed.emit()
    shoot(app, window, "runs")
    window.close()


if __name__ == "__main__":
    main()
