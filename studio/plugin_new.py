"""`studio plugin new NAME --modality text|image|video`: write a pip-installable plugin package
from the templates in studio/plugin_template/ (common/ for every modality, then <modality>/).

The package it writes (./studio-NAME by default) holds a pyproject.toml with the
`aigc_studio.generators` entry point, the package `studio_NAME` with a light `config.py` (the
declarations, no torch) and `generator.py` (a small generator that works), a test file running
the studio's conformance suite, and a README. It installs, passes `studio plugin validate NAME`
and its own tests as written; the author then replaces the model with theirs.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from studio.errors import StudioError

TEMPLATES = Path(__file__).parent / "plugin_template"
MODALITIES = ("text", "image", "video")
BUILTIN_NAMES = ("text", "image", "video")
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")

# What each modality's template generates and trains on, for the README and the CLI's reply.
DESCRIPTIONS = {
    "text": ("A character-level text generator (the previous characters through a small MLP)",
             "a UTF-8 .txt file or a folder of them"),
    "image": ("A small image VAE (fully connected encoder and decoder)",
              "a folder of images (PNG, JPEG, ...), resized to `size`"),
    "video": ("A short-clip generator: a per-frame VAE whose clips walk its latent space",
              "a folder of animated GIFs, each frame resized to `size`"),
}

# Where each template file goes in the package folder; {package} and {name} are filled in.
LAYOUT = {
    "common/pyproject.toml.tmpl": "pyproject.toml",
    "common/README.md.tmpl": "README.md",
    "common/__init__.py.tmpl": "{package}/__init__.py",
    "{modality}/config.py.tmpl": "{package}/config.py",
    "{modality}/generator.py.tmpl": "{package}/generator.py",
    "{modality}/test.py.tmpl": "tests/test_{name}.py",
}


def check_name(name: str) -> str:
    """The generator's name, lowercased; StudioError for one that cannot name a package."""
    lowered = name.strip().lower()
    if not NAME_PATTERN.fullmatch(lowered) or keyword.iskeyword(lowered):
        raise StudioError(f"'{name}' cannot name a generator: use letters, digits and "
                          f"underscores, starting with a letter (e.g. charlstm or my_vae).")
    if lowered in BUILTIN_NAMES:
        raise StudioError(f"'{lowered}' is a built-in generator's name: pick another (e.g. "
                          f"my_{lowered}).")
    return lowered


def class_prefix(name: str) -> str:
    """"my_vae" -> "MyVae": the start of the generated classes' names."""
    return "".join(part.capitalize() for part in name.split("_") if part)


def new_plugin(name: str, modality: str, folder: str | Path | None = None) -> Path:
    """Write the plugin package for generator `name` into `folder` (default ./studio-NAME) and
    return that folder. StudioError for a bad name or modality, or a folder that exists and is
    not empty (nothing is overwritten)."""
    name = check_name(name)
    if modality not in MODALITIES:
        raise StudioError(f"unknown modality '{modality}': choose one of {', '.join(MODALITIES)}.")
    target = Path(folder) if folder is not None else Path.cwd() / f"studio-{name}"
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise StudioError(f"{target} already exists and is not empty: nothing was written. "
                          f"Pick another folder with --dir, or remove that one.")
    description, data_hint = DESCRIPTIONS[modality]
    values = {"name": name, "package": f"studio_{name}", "Class": class_prefix(name),
              "modality": modality, "description": description, "data_hint": data_hint}
    files = {}
    for template, destination in LAYOUT.items():
        text = (TEMPLATES / template.format(modality=modality)).read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        files[target / destination.format(**values)] = text
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
