"""Tokenizers for the text generator: character-level and byte-level BPE (HF `tokenizers`).

Both save to one JSON file in the run's assets, and both know how many UTF-8 bytes each token
stands for, so that held-out loss can be reported as bits per byte, comparable across them.

Unknown-character policy (character level): characters not seen when the vocabulary was built
map to the `<unk>` token (id 0); decoding shows it as U+FFFD. Byte-level BPE has no unknown
characters: any text is a sequence of bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from studio.errors import StudioError

UNK = "<unk>"
END = "<|endoftext|>"


def utf8_lengths(codepoints: np.ndarray) -> np.ndarray:
    return (1 + (codepoints >= 0x80) + (codepoints >= 0x800) + (codepoints >= 0x10000)).astype(np.int64)


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: list[str]):
        self.itos = [UNK] + chars
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        codepoints = np.array([ord(c) for c in chars], dtype=np.int64)
        order = np.argsort(codepoints)
        self._sorted_cp = codepoints[order]
        self._sorted_ids = (order + 1).astype(np.int64)
        self.byte_lengths = np.concatenate([[1], utf8_lengths(codepoints)]).astype(np.int64)

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> np.ndarray:
        """Vectorised: code points via UTF-32, then a sorted lookup (no Python per character)."""
        cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        pos = np.searchsorted(self._sorted_cp, cp)
        pos_clipped = np.minimum(pos, len(self._sorted_cp) - 1)
        found = self._sorted_cp[pos_clipped] == cp if len(self._sorted_cp) else np.zeros(len(cp), bool)
        return np.where(found, self._sorted_ids[pos_clipped], 0)

    def decode(self, ids) -> str:
        return "".join("\ufffd" if i == 0 else self.itos[i] for i in ids)

    def to_json(self) -> dict:
        return {"kind": self.kind, "chars": self.itos[1:]}


class BPETokenizer:
    """Byte-level BPE as in GPT-2, trained on the corpus with HF `tokenizers`."""

    kind = "bpe"

    def __init__(self, tokenizer):
        self.tk = tokenizer
        vocab = tokenizer.get_vocab()
        lengths = np.zeros(len(vocab), dtype=np.int64)
        specials = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
        for token, idx in vocab.items():
            # Each character of a byte-level token stands for exactly one byte.
            lengths[idx] = 0 if token in specials else len(token)
        self.byte_lengths = lengths

    @classmethod
    def train(cls, text_iter, vocab_size: int) -> "BPETokenizer":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tk.train_from_iterator(text_iter, trainer=trainer)
        return cls(tk)

    @property
    def vocab_size(self) -> int:
        return self.tk.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        # Encode line groups in parallel (Rust threads); splitting at newlines keeps BPE merges,
        # which never cross a newline-led pre-token.
        chunks = _chunks(text)
        encoded = self.tk.encode_batch(chunks, add_special_tokens=False)
        if not encoded:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encoded])

    def decode(self, ids) -> str:
        return self.tk.decode([int(i) for i in ids], skip_special_tokens=False)

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
            return CharTokenizer(list(doc["chars"]))
        if doc["kind"] == "bpe":
            from tokenizers import Tokenizer
            return BPETokenizer(Tokenizer.from_str(json.dumps(doc["tokenizer"])))
    except (KeyError, TypeError, ValueError, Exception) as exc:
        raise StudioError(f"the tokenizer in {path} is damaged ({exc}).") from None
    raise StudioError(f"the tokenizer in {path} is of unknown kind {doc.get('kind')!r}.")
