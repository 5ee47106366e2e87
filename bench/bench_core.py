"""Core CPU benchmark of AIGC Studio: matmul peak, training speed and MFU, the engine's
overhead, bf16 against fp32, and the real 2000-step Shakespeare run next to nanoGPT's, measured in one run.

What it measures, in order:

1. Matmul peak (GFLOP/s) in fp32 and bf16 at the thread count training uses
   (`studio.engine.configure_threads`: one per core, or --threads): square n x n matmuls,
   the median of several timed repeats after warm-up; the best size is the peak. Also the rate of the forward matmuls the
   nanoGPT-shape model really runs (768 rows = batch 12 x block 64), which bounds its MFU.
2. Training throughput at nanoGPT's documented CPU shape (character level, 4 layers, 4 heads,
   128 wide, block 64, batch 12, lr 1e-3, dropout 0: the text generator's defaults): tokens/s,
   median ms per step and model FLOPs utilisation,
   MFU = tokens/s x GPT.flops_per_token() / fp32 matmul peak.
3. The engine's overhead: `studio.engine.Engine` with `standard_callbacks()` writing to a
   temporary run folder, against a bare for-loop over an identical copy of the model (same
   batches from the same `get_batch` and seed, same fused AdamW from `default_adamw`, same LR
   schedule, same clipping). Blocks of the two alternate inside one `Engine.fit`, so noise from
   other work hits both alike; their losses are compared step by step (they must agree, or the
   two are not doing the same work). The engine's per-step bookkeeping is also timed alone, and
   the periodic work the timed window leaves out (held-out evaluation, preview, checkpoint) is
   timed separately and amortised over the default intervals.
   Then the project against nanoGPT itself: `studio train text` and nanoGPT's own train.py
   (../shared/ref/nanoGPT, from a temporary copy whose data are the project's own tokens of
   the same files, in the same character vocabulary) at that shape, fp32, on the same
   threads, each in a process of its own, taking turns in blocks (side_by_side.py). Each
   side's step is the time from the end of one step to the end of the next, as nanoGPT's
   `iter N: ... time Y ms` line gives it: batch fetch, forward, backward, clipping, optimizer
   step, reading the loss back and logging it (the project's engine bookkeeping too).
4. fp32 against bf16 autocast (the engine's `precision=bf16` context) at that shape and at a
   wider one (6 layers, 6 heads, 384 wide, block 256, batch 16), in alternating blocks.
5. The real path: `studio train text` for 2000 steps on shakespeare_train.txt with
   shakespeare_val.txt held out (temporary run folder, its default intervals), then
   `studio.api.evaluate` on the whole validation file; and nanoGPT's train.py for 2000
   iterations as its README runs it on a CPU, in the same run, its final weights scored on
   the same file the same way: wall time (whole process), ms/step and held-out loss.
6. With --time-budget: held-out loss after a time budget, `studio train text --max-minutes M`
   and nothing else, against nanoGPT's 2000 iterations from part 5; `--time-budget nanogpt`
   gives the project nanoGPT's measured wall time (equal wall time).

Run it from the repository root, on an otherwise idle machine. It waits (up to 2 min) for the
CPUs to go quiet first, and records how much CPU other processes took during each part:

    STUDIO_CACHE_DIR=/tmp/studio-cache-bench .venv/bin/python bench/bench_core.py          # ~6 min
    .venv/bin/python bench/bench_core.py --time-budget 2       # + part 6 (~3 min more)
    .venv/bin/python bench/bench_core.py --quick           # smoke run, ~1 min

(times on an idle 2-core machine; STUDIO_CACHE_DIR defaults to that folder if unset.)

It prints a summary table at the end and writes every number to bench/results/bench_core.json
(a --quick run: bench_core_quick.json in the temporary folder, unless --out says where).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's studio/ and generators/, even if not installed
os.environ.setdefault("STUDIO_CACHE_DIR", "/tmp/studio-cache-bench")  # never the user's cache

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from studio import api  # noqa: E402
from studio.callbacks import (Callback, Checkpoint, Evaluate, Preview,  # noqa: E402
                              standard_callbacks)
from studio.config import to_dict  # noqa: E402
from studio.engine import (Engine, autocast_context, configure_threads, default_adamw,  # noqa: E402
                           lr_factor, seed_everything)
from studio.registry import default_registry  # noqa: E402
from studio.runstore import RunDir  # noqa: E402

# bench/ is on the path: this script's folder
from side_by_side import (cpu_description, cpu_snapshot, refuse_bad_peer_arguments,  # noqa: E402
                          nanogpt_training_run, other_cpu_pct, pinned_env, prepare_nanogpt,
                          run_to_end, studio_command, studio_vs_nanogpt_steps)

DATA = ROOT.parent / "shared" / "data" / "text"
WIDE = ["n_layer=6", "n_head=6", "n_embd=384", "block_size=256", "batch_size=16"]
QUICK_VAL_CHARS = 20_000  # of the held-out text in a --quick run (the whole file takes minutes)
NEVER = 10**9  # an interval that never comes due inside a timed window


@dataclass
class Plan:
    """How many repeats and steps each part takes (full run or --quick smoke run)."""
    sizes: tuple            # square matmul sizes for the peak
    mm_warmup: int
    mm_repeats: int
    overhead_warmup: int    # steps of each loop before anything is timed
    overhead_block: int     # steps per alternating block
    overhead_blocks: int    # blocks of each loop
    end_repeats: int        # repeats of each periodic action (eval, preview, checkpoint)
    prec_warmup: int
    prec_block: int
    prec_blocks: int
    wide_warmup: int
    wide_block: int
    wide_blocks: int
    nanogpt_warmup: int     # steps each side trains alone before the turns
    nanogpt_block: int      # counted steps per turn
    nanogpt_blocks: int     # turns of each side
    train_steps: int        # steps of the real run, and nanoGPT's iterations beside it


FULL = Plan(sizes=(1024, 1536, 2048), mm_warmup=2, mm_repeats=7,
            overhead_warmup=30, overhead_block=50, overhead_blocks=12, end_repeats=3,
            prec_warmup=20, prec_block=25, prec_blocks=8,
            wide_warmup=2, wide_block=3, wide_blocks=6,
            nanogpt_warmup=30, nanogpt_block=50, nanogpt_blocks=10, train_steps=2000)
QUICK = Plan(sizes=(512, 1024), mm_warmup=1, mm_repeats=3,
             overhead_warmup=3, overhead_block=5, overhead_blocks=2, end_repeats=1,
             prec_warmup=2, prec_block=4, prec_blocks=2,
             wide_warmup=1, wide_block=1, wide_blocks=2,
             nanogpt_warmup=3, nanogpt_block=5, nanogpt_blocks=2, train_steps=40)


def say(text: str = "") -> None:
    print(text, flush=True)


def median_ms(seconds: list[float]) -> float:
    return 1e3 * statistics.median(seconds)


def load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def wait_for_quiet(max_wait_s: float, threshold_pct: float = 10.0) -> float | None:
    """Wait (up to max_wait_s) until other processes use under threshold_pct of the CPUs over
    2 s, so the run starts on a quiet machine. Returns the last measured share."""
    deadline, share = time.monotonic() + max_wait_s, None
    while True:
        before = cpu_snapshot()
        time.sleep(2.0)
        share = other_cpu_pct(before, cpu_snapshot())
        if share is None or share < threshold_pct or time.monotonic() >= deadline:
            return share


# --- 1. matmul peak ---------------------------------------------------------------------------

def rate_gflops(fn, flops: float, warmup: int, repeats: int, calls: int = 1) -> float:
    """Median rate of `fn` over `repeats` timings of `calls` calls each, after warm-up (the
    first calls pay for page faults and oneDNN kernel creation)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
    return flops / statistics.median(times) / 1e9


