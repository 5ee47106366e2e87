"""The built-in image generator: a GAN that trains well on small image sets, on CPU and GPU.

This module is the thin adapter between the plugin contract and plain-torch pieces: the
networks and losses (model.py), DiffAugment (augment.py), reading and caching images
(data.py), latents and grids (sampling.py) and FID/KID (evaluation.py).

A training step is a discriminator step and a generator step on one batch, each with its own
optimizer and learning rate (TTUR, Heusel et al. 2017), stepped through the engine so that
mixed precision, loss scaling and clipping are the engine's; then the moving average of G
moves. Samples, previews and evaluation use that average.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from studio.contract import DataReport, Sample, SampleRequest
from studio.errors import StudioError
from studio.optim import fused_adamw

from generators.image.augment import augment as diff_augment, parse_policy
from generators.image.config import (ImageConfig, ImageDeclarations,  # noqa: F401
                                     ImageSampleConfig)
from generators.image.data import BUILTIN_SHAPES, ImageSet, load_images
from generators.image.evaluation import (InceptionFeatures, extract_features, extractor_key, fid,
                                         kid, load_extractor, save_extractor, sharpness_statistics,
                                         train_extractor)
from generators.image.model import (GAN, GANShape, d_loss, ema_decay_at, g_loss, r1_penalty,
                                    recompute_batchnorm_stats)
from generators.image.sampling import grid, interpolation, latent_for_seed, latents_for_seeds, to_uint8

# FID's sample and feature network for runs of 2000+ steps; shorter runs scale both down
# (`scaled_evaluation`), or a 30-step run would spend most of its time evaluating.
LONG_RUN_EVAL_IMAGES, LONG_RUN_FEATURE_STEPS = 2000, 600
EVAL_SEED_BASE = 1_000_000  # evaluation draws seeds from here: never the seeds users look at
CALIBRATION_SEED = 2**31 - 1
CALIBRATION_IMAGES = 256  # latents that measure G_ema's BatchNorm statistics
SERVE_BATCH = 64  # images per forward pass when several requests are answered together


class ImageGenerator(ImageDeclarations):
    """What ImageDeclarations (config.py: name, version, settings, presets) declares, made to
    work: data, model, training, evaluation and sampling."""

    def __init__(self, config: ImageConfig):
        super().__init__(config)
        self.policy = parse_policy(config.augment)
        self.train_set: ImageSet | None = None
        self.reference: ImageSet | None = None  # --val-data: what FID compares against
        self.channels: int | None = None  # decided by the data, or read from the run's assets
        self.classes: list[str] | None = None
        self.dataset_key: str | None = None
        self.probes: dict = {}
        self.cache_dir: Path | None = None
        self.extractor_key: str | None = None
        self._extractor = None
        self._inception_net: InceptionFeatures | None = None
        self._extractor_name = ""
        self._real_features: dict = {}
        self._calibrated_at: int | None = None
        self.d_optimizer = self.g_optimizer = None

    # --- data ----------------------------------------------------------------------------------
    def load_data(self, source, val_source, cache_dir: Path) -> DataReport:
        cfg = self.config
        if cfg.inception_weights:  # a wrong file is said now, not after the training
            self._inception()
        self.cache_dir = Path(cache_dir)
        data = load_images(source, cfg.resolution, cfg.background, self.cache_dir, cfg.fit)
        notes = list(data.notes)
        if self.channels is None:  # a new run: the data decides; a resumed one keeps its own
            self.channels = {"grey": 1, "rgb": 3}.get(cfg.channels, 1 if data.grey else 3)
            self.classes = self._choose_classes(data)
            self.dataset_key = data.key
        elif self.classes and data.classes != self.classes:
            raise StudioError(f"the data in {data.source} has the classes {data.classes[:5]}, but "
                              f"this run was trained on {self.classes[:5]}; give the run's data or "
                              f"start a new run.")
        self.train_set = data
        skipped = list(data.skipped)
        if val_source:
            self.reference = load_images(val_source, cfg.resolution, cfg.background, self.cache_dir,
                                         cfg.fit)
            skipped += self.reference.skipped
            notes += self.reference.notes
        if not self.probes:
            n = {32: 64, 64: 36, 128: 16}[cfg.resolution]
            columns = len(self.classes) if 2 <= len(self.classes) <= 12 else None
            if columns:  # one column per class: the preview shows how each class develops
                n = columns * max(1, n // columns)
            self.probes = {"seeds": list(range(n)), "columns": columns}
        counts = {name: int((data.labels == i).sum()) for i, name in enumerate(self.classes)}
        preview = [Sample("image", self._channels_of(data.images[i:i + 1])[0],
                          {"index": i, "class": self._class_name(int(data.labels[i]))})
                   for i in range(min(8, len(data)))]
        # Every value is a number, a string, a list of strings or (class_counts) a dict of
        # class name -> image count: a UI prints them without Python syntax. "images" counts
        # the training images (the unit the report is read in; `used` lists files or sources).
        held_out = (f"{len(self.reference)} images from {self.reference.source}" if self.reference
                    else "none: FID compares the samples with the training images")
        return DataReport(
            source=data.source, used=data.used + (self.reference.used if self.reference else []),
            skipped=skipped,
            summary={"images": len(data), "resolution": cfg.resolution,
                     "channels": "grey" if self.channels == 1 else "rgb",
                     "classes": self.classes, "class_counts": counts, "held_out": held_out,
                     "dataset_key": data.key, "notes": notes},
            preview=preview)

    def _choose_classes(self, data: ImageSet) -> list[str]:
        mode = self.config.conditional
        if mode == "no":
            return []
        if len(data.classes) < 2:
            if mode == "yes":
                raise StudioError(f"conditional=yes, but {data.source} has no classes. Put each "
                                  f"class's images in its own subfolder, or use conditional=auto.")
            return []
        return list(data.classes)

    def _class_name(self, label: int) -> str | None:
        return self.classes[label] if self.classes and 0 <= label < len(self.classes) else None

    def _channels_of(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) in the run's channel count: grey repeated, or colour to luma."""
        pixels = np.asarray(pixels)
        if pixels.shape[-1] == self.channels:
            return pixels
        if self.channels == 3:
            return np.repeat(pixels, 3, axis=-1)
        weights = np.array([299, 587, 114], dtype=np.uint32)  # ITU-R 601-2 luma, as Pillow's "L"
        return ((pixels.astype(np.uint32) @ weights + 500) // 1000).astype(np.uint8)[..., None]

    def get_batch(self, split, rng: torch.Generator):
        data = self.reference if split == "val" and self.reference is not None else self.train_set
        B = self.config.batch_size
        index = np.sort(torch.randint(len(data), (B,), generator=rng).numpy())  # in file order
        pixels = torch.from_numpy(self._channels_of(data.images[index]))  # (B, H, W, C) uint8
        if self.config.flip:
            flipped = torch.rand(B, generator=rng) < 0.5
            pixels[flipped] = pixels[flipped].flip(2)
        labels = torch.from_numpy(np.maximum(data.labels[index], 0)) if self.classes else None
        device = self.device or torch.device("cpu")
        if device.type == "cuda":
            pixels = pixels.pin_memory()
        # uint8 travels (4x less than float); NHWC permuted to NCHW *is* channels-last memory.
        images = pixels.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        if not self._channels_last():
            images = images.contiguous()
        return images, (labels.to(device) if labels is not None else None)

    # --- model ---------------------------------------------------------------------------------
    def shape(self) -> GANShape:
        cfg = self.config
        return GANShape(resolution=cfg.resolution, channels=self.channels, latent_dim=cfg.latent_dim,
                        g_width=cfg.g_width, d_width=cfg.d_width, n_classes=len(self.classes or []))

    def build(self) -> torch.nn.Module:
        adaptive = self.config.ada_target > 0
        gan = GAN(self.shape(), augment_p=0.0 if adaptive else 1.0)  # adaptive: start without
        if self._channels_last():
            gan = gan.to(memory_format=torch.channels_last)
        return gan

    def _channels_last(self) -> bool:
        """auto: channels-last on CPUs (oneDNN; measured faster for these convolutions, see
        bench/bench_image.py) and CUDA GPUs (tensor cores); not on MPS."""
        fmt = self.config.memory_format
        if fmt != "auto":
            return fmt == "channels_last"
        return (self.device or torch.device("cpu")).type in ("cpu", "cuda")

    def configure_optimizers(self, train) -> list:
        gan, cfg = self.model, self.config
        betas = (train.beta1, train.beta2)

        def adam(params, lr):
            params = list(params)
            return fused_adamw(params, params[0].device.type, lr=lr, betas=betas,
                               weight_decay=train.weight_decay)

        # The run's length is first known here: evaluation sizes left empty are chosen for it
        # (and kept in each checkpoint by extra_state).
        self.config = cfg = scaled_evaluation(cfg, train.max_steps)
        self.d_optimizer = adam(gan.D.parameters(), train.lr * cfg.d_lr_ratio)
        self.g_optimizer = adam(gan.G.parameters(), train.lr)
        return [self.d_optimizer, self.g_optimizer]

    def training_step(self, batch, ctx) -> dict:
        real, labels = batch
        cfg = self.config
        gan = _unwrap(ctx.model)
        B = len(real)
        z = torch.randn(B, cfg.latent_dim, device=real.device)
        adaptive = cfg.ada_target > 0
        p = gan.augment_p if adaptive else None

        # Discriminator: real and fake images in one batch (D has no batch statistics to mix
        # up), each image with its own augmentation. The fakes are made once, with their graph,
        # and reused by the generator step below, as in the PyTorch DCGAN example.
        with ctx.autocast():
            fake = gan.G(z, labels)
            both = torch.cat([real, fake.detach()])
            logits = gan.D(diff_augment(both, self.policy, probability=p), _twice(labels))
            loss_d = d_loss(logits[:B], logits[B:], cfg.loss)
        metrics = {}
        loss_d_total = loss_d
        if cfg.r1_gamma > 0 and ctx.step % cfg.r1_every == 0:
            # Lazy R1 (StyleGAN2): every r1_every steps, scaled up by r1_every; in fp32, since
            # it differentiates a gradient.
            real_in = real.detach().requires_grad_(True)
            penalty = r1_penalty(gan.D(diff_augment(real_in, self.policy, probability=p), labels), real_in)
            loss_d_total = loss_d + (cfg.r1_gamma / 2) * cfg.r1_every * penalty
            metrics["r1"] = penalty.detach()
        ctx.backward(loss_d_total)
        ctx.average_gradients(self.d_optimizer)  # G and D step apart: no DDP wrapper does it
        ctx.step_optimizer(self.d_optimizer)
        if adaptive and self.policy:
            gan.adapt_augmentation(logits[:B], cfg.ada_target, ctx.step)
            metrics["augment_p"] = gan.augment_p.detach().clone()

        # Generator: through a frozen D (no weight gradients for D are computed at all).
        gan.D.requires_grad_(False)
        try:
            with ctx.autocast():
                loss_g = g_loss(gan.D(diff_augment(fake, self.policy, probability=p), labels), cfg.loss)
            ctx.backward(loss_g)
        finally:
            gan.D.requires_grad_(True)
        ctx.average_gradients(self.g_optimizer)
        ctx.step_optimizer(self.g_optimizer)
        gan.update_ema(ema_decay_at(ctx.step, cfg.ema_decay, rampup=cfg.ema_rampup))
        return {"loss": (loss_d + loss_g).detach(), "d_loss": loss_d.detach(),
                "g_loss": loss_g.detach(), "d_real": logits[:B].detach().float().mean(),
                "d_fake": logits[B:].detach().float().mean(), **metrics}

    # --- sampling ------------------------------------------------------------------------------
    def _calibrate(self) -> None:
        """Measure G_ema's BatchNorm statistics for its current weights (once per EMA update
        count, so repeated sampling costs nothing extra)."""
        gan = _unwrap(self.model)
        version = int(gan.ema_updates)
        if self._calibrated_at == version:
            return
        device = self._device()
        latents = latents_for_seeds(range(CALIBRATION_SEED, CALIBRATION_SEED + CALIBRATION_IMAGES),
                                    self.config.latent_dim).to(device)
        labels = self._labels([None] * CALIBRATION_IMAGES, range(CALIBRATION_IMAGES))
        recompute_batchnorm_stats(gan.G_ema, latents, labels)
        self._calibrated_at = version

    def _labels(self, asked: list[int | None], seeds) -> torch.Tensor | None:
        """Class per image: the asked one, else the classes in turn by seed."""
        if not self.classes:
            return None
        n = len(self.classes)
        chosen = [a if a is not None else int(s) % n for a, s in zip(asked, seeds)]
        return torch.tensor(chosen, dtype=torch.long, device=self._device())

    def _device(self) -> torch.device:
        return self.device or torch.device("cpu")

    @torch.no_grad()
    def render(self, latents: torch.Tensor, labels: torch.Tensor | None, batch: int = 256) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] from G_ema, in fp32."""
        self._calibrate()
        G = _unwrap(self.model).G_ema
        device = self._device()
        out = []
        for i in range(0, len(latents), batch):
            with self.autocast():
                images = G(latents[i:i + batch].to(device),
                           None if labels is None else labels[i:i + batch])
            out.append(images.float())
        return torch.cat(out)

    def _class_from(self, prompt, params: ImageSampleConfig) -> int | None:
        return class_from(prompt, params.class_label, self.classes, "image")

    def sample(self, params: ImageSampleConfig, n: int = 1, seed: int = 0, prompt=None) -> list[Sample]:
        latents, labels, metas = self._items(params, n, seed, prompt)
        images = self.render(latents, labels)
        if params.grid:
            columns = params.frames if params.interpolate_to >= 0 else None
            return [Sample("image", grid(images, columns), {"grid": metas})]
        return [Sample("image", pixels, meta) for pixels, meta in zip(to_uint8(images), metas)]

    def _items(self, params: ImageSampleConfig, n: int, seed: int,
               prompt) -> tuple[torch.Tensor, torch.Tensor | None, list[dict]]:
        """What `sample` renders: the latents (N, latent_dim), labels (N,) or None and the
        meta of each image."""
        asked = self._class_from(prompt, params)
        dim = self.config.latent_dim
        if params.interpolate_to >= 0:
            ends = [latent_for_seed(s, dim, params.truncation) for s in (seed, params.interpolate_to)]
            latents = interpolation(ends[0], ends[1], params.frames)
            labels = self._labels([asked] * params.frames, [seed] * params.frames)
            metas = [{"seed": seed, "seed_to": params.interpolate_to, "t": i / (params.frames - 1),
                      "frame": i} for i in range(params.frames)]
        else:
            seeds = [seed + i for i in range(n)]
            latents = latents_for_seeds(seeds, dim, params.truncation)
            labels = self._labels([asked] * n, seeds)
            metas = [{"seed": s, "index": i} for i, s in enumerate(seeds)]
        for i, meta in enumerate(metas):
            meta.update(truncation=params.truncation,
                        **({"class": self.classes[int(labels[i])]} if labels is not None else {}))
        return latents, labels, metas

    def sample_batch(self, requests: list[SampleRequest]) -> list[list[Sample]]:
        """Several requests' images from as few forward passes of G as SERVE_BATCH allows: each
        request gets what `sample` gives it (the same latents, labels and meta; the pixels
        within float rounding of another batch size). An interpolation or a grid is made by
        `sample` alone. A bad request (e.g. an unknown class) raises before anything renders."""
        answers: list[list[Sample] | None] = [None] * len(requests)
        batched, alone = [], []  # (request index, latents, labels, metas); request indices
        for k, r in enumerate(requests):
            if r.params.interpolate_to >= 0 or r.params.grid:
                self._class_from(r.prompt, r.params)  # a bad one raises before anything renders
                alone.append(k)
            else:
                batched.append((k, *self._items(r.params, r.n, r.seed, r.prompt)))
        for k in alone:
            r = requests[k]
            answers[k] = self.sample(r.params, r.n, r.seed, r.prompt)
        if batched:
            latents = torch.cat([latents for _, latents, _, _ in batched])
            labels = None if batched[0][2] is None else torch.cat([labels for _, _, labels, _ in batched])
            pixels = to_uint8(self.render(latents, labels, batch=SERVE_BATCH))
            start = 0
            for k, _, _, metas in batched:
                answers[k] = [Sample("image", image, meta)
                              for image, meta in zip(pixels[start:start + len(metas)], metas)]
                start += len(metas)
        return answers

    def preview(self) -> list[Sample]:
        """One grid of the fixed probe seeds, about as wide as the window's preview area (4:3).
        With classes, the probes cycle through them and each column keeps one class, so the
        preview shows how each class develops."""
        seeds = self.probes["seeds"]
        latents = latents_for_seeds(seeds, self.config.latent_dim)
        labels = self._labels([None] * len(seeds), seeds)
        images = self.render(latents, labels)
        meta = {"probe_seeds": seeds, "classes": self.classes or []}
        return [Sample("image", grid(images, aspect=4 / 3, columns_multiple_of=self.probes.get("columns") or 1),
                       meta)]

    # --- evaluation ----------------------------------------------------------------------------
    def evaluate(self, source=None, max_batches=None) -> dict:
        """FID and KID of G_ema's images against real ones: the --val-data set when given, else
        the training images (as StyleGAN2-ADA measures small datasets), or `source`; and the
        midtone share and gradient sharpness of both sides (`sharpness_statistics`)."""
        cfg = self.config
        reference = self._reference_set(source)
        n = min(cfg.eval_images or LONG_RUN_EVAL_IMAGES, len(reference))
        if max_batches is not None:
            n = min(n, max(max_batches * cfg.batch_size, 2))
        pick = np.sort(np.random.default_rng(0).choice(len(reference), n, replace=False))
        extractor, name = self._feature_extractor(reference)
        device = self._device()
        cache_key = (name, reference.key, n)
        if cache_key not in self._real_features:  # the real side does not change during a run
            real = self._channels_of(reference.images[pick])
            self._real_features = {cache_key: (extract_features(extractor, real, device),
                                               sharpness_statistics(real))}
        real_features, real_sharpness = self._real_features[cache_key]
        seeds = range(EVAL_SEED_BASE, EVAL_SEED_BASE + n)
        # Conditional models draw the classes of the real images they are compared with.
        real_labels = reference.labels[pick] if reference.classes == self.classes else np.full(n, -1)
        labels = self._labels([int(c) if c >= 0 else None for c in real_labels], seeds)
        fake = self.render(latents_for_seeds(seeds, cfg.latent_dim).to(device), labels)
        fake_features = extract_features(extractor, fake, device)
        kid_mean, kid_std = kid(real_features, fake_features)
        # Blur in numbers (features trained for classes may not see it): the samples' midtone
        # share and gradient sharpness beside the real images' (issue 13).
        fake_sharpness = sharpness_statistics(fake)
        return {"val_fid": fid(real_features, fake_features), "val_kid": kid_mean,
                "val_kid_std": kid_std, "val_images": int(n), "val_extractor": name,
                "val_midtone": fake_sharpness["midtone"], "val_midtone_real": real_sharpness["midtone"],
                "val_sharpness": fake_sharpness["sharpness"],
                "val_sharpness_real": real_sharpness["sharpness"]}

    def _reference_set(self, source) -> ImageSet:
        if source is not None:
            return load_images(str(source), self.config.resolution, self.config.background,
                               self.cache_dir or _default_cache_dir(), self.config.fit)
        if self.reference is not None:
            return self.reference
        if self.train_set is None:
            raise StudioError("no images to evaluate against: give --data (the images FID "
                              "compares the samples with).")
        return self.train_set

    def _feature_extractor(self, reference: ImageSet):
        """Inception-v3 from the user's weights file, else the data's own network (trained
        once and cached); the name goes into every result."""
        if self._extractor is not None:
            return self._extractor, self._extractor_name
        cfg, device = self.config, self._device()
        if cfg.inception_weights:
            net = self._inception().to(device)
            self._extractor, self._extractor_name = net, f"inception-v3:{net.digest}"
            return self._extractor, self._extractor_name
        folder = (self.cache_dir or _default_cache_dir()) / "image-features"
        loaded = None
        if self.extractor_key:  # the run's own extractor, when this machine has it cached
            loaded = load_extractor(folder, self.extractor_key, device)
        if loaded is None:
            data = self.train_set or reference
            labelled = bool(self.classes) and data.classes == self.classes and (data.labels >= 0).any()
            kind = "classifier" if labelled else "autoencoder"
            feature_steps = cfg.feature_steps or LONG_RUN_FEATURE_STEPS
            key = extractor_key(f"{data.key}-c{self.channels}", kind, feature_steps)
            loaded = load_extractor(folder, key, device)
            if loaded is None:
                keep = data.labels >= 0 if labelled else np.ones(len(data), bool)
                images = self._channels_of(data.images[np.flatnonzero(keep)])
                net, info = train_extractor(images, data.labels[keep] if labelled else None,
                                            len(self.classes or []), feature_steps, device)
                info.update(key=key, channels=self.channels, resolution=cfg.resolution,
                            n_classes=len(self.classes or []), dataset=data.source,
                            dataset_key=data.key)
                save_extractor(folder, key, net, info)
                loaded = (net, info)
            self.extractor_key = key
        net, info = loaded
        self._extractor, self._extractor_name = net, f"own-{info['kind']}:{info['key'][:12]}"
        return self._extractor, self._extractor_name

    def _inception(self) -> InceptionFeatures:
        if self._inception_net is None:
            try:
                self._inception_net = InceptionFeatures(self.config.inception_weights)
            except ValueError as exc:
                raise StudioError(f"inception_weights: {exc}. Give a local torchvision "
                                  f"Inception-v3 weights file (it is never downloaded), or leave "
                                  f"inception_weights empty for features trained on your data.") from None
        return self._inception_net

    # --- export (studio export --format onnx): generators/image/onnx_graphs.py ----------------
    def onnx_graphs(self):
        from generators.image.onnx_graphs import graphs
        return graphs(self)

    def onnx_manifest(self, folder: Path) -> dict:
        from generators.image.onnx_graphs import manifest
        return manifest(self, folder)

    # --- what a run keeps besides weights ------------------------------------------------------
    def save_assets(self, folder: Path) -> None:
        from studio.runstore import write_json
        write_json(folder / "image.json", {
            "resolution": self.config.resolution, "channels": self.channels,
            "classes": self.classes or [], "dataset_key": self.dataset_key})
        write_json(folder / "probes.json", self.probes)

    def load_assets(self, folder: Path) -> None:
        from studio.runstore import read_json
        info = read_json(folder / "image.json", "the image run's assets")
        if info["resolution"] != self.config.resolution:
            raise StudioError(f"this run was trained at {info['resolution']} px, but its config asks "
                              f"for {self.config.resolution} px; a GAN cannot change resolution on "
                              f"resume. Start a new run for {self.config.resolution} px.")
        self.channels, self.classes = int(info["channels"]), list(info["classes"])
        self.dataset_key = info.get("dataset_key")
        probes = folder / "probes.json"
        self.probes = read_json(probes, "preview probes") if probes.exists() else {}
        if not self.probes:
            self.probes = {"seeds": list(range(16)), "columns": None}

    def extra_state(self) -> dict:
        # the evaluation sizes the run chose, so that `studio eval` measures as training did
        return {"extractor_key": self.extractor_key, "eval_images": self.config.eval_images,
                "feature_steps": self.config.feature_steps}

    def load_extra_state(self, state: dict) -> None:
        self.extractor_key = state.get("extractor_key") or self.extractor_key
        chosen = {key: state[key] for key in ("eval_images", "feature_steps")
                  if getattr(self.config, key) is None and state.get(key)}
        if chosen:
            self.config = dataclasses.replace(self.config, **chosen)


def class_from(prompt, class_label: int, classes: list[str], modality: str) -> int | None:
    """The class a prompt asks for (its name or index), else `class_label` (-1: none asked).
    Shared by the image and video generators."""
    if prompt in (None, "") and class_label < 0:
        return None
    if not classes:
        items = "clips" if modality == "video" else "images"
        raise StudioError(f"this {modality} model has no classes (it was trained on unlabelled "
                          f"{items}), so it takes no prompt or class_label.")
    if prompt not in (None, ""):
        text = str(prompt).strip()
        if text in classes:
            return classes.index(text)
        if text.isdigit() and int(text) < len(classes):
            return int(text)
        raise StudioError(f"no class '{text}' in this model; its classes are: "
                          f"{', '.join(classes)}.")
    if class_label >= len(classes):
        raise StudioError(f"class_label {class_label} is out of range: this model has "
                          f"{len(classes)} classes (0-{len(classes) - 1}: {', '.join(classes)}).")
    return class_label


def scaled_evaluation(config: ImageConfig, max_steps: int) -> ImageConfig:
    """`config` with the evaluation sizes left empty set for a run of `max_steps`."""
    scaled = {"eval_images": min(LONG_RUN_EVAL_IMAGES, max(200, max_steps)),
              "feature_steps": min(LONG_RUN_FEATURE_STEPS, max(100, max_steps // 2))}
    chosen = {key: value for key, value in scaled.items() if getattr(config, key) is None}
    return dataclasses.replace(config, **chosen) if chosen else config


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The GAN inside a DistributedDataParallel wrapper (or the GAN itself)."""
    return getattr(model, "module", model)


def _twice(labels: torch.Tensor | None) -> torch.Tensor | None:
    return None if labels is None else torch.cat([labels, labels])


def _default_cache_dir() -> Path:
    """The studio's cache folder, for evaluation of a loaded run (the adapter may not import
    studio.api, which owns this rule)."""
    override = os.environ.get("STUDIO_CACHE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("aigc-studio"))
