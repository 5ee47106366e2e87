"""Measuring speed side by side: runners that take turns in short blocks, each in a process of
its own, and how much of the machine other processes took meanwhile.

The benchmarks import it as a sibling module (`python bench/bench_x.py` puts bench/ first on
the path, and spawned workers inherit that path):

    from side_by_side import cpu_snapshot, other_cpu_pct, serve_steps, time_in_turns

A worker is a module-level function `worker(kind, *args, conn)` that builds its runner, then
calls `serve_steps(conn, info, step)`; `time_in_turns(worker, kinds, args, ...)` starts one
per kind and times them in turns.

A peer that is a whole training script (nanoGPT's train.py, from ../shared/ref/nanoGPT) runs
as it ships, in a process that prints a line per step: `time_processes_in_turns` stops and
continues such processes in turns. `prepare_nanogpt` makes a temporary copy of nanoGPT with
the project's own tokens as its data, `studio_vs_nanogpt_steps` times both sides' steps in
turns, and `nanogpt_training_run` runs nanoGPT to its end (wall time, held-out loss).
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import pickle
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

# --- what other processes took from us ----------------------------------------------------------


def cpu_snapshot(pids: tuple[int, ...] = ()) -> tuple[float, float, float] | None:
    """(wall time, busy CPU-seconds of the whole machine, CPU-seconds of this process, of its
    children it has waited for and of the benchmark's running worker processes `pids`), from /proc (Linux; None elsewhere). The
    difference between the two CPU counts over a section is what other processes took from
    us: on 2 cores, another busy process makes torch's spinning OpenMP threads wait for each
    other and steps run up to 10x slower."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:9]
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields)
        workers = 0
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:  # utime and stime: fields 14 and 15
                workers += sum(map(int, f.read().rsplit(")", 1)[1].split()[11:13]))
    except (OSError, ValueError):
        return None
    mine = os.times()  # with the children already waited for (a training run to its end)
    return (time.perf_counter(), (user + nice + system + irq + softirq + steal) / tick,
            mine.user + mine.system + mine.children_user + mine.children_system + workers / tick)


