"""Small test doubles that implement the contract for text, images and video (until the real
ones land), and one that diverges on purpose."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from studio.config import setting
from studio.contract import DataReport, Generator, Sample


@dataclass
class ToyConfig:
    size: int = setting(8, "image side in pixels", min=2, max=64)
    batch_size: int = setting(16, "images per step", min=1)
    explode_at: int = setting(0, "make the loss NaN from this step on (0 = never)", min=0)


@dataclass
class ToySampleConfig:
    brightness: float = setting(1.0, "scale of the output", min=0, max=2)


class ToyImageGenerator(Generator):
    """Learns the mean image of a set of random images; samples are noisy copies of it."""

    name, modality, version = "toy-image", "image", "0.1"
    Config, SampleConfig = ToyConfig, ToySampleConfig
    throughput_unit = "images"

    def load_data(self, source, val_source, cache_dir):
        rng = np.random.default_rng(0)
        n, s = 64, self.config.size
        self.images = torch.from_numpy(rng.random((n, s * s * 3), dtype=np.float32) * 0.5 + 0.25)
        return DataReport(source=str(source), used=["generated"], summary={"images": n})

    def build(self):
        return torch.nn.Linear(1, self.config.size ** 2 * 3)

    def get_batch(self, split, rng):
        idx = torch.randint(len(self.images), (self.config.batch_size,), generator=rng)
        return self.images[idx].to(self.device)

    def training_step(self, batch, ctx):
        ones = torch.ones(len(batch), 1, device=batch.device)
        loss = torch.nn.functional.mse_loss(ctx.model(ones), batch)
        if self.config.explode_at and ctx.step >= self.config.explode_at:
            loss = loss * float("nan")
        return {"loss": loss}

    def evaluate(self, source=None, max_batches=None):
        ones = torch.ones(len(self.images), 1)
        return {"val_loss": float(torch.nn.functional.mse_loss(self.model(ones), self.images))}

    def _frame(self, gen, params):
        mean = self.model(torch.ones(1, 1)).reshape(self.config.size, self.config.size, 3)
        noisy = mean + 0.05 * torch.randn(mean.shape, generator=gen)
        return (noisy * params.brightness).clamp(0, 1).mul(255).to(torch.uint8).numpy()

    def sample(self, params, n=1, seed=0, prompt=None):
        gen = torch.Generator().manual_seed(seed)
        return [Sample("image", self._frame(gen, params), {"seed": seed, "index": i}) for i in range(n)]


class ToyVideoGenerator(ToyImageGenerator):
    name, modality = "toy-video", "video"

    def sample(self, params, n=1, seed=0, prompt=None):
        gen = torch.Generator().manual_seed(seed)
        return [Sample("video", np.stack([self._frame(gen, params) for _ in range(4)]),
                       {"seed": seed, "index": i}) for i in range(n)]


# --- a character bigram text generator: small, but with assets, a data path and a stream ---------

TOY_TEXT = "the quick brown fox jumps over the lazy dog. " * 20


@dataclass
class ToyTextConfig:
    block: int = setting(8, "characters per training example", min=2)
    batch_size: int = setting(8, "examples per step", min=1)


@dataclass
class ToyTextSampleConfig:
    length: int = setting(12, "characters per sample", min=1)
    temperature: float = setting(1.0, "softness of the next-character choice", min=0,
                                 min_exclusive=True, max=10)


class ToyTextGenerator(Generator):
    """Next-character logits from a table indexed by the current character. Its vocabulary is
    the data's characters in order of first appearance, kept as an asset (vocab.json) so that
    a loaded or resumed run reads its ids the same way whatever data it is given."""

    name, modality, version = "toy-text", "text", "0.1"
    Config, SampleConfig = ToyTextConfig, ToyTextSampleConfig
    throughput_unit = "characters"
    train_defaults = {"lr": 0.05}

    def __init__(self, config):
        super().__init__(config)
        self.vocab = ""  # the characters, in id order

    def load_data(self, source, val_source, cache_dir):
        text = Path(source).read_text(encoding="utf-8") if source else TOY_TEXT
        if not self.vocab:  # a resumed run keeps the vocabulary its weights were trained with
            self.vocab = "".join(dict.fromkeys(text))
        ids = self.encode(text)
        cut = int(len(ids) * 0.9)
        self.splits = {"train": ids[:cut], "val": ids[cut:]}
        if val_source:
            self.splits["val"] = self.encode(Path(val_source).read_text(encoding="utf-8"))
        return DataReport(source=str(source), used=[str(source)],
                          summary={"characters": len(ids), "vocabulary": len(self.vocab)})

    def encode(self, text: str) -> torch.Tensor:
        ids = {c: i for i, c in enumerate(self.vocab)}
        return torch.tensor([ids[c] for c in text if c in ids], dtype=torch.long)

    def build(self):
        return torch.nn.Embedding(len(self.vocab), len(self.vocab))

    def get_batch(self, split, rng):
        ids, block = self.splits[split], self.config.block
        starts = torch.randint(len(ids) - block, (self.config.batch_size,), generator=rng)
        x = torch.stack([ids[s:s + block] for s in starts])
        y = torch.stack([ids[s + 1:s + block + 1] for s in starts])
        return x.to(self.device), y.to(self.device)

    def training_step(self, batch, ctx):
        x, y = batch
        logits = ctx.model(x)
        return {"loss": torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())}

    def evaluate(self, source=None, max_batches=None):
        ids = self.encode(Path(source).read_text(encoding="utf-8")) if source else self.splits["val"]
        logits = self.model(ids[:-1].to(self.device))
        return {"val_loss": float(torch.nn.functional.cross_entropy(logits, ids[1:].to(self.device)))}

    def stream(self, params, seed=0, prompt=None):
        gen = torch.Generator().manual_seed(seed)
        known = self.encode(prompt or "")
        current = int(known[-1]) if len(known) else 0
        for _ in range(params.length):
            logits = self.model(torch.tensor([current], device=self.device))[0].float().cpu()
            probs = torch.softmax(logits / params.temperature, dim=-1)
            current = int(torch.multinomial(probs, 1, generator=gen))
            yield self.vocab[current]

    def sample(self, params, n=1, seed=0, prompt=None):
        return [Sample("text", "".join(self.stream(params, seed + i, prompt)),
                       {"seed": seed + i, "index": i}) for i in range(n)]

    def save_assets(self, folder):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.json").write_text(json.dumps({"vocab": self.vocab}), encoding="utf-8")

    def load_assets(self, folder):
        self.vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))["vocab"]
