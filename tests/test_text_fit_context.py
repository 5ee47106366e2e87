"""Prompt/response examples that do not fit the context: cut from the left with the response
kept whole, or skipped with the numbers, and counted in the data report; generation that keeps
<|prompt|> in its window; the built-in customer-service pairs and the demo preset that fits them."""

import json

import numpy as np
import pytest
import torch

from generators.text import TextConfig, TextGenerator, TextSampleConfig
from generators.text.config import TextDeclarations
from generators.text.data import BUILTIN_PAIRS, builtin_corpus, detect_format, read_pairs
from generators.text.tokenizer import END, PROMPT, RESPONSE, CharTokenizer
from studio import api
from studio.cli import DEMOS, main
from studio.errors import StudioError

ALPHABET = "abcdefghijklmnopqrstuvwxyz ?.,"


def pairs_generator(block: int) -> TextGenerator:
    gen = TextGenerator(TextConfig(block_size=block, n_layer=2, n_head=2, n_embd=32))
    gen.tokenizer = CharTokenizer.train(ALPHABET)
    gen.format = "pairs"
    return gen


def special(gen, token: str) -> int:
    return gen.tokenizer.special_id(token)


def text_of(gen, ids) -> str:
    """Token ids as text, the framing tokens written as <P>, <R> and <E>."""
    names = {special(gen, PROMPT): "<P>", special(gen, RESPONSE): "<R>", special(gen, END): "<E>"}
    return "".join(names.get(int(i)) or gen.tokenizer.decode([int(i)]) for i in ids)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def test_a_long_prompt_is_cut_from_the_left_and_the_response_kept_whole():
    gen = pairs_generator(block=32)
    prompt, response = "the quick brown fox jumps over the lazy dog, again?", "yes."
    skipped = []
    [(ids, weights)] = gen._encode_examples([[(prompt, response)]], "qa.jsonl", skipped)
    assert skipped == []
    assert len(ids) == 33 and len(weights) == 33  # block_size inputs and their targets
    kept_prompt = prompt[-(33 - 1 - 1 - len(response) - 1):]  # <P> ... <R> response <E>
    assert text_of(gen, ids) == f"<P>{kept_prompt}<R>{response}<E>"
    assert weights[0] == 0 and weights[1:1 + len(kept_prompt) + 1].sum() == 0
    assert weights[-(len(response) + 1):].tolist() == [1.0] * (len(response) + 1)


def test_an_example_that_fits_is_left_as_it_is():
    gen = pairs_generator(block=32)
    whole = gen.encode_example([("hi?", "hello.")])
    [(ids, weights)] = gen._encode_examples([[("hi?", "hello.")]], "qa.jsonl", [])
    assert np.array_equal(ids, whole[0]) and np.array_equal(weights, whole[1])


def test_multi_turn_examples_lose_earlier_tokens_from_the_left():
    turns = [("aaaa", "bbbbbbbbbb"), ("cccc", "dddddd")]  # 17 + 13 tokens
    # A cut inside the first response: what is left of it is context, not a target.
    gen = pairs_generator(block=24)
    [(ids, weights)] = gen._encode_examples([turns], "chat.jsonl", [])
    assert text_of(gen, ids) == "<P>bbbbbbbbbb<E><P>cccc<R>dddddd<E>" and len(ids) == 25
    last_response = len(ids) - 7
    assert weights[:last_response].sum() == 0 and weights[last_response:].sum() == 7
    # A cut inside the first prompt keeps the first response whole, and learned.
    gen = pairs_generator(block=28)
    [(ids, weights)] = gen._encode_examples([turns], "chat.jsonl", [])
    assert text_of(gen, ids) == "<P>aaa<R>bbbbbbbbbb<E><P>cccc<R>dddddd<E>"
    assert weights.sum() == 11 + 7 and weights[:5].sum() == 0
    # A cut on a turn's start: that <|prompt|> opens the window, never two of them.
    gen = pairs_generator(block=13)
    [(ids, weights)] = gen._encode_examples([turns], "chat.jsonl", [])
    assert text_of(gen, ids) == "<P>cccc<R>dddddd<E>" and weights.sum() == 7


