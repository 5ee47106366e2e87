"""A video GAN for short clips, in plain torch, built on the image generator's networks.

Imports nothing from the app. A clip is a content latent held for the whole clip plus a motion
signal over continuous time; their concatenation is one latent per frame, which the image
generator's DCGAN-class network (generators/image/model.py, imported, not copied) renders. In
the order the pieces appear below:

- motion over continuous time, as in StyleGAN-V (Skorokhodov et al. 2022,
  https://arxiv.org/abs/2112.14683): noise anchors every few frames, linearly interpolated at
  time t, plus sin/cos features of t, through a small MLP; so a clip can be rendered at any
  times, any number of frames and any frame rate. The sin/cos features start at a phase of each
  clip's own (StyleGAN-V's are acyclic too): features of absolute time let G ignore its latents.
  MoCoGAN's recurrent motion (Tulyakov et al. 2018, https://arxiv.org/abs/1707.04993: a GRU fed
  fresh noise each frame) is the alternative;
- content styles: as StyleGAN-V's content code styles every layer while motion enters at the
  input, the content latent also scales and shifts every block's channels, the same on every
  frame of a clip, so what a clip shows is tied to its content rather than to its motion;
- sparse training: each step renders only a few frames per clip at sorted random times
  (StyleGAN-V trains on 3 frames a clip, DIGAN on 2), so a step costs a few images per clip;
- two discriminators: the image D (spectral norm, hinge, projection) on single frames, and a
  temporal D on the sampled frames of a clip together with their time gaps: DIGAN's (Yu et al.
  2022, https://arxiv.org/abs/2202.10571) frames stacked on channels plus constant planes
  holding the gaps ("pairs"), StyleGAN-V's shared per-frame trunk with the frames' features
  fused late ("trunk"), or a small 3D-convolution D on consecutive frames ("3d");
- an exponential moving average of G, from the image generator.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from generators.image.model import GAN, Discriminator, GANShape, init_dcgan
from generators.image.model import Generator as FrameGenerator
from generators.video.choices import MOTIONS, TEMPORAL_DS

TIME_FREQUENCIES = 4  # sin/cos pairs of t, with periods of motion_every * 1, 2, 4, 8 frames


@dataclass
class VideoShape:
    resolution: int = 32  # frame side: 32, 64 or 128
    channels: int = 3  # 1 (grey) or 3 (RGB)
    content_dim: int = 96  # the latent held for the whole clip
    motion_dim: int = 32  # the motion code at each time (and the motion noise's size)
    g_width: int = 64  # the frame generator's width (DCGAN's ngf)
    d_width: int = 64  # the discriminators' width (DCGAN's ndf)
    n_classes: int = 0  # 0: unconditional
    motion: str = "stylegan-v"  # or "mocogan"
    motion_every: int = 4  # frames between motion noise anchors (stylegan-v)
    temporal_d: str = "pairs"  # or "3d"
    train_frames: int = 3  # frames per clip that a training step renders and judges
    content_styles: bool = True  # the content latent also scales and shifts every layer
    time_phase: str = "per-clip"  # sin/cos time features' phase: "per-clip" (from the motion noise) or "absolute"
    frames: int = 16  # frames of a training clip: time gaps are measured against it
    class_head: bool = False  # an auxiliary classifier on the frame D's features (AC-GAN), with classes

    def __post_init__(self):
        if self.motion not in MOTIONS:
            raise ValueError(f"motion must be one of {MOTIONS}, not {self.motion!r}")
        if self.temporal_d not in TEMPORAL_DS:
            raise ValueError(f"temporal_d must be one of {TEMPORAL_DS}, not {self.temporal_d!r}")
        if not 2 <= self.train_frames <= self.frames:
            raise ValueError(f"train_frames must be 2..frames ({self.frames}), not {self.train_frames}")

    def frame_shape(self) -> GANShape:
        """The image networks' shape: each frame's latent is content and motion side by side."""
        return GANShape(resolution=self.resolution, channels=self.channels,
                        latent_dim=self.content_dim + self.motion_dim, g_width=self.g_width,
                        d_width=self.d_width, n_classes=self.n_classes)


# --- motion over time --------------------------------------------------------------------------

def interpolate_steps(steps: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of a sequence `steps` (B, K, D) at fractional positions (B, F)
    counted in steps: (B, F, D). Positions beyond the last step hold it."""
    K = steps.shape[1]
    position = position.clamp(0, K - 1)
    left = position.floor().long().clamp(max=K - 2)
    frac = (position - left).unsqueeze(-1).to(steps.dtype)
    index = left.unsqueeze(-1).expand(-1, -1, steps.shape[2])
    a, b = steps.gather(1, index), steps.gather(1, index + 1)
    return a + (b - a) * frac


