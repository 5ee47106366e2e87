"""The built-in text generator: a GPT-style Transformer trained on the user's text.

This module is the thin adapter between the plugin contract and plain-torch pieces: the model
and its KV-cache decoding loop (model.py), tokenizers (tokenizer.py), data reading and the
token cache (data.py), sampling strategies (sampling.py), continuous batching for serving
(batching.py) and the Hugging Face GPT-2 import (hf.py).

With `task=classify` or `task=tag` the run is a classifier or tagger on the same body
instead (tasks.py: a task layer on the GPT, trained on labelled data); otherwise it generates.

Two kinds of data: plain text (a .txt/.md file or folder; the model learns to continue it) and
prompt/response pairs (JSONL; the model learns to answer, with the loss on the response tokens
only). Generation follows the kind the run was trained on.
"""

from __future__ import annotations

import codecs
import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from studio.contract import DataReport, Sample
from studio.errors import DataError, StudioError

from generators.text import hf
from generators.text.config import TextConfig, TextDeclarations, TextSampleConfig  # noqa: F401
from generators.text.data import (BUILTIN, chat_turns, detect_format, empty_responses_note,
                                  mixed_formats_note, read_corpus, read_pairs, token_cache)
from generators.text.explain import in_eval_mode
from generators.text.model import GPT, GPTShape, generate, window
from generators.text.sampling import choose
from generators.text.tasks import BEST_METRIC, TASK_FILE, TASK_LAYER, TextTask
from generators.text.tokenizer import (END, END_OF_TEXT, PROMPT, RESPONSE, BPETokenizer,
                                       CharTokenizer, load_tokenizer, save_tokenizer)




class _RowText:
    """Turns one sample's token bytes into text pieces that never split a UTF-8 character and
    never show any part of a stop string."""

    def __init__(self, stops: list[str]):
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.stops = stops
        self.pending = ""
        self.done = False

    def feed(self, data: bytes, final: bool = False) -> str:
        text = self.pending + self.decoder.decode(data, final=final)
        self.pending = ""
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.done = True
            return text[:min(hits)]
        if final:
            self.done = True
            return text
        hold = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        if hold:
            text, self.pending = text[:-hold], text[-hold:]
        return text

    def finish(self) -> str:
        return "" if self.done else self.feed(b"", final=True)


@dataclass
class ContextFit:
    """How prompt/response examples met the context, for the data report."""

    block_size: int
    examples: int = 0
    over: int = 0  # examples that need more context than the model has
    longest: int = 0  # the most context one example needs, in tokens
    cut: int = 0  # of those over: prompt shortened from the left, response kept whole
    skipped: int = 0  # of those over: not even the last response fits

    def note(self) -> str | None:
        if not self.over:
            return None
        return (f"{self.over} of {self.examples} examples need more than the model's context of "
                f"{self.block_size} tokens (the longest {self.longest}): {self.cut} cut from the "
                f"left (the prompt shortened, the response kept whole), {self.skipped} skipped "
                f"(the response alone does not fit). To keep them whole, raise block_size to "
                f"{self.longest} in a new run (--set block_size=...).")


