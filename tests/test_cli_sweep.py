"""The CLI against a careless or hostile user (issue 11's sweep), as one table.

Every row of CASES is one bad input: a command line, the exit code it must end with (2 for a
problem the user can fix, 0 for one that must only warn), and words its message must hold
(what, where). Every row is held to the same promise:

- stderr is one line "error: ..." (a warning: a few lines, one of them the warning), never a
  traceback; argparse's own refusals (a usage line, then "studio ...: error: ...") count too;
- nothing changes on disk unless the command was meant to write: the case's folder, the shared
  text run and the shared image run are snapshotted (every file's path, size and SHA-256)
  before and after;
- no pickle is ever unpickled: every pickle here would leave a marker file if it were.

Paths in a command line are {placeholders}: {tmp} the case's own folder, {run}/{irun} the
module's tiny text/image runs (shared, so only read), {copy}/{icopy} a copy of one made for
the case (to damage, or to resume), {corpus} a good text file, {shapes} a good image folder,
{evil} a pickle, {tiny}/{itiny} settings that keep a text/image run tiny and quiet.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import pickle
import shlex
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from image_fixtures import tiny_settings, write_plain_folder, write_shapes_folder
# The module's text run: a tiny run with checkpoints at steps 10 and 20 (and its settings).
from test_cli_bad_input import TINY, trained_run  # noqa: F401  (trained_run is a fixture)
from test_cli_errors import refuse_writes_under
from studio.cli import main

# Settings that keep an image run tiny and quiet (TINY, imported above, does so for text).
ITINY = " ".join(f"--set {pair}" for pair in tiny_settings()) + \
    " --set device=cpu --set eval_every=0 --set preview_every=0 --events none"

UNPICKLED = "unpickled.marker"  # what unpickling any pickle written here would create


class LeavesAMarker:
    """Unpickling this creates a file named UNPICKLED beside the pickle: the proof it ran."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __reduce__(self):
        return (Path.touch, (self.folder / UNPICKLED,))


def evil_pickle(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"state_dict": LeavesAMarker(path.parent)}))


# --- what the bad inputs are made of -------------------------------------------------------------

FOLDER = object()  # in Case.files: an empty folder
PROSE = "All the world's a stage, and all the men and women merely players.\n"


def jsonl(*rows) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


QA = [{"prompt": f"Question {i}: what time is it?", "response": f"It is {i} o'clock."}
      for i in range(12)]


