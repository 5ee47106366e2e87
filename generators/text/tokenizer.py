"""Tokenizers for the text generator: character-level and byte-level BPE (HF `tokenizers`).

Both save to one JSON file in the run's assets, both know the exact UTF-8 bytes each token
stands for (so streaming never emits half a character, and held-out loss can be reported as
bits per byte, comparable across tokenizers), and both carry the special tokens that frame
prompt/response examples: <|prompt|> question <|response|> answer <|end|>. Special tokens are
only ever inserted by code, never parsed out of user text.

Unknown-character policy (character level): characters not seen when the vocabulary was built
map to the `<unk>` token (id 0), which decodes to U+FFFD ("�") and counts as one byte in bits
per byte; when a run's saved vocabulary meets new data, the share of unknown characters is
reported (`unknown_characters`). Byte-level BPE has no unknown characters: any text is a
sequence of bytes.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from studio.errors import StudioError

UNK = "<unk>"
END_OF_TEXT = "<|endoftext|>"
PROMPT, RESPONSE, END = "<|prompt|>", "<|response|>", "<|end|>"
SPECIALS = [PROMPT, RESPONSE, END]


def utf8_lengths(codepoints: np.ndarray) -> np.ndarray:
    return (1 + (codepoints >= 0x80) + (codepoints >= 0x800) + (codepoints >= 0x10000)).astype(np.int64)


@lru_cache(maxsize=1)
def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's map from the printable stand-in characters of byte-level BPE back to bytes."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: list[str], specials: list[str] = SPECIALS):
        self.specials = list(specials)
        self.itos = [UNK] + self.specials + chars
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        first = 1 + len(self.specials)
        codepoints = np.array([ord(c) for c in chars], dtype=np.int64)
        order = np.argsort(codepoints)
        self._sorted_cp = codepoints[order]
        self._sorted_ids = (order + first).astype(np.int64)
        self.byte_lengths = np.concatenate([[1], np.zeros(len(self.specials), np.int64),
                                            utf8_lengths(codepoints)]).astype(np.int64)
        self._bytes = [b"\xef\xbf\xbd"] + [b""] * len(self.specials) + [c.encode("utf-8", "surrogatepass")
                                                                         for c in chars]

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def special_id(self, token: str) -> int | None:
        return self.stoi.get(token)

    def encode(self, text: str) -> np.ndarray:
        """Vectorised: code points via UTF-32, then a sorted lookup (no Python per character)."""
        cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        if not len(self._sorted_cp):
            return np.zeros(len(cp), dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted_cp, cp), len(self._sorted_cp) - 1)
        return np.where(self._sorted_cp[pos] == cp, self._sorted_ids[pos], 0)

    def unknown_characters(self, text: str, top: int = 5) -> tuple[int, list[str]]:
        """How many characters of `text` are not in the vocabulary (they encode as <unk>), and
        the most frequent of them."""
        cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        pos = np.minimum(np.searchsorted(self._sorted_cp, cp), max(len(self._sorted_cp) - 1, 0))
        known = self._sorted_cp[pos] == cp if len(self._sorted_cp) else np.zeros(len(cp), bool)
        values, counts = np.unique(cp[~known], return_counts=True)
        frequent = values[np.argsort(-counts, kind="stable")[:top]]
        return int(counts.sum()), [chr(int(c)) for c in frequent]

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def decode(self, ids) -> str:
        return b"".join(self._bytes[int(i)] for i in ids).decode("utf-8", "replace")

    def to_json(self) -> dict:
        return {"kind": self.kind, "specials": self.specials, "chars": self.itos[1 + len(self.specials):]}


class BPETokenizer:
    """Byte-level BPE as in GPT-2, trained on the corpus with HF `tokenizers` (or read from a
    Hugging Face folder)."""

    kind = "bpe"

    def __init__(self, tokenizer):
        self.tk = tokenizer
        missing = [t for t in SPECIALS if tokenizer.token_to_id(t) is None]
        if missing:
            tokenizer.add_special_tokens(missing)
        # User text that spells a special token ("<|prompt|>" typed into a prompt sent to
        # `studio serve`) is text: framing is only ever inserted by code, never forged by a user.
        tokenizer.encode_special_tokens = True
        alphabet = byte_level_alphabet()
        size = tokenizer.get_vocab_size()
        specials = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
        self._bytes = [b""] * size
        for token, idx in tokenizer.get_vocab().items():
            if token not in specials:
                self._bytes[idx] = bytes(alphabet[c] for c in token if c in alphabet)
        self.byte_lengths = np.array([len(b) for b in self._bytes], dtype=np.int64)

    @classmethod
    def train(cls, text_iter, vocab_size: int) -> "BPETokenizer":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT, *SPECIALS],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tk.train_from_iterator(text_iter, trainer=trainer)
        return cls(tk)

    @property
    def vocab_size(self) -> int:
        return self.tk.get_vocab_size()

    def special_id(self, token: str) -> int | None:
        return self.tk.token_to_id(token)

    def encode(self, text: str) -> np.ndarray:
        # Encode line groups in parallel (Rust threads); splitting at newlines keeps BPE merges,
        # which never cross a newline-led pre-token.
        encoded = self.tk.encode_batch(_chunks(text), add_special_tokens=False)
        if not encoded:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encoded])

    def unknown_characters(self, text: str, top: int = 5) -> tuple[int, list[str]]:
        return 0, []  # byte level: every text is a sequence of known bytes

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def decode(self, ids) -> str:
        return b"".join(self._bytes[int(i)] for i in ids).decode("utf-8", "replace")

    def to_json(self) -> dict:
        return {"kind": self.kind, "tokenizer": json.loads(self.tk.to_str())}


def _chunks(text: str, size: int = 1 << 16) -> list[str]:
    out, start = [], 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end
        out.append(text[start:end])
        start = end
    return out


def save_tokenizer(tokenizer, path: Path) -> None:
    from studio.runstore import write_json
    write_json(path, tokenizer.to_json())


def load_tokenizer(path: Path):
    from studio.runstore import read_json
    doc = read_json(path, "the tokenizer")
    try:
        if doc["kind"] == "char":
            return CharTokenizer(list(doc["chars"]), list(doc.get("specials", [])))
        if doc["kind"] == "bpe":
            from tokenizers import Tokenizer
            return BPETokenizer(Tokenizer.from_str(json.dumps(doc["tokenizer"])))
    except Exception as exc:  # a damaged file can fail in many ways inside `tokenizers`
        raise StudioError(f"the tokenizer in {path} is damaged ({exc}).") from None
    raise StudioError(f"the tokenizer in {path} is of unknown kind {doc.get('kind')!r}.")
