"""Typed configs: dataclasses with help, bounds and choices in field metadata.

Every config in the studio (a generator's model/data config, the engine's training config, a
generator's sampling parameters) is a dataclass whose fields are declared with `setting(...)`.
One validator serves the JSON loader, the CLI's `--set key=value` and the window's form, so a
value is accepted or refused the same way everywhere, and plugin authors write no UI.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from studio.errors import StudioError


def setting(default: Any, help: str, *, min: float | None = None, max: float | None = None,
            choices: tuple | list | None = None, min_exclusive: bool = False,
            empty: str | None = None):
    """A config field with the metadata the validator, the CLI and the window read. `empty`:
    for an optional field, what leaving it empty means (e.g. "scaled to max_steps"), for a
    form's placeholder."""
    meta = {"help": help, "min": min, "max": max, "min_exclusive": min_exclusive,
            "choices": tuple(choices) if choices is not None else None, "empty": empty}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: json.loads(json.dumps(default)), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _allows_none(tp) -> bool:
    return tp is type(None) or (typing.get_origin(tp) in (typing.Union, types.UnionType)
                                and type(None) in typing.get_args(tp))


def _base_type(tp):
    """`int | None` -> int; `list[str]` -> list; a plain type -> itself."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else tp
    return origin or tp


def describe(cls) -> list[dict]:
    """The schema a form or `studio config` shows: name, type, default, help, bounds, choices."""
    out = []
    types_ = _field_types(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        base = _base_type(types_[f.name])
        out.append({"name": f.name, "type": getattr(base, "__name__", str(base)),
                    "optional": _allows_none(types_[f.name]), "default": default,
                    **{k: v for k, v in f.metadata.items() if v is not None and v is not False}})
    return out


def _coerce(name: str, value: Any, tp, meta: dict, where: str) -> Any:
    if value is None:
        if _allows_none(tp):
            return None
        raise StudioError(f"{where}: '{name}' cannot be empty; give a value (see `studio config`).")
    base = _base_type(tp)
    bad = StudioError(f"{where}: '{name}' must be {getattr(base, '__name__', base)}, "
                      f"got {value!r}.")
    if base is bool:
        if isinstance(value, bool):
            coerced = value
        elif isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            coerced = True
        elif isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            coerced = False
        else:
            raise bad
    elif base is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            coerced = value
        elif isinstance(value, float) and value.is_integer():
            coerced = int(value)
        elif isinstance(value, str):
            try:
                coerced = int(value.replace("_", ""))
            except ValueError:
                try:
                    as_float = float(value)
                except ValueError:
                    raise bad from None
                if not as_float.is_integer():
                    raise bad from None
                coerced = int(as_float)
        else:
            raise bad
    elif base is float:
        if isinstance(value, bool):
            raise bad
        try:
            coerced = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(coerced):
            raise StudioError(f"{where}: '{name}' must be a finite number, got {value!r}.")
    elif base is str:
        if not isinstance(value, str):
            raise bad
        coerced = value
    elif base is list:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = [value]
        if not isinstance(value, list):
            raise bad
        coerced = value
    else:
        coerced = value
    choices = meta.get("choices")
    if choices is not None and coerced not in choices:
        raise StudioError(f"{where}: '{name}' must be one of {', '.join(map(str, choices))}; "
                          f"got {coerced!r}.")
    lo, hi = meta.get("min"), meta.get("max")
    if isinstance(coerced, (int, float)) and not isinstance(coerced, bool):
        if lo is not None and (coerced < lo or (meta.get("min_exclusive") and coerced == lo)):
            op = ">" if meta.get("min_exclusive") else ">="
            raise StudioError(f"{where}: '{name}' must be {op} {lo}, got {coerced}.")
        if hi is not None and coerced > hi:
            raise StudioError(f"{where}: '{name}' must be <= {hi}, got {coerced}.")
    return coerced


def from_dict(cls, values: dict, where: str = "config"):
    """Build `cls` from a plain dict, refusing unknown keys, wrong types and out-of-range values."""
    if not isinstance(values, dict):
        raise StudioError(f"{where}: expected a JSON object of settings, got {type(values).__name__}.")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise StudioError(f"{where}: unknown setting '{unknown[0]}'. Known settings: "
                          f"{', '.join(sorted(known))}.")
    types_ = _field_types(cls)
    kwargs = {k: _coerce(k, v, types_[k], known[k].metadata, where) for k, v in values.items()}
    config = cls(**kwargs)
    check = getattr(config, "check", None)
    if check is not None:
        problem = check()
        if problem:
            raise StudioError(f"{where}: {problem}")
    return config


def check_field(cls, name: str, value: Any, where: str = "config") -> Any:
    """One field's value, coerced and range-checked (no cross-field check): for forms that
    mark each invalid field on its own."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    if name not in known:
        raise StudioError(f"{where}: unknown setting '{name}'.")
    return _coerce(name, value, _field_types(cls)[name], known[name].metadata, where)


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def replace(config, values: dict, where: str = "config"):
    """A validated copy of `config` with `values` applied."""
    return from_dict(type(config), {**to_dict(config), **values}, where)