class ContinuousMotion(nn.Module):
    """StyleGAN-V's motion: noise anchors `every` frames apart, interpolated linearly at time
    t (in frames), with sin/cos features of t, through a small MLP -> (B, F, motion_dim)."""

    def __init__(self, dim: int, every: int, phase: str = "per-clip"):
        super().__init__()
        self.every, self.phase = every, phase
        periods = every * 2.0 ** torch.arange(TIME_FREQUENCIES)
        self.register_buffer("frequencies", 2 * math.pi / periods, persistent=False)
        self.net = nn.Sequential(nn.Linear(dim + 2 * TIME_FREQUENCIES, dim), nn.LeakyReLU(0.2),
                                 nn.Linear(dim, dim))

    def noise_steps(self, last_time: float) -> int:
        """Anchors needed to cover times 0..last_time (one past it, to interpolate towards)."""
        return int(last_time // self.every) + 2

    def forward(self, noise: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        anchors = interpolate_steps(noise, times / self.every)
        phase = times.unsqueeze(-1).to(noise.dtype) * self.frequencies
        if self.phase == "per-clip":
            # Each clip's time features start at a phase of its own (drawn from its first noise
            # anchor, pi per unit), as StyleGAN-V's acyclic ones do. Features of absolute time
            # let G draw the frame at time t whatever the latents (measured: every content seed
            # and class rendered one stroke morphing with t), since times alone already make a
            # batch of frames look varied to the frame D.
            which = torch.arange(len(self.frequencies), device=noise.device) % noise.shape[2]
            phase = phase + math.pi * noise[:, :1, which]
        return self.net(torch.cat([anchors, phase.sin(), phase.cos()], dim=-1))


class RecurrentMotion(nn.Module):
    """MoCoGAN's motion: a GRU fed fresh noise every frame; its states, interpolated at time t
    (in frames), through a linear layer -> (B, F, motion_dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.cell = nn.GRUCell(dim, dim)
        self.out = nn.Linear(dim, dim)

    def noise_steps(self, last_time: float) -> int:
        return int(last_time) + 2

    def forward(self, noise: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        state = noise.new_zeros(noise.shape[0], noise.shape[2])
        states = []
        for k in range(noise.shape[1]):
            state = self.cell(noise[:, k], state)
            states.append(state)
        return self.out(interpolate_steps(torch.stack(states, dim=1), times))


class VideoGenerator(nn.Module):
    """content (B, content_dim), motion noise (B, K, motion_dim), times (B, F) in frames
    [+ labels (B,)] -> frames (B*F, channels, R, R) in [-1, 1], clip by clip."""

    def __init__(self, shape: VideoShape):
        super().__init__()
        self.motion = (ContinuousMotion(shape.motion_dim, shape.motion_every, shape.time_phase)
                       if shape.motion == "stylegan-v" else RecurrentMotion(shape.motion_dim))
        self.renderer = FrameGenerator(shape.frame_shape())
        self.content_dim = shape.content_dim
        # Content styles, as StyleGAN-V's content code styles every layer while motion enters at
        # the input: a scale and shift per channel of every block, from the content alone, the
        # same on every frame of a clip. Zero at the start: the plain renderer until learned.
        self.styles = nn.ModuleList([
            nn.Linear(shape.content_dim, 2 * block.conv.out_channels) for block in self.renderer.blocks
        ]) if shape.content_styles else None
        for style in self.styles or []:
            nn.init.zeros_(style.weight)
            nn.init.zeros_(style.bias)

    def noise_steps(self, last_time: float) -> int:
        return self.motion.noise_steps(last_time)

    def frame_latents(self, content: torch.Tensor, noise: torch.Tensor,
                      times: torch.Tensor) -> torch.Tensor:
        """One latent per frame (B*F, content_dim + motion_dim): the clip's content, the
        frame's motion code."""
        motion = self.motion(noise, times)
        content = content.unsqueeze(1).expand(-1, times.shape[1], -1)
        return torch.cat([content, motion], dim=-1).flatten(0, 1)

    def render(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Frames (N, channels, R, R) from frame latents (N, content_dim + motion_dim) [+ labels
        (N,)]: the image generator's network, its blocks styled by the latents' content part."""
        if self.styles is None:
            return self.renderer(latents, labels)
        r, content = self.renderer, latents[:, :self.content_dim]
        x = latents if r.class_embed is None else torch.cat([latents, r.class_embed(labels)], dim=1)
        x = x[:, :, None, None]
        for block, style in zip(r.blocks, self.styles):
            x = block.conv(x)
            x = block.norm(x, labels) if labels is not None else block.norm(x)
            scale, shift = style(content)[:, :, None, None].chunk(2, dim=1)
            x = F.relu(x * (1 + scale) + shift)
        return torch.tanh(r.to_image(x))

    def forward(self, content: torch.Tensor, noise: torch.Tensor, times: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        frame_labels = None if labels is None else labels.repeat_interleave(times.shape[1])
        return self.render(self.frame_latents(content, noise, times), frame_labels)


# --- the temporal discriminators ---------------------------------------------------------------

class PairsDiscriminator(Discriminator):
    """DIGAN's temporal D: a clip's sampled frames stacked on channels, plus one constant plane
    per time gap (gap / clip length), judged as one image by the image D's layers (spectral
    norm, projection). frames (B, F, C, R, R), times (B, F) [+ labels] -> logits (B,)."""

    def __init__(self, shape: VideoShape):
        super().__init__(shape.frame_shape())
        self.span = max(1, shape.frames - 1)
        # The image D's first layer reads one frame; this one reads F frames and F-1 gaps.
        first = self.convs[0]
        stacked = nn.Conv2d(shape.channels * shape.train_frames + shape.train_frames - 1,
                            first.out_channels, 4, 2, 1)
        init_dcgan(stacked)
        self.convs[0] = spectral_norm(stacked)

    def forward(self, frames: torch.Tensor, times: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        B, Fr, C, H, W = frames.shape
        gaps = (times[:, 1:] - times[:, :-1]).to(frames.dtype) / self.span
        planes = gaps[:, :, None, None].expand(B, Fr - 1, H, W)
        return super().forward(torch.cat([frames.reshape(B, Fr * C, H, W), planes], dim=1), labels)


class TrunkDiscriminator(Discriminator):
    """StyleGAN-V's temporal D: every sampled frame through one shared trunk (the image D's
    layers), then the frames' 4x4 feature maps side by side on channels with one constant
    plane per time gap, fused by a 3x3 convolution and judged by the image D's head and
    projection. Fusing late compares what each frame shows wherever it sits in the frame,
    which stacking raw frames (pairs) leaves to the first layer's 4x4 window.
    frames (B, F, C, R, R), times (B, F) [+ labels] -> logits (B,)."""

    def __init__(self, shape: VideoShape):
        super().__init__(shape.frame_shape())
        self.span = max(1, shape.frames - 1)
        widest = self.convs[-1].out_channels
        fuse = nn.Conv2d(widest * shape.train_frames + shape.train_frames - 1, widest, 3, 1, 1)
        init_dcgan(fuse)
        self.fuse = spectral_norm(fuse)

    def forward(self, frames: torch.Tensor, times: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        B, Fr = frames.shape[:2]
        h = self.features(frames.flatten(0, 1))  # (B*F, widest, 4, 4)
        h = h.view(B, Fr * h.shape[1], *h.shape[2:])
        gaps = (times[:, 1:] - times[:, :-1]).to(h.dtype) / self.span
        planes = gaps[:, :, None, None].expand(B, Fr - 1, *h.shape[2:])
        return self.logits(F.leaky_relu(self.fuse(torch.cat([h, planes], dim=1)), 0.2), labels)


class Conv3dDiscriminator(nn.Module):
    """A small 3D-convolution D on consecutive frames: 3x4x4 kernels that halve the frame side
    and keep the time axis, then a mean over time and the image D's head and projection.
    frames (B, F, C, R, R), times (unused: the frames are one frame apart) -> logits (B,)."""

    def __init__(self, shape: VideoShape):
        super().__init__()
        frame = shape.frame_shape()
        widths = list(reversed(frame.widths(shape.d_width)))
        ins = [shape.channels] + widths[:-1]
        self.convs = nn.ModuleList([nn.Conv3d(c_in, c_out, (3, 4, 4), (1, 2, 2), (1, 1, 1))
                                    for c_in, c_out in zip(ins, widths)])
        self.head = nn.Linear(widths[-1] * 4 * 4, 1)
        self.embed = nn.Embedding(shape.n_classes, widths[-1]) if shape.n_classes else None
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        for layer in [*self.convs, self.head] + ([self.embed] if self.embed is not None else []):
            spectral_norm(layer)

    def forward(self, frames: torch.Tensor, times: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        x = frames.transpose(1, 2)  # (B, C, F, R, R)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        h = x.mean(dim=2)  # (B, widest, 4, 4)
        out = self.head(h.flatten(1)).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(labels) * h.sum(dim=(2, 3))).sum(1)
        return out


# --- the whole model, as one module ------------------------------------------------------------

class VideoGAN(GAN):
    """The video G, the frame D (the image D itself), the temporal D and the moving average
    of G in one module, so one state dict holds them all. The image GAN's EMA update,
    training-mode handling and augmentation buffers are inherited as they are."""

    def __init__(self, shape: VideoShape, augment_p: float = 1.0):
        super().__init__(shape.frame_shape(), augment_p)
        self.video_shape = shape
        # The image GAN built an image G (and its average) here; a clip needs the video G
        # around it, so both are replaced. D stays: it judges single frames.
        self.G = VideoGenerator(shape)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval()
        self.D_time = {"pairs": PairsDiscriminator, "trunk": TrunkDiscriminator,
                       "3d": Conv3dDiscriminator}[shape.temporal_d](shape)
        # AC-GAN's auxiliary classifier: class logits from the frame D's last 4x4 map. It is
        # trained on real frames with D and read on fakes by G, so a frame must show its class
        # to a classifier, not only pass the projection's "real and of this class" score.
        self.classifier = None
        if shape.class_head and shape.n_classes:
            self.classifier = nn.Linear(self.D.head.in_features, shape.n_classes)
            nn.init.normal_(self.classifier.weight, 0.0, 0.02)
            nn.init.zeros_(self.classifier.bias)

    def discriminators(self) -> nn.ModuleList:
        """Everything the discriminators' optimizer trains (and G's step freezes)."""
        return nn.ModuleList([self.D, self.D_time, *([self.classifier] if self.classifier is not None else [])])

    def judge_frames(self, frames: torch.Tensor, labels: torch.Tensor | None):
        """Frames (N, C, R, R) [+ labels (N,)] -> (the frame D's logits (N,), class logits
        (N, classes) or None without the classifier), from one pass through D's layers."""
        h = self.D.features(frames)
        classes = self.classifier(h.flatten(1)) if self.classifier is not None else None
        return self.D.logits(h, labels), classes


def static_and_shuffled(frames: torch.Tensor, kinds: tuple[str, ...]) -> list[torch.Tensor]:
    """Extra fakes for the temporal D made from real clips (B, F, C, H, W), so that it learns to
    punish frozen and flickering clips: "static" repeats each clip's first frame, "shuffled"
    plays its frames in another order (rotated by one: never the true order)."""
    extra = []
    if "static" in kinds:
        extra.append(frames[:, :1].expand_as(frames))
    if "shuffled" in kinds:
        extra.append(frames.roll(1, dims=1))
    return extra
