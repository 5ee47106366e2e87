"""The Generation panel, driven as a user would: pick a run, set parameters, generate (text
streams and can be stopped), look back through the history, recall, export with lineage."""

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QGuiApplication, QTextCursor
from PySide6.QtWidgets import QApplication, QScrollArea

from studio import api
from studio.contract import Sample
from studio.errors import StudioError
from studio.export import export, sidecar_path
from studio.gui import generate_panel
from studio.gui.generate_panel import EMPTY_RUNS
from studio.gui.views import ImageView, VideoPlayer
from studio.registry import default_registry
from generate_panel_support import errors, pick  # noqa: F401 (errors: a fixture)
from generate_panel_support import make_panel as shared_make_panel
from toy_generators import ToyImageGenerator, ToyVideoGenerator

TINY_TEXT = ["n_layer=1", "n_head=2", "n_embd=16", "block_size=16", "device=cpu", "eval_every=0",
             "preview_every=0"]
QUIET = ["device=cpu", "eval_every=0", "preview_every=0"]
WAIT_MS = 20_000


def _register_toys():
    for cls in (ToyImageGenerator, ToyVideoGenerator):
        default_registry().add(cls.name, cls)


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory):
    """One tiny text run and one run of each toy (image, video), trained once for the module."""
    root = tmp_path_factory.mktemp("runs")
    _register_toys()
    corpus = root.parent / "corpus.txt"
    words = "the sea is calm and the night is long we sail at dawn to find the light".split()
    corpus.write_text("\n".join(f"{['ANNA', 'BORIS'][i % 2]}:\n"
                                f"{' '.join(words[(i * 7 + j) % len(words)] for j in range(8))}.\n"
                                for i in range(200)), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:  # the per-test cache fixture is not active yet
        mp.setenv("STUDIO_CACHE_DIR", str(root.parent / "cache"))
        api.train("text", data=str(corpus), run_dir=str(root / "text-tiny"), max_steps=20,
                  events="none", settings=TINY_TEXT)
        api.train(ToyImageGenerator, run_dir=str(root / "toy-image"), max_steps=5, events="none",
                  settings=QUIET)
        api.train(ToyVideoGenerator, run_dir=str(root / "toy-video"), max_steps=5, events="none",
                  settings=QUIET)
    return root


def make_panel(qtbot, runs_folder, keep_history=False):
    _register_toys()
    return shared_make_panel(qtbot, runs_folder, keep_history)


@pytest.fixture
def panel(qtbot, runs_folder, errors):
    panel = make_panel(qtbot, runs_folder)
    yield panel
    if panel.busy:  # never leave a task writing into a widget that is going away
        panel.stop()
        qtbot.waitUntil(lambda: not panel.busy, timeout=60_000)


def set_fields(panel, **values):
    for name, value in values.items():
        panel.form.widgets[name].setText(str(value))


def run_to_end(qtbot, panel, errors):
    """Press Generate and wait for the output to join the history."""
    before = len(panel.history)
    qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    assert panel.busy, panel.problem()
    qtbot.waitUntil(lambda: not panel.busy, timeout=WAIT_MS)
    assert errors == []
    assert len(panel.history) == before + 1
    return panel.history[-1]


def test_text_streams_token_by_token_and_equals_api_generate(qtbot, panel, errors, runs_folder):
    pick(panel, "text-tiny")
    assert not panel.prompt_edit.isHidden()
    panel.prompt_edit.setPlainText("ANNA:")
    panel.seed_spin.setValue(7)
    set_fields(panel, temperature=0.9, top_k=5, max_new_tokens=60)
    pieces = []
    panel.streamed.connect(lambda piece: pieces.append((piece, panel.text_view.toPlainText())))

    entry = run_to_end(qtbot, panel, errors)

    expected = api.generate(str(runs_folder / "text-tiny"), prompt="ANNA:", seed=7, device="cpu",
                            settings=["temperature=0.9", "top_k=5", "max_new_tokens=60"])[0].data
    assert len(pieces) >= 10  # arrived one by one, not as one block
    assert pieces[0][1] == "ANNA:" + pieces[0][0]  # shown as it came, after the prompt
    assert entry.samples[0].data == expected
    assert panel.text_view.toPlainText() == expected
    lineage = entry.lineage
    assert (lineage["checkpoint"], lineage["generator"], lineage["seed"], lineage["prompt"]) == \
        ("step_0000020", "text", 7, "ANNA:")
    assert lineage["params"]["temperature"] == 0.9 and lineage["params"]["top_k"] == 5
    assert "step_0000020" in panel.lineage_label.text()


def test_stop_ends_a_long_generation_early_and_keeps_the_text(qtbot, panel, errors):
    pick(panel, "text-tiny")
    panel.prompt_edit.setPlainText("")
    set_fields(panel, max_new_tokens=100000)  # ~25 s on this machine if it were not stopped
    pieces = []
    panel.streamed.connect(pieces.append)
    assert not panel.stop_button.isEnabled()
    assert panel.generate()
    qtbot.waitUntil(lambda: len(pieces) >= 5, timeout=WAIT_MS)
    assert panel.stop_button.isEnabled() and not panel.generate_button.isEnabled()
    qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.busy, timeout=10_000)

    assert errors == []
    entry = panel.history[-1]
    assert entry.lineage["stopped"]
    assert 0 < len(entry.samples[0].data) < 50_000  # char tokenizer: one character per token
    assert panel.generate_button.isEnabled() and not panel.stop_button.isEnabled()


