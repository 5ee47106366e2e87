"""Task adaptation of the text generator: a classifier (`task=classify`) or a tagger
(`task=tag`) on the GPT body, trained on labelled data (labelled.py reads it, reports.py scores
it).

The body is the GPT of model.py, unchanged, so `--init-from RUN` and `--init-from-hf DIR` load
it as they load a generation run; the task layer (`head`, a Linear on the final LayerNorm's
hidden states) always starts fresh (TASK_LAYER: the weight loading leaves it alone). Rows are
padded on the right: attention is causal, so a real token never sees the padding after it and
no attention mask is needed; pooling and the loss skip the padding.

A classifier pools each text's hidden states (the last real token's, or their mean) and scores
every class: softmax cross-entropy for one label an example, sigmoid BCE for several (a class
is predicted when its probability is at least MULTI_LABEL_THRESHOLD). A tagger scores every
token; a word's tag sits on its first sub-word piece and the other pieces are left out of the
loss (IGNORE_INDEX), as in BERT's token classification. The body is causal, so that first piece
sees the words before it and the piece itself, not the rest of its word.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

from studio.contract import DataReport, Sample
from studio.errors import DataError, StudioError

from generators.text.explain import in_eval_mode, integrated_gradients_within
from generators.text.labelled import (LABEL_SEPARATOR, LabelledSet, TaggedSet, read_labelled,
                                      read_tagged, unseen_labels)
from generators.text.model import GPT, GPTShape
from generators.text.reports import (classification_report, entities, entity_report,
                                     multilabel_report)

TASKS = ("generate", "classify", "tag")
IGNORE_INDEX = -100  # target of the pieces that carry no tag (F.cross_entropy's default)
MULTI_LABEL_THRESHOLD = 0.5
# Held-out examples are scored this many tokens at a time (padding included): sorted by length
# and in batches this big, scoring a held-out file costs a fraction of training steps on it.
EVAL_TOKENS = 8192
TASK_LAYER = "head."  # its parameters never come from the weights a run starts from
TASK_FILE = "task.json"  # in the run's assets: task, classes or tags, so a loaded run answers

# Built-in labelled sets, written for this project (plain ASCII English, beside this module as
# package data): short product reviews with their sentiment, and short sentences with their
# products, people and cities tagged (BIO).
BUILTIN_LABELLED = {"builtin:sentiment": "sentiment.jsonl"}
BUILTIN_TAGGED = {"builtin:entities": "entities.jsonl"}

# What each task is judged by: the held-out metric that picks the best checkpoint, and its mode.
BEST_METRIC = {"generate": ("val_bits_per_byte", "min"), "classify": ("val_macro_f1", "max"),
               "tag": ("val_entity_f1", "max")}


def data_file(source: str | None, task: str) -> str:
    """The path to read for `source`, a built-in set's name resolved to its file."""
    builtin = BUILTIN_LABELLED if task == "classify" else BUILTIN_TAGGED
    if source is None:
        raise StudioError(f"a {task} run needs labelled data: give a labelled file as its data "
                          f"(built in: {', '.join(builtin)}).")
    if source in builtin:
        return str(Path(__file__).with_name(builtin[source]))
    if source.startswith("builtin:"):
        raise StudioError(f"there is no built-in set {source!r} for {task} runs; the built-in "
                          f"ones are {', '.join(builtin)}.")
    return source


# --- the model ---------------------------------------------------------------------------------

