"""Video generator benchmark: training speed, memory while reading a large video, and quality
over training time against the alternatives and baselines, in one run.

What it measures, in order:

1. Training speed: clips/s of one training step (discriminators + generator, through the
   engine's step context) on the built-in bouncing shapes, clips of 16 frames, at 32 px (the
   32px preset: batch 16) and 64 px (the 64px preset: batch 8), for
   - "sparse": the default (train_frames=3 at sorted random times, temporal_d=pairs),
   - "all-frames": every frame of the clip rendered and judged (train_frames=16),
   - "3d": the 3D-conv temporal discriminator on THREE_D_FRAMES consecutive frames.
   Each runner has a process of its own (threads as the engine picks them); the runners take
   turns in short blocks, so that noise from other work hits all alike, and the median step
   time of each is reported, with its ratio to the default.
2. Memory while reading a large video: a LONG_VIDEO MP4 written with imageio-ffmpeg in a
   temporary folder, read by `generators.video.data.load_clips` in a fresh process; the
   increase of that process's peak RSS (VmHWM) and ffmpeg's own peak, beside what the decoded
   video would take whole.
3. Quality over training time on the built-in bouncing shapes (or bouncing MNIST digits with
   --mnist): after each milestone (default 5, 10, 20 minutes of training, resumed from one to
   the next -- resume is exact; evaluation runs between milestones, off the clock), `studio
   eval`'s scores (temporal FD, per-frame FID/KID, motion and flicker) for the default and the
   3D-conv alternative, and the same scores for an independent-frames baseline: the image
   generator trained for the same minutes on the training clips' frames, each clip's frames
   drawn independently (one seed each, the clip's class), scored in the same feature networks
   against the same held-out clips. The generator's own baselines (real, static, shuffled and
   independent real frames) go beside them, so the numbers have a scale. The configurations
   train one after another (2 shared cores), or side by side with --parallel.

Run it from the repository root, on an otherwise idle machine:

    .venv/bin/python bench/bench_video.py                       # 5, 10, 20 minutes: ~90 min
    .venv/bin/python bench/bench_video.py --minutes 1,2,4       # a scaled-down race
    .venv/bin/python bench/bench_video.py --quick               # smoke run, a few minutes

It prints a summary and writes every number to bench/results/bench_video.json (--out elsewhere).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's studio/ and generators/, even if not installed
os.environ.setdefault("STUDIO_CACHE_DIR", "/tmp/studio-cache-bench")  # never the user's cache

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from studio.runstore import write_json  # noqa: E402

from side_by_side import (cpu_snapshot, other_cpu_pct, serve_steps,  # noqa: E402  (bench/ is on
                          time_in_turns)  # the path: this script's folder)

MNIST = Path(os.environ.get("BENCH_MNIST", ROOT.parent / "shared" / "data" / "mnist"))
RESULTS = ROOT / "bench" / "results"
FRAMES = 16  # clip length of every measurement, as the issue asks
THREE_D_FRAMES = 8  # consecutive frames the 3D-conv D sees: a short clip, half the training clip
SPEED_RUNNERS = {
    "sparse": ["train_frames=3", "temporal_d=pairs"],
    "all-frames": [f"train_frames={FRAMES}", "temporal_d=pairs"],
    "3d": [f"train_frames={THREE_D_FRAMES}", "temporal_d=3d"],
}
RACE_VIDEO = {"default": SPEED_RUNNERS["sparse"], "3d": SPEED_RUNNERS["3d"]}
QUIET = ["eval_every=0", "preview_every=0", "checkpoint_every=0", "log_every=50", "device=cpu"]
LONG_VIDEO = (1280, 720, 600, 30)  # width, height, frames, fps: 20 s of 720p
QUICK_VIDEO = (320, 240, 96, 30)  # 6 clips: a run needs 4
READ_RESOLUTION = 64
EVAL_CLIPS, FEATURE_STEPS = 500, 600  # the generator's long-run evaluation sizes, for every row
EVAL_SEED = 1_000_000  # as the generators draw evaluation seeds: never the seeds users look at
FRAMES_PER_CLIP_FOR_IMAGES = 4  # frames of each training clip the image baseline trains on


def say(text: str = "") -> None:
    print(text, flush=True)


# --- 1. training speed ---------------------------------------------------------------------------

def speed_worker(kind: str, folder: str, resolution: int, conn) -> None:
    """One runner in a process of its own: prepares a video run as `studio train` does and
    times its real training step on one batch (see side_by_side.serve_steps)."""
    from studio import api
    from studio.engine import _Context, configure_threads
    threads = configure_threads(0)
    engine, _ = api.prepare_training(
        "video", data=None, run_dir=str(Path(folder) / f"{resolution}-{kind}"), max_steps=10**6,
        events="none", preset=f"{resolution}px", settings=[f"frames={FRAMES}", *SPEED_RUNNERS[kind], *QUIET])
    ctx = _Context(engine)
    gen = engine.generator
    batch = gen.get_batch("train", engine.data_rng)

    def run():
        gen.training_step(batch, ctx)
        ctx.step += 1
    gan = gen.model
    serve_steps(conn, {"batch": gen.config.batch_size, "threads": threads,
                       "params": {name: sum(p.numel() for p in getattr(gan, name).parameters())
                                  for name in ("G", "D", "D_time")}}, run)


def step_speed(folder: Path, resolution: int, blocks: int, block: int, warmup: int) -> dict:
    """Median step time of each runner, the runners taking turns block by block (one runs at a
    time, the others wait). Workers start one after another, so the first builds the built-in
    clips' cache and the others read it."""
    turns = time_in_turns(speed_worker, SPEED_RUNNERS, (str(folder), resolution), blocks, block, warmup)
    info, medians = turns.info, turns.median_s
    batch = info["sparse"]["batch"]
    return {"shape": f"{FRAMES} frames of {resolution}x{resolution} RGB, batch {batch}",
            "resolution": resolution, "batch": batch, "threads": info["sparse"]["threads"],
            "median_s": {k: round(v, 4) for k, v in medians.items()},
            "clips_per_s": {k: round(batch / v, 2) for k, v in medians.items()},
            "speed_vs_default": {k: round(medians["sparse"] / v, 3) for k, v in medians.items()},
            "params": {k: v["params"] for k, v in info.items()},
            "steps_timed": turns.steps_timed, "other_cpu_pct": turns.other_cpu_pct}


