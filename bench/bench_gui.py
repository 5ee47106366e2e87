"""The window's responsiveness, measured in one run (offscreen Qt, so it runs headless):

1. Cold start to the window shown: a fresh `python` process creates the main window and shows
   it; the time from starting the process to the first turn of the event loop after `show()`
   (median of several). torch must not be imported by then.
2. The longest stall of the GUI event loop while a training runs in the background (a child
   process) and its progress, charts and previews arrive: a 10 ms heartbeat timer records the
   largest gap between ticks.
3. Training throughput while the window follows it, against the same run headless
   (`studio train` with no window), alternating, same settings: the ratio of median tokens/s
   (each run's tokens/s on the engine's training clock, which leaves out evaluations).
   On a shared virtual machine the speed of separate runs drifts by up to 15%, so:
4. the same comparison within one run: the window follows the training and sleeps (timers
   stopped, no wake-ups: as if headless) in alternating phases; each following phase's rate
   against the mean of the sleeping phases either side, median over the pairs.

    .venv/bin/python bench/bench_gui.py           # ~13 min
    .venv/bin/python bench/bench_gui.py --quick

Writes bench/results/bench_gui.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("STUDIO_CACHE_DIR", "/tmp/studio-cache-bench")

SHAPE = ["n_layer=4", "n_head=4", "n_embd=128", "block_size=64", "batch_size=12"]

COLD_START = r"""
import sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from studio.gui.session import Session
from studio.gui.window import MainWindow
app = QApplication([])
window = MainWindow(Session())
window.show()
def shown():
    print("shown", "torch" in sys.modules, flush=True)
    app.quit()
QTimer.singleShot(0, shown)
app.exec()
"""


def cold_start(repeats: int, config_dir: str) -> dict:
    times, torch_loaded = [], []
    env = {**os.environ, "STUDIO_CONFIG_DIR": config_dir}
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", COLD_START], stdout=subprocess.PIPE,
                                text=True, cwd=ROOT, env=env)
        line = proc.stdout.readline()
        times.append(time.perf_counter() - start)
        proc.wait(timeout=120)
        torch_loaded.append(line.split()[-1] == "True")
    print(f"  cold start: median {statistics.median(times):.2f} s (runs: "
          f"{', '.join(f'{t:.2f}' for t in times)}); torch imported by then: {any(torch_loaded)}")
    return {"median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times],
            "torch_imported": any(torch_loaded)}


def progress_events(events_path: Path) -> list[dict]:
    events = (json.loads(line) for line in events_path.read_text().splitlines())
    return [e for e in events if e["event"] == "progress"]


def training_rate(progress: list[dict]) -> float:
    """Tokens per second between the first and the last of these progress events, on the
    engine's training clock (`train_s`: evaluations, previews and checkpoints left out)."""
    first, last = progress[0], progress[-1]
    tokens_per_step = last["items_per_s"] / last["steps_per_s"]
    return (last["step"] - first["step"]) * tokens_per_step / (last["train_s"] - first["train_s"])


def run_rate(events_path: Path) -> float:
    return training_rate(progress_events(events_path)[2:])  # the first points include start-up


def headless_run(run_dir: Path, steps: int) -> float:
    subprocess.run([sys.executable, "-m", "studio", "train", "text", "--run-dir", str(run_dir),
                    "--max-steps", str(steps), "--events", "none", *sum((["--set", s] for s in SHAPE +
                    ["device=cpu", "log_every=10", "eval_every=100", "preview_every=100"]), [])],
                   check=True, cwd=ROOT)
    return run_rate(run_dir / "events.jsonl")