def parse_assignments(pairs: list[str] | None, where: str = "--set") -> dict[str, str]:
    """`["lr=3e-4", "n_layer=6"]` -> {"lr": "3e-4", "n_layer": "6"} (values are coerced later)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise StudioError(f"{where} {pair!r}: write it as key=value, e.g. --set lr=3e-4.")
        out[key.strip()] = value
    return out


def split_settings(values: dict, *classes, where: str = "--set") -> list[dict]:
    """Route each key to the one config class that declares it; unknown keys are an error."""
    owners = [{f.name for f in dataclasses.fields(c)} for c in classes]
    routed: list[dict] = [{} for _ in classes]
    for key, value in values.items():
        for names, bucket in zip(owners, routed):
            if key in names:
                bucket[key] = value
                break
        else:
            known = sorted(set().union(*owners))
            raise StudioError(f"{where}: unknown setting '{key}'. Known settings: {', '.join(known)}.")
    return routed


# --- the engine's settings ---------------------------------------------------------------------

AUTO = "scaled to max_steps"
MAX_THREADS = 1024
# Intervals left empty are scaled to the run's length: (times per run, the interval of long
# runs). A 200-step run then evaluates and previews every 20 steps instead of showing nothing
# until its end; a long one keeps intervals whose cost was measured (bench/bench_core.py).
AUTO_INTERVALS = {"eval_every": (10, 2000), "preview_every": (10, 500),
                  "checkpoint_every": (4, 1000)}


def _round_up_nicely(value: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least `value`."""
    scale = 1
    while True:
        for nice in (1, 2, 5):
            if nice * scale >= value:
                return nice * scale
        scale *= 10


def auto_interval(name: str, max_steps: int) -> int:
    per_run, longest = AUTO_INTERVALS[name]
    return min(longest, _round_up_nicely(max_steps / per_run))


def resolve_intervals(train: "TrainConfig") -> "TrainConfig":
    """`train` with each interval left empty set from max_steps (what config.json records, so
    a run is reproducible)."""
    chosen = {name: auto_interval(name, train.max_steps) for name in AUTO_INTERVALS
              if getattr(train, name) is None}
    return dataclasses.replace(train, **chosen) if chosen else train

# Declared here rather than in studio/engine.py so that forms and `studio config` can show them
# without importing torch.

