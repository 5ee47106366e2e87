"""`kill -9` soak of AIGC Studio: a training killed again and again at random moments loses
nothing and ends bit-identical to one that was never interrupted.

For each generator (text and image, tiny configs that are deterministic on a CPU with one
thread), in a scratch folder:

1. A reference run: `studio train GEN ... --events json` straight to max_steps. The times of
   its events (each step, evaluation, preview and checkpoint, after its `start` event) are the
   map the kills are aimed with.
2. A soak run with the same settings, started the same way, then killed with SIGKILL after a
   delay measured from the `start` event it prints, and resumed with `studio train --resume RUN
   --events json`, again and again (--kills times); the last resume runs to the end. Each delay
   is drawn from a seeded RNG aiming at one phase, in turn: very short (under 30 ms, before or
   at the first step), mid-step, mid-evaluation, mid-preview and mid-checkpoint (a moment inside
   that phase of a step in the next two checkpoint intervals, by the reference's clock, scaled
   by how fast the last killed process went against the reference). Where the kill really
   landed is read afterwards from the events the process printed and from a half-written
   checkpoint, since a process on a busy machine keeps its own pace.
3. After each kill: every complete checkpoint verifies (sizes and SHA-256) and loads; the newest
   is at least the last one the process announced (an announced checkpoint is never lost);
   `studio generate RUN` works once a checkpoint exists (run again only when the newest
   checkpoint is another than the one it last worked from); `studio runs` does not show the run as
   running or paused (its process is dead); every line of events.jsonl is JSON. The next resume
   must start from the newest checkpoint, and once it has written a checkpoint, the temp files
   (`.tmp-*`) of the killed process must be gone; none may remain at the end.
4. At the end: the run is done, and its final model.safetensors, trainer.safetensors (optimizer
   and RNG states) and state.json are compared with the reference's: tensors and metadata
   bit-identical or not, and the largest absolute difference; so are the training losses step
   by step. Steps re-run after
   a kill are logged again; studio's reader of events.jsonl must drop the superseded records.

A kill survived = every check after it passed and the next resume continued from the newest
checkpoint. The script exits 1 if any kill lost data or failed a check, or the final weights
differ from the reference; 0 otherwise. Run from the repository root (~4 min on 2 idle cores,
~10 min on 2 busy ones):

    .venv/bin/python bench/bench_soak.py                   # 10 kills per generator
    .venv/bin/python bench/bench_soak.py --kills 3 --generators text --seed 1

It prints one line per kill and a summary table, and writes bench/results/bench_soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's studio/ and generators/, even if not installed

from studio import api  # noqa: E402
from studio.errors import StudioError  # noqa: E402
from studio.events import parse_line  # noqa: E402
from studio.runstore import RunDir, write_json  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bench_soak.json"
PHASES = ("short", "step", "eval", "preview", "checkpoint")
SHORT_KILL_S = 0.03   # a "very short" delay: before or at the first step
START_TIMEOUT_S = 300  # a shared 2-core machine can be slow to import torch and read data
RUN_TIMEOUT_S = 900


@dataclass
class Recipe:
    """How one generator is trained in the soak: the same settings for reference and soak."""
    generator: str
    max_steps: int
    eval_every: int
    preview_every: int
    checkpoint_every: int
    settings: list[str]            # --set values besides the intervals
    generate_args: list[str]       # what `studio generate` needs to be quick
    data: str | None = None        # None: the generator's built-in data

    def train_args(self, run: Path) -> list[str]:
        intervals = {"eval_every": self.eval_every, "preview_every": self.preview_every,
                     "checkpoint_every": self.checkpoint_every}
        common = ["device=cpu", "threads=1", "log_every=1", "keep_last=2",
                  *[f"{k}={v}" for k, v in intervals.items()], *self.settings]
        data = ["--data", self.data] if self.data else []
        return [self.generator, *data, "--run-dir", str(run), "--max-steps", str(self.max_steps),
                *[arg for value in common for arg in ("--set", value)]]

    def happens_at(self, kind: str, step: int) -> bool:
        """Whether `kind` of periodic work ("eval", "preview", "checkpoint") is done at `step`."""
        every = {"eval": self.eval_every, "preview": self.preview_every,
                 "checkpoint": self.checkpoint_every}[kind]
        return step % every == 0 or step == self.max_steps


def recipes(work: Path) -> dict[str, Recipe]:
    # The text run reads a copy of this README (the built-in corpus takes seconds to read at
    # every resume); dropout makes the RNG state part of what a resume must restore exactly.
    corpus = work / "corpus.txt"
    if not corpus.exists():
        shutil.copyfile(ROOT / "README.md", corpus)
    text = Recipe("text", max_steps=100, eval_every=10, preview_every=15, checkpoint_every=5,
                  settings=["n_layer=4", "n_head=4", "n_embd=128", "block_size=64",
                            "batch_size=12", "dropout=0.1", "warmup_steps=10", "eval_batches=5",
                            "preview_tokens=40"],
                  generate_args=["--set", "max_new_tokens=8"], data=str(corpus))
    # The image run trains on the built-in shapes; lazy R1 and the moving average of G are
    # restored state too. Tiny widths keep a step around 30 ms.
    image = Recipe("image", max_steps=120, eval_every=10, preview_every=15, checkpoint_every=5,
                   settings=["resolution=32", "g_width=8", "d_width=8", "latent_dim=16",
                             "batch_size=8", "eval_images=32", "feature_steps=5", "r1_gamma=1.0",
                             "r1_every=3"],
                   generate_args=[])
    return {"text": text, "image": image}


# --- one training process --------------------------------------------------------------------

class Training:
    """One `studio train ... --events json` process; its stdout events are read as they come."""

    def __init__(self, args: list[str], stderr_path: Path, env: dict):
        self.stderr_path = stderr_path
        with open(stderr_path, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "studio", "train", *args,
                                          "--events", "json"], cwd=ROOT, env=env, text=True,
                                         stdout=subprocess.PIPE, stderr=err)
        self.events: list[dict] = []
        self.started = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            event = parse_line(line)
            if event is not None:
                self.events.append(event)
                if event["event"] == "start":
                    self.started.set()
        self.started.set()  # end of output: wake whoever waits for a start that never came

    def start_event(self) -> dict | None:
        return next((e for e in self.events if e["event"] == "start"), None)

    def finish(self, timeout: float) -> int:
        """Wait for the process and for the last of its output; its exit code."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.reader.join(timeout=60)
        return code

    def stderr_tail(self, lines: int = 3) -> str:
        text = self.stderr_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def printed_traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr_path.read_text(errors="replace")


