"""Text data: read a .txt/.md file or a folder of them, check it, and cache it as tokens.

Each file is decoded as UTF-8, or as the UTF-16/UTF-32 its byte order mark names; a file that is
not UTF-8 but reads as Latin-1 text (cp1252) is decoded as such and reported; a binary file
(judged on the whole file, not its start) is skipped with its reason. A folder that mixes plain
text with prompt/response JSONL trains on the kind with more data and says so. The built-in corpus is
the docstrings of Python's own standard library, read from the sources of the running Python:
English prose that every machine with Python has, offline, without the repo carrying anyone
else's text. The built-in prompt/response pairs (`builtin:customer-service`) are a small shop's
customer-service answers, written for the studio and shipped beside this module.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sysconfig
import threading
from importlib import resources
from pathlib import Path

import numpy as np

from studio.contract import DataReport
from studio.errors import DataError, StudioError

TEXT_SUFFIXES = {".txt", ".md", ".text", ".markdown", ".rst"}
BUILTIN = "builtin:python-docs"
# A small shop's customer-service questions and answers (orders, returns, shipping, payment,
# opening hours), written for the studio: prompt/response pairs short enough for the demo's
# context, in plain ASCII so the demo's character vocabulary (from BUILTIN) reads them all.
BUILTIN_PAIRS = "builtin:customer-service"
BUILTIN_PAIRS_FILE = "customer_service.jsonl"  # beside this module (pyproject's package data)
BUILTIN_MAX_CHARS = 3_000_000
_CONTROL = bytes(range(0, 32)).replace(b"\t", b"").replace(b"\n", b"").replace(b"\r", b"").replace(b"\x0c", b"")


# Byte order marks, longest first: UTF-32 LE starts with the UTF-16 LE mark.
_BOMS = [(b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32 LE"), (b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32 BE"),
         (b"\xef\xbb\xbf", "utf-8", "UTF-8"), (b"\xff\xfe", "utf-16-le", "UTF-16 LE"),
         (b"\xfe\xff", "utf-16-be", "UTF-16 BE")]
_WINDOW = 65536  # binary is judged per window, so a binary tail after text is caught too


def decode_text(raw: bytes, name: str) -> tuple[str | None, str | None]:
    """Returns (text, note) or (None, reason it was skipped). The whole file is checked, not
    only its start: text followed by binary (an archive appended to a log) is still binary."""
    if not raw:
        return None, "empty file"
    for bom, codec, label in _BOMS:
        if raw.startswith(bom):
            return _decode_declared(raw[len(bom):], codec, label)
    nul = raw.find(b"\x00")
    if nul >= 0:
        return None, f"binary file (NUL byte at byte {nul:,}), not text"
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    # The last window ends at the end of the file, full size, so a short tail is not judged
    # on a few bytes.
    starts = [*range(0, max(len(raw) - _WINDOW, 0), _WINDOW), max(len(raw) - _WINDOW, 0)]
    for start in starts:
        window = raw[start:start + _WINDOW]
        control = len(window) - len(window.translate(None, _CONTROL))
        if control > len(window) * 0.01:
            return None, f"binary file (control bytes, not UTF-8, near byte {start:,}), not text"
    return raw.decode("cp1252", errors="replace"), "not UTF-8: decoded as Latin-1 (cp1252)"


def _decode_declared(body: bytes, codec: str, label: str) -> tuple[str | None, str | None]:
    """A file that names its encoding with a byte order mark is decoded as it says (UTF-16
    text is full of NUL bytes, so the NUL test for binary would be wrong for it)."""
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as exc:
        return None, (f"starts with a {label} byte order mark but is not valid {label} "
                      f"(at byte {exc.start:,}); save it again as UTF-8")
    if not text:
        return None, "empty file"
    if "\x00" in text:
        return None, f"binary file (NUL characters in {label} text), not text"
    return text, (None if codec == "utf-8" else f"{label} (byte order mark): decoded")


def read_text_file(file: Path) -> tuple[str | None, str | None]:
    """decode_text for a file, read in windows so that a large binary file is given up on at
    its first NUL byte instead of being read whole (bounded memory for what is skipped)."""
    chunks = []
    offset = 0
    with open(file, "rb") as f:
        first = f.read(_WINDOW)
        declared = any(first.startswith(bom) for bom, _, _ in _BOMS)
        chunk = first
        while chunk:
            nul = -1 if declared else chunk.find(b"\x00")
            if nul >= 0:
                return None, f"binary file (NUL byte at byte {offset + nul:,}), not text"
            chunks.append(chunk)
            offset += len(chunk)
            chunk = f.read(1 << 20)
    return decode_text(b"".join(chunks), str(file))


def read_corpus(source: str) -> tuple[str, list[str], list[tuple[str, str]], list[str]]:
    """Read a file or folder -> (text, used files, skipped (file, reason), notes)."""
    if source == BUILTIN:
        return builtin_corpus(), [BUILTIN], [], []
    if source.startswith("builtin:"):  # a name, not a path: say which names there are
        raise StudioError(f"there is no built-in text set {source!r}; the built-in ones are "
                          f"{BUILTIN} (text) and {BUILTIN_PAIRS} (prompt/response pairs).")
    path = Path(source).expanduser()
    if not path.exists():
        raise StudioError(f"data path {path} does not exist. Give a .txt/.md file or a folder of them.")
    if path.is_file():
        files = [path]
    else:
        files = _data_files(path)
    used, skipped, notes, parts = [], [], [], []
    mixed = mixed_formats_note(source)
    if mixed:
        notes.append(mixed)
    for file in files:
        if path.is_dir() and file.suffix.lower() in PAIR_SUFFIXES:
            skipped.append((str(file), MIXED_SKIP["text"]))
            continue
        if path.is_dir() and file.suffix.lower() not in TEXT_SUFFIXES:
            skipped.append((str(file), f"not a text file ({file.suffix or 'no suffix'}); "
                                       f"text files end in {', '.join(sorted(TEXT_SUFFIXES))}"))
            continue
        try:
            text, note = read_text_file(file)
        except OSError as exc:
            skipped.append((str(file), f"cannot read: {exc.strerror or exc}"))
            continue
        if text is None:
            skipped.append((str(file), note))
            continue
        if note:
            notes.append(f"{file}: {note}")
        used.append(str(file))
        parts.append(text)
    if not used:
        why = "; ".join(f"{Path(f).name}: {r}" for f, r in skipped[:3]) or "no files"
        raise DataError(f"no usable text in {path} ({why}). Give UTF-8 .txt/.md files.",
                        DataReport(source=str(path), skipped=skipped))
    return "\n\n".join(parts), used, skipped, notes


# --- prompt/response examples ------------------------------------------------------------------

PAIR_SUFFIXES = {".jsonl"}


def detect_format(source: str | None) -> str:
    """"pairs" for JSONL prompt/response data (a .jsonl file, or a folder whose JSONL holds more
    bytes than its plain text), else "text"."""
    if not source or source == BUILTIN:
        return "text"
    if source == BUILTIN_PAIRS:
        return "pairs"
    path = Path(source).expanduser()
    if path.is_file():
        return "pairs" if path.suffix.lower() in PAIR_SUFFIXES else "text"
    if path.is_dir():
        sizes = _sizes_by_format(path)
        return "pairs" if sizes["pairs"][1] > sizes["text"][1] else "text"
    return "text"


def _data_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def _sizes_by_format(folder: Path) -> dict[str, tuple[int, int]]:
    """{"text"|"pairs": (files, bytes)} of a folder's data files."""
    sizes = {"text": [0, 0], "pairs": [0, 0]}
    for file in _data_files(folder):
        kind = ("pairs" if file.suffix.lower() in PAIR_SUFFIXES else
                "text" if file.suffix.lower() in TEXT_SUFFIXES else None)
        if kind:
            try:
                sizes[kind][1] += file.stat().st_size
            except OSError:
                continue
            sizes[kind][0] += 1
    return {kind: (n, size) for kind, (n, size) in sizes.items()}


