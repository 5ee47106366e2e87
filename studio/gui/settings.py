"""Settings the window keeps between sessions, as JSON in the platform's config folder
(STUDIO_CONFIG_DIR overrides it, e.g. for tests)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from studio.runstore import write_json


def config_dir() -> Path:
    override = os.environ.get("STUDIO_CONFIG_DIR")
    if override:
        return Path(override)
    from platformdirs import user_config_dir
    return Path(user_config_dir("aigc-studio"))


def default_runs_folder() -> str:
    from platformdirs import user_data_dir
    override = os.environ.get("STUDIO_CONFIG_DIR")
    base = Path(override) if override else Path(user_data_dir("aigc-studio"))
    return str(base / "runs")


@dataclass
class Settings:
    runs_folder: str = ""
    default_device: str = "auto"
    theme: str = "system"  # system, light, dark
    geometry: str = ""  # the window's saved geometry (base64)
    last_generator: str = "text"
    data_source: str = ""  # the Data panel's chosen file or folder ("" = the built-in data)
    val_source: str = ""  # its held-out data ("" = the generator holds out a part of the data)
    compose_recipe: str = ""  # the Compose tab's recipe file ("" = a new recipe)
    compose_rows: str = ""  # its rows file (CSV or JSONL)
    compose_output: str = ""  # the folder its batches write into

    @classmethod
    def load(cls) -> "Settings":
        path = config_dir() / "settings.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            known = {f.name for f in fields(cls)}
            settings = cls(**{k: v for k, v in doc.items() if k in known})
        except (OSError, ValueError, TypeError):
            settings = cls()  # first launch, or a damaged file: start from defaults
        if not settings.runs_folder:
            settings.runs_folder = default_runs_folder()
        return settings

    def save(self) -> None:
        folder = config_dir()
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "settings.json", asdict(self))


# Settings that only change how the window looks: what a launch that crashed resets.
APPEARANCE = ("theme", "geometry")


class LaunchGuard:
    """Notices a window launch that did not end cleanly, so a setting that crashed it cannot
    crash every launch after it (a theme once did, in Qt's own code, before Python could react).

    `begin()` leaves a marker file in the config folder and `end()` removes it. A marker found
    at `begin()` means the last window died: its appearance settings go back to the defaults
    (the runs folder, data and generator are kept), the old file is kept as a backup, and
    `begin()` returns the sentence to show once.
    """

    def __init__(self, folder: Path | None = None):
        self.folder = folder or config_dir()
        self.marker = self.folder / "window-running.json"
        self.backup = self.folder / "settings.before-crash.json"

    def begin(self) -> str | None:
        notice = self._recover() if self._left_by_a_dead_window() else None
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.marker, {"pid": os.getpid()})
        return notice

    def end(self) -> None:
        if self._marker_pid() == os.getpid():  # another window's marker is its own business
            self.marker.unlink(missing_ok=True)

    def _marker_pid(self) -> int | None:
        try:
            pid = json.loads(self.marker.read_text(encoding="utf-8")).get("pid")
        except (OSError, ValueError, AttributeError):
            return None
        return pid if isinstance(pid, int) else None

    def _left_by_a_dead_window(self) -> bool:
        if not self.marker.exists():
            return False
        pid = self._marker_pid()
        if pid is None or pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)  # signal 0 only asks whether it exists
        except ProcessLookupError:
            return True
        except OSError:  # alive but someone else's: a window still open
            return False
        return False  # still open: two windows at once is not a crash

    def _recover(self) -> str:
        settings_file = self.folder / "settings.json"
        try:
            doc = json.loads(settings_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = None
        if not isinstance(doc, dict):
            return "The last window did not close normally; starting with the default settings."
        write_json(self.backup, doc)
        defaults = asdict(Settings())
        changed = {k: doc[k] for k in APPEARANCE if k in doc and doc[k] != defaults[k]}
        write_json(settings_file, {**doc, **{k: defaults[k] for k in APPEARANCE}})
        looks = f" (theme was '{changed['theme']}')" if "theme" in changed else ""
        return (f"The last window did not close normally, so this one starts with the default "
                f"look{looks}; runs folder and data are kept. Change the theme again in File › "
                f"Settings; the previous settings are saved in {self.backup}.")
