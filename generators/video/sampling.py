"""Sampling strategies over a clip's latents, kept apart from the network: seeds -> content and
motion noise, the times a clip is rendered at, and frames -> uint8 clips and grids of clips.
Plain torch, no app imports; the image generator's seeds, truncation, interpolation and grids
are reused as they are.

A clip's content comes from one seed and its motion from another (by default the same number):
fixing one and varying the other gives the same content with new motion, or new content with
the same motion. Motion noise is drawn step by step, each step from its own seed, so a longer
clip of a seed begins with exactly the motion of the shorter one.
"""

from __future__ import annotations

import numpy as np
import torch

from generators.image.sampling import grid, latent_for_seed

MOTION_STREAM = 0x6D6F74696F6E  # keeps motion seeds apart from content seeds ("motion")


def content_for_seed(seed: int, dim: int, truncation: float = 0.0) -> torch.Tensor:
    """A clip's content latent (dim,): the image generator's latent of that seed."""
    return latent_for_seed(seed, dim, truncation)


def motion_step_seed(seed: int, step: int) -> int:
    """The seed of one motion noise step, mixed so that no step of any motion seed draws the
    same numbers as a content seed or as another step."""
    state = np.random.SeedSequence([MOTION_STREAM, int(seed) & (2**63 - 1), int(step)])
    return int(state.generate_state(1, np.uint64)[0] >> np.uint64(1))


def motion_for_seed(seed: int, steps: int, dim: int, truncation: float = 0.0) -> torch.Tensor:
    """The motion noise (steps, dim) of one seed; the first k steps never depend on `steps`."""
    return torch.stack([latent_for_seed(motion_step_seed(seed, k), dim, truncation)
                        for k in range(steps)])


def frame_times(frames: int, speed: float = 1.0) -> torch.Tensor:
    """The times (in training frames) of `frames` frames played at `speed` training frames per
    frame: speed 0.5 renders twice the frame rate over the same span of time."""
    return torch.arange(frames, dtype=torch.float32) * speed


def clip_grid(clips: torch.Tensor, columns: int | None = None, aspect: float | None = None,
              columns_multiple_of: int = 1) -> np.ndarray:
    """Clips (N, T, C, H, W) in [-1, 1] -> one clip (T, rows*H, columns*W, C) uint8 whose every
    frame is the grid of the clips' frames at that time."""
    return np.stack([grid(clips[:, t], columns, aspect=aspect, columns_multiple_of=columns_multiple_of)
                     for t in range(clips.shape[1])])
