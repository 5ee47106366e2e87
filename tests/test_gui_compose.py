"""The Compose tab, driven as a user would: a new recipe on the demo runs previewed, one slot
re-rolled or locked while the others stay, a recipe whose run is missing, Save, a batch from a
CSV with progress, thumbnails and review reasons, Stop between rows, and Export.

The demo runs (assets/demo) are read, never written. Their weights are loaded once for the
module and shared by every panel, as one window's previews share them (Composer's `reuse`)."""

import html
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from studio import api
from studio.compose.recipe import load_recipe, recipe_from_document
from studio.compose.runner import Composer
from studio.export import shorten
from studio.gui import compose_panel
from studio.gui.compose_panel import ComposePanel, LoadedRuns
from studio.gui.session import Session
from studio.gui.settings import Settings

WAIT_MS = 60_000
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "compose" / "ad.json"
DEMO = {path.name: path for path in api.demo_runs()}
ROWS = ("id,product,category,tagline\n"
        "orbit-lamp,Orbit lamp,circle,a warm light that follows the sun\n"
        "cube-speaker,Cube speaker,square,room-filling sound from a small box\n"
        "prism-vase,Prism vase,triangle,three faces for every flower\n")


@pytest.fixture(scope="module")
def loaded_runs():
    return LoadedRuns()


@pytest.fixture
def errors(monkeypatch):
    """Messages the panel would show in a dialog."""
    shown = []
    monkeypatch.setattr(compose_panel, "show_error", lambda parent, message: shown.append(message))
    return shown


@pytest.fixture
def opened(monkeypatch):
    """Files and folders the panel would open in the platform's viewer."""
    paths = []
    monkeypatch.setattr(compose_panel, "open_path", paths.append)
    return paths


def make_panel(qtbot, session, loaded_runs) -> ComposePanel:
    panel = ComposePanel(session)
    panel.loaded = loaded_runs
    panel.live_box.setChecked(False)  # each test asks for its previews (one test: live)
    qtbot.addWidget(panel)
    panel.resize(1280, 800)
    return panel


@pytest.fixture
def panel(qtbot, tmp_path, loaded_runs, errors):
    session = Session(Settings(runs_folder=str(tmp_path / "runs"), default_device="cpu"))
    panel = make_panel(qtbot, session, loaded_runs)
    yield panel
    panel.stop_batch()  # never leave a task writing into a widget that is going away
    qtbot.waitUntil(lambda: not panel.busy and not panel.batch_running
                    and panel.export_task is None and panel.clip_task is None
                    and panel.results_task is None, timeout=WAIT_MS)


def preview(qtbot, panel, action=None):
    """Press Preview (or `action`) and wait for the poster."""
    with qtbot.waitSignal(panel.preview_shown, timeout=WAIT_MS):
        assert (action or panel.preview)()
    assert panel.problem_label.isHidden(), panel.problem_label.text()
    return panel.shown.content


def region_pixels(panel, slot: str) -> np.ndarray:
    """The previewed poster's pixels in the region that shows `slot`."""
    box = panel.shown.content.recipe.template.region_of(slot).box
    return panel.poster_view.array[box.y:box.y + box.h, box.x:box.x + box.w]


def type_into(qtbot, line_edit, text: str, replace: bool = False):
    if replace:
        line_edit.selectAll()
        qtbot.keyClick(line_edit, Qt.Key.Key_Delete)
    qtbot.keyClicks(line_edit, text)


def write_rows(tmp_path, text=ROWS) -> Path:
    path = tmp_path / "products.csv"
    path.write_text(text, encoding="utf-8")
    return path


def save_to(monkeypatch, path: Path):
    monkeypatch.setattr(compose_panel.QFileDialog, "getSaveFileName",
                        lambda *args, **kwargs: (str(path), "Recipes (*.json)"))


# --- preview ----------------------------------------------------------------------------------

