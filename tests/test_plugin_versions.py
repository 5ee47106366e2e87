"""A versioned plugin contract (issue 14, part 2): generators say which contract versions
they fit and the registry refuses the others; runs record the package that made them, so a
missing plugin is named; `migrate_config` keeps old runs of a renamed setting working."""

import json
import sys
import textwrap
from dataclasses import dataclass

import pytest

import studio.registry
from studio import api
from studio.config import setting
from studio.contract import API_VERSION, Generator, api_fits
from studio.errors import StudioError
from studio.registry import BUILTIN_DISTRIBUTION, GeneratorEntry, Registry, default_registry
from studio.runstore import RunDir, read_json
from toy_generators import ToyTextGenerator


@pytest.mark.parametrize("api_range, version, fits", [
    (">=1.0,<2", "1.0", True), (">=1.0,<2", "1.7", True), (">=1.0,<2", "2.0", False),
    (">=1.1", "1.0", False), ("==1", "1.0", True), ("!=1.0", "1", False), ("<1", "0.9", True),
])
def test_api_ranges(api_range, version, fits):
    assert api_fits(api_range, version) is fits


@pytest.mark.parametrize("bad", ["", "1.0", ">=one", ">=1.0,"])
def test_an_api_range_that_cannot_be_read_says_how_to_write_one(bad):
    with pytest.raises(ValueError, match="e.g."):
        api_fits(bad)


def test_the_built_ins_fit_this_studio_s_api():
    assert API_VERSION == "1.1"
    for entry in default_registry().entries():
        assert api_fits(entry.load().api), entry.name