# --- 2. memory while reading a large video ------------------------------------------------------

def write_long_video(path: Path, width: int, height: int, frames: int, fps: int) -> None:
    """A video of a textured picture panning and brightening over time (so no two frames are
    alike and the encoder cannot skip them), written frame by frame."""
    import imageio_ffmpeg
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    base = np.kron(texture, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, macro_block_size=8,
                                         output_params=["-preset", "ultrafast"], ffmpeg_log_level="error")
    writer.send(None)
    for t in range(frames):
        frame = np.roll(base, (t * 3, t * 5), axis=(0, 1))
        writer.send(np.ascontiguousarray(np.clip(frame.astype(np.int16) + t % 64 - 32, 0, 255).astype(np.uint8)))
    writer.close()


def _peak_rss_kib(pid: str = "self") -> int:
    """A process's peak resident memory (VmHWM) in KiB; 0 once it has gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.startswith("VmHWM:")), 0)


def _watch_children(peaks: dict, stop) -> None:
    """Every few milliseconds, the peak memory of each child process (ffmpeg), which the
    kernel's rusage would report wrongly: a child forked from this process counts its pages."""
    while not stop.wait(0.02):
        for task in Path("/proc/self/task").iterdir():
            for pid in (task / "children").read_text().split():
                peaks[pid] = max(peaks.get(pid, 0), _peak_rss_kib(pid))


