"""Small test doubles that implement the contract for images and video (until the real ones
land), and one that diverges on purpose."""

from dataclasses import dataclass

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
