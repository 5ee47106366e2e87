"""The video generator's model and sampling: clips of any length, resolution and frame rate;
content and motion fixed apart; one augmentation per clip; real clips drawn at their frame
times; every variant trains; stop and resume is bit-exact on CPU."""

import numpy as np
import pytest
import torch

from generators.video import VideoGenerator
from generators.video.model import (ContinuousMotion, PairsDiscriminator, TrunkDiscriminator,
                                    VideoGenerator as VideoG, VideoShape, static_and_shuffled)
from studio import api
from studio.runstore import RunDir
from studio.testing import StopAfter
from test_image_training import final_tensors, progress_losses
from test_video_conformance import TINY
from test_video_conformance import TestVideoGenerator as VideoConformance  # not collected twice
from video_fixtures import moving_square, moving_squares, write_clip_folder, write_npy, write_video

CPU = ["device=cpu", "log_every=1", "eval_every=0", "checkpoint_every=0"]


def untrained(**config) -> VideoGenerator:
    """A generator with an untrained model and no data: RGB clips at 8 fps."""
    gen = VideoGenerator(VideoGenerator.config_from({**TINY, **config}))
    gen.channels, gen.classes, gen.fps = 3, [], 8.0
    gen.model = gen.build().eval()
    return gen


class LatentPainter(torch.nn.Module):
    """Stands in for the frame renderer: paints each frame's latent (content, then motion),
    squashed by tanh, into the first row of the red channel, so a test reads back exactly
    which content and which motion every frame of a clip was drawn from."""

    def forward(self, latents, labels=None):
        frames = torch.zeros(len(latents), 3, 32, 32)
        frames[:, 0, 0, :latents.shape[1]] = torch.tanh(latents)
        return frames


def painted(gen: VideoGenerator, **params) -> tuple[np.ndarray, np.ndarray]:
    """(content, motion) read back from sampled clips: each (N, T, dim) uint8."""
    clips = np.stack([s.data for s in gen.sample(gen.SampleConfig(**params), n=3, seed=0)])
    row = clips[:, :, 0, :, 0]  # (N, T, 32)
    dc, dm = gen.config.content_dim, gen.config.motion_dim
    return row[:, :, :dc], row[:, :, dc:dc + dm]


@pytest.mark.parametrize("resolution", [32, 64])
def test_clips_of_any_length_resolution_and_frame_rate(resolution):
    gen = untrained(resolution=resolution)
    for frames in (4, 16, 24):
        clips = gen.sample(gen.SampleConfig(frames=frames), n=2, seed=0)
        assert [c.data.shape for c in clips] == [(frames, resolution, resolution, 3)] * 2
        assert all(c.data.dtype == np.uint8 for c in clips)
        assert [(c.meta["frames"], c.meta["fps"], c.meta["seed"]) for c in clips] == \
            [(frames, 8.0, 0), (frames, 8.0, 1)]
    # Longer than training: the 24-frame clip of a seed begins as its 4-frame clip.
    short = gen.sample(gen.SampleConfig(frames=4), seed=3)[0].data.astype(int)
    long = gen.sample(gen.SampleConfig(frames=24), seed=3)[0].data.astype(int)
    assert np.abs(long[:4] - short).max() <= 1
    # Twice the frame rate renders in-between frames over the same time: every other frame
    # is a frame of the clip at the data's rate.
    fast = gen.sample(gen.SampleConfig(frames=8, fps=16), seed=3)[0]
    assert fast.meta["fps"] == 16
    assert np.abs(fast.data[::2].astype(int) - short).max() <= 1
    assert np.abs(fast.data[1::2].astype(int) - short).max() > 1


def test_fixed_content_and_fixed_motion_seeds():
    gen = untrained()
    gen.model.G_ema.renderer, gen.model.G_ema.styles = LatentPainter(), None
    content, motion = painted(gen, frames=6)  # each clip its own seed
    assert (content == content[:, :1]).all()  # content is held for the whole clip
    assert not (content[0] == content[1]).all() and not (motion[0] == motion[1]).all()
    assert not (motion == motion[:, :1]).all()  # motion moves

    content, motion = painted(gen, frames=6, content_seed=5)  # same content, new motion
    assert (content == content[:1, :1]).all()
    assert not (motion[0] == motion[1]).all() and not (motion[1] == motion[2]).all()

    content, motion = painted(gen, frames=6, motion_seed=5)  # new content, same motion
    assert (motion == motion[:1]).all()
    assert (content == content[:, :1]).all()
    assert not (content[0] == content[1]).all() and not (content[1] == content[2]).all()
    samples = gen.sample(gen.SampleConfig(motion_seed=5), n=2, seed=0)
    assert [(s.meta["content_seed"], s.meta["motion_seed"]) for s in samples] == [(0, 5), (1, 5)]


