"""`studio export --format onnx` (studio/onnx_export.py and generators/*/onnx_graphs.py): each
generator's graphs equal its PyTorch model within tolerance, greedy text decoded through
onnxruntime with the KV cache and no torch at all (examples/onnx_text_sample.py) gives the
studio's own tokens, the exported tokenizer encodes and decodes as the studio's, the manifest
says what a client needs, and a failed export leaves nothing behind and an earlier one intact.

Exports are shared between tests (module-scoped fixtures): each takes seconds."""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from tokenizers import Tokenizer

from studio import api
from studio.errors import StudioError
from studio.onnx_export import export_onnx
from studio.runstore import RunDir
from conftest import run_cli

from generators.text.onnx_graphs import CachedDecoder, write_hf_tokenizer
from generators.text.tokenizer import BPETokenizer, CharTokenizer, load_tokenizer

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo"
QUIET = ["device=cpu", "precision=fp32", "eval_every=0", "preview_every=0"]
TINY_TEXT = ["n_layer=2", "n_head=2", "n_embd=32", "block_size=48", "batch_size=8"]
MULTILINGUAL = ("The quick brown fox. 敏捷的棕色狐狸跳过了懒狗。素早い茶色の狐。"
                "الثعلب البني السريع 🦊🐶✨ Ünïcödé façade.\n") * 20


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The demo runs exported once: {"text"|"image"|"video": (report, folder)}."""
    root = tmp_path_factory.mktemp("exports")
    done = {}
    for name in ("text", "image", "video"):
        done[name] = (export_onnx(str(DEMO / name), str(root / name)), root / name)
    return done


@pytest.fixture(scope="module")
def pairs_export(tmp_path_factory):
    """A small prompt/response run with a BPE tokenizer (its logits padded past the
    vocabulary), trained a little and exported: (run, folder)."""
    root = tmp_path_factory.mktemp("pairs")
    _, run = api.train("text", data="builtin:customer-service", run_dir=str(root / "run"),
                       max_steps=40, events="none",
                       settings=QUIET + TINY_TEXT + ["tokenizer=bpe", "vocab_size=300",
                                                     "block_size=128", "lr=3e-3"])
    export_onnx(str(run.path), str(root / "onnx"))
    return run.path, root / "onnx"


def session(folder: Path, name: str) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(folder / f"{name}.onnx"),
                                        providers=["CPUExecutionProvider"])


# --- every generator's graphs equal its model ---------------------------------------------------

@pytest.mark.parametrize("name, graph, checked", [("text", "decoder", 6), ("image", "generator", 3),
                                                  ("video", "generator", 3)])
def test_each_generators_graph_equals_pytorch_within_tolerance(exports, name, graph, checked):
    report, folder = exports[name]
    assert report["generator"] == name and report["checkpoint"].startswith("step_")
    assert report["lora_merged"] is False
    [record] = report["graphs"]
    assert record["name"] == graph and record["checked_inputs"] == checked
    assert 0 <= record["max_abs_error"] <= record["tolerance"]
    assert record["max_abs_error"] < 1e-4  # float32 rounding, far inside the tolerance
    expected = {f"{graph}.onnx", "manifest.json"} | ({"tokenizer.json"} if name == "text" else set())
    assert {p.name for p in folder.iterdir()} == expected
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []


def test_the_manifest_lists_graphs_shapes_errors_and_the_run(exports):
    report, folder = exports["text"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "aigc-studio-onnx"
    assert manifest["run"] == str((DEMO / "text").resolve())
    assert manifest["checkpoint"] == report["checkpoint"]
    assert manifest["generator"]["name"] == "text" and manifest["generator"]["version"]
    [graph] = manifest["graphs"]
    assert graph["max_abs_error"] == report["graphs"][0]["max_abs_error"]
    shapes = {arg["name"]: (arg["shape"], arg["dtype"]) for arg in graph["inputs"] + graph["outputs"]}
    assert shapes["tokens"] == (["batch", "length"], "int64")
    assert shapes["past_keys"] == ([4, "batch", 4, "past", 32], "float32")
    assert shapes["logits"] == (["batch", "length", 107], "float32")
    layers, batch, heads, total, size = shapes["present_keys"][0]
    assert (layers, batch, heads, size) == (4, "batch", 4, 32) and isinstance(total, str)
    model = manifest["model"]
    assert model["block_size"] == 128 and model["vocab_size"] == 107
    assert model["special_tokens"] == {"prompt": 1, "response": 2, "end": 3, "end_of_text": None}
    assert model["format"] == "text" and model["sampling"]["temperature"] == 0.8
    assert model["banned_tokens"] == [1, 2, 3]  # framing tokens are never generated
    image = json.loads((exports["image"][1] / "manifest.json").read_text())
    assert image["model"]["classes"] == ["circle", "square", "triangle", "star"]
    assert [a["name"] for a in image["graphs"][0]["inputs"]] == ["latents", "labels"]
    assert image["graphs"][0]["outputs"][0]["shape"] == ["batch", 3, 32, 32]
    assert "127.5" in image["model"]["to_uint8"]


def test_the_image_graph_draws_what_the_studio_samples(exports):
    """The graph is the network sampling uses (the EMA weights with their measured BatchNorm
    statistics): the same latents and classes give the studio's pixels."""
    from generators.image.sampling import latents_for_seeds, to_uint8
    seeds = [5, 6, 7]
    samples = api.generate(str(DEMO / "image"), n=3, seed=5, device="cpu")
    latents = latents_for_seeds(seeds, 64).numpy()
    labels = np.array([s % 4 for s in seeds], dtype=np.int64)  # the classes in turn, by seed
    [images] = session(exports["image"][1], "generator").run(None, {"latents": latents,
                                                                    "labels": labels})
    pixels = to_uint8(torch.from_numpy(images))
    for sample, drawn in zip(samples, pixels):
        assert np.abs(sample.data.astype(int) - drawn).max() <= 1  # rounding at a level's edge


