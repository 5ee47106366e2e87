"""Drive the real window through its panels and save PNGs of each (run via make_screenshots.sh).

It uses a fresh settings folder and runs folder, the built-in demo data and demo models, and a
short real training run so the charts and previews have something to show. Every panel is
shot at 1280x800 and at the window's minimum size, 900x600, in the light and the dark theme:
docs/screenshot-<panel>-<width>x<height>-<theme>.png. Then the video generator, in both themes:
its Data panel (the built-in bouncing shapes, previewed as animations) and Train panel (the
demo model's animated previews) at 1280x800, and Generate (the demo model's clips in players,
playing) at both sizes: docs/screenshot-<panel>-video-<width>x<height>-<theme>.png.
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

from studio import api  # noqa: E402
from studio.gui import theme  # noqa: E402
from studio.gui.session import Session  # noqa: E402
from studio.gui.settings import Settings  # noqa: E402
from studio.gui.window import MainWindow  # noqa: E402

SIZES = [(1280, 800), (900, 600)]
THEMES = ["light", "dark"]
# Clips the Generate shot shows at each window width: as many players as fit side by side with
# their whole control row (play, scrubber, frame counter, loop, fps), about 270 pixels each.
VIDEO_CLIPS = {1280: 2, 900: 1}


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


def shoot_every_theme_and_size(app, window, session, panels, suffix, before_shot=None,
                               sizes=SIZES):
    """Each panel in every theme and size: screenshot-<panel><suffix>-<w>x<h>-<theme>.png.
    `before_shot(name, width)`, if given, readies a panel for the size it is shot at."""
    for theme_name in THEMES:
        theme.apply_theme(theme_name)
        session.theme_changed.emit(theme_name)
        for width, height in sizes:
            window.resize(width, height)
            for name, panel in panels:
                window.tabs.setCurrentWidget(panel)
                if name == "train":
                    panel.charts.redraw()
                if before_shot is not None:
                    before_shot(name, width)
                shoot(app, window, f"{name}{suffix}-{width}x{height}-{theme_name}")


def open_window():
    """The real window on a fresh runs folder, light theme, 1280x800: (app, session, window)."""
    OUT.mkdir(parents=True, exist_ok=True)
    app = QApplication(sys.argv)
    session = Session(Settings(runs_folder=str(work / "runs"), last_generator="text"))
    theme.apply_theme("light")
    window = MainWindow(session)
    window.resize(*SIZES[0])
    window.show()
    return app, session, window


def main():
    app, session, window = open_window()
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
    shoot_every_theme_and_size(app, window, session, panels, suffix="")

    # The video generator: opening its demo run switches the picker, Data checks the built-in
    # clips and Train shows the demo run's previews; Generate plays the demo model's clips.
    video_demo = next(str(p) for p in api.demo_runs() if session.run_generator(str(p)) == "video")
    theme.apply_theme("light")
    session.theme_changed.emit("light")
    session.open_run(video_demo)
    data = window.data_panel
    wait(app, lambda: session.generator == "video" and data.report is not None
         and data.report.preview and data.report.preview[0].kind == "video")
    window.tabs.setCurrentWidget(generate)
    wait(app, lambda: generate.selected_run() is not None and not generate.busy
         and Path(generate.selected_run()).resolve() == Path(video_demo).resolve())
    clips_entry = {}  # clips -> the history entry with that many
    for clips in sorted(set(VIDEO_CLIPS.values())):
        generate.count_spin.setValue(clips)
        if not generate.generate():
            raise RuntimeError(f"cannot generate from the video demo: {generate.problem()}")
        wait(app, lambda: not generate.busy, timeout=180)
        clips_entry[clips] = generate.selected_entry()

    def show_clips_for(name, width):
        if name == "generate":  # the output with as many clips as fit, playing
            entry = clips_entry[VIDEO_CLIPS[width]]
            row = len(generate.history) - 1 - generate.history.index(entry)  # newest first
            generate.history_list.setCurrentRow(row)
            generate.count_spin.setValue(VIDEO_CLIPS[width])  # the form says how many are shown

    # At 900x600 only Generate: Data's preview gets a strip too short for players (their
    # controls squeezed, a scroll bar) and Train's previews sit below the fold (the panel scrolls).
    video_panels = [("data", data), ("train", train), ("generate", generate)]
    shoot_every_theme_and_size(app, window, session, video_panels, "-video", show_clips_for,
                               sizes=[(1280, 800)])
    shoot_every_theme_and_size(app, window, session, [("generate", generate)], "-video",
                               show_clips_for, sizes=[(900, 600)])
    window.close()


if __name__ == "__main__":
    main()
