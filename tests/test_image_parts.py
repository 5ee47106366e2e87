"""The image generator's parts, each on its own: networks, DiffAugment, EMA, FID/KID, latents."""

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT
from generators.image import augment as aug
from generators.image.evaluation import fid, frechet_distance, kid
from generators.image.model import (GAN, Discriminator, GANShape, Generator, ema_decay_at,
                                    recompute_batchnorm_stats, update_ema)
from generators.image.sampling import (grid, interpolation, latent_for_seed, latents_for_seeds,
                                       slerp, to_uint8)


def test_model_files_are_plain_torch():
    """model, augment, sampling and evaluation import nothing from the app (only data.py and
    the adapter know studio)."""
    for name in ("model", "augment", "sampling", "evaluation"):
        tree = ast.parse((ROOT / "generators" / "image" / f"{name}.py").read_text())
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        assert not [m for m in imported if m.split(".")[0] == "studio"], name


# --- networks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("resolution", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("n_classes", [0, 3])
def test_shapes_for_every_size_channel_count_and_conditioning(resolution, channels, n_classes):
    shape = GANShape(resolution=resolution, channels=channels, latent_dim=8, g_width=4, d_width=4,
                     n_classes=n_classes)
    G, D = Generator(shape), Discriminator(shape)
    labels = torch.tensor([0, 2]) if n_classes else None
    images = G(torch.randn(2, 8), labels)
    assert images.shape == (2, channels, resolution, resolution)
    assert images.abs().max() <= 1
    logits = D(images, labels)
    assert logits.shape == (2,)
    logits.sum().backward()  # gradients reach G through D
    assert all(p.grad is not None for p in G.parameters())


def test_unsupported_resolution_is_refused_by_the_shape():
    with pytest.raises(ValueError, match="48"):
        GANShape(resolution=48)


def test_projection_discriminator_depends_on_the_label():
    shape = GANShape(resolution=32, channels=1, latent_dim=8, g_width=4, d_width=4, n_classes=2)
    D = Discriminator(shape).eval()
    x = torch.randn(1, 1, 32, 32)
    assert D(x, torch.tensor([0])) != D(x, torch.tensor([1]))


def test_widths_follow_dcgan():
    """The PyTorch DCGAN example's 64 px generator: 8, 4, 2, 1 times ngf from 4x4 up."""
    assert GANShape(resolution=64).widths(64) == [512, 256, 128, 64]
    assert GANShape(resolution=32).widths(64) == [256, 128, 64]
    assert GANShape(resolution=128).widths(64) == [512, 512, 256, 128, 64]  # capped at 8x


# --- DiffAugment -------------------------------------------------------------------------------

def test_diffaugment_is_differentiable():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    params = aug.draw(3, 8, 8, aug.POLICIES, torch.device("cpu"))
    assert torch.autograd.gradcheck(lambda t: aug.apply(t, params), (x,))


def test_diffaugment_gradient_reaches_the_generator():
    shape = GANShape(resolution=32, channels=3, latent_dim=8, g_width=4, d_width=4)
    G = Generator(shape)
    out = aug.augment(G(torch.randn(4, 8)), aug.POLICIES)
    out.square().mean().backward()
    assert G.blocks[0].conv.weight.grad.abs().sum() > 0


def test_diffaugment_transforms_a_batch_as_it_would_each_image():
    torch.manual_seed(1)
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    params = aug.draw(6, 16, 16, aug.POLICIES, torch.device("cpu"))
    whole = aug.apply(x, params)
    one_by_one = torch.cat([aug.apply(x[i:i + 1], params.select(slice(i, i + 1))) for i in range(6)])
    assert torch.allclose(whole, one_by_one, atol=1e-6)
    # the same parameters give the same result, and identical images transform identically
    assert torch.equal(aug.apply(x, params), whole)
    same = x[:1].expand(6, -1, -1, -1)
    shared = params.select(torch.zeros(6, dtype=torch.long))
    out = aug.apply(same, shared)
    assert torch.allclose(out, out[:1].expand_as(out))


def test_diffaugment_moves_all_channels_of_an_image_alike():
    torch.manual_seed(2)
    grey = (torch.rand(8, 1, 16, 16) * 2 - 1).expand(-1, 3, -1, -1)  # three equal channels
    out = aug.augment(grey, aug.POLICIES)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-6) and torch.allclose(out[:, 1], out[:, 2], atol=1e-6)


