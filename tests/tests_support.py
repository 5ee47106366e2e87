"""Helpers shared by tests: fake pip-installed plugins."""

from pathlib import Path


def install_plugin(site: Path, dist: str, module: str, source: str, entry_point: str) -> None:
    """A plugin as importlib.metadata sees a pip-installed one: a dist-info with entry points."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[aigc_studio.generators]\n{entry_point}\n")
    (site / f"{module}.py").write_text(source)