def measure_read(video: str, cache: str) -> None:
    """Runs in a fresh process (--measure-read): reads `video` as the video generator does and
    prints its peak RSS before and after, ffmpeg's peak and what came out, as JSON."""
    import threading

    from generators.video.data import load_clips
    before = _peak_rss_kib()
    peaks: dict = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_children, args=(peaks, stop), daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    data = load_clips(video, FRAMES, 1, READ_RESOLUTION, "auto", Path(cache))
    seconds = time.perf_counter() - t0
    stop.set()
    watcher.join()
    print(json.dumps({"peak_rss_before_mib": round(before / 1024, 1),
                      "peak_rss_after_mib": round(_peak_rss_kib() / 1024, 1),
                      "ffmpeg_peak_rss_mib": round(max(peaks.values(), default=0) / 1024, 1),
                      "clips": int(len(data)), "clip_shape": list(data.clips.shape[1:]),
                      "clips_mib": round(data.clips.nbytes / 2**20, 1), "read_s": round(seconds, 1)}))


def read_memory(folder: Path, width: int, height: int, frames: int, fps: int) -> dict:
    video = folder / "long.mp4"
    t0 = time.perf_counter()
    write_long_video(video, width, height, frames, fps)
    written = time.perf_counter() - t0
    done = subprocess.run([sys.executable, __file__, "--measure-read", str(video), str(folder / "cache")],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"reading {video} failed:\n{done.stderr[-2000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    increase = measured["peak_rss_after_mib"] - measured["peak_rss_before_mib"]
    whole = width * height * 3 * frames / 2**20
    return {"video": f"{width}x{height}, {frames} frames at {fps} fps, H.264 ({video.stat().st_size / 2**20:.1f} MiB)",
            "read_as": f"{FRAMES}-frame clips at {READ_RESOLUTION} px", "write_s": round(written, 1),
            **measured, "peak_rss_increase_mib": round(increase, 1), "decoded_whole_mib": round(whole, 1),
            "fraction_of_whole": round(increase / whole, 4)}


# --- 3. quality over training time ---------------------------------------------------------------

def scorer(data: str | None):
    """A video generator holding the data as a run does (the same held-out clips) and the same
    feature networks as `studio eval` uses for runs of these sizes (trained once, cached)."""
    from studio import api
    from generators.video import VideoConfig, VideoGenerator
    gen = VideoGenerator(VideoConfig(frames=FRAMES, eval_clips=EVAL_CLIPS, feature_steps=FEATURE_STEPS))
    gen.device = torch.device("cpu")
    gen.load_data(data, None, api.cache_dir())
    return gen


def write_frames_for_images(gen, folder: Path) -> Path:
    """The training clips' frames (FRAMES_PER_CLIP_FOR_IMAGES of each, evenly spaced) as PNGs,
    one subfolder per class, for the image generator: what it would be trained on by a user
    who has only an image generator."""
    picks = np.linspace(0, FRAMES - 1, FRAMES_PER_CLIP_FOR_IMAGES).round().astype(int)
    for i, (clip, label) in enumerate(zip(gen.train_clips, gen.train_labels)):
        sub = folder / (gen.classes[int(label)] if gen.classes else "all")
        sub.mkdir(parents=True, exist_ok=True)
        for t in picks:
            frame = clip[t]
            Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame).save(sub / f"{i:05d}-{t:02d}.png")
    return folder


def independent_clips(image_run: Path, classes: list[str], labels: np.ndarray, frames: int) -> np.ndarray:
    """One clip per label, each frame drawn by the image generator from a seed of its own (of
    the clip's class), as an image generator asked for a clip's frames would draw them."""
    from studio import api
    _, image_gen, _ = api.load_run(str(image_run), device="cpu")
    clips = []
    for i, label in enumerate(labels):
        # -1: no class asked (the image model has none, or the clip has none)
        asked = image_gen.classes.index(classes[int(label)]) if image_gen.classes and label >= 0 else -1
        # `frames` images of seeds EVAL_SEED + i * frames onwards, one each
        images = image_gen.sample(image_gen.SampleConfig(class_label=asked), n=frames, seed=EVAL_SEED + i * frames)
        clips.append(np.stack([image.data for image in images]))
    return np.stack(clips)


