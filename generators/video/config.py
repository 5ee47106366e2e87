"""The video generator's declarations: its settings (VideoConfig, VideoSampleConfig), name,
version, presets and training defaults. This module imports no torch, so `studio generators`,
`studio config video` and the window's generator picker read it without loading the model's
code (studio/registry.py: the registry finds a generator's `config.py` through DECLARATIONS).
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.config import AUTO, setting
from studio.contract import Generator

from generators.image.config import parse_list, parse_policy
from generators.video.choices import MOTIONS, TEMPORAL_DS

TEMPORAL_FAKES = ("static", "shuffled")


def parse_temporal_fakes(value: str) -> tuple[str, ...]:
    """"static,shuffled" -> ("static", "shuffled"); "" or "none" -> ()."""
    return parse_list(value, TEMPORAL_FAKES, "kind")


@dataclass
class VideoConfig:
    frames: int = setting(16, "frames per training clip (the clips' length; samples may be "
                          "longer)", min=4, max=256)
    frame_stride: int = setting(1, "take every Nth frame of the source videos: 2 halves the "
                                "frame rate and doubles the time a clip spans", min=1, max=64)
    resolution: int = setting(32, "frame side in pixels (frames are scaled and centre-cropped "
                              "to it)", choices=(32, 64, 128))
    channels: str = setting("auto", "auto: grey when every clip is grey, else RGB",
                            choices=("auto", "grey", "rgb"))
    conditional: str = setting("auto", "auto: class-conditional when the data has classes (one "
                               "subfolder per class, or MNIST labels); yes requires classes",
                               choices=("auto", "yes", "no"))
    short_clips: str = setting("loop", "videos shorter than `frames`: loop them to length, or "
                               "skip them (the data report lists either)", choices=("loop", "skip"))
    content_dim: int = setting(96, "size of the content latent, held for the whole clip",
                               min=2, max=1024)
    motion_dim: int = setting(32, "size of the motion code that changes over time", min=2, max=1024)
    motion: str = setting("stylegan-v", "stylegan-v: noise anchors interpolated over continuous "
                          "time plus sin/cos time features; mocogan: a recurrent cell fed noise "
                          "every frame (measured worse: more flicker, larger temporal FD)", choices=MOTIONS)
    motion_every: int = setting(4, "stylegan-v: frames between motion noise anchors (larger = "
                                "slower, smoother motion)", min=1, max=256)
    g_width: int = setting(64, "generator width: channels of its last hidden layer (DCGAN's "
                           "ngf)", min=4, max=1024)
    d_width: int = setting(64, "discriminator width: channels of their first layer (DCGAN's "
                           "ndf)", min=4, max=1024)
    train_frames: int = setting(3, "frames per clip each step renders and judges, at sorted "
                                "random times (StyleGAN-V: 3); set it to `frames` to train on "
                                "whole clips", min=2, max=256)
    temporal_d: str = setting("pairs", "pairs: the sampled frames stacked with their time gaps "
                              "(DIGAN); trunk: each frame through a shared trunk, their features "
                              "fused with the gaps (StyleGAN-V); 3d: 3D convolutions over "
                              "consecutive frames", choices=TEMPORAL_DS)
    temporal_fakes: str = setting("static,shuffled", "extra fakes for the temporal "
                                  "discriminator made from real clips, so it punishes frozen "
                                  "and flickering clips: any of static, shuffled (none: off)")
    temporal_weight: float = setting(1.0, "weight of the temporal discriminator's loss beside "
                                     "the frame discriminator's", min=0, max=100)
    class_loss: float = setting(1.0, "weight of an auxiliary classifier on the frame "
                                "discriminator (AC-GAN) when the data has classes: D learns "
                                "to tell real frames' classes and G to draw frames it reads as "
                                "the asked class (0: off, the projection alone)", min=0, max=100)
    loss: str = setting("hinge", "hinge (SAGAN/BigGAN) or ns: the non-saturating logistic loss",
                        choices=("hinge", "ns"))
    augment: str = setting("color,translation", "DiffAugment, one random transform per "
                           "clip applied to all its frames: any of color, translation, cutout, "
                           "comma-separated (none: off). Cutout is off by default: it often "
                           "hides the whole of a small moving object (measured worse on "
                           "bouncing digits: temporal FD 16 vs 26, frame FID 3.7 vs 6.2)")
    ema_decay: float = setting(0.999, "decay of the moving average of the generator's weights "
                               "used for samples (0 = no averaging)", min=0, max=0.99999)
    d_lr_ratio: float = setting(2.0, "discriminators' learning rate as a multiple of lr (TTUR)",
                                min=0.01, max=100)
    batch_size: int = setting(16, "real clips per step (the same number of fakes)", min=2, max=1024)
    val_fraction: float = setting(0.1, "share of the clips held out for evaluation when no "
                                  "--val-data is given (none below 10 clips: scores then "
                                  "compare with the training clips)", min=0, max=0.5)
    eval_clips: int | None = setting(None, "clips generated (and real clips compared) for the "
                                     "scores; empty = scaled to max_steps: 500, or fewer in "
                                     "shorter runs", min=2, max=100000, empty=AUTO)
    feature_steps: int | None = setting(None, "training steps of the feature networks the "
                                        "scores use (per frame and per clip; trained once per "
                                        "dataset, cached); empty = scaled to max_steps: 600, or "
                                        "max_steps / 2 (at least 100) in shorter runs",
                                        min=1, max=100000, empty=AUTO)

    def check(self) -> str | None:
        try:
            parse_policy(self.augment)
        except ValueError as exc:
            return f"augment: {exc}."
        try:
            parse_temporal_fakes(self.temporal_fakes)
        except ValueError as exc:
            return f"temporal_fakes: {exc}."
        if self.train_frames > self.frames:
            return (f"train_frames ({self.train_frames}) is more than frames ({self.frames}): a "
                    f"step cannot render more frames of a clip than it has. Lower train_frames.")
        return None


@dataclass
class VideoSampleConfig:
    frames: int | None = setting(None, "frames per clip; may be longer than the training "
                                 "clips", min=1, max=10000, empty="the training clips' length")
    fps: float | None = setting(None, "frame rate: a higher one renders in-between frames over "
                                "the same time (the motion is continuous in time)", min=0.1,
                                max=240, empty="the data's frame rate")
    truncation: float = setting(0.0, "truncation: latent values beyond +-t are drawn again; "
                                "smaller = less variety, more typical clips (0 = off; try "
                                "0.5-1.5)", min=0, max=10)
    content_seed: int = setting(-1, "a seed for every clip's content: the same content with "
                                "new motion per seed; -1 = each clip's own seed", min=-1)
    motion_seed: int = setting(-1, "a seed for every clip's motion: the same motion with new "
                               "content per seed; -1 = each clip's own seed", min=-1)
    class_label: int = setting(-1, "class to draw (its index); -1: the classes in turn, one per "
                               "seed. A prompt names the class instead", min=-1)
    interpolate_to: int = setting(-1, "a second seed: `steps` clips whose content moves from "
                                  "the first seed's to this one's, with the same motion; -1 = off",
                                  min=-1)
    steps: int = setting(8, "clips in a content interpolation", min=2, max=1000)
    format: str = setting("gif", "how `studio generate --out` writes clips: gif and mp4 (both "
                          "are written for gif), npy: one clips.npy (N, T, H, W, C) uint8, "
                          "frames: a folder of PNGs per clip",
                          choices=("gif", "mp4", "npy", "frames"))


class VideoDeclarations(Generator):
    """Who the video generator is: what listing, `studio config` and the window's forms read
    without importing torch. VideoGenerator (generators/video/__init__.py) adds what it does."""

    name = "video"
    modality = "video"
    version = "0.1.0"
    Config = VideoConfig
    SampleConfig = VideoSampleConfig
    throughput_unit = "clips"
    manual_optimization = True
    best_metric = "val_tfd"
    best_mode = "min"
    shape_settings = ("frames", "resolution", "channels", "conditional", "content_dim", "motion_dim",
                      "g_width", "d_width")
    presets = {
        # Small enough to train on a laptop CPU in minutes, and to ship as the demo model.
        "demo": {"resolution": 32, "frames": 16, "g_width": 24, "d_width": 24,
                 "content_dim": 48, "motion_dim": 16, "eval_clips": 200},
        "32px": {"resolution": 32, "g_width": 64, "d_width": 64},
        "64px": {"resolution": 64, "g_width": 64, "d_width": 64, "batch_size": 8},
        "128px": {"resolution": 128, "g_width": 32, "d_width": 32, "batch_size": 4},
    }
    # Motion: StyleGAN-V's with anchors every 4 frames is the default, measured on the built-in
    # shapes (demo preset, batch 8, 2500 CPU steps, 100 held-out clips, all scored in one clip
    # network): temporal FD 12.5, per-frame FID 5.6, flicker 1.04 (real clips 0.65); MoCoGAN's
    # recurrent motion 34.1, 9.2 and 1.56; anchors every 8 frames 23.8, 9.5 and 0.60 (smoother,
    # but worse on both FDs). For scale, in the same networks: real training clips score a
    # temporal FD of 3.4, static clips 82, shuffled 139, independent frames 568. The extra
    # static and shuffled fakes (temporal_fakes) stay on: in a later clip network, the same
    # temporal FD with and without them (19.9 vs 19.7) and less flicker with (1.04 vs 1.18).
    # Against mode collapse, on bouncing digits (tests/test_video_learning.py's config, 1800
    # steps, seed 0): how often two frames of clips of one content seed show the same digit,
    # of clips of different seeds, how often a frame shows the asked class, temporal FD, frame
    # FID. Time features of absolute phase, no content styles, cutout on (as first built): 0.45,
    # 0.43, 0.12, 27.4, 10.3 -- every clip one stroke morphing with t. Per-clip phase: 0.33,
    # 0.21, 0.15, 34.2, 4.7; plus content styles: 0.38, 0.24, 0.18, 26.1, 6.2; per-clip phase
    # without cutout: 0.36, 0.13, 0.29, 22.5, 2.7; all three (the default): 0.50, 0.20, 0.30,
    # 16.0, 3.7. The trunk temporal D (with per-clip phase and cutout): 0.34, 0.23, 0.19, 37.0,
    # 6.2, so pairs stays. Content then set the clip apart from other seeds', but a digit still
    # changed within a clip: the class was learned too slowly (the asked class shown 0.30 of
    # the time; real clips 0.79 under the same judge). The auxiliary classifier (class_loss)
    # fixed that; over seeds 0, 1, 2 at 1800 steps, class_loss 0: within 0.34/0.41/0.33, shown
    # 0.30/0.24/0.28, temporal FD 30.4/41.0/33.3, frame FID 2.4/3.5/1.7; class_loss 1 (the
    # default): 0.52/0.50/0.44, 0.37/0.36/0.47, 19.4/37.1/20.0, 1.4/3.1/1.3; class_loss 3:
    # 0.77/0.67/0.71, 0.79/0.68/0.76, 27.7/33.5/23.5, 2.1/1.9/2.6. Weight 1 scores best on both
    # FDs and reaches weight 3's content in 3600 steps (seeds 0, 1: within 0.73/0.67, shown
    # 0.74/0.74, temporal FD 16.7/14.3, frame FID 0.86/1.86); weight 3 holds content sooner.
    # The image GAN's optimizer settings (Adam, beta1 = 0, TTUR, constant LR, no clipping).
    train_defaults = {"lr": 2e-4, "beta1": 0.0, "beta2": 0.99, "weight_decay": 0.0,
                      "warmup_steps": 0, "lr_schedule": "constant", "grad_clip": 0.0,
                      "max_steps": 20000, "log_every": 20}


# What the registry reads instead of importing the generator's code (studio/registry.py).
DECLARATIONS = {"VideoGenerator": VideoDeclarations}
