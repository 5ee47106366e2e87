"""Measuring speed side by side: runners that take turns in short blocks, each in a process of
its own, and how much of the machine other processes took meanwhile.

The benchmarks import it as a sibling module (`python bench/bench_x.py` puts bench/ first on
the path, and spawned workers inherit that path):

    from side_by_side import cpu_snapshot, other_cpu_pct, serve_steps, time_in_turns

A worker is a module-level function `worker(kind, *args, conn)` that builds its runner, then
calls `serve_steps(conn, info, step)`; `time_in_turns(worker, kinds, args, ...)` starts one
per kind and times them in turns.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

# --- what other processes took from us ----------------------------------------------------------


def cpu_snapshot(pids: tuple[int, ...] = ()) -> tuple[float, float, float] | None:
    """(wall time, busy CPU-seconds of the whole machine, CPU-seconds of this process and of
    the benchmark's own worker processes `pids`), from /proc (Linux; None elsewhere). The
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
    mine = os.times()
    return (time.perf_counter(), (user + nice + system + irq + softirq + steal) / tick,
            mine.user + mine.system + workers / tick)


def other_cpu_pct(before, after) -> float | None:
    """Share of the machine's CPUs that other processes (or the hypervisor) used in between."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    others = (after[1] - before[1]) - (after[2] - before[2])
    return round(max(0.0, 100 * others / ((after[0] - before[0]) * (os.cpu_count() or 1))), 1)


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
