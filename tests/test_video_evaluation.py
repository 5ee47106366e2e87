"""The video scores (generators/video/evaluation.py): the temporal scores rank held-out real clips
above every baseline (static, shuffled, independent frames), the measures mean what they say
on hand-made clips, the clip network is deterministic and survives a save and load, and bad
input is a StudioError naming what is wrong."""

import json

import numpy as np
import pytest
import torch

from generators.image.evaluation import Classifier
from generators.video.evaluation import (CLIP_FEATURE_DIM, baseline_scores, baselines, clip_features,
                                         flicker, load_clip_extractor, motion_energy,
                                         save_clip_extractor, train_clip_extractor, video_scores)
from studio.errors import StudioError

CPU = torch.device("cpu")
FRAMES, SIDE = 16, 32


def bouncing_squares(n: int, channels: int = 1, seed: int = 0, frames: int = FRAMES):
    """n clips of one square (5-9 px) gliding at 1-2.5 px a frame and bouncing off the walls;
    label 1 for the larger squares (7+ px). (N, T, SIDE, SIDE, channels) uint8, labels (N,)."""
    rng = np.random.default_rng(seed)
    clips = np.zeros((n, frames, SIDE, SIDE, channels), np.uint8)
    labels = np.zeros(n, np.int64)
    for i in range(n):
        size = int(rng.integers(5, 10))
        labels[i] = int(size >= 7)
        colour = rng.integers(120, 256, channels)
        position = rng.uniform(0, SIDE - size, 2)
        velocity = rng.uniform(1, 2.5, 2) * rng.choice([-1, 1], 2)
        for t in range(frames):
            y, x = position.round().astype(int)
            clips[i, t, y:y + size, x:x + size] = colour
            position += velocity
            for axis in range(2):
                if not 0 <= position[axis] <= SIDE - size:
                    velocity[axis] = -velocity[axis]
                    position[axis] = np.clip(position[axis], 0, SIDE - size)
    return clips, labels


def frame_network(channels: int) -> Classifier:
    """An image feature network of the image generator's kind (seeded, untrained: enough to
    check the per-frame scores are computed and named; the image tests cover training it)."""
    torch.manual_seed(0)
    return Classifier(channels, SIDE, 2).eval()


@pytest.fixture(scope="module")
def grey():
    """Training clips, held-out clips and a clip network trained on the training clips' labels."""
    train, labels = bouncing_squares(160, seed=1)
    held_out, _ = bouncing_squares(160, seed=2)
    return train, held_out, train_clip_extractor(train, labels, steps=150, seed=0, device=CPU)


@pytest.fixture(scope="module")
def rgb():
    """As `grey`, in colour and without labels (the self-supervised tasks alone)."""
    train, _ = bouncing_squares(96, channels=3, seed=3)
    held_out, _ = bouncing_squares(96, channels=3, seed=4)
    net = train_clip_extractor(train, np.full(len(train), -1), steps=100, seed=0, device=CPU)
    return train, held_out, net


# --- the key property: real beats every baseline --------------------------------------------------

def test_held_out_real_clips_score_far_better_than_every_baseline(grey):
    train, held_out, net = grey
    scores = baseline_scores(train, held_out, net, frame_network(1), CPU, seed=0)
    real = scores["real"]
    assert set(scores) == {"real", "static", "shuffled", "independent"}
    for name in ("static", "shuffled", "independent"):
        assert scores[name]["tfd"] > 10 * real["tfd"], (name, scores[name]["tfd"], real["tfd"])
    # frozen clips have no motion; their flicker is none at all
    assert real["motion_gap"] < 0.25 and scores["static"]["motion_gap"] > 2
    assert scores["static"]["motion_fake"] == 0 and scores["static"]["flicker"] == 0
    # frames that jump flicker: far more than the real clips' smooth motion
    assert real["flicker"] == pytest.approx(real["flicker_real"], rel=0.1)
    for name in ("shuffled", "independent"):
        assert scores[name]["flicker"] > 1.5 * real["flicker_real"], (name, scores[name]["flicker"])
        assert scores[name]["motion_gap"] > 0.4  # jumps move more pixels than gliding does


def test_rgb_clips_and_the_unlabelled_network_work_alike(rgb):
    train, held_out, net = rgb
    assert net.info["n_classes"] == 0 and net.info["channels"] == 3
    features = clip_features(net, held_out[:5], CPU)
    assert features.shape == (5, CLIP_FEATURE_DIM) and features.dtype == np.float64
    scores = baseline_scores(train, held_out, net, frame_network(3), CPU, seed=1)
    for name in ("static", "shuffled", "independent"):
        assert scores[name]["tfd"] > 5 * scores["real"]["tfd"], (name, scores[name]["tfd"])


