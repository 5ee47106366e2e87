"""Everything around a training step, as engine callbacks with no-op hooks.

Acting callbacks (progress, evaluation, previews, checkpoints) run in that order after each
step; each keeps its own state in the checkpoint. Event sinks (the run's events.jsonl, JSON on
stdout for the window, a progress bar on a terminal, TensorBoard) receive every event.
"""

from __future__ import annotations

import json
import sys
from collections import deque

import torch

from studio.runstore import save_samples


class Callback:
    # Work that takes time away from training (evaluating, sampling, saving): the engine keeps
    # its time out of the clock that training rates are measured on.
    side_work = False

    def on_train_start(self, engine) -> None: ...
    def on_step_end(self, engine, metrics: dict) -> None: ...
    def on_pause(self, engine) -> None: ...
    def on_train_end(self, engine, status: str) -> None: ...
    def on_event(self, engine, record: dict) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


# --- acting callbacks ------------------------------------------------------------------------------

class Progress(Callback):
    """Reads the losses back every `log_every` steps and emits a progress event with the rate
    of training (on the engine's training clock, which leaves out pauses, evaluations, previews
    and checkpoints) and an ETA that counts those in."""

    def __init__(self):
        # The last few progress points: the rate follows recent speed (after a compile warm-up)
        # instead of the average since the start. The window is kept across a pause: the
        # training clock stands still while paused, so the points before it stay valid (cleared,
        # the first point after a resume had no items to count: a rate of 0 and a wrong ETA).
        self.window: deque = deque(maxlen=6)
        self.first_step = 0
        self.side_seconds_at_start = 0.0

    def on_train_start(self, engine) -> None:
        self.window.clear()
        self.window.append((engine.training_seconds(), engine.step, engine.items_seen))
        self.first_step, self.side_seconds_at_start = engine.step, engine.side_seconds

    def on_step_end(self, engine, metrics: dict) -> None:
        train = engine.train
        if not (_due(engine.step, train.log_every) or engine.step == train.max_steps):
            return
        loss = engine.flush_losses()
        now = engine.training_seconds()
        t0, s0, i0 = self.window[0]
        self.window.append((now, engine.step, engine.items_seen))
        dt = max(now - t0, 1e-9)
        steps_per_s = (engine.step - s0) / dt
        extra = {k: float(v) for k, v in metrics.items()
                 if k != "loss" and (isinstance(v, (int, float)) or (torch.is_tensor(v) and v.numel() == 1))}
        engine.last_metrics["loss"] = loss
        # evaluations, previews and checkpoints to come take about as long per step as so far
        side_per_step = (engine.side_seconds - self.side_seconds_at_start) / max(engine.step - self.first_step, 1)
        eta = ((train.max_steps - engine.step) * (1 / steps_per_s + side_per_step)
               if steps_per_s > 0 else None)
        if train.max_minutes is not None:  # a time budget ends the run first when it is shorter
            budget_left = max(0.0, (train.max_minutes - engine.elapsed_minutes()) * 60)
            eta = budget_left if eta is None else min(eta, budget_left)
        engine.emit("progress", step=engine.step, max_steps=train.max_steps, loss=loss,
                    lr=engine.last_metrics.get("lr"), steps_per_s=round(steps_per_s, 3),
                    items_per_s=round((engine.items_seen - i0) / dt, 1),
                    unit=engine.generator.throughput_unit,
                    eta_s=round(eta, 1) if eta is not None else None,
                    elapsed_s=round(engine.elapsed_minutes() * 60, 1), train_s=round(now, 3), **extra)


class EvalMode:
    """Evaluation mode, no autograd, and the global RNG left as it was (so a resumed run
    draws the same dropout masks as a straight one)."""

    def __init__(self, engine):
        self.engine = engine

    def __enter__(self):
        devices = [self.engine.device] if self.engine.device.type == "cuda" else []
        self.rng = torch.random.fork_rng(devices=devices)
        self.rng.__enter__()
        self.grad = torch.no_grad()
        self.grad.__enter__()
        self.was_training = self.engine.generator.model.training
        self.engine.generator.model.eval()
        return self

    def __exit__(self, *exc):
        self.engine.generator.model.train(self.was_training)
        self.grad.__exit__(*exc)
        return self.rng.__exit__(*exc)


