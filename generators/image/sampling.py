"""Sampling strategies over latents, kept apart from the network: seeds -> latents, truncation,
spherical interpolation, and images -> uint8 arrays and grids. Plain torch, no app imports."""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.utils import make_grid


def latent_for_seed(seed: int, dim: int, truncation: float = 0.0) -> torch.Tensor:
    """The latent (dim,) of one seed: the same seed gives the same vector whatever else is
    drawn. With truncation t > 0, values beyond +-t are drawn again (the truncation trick of
    BigGAN, https://arxiv.org/abs/1809.11096): less variety, more typical images."""
    rng = torch.Generator().manual_seed(int(seed))
    z = torch.randn(dim, generator=rng)
    if truncation > 0:
        outside = z.abs() > truncation
        while outside.any():
            z[outside] = torch.randn(int(outside.sum()), generator=rng)
            outside = z.abs() > truncation
    return z


def latents_for_seeds(seeds: list[int], dim: int, truncation: float = 0.0) -> torch.Tensor:
    return torch.stack([latent_for_seed(s, dim, truncation) for s in seeds])  # (N, dim)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985): Gaussian latents live near a sphere, and the
    straight line between two of them passes through the low-norm middle no sample comes from."""
    a64, b64 = a.double(), b.double()
    cos = torch.dot(a64, b64) / (a64.norm() * b64.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:  # (nearly) the same direction: the straight line is as good
        return ((1 - t) * a64 + t * b64).to(a.dtype)
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so * a64 + torch.sin(t * omega) / so * b64).to(a.dtype)


def interpolation(a: torch.Tensor, b: torch.Tensor, frames: int) -> torch.Tensor:
    """`frames` latents from a to b, both ends included: (frames, dim)."""
    return torch.stack([slerp(a, b, i / (frames - 1)) for i in range(frames)])


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8."""
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def grid_columns(n: int, aspect: float, multiple_of: int = 1) -> int:
    """Columns for a grid of `n` square images that is about `aspect` (width / height) wide,
    a multiple of `multiple_of` so that each column keeps one class when the images cycle
    through the classes. A 2-class preview laid out a column per class was a 2x32 strip
    (70x1090 px) that no panel can show readably."""
    multiple_of = max(1, multiple_of)
    if n <= multiple_of:
        return max(1, n)

    def mismatch(columns: int) -> float:
        rows = math.ceil(n / columns)
        return abs(math.log(columns / rows / aspect))

    return min(range(multiple_of, n + 1, multiple_of), key=mismatch)


def grid(images: torch.Tensor, columns: int | None = None, padding: int = 2,
         aspect: float | None = None, columns_multiple_of: int = 1) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> one (rows*H, columns*W, C) uint8 image: `columns` wide, else
    about `aspect` (width / height) wide with a multiple of `columns_multiple_of` columns, else
    nearly square."""
    if not columns:
        columns = grid_columns(len(images), aspect, columns_multiple_of) if aspect else \
            math.ceil(math.sqrt(len(images)))
    tiled = make_grid(images.float().clamp(-1, 1), nrow=columns, padding=padding, pad_value=1.0)
    if images.shape[1] == 1:  # make_grid repeats a grey channel three times; keep it grey
        tiled = tiled[:1]
    return to_uint8(tiled[None])[0]
