"""Classifier and tagger heads on the text generator's GPT (`task=classify`, `task=tag`).

The classifier and tagger are trained from scratch on the built-in sets: a pretrained run made
in the test first would double the time, and `--init-from` loading the body is checked on its
own (test_init_from_a_generation_run_loads_the_body_and_a_fresh_head)."""

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from generators.text.reports import classification_report
from generators.text.tasks import (IGNORE_INDEX, TaskGPT, data_file, encode_words,
                                   held_out_order, length_batches, tag_targets)
from generators.text.model import GPTShape
from generators.text.tokenizer import BPETokenizer, CharTokenizer
from studio import api
from studio.cli import main
from studio.runstore import RunDir

QUIET = ["device=cpu", "eval_every=0", "preview_every=0"]
TINY = ["n_layer=1", "n_head=2", "n_embd=32", "block_size=64", "batch_size=16"]
FAST = ["lr=3e-3", "warmup_steps=10", "val_fraction=0.2"]


def train(tmp, name, task, data, steps, extra=()):
    _, run = api.train("text", data=data, run_dir=str(tmp / name), max_steps=steps, events="none",
                       settings=QUIET + TINY + FAST + [f"task={task}", *extra])
    return run


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return train(tmp_path_factory.mktemp("classify"), "run", "classify", "builtin:sentiment", 80)


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    return train(tmp_path_factory.mktemp("tag"), "run", "tag", "builtin:entities", 80)


def held_out_truth(run):
    _, gen, _ = api.load_run(str(run.path), device="cpu")
    gen.load_data("builtin:sentiment", None, None)
    return gen.task.val_truth


def test_classifier_beats_the_majority_class_on_held_out_reviews(classifier):
    metrics = api.evaluate(str(classifier.path), device="cpu")
    truth = held_out_truth(classifier)
    majority = max(set(truth), key=truth.count)
    baseline = classification_report(truth, [majority] * len(truth))["macro avg"]["f1"]
    assert baseline < 0.25
    assert metrics["macro_f1"] > baseline + 0.35, metrics
    info = classifier.info()
    assert info["best"]["metric"] == "val_macro_f1"