def png(width: int, height: int) -> bytes:
    """A valid PNG header for width x height grey pixels over a few bytes of data (a
    decompression bomb when the size is large)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def real_png(size: int = 40) -> bytes:
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.effect_noise((size, size), 40).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def idx(dims: tuple, payload: bytes | None = None, dtype: int = 0x08) -> bytes:
    """An MNIST IDX file: magic, dimensions, bytes (all of them unless payload says otherwise)."""
    import math
    head = bytes([0, 0, dtype, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    return head + (bytes(math.prod(dims)) if payload is None else payload)


def shapes(path: Path) -> None:
    write_shapes_folder(path)


def plain_images(path: Path) -> None:
    write_plain_folder(path, n=10)


# --- damage done to a copy of a run ---------------------------------------------------------------

LATEST = "checkpoints/step_0000020"


def truncate(name: str, keep: int = 100) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / name
        path.write_bytes(path.read_bytes()[:keep])
    return damage


def overwrite(name: str, content: bytes | str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return damage


def flip_a_byte(name: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        data = bytearray((run / name).read_bytes())
        data[-5] ^= 0xFF
        (run / name).write_bytes(bytes(data))
    return damage


def remove(name: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return damage


def edit_json(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    """Rewrite a JSON file of the run with `change(doc)` applied (it edits doc in place)."""
    def damage(run: Path) -> None:
        doc = json.loads((run / name).read_text())
        change(doc)
        (run / name).write_text(json.dumps(doc))
    return damage


def pickle_as(name: str) -> Callable[[Path], None]:
    return lambda run: evil_pickle(run / name)


def weights_renamed(run: Path) -> None:
    """A valid safetensors file whose tensors have other names, its hash recorded as ours."""
    from safetensors.torch import load_file, save_file
    from studio.runstore import file_digest
    weights = run / LATEST / "model.safetensors"
    save_file({f"model.{k}": v for k, v in load_file(str(weights)).items()}, str(weights))
    edit_json(f"{LATEST}/state.json",
              lambda s: s["files"].__setitem__("model.safetensors", file_digest(weights)))(run)


def weights_reshaped(run: Path) -> None:
    """The embedding cut in half, its hash recorded as ours: a shape that does not fit."""
    from safetensors.torch import load_file, save_file
    from studio.runstore import file_digest
    weights = run / LATEST / "model.safetensors"
    tensors = load_file(str(weights))
    name = next(k for k in tensors if k.endswith("wte.weight"))
    tensors[name] = tensors[name][: tensors[name].shape[0] // 2].contiguous()
    save_file(tensors, str(weights))
    edit_json(f"{LATEST}/state.json",
              lambda s: s["files"].__setitem__("model.safetensors", file_digest(weights)))(run)


def all_checkpoints_gone(run: Path) -> None:
    for folder in (run / "checkpoints").glob("step_*"):
        shutil.rmtree(folder)
    (run / "checkpoints" / "index.json").unlink()


def marked_running_by_a_dead_process(run: Path) -> None:
    edit_json("run.json", lambda info: info.update(status="running", pid=2 ** 22 + 12345))(run)


# --- the table ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    argv: str                      # the command line after `studio`, with {placeholders}
    expect: str | tuple[str, ...]  # what stderr must say (case-insensitive)
    code: int = 2
    files: dict = field(default_factory=dict)  # under {tmp}: bytes/str, FOLDER, or a writer(path)
    damage: Callable[[Path], None] | None = None  # done to {copy} (or {icopy}) first
    writes: bool = False           # meant to write the run: only the message is checked
    on_stdout: bool = False        # `expect` is in what it prints (exit 0), not in stderr
    read_only: str | None = None   # a placeholder whose folder refuses writes (EROFS)


def rows(category: str, *cases: Case) -> list:
    return [pytest.param(category, case, id=f"{category}-{case.name}") for case in cases]


# A new run that must never be made (two steps at most, should a row ever start training).
NEW = "--run-dir {tmp}/new --max-steps 2 {tiny}"
INEW = "--run-dir {tmp}/new --max-steps 2 {itiny}"
TRAIN_ON = "train text --data {tmp}/%s " + NEW
# A run meant to be made, one step long, that says what it noticed in plain lines.
TRAINS_ON = "train text --data {tmp}/%s --run-dir {tmp}/new --max-steps 1 {tiny} --events plain"
START = "train text --data {corpus} " + NEW  # good data: what is wrong is a setting
SET = START + " --set "

DATA = rows(
    "data",
    Case("missing-file", TRAIN_ON % "nope.txt", ("nope.txt", "does not exist")),
    Case("empty-file", TRAIN_ON % "empty.txt", ("empty.txt", "empty file"), files={"empty.txt": ""}),
    Case("whitespace-only", TRAIN_ON % "blank.txt", ("blank.txt", "fewer than one block"),
         files={"blank.txt": "\n\n   \n"}),
    Case("binary-as-txt", TRAIN_ON % "blob.txt", ("blob.txt", "binary"),
         files={"blob.txt": bytes(range(256)) * 50}),
    Case("binary-after-64kb", TRAIN_ON % "tail.txt", ("tail.txt", "binary", "100,000"),
         files={"tail.txt": (PROSE * 2000).encode()[:100_000] + b"\x00PK\x03\x04" * 100}),
    Case("control-bytes", TRAIN_ON % "ctl.txt", ("ctl.txt", "binary"),
         files={"ctl.txt": b"\xff" + bytes(range(1, 32)) * 400}),
    Case("utf16-without-bom", TRAIN_ON % "u16.txt", ("u16.txt", "binary"),
         files={"u16.txt": (PROSE * 20).encode("utf-16-le")}),
    Case("bad-utf16-after-bom", TRAIN_ON % "badbom.txt", ("badbom.txt", "byte order mark", "UTF-8"),
         files={"badbom.txt": b"\xff\xfe" + b"\x00\xd8" + b"a\x00" * 50}),
    Case("bom-then-nothing", TRAIN_ON % "bomonly.txt", ("bomonly.txt", "empty file"),
         files={"bomonly.txt": b"\xef\xbb\xbf"}),
    Case("shorter-than-a-block", TRAIN_ON % "short.txt", ("short.txt", "fewer than one block"),
         files={"short.txt": "Too short."}),
    Case("empty-folder", TRAIN_ON % "data", ("data", "no usable text"), files={"data": FOLDER}),
    Case("folder-of-pictures", TRAIN_ON % "data", ("data", "no usable text", "not a text file"),
         files={"data/a.png": png(8, 8), "data/b.jpg": b"\xff\xd8\xff" + bytes(50)}),
    Case("folder-of-empty-files", TRAIN_ON % "data", ("no usable text", "empty file"),
         files={"data/a.txt": "", "data/b.md": ""}),
    Case("nested-empty-folders", TRAIN_ON % "data", ("data", "no usable text"),
         files={"data/x/y/z": FOLDER}),
    Case("hidden-files-only", TRAIN_ON % "data", ("data", "no usable text"),
         files={"data/.notes.txt": PROSE * 20}),
    Case("jsonl-not-json", TRAIN_ON % "qa.jsonl", ("qa.jsonl:1", "not valid JSON"),
         files={"qa.jsonl": "not json\n{broken\n"}),
    Case("jsonl-nothing-usable-says-why-by-line", TRAIN_ON % "qa.jsonl",
         ("no usable prompt/response examples", "qa.jsonl:1: missing", "qa.jsonl:3: not valid JSON"),
         files={"qa.jsonl": '{"question": "a"}\n[1, 2]\nnot json\n'}),
    Case("jsonl-wrong-fields", TRAIN_ON % "qa.jsonl", ("no usable prompt/response", "qa.jsonl:1"),
         files={"qa.jsonl": jsonl({"question": "a", "answer": "b"}, {"input": "c"})}),
    Case("jsonl-arrays", TRAIN_ON % "qa.jsonl", ("no usable prompt/response", "qa.jsonl:1"),
         files={"qa.jsonl": jsonl([1, 2], ["prompt", "response"])}),
    Case("jsonl-non-string-fields", TRAIN_ON % "qa.jsonl", ("no usable prompt/response",),
         files={"qa.jsonl": jsonl({"prompt": 1, "response": 2}, {"prompt": None, "response": []})}),
    Case("jsonl-messages-without-assistant", TRAIN_ON % "chat.jsonl",
         ("no usable prompt/response", "chat.jsonl:1"),
         files={"chat.jsonl": jsonl({"messages": [{"role": "user", "content": "hi"}]})}),
    Case("jsonl-unknown-role", TRAIN_ON % "chat.jsonl", ("no usable prompt/response",),
         files={"chat.jsonl": jsonl({"messages": [{"role": "wizard", "content": "hi"},
                                                  {"role": "assistant", "content": "yo"}]})}),
    Case("jsonl-all-responses-empty", TRAIN_ON % "qa.jsonl", ("every response", "nothing to learn"),
         files={"qa.jsonl": jsonl(*[{**row, "response": ""} for row in QA])}),
    Case("jsonl-empty-file", TRAIN_ON % "qa.jsonl", ("qa.jsonl", "empty"), files={"qa.jsonl": ""}),
    Case("jsonl-single-example", TRAIN_ON % "qa.jsonl", ("qa.jsonl", "at least 2"),
         files={"qa.jsonl": jsonl(QA[0])}),
    Case("val-data-missing", "train text --data {corpus} --val-data {tmp}/nope.txt " + NEW,
         ("nope.txt", "does not exist")),
    Case("val-data-empty", "train text --data {corpus} --val-data {tmp}/empty.txt " + NEW,
         ("empty.txt", "empty file"), files={"empty.txt": ""}),
    Case("val-data-too-short", "train text --data {corpus} --val-data {tmp}/short.txt " + NEW,
         ("short.txt", "fewer than one block"), files={"short.txt": "Tiny."}),
    Case("named-pipe", TRAIN_ON % "pipe.txt", ("pipe.txt", "no usable text"),
         files={"pipe.txt": lambda path: os.mkfifo(path)}),
    Case("val-data-binary", "train text --data {corpus} --val-data {tmp}/blob.txt " + NEW,
         ("blob.txt", "binary"), files={"blob.txt": bytes(range(256)) * 20}),
    Case("data-is-dev-null", "train text --data /dev/null " + NEW, ("/dev/null",)),
    Case("mixed-formats-are-said", TRAINS_ON % "data",
         ("mixes", "training on the plain text"), code=0, writes=True,
         files={"data/a.txt": PROSE * 10, "data/b.txt": PROSE * 10, "data/stray.jsonl": jsonl(QA[0])}),
    Case("some-responses-empty-are-counted",
         TRAINS_ON % "qa.jsonl" + " --set block_size=48",
         ("2 of 14 responses", "empty"), code=0, writes=True,
         files={"qa.jsonl": jsonl(*QA, {"prompt": "a?", "response": ""}, {"prompt": "b?", "response": " "})}),
    Case("new-data-unknown-characters", "train --resume {copy} --data {tmp}/greek.txt --max-steps 21 "
         "--events plain", ("greek.txt", "<unk>", "tokenizer=bpe"), code=0, writes=True,
         files={"greek.txt": "Ζωή και ψυχή, " * 60 + PROSE * 10}),
)

IMAGES = rows(
    "images",
    Case("missing-folder", "train image --data {tmp}/nope " + INEW, ("nope", "does not exist")),
    Case("empty-folder", "train image --data {tmp}/data " + INEW, ("data", "is an empty folder"),
         files={"data": FOLDER}),
    Case("no-images", "train image --data {tmp}/data " + INEW, ("data", "no images in"),
         files={"data/notes.txt": "no pictures", "data/table.csv": "a,b\n"}),
    Case("single-file", "train image --data {tmp}/one.png " + INEW, ("one.png", "single file"),
         files={"one.png": real_png()}),
    Case("zero-byte-pngs", "train image --data {tmp}/data " + INEW, ("no usable images", "empty file"),
         files={"data/a.png": b"", "data/b.png": b""}),
    Case("truncated-png", "train image --data {tmp}/data " + INEW, ("no usable images", "a.png"),
         files={"data/a.png": real_png()[:200]}),
    Case("text-named-png", "train image --data {tmp}/data " + INEW, ("no usable images", "not an image"),
         files={"data/letter.png": "Dear reader, I am text."}),
    Case("huge-dimensions-claimed", "train image --data {tmp}/data " + INEW,
         ("no usable images", "decompression bomb"), files={"data/bomb.png": png(30000, 30000)}),
    Case("one-pixel-images", "train image --data {tmp}/data " + INEW, ("no usable images", "too small"),
         files={"data/a.png": png(1, 1), "data/b.png": png(1, 1)}),
    Case("too-few-images", "train image --data {tmp}/data " + INEW, ("only 2 usable image", "at least"),
         files={"data/a.png": real_png(), "data/b.png": real_png()}),
    Case("idx-not-idx", "train image --data {tmp}/t10k-images-idx3-ubyte " + INEW,
         ("t10k-images-idx3-ubyte", "not an IDX file"), files={"t10k-images-idx3-ubyte": b"hello world"}),
    Case("idx-truncated", "train image --data {tmp}/t10k-images-idx3-ubyte " + INEW,
         ("t10k-images-idx3-ubyte", "truncated"),
         files={"t10k-images-idx3-ubyte": idx((100, 28, 28), bytes(1000))}),
    Case("idx-gz-corrupt", "train image --data {tmp}/t10k-images-idx3-ubyte.gz " + INEW,
         ("t10k-images-idx3-ubyte.gz", "cannot read the IDX file"),
         files={"t10k-images-idx3-ubyte.gz": gzip.compress(idx((10, 28, 28)))[:40]}),
    Case("idx-not-images", "train image --data {tmp}/t10k-images-idx3-ubyte " + INEW,
         ("t10k-images-idx3-ubyte", "not 2-D images"),
         files={"t10k-images-idx3-ubyte": idx((100, 28))}),
    Case("idx-label-count-differs", "train image --data {tmp}/mnist " + INEW,
         ("labels for", "images"),
         files={"mnist/t10k-images-idx3-ubyte": idx((20, 28, 28)),
                "mnist/t10k-labels-idx1-ubyte": idx((7,))}),
    Case("idx-labels-not-idx", "train image --data {tmp}/mnist " + INEW, ("labels-idx1", "not an IDX"),
         files={"mnist/t10k-images-idx3-ubyte": idx((20, 28, 28)),
                "mnist/t10k-labels-idx1-ubyte": b"junk"}),
    Case("text-file-given", "train image --data {corpus} " + INEW, ("corpus.txt", "single file")),
    Case("resume-with-missing-data", "train --resume {icopy} --data {tmp}/nope", ("nope", "does not exist")),
    Case("conditional-without-classes", "train image --data {tmp}/plain " + INEW + " --set conditional=yes",
         ("has no classes",), files={"plain": plain_images}),
    Case("bad-files-skipped-and-said",
         "train image --data {tmp}/data --run-dir {tmp}/new --max-steps 1 {itiny} --events plain",
         ("skipped", "zero.png", "empty file"), code=0, writes=True,
         files={"data": plain_images, "data/zero.png": b""}),
)

SETTINGS = rows(
    "settings",
    Case("unknown-key", SET + "n_layers=3",
         ("unknown setting 'n_layers'", "n_layer")),
    Case("unknown-key-image", "train image " + INEW + " --set width=3", ("unknown setting 'width'",)),
    Case("wrong-type-int", SET + "n_layer=three", ("n_layer", "must be int")),
    Case("wrong-type-float", SET + "lr=fast", ("lr", "must be float")),
    Case("wrong-type-bool", SET + "compile=maybe", ("compile", "must be bool")),
    Case("float-for-int", SET + "n_layer=1.5", ("n_layer", "must be int")),
    Case("negative-lr", SET + "lr=-1", ("lr", "must be >= 0")),
    Case("nan-lr", SET + "lr=nan", ("lr", "finite")),
    Case("inf-lr", SET + "lr=inf", ("lr", "finite")),
    Case("dropout-too-high", SET + "dropout=1.5", ("dropout", "must be <= 0.9")),
    Case("zero-layers", SET + "n_layer=0", ("n_layer", "must be >=")),
    Case("zero-batch", SET + "batch_size=0", ("batch_size", "must be >=")),
    Case("zero-block", SET + "block_size=0", ("block_size", "must be >=")),
    Case("bad-choice", SET + "tokenizer=words",
         ("tokenizer", "must be one of char, bpe")),
    Case("embd-not-multiple-of-heads", SET + "n_embd=15",
         ("multiple of n_head",)),
    Case("no-equals", SET + "lr", ("'lr'", "key=value")),
    Case("empty-key", SET + "=3", ("key=value",)),
    Case("empty-value", SET + "lr=", ("'lr'", "must be float, got ''")),
    Case("huge-block", SET + "block_size=100000000",
         ("block_size", "must be <= 16384")),
    Case("huge-batch", SET + "batch_size=100000000", ("batch_size", "must be <=")),
    Case("huge-width", SET + "n_embd=1000000", ("n_embd", "must be <=")),
    Case("zero-heads", SET + "n_head=0", ("n_head", "must be >= 1")),
    Case("overflowing-lr", SET + "lr=1e999", ("lr", "finite")),
    Case("bpe-vocab-too-small", SET + "tokenizer=bpe --set vocab_size=2",
         ("vocab_size", "must be >= 260")),
    Case("val-fraction-all", SET + "val_fraction=1", ("val_fraction", "<= 0.5")),
    Case("val-fraction-none", SET + "val_fraction=0", ("val_fraction", ">=")),
    Case("keep-last-negative", SET + "keep_last=-1", ("keep_last", ">= 1")),
    Case("checkpoint-every-negative", SET + "checkpoint_every=-1",
         ("checkpoint_every", ">= 0")),
    Case("max-steps-zero", START + " --max-steps 0", ("max_steps", ">= 1, got 0")),
    Case("max-steps-negative", START + " --max-steps -5", ("max_steps", "got -5")),
    Case("max-minutes-negative", START + " --max-minutes -1", ("max_minutes", "> 0")),
    Case("threads-beyond-any-machine", SET + "threads=100000",
         ("threads", "1024")),
    Case("negative-threads", SET + "threads=-1", ("threads",)),
    Case("device-name", SET + "device=tpu", ("not a device name",)),
    Case("device-flag", START + " --device tpu", ("not a device name",)),
    Case("gpu-not-here", START + " --device cuda:99", ("device 'cuda:99'",)),
    Case("mps-not-here", START + " --device mps", ("device 'mps'", "not available")),
    Case("precision-unknown", SET + "precision=fp8",
         ("precision", "must be one of")),
    Case("fp16-on-cpu", SET + "precision=fp16",
         ("fp16", "not supported on CPU")),
    Case("unknown-preset", "train text " + NEW + " --preset huge", ("no preset 'huge'",)),
    Case("preset-on-resume", "train --resume {copy} --preset small", ("--preset", "cannot change a run")),
    Case("config-on-resume", "train --resume {copy} --config {tmp}/c.json",
         ("--config", "cannot change a run"),
         files={"c.json": "{}"}),
    Case("init-from-missing", "train text --init-from {tmp}/nope --run-dir {tmp}/new",
         ("nope", "does not exist")),
    Case("init-from-a-file", "train text --init-from {corpus} --run-dir {tmp}/new",
         ("corpus.txt", "is a file")),
    Case("init-from-another-generator", "train image --init-from {run} --run-dir {tmp}/new",
         ("run of generator 'text'", "cannot start a 'image' run")),
    Case("init-from-a-bigger-model",
         "train text --init-from {run} --data {corpus} --run-dir {tmp}/new --set n_layer=3",
         ("--init-from", "do not fit this model")),
    Case("init-from-hf-missing", "train text --init-from-hf {tmp}/nope --run-dir {tmp}/new",
         ("nope", "not a folder")),
    Case("init-from-hf-a-run", "train text --init-from-hf {run} --run-dir {tmp}/new",
         ("config.json", "GPT-2")),
    Case("init-from-hf-without-config", "train text --init-from-hf {tmp}/hf --run-dir {tmp}/new",
         ("hf", "no config.json"), files={"hf/notes.txt": "x"}),
    Case("init-from-hf-not-gpt2", "train text --init-from-hf {tmp}/hf --run-dir {tmp}/new",
         ("llama", "GPT-2"),
         files={"hf/config.json": '{"model_type": "llama"}'}),
    Case("init-from-hf-config-not-json", "train text --init-from-hf {tmp}/hf --run-dir {tmp}/new",
         ("config.json", "not valid JSON"), files={"hf/config.json": "{"}),
    Case("init-from-hf-for-images", "train image --init-from-hf {tmp}/hf --run-dir {tmp}/new",
         ("cannot import models",), files={"hf": FOLDER}),
    Case("resume-with-missing-data", "train --resume {copy} --data {tmp}/nope.txt",
         ("nope.txt", "does not exist")),
    Case("preset-with-init-from", "train text --init-from {run} --preset small --run-dir {tmp}/new",
         ("--preset", "--init-from")),
    Case("init-from-and-init-from-hf",
         "train text --init-from {run} --init-from-hf {tmp}/hf --run-dir {tmp}/new",
         ("either --init-from", "--init-from-hf"), files={"hf": FOLDER}),
    Case("config-missing", "train text --config {tmp}/nope.json " + NEW, ("nope.json",)),
    Case("config-not-json", "train text --config {tmp}/c.json " + NEW, ("c.json", "not valid JSON"),
         files={"c.json": "lr: 3"}),
    Case("config-a-list", "train text --config {tmp}/c.json " + NEW, ("c.json", "expected a JSON object"),
         files={"c.json": "[1, 2]"}),
    Case("config-unknown-key", "train text --config {tmp}/c.json " + NEW,
         ("c.json", "unknown setting 'lrate'"),
         files={"c.json": '{"lrate": 0.1}'}),
    Case("config-wrong-type", "train text --config {tmp}/c.json " + NEW,
         ("'dropout' must be float, got 'lots'",),
         files={"c.json": '{"dropout": "lots"}'}),
    Case("config-a-folder", "train text --config {tmp}/cfg " + NEW, ("cfg",), files={"cfg": FOLDER}),
    Case("config-binary", "train text --config {tmp}/c.json " + NEW, ("c.json", "not valid JSON"),
         files={"c.json": bytes(range(256))}),
    Case("no-generator-no-resume", "train --run-dir {tmp}/new", ("name a generator",)),
    Case("unknown-generator", "train nosuch --run-dir {tmp}/new", ("no generator named 'nosuch'",)),
    Case("config-command-unknown-generator", "config nosuch", ("no generator named 'nosuch'",)),
    Case("resume-changes-the-model", "train --resume {copy} --set n_layer=2",
         ("n_layer", "cannot change when resuming")),
    Case("resume-changes-the-tokenizer", "train --resume {copy} --set tokenizer=bpe",
         ("tokenizer", "cannot change when resuming")),
    Case("resume-changes-the-context", "train --resume {copy} --set block_size=32",
         ("block_size", "cannot change when resuming")),
    Case("resume-with-no-steps", "train --resume {copy} --max-steps 0", ("max_steps", ">= 1")),
    Case("resume-changes-the-image-resolution", "train --resume {icopy} --set resolution=64",
         ("resolution", "cannot change when resuming")),
    Case("image-resolution-not-offered", "train image " + INEW + " --set resolution=48",
         ("must be one of 32, 64, 128",)),
    Case("image-channels", "train image " + INEW + " --set channels=cmyk",
         ("must be one of auto, grey, rgb",)),
    Case("image-augmentation", "train image " + INEW + " --set augment=color,blur",
         ("unknown augmentation 'blur'",)),
    Case("image-width-zero", "train image " + INEW + " --set g_width=0", ("g_width", "must be >= 4")),
    Case("inception-weights-missing", "train image " + INEW + " --set inception_weights={tmp}/nope.pth",
         ("nope.pth", "does not exist")),
    Case("max-steps-not-a-number", START + " --max-steps lots",
         ("--max-steps", "invalid int")),
    Case("events-unknown", "train text --data {corpus} --run-dir {tmp}/new --events loud",
         ("--events", "invalid choice")),
    Case("generate-without-a-run", "generate", ("required", "run")),
    Case("eval-without-a-run", "eval", ("required", "run")),
    Case("config-without-a-generator", "config", ("required", "generator")),
    Case("unknown-command", "trian text", ("invalid choice: 'trian'",)),
    Case("unknown-flag", "train text --data {corpus} --run-dir {tmp}/new --epochs 3",
         ("unrecognized arguments",)),
)

FLAGS = rows(
    "settings",
    Case("checkpoint-without-resume", START + " --checkpoint best", ("--checkpoint", "with --resume")),
    Case("resume-with-init-from", "train --resume {copy} --init-from {run}", ("--init-from", "cannot go with --resume")),
    Case("resume-with-run-dir", "train --resume {copy} --run-dir {tmp}/elsewhere", ("--run-dir", "cannot go with --resume")),
    Case("empty-data", "train text --data '' " + NEW, ("--data is empty",)),
    Case("empty-run-dir", "train text --data {corpus} --run-dir '' --max-steps 2 {tiny}", ("--run-dir is empty",)),
    Case("empty-resume", "train --resume ''", ("--resume is empty",)),
    Case("empty-runs-folder", "runs ''", ("runs folder is empty",)),
    Case("empty-eval-data", "eval {run} --data '' --device cpu", ("--data is empty",)),
    Case("generate-seed-beyond-64-bits", "generate {run} --seed 1180591620717411303424", ("--seed", "2**62")),
    Case("generate-negative-seed", "generate {run} --seed -3", ("--seed", "from 0")),
    Case("generate-far-too-many", "generate {run} --n 100000000", ("--n must be from 1 to 10,000",)),
)

RUN_FOLDERS = rows(
    "run-folders",
    Case("generate-missing", "generate {tmp}/nope", ("nope", "does not exist")),
    Case("generate-a-file", "generate {tmp}/notes.txt", ("notes.txt", "is a file, not a run folder"),
         files={"notes.txt": "hello"}),
    Case("generate-empty-folder", "generate {tmp}/empty",
         ("empty", "not a run folder"), files={"empty": FOLDER}),
    Case("generate-someone-elses-folder", "generate {tmp}/mine", ("mine", "not a run folder"),
         files={"mine/events.jsonl": "{}\n", "mine/notes.txt": "keep"}),
    Case("generate-the-runs-parent", "generate {tmp}", ("not a run folder",), files={"x.txt": "x"}),
    Case("resume-missing", "train --resume {tmp}/nope", ("nope", "does not exist")),
    Case("resume-a-file", "train --resume {tmp}/notes.txt",
         ("notes.txt", "is a file"), files={"notes.txt": "x"}),
    Case("resume-not-a-run", "train --resume {tmp}/notrun",
         ("notrun", "not a run folder"), files={"notrun": FOLDER}),
    Case("new-run-over-a-run", "train text --data {corpus} --run-dir {copy} {tiny}",
         ("already holds a run",)),
    Case("new-run-in-someone-elses-folder", "train text --data {corpus} --run-dir {tmp}/mine {tiny}",
         ("mine", "not empty"), files={"mine/events.jsonl": '{"my": "own log"}\n', "mine/notes.txt": "keep"}),
    Case("new-run-onto-a-file", "train text --data {corpus} --run-dir {tmp}/notes.txt {tiny}",
         ("notes.txt",), files={"notes.txt": "mine"}),
    Case("new-run-under-a-file", "train text --data {corpus} --run-dir {tmp}/notes.txt/run {tiny}",
         ("cannot write the run folder",), files={"notes.txt": "mine"}),
    Case("new-run-read-only", "train text --data {corpus} --run-dir {tmp}/ro/run {tiny}",
         ("cannot write", "read-only"), files={"ro": FOLDER}, read_only="{tmp}/ro"),
    Case("resume-read-only", "train --resume {copy} --max-steps 25 --events none",
         ("cannot write the run folder", "read-only"), read_only="{copy}"),
    Case("config-json-not-json", "generate {copy}", ("config.json", "not valid JSON"),
         damage=overwrite("config.json", "{broken")),
    Case("config-json-missing", "generate {copy}", ("not a run folder",), damage=remove("config.json")),
    Case("config-json-without-generator", "generate {copy}", ("config.json", "does not describe a run"),
         damage=overwrite("config.json", '{"config": {}}')),
    Case("config-json-a-list", "generate {copy}", ("config.json", "does not describe a run"),
         damage=overwrite("config.json", "[]")),
    Case("config-json-unknown-generator", "generate {copy}", ("no generator named 'ghost'",),
         damage=edit_json("config.json", lambda d: d.update(generator="ghost"))),
    Case("config-json-bad-setting", "generate {copy}", ("config.json", "n_layer"),
         damage=edit_json("config.json", lambda d: d["config"].update(n_layer="many"))),
    Case("config-json-resume-bad-setting", "train --resume {copy}", ("config.json", "n_layer"),
         damage=edit_json("config.json", lambda d: d["config"].update(n_layer=-2))),
    Case("tokenizer-missing", "generate {copy}", ("tokenizer.json",), damage=remove("assets/tokenizer.json")),
    Case("tokenizer-not-json", "generate {copy}", ("tokenizer.json", "not valid JSON"),
         damage=overwrite("assets/tokenizer.json", "\x00\x01garbage")),
    Case("image-resolution-edited", "generate {icopy}", ("trained at 32 px",),
         damage=edit_json("config.json", lambda d: d["config"].update(resolution=64))),
    Case("runs-missing-root", "runs {tmp}/nope", ("nope", "does not exist")),
    Case("runs-root-under-a-file", "runs {tmp}/notes.txt/runs",
         ("does not exist",), files={"notes.txt": "x"}),
)

# A damaged checkpoint asked for by name is refused (which damaged checkpoint a plain resume or
# generate skips, and how it says so, is the run store's own test).
CHOSEN = "--checkpoint step_0000020"

CHECKPOINTS = rows(
    "checkpoints",
    Case("generate-unknown-name", "generate {run} --checkpoint step_0000099",
         ("no checkpoint 'step_0000099'", "step_0000010, step_0000020")),
    Case("generate-unknown-step", "generate {run} --checkpoint 99", ("no checkpoint '99'", "Available")),
    Case("generate-negative-step", "generate {run} --checkpoint -1", ("no checkpoint '-1'",)),
    Case("resume-unknown", "train --resume {copy} --checkpoint nope", ("no checkpoint 'nope'",)),
    Case("eval-unknown", "eval {run} --checkpoint nope --device cpu", ("no checkpoint 'nope'",)),
    Case("no-checkpoint-yet", "generate {copy}", ("has no checkpoint yet",), damage=all_checkpoints_gone),
    Case("truncated-weights", "generate {copy} " + CHOSEN,
         ("step_0000020 is damaged", "model.safetensors", "--checkpoint step_0000010"),
         damage=truncate(f"{LATEST}/model.safetensors")),
    Case("truncated-weights-by-step", "generate {copy} --checkpoint 20", ("step_0000020 is damaged",),
         damage=truncate(f"{LATEST}/model.safetensors")),
    Case("truncated-weights-eval", "eval {copy} --device cpu " + CHOSEN, ("step_0000020 is damaged",),
         damage=truncate(f"{LATEST}/model.safetensors")),
    Case("zero-byte-weights", "generate {copy} " + CHOSEN, ("damaged", "model.safetensors"),
         damage=overwrite(f"{LATEST}/model.safetensors", b"")),
    Case("weights-missing", "generate {copy} " + CHOSEN, ("damaged", "model.safetensors is missing"),
         damage=remove(f"{LATEST}/model.safetensors")),
    Case("modified-weights-bytes", "generate {copy} " + CHOSEN, ("damaged", "SHA-256"),
         damage=flip_a_byte(f"{LATEST}/model.safetensors")),
    Case("checkpoint-folder-given-damaged", "generate {copy}/" + LATEST + " " + CHOSEN, ("damaged",),
         damage=truncate(f"{LATEST}/model.safetensors")),
    Case("weights-with-other-names", "generate {copy} --device cpu",
         ("do not fit this model", "the model expects", "the file has 'model."), damage=weights_renamed),
    Case("weights-with-other-shapes", "generate {copy} --device cpu", ("wte.weight", "shape"),
         damage=weights_reshaped),
    Case("index-best-points-nowhere", "generate {copy} --checkpoint best",
         ("step_0000007", "missing", "--checkpoint step_0000020"),
         damage=overwrite("checkpoints/index.json", '{"best": "step_0000007", "latest": "step_0000020"}')),
    Case("image-truncated-weights", "generate {icopy} --checkpoint step_0000003",
         ("step_0000003 is damaged", "model.safetensors"),
         damage=truncate("checkpoints/step_0000003/model.safetensors")),
    # A damaged checkpoint is never taken for a missing one, and a refused resume writes nothing.
    Case("resume-every-checkpoint-damaged", "train --resume {copy} --max-steps 25",
         ("no checkpoint", "can be resumed", "not valid JSON", "nothing was changed"),
         damage=lambda run: [overwrite(f"checkpoints/{name}/state.json", '{"step": ')(run)
                             for name in ("step_0000010", "step_0000020")]),
    Case("resume-every-state-missing", "train --resume {copy} --max-steps 25",
         ("no checkpoint", "state.json is missing"),
         damage=lambda run: [remove(f"checkpoints/{name}/state.json")(run)
                             for name in ("step_0000010", "step_0000020")]),
    Case("resume-named-truncated", "train --resume {copy} --max-steps 25 " + CHOSEN,
         ("step_0000020 is damaged", "--checkpoint step_0000010"),
         damage=truncate(f"{LATEST}/model.safetensors")),
    Case("resume-named-flipped-trainer", "train --resume {copy} --max-steps 25 " + CHOSEN,
         ("step_0000020 is damaged", "trainer.safetensors", "SHA-256"),
         damage=flip_a_byte(f"{LATEST}/trainer.safetensors")),
    Case("resume-named-pickled-trainer", "train --resume {copy} --max-steps 25 " + CHOSEN,
         ("step_0000020 is damaged", "trainer.safetensors"),
         damage=pickle_as(f"{LATEST}/trainer.safetensors")),
    Case("generate-weights-without-own-hash-and-state", "generate {copy} " + CHOSEN,
         ("step_0000020 is damaged", "state.json is missing", "model.safetensors"),
         damage=lambda run: [remove(f"{LATEST}/state.json")(run), flip_a_byte(f"{LATEST}/model.safetensors")(run)]),
)

PICKLES = rows(
    "pickles",
    Case("generate-pt", "generate {evil}", ("never loads pickles",)),
    Case("generate-pkl", "generate {tmp}/weights.pkl",
         ("never loads pickles",), files={"weights.pkl": evil_pickle}),
    Case("generate-bin-without-magic-bytes", "generate {tmp}/model.bin", ("never loads pickles",),
         files={"model.bin": b"\x00" * 64}),
    Case("resume-pt", "train --resume {evil}", ("never loads pickles",)),
    Case("eval-pt", "eval {evil}", ("never loads pickles",)),
    Case("init-from-pt", "train text --init-from {evil} --run-dir {tmp}/new", ("never loads pickles",)),
    Case("text-data-pkl", "train text --data {tmp}/corpus.pkl " + NEW, ("corpus.pkl",),
         files={"corpus.pkl": evil_pickle}),
    Case("text-data-folder-of-pickles", "train text --data {tmp}/data " + NEW, ("no usable text",),
         files={"data/a.pt": evil_pickle, "data/b.pkl": evil_pickle}),
    Case("image-data-folder-of-pickles", "train image --data {tmp}/data " + INEW, ("no images in",),
         files={"data/a.pt": evil_pickle, "data/b.pkl": evil_pickle}),
    Case("config-pickle", "train text --config {tmp}/c.pkl " + NEW, ("c.pkl", "not valid JSON"),
         files={"c.pkl": evil_pickle}),
    Case("inception-weights-pickle", "train image " + INEW + " --set inception_weights={tmp}/inc.pth",
         ("not a weights file torch can read safely",), files={"inc.pth": evil_pickle}),
    Case("weights-replaced-by-pickle", "generate {copy} " + CHOSEN, ("damaged", "model.safetensors"),
         damage=pickle_as(f"{LATEST}/model.safetensors")),
    Case("tokenizer-replaced-by-pickle", "generate {copy}", ("tokenizer.json",),
         damage=pickle_as("assets/tokenizer.json")),
    Case("eval-data-pickle", "eval {run} --data {tmp}/held.pkl --device cpu", ("held.pkl",),
         files={"held.pkl": evil_pickle}),
)

GENERATE = rows(
    "generate",
    Case("n-zero", "generate {run} --n 0", ("--n must be from 1 to", "got 0")),
    Case("n-negative", "generate {run} --n -3", ("--n must be from 1 to", "got -3")),
    Case("n-not-a-number", "generate {run} --n lots", ("--n", "invalid int")),
    Case("seed-not-a-number", "generate {run} --seed x", ("--seed", "invalid int")),
    Case("out-onto-a-file", "generate {run} --prompt All --device cpu --out {tmp}/notes.txt",
         ("--out", "notes.txt", "is a file"), files={"notes.txt": "my notes"}),
    Case("out-under-a-file", "generate {run} --prompt All --device cpu --out {tmp}/notes.txt/samples",
         ("--out", "which is a file"), files={"notes.txt": "my notes"}),
    Case("out-read-only", "generate {run} --prompt All --device cpu --out {tmp}/ro/samples",
         ("cannot write", "read-only"), files={"ro": FOLDER}, read_only="{tmp}/ro"),
    Case("stream-two", "generate {run} --stream --n 2", ("one sample",)),
    Case("stream-json", "generate {run} --stream --json", ("one sample",)),
    Case("stream-out", "generate {run} --stream --out {tmp}/o", ("one sample",)),
    Case("stream-an-image-run", "generate {irun} --stream --device cpu",
         ("only text runs can stream", "generate its samples whole")),
    Case("temperature-negative", "generate {run} --set temperature=-1", ("temperature", "must be >= 0")),
    Case("top-k-not-a-number", "generate {run} --set top_k=lots", ("top_k", "must be int")),
    Case("top-p-zero", "generate {run} --set top_p=0", ("'top_p' must be > 0",)),
    Case("top-p-above-one", "generate {run} --set top_p=1.5", ("'top_p' must be <= 1",)),
    Case("repetition-penalty-zero", "generate {run} --set repetition_penalty=0",
         ("repetition_penalty", "must be > 0")),
    Case("stop-empty-string", "generate {run} --set 'stop=[\"\"]'", ("stop strings must be non-empty",)),
    Case("max-new-tokens-negative", "generate {run} --set max_new_tokens=-5", ("max_new_tokens",)),
    Case("max-new-tokens-zero", "generate {run} --set max_new_tokens=0", ("max_new_tokens", ">= 1")),
    Case("max-new-tokens-huge", "generate {run} --set max_new_tokens=100000000",
         ("max_new_tokens", "<= 100000")),
    Case("top-k-negative", "generate {run} --set top_k=-1", ("top_k", ">= 0")),
    Case("temperature-nan", "generate {run} --set temperature=nan", ("temperature", "finite")),
    Case("stop-not-strings", "generate {run} --set stop=[1,2]", ("stop strings",)),
    Case("seed-as-a-setting", "generate {run} --set seed=3", ("unknown setting 'seed'", "max_new_tokens")),
    Case("gpu-not-here", "generate {run} --device cuda:99", ("device 'cuda:99'",)),
    Case("prompt-longer-than-the-context", "generate {run} --set max_new_tokens=2 --prompt " + "x" * 100,
         ("note: the prompt has 100 tokens", "context of 16", "only its last part is used"), code=0),
    Case("unknown-sampling-setting", "generate {run} --set beam=3", ("unknown setting 'beam'",)),
    Case("training-setting-at-sampling", "generate {run} --set lr=0.1", ("unknown setting 'lr'",)),
    Case("set-without-equals", "generate {run} --set temperature", ("key=value",)),
    Case("device-unknown", "generate {run} --device tpu", ("not a device name",)),
    Case("image-unknown-class", "generate {irun} --prompt hexagon --device cpu",
         ("no class 'hexagon'", "circle, square")),
    Case("image-class-out-of-range", "generate {irun} --set class_label=5 --device cpu",
         ("class_label 5 is out of range",)),
    Case("image-truncation-negative", "generate {irun} --set truncation=-1", ("truncation", "must be >= 0")),
    Case("image-n-zero", "generate {irun} --n 0", ("--n must be from 1",)),
    Case("image-out-onto-a-file", "generate {irun} --device cpu --out {tmp}/notes.txt", ("--out", "is a file"),
         files={"notes.txt": "my notes"}),
    Case("image-text-setting", "generate {irun} --set temperature=0.5", ("unknown setting 'temperature'",)),
)

EVAL = rows(
    "eval",
    Case("missing-run", "eval {tmp}/nope", ("nope", "does not exist")),
    Case("data-missing", "eval {run} --data {tmp}/nope.txt --device cpu", ("nope.txt", "does not exist")),
    Case("data-empty", "eval {run} --data {tmp}/empty.txt --device cpu", ("empty.txt", "empty file"),
         files={"empty.txt": ""}),
    Case("data-binary", "eval {run} --data {tmp}/blob.txt --device cpu", ("blob.txt", "binary"),
         files={"blob.txt": bytes(range(256)) * 20}),
    Case("data-too-short", "eval {run} --data {tmp}/short.txt --device cpu",
         ("short.txt", "fewer than one block"),
         files={"short.txt": "Hi."}),
    Case("data-folder-of-nothing", "eval {run} --data {tmp}/data --device cpu", ("no usable text",),
         files={"data": FOLDER}),
    Case("device-unknown", "eval {run} --device tpu", ("not a device name",)),
    Case("gpu-not-here", "eval {run} --device cuda:99", ("device 'cuda:99'",)),
    Case("image-folder-for-a-text-run", "eval {run} --data {shapes} --device cpu", ("no usable text",)),
    Case("text-file-for-an-image-run", "eval {irun} --data {corpus} --device cpu", ("corpus.txt", "single file")),
    Case("image-data-missing", "eval {irun} --data {tmp}/nope --device cpu", ("nope", "does not exist")),
    Case("image-data-no-images", "eval {irun} --data {tmp}/data --device cpu", ("no images in",),
         files={"data/notes.txt": "x"}),
)

CONTROL = rows(
    "control",
    Case("a-run-not-training", "control {run} pause", ("is not training now", "--resume")),
    Case("a-dead-process", "control {copy} stop", ("is not training now",),
         damage=marked_running_by_a_dead_process),
    Case("missing-run", "control {tmp}/nope stop", ("nope", "does not exist")),
    Case("a-file", "control {tmp}/notes.txt stop", ("notes.txt", "is a file"), files={"notes.txt": "x"}),
    Case("not-a-run", "control {tmp}/empty stop", ("not a run folder",), files={"empty": FOLDER}),
    Case("an-image-run-not-training", "control {irun} stop", ("is not training now",)),
    Case("no-action", "control {run}", ("required", "action")),
    Case("unknown-action", "control {run} explode", ("invalid choice: 'explode'",)),
    Case("runs-shows-a-dead-run-as-interrupted", "runs {tmp}", ("interrupted",), code=0, on_stdout=True,
         damage=marked_running_by_a_dead_process),
    Case("runs-in-a-folder-without-runs", "runs {tmp}/empty", ("no runs in",), code=0, on_stdout=True,
         files={"empty": FOLDER}),
)

DEMO_AND_EXPORT = rows(
    "export",
    Case("demo-no-steps", "demo text --steps 0 --run-dir {tmp}/demo", ("--steps must be at least 1, got 0",)),
    Case("demo-image-no-steps", "demo image --steps 0 --run-dir {tmp}/demo", ("--steps must be at least 1",)),
    Case("demo-unknown-generator", "demo sound", ("invalid choice: 'sound'",)),
    Case("demo-run-dir-is-a-file", "demo text --steps 1 --run-dir {tmp}/f.txt", ("f.txt", "is a file"),
         files={"f.txt": "mine"}),
    Case("demo-export-onto-my-documents", "demo text --steps 1 --run-dir {tmp}/demo --export-to {tmp}/docs",
         ("docs", "not an exported run", "nothing in it was changed"),
         files={"docs/thesis.txt": "three years of work"}),
    Case("runs-of-a-file", "runs {tmp}/f.txt", ("f.txt", "is a file"), files={"f.txt": "mine"}),
    Case("demo-steps-not-a-number", "demo text --steps many", ("--steps", "invalid int")),
)

CASES = DATA + IMAGES + SETTINGS + FLAGS + RUN_FOLDERS + CHECKPOINTS + PICKLES + GENERATE + EVAL + CONTROL \
    + DEMO_AND_EXPORT


# --- the promise, checked on every row ---------------------------------------------------------------

def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its size and SHA-256, and every folder: equal snapshots,
    nothing was written, moved or left behind."""
    entries = {}
    for path in sorted(Path(folder).rglob("*")):
        relative = path.relative_to(folder)
        if path.is_dir():
            entries[str(relative)] = "folder"
        elif path.is_file():
            entries[str(relative)] = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        else:  # a named pipe: reading it would wait for a writer
            entries[str(relative)] = "not a file"
    return entries


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """A tiny class-conditional image run (circles and squares) with one checkpoint at step 3."""
    root = tmp_path_factory.mktemp("image-run")
    run = root / "run"
    assert main(["train", "image", "--data", str(write_shapes_folder(root / "shapes")), "--run-dir",
                 str(run), "--max-steps", "3", *shlex.split(ITINY)]) == 0
    return run


