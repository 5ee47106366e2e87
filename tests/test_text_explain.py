"""Outputs that explain themselves: integrated-gradients attributions of a classifier's answer
to the tokens it read, the attention view of any text run, and notes that say what happened
to each sample (not what could have).

The classifier is trained in a module fixture on made-up texts whose class is decided by one
letter among filler letters (z: yes, q: no), so which token should count is known."""

import json
import random
from pathlib import Path

import pytest
import torch

from generators.text import TextConfig, TextGenerator, TextSampleConfig
from generators.text.explain import integrated_gradients, integrated_gradients_within
from generators.text.tokenizer import END, PROMPT, RESPONSE, CharTokenizer
from studio import api
from studio.cli import main
from studio.errors import StudioError

QUIET = ["device=cpu", "eval_every=0", "preview_every=0"]
TINY = ["n_layer=1", "n_head=2", "n_embd=32", "block_size=64", "batch_size=16"]
FAST = ["lr=3e-3", "warmup_steps=10", "val_fraction=0.2"]
DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


def keyword_rows(count=240, seed=0):
    """Texts of filler letters with one deciding letter somewhere: z for yes, q for no."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = "yes" if i % 2 else "no"
        filler = [rng.choice("abcde ") for _ in range(rng.randint(6, 14))]
        filler.insert(rng.randint(0, len(filler)), "z" if label == "yes" else "q")
        rows.append({"text": "".join(filler), "label": label})
    return rows


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keyword")
    data = folder / "keyword.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in keyword_rows()))
    _, run = api.train("text", data=str(data), run_dir=str(folder / "run"), max_steps=100,
                       events="none", settings=QUIET + TINY + FAST + ["task=classify"])
    return str(run.path)


@pytest.fixture(scope="module")
def loaded(classifier):
    return api.load_run(classifier, device="cpu")[1]


def explained(gen, text):
    return gen.sample(TextSampleConfig(explain=True), prompt=text)[0]


# --- integrated gradients ----------------------------------------------------------------------

def test_integrated_gradients_of_a_linear_function_is_input_times_weight():
    weights, inputs = torch.randn(5, 3), torch.randn(5, 3)
    result = integrated_gradients(lambda points: (points * weights).sum((1, 2)), inputs, steps=4)
    assert torch.allclose(result.scores, (inputs * weights).sum(1), atol=1e-5)
    assert result.at_baseline == 0 and result.completeness_gap < 1e-4


def test_completeness_gap_shrinks_with_more_steps(loaded):
    ids = loaded.task.encode(["ab dqeca bd"]).ids[0]
    model = loaded.model
    idx = torch.as_tensor(ids)[None]

    def no_logit(points):
        return model(idx.expand(len(points), -1), torch.full((len(points),), len(ids)),
                     token_embeddings=points)[:, loaded.task.names.index("no")]

    tokens = model.transformer.wte(idx)[0].detach()
    gaps = [integrated_gradients(no_logit, tokens, steps=steps).completeness_gap
            for steps in (8, 64, 512)]
    ends = integrated_gradients(no_logit, tokens, steps=1)
    change = abs(ends.at_input - ends.at_baseline)
    assert gaps[2] < gaps[1] < gaps[0] and gaps[2] < 0.01 * change, (gaps, change)
    result, steps = integrated_gradients_within(no_logit, tokens, 0.01, steps=8, max_steps=512)
    assert result.completeness_gap <= 0.01 * max(change, 1) and 8 <= steps <= 512


# --- attributions of a classifier's answer -----------------------------------------------------

def test_attributions_give_one_score_per_piece_read_and_add_up_to_the_logit_change(loaded):
    text = "ab qde cab"
    answer = explained(loaded, text)
    found = answer.meta["attributions"]
    assert set(found) == {"method", "baseline", "steps", "target", "pieces", "scores",
                          "completeness_gap"}
    assert found["method"] == "integrated_gradients" and found["baseline"] == "zero token embedding"
    assert found["target"] == answer.data == "no"
    assert "".join(found["pieces"]) == text and len(found["scores"]) == len(text)
    assert all(isinstance(s, float) for s in found["scores"])
    change = abs(sum(found["scores"])) + found["completeness_gap"]
    assert found["completeness_gap"] <= 0.01 * max(change, 1)
    longer = "abcde " * 20 + "q"  # past the context of 64: the pieces are the tokens read
    assert "".join(explained(loaded, longer).meta["attributions"]["pieces"]) == longer[:64]


def test_the_deciding_letter_counts_most(loaded):
    for text in ("ab dqeca bd", "qabcdeabcde", "eeddcbaq"):
        found = explained(loaded, text).meta["attributions"]
        scores = dict(enumerate(found["scores"]))
        decisive = text.index("q")
        assert found["target"] == "no"
        assert all(scores[decisive] > score for i, score in scores.items() if i != decisive), found


def test_explaining_leaves_the_answer_and_the_model_alone(loaded):
    text = "cab zde"
    plain = loaded.sample(TextSampleConfig(), prompt=text)[0]
    assert "attributions" not in plain.meta
    loaded.model.train()  # eval mode for the attributions, and back
    try:
        with torch.no_grad():  # as api.generate calls it
            answer = explained(loaded, text)
        assert loaded.model.training
    finally:
        loaded.model.eval()
    assert answer.data == plain.data and answer.meta["probabilities"] == plain.meta["probabilities"]
    assert all(p.grad is None for p in loaded.model.parameters())


def test_generate_json_lists_the_attributions(classifier, capsys):
    assert main(["generate", classifier, "--prompt", "abc qde", "--json", "--device", "cpu"]) == 0
    answer = json.loads(capsys.readouterr().out)
    found = answer["meta"]["attributions"]
    assert found["pieces"] == list("abc qde") and len(found["scores"]) == 7


# --- the attention view ------------------------------------------------------------------------

def small_generator(fmt="text", block=32):
    gen = TextGenerator(TextConfig(block_size=block, n_layer=2, n_head=2, n_embd=32))
    gen.tokenizer = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ?.,")
    gen.format = fmt
    torch.manual_seed(0)
    gen.model = gen.build().eval()
    return gen


def test_attention_weights_are_the_blocks_causal_softmax_of_q_and_k():
    gen = small_generator()
    text, layer, head = "the cat sat on the mat", 1, 1
    view = gen.attention(text, layer=layer, head=head)
    # By hand: the residual stream up to the block, its first LayerNorm, q and k of the head.
    model, size = gen.model, 32 // 2
    ids = torch.tensor(gen.tokenizer.encode(text).tolist())
    with torch.no_grad():
        x = model.transformer.wte(ids) + model.transformer.wpe(torch.arange(len(ids)))
        x = model.transformer.h[0](x[None])[0]
        q, k, _ = model.transformer.h[layer].attn.c_attn(model.transformer.h[layer].ln_1(x)).split(32, -1)
        q, k = q[:, head * size:(head + 1) * size], k[:, head * size:(head + 1) * size]
        scores = q @ k.T / size ** 0.5
        scores[torch.ones(len(ids), len(ids)).triu(1).bool()] = float("-inf")
        expected = scores.softmax(-1)
    weights = torch.tensor(view["weights"])
    assert torch.allclose(weights, expected, atol=1e-6)
    assert view["pieces"] == list(text)
    assert (view["layer"], view["head"], view["layers"], view["heads"]) == (1, 1, 2, 2)
    assert torch.allclose(weights.sum(1), torch.ones(len(ids)), atol=1e-6)
    assert (weights.triu(1) == 0).all()


def test_attention_of_a_pairs_run_reads_the_prompt_as_it_answers_it():
    gen = small_generator(fmt="pairs")
    view = gen.attention("hours?", layer=0, head=0)
    assert view["pieces"] == [PROMPT, *"hours?", RESPONSE]
    assert len(view["weights"]) == 8 and view["weights"][0][0] == pytest.approx(1.0)


def test_attention_of_a_classifier_run(classifier):
    view = api.attention(classifier, "ab qde", layer=0, head=1, device="cpu")
    weights = torch.tensor(view["weights"])
    assert view["pieces"] == list("ab qde") and weights.shape == (6, 6)
    assert torch.allclose(weights.sum(1), torch.ones(6), atol=1e-6) and (weights.triu(1) == 0).all()


def test_attention_refuses_a_layer_or_head_out_of_range_and_empty_text():
    gen = small_generator()
    for layer, head in ((2, 0), (0, 2), (-1, 0)):
        with pytest.raises(StudioError) as refused:
            gen.attention("abc", layer=layer, head=head)
        said = str(refused.value)
        assert "layers 0 to 1" in said and "heads 0 to 1" in said and "--" not in said
    with pytest.raises(StudioError, match="no text"):
        gen.attention("")


def test_a_generator_without_an_attention_view_says_so():
    with pytest.raises(StudioError, match="this generator has no attention view"):
        api.attention(str(DEMO / "image"), "a", device="cpu")


# --- notes on the context, per sample ----------------------------------------------------------

def answering(gen, ends: bool):
    """The model made to end its answer at once (ends) or never."""
    forward, end_id = gen.model.forward, gen.tokenizer.special_id(END)

    def forced(idx, *args, **kwargs):
        logits, loss = forward(idx, *args, **kwargs)
        logits[..., end_id] = float("inf") if ends else float("-inf")
        return logits, loss

    gen.model.forward = forced


def test_a_pairs_answer_that_ends_in_time_has_no_note_about_sliding():
    params = TextSampleConfig(temperature=0, max_new_tokens=60)  # could outgrow the 32 tokens
    gen = small_generator(fmt="pairs")
    assert "can exceed the context of 32" in gen.context_note("hours?", params)
    answering(gen, ends=True)
    with torch.no_grad():
        sample = gen.sample(params, prompt="hours?")[0]
    assert sample.data == "" and "note" not in sample.meta
    gen = small_generator(fmt="pairs")
    answering(gen, ends=False)
    with torch.no_grad():
        sample = gen.sample(params, prompt="hours?")[0]
    assert "(8 + 60 tokens) outgrew the context of 32: the window slid" in sample.meta["note"]


def test_plain_text_that_stops_early_has_no_note_about_sliding():
    gen = small_generator(block=16)
    with torch.no_grad():
        full = gen.sample(TextSampleConfig(temperature=0, max_new_tokens=40), prompt="abc")[0]
        stop = full.data[3:8]  # stops after a few tokens, well within the context
        early = gen.sample(TextSampleConfig(temperature=0, max_new_tokens=40, stop=[stop]),
                           prompt="abc")[0]
    assert "outgrew the context of 16" in full.meta["note"]
    assert "note" not in early.meta


def test_a_one_block_model_names_its_only_layer():
    gen = TextGenerator(TextConfig(block_size=16, n_layer=1, n_head=2, n_embd=16))
    gen.tokenizer = CharTokenizer.train("abc")
    gen.model = gen.build().eval()
    with pytest.raises(StudioError, match="has only layer 0 and heads 0 to 1 in each; layer 1"):
        gen.attention("abc", layer=1)
