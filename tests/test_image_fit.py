"""Issue 13, small images come out blurrier than the data: images a little smaller than the
resolution are padded with their own background instead of scaled up (the `fit` setting), the
evaluation reports the midtone share and gradient sharpness of samples and real images, and the
moving average of G can ramp up as StyleGAN2's does (`ema_rampup`)."""

import math

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import SHARED
from generators.image import ImageGenerator
from generators.image.data import fit_to, load_images, pads, read_idx
from generators.image.evaluation import sharpness_statistics
from generators.image.model import ema_decay_at
from image_fixtures import tiny_settings, write_shapes_folder
from studio import api
from studio.callbacks import EvalMode

CPU = ["device=cpu", "threads=1", "log_every=1", "eval_every=0", "checkpoint_every=0",
       "preview_every=0"]


def digit(side: int = 28, background: int = 0, ink: int = 255) -> np.ndarray:
    """A hard-edged (two-valued) grey (side, side, 1) image: a ring of ink on a background."""
    image = np.full((side, side, 1), background, np.uint8)
    image[side // 4:3 * side // 4, side // 4:3 * side // 4] = ink
    image[side // 3:2 * side // 3, side // 3:2 * side // 3] = background
    return image


def blurred(images: np.ndarray, radius: float = 1.0) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(i[..., 0]).filter(ImageFilter.GaussianBlur(radius)))[..., None]
                     for i in images])


# --- fit ---------------------------------------------------------------------------------------------

def test_pad_keeps_every_pixel_in_the_centre_on_the_images_background():
    for background, ink in ((0, 255), (255, 0)):  # MNIST's black, and ink on white paper
        image = digit(background=background, ink=ink)
        padded = fit_to(image, 32, "pad")
        assert padded.shape == (32, 32, 1)
        assert np.array_equal(padded[2:30, 2:30], image)  # unscaled, exactly centred
        ring = np.ones((32, 32), bool)
        ring[2:30, 2:30] = False
        assert (padded[ring] == background).all()


def test_pad_takes_each_images_own_background_colour_per_channel():
    image = np.zeros((30, 30, 3), np.uint8)
    image[:] = (200, 120, 40)
    image[10:20, 10:20] = (0, 0, 255)
    image[0, :3] = (0, 0, 0)  # a few strokes touching the edge do not change the median
    padded = fit_to(image, 32, "pad")
    assert np.array_equal(padded[1:31, 1:31], image)
    assert (padded[0] == (200, 120, 40)).all() and (padded[:, -1] == (200, 120, 40)).all()


def test_resize_interpolates():
    image = digit()
    resized = fit_to(image, 32, "resize")
    assert resized.shape == (32, 32, 1)
    assert not np.array_equal(resized[2:30, 2:30], image)
    # Scaling two-valued pixels by 32/28 makes values between them (4% of this image's
    # pixels): the blur the issue measured. Padding makes none.
    assert sharpness_statistics(resized[None])["midtone"] > 0.02
    assert sharpness_statistics(fit_to(image, 32, "pad")[None])["midtone"] == 0.0


def test_auto_pads_a_little_smaller_image_and_resizes_a_much_smaller_one():
    assert pads((28, 28), 32, "auto") and pads((30, 32), 32, "auto")
    assert not pads((20, 20), 32, "auto") and not pads((27, 28), 32, "auto")
    assert not pads((32, 32), 32, "auto") and not pads((40, 40), 32, "auto")
    assert pads((20, 20), 32, "pad") and not pads((28, 28), 32, "resize")
    small = digit(20)
    assert np.array_equal(fit_to(small, 32, "auto"), fit_to(small, 32, "resize"))
    assert np.array_equal(fit_to(digit(28), 32, "auto"), fit_to(digit(28), 32, "pad"))
    with pytest.raises(ValueError, match="fit must be one of"):
        pads((28, 28), 32, "stretch")


def test_pad_leaves_larger_images_to_be_scaled_down():
    """Nothing to pad: a larger image is scaled and cropped whatever the fit."""
    image = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    assert np.array_equal(fit_to(image, 32, "pad"), fit_to(image, 32, "resize"))


def write_folder(folder, side: int, n: int = 8):
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(digit(side, ink=128 + i)[..., 0]).save(folder / f"{i}.png")
    return str(folder)


def test_a_folder_is_fitted_as_asked_and_the_cache_key_names_the_fit(tmp_path):
    folder = write_folder(tmp_path / "digits", 28)
    sets = {fit: load_images(folder, 32, "white", tmp_path / "cache", fit=fit)
            for fit in ("auto", "pad", "resize")}
    assert len({data.key for data in sets.values()}) == 3  # each fit has a cache entry of its own
    assert np.array_equal(sets["auto"].images, sets["pad"].images)
    assert not np.array_equal(sets["pad"].images, sets["resize"].images)
    assert sets["pad"].images.shape == sets["resize"].images.shape == (8, 32, 32, 1)
    assert np.array_equal(sets["pad"].images[0, 2:30, 2:30], digit(28, ink=128))
    again = load_images(folder, 32, "white", tmp_path / "cache", fit="resize")  # from the cache
    assert again.key == sets["resize"].key and np.array_equal(again.images, sets["resize"].images)

    much_smaller = write_folder(tmp_path / "small", 20)
    auto = load_images(much_smaller, 32, "white", tmp_path / "cache", fit="auto")
    resize = load_images(much_smaller, 32, "white", tmp_path / "cache", fit="resize")
    assert np.array_equal(auto.images, resize.images)


