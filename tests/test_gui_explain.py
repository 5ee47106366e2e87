"""Why a text model produced what it did, in the Generation panel: tokens coloured by their
probability (explain), a classifier's class bars and attributions, a tagger's entities, and
the attention heat-map (studio/gui/explain_view.py)."""

import shutil

import numpy as np
import pytest
from PySide6.QtGui import QColor, QGuiApplication, QPalette

from generators.text import TextGenerator
from studio import api
from studio.contract import Sample
from studio.errors import StudioError
from studio.gui import theme
from studio.gui.explain_view import (PROBABILITY_STOPS, AttentionView, ClassBars, EntityText,
                                     ExplainedSample, ExplanationView, attribution_colour,
                                     ATTRIBUTION_COLOURS, probability_colour)
from studio.gui.generate_panel import OutputEntry

from generate_panel_support import errors, make_panel, pick  # noqa: F401 (errors: a fixture)

QUIET = ["device=cpu", "eval_every=0", "preview_every=0"]
TINY_TEXT = ["n_layer=1", "n_head=2", "n_embd=16", "block_size=16"]
TINY_CLASSIFY = ["n_layer=1", "n_head=2", "n_embd=32", "block_size=64", "batch_size=16",
                 "lr=3e-3", "warmup_steps=5", "val_fraction=0.2", "task=classify"]
WAIT_MS = 20_000
THEME_TEXT = {"light": "#000000", "dark": "#e6e6e6"}  # the text each theme draws on a span


def tokens_meta():
    """An explained sample's records: the tokens of " sea." with made-up probabilities."""
    return [{"token": " ", "p": 0.9, "alternatives": [[" ", 0.9], ["\n", 0.05]]},
            {"token": "s", "p": 0.05, "alternatives": [["t", 0.6], ["w", 0.2], ["s", 0.05]]},
            {"token": "e", "p": 0.5, "alternatives": [["e", 0.5], ["a", 0.4]]},
            {"token": "a", "p": 0.99, "alternatives": [["a", 0.99]]},
            {"token": ".", "p": 0.3, "alternatives": [[",", 0.6], [".", 0.3]]}]


def explained_text(prompt="the"):
    return Sample("text", prompt + " sea.", {"prompt": prompt, "seed": 3, "tokens": tokens_meta()})


def classified(probabilities, labels=None, attributions=None):
    meta = {"prompt": "what a lovely mug", "task": "classify", "probabilities": probabilities}
    if labels is not None:
        meta["labels"] = labels
    if attributions is not None:
        meta["attributions"] = attributions
    data = ",".join(labels) if labels is not None else max(probabilities, key=probabilities.get)
    return Sample("text", data, meta)