def other_cpu_pct(before, after) -> float | None:
    """Share of the machine's CPUs that other processes (or the hypervisor) used in between."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    others = (after[1] - before[1]) - (after[2] - before[2])
    return round(max(0.0, 100 * others / ((after[0] - before[0]) * (os.cpu_count() or 1))), 1)


def cpu_description() -> dict:
    """CPU model and the ISA extensions that decide matmul speed (AVX-512, AMX for bf16)."""
    model, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model is None:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"model": model or platform.processor() or platform.machine(),
            "isa": [f for f in wanted if f in flags], "cores": os.cpu_count()}


# --- runners in processes of their own, taking turns ----------------------------------------------


def serve_steps(conn, info: Any, step: Callable[[], Any]) -> None:
    """The worker's side: send `info` (the runner is ready), then for each `n` received run
    `step` n times and send back the seconds each took; None (or the parent gone) ends it."""
    conn.send(info)
    while True:
        try:
            n = conn.recv()
        except EOFError:  # the parent stopped early: nothing left to time
            return
        if n is None:
            return
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        conn.send(times)


@dataclass
class Turns:
    """What `time_in_turns` measured."""
    info: dict[str, Any]        # what each worker sent when it was ready, by kind
    median_s: dict[str, float]  # median seconds of one step, by kind
    steps_timed: int            # timed steps of each kind
    other_cpu_pct: float | None  # share of the CPUs other processes took while the blocks ran


class _Workers:
    """The worker processes, one per kind, started one after another: the first may build a
    cache (of data, say) that the others then read instead of all building it at once."""

    def __init__(self):
        self.running: dict[str, tuple] = {}
        self.info: dict[str, Any] = {}

    def start(self, worker: Callable, kinds: list[str], args: tuple) -> None:
        context = multiprocessing.get_context("spawn")  # no fork: each has only its own state
        for kind in kinds:
            parent, child = context.Pipe()
            process = context.Process(target=worker, args=(kind, *args, child))
            process.start()
            child.close()  # ours no longer: a worker that dies then reads as EOF, not a hang
            self.running[kind] = (process, parent)
            self.info[kind] = self.receive(kind)

    def receive(self, kind: str):
        process, conn = self.running[kind]
        try:
            return conn.recv()
        except EOFError:
            process.join()
            raise RuntimeError(f"the '{kind}' runner's process stopped (exit code {process.exitcode}); "
                               f"its error is printed above") from None

    def run(self, kind: str, steps: int) -> list[float]:
        self.running[kind][1].send(steps)
        return self.receive(kind)

    def pids(self) -> tuple[int, ...]:
        return tuple(process.pid for process, _ in self.running.values())

    def stop(self) -> None:
        """Ask each to finish; one that does not within a minute is ended."""
        for process, conn in self.running.values():
            try:
                conn.send(None)
            except OSError:  # it has gone already
                pass
            conn.close()
        for process, _ in self.running.values():
            process.join(60)
            if process.is_alive():
                process.terminate()
                process.join()


def time_in_turns(worker: Callable, kinds: Iterable[str], args: tuple, blocks: int, block: int,
                  warmup: int) -> Turns:
    """The median step time of each kind's runner, the runners taking turns block by block (one
    runs at a time, the others wait), so that noise from other work hits all of them alike.
    `worker(kind, *args, conn)` runs in a process of its own and calls `serve_steps`."""
    kinds = list(kinds)
    for name, value, least in (("blocks", blocks, 1), ("block", block, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"time_in_turns: {name} must be a whole number >= {least}, not {value!r}")
    if not kinds:
        raise ValueError("time_in_turns: no runners given (kinds is empty)")
    workers = _Workers()
    try:
        workers.start(worker, kinds, args)
        for kind in kinds:  # warm up one at a time: only the timed work overlaps nothing
            workers.run(kind, warmup)
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        before = cpu_snapshot(workers.pids())
        for _ in range(blocks):
            for kind in kinds:
                times[kind] += workers.run(kind, block)
        busy = other_cpu_pct(before, cpu_snapshot(workers.pids()))
    finally:
        workers.stop()
    return Turns(info=workers.info, median_s={kind: statistics.median(ts) for kind, ts in times.items()},
                 steps_timed=blocks * block, other_cpu_pct=busy)


# --- training processes that print a line per step, taking turns ---------------------------------
#
# A peer such as nanoGPT is a script that trains to the end, not a step we can call. It runs
# as it ships, in a process of its own that prints one line per step; turns are taken by
# stopping the process (SIGSTOP) while the other runs and letting it go on (SIGCONT). The
# step that was under way when a process stopped reads as slow (its clock ran through the
# pause), so the first steps after each resume are not counted.

STEPS_DROPPED_AFTER_RESUME = 2  # the step the pause fell into, and one more for a half-written line


class StepLines:
    """A training process started from `command` whose stdout says when each step ended;
    `step_seconds(line)` turns a line into that step's seconds (None: not a step's line)."""

    def __init__(self, name: str, command: list[str], cwd: str | os.PathLike, env: dict,
                 step_seconds: Callable[[str], float | None], stderr_path: str | os.PathLike):
        self.name, self.step_seconds, self.stderr_path = name, step_seconds, Path(stderr_path)
        self.lines: list[str] = []  # every line it printed, for the caller to read afterwards
        self.banked: list[float] = []  # step times read while draining a stopped process
        self.to_drop = 0
        self._pending = b""
        with open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                            stderr=err, stdin=subprocess.DEVNULL)

    def _read(self, timeout: float | None) -> bool:
        """Read what stdout has (waiting up to `timeout` s; None: until there is some) into
        lines; False at its end."""
        fd = self.process.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return True
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return False
        *complete, self._pending = (self._pending + chunk).split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            seconds = self.step_seconds(line)
            if seconds is None:
                continue
            if self.to_drop:  # a step the last pause fell into: all it printed before the
                self.to_drop -= 1  # pause was read while it stood still (`pause`)
            else:
                self.banked.append(seconds)
        return True

    def steps(self, n: int) -> list[float]:
        """The next `n` step times, those it printed while stopped first."""
        while len(self.banked) < n:
            if not self._read(None):
                self.process.wait()
                tail = self.stderr_path.read_text(errors="replace").strip().splitlines()[-15:]
                raise RuntimeError(f"the '{self.name}' training process ended (exit code "
                                   f"{self.process.returncode}) before its steps were timed; its "
                                   f"last error lines:\n" + "\n".join(tail))
        taken, self.banked = self.banked[:n], self.banked[n:]
        return taken

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)
        while _process_state(self.process.pid) not in ("T", "t", None):
            time.sleep(0.001)
        while self._read(0.0) and select.select([self.process.stdout.fileno()], [], [], 0)[0]:
            pass  # what it printed before it stopped counts as its own time

    def resume(self) -> None:
        self.to_drop = STEPS_DROPPED_AFTER_RESUME
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # SIGKILL ends a stopped process too
        self.process.wait()
        self.process.stdout.close()


def _process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def time_processes_in_turns(starts: dict[str, Callable[[], StepLines]], blocks: int, block: int,
                            warmup: int) -> Turns:
    """`time_in_turns` for training processes: each `starts[kind]()` starts one; it trains
    `warmup` steps alone (not counted), then stops; then they take turns, `block` counted
    steps each, `blocks` times. Turns.info holds each kind's StepLines (its printed lines)."""
    runners: dict[str, StepLines] = {}
    try:
        for kind, start in starts.items():  # one at a time: a start-up overlaps nothing timed
            runners[kind] = start()
            runners[kind].steps(warmup)
            runners[kind].pause()
        pids = tuple(r.process.pid for r in runners.values())
        times: dict[str, list[float]] = {kind: [] for kind in runners}
        before = cpu_snapshot(pids)
        for _ in range(blocks):
            for kind, runner in runners.items():
                runner.resume()
                times[kind] += runner.steps(block)
                runner.pause()
        busy = other_cpu_pct(before, cpu_snapshot(pids))
    finally:
        for runner in runners.values():
            runner.stop()
    return Turns(info=runners, median_s={kind: statistics.median(ts) for kind, ts in times.items()},
                 steps_timed=blocks * block, other_cpu_pct=busy)


