"""Continuous batching for the text generator (`TextGenerator.open_decoder`, for `studio serve`).

Samples join and leave between steps; every step reads one new token of every active row in
one forward pass (GPT.decode_rows over a model.SlotCache: a KV cache slot per row, each row at
its own length, attending to its own keys only). A row is prefilled alone when it joins, and
again when its context window slides (as `model.generate` refills its cache), so each row sees
exactly the windows an unbatched decode sees; it samples with its own settings and its own
seeded generator, through `sampling.choose` as `TextGenerator._decode` does. A row's text is
therefore what `stream(params, seed, prompt)` gives: the same tokens for greedy decoding, and
for sampling as far as the batched forward rounds as the unbatched one does (a row alone in the
decoder does).

One thread drives a decoder: add, step and drop are not safe to call at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from studio.contract import DecodedPiece, Decoder

from generators.text import TextGenerator, TextSampleConfig, _RowText
from generators.text.model import SlotCache, window, window_start
from generators.text.sampling import choose


@dataclass
class _Row:
    """One sample under way."""

    params: TextSampleConfig
    rng: torch.Generator
    text: _RowText
    tokens: list[int]  # the context it started from and every token chosen since
    pinned: int  # leading tokens every window keeps (a pairs run's <|prompt|>)
    prompt_tokens: int
    window_start: int = 0  # where the window in its slot starts (model.window_start)
    logits: torch.Tensor | None = None  # (1, vocab): for its next token, once its last is read
    produced: int = 0

    @property
    def greedy(self) -> bool:
        """Picks the likeliest token with nothing that needs its history: batched argmax."""
        return self.params.temperature == 0 and self.params.repetition_penalty == 1.0


class TextDecoder(Decoder):
    """studio.contract.Decoder over a text generation run: up to `max_rows` samples at once."""

    def __init__(self, gen: TextGenerator, max_rows: int):
        if max_rows < 1:
            raise ValueError(f"a decoder needs at least one row, not {max_rows}")
        self.gen = gen
        self.model = gen.model
        self.max_rows = max_rows
        self.block = gen.config.block_size
        self.device = gen.device or torch.device("cpu")
        self.vocab = gen.tokenizer.vocab_size
        self.end_id, self.banned = gen._framing()
        self.slots = SlotCache(max_rows, self.block)
        self.rows: list[_Row | None] = [None] * max_rows
        self.no_history = torch.zeros(1, 0, dtype=torch.long, device=self.device)

    @property
    def active(self) -> int:
        return sum(row is not None for row in self.rows)

    def prompt_tokens(self, row: int) -> int:
        return self._row(row).prompt_tokens

    @torch.no_grad()
    def add(self, params: TextSampleConfig, seed: int, prompt) -> int:
        free = next((i for i, row in enumerate(self.rows) if row is None), None)
        if free is None:
            raise ValueError(f"all {self.max_rows} rows are busy: wait for one to finish")
        ids, pinned = self.gen._context_ids(prompt)  # StudioError for a prompt it cannot take
        row = _Row(params=params, rng=torch.Generator(device=self.device).manual_seed(seed),
                   text=_RowText(params.stop), tokens=list(ids), pinned=pinned,
                   prompt_tokens=len(ids))
        self._prefill(free, row)
        self.rows[free] = row
        return free

    def drop(self, row: int) -> None:
        self._row(row)
        self._free(row)

    @torch.no_grad()
    def step(self) -> list[DecodedPiece]:
        if not self.active:
            return []
        self._read_last_tokens()
        live = [(i, row) for i, row in enumerate(self.rows) if row is not None]
        chosen = self._choose([row for _, row in live])
        pieces = []
        for (i, row), token in zip(live, chosen):
            piece = self._emit(i, row, token)
            if piece.done:
                self._free(i)
            pieces.append(piece)
        return pieces

    # --- reading tokens ------------------------------------------------------------------------
    def _prefill(self, i: int, row: _Row) -> None:
        """Read the row's window alone into its slot (B=1, as generate fills a fresh cache)."""
        row.window_start = self._window_start(row)
        context = torch.tensor([row.tokens], dtype=torch.long, device=self.device)
        with self.gen._decoding_precision(self.device):
            logits, _ = self.model(window(context, self.block, row.pinned), cache=self.slots.prefill(i))
        row.logits = logits[:, -1, :]

    def _window_start(self, row: _Row) -> int:
        return window_start(len(row.tokens) - row.pinned, self.block - row.pinned)

    def _read_last_tokens(self) -> None:
        """Give every active row the logits of its next token: rows whose window slid are read
        again from their new window, the others read their last token together in one pass."""
        waiting = [i for i, row in enumerate(self.rows) if row is not None and row.logits is None]
        together = []
        for i in waiting:
            row = self.rows[i]
            if self._window_start(row) != row.window_start:
                self._prefill(i, row)
            else:
                together.append(i)
        if not together:
            return
        last = torch.tensor([[self.rows[i].tokens[-1]] for i in together], device=self.device)
        with self.gen._decoding_precision(self.device):
            logits = self.model.decode_rows(last, self.slots.step(together, self.device))
        for i, row_logits in zip(together, logits):
            self.rows[i].logits = row_logits[None]

    # --- choosing tokens -----------------------------------------------------------------------
    def _choose(self, rows: list[_Row]) -> list[int]:
        """The next token of each row, each with its own settings and generator, as _decode's
        pick does (framing tokens banned); the plain greedy rows in one argmax."""
        logits = torch.cat([row.logits for row in rows])[:, :self.vocab].float()
        logits[:, self.banned] = float("-inf")
        chosen = [0] * len(rows)
        greedy = [k for k, row in enumerate(rows) if row.greedy]
        if greedy:
            picks = logits[greedy].argmax(dim=-1).tolist()
            for k, token in zip(greedy, picks):
                chosen[k] = token
        for k, row in enumerate(rows):
            if not row.greedy:
                p = row.params
                # the history only counts for the repetition penalty
                history = torch.tensor([row.tokens], dtype=torch.long, device=self.device) \
                    if p.repetition_penalty != 1.0 else self.no_history
                chosen[k] = int(choose(logits[k:k + 1], history, temperature=p.temperature,
                                       top_k=p.top_k, top_p=p.top_p,
                                       repetition=p.repetition_penalty, generator=row.rng))
            row.logits = None
        return chosen

    def _emit(self, i: int, row: _Row, token: int) -> DecodedPiece:
        """The row's new text for `token` and whether it is done: <|end|> or a stop string
        ends it ("stop"), max_new_tokens ("length")."""
        row.tokens.append(token)
        row.produced += 1
        if token == self.end_id:
            return DecodedPiece(i, row.text.finish(), True, "stop", row.produced)
        text = row.text.feed(self.gen.tokenizer.token_bytes(token))
        if row.text.done:
            return DecodedPiece(i, text, True, "stop", row.produced)
        if row.produced >= row.params.max_new_tokens:
            return DecodedPiece(i, text + row.text.finish(), True, "length", row.produced)
        return DecodedPiece(i, text, False, None, row.produced)

    # --- rows ----------------------------------------------------------------------------------
    def _row(self, i: int) -> _Row:
        row = self.rows[i] if 0 <= i < self.max_rows else None
        if row is None:
            raise ValueError(f"row {i} is not under way (rows 0-{self.max_rows - 1}, "
                             f"{self.active} active)")
        return row

    def _free(self, i: int) -> None:
        self.rows[i] = None
        self.slots.free(i)
