"""FID and KID with a pluggable feature extractor. Plain torch and numpy, no app imports.

FID (Heusel et al. 2017, https://arxiv.org/abs/1706.08500) is the Fréchet distance between
Gaussians fitted to the features of real and generated images; KID (Bińkowski et al. 2018,
https://arxiv.org/abs/1801.01401) the unbiased squared MMD under a cubic polynomial kernel,
averaged over subsets -- unbiased, so it is fairer than FID at the small sample counts small
datasets allow.

Beside them, two plain pixel statistics that make blur show in a number, which features
trained for classes may not: the share of midtone pixels and the RMS gradient magnitude
(`sharpness_statistics`), for the samples and the real images alike.

Both distances are only as meaningful as the features. Three extractors, each with a name that goes
into every result, so numbers from different extractors are never compared:

- `inception-v3:<sha>`: torchvision's Inception-v3 pool features (2048-d), only from a weights
  file the user supplies (never downloaded). Note that these weights are not the TF-Inception
  ones the published FIDs used, so even these numbers are comparable only among themselves.
- `own-classifier:<key>`: a small CNN trained on the dataset's own labels (where there are
  any); its penultimate layer (128-d) is the feature. The classic choice for MNIST-like data.
- `own-autoencoder:<key>`: otherwise, a small convolutional autoencoder trained on the
  dataset; its 128-d code is the feature.

The own extractors are trained deterministically from a fixed seed and cached (safetensors +
JSON) by the dataset's content hash, so every evaluation of every run on that data uses the
same network. Each cache file is written atomically and the JSON records its weights' SHA-256,
so a damaged or half-written entry is trained again, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

from generators.image.augment import translate

FEATURE_DIM = 128
EXTRACTOR_VERSION = 1  # bump when an extractor's recipe changes: old cache entries are not reused


# --- the distances ---------------------------------------------------------------------------------

def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) of features (N, d), in float64."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    Tr (S1 S2)^(1/2) equals Tr (S1^(1/2) S2 S1^(1/2))^(1/2): the matrix inside is symmetric
    positive semi-definite, so two symmetric eigendecompositions compute it exactly and stably,
    with no complex round-off to discard (the general sqrtm of S1 S2 needs that)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    diff = mu1 - mu2
    w, v = np.linalg.eigh(sigma1)
    sqrt1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = sqrt1 @ sigma2 @ sqrt1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation over `subsets` random subsets of the unbiased MMD^2 with
    k(x, y) = (x.y / d + 1)^3 (the estimator of the KID paper and of clean-fid)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, len(real), len(fake))
    d = real.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off_diagonal = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(off_diagonal - 2 * kxy.sum() / (m * m))
    return float(np.mean(values)), float(np.std(values))


# --- sharpness: what FID features may not show ---------------------------------------------------

MIDTONES = (0.1, 0.9)  # of the pixel range: neither background nor ink


def unit_pixels(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """float32 (N, H, W, C) in [0, 1] from uint8 (N, H, W, C) images or float (N, C, H, W)
    in [-1, 1] (what the generator renders)."""
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        return ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    return np.asarray(images, dtype=np.float32) / 255.0


def sharpness_statistics(images: np.ndarray | torch.Tensor, batch: int = 256) -> dict[str, float]:
    """Two numbers that make blur visible, over uint8 (N, H, W, C) or float (N, C, H, W)
    images, per channel, in batches (so 100,000 images at 128 px never sit in memory as
    floats at once):

    - "midtone": the share of pixel values strictly inside MIDTONES. Hard-edged images (ink on
      paper, digits) have few; blurred ones many -- every soft edge is a band of midtones.
      Per channel rather than on luma, so that a saturated colour (pure red: luma 0.3) is not
      counted as a midtone.
    - "sharpness": the root-mean-square gradient magnitude (finite differences between
      neighbouring pixels, in [0, 1] units per pixel); higher = sharper. Squared rather than
      the plain mean magnitude: across a monotone edge the summed magnitude is the edge's
      height however wide the blur spreads it (a step of 1 in one pixel, or two steps of 0.5),
      while the summed squares halve (1 against 0.25 + 0.25), so blur lowers this one."""
    low, high = MIDTONES
    midtones = values = squares = differences = 0
    for i in range(0, len(images), batch):
        x = unit_pixels(images[i:i + batch])
        midtones += int(np.count_nonzero((x > low) & (x < high)))
        values += x.size
        dy = x[:, 1:, :-1] - x[:, :-1, :-1]
        dx = x[:, :-1, 1:] - x[:, :-1, :-1]
        squares += float((dx * dx + dy * dy).sum(dtype=np.float64))
        differences += dx.size
    return {"midtone": midtones / values if values else float("nan"),
            "sharpness": math.sqrt(squares / differences) if differences else float("nan")}


# --- the project's own feature networks ---------------------------------------------------------

def to_input(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1] on `device`; a float tensor (already
    in [-1, 1], N C H W) passes through."""
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        return images.to(device).float()
    images = torch.from_numpy(np.array(images, dtype=np.uint8))  # a copy: memmaps are read-only
    return images.to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class ConvEncoder(nn.Module):
    """3x3 convolutions halving the side down to 4x4: (N, C, R, R) -> (N, width_max, 4, 4)."""

    def __init__(self, channels: int, resolution: int, width: int = 16, width_max: int = 128):
        super().__init__()
        layers = [nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        c = width
        for _ in range(int(math.log2(resolution)) - 2):
            c_out = min(c * 2, width_max)
            layers += [nn.Conv2d(c, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            c = c_out
        self.net = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Classifier(nn.Module):
    """The labelled case: features = the pooled last convolution (FEATURE_DIM), then a linear
    head over the classes."""

    kind = "classifier"

    def __init__(self, channels: int, resolution: int, n_classes: int):
        super().__init__()
        self.encoder = ConvEncoder(channels, resolution, width_max=FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).mean(dim=(2, 3))  # (N, FEATURE_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Autoencoder(nn.Module):
    """The unlabelled case: a FEATURE_DIM code between a convolutional encoder and decoder."""

    kind = "autoencoder"

    def __init__(self, channels: int, resolution: int):
        super().__init__()
        self.encoder = ConvEncoder(channels, resolution)
        c = self.encoder.out_channels
        self.to_code = nn.Linear(c * 16, FEATURE_DIM)
        self.from_code = nn.Linear(FEATURE_DIM, c * 16)
        ups = []
        for _ in range(int(math.log2(resolution)) - 2):
            ups += [nn.ConvTranspose2d(c, max(c // 2, 16), 4, 2, 1), nn.ReLU()]
            c = max(c // 2, 16)
        self.decoder = nn.Sequential(*ups, nn.Conv2d(c, channels, 3, 1, 1), nn.Tanh())
        self.hidden = self.encoder.out_channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_code(self.encoder(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = self.from_code(self.features(x)).view(len(x), self.hidden, 4, 4)
        return self.decoder(F.relu(code))


def train_extractor(images: np.ndarray, labels: np.ndarray | None, n_classes: int, steps: int,
                    device: torch.device, batch: int = 64, seed: int = 0) -> tuple[nn.Module, dict]:
    """Train a classifier (labels given) or an autoencoder on uint8 images (N, R, R, C), from
    `seed`, leaving the global RNG as it was. 10% of the images are held out to report how
    well it learned (accuracy, or reconstruction error)."""
    n, resolution, channels = len(images), images.shape[1], images.shape[3]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = (Classifier(channels, resolution, n_classes) if labels is not None
                 else Autoencoder(channels, resolution)).to(device)
        order = np.random.default_rng(seed).permutation(n)
        n_val = max(1, n // 10) if n >= 20 else 0
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        rng = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        with torch.enable_grad():
            for step in range(steps):
                pick = train_idx[torch.randint(len(train_idx), (batch,), generator=rng).numpy()]
                x = to_input(images[np.sort(pick)], device)
                # Shifts of up to 2 px: features should not hinge on exact pixel positions.
                shifts = torch.randint(-2, 3, (2, len(x)), generator=rng).to(device)
                x = translate(x, shifts[0], shifts[1])
                if labels is not None:
                    loss = F.cross_entropy(model(x), torch.as_tensor(labels[np.sort(pick)]).to(device))
                else:
                    loss = F.mse_loss(model(x), x)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        model.eval()
        info = {"kind": model.kind, "steps": steps, "trained_on": int(len(train_idx)),
                "held_out": int(n_val), "final_train_loss": float(loss.detach())}
        if n_val:
            with torch.no_grad():
                x = to_input(images[val_idx], device)
                if labels is not None:
                    predicted = torch.cat([model(x[i:i + 256]).argmax(1) for i in range(0, len(x), 256)])
                    info["held_out_accuracy"] = float((predicted.cpu().numpy() == labels[val_idx]).mean())
                else:
                    err = sum(float(F.mse_loss(model(x[i:i + 256]), x[i:i + 256], reduction="sum"))
                              for i in range(0, len(x), 256))
                    info["held_out_mse"] = err / x.numel()
    return model, info


# --- Inception-v3 from a local weights file -------------------------------------------------------

class InceptionFeatures(nn.Module):
    """torchvision's Inception-v3 (2048-d pool features) with weights read from a local file:
    safetensors, or a torch.save file read with `weights_only=True` (tensors only: the
    restricted loader runs no code). Nothing is ever downloaded."""

    kind = "inception-v3"

    def __init__(self, weights_file: str):
        super().__init__()
        from torchvision.models import inception_v3
        path = Path(weights_file).expanduser()
        if not path.is_file():
            raise ValueError(f"Inception-v3 weights file {path} does not exist")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            try:
                with warnings.catch_warnings():  # torch warns about pickle protocols; we explain
                    warnings.simplefilter("ignore")
                    state = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as exc:  # the restricted unpickler refuses anything but tensors
                first = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
                raise ValueError(f"{path} is not a weights file torch can read safely: its "
                                 f"tensors-only loader refused it ({first})") from None
        # transform_input: torchvision's ported weights expect its own re-scaling of the
        # ImageNet-normalised input.
        self.net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
        try:
            self.net.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"{path} does not hold torchvision Inception-v3 weights ({first})") from None
        self.net.fc = nn.Identity()
        self.net.eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.digest = _sha256(path)[:12]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate((x + 1) / 2, size=(299, 299), mode="bilinear", align_corners=False)
        return self.net((x - self.mean) / self.std)


@torch.no_grad()
def extract_features(extractor: nn.Module, images, device: torch.device, batch: int = 128) -> np.ndarray:
    """Features (N, d) float64 of uint8 (N, H, W, C) images or float (N, C, H, W) in [-1, 1]."""
    extractor.eval()
    out = [extractor.features(to_input(images[i:i + batch], device)).double().cpu()
           for i in range(0, len(images), batch)]
    return torch.cat(out).numpy()


# --- the cache of trained extractors ---------------------------------------------------------------

def extractor_key(dataset_key: str, kind: str, steps: int) -> str:
    return hashlib.sha256(f"extractor-v{EXTRACTOR_VERSION}-{kind}-{dataset_key}-{steps}".encode()).hexdigest()[:32]


def save_extractor(folder: Path, key: str, model: nn.Module, info: dict) -> None:
    """Cache a trained extractor as `key`.safetensors + `key`.json. Two processes evaluating
    the same data (the window and a CLI run) may both train it and write the same entry, so
    each file is written whole under a temporary name and renamed into place, the weights
    first and the JSON last; the JSON records the SHA-256 of the weights it was written with,
    so a reader that meets one process's JSON beside the other's weights (or weights cut
    short) refuses the entry. Errors are ignored: an unwritable cache only means training the
    extractor again next time."""
    from safetensors.torch import save
    weights = save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
    record = {**info, "weights_sha256": hashlib.sha256(weights).hexdigest()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / f"{key}.safetensors", weights)
        _write_atomic(folder / f"{key}.json", json.dumps(record).encode())
    except OSError:
        pass


def load_extractor(folder: Path, key: str, device: torch.device) -> tuple[nn.Module, dict] | None:
    """A cached extractor, or None when absent, unreadable, half-written or its weights are
    not the ones its JSON records (the caller then trains it again)."""
    from safetensors.torch import load
    try:
        info = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
        weights = (folder / f"{key}.safetensors").read_bytes()
        # Entries without a recorded hash (written before it was recorded) are not trusted either.
        if hashlib.sha256(weights).hexdigest() != info["weights_sha256"]:
            return None
        state = load(weights)
        if info["kind"] == "classifier":
            model = Classifier(info["channels"], info["resolution"], info["n_classes"])
        else:
            model = Autoencoder(info["channels"], info["resolution"])
        model.load_state_dict(state)
    except Exception:  # missing, damaged or from an older recipe: train again
        return None
    return model.to(device).eval(), info


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path` (unique per writer, so two threads or
    processes never share one), flush it to disk and rename it over `path`: readers see the
    old file or the new one, never part of one. This module stays free of app imports, so it
    does not use studio.runstore.write_atomic, which does the same for run folders."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # no stray temporary files when the disk is full
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