def test_mnist_digits_are_padded_to_32_px_by_default(tmp_path):
    raw = read_idx(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz")
    data = load_images(str(SHARED / "mnist"), 32, "white", tmp_path / "cache")
    assert data.images.shape == (10000, 32, 32, 1)
    assert np.array_equal(data.images[:, 2:30, 2:30, 0], raw)
    assert (data.images[:, :2] == 0).all() and (data.images[:, :, -2:] == 0).all()  # black


# --- sharpness ---------------------------------------------------------------------------------------

def test_hard_edges_have_no_midtones_and_blur_adds_them_and_lowers_sharpness():
    sharp = np.stack([digit(32), digit(32, background=255, ink=0)])
    soft = blurred(sharp)
    hard, smooth = sharpness_statistics(sharp), sharpness_statistics(soft)
    assert hard["midtone"] == 0.0
    assert smooth["midtone"] > 0.1
    assert smooth["sharpness"] < 0.7 * hard["sharpness"]
    flat = np.full((2, 32, 32, 3), 128, np.uint8)
    assert sharpness_statistics(flat) == {"midtone": 1.0, "sharpness": 0.0}


def test_a_single_step_edge_has_the_sharpness_written_out():
    """A vertical step from 0 to 1 across a W x W image: one of the (W-1) x (W-1) differences
    in each row is 1, so the RMS gradient is sqrt(1 / (W-1))."""
    image = np.zeros((1, 8, 8, 1), np.uint8)
    image[:, :, 4:] = 255
    assert sharpness_statistics(image)["sharpness"] == pytest.approx(math.sqrt(1 / 7))


def test_rendered_images_and_their_pixels_give_the_same_statistics():
    import torch
    pixels = np.concatenate([digit(32)[None], blurred(digit(32)[None])])
    rendered = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    by_pixels, by_render = sharpness_statistics(pixels), sharpness_statistics(rendered, batch=1)
    assert by_render == pytest.approx(by_pixels)


def test_evaluate_reports_sharpness_of_samples_and_real_images(tmp_path):
    data = str(write_shapes_folder(tmp_path / "data"))
    engine, _ = api.prepare_training(ImageGenerator, data=data, run_dir=str(tmp_path / "run"),
                                     max_steps=2, settings=tiny_settings() + CPU, events="none")
    with EvalMode(engine):
        metrics = engine.generator.evaluate()
    for key in ("val_midtone", "val_midtone_real", "val_sharpness", "val_sharpness_real"):
        assert math.isfinite(metrics[key]), key
    real = engine.generator.train_set.images
    pick = np.sort(np.random.default_rng(0).choice(len(real), metrics["val_images"], replace=False))
    expected = sharpness_statistics(real[pick])
    assert metrics["val_midtone_real"] == pytest.approx(expected["midtone"])
    assert metrics["val_sharpness_real"] == pytest.approx(expected["sharpness"])
    assert 0 <= metrics["val_midtone"] <= 1 and metrics["val_sharpness"] >= 0


# --- the moving average's ramp-up ------------------------------------------------------------------

def test_ema_rampup_caps_the_half_life_at_a_share_of_the_images_seen():
    # StyleGAN2: half-life <= rampup x images seen; with t+1 steps seen, 0.5 ** (1 / (rampup (t+1))).
    assert ema_decay_at(0, 0.999, rampup=0.05) == pytest.approx(0.5 ** 20)
    assert ema_decay_at(19, 0.999, rampup=0.05) == pytest.approx(0.5)  # half-life 1 step
    assert ema_decay_at(199, 0.999, rampup=0.05) == pytest.approx(0.5 ** 0.1)  # 10 steps
    assert ema_decay_at(10**6, 0.999, rampup=0.05) == 0.999
    assert ema_decay_at(5, 0.0, rampup=0.05) == 0.0


def test_without_rampup_the_decay_ramps_as_before():
    for step in (0, 90, 1500, 10**6):
        assert ema_decay_at(step, 0.999) == ema_decay_at(step, 0.999, rampup=0.0) == \
            min(0.999, (1 + step) / (10 + step))


@pytest.mark.parametrize("rampup", [0.0, 0.05])
def test_after_1500_steps_the_first_500_weigh_almost_nothing_in_the_average(rampup):
    """The issue feared that with ema_decay 0.999 a 1,500-step run averages in its first few
    hundred steps' weights. Either ramp keeps their share below 0.1%: step s's weights enter
    with (1 - d_s) and then shrink by every later d_k."""
    decays = np.array([ema_decay_at(t, 0.999, rampup=rampup) for t in range(1500)])
    later = np.append(np.cumprod(decays[::-1])[::-1][1:], 1.0)  # prod of d_k over k > s
    weights = (1 - decays) * later
    assert weights.sum() == pytest.approx(1 - decays.prod())  # the initial weights keep the rest
    assert weights[:500].sum() < 0.001
    assert weights[750:].sum() > 0.99