def open_window(app, runs_folder: Path, steps: int):
    """The studio window on the built-in data, the Train panel in front, filled in with SHAPE."""
    from studio.gui.session import Session
    from studio.gui.settings import Settings
    from studio.gui.window import MainWindow

    window = MainWindow(Session(Settings(runs_folder=str(runs_folder), last_generator="text")))
    window.show()
    deadline = time.monotonic() + 120
    while window.train_panel is None or window.data_panel.report is None:
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() > deadline:
            raise RuntimeError("the window did not finish loading")
    train = window.train_panel
    train.gen_form.set_values({s.split("=")[0]: s.split("=")[1] for s in SHAPE})
    train.train_form.set_values({"max_steps": str(steps), "log_every": "10", "eval_every": "100",
                                 "preview_every": "100"})
    train.device.setCurrentText("cpu")
    window.tabs.setCurrentWidget(train)
    return window, train


def run_event_loop(milliseconds: int) -> None:
    from PySide6.QtCore import QEventLoop, QTimer
    loop = QEventLoop()
    QTimer.singleShot(milliseconds, loop.quit)
    loop.exec()


def paired_throughput(app, runs_folder: Path, phases: int, phase_s: float) -> dict:
    """One long training started from the window, which alternately follows it (reads its
    events, shows progress, charts and previews: the window as a user has it) and sleeps (its
    timers stopped: no wake-ups at all, as if the run were headless), phase by phase. Each
    following phase is compared with the sleeping phases either side of it, so that the
    machine's own drift in speed (±15% between separate runs here) cancels out."""
    window, train = open_window(app, runs_folder, 10**6)
    train.start()
    while not train.charts.steps:  # the child is up and stepping
        run_event_loop(200)
    run_event_loop(3000)  # past the first eval and preview
    def follow(on: bool) -> None:  # the window's only wake-up: reading the log, then repainting
        train.trainer.timer.start() if on else train.trainer.timer.stop()

    phases_done = []
    for i in range(phases):
        following = i % 2 == 1  # sleep, follow, sleep, ..., sleep
        follow(following)
        start = time.time()
        run_event_loop(int(phase_s * 1000))
        phases_done.append((following, start, time.time()))
    follow(True)
    train.stop()
    while train.trainer.running:
        run_event_loop(200)
    progress = progress_events(Path(train.run_dir) / "events.jsonl")
    window.close()

    def rate(start: float, end: float) -> float:
        # from the first progress event a second into the phase (the window's last wake-up of
        # the phase before is over by then) to the last one in it
        return training_rate([e for e in progress if start + 1.0 <= e["time"] <= end])
    rates = [(following, rate(start, end)) for following, start, end in phases_done]
    ratios = [rates[i][1] / ((rates[i - 1][1] + rates[i + 1][1]) / 2)
              for i in range(1, len(rates) - 1, 2)]
    return {"phase_s": phase_s, "rates": [{"window_following": f, "tokens_s": round(r)} for f, r in rates],
            "ratios": [round(r, 3) for r in ratios], "ratio": round(statistics.median(ratios), 3),
            "ratio_ci90": median_interval(ratios)}