def test_content_interpolation_keeps_the_motion():
    gen = untrained()
    gen.model.G_ema.renderer, gen.model.G_ema.styles = LatentPainter(), None
    clips = gen.sample(gen.SampleConfig(frames=5, interpolate_to=9, steps=4), seed=2)
    assert [s.meta["t"] for s in clips] == [0, 1 / 3, 2 / 3, 1]
    rows = np.stack([s.data for s in clips])[:, :, 0, :, 0]
    dc = gen.config.content_dim
    assert (rows[:, :, dc:] == rows[:1, :, dc:]).all()  # one motion
    start = painted(gen, frames=5, content_seed=2)[0][0, 0]
    end = painted(gen, frames=5, content_seed=9)[0][0, 0]
    assert (rows[0, 0, :dc] == start).all() and (rows[-1, 0, :dc] == end).all()
    assert not (rows[1, 0, :dc] == start).all() and not (rows[1, 0, :dc] == end).all()


def test_one_augmentation_per_clip_on_all_its_frames():
    """A still clip stays still under augmentation (every frame moved, recoloured and cut out
    alike), while different clips get different transforms."""
    gen = untrained(augment="color,translation,cutout")
    still = torch.rand(1, 1, 3, 32, 32).mul(2).sub(1).expand(6, 4, 3, 32, 32).contiguous()
    torch.manual_seed(0)
    out = gen._augment(still)
    assert torch.equal(out, out[:, :1].expand_as(out))
    assert not torch.equal(out[0], out[1])


def test_real_clips_are_drawn_at_their_frame_times():
    clips = moving_squares(5, frames=10, size=32)
    for temporal_d in ("pairs", "3d"):
        gen = untrained(frames=10, train_frames=4, temporal_d=temporal_d, batch_size=6)
        gen.train_clips, gen.train_labels = clips, np.full(5, -1)
        frames, times, labels = gen.get_batch("train", torch.Generator().manual_seed(1))
        again, times_again, _ = gen.get_batch("train", torch.Generator().manual_seed(1))
        assert torch.equal(frames, again) and torch.equal(times, times_again)
        assert frames.shape == (6, 4, 3, 32, 32) and labels is None
        steps = times[:, 1:] - times[:, :-1]
        assert (steps > 0).all() and times.min() >= 0 and times.max() <= 9
        if temporal_d == "3d":
            assert (steps == 1).all()
        else:
            assert (steps > 1).any()  # sparse: frames anywhere in the clip
        pixels = ((frames + 1) * 127.5).round().byte().permute(0, 1, 3, 4, 2).numpy()
        for clip, clip_times in zip(pixels, times.long().numpy()):
            matches = [i for i in range(5) if np.array_equal(clips[i, clip_times], clip)]
            assert matches, "each drawn clip is a real clip's frames at the drawn times"


def test_the_temporal_discriminator_sees_the_time_gaps_and_extra_fakes():
    shape = VideoShape(resolution=32, channels=3, d_width=8, train_frames=3, frames=16)
    frames = torch.randn(2, 3, 3, 32, 32)
    near = torch.tensor([[0.0, 1, 2], [0, 1, 2]])
    far = torch.tensor([[0.0, 7, 15], [0, 7, 15]])
    for D in (PairsDiscriminator(shape).eval(), TrunkDiscriminator(shape).eval()):
        with torch.no_grad():
            assert not torch.allclose(D(frames, near), D(frames, far))
            assert not torch.allclose(D(frames, near), D(frames.flip(1), near))  # order matters
    static, shuffled = static_and_shuffled(frames, ("static", "shuffled"))
    assert torch.equal(static, frames[:, :1].expand_as(frames))
    assert torch.equal(shuffled[:, 1:], frames[:, :-1]) and torch.equal(shuffled[:, 0], frames[:, -1])
    assert static_and_shuffled(frames, ()) == []


def test_time_features_start_at_a_phase_of_each_clips_own():
    """Per-clip phase: two clips at the same times get different sin/cos time features (so G
    cannot draw "the frame at time t" whatever its latents); absolute phase: the same."""
    noise = torch.randn(2, 5, 8)
    times = torch.arange(8.0).expand(2, -1)
    for phase, differ in (("per-clip", True), ("absolute", False)):
        motion = ContinuousMotion(8, 4, phase)
        seen = []
        motion.net[0].register_forward_hook(lambda m, args, out: seen.append(args[0][..., 8:]))
        motion(noise, times)
        assert differ != torch.allclose(seen[0][0], seen[0][1]), phase