def test_translation_shifts_whole_pixels_with_zeros_coming_in():
    x = torch.arange(1, 26, dtype=torch.float32).view(1, 1, 5, 5)
    out = aug.translate(x, torch.tensor([2]), torch.tensor([-1]))  # right 2, up 1
    expected = torch.zeros(5, 5)
    expected[0:4, 2:5] = x[0, 0, 1:5, 0:3]
    assert torch.equal(out[0, 0], expected)


def test_cutout_zeroes_a_square_of_half_the_side():
    x = torch.ones(2, 3, 16, 16)
    out = aug.cutout(x, torch.tensor([8, 0]), torch.tensor([8, 0]))
    assert int((out[0, 0] == 0).sum()) == 8 * 8  # centred: the whole square
    assert int((out[1, 0] == 0).sum()) == 4 * 4  # at the corner: clipped to a quarter
    assert torch.equal(out[:, 0], out[:, 2])


def test_augmentation_probability_zero_is_the_identity_and_one_augments_every_image():
    torch.manual_seed(3)
    x = torch.rand(64, 3, 16, 16) * 2 - 1
    none = aug.draw(64, 16, 16, aug.POLICIES, torch.device("cpu"), probability=torch.tensor(0.0))
    assert torch.allclose(aug.apply(x, none), x, atol=1e-6)  # (x - mean) * 1 + mean rounds
    every = aug.draw(64, 16, 16, ("translation", "cutout"), torch.device("cpu"), probability=1.0)
    assert bool((every.cut_x >= 0).all())  # every image has a cutout inside it
    some = aug.draw(4000, 16, 16, ("cutout",), torch.device("cpu"), probability=0.25)
    assert 0.2 < float((some.cut_x >= 0).float().mean()) < 0.3


def test_adaptive_augmentation_moves_the_probability_by_the_ada_rule():
    from generators.image.model import ADA_IMAGES, ADA_INTERVAL
    gan = GAN(GANShape(resolution=32, channels=1, latent_dim=8, g_width=4, d_width=4), augment_p=0.0)
    sure = torch.ones(50)  # D calls every real image real: r = 1 > target, so p rises
    for step in range(ADA_INTERVAL):
        gan.adapt_augmentation(sure, target=0.6, step=step)
    assert float(gan.augment_p) == pytest.approx(ADA_INTERVAL * 50 / ADA_IMAGES)
    assert float(gan.real_sign_count) == 0  # the evidence starts afresh
    for step in range(ADA_INTERVAL, 3 * ADA_INTERVAL):
        gan.adapt_augmentation(-sure, target=0.6, step=step)  # unsure: p falls, not below 0
    assert float(gan.augment_p) == 0.0


def test_augment_policy_is_checked():
    assert aug.parse_policy("color, cutout") == ("color", "cutout")
    assert aug.parse_policy("none") == ()
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        aug.parse_policy("color,flip")


# --- EMA ---------------------------------------------------------------------------------------

def test_ema_update_arithmetic():
    torch.manual_seed(0)
    model, ema = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    before = [p.detach().clone() for p in ema.parameters()]
    update_ema(ema, model, 0.9)
    for old, new, p in zip(before, ema.parameters(), model.parameters()):
        assert torch.allclose(new, 0.9 * old + 0.1 * p, atol=1e-7)
    update_ema(ema, model, 1.0)  # decay 1: unchanged
    update_ema(ema, model, 0.0)  # decay 0: a copy
    assert all(torch.equal(a, b) for a, b in zip(ema.parameters(), model.parameters()))


def test_ema_copies_buffers_and_counts_its_updates():
    gan = GAN(GANShape(resolution=32, channels=1, latent_dim=8, g_width=4, d_width=4))
    gan.G(torch.randn(4, 8))  # moves G's running statistics
    gan.update_ema(0.5)
    gan.update_ema(0.5)
    assert int(gan.ema_updates) == 2
    for (name, b_ema), b in zip(gan.G_ema.named_buffers(), gan.G.buffers()):
        assert torch.equal(b_ema, b), name
    assert not any(p.requires_grad for p in gan.G_ema.parameters())
    gan.train()
    assert not gan.G_ema.training  # G_ema always samples with fixed statistics


