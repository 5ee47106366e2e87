"""sample_batch of the image and video generators: several requests (each its own params, n,
seed and prompt) in as few forward passes as the serving batch allows, each answered as
sample() answers it alone."""

from pathlib import Path

import numpy as np
import pytest
import torch

from generators.image import SERVE_BATCH
from generators.video import SERVE_CLIPS
from studio import api
from studio.contract import SampleRequest
from studio.errors import StudioError

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


@pytest.fixture(scope="module")
def image_gen():
    _, gen, _ = api.load_run(str(DEMO / "image"), device="cpu")
    return gen


@pytest.fixture(scope="module")
def video_gen():
    _, gen, _ = api.load_run(str(DEMO / "video"), device="cpu")
    return gen


def forward_sizes(module: torch.nn.Module) -> tuple[list[int], object]:
    """The batch size of every forward of `module` (and the hook to remove)."""
    sizes = []
    hook = module.register_forward_hook(lambda m, args, out: sizes.append(len(args[0])))
    return sizes, hook


def assert_same_answers(got, want):
    assert len(got) == len(want)
    for answer, alone in zip(got, want):
        assert len(answer) == len(alone)
        for sample, reference in zip(answer, alone):
            assert sample.kind == reference.kind and sample.meta == reference.meta
            assert sample.data.shape == reference.data.shape and sample.data.dtype == np.uint8
            difference = np.abs(sample.data.astype(int) - reference.data.astype(int)).max()
            assert difference <= 1


def test_image_requests_of_different_classes_and_truncations_render_together(image_gen):
    gen = image_gen
    P = gen.SampleConfig
    requests = [SampleRequest(P(class_label=1), n=3, seed=5),
                SampleRequest(P(truncation=0.7), n=2, seed=11, prompt="star"),
                SampleRequest(P(class_label=0, truncation=1.2), n=1, seed=40),
                SampleRequest(P(), n=4, seed=100)]  # the classes in turn by seed
    with torch.no_grad():
        alone = [gen.sample(r.params, r.n, r.seed, r.prompt) for r in requests]
        sizes, hook = forward_sizes(gen.model.G_ema)
        try:
            together = gen.sample_batch(requests)
        finally:
            hook.remove()
    assert sizes == [10]  # all ten images in one forward pass
    assert_same_answers(together, alone)
    classes = [[s.meta["class"] for s in answer] for answer in together]
    assert classes == [["square"] * 3, ["star"] * 2, ["circle"], ["circle", "square", "triangle", "star"]]
    assert [s.meta["truncation"] for s in together[1]] == [0.7, 0.7]
    assert not np.array_equal(together[0][0].data, together[0][1].data)  # seeds differ


def test_many_image_requests_go_in_chunks_of_the_serving_batch(image_gen):
    gen = image_gen
    requests = [SampleRequest(gen.SampleConfig(class_label=i % 4), n=7, seed=i) for i in range(12)]
    with torch.no_grad():
        sizes, hook = forward_sizes(gen.model.G_ema)
        try:
            together = gen.sample_batch(requests)
        finally:
            hook.remove()
        alone = [gen.sample(r.params, r.n, r.seed, r.prompt) for r in requests]
    assert sizes == [SERVE_BATCH, 84 - SERVE_BATCH]
    assert_same_answers(together, alone)


def test_image_grids_and_interpolations_are_answered_by_sample_alone(image_gen):
    gen = image_gen
    P = gen.SampleConfig
    requests = [SampleRequest(P(grid=True), n=4, seed=2), SampleRequest(P(class_label=2), n=2, seed=3),
                SampleRequest(P(interpolate_to=9, frames=3), n=1, seed=1)]
    with torch.no_grad():
        together = gen.sample_batch(requests)
        alone = [gen.sample(r.params, r.n, r.seed, r.prompt) for r in requests]
    assert_same_answers(together, alone)
    assert "grid" in together[0][0].meta and [s.meta["frame"] for s in together[2]] == [0, 1, 2]


def test_a_bad_image_request_is_refused_before_anything_renders(image_gen):
    gen = image_gen
    P = gen.SampleConfig
    requests = [SampleRequest(P(), n=2, seed=0), SampleRequest(P(grid=True), n=2, seed=0, prompt="hexagon")]
    sizes, hook = forward_sizes(gen.model.G_ema)
    try:
        with torch.no_grad(), pytest.raises(StudioError, match="no class 'hexagon'"):
            gen.sample_batch(requests)
    finally:
        hook.remove()
    assert sizes == []


def test_video_requests_render_together_by_frame_times(video_gen):
    gen = video_gen
    P = gen.SampleConfig
    requests = [SampleRequest(P(class_label=1), n=2, seed=5),
                SampleRequest(P(truncation=0.8), n=2, seed=11, prompt="triangle"),
                SampleRequest(P(frames=6, fps=16.0), n=2, seed=3),  # other frame times
                SampleRequest(P(class_label=0, truncation=1.2, motion_seed=7), n=1, seed=40),
                SampleRequest(P(interpolate_to=4, steps=2), n=1, seed=1)]  # by sample alone
    with torch.no_grad():
        alone = [gen.sample(r.params, r.n, r.seed, r.prompt) for r in requests]
        calls = []
        render_clips = gen.render_clips
        gen.render_clips = lambda *args, **kwargs: calls.append(len(args[0])) or render_clips(*args, **kwargs)
        try:
            together = gen.sample_batch(requests)
        finally:
            del gen.render_clips
    # the 16-frame clips of three requests at once, the 6-frame ones, the interpolation
    assert sorted(calls) == [2, 2, 5]
    assert_same_answers(together, alone)
    assert [s.meta["class"] for s in together[1]] == ["triangle", "triangle"]
    assert [s.data.shape[0] for s in together[2]] == [6, 6]
    assert together[3][0].meta["motion_seed"] == 7 and together[3][0].meta["truncation"] == 1.2


def test_many_video_clips_go_in_chunks_of_the_serving_batch(video_gen):
    gen = video_gen
    requests = [SampleRequest(gen.SampleConfig(frames=2, class_label=i % 3), n=9, seed=10 * i)
                for i in range(8)]
    with torch.no_grad():
        calls = []
        render_clips = gen.render_clips
        gen.render_clips = lambda *args, **kwargs: calls.append(len(args[0])) or render_clips(*args, **kwargs)
        try:
            together = gen.sample_batch(requests)
        finally:
            del gen.render_clips
        alone = [gen.sample(r.params, r.n, r.seed, r.prompt) for r in requests]
    assert calls == [SERVE_CLIPS, 72 - SERVE_CLIPS]
    assert_same_answers(together, alone)
