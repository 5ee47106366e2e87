"""Listing generators and showing their settings import no torch (issue 14, part 3): the
registry reads each generator's light declarations (generators/<x>/config.py) instead of its
code, with the same checks, and the window's picker is filled from them before torch loads."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT
from studio import api
from studio.errors import StudioError
from studio.registry import CODE, LIGHT, GeneratorEntry, Registry, default_registry

# Runs the CLI in a fresh process, then says whether torch was imported meanwhile.
CLI_THEN_MODULES = """
import contextlib, io, json, sys
from studio.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "out": out.getvalue(), "torch": "torch" in sys.modules,
                  "generator_code": sorted(m for m in ("generators.text", "generators.image",
                                                       "generators.video") if m in sys.modules)}))
"""


def cli_in_fresh_process(*args, site=None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    proc = subprocess.run([sys.executable, "-c", CLI_THEN_MODULES, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_studio_generators_imports_no_torch_and_lists_what_the_code_declares():
    result = cli_in_fresh_process("generators", "--json")
    assert result["code"] == 0
    assert not result["torch"] and result["generator_code"] == []
    rows = {row["name"]: row for row in json.loads(result["out"])}
    for name in ("text", "image", "video"):
        cls = default_registry().get(name)  # the code, imported here in the test's process
        assert rows[name]["status"] == "ok"
        assert (rows[name]["modality"], rows[name]["version"]) == (cls.modality, cls.version)


@pytest.mark.parametrize("name", ["text", "image", "video"])
def test_studio_config_imports_no_torch_and_shows_the_code_s_settings(name):
    result = cli_in_fresh_process("config", name)
    assert result["code"] == 0
    assert not result["torch"] and result["generator_code"] == []
    shown = json.loads(result["out"])
    cls = default_registry().get(name)
    assert {k: v for k, v in shown.items() if k != "train"} == \
        json.loads(json.dumps(cls.describe(), default=str))
    assert [f["name"] for f in shown["config"]] == [f.name for f in
                                                     __import__("dataclasses").fields(cls.Config)]


def test_the_built_ins_declarations_are_their_classes_own():
    """The classes that run subclass the light declarations without changing them."""
    for name in ("text", "image", "video"):
        entry = GeneratorEntry(name, f"generators.{name}:{name.title()}Generator", "aigc-studio")
        declared = entry.light_declarations()
        cls = entry.load()
        assert declared is not cls and issubclass(cls, declared)
        assert declared.__module__ == f"generators.{name}.config"
        for attribute in ("name", "modality", "version", "Config", "SampleConfig", "presets",
                          "train_defaults", "best_metric"):
            assert getattr(cls, attribute) is getattr(declared, attribute)


@pytest.fixture(autouse=True)
def forget_the_plugins():
    """Each test imports its own version of the plugin packages below."""
    yield
    for module in [m for m in sys.modules if m.partition(".")[0] in ("bigram_plugin",
                                                                     "solo_plugin")]:
        del sys.modules[module]


def install_plugin_package(site, dist, package, files: dict, target: str):
    """A pip-installed plugin made of a package (folder), as importlib.metadata sees it."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[aigc_studio.generators]\n{target}\n")
    (site / package).mkdir()
    for name, source in files.items():
        (site / package / name).write_text(textwrap.dedent(source))


LIGHT_CONFIG = """
    from dataclasses import dataclass
    from studio.config import setting
    from studio.contract import Generator

    @dataclass
    class BigramConfig:
        order: int = setting({default}, "characters of context", min=1, max=8)

    class BigramDeclarations(Generator):
        name = "bigram"
        modality = "text"
        version = "0.3.0"
        Config = BigramConfig

    DECLARATIONS = {{"BigramGenerator": BigramDeclarations}}
"""
# The package's code: what listing must not run. It notes that it ran, in a file.
HEAVY_INIT = """
    import os
    from pathlib import Path
    Path(os.environ["PLUGIN_RAN"]).write_text("imported")
    from bigram_plugin.config import BigramDeclarations

    class BigramGenerator(BigramDeclarations):
        {body}
"""


def bigram_site(tmp_path, default="2", body="pass"):
    site = tmp_path / "site"
    install_plugin_package(site, "studio-bigram", "bigram_plugin", {
        "config.py": LIGHT_CONFIG.format(default=default),
        "__init__.py": HEAVY_INIT.format(body=body)},
        "bigram = bigram_plugin:BigramGenerator")
    return site