def test_eval_prints_the_report_and_json_is_classification_report(classifier, tmp_path, capsys):
    rows = [{"text": "I love this lamp, it works perfectly.", "label": "positive"},
            {"text": "The kettle broke after two days.", "label": "negative"},
            {"text": "The chair comes in black and grey.", "label": "neutral"},
            {"text": "Awful mug, I am returning it.", "label": "negative"}]
    test = write_jsonl(tmp_path / "test.jsonl", rows)
    (tmp_path / "texts.txt").write_text("".join(row["text"] + "\n" for row in rows))
    assert main(["eval", str(classifier.path), "--data", str(test), "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "macro avg" in table and "weighted avg" in table and "positive" in table
    assert main(["generate", str(classifier.path), "--data", str(tmp_path / "texts.txt"),
                 "--json", "--device", "cpu"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    predicted = [answer["data"] for answer in answers]
    assert main(["eval", str(classifier.path), "--data", str(test), "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = classification_report([row["label"] for row in rows], predicted,
                                     labels=["negative", "neutral", "positive"])
    assert report == json.loads(json.dumps(expected))


def test_generate_data_names_each_text_and_out_records_the_answers(classifier, tmp_path, capsys):
    texts = ["I love this lamp, it works perfectly.", "The kettle broke after two days."]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    assert main(["generate", str(classifier.path), "--data", str(tmp_path / "texts.txt"),
                 "--device", "cpu", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"--- text 1: {texts[0]} ---" in out and f"--- text 2: {texts[1]} ---" in out
    assert "seed" not in out  # an answer does not depend on the seed
    lineage = json.loads((tmp_path / "out" / "samples.json").read_text())
    assert json.dumps(lineage).count(str(tmp_path / "texts.txt")) >= 1
    assert '"count": 2' in json.dumps(lineage)


def test_a_test_label_never_seen_in_training_is_reported(classifier, tmp_path, capsys):
    test = write_jsonl(tmp_path / "test.jsonl", [
        {"text": "I love this lamp.", "label": "positive"},
        {"text": "Why is the box blue?", "label": "question"}])
    assert main(["eval", str(classifier.path), "--data", str(test), "--json", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["unexpected_labels"] == ["question"] and "question" in report["classes"]
    assert "question" in err and "never seen in training" in err


def test_generate_gives_the_label_and_every_class_probability(classifier, capsys):
    assert main(["generate", str(classifier.path), "--prompt", "Terrible blender, it broke.",
                 "--json", "--device", "cpu"]) == 0
    answer = json.loads(capsys.readouterr().out)
    probabilities = answer["meta"]["probabilities"]
    assert sorted(probabilities) == ["negative", "neutral", "positive"]
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert answer["data"] == max(probabilities, key=probabilities.get)


def test_tagger_finds_products_people_and_cities(tagger, capsys):
    metrics = api.evaluate(str(tagger.path), device="cpu")
    # Tagging every word O finds no entity: F1 0.
    assert metrics["entity_f1"] > 0.5, metrics
    assert tagger.info()["best"]["metric"] == "val_entity_f1"
    assert main(["generate", str(tagger.path), "--prompt", "Alice bought a Nova Laptop in Paris .",
                 "--json", "--device", "cpu"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["meta"]["words"][0] == "Alice" and len(answer["meta"]["tags"]) == 8
    assert all(set(e) == {"type", "text", "start", "end"} for e in answer["meta"]["entities"])


def test_each_word_tag_sits_on_its_first_piece_and_the_rest_are_ignored():
    char = CharTokenizer.train("Ann likes Oslo")
    ids, first = encode_words(char, ["Ann", "likes", "Oslo"])
    assert char.decode(ids.tolist()) == "Ann likes Oslo"
    assert first.tolist() == [0, 4, 10]  # the space before a word is a piece of its own
    targets = tag_targets(len(ids), first, [1, 0, 2])
    assert targets[[0, 4, 10]].tolist() == [1, 0, 2]
    assert (np.delete(targets, [0, 4, 10]) == IGNORE_INDEX).all()
    bpe = BPETokenizer.train(["Ann likes Oslo and Annabelle likes Trondheim"] * 20, 300)
    words = ["Annabelle", "likes", "Trondheim"]
    ids, first = encode_words(bpe, words)
    assert bpe.decode(ids.tolist()) == " ".join(words)
    for k, word in enumerate(words):  # each first piece opens its word
        end = first[k + 1] if k + 1 < len(words) else len(ids)
        assert bpe.decode(ids[first[k]:end].tolist()).strip() == word


def test_multi_label_trains_with_sigmoid_bce(tmp_path):
    rows = [{"text": f"{a} and {b} news {i}", "label": [x for x in (a, b) if x != "none"]}
            for i in range(12) for a, b in (("sport", "politics"), ("sport", "none"),
                                              ("politics", "none"), ("weather", "sport"))]
    run = train(tmp_path, "multi", "classify", str(write_jsonl(tmp_path / "m.jsonl", rows)), 8)
    metrics = api.evaluate(str(run.path), device="cpu")
    assert "samples avg" in metrics["report"] and np.isfinite(metrics["loss"])
    _, gen, _ = api.load_run(str(run.path), device="cpu")
    assert gen.task.multi_label and gen.task.names == ["politics", "sport", "weather"]
    logits, targets = torch.randn(4, 3), torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1.]])
    assert torch.allclose(gen.task.loss(logits, targets),
                          F.binary_cross_entropy_with_logits(logits, targets))
    answer = gen.sample(gen.SampleConfig(), prompt="sport and politics news")[0]
    assert answer.meta["labels"] == [c for c, p in answer.meta["probabilities"].items() if p >= 0.5]


def test_pooling_reads_only_real_tokens():
    torch.manual_seed(0)
    for pooling in ("mean", "last"):
        model = TaskGPT(GPTShape(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16),
                        3, per_token=False, pooling=pooling).eval()
        alone = model(torch.tensor([[3, 4, 5]]), torch.tensor([3]))
        padded = model(torch.tensor([[3, 4, 5, 9, 9, 9]]), torch.tensor([3]))
        assert torch.allclose(alone, padded, atol=1e-6)


def test_held_out_examples_are_scored_in_batches_of_like_length():
    lengths = [5, 1, 9, 3, 3, 8, 2]
    batches = length_batches(lengths, max_tokens=10)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:  # padded to its longest, a batch stays within the budget
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 10
    assert [lengths[batch[0]] for batch in batches] == sorted(lengths[batch[0]] for batch in batches)
    assert length_batches([], 10) == []


def test_held_out_loss_with_class_weights_is_the_weighted_mean(tmp_path):
    rows = ([{"text": f"good mug number {i}", "label": "positive"} for i in range(30)]
            + [{"text": f"bad kettle number {i}", "label": "negative"} for i in range(10)]
            + [{"text": f"a lamp, item {i}", "label": "neutral"} for i in range(5)])
    data = str(write_jsonl(tmp_path / "imbalanced.jsonl", rows))
    run = train(tmp_path, "weighted", "classify", data, 2, ["class_weights=balanced"])
    _, gen, _ = api.load_run(str(run.path), device="cpu")
    weights = gen.task.loss_weights
    assert weights is not None and not torch.allclose(weights, weights[0].expand_as(weights))
    logits, targets = torch.randn(6, 3), torch.tensor([0, 0, 0, 1, 2, 2])
    per_example = F.cross_entropy(logits, targets, reduction="none")
    expected = float((weights[targets] * per_example).sum() / weights[targets].sum())
    assert gen.task._held_out_loss(logits, targets) == pytest.approx(expected, rel=1e-6)
    assert gen.task._held_out_loss(logits, torch.full((6,), IGNORE_INDEX)) == 0.0


def test_held_out_part_is_a_fixed_shuffle():
    train_index, val_index = held_out_order(150, 0.2)
    assert len(val_index) == 30 and not set(train_index) & set(val_index)
    assert held_out_order(150, 0.2)[1].tolist() == val_index.tolist()


@pytest.mark.parametrize("task, data", [("classify", "builtin:sentiment"), ("tag", "builtin:entities")])
def test_resume_is_bit_exact(tmp_path, task, data):
    steady = ["lr_schedule=constant", "warmup_steps=0", "dropout=0.1"]
    straight = train(tmp_path, "straight", task, data, 6, steady)
    train(tmp_path, "halves", task, data, 3, steady)
    api.train(resume=str(tmp_path / "halves"), max_steps=6, events="none")
    _, a, _, _ = straight.latest_weights()
    _, b, _, _ = RunDir.open(tmp_path / "halves").latest_weights()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_init_from_a_generation_run_loads_the_body_and_a_fresh_head(tmp_path):
    corpus = tmp_path / "corpus.txt"
    reviews = open(data_file("builtin:sentiment", "classify")).read().splitlines()
    corpus.write_text("".join(json.loads(line)["text"] + "\n" for line in reviews))
    _, base = api.train("text", data=str(corpus), run_dir=str(tmp_path / "base"), max_steps=2,
                        events="none", settings=QUIET + TINY)
    _, run = api.train("text", data="builtin:sentiment", run_dir=str(tmp_path / "cls"),
                       init_from=str(base.path), max_steps=1, events="none",
                       settings=QUIET + ["task=classify", "freeze_layers=1"])
    _, body, _, _ = base.latest_weights()
    _, tuned, _, _ = run.latest_weights()
    assert torch.equal(body["transformer.h.0.attn.c_attn.weight"], tuned["transformer.h.0.attn.c_attn.weight"])
    assert "head.weight" in tuned and "head.weight" not in body
    # a pretrained body pools by mean (measured better), one from scratch by its last token,
    # and a pooling the user sets wins over both
    assert run.config()["config"]["pooling"] == "mean" and base.config()["config"]["pooling"] == "last"
    _, chosen = api.train("text", data="builtin:sentiment", run_dir=str(tmp_path / "last"),
                          init_from=str(base.path), max_steps=1, events="none",
                          settings=QUIET + ["task=classify", "pooling=last"])
    assert chosen.config()["config"]["pooling"] == "last"


def test_bad_labelled_input_exits_2_with_the_message(tmp_path, capsys):
    one_class = write_jsonl(tmp_path / "one.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}])
    assert main(["train", "text", "--task", "classify", "--data", str(one_class),
                 "--run-dir", str(tmp_path / "r1"), "--set", "device=cpu"]) == 2
    assert "at least two classes" in capsys.readouterr().err
    uneven = write_jsonl(tmp_path / "tags.jsonl", [{"tokens": ["a", "b"], "tags": ["O"]}])
    assert main(["train", "text", "--task", "tag", "--data", str(uneven),
                 "--run-dir", str(tmp_path / "r2"), "--set", "device=cpu"]) == 2
    assert "tags.jsonl:1" in capsys.readouterr().err
    assert main(["train", "text", "--task", "classify", "--run-dir", str(tmp_path / "r3"),
                 "--set", "device=cpu"]) == 2
    assert "builtin:sentiment" in capsys.readouterr().err


def test_the_cli_says_how_to_ask_a_trained_classifier(tmp_path, capsys):
    settings = [a for s in QUIET + TINY for a in ("--set", s)]
    assert main(["train", "text", "--task", "classify", "--data", "builtin:sentiment",
                 "--run-dir", str(tmp_path / "c"), "--max-steps", "2", "--events", "plain",
                 *settings]) == 0
    said = capsys.readouterr().err
    assert f'Sample with `studio generate {tmp_path / "c"} --prompt "..."`' in said
    assert main(["train", "text", "--data", "builtin:customer-service", "--run-dir",
                 str(tmp_path / "g"), "--max-steps", "2", "--events", "plain", *settings]) == 0
    assert f"Sample with `studio generate {tmp_path / 'g'}`," in capsys.readouterr().err


def test_a_classifier_answers_a_text_once_whatever_n_asks(classifier, capsys):
    text = "Terrible blender, it broke."
    assert len(api.generate(str(classifier.path), prompt=text, n=3, device="cpu")) == 1
    assert main(["generate", str(classifier.path), "--prompt", text, "--n", "3",
                 "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and "--- sample" not in out  # the label, once
    assert "does not depend on the seed: it is given once, not 3 times" in err