class TaskGPT(GPT):
    """The GPT body with a task layer: (B, T) token ids and each row's length -> class scores
    (B, classes), pooled over the row's real tokens, or tag scores per token (B, T, tags)."""

    def __init__(self, shape: GPTShape, outputs: int, per_token: bool, pooling: str):
        super().__init__(shape)
        self.per_token, self.pooling = per_token, pooling
        self.head = nn.Linear(shape.n_embd, outputs)
        nn.init.normal_(self.head.weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.head.bias)

    def hidden_states(self, idx: torch.Tensor, token_embeddings: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """The final LayerNorm's output (B, T, n_embd): what the language-model head reads.
        `token_embeddings` (B, T, n_embd), when given, stand in for idx's (the positions' are
        added as ever): integrated gradients reads the model between a baseline and them."""
        pos = torch.arange(idx.size(1), dtype=torch.long, device=idx.device)
        tokens = self.transformer.wte(idx) if token_embeddings is None else token_embeddings
        x = self.transformer.drop(tokens + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        return self.transformer.ln_f(x)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor,
                token_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        if idx.size(1) > self.shape.block_size:
            raise ValueError(f"{idx.size(1)} tokens are more than the block ({self.shape.block_size})")
        hidden = self.hidden_states(idx, token_embeddings)
        if self.per_token:
            return self.head(hidden)
        if self.pooling == "last":  # the last real token has seen the whole text
            pooled = hidden[torch.arange(idx.size(0), device=idx.device), lengths - 1]
        else:
            real = (torch.arange(idx.size(1), device=idx.device)[None, :] < lengths[:, None])
            pooled = (hidden * real[..., None]).sum(1) / lengths[:, None].to(hidden.dtype)
        return self.head(pooled)


# --- data --------------------------------------------------------------------------------------

@dataclass
class Examples:
    """Encoded examples: token ids per example and its target (a class index, a 0/1 row of
    classes, or one tag index per token with IGNORE_INDEX on the pieces without a tag)."""

    ids: list[np.ndarray] = field(default_factory=list)
    targets: list = field(default_factory=list)
    first_pieces: list[np.ndarray] = field(default_factory=list)  # tag: each kept word's token
    cut: int = 0  # examples longer than the context, cut to it
    longest: int = 0  # tokens of the longest example before cutting


def encode_texts(tokenizer, texts: list[str], block_size: int) -> Examples:
    """Each text's tokens, cut after the first `block_size` (counted in `cut`)."""
    out = Examples()
    for text in texts:
        ids = tokenizer.encode(text).astype(np.int64)
        out.longest = max(out.longest, len(ids))
        if len(ids) > block_size:
            out.cut += 1
            ids = ids[:block_size]
        out.ids.append(ids)
    return out


def encode_words(tokenizer, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The words joined with single spaces, as tokens, and where each word's first piece is.
    Words are encoded one by one as they appear in the joined text (with the space before
    them), so a piece never spans two words; the first piece of a word is its first one that
    holds more than the space (with the char tokenizer the space is a piece of its own)."""
    ids, first_pieces = [], []
    for i, word in enumerate(words):
        pieces = tokenizer.encode(word if i == 0 else " " + word).tolist()
        first = next((k for k, piece in enumerate(pieces)
                      if tokenizer.token_bytes(piece).strip()), 0)
        first_pieces.append(len(ids) + first)
        ids += pieces
    return np.array(ids, dtype=np.int64), np.array(first_pieces, dtype=np.int64)


def tag_targets(length: int, first_pieces: np.ndarray, tag_ids: list[int]) -> np.ndarray:
    """One target per token: the word's tag on its first piece, IGNORE_INDEX elsewhere."""
    targets = np.full(length, IGNORE_INDEX, dtype=np.int64)
    targets[first_pieces] = tag_ids
    return targets


def encode_sentences(tokenizer, sentences: list[list[str]], block_size: int) -> Examples:
    """Token ids and first pieces per sentence, cut to the context: the words whose first
    piece is beyond it are left out (counted in `cut`)."""
    out = Examples()
    for words in sentences:
        ids, first_pieces = encode_words(tokenizer, words)
        out.longest = max(out.longest, len(ids))
        if len(ids) > block_size:
            out.cut += 1
            ids, first_pieces = ids[:block_size], first_pieces[first_pieces < block_size]
        out.ids.append(ids)
        out.first_pieces.append(first_pieces)
    return out


def pad(ids: list[np.ndarray], targets: list | None, per_token: bool):
    """Rows padded on the right to the longest: (ids, lengths[, targets]) as tensors."""
    width = max(len(row) for row in ids)
    padded = np.zeros((len(ids), width), dtype=np.int64)
    for row, tokens in enumerate(ids):
        padded[row, :len(tokens)] = tokens
    lengths = torch.tensor([len(row) for row in ids], dtype=torch.long)
    if targets is None:
        return torch.from_numpy(padded), lengths
    if per_token:
        stacked = np.full((len(ids), width), IGNORE_INDEX, dtype=np.int64)
        for row, target in enumerate(targets):
            stacked[row, :len(target)] = target
        return torch.from_numpy(padded), lengths, torch.from_numpy(stacked)
    return torch.from_numpy(padded), lengths, torch.as_tensor(np.stack(targets))


def length_batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Indices of the examples in batches of like length (shortest first), each at most
    `max_tokens` tokens once padded to its longest (at least one example a batch)."""
    batches, batch = [], []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if batch and (len(batch) + 1) * lengths[i] > max_tokens:
            batches.append(batch)
            batch = []
        batch.append(i)
    return batches + [batch] if batch else batches


def held_out_order(count: int, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out indices: a fixed shuffle (labelled files are often sorted by
    class) with the last `share` held out, at least one example each."""
    order = np.random.default_rng(0).permutation(count)
    n_val = min(max(1, int(round(count * share))), count - 1)
    return np.sort(order[:count - n_val]), np.sort(order[count - n_val:])


def balanced_weights(counts: np.ndarray) -> np.ndarray:
    """scikit-learn's "balanced" class weights: n / (classes * count); an absent class 1."""
    present = counts > 0
    weights = np.ones(len(counts), dtype=np.float32)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return weights


def cut_note(examples: Examples, total: int, block_size: int, what: str, where: str) -> str | None:
    if not examples.cut:
        return None
    kept = ("their words beyond it are left out of training and scoring" if what == "sentences"
            else "only their first tokens are read")
    return (f"{examples.cut} of {total} {what} of {where} are longer than the model's context of "
            f"{block_size} tokens (the longest {examples.longest}): {kept}. To read them whole, "
            f"raise block_size in a new run (--set block_size=...).")


# --- the task ----------------------------------------------------------------------------------

class TextTask:
    """A classify or tag run's data, loss, evaluation and answers, for TextGenerator (which
    owns the tokenizer, the model, the device and the settings)."""

    def __init__(self, gen):
        self.gen = gen
        self.kind = gen.config.task
        self.per_token = self.kind == "tag"
        self.names: list[str] = []  # classes, or tags
        self.multi_label = False
        self.scheme = "auto"  # tag: BIO or IOBES, from the training data
        self.train = Examples()
        self.val = Examples()
        self.val_truth: list = []  # held-out labels (class names, sets, or tag lists)
        self.loss_weights: torch.Tensor | None = None

    @property
    def config(self):
        return self.gen.config

    # --- data -----------------------------------------------------------------------------
    def read(self, source: str) -> LabelledSet | TaggedSet:
        path = data_file(source, self.kind)
        return read_tagged(path) if self.per_token else read_labelled(path)

    def load_data(self, source: str | None, val_source: str | None) -> DataReport:
        data = self.read(source)
        where = source
        if val_source:
            held = self.read(val_source)
            train_index, val_index = np.arange(self._count(data)), None
        else:
            held = None
            train_index, val_index = held_out_order(self._count(data), self.config.val_fraction)
        texts = data.sentences if self.per_token else data.texts
        self.gen._ensure_tokenizer([" ".join(t) if self.per_token else t for t in texts])
        notes = list(data.notes)
        if self.per_token:
            self.names, self.scheme = list(data.tag_set), data.scheme
        else:
            self.names, self.multi_label = list(data.classes), data.multi_label
        if held is not None:
            notes += [f"{val_source}: {note}" for note in held.notes]
            notes += self._unseen_note(data, held, val_source)
        val_set, val_from = (held, np.arange(self._count(held))) if held is not None else (data, val_index)
        self.train = self._encode(data, train_index)
        self.val = self._encode(val_set, val_from)
        self.val_truth = self._truth(val_set, val_from)
        if self.config.class_weights == "balanced":
            self.loss_weights = torch.from_numpy(self._balanced())
        block = self.config.block_size
        what = "sentences" if self.per_token else "texts"
        for examples, total, name in ((self.train, len(train_index), where),
                                      (self.val, len(val_from), val_source or f"the held-out part of {where}")):
            note = cut_note(examples, total, block, what, name)
            if note:
                notes.append(note)
        self.gen.probes = [{"prompt": " ".join(t) if self.per_token else t, "seed": 0}
                           for t in (held.sentences if self.per_token else held.texts)[:2]] \
            if held is not None else \
            [{"prompt": " ".join(texts[i]) if self.per_token else texts[i], "seed": 0}
             for i in val_index[:2]]
        summary = {"format": self.kind, "examples": len(train_index), "val_examples": len(val_from),
                   "held_out": str(val_source) if val_source else
                   f"{len(val_from)} examples drawn from the data (a fixed shuffle)",
                   "cut_to_context": self.train.cut + self.val.cut,
                   "longest_tokens": max(self.train.longest, self.val.longest),
                   "vocab_size": self.gen.tokenizer.vocab_size,
                   "tokenizer": self.gen.tokenizer.kind, "notes": notes}
        if self.per_token:
            summary.update(scheme=data.scheme, tags=self.names, entity_types=data.entity_counts)
        else:
            summary.update(classes=data.counts, multi_label=data.multi_label)
        first = texts[0]
        preview = " ".join(f"{w}/{t}" for w, t in zip(first, data.tags[0])) if self.per_token \
            else f"{first}\n→ {self._shown(data.labels[0])}"
        return DataReport(source=source, used=list(data.files), summary=summary,
                          preview=[Sample("text", preview, {"source": data.where[0]})])

    @staticmethod
    def _count(data) -> int:
        return len(data.sentences) if isinstance(data, TaggedSet) else len(data.texts)

    def _unseen_note(self, train, held, where) -> list[str]:
        if self.per_token:
            unseen = sorted({t for tags in held.tags for t in tags} - set(self.names))
            return [f"{where} has tags never seen in training: {', '.join(unseen)}; the model "
                    f"cannot predict them."] if unseen else []
        unseen = unseen_labels(train, held)
        return [f"{where} has the class {label!r}, never seen in training (at {', '.join(places[:3])}); "
                f"the model cannot predict it." for label, places in unseen.items()]

    def _encode(self, data, index: np.ndarray) -> Examples:
        block = self.config.block_size
        tk = self.gen.tokenizer
        if self.per_token:
            out = encode_sentences(tk, [data.sentences[i] for i in index], block)
            tag_index = {t: k for k, t in enumerate(self.names)}
            for first_pieces, i, ids in zip(out.first_pieces, index, out.ids):
                tags = [tag_index.get(t, IGNORE_INDEX) for t in data.tags[i][:len(first_pieces)]]
                out.targets.append(tag_targets(len(ids), first_pieces, tags))
            return out
        out = encode_texts(tk, [data.texts[i] for i in index], block)
        class_index = {c: k for k, c in enumerate(self.names)}
        for i in index:
            label = data.labels[i]
            if self.multi_label:
                row = np.zeros(len(self.names), dtype=np.float32)
                row[[class_index[c] for c in label if c in class_index]] = 1
                out.targets.append(row)
            else:  # a class never seen in training has no target: left out of the loss
                out.targets.append(np.int64(class_index.get(label, IGNORE_INDEX)))
        return out

    def _truth(self, data, index: np.ndarray) -> list:
        if self.per_token:
            return [list(data.tags[i]) for i in index]
        return [set(data.labels[i]) if self.multi_label else data.labels[i] for i in index]

    def _balanced(self) -> np.ndarray:
        if self.per_token:
            tags = np.concatenate([t[t != IGNORE_INDEX] for t in self.train.targets])
            return balanced_weights(np.bincount(tags, minlength=len(self.names)).astype(np.float64))
        if self.multi_label:  # BCE's pos_weight: negatives per positive of each class
            rows = np.stack(self.train.targets)
            positives = rows.sum(0)
            return np.where(positives > 0, (len(rows) - positives) / np.maximum(positives, 1),
                            1).astype(np.float32)
        labels = np.array([int(t) for t in self.train.targets])
        return balanced_weights(np.bincount(labels[labels >= 0],
                                            minlength=len(self.names)).astype(np.float64))

    def get_batch(self, split: str, rng: torch.Generator):
        examples = self.train if split == "train" else self.val
        picks = torch.randint(len(examples.ids), (self.config.batch_size,), generator=rng).tolist()
        return pad([examples.ids[i] for i in picks], [examples.targets[i] for i in picks],
                   self.per_token)

    # --- model and loss -------------------------------------------------------------------
    def build(self, shape: GPTShape) -> TaskGPT:
        if not self.names:
            raise StudioError("this run has no classes or tags (its task.json is missing); "
                              "it cannot be loaded as a classifier or tagger.")
        return TaskGPT(shape, len(self.names), self.per_token, self.config.pooling)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        weights = None if self.loss_weights is None else self.loss_weights.to(logits.device)
        if self.per_token:
            return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                   weight=weights, ignore_index=IGNORE_INDEX)
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, targets.float(), pos_weight=weights)
        return F.cross_entropy(logits, targets, weight=weights, ignore_index=IGNORE_INDEX)

    def training_step(self, batch, ctx) -> dict:
        ids, lengths, targets = batch
        return {"loss": self.loss(ctx.model(ids, lengths), targets)}

    # --- evaluation -----------------------------------------------------------------------
    def _logits(self, ids: list[np.ndarray]):
        """The model's scores of each example, in order, as float32 CPU tensors. Examples of
        like length go together, as many as EVAL_TOKENS allows, so that little is padding."""
        gen = self.gen
        out: list = [None] * len(ids)
        for batch in length_batches([len(row) for row in ids], EVAL_TOKENS):
            x, lengths = pad([ids[i] for i in batch], None, self.per_token)
            with gen.autocast():
                logits = gen.model(x.to(gen.device), lengths.to(gen.device))
            # a tagger's rows lose their padding: one score row per real token
            for i, row, length in zip(batch, logits.float().cpu(), lengths.tolist()):
                out[i] = row[:length] if self.per_token else row
        return out

    def evaluate(self, source: str | None = None, max_batches: int | None = None) -> dict:
        """Held-out loss and scores; a full evaluation (`max_batches` None, as `studio eval`
        asks) adds the report (reports.py) and notes on labels never seen in training."""
        notes: list[str] = []
        if source is None:
            examples, truth = self.val, self.val_truth
        else:
            data = self.read(source)
            index = np.arange(self._count(data))
            examples, truth = self._encode(data, index), self._truth(data, index)
            notes += self._unseen_in(truth, source)
            note = cut_note(examples, len(index), self.config.block_size,
                            "sentences" if self.per_token else "texts", source)
            if note:
                notes.append(note)
        count = len(examples.ids)
        if max_batches is not None:
            count = min(count, max_batches * self.config.batch_size)
        logits = self._logits(examples.ids[:count])
        metrics, report = self._score(logits, examples, truth[:count])
        if max_batches is None:
            metrics.update(report=report, notes=notes)
        return metrics

    def _unseen_in(self, truth: list, where: str) -> list[str]:
        if self.per_token:
            seen = {t for tags in truth for t in tags}
        else:
            seen = set().union(*truth) if self.multi_label else set(truth)
        unseen = sorted(seen - set(self.names))
        what = "tags" if self.per_token else "classes"
        return [f"{where} has {what} never seen in training: {', '.join(map(str, unseen))}; the "
                f"model cannot predict them, so they score 0 (their rows in the report)."] if unseen else []

    def _score(self, logits: list[torch.Tensor], examples: Examples, truth: list) -> tuple[dict, dict]:
        targets = examples.targets[:len(logits)]
        if self.per_token:
            flat_logits = torch.cat(logits)
            flat_targets = torch.from_numpy(np.concatenate(targets))
            loss = self._held_out_loss(flat_logits, flat_targets)
            predicted = [self._words_tags(row, first, len(tags))
                         for row, first, tags in zip(logits, examples.first_pieces, truth)]
            report = entity_report(truth, predicted)
            words = sum(len(tags) for tags in truth)
            right = sum(a == b for tags, guess in zip(truth, predicted) for a, b in zip(tags, guess))
            return {"val_loss": loss, "val_entity_f1": report["micro avg"]["f1"],
                    "val_tag_accuracy": right / max(words, 1)}, report
        stacked = torch.stack(logits)
        if self.multi_label:
            loss = float(self.loss(stacked, torch.from_numpy(np.stack(targets))))
            predicted = [self._chosen(row) for row in torch.sigmoid(stacked)]
            report = multilabel_report(truth, predicted, labels=self.names)
            accuracy = sum(set(p) == set(t) for p, t in zip(predicted, truth)) / len(truth)
        else:
            target_tensor = torch.tensor([int(t) for t in targets])
            loss = self._held_out_loss(stacked, target_tensor)
            predicted = [self.names[k] for k in stacked.argmax(1).tolist()]
            report = classification_report(truth, predicted, labels=self.names)
            accuracy = report["accuracy"]
        return {"val_loss": loss, "val_macro_f1": report["macro avg"]["f1"],
                "val_accuracy": accuracy}, report

    def _held_out_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """The training loss's own mean over the held-out examples: with class weights, the
        weighted mean (each example counts as its class's weight, as in training); examples
        whose class the model does not have (IGNORE_INDEX) are left out; none left: 0."""
        if not bool((targets != IGNORE_INDEX).any()):
            return 0.0
        return float(self.loss(logits, targets))

    def _words_tags(self, logits: torch.Tensor, first_pieces: np.ndarray, words: int) -> list[str]:
        """A tag per word: read at its first piece; words cut off by the context get O."""
        chosen = logits[torch.from_numpy(first_pieces)].argmax(-1).tolist()
        return [self.names[k] for k in chosen] + ["O"] * (words - len(chosen))

    def _chosen(self, probabilities: torch.Tensor) -> tuple[str, ...]:
        return tuple(c for c, p in zip(self.names, probabilities.tolist()) if p >= MULTI_LABEL_THRESHOLD)

    @staticmethod
    def _shown(label) -> str:
        return LABEL_SEPARATOR.join(label) if isinstance(label, (tuple, set, list)) else str(label)

    # --- answers --------------------------------------------------------------------------
    def encode(self, texts: list[str]) -> Examples:
        """The tokens the model reads of each text it answers: a tagger reads the text's
        words joined with single spaces (as in training), a classifier the text; both up to
        the context."""
        if self.per_token:
            return encode_sentences(self.gen.tokenizer, [text.split() for text in texts],
                                    self.config.block_size)
        return encode_texts(self.gen.tokenizer, texts, self.config.block_size)

    def answer(self, prompt, explain: bool = False) -> list[Sample]:
        """One Sample per text: its class (with every class's probability) or its words' tags
        (with the entities found). A list of texts gives a list of answers. With `explain`, a
        classifier's answers also say how much each token read counted for the class
        (`attributions`, see attributions()); a tagger's are left as they are."""
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
            raise StudioError(f"a {self.kind} run needs a text to {self.kind}: give a prompt, or "
                              f"a file with one text a line as its data.")
        texts = [prompt] if isinstance(prompt, str) else list(prompt)
        block = self.config.block_size
        encoded = self.encode(texts)
        logits = self._logits(encoded.ids)
        samples = []
        for i, (text, row, ids) in enumerate(zip(texts, logits, encoded.ids)):
            meta = {"prompt": text, "task": self.kind, "index": i}
            if self.per_token:
                words = text.split()
                tags = self._words_tags(row, encoded.first_pieces[i], len(words))
                found = [{"type": kind, "text": " ".join(words[start:end + 1]),
                          "start": start, "end": end} for kind, start, end in entities(tags)]
                meta.update(words=words, tags=tags, entities=found)
                data = " ".join(f"{w}/{t}" for w, t in zip(words, tags))
                if len(encoded.first_pieces[i]) < len(words):
                    meta["note"] = (f"the text is longer than the model's context of {block} "
                                    f"tokens: its last {len(words) - len(encoded.first_pieces[i])} "
                                    f"words were not read and are tagged O")
            else:
                if self.multi_label:
                    probabilities = torch.sigmoid(row)
                    labels = list(self._chosen(probabilities))
                    data = LABEL_SEPARATOR.join(labels)
                    meta["labels"] = labels
                else:
                    probabilities = torch.softmax(row, -1)
                    data = self.names[int(probabilities.argmax())]
                meta["probabilities"] = {c: float(p) for c, p in zip(self.names, probabilities.tolist())}
                if len(ids) < len(self.gen.tokenizer.encode(text)):
                    meta["note"] = (f"the text is longer than the model's context of {block} "
                                    f"tokens: only its first {block} were read")
                if explain:
                    meta["attributions"] = self.attributions(ids, int(row.argmax()))
            samples.append(Sample("text", data, meta))
        return samples

    # Integrated gradients' path points: from IG_STEPS, doubled up to IG_MAX_STEPS until the
    # completeness gap is at most IG_TOLERANCE of the logit's change (explain.py).
    IG_STEPS, IG_MAX_STEPS, IG_TOLERANCE = 32, 256, 0.01
    IG_TOKENS_PER_PASS = 4096  # path points x tokens in one forward/backward: bounds the memory

    def attributions(self, ids: np.ndarray, target: int) -> dict:
        """How much each token read counted for class `target`'s logit: integrated gradients
        (explain.py) over the token embeddings, from a baseline of zero token embeddings (the
        position embeddings stay as they are: only what the tokens are is taken away). The
        target is the answer's class: the predicted one, or for several labels the likeliest
        (the highest logit is the highest probability). Computed in float32 outside autocast
        (bf16's rounding would swamp the completeness check), in eval mode, with gradients
        for the embeddings only (the parameters' .grad stay as they are)."""
        model = self.gen.model
        idx = torch.as_tensor(ids, dtype=torch.long, device=self.gen.device)[None]
        length = idx.size(1)

        def target_logit(points: torch.Tensor) -> torch.Tensor:  # (S, T, n_embd) -> (S,)
            rows = points.size(0)
            lengths = torch.full((rows,), length, dtype=torch.long, device=idx.device)
            return model(idx.expand(rows, -1), lengths, token_embeddings=points)[:, target].float()

        with in_eval_mode(model):
            tokens = model.transformer.wte(idx)[0].detach().float()
            result, steps = integrated_gradients_within(
                target_logit, tokens, self.IG_TOLERANCE, self.IG_STEPS, self.IG_MAX_STEPS,
                self.IG_TOKENS_PER_PASS)
        return {"method": "integrated_gradients", "baseline": "zero token embedding",
                "steps": steps, "target": self.names[target],
                "pieces": [self.gen._token_text(int(t)) for t in ids],
                "scores": result.scores.tolist(), "completeness_gap": result.completeness_gap}

    # --- assets ---------------------------------------------------------------------------
    def assets(self) -> dict:
        doc = {"task": self.kind, "names": self.names, "multi_label": self.multi_label,
               "scheme": self.scheme}
        if self.loss_weights is not None:  # so a loaded run's held-out loss is weighted alike
            doc["class_weights"] = [float(w) for w in self.loss_weights]
        return doc

    def restore(self, doc: dict, where) -> None:
        """What assets() wrote, as a run that starts from another's weights or a loaded run
        reads it. A run started from a run of another task keeps nothing of it."""
        if doc.get("task") != self.kind:
            return
        names = doc.get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{where} lists no classes or tags; the run's assets are damaged.")
        self.names, self.multi_label = names, bool(doc.get("multi_label"))
        self.scheme = str(doc.get("scheme", "auto"))
        weights = doc.get("class_weights")
        if (self.config.class_weights == "balanced" and isinstance(weights, list)
                and len(weights) == len(names)):
            self.loss_weights = torch.tensor(weights, dtype=torch.float32)