# --- nanoGPT (../shared/ref/nanoGPT), run as it ships ---------------------------------------------

NANOGPT = Path(__file__).resolve().parents[2] / "shared" / "ref" / "nanoGPT"
# nanoGPT's CPU shape (its README), which is also the project's text generator's default shape.
CPU_SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "batch_size": 12,
             "dropout": 0.0}
NANOGPT_ITER = re.compile(r"^iter (\d+): loss ([-+\d.eE]+|nan|inf), time ([\d.]+)ms")


def nanogpt_missing() -> str | None:
    """Why nanoGPT cannot run here (None: it can), for the benchmarks to say up front."""
    if (NANOGPT / "train.py").is_file():
        return None
    return (f"nanoGPT's train.py is not at {NANOGPT}: the nanoGPT comparison needs "
            f"../shared/ref/nanoGPT beside the repository (see ../shared/ref/README.md)")


def refuse_bad_peer_arguments(parser, args) -> None:
    """What a benchmark that runs nanoGPT beside the project needs, checked before anything
    runs: its --train-data and --val-data files, nanoGPT itself and a --threads of 0 or more
    (argparse's one-line error and exit code 2 otherwise)."""
    for path in (args.train_data, args.val_data):
        if not Path(path).is_file():
            parser.error(f"{path} does not exist (see --train-data / --val-data)")
    if nanogpt_missing():
        parser.error(nanogpt_missing())
    if args.threads < 0:
        parser.error(f"--threads {args.threads}: give 0 (one per core) or more")