def test_thousands_of_emits_leave_the_interpreter_sound(qtbot, panel, errors):
    """PySide6 6.12.0's emit takes a reference from True each time, and Python < 3.12 aborts
    once True runs out of them: the project pins a PySide6 whose emit is sound."""
    pick(panel, "text-tiny")
    set_fields(panel, max_new_tokens=1500)
    pieces = []
    panel.streamed.connect(pieces.append)
    before = sys.getrefcount(True)
    run_to_end(qtbot, panel, errors)
    assert len(pieces) >= 1000
    assert sys.getrefcount(True) >= before - 100


def test_text_exports_as_txt_and_jsonl_with_lineage(qtbot, panel, errors, tmp_path):
    pick(panel, "text-tiny")
    panel.prompt_edit.setPlainText("BORIS:")
    set_fields(panel, max_new_tokens=30)
    one = run_to_end(qtbot, panel, errors)
    panel.count_spin.setValue(3)  # several texts: streamed one after another, shown in turn
    three = run_to_end(qtbot, panel, errors)
    assert panel.output_stack.currentWidget() is panel.text_view
    shown = panel.text_view.toPlainText()
    assert all(s.data in shown for s in three.samples) and "sample 3 of 3 · seed 2" in shown

    txt = tmp_path / "out.txt"
    export(one, txt)
    assert txt.read_text(encoding="utf-8").rstrip("\n") == one.samples[0].data
    side = json.loads(sidecar_path(txt).read_text(encoding="utf-8"))
    assert side["run"] == one.lineage["run"] and side["seed"] == 0 and side["prompt"] == "BORIS:"
    assert side["params"]["max_new_tokens"] == 30

    jsonl = tmp_path / "out.jsonl"
    export(three, jsonl)
    lines = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert [line["text"] for line in lines] == [s.data for s in three.samples]
    assert all(line["lineage"]["checkpoint"] == "step_0000020" and line["lineage"]["count"] == 3
               for line in lines)
    with pytest.raises(StudioError, match="exports as .txt, .jsonl"):
        export(one, tmp_path / "out.png")


def test_an_image_run_renders_a_grid_and_exports_png_with_metadata(qtbot, panel, errors, tmp_path):
    pick(panel, "toy-image")
    assert panel.prompt_edit.isHidden()  # images take no prompt
    assert set(panel.form.widgets) == {"brightness"}  # the plugin's own sampling parameters
    panel.count_spin.setValue(3)
    panel.seed_spin.setValue(4)
    entry = run_to_end(qtbot, panel, errors)

    assert panel.output_stack.currentWidget() is panel.grid
    assert [type(v) for v in panel.grid.views] == [ImageView] * 3
    assert panel.grid.views[0].array.shape == (8, 8, 3)

    grid_png = tmp_path / "grid.png"
    assert export(entry, grid_png) == [grid_png]
    with Image.open(grid_png) as image:
        lineage = json.loads(image.text["lineage"])
        assert image.size == (18, 18)  # 2 x 2 cells of 8 px with 2 px between
    assert (lineage["generator"], lineage["seed"], lineage["count"]) == ("toy-image", 4, 3)
    assert lineage["params"] == {"brightness": 1.0}

    written = export(entry, tmp_path / "each.png", separate=True)
    assert [p.name for p in written] == ["each-000.png", "each-001.png", "each-002.png"]
    with Image.open(written[1]) as image:
        assert json.loads(image.text["lineage"])["index"] == 1
        assert np.array_equal(np.asarray(image.convert("RGB")), entry.samples[1].data)


