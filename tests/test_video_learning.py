"""The video generator learns (issue 12): a short CPU training on bouncing digits makes clips
whose temporal score is clearly better than the shuffled and independent-frames baselines and
whose per-frame FID is clearly better than the untrained model's, all measured by the
generator's own evaluate()/evaluate_baselines() in the same networks; and a clip drawn from
one content seed keeps showing the same digit while its motion changes.

The digits come from the MNIST test files in ../shared/data/mnist; without them the built-in
bouncing shapes stand in (never skipped). One training serves every test of the module."""

import copy
import os

import numpy as np
import pytest
import torch

from conftest import SHARED
from generators.image.evaluation import to_input, train_extractor
from generators.video import VideoGenerator
from studio import api

MNIST = SHARED / "mnist"
DATA = str(MNIST) if (MNIST / "t10k-images-idx3-ubyte.gz").exists() else None  # None: shapes
# Small enough for CI (about 4 minutes of training on one quiet core). 3600 steps, not 1800:
# the content test needs the class learned, which 1800 steps do not give (clips of one content
# seed agree 0.44-0.52 at 1800 steps, 0.67-0.73 at 3600; real clips 0.74). Measured with the
# auxiliary classifier (class_loss 1), seeds 0 and 1 after 3600 steps: temporal FD 16.7 and
# 14.3 (shuffled frames about 68, independent frames about 300, untrained 2000-2500),
# per-frame FID 0.86 and 1.86 (untrained 880-1300).
CONFIG = {"resolution": 32, "frames": 8, "train_frames": 3, "g_width": 16, "d_width": 16,
          "content_dim": 32, "motion_dim": 8, "batch_size": 16, "eval_clips": 100,
          "feature_steps": 150}