def test_a_new_recipe_on_the_demo_runs_previews_an_ad(qtbot, panel, errors):
    assert list(panel.editors) == ["picture", "clip", "headline", "body"]
    kinds = {name: editor.kind for name, editor in panel.editors.items()}
    assert kinds == {"picture": "image", "clip": "clip", "headline": "text", "body": "text"}
    runs = {name: Path(entry["run"]) for name, entry in panel.document["slots"].items()}
    assert runs == {"picture": DEMO["image"], "clip": DEMO["video"], "headline": DEMO["text"],
                    "body": DEMO["text"]}
    assert set(panel.row_fields) == {"product", "category", "tagline"}
    assert panel.problem() is None and panel.preview_button.isEnabled()
    assert panel.view_stack.currentWidget() is panel.hint_label
    assert not panel.export_button.isEnabled()  # nothing to export yet

    content = preview(qtbot, panel)
    assert panel.view_stack.currentWidget() is panel.poster_view
    poster = panel.poster_view.array
    assert poster.shape == (1350, 1080, 3)
    picture = region_pixels(panel, "picture").astype(int)
    assert picture.std() > 10  # a drawn shape, not the paper
    for name in ("headline", "body"):
        text = content.slots[name].text
        excerpt = html.escape(shorten(text, compose_panel.DETAILS_TEXT))
        assert text and excerpt in panel.details_label.text()
        assert f"{name}: {text}" in panel.details_label.toolTip()  # the whole text
        ink = region_pixels(panel, name).min(axis=2)
        assert (ink < 128).sum() > 100  # dark letters on the light paper
    assert content.row_key == "orbit-lamp" and content.row["product"] == "Orbit lamp"
    assert content.slots["picture"].lineage["prompt"] == "circle"
    expected = ("Needs review: " + " · ".join(content.review)) if content.review \
        else "The guards passed every text."
    assert panel.review_label.text() == expected
    assert "Made every slot" in panel.status_label.text()
    assert panel.export_button.isEnabled() and errors == []


def test_review_reasons_of_the_previewed_ad_are_shown(qtbot, panel):
    panel.editors["body"].max_chars_spin.setValue(3)
    panel.editors["body"].retries_spin.setValue(1)
    assert panel.document["slots"]["body"]["max_chars"] == 3
    content = preview(qtbot, panel)
    length = len(content.slots["body"].text)
    assert length > 3
    reason = f"slots.body: {length} characters, over the limit of 3 (kept the last of 2 tries)"
    assert content.review == (reason,)
    assert panel.review_label.text() == f"Needs review: {reason}"


def test_rerolling_one_slot_changes_its_seed_offset_and_content_only(qtbot, panel):
    before = preview(qtbot, panel)
    pixels = {name: region_pixels(panel, name).copy() for name in ("picture", "headline", "body")}
    editor = panel.editors["headline"]
    assert editor.reroll_button.isEnabled()
    after = preview(qtbot, panel, lambda: qtbot.mouseClick(editor.reroll_button,
                                                           Qt.MouseButton.LeftButton) or True)
    retries = panel.document["slots"]["headline"]["retries"]
    assert panel.document["slots"]["headline"]["seed_offset"] == retries + 1  # past its retries
    assert editor.seed_offset_spin.value() == retries + 1
    assert after.slots["headline"].lineage["seed"] != before.slots["headline"].lineage["seed"]
    assert after.slots["headline"].text != before.slots["headline"].text
    assert not np.array_equal(region_pixels(panel, "headline"), pixels["headline"])
    for name in ("picture", "clip", "body"):
        assert after.slots[name].lineage == before.slots[name].lineage
    for name in ("picture", "body"):
        assert np.array_equal(region_pixels(panel, name), pixels[name])
    assert panel.dirty and "•" in panel.recipe_label.text()  # the raised offset is unsaved

    # A picture moves by one seed; the texts stay.
    texts = {name: after.slots[name].text for name in ("headline", "body")}
    again = preview(qtbot, panel, lambda: panel.reroll("picture"))
    assert panel.document["slots"]["picture"]["seed_offset"] == 1
    assert again.slots["picture"].lineage["seed"] == after.slots["picture"].lineage["seed"] + 1
    assert not np.array_equal(region_pixels(panel, "picture"), pixels["picture"])
    assert {name: again.slots[name].text for name in texts} == texts


