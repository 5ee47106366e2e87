"""DiffAugment: differentiable augmentation of everything the discriminator sees.

Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"
(https://arxiv.org/abs/2006.10738; reference code mit-han-lab/data-efficient-gans). With a few
hundred images, D memorises the training set and its feedback to G turns to noise. Augmenting
only the real images would teach G to draw augmented images; DiffAugment applies the *same
kind* of random transform to real and fake images, in D's step and in G's step, and every
transform is differentiable, so G's gradients pass through it.

Plain torch, no app imports. The random parameters are drawn first (`draw`) and applied
second (`apply`), so one draw can be applied again (tests check that a batch is transformed
exactly as its images would be one by one) and resuming replays the same draws from the
checkpointed RNG. Three transforms, as in the paper:

- color: brightness shift in [-0.5, 0.5), saturation factor in [0, 2), contrast in [0.5, 1.5);
- translation: a whole-pixel shift of up to 1/8 of the side in each direction, zero-padded;
- cutout: a zeroed square of half the side at a random centre (clipped at the border).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from generators.image.config import POLICIES, parse_list, parse_policy  # noqa: F401 (re-exported)

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


@dataclass
class AugmentParams:
    """Per-image random parameters, each of shape (B,) (empty when the policy omits it)."""

    brightness: torch.Tensor | None = None  # added, in [-0.5, 0.5)
    saturation: torch.Tensor | None = None  # factor, in [0, 2)
    contrast: torch.Tensor | None = None  # factor, in [0.5, 1.5)
    shift_x: torch.Tensor | None = None  # whole pixels, content moves right when positive
    shift_y: torch.Tensor | None = None  # whole pixels, content moves down when positive
    cut_x: torch.Tensor | None = None  # centre column of the cutout square
    cut_y: torch.Tensor | None = None  # centre row

    def select(self, index: torch.Tensor | slice) -> "AugmentParams":
        """The parameters of some images of the batch (for checks and for splitting a batch)."""
        return AugmentParams(**{k: (v[index] if v is not None else None) for k, v in vars(self).items()})


def draw(batch: int, height: int, width: int, policy: tuple[str, ...], device: torch.device,
         generator: torch.Generator | None = None,
         probability: float | torch.Tensor | None = None) -> AugmentParams:
    """Random parameters for `batch` images, from `generator` (default: the global RNG).

    With `probability` p, each transform is applied to each image with probability p and is
    the identity otherwise (as StyleGAN2-ADA applies its augmentations); p may be a tensor on
    `device`, so adapting it never waits for the GPU. None: every transform, every image."""
    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(batch, device=device, generator=generator) * (high - low) + low

    def integers(low: int, high: int) -> torch.Tensor:  # inclusive low, exclusive high
        return torch.randint(low, high, (batch,), device=device, generator=generator)

    def maybe(value: torch.Tensor, identity: float) -> torch.Tensor:
        if probability is None:
            return value
        chosen = torch.rand(batch, device=device, generator=generator) < probability
        return torch.where(chosen, value, torch.full_like(value, identity))

    params = AugmentParams()
    if "color" in policy:
        params.brightness = maybe(uniform(-0.5, 0.5), 0.0)
        params.saturation = maybe(uniform(0.0, 2.0), 1.0)
        params.contrast = maybe(uniform(0.5, 1.5), 1.0)
    if "translation" in policy:
        max_x, max_y = int(width * TRANSLATION_RATIO + 0.5), int(height * TRANSLATION_RATIO + 0.5)
        params.shift_x = integers(-max_x, max_x + 1)
        params.shift_y = integers(-max_y, max_y + 1)
        if probability is not None:  # one draw for both directions: a translation or none
            moved = torch.rand(batch, device=device, generator=generator) < probability
            params.shift_x, params.shift_y = params.shift_x * moved, params.shift_y * moved
    if "cutout" in policy:
        params.cut_x = integers(0, width)
        params.cut_y = integers(0, height)
        if probability is not None:  # no cutout: a square centred far outside the image
            cut = torch.rand(batch, device=device, generator=generator) < probability
            params.cut_x = torch.where(cut, params.cut_x, torch.full_like(params.cut_x, -2 * width))
    return params


def apply(x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Transform images x (B, C, H, W) in [-1, 1] with `params`; differentiable in x."""
    if params.brightness is not None:
        x = adjust_color(x, params.brightness, params.saturation, params.contrast)
    if params.shift_x is not None:
        x = translate(x, params.shift_x, params.shift_y)
    if params.cut_x is not None:
        x = cutout(x, params.cut_x, params.cut_y)
    return x


def augment(x: torch.Tensor, policy: tuple[str, ...], generator: torch.Generator | None = None,
            probability: float | torch.Tensor | None = None) -> torch.Tensor:
    """Draw fresh parameters for each image and apply them."""
    if not policy:
        return x
    B, _, H, W = x.shape
    return apply(x, draw(B, H, W, policy, x.device, generator, probability))


# --- the transforms ------------------------------------------------------------------------------

def adjust_color(x: torch.Tensor, brightness: torch.Tensor, saturation: torch.Tensor,
                 contrast: torch.Tensor) -> torch.Tensor:
    per_image = lambda v: v.to(x.dtype)[:, None, None, None]  # (B, 1, 1, 1)
    x = x + per_image(brightness)
    grey = x.mean(dim=1, keepdim=True)  # saturation leaves a grey image unchanged
    x = (x - grey) * per_image(saturation) + grey
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * per_image(contrast) + mean


def translate(x: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor) -> torch.Tensor:
    """Shift each image by whole pixels; what comes in from outside is zero. One gather, so
    every channel of an image moves alike."""
    B, C, H, W = x.shape
    padded = F.pad(x, (1, 1, 1, 1))  # a zero border that pixels from outside the image read
    rows = torch.arange(H, device=x.device)[None, :, None] - shift_y[:, None, None] + 1
    cols = torch.arange(W, device=x.device)[None, None, :] - shift_x[:, None, None] + 1
    rows = rows.clamp(0, H + 1)  # (B, H, 1); 0 and H + 1 are the zero border
    cols = cols.clamp(0, W + 1)  # (B, 1, W)
    index = (rows * (W + 2) + cols).reshape(B, 1, H * W).expand(B, C, H * W)
    return padded.reshape(B, C, (H + 2) * (W + 2)).gather(2, index).reshape(B, C, H, W)


def cutout(x: torch.Tensor, cut_x: torch.Tensor, cut_y: torch.Tensor) -> torch.Tensor:
    """Zero a square of CUTOUT_RATIO of the side centred at (cut_y, cut_x), in every channel."""
    B, _, H, W = x.shape
    size_y, size_x = int(H * CUTOUT_RATIO + 0.5), int(W * CUTOUT_RATIO + 0.5)
    top = (cut_y - size_y // 2)[:, None, None]
    left = (cut_x - size_x // 2)[:, None, None]
    rows = torch.arange(H, device=x.device)[None, :, None]
    cols = torch.arange(W, device=x.device)[None, None, :]
    inside = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)
    return x * (~inside).to(x.dtype)[:, None]  # (B, 1, H, W) mask