# --- the reference run's clock ---------------------------------------------------------------

class Timeline:
    """When each piece of work of each step ended in the reference run, in seconds after its
    `start` event: step -> [(event kind, seconds)], in the order the engine did them."""

    def __init__(self, events: list[dict]):
        t0 = next(e["time"] for e in events if e["event"] == "start")
        self.marks: dict[int, list[tuple[str, float]]] = {}
        for e in events:
            if e["event"] in ("progress", "eval", "preview", "checkpoint"):
                self.marks.setdefault(e["step"], []).append((e["event"], e["time"] - t0))

    def pace(self, events: list[dict]) -> float | None:
        """How much slower (> 1) or faster a process that printed `events` went than the
        reference over the same steps; None when it did too little to tell."""
        start = next((e for e in events if e["event"] == "start"), None)
        steps = [e for e in events if e["event"] == "progress"]
        if start is None or not steps:
            return None
        own = steps[-1]["time"] - start["time"]
        theirs = self.window(steps[-1]["step"], "progress")[1] - self.end_of(start["step"])
        return own / theirs if theirs > 1.0 else None  # shorter: the first step's warm-up rules

    def end_of(self, step: int) -> float:
        """When everything done at `step` (its checkpoint included) was over."""
        return self.marks[step][-1][1] if step in self.marks else 0.0

    def window(self, step: int, kind: str) -> tuple[float, float] | None:
        """The stretch of time in which `kind` of work ("progress" for the step itself) ran at
        `step`: from the end of the work before it to its own event."""
        marks = self.marks.get(step, [])
        for i, (k, t) in enumerate(marks):
            if k == kind:
                return (marks[i - 1][1] if i else self.end_of(step - 1)), t
        return None