def matmul_peak(plan: Plan) -> dict:
    out = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        by_size = {}
        for n in plan.sizes:
            a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
            c = torch.empty(n, n, dtype=dtype)  # out= keeps allocation out of the timing
            by_size[n] = rate_gflops(lambda: torch.mm(a, b, out=c), 2 * n**3,
                                     plan.mm_warmup, plan.mm_repeats)
        out[name] = {"by_size": by_size, "peak": max(by_size.values())}
    return out


def model_gemm_rates(rows: int, width: int, vocab: int, plan: Plan) -> dict:
    """The forward matmuls of one block and the head, as nn.Linear runs them (x @ W^T), at the
    model's real row count. Small inner dimensions keep these far below the square peak."""
    shapes = {"qkv": (width, 3 * width), "attn_proj": (width, width), "mlp_fc": (width, 4 * width),
              "mlp_proj": (4 * width, width), "lm_head": (width, vocab)}
    out: dict = {"rows": rows}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        out[name] = {}
        for label, (k, n) in shapes.items():
            x, w = torch.randn(rows, k).to(dtype), torch.randn(n, k).to(dtype)
            out[name][label] = rate_gflops(lambda: F.linear(x, w), 2 * rows * k * n,
                                           warmup=3, repeats=max(3, plan.mm_repeats), calls=20)
    return out


# --- the bare loop: nanoGPT's, nothing else ----------------------------------------------------

class BareLoop:
    """Set the LR, draw a batch, forward (under autocast if asked), backward, clip, step, zero
    the gradients: what nanoGPT's train.py does per step, with the engine's own building blocks
    (default_adamw, lr_factor, autocast_context, the same clip call) so that any difference in
    time is the engine's loop and callbacks, not a different optimizer or kernel."""

    def __init__(self, gen, model: torch.nn.Module, train, precision: str = "fp32"):
        self.gen, self.model, self.train = gen, model, train
        self.opt = default_adamw(model, train)
        self.params = [p for p in model.parameters() if p.requires_grad]
        # The engine seeds its data generator with seed + rank (rank 0 here): same batches.
        self.rng = torch.Generator().manual_seed(train.seed)
        self.device = next(model.parameters()).device
        self.precision = precision
        self.step = 0
        self.losses: list[torch.Tensor] = []

    def run(self, n: int) -> list[float]:
        """n steps; returns the wall time of each (end of one step to end of the next)."""
        times, t_prev = [], time.perf_counter()
        for _ in range(n):
            lr = self.train.lr * lr_factor(self.step, self.train)
            for group in self.opt.param_groups:
                group["lr"] = lr
            x, y = self.gen.get_batch("train", self.rng)
            with autocast_context(self.device, self.precision):
                _, loss = self.model(x, y)
            loss.backward()
            if self.train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, self.train.grad_clip, foreach=True)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.losses.append(loss.detach())  # as the engine keeps its losses: no sync
            self.step += 1
            now = time.perf_counter()
            times.append(now - t_prev)
            t_prev = now
        return times


# --- 3. engine against bare loop, alternating inside one fit ------------------------------------