def _rounded(scores: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}


def race_config(kind: str, folder: str, data: str | None, minutes: list[float]) -> list[dict]:
    """Train one configuration, milestone by milestone, and score it after each."""
    from studio import api
    from studio.engine import configure_threads
    configure_threads(0)
    run = Path(folder) / f"race-{kind}"
    rows, done = [], 0.0
    if kind == "independent":
        reference = scorer(data)
        _, real_labels = reference.evaluation_clips()
        images = write_frames_for_images(reference, Path(folder) / "frames-for-images")
    for m in minutes:
        before = cpu_snapshot()
        t0 = time.perf_counter()
        if done:
            api.train(resume=str(run), max_minutes=m - done, events="none")
        elif kind == "independent":
            api.train("image", data=str(images), run_dir=str(run), max_steps=10**7, max_minutes=m,
                      settings=["resolution=32", *QUIET], events="none")
        else:
            api.train("video", data=data, run_dir=str(run), max_steps=10**7, max_minutes=m,
                      settings=[f"frames={FRAMES}", *RACE_VIDEO[kind], *QUIET], events="none")
        busy = other_cpu_pct(before, cpu_snapshot())
        wall = time.perf_counter() - t0
        done = m
        if kind == "independent":
            fake = independent_clips(run, reference.classes, real_labels, FRAMES)
            scores = reference.score_clips(fake)
            step = int(api.load_run(str(run), device="cpu")[2].name.split("_")[1])
        else:
            result = api.evaluate(str(run), device="cpu")
            step = int(result.pop("checkpoint").split("_")[1])
            scores = {k: v for k, v in result.items() if k not in ("run", "data")}
        rows.append({"minutes": m, "steps": step, **_rounded(scores), "train_wall_s": round(wall, 1),
                     "other_cpu_pct": busy})
        say(f"  {kind} {m:g} min: step {step}, tfd {scores['tfd']:.2f}, frame FID "
            f"{scores['frame_fid']:.2f}, flicker {scores['flicker']:.3f}, motion gap {scores['motion_gap']:.3f}")
    return rows


def quality_race(folder: Path, data: str | None, minutes: list[float], parallel: bool, keep) -> None:
    """The race's figures, handed to `keep` as they grow (after the baselines and after each
    configuration), so that a run stopped early keeps what it measured."""
    say("  the feature networks and the generator's baselines (real, static, shuffled, independent real frames)")
    reference = scorer(data)  # trains the shared feature networks once, before any race
    out = {"minutes": minutes, "data": data or "built-in bouncing shapes", "eval_clips_max": EVAL_CLIPS,
           "feature_steps": FEATURE_STEPS,
           "baselines": {name: _rounded(s) for name, s in reference.evaluate_baselines().items()}}
    keep(out)
    kinds = [*RACE_VIDEO, "independent"]
    if parallel:
        with multiprocessing.get_context("spawn").Pool(len(kinds)) as pool:
            out.update(zip(kinds, pool.starmap(race_config, [(k, str(folder), data, minutes) for k in kinds])))
        keep(out)
        return
    for kind in kinds:
        out[kind] = race_config(kind, str(folder), data, minutes)
        keep(out)


# --- report --------------------------------------------------------------------------------------

