"""Prompt/response fine-tuning, evaluation on any data, and training in any language."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from generators.text import TextConfig, TextGenerator
from generators.text.data import read_pairs
from generators.text.tokenizer import CharTokenizer
from studio import api
from studio.cli import main
from studio.errors import StudioError
from studio.runstore import RunDir

QUIET = ["device=cpu", "eval_every=0", "preview_every=0"]
SMALL = ["n_layer=2", "n_head=4", "n_embd=64", "block_size=96", "batch_size=16"]

QA = [("What are your opening hours?", "We open at 9 and close at 18."),
      ("How do I return an item?", "Bring it back within 30 days with the receipt."),
      ("Do you ship abroad?", "Yes, to every country in the EU."),
      ("Can I pay by card?", "Yes, all major cards are accepted."),
      ("Where is the store?", "At 12 Market Street."),
      ("Is parking free?", "Yes, for the first two hours.")]


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_malformed_lines_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n'
                    'not json\n'
                    '["a list"]\n'
                    '{"prompt": "only a prompt"}\n'
                    '\n'
                    '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
                    '{"messages": [{"role": "user", "content": "no answer"}]}\n')
    examples, used, skipped = read_pairs(str(path))
    assert examples == [[("a", "b")], [("hi", "hello")]]
    reasons = {where.rsplit(":", 1)[1]: why for where, why in skipped}
    assert "not valid JSON" in reasons["2"] and "expected a JSON object" in reasons["3"]
    assert "'response'" in reasons["4"] and "no assistant message" in reasons["7"]
    (tmp_path / "bad.jsonl").write_text("nope\n")
    with pytest.raises(StudioError, match="no usable prompt/response examples.*line|not valid JSON"):
        read_pairs(str(tmp_path / "bad.jsonl"))


def test_line_separators_inside_a_json_string_stay_in_the_example(tmp_path):
    # json.dumps leaves U+2028, U+2029 and U+0085 unescaped (ensure_ascii=False), as many
    # exporters do; they are line breaks to str.splitlines() but not to JSON Lines.
    rows = [{"prompt": "Line\u2028separator", "response": "Next\u0085line\u2029end"},
            {"prompt": "b", "response": "c"}]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))  # Windows line ends too
    examples, _, skipped = read_pairs(str(path))
    assert skipped == []
    assert examples == [[("Line\u2028separator", "Next\u0085line\u2029end")], [("b", "c")]]


def test_chat_messages_become_turns():
    from generators.text.data import parse_example
    turns = parse_example({"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye"}]}, "x")
    assert turns == [("Be brief.\nHi", "Hello"), ("Bye", "Goodbye")]


def test_loss_is_zero_weighted_on_prompt_tokens():
    gen = TextGenerator(TextConfig(block_size=128, n_layer=1, n_head=2, n_embd=16, batch_size=2))
    gen.tokenizer = CharTokenizer.train("".join(q + a for q, a in QA))
    torch.manual_seed(0)
    gen.model = gen.build()
    examples = [gen.encode_example([qa]) for qa in QA[:2]]
    ids, weights = examples[0]
    n_prompt = len(QA[0][0]) + 2  # <|prompt|> ... <|response|>
    assert weights[:n_prompt].sum() == 0 and weights[n_prompt:].sum() == len(QA[0][1]) + 1
    x, y, w = gen._pad(examples)
    _, loss = gen.model(x, y, loss_weights=w)
    logits, _ = gen.model(x, all_logits=True)
    per_token = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none")
    mask = w.reshape(-1) > 0
    assert torch.allclose(loss, per_token[mask].mean(), atol=1e-6)
    # changing a prompt target does not change the loss; changing a response target does
    y2 = y.clone()
    y2[0, 3] = (y2[0, 3] + 1) % gen.tokenizer.vocab_size
    assert torch.allclose(gen.model(x, y2, loss_weights=w)[1], loss)
    y2[0, n_prompt + 2] = (y2[0, n_prompt + 2] + 1) % gen.tokenizer.vocab_size
    assert not torch.allclose(gen.model(x, y2, loss_weights=w)[1], loss)


def test_fine_tuned_model_answers_a_training_prompt(tmp_path, capsys):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": q, "response": a} for q, a in QA * 6])
    run = tmp_path / "run"
    status, _ = api.train("text", data=str(data), run_dir=str(run), max_steps=400, events="none",
                          settings=QUIET + SMALL + ["lr=3e-3", "warmup_steps=20"])
    assert status == "done"
    question, answer = QA[1]
    sample = api.generate(str(run), prompt=question, settings=["temperature=0", "max_new_tokens=80"])[0]
    assert sample.data == answer  # the response alone, stopped at <|end|>
    assert main(["generate", str(run), "--prompt", question, "--set", "temperature=0"]) == 0
    assert capsys.readouterr().out.strip() == answer
    metrics = api.evaluate(str(run), data=str(data))
    assert metrics["loss"] < 0.3 and metrics["bits_per_byte"] < 0.5


def test_init_from_a_run_keeps_its_tokenizer_and_freezes_lower_layers(tmp_path, corpus):
    base = tmp_path / "base"
    api.train("text", data=str(corpus), run_dir=str(base), max_steps=30, events="none",
              settings=QUIET + SMALL)
    data = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": q, "response": a} for q, a in QA * 3])
    tuned = tmp_path / "tuned"
    engine, _ = api.prepare_training("text", data=str(data), run_dir=str(tuned), max_steps=10,
                                     events="none", settings=QUIET + ["freeze_layers=1"],
                                     init_from=str(base))
    _, base_gen, _ = api.load_run(str(base), device="cpu")
    start = {k: v.clone() for k, v in engine.generator.model.state_dict().items()}
    for name, tensor in base_gen.model.state_dict().items():
        assert torch.equal(start[name], tensor), name  # starts from the base weights
    assert engine.train.lr == TextGenerator.finetune_defaults["lr"]
    engine.fit()
    end = engine.generator.model.state_dict()
    assert torch.equal(end["transformer.h.0.attn.c_attn.weight"], start["transformer.h.0.attn.c_attn.weight"])
    assert not torch.equal(end["transformer.h.1.attn.c_attn.weight"], start["transformer.h.1.attn.c_attn.weight"])
    tk_base = (base / "assets" / "tokenizer.json").read_text()
    assert (tuned / "assets" / "tokenizer.json").read_text() == tk_base
    assert RunDir(tuned).config()["init"]["run"] == str(base)


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_any_language_trains_samples_and_evaluates(tmp_path, tokenizer):
    text = ("天地玄黄，宇宙洪荒。日月盈昃，辰宿列张。こんにちは世界、元気ですか。"
            "مرحبا بالعالم 🌍🚀 Hello world!\n") * 40
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text(text, encoding="utf-8")
    (tmp_path / "data" / "b.md").write_text(text[::-1], encoding="utf-8")
    run = tmp_path / "run"
    status, _ = api.train("text", data=str(tmp_path / "data"), run_dir=str(run), max_steps=150,
                          events="none", settings=QUIET + SMALL + [f"tokenizer={tokenizer}",
                                                                    "vocab_size=300", "lr=3e-3"])
    assert status == "done"
    greedy = api.generate(str(run), prompt="天地", settings=["max_new_tokens=40", "temperature=0"])[0]
    assert greedy.data.startswith("天地玄黄") and "\ufffd" not in greedy.data  # learned, whole characters
    for settings in (["temperature=0"], ["temperature=1.2", "top_k=0"]):
        settings = settings + ["max_new_tokens=40"]
        sample = api.generate(str(run), prompt="天地", seed=3, settings=settings)[0]
        pieces = list(api.stream(str(run), prompt="天地", seed=3, settings=settings))
        assert "天地" + "".join(pieces) == sample.data
    folder_metrics = api.evaluate(str(run), data=str(tmp_path / "data"))
    file_metrics = api.evaluate(str(run), data=str(tmp_path / "data" / "a.txt"))
    for m in (folder_metrics, file_metrics):
        assert 0 < m["bits_per_byte"] < 8 and math.isclose(m["perplexity"], math.exp(m["loss"]))


def test_bits_per_byte_is_comparable_across_tokenizers(tmp_path, corpus):
    results = {}
    for tokenizer in ("char", "bpe"):
        run = tmp_path / tokenizer
        api.train("text", data=str(corpus), run_dir=str(run), max_steps=1, events="none",
                  settings=QUIET + SMALL + [f"tokenizer={tokenizer}", "vocab_size=300", "lr=0"])
        results[tokenizer] = api.evaluate(str(run), data=str(corpus))
    # untrained models: about log2(vocab) bits per token; per byte both land near the same
    # scale even though the token counts differ several-fold
    assert results["bpe"]["tokens"] < results["char"]["tokens"] / 2
    char_bits = results["char"]["loss"] / math.log(2)
    assert results["char"]["bits_per_byte"] == pytest.approx(char_bits, rel=1e-6)  # ASCII: 1 byte/char
    assert results["bpe"]["bits_per_byte"] > results["bpe"]["loss"] / math.log(2) / 8


def test_eval_reports_the_held_out_split_and_best_is_bits_per_byte(tmp_path, corpus):
    run = tmp_path / "run"
    api.train("text", data=str(corpus), run_dir=str(run), max_steps=20, events="none",
              settings=["device=cpu", "eval_every=10", "preview_every=0"] + SMALL)
    info = RunDir(run).info()
    assert info["best"]["metric"] == "val_bits_per_byte"
    evals = [e for e in RunDir(run).events() if e["event"] == "eval"]
    assert info["best"]["value"] == min(e["metrics"]["val_bits_per_byte"] for e in evals)
    assert api.evaluate(str(run))["data"] == "held-out split"
