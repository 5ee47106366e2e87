"""A DCGAN-class GAN for 32, 64 and 128 px images, grey or RGB, in plain torch.

Imports nothing from the app. The generator G and the discriminator D follow the DCGAN
layout (Radford et al. 2015, https://arxiv.org/abs/1511.06434): 4x4 transposed convolutions
that double the resolution from 4x4 up, and 4x4 stride-2 convolutions that halve it back.
What makes it train on a few hundred images, in the order the pieces appear below:

- spectral normalisation of every weight in D (Miyato et al. 2018,
  https://arxiv.org/abs/1802.05957) instead of D's BatchNorm: D stays 1-Lipschitz-ish, so its
  gradients neither vanish nor explode when it wins;
- class conditioning, when the data has classes: conditional BatchNorm in G (each class its
  own scale and shift, de Vries et al. 2017) and a projection discriminator (Miyato & Koyama
  2018, https://arxiv.org/abs/1802.05637);
- hinge or non-saturating losses; lazy R1 on real images (Mescheder et al. 2018; lazy as in
  StyleGAN2, https://arxiv.org/abs/1912.04958);
- an exponential moving average of G's weights for sampling (Karras et al. 2018), with
  BatchNorm statistics recomputed for the averaged weights before use ("standing statistics",
  BigGAN, https://arxiv.org/abs/1809.11096).

DiffAugment, applied to everything D sees, lives in augment.py.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

SUPPORTED_RESOLUTIONS = (32, 64, 128)


@dataclass
class GANShape:
    resolution: int = 32  # image side: 32, 64 or 128
    channels: int = 3  # 1 (grey) or 3 (RGB)
    latent_dim: int = 128  # size of the noise vector z
    g_width: int = 64  # channels of G's last hidden layer (DCGAN's ngf)
    d_width: int = 64  # channels of D's first layer (DCGAN's ndf)
    n_classes: int = 0  # 0: unconditional
    max_width_mult: int = 8  # widest layer = width * this (caps the 128 px model's size)

    def __post_init__(self):
        if self.resolution not in SUPPORTED_RESOLUTIONS:
            raise ValueError(f"resolution {self.resolution} is not one of {SUPPORTED_RESOLUTIONS}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {self.channels}")

    @property
    def doublings(self) -> int:
        """Stride-2 layers between 4x4 and the full resolution (3 for 32 px)."""
        return int(math.log2(self.resolution)) - 2

    def widths(self, base: int) -> list[int]:
        """Channels at 4x4, 8x8, ... up to half the resolution (DCGAN: 4*ngf, 2*ngf, ngf at 32 px)."""
        n = self.doublings
        return [base * min(2 ** (n - 1 - i), self.max_width_mult) for i in range(n)]


def init_dcgan(module: nn.Module) -> None:
    """DCGAN's initialisation: weights N(0, 0.02), BatchNorm scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# --- the generator -----------------------------------------------------------------------------

class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift are looked up per class (one row per class)."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.scale = nn.Embedding(n_classes, channels)
        self.shift = nn.Embedding(n_classes, channels)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scale = self.scale(labels)[:, :, None, None]  # (B, C, 1, 1)
        shift = self.shift(labels)[:, :, None, None]
        return self.norm(x) * scale + shift


class GeneratorBlock(nn.Module):
    """Transposed convolution, (conditional) BatchNorm, ReLU."""

    def __init__(self, c_in: int, c_out: int, n_classes: int, first: bool):
        super().__init__()
        # The first block maps z (as a 1x1 image) to 4x4; the others double the side.
        stride, padding = (1, 0) if first else (2, 1)
        self.conv = nn.ConvTranspose2d(c_in, c_out, 4, stride, padding, bias=False)
        self.norm = ConditionalBatchNorm2d(c_out, n_classes) if n_classes else nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        x = self.conv(x)
        x = self.norm(x, labels) if isinstance(self.norm, ConditionalBatchNorm2d) else self.norm(x)
        return F.relu(x)


class Generator(nn.Module):
    """z (B, latent_dim) [+ labels (B,)] -> images (B, channels, R, R) in [-1, 1]."""

    def __init__(self, shape: GANShape):
        super().__init__()
        self.shape = shape
        widths = shape.widths(shape.g_width)
        # With classes, z is joined by a learned embedding of the class (as in cGAN and BigGAN's
        # shared embedding): the first layer sees the class, not just the normalisations.
        self.class_embed = nn.Embedding(shape.n_classes, shape.latent_dim) if shape.n_classes else None
        ins = [shape.latent_dim * (2 if shape.n_classes else 1)] + widths[:-1]
        self.blocks = nn.ModuleList([GeneratorBlock(c_in, c_out, shape.n_classes, first=i == 0)
                                     for i, (c_in, c_out) in enumerate(zip(ins, widths))])
        self.to_image = nn.ConvTranspose2d(widths[-1], shape.channels, 4, 2, 1)
        init_dcgan(self)
        if self.class_embed is not None:  # small: at z's scale (std 1) each class collapsed
            nn.init.normal_(self.class_embed.weight, 0.0, 0.1)  # onto one image (measured, MNIST)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.class_embed is not None:
            z = torch.cat([z, self.class_embed(labels)], dim=1)
        x = z[:, :, None, None]  # (B, latent [+ latent], 1, 1)
        for block in self.blocks:
            x = block(x, labels)
        return torch.tanh(self.to_image(x))


# --- the discriminator -------------------------------------------------------------------------

