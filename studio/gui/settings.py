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
