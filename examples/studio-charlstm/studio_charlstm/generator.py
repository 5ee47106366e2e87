"""The `charlstm` generator: a character-level LSTM (Karpathy's char-rnn, small). It reads
the text one character at a time and predicts the next; sampling feeds its own output back.
Data is UTF-8 text: a .txt file or a folder of them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from studio.contract import DataReport, Sample
from studio.errors import StudioError
from studio_charlstm.config import CharlstmDeclarations

# Trained on when no data is given, so that `studio train charlstm` works out of the box.
DEMO_TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, "
             "it was the age of foolishness, it was the epoch of belief, it was the epoch of "
             "incredulity, it was the season of Light, it was the season of Darkness, it was "
             "the spring of hope, it was the winter of despair.\n") * 8

START = 0  # the id before the first character: the vocabulary's ids start at 1


def read_text(source: str) -> str:
    """The text of a .txt file, or of a folder's .txt files in name order."""
    path = Path(source)
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise StudioError(f"no text at {source}: give a UTF-8 .txt file or a folder of them.")
    try:
        return "".join(f.read_text(encoding="utf-8") for f in files)
    except UnicodeDecodeError as exc:
        raise StudioError(f"{source} is not UTF-8 text ({exc.reason} at byte {exc.start}): "
                          f"save it as UTF-8.") from None


class CharlstmModel(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab + 1, embed)  # + START
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, vocab + 1)

    def forward(self, ids: torch.Tensor, state=None):
        """(B, T) ids -> (B, T, vocab + 1) logits of each next character, and the LSTM state
        after the last one (to go on from when sampling)."""
        outputs, state = self.lstm(self.embed(ids), state)
        return self.out(outputs), state


class CharlstmGenerator(CharlstmDeclarations):
    def __init__(self, config):
        super().__init__(config)
        self.vocab = ""  # the characters, id i + 1 for vocab[i]; an asset of the run

    # --- data -------------------------------------------------------------------------------
    def load_data(self, source, val_source, cache_dir):
        text = read_text(source) if source else DEMO_TEXT
        if not self.vocab:  # a loaded or resumed run keeps the vocabulary it was trained with
            self.vocab = "".join(sorted(set(text)))
        ids = self.encode(text)
        if val_source:
            train, val = ids, self.encode(read_text(val_source))
        else:
            cut = int(len(ids) * (1 - self.config.val_fraction))
            train, val = ids[:cut], ids[cut:]
        for split, part in (("training", train), ("held-out", val)):
            if len(part) <= self.config.block:
                raise StudioError(f"the {split} text has {len(part)} known characters; it needs "
                                  f"more than block ({self.config.block}): give more text or "
                                  f"a smaller block.")
        self.splits = {"train": train, "val": val}
        return DataReport(source=str(source) if source else "built-in demo text",
                          used=[str(source) if source else "demo"],
                          summary={"characters": len(ids), "vocabulary": len(self.vocab)})

    def encode(self, text: str) -> torch.Tensor:
        ids = {c: i + 1 for i, c in enumerate(self.vocab)}
        return torch.tensor([ids[c] for c in text if c in ids], dtype=torch.long)

    def save_assets(self, folder: Path) -> None:
        (Path(folder) / "vocab.json").write_text(json.dumps(self.vocab), encoding="utf-8")

    def load_assets(self, folder: Path) -> None:
        self.vocab = json.loads((Path(folder) / "vocab.json").read_text(encoding="utf-8"))

    # --- training ---------------------------------------------------------------------------
    def build(self):
        c = self.config
        return CharlstmModel(len(self.vocab), c.embed, c.hidden, c.layers, c.dropout)

    def get_batch(self, split, rng):
        """Sequences of `block` characters and the same shifted by one (the targets)."""
        ids, block = self.splits[split], self.config.block
        starts = torch.randint(len(ids) - block, (self.config.batch_size,), generator=rng)
        windows = torch.stack([ids[s:s + block + 1] for s in starts.tolist()])
        return windows[:, :-1].to(self.device), windows[:, 1:].to(self.device)

    def training_step(self, batch, ctx):
        x, y = batch
        logits, _ = ctx.model(x)
        return {"loss": F.cross_entropy(logits.flatten(0, 1), y.flatten())}

    def evaluate(self, source=None, max_batches=None):
        """Loss on the held-out text (or `source`) cut into consecutive sequences of `block`."""
        ids = self.encode(read_text(source)) if source else self.splits["val"]
        block = self.config.block
        count = (len(ids) - 1) // block
        if count < 1:
            raise StudioError(f"{source or 'the held-out text'} has {len(ids)} known "
                              f"characters; evaluating needs more than block ({block}).")
        if max_batches:
            count = min(count, max_batches * self.config.batch_size)
        x = ids[:count * block].view(count, block)
        y = ids[1:count * block + 1].view(count, block)
        with torch.no_grad():
            logits, _ = self.model(x.to(self.device))
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.to(self.device).flatten())
        return {"val_loss": float(loss)}

    # --- sampling ---------------------------------------------------------------------------
    @torch.no_grad()
    def stream(self, params, seed=0, prompt=None):
        """The generated characters one by one (after the prompt), reproducible from `seed`."""
        gen = torch.Generator().manual_seed(seed)
        ids = torch.tensor([[START] + self.encode(prompt or "").tolist()], device=self.device)
        logits, state = self.model(ids)  # read the prompt once, then one character at a time
        for _ in range(params.length):
            last = logits[0, -1].float().cpu()
            last[START] = float("-inf")  # START begins a text; it is never generated
            probs = torch.softmax(last / params.temperature, dim=-1)
            next_id = int(torch.multinomial(probs, 1, generator=gen))
            yield self.vocab[next_id - 1]
            logits, state = self.model(torch.tensor([[next_id]], device=self.device), state)

    def sample(self, params, n=1, seed=0, prompt=None):
        return [Sample("text", (prompt or "") + "".join(self.stream(params, seed + i, prompt)),
                       {"seed": seed + i, "prompt": prompt or ""}) for i in range(n)]

    def preview(self):
        return self.sample(self.SampleConfig(length=80), n=2, seed=0)