class Evaluate(Callback):
    """Held-out evaluation every `eval_every` steps and at the end; tracks the best value."""

    side_work = True

    def __init__(self):
        self.best: float | None = None
        self.best_step: int | None = None
        # How the best value was measured, from the metrics that are words (an image run's
        # "val_extractor"): values measured differently are not comparable.
        self.best_measured_with: str | None = None
        self.last_step: int | None = None
        self.new_best = False

    def run(self, engine) -> dict:
        gen = engine.generator
        with EvalMode(engine):
            metrics = gen.evaluate(max_batches=engine.train.eval_batches)
        self.last_step = engine.step
        value = metrics.get(gen.best_metric)
        better = (value is not None and value == value and
                  (self.best is None or (value < self.best if gen.best_mode == "min" else value > self.best)))
        self.new_best = bool(better)
        if better:
            self.best, self.best_step = float(value), engine.step
            self.best_measured_with = ", ".join(v for v in metrics.values() if isinstance(v, str)) or None
        engine.last_metrics.update(metrics)
        engine.emit("eval", step=engine.step, metrics=metrics, best=self.best,
                    best_step=self.best_step, best_metric=gen.best_metric, is_best=self.new_best)
        return metrics

    def on_step_end(self, engine, metrics: dict) -> None:
        self.new_best = False
        if engine.is_main and _due(engine.step, engine.train.eval_every):
            self.run(engine)

    def on_train_end(self, engine, status: str) -> None:
        self.new_best = False
        if engine.is_main and self.last_step != engine.step and engine.step > 0:
            self.run(engine)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step,
                "best_measured_with": self.best_measured_with}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step = state.get("best"), state.get("best_step")
        self.best_measured_with = state.get("best_measured_with")


class Preview(Callback):
    """Samples on the generator's fixed probe set every `preview_every` steps and at the end."""

    side_work = True

    def __init__(self):
        self.last_step: int | None = None

    def run(self, engine) -> None:
        with EvalMode(engine):
            samples = engine.generator.preview()
        folder = save_samples(engine.run.preview_dir(engine.step), samples,
                              {"step": engine.step})
        self.last_step = engine.step
        engine.emit("preview", step=engine.step, path=str(folder),
                    kinds=sorted({s.kind for s in samples}))

    def on_step_end(self, engine, metrics: dict) -> None:
        if engine.is_main and _due(engine.step, engine.train.preview_every):
            self.run(engine)

    def on_train_end(self, engine, status: str) -> None:
        if engine.is_main and self.last_step != engine.step and engine.step > 0:
            self.run(engine)


class Checkpoint(Callback):
    """Checkpoints every `checkpoint_every` steps, on a new best, on pause and at the end."""

    side_work = True

    def __init__(self, evaluate: Evaluate):
        self.evaluate = evaluate
        self.last_step: int | None = None

    def save(self, engine) -> None:
        engine.flush_losses()  # the NaN guard runs before anything is written
        files, state = engine.checkpoint_payload()
        is_best = self.evaluate.new_best or (self.evaluate.best_step == engine.step)
        ckpt = engine.run.save_checkpoint(engine.step, files, state, engine.train.keep_last, is_best)
        self.last_step = engine.step
        engine.run.update(step=engine.step, best={"metric": engine.generator.best_metric,
                                                  "value": self.evaluate.best,
                                                  "step": self.evaluate.best_step,
                                                  "measured_with": self.evaluate.best_measured_with})
        engine.emit("checkpoint", step=engine.step, path=str(ckpt.folder), best=is_best)
        for aside in ckpt.kept:
            engine.emit("warning", step=engine.step,
                        message=f"an earlier {ckpt.name} was in the way (damaged, or from before "
                                f"the checkpoint this training resumed from); it is kept as {aside}")

    def on_train_start(self, engine) -> None:
        self.last_step = engine.step

    def on_step_end(self, engine, metrics: dict) -> None:
        if engine.is_main and (_due(engine.step, engine.train.checkpoint_every) or self.evaluate.new_best):
            self.save(engine)

    def on_pause(self, engine) -> None:
        if engine.is_main and self.last_step != engine.step:
            self.save(engine)

    def on_train_end(self, engine, status: str) -> None:
        if engine.is_main and (self.last_step != engine.step or self.evaluate.new_best):
            self.save(engine)


