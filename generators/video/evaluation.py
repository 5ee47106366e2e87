"""Scores for generated clips: per-frame FID/KID, a temporal Fréchet distance, motion and flicker.

A video generator can fail in ways no per-frame score sees: every frame sharp and plausible, yet
the clip frozen, flickering or made of unrelated frames. So clips get two kinds of scores.

Per frame, the image generator's machinery (generators.image.evaluation): FID and KID in the
features of the same pluggable extractors (Inception-v3 from a local file, or the project's own
network trained on the frames), named in every result.

Over time, three scores that a static clip, a frame-shuffled clip and independently drawn frames
all fail:

- `tfd`, a Fréchet distance between real and generated clips in the features of a small
  spatio-temporal (3D-conv) network trained on the real clips, as FVD uses an action-recognition
  network (Unterthiner et al. 2018, https://arxiv.org/abs/1812.01717). No such network can be
  downloaded here, so the project trains its own, self-supervised: it learns to tell real clips
  from the same clips shuffled, frozen, reversed or mixed from frames of other clips (and their
  class, when there are labels), and to summarise their layout. Its penultimate features are
  what natural motion looks like in this data. (Reversed clips are told apart only where the
  data has an arrow of time, like falling or pouring; bouncing is the same either way.) On the
  tests' bouncing squares, after 150 steps of 20 clips, held-out real clips score 0.4 and
  the baselines 370 (static), 620 (shuffled) and 1400 (independent frames) times that.
- motion: the mean absolute change from one frame to the next; `motion_gap` compares the
  generated clips' mean with the real one's on a log scale (0: as much motion as real clips;
  ln 2: twice or half as much), so frozen clips score far off; `motion_w1` compares the whole
  distributions of per-clip motion, which the mean alone misses (half frozen, half racing).
- flicker: the mean absolute second difference over time against the mean absolute first
  difference, on frames averaged down to a coarse grid (FLICKER_SIDE). Smooth motion changes each
  coarse cell gradually, so its second differences are small next to its first differences;
  frames that jump (shuffled, independent) make them larger (close to 2 for unrelated frames).

`baselines` makes the clips that show what the numbers mean (static, shuffled, independent
frames) and `baseline_scores` scores them, next to held-out real clips, the floor.

Plain torch and numpy; the only app imports are the error type and the atomic file writer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

from generators.image.augment import translate
from generators.image.evaluation import extract_features, fid, kid
from studio.errors import StudioError

CLIP_EXTRACTOR_VERSION = 3  # bump when the clip network's recipe changes: saved ones are not reused
CLIP_FEATURE_DIM = 64  # few enough for a stable Fréchet distance from a few hundred clips
CLIP_INPUT_SIDE = 32  # frames are averaged down to this side before the clip network sees them
LAYOUT_SIDE = 4  # the clip network also predicts the clip's mean frame at this side
FLICKER_SIDE = 4  # flicker is measured on frames averaged down to this side (measured: real
# bouncing squares 1.0, shuffled 1.9; at 8 the gap was 1.3 against 1.9)
FRAME_CAP = 1000  # frames per side for the per-frame FID/KID, taken evenly from every clip
# KID's subsets: 20 of 500 frames cost a tenth of the image generator's 100 of 1000 (9 s on two
# busy cores), and evaluation runs during training; the estimate is unbiased either way.
KID_SUBSETS, KID_SUBSET_SIZE = 20, 500
MOTION_FLOOR = 1e-3  # motion below this (in [0, 1] units per pixel) counts as none
# What the clip network learns to tell apart; "natural" is the clip as recorded.
TRANSFORMS = ("natural", "shuffled", "frozen", "reversed", "mixed")
STANDING_BATCHES = 10  # batches that measure the trained network's BatchNorm statistics
FILE_STEM = "clip-extractor"


# --- temporal measures on uint8 clips ---------------------------------------------------------------

def motion_energy(clips: np.ndarray) -> np.ndarray:
    """Per clip, the mean absolute change from one frame to the next, in [0, 1] units
    (clips (N, T, H, W, C) uint8; 0 for a clip of one frame)."""
    clips = _check_clips(clips, "clips")
    if clips.shape[1] < 2:
        return np.zeros(len(clips))
    return np.array([np.abs(np.diff(clip.astype(np.float32), axis=0)).mean() / 255.0 for clip in clips],
                    dtype=np.float64)


def flicker(clips: np.ndarray) -> np.ndarray:
    """Per clip, mean |second difference| / mean |first difference| over time, on frames
    averaged down to FLICKER_SIDE (so smooth motion is gradual there). A clip without motion
    does not flicker: 0."""
    clips = _check_clips(clips, "clips")
    if clips.shape[1] < 3:
        return np.zeros(len(clips))
    scores = []
    for clip in clips:
        coarse = _coarse(clip)
        first = np.abs(np.diff(coarse, n=1, axis=0)).mean()
        second = np.abs(np.diff(coarse, n=2, axis=0)).mean()
        scores.append(second / first if first > MOTION_FLOOR else 0.0)
    return np.array(scores, dtype=np.float64)


def _coarse(clip: np.ndarray) -> np.ndarray:
    """(T, H, W, C) uint8 -> (T, s, s, C) float in [0, 1], each cell the mean of its block
    (s = FLICKER_SIDE; frames whose sides are not multiples of it stay as they are)."""
    frames = clip.astype(np.float32) / 255.0
    t, h, w, c = frames.shape
    if h % FLICKER_SIDE or w % FLICKER_SIDE:
        return frames
    s = FLICKER_SIDE
    return frames.reshape(t, s, h // s, s, w // s, c).mean(axis=(2, 4))


# --- real clips rearranged: the training negatives and the baselines ------------------------------

def _transform_indices(kind: str, picks: np.ndarray, n_clips: int, frames: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(clip_index, time_index), each (len(picks), frames), that turn the picked clips into
    their `kind` version (one of TRANSFORMS): frame t of new clip b is
    clips[clip_index[b, t], time_index[b, t]]."""
    b = len(picks)
    clip_index = np.repeat(picks[:, None], frames, axis=1)
    time_index = np.tile(np.arange(frames), (b, 1))
    if kind == "shuffled":
        time_index = np.stack([_permutation_moving_something(frames, rng) for _ in range(b)])
    elif kind == "frozen":
        time_index = np.repeat(rng.integers(0, frames, b)[:, None], frames, axis=1)
    elif kind == "reversed":
        time_index = time_index[:, ::-1].copy()
    elif kind == "mixed":  # every frame from any clip, at any time: frames drawn independently
        clip_index = rng.integers(0, n_clips, (b, frames))
        time_index = rng.integers(0, frames, (b, frames))
    return clip_index, time_index