class Discriminator(nn.Module):
    """images (B, channels, R, R) [+ labels (B,)] -> realness logits (B,).

    Every weight is spectrally normalised, so D needs no BatchNorm (whose batch statistics
    would also mix real and fake images in one batch)."""

    def __init__(self, shape: GANShape):
        super().__init__()
        self.shape = shape
        widths = list(reversed(shape.widths(shape.d_width)))  # ndf, 2*ndf, 4*ndf at 32 px
        ins = [shape.channels] + widths[:-1]
        self.convs = nn.ModuleList([nn.Conv2d(c_in, c_out, 4, 2, 1) for c_in, c_out in zip(ins, widths)])
        self.head = nn.Linear(widths[-1] * 4 * 4, 1)  # on the last 4x4 map (DCGAN's 4x4 conv)
        # Projection: logit += <embed(label), pooled features>, so D judges "real *and* of this
        # class". Pooled over the 4x4 positions as in the projection paper: one vector per class
        # instead of one per class and position learns far faster (measured on MNIST).
        self.embed = nn.Embedding(shape.n_classes, widths[-1]) if shape.n_classes else None
        init_dcgan(self)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
        for layer in [*self.convs, self.head] + ([self.embed] if self.embed is not None else []):
            spectral_norm(layer)  # after the init: its power iteration starts from these weights

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return x  # (B, widest, 4, 4)

    def logits(self, h: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Realness logits (B,) of features (B, widest, 4, 4): the head plus the projection."""
        out = self.head(h.flatten(1)).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(labels) * h.sum(dim=(2, 3))).sum(1)
        return out

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(self.features(x), labels)


# --- losses ------------------------------------------------------------------------------------

def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """hinge (Lim & Ye 2017; SAGAN, BigGAN) or the non-saturating logistic loss (Goodfellow 2014)."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    fake_logits = fake_logits.float()
    if kind == "hinge":
        return -fake_logits.mean()
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean squared gradient norm of D's output at real images (`real` must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


# --- the moving average of G ---------------------------------------------------------------------

def ema_decay_at(step: int, decay: float, rampup: float = 0.0) -> float:
    """The decay of the moving average at step `step` (0-based), ramped up early in training so
    that the average is not dominated by the random initial weights.

    rampup = 0: min(decay, (1+t)/(10+t)) (as lightweight-gan and BigGAN-PyTorch do).
    rampup > 0: StyleGAN2's ramp, whose half-life is at most `rampup` x the images seen. With
    B images a step, t+1 steps have shown (t+1) B images; a half-life of h images is a decay of
    0.5 ** (B / h) a step, so the cap is 0.5 ** (1 / (rampup (t+1))) and B cancels out. (The
    first ramp is close to this one with rampup = ln 2 / 9 = 0.077: both take 1 - decay of
    about c / t.)"""
    if rampup > 0:
        return min(decay, 0.5 ** (1 / (rampup * (step + 1))))
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers are copied."""
    ema_params = [p for p in ema.parameters()]
    params = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


@torch.no_grad()
def recompute_batchnorm_stats(generator: nn.Module, latents: torch.Tensor,
                              labels: torch.Tensor | None, batch: int = 64, render=None) -> None:
    """Set every BatchNorm's running statistics to the exact average over `latents` for the
    generator's current weights ("standing statistics"). The averaged weights of an EMA never
    produced the statistics a training-time BatchNorm recorded, so they are measured anew.
    `render(latents, labels)` draws with the generator (default: calling it)."""
    norms = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    was_training = generator.training
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    generator.train()
    try:
        for i in range(0, len(latents), batch):
            (render or generator)(latents[i:i + batch], None if labels is None else labels[i:i + batch])
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        generator.train(was_training)


# --- the pair, as one module ---------------------------------------------------------------------

# Adaptive augmentation (StyleGAN2-ADA, Karras et al. 2020, https://arxiv.org/abs/2006.06676):
# every ADA_INTERVAL steps the probability p of each augmentation moves by
# sign(r - target) * images seen / ADA_IMAGES, where r = E[sign(D(real))] says how sure D is of
# the real images (it rises as D memorises them). ADA lets p cross 0..1 in 500k images; CPU
# runs here are a few hundred thousand images long, so p moves five times as fast.
ADA_INTERVAL = 4
ADA_IMAGES = 100_000


class GAN(nn.Module):
    """G, D and the moving average of G in one module, so that one state dict (and one
    checkpoint file) holds all three, and the augmentation probability. G_ema never trains and
    stays in eval mode."""

    def __init__(self, shape: GANShape, augment_p: float = 1.0):
        super().__init__()
        self.shape = shape
        self.G = Generator(shape)
        self.D = Discriminator(shape)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval()
        # How many EMA updates G_ema has seen: a cheap "version" of its weights.
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("augment_p", torch.tensor(float(augment_p)))
        self.register_buffer("real_sign_sum", torch.zeros(()))  # since the last adjustment
        self.register_buffer("real_sign_count", torch.zeros(()))

    def train(self, mode: bool = True) -> "GAN":
        super().train(mode)
        self.G_ema.eval()
        return self

    def update_ema(self, decay: float) -> None:
        update_ema(self.G_ema, self.G, decay)
        self.ema_updates += 1

    @torch.no_grad()
    def adapt_augmentation(self, real_logits: torch.Tensor, target: float, step: int) -> None:
        """Record D's outputs on (augmented) real images; every ADA_INTERVAL steps move p."""
        self.real_sign_sum += torch.sign(real_logits.detach().float()).sum()
        self.real_sign_count += real_logits.numel()
        if (step + 1) % ADA_INTERVAL == 0:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                # every rank adjusts by the same evidence, so p stays the same on all of them
                torch.distributed.all_reduce(self.real_sign_sum)
                torch.distributed.all_reduce(self.real_sign_count)
            r = self.real_sign_sum / self.real_sign_count
            self.augment_p.add_(torch.sign(r - target) * self.real_sign_count / ADA_IMAGES).clamp_(0, 1)
            self.real_sign_sum.zero_()
            self.real_sign_count.zero_()