@pytest.fixture(scope="module")
def good_data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("good-data")
    corpus = root / "corpus.txt"
    corpus.write_text(PROSE * 30)
    return {"corpus": corpus, "shapes": write_shapes_folder(root / "shapes")}


def refuse_writes_and_folders_under(monkeypatch, folder: Path) -> None:
    """`folder` as on a read-only file system: no file opened for writing (test_cli_errors'
    refuse_writes_under) and no folder made under it."""
    refuse_writes_under(monkeypatch, folder)
    real_mkdir, folder = os.mkdir, folder.resolve()

    def read_only_mkdir(path, *args, **kwargs):
        if folder in Path(path).resolve().parents:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only_mkdir)


def studio(argv: list[str], capsys) -> tuple[int, str, str, bool]:
    """`studio ARGV` in this process: (exit code, stdout, stderr, whether argparse refused it)."""
    try:
        code, by_argparse = main(argv), False
    except SystemExit as exc:
        code, by_argparse = exc.code, True
    out, err = capsys.readouterr()
    return code, out, err, by_argparse


def make_files(folder: Path, files: dict) -> None:
    for relative, content in files.items():
        path = folder / relative
        if content is FOLDER:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)


@pytest.mark.parametrize("category, case", CASES)
def test_bad_input(category, case: Case, tmp_path, capsys, monkeypatch, trained_run, image_run, good_data):
    tmp = tmp_path / "case"
    tmp.mkdir()
    places = {"tmp": tmp, "run": trained_run, "irun": image_run, "copy": tmp / "run",
              "icopy": tmp / "irun", "evil": tmp / "model.pt", "tiny": " ".join(TINY),
              "itiny": ITINY, **good_data}
    if "{copy}" in case.argv or (case.damage and "{icopy}" not in case.argv):
        shutil.copytree(trained_run, places["copy"])
    if "{icopy}" in case.argv:
        shutil.copytree(image_run, places["icopy"])
    if case.damage:
        case.damage(places["icopy" if "{icopy}" in case.argv else "copy"])
    if "{evil}" in case.argv:
        evil_pickle(places["evil"])
    make_files(tmp, case.files)
    argv = shlex.split(case.argv.format(**places))
    watched = {"case folder": tmp, "text run": trained_run, "image run": image_run}
    before = {name: snapshot(folder) for name, folder in watched.items()}
    if case.read_only:
        refuse_writes_and_folders_under(monkeypatch, Path(case.read_only.format(**places)))

    code, out, err, by_argparse = studio(argv, capsys)
    monkeypatch.undo()

    assert "Traceback" not in err, err
    assert code == case.code, (code, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    if case.code == 2:
        if by_argparse:  # argparse: its usage, then one line naming the problem
            assert lines[-1].startswith("studio") and ": error: " in lines[-1], err
        else:
            assert len(lines) == 1 and lines[0].startswith("error: "), err
    else:
        assert len(lines) <= 12, err  # a warning among a few lines of progress
    said = out if case.on_stdout else err
    for words in ([case.expect] if isinstance(case.expect, str) else case.expect):
        assert words.lower() in said.lower(), (words, said)
    assert not list(tmp.rglob(UNPICKLED)), "a pickle was unpickled"
    after = {name: snapshot(folder) for name, folder in watched.items()}
    if case.writes:
        after["case folder"] = before["case folder"]  # the run it was meant to write
    for name in watched:
        assert after[name] == before[name], f"the {name} changed"


def test_the_table_covers_every_category_with_120_cases():
    counts = {}
    for param in CASES:
        counts[param.values[0]] = counts.get(param.values[0], 0) + 1
    assert len(CASES) >= 120, counts
    assert {"data", "images", "settings", "run-folders", "checkpoints", "pickles", "generate",
            "eval", "control", "export"} <= set(counts)
    assert len({param.id for param in CASES}) == len(CASES)  # every row named once


def test_the_pickles_here_would_leave_their_marker_if_loaded(tmp_path):
    """The table's proof that nothing was unpickled is only worth something if unpickling
    these files does leave the marker."""
    evil_pickle(tmp_path / "model.pt")
    pickle.loads((tmp_path / "model.pt").read_bytes())
    assert (tmp_path / UNPICKLED).exists()