def test_a_video_run_plays_in_a_player_and_exports_gif_and_mp4(qtbot, panel, errors, tmp_path):
    pick(panel, "toy-video")
    entry = run_to_end(qtbot, panel, errors)

    (player,) = panel.grid.views
    assert isinstance(player, VideoPlayer)
    assert len(player.frames) == 4 and player.slider.maximum() == 3
    player.toggle()  # pause, then step with the slider
    player.slider.setValue(2)
    assert not player.playing
    before = sys.getrefcount(True)
    for _ in range(1000):  # a few minutes of playing: every frame is a signal
        player.slider.setValue((player.slider.value() + 1) % 4)
    assert sys.getrefcount(True) >= before - 100

    for name in ("clip.gif", "clip.mp4"):
        path = tmp_path / name
        assert export(entry, path) == [path, sidecar_path(path)]
        frames = iio.imread(path, index=None)
        assert frames.shape[0] == 4 and frames.shape[-1] in (3, 4)
        side = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
        assert (side["generator"], side["frames"], side["file"]) == ("toy-video", 4, name)
    # The GIF keeps the pixels exactly; the MP4 is enlarged (tiny clips) and lossy.
    assert np.array_equal(iio.imread(tmp_path / "clip.gif", index=None)[..., :3], entry.samples[0].data)


def test_recall_puts_an_outputs_settings_back(qtbot, panel, errors):
    pick(panel, "text-tiny")
    panel.prompt_edit.setPlainText("ANNA:")
    panel.seed_spin.setValue(11)
    set_fields(panel, temperature=0.5, max_new_tokens=20, stop='["\\n"]')
    text_entry = run_to_end(qtbot, panel, errors)
    set_fields(panel, temperature=1.5, max_new_tokens=99, stop="[]")  # then carry on elsewhere
    panel.prompt_edit.setPlainText("CLARA:")
    panel.seed_spin.setValue(3)
    pick(panel, "toy-image")
    run_to_end(qtbot, panel, errors)
    assert panel.history_list.count() == 2
    assert "toy-image" in panel.history_list.item(0).text()

    panel.history_list.setCurrentRow(1)  # the text output: shown again, with its lineage
    assert panel.selected_entry() is text_entry
    assert panel.text_view.toPlainText() == text_entry.samples[0].data
    qtbot.mouseClick(panel.recall_button, Qt.MouseButton.LeftButton)

    assert Path(panel.selected_run()).name == "text-tiny"
    assert panel.checkpoint_combo.currentData() == "step_0000020"
    raw = panel.form.raw_values()
    assert (raw["temperature"], raw["max_new_tokens"], json.loads(raw["stop"])) == ("0.5", "20", ["\n"])
    assert panel.seed_spin.value() == 11 and panel.prompt_edit.toPlainText() == "ANNA:"
    assert panel.generate_button.isEnabled()


def test_a_bad_parameter_disables_generate_with_the_reason(qtbot, panel):
    pick(panel, "text-tiny")
    set_fields(panel, temperature=-1)
    assert not panel.generate_button.isEnabled()
    assert "temperature" in panel.problem_label.text() and ">= 0" in panel.problem_label.text()
    assert not panel.generate()
    set_fields(panel, temperature=0.7)
    assert panel.generate_button.isEnabled() and panel.problem_label.text() == ""


def test_a_damaged_checkpoint_shows_the_error_and_the_panel_stays_usable(qtbot, errors, runs_folder,
                                                                          tmp_path):
    folder = tmp_path / "runs"
    shutil.copytree(runs_folder / "toy-image", folder / "damaged")
    weights = folder / "damaged" / "checkpoints" / "step_0000005" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    panel = make_panel(qtbot, folder)
    assert panel.generate()
    qtbot.waitUntil(lambda: not panel.busy, timeout=WAIT_MS)
    assert len(errors) == 1 and "is damaged" in errors[0] and "model.safetensors" in errors[0]
    assert panel.history == [] and panel.generate_button.isEnabled()


def test_weights_used_from_a_checkpoint_with_a_damaged_state_say_so(qtbot, errors, runs_folder, tmp_path):
    """state.json damaged, weights intact (they carry their own hash): the window samples from
    them, as `studio generate` does, and its status line says what is damaged."""
    folder = tmp_path / "runs"
    shutil.copytree(runs_folder / "toy-image", folder / "half-damaged")
    (folder / "half-damaged" / "checkpoints" / "step_0000005" / "state.json").write_text('{"step": ')
    panel = make_panel(qtbot, folder)
    entry = run_to_end(qtbot, panel, errors)
    assert entry.lineage["checkpoint"] == "step_0000005"
    assert "state.json is not valid JSON" in panel.status_label.text()


