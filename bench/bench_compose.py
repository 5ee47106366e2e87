"""How fast the studio composes ads (issue 17), on the example recipe and the three demo runs.

1. Ads per minute for a 100-row batch, poster only (`--format png`) and poster + clip
   (`--format png --format mp4`): each batch is `run_batch` in a fresh process, as
   `studio compose` runs it, into an empty folder. The two take turns round by round, a round's
   order alternating, so load from elsewhere hits both alike. Reported: the whole batch's wall
   time (start-up and loading the runs included) and the steady rate from the first finished
   ad to the last.
2. Where an ad's time goes: one row's content made, its poster drawn and written, its clip
   drawn and encoded (MP4, GIF), each the median of a few repeats in this process.
3. Time to first preview in the window: the Compose tab offscreen, a new poster recipe on the
   demo runs, Preview pressed until the poster is shown (the runs loaded on the way), then a
   re-roll of the headline (the runs already loaded).

    .venv/bin/python bench/bench_compose.py            # ~6 min on 2 cores
    .venv/bin/python bench/bench_compose.py --quick    # a smoke run; writes nothing

A full run writes bench/results/bench_compose.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from side_by_side import cpu_description, cpu_snapshot, other_cpu_pct, pinned_env

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "compose"
RESULTS = ROOT / "bench" / "results" / "bench_compose.json"
KINDS = {"poster only": ["png"], "poster + clip": ["png", "mp4"]}

# One batch in a fresh process: the time of each finished ad since the process started.
BATCH_CHILD = r"""
import json, sys, time
started = time.perf_counter()
from studio.compose.batch import run_batch
done_at = []
report = run_batch(sys.argv[1], sys.argv[2], sys.argv[3], tuple(sys.argv[4].split(",")),
                   progress=lambda done, total, key: done_at.append(time.perf_counter() - started))
print(json.dumps({"done_at": done_at, "made": len(report.made), "failed": len(report.failed),
                  "review": len(report.review)}))
"""


def write_rows(folder: Path, count: int) -> Path:
    """`count` rows: the example's products in turn, each with a row key of its own (so every
    row gets its own seeds, and its own texts)."""
    with open(EXAMPLE / "products.csv", newline="", encoding="utf-8") as f:
        products = list(csv.DictReader(f))
    path = folder / "rows.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(products[0]))
        writer.writeheader()
        for i in range(count):
            row = dict(products[i % len(products)])
            row["id"] = f"{row['id']}-{i:03d}"
            writer.writerow(row)
    return path


def batch_once(rows: Path, out: Path, formats: list[str], threads: int) -> dict:
    started = time.perf_counter()
    before = cpu_snapshot()
    done = subprocess.run([sys.executable, "-c", BATCH_CHILD, str(EXAMPLE / "ad.json"), str(rows),
                           str(out), ",".join(formats)], cwd=ROOT, env=pinned_env(threads),
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    result = json.loads(done.stdout.strip().splitlines()[-1])
    times = result["done_at"]
    steady = (len(times) - 1) / (times[-1] - times[0]) * 60 if len(times) > 1 else None
    return {"wall_s": round(wall, 2), "ads": len(times), "made": result["made"],
            "failed": result["failed"], "review": result["review"],
            "ads_per_minute": round(len(times) / wall * 60, 1),
            "steady_ads_per_minute": round(steady, 1) if steady else None,
            "first_ad_s": round(times[0], 2), "other_cpu_pct": other_cpu_pct(before, cpu_snapshot())}


def batches(rows: Path, rounds: int, threads: int, folder: Path) -> dict:
    runs = {kind: [] for kind in KINDS}
    for r in range(rounds):
        order = list(KINDS) if r % 2 == 0 else list(reversed(KINDS))
        for kind in order:
            out = folder / f"out-{r}-{kind.replace(' ', '').replace('+', '-')}"
            runs[kind].append(batch_once(rows, out, KINDS[kind], threads))
            print(f"  round {r + 1} {kind}: {runs[kind][-1]}", flush=True)
    summary = {}
    for kind, results in runs.items():
        summary[kind] = {
            "ads_per_minute_median": statistics.median(x["ads_per_minute"] for x in results),
            "steady_ads_per_minute_median": statistics.median(
                x["steady_ads_per_minute"] for x in results),
            "wall_s_median": statistics.median(x["wall_s"] for x in results),
            "first_ad_s_median": statistics.median(x["first_ad_s"] for x in results),
            "runs": results}
    return summary


def stages(repeats: int, folder: Path) -> dict:
    """Median seconds of each stage of one ad, in this process (the runs loaded once)."""
    import numpy as np

    from studio.compose.recipe import load_recipe, read_rows
    from studio.compose.render import render_clip, render_poster
    from studio.compose.runner import Composer
    from studio.export import write_clip, write_png

    started = time.perf_counter()
    recipe = load_recipe(EXAMPLE / "ad.json")
    composer = Composer(recipe)
    loaded = time.perf_counter() - started
    key, row = read_rows(EXAMPLE / "products.csv").rows[0]
    content = composer.make(key, row)
    poster = render_poster(recipe.template, content)
    frames, fps = render_clip(recipe.template, content)
    pixels = np.stack([np.asarray(frame) for frame in frames])
    work = {
        "make the content (text, picture, clip)": lambda: composer.make(key, row),
        "draw the poster": lambda: render_poster(recipe.template, content),
        "write poster.png": lambda: write_png(np.asarray(poster), folder / "p.png", {}),
        "draw the clip's frames": lambda: render_clip(recipe.template, content),
        "encode clip.mp4": lambda: write_clip(pixels, fps, folder / "c.mp4", bitexact=True),
        "encode clip.gif": lambda: write_clip(pixels, fps, folder / "c.gif"),
    }
    times = {}
    for name, fn in work.items():
        runs = []
        for _ in range(repeats):
            began = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - began)
        times[name] = round(statistics.median(runs), 3)
    return {"load_runs_s": round(loaded, 2), "frames": len(frames),
            "size": [recipe.template.width, recipe.template.height], "median_s": times}


# Time to first preview, in a process of its own: the window's start-up cost is not counted,
# only what the Compose tab does once the user presses Preview.
PREVIEW_CHILD = r"""
import json, os, time
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtWidgets import QApplication
app = QApplication([])
from studio.gui.compose_panel import ComposePanel
from studio.gui.session import Session
from studio.gui.settings import Settings
panel = ComposePanel(Session(Settings()))
panel.resize(1200, 800)
panel.show()
shown = []
panel.preview_shown.connect(lambda: shown.append(time.perf_counter()))

