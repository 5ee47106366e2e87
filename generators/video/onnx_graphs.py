"""The video generator as an ONNX graph (`studio export --format onnx`, studio/onnx_export.py).

One graph, "generator": the moving average of G that sampling draws with (G_ema, with the
BatchNorm statistics measured for its weights, as `render_clips` uses it). A clip is a content
latent held for the whole clip and motion noise anchors over time, rendered at frame times
(in training frames, fractional allowed): content (B, content_dim), motion (B, anchors,
motion_dim), times (B, frames) [+ labels (B,)] -> frames (B, frames, C, H, W) in [-1, 1].
`manifest` says how many anchors a clip of given times needs, how times follow from a frame
rate, and how frames become pixels, as `sample` does (sampling.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from studio.contract import OnnxGraph

from generators.image.onnx_graphs import IMAGE_TOLERANCE, TO_UINT8, sampling_generator
from generators.video.config import VideoSampleConfig
from generators.video.sampling import content_for_seed, frame_times, motion_for_seed


class Clips(nn.Module):
    """content (B, content_dim), motion (B, K, motion_dim), times (B, F) [+ labels (B,)] ->
    frames (B, F, C, H, W): the video G's frames, clip by clip."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, content: torch.Tensor, motion: torch.Tensor, times: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        # VideoGenerator.forward, with each clip's label repeated for its frames by expand
        # (the dynamo exporter translates repeat_interleave of a dynamic count wrongly).
        B, F = times.shape
        frame_labels = None if labels is None else labels[:, None].expand(B, F).reshape(-1)
        G = self.generator
        frames = G.render(G.frame_latents(content, motion, times), frame_labels)
        return frames.reshape(B, F, *frames.shape[1:])


class UnconditionalClips(Clips):
    def forward(self, content: torch.Tensor, motion: torch.Tensor,
                times: torch.Tensor) -> torch.Tensor:
        return super().forward(content, motion, times)


def anchors_rule(motion: str, every: int) -> str:
    """How many motion noise anchors a clip whose last frame time is `last` needs
    (ContinuousMotion.noise_steps, RecurrentMotion.noise_steps)."""
    if motion == "stylegan-v":
        return f"floor(last_time / {every}) + 2"
    return "floor(last_time) + 2"


def graphs(gen) -> list[OnnxGraph]:
    G = sampling_generator(gen)  # the image generator's rule: calibrated G_ema, eval mode
    cfg, device = gen.config, gen._device()
    # MoCoGAN's motion runs its GRU once per anchor (a Python loop): the graph is traced with
    # the anchors of a training clip's length and takes that many; times beyond hold the last.
    fixed_anchors = cfg.motion != "stylegan-v"
    anchors_for_training_clip = G.noise_steps(float(frame_times(cfg.frames).max()))

    def inputs(seeds: list[int], times: torch.Tensor) -> tuple:
        steps = anchors_for_training_clip if fixed_anchors else G.noise_steps(float(times.max()))
        content = torch.stack([content_for_seed(s, cfg.content_dim) for s in seeds])
        motion = torch.stack([motion_for_seed(s, steps, cfg.motion_dim) for s in seeds])
        clip_times = times.expand(len(seeds), -1)
        labels = gen._labels([None] * len(seeds), seeds)  # the classes in turn, as sample does
        tensors = (content.to(device), motion.to(device), clip_times.contiguous().to(device))
        return tensors if labels is None else (*tensors, labels)

    conditional = bool(gen.classes)
    names = ["content", "motion", "times"] + (["labels"] if conditional else [])
    axes = {"content": {0: "batch"}, "motion": {0: "batch"} if fixed_anchors else
            {0: "batch", 1: "anchors"}, "times": {0: "batch", 1: "frames"}, "labels": {0: "batch"}}
    training_clip = frame_times(cfg.frames)
    # The example has a batch and frames above 1 (the exporter must not fix them to it); the
    # checks render one clip twice as long, and clips at twice the frame rate.
    return [OnnxGraph(
        name="generator", module=(Clips(G) if conditional else UnconditionalClips(G)).eval(),
        inputs=inputs([0, 1], training_clip), input_names=names, output_names=["frames"],
        dynamic_axes={**{name: axes[name] for name in names},
                      "frames": {0: "batch", 1: "frames"}},
        checks=[inputs([7], frame_times(2 * cfg.frames)),
                inputs([3, 4, 5], frame_times(cfg.frames, speed=0.5))],
        tolerance=IMAGE_TOLERANCE,
        description="frames in [-1, 1] of clips from content latents, motion noise anchors "
                    "and frame times" + (" and class labels" if conditional else ""))]


def manifest(gen, folder: Path) -> dict:
    cfg = gen.config
    G = sampling_generator(gen)
    fixed = cfg.motion != "stylegan-v"
    return {"content_dim": cfg.content_dim, "motion_dim": cfg.motion_dim,
            "resolution": cfg.resolution, "channels": gen.channels, "frames": cfg.frames,
            "fps": gen.fps, "classes": list(gen.classes or []),
            "labels": ("class index, 0 .. len(classes) - 1; the studio picks seed % len(classes) "
                       "when none is asked") if gen.classes else None,
            "content": "standard normal, one vector of content_dim per clip",
            "motion": "standard normal, anchors x motion_dim per clip, drawn independently",
            "motion_anchors": (G.noise_steps(float(frame_times(cfg.frames).max())) if fixed
                               else anchors_rule(cfg.motion, cfg.motion_every)),
            "times": (f"frame k at k * data_fps / fps training frames (data_fps {gen.fps}); "
                      f"the training clips are frames 0 .. {cfg.frames - 1}"),
            "truncation": VideoSampleConfig().truncation,
            "output_range": [-1.0, 1.0], "to_uint8": TO_UINT8 + " per frame"}
