"""Small image datasets written to disk for the image generator's tests."""

from pathlib import Path

import numpy as np
from PIL import Image

from generators.image.data import draw_shapes, SHAPE_CLASSES

# A config that trains in about a second on a CPU: 32 px, narrow networks, few FID images.
TINY = {"resolution": 32, "g_width": 8, "d_width": 8, "latent_dim": 16, "batch_size": 8,
        "eval_images": 32, "feature_steps": 5}


def tiny_settings(extra: dict | None = None) -> list[str]:
    return [f"{k}={v}" for k, v in {**TINY, **(extra or {})}.items()]


def write_shapes_folder(folder: Path, per_class: int = 6, classes: tuple = ("circle", "square"),
                        size: int = 40) -> Path:
    """PNG files of the built-in shapes, one subfolder per class."""
    images, labels = draw_shapes(size, per_class=per_class)
    for i, (image, label) in enumerate(zip(images, labels)):
        name = SHAPE_CLASSES[int(label)]
        if name not in classes:
            continue
        (folder / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / name / f"{i:04d}.png")
    return folder


def write_plain_folder(folder: Path, n: int = 10, size: int = 36) -> Path:
    """Unlabelled RGB PNGs of random smooth colour fields."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
        Image.fromarray(base).resize((size, size), Image.Resampling.BILINEAR).save(folder / f"img{i:03d}.png")
    return folder