def _permutation_moving_something(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random order of n frames that is not the original one (n >= 2)."""
    while True:
        order = rng.permutation(n)
        if n < 2 or (order != np.arange(n)).any():
            return order


def baselines(real: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Clips made of real frames that a generator should beat, each the shape of `real`:
    "static" (each clip's first frame repeated), "shuffled" (each clip's frames in a random
    order) and "independent" (every frame from a random clip at a random time, as an image
    generator drawing each frame on its own would make them)."""
    real = _check_clips(real, "the real clips")
    n, frames = real.shape[:2]
    rng = np.random.default_rng(seed)
    picks = np.arange(n)
    shuffled = _transform_indices("shuffled", picks, n, frames, rng)
    independent = _transform_indices("mixed", picks, n, frames, rng)
    return {"static": np.repeat(real[:, :1], frames, axis=1),
            "shuffled": real[shuffled], "independent": real[independent]}


# --- the clip network ----------------------------------------------------------------------------

class ClipNet(nn.Module):
    """A small 3D-conv network over (N, C, T, H, W) clips in [-1, 1]: frames averaged down to
    CLIP_INPUT_SIDE, three 3x3x3 convolutions that halve space each time and time the last two
    times, pooled to a 2x2 grid, then CLIP_FEATURE_DIM features. Every layer sees adjacent
    frames, which is where shuffled and mixed clips give themselves away; 12M multiply-adds a
    16-frame clip keep it cheap on a CPU (a version cutting frames into 4x4 patches first cost
    half as much but learned less: 0.59 held-out transform accuracy after 300 steps against
    0.70, both with GroupNorm). Heads on the features: which of TRANSFORMS made the clip, its
    class (when there are classes) and its mean frame at LAYOUT_SIDE."""

    def __init__(self, channels: int, n_classes: int, width: int = 16):
        super().__init__()

        def block(c_in: int, c_out: int, kernel, stride, padding) -> list[nn.Module]:
            # BatchNorm, measured against GroupNorm: without labels GroupNorm learned too slowly
            # (RGB squares, 150 steps: the baselines' tfd only 1.4-3.6 times real clips', against
            # 700-3000 times here). Features in eval mode read running statistics, so these are
            # measured anew for the final weights (_standing_statistics): with the moving
            # averages of training, eval mode lost half the accuracy train mode had.
            return [nn.Conv3d(c_in, c_out, kernel, stride, padding, bias=False), nn.BatchNorm3d(c_out), nn.ReLU()]

        self.trunk = nn.Sequential(*block(channels, width, 3, (1, 2, 2), 1),
                                   *block(width, 2 * width, 3, (2, 2, 2), 1),
                                   *block(2 * width, 4 * width, 3, (2, 2, 2), 1))
        self.to_features = nn.Linear(4 * width * 4, CLIP_FEATURE_DIM)
        self.transform_head = nn.Linear(CLIP_FEATURE_DIM, len(TRANSFORMS))
        self.class_head = nn.Linear(CLIP_FEATURE_DIM, n_classes) if n_classes else None
        self.layout_head = nn.Linear(CLIP_FEATURE_DIM, channels * LAYOUT_SIDE ** 2)
        self.info = {"version": CLIP_EXTRACTOR_VERSION, "channels": channels,
                     "n_classes": n_classes, "width": width}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) in [-1, 1] -> (N, CLIP_FEATURE_DIM)."""
        x = _downsampled(x, CLIP_INPUT_SIDE)
        pooled = F.adaptive_avg_pool3d(self.trunk(x), (1, 2, 2)).flatten(1)
        return F.relu(self.to_features(pooled))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x)
        out = {"transform": self.transform_head(h), "layout": self.layout_head(h)}
        if self.class_head is not None:
            out["class"] = self.class_head(h)
        return out


def _downsampled(x: torch.Tensor, side: int) -> torch.Tensor:
    """(N, C, T, H, W) with each frame averaged down to side x side, when it is larger."""
    n, c, t, h, w = x.shape
    if h <= side and w <= side:
        return x
    frames = x.transpose(1, 2).reshape(n * t, c, h, w)
    frames = F.adaptive_avg_pool2d(frames, (min(side, h), min(side, w)))
    return frames.reshape(n, t, c, *frames.shape[2:]).transpose(1, 2)


def clips_to_input(clips: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, T, H, W, C) -> float (N, C, T, H, W) in [-1, 1] on `device`."""
    x = torch.from_numpy(np.array(clips, dtype=np.uint8))  # a copy: memmaps are read-only
    return x.to(device).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