def plugin_module(tmp_path, monkeypatch, name: str, api: str) -> GeneratorEntry:
    """A one-module plugin declaring `api`, importable as `name`."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        from dataclasses import dataclass
        from studio.config import setting
        from studio.contract import Generator

        @dataclass
        class Config:
            width: int = setting(4, "units", min=1)

        class Gen(Generator):
            name, modality, version = "future", "text", "3.0"
            api = {api!r}
            Config = Config
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return GeneratorEntry("future", f"{name}:Gen", "studio-future")


def test_a_generator_for_another_api_is_refused_saying_which_versions_fit(tmp_path,
                                                                         monkeypatch):
    entry = plugin_module(tmp_path, monkeypatch, "future_plugin", ">=2.0,<3")
    row = entry.info()
    assert row["status"] == "broken"
    assert ">=2.0,<3" in row["error"] and f"this studio's is {API_VERSION}" in row["error"]
    assert row["where"].startswith(str(tmp_path / "future_plugin.py"))
    with pytest.raises(StudioError, match="install a version of the plugin whose `api` "
                                          f"includes {API_VERSION}"):
        Registry([entry]).get("future")


def test_an_unreadable_api_range_is_a_broken_plugin(tmp_path, monkeypatch):
    entry = plugin_module(tmp_path, monkeypatch, "garbled_plugin", "version one")
    row = entry.info()
    assert row["status"] == "broken" and "its `api` cannot be read" in row["error"]


@pytest.fixture
def toy_registry(monkeypatch):
    """The default registry with the toy text generator as an installed plugin would be."""
    registry = Registry([GeneratorEntry("text", "generators.text:TextGenerator",
                                        BUILTIN_DISTRIBUTION)])
    registry.add("toy-text", ToyTextGenerator)
    monkeypatch.setattr(studio.registry, "_default", registry)
    return registry


def test_a_run_records_the_package_and_version_that_made_it(tmp_path, corpus):
    run = tmp_path / "run"
    api.train("text", data=str(corpus), run_dir=str(run), max_steps=1, events="none",
              settings=["n_layer=1", "n_embd=16", "n_head=2", "block_size=8", "batch_size=2"])
    doc = read_json(run / "config.json", "config")
    from importlib.metadata import version
    assert doc["plugin"] == {"distribution": BUILTIN_DISTRIBUTION,
                             "version": version(BUILTIN_DISTRIBUTION)}
    assert doc["generator_version"] == default_registry().get("text").version


def test_a_run_of_a_plugin_that_is_not_installed_names_the_package_to_install(tmp_path):
    run = RunDir.create(tmp_path / "run", {
        "generator": "bigram", "generator_version": "0.1.2",
        "plugin": {"distribution": "studio-bigram", "version": "0.1.2"}, "config": {}})
    for action in (lambda: api.load_run(str(run.path)),
                   lambda: api.train(resume=str(run.path), events="none")):
        with pytest.raises(StudioError) as caught:
            action()
        message = str(caught.value)
        assert "generator 'bigram'" in message and 'pip install "studio-bigram>=0.1.2"' in message


def test_a_run_whose_package_is_installed_without_the_generator_says_so(tmp_path):
    run = RunDir.create(tmp_path / "run", {
        "generator": "ghost", "plugin": {"distribution": BUILTIN_DISTRIBUTION, "version": "0.1.0"},
        "config": {}})
    with pytest.raises(StudioError) as caught:
        api.load_run(str(run.path))
    assert "no generator named 'ghost'" in str(caught.value)
    assert f"the installed {BUILTIN_DISTRIBUTION}" in str(caught.value)
    assert "pip install" not in str(caught.value)


def test_a_run_without_the_record_still_says_no_generator_of_that_name(tmp_path):
    run = RunDir.create(tmp_path / "run", {"generator": "bigram", "config": {}})
    with pytest.raises(StudioError, match="no generator named 'bigram'"):
        api.load_run(str(run.path))


@dataclass
class RenamedConfig:
    context: int = setting(8, "characters per training example (was `block`)", min=2)
    batch_size: int = setting(8, "examples per step", min=1)

    @property
    def block(self) -> int:  # what the toy's code reads
        return self.context


class ToyTextRenamed(ToyTextGenerator):
    """Version 0.2 of the toy text generator: `block` is now `context`."""

    version = "0.2"
    Config = RenamedConfig
    migrated_from: list = []

    @classmethod
    def migrate_config(cls, old: dict, from_version: str) -> dict:
        cls.migrated_from.append(from_version)
        if "block" in old:
            old = {**old, "context": old["block"]}
            del old["block"]
        return old


def test_migrate_config_keeps_a_run_of_an_older_version_working(tmp_path, corpus, toy_registry):
    run = tmp_path / "run"
    api.train(ToyTextGenerator, data=str(corpus), run_dir=str(run), max_steps=2, events="none",
              settings=["block=5"])
    assert read_json(run / "config.json", "config")["config"]["block"] == 5

    toy_registry.add("toy-text", ToyTextRenamed)  # the plugin upgraded
    ToyTextRenamed.migrated_from.clear()
    _, gen, _ = api.load_run(str(run))
    assert gen.config == RenamedConfig(context=5) and ToyTextRenamed.migrated_from == ["0.1"]
    assert api.generate(str(run), n=1, seed=0)  # samples as before

    # Resumed, the run goes on as version 0.2 and keeps its settings under their new names.
    api.train(resume=str(run), max_steps=3, events="none")
    doc = read_json(run / "config.json", "config")
    assert doc["generator_version"] == "0.2" and doc["config"] == {"context": 5, "batch_size": 8}
    ToyTextRenamed.migrated_from.clear()
    api.load_run(str(run))
    assert ToyTextRenamed.migrated_from == []  # nothing left to migrate


def test_an_old_run_s_config_json_given_to_a_new_run_is_migrated(tmp_path, toy_registry):
    old_run = RunDir.create(tmp_path / "old", {"generator": "toy-text", "generator_version": "0.1",
                                               "config": {"block": 6, "batch_size": 4}})
    gen_config, _ = api.build_configs(ToyTextRenamed, config_file=str(old_run.config_path))
    assert gen_config == RenamedConfig(context=6, batch_size=4)


def test_without_migrate_config_an_old_setting_is_refused_by_name(tmp_path, toy_registry):
    class Unmigrated(ToyTextRenamed):
        @classmethod
        def migrate_config(cls, old, from_version):
            return Generator.migrate_config.__func__(cls, old, from_version)

    toy_registry.add("toy-text", Unmigrated)
    run = RunDir.create(tmp_path / "run", {"generator": "toy-text", "generator_version": "0.1",
                                           "config": {"block": 5, "batch_size": 8}})
    with pytest.raises(StudioError, match="block"):
        api.load_run(str(run.path))


def test_a_migration_that_fails_is_one_line_naming_the_versions(tmp_path, toy_registry):
    class Failing(ToyTextRenamed):
        @classmethod
        def migrate_config(cls, old, from_version):
            raise KeyError("width")

    toy_registry.add("toy-text", Failing)
    run = RunDir.create(tmp_path / "run", {"generator": "toy-text", "generator_version": "0.1",
                                           "config": {"block": 5}})
    with pytest.raises(StudioError, match=r"cannot migrate .* made by version 0\.1: KeyError"):
        api.load_run(str(run.path))
    assert json.loads((run.path / "config.json").read_text())["config"] == {"block": 5}
