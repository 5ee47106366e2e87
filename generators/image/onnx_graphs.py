"""The image generator as an ONNX graph (`studio export --format onnx`, studio/onnx_export.py).

One graph, "generator": the moving average of G that sampling draws with (G_ema, with the
BatchNorm statistics measured for its weights, as `render` uses it), latents [+ class labels]
-> images in [-1, 1]. `manifest` says how to draw the latents, how the classes are numbered
and how to turn the images into pixels, as `sample` does (sampling.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from studio.contract import OnnxGraph

from generators.image.config import ImageSampleConfig
from generators.image.sampling import latents_for_seeds

# Images are tanh outputs; float32 rounding of the convolutions differs between PyTorch's and
# onnxruntime's kernels by far less than one step of 8-bit pixels (2 / 255).
IMAGE_TOLERANCE = 1e-3

TO_UINT8 = ("pixels = round((clip(images, -1, 1) + 1) * 127.5) as uint8, then (batch, C, H, W) "
            "-> (batch, H, W, C)")


class ConditionalImages(nn.Module):
    """latents (B, latent_dim) float32, labels (B,) int64 -> images (B, C, H, W)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, latents: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.generator(latents, labels)


class Images(nn.Module):
    """latents (B, latent_dim) float32 -> images (B, C, H, W)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.generator(latents)


def sampling_generator(gen) -> nn.Module:
    """G_ema as `render` uses it: its BatchNorm statistics measured for its weights, in eval
    mode."""
    from generators.image import _unwrap
    gen._calibrate()
    return _unwrap(gen.model).G_ema.eval()


def graphs(gen) -> list[OnnxGraph]:
    G = sampling_generator(gen)
    device = gen._device()
    dim = gen.config.latent_dim

    def inputs(seeds: list[int]) -> tuple:
        latents = latents_for_seeds(seeds, dim).to(device)
        labels = gen._labels([None] * len(seeds), seeds)  # the classes in turn, as sample does
        return (latents,) if labels is None else (latents, labels)

    conditional = bool(gen.classes)
    names = ["latents", "labels"] if conditional else ["latents"]
    axes = {name: {0: "batch"} for name in names}
    # The example has a batch above 1 (the exporter must not fix the batch to it).
    return [OnnxGraph(
        name="generator", module=(ConditionalImages(G) if conditional else Images(G)).eval(),
        inputs=inputs([0, 1]), input_names=names, output_names=["images"],
        dynamic_axes={**axes, "images": {0: "batch"}},
        checks=[inputs([5]), inputs([10, 11, 12, 13])], tolerance=IMAGE_TOLERANCE,
        description="images in [-1, 1] from latents drawn from a standard normal"
                    + (" and class labels" if conditional else ""))]


def manifest(gen, folder: Path) -> dict:
    cfg = gen.config
    defaults = ImageSampleConfig()
    return {"latent_dim": cfg.latent_dim, "resolution": cfg.resolution, "channels": gen.channels,
            "classes": list(gen.classes or []),
            "labels": ("class index, 0 .. len(classes) - 1; the studio picks seed % len(classes) "
                       "when none is asked") if gen.classes else None,
            "latents": ("standard normal, one vector of latent_dim per image; with truncation "
                        "t > 0, values beyond +-t are drawn again (less variety, more typical "
                        "images)"),
            "truncation": defaults.truncation,
            "output_range": [-1.0, 1.0], "to_uint8": TO_UINT8}