def test_a_new_request_supersedes_the_one_running(qtbot, panel):
    before = preview(qtbot, panel)
    shown = []
    panel.preview_shown.connect(lambda: shown.append(panel.shown.content))
    assert panel.reroll("headline") and panel.busy
    assert panel.reroll("body")  # before the first one's ad could be shown
    qtbot.waitUntil(lambda: not panel.busy, timeout=WAIT_MS)
    assert len(shown) == 1  # the first request's ad was never shown
    for name in ("headline", "body"):
        assert shown[0].slots[name].lineage["seed"] != before.slots[name].lineage["seed"]
    assert shown[0].slots["picture"].lineage == before.slots["picture"].lineage


def test_a_locked_slot_keeps_its_content_when_another_slot_changes(qtbot, panel):
    before = preview(qtbot, panel)
    headline = panel.editors["headline"]
    headline.lock_box.setChecked(True)
    assert not headline.reroll_button.isEnabled()
    type_into(qtbot, panel.editors["body"].prompt_edit, " Buy now.")
    type_into(qtbot, headline.prompt_edit, "Slogan for {product}:", replace=True)
    assert panel.document["slots"]["body"]["prompt"] == "{product}: {tagline}. Buy now."
    assert "locked" in headline.title() and "changed since the preview" in headline.title()

    after = preview(qtbot, panel)
    assert after.slots["headline"].lineage == before.slots["headline"].lineage  # locked
    assert after.slots["body"].lineage["prompt"] == "Orbit lamp: a warm light that follows the " \
                                                    "sun. Buy now."
    assert after.slots["picture"].lineage == before.slots["picture"].lineage  # unchanged
    assert "headline" in panel.details_label.text() and "locked" in panel.details_label.text()

    headline.lock_box.setChecked(False)  # unlocked, its edit is made at the next preview
    unlocked = preview(qtbot, panel)
    assert unlocked.slots["headline"].lineage["prompt"] == "Slogan for Orbit lamp:"
    assert unlocked.slots["body"].lineage == after.slots["body"].lineage

    # A new recipe seed remakes every slot but the locked one; unlocked, that one follows.
    headline.lock_box.setChecked(True)
    panel.seed_spin.setValue(99)
    reseeded = preview(qtbot, panel)
    assert reseeded.slots["headline"].lineage == unlocked.slots["headline"].lineage
    assert reseeded.slots["body"].lineage["seed"] != unlocked.slots["body"].lineage["seed"]
    headline.lock_box.setChecked(False)
    followed = preview(qtbot, panel)
    assert followed.slots["headline"].lineage["seed"] != reseeded.slots["headline"].lineage["seed"]
    assert followed.slots["body"].lineage == reseeded.slots["body"].lineage


def test_edits_preview_by_themselves_when_live(qtbot, panel):
    preview(qtbot, panel)
    panel.live_box.setChecked(True)
    with qtbot.waitSignal(panel.preview_shown, timeout=WAIT_MS):
        type_into(qtbot, panel.row_fields["product"], "s")  # "Orbit lamps"
    assert panel.shown.row["product"] == "Orbit lamps"


