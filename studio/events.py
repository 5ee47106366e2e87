"""The training events, declared once.

A training emits one JSON object per event: into the run's events.jsonl, on stdout with
`studio train --events json` (what the window reads), to the terminal and to TensorBoard. Each
object has "event" (its kind), "time" (Unix seconds) and the fields its kind declares below.
The engine builds every event with `make`, so an unknown kind or a missing field is a bug that
the tests catch, not a record a reader trips over later. Readers take events from `read` (a
file) or `parse_line` (one line of a stream), which skip a line cut short by a crash.

A "start" event marks where the loop (re)starts: after a crash, a resume from the checkpoint at
step s runs steps s+1... again, so a "start" at step s supersedes every earlier event of a later
step. `read` drops those (`supersede`); a reader of a live stream does the same on "start".
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Kind:
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    # progress carries the generator's own per-step numbers besides these (e.g. d_loss, g_loss)
    open_ended: bool = False
    about: str = ""


SCHEMA: dict[str, Kind] = {
    "start": Kind(("step", "max_steps", "device", "precision", "threads", "world_size", "params",
                   "unit", "run"), ("trainable_params",),
                  about="the loop starts (or resumes) at `step` of `max_steps`; `params` is the "
                        "model's parameter count, `trainable_params` how many of them train "
                        "(fewer with LoRA or frozen layers), `unit` what throughput counts "
                        "(tokens, images)"),
    "progress": Kind(("step", "max_steps", "loss", "lr", "steps_per_s", "items_per_s", "unit",
                      "eta_s", "elapsed_s", "train_s"), open_ended=True,
                     about="every log_every steps: mean loss since the last one, LR, rates on the "
                           "training clock (`train_s`: wall time less pauses and side work), "
                           "`eta_s` (None before a rate is known), plus the step's other metrics"),
    "eval": Kind(("step", "metrics", "best", "best_step", "best_metric", "is_best"),
                 about="held-out metrics (a dict); the best value of `best_metric` so far"),
    "preview": Kind(("step", "path", "kinds"),
                    about="samples on the fixed probe set written to the folder `path`"),
    "checkpoint": Kind(("step", "path", "best"),
                       about="a complete checkpoint folder; `best`: it is the best so far"),
    "warning": Kind(("message",), ("step",), about="something the user should know"),
    "error": Kind(("message",), ("step",), about="the run stopped on this problem"),
    "paused": Kind(("step",), about="paused through the control file (a checkpoint was written)"),
    "resumed": Kind(("step",), about="training goes on after a pause"),
    "done": Kind(("status", "step", "reason"),
                 about="the loop ended: `status` done/stopped/diverged/failed, and why"),
}
KINDS = tuple(SCHEMA)


class EventError(ValueError):
    """An event that does not fit its declaration: a bug in the code that emits it."""


def check(record: dict) -> None:
    """Raise EventError if `record` is not an event of a declared kind with its fields."""
    kind = record.get("event")
    if kind not in SCHEMA:
        raise EventError(f"unknown event kind {kind!r}; declared kinds: {', '.join(KINDS)}")
    spec = SCHEMA[kind]
    missing = [f for f in spec.required if f not in record]
    if missing:
        raise EventError(f"event {kind!r} lacks {', '.join(missing)}")
    if not spec.open_ended:
        known = {"event", "time", *spec.required, *spec.optional}
        unknown = sorted(set(record) - known)
        if unknown:
            raise EventError(f"event {kind!r} has undeclared field(s) {', '.join(unknown)}")


def make(kind: str, **fields) -> dict:
    """A checked event record, stamped with the time."""
    record = {"event": kind, "time": round(time.time(), 3), **fields}
    check(record)
    return record


def parse_line(line: str | bytes) -> dict | None:
    """One event from a line of JSON; None for a blank, cut-short or non-event line (a crash
    mid-write, or a library's stray print on the same stream)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.strip()
    if not line:
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("event"), str):
        return None
    return record


def read(path: Path) -> list[dict]:
    """The events of an events.jsonl as they stand, oldest first ([] when there is none yet):
    without those that a later resume superseded."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return supersede([record for record in map(parse_line, f) if record is not None])
    except FileNotFoundError:
        return []


def supersede(records: list[dict]) -> list[dict]:
    """Drop the events that a later "start" superseded: those of a step after the step it
    starts from (steps re-run after a crash were logged twice). Events without a step stay."""
    kept: list[dict] = []
    latest = -1  # the latest step among the kept events
    for record in records:
        step = record.get("step")
        if record["event"] == "start" and isinstance(step, int) and step < latest:
            kept = [r for r in kept if not isinstance(r.get("step"), int) or r["step"] <= step]
            latest = step
        if isinstance(step, int):
            latest = max(latest, step)
        kept.append(record)
    return kept
