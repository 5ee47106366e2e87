"""Text data: read a .txt/.md file or a folder of them, check it, and cache it as tokens.

Each file is decoded as UTF-8; a file that is not UTF-8 but reads as Latin-1 text (cp1252) is
decoded as such and reported; a binary file is skipped with its reason. The built-in corpus is
the docstrings of Python's own standard library, read from the sources of the running Python:
English prose that every machine with Python has, offline, without the repo carrying anyone
else's text.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sysconfig
import threading
from pathlib import Path

import numpy as np

from studio.contract import DataReport
from studio.errors import DataError, StudioError

TEXT_SUFFIXES = {".txt", ".md", ".text", ".markdown", ".rst"}
BUILTIN = "builtin:python-docs"
BUILTIN_MAX_CHARS = 3_000_000
_CONTROL = bytes(range(0, 32)).replace(b"\t", b"").replace(b"\n", b"").replace(b"\r", b"").replace(b"\x0c", b"")


def decode_text(raw: bytes, name: str) -> tuple[str | None, str | None]:
    """Returns (text, note) or (None, reason it was skipped)."""
    if not raw:
        return None, "empty file"
    head = raw[:65536]
    if b"\x00" in head:
        return None, "binary file (contains NUL bytes), not text"
    try:
        text = raw.decode("utf-8")
        return text.removeprefix("\ufeff"), None
    except UnicodeDecodeError:
        pass
    control = sum(head.count(bytes([c])) for c in _CONTROL)
    if control > len(head) * 0.01:
        return None, "binary file (control bytes, not UTF-8), not text"
    return raw.decode("cp1252", errors="replace"), "not UTF-8: decoded as Latin-1 (cp1252)"


def read_corpus(source: str) -> tuple[str, list[str], list[tuple[str, str]], list[str]]:
    """Read a file or folder -> (text, used files, skipped (file, reason), notes)."""
    if source == BUILTIN:
        return builtin_corpus(), [BUILTIN], [], []
    path = Path(source).expanduser()
    if not path.exists():
        raise StudioError(f"data path {path} does not exist. Give a .txt/.md file or a folder of them.")
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    used, skipped, notes, parts = [], [], [], []
    for file in files:
        if path.is_dir() and file.suffix.lower() not in TEXT_SUFFIXES:
            skipped.append((str(file), f"not a text file ({file.suffix or 'no suffix'}); "
                                       f"text files end in {', '.join(sorted(TEXT_SUFFIXES))}"))
            continue
        try:
            raw = file.read_bytes()
        except OSError as exc:
            skipped.append((str(file), f"cannot read: {exc.strerror or exc}"))
            continue
        text, note = decode_text(raw, str(file))
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
    """"pairs" for JSONL prompt/response data (a .jsonl file or a folder holding some), else
    "text"."""
    if not source or source == BUILTIN:
        return "text"
    path = Path(source).expanduser()
    if path.is_file():
        return "pairs" if path.suffix.lower() in PAIR_SUFFIXES else "text"
    if path.is_dir() and any(p.suffix.lower() in PAIR_SUFFIXES for p in path.rglob("*") if p.is_file()):
        return "pairs"
    return "text"


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
        messages = obj["messages"]
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
        if not turns:
            raise ValueError(f"{where}: no assistant message to learn from")
        return turns
    missing = [k for k in ("prompt", "response") if not isinstance(obj.get(k), str)]
    if missing:
        raise ValueError(f"{where}: missing text field(s) {', '.join(repr(k) for k in missing)} "
                         f"(write {{\"prompt\": ..., \"response\": ...}} or a chat 'messages' list)")
    return [(obj["prompt"], obj["response"])]


def read_pairs(source: str) -> tuple[list[list[tuple[str, str]]], list[str], list[tuple[str, str]]]:
    """Read JSONL prompt/response data -> (examples, used files, skipped (item, reason)).
    Malformed lines are skipped and reported with file and line number."""
    path = Path(source).expanduser()
    if not path.exists():
        raise StudioError(f"data path {path} does not exist. Give a .jsonl file or a folder of them.")
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    examples, used, skipped = [], [], []
    for file in files:
        if file.suffix.lower() not in PAIR_SUFFIXES:
            skipped.append((str(file), "not a .jsonl file (this data is prompt/response JSONL)"))
            continue
        try:
            raw = file.read_bytes()
        except OSError as exc:
            skipped.append((str(file), f"cannot read: {exc.strerror or exc}"))
            continue
        text, note = decode_text(raw, str(file))
        if text is None:
            skipped.append((str(file), note))
            continue
        before = len(examples)
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{file}:{number}"
            try:
                examples.append(parse_example(json.loads(line), where))
            except json.JSONDecodeError as exc:
                skipped.append((where, f"not valid JSON ({exc.msg})"))
            except ValueError as exc:
                skipped.append((where, str(exc).removeprefix(where + ": ")))
        if len(examples) > before:
            used.append(str(file))
    if not examples:
        why = "; ".join(f"{Path(f).name}: {r}" for f, r in skipped[:3]) or "no lines"
        raise DataError(f"no usable prompt/response examples in {path} ({why}).",
                        DataReport(source=str(path), skipped=skipped))
    return examples, used, skipped


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