def test_play_clip_renders_and_plays_the_ad_s_clip(qtbot, panel):
    preview(qtbot, panel)
    qtbot.mouseClick(panel.clip_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.clip_player is not None, timeout=WAIT_MS)
    clip = panel.shown.content.slots["clip"]
    assert len(panel.clip_player.frames) == len(clip.frames) and panel.clip_player.playing
    assert max(panel.clip_player.frames.shape[1:3]) <= compose_panel.CLIP_PREVIEW_SIDE
    assert panel.view_stack.currentWidget() is panel.clip_holder
    assert panel.clip_button.text() == "Show poster"
    qtbot.mouseClick(panel.clip_button, Qt.MouseButton.LeftButton)
    assert panel.view_stack.currentWidget() is panel.poster_view and panel.clip_player is None


def test_another_template_lays_the_ad_out_anew_and_the_clip_slot_is_optional(qtbot, panel):
    preview(qtbot, panel)
    panel.editors["headline"].lock_box.setChecked(True)
    type_into(qtbot, panel.editors["headline"].prompt_edit, " ")
    headline = dict(panel.document["slots"]["headline"])
    index = panel.template_combo.findData("banner")
    panel.template_combo.setCurrentIndex(index)
    panel.template_combo.activated.emit(index)
    assert panel.document["template"] == "banner"
    assert panel.document["slots"]["headline"] == headline  # the same slots keep their entries
    assert panel.editors["headline"].locked
    content = preview(qtbot, panel)  # a new template: every slot made, the locked one too
    assert panel.poster_view.array.shape == (500, 1500, 3)
    assert content.slots["headline"].lineage["prompt"] == "Headline for Orbit lamp: "

    clip = panel.editors["clip"]
    entry = panel.document["slots"]["clip"]
    clip.setChecked(False)  # left out: the ad's clip zooms the picture instead
    assert "clip" not in panel.document["slots"] and panel.problem() is None
    without = preview(qtbot, panel)
    assert "clip" not in without.slots
    assert without.slots["headline"].lineage == content.slots["headline"].lineage
    clip.setChecked(True)
    assert panel.document["slots"]["clip"] == entry  # as it was


def test_new_asks_before_unsaved_changes_go(qtbot, panel, monkeypatch):
    answers = ["cancel", "discard"]
    asked = []
    monkeypatch.setattr(compose_panel, "ask_unsaved",
                        lambda parent, name: asked.append(name) or answers.pop(0))
    type_into(qtbot, panel.editors["body"].prompt_edit, " Buy now.")
    assert panel.dirty
    qtbot.mouseClick(panel.new_button, Qt.MouseButton.LeftButton)
    assert asked == ["Untitled recipe"] and panel.dirty  # cancelled: the edit stays
    qtbot.mouseClick(panel.new_button, Qt.MouseButton.LeftButton)
    assert len(asked) == 2 and not panel.dirty
    assert panel.document["slots"]["body"]["prompt"] == "{product}: {tagline}."


# --- bad input ------------------------------------------------------------------------------

def test_a_recipe_naming_a_missing_run_says_so_and_the_panel_stays_usable(
        qtbot, panel, tmp_path, monkeypatch, capfd, errors):
    document = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    for entry in document["slots"].values():
        entry["run"] = str((EXAMPLE.parent / entry["run"]).resolve())
    document["slots"]["picture"]["run"] = "no-such-run"
    path = tmp_path / "ad.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    monkeypatch.setattr(compose_panel.QFileDialog, "getOpenFileName",
                        lambda *args, **kwargs: (str(path), ""))
    assert panel.open_recipe()
    picture = panel.editors["picture"]
    assert picture.run_combo.currentText() == "no-such-run (missing)"
    assert panel.problem() is None  # the runs are opened when the ad is made
    assert panel.preview()
    qtbot.waitUntil(lambda: not panel.busy, timeout=WAIT_MS)
    message = panel.problem_label.text()
    assert not panel.problem_label.isHidden() and panel.shown is None
    assert message.startswith(f"{path}: slots.picture.run names {tmp_path / 'no-such-run'}, "
                              f"which does not exist.")
    assert errors == [] and "Traceback" not in capfd.readouterr().err

    # A setting the generator does not have, and one that is not key=value.
    settings = panel.editors["headline"].settings_edit
    type_into(qtbot, settings, "warmth", replace=True)
    assert "is not a setting: write key=value" in panel.problem_label.text()
    assert not panel.preview_button.isEnabled()

    # Fixed in the panel, the ad is made.
    type_into(qtbot, settings, "temperature=0.7", replace=True)
    index = picture.run_combo.findData(str(DEMO["image"]))
    picture.run_combo.setCurrentIndex(index)
    picture.run_combo.activated.emit(index)
    assert panel.document["slots"]["picture"]["run"] == str(DEMO["image"])
    content = preview(qtbot, panel)
    assert content.slots["picture"].image is not None