def test_a_response_too_long_for_the_context_is_skipped_with_the_numbers():
    gen = pairs_generator(block=16)
    response = "a very long answer indeed."  # 26 tokens: no room even without the prompt
    skipped = []
    kept = gen._encode_examples([[("ok?", "fine.")], [("why?", response)]], "qa.jsonl", skipped)
    assert len(kept) == 1
    [(where, reason)] = skipped
    needed = 1 + 4 + 1 + len(response)  # every token but the final <|end|> is read
    assert where == "qa.jsonl example 2"
    assert f"needs {needed} tokens of context, more than the model's 16" in reason
    assert f"its last response takes {1 + 1 + len(response)}" in reason
    assert f"block_size to at least {needed}" in reason


def test_the_data_report_counts_examples_over_the_context(tmp_path):
    rows = ([{"prompt": "hi?", "response": "hello."}] * 6
            + [{"prompt": "a question that is far too long for this context?", "response": "no."},
               {"prompt": "why?", "response": "because the answer is longer than the context."},
               {"prompt": "another rather long question for the window?", "response": "yes."}]
            + [{"prompt": "hi?", "response": "hello."}] * 2)
    data = write_jsonl(tmp_path / "qa.jsonl", rows)
    gen = TextGenerator(TextConfig(block_size=32, n_layer=2, n_head=2, n_embd=32))
    report = gen.load_data(data, None, tmp_path / "cache")
    longest = max(len(r["prompt"]) + len(r["response"]) + 2 for r in rows)
    summary = report.summary
    assert (summary["over_context"], summary["cut_to_context"], summary["skipped_too_long"]) == (3, 2, 1)
    assert summary["longest_tokens"] == longest
    assert summary["examples"] + summary["val_examples"] == len(rows) - 1
    [note] = [n for n in summary["notes"] if "context" in n]
    assert f"3 of {len(rows)} examples need more than the model's context of 32 tokens" in note
    assert f"the longest {longest}" in note and "2 cut from the left" in note and "1 skipped" in note
    assert [where for where, _ in report.skipped] == [f"{data} example 8"]