def train_clip_extractor(clips: np.ndarray, labels: np.ndarray, steps: int, seed: int, device,
                         batch: int = 20) -> nn.Module:
    """The clip network trained on real clips (N, T, H, W, C) uint8, from `seed`, leaving the
    global RNG as it was: the same data, steps and seed give the same network. Each step shows
    it real clips each turned into one of TRANSFORMS at random, shifted alike in every frame (so
    features do not hinge on exact positions); it learns which transform, the class where
    labels >= 0 (natural, reversed and frozen clips keep their class; mixed ones have none), and
    the clip's mean frame. 10% of the clips (of 20 or more) are held out to report in `.info`
    how well it tells the transforms apart."""
    clips = _check_clips(clips, "the clips to train the clip network on")
    device = torch.device(device)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(clips):
        raise StudioError(f"{len(clips)} clips but {len(labels)} labels to train the clip network "
                          f"on: give one label per clip (-1 where there is none).")
    n, frames, side, channels = len(clips), clips.shape[1], clips.shape[2], clips.shape[4]
    if frames < 4:
        raise StudioError(f"clips of {frames} frames are too short to measure motion in: the "
                          f"temporal scores need clips of at least 4 frames (set frames to 4 or more).")
    n_classes = int(labels.max()) + 1 if (labels >= 0).any() else 0
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, n // 10) if n >= 20 else 0
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    rng = np.random.default_rng(seed + 1)
    max_shift = max(1, side // 16)
    loss = torch.zeros(())
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = ClipNet(channels, n_classes).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        model.train()
        with torch.enable_grad():
            for _ in range(steps):
                kinds = rng.integers(0, len(TRANSFORMS), batch)
                picks = train_idx[rng.integers(0, len(train_idx), batch)]
                x, targets = _transformed_batch(clips, labels, train_idx, picks, kinds, rng, device)
                shifts = torch.from_numpy(rng.integers(-max_shift, max_shift + 1, (2, batch))).to(device)
                x = _shifted(x, shifts[0], shifts[1])
                out = model(x)
                loss = (F.cross_entropy(out["transform"], targets["transform"])
                        + F.mse_loss(out["layout"], _layout(x)))
                has_class = targets["class"] >= 0
                if n_classes and bool(has_class.any()):
                    loss = loss + F.cross_entropy(out["class"][has_class], targets["class"][has_class])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        standing = [_transformed_batch(clips, labels, train_idx, train_idx[rng.integers(0, len(train_idx), batch)],
                                       rng.integers(0, len(TRANSFORMS), batch), rng, device)[0]
                    for _ in range(STANDING_BATCHES)]
        _standing_statistics(model, standing)
    model.eval()
    model.info.update(steps=steps, seed=seed, frames=frames, resolution=side,
                      trained_on=int(len(train_idx)), held_out=int(n_val), final_train_loss=float(loss.detach()))
    if n_val:
        model.info["held_out_transform_accuracy"] = _transform_accuracy(model, clips, labels, val_idx, seed, device)
    model.info["digest"] = _weights_digest(model)
    return model


@torch.no_grad()
def _standing_statistics(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Every BatchNorm's running statistics set to the exact average over `batches` for the
    final weights: the moving average recorded while training mixes statistics of weights
    that no longer exist, and features in eval mode read these."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    model.train()
    for x in batches:
        model(x)
    for m in norms:
        m.momentum = 0.1


def _transformed_batch(clips, labels, pool, picks, kinds, rng, device):
    """The picked clips, each turned into its kind of TRANSFORMS (mixed ones take their frames
    from the whole `pool`), as network input, with the targets."""
    frames = clips.shape[1]
    clip_index = np.empty((len(picks), frames), dtype=np.int64)
    time_index = np.empty((len(picks), frames), dtype=np.int64)
    for k, kind in enumerate(TRANSFORMS):
        rows = np.flatnonzero(kinds == k)
        if len(rows):
            c, t = _transform_indices(kind, picks[rows], len(pool), frames, rng)
            clip_index[rows] = pool[c] if kind == "mixed" else c
            time_index[rows] = t
    class_target = np.where(kinds == TRANSFORMS.index("mixed"), -1, labels[picks])
    x = clips_to_input(clips[clip_index, time_index], device)
    return x, {"transform": torch.from_numpy(kinds).to(device),
               "class": torch.from_numpy(class_target).to(device)}


def _shifted(x: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor) -> torch.Tensor:
    """Each clip of (N, C, T, H, W) shifted by whole pixels, every frame alike."""
    n, c, t, h, w = x.shape
    frames = x.transpose(1, 2).reshape(n * t, c, h, w)
    frames = translate(frames, shift_x.repeat_interleave(t), shift_y.repeat_interleave(t))
    return frames.reshape(n, t, c, h, w).transpose(1, 2)


def _layout(x: torch.Tensor) -> torch.Tensor:
    """The clip's mean frame averaged down to LAYOUT_SIDE: (N, C * LAYOUT_SIDE^2)."""
    return F.adaptive_avg_pool2d(x.mean(dim=2), LAYOUT_SIDE).flatten(1)


@torch.no_grad()
def _transform_accuracy(model: ClipNet, clips, labels, val_idx, seed: int, device) -> float:
    rng = np.random.default_rng(seed + 2)
    kinds = np.arange(len(val_idx)) % len(TRANSFORMS)
    x, targets = _transformed_batch(clips, labels, val_idx, val_idx, kinds, rng, device)
    predicted = torch.cat([model(x[i:i + 64])["transform"].argmax(1) for i in range(0, len(x), 64)])
    return float((predicted == targets["transform"]).float().mean())


@torch.no_grad()
def clip_features(extractor: nn.Module, clips: np.ndarray, device, batch: int = 32) -> np.ndarray:
    """Features (N, CLIP_FEATURE_DIM) float64 of uint8 clips (N, T, H, W, C)."""
    clips = _check_clips(clips, "clips")
    device = torch.device(device)
    if clips.shape[4] != extractor.info["channels"]:
        raise StudioError(f"the clip network was trained on clips with {extractor.info['channels']} "
                          f"channel(s), but these have {clips.shape[4]}: measure clips of the same "
                          f"colour mode (grey or RGB) as the data it was trained on.")
    extractor.eval()
    out = [extractor.features(clips_to_input(clips[i:i + batch], device)).double().cpu()
           for i in range(0, len(clips), batch)]
    return torch.cat(out).numpy()


def clip_extractor_name(extractor: nn.Module) -> str:
    """The name that goes with every temporal score: Fréchet distances in different networks'
    features are never compared."""
    return f"own-clipnet:{extractor.info['digest'][:12]}"


def _weights_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --- saving and loading it -------------------------------------------------------------------------

def save_clip_extractor(extractor: nn.Module, folder: Path) -> None:
    """The network as FILE_STEM.safetensors and its shape and training record as
    FILE_STEM.json in `folder`, each written atomically: the weights first, then the JSON that
    names their SHA-256, so a reader never trusts weights another writer left half-way. A cache
    that cannot be written is skipped: the network is trained again next time."""
    from safetensors.torch import save
    from studio.runstore import write_atomic, write_json
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in extractor.state_dict().items()}
    weights = save(state)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / f"{FILE_STEM}.safetensors", weights)
        write_json(folder / f"{FILE_STEM}.json",
                   {**extractor.info, "weights_sha256": hashlib.sha256(weights).hexdigest()})
    except OSError:
        pass