def test_content_styles_start_as_the_plain_renderer_and_hold_for_the_clip():
    """The content styles are zero at the start (the image generator's network as it is); once
    learned they scale every block by the content alone: the same content, the same style on
    every frame, so a clip's frames differ only by motion."""
    shape = VideoShape(resolution=32, channels=1, content_dim=6, motion_dim=4, g_width=8)
    G = VideoG(shape).eval()
    latents = torch.randn(5, 10)
    with torch.no_grad():
        assert torch.equal(G.render(latents), G.renderer(latents))
        for style in G.styles:
            style.weight.normal_()
        assert not torch.allclose(G.render(latents), G.renderer(latents))
        moved = torch.cat([latents[:, :6], torch.randn(5, 4)], dim=1)  # content kept
        assert not torch.allclose(G.render(latents), G.render(moved))
        G.renderer.blocks[0].conv.weight[6:] = 0  # (in, out, k, k): the motion inputs cut off
        assert torch.allclose(G.render(latents), G.render(moved))  # styles see content only


@pytest.mark.parametrize("variant", [{"train_frames": 4}, {"temporal_d": "3d", "train_frames": 4},
                                     {"temporal_d": "trunk"},
                                     {"motion": "mocogan", "temporal_fakes": "none"}],
                         ids=["all-frames", "3d-conv-D", "trunk-D", "mocogan"])
def test_every_variant_trains(variant, tmp_path):
    """Sparse training (the default, in the conformance suite), whole clips, the 3D-conv D
    and MoCoGAN's motion all learn: one batch trained repeatedly lowers the discriminators'
    loss on it."""
    suite = VideoConformance()
    suite.tiny_config = {**TINY, **variant}
    (tmp_path / "data").mkdir()
    suite.test_one_batch_repeated_lowers_loss(suite.make_data(tmp_path / "data"), tmp_path)


@pytest.mark.parametrize("classes", [False, True], ids=["unlabelled", "classes+aux-classifier"])
def test_stop_and_resume_is_bit_exact_on_cpu(classes, tmp_path):
    """Stopped at step 3 and resumed to 6 equals 6 steps straight: every loss, every weight,
    the moving average, both optimizers and the RNG states. Previews run in between (they
    must not disturb the training RNG). With classes, the auxiliary classifier too."""
    if classes:
        data = str(write_clip_folder(tmp_path / "data", classes=2, per_class=3, frames=6))
        extra = ["class_loss=1"]
    else:
        data = str(write_npy(tmp_path / "data" / "clips.npy", "NTHWC", n=6, frames=6, size=24))
        extra = []
    settings = [f"{k}={v}" for k, v in TINY.items()] + CPU + ["preview_every=2"] + extra
    straight, split = tmp_path / "straight", tmp_path / "split"
    status, _ = api.train(VideoGenerator, data=data, run_dir=str(straight), max_steps=6,
                          settings=settings, events="none")
    assert status == "done"
    status, _ = api.train(VideoGenerator, data=data, run_dir=str(split), max_steps=6,
                          settings=settings, events="none", callbacks=[StopAfter(3)])
    assert status == "stopped" and RunDir(split).checkpoints()[-1].step == 3
    status, _ = api.train(VideoGenerator, resume=str(split), max_steps=6, events="none")
    assert status == "done"
    a, b = progress_losses(straight), progress_losses(split)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    assert [a[s] for s in sorted(a)] == [b[s] for s in sorted(b)]
    ta, tb = final_tensors(straight), final_tensors(split)
    assert ta.keys() == tb.keys() and any(k.startswith("G_ema.") for k in ta)
    assert any(k.startswith("D_time.") for k in ta)
    assert any(k.startswith("classifier.") for k in ta) == classes
    for name in ta:
        assert np.array_equal(ta[name], tb[name]), name


def class_events(run) -> list[dict]:
    return [e for e in RunDir(run).events() if e["event"] == "progress"]


def light_and_dark_clips(folder) -> str:
    """Two classes a frame shows at a glance: moving squares on light backgrounds, and the same
    clips with their colours inverted (dark backgrounds)."""
    for i in range(3):
        clip = moving_square(6, 24, seed=i)
        write_video(folder / "light" / f"clip{i}.mp4", clip)
        write_video(folder / "dark" / f"clip{i}.mp4", 255 - clip)
    return str(folder)