def test_every_score_is_reported_with_the_networks_that_measured_it(grey):
    train, held_out, net = grey
    scores = video_scores(train[:40], held_out[:30], net, frame_network(1), CPU)
    assert set(scores) >= {"tfd", "frame_fid", "frame_kid", "frame_kid_std", "motion_gap", "motion_w1",
                           "motion_real", "motion_fake", "flicker", "flicker_real",
                           "clip_extractor", "frame_extractor"}
    assert scores["clip_extractor"] == f"own-clipnet:{net.info['digest'][:12]}"
    assert scores["frame_extractor"].startswith("own-classifier:")
    named = video_scores(train[:40], held_out[:30], net, frame_network(1), CPU,
                         frame_extractor_name="own-classifier:abc")
    assert named["frame_extractor"] == "own-classifier:abc"
    assert scores["clips"] == 30 and scores["frames_per_clip"] == FRAMES


def test_identical_sets_are_at_distance_zero(grey):
    train, _, net = grey
    scores = video_scores(train[:60], train[:60].copy(), net, frame_network(1), CPU)
    assert abs(scores["tfd"]) < 1e-4 and abs(scores["frame_fid"]) < 1e-4
    assert scores["motion_gap"] == 0 and scores["motion_w1"] == 0
    assert scores["flicker"] == scores["flicker_real"]


def test_motion_w1_sees_half_frozen_half_racing_clips_that_the_mean_misses(grey):
    train, held_out, net = grey
    racing, _ = bouncing_squares(40, seed=8, frames=2 * FRAMES)
    racing = racing[:, ::2]  # every other frame: twice the speed
    frozen = baselines(held_out[:40], seed=0)["static"]
    mixed = np.concatenate([racing, frozen])
    real = video_scores(train, held_out[:80], net, frame_network(1), CPU)
    scores = video_scores(train, mixed, net, frame_network(1), CPU)
    assert scores["motion_gap"] < 0.25, scores["motion_gap"]  # the mean motion is about right...
    assert scores["motion_w1"] > 0.5 > 5 * real["motion_w1"], (scores["motion_w1"], real["motion_w1"])


# --- the measures on hand-made clips ----------------------------------------------------------------

def test_motion_and_flicker_measure_what_they_say():
    ramp = np.arange(0, 160, 10, dtype=np.uint8)[None, :, None, None, None] * np.ones((1, 1, 8, 8, 1), np.uint8)
    blink = (np.arange(FRAMES) % 2 * 255).astype(np.uint8)[None, :, None, None, None] * np.ones((1, 1, 8, 8, 1), np.uint8)
    still = np.full((1, FRAMES, 8, 8, 1), 77, np.uint8)
    clips = np.concatenate([ramp, blink, still])
    assert motion_energy(clips) == pytest.approx([10 / 255, 1.0, 0.0])
    # steady change has no second difference; blinking's is twice its first; no change, no flicker
    assert flicker(clips) == pytest.approx([0.0, 2.0, 0.0], abs=1e-6)


def test_baselines_are_made_of_the_real_frames():
    real, _ = bouncing_squares(12)
    made = baselines(real, seed=5)
    assert {name: clips.shape for name, clips in made.items()} == {
        "static": real.shape, "shuffled": real.shape, "independent": real.shape}
    assert (made["static"] == real[:, :1]).all()
    for clip, original in zip(made["shuffled"], real):
        assert sorted(f.tobytes() for f in clip) == sorted(f.tobytes() for f in original)
        assert not (clip == original).all()
    pool = real.reshape(-1, SIDE, SIDE, 1)
    assert all((pool == frame).all(axis=(1, 2, 3)).any() for frame in made["independent"].reshape(-1, SIDE, SIDE, 1))
    again = baselines(real, seed=5)
    assert all((again[name] == made[name]).all() for name in made)
    assert not (baselines(real, seed=6)["independent"] == made["independent"]).all()


@pytest.mark.parametrize("frames, side, channels", [(4, 32, 1), (8, 64, 3), (16, 128, 1), (6, 16, 3)])
def test_the_clip_network_takes_every_length_resolution_and_colour_mode(frames, side, channels):
    clips = np.random.default_rng(0).integers(0, 256, (6, frames, side, side, channels), dtype=np.uint8)
    net = train_clip_extractor(clips, np.full(6, -1), steps=2, seed=0, device=CPU)
    assert net.info["frames"] == frames and net.info["resolution"] == side
    features = clip_features(net, clips, CPU)
    assert features.shape == (6, CLIP_FEATURE_DIM) and np.isfinite(features).all()
    assert motion_energy(clips).shape == flicker(clips).shape == (6,)


# --- determinism and the saved network --------------------------------------------------------------