def test_the_video_graph_renders_what_the_studio_samples(exports):
    from generators.image.sampling import to_uint8
    from generators.video.sampling import content_for_seed, frame_times, motion_for_seed
    manifest = json.loads((exports["video"][1] / "manifest.json").read_text())["model"]
    assert manifest["motion_anchors"] == "floor(last_time / 4) + 2"
    seeds, times = [3, 4], frame_times(16)
    anchors = int(float(times.max()) // 4) + 2
    samples = api.generate(str(DEMO / "video"), n=2, seed=3, device="cpu")
    feed = {"content": torch.stack([content_for_seed(s, 48) for s in seeds]).numpy(),
            "motion": torch.stack([motion_for_seed(s, anchors, 16) for s in seeds]).numpy(),
            "times": times.expand(2, -1).numpy().copy(),
            "labels": np.array([s % 3 for s in seeds], dtype=np.int64)}
    [frames] = session(exports["video"][1], "generator").run(None, feed)
    assert frames.shape == (2, 16, 3, 32, 32)
    for sample, clip in zip(samples, frames):
        assert np.abs(sample.data.astype(int) - to_uint8(torch.from_numpy(clip))).max() <= 1


# --- text: the cache, greedy decoding without torch, the tokenizer -------------------------------

def test_the_cached_decoder_is_the_models_forward_with_a_cache():
    from generators.text.model import GPT, GPTShape, KVCache
    torch.manual_seed(0)
    gpt = GPT(GPTShape(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=16)).eval()
    decoder = CachedDecoder(gpt)
    tokens = torch.randint(50, (2, 20), generator=torch.Generator().manual_seed(1))
    empty = torch.zeros(2, 2, 2, 0, 8)  # (n_layer, batch, n_head, no tokens yet, head_size)
    with torch.no_grad():
        full, _ = gpt(tokens, all_logits=True)
        first, keys, values = decoder(tokens[:, :12], empty, empty)
        rest, keys, values = decoder(tokens[:, 12:19], keys, values)  # a chunk after a cache
        last, keys, values = decoder(tokens[:, 19:], keys, values)  # one step
        cache = KVCache(32)
        gpt(tokens[:, :19], cache=cache)
    assert torch.allclose(torch.cat([first, rest, last], 1), full, atol=1e-5)
    assert keys.shape == (2, 2, 2, 20, 8)
    assert torch.allclose(keys[:, :, :, :19], torch.stack([k[:, :, :19] for k in cache.keys]),
                          atol=1e-6)


def onnx_greedy_without_torch(folder: Path, prompt, tokens: int) -> list[int]:
    """examples/onnx_text_sample.py's `sample`, in a process where `import torch` fails."""
    code = ("import sys, json; sys.modules['torch'] = None; sys.path.insert(0, 'examples'); "
            "from onnx_text_sample import sample; "
            f"print(json.dumps(sample({str(folder)!r}, {prompt!r}, {tokens})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("prompt, tokens", [("ROMEO:\nWhat light", 60), (None, 40)])
def test_greedy_onnx_decoding_without_torch_gives_the_studios_text(exports, prompt, tokens):
    folder = exports["text"][1]
    studio = api.generate(str(DEMO / "text"), prompt=prompt, device="cpu",
                          settings=["temperature=0", f"max_new_tokens={tokens}"])[0].data
    ids = onnx_greedy_without_torch(folder, prompt, tokens)
    studio_tokenizer = load_tokenizer(DEMO / "text" / "assets" / "tokenizer.json")
    start = "\n" if prompt is None else prompt
    assert len(ids) == tokens
    assert studio == start + studio_tokenizer.decode(ids)
    assert studio_tokenizer.encode(studio[len(start):]).tolist() == ids  # the same tokens
    assert Tokenizer.from_file(str(folder / "tokenizer.json")).decode(ids) == studio[len(start):]


def test_greedy_answers_of_a_bpe_pairs_run_match_the_studio(pairs_export):
    """A prompt/response run: framed by <|prompt|> ... <|response|>, stopping at <|end|>, never
    choosing the logits past the BPE vocabulary."""
    run, folder = pairs_export
    model = json.loads((folder / "manifest.json").read_text())["model"]
    assert model["format"] == "pairs" and model["stop_token"] == model["special_tokens"]["end"]
    assert model["tokenizer_kind"] == "bpe"
    assert set(range(model["vocab_size"], 320)) <= set(model["banned_tokens"])  # 300 -> 320
    tokenizer = load_tokenizer(run / "assets" / "tokenizer.json")
    for prompt in ("Where is my order?", "Can I return a gift?"):
        studio = api.generate(str(run), prompt=prompt, device="cpu",
                              settings=["temperature=0", "max_new_tokens=30"])[0].data
        assert tokenizer.decode(onnx_greedy_without_torch(folder, prompt, 30)) == studio


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_the_exported_tokenizer_encodes_and_decodes_as_the_studios(tmp_path, kind):
    studio = (CharTokenizer.train(MULTILINGUAL) if kind == "char"
              else BPETokenizer.train([MULTILINGUAL], vocab_size=400))
    write_hf_tokenizer(studio, tmp_path / "tokenizer.json")
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    hf.encode_special_tokens = True  # as the manifest's tokenizer_settings say
    texts = [MULTILINGUAL[:200], "", "Ünïcödé 🦊\r\n\ttabs  and  spaces",
             "never seen: ñ ß 😀 Ωμέγα ∑ \u0301 q", "literal <|prompt|> and <unk> text"]
    for text in texts:
        ids = studio.encode(text).tolist()
        assert hf.encode(text).ids == ids, text
        assert hf.decode(ids) == studio.decode(ids), text
    framing = [studio.special_id(t) for t in ("<|prompt|>", "<|response|>", "<|end|>")]
    some = studio.encode("fox").tolist()
    assert hf.decode(framing + some) == studio.decode(framing + some) == "fox"


def test_the_exported_demo_tokenizer_is_the_runs_own(exports):
    studio = load_tokenizer(DEMO / "text" / "assets" / "tokenizer.json")
    hf = Tokenizer.from_file(str(exports["text"][1] / "tokenizer.json"))
    text = "ROMEO:\nBut soft, what light through yonder window breaks? Ωμέγα 😀"
    assert hf.encode(text).ids == studio.encode(text).tolist()
    assert hf.decode(studio.encode(text).tolist()) == studio.decode(studio.encode(text))
    assert hf.get_vocab_size() == studio.vocab_size


# --- classifiers and LoRA runs -----------------------------------------------------------------

@pytest.mark.parametrize("task, data", [("classify", "builtin:sentiment"), ("tag", "builtin:entities")])
def test_a_classifier_or_tagger_exports_its_task_model(tmp_path, task, data):
    _, run = api.train("text", data=data, run_dir=str(tmp_path / "run"), max_steps=3,
                       events="none", settings=QUIET + TINY_TEXT + [f"task={task}"])
    report = export_onnx(str(run.path), str(tmp_path / "onnx"))
    [record] = report["graphs"]
    assert record["name"] == "classifier" and record["max_abs_error"] < 1e-4
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())["model"]
    _, gen, _ = api.load_run(str(run.path), device="cpu")
    assert manifest["task"] == task and manifest["labels"] == gen.task.names
    text = "The battery died after two days" if task == "classify" else "Anna flew to Paris"
    ids = gen.task.encode([text]).ids[0]
    [logits] = session(tmp_path / "onnx", "classifier").run(
        None, {"tokens": ids[None].astype(np.int64), "lengths": np.array([len(ids)], np.int64)})
    answer = api.generate(str(run.path), prompt=text, device="cpu")[0]
    if task == "classify":
        probabilities = np.exp(logits[0]) / np.exp(logits[0]).sum()
        assert np.allclose(probabilities, list(answer.meta["probabilities"].values()), atol=1e-5)
    else:
        first_pieces = gen.task.encode([text]).first_pieces[0]
        tags = [gen.task.names[k] for k in logits[0][first_pieces].argmax(-1)]
        assert tags == answer.meta["tags"]


def test_a_lora_run_is_exported_with_its_adapters_merged(tmp_path, corpus):
    _, base = api.train("text", data=str(corpus), run_dir=str(tmp_path / "base"), max_steps=3,
                        events="none", settings=QUIET + TINY_TEXT)
    _, run = api.train("text", data=str(corpus), run_dir=str(tmp_path / "lora"), max_steps=3,
                       events="none", init_from=str(base.path),
                       settings=QUIET + TINY_TEXT + ["lora_rank=4", "lr=5e-2", "warmup_steps=0"])
    weights_before = sorted(p.name for p in run.path.rglob("*.safetensors"))
    report = export_onnx(str(run.path), str(tmp_path / "onnx"))
    assert report["lora_merged"] is True and any("LoRA" in note for note in report["notes"])
    assert json.loads((tmp_path / "onnx" / "manifest.json").read_text())["lora_merged"] is True
    _, gen, _ = api.load_run(str(run.path), device="cpu")  # base + adapters, unmerged
    assert RunDir(run.path).config()["lora"]  # the run itself is still a LoRA run
    assert sorted(p.name for p in run.path.rglob("*.safetensors")) == weights_before
    tokens = torch.randint(gen.tokenizer.vocab_size, (1, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, _ = gen.model(tokens, all_logits=True)
        base_gen = api.load_run(str(base.path), device="cpu")[1]
        base_logits, _ = base_gen.model(tokens, all_logits=True)
    empty = np.zeros((2, 1, 2, 0, 16), np.float32)
    logits, _, _ = session(tmp_path / "onnx", "decoder").run(
        None, {"tokens": tokens.numpy(), "past_keys": empty, "past_values": empty})
    assert np.abs(logits - expected.numpy()).max() < 1e-4
    assert np.abs(base_logits.numpy() - expected.numpy()).max() > 1e-3  # the adapters count


# --- what cannot be exported, and what an export leaves behind ----------------------------------

@pytest.fixture
def unfaithful_image_graphs(monkeypatch):
    """The image generator's graph held to a tolerance of 0: any rounding fails it."""
    from generators.image import ImageGenerator
    original = ImageGenerator.onnx_graphs
    monkeypatch.setattr(ImageGenerator, "onnx_graphs",
                        lambda self: [replace(g, tolerance=0.0) for g in original(self)])


def test_a_failed_check_leaves_no_folder_behind(tmp_path, unfaithful_image_graphs):
    with pytest.raises(StudioError, match=r"'generator' differs from the PyTorch model by up to "
                                          r"\S+ \(tolerance 0\).*nothing was written"):
        export_onnx(str(DEMO / "image"), str(tmp_path / "onnx"))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_keeps_the_earlier_one_and_a_good_one_replaces_it(
        tmp_path, exports, monkeypatch):
    earlier = shutil.copytree(exports["image"][1], tmp_path / "onnx")
    (earlier / "note.txt").write_text("from the earlier export")
    before = {p.name: p.read_bytes() for p in earlier.iterdir()}
    from generators.image import ImageGenerator
    original = ImageGenerator.onnx_graphs
    with monkeypatch.context() as patch:
        patch.setattr(ImageGenerator, "onnx_graphs",
                      lambda self: [replace(g, tolerance=0.0) for g in original(self)])
        with pytest.raises(StudioError, match="differs"):
            export_onnx(str(DEMO / "image"), str(earlier))
    assert {p.name: p.read_bytes() for p in earlier.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["onnx"]  # no temporary folder left
    export_onnx(str(DEMO / "image"), str(earlier))  # an earlier export is replaced whole
    assert {p.name for p in earlier.iterdir()} == {"generator.onnx", "manifest.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["onnx"]


def test_bad_targets_and_runs_are_refused_with_nothing_changed(tmp_path):
    a_file = tmp_path / "model.onnx"
    a_file.write_text("mine")
    with pytest.raises(StudioError, match=r"model.onnx is a file; an ONNX export is a folder"):
        export_onnx(str(DEMO / "text"), str(a_file))
    with pytest.raises(StudioError, match=r"lies under .*model.onnx, which is a file"):
        export_onnx(str(DEMO / "text"), str(a_file / "inside"))
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "thesis.txt").write_text("keep me")
    with pytest.raises(StudioError, match="not an ONNX export; nothing in it was changed"):
        export_onnx(str(DEMO / "text"), str(documents))
    assert a_file.read_text() == "mine" and (documents / "thesis.txt").read_text() == "keep me"
    with pytest.raises(StudioError, match="no-such-run"):
        export_onnx(str(tmp_path / "no-such-run"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_generator_without_graphs_says_it_cannot_be_exported(tmp_path):
    from studio.registry import default_registry
    from toy_generators import ToyImageGenerator
    default_registry().add(ToyImageGenerator.name, ToyImageGenerator)
    _, run = api.train(ToyImageGenerator, run_dir=str(tmp_path / "run"), max_steps=2,
                       events="none", settings=QUIET)
    with pytest.raises(StudioError, match="generator 'toy-image' cannot be exported to ONNX"):
        export_onnx(str(run.path), str(tmp_path / "onnx"))
    assert not (tmp_path / "onnx").exists()


def test_missing_onnx_libraries_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    with pytest.raises(StudioError, match=r"onnxruntime is not installed.*"
                                          r"pip install \"aigc-studio\[onnx\]\""):
        export_onnx(str(DEMO / "text"), str(tmp_path / "onnx"))
    assert not (tmp_path / "onnx").exists()


def test_the_cli_exports_onnx_and_prints_each_graphs_error(tmp_path):
    out = tmp_path / "gan-onnx"
    code, stdout, stderr = run_cli("export", DEMO / "image", "--format", "onnx", "--out", out)
    assert code == 0, stderr
    assert stdout.strip() == str(out)
    assert (out / "generator.onnx").is_file() and (out / "manifest.json").is_file()
    assert "generator.onnx: max abs error vs PyTorch" in stderr
    (tmp_path / "a-file").write_text("x")
    code, stdout, stderr = run_cli("export", DEMO / "image", "--format", "onnx", "--out",
                                   tmp_path / "a-file")
    assert code == 2 and stderr.startswith("error: ") and len(stderr.strip().splitlines()) == 1
    assert (tmp_path / "a-file").read_text() == "x"


def test_without_out_the_export_goes_beside_the_run(tmp_path):
    run = tmp_path / "shapes"
    shutil.copytree(DEMO / "image", run)
    code, stdout, stderr = run_cli("export", run, "--format", "onnx")
    assert code == 0, stderr
    assert stdout.strip() == str(tmp_path / "shapes-onnx")
    assert (tmp_path / "shapes-onnx" / "generator.onnx").is_file()
