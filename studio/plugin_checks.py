"""What makes a plugin usable, checked from its declarations alone, before anyone relies on it.

The declaration checks read only what a generator class declares (its name, modality, Config
and SampleConfig): the registry runs them on every plugin it loads, so a plugin that could only
fail later (a raw torch traceback in `studio train`, a run that `studio generate` cannot find)
is listed as broken with a one-line reason instead. Every problem says where in the plugin's
code it comes from (file and line). This module sits below the API (the registry imports it);
`studio plugin validate`, which runs the generator through the API, is studio/plugins.py.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import traceback
import typing
from pathlib import Path
from typing import Callable

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