def test_a_file_that_is_not_a_recipe_is_refused_and_the_recipe_shown_stays(
        qtbot, panel, tmp_path, monkeypatch, errors):
    path = tmp_path / "notes.json"
    path.write_text("[1, 2, 3]", encoding="utf-8")
    monkeypatch.setattr(compose_panel.QFileDialog, "getOpenFileName",
                        lambda *args, **kwargs: (str(path), ""))
    shown = panel.document
    assert not panel.open_recipe()
    assert errors == [f"{path} is not a recipe: it needs \"template\" and \"slots\", an object "
                      f"with one object per slot (see examples/compose/ad.json)."]
    assert panel.document is shown and panel.recipe_path is None


# --- save ---------------------------------------------------------------------------------------

def test_saving_writes_a_recipe_that_load_recipe_reads_back_equal(qtbot, panel, tmp_path,
                                                                  monkeypatch):
    content = preview(qtbot, panel)
    preview(qtbot, panel, lambda: panel.reroll("headline"))
    panel.seed_spin.setValue(7)
    type_into(qtbot, panel.editors["body"].banned_edit, ", cheap")
    panel.editors["body"].max_chars_spin.setValue(150)
    assert panel.dirty and "•" in panel.recipe_label.text()
    path = tmp_path / "recipes" / "lamp.json"
    save_to(monkeypatch, path)
    assert panel.save()
    assert not panel.dirty and "•" not in panel.recipe_label.text()
    assert "lamp.json" in panel.recipe_label.text()
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved == panel.document
    assert saved["seed"] == 7 and saved["slots"]["body"]["banned"] == ["free", "guarantee",
                                                                       "cheap"]
    assert load_recipe(path) == recipe_from_document(panel.document, path)
    assert panel.session.settings.compose_recipe == str(path)

    # The re-rolled headline comes back from the saved recipe (the seed change aside).
    panel.seed_spin.setValue(content.recipe.seed)
    assert panel.save()
    key, row = panel.row()
    remade = Composer(load_recipe(path), "cpu", reuse=panel.loaded.composer).make(key, row)
    shown = panel.shown.content
    assert remade.slots["headline"].text == shown.slots["headline"].text

    # The next window opens it again.
    reopened = make_panel(qtbot, Session(Settings.load()), panel.loaded)
    assert reopened.recipe_path == path and reopened.document == saved | {"seed": 2024}
    assert not reopened.dirty


def test_save_as_elsewhere_keeps_relative_runs_working(qtbot, panel, tmp_path, monkeypatch):
    monkeypatch.setattr(compose_panel.QFileDialog, "getOpenFileName",
                        lambda *args, **kwargs: (str(EXAMPLE), ""))
    assert panel.open_recipe() and not panel.dirty
    assert panel.document["slots"]["headline"]["run"] == "../../assets/demo/text"
    assert Path(panel.editors["headline"].run_combo.currentData()) == DEMO["text"]
    path = tmp_path / "copy.json"
    save_to(monkeypatch, path)
    assert panel.save_as()
    recipe = load_recipe(path)
    assert {name: slot.run for name, slot in recipe.slots.items()} == \
        {name: slot.run for name, slot in load_recipe(EXAMPLE).slots.items()}
    assert EXAMPLE.read_text(encoding="utf-8").count("../../assets/demo") == 4  # untouched