def summary(res: dict) -> str:
    lines = []
    if res.get("speed"):
        names = list(SPEED_RUNNERS)
        lines += ["", "| clips | " + " | ".join(names) + " | others' CPU |",
                  "| --- | " + " | ".join("---" for _ in names) + " | --- |"]
        for row in res["speed"]:
            cells = " | ".join(f"{row['clips_per_s'][k]:.1f} clips/s ({row['speed_vs_default'][k]:.2f}x)"
                               for k in names)
            lines.append(f"| {row['shape']} | {cells} | {row['other_cpu_pct']}% |")
    memory = res.get("read_memory")
    if memory:
        lines.append(f"\nreading {memory['video']} as {memory['read_as']}: peak RSS +{memory['peak_rss_increase_mib']} "
                     f"MiB (ffmpeg {memory['ffmpeg_peak_rss_mib']} MiB) against {memory['decoded_whole_mib']} MiB "
                     f"decoded whole; {memory['clips']} clips in {memory['read_s']} s")
    race = res.get("race")
    if race:
        lines += ["", "| minutes | config | steps | temporal FD | frame FID | frame KID | motion gap | flicker |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        kinds = [k for k in (*RACE_VIDEO, "independent") if k in race]  # a stopped run has fewer
        for i in range(len(race[kinds[0]]) if kinds else 0):
            for kind in kinds:
                r = race[kind][i]
                lines.append(f"| {r['minutes']:g} | {kind} | {r['steps']} | {r['tfd']:.2f} | {r['frame_fid']:.2f} "
                             f"| {r['frame_kid']:.4f} | {r['motion_gap']:.3f} | {r['flicker']:.3f} |")
        for name, r in race["baselines"].items():
            lines.append(f"| - | baseline: {name} | - | {r['tfd']:.2f} | {r['frame_fid']:.2f} | {r['frame_kid']:.4f} "
                         f"| {r['motion_gap']:.3f} | {r['flicker']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--measure-read":
        measure_read(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", default="5,10,20", help="training-time milestones (comma-separated)")
    parser.add_argument("--quick", action="store_true", help="smoke run: few steps, a small video, 0.5 minutes")
    parser.add_argument("--mnist", action="store_true", help=f"race on bouncing MNIST digits from {MNIST}")
    parser.add_argument("--parallel", action="store_true", help="train the race's configurations side by side")
    parser.add_argument("--parts", default="speed,memory,race", help="which parts to run (comma-separated)")
    parser.add_argument("--out", default=str(RESULTS / "bench_video.json"),
                        help="where the JSON results go (parts not run keep the figures already there)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    unknown = parts - {"speed", "memory", "race"}
    if unknown:
        parser.error(f"--parts: no part {', '.join(sorted(unknown))}; choose from speed, memory, race "
                     f"(comma-separated)")
    from studio.engine import configure_threads
    threads = configure_threads(0)
    minutes = [0.5] if args.quick else [float(m) for m in args.minutes.split(",")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res: dict = {"torch": torch.__version__, "threads": threads, "quick": args.quick}
    say(f"torch {torch.__version__}, {threads} threads, cache {os.environ['STUDIO_CACHE_DIR']}")

    def keep(part: str, figures) -> None:
        """Write `figures` as `part` of the results now; parts not run this time keep their
        last figures (read each time: another run of this script may have written some)."""
        res[part] = figures
        write_json(out, {**(json.loads(out.read_text()) if out.exists() else {}), **res})

    with tempfile.TemporaryDirectory() as tmp:
        if "speed" in parts:
            blocks, block, warmup = (2, 1, 1) if args.quick else (5, 1, 1)
            speeds = []
            for resolution in (32, 64):
                say(f"training speed at {resolution} px ...")
                speeds.append(step_speed(Path(tmp), resolution, blocks, block, warmup))
                keep("speed", speeds)
                say(f"  {speeds[-1]}")
        if "memory" in parts:
            say("peak memory while reading a long video ...")
            keep("read_memory", read_memory(Path(tmp), *(QUICK_VIDEO if args.quick else LONG_VIDEO)))
            say(f"  {res['read_memory']}")
        if "race" in parts:
            data = str(MNIST) if args.mnist else None
            say(f"scores after {', '.join(f'{m:g}' for m in minutes)} training minutes ...")
            quality_race(Path(tmp), data, minutes, args.parallel, lambda race: keep("race", race))
    res = json.loads(out.read_text())
    say(summary(res))
    say(f"\nresults: {out}")


if __name__ == "__main__":
    main()