def wait_for(count, limit=300):
    deadline = time.perf_counter() + limit
    while len(shown) < count and time.perf_counter() < deadline:
        app.processEvents()
        time.sleep(0.005)
    assert len(shown) >= count, "no preview"

began = time.perf_counter()
panel.preview()
wait_for(1)
first = shown[0] - began
began = time.perf_counter()
panel.reroll("headline")
wait_for(2)
print(json.dumps({"first_preview_s": round(first, 2),
                  "reroll_preview_s": round(shown[1] - began, 2)}))
"""


def preview_times(threads: int, rounds: int) -> dict:
    results = []
    for _ in range(rounds):
        done = subprocess.run([sys.executable, "-c", PREVIEW_CHILD], cwd=ROOT,
                              env=pinned_env(threads), capture_output=True, text=True)
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1:]}
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in results) for key in results[0]} | {
        "runs": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100, help="rows in the batch (100)")
    parser.add_argument("--rounds", type=int, default=2, help="turns of each batch kind (2)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--quick", action="store_true", help="10 rows, one round; writes nothing")
    args = parser.parse_args()
    rows_count, rounds = (10, 1) if args.quick else (args.rows, args.rounds)

    results = {"cpu": cpu_description(), "threads": args.threads, "rows": rows_count,
               "rounds": rounds}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = write_rows(folder, rows_count)
        print(f"batches of {rows_count} rows, {rounds} round(s):", flush=True)
        results["batch"] = batches(rows, rounds, args.threads, folder)
        results["stages"] = stages(3 if args.quick else 5, folder)
        print(f"  stages: {results['stages']}", flush=True)
        results["window"] = preview_times(args.threads, 1 if args.quick else 3)
        print(f"  window: {results['window']}", flush=True)

    print("\nads per minute (whole batch, with start-up / steady):")
    for kind, summary in results["batch"].items():
        print(f"  {kind:14s} {summary['ads_per_minute_median']:6.1f} / "
              f"{summary['steady_ads_per_minute_median']:6.1f}   "
              f"({summary['wall_s_median']:.1f} s for {rows_count} ads)")
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"\nresults: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
