"""Image GAN benchmark: the project's GAN against a plain PyTorch DCGAN, in one process.

What it measures, in order:

1. Training speed at equal shapes: images/s of one discriminator + generator step (64 real
   and 64 fake images) for the project's model (`studio.api.prepare_training("image", ...)`,
   its real `training_step` with DiffAugment, spectral norm, EMA, through the engine's step
   context) and for the PyTorch DCGAN example (pytorch/examples dcgan/main.py: its networks,
   BCELoss, Adam(2e-4, (0.5, 0.999)), its three D passes per step) at
   - 32 px grey, 64 wide, z of 100 (the example's networks with one 4x4 layer fewer on each
     side, as DCGAN tutorials run MNIST),
   - 64 px RGB, 64 wide, z of 100 (the example itself).
   The project's model runs unconditional here, as the example is (equal shapes: with classes
   its first layer also takes a class embedding). Each runner has a process of its own, with
   the memory allocator it has in real use: the example with glibc's default malloc, the
   project with the engine's `keep_freed_memory()`; a fourth runner, the example with that
   setting too, shows how much of the difference is the allocator. The runners take turns in
   short blocks, so that noise from other work hits all alike; the median step time of each is
   reported. The project's model also runs in bf16 (autocast, `--set precision=bf16`).
2. Sample quality after N minutes of training on the MNIST test digits (10,000 images, 32 px):
   FID and KID of 5,000 samples against the 10,000 digits, with the project's own feature
   network (a classifier trained on the digits' labels; the same one for both models), for the
   project's model (`studio.api.train`, 32 px grey, 64 wide, its defaults otherwise, resumed
   from milestone to milestone -- resume is exact) and for the plain DCGAN (its own loop,
   sampled as the example does: a batch of 64 in training mode; it trains after the project in
   the same process, so it has the studio's allocator setting too). Minutes are training time
   only: evaluation runs between the milestones, off the clock. Both models train on the same
   32 px digits: the 28 px originals padded with their black background (`--fit auto`, the
   project's default) or scaled up (`--fit resize`, which blurs them). Beside FID and KID, the
   share of midtone pixels and the RMS gradient sharpness of the samples and the digits
   (generators/image/evaluation.py `sharpness_statistics`): blur shows in these numbers.
3. (`--parts ema`) The EMA's ramp-up: the project's model with `ema_rampup` 0 (the decay ramps
   as (1+t)/(10+t)) and 0.05 (StyleGAN2's: half-life at most 5% of the images seen), FID after
   1, 2 and 5 minutes (`--ema-minutes`), judged as in 2.

Run it from the repository root, on an otherwise idle machine:

    .venv/bin/python bench/bench_image.py                      # 5, 10, 20 minutes: ~55 min
    .venv/bin/python bench/bench_image.py --minutes 2,5        # shorter schedule
    .venv/bin/python bench/bench_image.py --parts ema          # the EMA ramp-up: ~20 min
    .venv/bin/python bench/bench_image.py --quick              # smoke run, ~2 min

It prints a summary and writes every number to bench/results/bench_image.json (and sample
grids of both models at each milestone to bench/results/bench_image_*.png); --out elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's studio/ and generators/, even if not installed
os.environ.setdefault("STUDIO_CACHE_DIR", "/tmp/studio-cache-bench")  # never the user's cache

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from PIL import Image  # noqa: E402

from generators.image.data import load_images  # noqa: E402
from generators.image.evaluation import (extract_features, fid, kid,  # noqa: E402
                                         sharpness_statistics, to_input, train_extractor)
from generators.image.sampling import grid, to_uint8  # noqa: E402
from studio import api  # noqa: E402
from studio.engine import _Context, configure_threads, keep_freed_memory  # noqa: E402

from side_by_side import (cpu_snapshot, other_cpu_pct, serve_steps,  # noqa: E402  (bench/ is on
                          time_in_turns)  # the path: this script's folder)

MNIST = Path(os.environ.get("BENCH_MNIST", ROOT.parent / "shared" / "data" / "mnist"))  # the test digits
RESULTS = ROOT / "bench" / "results"
NZ = 100  # the DCGAN example's latent size; the project's model is given the same
BATCH = 64
EVAL_SAMPLES = 5000
EVAL_SEED = 1_000_000  # the project's evaluation seeds, as generators/image uses them


def say(text: str = "") -> None:
    print(text, flush=True)


# --- the plain DCGAN (pytorch/examples, dcgan/main.py) ------------------------------------------

def weights_init(m):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)


class PlainG(nn.Module):
    def __init__(self, nc: int, ngf: int = 64, size: int = 64):
        super().__init__()
        mult = 8 if size == 64 else 4
        layers = [nn.ConvTranspose2d(NZ, ngf * mult, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * mult), nn.ReLU(True)]
        while mult > 1:
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ngf * mult // 2), nn.ReLU(True)]
            mult //= 2
        layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x)


class PlainD(nn.Module):
    def __init__(self, nc: int, ndf: int = 64, size: int = 64):
        super().__init__()
        top = 8 if size == 64 else 4
        layers = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        while mult < top:
            layers += [nn.Conv2d(ndf * mult, ndf * mult * 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ndf * mult * 2), nn.LeakyReLU(0.2, inplace=True)]
            mult *= 2
        layers += [nn.Conv2d(ndf * top, 1, 4, 1, 0, bias=False), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


class PlainDCGAN:
    """The example's training step, line for line (real_label 1, fake_label 0)."""

    def __init__(self, nc: int, size: int, seed: int = 0):
        torch.manual_seed(seed)
        self.netG, self.netD = PlainG(nc, size=size), PlainD(nc, size=size)
        self.netG.apply(weights_init)
        self.netD.apply(weights_init)
        self.criterion = nn.BCELoss()
        self.optimizerD = torch.optim.Adam(self.netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optimizerG = torch.optim.Adam(self.netG.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def step(self, real: torch.Tensor) -> None:
        netD, netG, criterion = self.netD, self.netG, self.criterion
        batch_size = real.size(0)
        netD.zero_grad()
        label = torch.full((batch_size,), 1.0)
        errD_real = criterion(netD(real), label)
        errD_real.backward()
        noise = torch.randn(batch_size, NZ, 1, 1)
        fake = netG(noise)
        label.fill_(0.0)
        errD_fake = criterion(netD(fake.detach()), label)
        errD_fake.backward()
        self.optimizerD.step()
        netG.zero_grad()
        label.fill_(1.0)
        errG = criterion(netD(fake), label)
        errG.backward()
        self.optimizerG.step()

    @torch.no_grad()
    def samples(self, n: int, seed: int) -> torch.Tensor:
        """As the example draws its fixed-noise grid: netG in training mode, batches of 64."""
        rng = torch.Generator().manual_seed(seed)
        out = [self.netG(torch.randn(BATCH, NZ, 1, 1, generator=rng)) for _ in range(0, n, BATCH)]
        return torch.cat(out)[:n]


# --- 1. step speed at equal shapes -----------------------------------------------------------------

def project_engine(folder: Path, data: str, resolution: int, channels: str, precision: str,
                   max_steps: int = 10**6):
    engine, _ = api.prepare_training(
        "image", data=data, run_dir=str(folder), max_steps=max_steps, events="none",
        settings=[f"resolution={resolution}", f"channels={channels}", "g_width=64", "d_width=64",
                  f"latent_dim={NZ}", f"batch_size={BATCH}", "device=cpu", f"precision={precision}",
                  "conditional=no", "eval_every=0", "preview_every=0", "checkpoint_every=0"])
    return engine


SPEED_RUNNERS = ("plain", "plain-kept", "fp32", "bf16")


def speed_worker(kind: str, folder: str, resolution: int, channels: str, conn) -> None:
    """One runner in a process of its own, so that each has the memory allocator it has in
    real use: "plain" is the DCGAN example as a user runs it (glibc's default malloc);
    "plain-kept" is the same with the studio's `keep_freed_memory()`, to show how much of the
    difference is the allocator; "fp32" and "bf16" are the project's step through its engine
    (which applies it). Serves its steps as side_by_side.serve_steps does."""
    configure_threads(0)
    nc = 1 if channels == "grey" else 3
    if kind.startswith("plain"):
        if kind == "plain-kept":
            keep_freed_memory()
        plain = PlainDCGAN(nc, resolution)
        real = torch.rand(BATCH, nc, resolution, resolution, generator=torch.Generator().manual_seed(0)) * 2 - 1
        run = lambda: plain.step(real)  # noqa: E731
        params = {"G": sum(p.numel() for p in plain.netG.parameters()),
                  "D": sum(p.numel() for p in plain.netD.parameters())}
    else:
        data = str(MNIST) if channels == "grey" else None  # MNIST digits, or the built-in shapes
        engine = project_engine(Path(folder) / f"{resolution}-{kind}", data, resolution, channels, kind)
        ctx = _Context(engine)
        batch = engine.generator.get_batch("train", engine.data_rng)

        def run():
            engine.generator.training_step(batch, ctx)
            ctx.step += 1
        gan = engine.generator.model
        params = {"G": sum(p.numel() for p in gan.G.parameters()),
                  "D": sum(p.numel() for p in gan.D.parameters())}
    serve_steps(conn, params, run)


def step_speed(folder: Path, resolution: int, channels: str, blocks: int, block: int, warmup: int) -> dict:
    """Median step time of each runner, the runners taking turns block by block (one runs at a
    time, the others wait), so that noise from other work hits all of them alike."""
    turns = time_in_turns(speed_worker, SPEED_RUNNERS, (str(folder), resolution, channels), blocks, block, warmup)
    medians = turns.median_s
    return {"shape": f"{resolution} px {channels}, 64 wide, z {NZ}, batch {BATCH}",
            "median_s": {k: round(v, 4) for k, v in medians.items()},
            "images_per_s": {k: round(BATCH / v, 1) for k, v in medians.items()},
            "speedup_fp32": round(medians["plain"] / medians["fp32"], 2),
            "speedup_fp32_same_allocator": round(medians["plain-kept"] / medians["fp32"], 2),
            "speedup_bf16": round(medians["plain"] / medians["bf16"], 2),
            "params": turns.info, "steps_timed": turns.steps_timed, "other_cpu_pct": turns.other_cpu_pct}


# --- 2. FID after N minutes, 3. the EMA's ramp-up ----------------------------------------------------

def score(extractor, real_features: np.ndarray, fake: np.ndarray) -> dict:
    """FID and KID of uint8 (N, H, W, C) images: both models' samples are scored as pictures,
    as the real digits are (the project's `sample` gives them so); and their midtone share and
    gradient sharpness (the blur issue 13 measured, which the features may not show)."""
    features = extract_features(extractor, fake, torch.device("cpu"))
    kid_mean, kid_std = kid(real_features, features)
    return {"fid": round(fid(real_features, features), 3), "kid": round(kid_mean, 5),
            "kid_std": round(kid_std, 5), **pixel_statistics(fake)}


def pixel_statistics(images: np.ndarray) -> dict:
    stats = sharpness_statistics(images)
    return {"midtone": round(stats["midtone"], 4), "sharpness": round(stats["sharpness"], 4)}


def save_grid(images: np.ndarray, path: Path) -> None:
    """The first 64 of uint8 (N, H, W, 1) images, 8 by 8."""
    Image.fromarray(grid(to_input(images[:64], torch.device("cpu")), columns=8)[..., 0]).save(path)


class Judge:
    """The MNIST test digits at 32 px (fitted as `fit` says, for both models alike) and the
    feature network that scores every sample set against them."""

    def __init__(self, fit: str, feature_steps: int):
        self.fit = fit
        digits = load_images(str(MNIST), 32, "white", Path(os.environ["STUDIO_CACHE_DIR"]), fit=fit)
        self.real = np.array(digits.images)  # in memory (the cache's is a read-only memmap)
        say(f"  training the feature network (a classifier on the 10,000 digits, {feature_steps} steps)")
        self.extractor, self.info = train_extractor(self.real, digits.labels, 10, feature_steps,
                                                    torch.device("cpu"))
        self.real_features = extract_features(self.extractor, self.real, torch.device("cpu"))

    def score(self, fake: np.ndarray) -> dict:
        return score(self.extractor, self.real_features, fake)

    def record(self) -> dict:
        """What the scores are measured against (the same for every model in one process)."""
        return {"extractor": {**self.info, "name": "own-classifier (MNIST test digits)"},
                "fit": self.fit, "real": pixel_statistics(self.real),
                "real_vs_real": score(self.extractor, self.real_features[:5000], self.real[5000:])}


def train_project(run: Path, minutes: list[float], judge: Judge, extra: list[str], name: str,
                  grids: Path) -> list[dict]:
    """The project's model (`studio.api.train`, 32 px grey, 64 wide, its defaults otherwise
    and `extra`), resumed from milestone to milestone (resume is exact), scored after each."""
    settings = ["resolution=32", "channels=grey", "g_width=64", "d_width=64", f"latent_dim={NZ}",
                f"batch_size={BATCH}", "device=cpu", "eval_every=0", "preview_every=0",
                "checkpoint_every=0", "log_every=50", f"fit={judge.fit}", *extra]
    rows, done = [], 0.0
    for m in minutes:
        before = cpu_snapshot()
        if done == 0:
            api.train("image", data=str(MNIST), run_dir=str(run), max_steps=10**7, max_minutes=m,
                      settings=settings, events="none")
        else:
            api.train(resume=str(run), max_minutes=m - done, events="none")
        busy = other_cpu_pct(before, cpu_snapshot())
        done = m
        _, gen, ckpt = api.load_run(str(run), device="cpu")
        step = int(ckpt.name.split("_")[1])
        # Seeds EVAL_SEED onwards, one image each; with classes, the classes in turn by seed.
        fake = np.stack([image.data for image in gen.sample(gen.SampleConfig(), n=EVAL_SAMPLES, seed=EVAL_SEED)])
        save_grid(fake, grids / f"bench_image_{name}_{m:g}min.png")
        rows.append({"minutes": m, "steps": step, **judge.score(fake), "other_cpu_pct": busy})
        say(f"  {name} {m:g} min: step {step}, {rows[-1]}")
    return rows


def quality_race(folder: Path, minutes: list[float], judge: Judge, grids: Path) -> dict:
    """FID and KID of both models after each milestone; sample grids go to `grids`."""
    out = {**judge.record(), "project": train_project(folder / "race-project", minutes, judge, [],
                                                      "project", grids), "plain": []}

    # The plain DCGAN: its own loop on the same digits, the clock stopped while it is scored.
    plain = PlainDCGAN(1, 32)
    rng = torch.Generator().manual_seed(0)
    images = torch.from_numpy(judge.real).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    elapsed, step = 0.0, 0
    for m in minutes:
        before = cpu_snapshot()
        while elapsed < m * 60:
            t0 = time.perf_counter()
            index = torch.randint(len(images), (BATCH,), generator=rng)
            plain.step(images[index])
            step += 1
            elapsed += time.perf_counter() - t0
        busy = other_cpu_pct(before, cpu_snapshot())
        fake = to_uint8(plain.samples(EVAL_SAMPLES, seed=EVAL_SEED))
        save_grid(fake, grids / f"bench_image_plain_{m:g}min.png")
        out["plain"].append({"minutes": m, "steps": step, **judge.score(fake), "other_cpu_pct": busy})
        say(f"  plain {m:g} min: step {step}, {out['plain'][-1]}")
    return out


EMA_RAMPUPS = (0.0, 0.05)  # today's ramp, (1+t)/(10+t); StyleGAN2's images-seen ramp


def ema_race(folder: Path, minutes: list[float], judge: Judge, grids: Path) -> dict:
    """The project's model with each `ema_rampup` (everything else its defaults), scored at
    the same milestones: does ramping the average by images seen sample better early on?"""
    out = judge.record()
    for rampup in EMA_RAMPUPS:
        name = f"ema_rampup_{rampup:g}"
        out[name] = train_project(folder / name, minutes, judge, [f"ema_rampup={rampup}"], name, grids)
    return out


def summary(res: dict) -> str:
    lines = []
    if res.get("speed"):
        lines += ["", "| shape | plain DCGAN | plain DCGAN, studio allocator | project fp32 | project bf16 "
                  "| fp32 speedup | same-allocator speedup | bf16 speedup | others' CPU |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in res.get("speed", []):
        ips, ms = row["images_per_s"], row["median_s"]
        cells = " | ".join(f"{ips[k]:.0f} img/s ({ms[k] * 1e3:.0f} ms)" for k in SPEED_RUNNERS)
        lines.append(f"| {row['shape']} | {cells} | **{row['speedup_fp32']:.2f}x** "
                     f"| {row['speedup_fp32_same_allocator']:.2f}x | {row['speedup_bf16']:.2f}x "
                     f"| {row['other_cpu_pct']}% |")
    race = res.get("race")
    if race:
        lines += ["", f"digits fitted to 32 px by fit={race['fit']}",
                  "| minutes | project steps | project FID | project KID | project midtone | project sharpness "
                  "| plain steps | plain FID | plain KID | plain midtone | plain sharpness |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for p, q in zip(race["project"], race["plain"]):
            lines.append(f"| {p['minutes']:g} | {p['steps']} | **{p['fid']:.2f}** | {p['kid']:.4f} "
                         f"| {p['midtone']:.3f} | {p['sharpness']:.3f} | {q['steps']} | {q['fid']:.2f} "
                         f"| {q['kid']:.4f} | {q['midtone']:.3f} | {q['sharpness']:.3f} |")
        lines.append(real_line(race))
    ema = res.get("ema")
    if ema:
        names = [f"ema_rampup_{r:g}" for r in EMA_RAMPUPS]
        lines += ["", "| minutes | " + " | ".join(f"{n} steps | {n} FID | {n} midtone | {n} sharpness"
                                                    for n in names) + " |",
                  "| --- |" + " --- | --- | --- | --- |" * len(names)]
        for rows in zip(*(ema[n] for n in names)):
            lines.append(f"| {rows[0]['minutes']:g} | " + " | ".join(
                f"{r['steps']} | {r['fid']:.2f} | {r['midtone']:.3f} | {r['sharpness']:.3f}" for r in rows) + " |")
        lines.append(real_line(ema))
    return "\n".join(lines)


def real_line(part: dict) -> str:
    rr, real = part["real_vs_real"], part["real"]
    return (f"\nreal vs real (5,000 digits against the other 5,000): FID {rr['fid']:.2f}, "
            f"KID {rr['kid']:.4f}; real digits: midtone {real['midtone']:.3f}, sharpness "
            f"{real['sharpness']:.3f}; extractor held-out accuracy "
            f"{part['extractor'].get('held_out_accuracy', 0):.3f}")


PARTS = ("speed", "race", "ema")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="speed,race",
                        help=f"which parts to run, comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--minutes", default="5,10,20", help="training-time milestones of the race")
    parser.add_argument("--ema-minutes", default="1,2,5", help="training-time milestones of the ema part")
    parser.add_argument("--fit", default="auto", choices=("auto", "pad", "resize"),
                        help="how the 28 px digits become 32 px, for both models (auto: padded)")
    parser.add_argument("--quick", action="store_true", help="smoke run: few steps, 0.2 minutes")
    parser.add_argument("--skip-race", action="store_true", help="only the speed part (--parts speed)")
    parser.add_argument("--out", default=str(RESULTS / "bench_image.json"),
                        help="where the JSON results go (the sample grids go beside it)")
    args = parser.parse_args()
    parts = ["speed"] if args.skip_race else [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: no part {', '.join(unknown)}; the parts are {', '.join(PARTS)}")
    threads = configure_threads(0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    minutes = [0.2] if args.quick else [float(m) for m in args.minutes.split(",")]
    ema_minutes = [0.1, 0.2] if args.quick else [float(m) for m in args.ema_minutes.split(",")]
    blocks, block, warmup = (2, 2, 1) if args.quick else (12, 3, 3)
    say(f"torch {torch.__version__}, {threads} threads, cache {os.environ['STUDIO_CACHE_DIR']}")
    res: dict = {"torch": torch.__version__, "threads": threads, "parts": parts, "speed": []}
    with tempfile.TemporaryDirectory() as tmp:
        if "speed" in parts:
            for resolution, channels in ((32, "grey"), (64, "rgb")):
                say(f"step speed at {resolution} px {channels} ...")
                res["speed"].append(step_speed(Path(tmp), resolution, channels, blocks, block, warmup))
                say(f"  {res['speed'][-1]}")
        judge = None
        if "race" in parts or "ema" in parts:
            judge = Judge(args.fit, 100 if args.quick else 600)
        if "race" in parts:
            say(f"FID after {', '.join(f'{m:g}' for m in minutes)} minutes on the MNIST test digits ...")
            res["race"] = quality_race(Path(tmp), minutes, judge, out.parent)
        if "ema" in parts:
            say(f"EMA ramp-up {', '.join(f'{r:g}' for r in EMA_RAMPUPS)}: FID after "
                f"{', '.join(f'{m:g}' for m in ema_minutes)} minutes ...")
            res["ema"] = ema_race(Path(tmp), ema_minutes, judge, out.parent)
    out.write_text(json.dumps(res, indent=2))
    say(summary(res))
    say(f"\nresults: {out}")


if __name__ == "__main__":
    main()