class Interleave(Callback):
    """Appended after the standard callbacks, so the time from the end of one of its
    on_step_end calls to the start of the next is one whole engine iteration: control-file
    poll, LR, batch, step, clipping, and every other callback. Every `block` engine steps it
    runs `block` bare steps itself, and restarts its clock after them (and after its own
    bookkeeping), so neither loop's time leaks into the other's."""

    def __init__(self, bare: BareLoop, warmup: int, block: int, blocks: int):
        self.bare, self.warmup, self.block = bare, warmup, block
        self.engine_blocks: list[list[float]] = [[] for _ in range(blocks)]
        self.bare_blocks: list[list[float]] = []
        self.losses: list[torch.Tensor] = []
        self.t_prev = self.last_step_end = 0.0

    def on_train_start(self, engine) -> None:
        self.t_prev = time.perf_counter()

    def on_step_end(self, engine, metrics: dict) -> None:
        now = time.perf_counter()
        self.losses.append(metrics["loss"].detach())
        k = engine.step - self.warmup  # engine steps past its warm-up
        if k > 0:
            self.engine_blocks[(k - 1) // self.block].append(now - self.t_prev)
        if k == 0:
            self.bare.run(self.warmup)  # the bare loop's own warm-up, untimed
        elif k > 0 and k % self.block == 0:
            self.bare_blocks.append(self.bare.run(self.block))
        self.last_step_end = time.perf_counter()
        self.t_prev = time.perf_counter()


def time_call(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bookkeeping_us(engine, callbacks: list, repeats: int) -> dict:
    """The engine's per-step work besides the step itself, each piece timed over many calls
    (far more precise than the A/B difference, which machine noise blurs by a percent or so):
    the control-file poll, the LR update, and the callbacks' on_step_end on a quiet step and on
    a logging step (Progress reads the losses back and an event is appended to events.jsonl)."""
    saved_step, loss = engine.step, torch.tensor(1.0)
    metrics = {"loss": loss}
    log_every = engine.train.log_every

    def callbacks_at(step: int, refill: bool):
        def call():
            engine.step = step
            if refill:
                engine.pending_losses.extend([loss] * log_every)
            for cb in callbacks:
                cb.on_step_end(engine, metrics)
        return call

    quiet_step = 10**6 + 1                # not due for logging, evaluation, preview or checkpoint
    log_step = 10**6 + log_every          # due for logging only
    out = {name: 1e6 * time_call(fn, repeats) for name, fn in (
        ("poll_control", engine._poll_control), ("set_lr", engine._set_lr),
        ("callbacks_quiet_step", callbacks_at(quiet_step, False)),
        ("callbacks_log_step", callbacks_at(log_step, True)))}
    engine.step = saved_step
    engine.pending_losses.clear()
    out["per_step_avg"] = (out["poll_control"] + out["set_lr"] + out["callbacks_quiet_step"]
                           + (out["callbacks_log_step"] - out["callbacks_quiet_step"]) / log_every)
    return out


def engine_vs_bare(gen_cls, train_path: str, val_path: str, folder: Path, plan: Plan) -> dict:
    steps = plan.overhead_warmup + plan.overhead_block * plan.overhead_blocks
    # The text generator's defaults are nanoGPT's CPU shape; build them through the same
    # validator the CLI uses. Periodic work never comes due inside the timed window.
    gen_cfg, train = api.build_configs(gen_cls, overrides={
        "max_steps": steps, "eval_every": NEVER, "preview_every": NEVER,
        "checkpoint_every": NEVER, "precision": "fp32", "device": "cpu"})
    gen = gen_cls(gen_cfg)
    report = gen.load_data(train_path, val_path, api.cache_dir())
    run = RunDir.create(folder / "engine-run", {
        "generator": gen_cls.name, "generator_version": gen_cls.version,
        "config": to_dict(gen_cfg), "train": to_dict(train),
        "data": {"source": train_path, "val_source": val_path}})
    engine = Engine(gen, train, run, standard_callbacks())
    engine.setup()
    gen.save_assets(run.assets_dir)
    # The bare loop trains an identical copy (deepcopy keeps the tied embedding/head weight).
    bare_model = copy.deepcopy(gen.model)
    assert bare_model.lm_head.weight is bare_model.transformer.wte.weight
    bare = BareLoop(gen, bare_model, train)
    timer = Interleave(bare, plan.overhead_warmup, plan.overhead_block, plan.overhead_blocks)
    engine.callbacks.append(timer)

    t0 = time.perf_counter()
    status = engine.fit()
    fit_end = time.perf_counter()
    assert status == "done", status

    # Same model, same batches, same schedule: the losses must agree step for step, or the two
    # loops are not doing the same work and the comparison means nothing.
    engine_losses = torch.stack(timer.losses).float()
    bare_losses = torch.stack(bare.losses).float()
    assert len(engine_losses) == len(bare_losses) == steps, (len(engine_losses), len(bare_losses))
    max_loss_diff = float((engine_losses - bare_losses).abs().max())

    engine_times = [t for block in timer.engine_blocks for t in block]
    bare_times = [t for block in timer.bare_blocks for t in block]
    pair_ratios = [statistics.median(e) / statistics.median(b)
                   for e, b in zip(timer.engine_blocks, timer.bare_blocks)]

    # What the timed window leaves out: the end of fit() (eval + preview + checkpoint + the
    # final run.json update), and each periodic action timed on its own.
    def find(kind):
        return next(cb for cb in engine.callbacks if isinstance(cb, kind))

    evaluate, preview, checkpoint = find(Evaluate), find(Preview), find(Checkpoint)
    periodic = {
        "eval_s": time_call(lambda: evaluate.run(engine), plan.end_repeats),
        "preview_s": time_call(lambda: preview.run(engine), plan.end_repeats),
        "checkpoint_s": time_call(lambda: checkpoint.save(engine), plan.end_repeats),
    }
    bookkeeping = bookkeeping_us(engine, [cb for cb in engine.callbacks if cb is not timer],
                                 repeats=plan.end_repeats * 300)
    defaults = api.build_configs(gen_cls)[1]  # the intervals a user gets without --set
    engine_step_s = statistics.median(engine_times)
    # With the default intervals a checkpoint follows every improving evaluation, so in a run
    # whose held-out loss keeps falling it comes every eval_every steps.
    amortised = (periodic["eval_s"] / defaults.eval_every
                 + periodic["checkpoint_s"] / min(defaults.eval_every, defaults.checkpoint_every)
                 + periodic["preview_s"] / defaults.preview_every)
    model = gen.model
    tokens_per_step = gen_cfg.batch_size * gen_cfg.block_size
    return {
        "shape": {k: getattr(gen_cfg, k) for k in
                  ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "dropout")},
        "vocab_size": gen.tokenizer.vocab_size,
        "params": sum(p.numel() for p in model.parameters()),
        "flops_per_token": model.flops_per_token(),
        "tokens_per_step": tokens_per_step,
        "train_tokens": report.summary["train_tokens"],
        "steps_each": steps, "timed_steps_each": len(engine_times),
        "engine_ms": median_ms(engine_times), "bare_ms": median_ms(bare_times),
        "engine_block_ms": [median_ms(b) for b in timer.engine_blocks],
        "bare_block_ms": [median_ms(b) for b in timer.bare_blocks],
        "overhead_pct": 100 * (statistics.median(engine_times) / statistics.median(bare_times) - 1),
        "overhead_paired_pct": 100 * (statistics.median(pair_ratios) - 1),
        "overhead_per_pair_pct": [100 * (r - 1) for r in pair_ratios],
        "max_loss_diff": max_loss_diff,
        "final_loss": float(engine_losses[-plan.overhead_block:].mean()),
        "fit_total_s": fit_end - t0,
        "end_of_fit_s": fit_end - timer.last_step_end,
        "periodic": periodic,
        "bookkeeping_us": bookkeeping,
        "bookkeeping_pct": 100 * bookkeeping["per_step_avg"] / 1e6 / engine_step_s,
        "default_intervals": {"eval_every": defaults.eval_every,
                              "preview_every": defaults.preview_every,
                              "checkpoint_every": defaults.checkpoint_every},
        "periodic_amortised_pct": 100 * amortised / engine_step_s,
    }


# --- 4. fp32 against bf16 autocast, alternating -------------------------------------------------

def fp32_vs_bf16(gen_cls, settings: list[str], train_path: str, val_path: str,
                 warmup: int, block: int, blocks: int) -> dict:
    gen_cfg, train = api.build_configs(gen_cls, settings=settings,
                                       overrides={"max_steps": warmup + block * blocks})
    gen = gen_cls(gen_cfg)
    gen.load_data(train_path, val_path, api.cache_dir())
    gen.device = torch.device("cpu")
    seed_everything(train.seed)
    model = gen.build()
    loops = {"fp32": BareLoop(gen, model, train, "fp32"),
             "bf16": BareLoop(gen, copy.deepcopy(model), train, "bf16")}
    for loop in loops.values():
        loop.run(warmup)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    ratios = []
    for k in range(blocks):
        # ABBA order: a slow drift in machine load (or thermals) cancels between the two.
        order = ("fp32", "bf16") if k % 2 == 0 else ("bf16", "fp32")
        block_median = {}
        for name in order:
            t = loops[name].run(block)
            times[name] += t
            block_median[name] = statistics.median(t)
        ratios.append(block_median["fp32"] / block_median["bf16"])
    tokens_per_step = gen_cfg.batch_size * gen_cfg.block_size
    out = {"shape": {k: getattr(gen_cfg, k) for k in
                     ("n_layer", "n_head", "n_embd", "block_size", "batch_size")},
           "params": sum(p.numel() for p in model.parameters()),
           "flops_per_token": model.flops_per_token(), "tokens_per_step": tokens_per_step,
           "timed_steps_each": len(times["fp32"]),
           # > 1 means bf16 is faster
           "bf16_speedup": statistics.median(times["fp32"]) / statistics.median(times["bf16"]),
           "bf16_speedup_paired": statistics.median(ratios)}
    for name, loop in loops.items():
        out[name] = {"ms": median_ms(times[name]),
                     "tokens_per_s": tokens_per_step / statistics.median(times[name]),
                     "last_loss": float(torch.stack(loop.losses[-block:]).float().mean())}
    return out


# --- 5 and 6. the real path, studio train text, beside nanoGPT's train.py ----------------------------

def studio_training_run(train_path: str, val_path: str, threads: int, folder: Path, name: str,
                        steps: int | None = None, minutes: float | None = None) -> dict:
    """`studio train text` in a process of its own, as a user runs it (default settings and
    intervals, only --max-steps or --max-minutes given; threads pinned as nanoGPT's are), then
    `studio.api.evaluate` of its last checkpoint on the whole held-out file."""
    run_dir = folder / name
    # A time-budgeted run is given a step limit it cannot reach, so that the time alone ends
    # it and drives its LR decay: at the default max_steps (2000) a fast machine finishes
    # before the budget, and the comparison would be at equal steps again, not equal time.
    step_limit = steps if steps is not None or minutes is None else NEVER
    lines, wall = run_to_end(studio_command(run_dir, train_path, val_path, threads,
                                            max_steps=step_limit, max_minutes=minutes),
                             ROOT, pinned_env(threads), folder / f"{name}.err")
    events = [json.loads(line) for line in lines if line.startswith("{")]
    start = next(e for e in events if e["event"] == "start")
    done = next(e for e in events if e["event"] == "done")
    progress = [e for e in events if e["event"] == "progress"]
    # ms/step from the progress events' timestamps (every log_every steps); the median skips
    # the intervals that also hold an evaluation, preview or checkpoint, as nanoGPT's does.
    per_step = [(b["time"] - a["time"]) / (b["step"] - a["step"])
                for a, b in zip([start] + progress, progress) if b["step"] > a["step"]]
    evals = [(e["step"], round(e["metrics"]["val_loss"], 4))
             for e in events if e["event"] == "eval"]
    t1 = time.perf_counter()
    result = api.evaluate(str(run_dir), data=val_path, checkpoint="latest")
    eval_wall = time.perf_counter() - t1
    config = RunDir(run_dir).config()["config"]
    tokens_per_step = config["batch_size"] * config["block_size"]
    step_s = statistics.median(per_step)
    return {"status": done["status"], "reason": done.get("reason"), "steps": done["step"],
            "threads": start.get("threads"), "max_steps": steps, "max_minutes": minutes,
            "wall_s": wall, "loop_wall_s": done["time"] - start["time"],
            "ms_per_step": 1e3 * step_s, "tokens_per_s": tokens_per_step / step_s,
            "val_loss": result["loss"], "val_bits_per_byte": result["bits_per_byte"],
            "val_tokens": result["tokens"], "checkpoint": result["checkpoint"],
            "evaluate_wall_s": eval_wall, "periodic_evals": evals}


# --- the report -----------------------------------------------------------------------------------

def summary(res: dict) -> str:
    env, peak, ov = res["environment"], res["matmul"], res["engine_vs_bare"]
    fp32_peak, bf16_peak = peak["fp32"]["peak"], peak["bf16"]["peak"]
    lines = []
    add = lines.append

    def mfu(ms: float, flops_per_token: float, tokens: int, peak_gflops: float) -> float:
        return 100 * tokens / (ms / 1e3) * flops_per_token / (peak_gflops * 1e9)

    def tiny_mfu(ms: float) -> float:  # at nanoGPT's shape, against the fp32 peak
        return mfu(ms, ov["flops_per_token"], ov["tokens_per_step"], fp32_peak)

    add("=" * 92)
    add(f"SUMMARY  ({res['mode']} run)  {env['cpu']['model']}, {env['threads']} threads, "
        f"torch {env['torch']}, ISA {' '.join(env['cpu']['isa'])}")
    other = res["other_cpu_pct"]
    add(f"load average (1 min) before/after: {env['load_before']} / {env['load_after']};  "
        f"CPU used by other processes per part (%): "
        + ", ".join(f"{k} {'?' if v is None else v}" for k, v in other.items()))
    add("=" * 92)

    def noisy(part: str) -> str:
        share = other.get(part)
        return (f"   [NOISY: other processes used {share}% of the CPUs meanwhile]"
                if share is not None and share > 5 else "")

    add("1. matmul peak (square, median of repeats)" + noisy("matmul"))
    sizes = "  ".join(f"{n}: {v:7.1f}" for n, v in peak["fp32"]["by_size"].items())
    add(f"   fp32 {fp32_peak:8.1f} GFLOP/s   ({sizes})")
    sizes = "  ".join(f"{n}: {v:7.1f}" for n, v in peak["bf16"]["by_size"].items())
    add(f"   bf16 {bf16_peak:8.1f} GFLOP/s   ({sizes})   bf16/fp32 = {bf16_peak / fp32_peak:.2f}x")
    g = res["model_gemms"]
    shapes = [k for k in g["fp32"]]
    add(f"   model's forward matmuls ({g['rows']} rows)  " + "  ".join(
        f"{k} {g['fp32'][k]:.0f}/{g['bf16'][k]:.0f}" for k in shapes) + "  GFLOP/s fp32/bf16")
    s = ov["shape"]
    add("")
    add(f"2+3. nanoGPT CPU shape: char vocab {ov['vocab_size']}, {s['n_layer']} layers, "
        f"{s['n_head']} heads, {s['n_embd']} wide, block {s['block_size']}, batch "
        f"{s['batch_size']}; {ov['params'] / 1e6:.2f}M params, "
        f"{ov['flops_per_token'] / 1e6:.2f} MFLOP/token" + noisy("engine_vs_bare"))
    add(f"   {'':34}{'ms/step':>9}{'tokens/s':>11}{'MFU (fp32 peak)':>17}")
    for label, ms in (("bare loop (fp32)", ov["bare_ms"]),
                      ("studio Engine (fp32)", ov["engine_ms"])):
        add(f"   {label:34}{ms:9.2f}{ov['tokens_per_step'] / ms * 1e3:11.0f}"
            f"{tiny_mfu(ms):16.2f}%")
    verdict = "met" if ov["overhead_paired_pct"] < 3 and ov["overhead_pct"] < 3 else "MISSED"
    add(f"   engine overhead: {ov['overhead_pct']:+.2f}% (pooled medians), "
        f"{ov['overhead_paired_pct']:+.2f}% (median of {len(ov['engine_block_ms'])} paired blocks)"
        f"  -> target < 3%: {verdict}")
    add(f"   per-block ms engine: {' '.join(f'{x:6.1f}' for x in ov['engine_block_ms'])}")
    add(f"   per-block ms bare:   {' '.join(f'{x:6.1f}' for x in ov['bare_block_ms'])}")
    add(f"   overhead per pair %: {' '.join(f'{x:+6.1f}' for x in ov['overhead_per_pair_pct'])}"
        f"   (the spread is machine noise)")
    agree = ("agree" if ov["max_loss_diff"] < 1e-4
             else "DIFFER (the comparison is not like for like)")
    add(f"   engine and bare-loop losses {agree}: max |diff| = {ov['max_loss_diff']:.2e} over "
        f"{ov['steps_each']} steps each")
    p = ov["periodic"]
    iv = ov["default_intervals"]
    bk = ov["bookkeeping_us"]
    add(f"   engine bookkeeping per step (timed alone): {bk['per_step_avg']:.0f} us = "
        f"{ov['bookkeeping_pct']:.2f}% of a step (control poll {bk['poll_control']:.0f} us, "
        f"LR {bk['set_lr']:.0f} us, callbacks {bk['callbacks_quiet_step']:.0f} us, "
        f"{bk['callbacks_log_step']:.0f} us on a logging step)")
    add(f"   outside the timed window: eval ({res['eval_batches']} batches) "
        f"{p['eval_s'] * 1e3:.0f} ms, "
        f"preview {p['preview_s'] * 1e3:.0f} ms, checkpoint {p['checkpoint_s'] * 1e3:.0f} ms; "
        f"end of fit() {ov['end_of_fit_s'] * 1e3:.0f} ms")
    add(f"   amortised at default intervals (eval {iv['eval_every']}, preview "
        f"{iv['preview_every']}, checkpoint {iv['checkpoint_every']} + on each new best): "
        f"+{ov['periodic_amortised_pct']:.1f}% per step")
    vs = res.get("vs_nanogpt")
    if vs:
        add(f"   side by side with nanoGPT's train.py, same shape, {vs['threads']} threads, "
            f"{vs['blocks']} turns of {vs['block']} steps each" + noisy("vs_nanogpt"))
        add(f"   {'':34}{'ms/step':>9}{'tokens/s':>11}{'MFU (fp32 peak)':>17}")
        for label, ms in ((f"studio train text ({vs['studio_precision']}, auto)", vs["studio_ms"]),
                          ("studio train text (fp32)", vs["studio_fp32_ms"]),
                          ("nanoGPT train.py (fp32 on CPU)", vs["nanogpt_ms"])):
            add(f"   {label:34}{ms:9.2f}{ov['tokens_per_step'] / ms * 1e3:11.0f}"
                f"{tiny_mfu(ms):16.2f}%")
        add(f"   studio's speed / nanoGPT's: {vs['speed_ratio']:.2f}x as it runs by default, "
            f"{vs['speed_ratio_fp32']:.2f}x in fp32  (> 1: studio faster; each step: end of one "
            f"to end of the next, logging every step on both sides)")
    add("")
    add("4. fp32 vs bf16 autocast (bare loop, alternating blocks)"
        + (noisy("precision_tiny") or noisy("precision_wide")))
    add(f"   {'shape':34}{'fp32 ms':>9}{'bf16 ms':>9}{'bf16 speedup':>14}{'MFU fp32':>10}"
        f"{'MFU bf16*':>10}")
    for key in ("precision_tiny", "precision_wide"):
        r = res.get(key)
        if not r:
            continue
        s = r["shape"]
        label = (f"{s['n_layer']}L {s['n_embd']}w T{s['block_size']} B{s['batch_size']} "
                 f"({r['params'] / 1e6:.1f}M)")
        add(f"   {label:34}{r['fp32']['ms']:9.1f}{r['bf16']['ms']:9.1f}"
            f"{r['bf16_speedup']:8.2f}x ({r['bf16_speedup_paired']:.2f})"
            f"{mfu(r['fp32']['ms'], r['flops_per_token'], r['tokens_per_step'], fp32_peak):9.1f}%"
            f"{mfu(r['bf16']['ms'], r['flops_per_token'], r['tokens_per_step'], bf16_peak):9.1f}%")
    add("   (speedup > 1: bf16 faster; in brackets the median of paired blocks; "
        "* MFU of bf16 against the bf16 peak)")
    rr, nano = res.get("real_run"), res.get("nanogpt_run")
    if rr and nano:
        add("")
        held_out = "a slice" if res["mode"] == "quick" else "whole file"
        add(f"5. studio train text, {rr['steps']} steps, vs nanoGPT's train.py, {nano['iters']} "
            f"iterations, one after the other; shakespeare train -> held-out val "
            f"({held_out}, {rr['val_tokens']} tokens)" + (noisy("real_run") or noisy("nanogpt_run")))
        add(f"   {'':34}{'studio':>10}{'nanoGPT':>10}")
        add(f"   {'median ms/step':34}{rr['ms_per_step']:10.2f}{nano['ms_per_step']:10.2f}")
        add(f"   {'MFU (fp32 peak)':34}"
            f"{tiny_mfu(rr['ms_per_step']):9.2f}%{tiny_mfu(nano['ms_per_step']):9.2f}%")
        add(f"   {'wall time of the process, s':34}{rr['wall_s']:10.1f}{nano['wall_s']:10.1f}")
        add(f"   {'held-out loss, nats/char':34}{rr['val_loss']:10.4f}{nano['val_loss']:10.4f}"
            f"   (nanoGPT's own 20-batch estimate: {nano['val_loss_own_estimate']})")
        add(f"   {'api.evaluate on the val file, s':34}{rr['evaluate_wall_s']:10.1f}")
        add(f"   studio's bits/byte {rr['val_bits_per_byte']:.4f}; its periodic evals (50 batches): "
            + ", ".join(f"{s}: {v}" for s, v in rr["periodic_evals"]))
    tb = res.get("time_budget")
    if tb and nano:
        add("")
        add(f"6. held-out loss in a time budget: studio train text --max-minutes "
            f"{tb['max_minutes']:.2f} ({tb['budget']}) vs nanoGPT's {nano['iters']} iterations"
            + noisy("time_budget"))
        add(f"   {'':34}{'studio':>10}{'nanoGPT':>10}")
        add(f"   {'steps':34}{tb['steps']:10d}{nano['iters']:10d}")
        add(f"   {'wall time of the process, s':34}{tb['wall_s']:10.1f}{nano['wall_s']:10.1f}")
        add(f"   {'held-out loss, nats/char':34}{tb['val_loss']:10.4f}{nano['val_loss']:10.4f}")
    add("=" * 92)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: a few steps of everything (~1 min on an idle machine)")
    parser.add_argument("--no-wide", action="store_true",
                        help="skip the wide-shape fp32/bf16 comparison (slowest part after 5)")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="S",
                        help="first wait up to S seconds for other processes to go quiet "
                             "(default: 120, or 0 with --quick)")
    parser.add_argument("--train-data", default=str(DATA / "shakespeare_train.txt"))
    parser.add_argument("--val-data", default=str(DATA / "shakespeare_val.txt"))
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="torch threads for everything, both sides (default 0: one per core)")
    parser.add_argument("--time-budget", nargs="?", const="2", default=None, metavar="MINUTES",
                        help="also part 6: the project trains for MINUTES (default 2; 'nanogpt': "
                             "nanoGPT's measured wall time) against nanoGPT's 2000 iterations")
    parser.add_argument("--out", default=None,
                        help="where the JSON results go (default bench/results/bench_core.json; "
                             "with --quick, bench_core_quick.json in the temporary folder)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if args.out is None:  # bench/results/ holds full runs only
        args.out = str(Path(tempfile.gettempdir()) / "bench_core_quick.json" if args.quick
                       else ROOT / "bench" / "results" / "bench_core.json")
    budget_minutes = None
    if args.time_budget not in (None, "nanogpt"):
        try:
            budget_minutes = float(args.time_budget)
        except ValueError:
            budget_minutes = -1.0
        if not budget_minutes > 0:
            parser.error(f"--time-budget {args.time_budget}: give minutes above 0, or 'nanogpt' "
                         f"for nanoGPT's measured wall time")
    if args.wait_quiet is None:
        args.wait_quiet = 0.0 if args.quick else 120.0
    refuse_bad_peer_arguments(parser, args)

    # The thread count training uses; everything below runs at it.
    threads = configure_threads(args.threads)
    assert torch.get_num_threads() == threads
    gen_cls = default_registry().get("text")
    started = time.perf_counter()
    res: dict = {"mode": "quick" if args.quick else "full", "plan": asdict(plan),
                 "environment": {"cpu": cpu_description(), "threads": threads,
                                 "torch": torch.__version__, "python": platform.python_version(),
                                 "load_before": load_avg(),
                                 "time": time.strftime("%Y-%m-%d %H:%M:%S")},
                 "eval_batches": api.build_configs(gen_cls)[1].eval_batches}
    env = res["environment"]
    say(f"bench_core ({res['mode']}): {env['cpu']['model']}, {threads} threads, torch "
        f"{env['torch']}, load {env['load_before']}")

    if args.wait_quiet > 0:
        share = wait_for_quiet(args.wait_quiet)
        say(f"other processes use {share}% of the CPUs now (waited up to {args.wait_quiet:g} s "
            f"for under 10%)")
    # Each part records how much CPU other processes took while it ran: a result measured
    # while something else was busy says so in the summary instead of passing as real.
    contention = res["other_cpu_pct"] = {}

    say("[1/5] matmul peak ...")
    snap = cpu_snapshot()
    res["matmul"] = matmul_peak(plan)
    contention["matmul"] = other_cpu_pct(snap, cpu_snapshot())
    for name in ("fp32", "bf16"):
        by_size = res["matmul"][name]["by_size"]
        say(f"      {name}: " + ", ".join(f"{n}: {v:.1f}" for n, v in by_size.items()) + " GFLOP/s")

    with tempfile.TemporaryDirectory(prefix="bench_core-") as tmp:
        folder = Path(tmp)
        if args.quick:  # the smoke run scores a slice of the held-out text, not all of it
            short_val = folder / "val-quick.txt"
            short_val.write_text(Path(args.val_data).read_text()[:QUICK_VAL_CHARS])
            args.val_data = str(short_val)
        say("[2-3/5] engine vs bare loop at nanoGPT's CPU shape (alternating blocks) ...")
        snap = cpu_snapshot()
        res["engine_vs_bare"] = ov = engine_vs_bare(gen_cls, args.train_data, args.val_data,
                                                    folder, plan)
        contention["engine_vs_bare"] = other_cpu_pct(snap, cpu_snapshot())
        say(f"      engine {ov['engine_ms']:.2f} ms/step, bare {ov['bare_ms']:.2f} ms/step, "
            f"overhead {ov['overhead_pct']:+.2f}% (paired {ov['overhead_paired_pct']:+.2f}%), "
            f"loss diff {ov['max_loss_diff']:.1e}")
        # Part of 1, but it needs the model's real vocabulary: the matmuls this model runs.
        shape = ov["shape"]
        res["model_gemms"] = model_gemm_rates(shape["batch_size"] * shape["block_size"],
                                              shape["n_embd"], ov["vocab_size"], plan)

        say("[3b/5] studio train text vs nanoGPT's train.py, taking turns ...")
        data_gen = gen_cls(api.build_configs(gen_cls)[0])  # the project's tokens and vocabulary
        data_gen.load_data(args.train_data, args.val_data, api.cache_dir())
        nanogpt_copy = prepare_nanogpt(folder, data_gen.tokenizer, data_gen.train_ids,
                                       data_gen.val_ids)
        res["vs_nanogpt"] = vs = studio_vs_nanogpt_steps(
            folder, nanogpt_copy, args.train_data, args.val_data, threads,
            blocks=plan.nanogpt_blocks, block=plan.nanogpt_block, warmup=plan.nanogpt_warmup)
        contention["vs_nanogpt"] = vs["other_cpu_pct"]
        say(f"      studio {vs['studio_ms']:.2f} ms/step ({vs['studio_precision']}), "
            f"{vs['studio_fp32_ms']:.2f} in fp32, nanoGPT {vs['nanogpt_ms']:.2f} ms/step "
            f"-> studio {vs['speed_ratio']:.2f}x nanoGPT's speed ({vs['speed_ratio_fp32']:.2f}x "
            f"in fp32)")

        say("[4/5] fp32 vs bf16 autocast ...")
        snap = cpu_snapshot()
        res["precision_tiny"] = r = fp32_vs_bf16(gen_cls, [], args.train_data, args.val_data,
                                                 plan.prec_warmup, plan.prec_block,
                                                 plan.prec_blocks)
        say(f"      nanoGPT shape: fp32 {r['fp32']['ms']:.2f} ms, bf16 {r['bf16']['ms']:.2f} ms, "
            f"bf16 speedup {r['bf16_speedup']:.2f}x")
        contention["precision_tiny"] = other_cpu_pct(snap, snap := cpu_snapshot())
        if not args.no_wide:
            res["precision_wide"] = r = fp32_vs_bf16(gen_cls, WIDE, args.train_data, args.val_data,
                                                     plan.wide_warmup, plan.wide_block,
                                                     plan.wide_blocks)
            say(f"      wide shape: fp32 {r['fp32']['ms']:.1f} ms, bf16 {r['bf16']['ms']:.1f} ms, "
                f"bf16 speedup {r['bf16_speedup']:.2f}x")
            contention["precision_wide"] = other_cpu_pct(snap, cpu_snapshot())

        say(f"[5/5] nanoGPT's train.py for {plan.train_steps} iterations, then studio train text "
            f"for {plan.train_steps} steps and studio.api.evaluate ...")
        snap = cpu_snapshot()
        res["nanogpt_run"] = nano = nanogpt_training_run(folder, nanogpt_copy, plan.train_steps,
                                                         threads, data_gen.val_ids)
        contention["nanogpt_run"] = other_cpu_pct(snap, snap := cpu_snapshot())
        say(f"      nanoGPT: {nano['iters']} iterations in {nano['wall_s']:.1f} s, "
            f"{nano['ms_per_step']:.2f} ms/step, held-out loss {nano['val_loss']:.4f}")
        res["real_run"] = rr = studio_training_run(args.train_data, args.val_data, threads,
                                                   folder, "steps-run", steps=plan.train_steps)
        contention["real_run"] = other_cpu_pct(snap, cpu_snapshot())
        say(f"      studio: {rr['steps']} steps in {rr['wall_s']:.1f} s, "
            f"{rr['ms_per_step']:.2f} ms/step, held-out loss {rr['val_loss']:.4f}")

        if args.time_budget is not None:
            minutes = budget_minutes or nano["wall_s"] / 60
            say(f"[6] studio train text --max-minutes {minutes:.2f} ...")
            snap = cpu_snapshot()
            res["time_budget"] = tb = studio_training_run(args.train_data, args.val_data, threads,
                                                          folder, "budget-run", minutes=minutes)
            tb["budget"] = ("nanoGPT's wall time" if budget_minutes is None
                            else f"{budget_minutes:g} minutes asked")
            contention["time_budget"] = other_cpu_pct(snap, cpu_snapshot())
            say(f"      studio: {tb['steps']} steps in {tb['wall_s']:.1f} s, held-out loss "
                f"{tb['val_loss']:.4f} (nanoGPT after {nano['iters']}: {nano['val_loss']:.4f})")

    env["load_after"] = load_avg()
    res["total_s"] = time.perf_counter() - started
    say()
    say(summary(res))
    say(f"total {res['total_s']:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    say(f"results: {out}")


if __name__ == "__main__":
    main()