class TextGenerator(TextDeclarations):
    """What TextDeclarations (config.py: name, version, settings, presets) declares, made to
    work: data, model, training, evaluation and sampling."""

    def __init__(self, config: TextConfig):
        super().__init__(config)
        self.tokenizer = None
        self.format = "text"  # or "pairs": what the run was trained on, and so how it answers
        self.train_ids = self.val_ids = None  # text: token arrays
        self.train_examples: list = []  # pairs: (ids, weights) per example
        self.val_examples: list = []
        self.probes: list[dict] = []
        self.pretrained: str | None = None  # a Hugging Face folder to load in build()
        # classify and tag: the task's data, loss and answers; None for generation
        self.task = TextTask(self) if config.task != "generate" else None
        # Per run, not per class: a classifier is judged by macro F1, a tagger by entity F1.
        self.best_metric, self.best_mode = BEST_METRIC[config.task]

    # Weights a run starts from (--init-from, --init-from-hf) never supply the task layer:
    # it is made for this run's classes or tags, and starts fresh.
    fresh_on_init = (TASK_LAYER,)

    # --- data ----------------------------------------------------------------------------------
    def load_data(self, source, val_source, cache_dir: Path) -> DataReport:
        if self.task is not None:
            return self.task.load_data(source, val_source)
        self.format = detect_format(source)
        if self.format == "pairs":
            return self._load_pairs(source, val_source)
        return self._load_text(source, val_source, cache_dir)

    def _ensure_tokenizer(self, texts: list[str]) -> None:
        if self.tokenizer is not None:
            return
        if self.config.tokenizer == "char":
            self.tokenizer = CharTokenizer.train("".join(texts))
        else:
            chunks = [t[i:i + 4096] for t in texts for i in range(0, len(t), 4096)]
            self.tokenizer = BPETokenizer.train(chunks, self.config.vocab_size)

    UNKNOWN_WARN_SHARE = 0.01

    def _unknown_note(self, text: str, where: str) -> str | None:
        """A run's saved character vocabulary (resumed, or fine-tuned from) meets new data: its
        unseen characters become <unk>, which the model can neither read nor write. Say how
        many when it is more than a trace."""
        unknown, frequent = self.tokenizer.unknown_characters(text)
        if not text or unknown <= len(text) * self.UNKNOWN_WARN_SHARE:
            return None
        shown = ", ".join(repr(c) for c in frequent)
        return (f"{unknown:,} of {len(text):,} characters ({unknown / len(text):.0%}) of {where} are "
                f"not in this run's vocabulary (most often {shown}) and become <unk>: the model "
                f"can neither read nor write them. Start a new run on this data; with the BPE "
                f"tokenizer (--set tokenizer=bpe) no character is ever unknown.")

    def _load_text(self, source, val_source, cache_dir) -> DataReport:
        cfg = self.config
        text, used, skipped, notes = read_corpus(source or BUILTIN)
        self._ensure_tokenizer([text])
        notes += [n for n in [self._unknown_note(text, source or "the built-in corpus")] if n]
        tk_json = str(self.tokenizer.to_json())
        ids = token_cache(cache_dir, text, self.tokenizer, tk_json)
        if val_source:
            val_text, _, val_skipped, val_notes = read_corpus(val_source)
            skipped += val_skipped
            notes += val_notes + [n for n in [self._unknown_note(val_text, val_source)] if n]
            train_ids, val_ids = ids, token_cache(cache_dir, val_text, self.tokenizer, tk_json)
        else:
            n_val = int(len(ids) * cfg.val_fraction)
            train_ids, val_ids = ids[:len(ids) - n_val], ids[len(ids) - n_val:]
        where = source or "the built-in corpus"
        need = cfg.block_size + 1
        read = DataReport(source=source or BUILTIN, used=used, skipped=skipped,
                          summary={"tokens": int(len(ids)), "notes": notes})
        if len(train_ids) < need:
            raise DataError(f"{where} has {len(train_ids)} training tokens, fewer than one block "
                            f"of {need}. Add text or lower block_size (--set block_size=...).", read)
        if len(val_ids) < need:
            raise DataError(f"the held-out part of {val_source or where} has {len(val_ids)} "
                            f"tokens, fewer than one block of {need}. Add text, raise "
                            f"val_fraction or lower block_size.", read)
        self.train_ids, self.val_ids = train_ids, val_ids
        # Probes come from the data, so a resumed run previews the same prompts as before.
        opening = self.tokenizer.decode(val_ids[:16].tolist()).split("\n")[0] or "\n"
        self.probes = [{"prompt": "\n", "seed": 0}, {"prompt": opening, "seed": 1}]
        return DataReport(
            source=source or BUILTIN, used=used, skipped=skipped,
            summary={"format": "text", "characters": len(text),
                     "bytes": len(text.encode("utf-8", "replace")), "tokens": int(len(ids)),
                     "train_tokens": int(len(train_ids)), "val_tokens": int(len(val_ids)),
                     "held_out": (str(val_source) if val_source else
                                  f"the last {cfg.val_fraction:.0%} of the text"),
                     "vocab_size": self.tokenizer.vocab_size, "tokenizer": self.tokenizer.kind,
                     "notes": notes},
            preview=[Sample("text", text[:600], {"source": used[0]})])

    def encode_example(self, turns: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
        """<|prompt|> p <|response|> r <|end|> per turn; weight 1 marks the tokens the model
        learns to produce (each response and its <|end|>), 0 the prompt."""
        tk = self.tokenizer
        prompt_id, response_id, end_id = (tk.special_id(t) for t in (PROMPT, RESPONSE, END))
        if None in (prompt_id, response_id, end_id):
            raise StudioError("this run's tokenizer has no prompt/response tokens (it was made "
                              "by an older version); start a new run for JSONL data.")
        ids, weights = [], []
        for prompt, response in turns:
            head = [prompt_id, *tk.encode(prompt).tolist(), response_id]
            tail = [*tk.encode(response).tolist(), end_id]
            ids += head + tail
            weights += [0] * len(head) + [1] * len(tail)
        return np.array(ids, dtype=np.int64), np.array(weights, dtype=np.float32)

    def _encode_examples(self, examples, where: str, skipped: list,
                         fit: ContextFit | None = None, first_number: int = 1) -> list:
        """Encode examples so each fits the context: one too long keeps its last response
        whole and loses prompt tokens from the left (_fit_to_context); one whose last response
        cannot fit at all is skipped with the numbers. `fit` counts what happened."""
        fit = fit if fit is not None else ContextFit(self.config.block_size)
        out = []
        for i, turns in enumerate(examples):
            ids, weights = self.encode_example(turns)
            needed = len(ids) - 1  # the model reads every token but the last <|end|>
            fit.examples += 1
            fit.longest = max(fit.longest, needed)
            if needed <= self.config.block_size:
                out.append((ids, weights))
                continue
            fit.over += 1
            kept = self._fit_to_context(ids, weights)
            if kept is None:
                fit.skipped += 1
                skipped.append((f"{where} example {first_number + i}", self._too_long_reason(ids)))
                continue
            fit.cut += 1
            out.append(kept)
        return out

    def _fit_to_context(self, ids: np.ndarray, weights: np.ndarray):
        """An example longer than the context, cut from the left as a prompt is: the window
        keeps the last block_size + 1 tokens with its first replaced by <|prompt|>, so it still
        opens as every example does and ends with the whole last response and <|end|>. What
        remains of a cut earlier response is context, not a target (its start is gone). None
        when not even the last response fits with its framing."""
        tk = self.tokenizer
        prompt_id, response_id = tk.special_id(PROMPT), tk.special_id(RESPONSE)
        row = self.config.block_size + 1  # block_size inputs and their targets
        last_response = int(np.flatnonzero(ids == response_id)[-1])
        cut = len(ids) - (row - 1)
        if cut > last_response:
            return None
        if ids[cut] == prompt_id:  # the cut falls on a turn's start: it opens the window as is
            kept_ids, kept_weights = ids[cut:], weights[cut:].copy()
        else:
            kept_ids = np.concatenate([[prompt_id], ids[cut:]]).astype(np.int64)
            kept_weights = np.concatenate([[0], weights[cut:]]).astype(np.float32)
        first_response = int(np.flatnonzero(kept_ids == response_id)[0])
        kept_weights[:first_response] = 0
        return kept_ids, kept_weights

    def _too_long_reason(self, ids: np.ndarray) -> str:
        block = self.config.block_size
        last_response = int(np.flatnonzero(ids == self.tokenizer.special_id(RESPONSE))[-1])
        response_needs = len(ids) - last_response  # <|prompt|> <|response|> ... (<|end|> is a target)
        return (f"needs {len(ids) - 1} tokens of context, more than the model's {block}, and even "
                f"with the prompt cut away its last response takes {response_needs} (with "
                f"<|prompt|>, <|response|> and <|end|>). Raise block_size to at least "
                f"{len(ids) - 1} in a new run (--set block_size=...), or shorten the response.")

    def _load_pairs(self, source, val_source) -> DataReport:
        examples, used, skipped = read_pairs(source)
        notes = [mixed_formats_note(source), empty_responses_note(examples, source)]
        texts = [p + r for turns in examples for p, r in turns]
        if val_source:
            val_raw, _, val_skipped = read_pairs(val_source)
            skipped += val_skipped
            notes.append(mixed_formats_note(val_source))
        else:
            n_val = max(1, int(len(examples) * self.config.val_fraction))
            if len(examples) < 2:
                raise StudioError(f"{source} has {len(examples)} usable example; at least 2 are "
                                  f"needed (one held out), or give --val-data.")
            examples, val_raw = examples[:-n_val], examples[-n_val:]
        self._ensure_tokenizer(texts)
        notes.append(self._unknown_note("".join(texts), source))
        if val_source:
            notes.append(self._unknown_note("".join(p + r for turns in val_raw for p, r in turns),
                                            val_source))
        fit = ContextFit(self.config.block_size)
        self.train_examples = self._encode_examples(examples, source, skipped, fit)
        # Held-out examples cut from the end of the data keep their numbers in it.
        self.val_examples = self._encode_examples(val_raw, val_source or source, skipped, fit,
                                                  first_number=1 if val_source else len(examples) + 1)
        notes = [note for note in notes + [fit.note()] if note]
        if not self.train_examples or not self.val_examples:
            where = (f"training example of {source}" if not self.train_examples else
                     f"held-out example of {val_source or source}")
            raise DataError(f"no {where} fits the context of {self.config.block_size} tokens "
                            f"(the longest needs {fit.longest}); raise block_size in a new run "
                            f"(--set block_size=...) or shorten the responses.",
                            DataReport(source=source, used=used, skipped=skipped))
        self.probes = [{"prompt": turns[0][0], "seed": i} for i, turns in enumerate(val_raw[:2])]
        first = examples[0][0] if examples else val_raw[0][0]
        return DataReport(
            source=source, used=used, skipped=skipped,
            summary={"format": "pairs", "examples": len(self.train_examples),
                     "val_examples": len(self.val_examples),
                     "held_out": (str(val_source) if val_source else
                                  f"the last {len(val_raw)} example(s) of the data"),
                     "train_tokens": int(sum(len(ids) for ids, _ in self.train_examples)),
                     "over_context": fit.over, "longest_tokens": fit.longest,
                     "cut_to_context": fit.cut, "skipped_too_long": fit.skipped,
                     "vocab_size": self.tokenizer.vocab_size, "tokenizer": self.tokenizer.kind,
                     "notes": notes},
            preview=[Sample("text", f"{first[0]}\n→ {first[1]}", {"source": used[0]})])

    def get_batch(self, split, rng: torch.Generator):
        B = self.config.batch_size
        if self.task is not None:
            batch = self.task.get_batch(split, rng)
        elif self.format == "pairs":
            examples = self.train_examples if split == "train" else self.val_examples
            picks = torch.randint(len(examples), (B,), generator=rng).tolist()
            batch = self._pad([examples[i] for i in picks])
        else:
            data = self.train_ids if split == "train" else self.val_ids
            T = self.config.block_size
            starts = torch.randint(len(data) - T - 1, (B,), generator=rng).numpy()
            rows = torch.from_numpy(data[starts[:, None] + np.arange(T + 1)].astype(np.int64))
            batch = (rows[:, :-1], rows[:, 1:])
        if self.device is not None and self.device.type == "cuda":
            return tuple(t.pin_memory().to(self.device, non_blocking=True) for t in batch)
        return tuple(t.to(self.device) for t in batch) if self.device is not None else batch

    def _pad(self, examples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows padded to the longest (<|end|>, weight 0): x, y and the target weights."""
        width = max(len(ids) for ids, _ in examples)
        end_id = self.tokenizer.special_id(END)
        ids = np.full((len(examples), width), end_id, dtype=np.int64)
        weights = np.zeros((len(examples), width), dtype=np.float32)
        for row, (i, w) in enumerate(examples):
            ids[row, :len(i)], weights[row, :len(w)] = i, w
        ids, weights = torch.from_numpy(ids), torch.from_numpy(weights)
        return ids[:, :-1], ids[:, 1:], weights[:, 1:]

    def count_items(self, batch) -> int:
        if self.task is not None:  # real tokens, not padding
            return int(batch[1].sum())
        return batch[0].numel()

    # --- model ---------------------------------------------------------------------------------
    @classmethod
    def pretrained_config(cls, path: str) -> dict:
        return hf.read_config(path)

    def use_pretrained(self, path: str) -> None:
        self.tokenizer = hf.read_tokenizer(path)
        self.pretrained = path

    def build(self) -> torch.nn.Module:
        cfg = self.config
        vocab = self.tokenizer.vocab_size
        if self.tokenizer.kind == "bpe":
            vocab = (vocab + 63) // 64 * 64  # matmul-friendly, as nanoGPT's 50304
        shape = GPTShape(vocab_size=vocab, block_size=cfg.block_size, n_layer=cfg.n_layer,
                         n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout, bias=cfg.bias)
        model = GPT(shape) if self.task is None else self.task.build(shape)
        if self.pretrained:
            hf.load_weights(model, self.pretrained, cfg.vocab_size, fresh=self.fresh_on_init)
        for block in model.transformer.h[:cfg.freeze_layers]:
            block.requires_grad_(False)
        return model

    def training_step(self, batch, ctx) -> dict:
        if self.task is not None:
            return self.task.training_step(batch, ctx)
        _, loss = ctx.model(*batch[:2], loss_weights=batch[2] if len(batch) > 2 else None)
        return {"loss": loss}

    # --- evaluation ----------------------------------------------------------------------------
    def evaluate(self, source=None, max_batches=None) -> dict:
        """Held-out loss, perplexity and bits per byte: over non-overlapping blocks of text
        (evenly spread when capped), or over the response tokens of prompt/response pairs.
        A classifier or tagger reports its own scores (tasks.py)."""
        if self.task is not None:
            return self.task.evaluate(source, max_batches)
        fmt = self.format if source is None else detect_format(source)
        if fmt == "pairs":
            examples = self.val_examples if source is None else \
                self._encode_examples(read_pairs(source)[0], source, [])
            if not examples:
                raise StudioError(f"no example of {source} fits the context; nothing to evaluate.")
            B = self.config.batch_size
            count = len(examples) if max_batches is None else min(len(examples), max_batches * B)
            batches = (self._pad(examples[i:i + B]) for i in range(0, count, B))
        else:
            ids = self.val_ids if source is None else self.tokenizer.encode(read_corpus(source)[0])
            batches = self._text_windows(ids, max_batches, source)
        return self._score(batches)

    def _text_windows(self, ids, max_batches, source):
        T, B = self.config.block_size, self.config.batch_size
        n_windows = (len(ids) - 1) // T
        if n_windows < 1:
            raise StudioError(f"held-out text {source or ''} has {len(ids)} tokens, fewer than one "
                              f"block of {T + 1}; give more text.")
        starts = np.arange(n_windows) * T
        if max_batches is not None and n_windows > max_batches * B:
            starts = starts[np.linspace(0, n_windows - 1, max_batches * B).astype(np.int64)]
        ids = np.asarray(ids)
        for i in range(0, len(starts), B):
            rows = torch.from_numpy(ids[starts[i:i + B, None] + np.arange(T + 1)].astype(np.int64))
            yield rows[:, :-1], rows[:, 1:], torch.ones(rows.shape[0], T)

    def _score(self, batches) -> dict:
        byte_lengths = torch.from_numpy(self.tokenizer.byte_lengths).float()
        nats = tokens = n_bytes = 0.0
        for x, y, w in batches:
            x, y, w = x.to(self.device), y.to(self.device), w.to(self.device)
            with self.autocast():
                _, loss = self.model(x, y, loss_weights=w)
            weight = float(w.sum())
            nats += float(loss) * weight
            tokens += weight
            n_bytes += float((byte_lengths[y.cpu()] * w.cpu()).sum())
        loss = nats / max(tokens, 1)
        return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 700)),
                "val_bits_per_byte": nats / math.log(2) / max(n_bytes, 1), "val_tokens": int(tokens)}

    # --- sampling ------------------------------------------------------------------------------
    def _prompt_ids(self, prompt: str | dict | None) -> list[int]:
        tk = self.tokenizer
        if isinstance(prompt, dict):
            return self._chat_ids(prompt)
        if prompt is not None and not isinstance(prompt, str):
            raise StudioError(f"a prompt is text (or, for a run trained on prompt/response pairs, "
                              f"a chat {{\"messages\": [...]}}), not {type(prompt).__name__}.")
        if self.format == "pairs":
            return [tk.special_id(PROMPT), *tk.encode(prompt or "").tolist(), tk.special_id(RESPONSE)]
        ids = tk.encode("\n" if prompt is None else prompt).tolist()
        if ids:
            return ids
        start = tk.special_id(END_OF_TEXT) if tk.kind == "bpe" else None
        return [start if start is not None else tk.encode("\n").tolist()[0]]

    def _chat_ids(self, prompt: dict) -> list[int]:
        """A chat prompt {"messages": [{"role", "content"}, ...]} as training encodes a chat
        example (data.chat_turns, encode_example): the finished turns, then the system and user
        messages after the last assistant message as the prompt of the turn to answer, up to
        its <|response|>."""
        if self.format != "pairs":
            raise StudioError("this run continues plain text: it was not trained on "
                              "prompt/response pairs or chats, so it cannot answer chat messages. "
                              "Send a plain text prompt (completions) instead.")
        if "messages" not in prompt:
            raise StudioError(f"a chat prompt is {{\"messages\": [...]}}; this one has "
                              f"{', '.join(map(repr, prompt)) or 'nothing'} instead.")
        try:
            turns, pending = chat_turns(prompt["messages"], "the chat prompt")
        except ValueError as exc:
            raise StudioError(f"{exc}.") from None
        if not pending:
            raise StudioError("the chat prompt ends with an assistant message, so there is "
                              "nothing to answer: end it with a user message.")
        ids, _ = self.encode_example([*turns, ("\n".join(pending), "")])
        return ids[:-1].tolist()  # the last response is the model's to write: no <|end|> yet

    def _answer_room(self) -> int:
        """Tokens a pairs prompt leaves free for the answer when it is cut to fit."""
        return max(1, self.config.block_size // 4)

    def _context_ids(self, prompt) -> tuple[list[int], int]:
        """The tokens generation starts from and how many of them stay in every window. A pairs
        prompt keeps its leading <|prompt|> (an answer the model sees without its framing is
        just text to continue, as in training where every window opens with it) and, when too
        long, is cut from the left as in training, leaving a quarter of the block for the
        answer. Plain text slides as it is."""
        ids = self._prompt_ids(prompt)
        if self.format != "pairs":
            return ids, 0
        room_for_prompt = max(0, self.config.block_size - self._answer_room() - 2)
        if len(ids) - 2 > room_for_prompt:
            kept = ids[-1 - room_for_prompt:-1] if room_for_prompt else []
            # A chat cut on a turn's start opens with that turn's <|prompt|>, as training's
            # windows do (never two of them).
            ids = [*kept, ids[-1]] if kept[:1] == ids[:1] else [ids[0], *kept, ids[-1]]
        return ids, 1

    def _framing(self) -> tuple[int | None, list[int]]:
        """The token that ends an answer (<|end|> in a pairs run, None for plain text) and the
        framing tokens never generated (all the others)."""
        end_id = self.tokenizer.special_id(END) if self.format == "pairs" else None
        specials = (self.tokenizer.special_id(t) for t in (PROMPT, RESPONSE, END))
        return end_id, [i for i in specials if i is not None and i != end_id]

    def _decoding_precision(self, device: torch.device):
        """Decoding runs a token at a time: on a CPU its matmuls are too small for bf16 to pay
        (a 0.8M-parameter model decoded 0.56x as fast under bf16 autocast as in fp32 at batch
        1, 0.76x at batch 8, AMD EPYC with AVX512-BF16), so there it stays in fp32 even where
        training takes bf16."""
        return self.autocast() if device.type != "cpu" else contextlib.nullcontext()

    def open_decoder(self, max_rows: int):
        """Continuous batching (batching.TextDecoder): samples join and leave between steps,
        one forward pass a step for all of them. A classify or tag run answers whole texts at
        once: it has no decoder (None)."""
        if self.task is not None:
            return None
        from generators.text.batching import TextDecoder
        return TextDecoder(self, max_rows)

    ALTERNATIVES = 5  # the likeliest tokens an explained sample lists at each step

    def _decode(self, params: TextSampleConfig, n: int, seed: int, prompt,
                use_cache: bool = True, explained: list[list[dict]] | None = None,
                produced: list[int] | None = None,
                ended: list[bool] | None = None) -> Iterator[list[str]]:
        """Yields, step by step, the new text of each of the n samples. With `explained` (n
        empty lists), each sample's list gets a record per token it produced: the token, the
        model's probability of it and the likeliest alternatives (the model's own
        distribution at temperature 1, before sampling's penalties and filters). With
        `produced` (n zeros), each sample's count of the tokens it produced (a sample that
        ends early stops counting while the others go on). With `ended` (n False), True for
        each sample that ended by itself (its end token or a stop string) rather than at
        max_new_tokens."""
        ids, pinned = self._context_ids(prompt)
        device = self.device or torch.device("cpu")
        x = torch.tensor([ids] * n, dtype=torch.long, device=device)
        rng = torch.Generator(device=device).manual_seed(seed)
        vocab = self.tokenizer.vocab_size
        end_id, banned = self._framing()
        rows = [_RowText(params.stop) for _ in range(n)]

        step_records: list[dict] = []

        def pick(logits, history):
            logits = logits[:, :vocab].float()
            logits[:, banned] = float("-inf")
            chosen = choose(logits, history, temperature=params.temperature,
                            top_k=params.top_k, top_p=params.top_p,
                            repetition=params.repetition_penalty, generator=rng)
            if explained is not None:
                step_records[:] = self._explain_step(logits, chosen)
            return chosen

        with self._decoding_precision(device):
            for new in generate(self.model, x, params.max_new_tokens, pick, use_cache, pinned):
                pieces = []
                for i, (row, token) in enumerate(zip(rows, new[:, 0].tolist())):
                    if explained is not None and not row.done:
                        explained[i].append(step_records[i])
                    if produced is not None and not row.done:
                        produced[i] += 1
                    if row.done:
                        pieces.append("")
                    elif token == end_id:
                        pieces.append(row.finish())
                        row.done = True
                    else:
                        pieces.append(row.feed(self.tokenizer.token_bytes(token)))
                    if ended is not None and row.done:
                        ended[i] = True
                yield pieces
                if all(row.done for row in rows):
                    return
        yield [row.finish() for row in rows]

    def _explain_step(self, logits: torch.Tensor, chosen: torch.Tensor) -> list[dict]:
        """Per row: the chosen token's text and probability, and the likeliest alternatives."""
        probs = logits.softmax(dim=-1)
        top_p, top_ids = probs.topk(min(self.ALTERNATIVES, probs.size(-1)), dim=-1)
        chosen_p = probs.gather(1, chosen).squeeze(1)
        return [{"token": self._token_text(int(c)), "p": round(float(p), 5),
                 "alternatives": [[self._token_text(int(t)), round(float(q), 5)]
                                  for t, q in zip(ids.tolist(), ps.tolist())]}
                for c, p, ids, ps in zip(chosen[:, 0].tolist(), chosen_p, top_ids, top_p)]

    def _token_text(self, token: int) -> str:
        """A token as text: a framing token by its name, a byte-level piece decoded leniently
        (a piece may hold part of a character)."""
        tk = self.tokenizer
        for name in (PROMPT, RESPONSE, END):
            if token == tk.special_id(name):
                return name
        return tk.token_bytes(token).decode("utf-8", "replace")

    def context_note(self, prompt, params, new_tokens: int | None = None) -> str | None:
        """Say when the prompt is cut or the context slides (the model then forgets the
        earliest tokens). With `new_tokens`, the tokens a sample produced, say what happened
        to that sample; without, what can happen within params.max_new_tokens. The window
        slides when a token is chosen from more than the context: the last token produced is
        never read, so prompt + new tokens - 1 is the most the model read."""
        block = self.config.block_size
        n_prompt = len(self._prompt_ids(prompt))
        produced = params.max_new_tokens if new_tokens is None else new_tokens
        if self.format == "pairs":
            kept = len(self._context_ids(prompt)[0])
            if kept < n_prompt:
                return (f"the prompt has {n_prompt - 2} tokens, too many for the model's "
                        f"context of {block}: only its last {kept - 2} are used (cut from "
                        f"the left, as in training), leaving {block - kept} for the answer; "
                        f"<|prompt|> stays in the context as the answer grows")
            if kept + produced - 1 <= block:
                return None
            if new_tokens is None:
                return (f"prompt and answer ({kept} + {produced} tokens) can exceed the context "
                        f"of {block}: the window then slides, keeping <|prompt|>, so the "
                        f"earliest prompt and answer tokens are forgotten")
            return (f"prompt and answer ({kept} + {produced} tokens) outgrew the context of "
                    f"{block}: the window slid, keeping <|prompt|>, so the earliest prompt and "
                    f"answer tokens were forgotten")
        if n_prompt > block:
            return (f"the prompt has {n_prompt} tokens, more than the model's context of {block}: "
                    f"only its last part is used")
        if n_prompt + produced - 1 <= block:
            return None
        if new_tokens is None:
            return (f"prompt and output ({n_prompt} + {produced} tokens) can exceed the context "
                    f"of {block}: the window then slides, so the earliest tokens are forgotten")
        return (f"prompt and output ({n_prompt} + {produced} tokens) outgrew the context of "
                f"{block}: the window slid, so the earliest tokens were forgotten")

    def sample(self, params: TextSampleConfig, n: int = 1, seed: int = 0, prompt=None,
               use_cache: bool = True) -> list[Sample]:
        if self.task is None and isinstance(prompt, list):
            raise StudioError("a generation run continues one prompt at a time; a file of "
                              "texts (--data) is for classify and tag runs.")
        if self.task is not None:
            return self._answers(params, n, prompt)
        texts = [""] * n
        explained = [[] for _ in range(n)] if params.explain else None
        produced, ended = [0] * n, [False] * n
        for pieces in self._decode(params, n, seed, prompt, use_cache, explained, produced,
                                   ended):
            texts = [t + p for t, p in zip(texts, pieces)]
        meta = {"prompt": prompt, "seed": seed, "format": self.format,
                "params": {k: v for k, v in vars(params).items()}}
        start = "" if self.format == "pairs" else ("\n" if prompt is None else prompt)
        samples = []
        for i, text in enumerate(texts):
            # As OpenAI says it: "stop" (the end token or a stop string), "length" (cut at
            # max_new_tokens, perhaps mid-word: an ad's copy is tidied accordingly).
            sample = Sample("text", start + text, {**meta, "index": i,
                                                   "finish_reason": "stop" if ended[i] else
                                                   "length"})
            # Said of each sample as it went: an answer that ended early never slid.
            note = self.context_note(prompt, params, produced[i])
            if note:
                sample.meta["note"] = note
            if explained:
                sample.meta["tokens"] = explained[i]
            samples.append(sample)
        return samples

    def _answers(self, params: TextSampleConfig, n: int, prompt) -> list[Sample]:
        """A classify or tag run's answers, one per text: the answer does not depend on the
        seed, so n copies of it would only look like n answers that happen to agree."""
        samples = self.task.answer(prompt, explain=params.explain)
        if n > 1:
            for sample in samples:
                said = f"the answer does not depend on the seed: it is given once, not {n} times"
                sample.meta["note"] = "; ".join(filter(None, (sample.meta.get("note"), said)))
        return samples

    def stream(self, params: TextSampleConfig, seed: int = 0, prompt=None) -> Iterator[str]:
        """The new text of one sample, piece by piece as tokens arrive (each piece valid UTF-8)."""
        if self.task is not None:
            yield self.task.answer(prompt)[0].data
            return
        for pieces in self._decode(params, 1, seed, prompt):
            if pieces[0]:
                yield pieces[0]

    def preview(self) -> list[Sample]:
        if self.task is not None:
            return self.task.answer([probe["prompt"] for probe in self.probes]) if self.probes else []
        params = TextSampleConfig(max_new_tokens=self.config.preview_tokens)
        return [s for probe in self.probes
                for s in self.sample(params, n=1, seed=probe["seed"], prompt=probe["prompt"])]

    # --- attention -----------------------------------------------------------------------------
    def attention(self, text: str, layer: int = 0, head: int = 0) -> dict:
        """What one head of one block attends to as the model reads `text`: {"pieces": the
        text of each token read, "weights": row i holding query i's softmax weights over the
        keys 0..i (zeros after i, each row summing to 1), "layer", "head", "layers": blocks,
        "heads": heads per block}. The weights are the block's own causal softmax of
        q.k/sqrt(hs) (CausalSelfAttention.attention_weights on the input its forward is given,
        caught with a forward pre-hook: the forward itself is left as it is). The tokens are
        those the run reads of such a text: a generation run's prompt as sampling frames it
        and fits it to the context, a classifier's or tagger's text as it answers it."""
        layers, heads = self.config.n_layer, self.config.n_head
        if not (0 <= layer < layers and 0 <= head < heads):
            def numbers(count, what):
                return f"{what}s 0 to {count - 1}" if count > 1 else f"only {what} 0"
            raise StudioError(f"this model has {numbers(layers, 'layer')} and "
                              f"{numbers(heads, 'head')} in each; layer {layer}, head {head} is "
                              f"not among them.")
        ids = self._ids_read(text) if text else []
        if not ids:
            raise StudioError("there is no text to show the attention of: give a text.")
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        attention = self.model.transformer.h[layer].attn
        inputs = []
        hook = attention.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
        try:
            with torch.no_grad(), in_eval_mode(self.model):
                if self.task is not None:
                    self.model(x, torch.tensor([len(ids)], device=x.device))
                else:
                    self.model(x)
                weights = attention.attention_weights(inputs[0])[0, head].float()
        finally:
            hook.remove()
        return {"pieces": [self._token_text(t) for t in ids], "weights": weights.tolist(),
                "layer": layer, "head": head, "layers": layers, "heads": heads}

    def _ids_read(self, text: str) -> list[int]:
        """The tokens the model reads of `text` (see attention)."""
        if self.task is not None:
            return self.task.encode([text]).ids[0].tolist()
        ids, pinned = self._context_ids(text)
        return window(torch.tensor([ids]), self.config.block_size, pinned)[0].tolist()

    # --- export (studio export --format onnx): generators/text/onnx_graphs.py ----------------
    def onnx_graphs(self):
        from generators.text.onnx_graphs import graphs
        return graphs(self)

    def onnx_manifest(self, folder: Path) -> dict:
        from generators.text.onnx_graphs import manifest
        return manifest(self, folder)

    # --- assets --------------------------------------------------------------------------------
    def save_assets(self, folder: Path) -> None:
        from studio.runstore import write_json
        save_tokenizer(self.tokenizer, folder / "tokenizer.json")
        write_json(folder / "generation.json", {"format": self.format, "probes": self.probes})
        if self.task is not None:
            write_json(folder / TASK_FILE, self.task.assets())

    def load_assets(self, folder: Path) -> None:
        from studio.runstore import read_json
        self.tokenizer = load_tokenizer(folder / "tokenizer.json")
        if self.task is not None and (folder / TASK_FILE).exists():
            self.task.restore(read_json(folder / TASK_FILE, "task assets"), folder / TASK_FILE)
        if (folder / "generation.json").exists():
            doc = read_json(folder / "generation.json", "generation settings")
            self.format, self.probes = doc.get("format", "text"), doc.get("probes", [])
        elif (folder / "probes.json").exists():  # runs made by version 0.1
            self.probes = read_json(folder / "probes.json", "preview probes")
