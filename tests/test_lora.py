"""LoRA fine-tuning (studio/lora.py): only the adapters train, checkpoints hold the adapters
and a verified reference to their base, `export --merge` gives a plain run with the same
outputs, and a base that is gone or changed is named in the error."""

import shutil
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from studio import api, lora
from studio.cli import main
from studio.errors import StudioError
from studio.runstore import RunDir, file_digest, read_json

QUIET = ["device=cpu", "precision=fp32", "eval_every=0", "preview_every=0"]
TINY = ["n_layer=1", "n_head=4", "n_embd=32", "block_size=32", "batch_size=4"]
LORA = ["lora_rank=4", "lr=1e-2", "warmup_steps=0", "lr_schedule=constant"]
TARGETS = ("c_attn", "c_proj", "c_fc")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    words = "the sea is calm and the night is long we sail at dawn to find the light".split()
    lines = [" ".join(words[(i * 7 + j) % len(words)] for j in range(8)) for i in range(200)]
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained_base(tmp_path_factory, corpus):
    base = tmp_path_factory.mktemp("base") / "base"
    status, _ = api.train("text", data=str(corpus), run_dir=str(base), max_steps=5,
                          events="none", settings=QUIET + TINY)
    assert status == "done"
    return base


@pytest.fixture
def base(tmp_path, trained_base):
    """A copy of the base run per test, which the test may delete or change."""
    return shutil.copytree(trained_base, tmp_path / "base")


def lora_run(corpus, base, run, steps=5, settings=()):
    return api.train("text", data=str(corpus), run_dir=str(run), max_steps=steps, events="none",
                     settings=QUIET + LORA + list(settings), init_from=str(base))