@dataclass
class TrainConfig:
    """How to train (any generator). Generators may change defaults via `train_defaults`."""

    max_steps: int = setting(2000, "total optimizer steps of the run (resume continues to this)", min=1)
    max_minutes: float | None = setting(None, "stop (with a checkpoint) after this many minutes of "
                                        "this session; the LR decay follows it, reaching its floor "
                                        "as the time runs out (or at max_steps, if sooner); "
                                        "empty = no limit", min=0, min_exclusive=True,
                                        empty="no limit")
    lr: float = setting(1e-3, "peak learning rate, reached after warmup", min=0, max=10)
    min_lr_ratio: float = setting(0.1, "final LR as a fraction of the peak (cosine decay)", min=0, max=1)
    lr_schedule: str = setting("cosine", "how the LR moves after warmup", choices=("cosine", "constant"))
    warmup_steps: int = setting(100, "linear warmup from 0 to the peak LR", min=0)
    weight_decay: float = setting(0.1, "AdamW decay on weight matrices (not on norms/biases)", min=0)
    beta1: float = setting(0.9, "Adam beta1", min=0, max=1)
    beta2: float = setting(0.99, "Adam beta2 (0.99 suits small batches)", min=0, max=1)
    grad_accum: int = setting(1, "micro-batches summed into one optimizer step", min=1)
    grad_clip: float = setting(1.0, "clip the gradient norm to this (0 = off)", min=0)
    eval_every: int | None = setting(None, "held-out evaluation every N steps (0 = only at the "
                                     "end; empty = scaled to max_steps: about 10 per run, at "
                                     "most 2000 steps apart)", min=0, empty=AUTO)
    eval_batches: int = setting(50, "held-out batches per periodic evaluation", min=1)
    preview_every: int | None = setting(None, "samples on the fixed probe set every N steps (0 = "
                                        "only at the end; empty = scaled to max_steps: about 10 "
                                        "per run, at most 500 steps apart)", min=0, empty=AUTO)
    checkpoint_every: int | None = setting(None, "checkpoint every N steps, also on stop, pause "
                                           "and a new best (0 = only then; empty = scaled to "
                                           "max_steps: about 4 per run, at most 1000 steps apart)",
                                           min=0, empty=AUTO)
    keep_last: int = setting(3, "checkpoints kept besides the best one", min=1)
    log_every: int = setting(10, "progress event every N steps", min=1)
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps")
    precision: str = setting("auto", "auto: bf16 on GPUs that have it and on CPUs with native "
                             "bf16 where the generator gains from it, else fp32",
                             choices=("auto", "fp32", "bf16", "fp16"))
    # The upper bound: a thread pool larger than any machine's cores only slows steps down, and
    # 100000 asked the OS for more threads than it gives ("can't start new thread", then a
    # segfault that left run.json saying "running"). 1024 covers the largest CPU servers.
    threads: int = setting(0, "CPU threads for torch (0 = one per core this process may use)",
                           min=0, max=MAX_THREADS)
    compile: bool = setting(False, "torch.compile the model (pays off on GPUs and long runs)")
    seed: int = setting(1337, "seed for weights, batches and dropout", min=0)
    # LoRA (studio/lora.py): any generator, any task; needs a base (--init-from or
    # --init-from-hf), whose weights stay frozen.
    lora_rank: int = setting(0, "LoRA: train rank-R adapters beside the targeted layers of the "
                             "model started from, which stays frozen (0 = off: train all "
                             "weights)", min=0, max=4096)
    lora_alpha: float | None = setting(None, "LoRA: the adapters' output is scaled by "
                                       "lora_alpha / lora_rank (empty = 2 x lora_rank)",
                                       min=0, min_exclusive=True, empty="2 x lora_rank")
    lora_targets: list[str] = setting([], "LoRA: suffixes of the Linear layers' names to adapt, "
                                      "e.g. [\"c_attn\"] (empty = the generator's default)",
                                      empty="the generator's default")

    def check(self) -> str | None:
        if self.lora_rank == 0 and (self.lora_alpha is not None or self.lora_targets):
            return ("lora_alpha and lora_targets apply only with lora_rank > 0: set lora_rank "
                    "(e.g. 8), or leave them empty.")
        if any(not isinstance(t, str) or not t.strip() for t in self.lora_targets):
            return (f"lora_targets must be names of layers such as \"c_attn\", got "
                    f"{self.lora_targets!r}.")
        return None