def pinned_env(threads: int) -> dict:
    """The environment both sides run in: the same thread count for torch's and MKL's pools
    (torch starts OMP_NUM_THREADS intra-op threads; the project also gets --set threads)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONUNBUFFERED="1")
    env.pop("RANK", None)  # nanoGPT would take itself for one rank of a distributed run
    return env


def prepare_nanogpt(folder: Path, tokenizer, train_ids, val_ids) -> Path:
    """A copy of nanoGPT in `folder` (shared/ is read-only) with its shakespeare_char data
    written from the project's own token ids and character vocabulary, so both sides learn
    the same text in the same tokens (the same vocabulary size: the same model)."""
    import numpy as np

    if nanogpt_missing():
        raise FileNotFoundError(nanogpt_missing())
    if tokenizer.vocab_size > np.iinfo(np.uint16).max:
        raise ValueError(f"vocabulary of {tokenizer.vocab_size} does not fit nanoGPT's uint16 ids")
    copy = folder / "nanoGPT"
    shutil.copytree(NANOGPT, copy)
    data = copy / "data" / "shakespeare_char"
    data.mkdir(parents=True)
    np.asarray(train_ids, dtype=np.uint16).tofile(data / "train.bin")
    np.asarray(val_ids, dtype=np.uint16).tofile(data / "val.bin")
    meta = {"vocab_size": tokenizer.vocab_size, "itos": dict(enumerate(tokenizer.itos)),
            "stoi": dict(tokenizer.stoi)}
    with open(data / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)
    return copy


def nanogpt_command(out_dir: Path, max_iters: int, eval_interval: int, extra: tuple = ()) -> list[str]:
    """train.py with its README's CPU flags (fp32, no compile, dropout 0, a line per iter)."""
    shape = [f"--{k}={v}" for k, v in CPU_SHAPE.items()]
    return [sys.executable, "train.py", "config/train_shakespeare_char.py", "--device=cpu",
            "--compile=False", "--eval_iters=20", "--log_interval=1", *shape,
            f"--max_iters={max_iters}", f"--lr_decay_iters={max_iters}", "--dtype=float32",
            f"--eval_interval={eval_interval}", f"--out_dir={out_dir}", *extra]


# What one step's time includes on each side (the results say it too).
NANOGPT_STEP_INCLUDES = ("time.time() from the end of one iteration to the end of the next: "
                         "setting the LR, forward, fetching the next batch, backward, clipping, "
                         "the optimizer step, zeroing the gradients, loss.item() and its print")
STUDIO_STEP_INCLUDES = ("time.time() from one progress event to the next (log_every=1): fetching "
                        "the batch, forward, backward, clipping, the optimizer step, the engine's "
                        "bookkeeping and callbacks, reading the loss back and writing the event")


def nanogpt_step_seconds(line: str) -> float | None:
    """nanoGPT's `time` of an iteration (NANOGPT_STEP_INCLUDES; an evaluation too, on the
    iterations that evaluate)."""
    match = NANOGPT_ITER.match(line)
    return float(match.group(3)) / 1e3 if match else None


def nanogpt_val_losses(lines: list[str]) -> list[tuple[int, float]]:
    """(step, val loss) of each of its evaluations (eval_iters batches drawn at random)."""
    found = (re.match(r"^step (\d+): train loss [\d.]+, val loss ([\d.]+)", line) for line in lines)
    return [(int(m.group(1)), float(m.group(2))) for m in found if m]


def studio_command(run_dir: Path, train_data: str, val_data: str, threads: int,
                   settings: tuple = (), max_steps: int | None = None,
                   max_minutes: float | None = None) -> list[str]:
    """The project's real training path, `studio train text`, with JSON events on stdout."""
    command = [sys.executable, "-m", "studio", "train", "text", "--data", train_data,
               "--val-data", val_data, "--run-dir", str(run_dir), "--events", "json",
               "--device", "cpu", "--set", f"threads={threads}"]
    for setting in settings:
        command += ["--set", setting]
    if max_steps is not None:
        command += ["--max-steps", str(max_steps)]
    if max_minutes is not None:
        command += ["--max-minutes", f"{max_minutes:g}"]
    return command