def mixed_formats_note(source: str | None) -> str | None:
    """Say it when a folder mixes plain text and prompt/response JSONL. A run learns one kind
    (continue text, or answer prompts), so it trains on the kind with more data — what the
    folder is mostly made of is what its owner means, and a stray file of the other kind (a
    README beside JSONL, one .jsonl among books) is then skipped and named, not trained on
    alone — and the other kind's files are listed as skipped."""
    if not source or source == BUILTIN or not Path(source).expanduser().is_dir():
        return None
    sizes = _sizes_by_format(Path(source).expanduser())
    if not sizes["text"][0] or not sizes["pairs"][0]:
        return None
    chosen = detect_format(source)
    other = "text" if chosen == "pairs" else "pairs"
    label = {"text": "plain text", "pairs": "prompt/response JSONL"}
    counts = {kind: f"{n} file{'s' * (n != 1)}, {size:,} bytes" for kind, (n, size) in sizes.items()}
    return (f"{source} mixes plain text ({counts['text']}) and prompt/response JSONL "
            f"({counts['pairs']}): training on the {label[chosen]}, which has more data; the "
            f"{label[other]} files are skipped. Give them as a separate run.")


MIXED_SKIP = {"text": "prompt/response JSONL among plain text: give it as a separate run",
              "pairs": "plain text among prompt/response JSONL: give it as a separate run"}


