"""The image generator's declarations: its settings (ImageConfig, ImageSampleConfig), name,
version, presets and training defaults. This module imports no torch, so `studio generators`,
`studio config image` and the window's generator picker read it without loading the model's
code (studio/registry.py: the registry finds a generator's `config.py` through DECLARATIONS).
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.config import AUTO, setting
from studio.contract import Generator

# The validation the settings need lives here, not in augment.py and data.py (which import it
# from here): they import torch and numpy, and listing generators must not.
FITS = ("auto", "pad", "resize")
POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """"color,translation,cutout" -> ("color", "translation", "cutout"); "" or "none" -> ()."""
    return parse_list(policy, POLICIES, "augmentation")


def parse_list(value: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """A comma-separated setting of names from `allowed`; "" or "none" -> ()."""
    parts = tuple(p.strip() for p in value.split(",") if p.strip() and p.strip() != "none")
    unknown = [p for p in parts if p not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} '{unknown[0]}'; use any of {', '.join(allowed)}")
    return parts


@dataclass
class ImageConfig:
    resolution: int = setting(32, "image side in pixels (images are scaled and centre-cropped "
                              "to it, or padded: see fit)", choices=(32, 64, 128))
    fit: str = setting("auto", "how images smaller than the resolution are fitted to it: pad "
                       "(centred unscaled on their own background colour), resize (scaled up: "
                       "blurs every edge), auto: pad when at most 4 px smaller on each side "
                       "(MNIST's 28 px at 32), else resize. Larger images are always scaled "
                       "down and centre-cropped", choices=FITS)
    channels: str = setting("auto", "auto: grey when every image is grey, else RGB",
                            choices=("auto", "grey", "rgb"))
    conditional: str = setting("auto", "auto: class-conditional when the data has classes (one "
                               "subfolder per class, or MNIST labels); yes requires classes",
                               choices=("auto", "yes", "no"))
    latent_dim: int = setting(128, "size of the noise vector each image is drawn from", min=2, max=1024)
    g_width: int = setting(64, "generator width: channels of its last hidden layer (DCGAN's "
                           "ngf; the 4x4 layer has 4-8x as many)", min=4, max=1024)
    d_width: int = setting(64, "discriminator width: channels of its first layer (DCGAN's ndf)",
                           min=4, max=1024)
    loss: str = setting("hinge", "hinge (SAGAN/BigGAN) or ns: the non-saturating logistic loss",
                        choices=("hinge", "ns"))
    augment: str = setting("color,translation,cutout", "DiffAugment on every image the "
                           "discriminator sees: any of color, translation, cutout, comma-separated "
                           "(none: off)")
    ada_target: float = setting(0.0, "adaptive augmentation (StyleGAN2-ADA): augment each "
                                "image with a probability that rises while the discriminator "
                                "is surer of the real images than this (mean sign of its "
                                "outputs, ADA uses 0.6) and falls otherwise; 0 = always augment "
                                "(measured better in short runs)", min=0, max=1)
    r1_gamma: float = setting(0.0, "R1 gradient penalty on real images (0 = off; try 0.1-10 "
                              "if training collapses)", min=0, max=1000)
    r1_every: int = setting(16, "lazy R1: apply the penalty every N steps, scaled by N", min=1, max=1000)
    ema_decay: float = setting(0.999, "decay of the moving average of the generator's weights "
                               "used for samples (0 = no averaging)", min=0, max=0.99999)
    ema_rampup: float = setting(0.0, "StyleGAN2's EMA ramp-up: the average's half-life is at "
                                "most this fraction of the images seen so far (StyleGAN2 uses "
                                "0.05); 0 = the decay ramps as min(ema_decay, (1+t)/(10+t)) "
                                "over steps t", min=0, max=10)
    d_lr_ratio: float = setting(2.0, "discriminator learning rate as a multiple of lr (TTUR)",
                                min=0.01, max=100)
    batch_size: int = setting(64, "real images per step (the same number of fakes)", min=2, max=4096)
    flip: bool = setting(False, "flip real images left-right at random (off for digits and text)")
    background: str = setting("white", "colour that transparent pixels are composited on",
                              choices=("white", "black"))
    memory_format: str = setting("auto", "channels_last (NHWC) speeds up convolutions with "
                                 "oneDNN on CPUs and tensor cores on GPUs; auto: by device",
                                 choices=("auto", "channels_last", "contiguous"))
    eval_images: int | None = setting(None, "images generated (and real images compared) for "
                                      "FID and KID; empty = scaled to max_steps: 2000, or as many "
                                      "as max_steps (at least 200) in shorter runs. FIDs of "
                                      "different image counts or feature networks are not "
                                      "comparable: each result names both (val_images, "
                                      "val_extractor)", min=10, max=100000, empty=AUTO)
    feature_steps: int | None = setting(None, "training steps of the feature network FID uses "
                                        "when no Inception weights are given (trained once per "
                                        "dataset, cached); empty = scaled to max_steps: 600, or "
                                        "max_steps / 2 (at least 100) in shorter runs",
                                        min=1, max=100000, empty=AUTO)
    inception_weights: str = setting("", "a local file of torchvision Inception-v3 weights for "
                                     "FID features (never downloaded); empty: a network trained "
                                     "on your data")

    def check(self) -> str | None:
        try:
            parse_policy(self.augment)
        except ValueError as exc:
            return f"augment: {exc}."
        return None


@dataclass
class ImageSampleConfig:
    truncation: float = setting(0.0, "truncation: latent values beyond +-t are drawn again; "
                                "smaller = less variety, more typical images (0 = off; try "
                                "0.5-1.5)", min=0, max=10)
    class_label: int = setting(-1, "class to draw (its index); -1: the classes in turn, one per "
                               "seed. A prompt names the class instead", min=-1)
    interpolate_to: int = setting(-1, "a second seed: draw `frames` images on the way from the "
                                  "first seed to it (spherical interpolation); -1 = off", min=-1)
    frames: int = setting(8, "images in an interpolation", min=2, max=1000)
    grid: bool = setting(False, "return one grid image of all the samples")


class ImageDeclarations(Generator):
    """Who the image generator is: what listing, `studio config` and the window's forms read
    without importing torch. ImageGenerator (generators/image/__init__.py) adds what it does."""

    name = "image"
    modality = "image"
    version = "0.1.0"
    Config = ImageConfig
    SampleConfig = ImageSampleConfig
    throughput_unit = "images"
    manual_optimization = True
    best_metric = "val_fid"
    best_mode = "min"
    shape_settings = ("resolution", "channels", "conditional", "latent_dim", "g_width", "d_width")
    presets = {
        # The shipped demo model (assets/demo/image): small enough to commit (a few MB).
        "demo": {"resolution": 32, "channels": "rgb", "g_width": 24, "d_width": 24,
                 "latent_dim": 64, "eval_images": 1000},
        # DCGAN's shapes: 32 px with 4x4 at 4*ngf, 64 px as the PyTorch DCGAN example.
        "32px": {"resolution": 32, "g_width": 64, "d_width": 64},
        "64px": {"resolution": 64, "g_width": 64, "d_width": 64},
        "128px": {"resolution": 128, "g_width": 32, "d_width": 32, "batch_size": 32},
    }
    # Adam with beta1 = 0 and TTUR as in BigGAN / StyleGAN2; a constant learning rate and no
    # clipping (spectral norm already bounds D). Evaluation, previews and checkpoints are
    # scaled to max_steps: at 20000 steps, FID every 2000 (it costs seconds), a preview every
    # 500 and a checkpoint every 1000.
    train_defaults = {"lr": 2e-4, "beta1": 0.0, "beta2": 0.99, "weight_decay": 0.0,
                      "warmup_steps": 0, "lr_schedule": "constant", "grad_clip": 0.0,
                      "max_steps": 20000, "log_every": 20}


# What the registry reads instead of importing the generator's code (studio/registry.py).
DECLARATIONS = {"ImageGenerator": ImageDeclarations}