def test_the_auxiliary_classifier_learns_the_real_frames_classes(tmp_path):
    """With classes and class_loss > 0, a classifier on the frame D's features learns which
    class a real frame is (its cross-entropy falls well below chance's ln 2) and G is scored by
    it; with class_loss 0, or without classes, there is no classifier and no class loss."""
    data = light_and_dark_clips(tmp_path / "data")
    base = [f"{k}={v}" for k, v in TINY.items()] + CPU + ["preview_every=0", "lr=1e-3"]
    run = tmp_path / "aux"
    status, _ = api.train(VideoGenerator, data=data, run_dir=str(run), max_steps=60,
                          settings=base + ["class_loss=1"], events="none")
    assert status == "done"
    progress = class_events(run)
    first, last = np.mean([e["d_class_loss"] for e in progress[:5]]), np.mean([e["d_class_loss"] for e in progress[-10:]])
    assert first > 0.5 and last < 0.35 * first, (first, last)
    assert all(np.isfinite(e["g_class_loss"]) for e in progress)
    _, gen, _ = api.load_run(str(run), device="cpu", threads=1)
    assert gen.model.classifier is not None and gen.model.classifier.out_features == 2

    for name, settings, source in [("off", base + ["class_loss=0"], data),
                                   ("unlabelled", base + ["class_loss=1"],
                                    str(write_npy(tmp_path / "flat" / "clips.npy", "NTHWC", n=6, frames=6)))]:
        status, _ = api.train(VideoGenerator, data=source, run_dir=str(tmp_path / name), max_steps=2,
                              settings=base[:-1] + settings[len(base) - 1:], events="none")
        assert status == "done"
        assert not any("d_class_loss" in e for e in class_events(tmp_path / name)), name
        _, gen, _ = api.load_run(str(tmp_path / name), device="cpu", threads=1)
        assert gen.model.classifier is None, name


def test_evaluation_scores_and_their_baselines():
    """evaluate() gives the temporal and per-frame scores with the networks named (the best
    checkpoint is the lowest val_tfd); evaluate_baselines() scores what the numbers mean."""
    gen = untrained(frames=6, eval_clips=4, feature_steps=3)
    gen.train_clips, gen.train_labels = moving_squares(6, frames=6, size=32), np.full(6, -1)
    metrics = gen.evaluate()
    assert VideoGenerator.best_metric == "val_tfd" and VideoGenerator.best_mode == "min"
    assert {"val_tfd", "val_frame_fid", "val_frame_kid", "val_motion_gap", "val_flicker"} <= set(metrics)
    assert metrics["val_clips"] == 4 and metrics["val_clip_extractor"].startswith("own-clipnet:")
    assert metrics["val_frame_extractor"].startswith("own-autoencoder:")
    rows = gen.evaluate_baselines()
    assert set(rows) == {"real", "static", "shuffled", "independent"}
    assert rows["static"]["motion_fake"] == 0 and rows["real"]["motion_fake"] > 0
    assert rows["real"]["clip_extractor"] == metrics["val_clip_extractor"]


def test_data_report_holds_out_clips_and_previews_clips(tmp_path):
    """Clips are held out for the scores (val_fraction of 10 or more clips; none of fewer,
    said in the report), and the report previews clips that play at the data's rate."""
    data = str(write_npy(tmp_path / "many.npy", "NTHWC", n=12, frames=6, size=24))
    gen = VideoGenerator(VideoGenerator.config_from(TINY))
    report = gen.load_data(data, None, tmp_path / "cache")
    assert report.summary["clips"] == 10 and report.summary["held_out"].startswith("2 of the 12 clips")
    assert len(gen.train_clips) == 10 and len(gen.val_clips) == 2
    assert report.summary["channels"] == "rgb" and report.summary["frames"] == 4
    assert [s.kind for s in report.preview] == ["video"] * 8
    assert report.preview[0].data.shape == (4, 32, 32, 3) and report.preview[0].meta["fps"] == gen.fps

    few = str(write_npy(tmp_path / "few.npy", "NTHWC", n=6, frames=6, size=24))
    gen = VideoGenerator(VideoGenerator.config_from(TINY))
    report = gen.load_data(few, None, tmp_path / "cache")
    assert report.summary["clips"] == 6 and gen.val_clips is None
    assert report.summary["held_out"].startswith("none: only 6 clips")