STEPS = 3600
SEED = 0
# lr 5e-4 rather than the generator's 2e-4: seed 0 reached a temporal FD of 27 against 71.
SETTINGS = ["lr=5e-4", "device=cpu", "threads=1", "eval_every=0", "preview_every=0",
            "checkpoint_every=0", "log_every=100", f"seed={SEED}"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The generator after STEPS steps, loaded back from its run as `studio eval` loads it."""
    base = tmp_path_factory.getbasetemp()
    # A module fixture runs before conftest's per-test folders: give it the same ones, so it
    # never writes to the user's cache or settings.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_CACHE_DIR", str(base / "cache"))
        patch.setenv("STUDIO_CONFIG_DIR", str(base / "config"))
        run = tmp_path_factory.mktemp("video-learning") / "run"
        settings = [f"{k}={v}" for k, v in CONFIG.items()] + SETTINGS
        status, _ = api.train(VideoGenerator, data=DATA, run_dir=str(run), max_steps=STEPS,
                              settings=settings, events="none")
        assert status == "done"
        _, gen, _ = api.load_run(str(run), device="cpu", threads=1)
        gen.load_data(DATA, None, base / "cache")
        yield gen


def untrained_twin(gen: VideoGenerator) -> VideoGenerator:
    """The same generator (data, held-out clips, feature networks) with freshly built weights."""
    twin = copy.copy(gen)
    torch.manual_seed(SEED)
    twin.model = gen.build().eval()
    twin._calibrated_at = None  # its BatchNorm statistics are measured for the new weights
    return twin


def test_a_short_training_beats_the_baselines_and_the_untrained_model(trained):
    """Temporal Fréchet distance well below the shuffled and independent-frames baselines',
    per-frame FID far below the untrained model's; the untrained model fails the same bars."""
    scores = trained.evaluate()
    baselines = trained.evaluate_baselines()
    untrained = untrained_twin(trained).evaluate()
    # the same networks measured everything
    for row in (*baselines.values(), {k.removeprefix("val_"): v for k, v in untrained.items()}):
        assert row["clip_extractor"] == scores["val_clip_extractor"]
        assert row["frame_extractor"] == scores["val_frame_extractor"]
    figures = {"trained": scores["val_tfd"], "untrained": untrained["val_tfd"],
               **{name: row["tfd"] for name, row in baselines.items()}}
    bar = 0.6 * min(baselines["shuffled"]["tfd"], baselines["independent"]["tfd"])
    assert scores["val_tfd"] < bar, figures
    assert untrained["val_tfd"] > bar, figures
    assert scores["val_frame_fid"] < 0.1 * untrained["val_frame_fid"], (
        scores["val_frame_fid"], untrained["val_frame_fid"])
    # and it moves: neither frozen nor racing (the static clips' motion gap is 3.4 here)
    assert scores["val_motion_gap"] < 0.5 * baselines["static"]["motion_gap"], scores


def frame_classifier(gen: VideoGenerator):
    """A digit (or shape) classifier trained on the real training frames' labels: the judge
    of what a frame shows, apart from the networks that score the generator."""
    clips, labels = gen.train_clips[:, ::2], gen.train_labels
    frames = clips.reshape(-1, *clips.shape[2:])
    net, info = train_extractor(frames, np.repeat(labels, clips.shape[1]), len(gen.classes),
                                steps=300, device=torch.device("cpu"), seed=SEED)
    assert info["held_out_accuracy"] > 0.8, info  # it reads digits; else the test means nothing
    return net


def predicted_classes(net, clips: np.ndarray) -> np.ndarray:
    """Class of every frame of clips (K, M, T, H, W, C) uint8 -> (K, M, T)."""
    with torch.no_grad():
        logits = net(to_input(clips.reshape(-1, *clips.shape[3:]), torch.device("cpu")))
    return logits.argmax(1).numpy().reshape(clips.shape[:3])


def agreement(a: np.ndarray, b: np.ndarray | None = None) -> float:
    """Share of pairs of frames, one from `a` and one from `b`, given the same class (b None:
    pairs of two different frames of `a`)."""
    a = a.ravel()
    if b is None:
        same = (a[:, None] == a[None, :]).sum() - len(a)
        return same / (len(a) * (len(a) - 1))
    return float((a[:, None] == b.ravel()[None, :]).mean())


# Clips judged for content: ten content seeds (the ten classes in turn when conditional), each
# drawn with four motions; the real reference takes four clips of each of the same classes.
CONTENTS, MOTIONS = 10, 4


def mean_within(classes: np.ndarray) -> float:
    """Mean agreement inside each group of frames (K, M, T) -> over the K groups."""
    return float(np.mean([agreement(group) for group in classes]))


def content_agreement(gen: VideoGenerator, net) -> tuple[float, float]:
    """(frames of clips drawn with one content seed and different motion seeds, frames of
    clips of different content seeds): how often two of them show the same class."""
    clips = np.stack([
        np.stack([s.data for s in gen.sample(gen.SampleConfig(content_seed=c), n=MOTIONS, seed=50)])
        for c in range(CONTENTS)])
    classes = predicted_classes(net, clips)
    within = mean_within(classes)
    across = np.mean([agreement(classes[k], classes[j])
                      for k in range(len(classes)) for j in range(len(classes)) if j != k])
    return float(within), float(across)


def real_agreement(gen: VideoGenerator, net) -> float:
    """The same agreement for real held-out clips: frames of four clips of one class, the
    classes in turn as the content seeds draw them. What the judge itself reaches on clips that
    keep their digit (its errors on small moving digits make it well below 1: 0.74 measured)."""
    clips, labels = gen.val_clips, gen.val_labels
    if clips is None:
        clips, labels = gen.train_clips, gen.train_labels
    rng = np.random.default_rng(SEED)
    groups = [clips[rng.choice(np.flatnonzero(labels == c % len(gen.classes)), MOTIONS, replace=False)]
              for c in range(CONTENTS)]
    return mean_within(predicted_classes(net, np.stack(groups)))


def test_a_fixed_content_latent_keeps_the_digit_while_the_motion_changes(trained):
    """With a fixed content seed, the frames of every motion show the same digit nearly as often
    as real clips of one class do, and far more often than frames of clips with other content
    seeds do; the untrained model's blobs fail. (The judge errs on small moving digits, so the
    bar is set by real clips judged by it, not by an absolute share.)"""
    net = frame_classifier(trained)
    real = real_agreement(trained, net)
    assert real > 0.6, real  # the judge tells a clip's digit; else the test means nothing
    within, across = content_agreement(trained, net)
    assert within > 0.85 * real and across < within / 2, (within, across, real)
    within, across = content_agreement(untrained_twin(trained), net)
    assert not (within > 0.85 * real and across < within / 2), (within, across, real)
