"""What makes a plugin usable, checked before anyone relies on it; `studio plugin validate`.

Two kinds of checks. The declaration checks read only what a generator class declares (its
name, modality, Config and SampleConfig): the registry runs them on every plugin it loads, so a
plugin that could only fail later (a raw torch traceback in `studio train`, a run that
`studio generate` cannot find) is listed as broken with a one-line reason instead. The
validation (`validate`) adds what needs the generator to run: presets and train_defaults, two
training steps on a tiny config, and `evaluate()` / `evaluate(source)` returning the metric
that picks the best checkpoint.

Every problem says where in the plugin's code it comes from (file and line). torch is imported
only by the training check, so listing stays light.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import traceback
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from studio.errors import StudioError

MODALITIES = ("text", "image", "video")  # studio.contract.Modality
# The field types the validator (studio/config.py), the CLI's --set and the window's forms
# handle; each may also be optional (`int | None`).
SUPPORTED_TYPES = (bool, int, float, str, list)
STUDIO_FILES = Path(__file__).resolve().parent
IMPORT_MACHINERY = Path(importlib.__file__).resolve().parent


class PluginProblem(StudioError):
    """What makes a plugin unusable, with where in its code (`where`: "file:line" or None)."""

    def __init__(self, message: str, where: str | None = None):
        super().__init__(message)
        self.where = where

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} ({self.where})" if self.where else text


# --- where in the plugin's code -------------------------------------------------------------

def plugin_files(target: str) -> Path | None:
    """The file or package folder of the plugin's top-level module ("pkg.mod:Class" -> pkg),
    found without importing it (None if it cannot be found)."""
    import importlib.util  # noqa: F811 - the submodule, not imported with importlib
    top = target.partition(":")[0].split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve()
    return Path(spec.origin).resolve() if spec.origin else None


def where_raised(exc: BaseException, root: Path | None) -> str | None:
    """"file:line" of the traceback's last frame in the plugin's files (`root`); without
    `root`, the last frame outside the studio and Python's import machinery."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        path = Path(frame.filename)
        if frame.filename.startswith("<"):
            continue
        if root is not None:
            resolved = path.resolve()
            if resolved == root or root in resolved.parents:
                return f"{frame.filename}:{frame.lineno}"
        elif not {STUDIO_FILES, IMPORT_MACHINERY} & set(path.resolve().parents):
            return f"{frame.filename}:{frame.lineno}"
    return None


def where_defined(obj, field: str | None = None) -> str | None:
    """"file:line" where a class is defined, or where it declares `field` (None for classes
    made at run time)."""
    import re
    try:
        lines, first = inspect.getsourcelines(obj)
        path = inspect.getsourcefile(obj)
    except (OSError, TypeError):
        return None
    if field is not None:
        declares = re.compile(rf"\s+{re.escape(field)}\s*[:=]")
        first += next((i for i, line in enumerate(lines) if declares.match(line)), 0)
    return f"{path}:{first}"


