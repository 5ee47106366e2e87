"""Generator discovery through entry points.

Generators (built-in and third-party alike) register under the entry-point group
`aigc_studio.generators`. Listing reads the entry-point metadata only; a generator's code is
imported the first time it is used. No plugin can take the host down: its import and the checks
of what it declares (studio/plugins.py) run under a guard that catches everything a plugin can
raise, SystemExit included, and a plugin that fails is reported as "broken" with a one-line
reason, where in its code it failed and the full traceback, while everything else keeps
working. Safe mode (`studio --safe-mode`, or STUDIO_SAFE_MODE=1, which the processes the window
starts inherit) registers the built-in generators only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass
from importlib.metadata import entry_points

from studio.errors import StudioError

GROUP = "aigc_studio.generators"
BUILTIN_DISTRIBUTION = "aigc-studio"  # the generators that ship with the studio
SAFE_MODE_ENV = "STUDIO_SAFE_MODE"


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


@dataclass
class GeneratorEntry:
    name: str
    target: str  # "module:Class"
    distribution: str
    _loaded: type | None = None
    error: str | None = None  # one line: why it is broken
    where: str | None = None  # "file:line" in the plugin's code where it broke
    details: str | None = None  # the traceback, when it broke by raising

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION

    def load(self) -> type:
        """Import the generator class and check what it declares (once). Raises StudioError
        for a broken plugin."""
        if self._loaded is None and self.error is None:
            from studio.plugins import (as_problem, declaration_problem, frames_from_the_plugin,
                                        plugin_files)
            cls = problem = None
            with guarded() as caught:
                cls = self.import_class()
                problem = declaration_problem(cls, self.name)
            if caught:
                problem = as_problem(caught[0], plugin_files(self.target))
                self.details = frames_from_the_plugin(caught[0])
            if problem is None:
                self._loaded = cls
            else:
                self.error, self.where = problem.args[0], problem.where
        if self.error is not None:
            where = f" at {self.where}" if self.where else ""
            raise StudioError(f"generator '{self.name}' ({self.target}) is broken: {self.error}"
                              f"{where}. Reinstall or fix the plugin package "
                              f"'{self.distribution}'.")
        return self._loaded

    def import_class(self):
        """The object the entry point names, imported without a guard (see `load`)."""
        if self._loaded is not None:
            return self._loaded
        module_name, _, attr = self.target.partition(":")
        import importlib
        obj = importlib.import_module(module_name)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
        return obj

    def info(self, load: bool = True) -> dict:
        """name, modality, version, status (ok/broken), error, where (file:line) and details
        (the traceback); imports the plugin if `load`."""
        row = {"name": self.name, "modality": "?", "version": "?", "status": "not loaded",
               "source": self.distribution, "error": None, "where": None, "details": None}
        if load:
            try:
                cls = self.load()
                row.update(modality=cls.modality, version=cls.version, status="ok")
            except StudioError:
                row.update(status="broken", error=self.error, where=self.where,
                           details=self.details)
        elif self.error is not None:  # known broken already (e.g. a duplicate name)
            row.update(status="broken", error=self.error)
        return row


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
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self.names()) or "none"
            hint = (" Safe mode is on: only the built-in generators are loaded."
                    if self.safe_mode else "")
            raise StudioError(f"no generator named '{name}'. Registered generators: {known} "
                              f"(see `studio generators`).{hint}")
        return entry.load()

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
