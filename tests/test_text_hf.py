"""Oracle: a tiny GPT-2 made with `transformers` imports through --init-from-hf and matches
`transformers` -- logits, token ids and greedy generation -- and bad folders are refused."""

import json
import shutil

import pytest
import torch
import transformers

from generators.text import TextConfig, TextGenerator, TextSampleConfig
from generators.text.model import generate
from studio import api
from studio.cli import main

TEXTS = ["Hello there, how can I help you today? Our store opens at nine.",
         "你好，今天我能帮你什么？我们的商店九点开门。", "Mixed: café 東京 🚀 rocket."]


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(TEXTS * 50, trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    hf_tok = transformers.GPT2TokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>",
                                            bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    folder = tmp_path_factory.mktemp("gpt2")
    hf_tok.save_pretrained(folder)
    config = transformers.GPT2Config(vocab_size=len(hf_tok), n_positions=64, n_embd=48, n_layer=3,
                                     n_head=4, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # non-trivial biases and norms, so every weight is checked
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(folder, safe_serialization=True)
    return folder, model, hf_tok


def imported(folder) -> TextGenerator:
    gen = TextGenerator(TextConfig(**TextGenerator.pretrained_config(str(folder))))
    gen.use_pretrained(str(folder))
    gen.model = gen.build().eval()
    return gen


def test_logits_match_transformers(hf_folder):
    folder, model, hf_tok = hf_folder
    gen = imported(folder)
    ids = torch.tensor([hf_tok(TEXTS[0] + TEXTS[1])["input_ids"][:64]])
    with torch.no_grad():
        ours, _ = gen.model(ids, all_logits=True)
        theirs = model(ids).logits
    assert torch.allclose(ours[..., :theirs.shape[-1]], theirs, atol=1e-5, rtol=0)


def test_tokenizer_ids_match_transformers(hf_folder):
    folder, model, hf_tok = hf_folder
    gen = imported(folder)
    for text in TEXTS + ["unseen: Ελληνικά και 日本語のテキスト"]:
        assert gen.tokenizer.encode(text).tolist() == hf_tok(text)["input_ids"]
        assert gen.tokenizer.decode(hf_tok(text)["input_ids"]) == text


def test_greedy_generation_matches_transformers(hf_folder):
    folder, model, hf_tok = hf_folder
    gen = imported(folder)
    for text in (TEXTS[0][:20], TEXTS[1][:8]):
        prompt = torch.tensor([hf_tok(text)["input_ids"]])
        theirs = model.generate(prompt, max_new_tokens=30, do_sample=False, pad_token_id=0,
                                attention_mask=torch.ones_like(prompt))[0, prompt.shape[1]:]
        ours = torch.cat(list(generate(gen.model, prompt, 30, lambda l, h: l[:, :len(hf_tok)]
                                       .argmax(-1, keepdim=True))), dim=1)[0]
        assert ours.tolist() == theirs.tolist()
        with torch.no_grad():
            sample = gen.sample(TextSampleConfig(temperature=0, max_new_tokens=30), prompt=text)[0]
        assert sample.data == text + hf_tok.decode(theirs)


def test_fine_tune_from_the_imported_gpt2_through_the_cli(hf_folder, tmp_path, capsys):
    folder, _, _ = hf_folder
    data = tmp_path / "qa.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"When do you open on day {i}?",
                                          "response": "At nine."}) for i in range(20)))
    assert main(["train", "text", "--init-from-hf", str(folder), "--data", str(data), "--run-dir",
                 str(tmp_path / "run"), "--max-steps", "3", "--events", "none",
                 "--set", "device=cpu"]) == 0
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    assert doc["train"]["lr"] == TextGenerator.finetune_defaults["lr"]  # lower than pretraining
    assert doc["config"]["n_embd"] == 48 and doc["init"]["pretrained"]
    samples = api.generate(str(tmp_path / "run"), prompt="When do you open?",
                           settings=["max_new_tokens=5"])
    assert samples[0].meta["format"] == "pairs"


def copy_folder(folder, tmp_path):
    copy = tmp_path / "hf"
    shutil.copytree(folder, copy)
    return copy


def expect_error(capsys, folder, tmp_path, match):
    code = main(["train", "text", "--init-from-hf", str(folder), "--run-dir", str(tmp_path / "r"),
                 "--max-steps", "1", "--events", "none"])
    err = capsys.readouterr().err
    assert code == 2 and match in err and "Traceback" not in err, err


def test_missing_config_is_refused(hf_folder, tmp_path, capsys):
    folder = copy_folder(hf_folder[0], tmp_path)
    (folder / "config.json").unlink()
    expect_error(capsys, folder, tmp_path, "has no config.json")


def test_mismatched_config_is_refused(hf_folder, tmp_path, capsys):
    folder = copy_folder(hf_folder[0], tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["n_embd"] = 64
    (folder / "config.json").write_text(json.dumps(cfg))
    expect_error(capsys, folder, tmp_path, "expected")


def test_pickle_bin_instead_of_safetensors_is_refused(hf_folder, tmp_path, capsys):
    folder = copy_folder(hf_folder[0], tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04\x95not loaded, ever")
    expect_error(capsys, folder, tmp_path, "pickle")


def test_vocabulary_that_does_not_match_the_weights_is_refused(hf_folder, tmp_path, capsys):
    folder = copy_folder(hf_folder[0], tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["vocab_size"] += 7
    (folder / "config.json").write_text(json.dumps(cfg))
    expect_error(capsys, folder, tmp_path, "do not belong together")


def test_a_shorter_context_uses_the_first_positions_and_a_longer_one_is_refused(hf_folder, tmp_path, capsys):
    folder, model, hf_tok = hf_folder
    gen = TextGenerator(TextConfig(**{**TextGenerator.pretrained_config(str(folder)), "block_size": 16}))
    gen.use_pretrained(str(folder))
    gen.model = gen.build().eval()
    assert torch.equal(gen.model.transformer.wpe.weight, model.transformer.wpe.weight[:16])
    ids = torch.tensor([hf_tok(TEXTS[0])["input_ids"][:16]])
    with torch.no_grad():  # the same model on the positions it keeps
        assert torch.allclose(gen.model(ids, all_logits=True)[0][..., :len(hf_tok)],
                              model(ids).logits, atol=1e-5, rtol=0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS * 300), encoding="utf-8")
    assert main(["train", "text", "--init-from-hf", str(folder), "--data", str(corpus),
                 "--run-dir", str(tmp_path / "long"), "--max-steps", "1", "--events", "none",
                 "--set", "device=cpu", "--set", "block_size=128"]) == 2
    err = capsys.readouterr().err
    assert "block_size 128" in err and "at most 64" in err and "Traceback" not in err