def frames_from_the_plugin(exc: BaseException) -> str:
    """The traceback without the leading frames of the studio's guard and Python's import
    machinery: what the plugin's author needs to read."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        name = tb.tb_frame.f_code.co_filename
        path = Path(name).resolve()
        if not (name.startswith("<frozen") or STUDIO_FILES in path.parents
                or IMPORT_MACHINERY in path.parents):
            break
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def as_problem(exc: BaseException, root: Path | None) -> PluginProblem:
    """Any failure of plugin code as one line: its type, message and where it was raised."""
    if isinstance(exc, PluginProblem):
        return exc
    line = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return PluginProblem(line, where_raised(exc, root))


# --- the declaration checks -----------------------------------------------------------------

def check_is_generator(cls, entry_name: str) -> None:
    from studio.contract import Generator
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise PluginProblem(f"'{getattr(cls, '__qualname__', cls)}' is not a "
                            f"studio.contract.Generator subclass", where_defined(cls))


def check_name(cls, entry_name: str) -> None:
    name = getattr(cls, "name", None)
    if name != entry_name:
        raise PluginProblem(
            f"the entry point is named '{entry_name}' but the class's `name` is {name!r}: runs "
            f"record the class's name and `studio generate` looks it up by the entry point's. "
            f"Make them the same", where_defined(cls))


def check_modality(cls, entry_name: str) -> None:
    modality = getattr(cls, "modality", None)
    if modality not in MODALITIES:
        raise PluginProblem(f"modality {modality!r} is not one of {', '.join(MODALITIES)}",
                            where_defined(cls))


def check_config(cls, attribute: str) -> None:
    """`cls.<attribute>` is a dataclass of supported field types whose defaults pass the
    validator as they are (a default of another type would reach the model unconverted)."""
    from studio.config import check_field, from_dict
    config = getattr(cls, attribute, None)
    where = where_defined(config) if isinstance(config, type) else where_defined(cls)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise PluginProblem(f"{attribute} must be a dataclass of `studio.config.setting` fields "
                            f"(add @dataclass), got {config!r}", where)
    try:
        hints = typing.get_type_hints(config)
    except Exception as exc:  # e.g. an annotation naming something the module lacks
        raise PluginProblem(f"{attribute}'s type annotations cannot be read: "
                            f"{type(exc).__name__}: {exc}", where) from None
    defaults = {}
    for f in dataclasses.fields(config):
        base = _base_type(hints[f.name])
        if base not in SUPPORTED_TYPES:
            raise PluginProblem(f"{attribute}.{f.name} has type {hints[f.name]!r}; settings can "
                                f"be {', '.join(t.__name__ for t in SUPPORTED_TYPES)} (or "
                                f"optional: `int | None`)", where_defined(config, f.name))
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise PluginProblem(f"{attribute}.{f.name} has no default; every setting needs one "
                                f"(`setting(default, help)`)", where_defined(config, f.name))
        try:
            check_field(config, f.name, default, where=attribute)
        except StudioError as exc:
            raise PluginProblem(f"default of {attribute}.{f.name}: {exc}",
                                where_defined(config, f.name)) from None
        if default is not None and not _same_kind(default, base):
            raise PluginProblem(f"{attribute}.{f.name} is declared {base.__name__} but its "
                                f"default is {default!r} ({type(default).__name__}); give it a "
                                f"default of type {base.__name__}", where_defined(config, f.name))
        defaults[f.name] = default
    try:
        from_dict(config, defaults, f"{attribute} defaults")  # the cross-field check() too
    except StudioError as exc:
        raise PluginProblem(str(exc), where) from None


def _base_type(tp):
    from studio.config import _base_type as base
    return base(tp)


def _same_kind(value, base: type) -> bool:
    if base is float:  # an int default for a float setting is fine (1 for 1.0)
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, base)


DECLARATION_CHECKS: list[tuple[str, Callable]] = [
    ("is a studio.contract.Generator subclass", check_is_generator),
    ("the entry point's name is the class's `name`", check_name),
    ("modality is text, image or video", check_modality),
    ("Config: a dataclass of supported settings whose defaults validate",
     lambda cls, _: check_config(cls, "Config")),
    ("SampleConfig: a dataclass of supported settings whose defaults validate",
     lambda cls, _: check_config(cls, "SampleConfig")),
]


def declaration_problem(cls, entry_name: str) -> PluginProblem | None:
    """The first reason the class cannot be used as a generator under that entry point."""
    for _, check in DECLARATION_CHECKS:
        try:
            check(cls, entry_name)
        except PluginProblem as problem:
            return problem
    return None


# --- studio plugin validate -----------------------------------------------------------------

@dataclass
class CheckResult:
    generator: str
    label: str
    problem: str | None = None  # None: passed
    skipped: str | None = None  # why the check did not run

    @property
    def ok(self) -> bool:
        return self.problem is None


def plugins_to_validate(name: str | None, registry=None) -> list:
    """The entries `studio plugin validate [NAME]` checks: NAME (built-ins allowed), or every
    plugin that does not ship with the studio."""
    from studio.registry import BUILTIN_DISTRIBUTION, default_registry
    registry = registry or default_registry()
    if name is not None:
        entry = registry.entry(name)
        if entry is None:
            raise StudioError(f"no generator named '{name}'. Registered generators: "
                              f"{', '.join(registry.names()) or 'none'} (see `studio generators`).")
        return [entry]
    return [e for e in registry.entries() if e.distribution != BUILTIN_DISTRIBUTION]


def validate(entry, settings: list[str] | None = None, data: str | None = None
             ) -> Iterator[CheckResult]:
    """Check one registered generator as the studio will use it, one result per check; the
    run-time checks are skipped once a declaration check fails. Training uses the generator's
    `tiny` preset when it has one, else its defaults, then `settings` (--set k=v), for 2 steps
    on `data` (None: the generator's built-in demo data), in a temporary folder."""
    from studio.registry import guarded
    root = plugin_files(entry.target) if entry.target and ":" in entry.target else None

    cls, problem = None, None
    with guarded() as caught:
        cls = entry.import_class()
    if caught:
        problem = as_problem(caught[0], root)
    yield CheckResult(entry.name, f"imports through its entry point ({entry.target})",
                      str(problem) if problem else None)
    if cls is None:
        return
    declared = True
    for label, check in DECLARATION_CHECKS:
        result = _run(entry.name, label, lambda: check(cls, entry.name), root)
        declared = declared and result.ok
        yield result
    if not declared:
        return
    yield _run(entry.name, "presets name real settings and their values validate",
               lambda: _check_presets(cls), root)
    yield _run(entry.name, "train_defaults name real training settings and their values "
               "validate", lambda: _check_train_defaults(cls), root)
    yield from _check_running(entry, cls, settings, data, root)


def _run(generator: str, label: str, check: Callable, root: Path | None) -> CheckResult:
    from studio.registry import guarded
    with guarded() as caught:
        check()
    return CheckResult(generator, label, str(as_problem(caught[0], root)) if caught else None)


def _check_presets(cls) -> None:
    from studio.config import from_dict
    presets = getattr(cls, "presets", {})
    if not isinstance(presets, dict):
        raise PluginProblem(f"presets must be a dict of name -> settings, got {presets!r}",
                            where_defined(cls))
    for name, values in presets.items():
        try:
            from_dict(cls.Config, values, f"preset '{name}'")
        except StudioError as exc:
            raise PluginProblem(str(exc), where_defined(cls)) from None


def _check_train_defaults(cls) -> None:
    from studio.config import TrainConfig, from_dict
    for attribute in ("train_defaults", "finetune_defaults"):
        try:
            from_dict(TrainConfig, getattr(cls, attribute, {}), attribute)
        except StudioError as exc:
            raise PluginProblem(str(exc), where_defined(cls)) from None


TRAIN_STEPS = 2


def _check_running(entry, cls, settings, data, root) -> Iterator[CheckResult]:
    """Two training steps, then evaluate() and evaluate(source) on the trained run."""
    import tempfile
    from studio import api
    with tempfile.TemporaryDirectory(prefix="studio-validate-") as tmp:
        run_dir = Path(tmp) / "run"
        preset = "tiny" if "tiny" in getattr(cls, "presets", {}) else None
        start = [*(settings or []), "device=cpu", "eval_every=0", "preview_every=0",
                 "checkpoint_every=0", "warmup_steps=0"]
        label = (f"trains {TRAIN_STEPS} steps (preset {preset or '(defaults)'}"
                 f"{', --set ' + ' '.join(settings) if settings else ''})")
        trained = _run(entry.name, label, lambda: api.train(
            entry.name, data=data, run_dir=str(run_dir), preset=preset, settings=start,
            max_steps=TRAIN_STEPS, events="none"), root)
        yield trained
        if not trained.ok:
            return
        held_out: dict = {}
        yield _run(entry.name, f"evaluate() returns {cls.best_metric}, finite",
                   lambda: held_out.update(_evaluate(cls, run_dir, given=data, own=True)), root)
        source = data or held_out.get("source")
        if source is None:
            yield CheckResult(entry.name, "evaluate(source) returns the best metric",
                              skipped="the built-in data has no file to give as source: "
                                      "pass --data to check it")
            return
        yield _run(entry.name, f"evaluate(source={Path(source).name}) returns "
                   f"{cls.best_metric}, finite",
                   lambda: _evaluate(cls, run_dir, given=source, own=False), root)


def _evaluate(cls, run_dir: Path, given: str | None, own: bool) -> dict:
    """evaluate() on the run's held-out split (own) or evaluate(source=given), as `studio
    eval` calls them; returns {"source": the file the run trained on, if any}."""
    import torch

    from studio import api
    run, gen, _ = api.load_run(str(run_dir), device="cpu")
    data_doc = run.config()["data"]
    report = gen.load_data(data_doc.get("source"), data_doc.get("val_source"), api.cache_dir())
    with torch.no_grad():
        metrics = gen.evaluate() if own else gen.evaluate(source=given, max_batches=None)
    what = "evaluate()" if own else "evaluate(source)"
    if not isinstance(metrics, dict):
        raise PluginProblem(f"{what} returned {type(metrics).__name__}, not a dict of metrics",
                            where_defined(type(gen)))
    best = getattr(cls, "best_metric", None)
    if best:
        value = metrics.get(best)
        if value is None:
            raise PluginProblem(f"{what} returned no '{best}' (the class's best_metric; it "
                                f"returned {', '.join(map(str, metrics)) or 'nothing'}): runs "
                                f"would never get a best checkpoint", where_defined(type(gen)))
        if not (isinstance(value, (int, float)) and math.isfinite(float(value))):
            raise PluginProblem(f"{what} returned {best}={value!r}, not a finite number",
                                where_defined(type(gen)))
    source = report.source if report.source and Path(report.source).exists() else None
    return {"source": source}