def aim(rng: random.Random, phase: str, resumed_from: int, recipe: Recipe,
        timeline: Timeline) -> tuple[float, int | None]:
    """A delay after the start event (and the step it aims at) that lands in `phase` of a step
    in the next two checkpoint intervals, by the reference's clock (the caller scales it to the
    soak's own pace)."""
    if phase == "short":
        return rng.uniform(0.0, SHORT_KILL_S), None
    kind = "progress" if phase == "step" else phase
    horizon = min(resumed_from + 2 * recipe.checkpoint_every, recipe.max_steps)
    later = [s for s in range(resumed_from + 1, recipe.max_steps + 1) if timeline.window(s, kind)]
    near = [s for s in later if s <= horizon] or later[:1]
    if not near:  # nothing of that kind is left: aim at a step
        return aim(rng, "step", resumed_from, recipe, timeline) if kind != "progress" else (0.0, None)
    step = rng.choice(near)
    begin, end = timeline.window(step, kind)
    return max(0.0, rng.uniform(begin, end) - timeline.end_of(resumed_from)), step


def landed(recipe: Recipe, events: list[dict], half_written: bool) -> str:
    """Where the kill really landed, from the events the process printed before it died."""
    if any(e["event"] == "done" for e in events):
        return "after the end"
    if half_written:
        return "checkpoint"
    work = [e for e in events if e["event"] in ("progress", "eval", "preview", "checkpoint")]
    if not work:
        return "first step"
    last = work[-1]
    # What the engine does after each kind of event at a step, in order.
    after = {"progress": ("eval", "preview", "checkpoint"), "eval": ("preview", "checkpoint"),
             "preview": ("checkpoint",), "checkpoint": ()}[last["event"]]
    for kind in after:
        if recipe.happens_at(kind, last["step"]):
            return kind
    return "step"


# --- checks on the run folder ------------------------------------------------------------------

def debris(run: Path) -> set[str]:
    """Temp files and folders of interrupted writes, anywhere in the run folder."""
    return {str(p.relative_to(run)) for p in run.rglob("*.tmp-*")}  # .tmp-step_…, .x.json.tmp-…


def verify_checkpoints(run: Path) -> tuple[int | None, list[str]]:
    """(newest complete checkpoint's step, problems of any complete one that does not load)."""
    rd = RunDir(run)
    problems = []
    complete = rd.checkpoints()
    for ckpt in complete:
        try:
            rd.load_checkpoint(ckpt.folder)
        except StudioError as exc:
            problems.append(str(exc))
    return (complete[-1].step if complete else None), problems


def shown_status(run: Path) -> str:
    """The run's status as `studio runs` shows it."""
    rows = [r for r in api.runs_table(str(run.parent)) if Path(r["run"]) == run]
    return rows[0]["status"] if rows else "(not listed)"


def unparseable_event_lines(run: Path) -> int:
    path = RunDir(run).events_path
    if not path.exists():
        return 0
    bad = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            json.loads(line)
        except json.JSONDecodeError:
            bad += 1
    return bad