def test_a_plugin_s_light_declarations_are_listed_without_running_its_code(tmp_path,
                                                                        monkeypatch):
    site = bigram_site(tmp_path)
    ran = tmp_path / "ran"
    monkeypatch.setenv("PLUGIN_RAN", str(ran))
    result = cli_in_fresh_process("generators", "--json", site=site)
    row = {r["name"]: r for r in json.loads(result["out"])}["bigram"]
    assert (row["status"], row["modality"], row["version"]) == ("ok", "text", "0.3.0")
    shown = json.loads(cli_in_fresh_process("config", "bigram", site=site)["out"])
    assert [(f["name"], f["default"]) for f in shown["config"]] == [("order", 2)]
    assert not ran.exists()  # the package's __init__ never ran

    monkeypatch.syspath_prepend(str(site))
    entry = GeneratorEntry("bigram", "bigram_plugin:BigramGenerator", "studio-bigram")
    assert entry.info(load=LIGHT)["version"] == "0.3.0" and not ran.exists()
    cls = entry.load()  # the code, when it is used: the same declarations
    assert ran.exists() and cls.Config is entry.light_declarations().Config


def test_light_declarations_get_the_same_checks_as_the_class(tmp_path, monkeypatch):
    """A wrong-typed default is caught at listing, from the light module alone."""
    site = bigram_site(tmp_path, default='"two"')
    monkeypatch.setenv("PLUGIN_RAN", str(tmp_path / "ran"))
    result = cli_in_fresh_process("generators", site=site)
    line = next(line for line in result["out"].splitlines() if line.startswith("bigram"))
    assert "broken" in line
    assert "Config.order" in result["out"] and "config.py" in result["out"]
    assert not (tmp_path / "ran").exists()


def test_a_class_that_changes_its_declarations_is_broken_when_loaded(tmp_path, monkeypatch):
    site = bigram_site(tmp_path, body='version = "9.9"')
    monkeypatch.setenv("PLUGIN_RAN", str(tmp_path / "ran"))
    monkeypatch.syspath_prepend(str(site))
    entry = GeneratorEntry("bigram", "bigram_plugin:BigramGenerator", "studio-bigram")
    assert entry.info()["status"] == "ok"  # the listing: the declarations are fine
    row = entry.info(load=CODE)
    assert row["status"] == "broken"
    assert "changes `version`" in row["error"] and "bigram_plugin.config" in row["error"]
    # Also where nothing was listed first (`studio train bigram` in a process of its own):
    del sys.modules["bigram_plugin"], sys.modules["bigram_plugin.config"]
    with pytest.raises(StudioError, match="changes `version`"):
        Registry([GeneratorEntry("bigram", "bigram_plugin:BigramGenerator",
                                 "studio-bigram")]).get("bigram")


def test_a_plugin_without_light_declarations_is_described_by_its_code(tmp_path, monkeypatch):
    """The slower path still works: the class itself, imported (here a single module)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "solo_plugin.py").write_text(textwrap.dedent(LIGHT_CONFIG.format(default=3)).replace(
        "BigramDeclarations", "BigramGenerator"))
    monkeypatch.syspath_prepend(str(site))
    entry = GeneratorEntry("bigram", "solo_plugin:BigramGenerator", "solo")
    assert entry.info(load=LIGHT)["status"] == "not loaded"  # nothing light to read
    assert entry.info()["status"] == "ok" and "solo_plugin" in sys.modules
    registry = Registry([entry])
    assert registry.declarations("bigram") is registry.get("bigram")


# Builds the window without running its event loop: what the picker shows before the thread
# that imports the generators' code has even started, and whether torch is imported by then.
WINDOW_BEFORE_TORCH = """
import json, os, sys
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtWidgets import QApplication
app = QApplication([])
from studio.gui.session import Session
from studio.gui.settings import Settings
from studio.gui.window import MainWindow
window = MainWindow(Session(Settings(runs_folder=sys.argv[1], last_generator="text")))
picker = [window.picker.itemText(i) for i in range(window.picker.count())]
print(json.dumps({"picker": picker, "torch": "torch" in sys.modules}))
"""


def test_the_window_s_picker_is_filled_before_torch_is_imported(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-c", WINDOW_BEFORE_TORCH, str(tmp_path / "runs")],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout.splitlines()[-1])
    assert not shown["torch"]
    for name in ("text", "image", "video"):
        cls = default_registry().get(name)
        assert f"{name} — {cls.modality} {cls.version}" in shown["picker"]


def test_describe_generator_reads_the_declarations():
    doc = api.describe_generator("text")
    assert doc["name"] == "text" and {f["name"] for f in doc["config"]} >= {"n_layer", "n_embd"}
