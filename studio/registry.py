"""Generator discovery through entry points.

Generators (built-in and third-party alike) register under the entry-point group
`aigc_studio.generators`. Listing reads the entry-point metadata only; a generator's code is
imported the first time it is used. No plugin can take the host down: its import and the checks
of what it declares (studio/plugins.py) run under a guard that catches everything a plugin can
raise, SystemExit included, and a plugin that fails is reported as "broken" with a one-line
reason, where in its code it failed and the full traceback, while everything else keeps
working. Safe mode (`studio --safe-mode`, or STUDIO_SAFE_MODE=1, which the processes the window
starts inherit) registers the built-in generators only.

Listing is instant: `studio generators`, `studio config NAME` and the window's picker read a
generator's *declarations* (name, modality, version, Config, SampleConfig, presets,
train_defaults) from a light module that imports no torch, when the plugin ships one: a
`config.py` beside the generator's module (in the package the entry point names, or the one
that holds its module) with `DECLARATIONS = {"TextGenerator": TextDeclarations}`, a
studio.contract.Generator subclass without methods that the real class subclasses. It is
imported without running the `__init__` of the packages above it (which import torch), and
gets the same declaration checks as the real class (dataclass Config, defaults that validate,
entry-point name == `name`); when the real class is imported later it must be, or subclass
without changing them, those declarations. A plugin without the light module is described by
importing its code, as before (correct, only slower).

Why a light import and not a manifest in the package's metadata (entry-point extras, a JSON
file): `studio config` shows each setting's help, bounds and choices and the checks call the
Config's own `check()`, which needs the dataclass itself; a manifest would copy it and could
drift from it. And measured (bench/bench_cli.py, on a 2-core machine busy with another
benchmark): importing the three built-in generators' code takes 3.5 s, nearly all of it
torch; their config.py modules 0.08 s, so `studio generators` and `studio config text` take
0.13 s (`studio --help` 0.04 s) with no torch imported.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import signal
import sys
import threading
import types
from dataclasses import dataclass
from importlib.metadata import entry_points

from studio.errors import StudioError

GROUP = "aigc_studio.generators"
BUILTIN_DISTRIBUTION = "aigc-studio"  # the generators that ship with the studio
SAFE_MODE_ENV = "STUDIO_SAFE_MODE"
LIGHT_MODULE = "config"  # the module beside a generator that declares it without torch
LIGHT_MARKER = "DECLARATIONS"  # what that module defines; a config.py without it is not read


@contextlib.contextmanager
def guarded():
    """Run plugin code: whatever it raises is caught and appended to the yielded list, except a
    real Ctrl-C (SIGINT arriving meanwhile, on the main thread), which still stops the command.
    A KeyboardInterrupt the plugin raises itself, SystemExit and other BaseExceptions are the
    plugin's failure, not the user's wish to quit."""
    caught: list[BaseException] = []
    pressed: list[bool] = []
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)
        if callable(previous):  # a Python handler: note the press, then let it act as before
            def note_ctrl_c(signum, frame):
                pressed.append(True)
                previous(signum, frame)
            signal.signal(signal.SIGINT, note_ctrl_c)
        else:
            previous = None  # ignored, or the OS default: nothing of ours to wrap
    try:
        yield caught
    except BaseException as exc:  # noqa: BLE001 - the point: plugin code cannot end the host
        if isinstance(exc, KeyboardInterrupt) and pressed:
            raise
        caught.append(exc)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


# What `GeneratorEntry.info` may import to describe a generator, from least to most.
NOTHING = "nothing"  # the entry point's name and package only
LIGHT = "light"  # the light declarations where the plugin ships them, nothing else
DECLARATIONS = "declarations"  # the light declarations, else the generator's code
CODE = "code"  # the generator's code (torch, for the built-ins)
INFO_LEVELS = (NOTHING, LIGHT, DECLARATIONS, CODE)


@dataclass
class GeneratorEntry:
    name: str
    target: str  # "module:Class"
    distribution: str
    _loaded: type | None = None
    error: str | None = None  # one line: why it is broken
    where: str | None = None  # "file:line" in the plugin's code where it broke
    details: str | None = None  # the traceback, when it broke by raising
    _light: type | None = None  # the declarations read from the light module, once checked
    _light_looked: bool = False  # whether the light module was looked for already

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION

    def load(self) -> type:
        """Import the generator class and check what it declares (once). Raises StudioError
        for a broken plugin."""
        if self._loaded is None and self.error is None and not self._light_looked:
            # What a listing in any process showed: the class must agree with it.
            with contextlib.suppress(StudioError):
                self.light_declarations()
        if self._loaded is None and self.error is None:
            from studio.plugin_checks import (as_problem, declaration_problem, frames_from_the_plugin,
                                        plugin_files)
            cls = problem = None
            with guarded() as caught:
                cls = self.import_class()
                problem = (declaration_problem(cls, self.name) or api_problem(cls)
                           or self._disagreement(cls))
            if caught:
                problem = as_problem(caught[0], plugin_files(self.target))
                self.details = frames_from_the_plugin(caught[0])
            if problem is None:
                self._loaded = cls
            else:
                self._broken(problem)
        self._raise_if_broken()
        return self._loaded

    def declarations(self) -> type:
        """The class whose attributes describe the generator (name, modality, version, Config,
        SampleConfig, presets, train_defaults), checked: the light declarations when the plugin
        ships them (no torch), else the generator class itself. Raises StudioError for a
        broken plugin."""
        if self._loaded is None and self.error is None:
            light = self.light_declarations()
            if light is not None:
                return light
        return self.load()

    def light_declarations(self) -> type | None:
        """The declarations from the plugin's light module, checked as the class's would be
        (once); None when the plugin ships none, or the class is imported already."""
        if self._loaded is not None or self.error is not None:
            return self._loaded
        if not self._light_looked:
            self._light_looked = True
            from studio.plugin_checks import declaration_problem
            declared = problem = None
            with guarded() as caught:
                declared = _light_declarations(self.target)
                problem = declared is not None and (declaration_problem(declared, self.name)
                                                    or api_problem(declared))
            if caught:
                # Whatever stopped the light module (it may need its package's `__init__`)
                # stops the code's import too, which says so with the whole traceback.
                return None
            if problem:
                self._broken(problem)
            else:
                self._light = declared
        self._raise_if_broken()
        return self._light

    def _disagreement(self, cls):
        """Why the imported class contradicts the light declarations the listing showed (None
        when it does not, or there were none)."""
        from studio.plugin_checks import PluginProblem, where_defined
        declared = self._light
        if declared is None or cls is declared:
            return None
        if not (isinstance(cls, type) and issubclass(cls, declared)):
            return PluginProblem(f"'{cls.__qualname__}' does not subclass {declared.__qualname__}, "
                                 f"which {declared.__module__} declares for it", where_defined(cls))
        for attribute in ("name", "modality", "version", "api", "Config", "SampleConfig"):
            if getattr(cls, attribute) is not getattr(declared, attribute):
                return PluginProblem(f"'{cls.__qualname__}' changes `{attribute}`, which "
                                     f"{declared.__module__} declares for it; declare it there "
                                     f"only", where_defined(cls, attribute))
        return None

    def _broken(self, problem) -> None:
        self.error, self.where = problem.args[0], problem.where

    def _raise_if_broken(self) -> None:
        if self.error is not None:
            where = f" at {self.where}" if self.where else ""
            raise StudioError(f"generator '{self.name}' ({self.target}) is broken: {self.error}"
                              f"{where}. Reinstall or fix the plugin package "
                              f"'{self.distribution}'.")

    def import_class(self):
        """The object the entry point names, imported without a guard (see `load`)."""
        if self._loaded is not None:
            return self._loaded
        module_name, _, attr = self.target.partition(":")
        obj = importlib.import_module(module_name)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
        return obj

    def info(self, load: bool | str = DECLARATIONS) -> dict:
        """name, modality, version, status (ok/broken), error, where (file:line) and details
        (the traceback). `load`: what may be imported to know them (INFO_LEVELS): nothing, the
        light declarations only, those or else the code (the default; True), the code (torch).
        Not imported: status "not loaded"."""
        level = {True: DECLARATIONS, False: NOTHING}.get(load, load)
        if level not in INFO_LEVELS:
            raise ValueError(f"load must be one of {', '.join(INFO_LEVELS)}, not {load!r}")
        row = {"name": self.name, "modality": "?", "version": "?", "status": "not loaded",
               "source": self.distribution, "error": None, "where": None, "details": None}
        try:
            cls = {NOTHING: lambda: self._loaded, LIGHT: self.light_declarations,
                   DECLARATIONS: self.declarations, CODE: self.load}[level]()
        except StudioError:
            cls = None
        if self.error is not None:
            row.update(status="broken", error=self.error, where=self.where, details=self.details)
        elif cls is not None:
            row.update(modality=cls.modality, version=cls.version, status="ok")
        return row


def api_problem(cls):
    """Why this studio cannot use a generator written for other versions of the contract
    (None: its `api` range holds studio.contract.API_VERSION)."""
    from studio.contract import API_VERSION, api_fits
    from studio.plugin_checks import PluginProblem, where_defined
    api_range = getattr(cls, "api", None)
    try:
        fits = api_fits(api_range)
    except ValueError as exc:
        return PluginProblem(f"its `api` cannot be read: {exc}", where_defined(cls, "api"))
    if fits:
        return None
    return PluginProblem(
        f"it was written for plugin API versions {api_range} (its `api`), and this studio's is "
        f"{API_VERSION}: install a version of the plugin whose `api` includes {API_VERSION}, or "
        f"a studio whose API version fits {api_range}", where_defined(cls, "api"))


def _light_declarations(target: str) -> type | None:
    """The declarations the light module beside `target` ("module:Class") gives for Class, or
    None when there is no such module or it declares nothing for Class."""
    module_name, _, attr = target.partition(":")
    for package in (module_name, module_name.rpartition(".")[0]):
        if not package:
            continue
        light_name = f"{package}.{LIGHT_MODULE}"
        path = _module_file(light_name)
        if path is None:
            continue
        try:
            with open(path, encoding="utf-8") as source:
                if LIGHT_MARKER not in source.read():
                    return None
        except (OSError, UnicodeDecodeError):
            return None
        declared = getattr(import_light(light_name), LIGHT_MARKER, {})
        return declared.get(attr) if isinstance(declared, dict) else None
    return None


def _module_file(name: str) -> str | None:
    """The source file of module `name`, found without importing it or the packages above it
    (None: not found, or a package)."""
    parts = name.split(".")
    spec = None
    locations = None
    for i in range(len(parts)):
        fullname = ".".join(parts[:i + 1])
        loaded = sys.modules.get(fullname)
        try:
            if loaded is not None and getattr(loaded, "__spec__", None) is not None:
                spec = loaded.__spec__
            elif i == 0:
                spec = importlib.util.find_spec(fullname)
            else:
                spec = importlib.machinery.PathFinder.find_spec(fullname, locations)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        locations = spec.submodule_search_locations
        if i < len(parts) - 1 and locations is None:
            return None  # a module, not a package: it has no submodules
    if spec.submodule_search_locations is not None or not spec.has_location:
        return None
    return spec.origin


_light_lock = threading.Lock()


def import_light(name: str) -> types.ModuleType:
    """Import module `name` without running the `__init__` of the packages of its top-level
    package that are not imported yet (a generator package's `__init__` imports torch): while
    it is imported, each of them stands in as an empty package, then leaves sys.modules again,
    so a later import of the package runs its `__init__` as usual and finds the light modules
    imported already (the same classes). So a light module imports what it needs by absolute
    names from light modules (generators/video/config.py from generators/image/config.py).
    Other threads should not import those packages meanwhile: the window imports the light
    modules before it starts the thread that imports the generators' code."""
    with _light_lock:
        if name in sys.modules:
            return sys.modules[name]
        stand_ins = _StandInPackages(name.partition(".")[0])
        sys.meta_path.insert(0, stand_ins)
        try:
            return importlib.import_module(name)
        finally:
            sys.meta_path.remove(stand_ins)
            for package in stand_ins.made:
                sys.modules.pop(package, None)


class _StandInPackages(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the packages under `top` that are not imported yet as empty packages with their
    real folders, so their submodules import without their `__init__` (see import_light)."""

    def __init__(self, top: str):
        self.top = top
        self.made: list[str] = []

    def find_spec(self, fullname, path, target=None):
        if fullname.partition(".")[0] != self.top:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            found = finder.find_spec(fullname, path, target)
            if found is not None:
                break
        else:
            return None
        if found.submodule_search_locations is None:
            return None  # a module: imported as usual
        self.made.append(fullname)
        spec = importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        spec.submodule_search_locations = list(found.submodule_search_locations)
        return spec

    def create_module(self, spec):
        return None  # an empty module

    def exec_module(self, module) -> None:
        pass  # the stand-in runs none of the package's code


class Registry:
    def __init__(self, entries: list[GeneratorEntry] | None = None, safe_mode: bool = False):
        """`safe_mode`: register the built-in generators only."""
        self.safe_mode = safe_mode
        self._entries: dict[str, GeneratorEntry] = {}
        for entry in entries if entries is not None else _discover():
            if safe_mode and not entry.builtin:
                continue
            # A later duplicate does not shadow the first: say so instead of guessing.
            if entry.name in self._entries:
                entry.error = (f"name '{entry.name}' is already registered by "
                               f"{self._entries[entry.name].distribution}")
                self._entries[f"{entry.name} ({entry.distribution})"] = entry
            else:
                self._entries[entry.name] = entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[GeneratorEntry]:
        return [self._entries[n] for n in self.names()]

    def entry(self, name: str) -> GeneratorEntry | None:
        return self._entries.get(name)

    def get(self, name: str) -> type:
        """The generator class (its code imported: torch, for the built-ins)."""
        return self._known(name).load()

    def declarations(self, name: str) -> type:
        """What the generator declares (name, version, Config, SampleConfig, presets,
        train_defaults), without importing its code when it ships light declarations."""
        return self._known(name).declarations()

    def provenance(self, name: str) -> dict | None:
        """The package that provides generator `name` and its installed version, as runs
        record it ({"distribution": "studio-bigram", "version": "0.1.0"}); None for a generator
        registered in-process."""
        from importlib.metadata import PackageNotFoundError, version
        entry = self._entries.get(name)
        if entry is None or entry.distribution in ("?", "(in-process)"):
            return None
        try:
            installed = version(entry.distribution)
        except PackageNotFoundError:
            installed = None
        return {"distribution": entry.distribution, "version": installed}

    def _known(self, name: str) -> GeneratorEntry:
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self.names()) or "none"
            hint = (" Safe mode is on: only the built-in generators are loaded."
                    if self.safe_mode else "")
            raise StudioError(f"no generator named '{name}'. Registered generators: {known} "
                              f"(see `studio generators`).{hint}")
        return entry

    def add(self, name: str, cls_or_target, distribution: str = "(in-process)") -> None:
        """Register a generator at run time (tests, notebooks)."""
        entry = GeneratorEntry(name, getattr(cls_or_target, "__qualname__", str(cls_or_target)),
                               distribution)
        if isinstance(cls_or_target, type):
            entry._loaded = cls_or_target
        else:
            entry.target = cls_or_target
        self._entries[name] = entry


def _discover() -> list[GeneratorEntry]:
    found = []
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if getattr(ep, "dist", None) is not None else "?"
        found.append(GeneratorEntry(ep.name, ep.value, dist))
    return found


_default: Registry | None = None


def safe_mode() -> bool:
    return os.environ.get(SAFE_MODE_ENV, "") not in ("", "0")


def enter_safe_mode() -> None:
    """From now on the default registry holds the built-in generators only, in this process
    and the ones it starts (the window's training runs): through the environment."""
    global _default
    os.environ[SAFE_MODE_ENV] = "1"
    _default = None


def default_registry() -> Registry:
    global _default
    if _default is None:
        _default = Registry(safe_mode=safe_mode())
    return _default