def test_the_clip_network_is_the_same_for_a_seed_and_leaves_the_global_rng_alone():
    clips, labels = bouncing_squares(40, seed=7, frames=8)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first = train_clip_extractor(clips, labels, steps=6, seed=3, device=CPU)
    assert torch.equal(torch.rand(3), before)
    second = train_clip_extractor(clips, labels, steps=6, seed=3, device=CPU)
    other = train_clip_extractor(clips, labels, steps=6, seed=4, device=CPU)
    assert first.info["digest"] == second.info["digest"] != other.info["digest"]
    assert np.array_equal(clip_features(first, clips, CPU), clip_features(second, clips, CPU))


def test_a_saved_clip_network_loads_with_identical_features(grey, tmp_path):
    _, held_out, net = grey
    save_clip_extractor(net, tmp_path / "features")
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == [
        "clip-extractor.json", "clip-extractor.safetensors"]
    loaded = load_clip_extractor(tmp_path / "features", CPU)
    assert loaded.info == json.loads(json.dumps(net.info))
    assert np.array_equal(clip_features(loaded, held_out[:20], CPU), clip_features(net, held_out[:20], CPU))
    frames = frame_network(1)
    assert video_scores(held_out[:20], held_out[20:40], loaded, frames, CPU) == \
        video_scores(held_out[:20], held_out[20:40], net, frames, CPU)


def test_a_missing_damaged_or_older_clip_network_is_none(grey, tmp_path):
    _, _, net = grey
    assert load_clip_extractor(tmp_path / "nothing", CPU) is None
    save_clip_extractor(net, tmp_path)
    (tmp_path / "clip-extractor.safetensors").write_bytes(b"not tensors")
    assert load_clip_extractor(tmp_path, CPU) is None
    save_clip_extractor(net, tmp_path)
    info = json.loads((tmp_path / "clip-extractor.json").read_text())
    (tmp_path / "clip-extractor.json").write_text(json.dumps({**info, "version": 0}))
    assert load_clip_extractor(tmp_path, CPU) is None
    # another writer's weights (valid tensors of another network) beside this JSON: not trusted
    save_clip_extractor(net, tmp_path)
    record = (tmp_path / "clip-extractor.json").read_text()
    other = train_clip_extractor(grey[0], np.full(len(grey[0]), -1), steps=2, seed=9, device=CPU)
    save_clip_extractor(other, tmp_path)
    (tmp_path / "clip-extractor.json").write_text(record)
    assert load_clip_extractor(tmp_path, CPU) is None


def test_a_clip_network_cache_that_cannot_be_written_is_skipped(grey, tmp_path):
    _, _, net = grey
    blocked = tmp_path / "a-file"
    blocked.write_text("in the way")
    save_clip_extractor(net, blocked / "features")  # its folder cannot be made: no error
    assert load_clip_extractor(blocked / "features", CPU) is None


# --- bad input ---------------------------------------------------------------------------------------

def test_clips_of_another_shape_are_refused_in_one_clear_line(grey):
    train, held_out, net = grey
    with pytest.raises(StudioError, match=r"generated clips are 8 frames of 32x32 grey but the real "
                                          r"clips .* are 16 frames of 32x32 grey.*same length"):
        video_scores(train[:10], held_out[:10, :8], net, frame_network(1), CPU)
    rgb_fake = np.repeat(held_out[:10], 3, axis=4)
    with pytest.raises(StudioError, match="32x32 RGB but the real clips .* 32x32 grey"):
        video_scores(train[:10], rgb_fake, net, frame_network(1), CPU)
    with pytest.raises(StudioError, match="trained on clips with 1 channel"):
        clip_features(net, rgb_fake, CPU)


@pytest.mark.parametrize("clips, message", [
    (np.zeros((4, 16, 32, 32, 1), np.float32), "float32; clips are uint8"),
    (np.zeros((4, 16, 32, 32), np.uint8), r"shape \(4, 16, 32, 32\); clips are \(N, T, H, W, C\)"),
    (np.zeros((4, 16, 32, 32, 2), np.uint8), "C 1 .grey. or 3 .RGB."),
    (np.zeros((0, 16, 32, 32, 1), np.uint8), "empty"),
    ([[0]], "list, not a NumPy array"),
])
def test_what_is_not_clips_is_named(clips, message):
    with pytest.raises(StudioError, match=message):
        motion_energy(clips)


def test_too_few_clips_or_frames_are_refused(grey):
    train, held_out, net = grey
    with pytest.raises(StudioError, match="1 generated clip: .* at least 2 clips"):
        video_scores(train[:10], held_out[:1], net, frame_network(1), CPU)
    with pytest.raises(StudioError, match="3 frames are too short .* at least 4 frames"):
        train_clip_extractor(train[:30, :3], np.zeros(30), steps=1, seed=0, device=CPU)
    with pytest.raises(StudioError, match="30 clips but 29 labels"):
        train_clip_extractor(train[:30], np.zeros(29), steps=1, seed=0, device=CPU)