def load_clip_extractor(folder: Path, device) -> nn.Module | None:
    """The network saved in `folder`, or None when it is absent, damaged or from an older
    recipe (then train it again). Tensors come from safetensors, the rest from JSON: nothing
    is unpickled."""
    from safetensors.torch import load
    folder = Path(folder)
    try:
        info = json.loads((folder / f"{FILE_STEM}.json").read_text(encoding="utf-8"))
        if info.get("version") != CLIP_EXTRACTOR_VERSION:
            return None
        weights = (folder / f"{FILE_STEM}.safetensors").read_bytes()
        if hashlib.sha256(weights).hexdigest() != info.pop("weights_sha256", None):
            return None  # half-written, another writer's, or from before the hash was kept
        model = ClipNet(int(info["channels"]), int(info["n_classes"]), int(info["width"]))
        model.load_state_dict(load(weights))
    except Exception:  # missing, damaged or not ours: the caller trains a new one
        return None
    model.info = info
    return model.to(torch.device(device)).eval()


# --- the scores ----------------------------------------------------------------------------------

def video_scores(real: np.ndarray, fake: np.ndarray, clip_extractor: nn.Module, frame_extractor: nn.Module,
                 device, frame_extractor_name: str | None = None) -> dict:
    """Every score of `fake` clips against `real` ones (both (N, T, H, W, C) uint8 of one
    shape): see RealClips.scores. `frame_extractor` is one of generators.image.evaluation's;
    give `frame_extractor_name` as the image generator names it, else it is named by its weights."""
    return RealClips(real, clip_extractor, frame_extractor, device, frame_extractor_name).scores(fake)