def median_interval(values: list[float], draws: int = 10_000) -> list[float]:
    """A 90% bootstrap interval of the median: how far the noise of single pairs (±10% here)
    leaves the median uncertain."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return [round(medians[draws // 20], 3), round(medians[draws - draws // 20], 3)]


def window_run(app, runs_folder: Path, steps: int, heartbeat_on: bool) -> tuple[float, dict]:
    """Train in the window; with `heartbeat_on`, measure its event loop with a 10 ms heartbeat
    while it does. The heartbeat is itself 100 wake-ups a second that take CPU from the
    training child, so throughput is measured in runs without it."""
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer

    window, train = open_window(app, runs_folder, steps)
    gaps, clock = [], QElapsedTimer()
    heartbeat = QTimer()
    heartbeat.setInterval(10)

    def tick():
        if clock.isValid():
            gaps.append(clock.restart())
        else:
            clock.start()
    heartbeat.timeout.connect(tick)
    # The window's own event loop, as `studio` runs it: no polling from here to take CPU from
    # the training child (on 2 cores, any spinning would show up as lost throughput).
    loop = QEventLoop()
    train.trainer.finished.connect(loop.quit)
    train.start()
    if heartbeat_on:
        heartbeat.start()
    cpu_before, wall_before = os.times(), time.perf_counter()
    if train.trainer.running:
        loop.exec()
    heartbeat.stop()
    cpu_after = os.times()
    gui_cpu = ((cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)) / \
        (time.perf_counter() - wall_before)
    run_dir = Path(train.run_dir)
    window.close()
    gaps = sorted(gaps)
    stall = {"longest_ms": gaps[-1] if gaps else None,
             "p99_ms": gaps[int(len(gaps) * 0.99)] if gaps else None, "ticks": len(gaps),
             "window_cpu_share": round(gui_cpu, 3)}
    return run_rate(run_dir / "events.jsonl"), stall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="headless/window pairs (default 3)")
    parser.add_argument("--phases", type=int, default=41,
                        help="alternating phases of the paired measurement (odd; default 41)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_gui.json"))
    args = parser.parse_args()
    steps, rounds = (200, 1) if args.quick else (600, args.rounds)
    results = {"quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["STUDIO_CONFIG_DIR"] = str(tmp / "config")
        print("[1/4] cold start to the window shown")
        results["cold_start"] = cold_start(3 if args.quick else 7, str(tmp / "config"))
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        print(f"[2-3/4] {rounds} round(s): the same {steps}-step training headless, then in the window")
        headless, windowed, stalls = [], [], []
        for i in range(rounds):
            headless.append(headless_run(tmp / f"headless{i}", steps))
            rate, quiet = window_run(app, tmp / f"window{i}", steps, heartbeat_on=False)
            windowed.append(rate)
            _, stall = window_run(app, tmp / f"window{i}-heartbeat", steps, heartbeat_on=True)
            stalls.append(stall)
            print(f"  round {i + 1}: headless {headless[-1]:.0f} tokens/s, window {rate:.0f} "
                  f"tokens/s (window process {quiet['window_cpu_share']:.1%} of a core); "
                  f"event loop: longest gap {stall['longest_ms']} ms, p99 {stall['p99_ms']} ms "
                  f"over {stall['ticks']} heartbeats")
        ratio = statistics.median(windowed) / statistics.median(headless)
        results["throughput"] = {"headless_tokens_s": headless, "window_tokens_s": windowed,
                                 "ratio": round(ratio, 3)}
        results["event_loop"] = {"longest_ms": max(s["longest_ms"] for s in stalls),
                                 "p99_ms": max(s["p99_ms"] for s in stalls), "rounds": stalls}
        phases, phase_s = (5, 4.0) if args.quick else (args.phases, 5.0)
        print(f"[4/4] one training, the window following it and asleep in turn ({phases} phases of "
              f"{phase_s:g} s)")
        paired = paired_throughput(app, tmp / "paired", phases, phase_s)
        results["throughput_paired"] = paired
        print(f"  following / asleep, each against the phases either side: {paired['ratios']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print("\nSUMMARY")
    print(f"  cold start to window shown: {results['cold_start']['median_s']:.2f} s (target < 2 s); "
          f"torch imported: {results['cold_start']['torch_imported']}")
    print(f"  longest event-loop stall while training: {results['event_loop']['longest_ms']} ms "
          f"(p99 {results['event_loop']['p99_ms']} ms; target < 50 ms)")
    low, high = paired["ratio_ci90"]
    print(f"  training throughput while the window follows it vs asleep, same run: "
          f"{paired['ratio']:.1%} (median of {len(paired['ratios'])} pairs, 90% interval "
          f"{low:.1%}-{high:.1%}; target >= 95%)")
    print(f"  ... and in separate runs, window vs headless: {ratio:.1%} (ratio of medians over "
          f"{rounds} rounds; the machine's speed drifts between runs)")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