def test_empty_state_then_new_and_opened_runs_are_picked_up(qtbot, errors, runs_folder, tmp_path,
                                                            monkeypatch):
    monkeypatch.setattr(api, "demo_runs", lambda: [])  # only this folder's runs
    folder = tmp_path / "runs"
    folder.mkdir()
    panel = make_panel(qtbot, folder)
    assert panel.problem_label.text() == EMPTY_RUNS and not panel.empty_label.isHidden()
    assert not panel.generate_button.isEnabled() and not panel.run_combo.isEnabled()
    assert not panel.export_button.isEnabled() and not panel.recall_button.isEnabled()

    shutil.copytree(runs_folder / "toy-video", folder / "fresh")
    panel.session.runs_changed.emit()
    assert [Path(r["run"]).name for r in panel.rows] == ["fresh"]
    assert panel.generate_button.isEnabled() and panel.empty_label.isHidden()

    panel.session.open_run(str(runs_folder / "text-tiny"))  # e.g. opened in the Runs tab
    assert Path(panel.selected_run()).name == "text-tiny"
    assert not panel.prompt_edit.isHidden() and "temperature" in panel.form.widgets

    elsewhere = tmp_path / "elsewhere"  # opened from outside the runs folder, then deleted
    shutil.copytree(runs_folder / "text-tiny", elsewhere)
    panel.session.open_run(str(elsewhere))
    assert panel.selected_run() == str(elsewhere)
    shutil.rmtree(elsewhere)
    panel.session.runs_changed.emit()
    assert [Path(r["run"]).name for r in panel.rows] == ["fresh", "text-tiny"]  # still on disk


# --- Count > 1, Stop latency (issue 10, item 6) ------------------------------------------------

@dataclass
class NoParams:
    pass


class Endless:
    """A generator that never ends by itself and counts what it made: text token by token,
    images by sample() calls."""

    name, version, device, SampleConfig, weights_note = "endless", "0", "cpu", NoParams, None

    def __init__(self, length=None):
        self.tokens, self.calls, self.length = 0, [], length  # tokens per text (None: endless)

    def stream(self, params, seed=0, prompt=None):
        made = 0
        while self.length is None or made < self.length:
            self.tokens += 1
            made += 1
            yield f"<{seed}>"

    def sample(self, params, n=1, seed=0, prompt=None):
        self.calls.append((n, seed))
        return [Sample("image", np.zeros((4, 4, 3), np.uint8), {"seed": seed + i}) for i in range(n)]


class CancelAfter:
    """A task context whose user presses Stop when the `nth` progress event of `kind` arrives."""

    def __init__(self, kind, nth):
        self.kind, self.nth, self.seen, self.cancelled = kind, nth, 0, False

    def progress(self, value):
        if value[0] == self.kind:
            self.seen += 1
            self.cancelled = self.cancelled or self.seen >= self.nth


class Loaded:
    def __init__(self, gen):
        self.gen = gen

    def get(self, run, checkpoint, device):
        return self.gen, SimpleNamespace(name="step_0000001")


def request(count, stream):
    return generate_panel.Request(run="runs/endless", checkpoint="latest", device="cpu",
                                  params={}, seed=5, count=count, prompt="Q:", stream=stream)


def test_text_of_count_two_streams_one_sample_after_another_and_stops_within_a_token():
    gen = Endless(length=3)
    entry = generate_panel.produce(CancelAfter("piece", 99), Loaded(gen), request(2, stream=True))
    assert [s.data for s in entry.samples] == ["Q:<5><5><5>", "Q:<6><6><6>"]  # seed, seed + 1
    assert not entry.lineage["stopped"]

    gen = Endless(length=3)
    entry = generate_panel.produce(CancelAfter("piece", 5), Loaded(gen), request(3, stream=True))
    assert gen.tokens == 5  # Stop came with the fifth token: no sixth was made
    assert entry.lineage["stopped"] and entry.lineage["count"] == 3
    assert [s.data for s in entry.samples] == ["Q:<5><5><5>", "Q:<6><6>"]  # kept as made