def parse_example(obj, where: str) -> list[tuple[str, str]]:
    """One JSONL object -> turns [(prompt, response), ...].

    Two shapes are accepted:
      {"prompt": "...", "response": "..."}
      {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
    In the chat shape, system and user messages up to an assistant message form that turn's
    prompt (joined by newlines); each assistant message is a response the model learns."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        turns, _ = chat_turns(obj["messages"], where)
        if not turns:
            raise ValueError(f"{where}: no assistant message to learn from")
        return turns
    missing = [k for k in ("prompt", "response") if not isinstance(obj.get(k), str)]
    if missing:
        raise ValueError(f"{where}: missing text field(s) {', '.join(repr(k) for k in missing)} "
                         f"(write {{\"prompt\": ..., \"response\": ...}} or a chat 'messages' list)")
    return [(obj["prompt"], obj["response"])]


def chat_turns(messages, where: str) -> tuple[list[tuple[str, str]], list[str]]:
    """A chat 'messages' list -> (its turns [(prompt, response), ...], the system and user
    messages after the last assistant message). Training learns the turns and leaves the rest;
    a chat prompt asks the model to answer the rest. ValueError naming what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: 'messages' must be a non-empty list")
    turns, pending = [], []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or \
                m.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"{where}: message {i + 1} needs a role (system, user or "
                             f"assistant) and a text content")
        if m["role"] == "assistant":
            turns.append(("\n".join(pending), m["content"]))
            pending = []
        else:
            pending.append(m["content"])
    return turns, pending


def read_pairs(source: str) -> tuple[list[list[tuple[str, str]]], list[str], list[tuple[str, str]]]:
    """Read JSONL prompt/response data -> (examples, used files, skipped (item, reason)).
    Malformed lines are skipped and reported with file and line number."""
    if source == BUILTIN_PAIRS:
        examples, skipped = [], []
        text = resources.files(__package__).joinpath(BUILTIN_PAIRS_FILE).read_text(encoding="utf-8")
        _parse_jsonl(text, BUILTIN_PAIRS, examples, skipped)
        return examples, [BUILTIN_PAIRS], skipped
    path = Path(source).expanduser()
    if not path.exists():
        raise StudioError(f"data path {path} does not exist. Give a .jsonl file or a folder of "
                          f"them (or {BUILTIN_PAIRS}).")
    files = [path] if path.is_file() else _data_files(path)
    examples, used, skipped = [], [], []
    for file in files:
        if path.is_dir() and file.suffix.lower() in TEXT_SUFFIXES:
            skipped.append((str(file), MIXED_SKIP["pairs"]))
            continue
        if file.suffix.lower() not in PAIR_SUFFIXES:
            skipped.append((str(file), "not a .jsonl file (this data is prompt/response JSONL)"))
            continue
        try:
            text, note = read_text_file(file)
        except OSError as exc:
            skipped.append((str(file), f"cannot read: {exc.strerror or exc}"))
            continue
        if text is None:
            skipped.append((str(file), note))
            continue
        if _parse_jsonl(text, str(file), examples, skipped):
            used.append(str(file))
    if not examples:
        why = "; ".join(f"{Path(f).name}: {r}" for f, r in skipped[:3]) or "no lines"
        raise DataError(f"no usable prompt/response examples in {path} ({why}).",
                        DataReport(source=str(path), skipped=skipped))
    if not any(response.strip() for turns in examples for _, response in turns):
        # The loss is on the responses only: with all of them empty, the model would learn
        # nothing but to stop at once.
        raise DataError(f"every response in {path} is empty ({len(examples)} example(s)): "
                        f"there is nothing to learn. Fill in the \"response\" fields (or the "
                        f"assistant messages).", DataReport(source=str(path), used=used, skipped=skipped))
    return examples, used, skipped