def luminance(colour: QColor) -> float:
    def channel(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    return 0.2126 * channel(colour.red()) + 0.7152 * channel(colour.green()) + 0.0722 * channel(colour.blue())


def contrast(a: QColor, b: QColor) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.fixture(params=["light", "dark"])
def each_theme(request, monkeypatch):
    monkeypatch.setattr(theme, "_current", request.param)
    return request.param


# --- tokens coloured by probability --------------------------------------------------------------

def test_each_token_is_a_span_with_its_probability_and_alternatives_on_hover(qtbot, each_theme):
    section = ExplainedSample(explained_text())
    qtbot.addWidget(section)
    section.resize(500, 200)
    section.show()
    view = section.parts["tokens"]
    records = tokens_meta()
    text = view.toPlainText()
    assert text == "the sea."  # the prompt, then the tokens
    assert len(view.spans) == len(records)
    for span, record in zip(view.spans, records):
        assert text[span.start:span.end] == record["token"]
        assert span.colour == probability_colour(record["p"])
        assert f"p = {record['p']:.3f}" in span.tip
        for token, q in record["alternatives"]:
            assert f"“{'␣' if token == ' ' else '↵' if token == chr(10) else token}”  {q:.3f}" in span.tip
    # The tooltip shown on hover is the span's under the mouse.
    second = view.spans[1]
    assert view.span_at(view.span_rect(second).center()) is second
    assert "Likeliest tokens here" in second.tip and "“t”  0.600" in second.tip
    # The prompt is not a token: no span, no colour, no tooltip.
    assert view.spans[0].start == len("the")
    prompt_char = view.span_rect(type(second)(0, 1, QColor(), ""))
    assert view.span_at(prompt_char.center()) is None


def test_token_colours_run_from_red_through_amber_to_blue_as_p_rises(each_theme):
    ps = [0.0, 0.05, 0.2, 0.4, 0.5, 0.6, 0.8, 0.95, 1.0]
    colours = [probability_colour(p) for p in ps]
    hues = [c.hueF() for c in colours]  # red 0, amber 1/8, blue 1/2+
    assert all(a < b for a, b in zip(hues, hues[1:])), hues
    assert hues[0] < 0.06 and 0.1 < probability_colour(0.5).hueF() < 0.15 and hues[-1] > 0.5
    stops = PROBABILITY_STOPS[each_theme]
    assert colours[0] == QColor(stops[0][1]) and colours[-1] == QColor(stops[-1][1])
    # Legible: the theme's text on every colour of the scale.
    assert min(contrast(c, QColor(THEME_TEXT[each_theme])) for c in colours) >= 4.5


def test_plain_or_malformed_samples_are_not_explained(qtbot):
    view = ExplanationView()
    qtbot.addWidget(view)
    assert not view.show_samples([Sample("text", "plain", {"prompt": None})])
    assert not view.show_samples([Sample("text", "odd", {"tokens": [{"token": "a"}]})])  # no p
    assert not view.show_samples([Sample("text", "odd", {"probabilities": ["a", "b"]})])
    assert view.show_samples([Sample("text", "odd", {}), explained_text()])
    assert [bool(s.parts) for s in view.sections] == [False, True]


# --- a classifier's answer -----------------------------------------------------------------------

def bar_colour(bars: ClassBars, index: int) -> QColor:
    image = bars.grab().toImage()
    rect = bars.bar_rects()[index]
    return QColor(image.pixel(rect.left() + 2, rect.center().y()))


def test_class_bars_are_sorted_their_lengths_follow_p_and_the_answer_is_highlighted(qtbot):
    bars = ClassBars({"negative": 0.2, "positive": 0.7, "neutral": 0.1}, ["positive"], False)
    qtbot.addWidget(bars)
    bars.resize(420, bars.sizeHint().height())
    assert [(b.name, b.chosen) for b in bars.bars] == [("positive", True), ("negative", False),
                                                       ("neutral", False)]
    widths = [r.width() for r in bars.bar_rects()]
    assert widths[0] > widths[1] > widths[2] > 0
    full = widths[0] / 0.7
    assert abs(widths[1] - 0.2 * full) <= 1 and abs(widths[2] - 0.1 * full) <= 1
    assert bars.threshold_x() is None  # one label: no threshold
    highlight = bars.palette().color(QPalette.ColorRole.Highlight)
    assert bar_colour(bars, 0) == highlight
    assert bar_colour(bars, 1) != highlight and bar_colour(bars, 2) != highlight


def test_several_labels_highlight_each_chosen_class_and_mark_the_threshold(qtbot):
    section = ExplainedSample(classified({"shipping": 0.8, "refund": 0.55, "other": 0.1},
                                         labels=["shipping", "refund"]))
    qtbot.addWidget(section)
    bars = section.parts["bars"]
    bars.resize(420, bars.sizeHint().height())
    assert [b.chosen for b in bars.bars] == [True, True, False]
    track_left = bars.bar_rects()[0].left()
    full = bars.bar_rects()[0].width() / 0.8
    assert abs(bars.threshold_x() - (track_left + 0.5 * full)) <= 1
    highlight = bars.palette().color(QPalette.ColorRole.Highlight)
    assert [bar_colour(bars, i) == highlight for i in range(3)] == [True, True, False]


def ig(scores, pieces=None):
    return {"method": "integrated_gradients", "baseline": "zero token embedding", "steps": 32,
            "target": "positive", "pieces": pieces or [f"w{i}" for i in range(len(scores))],
            "scores": scores, "completeness_gap": 0.0012}


def test_attributions_colour_pieces_for_and_against_the_target_and_name_the_method(qtbot, each_theme):
    scores = [0.8, -0.4, 0.0, -0.8, 0.2]
    section = ExplainedSample(classified({"positive": 0.9, "negative": 0.1},
                                         attributions=ig(scores, ["what", " a", " ", " bad", "!"])))
    qtbot.addWidget(section)
    view = section.parts["attributions"]
    assert view.toPlainText() == "what a  bad!"
    colours = ATTRIBUTION_COLOURS[each_theme]
    for span, score in zip(view.spans, scores):
        assert span.colour == attribution_colour(score, 0.8)
        assert f"score {score:+.4f}" in span.tip and "“positive”" in span.tip
    assert view.spans[0].colour == QColor(colours["for"])  # the largest |score|: full colour
    assert view.spans[3].colour == QColor(colours["against"])
    assert view.spans[2].colour == QColor(colours["zero"])
    towards, away = view.spans[4].colour, view.spans[1].colour  # the side decides the hue
    assert towards.blue() > towards.red() and away.red() > away.blue()
    caption = section.parts["attribution_caption"].text()
    assert "integrated gradients, 32 steps, zero token embedding baseline" in caption
    assert "“positive”" in caption
    # Readable in both themes, even at full strength.
    for side in ("for", "against"):
        assert contrast(QColor(colours[side]), QColor(THEME_TEXT[each_theme])) >= 4.5


# --- a tagger's answer ---------------------------------------------------------------------------

def test_entities_are_highlighted_by_type(qtbot):
    words = "Alice Smith bought a Kettle in Paris".split()
    found = [{"type": "PER", "text": "Alice Smith", "start": 0, "end": 1},
             {"type": "PRODUCT", "text": "Kettle", "start": 4, "end": 4},
             {"type": "LOC", "text": "Paris", "start": 6, "end": 6}]
    sample = Sample("text", "…", {"prompt": " ".join(words), "task": "tag", "words": words,
                                  "tags": [], "entities": found})
    section = ExplainedSample(sample)
    qtbot.addWidget(section)
    view: EntityText = section.parts["entities"]
    text = view.toPlainText()
    assert text == "Alice Smith PER bought a Kettle PRODUCT in Paris LOC"
    named = [s for s in view.spans if text[s.start:s.end] in ("Alice Smith", "Kettle", "Paris")]
    assert [text[s.start:s.end] for s in named] == ["Alice Smith", "Kettle", "Paris"]
    assert named[0].tip == "PER: Alice Smith"
    assert len({s.colour.name() for s in named}) == 3  # three types, three colours
    assert all(s.colour == named[0].colour for s in view.spans[:2])  # an entity and its type label


# --- attention -----------------------------------------------------------------------------------

class StubAttention:
    """What a generator's `attention` answers: causal rows that add up to 1."""

    def __init__(self, fail=None):
        self.fail = fail
        self.asked = []

    def attention(self, text, layer=0, head=0):
        self.asked.append((text, layer, head))
        if self.fail is not None:
            raise self.fail
        pieces = list(text)
        n = len(pieces)
        weights = [[(1.0 / (i + 1) if j <= i else 0.0) for j in range(n)] for i in range(n)]
        weights[n - 1] = [0.0] * (n - 1) + [1.0] if layer == 1 else weights[n - 1]
        return {"pieces": pieces, "weights": weights, "layer": layer, "head": head,
                "layers": 2, "heads": 4}


def attention_view(qtbot, stub, text="abcd"):
    view = AttentionView(lambda t, layer, head: stub.attention(t, layer=layer, head=head), text)
    qtbot.addWidget(view)
    view.refresh()
    qtbot.waitUntil(lambda: not view.busy, timeout=WAIT_MS)
    return view


def test_the_attention_view_shows_the_weights_it_is_given(qtbot):
    stub = StubAttention()
    view = attention_view(qtbot, stub)
    expected = np.array(stub.attention("abcd")["weights"])
    assert view.pieces == ["a", "b", "c", "d"]
    np.testing.assert_allclose(view.heat.image, expected.T)  # x: key, y: query
    assert (view.layer_spin.maximum(), view.head_spin.maximum()) == (1, 3)  # the model's shape
    ticks = view.plot.getAxis("bottom")._tickLevels[0]
    assert [label for _, label in ticks] == ["a", "b", "c", "d"]
    assert view.cell_text(3, 1) == "“d” (3) attends to “b” (1): 0.250"
    view.layer_spin.setValue(1)  # another layer: asked again, shown again
    qtbot.waitUntil(lambda: not view.busy and stub.asked[-1] == ("abcd", 1, 0), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: view.heat.image[3, 3] == 1.0, timeout=WAIT_MS)
    assert "Layer 1, head 0" in view.message_label.text()


@pytest.mark.parametrize("fail, shown", [
    (StudioError("layer 7 does not exist: the model has 2 layers (0-1)."),
     "layer 7 does not exist: the model has 2 layers (0-1)."),
    (ValueError("shapes do not match"), "ValueError: shapes do not match"),
    (SystemExit(3), "SystemExit: 3"),
])
def test_an_attention_that_fails_shows_a_message_not_a_crash(qtbot, fail, shown):
    view = attention_view(qtbot, StubAttention(fail=fail))
    assert shown in view.message_label.text() and "Traceback" not in view.message_label.text()
    assert view.weights is None


def test_a_malformed_attention_answer_is_reported(qtbot):
    class Ragged(StubAttention):
        def attention(self, text, layer=0, head=0):
            return {"pieces": list(text), "weights": [[1.0]]}

    view = attention_view(qtbot, Ragged())
    assert "4 pieces need 4 x 4" in view.message_label.text()


# --- in the panel --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory):
    """A tiny text run and a tiny classifier, trained once for the module."""
    root = tmp_path_factory.mktemp("runs")
    corpus = root.parent / "corpus.txt"
    words = "the sea is calm and the night is long we sail at dawn to find the light".split()
    corpus.write_text("\n".join(" ".join(words[(i * 5 + j) % len(words)] for j in range(9))
                                for i in range(200)), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDIO_CACHE_DIR", str(root.parent / "cache"))
        api.train("text", data=str(corpus), run_dir=str(root / "text-tiny"), max_steps=20,
                  events="none", settings=QUIET + TINY_TEXT)
        api.train("text", data="builtin:sentiment", run_dir=str(root / "classify-tiny"),
                  max_steps=20, events="none", settings=QUIET + TINY_CLASSIFY)
    return root


def run_to_end(qtbot, panel, errors):
    before = len(panel.history)
    assert panel.generate(), panel.problem()
    qtbot.waitUntil(lambda: not panel.busy, timeout=WAIT_MS)
    assert errors == []
    assert len(panel.history) == before + 1
    return panel.history[-1]


def test_explain_tokens_is_one_control_for_the_setting_and_colours_a_real_run(qtbot, runs_folder,
                                                                              errors):
    panel = make_panel(qtbot, runs_folder)
    pick(panel, "text-tiny")
    field = panel.form.widgets["explain"]
    assert not panel.explain_box.isHidden() and panel.explain_box.text() == "Explain tokens"
    assert not panel.form.layout().isRowVisible(field)  # not a second control for it
    assert not panel.explain_box.isChecked() and not field.isChecked()  # plain text by default
    panel.explain_box.setChecked(True)
    assert field.isChecked() and panel._request().params["explain"] is True
    panel.prompt_edit.setPlainText("the sea")
    panel.form.widgets["max_new_tokens"].setText("12")
    panel.count_spin.setValue(2)

    entry = run_to_end(qtbot, panel, errors)
    assert [s.meta["seed"] for s in entry.samples] == [0, 1]
    # The same texts as the API's explained samples of those seeds.
    for sample in entry.samples:
        again = api.generate(str(runs_folder / "text-tiny"), prompt="the sea", seed=sample.meta["seed"],
                             settings=["max_new_tokens=12"], device="cpu", explain=True)[0]
        assert sample.data == again.data and sample.meta["tokens"] == again.meta["tokens"]
    assert panel.output_stack.currentWidget() is panel.explanation_view
    assert not panel.show_explanation_box.isHidden()
    views = [section.parts["tokens"] for section in panel.explanation_view.sections]
    for view, sample in zip(views, entry.samples):
        records = sample.meta["tokens"]
        assert len(view.spans) == len(records) == 12
        assert [s.colour for s in view.spans] == [probability_colour(r["p"]) for r in records]
        assert view.toPlainText().startswith("the sea")
    # Copy gives the plain texts, headers and all, not the explanation.
    panel.copy_text()
    assert QGuiApplication.clipboard().text() == panel.text_view.toPlainText()
    assert entry.samples[1].data in panel.text_view.toPlainText()
    # Plain text at a click.
    panel.show_explanation_box.setChecked(False)
    assert panel.output_stack.currentWidget() is panel.text_view
    panel.show_explanation_box.setChecked(True)
    assert panel.output_stack.currentWidget() is panel.explanation_view

    # Recalled, the setting comes back on the check box too.
    panel.explain_box.setChecked(False)
    panel.recall(entry)
    assert panel.explain_box.isChecked()


def test_explanations_survive_a_restart_and_older_entries_still_show(qtbot, runs_folder, errors,
                                                                     tmp_path):
    folder = tmp_path / "runs"
    shutil.copytree(runs_folder / "text-tiny", folder / "text-tiny")
    first = make_panel(qtbot, folder)
    lineage = {"run": str(folder / "text-tiny"), "checkpoint": "step_0000020", "generator": "text",
               "generator_version": "0.2.0", "params": {}, "seed": 3, "prompt": "the",
               "count": 1, "time": "now", "device": "cpu", "stopped": False}
    first._remember(OutputEntry([Sample("text", "the old text", {"prompt": "the", "seed": 3})],
                                dict(lineage), created=1000.0))
    first._remember(OutputEntry([explained_text()], dict(lineage), created=2000.0))

    again = make_panel(qtbot, folder, keep_history=True)
    assert len(again.history) == 2
    again.history_list.setCurrentRow(0)  # the newest: explained
    assert again.output_stack.currentWidget() is again.explanation_view
    view = again.explanation_view.sections[0].parts["tokens"]
    assert [s.tip for s in view.spans] == [s.tip for s in
                                           ExplainedSample(explained_text()).parts["tokens"].spans]
    again.history_list.setCurrentRow(1)  # older, without an explanation: plain text as before
    assert again.output_stack.currentWidget() is again.text_view
    assert again.text_view.toPlainText() == "the old text"
    assert again.show_explanation_box.isHidden()


def test_a_classifier_answers_with_class_bars(qtbot, runs_folder, errors):
    panel = make_panel(qtbot, runs_folder)
    pick(panel, "classify-tiny")
    assert panel.explain_box.text() == "Explain the answer"
    panel.prompt_edit.setPlainText("This mug is lovely, I use it every day.")
    entry = run_to_end(qtbot, panel, errors)
    sample = entry.samples[0]
    probabilities = sample.meta["probabilities"]
    assert panel.output_stack.currentWidget() is panel.explanation_view
    bars = panel.explanation_view.sections[0].parts["bars"]
    assert [b.name for b in bars.bars] == sorted(probabilities, key=probabilities.get, reverse=True)
    assert [b.chosen for b in bars.bars] == [b.name == sample.data for b in bars.bars]
    assert bars.bars[0].name == sample.data
    assert panel.text_view.toPlainText() == sample.data  # copy and export: the label


def test_the_panel_opens_the_attention_of_the_shown_text(qtbot, runs_folder, errors, monkeypatch):
    stub = StubAttention()
    monkeypatch.setattr(TextGenerator, "attention",
                        lambda self, text, layer=0, head=0: stub.attention(text, layer, head),
                        raising=False)
    panel = make_panel(qtbot, runs_folder)
    pick(panel, "text-tiny")
    assert not panel.attention_button.isHidden()
    panel._remember(OutputEntry([Sample("text", "the sea", {"prompt": "the"})],
                                {"run": str(runs_folder / "text-tiny"), "checkpoint": "latest",
                                 "generator": "text", "generator_version": "0.2.0", "params": {},
                                 "seed": 0, "prompt": "the", "count": 1, "time": "now",
                                 "device": "cpu", "stopped": False}))
    panel.history_list.setCurrentRow(0)
    panel.open_attention()
    view = panel.attention_dialog.attention_view
    qtbot.waitUntil(lambda: not view.busy, timeout=WAIT_MS)
    assert stub.asked == [("the sea", 0, 0)]
    assert view.pieces == list("the sea")

    stub.fail = RuntimeError("CUDA out of memory")
    view.head_spin.setValue(2)
    qtbot.waitUntil(lambda: not view.busy and len(stub.asked) == 2, timeout=WAIT_MS)
    assert "RuntimeError: CUDA out of memory" in view.message_label.text()
    assert errors == []  # a message in the view, no dialog and no crash


def test_an_explained_real_classifier_answer_shows_its_attributions(qtbot, runs_folder, errors):
    panel = make_panel(qtbot, runs_folder)
    pick(panel, "classify-tiny")
    panel.explain_box.setChecked(True)
    panel.prompt_edit.setPlainText("Great mug.")
    entry = run_to_end(qtbot, panel, errors)
    doc = entry.samples[0].meta["attributions"]
    section = panel.explanation_view.sections[0]
    view = section.parts["attributions"]
    assert [view.toPlainText()[s.start:s.end] for s in view.spans] == doc["pieces"]
    scale = max(abs(s) for s in doc["scores"])
    assert [s.colour for s in view.spans] == [attribution_colour(x, scale) for x in doc["scores"]]
    assert doc["target"] == entry.samples[0].data
    caption = section.parts["attribution_caption"].text()
    assert f"integrated gradients, {doc['steps']} steps" in caption and f"“{doc['target']}”" in caption


def test_the_real_attention_of_a_text_run_and_its_refusal_of_a_missing_layer(qtbot, runs_folder,
                                                                            errors):
    panel = make_panel(qtbot, runs_folder)
    pick(panel, "text-tiny")
    assert not panel.attention_button.isHidden()
    panel.prompt_edit.setPlainText("the sea")
    panel.open_attention()
    view = panel.attention_dialog.attention_view
    qtbot.waitUntil(lambda: not view.busy and view.weights is not None, timeout=WAIT_MS)
    expected = api.load_run(str(runs_folder / "text-tiny"), None, "cpu")[1].attention("the sea")
    assert view.pieces == expected["pieces"]
    np.testing.assert_allclose(view.heat.image, np.array(expected["weights"]).T, atol=1e-6)
    assert (view.layer_spin.maximum(), view.head_spin.maximum()) == (0, 1)  # 1 block, 2 heads

    view.layer_spin.setMaximum(5)  # asked for a block the model lacks: its own words, shown
    view.layer_spin.setValue(3)
    qtbot.waitUntil(lambda: not view.busy and "could not" in view.message_label.text(),
                    timeout=WAIT_MS)
    assert "layer" in view.message_label.text() and "Traceback" not in view.message_label.text()
    assert errors == []