def test_ema_decay_ramps_up_to_its_value():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.999) == pytest.approx(91 / 100)
    assert ema_decay_at(10**6, 0.999) == 0.999
    assert ema_decay_at(5, 0.0) == 0.0


def test_batchnorm_statistics_are_recomputed_exactly():
    torch.manual_seed(0)
    G = Generator(GANShape(resolution=32, channels=1, latent_dim=8, g_width=4, d_width=4))
    G.eval()
    z = torch.randn(48, 8)
    recompute_batchnorm_stats(G, z, None, batch=16)  # three equal batches: the plain mean
    first = G.blocks[0]
    with torch.no_grad():
        pre = first.conv(z[:, :, None, None])  # what the first BatchNorm normalises
    assert torch.allclose(first.norm.running_mean, pre.mean(dim=(0, 2, 3)), atol=1e-5)
    assert not G.training and first.norm.momentum == 0.1  # left as it was


# --- FID and KID -------------------------------------------------------------------------------

def test_frechet_distance_closed_form_for_commuting_covariances():
    """S1 = Q diag(a) Q^T and S2 = Q diag(b) Q^T commute: the distance is
    |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2."""
    rng = np.random.default_rng(0)
    d = 16
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-9)
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2 for standard deviations s
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)


def test_frechet_distance_matches_scipy_sqrtm_on_real_features():
    """Against the formula pytorch-fid uses: scipy's general matrix square root of S1 S2."""
    from scipy import linalg
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 24)) @ rng.normal(size=(24, 24))
    y = rng.normal(size=(400, 24)) @ rng.normal(size=(24, 24)) + 0.3
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-7)
    assert fid(x, x) == pytest.approx(0, abs=1e-6)


def test_kid_matches_the_unbiased_mmd_written_out():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 5)) + 0.5
    k = lambda a, b: (a @ b / 5 + 1) ** 3
    m = 30
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    mean, std = kid(x, y, subsets=3, subset_size=30)  # all of each set: every subset is the same
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-9) and std == pytest.approx(0, abs=1e-12)
    same, _ = kid(x, rng.normal(size=(30, 5)), subsets=20, subset_size=30)
    assert abs(same) < mean


# --- latents and images -------------------------------------------------------------------------

def test_a_seed_gives_the_same_latent_whatever_else_is_drawn():
    one = latent_for_seed(7, 32)
    many = latents_for_seeds([5, 6, 7, 8], 32)
    assert torch.equal(one, many[2])
    assert not torch.equal(many[0], many[1])


def test_truncation_bounds_the_latent():
    z = latent_for_seed(3, 4096, truncation=0.5)
    assert z.abs().max() <= 0.5
    assert torch.equal(z, latent_for_seed(3, 4096, truncation=0.5))


def test_slerp_runs_along_the_sphere_between_its_ends():
    a, b = latent_for_seed(1, 64), latent_for_seed(2, 64)
    frames = interpolation(a, b, 5)
    assert frames.shape == (5, 64)
    assert torch.allclose(frames[0], a, atol=1e-6) and torch.allclose(frames[-1], b, atol=1e-6)
    # between unit ends: constant angular speed, and the norm stays 1 (a straight line dips)
    u, v = a / a.norm(), b / b.norm()
    arc = interpolation(u, v, 5)
    angle = lambda p, q: torch.arccos((p @ q / (p.norm() * q.norm())).clamp(-1, 1))
    steps = [float(angle(arc[i], arc[i + 1])) for i in range(4)]
    assert max(steps) - min(steps) < 1e-4
    assert torch.allclose(arc.norm(dim=1), torch.ones(5), atol=1e-6)
    assert float(slerp(u, v, 0.5).norm()) == pytest.approx(1.0, abs=1e-6)


def test_images_to_uint8_and_grid():
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3)
    assert to_uint8(x).tolist() == [[[[0], [128], [255]]]]
    images = torch.zeros(5, 3, 8, 8)
    tiled = grid(images, columns=3, padding=2)
    assert tiled.shape == (2 * 10 + 2, 3 * 10 + 2, 3) and tiled.dtype == np.uint8
    assert grid(torch.zeros(4, 1, 8, 8)).shape[-1] == 1  # grey stays grey