# --- batch --------------------------------------------------------------------------------------

def test_a_small_batch_runs_with_progress_thumbnails_and_review_reasons(
        qtbot, panel, tmp_path, monkeypatch, opened, errors):
    rows = write_rows(tmp_path, ROWS.replace("prism-vase,Prism vase,triangle",
                                             "hex-tray,Hex tray,hexagon"))
    monkeypatch.setattr(compose_panel.QFileDialog, "getOpenFileName",
                        lambda *args, **kwargs: (str(rows), ""))
    panel.choose_rows_file()
    assert [panel.row_combo.itemText(i) for i in range(panel.row_combo.count())] == \
        ["orbit-lamp", "cube-speaker", "hex-tray"]
    panel.editors["body"].max_chars_spin.setValue(20)  # every body text goes to review
    panel.editors["body"].retries_spin.setValue(0)
    panel.out_edit.setText(str(tmp_path / "out"))
    save_to(monkeypatch, tmp_path / "batch.json")  # a new recipe is saved first
    progress = []
    panel.progress_bar.valueChanged.connect(progress.append)
    with qtbot.waitSignal(panel.batch_finished, timeout=WAIT_MS) as finished:
        assert panel.run_batch()
    report = finished.args[0]
    assert (tmp_path / "batch.json").is_file() and not panel.dirty
    assert report.made == ["orbit-lamp", "cube-speaker"] and report.failed == ["hex-tray"]
    assert progress[-3:] == [1, 2, 3] and panel.progress_bar.maximum() == 3
    assert panel.progress_label.text().startswith("Done in")
    assert panel.summary_label.text() == "2 made, 0 finished earlier, 1 failed, 3 to review."

    items = {panel.results_list.item(i).data(Qt.ItemDataRole.UserRole)["key"]:
             panel.results_list.item(i) for i in range(panel.results_list.count())}
    assert list(items) == ["orbit-lamp", "cube-speaker", "hex-tray"]
    for key in report.made:
        assert not items[key].icon().isNull()
        assert items[key].text() == f"⚠ {key}"
        assert "over the limit of 20" in items[key].toolTip()
    assert items["hex-tray"].icon().isNull() and "hexagon" in items["hex-tray"].toolTip()
    panel.results_list.setCurrentItem(items["cube-speaker"])
    assert panel.result_details.text().startswith("cube-speaker: slots.body: ")

    assert panel.sheet_button.isEnabled()
    qtbot.mouseClick(panel.sheet_button, Qt.MouseButton.LeftButton)
    assert opened == [tmp_path / "out" / "index.html"]
    assert errors == []

    # The next window shows the batch's ads again, marked as they were.
    reopened = make_panel(qtbot, Session(Settings.load()), panel.loaded)
    assert reopened.rows_path == rows and reopened.output_folder() == tmp_path / "out"
    qtbot.waitUntil(lambda: reopened.results_task is None, timeout=WAIT_MS)
    shown = {reopened.results_list.item(i).text(): reopened.results_list.item(i)
             for i in range(reopened.results_list.count())}
    assert sorted(shown) == ["⚠ cube-speaker", "⚠ hex-tray", "⚠ orbit-lamp"]
    assert not shown["⚠ orbit-lamp"].icon().isNull()
    assert shown["⚠ hex-tray"].toolTip() == items["hex-tray"].toolTip()