def baseline_scores(reference: np.ndarray, held_out: np.ndarray, clip_extractor: nn.Module,
                    frame_extractor: nn.Module, device, seed: int = 0,
                    frame_extractor_name: str | None = None) -> dict[str, dict]:
    """What the scores mean on this data: video_scores against `reference` of held-out real
    clips ("real", the best a generator can hope for) and of the baselines made from them
    ("static", "shuffled", "independent"), which a generator should clearly beat."""
    measured = RealClips(reference, clip_extractor, frame_extractor, device, frame_extractor_name)
    rows = {"real": held_out, **baselines(held_out, seed)}
    return {name: measured.scores(clips) for name, clips in rows.items()}


class RealClips:
    """The real side of the scores, measured once however many sets are compared with it (a
    generator evaluating every few hundred steps keeps one, as the image generator keeps its
    real images' features)."""

    def __init__(self, real: np.ndarray, clip_extractor: nn.Module, frame_extractor: nn.Module, device,
                 frame_extractor_name: str | None = None):
        self.real = _enough_clips(_check_clips(real, "the real clips"), "real")
        self.clip_extractor, self.frame_extractor = clip_extractor, frame_extractor
        self.device = torch.device(device)
        self.clip_extractor_name = clip_extractor_name(clip_extractor)
        self.frame_extractor_name = frame_extractor_name or _frame_extractor_name(frame_extractor)
        self.clip_features = clip_features(clip_extractor, self.real, self.device)
        self.frame_features = extract_features(frame_extractor, _some_frames(self.real), self.device)
        self.motion = motion_energy(self.real)
        self.flicker = float(flicker(self.real).mean())

    def scores(self, fake: np.ndarray) -> dict:
        """"tfd" (temporal Fréchet distance in the clip network's features); "frame_fid" and
        "frame_kid" (with "frame_kid_std") over frames taken evenly from every clip;
        "motion_gap" |ln(mean motion of fake / of real)| with "motion_real" and "motion_fake",
        and "motion_w1", the distance between the two sets' distributions of per-clip motion
        (1-D Wasserstein) relative to the real mean, which also sees half the clips frozen and
        half racing; "flicker" of fake and "flicker_real"; how many clips and frames per clip
        were compared; and the names of the two networks."""
        real = self.real
        fake = _enough_clips(_check_clips(fake, "the generated clips"), "generated")
        if real.shape[1:] != fake.shape[1:]:
            raise StudioError(f"the generated clips are {_describe(fake)} but the real clips they "
                              f"are compared with are {_describe(real)}: compare clips of the same "
                              f"length, size and channels (generate with the frames, resolution and "
                              f"channels of the data).")
        fake_frames = _some_frames(fake)
        fake_features = extract_features(self.frame_extractor, fake_frames, self.device)
        kid_mean, kid_std = kid(self.frame_features, fake_features, KID_SUBSETS, KID_SUBSET_SIZE)
        motion = motion_energy(fake)
        real_mean = max(float(self.motion.mean()), MOTION_FLOOR)
        quantiles = np.linspace(0, 1, 101)
        motion_w1 = np.abs(np.quantile(motion, quantiles) - np.quantile(self.motion, quantiles)).mean()
        return {"tfd": fid(self.clip_features, clip_features(self.clip_extractor, fake, self.device)),
                "frame_fid": fid(self.frame_features, fake_features),
                "frame_kid": kid_mean, "frame_kid_std": kid_std,
                "motion_gap": abs(float(np.log(max(float(motion.mean()), MOTION_FLOOR) / real_mean))),
                "motion_w1": float(motion_w1 / real_mean),
                "motion_real": float(self.motion.mean()), "motion_fake": float(motion.mean()),
                "flicker": float(flicker(fake).mean()), "flicker_real": self.flicker,
                "clips": int(min(len(real), len(fake))), "frames_per_clip": int(len(fake_frames) // len(fake)),
                "clip_extractor": self.clip_extractor_name, "frame_extractor": self.frame_extractor_name}


def _enough_clips(clips: np.ndarray, what: str) -> np.ndarray:
    if len(clips) < 2:
        raise StudioError(f"{len(clips)} {what} clip: the distances need at least 2 clips on each "
                          f"side (more make them steadier); give more clips.")
    return clips


def _some_frames(clips: np.ndarray) -> np.ndarray:
    """(M, H, W, C): the same evenly spaced frame times of every clip, at most FRAME_CAP frames
    (at least one per clip)."""
    n, frames = clips.shape[:2]
    per_clip = max(1, min(frames, FRAME_CAP // n))
    times = np.unique(np.linspace(0, frames - 1, per_clip).round().astype(np.int64))
    return clips[:, times].reshape(-1, *clips.shape[2:])


def _frame_extractor_name(extractor: nn.Module) -> str:
    if extractor.kind == "inception-v3":
        return f"inception-v3:{extractor.digest}"
    return f"own-{extractor.kind}:{_weights_digest(extractor)[:12]}"


def _check_clips(clips, what: str) -> np.ndarray:
    """`clips` as (N, T, H, W, C) uint8 with C 1 or 3, or a StudioError saying what is wrong."""
    if not isinstance(clips, np.ndarray):
        raise StudioError(f"{what} are a {type(clips).__name__}, not a NumPy array of clips "
                          f"(N, T, H, W, C) uint8.")
    if clips.ndim != 5 or clips.shape[4] not in (1, 3):
        raise StudioError(f"{what} have shape {tuple(clips.shape)}; clips are (N, T, H, W, C) "
                          f"with C 1 (grey) or 3 (RGB): add the channel axis or convert them.")
    if clips.dtype != np.uint8:
        raise StudioError(f"{what} are {clips.dtype}; clips are uint8 pixels 0-255: convert them "
                          f"(e.g. np.clip(x * 255, 0, 255).astype(np.uint8) for floats in [0, 1]).")
    if 0 in clips.shape:
        raise StudioError(f"{what} are empty (shape {tuple(clips.shape)}): give at least one "
                          f"frame of at least one clip.")
    return clips


def _describe(clips: np.ndarray) -> str:
    _, t, h, w, c = clips.shape
    return f"{t} frames of {h}x{w} {'RGB' if c == 3 else 'grey'}"
