"""Screenshots of Runs › Serve… on the real window (run under Xvfb, as make_screenshots.sh
does): the demo text and image runs served, the dialog with its URL, key and examples, in both
themes: docs/screenshot-serve-<theme>.png.

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python docs/serve_screenshot.py docs
"""

from __future__ import annotations


# Importing it sets up as it does: a fresh settings folder and runs folder, the output folder.
from screenshots import OUT, open_window, settle, wait

from studio import api  # noqa: E402
from studio.gui import theme  # noqa: E402
from studio.gui.serve_dialog import ServeDialog  # noqa: E402


def main():
    app, session, window = open_window()
    window.tabs.setCurrentWidget(window.runs_panel)
    demos = [str(p) for p in api.demo_runs() if session.run_generator(str(p)) in ("text", "image")]
    dialog = ServeDialog(sorted(demos, key=lambda p: session.run_generator(p) != "text"), session,
                         window)
    dialog.port_spin.setValue(0)  # any free port: the shot must not depend on 8000 being free
    dialog.show()
    dialog.start()
    wait(app, lambda: dialog.url is not None, timeout=300)
    for name in ("light", "dark"):
        theme.apply_theme(name)
        session.theme_changed.emit(name)
        settle(app, 1)
        path = OUT / f"screenshot-serve-{name}.png"
        dialog.grab().save(str(path))
        print(f"saved {path}")
    dialog.stop()
    wait(app, lambda: not dialog.running, timeout=60)
    window.close()


if __name__ == "__main__":
    main()