def test_stop_ends_images_within_one_batch():
    gen = Endless()
    entry = generate_panel.produce(CancelAfter("made", 1), Loaded(gen), request(50, stream=False))
    assert gen.calls == [(generate_panel.IMAGE_BATCH, 5)]  # one batch, then it stopped
    assert entry.lineage["stopped"] and len(entry.samples) == generate_panel.IMAGE_BATCH
    gen = Endless()
    entry = generate_panel.produce(CancelAfter("made", 99), Loaded(gen), request(20, stream=False))
    assert gen.calls == [(8, 5), (8, 13), (4, 21)]  # batches continue the seeds
    assert not entry.lineage["stopped"] and len(entry.samples) == 20


def test_stop_ends_clips_within_the_clip_being_made():
    class EndlessClips(Endless):
        modality = "video"

        def sample(self, params, n=1, seed=0, prompt=None):
            self.calls.append((n, seed))
            return [Sample("video", np.zeros((3, 4, 4, 3), np.uint8), {"seed": seed + i}) for i in range(n)]

    gen = EndlessClips()
    entry = generate_panel.produce(CancelAfter("made", 2), Loaded(gen), request(16, stream=False))
    assert gen.calls == [(1, 5), (1, 6)]  # a clip at a time: Stop came after the second
    assert entry.lineage["stopped"] and [s.meta["seed"] for s in entry.samples] == [5, 6]


class OneGrid(Endless):
    def sample(self, params, n=1, seed=0, prompt=None):
        self.calls.append((n, seed))
        return [Sample("image", np.zeros((4, 4 * n, 3), np.uint8), {"grid": n})]


def test_a_generator_that_makes_one_grid_gets_it_whole_not_in_batches():
    gen = OneGrid()
    entry = generate_panel.produce(CancelAfter("made", 99), Loaded(gen), request(20, stream=False))
    assert [s.meta["grid"] for s in entry.samples] == [20]  # a grid of all 20, not of the first 8


def test_text_of_count_two_streams_each_sample_and_stop_says_stopped(qtbot, panel, errors):
    pick(panel, "text-tiny")
    panel.prompt_edit.setPlainText("ANNA:")
    panel.text_view.setPlainText("THE PREVIOUS OUTPUT")
    panel.count_spin.setValue(2)
    set_fields(panel, max_new_tokens=100000)
    pieces = []
    panel.streamed.connect(pieces.append)
    assert panel.generate()
    assert "PREVIOUS" not in panel.text_view.toPlainText()  # cleared at once
    qtbot.waitUntil(lambda: len(pieces) >= 5, timeout=WAIT_MS)
    shown = panel.text_view.toPlainText()
    assert shown.startswith("— sample 1 of 2 · seed 0 —\nANNA:") and len(shown) > 30
    panel.stop()
    qtbot.waitUntil(lambda: not panel.busy, timeout=10_000)
    assert errors == []
    assert panel.status_label.text().startswith("Stopped") and "Done" not in panel.status_label.text()
    entry = panel.history[-1]
    assert entry.lineage["stopped"] and len(entry.samples) == 1  # what was made is kept
    assert "1 of 2 texts" in panel.history_list.item(0).text()


# --- interpolations (item 5) -------------------------------------------------------------------

def test_an_interpolation_plays_as_an_animation_and_exports_as_gif(qtbot, panel, errors, tmp_path,
                                                                  monkeypatch):
    pick(panel, "image")  # the shipped demo GAN
    set_fields(panel, interpolate_to=9, frames=8)
    entry = run_to_end(qtbot, panel, errors)
    assert entry.kind == "interpolation"
    assert "8 frames (interpolation)" in panel.history_list.item(0).text()
    (player,) = panel.grid.views
    assert isinstance(player, VideoPlayer) and len(player.frames) == 8 and player.playing

    target = tmp_path / "walk"
    monkeypatch.setattr(generate_panel.QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(target), "GIF animation (*.gif)"))
    qtbot.mouseClick(panel.export_button, Qt.MouseButton.LeftButton)
    assert errors == []
    frames = iio.imread(tmp_path / "walk.gif", index=None)
    assert frames.shape[0] == 8
    # GIF keeps 256 colours: the frame is the same picture, within its palette's rounding.
    assert np.abs(frames[3][..., :3].astype(int) - entry.samples[3].data).mean() < 6


# --- one current run (Confusing, item 1) --------------------------------------------------------