def test_data_where_nothing_fits_is_refused_with_the_numbers(tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": "q?", "response": "a long answer."}] * 3)
    gen = TextGenerator(TextConfig(block_size=8, n_layer=2, n_head=2, n_embd=32))
    with pytest.raises(StudioError, match="fits the context of 8 tokens .the longest needs 18.; "
                                          "raise block_size"):
        gen.load_data(data, None, tmp_path / "cache")


def test_pairs_generation_keeps_prompt_in_every_window():
    gen = pairs_generator(block=16)
    torch.manual_seed(0)
    gen.model = gen.build().eval()
    end_id = special(gen, END)
    windows = []
    forward = gen.model.forward

    def never_ending(idx, *args, **kwargs):
        """The model, made never to end its answer (so that the window slides), recording the
        windows it is given."""
        windows.append(idx[0].tolist())
        logits, loss = forward(idx, *args, **kwargs)
        logits[..., end_id] = float("-inf")
        return logits, loss

    gen.model.forward = never_ending
    params = TextSampleConfig(temperature=0, max_new_tokens=60)
    prompt = "what time do you open on a sunday?"
    with torch.no_grad():
        cached = gen.sample(params, prompt=prompt)[0].data
        windows.clear()
        recomputed = gen.sample(params, prompt=prompt, use_cache=False)[0].data
    assert cached == recomputed
    assert len(windows) == 60  # without the cache, each token is one full window
    kept_prompt = 16 - 16 // 4 - 2  # a quarter of the block is left for the answer
    assert text_of(gen, windows[0]) == f"<P>{prompt[-kept_prompt:]}<R>"
    assert all(w[0] == special(gen, PROMPT) and len(w) <= 16 for w in windows)
    assert special(gen, RESPONSE) not in windows[-1]  # it slid past the prompt, not past <P>
    note = gen.context_note(prompt, params)
    assert f"only its last {kept_prompt} are used (cut from the left" in note


def test_the_built_in_customer_service_pairs_fit_the_demo_context(tmp_path):
    assert detect_format(BUILTIN_PAIRS) == "pairs"
    examples, used, skipped = read_pairs(BUILTIN_PAIRS)
    assert used == [BUILTIN_PAIRS] and skipped == [] and len(examples) >= 35
    for [(prompt, response)] in examples:
        assert 15 <= len(prompt) <= 60 and 40 <= len(response) <= 120
        assert (prompt + response).isascii()
    demo = TextDeclarations.presets["demo"]
    gen = TextGenerator(TextConfig(**demo))
    gen.tokenizer = CharTokenizer.train(builtin_corpus())  # the demo's vocabulary
    report = gen.load_data(BUILTIN_PAIRS, None, tmp_path / "cache")
    assert report.summary["format"] == "pairs" and report.used == [BUILTIN_PAIRS]
    assert report.summary["examples"] + report.summary["val_examples"] == len(examples)
    assert report.summary["over_context"] == 0 and report.summary["longest_tokens"] <= 128
    assert report.summary["notes"] == []  # nothing over the context, no unknown characters
    assert gen.tokenizer.unknown_characters("".join(p + r for [(p, r)] in examples))[0] == 0
    assert api.inspect_data("text", BUILTIN_PAIRS).summary["format"] == "pairs"


def test_the_demo_preset_fits_short_questions_and_studio_demo_uses_it(tmp_path, monkeypatch):
    demo, tiny = TextDeclarations.presets["demo"], TextDeclarations.presets["tiny"]
    assert demo["block_size"] == 128 and demo.get("tokenizer", "char") == "char"
    assert {k: v for k, v in demo.items() if k not in ("block_size", "tokenizer")} == \
        {k: v for k, v in tiny.items() if k != "block_size"}
    assert DEMOS["text"]["preset"] == "demo"
    asked = {}

    def train(generator, **kwargs):
        asked.update(kwargs, generator=generator)
        raise StudioError("stopped before training")

    monkeypatch.setattr(api, "train", train)
    assert main(["demo", "text", "--run-dir", str(tmp_path / "demo")]) == 2
    assert asked["generator"] == "text" and asked["preset"] == "demo"


def test_the_shipped_demo_fine_tuned_on_the_built_in_pairs_answers_a_customer(tmp_path, capsys):
    """The seed scenario end to end, as a user runs it: the window's first-launch text model
    (assets/demo/text, context 128) fine-tuned with its defaults on builtin:customer-service
    answers a trained question with the whole answer and stops at <|end|>, instead of running
    on into spaces as the 64-token demo did."""
    from pathlib import Path
    demo = Path(__file__).resolve().parents[1] / "assets" / "demo" / "text"
    run = tmp_path / "shop"
    assert main(["train", "text", "--init-from", str(demo), "--data", "builtin:customer-service",
                 "--run-dir", str(run), "--events", "none"]) == 0
    capsys.readouterr()
    assert main(["generate", str(run), "--prompt", "Can I return my mug?",
                 "--set", "temperature=0", "--json"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first["data"] == "Yes, you can return the mug within 30 days with the receipt."


def test_a_run_evaluates_on_a_built_in_pair_set_by_name(tmp_path, capsys):
    run = tmp_path / "pairs"
    assert main(["train", "text", "--data", "builtin:customer-service", "--run-dir", str(run),
                 "--set", "n_layer=1", "--set", "n_embd=32", "--set", "n_head=2",
                 "--set", "block_size=128", "--max-steps", "3", "--events", "none"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--data", "builtin:customer-service"]) == 0
    assert '"tokens"' in capsys.readouterr().out
    assert main(["eval", str(run), "--data", "builtin:no-such-set"]) == 2
    said = capsys.readouterr().err
    assert "no built-in text set 'builtin:no-such-set'" in said and "builtin:customer-service" in said