def generate_works(run: Path, recipe: Recipe, env: dict) -> tuple[bool, str]:
    proc = subprocess.run([sys.executable, "-m", "studio", "generate", str(run), "--n", "1",
                           "--json", "--device", "cpu", *recipe.generate_args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=START_TIMEOUT_S)
    tail = (proc.stderr.strip().splitlines() or [""])[-1]
    return proc.returncode == 0 and "Traceback" not in proc.stderr, tail


# --- comparing the soaked run with the reference -----------------------------------------------

def losses_by_step(run: Path) -> dict[int, float]:
    """step -> training loss, as studio reads events.jsonl (a step re-run after a kill: the
    resume's record; should the reader keep both, the last wins)."""
    return {e["step"]: e["loss"] for e in RunDir(run).events() if e["event"] == "progress"}


def repeated_steps(events: list[dict]) -> int:
    """Progress records of a step already recorded (steps re-run after a kill)."""
    steps = [e["step"] for e in events if e["event"] == "progress"]
    return len(steps) - len(set(steps))


def raw_events(run: Path) -> list[dict]:
    """Every event line of events.jsonl, superseded ones included."""
    with open(RunDir(run).events_path, encoding="utf-8", errors="replace") as f:
        return [e for e in map(parse_line, f) if e is not None]


def compare(reference: Path, soaked: Path) -> dict:
    """The final checkpoints of the two runs, tensor by tensor. Their files' bytes are compared
    only for the record: safetensors writes its metadata (a hash map) in an order that varies
    from process to process, so equal tensors and metadata can make different bytes, and so
    different SHA-256 sums in state.json's "files"."""
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file

    a, b = RunDir(reference).checkpoints()[-1], RunDir(soaked).checkpoints()[-1]
    out = {"reference_step": a.step, "soak_step": b.step, "files": {}}
    identical = a.step == b.step
    for name in ("model.safetensors", "trainer.safetensors"):
        pa, pb = a.folder / name, b.folder / name
        ta, tb = load_file(str(pa)), load_file(str(pb))
        differing, max_abs = [], 0.0
        for key in sorted(set(ta) | set(tb)):
            if key not in ta or key not in tb or ta[key].shape != tb[key].shape:
                differing.append(key)
                max_abs = float("inf")
            elif not np.array_equal(ta[key], tb[key]):
                differing.append(key)
                diff = np.abs(ta[key].astype(np.float64) - tb[key].astype(np.float64))
                max_abs = max(max_abs, float(diff.max()))
        with safe_open(str(pa), "np") as fa, safe_open(str(pb), "np") as fb:
            same_metadata = fa.metadata() == fb.metadata()
        out["files"][name] = {"tensors": len(ta), "differing": differing[:10],
                              "n_differing": len(differing), "max_abs_diff": max_abs,
                              "same_metadata": same_metadata,
                              "same_bytes": pa.read_bytes() == pb.read_bytes()}
        identical &= not differing and same_metadata
    sa = json.loads((a.folder / "state.json").read_text())
    sb = json.loads((b.folder / "state.json").read_text())
    out["state_keys_differing"] = sorted(k for k in set(sa) | set(sb)
                                         if k != "files" and sa.get(k) != sb.get(k))
    identical &= not out["state_keys_differing"]
    la, lb = losses_by_step(reference), losses_by_step(soaked)
    common = sorted(set(la) & set(lb))
    out["loss_steps"] = {"reference": len(la), "soak": len(lb),
                         "differing": sum(la[s] != lb[s] for s in common),
                         "max_abs_diff": max((abs(la[s] - lb[s]) for s in common), default=0.0)}
    identical &= la == lb
    out["bit_identical"] = identical
    return out


# --- the soak of one generator -------------------------------------------------------------------

@dataclass
class Kill:
    number: int
    aimed_at: str
    aimed_step: int | None
    delay_s: float              # drawn, after the start event was read
    killed_at_s: float          # when SIGKILL was really sent, after the start event was read
    pace: float                 # the delay's scale: the soak's speed against the reference's
    resumed_from: int | None    # the step the killed process started at
    landed: str = ""
    last_step: int | None = None
    announced_checkpoint: int | None = None
    newest_checkpoint: int | None = None
    shown_status: str = ""
    generate: str = "skipped (no checkpoint yet)"
    problems: list[str] = field(default_factory=list)


def soak_generator(recipe: Recipe, kills: int, rng: random.Random, work: Path, env: dict) -> dict:
    began = time.monotonic()
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    reference, soaked = work / f"{recipe.generator}-reference", work / f"{recipe.generator}-soak"
    # Each run has a cache of its own (not the user's): the soak's first process then does the
    # same one-time work as the reference's (the image run's feature network), so the
    # reference's clock fits it, and kills can land in that work too.
    ref_env = {**env, "STUDIO_CACHE_DIR": str(work / "cache" / "reference")}
    env = {**env, "STUDIO_CACHE_DIR": str(work / "cache" / "soak")}

    say(f"\n{recipe.generator}: reference run to {recipe.max_steps} steps")
    straight = Training(recipe.train_args(reference), logs / f"{recipe.generator}-reference.err",
                        ref_env)
    code = straight.finish(RUN_TIMEOUT_S)
    if code != 0:
        raise SystemExit(f"the reference {recipe.generator} run failed (exit {code}): "
                         f"{straight.stderr_tail()}")
    timeline = Timeline(straight.events)
    say(f"  {timeline.end_of(recipe.max_steps):.1f} s of training after its start event")

    phases = [PHASES[i % len(PHASES)] for i in range(kills)]
    rng.shuffle(phases)
    records: list[Kill] = []
    failures: list[str] = []
    args = recipe.train_args(soaked)
    expected_start, final_code = 0, None
    debris_of: dict[str, int] = {}  # temp file -> the kill that left it (0: none, a failed start)
    pace = 1.0
    proven: dict = {}  # the checkpoint `studio generate` last worked from
    for number in range(1, kills + 2):
        # What goes wrong in a process counts against the kill before it (its resume failed).
        blame = records[-1].problems if records else failures
        proc = Training(args, logs / f"{recipe.generator}-soak-{number}.err", env)
        args = ["--resume", str(soaked)]
        proc.started.wait(START_TIMEOUT_S)
        start = proc.start_event()
        if start is None:
            code = proc.finish(RUN_TIMEOUT_S)
            blame.append(f"the next process never started (exit {code}): {proc.stderr_tail()}")
            break
        if start["step"] != expected_start:
            blame.append(f"the next process started at step {start['step']}, not at the newest "
                         f"checkpoint's step {expected_start}")
        if number > kills:  # the last resume runs to the end
            final_code = proc.finish(RUN_TIMEOUT_S)
            done = next((e for e in proc.events if e["event"] == "done"), None)
            if final_code != 0 or not done or done["status"] != "done":
                blame.append(f"the last resume ended with exit {final_code}, "
                             f"{done['status'] if done else 'no done event'}: {proc.stderr_tail()}")
        else:
            phase = phases[number - 1]
            delay, step = aim(rng, phase, start["step"], recipe, timeline)
            if phase != "short":
                delay *= pace
            started = time.monotonic()
            time.sleep(delay)
            if proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic() - started  # a busy machine oversleeps
            code = proc.finish(RUN_TIMEOUT_S)
            record = Kill(number, phase, step, round(delay, 3), round(killed_at, 3),
                          round(pace, 2), start["step"])
            expected_start = inspect_after_kill(record, proc, code, recipe, soaked, env, proven)
            # Aim the next kill by this process's pace: a loaded machine runs slower than the
            # reference did, and a kill aimed by the reference's clock would land early.
            pace = (pace * min(3.0, max(0.5, timeline.pace(proc.events) or pace))) ** 0.5
        if proc.printed_traceback():
            blame.append(f"a process printed a traceback: {proc.stderr_tail()}")
        # The temp files of a kill must be gone once a later process has written a checkpoint.
        now = debris(soaked)
        wrote = any(e["event"] == "checkpoint" for e in proc.events)
        for path in sorted(now):
            left_by = debris_of.setdefault(path, number if number <= kills else 0)
            if wrote and 0 < left_by < number:
                records[left_by - 1].problems.append(
                    f"its debris {path} is still there after a later resume wrote a checkpoint")
                debris_of[path] = 0  # said once
        if number <= kills:
            records.append(record)
            say("  " + kill_line(record))
            if record.landed == "after the end":
                say("  the run finished before this kill: no more kills")
                final_code = code
                break
    if final_code is None:
        failures.append("the soak did not reach the end of the run")
    failures += finished_run_problems(soaked)
    comparison = compare(reference, soaked) if RunDir(soaked).checkpoints() else {"bit_identical": False}
    if not comparison["bit_identical"]:
        failures.append("the final checkpoint differs from the uninterrupted run's")
    failures += [f"kill {r.number}: {p}" for r in records for p in r.problems]
    landed_kills = [r for r in records if r.landed != "after the end"]
    repeated = {"in_events_jsonl": repeated_steps(raw_events(soaked)),
                "as_studio_reads_them": repeated_steps(RunDir(soaked).events())}
    if repeated["as_studio_reads_them"]:
        failures.append(f"{repeated['as_studio_reads_them']} re-run steps are read twice from "
                        f"events.jsonl (charts would draw them twice)")
    return {
        "generator": recipe.generator, "recipe": asdict(recipe), "kills_asked": kills,
        "kills_landed": len(landed_kills),
        "kills_survived": sum(not r.problems for r in landed_kills),
        "landed_in": {p: sum(r.landed == p for r in landed_kills) for p in
                      sorted({r.landed for r in landed_kills})},
        "kills": [asdict(r) for r in records],
        "final_exit_code": final_code,
        "comparison": comparison,
        "repeated_progress_steps": repeated,
        "reference_training_s": round(timeline.end_of(recipe.max_steps), 2),
        "wall_s": round(time.monotonic() - began, 1),
        "failures": failures,
    }


def finished_run_problems(run: Path) -> list[str]:
    """What is wrong with the soaked run once its last resume has ended."""
    problems = []
    leftover = debris(run)
    if leftover:
        problems.append(f"debris left in the finished run: {sorted(leftover)}")
    # A resume that finds its step's folder already there sets it aside (step_N.kept-TIME):
    # never expected here, since every resume continues from the newest checkpoint.
    set_aside = sorted(p.name for p in RunDir(run).checkpoints_dir.glob("*.kept-*"))
    if set_aside:
        problems.append(f"checkpoint folders were set aside: {set_aside}")
    status = RunDir(run).info().get("status")
    if status != "done":
        problems.append(f"run.json says {status!r} at the end, not 'done'")
    return problems


def inspect_after_kill(record: Kill, proc: Training, code: int, recipe: Recipe, run: Path,
                       env: dict, proven: dict) -> int:
    """Fill in what the kill left behind; returns the step the next resume must start at.
    `proven` remembers the checkpoint `studio generate` last worked from (its state.json's
    bytes): generating again from the very same checkpoint would prove nothing new."""
    events = proc.events
    ckpt_dir = RunDir(run).checkpoints_dir  # a checkpoint folder or index.json half written
    half_written = ckpt_dir.is_dir() and any(p.name.endswith(f"-{proc.proc.pid}")
                                             for p in ckpt_dir.glob("*.tmp-*"))
    record.landed = landed(recipe, events, half_written)
    steps = [e["step"] for e in events if e["event"] == "progress"]
    record.last_step = max(steps, default=None)
    announced = [e["step"] for e in events if e["event"] == "checkpoint"]
    record.announced_checkpoint = max(announced, default=None)
    if code != -signal.SIGKILL and record.landed != "after the end":
        record.problems.append(f"exit {code} before the kill: {proc.stderr_tail()}")
    newest, broken = verify_checkpoints(run)
    record.newest_checkpoint = newest
    record.problems += [f"a complete checkpoint does not load: {b}" for b in broken]
    floor = max(x for x in (record.announced_checkpoint, record.resumed_from, 0) if x is not None)
    if floor and (newest is None or newest < floor):
        record.problems.append(f"data lost: the newest checkpoint is {newest}, but step {floor} "
                               f"had been checkpointed")
    record.shown_status = shown_status(run)
    if record.shown_status in ("running", "paused"):
        record.problems.append(f"`studio runs` shows the killed run as {record.shown_status}")
    bad_lines = unparseable_event_lines(run)
    if bad_lines:
        record.problems.append(f"{bad_lines} line(s) of events.jsonl are not JSON")
    if newest is not None:
        state = RunDir(run).checkpoints()[-1].folder / "state.json"
        if proven.get("state") == state.read_bytes():
            record.generate = "ok (same checkpoint as before)"
            return newest
        ok, tail = generate_works(run, recipe, env)
        record.generate = "ok" if ok else f"failed: {tail}"
        if ok:
            proven["state"] = state.read_bytes()
        else:
            record.problems.append(f"`studio generate` failed: {tail}")
    return newest or 0


# --- output ----------------------------------------------------------------------------------------

def say(text: str = "") -> None:
    print(text, flush=True)


def kill_line(r: Kill) -> str:
    aimed = f"{r.aimed_at}@{r.aimed_step}" if r.aimed_step else r.aimed_at
    verdict = "ok" if not r.problems else "PROBLEM: " + "; ".join(r.problems)
    return (f"kill {r.number:2d}: from step {r.resumed_from:3d}, aimed {aimed:<15} "
            f"+{r.killed_at_s:6.3f}s (pace {r.pace:.2f}), landed {r.landed:<13} (last step {r.last_step}), newest "
            f"checkpoint {r.newest_checkpoint}, shown {r.shown_status}, generate "
            f"{r.generate.split(':')[0]}: {verdict}")


def summary_table(results: list[dict]) -> list[str]:
    lines = [f"{'generator':<10}{'kills':>6}{'survived':>10}  {'landed in':<48}"
             f"{'bit-identical':>14}{'max |diff|':>12}{'re-run steps':>14}{'failures':>10}"]
    for r in results:
        c = r["comparison"]
        diff = max((f["max_abs_diff"] for f in c.get("files", {}).values()), default=float("nan"))
        where = ", ".join(f"{k} {v}" for k, v in r["landed_in"].items())
        rerun = r["repeated_progress_steps"]
        rerun = f"{rerun['in_events_jsonl']} ({rerun['as_studio_reads_them']} read)"
        lines.append(f"{r['generator']:<10}{r['kills_landed']:>6}{r['kills_survived']:>10}  "
                     f"{where:<48}{'yes' if c['bit_identical'] else 'NO':>14}{diff:>12.3g}"
                     f"{rerun:>14}{len(r['failures']):>10}")
    return lines


def environment() -> dict:
    import torch
    return {"cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_before": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="kills per generator (default 10)")
    parser.add_argument("--generators", default="text,image", help="comma-separated (text,image)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    parser.add_argument("--work", help="scratch folder (default: a new temporary one, removed "
                                       "at the end unless something failed)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="studio-soak-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    available = recipes(work)
    names = [g.strip() for g in args.generators.split(",") if g.strip()]
    unknown = [g for g in names if g not in available]
    if unknown:
        parser.error(f"unknown generator(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    rng = random.Random(args.seed)
    doc = {"kills_per_generator": args.kills, "seed": args.seed, "environment": environment(),
           "work": str(work), "generators": []}
    for name in names:
        doc["generators"].append(soak_generator(available[name], args.kills, rng, work, env))
    doc["ok"] = all(not r["failures"] for r in doc["generators"])
    write_json(Path(args.out), doc)

    say()
    for line in summary_table(doc["generators"]):
        say(line)
    for r in doc["generators"]:
        for failure in r["failures"]:
            say(f"{r['generator']}: {failure}")
    say(f"results: {args.out}")
    if doc["ok"] and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    elif not doc["ok"]:
        say(f"run folders and logs kept in {work}")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