def test_the_panel_follows_the_current_run_and_choosing_one_sets_it(qtbot, panel, runs_folder):
    session = panel.session
    session.open_run(str(runs_folder / "toy-video"))
    assert Path(panel.selected_run()).name == "toy-video"
    session.run_changed.emit("")  # no current run: the choice stays
    assert Path(panel.selected_run()).name == "toy-video"

    names = [Path(r["run"]).name for r in panel.rows]
    index = names.index("text-tiny")
    panel.run_combo.setCurrentIndex(index)
    panel.run_combo.activated.emit(index)  # what a click in the list sends
    assert Path(session.current_run).name == "text-tiny" and session.generator == "text"
    assert Path(panel.selected_run()).name == "text-tiny"

    assert panel.run_combo.toolTip() == str(runs_folder / "text-tiny")  # the full path
    narrow = panel.run_combo.shown_text(90)
    full = panel.run_combo.currentText()
    assert "…" in narrow and narrow[0] == full[0] and narrow[-1] == full[-1]  # elided mid-way


# --- the history survives a restart (item: persist) ---------------------------------------------

def test_history_survives_a_restart_and_outlives_a_deleted_run(qtbot, errors, runs_folder, tmp_path):
    folder = tmp_path / "runs"
    shutil.copytree(runs_folder / "toy-image", folder / "doomed")
    first = make_panel(qtbot, folder)
    pick(first, "doomed")
    first.count_spin.setValue(2)
    made = run_to_end(qtbot, first, errors)

    again = make_panel(qtbot, folder, keep_history=True)
    assert len(again.history) == 1 and again.history_list.item(0).text() == made.title()
    again.history_list.setCurrentRow(0)
    assert [v.array.tolist() for v in again.grid.views] == [s.data.tolist() for s in made.samples]

    shutil.rmtree(folder / "doomed")
    later = make_panel(qtbot, folder, keep_history=True)
    later.history_list.setCurrentRow(0)
    assert "run deleted" in later.history_list.item(0).text()
    assert "deleted since" in later.lineage_label.text()
    qtbot.mouseClick(later.recall_button, Qt.MouseButton.LeftButton)
    assert len(errors) == 1 and "has been deleted" in errors[0] and "stay in the history" in errors[0]


# --- layout and polish ---------------------------------------------------------------------------

def test_generate_stays_in_view_at_900_by_600_and_a_single_image_fills_the_output(qtbot, panel,
                                                                                 errors):
    panel.resize(900, 600)
    panel.show()
    qtbot.waitExposed(panel)
    pick(panel, "image")  # the demo GAN has the longest form
    widget = panel.generate_button
    while widget is not None:  # the buttons are not in the scrolling settings
        assert not isinstance(widget, QScrollArea)
        widget = widget.parentWidget()
    corner = panel.generate_button.mapTo(panel, panel.generate_button.rect().bottomRight())
    assert panel.rect().contains(corner) and not panel.generate_button.visibleRegion().isEmpty()

    panel.resize(1600, 1000)
    pick(panel, "toy-image")
    run_to_end(qtbot, panel, errors)
    qtbot.wait(10)
    (view,) = panel.grid.views
    shown = view.shown_rect()
    assert shown.width() == shown.height() > 500  # an 8 px image, scaled up to the space


def test_text_wraps_sets_the_prompt_apart_and_copies(qtbot, panel, errors):
    pick(panel, "text-tiny")
    panel.prompt_edit.setPlainText("ANNA:")
    set_fields(panel, max_new_tokens=40)
    entry = run_to_end(qtbot, panel, errors)
    doc = panel.text_view.document()
    cursor = QTextCursor(doc)
    cursor.setPosition(2)
    assert cursor.charFormat().fontWeight() == QFont.Weight.Bold  # in the prompt
    cursor.setPosition(len(entry.samples[0].data))
    assert cursor.charFormat().fontWeight() != QFont.Weight.Bold  # in the continuation

    assert panel.copy_button.isVisibleTo(panel)
    qtbot.mouseClick(panel.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == entry.samples[0].data

    panel.resize(500, 400)
    panel.show()
    panel.text_view.show_texts(["x" * 5000])
    qtbot.wait(10)
    assert panel.text_view.horizontalScrollBar().maximum() == 0  # wrapped, no sideways scrolling


def test_ctrl_enter_generates_while_the_panel_has_the_focus(qtbot, panel):
    pick(panel, "toy-image")
    panel.show()
    qtbot.waitExposed(panel)
    panel.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is panel)
    panel.seed_spin.setFocus()
    qtbot.keyClick(panel.seed_spin, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert panel.busy
    qtbot.waitUntil(lambda: not panel.busy, timeout=WAIT_MS)
    assert len(panel.history) == 1