# --- event sinks -----------------------------------------------------------------------------------

class EventLog(Callback):
    """The run's append-only events.jsonl."""

    def on_event(self, engine, record: dict) -> None:
        engine.run.append_event(record)


class JsonLinesOut(Callback):
    """One JSON object per line on stdout (`--events json`), for the window to read."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def on_event(self, engine, record: dict) -> None:
        self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.stream.flush()


def format_event(record: dict) -> str | None:
    """One human line for an event (None: not worth a line)."""
    kind = record["event"]
    if kind == "start":
        return (f"training {record['params'] / 1e6:.2f}M parameters on {record['device']} "
                f"({record['precision']}, {record['threads']} threads) from step {record['step']}")
    if kind == "progress":
        eta = record.get("eta_s")
        return (f"step {record['step']}/{record['max_steps']}  loss {record['loss']:.4f}  "
                f"{record['items_per_s']:.0f} {record['unit']}/s"
                + (f"  eta {eta:.0f}s" if eta is not None else ""))
    if kind == "eval":
        shown = "  ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items() if isinstance(v, float))
        return f"eval @ {record['step']}: {shown}" + ("  (best)" if record["is_best"] else "")
    if kind == "checkpoint":
        return f"checkpoint {record['path']}" + (" (best)" if record["best"] else "")
    if kind in ("warning", "error"):
        return f"{kind}: {record['message']}"
    if kind in ("paused", "resumed"):
        return f"{kind} at step {record['step']}"
    if kind == "done":
        return f"{record['status']} at step {record['step']} ({record['reason']})"
    return None


class PlainOut(Callback):
    """Readable lines on stderr when no terminal is attached (logs, CI)."""

    def on_event(self, engine, record: dict) -> None:
        line = format_event(record)
        if line:
            print(line, file=sys.stderr, flush=True)


class ProgressBar(Callback):
    """A tqdm bar with loss, rate and ETA on a terminal; other events print above it."""

    def __init__(self):
        self.bar = None

    def on_event(self, engine, record: dict) -> None:
        from tqdm import tqdm
        kind = record["event"]
        if kind == "start":
            self.bar = tqdm(total=record["max_steps"], initial=record["step"], unit="step",
                            dynamic_ncols=True)
        elif kind == "progress" and self.bar is not None:
            self.bar.update(record["step"] - self.bar.n)
            self.bar.set_postfix(loss=f"{record['loss']:.4f}",
                                 rate=f"{record['items_per_s']:.0f} {record['unit']}/s")
        else:
            line = format_event(record)
            if line:
                (self.bar.write if self.bar is not None else print)(line)
            if kind == "done" and self.bar is not None:
                self.bar.close()


class TensorBoard(Callback):
    """Scalars for TensorBoard, when the tensorboard package is installed."""

    def __init__(self, folder):
        import importlib.util
        if importlib.util.find_spec("tensorboard") is None:
            raise ImportError("tensorboard is not installed")
        self.folder = folder
        self.writer = None

    def on_event(self, engine, record: dict) -> None:
        if self.writer is None:  # made on the first event, so only the rank that logs writes
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.folder))
        kind, step = record["event"], record.get("step", 0)
        if kind == "progress":
            self.writer.add_scalar("train/loss", record["loss"], step)
            self.writer.add_scalar("train/lr", record["lr"], step)
            self.writer.add_scalar("train/items_per_s", record["items_per_s"], step)
        elif kind == "eval":
            for key, value in record["metrics"].items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"eval/{key}", value, step)
        elif kind in ("done", "error"):
            self.writer.flush()


def standard_callbacks() -> list[Callback]:
    evaluate = Evaluate()
    return [Progress(), evaluate, Preview(), Checkpoint(evaluate), EventLog()]
