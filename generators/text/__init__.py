"""The built-in text generator: a GPT-style Transformer trained on the user's text.

This module is the thin adapter between the plugin contract and plain-torch pieces: the model
(model.py), tokenizers (tokenizer.py), data reading and the token cache (data.py) and sampling
strategies (sampling.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from studio.config import setting
from studio.contract import DataReport, Generator, Sample
from studio.errors import StudioError

from generators.text.data import BUILTIN, read_corpus, token_cache
from generators.text.model import GPT, GPTShape
from generators.text.sampling import next_token
from generators.text.tokenizer import BPETokenizer, CharTokenizer, load_tokenizer, save_tokenizer


@dataclass
class TextConfig:
    tokenizer: str = setting("char", "char: one token per character; bpe: byte-level BPE trained "
                             "on your corpus", choices=("char", "bpe"))
    vocab_size: int = setting(4096, "BPE vocabulary size (bpe only)", min=260, max=262144)
    block_size: int = setting(64, "context length in tokens", min=2, max=16384)
    n_layer: int = setting(4, "Transformer blocks", min=1, max=128)
    n_head: int = setting(4, "attention heads per block", min=1, max=128)
    n_embd: int = setting(128, "width of the residual stream", min=8, max=16384)
    dropout: float = setting(0.0, "dropout rate (0 for small data is often best at first)", min=0, max=0.9)
    bias: bool = setting(False, "biases in Linear and LayerNorm layers (GPT-2 had them)")
    batch_size: int = setting(12, "sequences per micro-batch", min=1, max=65536)
    val_fraction: float = setting(0.1, "share of the corpus held out for evaluation when no "
                                  "--val-data is given", min=0.001, max=0.5)
    preview_tokens: int = setting(200, "tokens generated for each live preview", min=1, max=4096)

    def check(self) -> str | None:
        if self.n_embd % self.n_head:
            return f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})."
        return None


@dataclass
class TextSampleConfig:
    temperature: float = setting(0.8, "randomness: 0 = always the likeliest token", min=0, max=5)
    top_k: int = setting(200, "sample among the k likeliest tokens (0 = all)", min=0)
    max_new_tokens: int = setting(200, "tokens to generate", min=1, max=100000)


class TextGenerator(Generator):
    name = "text"
    modality = "text"
    version = "0.1.0"
    Config = TextConfig
    SampleConfig = TextSampleConfig
    throughput_unit = "tokens"
    presets = {
        # nanoGPT's CPU shape for Shakespeare (its documented "baby GPT")
        "tiny": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "batch_size": 12,
                 "dropout": 0.0},
        # nanoGPT's shakespeare-char GPU shape
        "small": {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "batch_size": 64,
                  "dropout": 0.2},
        # GPT-2 124M
        "gpt2": {"tokenizer": "bpe", "vocab_size": 50257, "n_layer": 12, "n_head": 12,
                 "n_embd": 768, "block_size": 1024, "batch_size": 12, "dropout": 0.0},
    }

    def __init__(self, config: TextConfig):
        super().__init__(config)
        self.tokenizer = None
        self.train_ids: np.ndarray | None = None
        self.val_ids: np.ndarray | None = None
        self.probes: list[dict] = []

    # --- data ----------------------------------------------------------------------------------
    def load_data(self, source, val_source, cache_dir: Path) -> DataReport:
        cfg = self.config
        text, used, skipped, notes = read_corpus(source or BUILTIN)
        if self.tokenizer is None:
            if cfg.tokenizer == "char":
                self.tokenizer = CharTokenizer.train(text)
            else:
                self.tokenizer = BPETokenizer.train([text[i:i + 4096] for i in range(0, len(text), 4096)],
                                                    cfg.vocab_size)
        tk_json = str(self.tokenizer.to_json())
        ids = token_cache(cache_dir, text, self.tokenizer, tk_json)
        if val_source:
            val_text, val_used, val_skipped, val_notes = read_corpus(val_source)
            skipped += val_skipped
            notes += val_notes
            train_ids, val_ids = ids, token_cache(cache_dir, val_text, self.tokenizer, tk_json)
        else:
            n_val = int(len(ids) * cfg.val_fraction)
            train_ids, val_ids = ids[:len(ids) - n_val], ids[len(ids) - n_val:]
        where = source or "the built-in corpus"
        need = cfg.block_size + 1
        if len(train_ids) < need:
            raise StudioError(f"{where} has {len(train_ids)} training tokens, fewer than one block "
                              f"of {need}. Add text or lower block_size (--set block_size=...).")
        if len(val_ids) < need:
            raise StudioError(f"the held-out part of {val_source or where} has {len(val_ids)} "
                              f"tokens, fewer than one block of {need}. Add text, raise "
                              f"val_fraction or lower block_size.")
        self.train_ids, self.val_ids = train_ids, val_ids
        if not self.probes:
            opening = self.tokenizer.decode(val_ids[:16].tolist()).split("\n")[0] or "\n"
            self.probes = [{"prompt": "\n", "seed": 0}, {"prompt": opening, "seed": 1}]
        return DataReport(
            source=source or BUILTIN, used=used, skipped=skipped,
            summary={"characters": len(text), "bytes": len(text.encode("utf-8", "replace")),
                     "tokens": int(len(ids)), "train_tokens": int(len(train_ids)),
                     "val_tokens": int(len(val_ids)), "vocab_size": self.tokenizer.vocab_size,
                     "tokenizer": self.tokenizer.kind, "notes": notes},
            preview=[Sample("text", text[:600], {"source": used[0]})])

    def get_batch(self, split, rng: torch.Generator):
        data = self.train_ids if split == "train" else self.val_ids
        T, B = self.config.block_size, self.config.batch_size
        starts = torch.randint(len(data) - T - 1, (B,), generator=rng).numpy()
        rows = torch.from_numpy(data[starts[:, None] + np.arange(T + 1)].astype(np.int64))
        if self.device is not None and self.device.type == "cuda":
            rows = rows.pin_memory().to(self.device, non_blocking=True)
        elif self.device is not None:
            rows = rows.to(self.device)
        return rows[:, :-1], rows[:, 1:]

    def count_items(self, batch) -> int:
        return batch[0].numel()

    # --- model ---------------------------------------------------------------------------------
    def build(self) -> torch.nn.Module:
        cfg = self.config
        vocab = self.tokenizer.vocab_size
        if self.tokenizer.kind == "bpe":
            vocab = (vocab + 63) // 64 * 64  # matmul-friendly, as nanoGPT's 50304
        return GPT(GPTShape(vocab_size=vocab, block_size=cfg.block_size, n_layer=cfg.n_layer,
                            n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout, bias=cfg.bias))

    def training_step(self, batch, ctx) -> dict:
        x, y = batch
        _, loss = ctx.model(x, y)
        return {"loss": loss}

    def evaluate(self, source=None, max_batches=None) -> dict:
        """Loss over non-overlapping blocks of held-out text (evenly spread when capped)."""
        if source is None:
            ids = self.val_ids
        else:
            text, *_ = read_corpus(source)
            ids = self.tokenizer.encode(text)
        T, B = self.config.block_size, self.config.batch_size
        n_windows = (len(ids) - 1) // T
        if n_windows < 1:
            raise StudioError(f"held-out text {source or ''} has {len(ids)} tokens, fewer than one "
                              f"block of {T + 1}; give more text.")
        starts = np.arange(n_windows) * T
        if max_batches is not None and n_windows > max_batches * B:
            starts = starts[np.linspace(0, n_windows - 1, max_batches * B).astype(np.int64)]
        byte_lengths = torch.from_numpy(self.tokenizer.byte_lengths)
        nats, tokens, n_bytes = 0.0, 0, 0
        for i in range(0, len(starts), B):
            rows = np.asarray(ids)[starts[i:i + B, None] + np.arange(T + 1)].astype(np.int64)
            rows = torch.from_numpy(rows)
            x, y = rows[:, :-1].to(self.device), rows[:, 1:].to(self.device)
            with self.autocast():
                _, loss = self.model(x, y)
            nats += float(loss) * y.numel()
            tokens += y.numel()
            n_bytes += int(byte_lengths[rows[:, 1:]].sum())
        loss = nats / tokens
        return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 700)),
                "val_bits_per_byte": nats / math.log(2) / max(n_bytes, 1), "val_tokens": tokens}

    # --- sampling ------------------------------------------------------------------------------
    def sample(self, params: TextSampleConfig, n: int = 1, seed: int = 0, prompt=None) -> list[Sample]:
        prompt = "\n" if prompt is None else prompt
        ids = self.tokenizer.encode(prompt).tolist() or [0]
        device = self.device or torch.device("cpu")
        x = torch.tensor([ids] * n, dtype=torch.long, device=device)
        rng = torch.Generator(device=device).manual_seed(seed)
        block = self.model.shape.block_size
        vocab = self.tokenizer.vocab_size
        for _ in range(params.max_new_tokens):
            with self.autocast():
                logits, _ = self.model(x[:, -block:])
            logits = logits[:, -1, :vocab]  # never sample the padding of a rounded vocabulary
            x = torch.cat([x, next_token(logits, params.temperature, params.top_k, rng)], dim=1)
        meta = {"prompt": prompt, "seed": seed, "params": vars(params).copy()}
        return [Sample("text", prompt + self.tokenizer.decode(row[len(ids):].tolist()),
                       {**meta, "index": i}) for i, row in enumerate(x)]

    def preview(self) -> list[Sample]:
        params = TextSampleConfig(max_new_tokens=self.config.preview_tokens)
        return [s for probe in self.probes
                for s in self.sample(params, n=1, seed=probe["seed"], prompt=probe["prompt"])]

    # --- assets --------------------------------------------------------------------------------
    def save_assets(self, folder: Path) -> None:
        from studio.runstore import write_json
        save_tokenizer(self.tokenizer, folder / "tokenizer.json")
        write_json(folder / "probes.json", self.probes)

    def load_assets(self, folder: Path) -> None:
        from studio.runstore import read_json
        self.tokenizer = load_tokenizer(folder / "tokenizer.json")
        probes = folder / "probes.json"
        self.probes = read_json(probes, "preview probes") if probes.exists() else []