def logits(gen, seed=0):
    x = torch.randint(0, gen.tokenizer.vocab_size, (2, 16), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return gen.model(x, all_logits=True)[0]


def test_only_the_adapters_train_and_the_optimizer_sees_only_them(tmp_path, corpus, base):
    engine, _ = api.prepare_training("text", data=str(corpus), run_dir=str(tmp_path / "lora"),
                                     max_steps=5, events="none", settings=QUIET + LORA,
                                     init_from=str(base))
    model = engine.generator.model
    before = {name: t.clone() for name, t in model.state_dict().items()}
    adapters = {name for name, _ in model.named_parameters() if lora.is_adapter(name)}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == adapters and adapters
    # r * (in + out) per targeted Linear: c_attn 32->96, attn.c_proj 32->32, c_fc 32->128,
    # mlp.c_proj 128->32, at rank 4, in the one block
    expected = 4 * ((32 + 96) + (32 + 32) + (32 + 128) + (128 + 32))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    in_optimizer = {id(p) for opt in engine.optimizers for g in opt.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for name, p in model.named_parameters() if name in adapters}
    # it starts from the base's weights
    _, base_gen, _ = api.load_run(str(base), device="cpu")
    for name, tensor in base_gen.model.state_dict().items():
        lora_name = next(n for n in before if n.replace(".base_layer", "") == name)
        assert torch.equal(before[lora_name], tensor), name
    engine.fit()
    start = next(e for e in RunDir(tmp_path / "lora").events() if e["event"] == "start")
    assert start["trainable_params"] == expected < start["params"]
    after = model.state_dict()
    for name, tensor in before.items():
        if lora.is_adapter(name):
            continue
        assert torch.equal(after[name], tensor), f"base weight {name} changed"
    assert any(not torch.equal(after[n], before[n]) for n in before if ".lora_B." in n)


def test_checkpoint_holds_only_the_adapters_and_a_verified_base_reference(tmp_path, corpus, base):
    status, run = lora_run(corpus, base, tmp_path / "lora")
    assert status == "done"
    folder = run.resolve_checkpoint("latest")
    weights = load_file(str(folder / "model.safetensors"))
    assert weights and all(lora.is_adapter(name) for name in weights)
    assert {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in weights} == set(TARGETS)
    state = read_json(folder / "state.json", "state")
    base_folder = RunDir(base).resolve_checkpoint("best")
    assert state["lora"]["base"] == {
        "run": str(base.resolve()), "checkpoint": base_folder.name,
        "weights": str((base_folder / "model.safetensors").resolve()),
        "sha256": file_digest(base_folder / "model.safetensors")["sha256"]}
    assert state["lora"]["rank"] == 4 and state["lora"]["alpha"] == 8.0  # 2 x rank
    assert run.config()["lora"] == state["lora"]
    base_bytes = (base_folder / "model.safetensors").stat().st_size
    assert (folder / "model.safetensors").stat().st_size < base_bytes / 2


def test_merged_export_equals_the_lora_run_and_needs_no_base(tmp_path, corpus, base, capsys):
    _, run = lora_run(corpus, base, tmp_path / "lora")
    _, lora_gen, _ = api.load_run(str(run.path), device="cpu")
    assert any(lora.is_adapter(n) for n in lora_gen.model.state_dict())
    unmerged = logits(lora_gen)
    merged_dir = tmp_path / "merged"
    assert main(["export", str(run.path), "--merge", "--out", str(merged_dir)]) == 0
    shutil.rmtree(base)  # the merged run stands alone
    merged_run, merged_gen, _ = api.load_run(str(merged_dir), device="cpu")
    assert not any(lora.is_adapter(n) for n in merged_gen.model.state_dict())
    assert "lora" not in merged_run.config() and merged_run.config()["train"]["lora_rank"] == 0
    assert torch.allclose(logits(merged_gen), unmerged, atol=1e-5)
    # the adapters did something: the merged weights are not the base's
    assert not torch.allclose(logits(merged_gen), logits(_base_model_of(tmp_path, corpus)), atol=1e-3)
    assert api.generate(str(merged_dir), prompt="the", settings=["max_new_tokens=5"])[0].data


def _base_model_of(tmp_path, corpus):
    """A generator with the base's weights (rebuilt: the test deleted its copy of the base)."""
    status, run = api.train("text", data=str(corpus), run_dir=str(tmp_path / "again"),
                            max_steps=5, events="none", settings=QUIET + TINY)
    return api.load_run(str(run.path), device="cpu")[1]


def test_a_deleted_base_is_named_with_what_to_do(tmp_path, corpus, base):
    _, run = lora_run(corpus, base, tmp_path / "lora")
    shutil.rmtree(base)
    for attempt in (lambda: api.load_run(str(run.path), device="cpu"),
                    lambda: api.train(resume=str(run.path), max_steps=8, events="none")):
        with pytest.raises(StudioError) as caught:
            attempt()
        message = str(caught.value)
        assert str(base.resolve()) in message and "missing" in message
        assert "--merge" in message and "Put the base back" in message


def test_a_changed_base_is_refused_by_its_hash(tmp_path, corpus, base, capsys):
    _, run = lora_run(corpus, base, tmp_path / "lora")
    weights_file = RunDir(base).resolve_checkpoint("best") / "model.safetensors"
    tensors = load_file(str(weights_file))
    tensors["transformer.wpe.weight"] += 0.01  # another model, same names and shapes
    save_file(tensors, str(weights_file))
    with pytest.raises(StudioError, match="changed since the adapters were trained") as caught:
        api.load_run(str(run.path), device="cpu")
    assert str(weights_file.resolve()) in str(caught.value)
    assert main(["generate", str(run.path), "--prompt", "the"]) == 2
    assert "SHA-256" in capsys.readouterr().err


def test_lora_without_a_base_is_refused(tmp_path, corpus, capsys):
    settings = [arg for pair in QUIET + TINY + ["lora_rank=4"] for arg in ("--set", pair)]
    code = main(["train", "text", "--data", str(corpus), "--run-dir", str(tmp_path / "run"),
                 *settings])
    assert code == 2
    err = capsys.readouterr().err
    assert "--init-from" in err and "lora_rank=4" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(StudioError, match="only with lora_rank > 0"):
        api.train("text", data=str(corpus), run_dir=str(tmp_path / "r2"), max_steps=1,
                  events="none", settings=QUIET + TINY + ["lora_alpha=4"])


def test_resume_is_bit_exact(tmp_path, corpus, base):
    _, straight = lora_run(corpus, base, tmp_path / "straight", steps=10)
    _, split = lora_run(corpus, base, tmp_path / "split", steps=5)
    status, _ = api.train(resume=str(split.path), max_steps=10, events="none")
    assert status == "done"
    a = load_file(str(straight.resolve_checkpoint("latest") / "model.safetensors"))
    b = load_file(str(split.resolve_checkpoint("latest") / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(StudioError, match="lora_rank cannot change when resuming"):
        api.train(resume=str(split.path), max_steps=12, events="none", settings=["lora_rank=8"])


def test_tied_weights_are_never_targeted(tmp_path, corpus, base):
    _, run = lora_run(corpus, base, tmp_path / "lora")
    _, gen, _ = api.load_run(str(run.path), device="cpu")
    assert {"lm_head", "transformer.wte"} <= lora.tied_modules(gen.model)
    wrapped = {n.split(".lora_")[0] for n in gen.model.state_dict() if lora.is_adapter(n)}
    assert not wrapped & lora.tied_modules(gen.model)
    assert gen.model.lm_head.weight is gen.model.transformer.wte.weight  # still tied
    with pytest.raises(StudioError, match="tied to another module"):
        lora_run(corpus, base, tmp_path / "tied", settings=['lora_targets=["c_fc", "lm_head"]'])
    with pytest.raises(StudioError, match="name no Linear layer.*c_attn"):
        lora_run(corpus, base, tmp_path / "none", settings=['lora_targets=["query"]'])
    assert not (tmp_path / "tied").exists() and not (tmp_path / "none").exists()


def test_bad_requests_around_lora_runs(tmp_path, corpus, base, monkeypatch):
    _, run = lora_run(corpus, base, tmp_path / "lora")
    with pytest.raises(StudioError, match="is a LoRA run.*--merge"):
        api.train("text", data=str(corpus), run_dir=str(tmp_path / "on-lora"), max_steps=1,
                  events="none", settings=QUIET, init_from=str(run.path))
    with pytest.raises(StudioError, match="not a LoRA run"):
        api.export_merged_run(str(base), str(tmp_path / "out"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(StudioError, match="not an exported run"):
        api.export_merged_run(str(run.path), str(tmp_path / "mine"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    monkeypatch.setitem(sys.modules, "peft", None)  # as if peft were not installed
    with pytest.raises(StudioError, match=r'pip install "aigc-studio\[lora\]"'):
        lora_run(corpus, base, tmp_path / "no-peft")


@pytest.fixture(scope="module")
def review_base(tmp_path_factory):
    """A two-block generation run on the built-in reviews' text: a base for LoRA classifiers."""
    import json
    from generators.text.tasks import data_file
    folder = tmp_path_factory.mktemp("reviews")
    reviews = open(data_file("builtin:sentiment", "classify")).read().splitlines()
    (folder / "corpus.txt").write_text("".join(json.loads(line)["text"] + "\n" for line in reviews))
    status, run = api.train("text", data=str(folder / "corpus.txt"), run_dir=str(folder / "base"),
                            max_steps=3, events="none",
                            settings=QUIET + ["n_layer=2", "n_head=4", "n_embd=32", "block_size=64"])
    assert status == "done"
    return run.path


def test_a_lora_classifier_trains_and_keeps_its_fresh_head(tmp_path, review_base):
    """The classifier's head starts fresh (there is nothing in the base to adapt): it trains
    whole beside the adapters, is stored with them, and a loaded run answers as trained."""
    engine, _ = api.prepare_training("text", data="builtin:sentiment", run_dir=str(tmp_path / "cls"),
                                     max_steps=5, events="none", init_from=str(review_base),
                                     settings=QUIET + LORA + ["task=classify", "batch_size=8"])
    model = engine.generator.model
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {"head.weight", "head.bias"} <= trainable
    assert all(lora.is_adapter(n) or n.startswith("head.") for n in trainable)
    head_before = model.head.weight.detach().clone()
    engine.fit()
    assert not torch.equal(model.head.weight, head_before)
    folder = RunDir(tmp_path / "cls").resolve_checkpoint("latest")
    stored = load_file(str(folder / "model.safetensors"))
    assert torch.equal(stored["head.weight"], model.head.weight.detach())
    assert all(lora.is_adapter(n) or n.startswith("head.") for n in stored)
    text = "great mug, I love it"
    with torch.no_grad():
        expected = engine.generator.task.answer(text)[0].meta["probabilities"]
    answered = api.generate(str(tmp_path / "cls"), prompt=text, checkpoint="latest")[0]
    assert answered.meta["probabilities"] == pytest.approx(expected, abs=1e-6)
    api.export_merged_run(str(tmp_path / "cls"), str(tmp_path / "merged"), checkpoint="latest")
    merged = api.generate(str(tmp_path / "merged"), prompt=text)[0]
    assert merged.meta["probabilities"] == pytest.approx(expected, abs=1e-5)


def test_adapters_in_frozen_blocks_stay_frozen(tmp_path, corpus, review_base):
    engine, _ = api.prepare_training("text", data="builtin:sentiment", run_dir=str(tmp_path / "cls"),
                                     max_steps=1, events="none", init_from=str(review_base),
                                     settings=QUIET + LORA + ["task=classify", "freeze_layers=1"])
    trainable = {name for name, p in engine.generator.model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("transformer.h.0.") for n in trainable)
    assert any(n.startswith("transformer.h.1.") and lora.is_adapter(n) for n in trainable)


def test_a_lora_run_learns_at_ten_times_the_fine_tuning_lr_unless_told(tmp_path, corpus, base):
    from generators.text import TextGenerator
    fine_tuning_lr = TextGenerator.finetune_defaults["lr"]
    engine, _ = api.prepare_training("text", data=str(corpus), run_dir=str(tmp_path / "default"),
                                     max_steps=2, events="none", init_from=str(base),
                                     settings=QUIET + ["lora_rank=4"])
    assert engine.train.lr == pytest.approx(lora.LR_SCALE * fine_tuning_lr)
    engine.fit()
    assert RunDir(tmp_path / "default").config()["train"]["lr"] == pytest.approx(10 * fine_tuning_lr)
    engine, _ = api.prepare_training("text", data=str(corpus), run_dir=str(tmp_path / "told"),
                                     max_steps=2, events="none", init_from=str(base),
                                     settings=QUIET + ["lora_rank=4", "lr=3e-4"])
    assert engine.train.lr == pytest.approx(3e-4)
    # resuming keeps the run's own LR (it is in the run's settings), not scaled again
    engine, _ = api.prepare_training(resume=str(tmp_path / "default"), max_steps=4, events="none")
    assert engine.train.lr == pytest.approx(10 * fine_tuning_lr)
