"""The data panel, driven as a user would (offscreen Qt): typing, choosing and checking data, and
the report it shows; and core messages rewritten into the window's words (gui/messages.py)."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from conftest import ROOT
from studio import api
from studio.contract import DataReport
from studio.errors import StudioError
from studio.gui import data_panel
from studio.gui.data_panel import DataPanel, summary_lines, usable_headline
from studio.gui.messages import for_window
from studio.gui.session import Session
from studio.gui.settings import Settings
from studio.runstore import RunDir


@pytest.fixture
def session(tmp_path):
    return Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="text"))


def make_panel(qtbot, session):
    panel = DataPanel(session)
    qtbot.addWidget(panel)
    return panel


def wait_for_check(qtbot, panel):
    qtbot.waitUntil(lambda: panel.report is not None or (panel.problem is not None
                                                          and "checking" not in panel.status.text()),
                    timeout=60_000)


# --- choosing the data --------------------------------------------------------------------------------

def test_typing_a_path_selects_my_files_and_enter_checks_that_path(qtbot, session, corpus):
    panel = make_panel(qtbot, session)
    assert panel.builtin.isChecked()
    qtbot.keyClicks(panel.path, str(corpus))
    assert panel.own.isChecked() and not panel.builtin.isChecked()
    assert panel.task is None  # nothing is checked at every key
    assert "press Enter" in panel.status.text()

    qtbot.keyClick(panel.path, Qt.Key.Key_Return)
    wait_for_check(qtbot, panel)
    assert panel.problem is None and panel.report.source == str(corpus)
    assert panel.source() == session.data_source == str(corpus)


def test_check_data_checks_the_typed_path_not_the_built_in_data(qtbot, session, corpus):
    panel = make_panel(qtbot, session)
    qtbot.keyClicks(panel.path, str(corpus))
    panel.check.click()
    wait_for_check(qtbot, panel)
    assert panel.report.source == str(corpus)
    assert session.data_source == str(corpus)


def test_a_typed_path_that_does_not_exist_is_said_inline_without_a_check(qtbot, session, tmp_path):
    panel = make_panel(qtbot, session)
    missing = tmp_path / "no-such-corpus.txt"
    qtbot.keyClicks(panel.path, str(missing))
    qtbot.keyClick(panel.path, Qt.Key.Key_Return)
    assert panel.task is None and panel.report is None
    assert f"no file or folder at {missing}" in panel.problem
    assert panel.status.text().startswith("✗") and "File…" in panel.status.text()
    assert session.data_source is None  # the missing path did not become the data


def test_choosing_a_file_still_selects_and_checks_it(qtbot, session, corpus, monkeypatch):
    panel = make_panel(qtbot, session)
    monkeypatch.setattr(data_panel.QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(corpus), "")))
    panel.pick_file.click()
    assert panel.own.isChecked() and panel.path.text() == str(corpus)
    wait_for_check(qtbot, panel)
    assert panel.report.source == str(corpus) and session.data_source == str(corpus)


def test_the_panel_starts_on_the_data_chosen_last_time(qtbot, session, corpus):
    session.data_source = str(corpus)  # as the window restores it from the settings
    panel = make_panel(qtbot, session)
    assert panel.own.isChecked() and panel.path.text() == str(corpus)
    assert panel.source() == str(corpus)


def test_a_failed_check_still_lists_what_was_skipped_and_why(qtbot, session, tmp_path):
    folder = tmp_path / "pictures"
    write_images(folder, {"cats": 2})
    panel = make_panel(qtbot, session)  # the text generator: no PNG is text
    panel.set_source(str(folder))
    wait_for_check(qtbot, panel)
    assert panel.report is None and "no usable text" in panel.problem
    assert panel.status.text().startswith("✗")
    skipped = {panel.skipped.item(r, 0).text(): panel.skipped.item(r, 1).text()
               for r in range(panel.skipped.rowCount())}
    assert set(skipped) == {"0.png", "1.png"}
    assert all("not a text file" in why for why in skipped.values())


# --- the report in words --------------------------------------------------------------------------------

def write_images(folder: Path, classes: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for name, n in classes.items():
        (folder / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / name / f"{i}.png")


def test_an_image_report_counts_images_and_lists_classes_without_python_syntax(qtbot, tmp_path):
    folder = tmp_path / "pictures"
    write_images(folder, {"circles": 6, "squares": 4})
    (folder / "circles" / "notes.txt").write_text("not an image")
    session = Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator="image"))
    panel = make_panel(qtbot, session)
    panel.set_source(str(folder))
    wait_for_check(qtbot, panel)
    assert panel.problem is None, panel.problem
    assert panel.status.text() == "✓ usable: 10 images used, 1 skipped"
    summary = panel.summary.text()
    assert "images per class: circles 6 · squares 4" in summary
    assert "classes: circles, squares" in summary
    assert not re.search(r"[{}\[\]]|'", summary), summary  # no dict or list syntax
    assert not any(line.endswith(": 0") for line in summary.splitlines())  # "held out images: 0"
    assert "dataset key" not in summary  # an internal cache key
    assert panel.skipped.item(0, 0).text() == "notes.txt"


def test_summary_values_read_as_words_and_zero_entries_are_left_out():
    summary = {"images": 4000, "resolution": 32, "classes": ["circle", "square"],
               "class_counts": {"circle": 2000, "square": 2000}, "held_out_images": 0,
               "dataset_key": "ab12", "mean": 0.12345, "notes": ["scaled to 32 px"]}
    assert summary_lines(summary) == [
        "images: 4,000", "resolution: 32", "classes: circle, square",
        "images per class: circle 2,000 · square 2,000", "mean: 0.1235", "note: scaled to 32 px"]
    clips = summary_lines({"clips": 40, "class_counts": {"0": 22, "1": 18}})
    assert clips == ["clips: 40", "clips per class: 0 22 · 1 18"]  # a video's data counts clips
    many = summary_lines({"classes": [f"c{i}" for i in range(20)]})[0]
    assert many.endswith("c11, … (20 in all)")


def test_the_headline_counts_in_the_datas_own_unit():
    images = DataReport(source="shapes", used=["built-in shapes"], summary={"images": 4000})
    assert usable_headline(images) == "4,000 images used, 0 skipped"
    text = DataReport(source="a", used=["a.txt"], skipped=[("b.bin", "binary")],
                      summary={"characters": 1, "tokens": 1})
    assert usable_headline(text) == "1 token used, 1 skipped"
    files = DataReport(source="x", used=["a", "b"], summary={})
    assert usable_headline(files) == "2 files used, 0 skipped"


# --- core messages in the window's words ----------------------------------------------------------------

CLI_ADVICE = re.compile(r"--(?!nproc_per_node)[a-z]|`studio")  # torchrun's flag: the CLI only


def core_messages() -> list[tuple[str, str]]:
    """(file, message) for every StudioError raised in studio/ and generators/ that gives CLI
    advice; formatted values are filled in with a run path."""
    def render(node) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.JoinedStr):
            return "".join(v.value if isinstance(v, ast.Constant) else "runs/a" for v in node.values)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return render(node.left) + render(node.right)
        return "runs/a"

    # Terminal only: the CLI, `studio plugin new` and the conformance suite (pytest's output).
    terminal = {"cli.py", "plugin_new.py", "testing.py", "pytest_plugin.py"}
    files = [p for p in (ROOT / "studio").glob("*.py") if p.name not in terminal]
    files += list((ROOT / "generators").rglob("*.py"))
    found = []
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and node.args
                    and getattr(node.func, "id", getattr(node.func, "attr", "")).endswith(("Error", "Diverged"))):
                message = render(node.args[0])
                if CLI_ADVICE.search(message):
                    found.append((file.name, message))
    return found


def test_no_core_message_keeps_command_line_advice_in_the_window():
    messages = core_messages()
    assert len(messages) >= 15  # the scan finds them (it would pass vacuously otherwise)
    for file, message in messages:
        assert not CLI_ADVICE.search(for_window(message)), (file, message, for_window(message))


def test_real_core_messages_read_as_window_advice(tmp_path, corpus):
    with pytest.raises(StudioError) as missing:
        RunDir.open(tmp_path / "gone")
    assert for_window(str(missing.value)) == f"{tmp_path / 'gone'} does not exist. Give a run folder (see the Runs tab)."

    RunDir.create(tmp_path / "run", {"generator": "text"})
    with pytest.raises(StudioError) as taken:
        RunDir.create(tmp_path / "run", {"generator": "text"})
    assert for_window(str(taken.value)).endswith("Continue it with Resume in the Runs tab, or start a new run.")
    with pytest.raises(StudioError) as untrained:
        RunDir(tmp_path / "run").resolve_checkpoint()
    assert for_window(str(untrained.value)).endswith("Train it first (Resume in the Runs tab).")

    with pytest.raises(StudioError) as short:
        api.inspect_data("text", str(corpus), ["block_size=16384"])
    assert "(--set block_size=...)" in str(short.value)
    assert for_window(str(short.value)).endswith("lower block_size (set block size in the Train form).")


def test_for_window_keeps_sentences_and_plain_messages():
    assert for_window("Pick a writable --run-dir.") == "Pick a writable runs folder in File › Settings."
    assert for_window("write it as key=value, e.g. --set lr=3e-4.") == \
        "write it as key=value, e.g. set lr in the Train form."
    plain = "the loss became NaN near step 40; lower the learning rate."
    assert for_window(plain) == plain


def test_the_panel_shows_core_messages_in_window_words(qtbot, session, corpus, monkeypatch):
    inspect = api.inspect_data
    monkeypatch.setattr(api, "inspect_data", lambda generator, source, settings=None, val_source=None:
                        inspect(generator, source, ["block_size=16384"], val_source))
    panel = make_panel(qtbot, session)
    panel.set_source(str(corpus))
    wait_for_check(qtbot, panel)
    assert "set block size in the Train form" in panel.status.text()
    assert "--set" not in panel.status.text() and "--set" not in panel.problem


def test_the_status_line_stays_readable_on_the_dark_theme(qtbot, session, corpus):
    from studio.gui import theme
    panel = make_panel(qtbot, session)
    panel.set_source(str(corpus))
    wait_for_check(qtbot, panel)
    try:
        theme.apply_theme("dark")
        session.theme_changed.emit("dark")
        assert data_panel.STATUS_COLORS["dark"]["ok"] in panel.status.styleSheet()
    finally:
        theme.apply_theme("light")
    session.theme_changed.emit("light")
    assert data_panel.STATUS_COLORS["light"]["ok"] in panel.status.styleSheet()


def test_checkpoint_advice_points_at_the_generate_tabs_checkpoint_box():
    damaged = for_window("checkpoint r/checkpoints/step_0000020 is damaged: model.safetensors is "
                         "missing. Use an earlier one with --checkpoint step_0000010.")
    assert damaged.endswith("Use an earlier one (pick step_0000010 in the Generate tab's "
                            "checkpoint box).")
    missing_best = for_window("r names step_0000030 as the best checkpoint, but it is missing or "
                              "unreadable. The latest is step_0000020: give --checkpoint "
                              "step_0000020 (or latest).")
    assert "pick step_0000020 in the Generate tab's checkpoint box (or latest)." in missing_best
    assert "--" not in damaged + missing_best


def test_a_typed_built_in_set_name_is_checked_not_refused_as_a_missing_path(qtbot, session):
    panel = make_panel(qtbot, session)
    qtbot.keyClicks(panel.path, "builtin:customer-service")
    qtbot.keyClick(panel.path, Qt.Key.Key_Return)
    wait_for_check(qtbot, panel)
    assert panel.problem is None and panel.report.summary["format"] == "pairs"
    assert session.data_source == "builtin:customer-service"


# --- held-out data ----------------------------------------------------------------------------------

def wait_for_recheck(qtbot, panel):
    """Wait for the check started last (the report of an earlier one stays until it ends)."""
    qtbot.waitUntil(lambda: "checking" not in panel.status.text()
                    and (panel.report is not None or panel.problem is not None), timeout=60_000)


def held_out_corpus(tmp_path) -> Path:
    path = tmp_path / "held-out.txt"
    path.write_text("ANNA:\nWe sail at dawn to find the light on the calm sea.\n" * 40, encoding="utf-8")
    return path


def test_empty_held_out_data_says_a_part_of_the_training_data_is_held_out_and_which_setting(
        qtbot, session):
    panel = make_panel(qtbot, session)
    assert panel.val_source() is None and not panel.val_clear.isEnabled()
    placeholder = panel.val_path.placeholderText()
    assert "a part of the training data is held out" in placeholder and "val fraction" in placeholder
    assert not CLI_ADVICE.search(placeholder + panel.val_path.toolTip())
    # A generator without a held-out share does not promise one.
    session.set_generator("image")
    assert "val fraction" not in panel.val_path.placeholderText()


def test_held_out_data_is_checked_with_the_training_data_and_its_counts_are_shown_beside(
        qtbot, session, corpus, tmp_path):
    held_out = held_out_corpus(tmp_path)
    panel = make_panel(qtbot, session)
    qtbot.keyClicks(panel.val_path, str(held_out))
    assert "press Enter" in panel.status.text() and panel.val_clear.isEnabled()
    panel.set_source(str(corpus))
    wait_for_check(qtbot, panel)
    assert panel.problem is None, panel.problem
    summary = panel.report.summary
    assert summary["held_out"] == str(held_out)
    assert (f"training tokens: {summary['train_tokens']:,} · held-out tokens: {summary['val_tokens']:,}"
            in panel.summary.text().splitlines())
    assert session.data_source == str(corpus) and session.val_source == str(held_out)

    panel.val_clear.click()  # none of its own: a part of the training data again
    wait_for_recheck(qtbot, panel)
    assert panel.val_source() is None and session.val_source is None
    assert panel.report.summary["held_out"] != str(held_out) and not panel.val_clear.isEnabled()


def test_held_out_counts_sit_beside_the_training_counts_they_split():
    lines = summary_lines({"examples": 120, "val_examples": 30, "held_out": "test.jsonl",
                           "classes": {"a": 60, "b": 60}})
    assert lines[0] == "examples: 120 · held-out examples: 30"
    assert "held-out examples: 30" not in lines[1:] and "held out: test.jsonl" in lines
    # No held-out count (0, or none in the report): the training count alone.
    assert summary_lines({"images": 40, "held_out_images": 0}) == ["images: 40"]


def test_a_missing_held_out_path_is_refused_with_its_path_and_what_to_do(qtbot, session, corpus, tmp_path):
    panel = make_panel(qtbot, session)
    panel.set_source(str(corpus))
    wait_for_check(qtbot, panel)
    missing = tmp_path / "no-such-held-out.txt"
    qtbot.keyClicks(panel.val_path, str(missing))
    qtbot.keyClick(panel.val_path, Qt.Key.Key_Return)
    assert panel.report is None and panel.task is None  # refused without a check
    assert f"no file or folder at {missing} for the held-out data" in panel.problem
    assert "Held-out data row" in panel.problem and "Clear" in panel.problem
    assert "val fraction" in panel.problem  # what Clear then means
    assert panel.status.text().startswith("✗") and not CLI_ADVICE.search(panel.problem)
    assert session.val_source is None  # the missing path did not become the held-out data
    assert session.data_source == str(corpus)  # the training data is still chosen


def test_a_held_out_file_dropped_on_its_row_or_picked_becomes_the_held_out_data(
        qtbot, session, corpus, tmp_path, monkeypatch):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent
    held_out = held_out_corpus(tmp_path)
    panel = make_panel(qtbot, session)
    panel.set_source(str(corpus))
    wait_for_check(qtbot, panel)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(held_out))])
    drop = QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    panel.val_path.dropEvent(drop)
    assert panel.val_path.text() == str(held_out)  # its path, not its URL as text
    assert panel.source() == str(corpus)  # the training data stays
    wait_for_recheck(qtbot, panel)
    assert panel.report.summary["held_out"] == str(held_out) and session.val_source == str(held_out)

    panel.val_clear.click()
    wait_for_recheck(qtbot, panel)
    monkeypatch.setattr(data_panel.QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(held_out), "")))
    panel.val_pick_file.click()
    assert panel.val_source() == str(held_out) and panel.source() == str(corpus)
    wait_for_recheck(qtbot, panel)
    assert session.val_source == str(held_out)


def test_a_typed_built_in_set_name_is_accepted_as_held_out_data(qtbot, session, corpus):
    panel = make_panel(qtbot, session)
    panel.set_source(str(corpus))
    wait_for_check(qtbot, panel)
    qtbot.keyClicks(panel.val_path, "builtin:python-docs")
    qtbot.keyClick(panel.val_path, Qt.Key.Key_Return)
    wait_for_recheck(qtbot, panel)
    assert panel.problem is None, panel.problem
    assert panel.report.summary["held_out"] == "builtin:python-docs"
    assert session.val_source == "builtin:python-docs"


def test_the_held_out_data_is_remembered_for_the_next_launch(qtbot, tmp_path, corpus):
    held_out = held_out_corpus(tmp_path)
    first = Session(Settings(runs_folder=str(tmp_path / "runs")))
    first.set_data(str(corpus))
    first.set_val_data(str(held_out))
    again = Session(Settings.load())
    assert again.val_source == str(held_out) and again.data_note is None
    panel = make_panel(qtbot, again)
    assert panel.val_source() == str(held_out) and panel.val_clear.isEnabled()
    held_out.unlink()
    gone = Session(Settings.load())
    assert gone.val_source is None and gone.data_source == str(corpus)
    assert str(held_out) in gone.data_note and "held-out" in gone.data_note