class StudioStepSeconds:
    """The project's time of a step from its JSON events (their `time`, to the ms) with
    log_every=1: like nanoGPT's, the whole loop (STUDIO_STEP_INCLUDES)."""

    def __init__(self):
        self.last: float | None = None
        self.events: list[dict] = []

    def __call__(self, line: str) -> float | None:
        try:
            record = json.loads(line)
        except ValueError:
            return None
        if not isinstance(record, dict) or "event" not in record:
            return None
        self.events.append(record)
        if record["event"] == "start":
            self.last = record["time"]
        elif record["event"] == "progress" and self.last is not None:
            seconds, self.last = record["time"] - self.last, record["time"]
            return seconds
        return None


def nanogpt_heldout_loss(copy: Path, out_dir: Path, val_ids, block_size: int,
                         batch_size: int) -> float:
    """nanoGPT's checkpoint scored as the project scores its own (`evaluate`): mean loss over
    all non-overlapping blocks of the held-out ids, instead of its 20 random batches. The
    checkpoint is the one this benchmark's own nanoGPT run just wrote."""
    import numpy as np
    import torch

    sys.path.insert(0, str(copy))
    try:
        from model import GPT, GPTConfig  # nanoGPT's model.py, from the copy
    finally:
        sys.path.remove(str(copy))
    checkpoint = torch.load(out_dir / "ckpt.pt", map_location="cpu", weights_only=True)
    with contextlib.redirect_stdout(io.StringIO()):  # its parameter count, printed again
        model = GPT(GPTConfig(**checkpoint["model_args"]))
    state = {k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()}
    model.load_state_dict(state)
    model.eval()
    ids = np.asarray(val_ids, dtype=np.int64)
    starts = np.arange((len(ids) - 1) // block_size) * block_size
    nats = tokens = 0.0
    with torch.no_grad():
        for i in range(0, len(starts), batch_size):
            rows = torch.from_numpy(ids[starts[i:i + batch_size, None] + np.arange(block_size + 1)])
            _, loss = model(rows[:, :-1].contiguous(), rows[:, 1:].contiguous())
            nats += float(loss) * rows[:, 1:].numel()
            tokens += rows[:, 1:].numel()
    return nats / tokens


def studio_vs_nanogpt_steps(folder: Path, nanogpt_copy: Path, train_data: str, val_data: str,
                            threads: int, blocks: int, block: int, warmup: int) -> dict:
    """Median step time of `studio train text` and of nanoGPT's train.py at nanoGPT's CPU
    shape on `threads` threads, taking turns in blocks: the project as a user runs it (its
    default precision, `auto`: bf16 on a CPU with native bf16), the project in fp32, and
    nanoGPT as it runs on a CPU (fp32: its autocast is for GPUs). Neither evaluates, previews
    or checkpoints inside the timed steps (nanoGPT evaluates at iteration 0, in its warm-up)."""
    steps = warmup + blocks * (block + STEPS_DROPPED_AFTER_RESUME) + 100  # never reaches its end
    env = pinned_env(threads)
    shape = tuple(f"{k}={v}" for k, v in CPU_SHAPE.items())
    quiet = ("log_every=1", "eval_every=0", "preview_every=0", "checkpoint_every=0")
    root = Path(__file__).resolve().parents[1]
    studio_steps = {"studio": StudioStepSeconds(), "studio_fp32": StudioStepSeconds()}

    def studio(kind: str, precision: str):
        return lambda: StepLines(
            kind, studio_command(folder / f"{kind}-steps", train_data, val_data, threads,
                                 settings=shape + (f"precision={precision}",) + quiet,
                                 max_steps=steps),
            root, env, studio_steps[kind], folder / f"{kind}-steps.err")

    starts = {
        "studio": studio("studio", "auto"),
        "studio_fp32": studio("studio_fp32", "fp32"),
        "nanogpt": lambda: StepLines(
            "nanogpt", nanogpt_command(folder / "nanogpt-steps", steps, eval_interval=steps + 1),
            nanogpt_copy, env, nanogpt_step_seconds, folder / "nanogpt-steps.err"),
    }
    turns = time_processes_in_turns(starts, blocks=blocks, block=block, warmup=warmup)
    began = {kind: next(e for e in seconds.events if e["event"] == "start")
             for kind, seconds in studio_steps.items()}
    for start in began.values():
        if start.get("threads") not in (None, threads):
            raise RuntimeError(f"studio trained on {start['threads']} threads, not {threads}")
    ms = {kind: 1e3 * s for kind, s in turns.median_s.items()}
    return {"threads": threads, "shape": CPU_SHAPE, "warmup_steps": warmup, "blocks": blocks,
            "block": block, "steps_timed_each": turns.steps_timed,
            "studio_precision": began["studio"].get("precision"),
            "studio_ms": ms["studio"], "studio_fp32_ms": ms["studio_fp32"],
            "nanogpt_ms": ms["nanogpt"],
            "speed_ratio": ms["nanogpt"] / ms["studio"],  # > 1: the project is faster
            "speed_ratio_fp32": ms["nanogpt"] / ms["studio_fp32"],
            "other_cpu_pct": turns.other_cpu_pct,
            "studio_params": began["studio"].get("params"),
            "includes": {"studio": STUDIO_STEP_INCLUDES, "nanogpt": NANOGPT_STEP_INCLUDES}}


def run_to_end(command: list[str], cwd, env: dict, stderr_path: Path) -> tuple[list[str], float]:
    """Run a training process to its end: its stdout lines and wall seconds (interpreter
    start, imports and data loading included, as a user waits for them)."""
    t0 = time.perf_counter()
    with open(stderr_path, "wb") as err:
        done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err,
                              stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        tail = Path(stderr_path).read_text(errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(f"{command[1]} ended with exit code {done.returncode}:\n" + "\n".join(tail))
    return done.stdout.decode("utf-8", "replace").splitlines(), wall


def nanogpt_training_run(folder: Path, nanogpt_copy: Path, iters: int, threads: int, val_ids,
                         warmup: int = 5) -> dict:
    """nanoGPT's train.py as its README runs it on a CPU (evaluating every 250 iterations on
    20 batches), for `iters` iterations: wall time, median step time after `warmup`
    iterations, its own val-loss estimates, and its final weights' loss over the whole
    held-out file (the project's way, `nanogpt_heldout_loss`). It keeps a checkpoint at each
    evaluation (always_save_checkpoint) so the last one holds the final weights."""
    out_dir = folder / "nanogpt-run"
    interval = min(250, iters)  # its config's interval; a short run still ends on an evaluation
    lines, wall = run_to_end(nanogpt_command(out_dir, iters, eval_interval=interval,
                                             extra=("--always_save_checkpoint=True",)),
                             nanogpt_copy, pinned_env(threads), folder / "nanogpt-run.err")
    step_s = [s for s in map(nanogpt_step_seconds, lines) if s is not None]
    evals = nanogpt_val_losses(lines)
    return {"iters": iters, "threads": threads, "wall_s": wall,
            "ms_per_step": 1e3 * statistics.median(step_s[warmup:] or step_s),
            "step_includes": NANOGPT_STEP_INCLUDES,
            "val_loss_own_estimate": evals[-1][1] if evals else None, "periodic_evals": evals,
            "val_loss": nanogpt_heldout_loss(nanogpt_copy, out_dir, val_ids,
                                             CPU_SHAPE["block_size"], CPU_SHAPE["batch_size"])}
