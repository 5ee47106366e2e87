"""The built-in video generator: short clips with coherent motion, trained on your clips.

This module is the thin adapter between the plugin contract and plain-torch pieces: the
networks (model.py, built on the image generator's), seeds, times and grids of clips
(sampling.py), reading clips (data.py) and the scores (evaluation.py).

A training step draws a batch of real clips and, for each, a few frame times (sorted, random;
consecutive for the 3D-conv discriminator); the generator renders its fakes at the same times.
Then a discriminator step (the image D on every frame, the temporal D on each clip's frames and
their time gaps) and a generator step, each with its own optimizer and learning rate (TTUR),
stepped through the engine; then the moving average of G moves. Every frame of one clip gets
the same random DiffAugment transform, so augmentation never looks like motion. Samples,
previews and evaluation use the average.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from studio.contract import DataReport, Sample, SampleRequest
from studio.errors import StudioError

from generators.image import ImageGenerator, _default_cache_dir, _unwrap, class_from
from generators.image.augment import apply as apply_augment, draw as draw_augment, parse_policy
from generators.image.evaluation import extractor_key, load_extractor, save_extractor, train_extractor
from generators.image.model import d_loss, ema_decay_at, g_loss, recompute_batchnorm_stats
from generators.image.sampling import slerp, to_uint8
from generators.video.config import (TEMPORAL_FAKES, VideoConfig,  # noqa: F401
                                     VideoDeclarations, VideoSampleConfig, parse_temporal_fakes)
from generators.video.model import VideoGAN, VideoShape, static_and_shuffled
from generators.video.sampling import clip_grid, content_for_seed, frame_times, motion_for_seed

# Clips compared and training steps of the feature networks for runs of 2000+ steps; shorter
# runs scale both down (`scaled_evaluation`), as the image generator does.
LONG_RUN_EVAL_CLIPS, LONG_RUN_FEATURE_STEPS = 500, 600
EVAL_SEED_BASE = 1_000_000  # evaluation draws seeds from here: never the seeds users look at
CALIBRATION_SEED = 2**31 - 1
CALIBRATION_CLIPS = 32  # clips whose every frame measures G_ema's BatchNorm statistics
RENDER_FRAMES = 256  # frames rendered at once when sampling
SERVE_CLIPS = 64  # clips rendered together when several requests are answered at once
SMALL_DATA_CLIPS = 10  # below this many clips nothing is held out: scores compare with training


class VideoGenerator(VideoDeclarations):
    """What VideoDeclarations (config.py: name, version, settings, presets) declares, made to
    work: data, model, training, evaluation and sampling."""

    # The image generator's rules, which read only `classes` and `device`: a clip's class is
    # the asked one or the classes in turn by seed, and a label's name.
    _labels = ImageGenerator._labels
    _class_name = ImageGenerator._class_name
    _device = ImageGenerator._device

    def __init__(self, config: VideoConfig):
        super().__init__(config)
        self.policy = parse_policy(config.augment)
        self.temporal_fakes = parse_temporal_fakes(config.temporal_fakes)
        self.train_clips: np.ndarray | None = None  # (N, T, H, W, C) uint8
        self.train_labels: np.ndarray | None = None
        self.val_clips: np.ndarray | None = None  # held out, or --val-data; None: compare with training
        self.val_labels: np.ndarray | None = None
        self.channels: int | None = None  # decided by the data, or read from the run's assets
        self.classes: list[str] | None = None
        self.fps: float = 8.0  # the data's frame rate: samples play at it by default
        self.dataset_key: str | None = None
        self.probes: dict = {}
        self.cache_dir: Path | None = None
        self._extractors: tuple | None = None
        self._calibrated_at: int | None = None
        self.d_optimizer = self.g_optimizer = None

    # --- data ----------------------------------------------------------------------------------
    def _load(self, source: str | None):
        from generators.video.data import load_clips
        cfg = self.config
        channels = cfg.channels if self.channels is None else {1: "grey", 3: "rgb"}[self.channels]
        return load_clips(source, cfg.frames, cfg.frame_stride, cfg.resolution, channels,
                          self.cache_dir or _default_cache_dir(), cfg.short_clips)

    def load_data(self, source, val_source, cache_dir: Path) -> DataReport:
        cfg = self.config
        self.cache_dir = Path(cache_dir)
        data = self._load(source)
        if self.channels is None:  # a new run: the data decides; a resumed one keeps its own
            self.channels = int(data.clips.shape[-1])
            self.classes = self._choose_classes(data)
            self.fps = float(data.fps)
            self.dataset_key = content_key(data.clips)
        elif self.classes and list(data.classes) != self.classes:
            raise StudioError(f"the data in {source or 'the built-in clips'} has the classes "
                              f"{list(data.classes)[:5]}, but this run was trained on "
                              f"{self.classes[:5]}; give the run's data or start a new run.")
        clips, labels = data.clips, data.labels
        skipped, notes, used = list(data.skipped), list(data.notes), list(data.used)
        if val_source:
            reference = self._load(val_source)
            self.val_clips, self.val_labels = reference.clips, reference.labels
            skipped += reference.skipped
            notes += reference.notes
            used += reference.used
            held_out = f"{len(reference)} clips from {val_source}"
        else:
            held = held_out_indices(len(clips), cfg.val_fraction)
            if len(held):
                keep = np.setdiff1d(np.arange(len(clips)), held)
                self.val_clips, self.val_labels = clips[held], labels[held]
                clips, labels = clips[keep], labels[keep]
                held_out = f"{len(held)} of the {len(held) + len(keep)} clips (val_fraction)"
            else:
                self.val_clips = self.val_labels = None
                held_out = (f"none: only {len(clips)} clips, so the scores compare the samples "
                            f"with the training clips")
        self.train_clips, self.train_labels = clips, labels
        if not self.probes:
            columns = len(self.classes) if 2 <= len(self.classes) <= 8 else None
            n = columns * max(1, 8 // columns) if columns else 8
            self.probes = {"seeds": list(range(n)), "columns": columns}
        counts = {name: int((labels == i).sum()) for i, name in enumerate(self.classes)}
        preview = [Sample("video", clips[i], {"index": i, "fps": self.fps,
                                              "class": self._class_name(int(labels[i]))})
                   for i in range(min(8, len(clips)))]
        return DataReport(
            source=source or "built-in bouncing shapes", used=used, skipped=skipped,
            summary={"clips": len(clips), "frames": cfg.frames, "fps": self.fps,
                     "resolution": cfg.resolution,
                     "channels": "grey" if self.channels == 1 else "rgb",
                     "classes": self.classes, "class_counts": counts, "held_out": held_out,
                     "dataset_key": self.dataset_key, "notes": notes},
            preview=preview)

    def _choose_classes(self, data) -> list[str]:
        mode = self.config.conditional
        if mode == "no":
            return []
        if len(data.classes) < 2:
            if mode == "yes":
                raise StudioError("conditional=yes, but the clips have no classes. Put each "
                                  "class's clips in its own subfolder, or use conditional=auto.")
            return []
        return list(data.classes)

    def get_batch(self, split, rng: torch.Generator):
        """Real clips (B, F, C, H, W) in [-1, 1] at their frame times (B, F) and labels, all
        drawn with `rng`: the times are sorted random frames of each clip (pairs), or a window
        of consecutive frames (3d)."""
        cfg = self.config
        clips, labels = self.train_clips, self.train_labels
        if split == "val" and self.val_clips is not None:
            clips, labels = self.val_clips, self.val_labels
        B, Fr, T = cfg.batch_size, cfg.train_frames, clips.shape[1]
        index = np.sort(torch.randint(len(clips), (B,), generator=rng).numpy())
        if cfg.temporal_d == "3d":
            start = torch.randint(T - Fr + 1, (B, 1), generator=rng)
            times = start + torch.arange(Fr)
        else:
            times = torch.rand(B, T, generator=rng).argsort(dim=1)[:, :Fr].sort(dim=1).values
        pixels = torch.from_numpy(clips[index[:, None], times.numpy()])  # (B, F, H, W, C) uint8
        device = self._device()
        frames = pixels.to(device).permute(0, 1, 4, 2, 3).float().div_(127.5).sub_(1.0)
        chosen = torch.from_numpy(np.maximum(labels[index], 0)).to(device) if self.classes else None
        return frames.contiguous(), times.float().to(device), chosen

    # --- model ---------------------------------------------------------------------------------
    def shape(self) -> VideoShape:
        cfg = self.config
        return VideoShape(resolution=cfg.resolution, channels=self.channels,
                          content_dim=cfg.content_dim, motion_dim=cfg.motion_dim,
                          g_width=cfg.g_width, d_width=cfg.d_width,
                          n_classes=len(self.classes or []), motion=cfg.motion,
                          motion_every=cfg.motion_every, temporal_d=cfg.temporal_d,
                          train_frames=cfg.train_frames, frames=cfg.frames,
                          class_head=cfg.class_loss > 0)

    def build(self) -> torch.nn.Module:
        return VideoGAN(self.shape())

    def configure_optimizers(self, train) -> list:
        from studio.optim import default_adamw
        gan = self.model
        # The run's length is first known here: evaluation sizes left empty are chosen for it
        # (and kept in each checkpoint by extra_state).
        self.config = scaled_evaluation(self.config, train.max_steps)
        self.d_optimizer = default_adamw(gan.discriminators(), train, lr=train.lr * self.config.d_lr_ratio)
        self.g_optimizer = default_adamw(gan.G, train)
        return [self.d_optimizer, self.g_optimizer]

    def _augment(self, clips: torch.Tensor) -> torch.Tensor:
        """DiffAugment on clips (B, F, C, H, W): one random transform per clip, the same on each
        of its frames (drawn from the global RNG, which the engine checkpoints)."""
        if not self.policy:
            return clips
        B, Fr, C, H, W = clips.shape
        params = draw_augment(B, H, W, self.policy, clips.device)
        per_frame = params.select(torch.arange(B, device=clips.device).repeat_interleave(Fr))
        return apply_augment(clips.flatten(0, 1), per_frame).view(B, Fr, C, H, W)

    def _judge(self, gan, clips: torch.Tensor, times: torch.Tensor, labels: torch.Tensor | None):
        """(frame D logits (B*F,), class logits (B*F, classes) or None, temporal D logits (B,))
        of augmented clips (B, F, C, H, W)."""
        frame_logits, class_logits = gan.judge_frames(clips.flatten(0, 1),
                                                      _per_frame(labels, clips.shape[1]))
        return frame_logits, class_logits, gan.D_time(clips, times, labels)

    def _class_loss(self, class_logits: torch.Tensor | None, labels: torch.Tensor | None,
                    frames: int) -> torch.Tensor | None:
        """The auxiliary classifier's cross-entropy on (B*F, classes) logits of B clips' frames,
        or None when there is no classifier (no classes, or class_loss 0)."""
        if class_logits is None:
            return None
        return F.cross_entropy(class_logits.float(), _per_frame(labels, frames))

    def training_step(self, batch, ctx) -> dict:
        real, times, labels = batch
        cfg = self.config
        gan = _unwrap(ctx.model)
        B, Fr = real.shape[:2]
        content = torch.randn(B, cfg.content_dim, device=real.device)
        noise = torch.randn(B, gan.G.noise_steps(cfg.frames - 1), cfg.motion_dim, device=real.device)

        # Discriminators: real and fake clips in one batch, each clip with its own augmentation
        # (the same on all its frames). Extra fakes for the temporal D: the augmented real clips
        # frozen and shuffled. The fakes are made once, with their graph, and reused below.
        with ctx.autocast():
            fake = gan.G(content, noise, times, labels).view_as(real)
            both = self._augment(torch.cat([real, fake.detach()]))
            extra = static_and_shuffled(both[:B], self.temporal_fakes)
            copies = 2 + len(extra)  # real, fake and the extra fakes, judged in one batch
            frame_logits, class_logits = gan.judge_frames(both.flatten(0, 1),
                                                          _per_frame(_repeat(labels, 2), Fr))
            time_logits = gan.D_time(torch.cat([both, *extra]), times.repeat(copies, 1),
                                     _repeat(labels, copies))
            loss_frames = d_loss(frame_logits[:B * Fr], frame_logits[B * Fr:], cfg.loss)
            loss_time = d_loss(time_logits[:B], time_logits[B:], cfg.loss)
            loss_d = loss_frames + cfg.temporal_weight * loss_time
            # The classifier learns from real frames only: fakes of the wrong class would
            # teach it G's mistakes (as in TAC-GAN's and most AC-GAN variants' D loss).
            class_d = self._class_loss(None if class_logits is None else class_logits[:B * Fr],
                                       labels, Fr)
            if class_d is not None:
                loss_d = loss_d + cfg.class_loss * class_d
        ctx.backward(loss_d)
        ctx.average_gradients(self.d_optimizer)  # G and D step apart: no DDP wrapper does it
        ctx.step_optimizer(self.d_optimizer)

        # Generator: through frozen discriminators (no weight gradients for them at all).
        discriminators = gan.discriminators()
        discriminators.requires_grad_(False)
        try:
            with ctx.autocast():
                frame_logits_g, class_logits_g, time_logits_g = self._judge(
                    gan, self._augment(fake), times, labels)
                loss_g = g_loss(frame_logits_g, cfg.loss) + cfg.temporal_weight * g_loss(time_logits_g, cfg.loss)
                class_g = self._class_loss(class_logits_g, labels, Fr)
                if class_g is not None:
                    loss_g = loss_g + cfg.class_loss * class_g
            ctx.backward(loss_g)
        finally:
            discriminators.requires_grad_(True)
        ctx.average_gradients(self.g_optimizer)
        ctx.step_optimizer(self.g_optimizer)
        gan.update_ema(ema_decay_at(ctx.step, cfg.ema_decay))
        return {"loss": (loss_d + loss_g).detach(), "d_loss": loss_d.detach(),
                "g_loss": loss_g.detach(), "d_time_loss": loss_time.detach(),
                "d_real": frame_logits[:B * Fr].detach().float().mean(),
                "d_fake": frame_logits[B * Fr:].detach().float().mean(),
                "d_time_real": time_logits[:B].detach().float().mean(),
                "d_time_fake": time_logits[B:2 * B].detach().float().mean(),
                **({} if class_d is None else {"d_class_loss": class_d.detach(),
                                               "g_class_loss": class_g.detach()})}

    # --- rendering clips -----------------------------------------------------------------------
    def _calibrate(self) -> None:
        """Measure G_ema's BatchNorm statistics for its current weights, on every frame of a
        fixed set of clips (once per EMA update count)."""
        gan = _unwrap(self.model)
        version = int(gan.ema_updates)
        if self._calibrated_at == version:
            return
        seeds = list(range(CALIBRATION_SEED - CALIBRATION_CLIPS, CALIBRATION_SEED))
        times = frame_times(self.config.frames)
        latents = self._frame_latents(gan.G_ema, seeds, seeds, times, 0.0)
        labels = self._labels([None] * len(seeds), seeds)
        frame_labels = _per_frame(labels, len(times))
        recompute_batchnorm_stats(gan.G_ema, latents, frame_labels, render=gan.G_ema.render)
        self._calibrated_at = version

    def _frame_latents(self, G, content_seeds, motion_seeds, times: torch.Tensor,
                       truncation: float | list[float],
                       contents: torch.Tensor | None = None) -> torch.Tensor:
        """(N*T, latent) frame latents of N clips from their seeds, at `times` (T,), with one
        truncation for all or one per clip."""
        cfg, device = self.config, self._device()
        truncations = truncation if isinstance(truncation, list) else [truncation] * len(content_seeds)
        if contents is None:
            contents = torch.stack([content_for_seed(s, cfg.content_dim, t)
                                    for s, t in zip(content_seeds, truncations)])
        steps = G.noise_steps(float(times.max()))
        noise = torch.stack([motion_for_seed(s, steps, cfg.motion_dim, t)
                             for s, t in zip(motion_seeds, truncations)])
        with torch.no_grad():
            return G.frame_latents(contents.to(device), noise.to(device),
                                   times.to(device).expand(len(contents), -1))

    @torch.no_grad()
    def render_clips(self, content_seeds, motion_seeds, times: torch.Tensor,
                     labels: torch.Tensor | None, truncation: float | list[float] = 0.0,
                     contents: torch.Tensor | None = None) -> torch.Tensor:
        """Clips (N, T, C, H, W) in [-1, 1] from G_ema at `times` (T,), in fp32 (truncation:
        one for all clips or one per clip)."""
        self._calibrate()
        G = _unwrap(self.model).G_ema
        T = len(times)
        latents = self._frame_latents(G, content_seeds, motion_seeds, times, truncation, contents)
        frame_labels = _per_frame(labels, T)
        out = []
        for i in range(0, len(latents), RENDER_FRAMES):
            with self.autocast():
                out.append(G.render(latents[i:i + RENDER_FRAMES],
                                      None if frame_labels is None else frame_labels[i:i + RENDER_FRAMES]).float())
        frames = torch.cat(out)
        return frames.view(-1, T, *frames.shape[1:])

    def _class_from(self, prompt, params: VideoSampleConfig) -> int | None:
        return class_from(prompt, params.class_label, self.classes, "video")

    # --- sampling ------------------------------------------------------------------------------
    def sample(self, params: VideoSampleConfig, n: int = 1, seed: int = 0, prompt=None) -> list[Sample]:
        clips = self._clips(params, n, seed, prompt)
        frames = self.render_clips(clips.content_seeds, clips.motion_seeds, clips.times,
                                   clips.labels, params.truncation, clips.contents)
        return [Sample("video", to_uint8(clip), meta) for clip, meta in zip(frames, clips.metas)]

    def _clips(self, params: VideoSampleConfig, n: int, seed: int, prompt) -> "_Clips":
        """What `sample` renders: each clip's seeds, label and meta, and the times of its frames."""
        asked = self._class_from(prompt, params)
        fps = params.fps or self.fps
        frames = params.frames or self.config.frames
        times = frame_times(frames, speed=self.fps / fps)  # in training frames
        contents = None
        if params.interpolate_to >= 0:  # content from one seed to another, one motion
            ends = [content_for_seed(s, self.config.content_dim, params.truncation)
                    for s in (seed, params.interpolate_to)]
            contents = torch.stack([slerp(ends[0], ends[1], i / (params.steps - 1))
                                    for i in range(params.steps)])
            content_seeds = [seed] * params.steps
            motion_seeds = [params.motion_seed if params.motion_seed >= 0 else seed] * params.steps
            metas = [{"seed": seed, "seed_to": params.interpolate_to, "t": i / (params.steps - 1),
                      "index": i} for i in range(params.steps)]
        else:
            seeds = [seed + i for i in range(n)]
            content_seeds = [params.content_seed if params.content_seed >= 0 else s for s in seeds]
            motion_seeds = [params.motion_seed if params.motion_seed >= 0 else s for s in seeds]
            metas = [{"seed": s, "index": i} for i, s in enumerate(seeds)]
        labels = self._labels([asked] * len(metas), content_seeds)
        for i, meta in enumerate(metas):
            meta.update(content_seed=content_seeds[i], motion_seed=motion_seeds[i], fps=fps,
                        frames=frames, truncation=params.truncation,
                        **({"class": self.classes[int(labels[i])]} if labels is not None else {}))
        return _Clips(content_seeds, motion_seeds, times, labels, metas, contents)

    def sample_batch(self, requests: list[SampleRequest]) -> list[list[Sample]]:
        """Several requests' clips from as few forward passes of G as SERVE_CLIPS allows:
        clips whose frames fall at the same times (the same frames and fps) render together,
        each with its own seeds, label and truncation, and each request gets what `sample`
        gives it (the pixels within float rounding of another batch size). A content
        interpolation is made by `sample` alone. A bad request raises before anything renders."""
        answers: list[list[Sample] | None] = [None] * len(requests)
        by_times: dict[tuple, list] = {}  # frame times -> [(request index, its clips, truncation)]
        alone = []
        for k, r in enumerate(requests):
            if r.params.interpolate_to >= 0:
                self._class_from(r.prompt, r.params)
                alone.append(k)
            else:
                clips = self._clips(r.params, r.n, r.seed, r.prompt)
                answers[k] = []
                by_times.setdefault(tuple(clips.times.tolist()), []).append((k, clips, r.params.truncation))
        for k in alone:
            r = requests[k]
            answers[k] = self.sample(r.params, r.n, r.seed, r.prompt)
        for group in by_times.values():
            clips = [(k, i, c, t) for k, c, t in group for i in range(len(c.metas))]  # one per clip
            for start in range(0, len(clips), SERVE_CLIPS):
                chunk = clips[start:start + SERVE_CLIPS]
                labels = None if chunk[0][2].labels is None else \
                    torch.stack([c.labels[i] for _, i, c, _ in chunk])
                frames = self.render_clips([c.content_seeds[i] for _, i, c, _ in chunk],
                                           [c.motion_seeds[i] for _, i, c, _ in chunk],
                                           chunk[0][2].times, labels, [t for _, _, _, t in chunk])
                for (k, i, c, _), clip in zip(chunk, frames):
                    answers[k].append(Sample("video", to_uint8(clip), c.metas[i]))
        return answers

    def preview(self) -> list[Sample]:
        """One clip that is the grid of the fixed probe seeds' clips, frame by frame. With
        classes, the probes cycle through them and each column keeps one class."""
        seeds = self.probes["seeds"]
        labels = self._labels([None] * len(seeds), seeds)
        clips = self.render_clips(seeds, seeds, frame_times(self.config.frames), labels)
        meta = {"probe_seeds": seeds, "classes": self.classes or [], "fps": self.fps,
                "frames": self.config.frames}
        return [Sample("video", clip_grid(clips, aspect=4 / 3,
                                          columns_multiple_of=self.probes.get("columns") or 1), meta)]

    # --- evaluation ----------------------------------------------------------------------------
    def evaluate(self, source=None, max_batches=None) -> dict:
        """The video scores of G_ema's clips against real ones (held out, --val-data, `source`
        or, with too few clips to hold any out, the training clips): the temporal Fréchet
        distance picks the best checkpoint; per-frame FID/KID, motion and flicker go beside it."""
        from generators.video.evaluation import video_scores
        cfg = self.config
        real, real_labels, networks = self._scoring(source, max_batches)
        seeds = list(range(EVAL_SEED_BASE, EVAL_SEED_BASE + len(real)))
        # Conditional models draw the classes of the real clips they are compared with.
        asked = [int(c) if self.classes and c >= 0 else None for c in real_labels]
        fake = self.render_clips(seeds, seeds, frame_times(cfg.frames), self._labels(asked, seeds))
        scores = video_scores(real, np.stack([to_uint8(c) for c in fake]), *networks[:2],
                              self._device(), networks[2])
        return {f"val_{key}": value for key, value in scores.items()}

    def evaluation_clips(self, source=None) -> tuple[np.ndarray, np.ndarray]:
        """The real clips (N, T, H, W, C) uint8 that `evaluate` and `score_clips` compare with,
        and their labels (-1: none): a fixed sample of eval_clips of them."""
        real, labels, _ = self._scoring(source, None)
        return real, labels

    def score_clips(self, clips: np.ndarray, source=None) -> dict:
        """The scores `evaluate` gives (without the val_ prefix) of any clips (N, T, H, W, C)
        uint8, e.g. another model's, against the same real clips in the same networks."""
        from generators.video.evaluation import video_scores
        real, _, networks = self._scoring(source, None)
        return video_scores(real, clips, *networks[:2], self._device(), networks[2])

    def evaluate_baselines(self, source=None) -> dict[str, dict]:
        """What the scores mean on this data: the same scores, against the same real clips and
        in the same feature networks as `evaluate`, for as many training clips ("real": what
        a generator that copied its data would score) and for clips made from those that a
        generator must beat: "static", "shuffled" and "independent" frames."""
        from generators.video.evaluation import baseline_scores
        real, _, networks = self._scoring(source, None)
        train = self.train_clips if self.train_clips is not None else real
        pick = np.sort(np.random.default_rng(1).choice(len(train), min(len(real), len(train)), replace=False))
        return baseline_scores(real, train[pick], *networks[:2], self._device(),
                               frame_extractor_name=networks[2])

    def _scoring(self, source, max_batches):
        """The real clips the scores compare with (a fixed sample of eval_clips of them), their
        labels, and the feature networks: (clip network, frame network, frame network's name),
        trained on the training clips (a loaded run measured on other clips: on those)."""
        cfg = self.config
        real, real_labels = self._reference_clips(source)
        n = min(cfg.eval_clips or LONG_RUN_EVAL_CLIPS, len(real))
        if max_batches is not None:
            n = min(n, max(max_batches * cfg.batch_size, 2))
        pick = np.sort(np.random.default_rng(0).choice(len(real), n, replace=False))
        if self.train_clips is not None:
            networks = self._feature_networks(self.train_clips, self.train_labels)
        else:
            networks = self._feature_networks(real, real_labels)
        return real[pick], real_labels[pick], networks

    def _reference_clips(self, source) -> tuple[np.ndarray, np.ndarray]:
        if source is not None:
            data = self._load(str(source))
            return data.clips, data.labels
        if self.val_clips is not None:
            return self.val_clips, self.val_labels
        if self.train_clips is None:
            raise StudioError("no clips to evaluate against: give --data (the clips the scores "
                              "compare the samples with).")
        return self.train_clips, self.train_labels

    def _feature_networks(self, clips: np.ndarray, labels: np.ndarray):
        """The clip network (temporal Fréchet distance) and the frame network (per-frame FID),
        both trained once on `clips` (the training clips) and cached by their content."""
        from generators.video.evaluation import (load_clip_extractor, save_clip_extractor,
                                                 train_clip_extractor)
        if self._extractors is not None:
            return self._extractors
        device, steps = self._device(), self.config.feature_steps or LONG_RUN_FEATURE_STEPS
        data_key = content_key(clips)
        folder = (self.cache_dir or _default_cache_dir()) / "video-features"
        clip_folder = folder / extractor_key(f"{data_key}-clips", "clipnet", steps)
        clip_net = load_clip_extractor(clip_folder, device)
        if clip_net is None:
            clip_net = train_clip_extractor(clips, labels if self.classes else np.full(len(clips), -1),
                                            steps, seed=0, device=device)
            save_clip_extractor(clip_net, clip_folder)
        frames = clips[:, np.linspace(0, clips.shape[1] - 1, 4).round().astype(int)].reshape(-1, *clips.shape[2:])
        frame_labels = np.repeat(labels, 4) if self.classes else None
        kind = "classifier" if self.classes else "autoencoder"
        key = extractor_key(f"{data_key}-frames-c{self.channels}", kind, steps)
        loaded = load_extractor(folder, key, device)
        if loaded is None:
            net, info = train_extractor(frames, frame_labels, len(self.classes or []), steps, device)
            info.update(key=key, channels=self.channels, resolution=self.config.resolution)
            save_extractor(folder, key, net, info)
            loaded = (net, info)
        net, info = loaded
        self._extractors = (clip_net, net, f"own-{info['kind']}:{key[:12]}")
        return self._extractors

    # --- export (studio export --format onnx): generators/video/onnx_graphs.py ----------------
    def onnx_graphs(self):
        from generators.video.onnx_graphs import graphs
        return graphs(self)

    def onnx_manifest(self, folder: Path) -> dict:
        from generators.video.onnx_graphs import manifest
        return manifest(self, folder)

    # --- what a run keeps besides weights ------------------------------------------------------
    def save_assets(self, folder: Path) -> None:
        from studio.runstore import write_json
        cfg = self.config
        write_json(folder / "video.json", {
            "resolution": cfg.resolution, "frames": cfg.frames, "channels": self.channels,
            "classes": self.classes or [], "fps": self.fps, "dataset_key": self.dataset_key})
        write_json(folder / "probes.json", self.probes)

    def load_assets(self, folder: Path) -> None:
        from studio.runstore import read_json
        info = read_json(folder / "video.json", "the video run's assets")
        if info["resolution"] != self.config.resolution:
            raise StudioError(f"this run was trained at {info['resolution']} px, but its config asks "
                              f"for {self.config.resolution} px; a GAN cannot change resolution on "
                              f"resume. Start a new run for {self.config.resolution} px.")
        self.channels, self.classes = int(info["channels"]), list(info["classes"])
        self.fps, self.dataset_key = float(info["fps"]), info.get("dataset_key")
        probes = folder / "probes.json"
        self.probes = read_json(probes, "preview probes") if probes.exists() else {}
        if not self.probes:
            self.probes = {"seeds": list(range(8)), "columns": None}

    def extra_state(self) -> dict:
        # the evaluation sizes the run chose, so that `studio eval` measures as training did
        return {"eval_clips": self.config.eval_clips, "feature_steps": self.config.feature_steps}

    def load_extra_state(self, state: dict) -> None:
        chosen = {key: state[key] for key in ("eval_clips", "feature_steps")
                  if getattr(self.config, key) is None and state.get(key)}
        if chosen:
            self.config = dataclasses.replace(self.config, **chosen)


