"""Generators are discovered through entry points; a broken plugin is reported, not fatal."""

import os
import subprocess
import sys

from conftest import ROOT
from studio.registry import GeneratorEntry, Registry, default_registry


def install_fake_plugin(site, name, module_source, target):
    """A pip-installed plugin as importlib.metadata sees it: a dist-info with entry points."""
    dist = site / f"{name}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[aigc_studio.generators]\n{target}\n")
    (site / f"{name.replace('-', '_')}.py").write_text(module_source)


def studio_with(site, *args):
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "studio", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)


def test_builtin_text_generator_is_registered_through_entry_points():
    entries = {e.name: e for e in default_registry().entries()}
    assert entries["text"].target == "generators.text:TextGenerator"
    assert entries["text"].info()["status"] == "ok"


def test_listing_does_not_import_plugins():
    entry = GeneratorEntry("lazy", "module_that_does_not_exist_xyz:Gen", "lazy-dist")
    registry = Registry([entry])
    assert registry.names() == ["lazy"]
    assert entry.error is None  # nothing was imported yet
    row = entry.info()
    assert row["status"] == "broken" and "ModuleNotFoundError" in row["error"]


def test_broken_plugin_is_listed_and_the_cli_keeps_working(tmp_path, corpus):
    site = tmp_path / "site"
    install_fake_plugin(site, "broken-plugin", "raise RuntimeError('plugin failed to start')\n",
                        "broken = broken_plugin:BrokenGenerator")
    install_fake_plugin(site, "notagen-plugin", "class NotAGenerator: pass\n",
                        "notagen = notagen_plugin:NotAGenerator")
    proc = studio_with(site, "generators")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert "broken" in lines["broken"] and "text" in lines and " ok " in lines["text"]
    assert "RuntimeError: plugin failed to start" in proc.stdout
    assert "not a studio.contract.Generator subclass" in proc.stdout

    proc = studio_with(site, "train", "broken", "--run-dir", tmp_path / "r")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "broken" in proc.stderr and "plugin failed to start" in proc.stderr

    proc = studio_with(site, "train", "text", "--data", corpus, "--run-dir", tmp_path / "ok",
                       "--max-steps", 3, "--set", "n_layer=1", "--set", "n_embd=16",
                       "--set", "n_head=2", "--events", "none")
    assert proc.returncode == 0, proc.stderr
