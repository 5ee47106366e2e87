"""Generator discovery through entry points.

Generators (built-in and third-party alike) register under the entry-point group
`aigc_studio.generators`. Listing reads the entry-point metadata only; a generator's code is
imported the first time it is used. A generator that fails to import is reported as "broken"
with its error, and everything else keeps working.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from importlib.metadata import entry_points

from studio.errors import StudioError

GROUP = "aigc_studio.generators"


@dataclass
class GeneratorEntry:
    name: str
    target: str  # "module:Class"
    distribution: str
    _loaded: type | None = None
    error: str | None = None

    def load(self) -> type:
        """Import the generator class (once). Raises StudioError for a broken plugin."""
        if self._loaded is None and self.error is None:
            try:
                cls = self._load_entry_point()
                from studio.contract import Generator
                if not (isinstance(cls, type) and issubclass(cls, Generator)):
                    raise TypeError(f"{self.target} is not a studio.contract.Generator subclass")
                self._loaded = cls
            except Exception as exc:  # any failure in plugin code makes it "broken", not fatal
                last = traceback.format_exception_only(type(exc), exc)[-1].strip()
                self.error = last
        if self.error is not None:
            raise StudioError(f"generator '{self.name}' ({self.target}) is broken: {self.error}. "
                              f"Reinstall or fix the plugin package '{self.distribution}'.")
        return self._loaded

    def _load_entry_point(self):
        module_name, _, attr = self.target.partition(":")
        import importlib
        obj = importlib.import_module(module_name)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
        return obj

    def info(self, load: bool = True) -> dict:
        """name, modality, version, status (ok/broken) and error; imports the plugin if `load`."""
        row = {"name": self.name, "modality": "?", "version": "?", "status": "not loaded",
               "source": self.distribution, "error": None}
        if load:
            try:
                cls = self.load()
                row.update(modality=cls.modality, version=cls.version, status="ok")
            except StudioError:
                row.update(status="broken", error=self.error)
        return row


class Registry:
    def __init__(self, entries: list[GeneratorEntry] | None = None):
        self._entries: dict[str, GeneratorEntry] = {}
        for entry in entries if entries is not None else _discover():
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

    def get(self, name: str) -> type:
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self.names()) or "none"
            raise StudioError(f"no generator named '{name}'. Registered generators: {known} "
                              f"(see `studio generators`).")
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


def default_registry() -> Registry:
    global _default
    if _default is None:
        _default = Registry()
    return _default