def _parse_jsonl(text: str, name: str, examples: list, skipped: list) -> int:
    """Add the examples of one JSONL text to `examples`, its bad lines (name:line, reason) to
    `skipped`; return how many examples it gave."""
    before = len(examples)
    # split("\n"), not splitlines(): a JSON string may hold U+2028, U+0085 and other characters
    # splitlines() breaks at, which would cut one example in two broken lines.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            examples.append(parse_example(json.loads(line), where))
        except json.JSONDecodeError as exc:
            skipped.append((where, f"not valid JSON ({exc.msg})"))
        except ValueError as exc:
            skipped.append((where, str(exc).removeprefix(where + ": ")))
    return len(examples) - before


def empty_responses_note(examples, source: str) -> str | None:
    """Some empty responses teach the model to answer those prompts with nothing: say how many."""
    turns = [response for example in examples for _, response in example]
    empty = sum(1 for response in turns if not response.strip())
    if not empty:
        return None
    return (f"{empty} of {len(turns)} responses in {source} are empty: the model learns to answer "
            f"those prompts with nothing. Fill them in or remove those lines.")


_builtin_lock = threading.Lock()
_builtin_text: str | None = None


def builtin_corpus() -> str:
    """Docstrings of the standard library, in a fixed order (so the corpus is reproducible for
    a given Python version). Read once per process, under a lock: Python 3.11's `ast.parse` is
    not safe to run in two threads at once (the window validates data in the background)."""
    global _builtin_text
    with _builtin_lock:
        if _builtin_text is None:
            _builtin_text = _read_builtin_corpus()
        return _builtin_text


def _read_builtin_corpus() -> str:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "turtledemo",
            "ensurepip", "tkinter", "pydoc_data"}
    pieces, total = [], 0
    for root, dirs, files in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in skip and not d.startswith(("_", ".")))
        for name in sorted(files):
            if not name.endswith(".py") or name.startswith("_"):
                continue
            try:
                tree = ast.parse(Path(root, name).read_text(encoding="utf-8"))
            except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) > 80:
                        pieces.append(doc)
                        total += len(doc) + 2
            if total > BUILTIN_MAX_CHARS:
                return "\n\n".join(pieces)
    if total < 10_000:
        raise StudioError("the built-in corpus could not be read from this Python's standard "
                          "library sources; give your own text with --data.")
    return "\n\n".join(pieces)


def token_cache(cache_dir: Path, text: str, tokenizer, tokenizer_json: str) -> np.ndarray:
    """Tokens of `text`, encoded once and memory-mapped from a cache keyed by the content hash
    of text and tokenizer. `.npy` (allow_pickle off) is plain binary, never pickle."""
    key = hashlib.sha256(text.encode("utf-8", "surrogatepass") + tokenizer_json.encode()).hexdigest()[:32]
    path = Path(cache_dir) / "tokens" / f"{key}.npy"
    if path.exists():
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # damaged cache entry: rebuild it
    ids = tokenizer.encode(text)
    dtype = np.uint16 if tokenizer.vocab_size <= 65535 else np.uint32
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, ids.astype(dtype), allow_pickle=False)
        os.replace(tmp, path)
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except OSError:  # a read-only cache is no reason to fail: keep the tokens in memory
        return ids.astype(dtype)
