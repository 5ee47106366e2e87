"""Screenshots of the Compose tab on the real window (run under Xvfb, as make_screenshots.sh
does): the example recipe (examples/compose/ad.json) on the demo runs with its product sheet,
one ad previewed, in both themes: docs/screenshot-compose-<theme>.png; and the batch of the
whole sheet with its thumbnails: docs/screenshot-compose-batch-<theme>.png.

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python docs/compose_screenshot.py docs
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

# Importing it sets up as it does: a fresh settings folder and runs folder, the output folder.
from screenshots import OUT, open_window, settle, shoot, wait, work

from studio.gui import theme  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "compose"


def main():
    app, session, window = open_window()
    wait(app, lambda: window.compose_panel is not None)
    compose = window.compose_panel
    window.tabs.setCurrentWidget(compose)
    compose._open_document(EXAMPLES / "ad.json")
    compose.load_rows(EXAMPLES / "products.csv")
    if not compose.preview():
        raise RuntimeError(f"cannot preview the example recipe: {compose.problem()}")
    wait(app, lambda: compose.shown is not None and not compose.busy, timeout=300)
    compose.editors["headline"].lock_box.setChecked(True)  # as a user keeping a headline
    for name in ("light", "dark"):
        theme.apply_theme(name)
        session.theme_changed.emit(name)
        shoot(app, window, f"compose-{name}")

    compose.out_edit.setText(str(work / "ads"))
    compose.run_batch()
    wait(app, lambda: not compose.batch_running, timeout=600)
    marked = [row for row in range(compose.results_list.count())  # an ad to review, if any
              if compose.results_list.item(row).data(Qt.ItemDataRole.UserRole)["reasons"]]
    compose.results_list.setCurrentRow((marked or [0])[0])
    for name in ("light", "dark"):
        theme.apply_theme(name)
        session.theme_changed.emit(name)
        settle(app, 1)
        shoot(app, window, f"compose-batch-{name}")
    print(f"saved in {OUT}")
    window.close()


if __name__ == "__main__":
    main()