def test_stop_ends_a_batch_between_rows_and_run_batch_again_finishes_it(
        qtbot, panel, tmp_path, monkeypatch):
    # The first ad's progress waits until Stop is pressed: Stop lands between rows 1 and 2.
    stop_pressed = threading.Event()
    real_batch_rows = compose_panel.batch_rows

    def batch_rows_waiting_for_stop(ctx, *args):
        report_progress = ctx.progress

        def progress(value):
            report_progress(value)
            if value[0] == 1:
                stop_pressed.wait(30)
        ctx.progress = progress
        return real_batch_rows(ctx, *args)

    monkeypatch.setattr(compose_panel, "batch_rows", batch_rows_waiting_for_stop)
    save_to(monkeypatch, tmp_path / "recipe.json")
    assert panel.save()
    panel.load_rows(write_rows(tmp_path))
    panel.out_edit.setText(str(tmp_path / "out"))
    assert panel.run_batch() and panel.batch_running and not panel.run_batch()
    qtbot.waitUntil(lambda: panel.progress_bar.value() == 1, timeout=WAIT_MS)
    with qtbot.waitSignal(panel.batch_finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(panel.stop_batch_button, Qt.MouseButton.LeftButton)
        stop_pressed.set()
    report = finished.args[0]
    assert report.stopped and report.made == ["orbit-lamp"]
    assert panel.summary_label.text().endswith("Stopped: Run batch again finishes the rest.")
    assert panel.results_list.count() == 1

    monkeypatch.setattr(compose_panel, "batch_rows", real_batch_rows)
    qtbot.waitUntil(lambda: not panel.batch_running, timeout=WAIT_MS)
    with qtbot.waitSignal(panel.batch_finished, timeout=WAIT_MS) as finished:
        assert panel.run_batch()
    report = finished.args[0]
    assert report.skipped == ["orbit-lamp"] and report.made == ["cube-speaker", "prism-vase"]
    assert not report.stopped and panel.results_list.count() == 3


# --- export -------------------------------------------------------------------------------------

def test_export_writes_the_previewed_ad_with_its_lineage(qtbot, panel, tmp_path, monkeypatch):
    content = preview(qtbot, panel)
    monkeypatch.setattr(compose_panel.QFileDialog, "getExistingDirectory",
                        lambda *args, **kwargs: str(tmp_path))
    (tmp_path / "orbit-lamp").mkdir()
    (tmp_path / "orbit-lamp" / "notes.txt").write_text("mine", encoding="utf-8")
    assert panel.export()
    qtbot.waitUntil(lambda: panel.export_task is None, timeout=WAIT_MS)
    folder = tmp_path / "orbit-lamp-2"  # a folder of the user's is never replaced
    assert (tmp_path / "orbit-lamp" / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert sorted(path.name for path in folder.iterdir()) == ["ad.json", "poster.png"]
    assert np.array_equal(np.asarray(Image.open(folder / "poster.png").convert("RGB")),
                          panel.poster_view.array)
    lineage = json.loads((folder / "ad.json").read_text(encoding="utf-8"))
    assert lineage["row_key"] == "orbit-lamp"
    assert lineage["slots"]["headline"]["text"] == content.slots["headline"].text
    assert lineage["recipe"]["document"] == panel.document
    assert panel.status_label.text() == f"Exported ad.json, poster.png to {folder}."


# --- in the window ------------------------------------------------------------------------------

def test_the_window_has_a_compose_tab_on_ctrl_5_that_previews_on_ctrl_enter(
        qtbot, tmp_path, loaded_runs):
    from studio.gui import window as window_module
    session = Session(Settings(runs_folder=str(tmp_path / "runs"), default_device="cpu"))
    win = window_module.MainWindow(session)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.compose_panel is not None, timeout=WAIT_MS)
    panel = win.compose_panel
    panel.loaded = loaded_runs
    assert win.tabs.tabText(win.tabs.count() - 1) == "&Compose"
    qtbot.keyClick(win, Qt.Key.Key_5, Qt.KeyboardModifier.ControlModifier)
    assert win.tabs.currentWidget() is panel
    panel.preview_button.setFocus()
    with qtbot.waitSignal(panel.preview_shown, timeout=WAIT_MS):
        qtbot.keyClick(panel.preview_button, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert panel.shown is not None