@dataclasses.dataclass
class _Clips:
    """The clips of one request, before they are rendered."""

    content_seeds: list[int]
    motion_seeds: list[int]
    times: torch.Tensor  # (T,) the times of every clip's frames, in training frames
    labels: torch.Tensor | None
    metas: list[dict]
    contents: torch.Tensor | None = None  # set for a content interpolation


def scaled_evaluation(config: VideoConfig, max_steps: int) -> VideoConfig:
    """`config` with the evaluation sizes left empty set for a run of `max_steps`."""
    scaled = {"eval_clips": min(LONG_RUN_EVAL_CLIPS, max(100, max_steps // 4)),
              "feature_steps": min(LONG_RUN_FEATURE_STEPS, max(100, max_steps // 2))}
    chosen = {key: value for key, value in scaled.items() if getattr(config, key) is None}
    return dataclasses.replace(config, **chosen) if chosen else config


def held_out_indices(n: int, fraction: float) -> np.ndarray:
    """The clips held out for evaluation: a fixed random `fraction` of them (none below
    SMALL_DATA_CLIPS clips, where every clip is needed for training)."""
    if n < SMALL_DATA_CLIPS or fraction <= 0:
        return np.empty(0, dtype=np.int64)
    count = max(2, int(round(n * fraction)))
    return np.sort(np.random.default_rng(0).permutation(n)[:count])


def _repeat(labels: torch.Tensor | None, copies: int) -> torch.Tensor | None:
    """The labels of `copies` batches of the same clips, one after another."""
    return None if labels is None else labels.repeat(copies)


def _per_frame(labels: torch.Tensor | None, frames: int) -> torch.Tensor | None:
    """Clip labels (B,) -> frame labels (B*frames,), clip by clip."""
    return None if labels is None else labels.repeat_interleave(frames)


def content_key(clips: np.ndarray) -> str:
    """A short hash of the clips' pixels and shape: the cache key of the feature networks."""
    digest = hashlib.sha256(str(clips.shape).encode())
    digest.update(np.ascontiguousarray(clips).data)
    return digest.hexdigest()[:16]
