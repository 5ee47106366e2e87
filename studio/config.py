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
from typing import Any

from studio.errors import StudioError


def setting(default: Any, help: str, *, min: float | None = None, max: float | None = None,
            choices: tuple | list | None = None, min_exclusive: bool = False):
    """A config field with the metadata the validator, the CLI and the window read."""
    meta = {"help": help, "min": min, "max": max, "min_exclusive": min_exclusive,
            "choices": tuple(choices) if choices is not None else None}
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
