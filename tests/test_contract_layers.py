"""A cleaner contract (issue 14, part 8): the step context averages a manual-optimization
generator's gradients over processes (nothing to do in one), a generator whose build() or
training_step raises ends its run as failed in one line, and `studio plugin validate` checks
the API range and the light declarations as the registry does."""

import os
import socket
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch

import studio.registry
from conftest import ROOT
from studio import api
from studio.cli import main
from studio.contract import API_VERSION
from studio.engine import _Context
from studio.errors import StudioError
from studio.plugins import API_CHECK, LIGHT_CHECK, validate
from studio.registry import GeneratorEntry, Registry
from studio.runstore import RunDir
from toy_generators import ToyTextGenerator


def step_context(model: torch.nn.Module, world_size: int) -> _Context:
    """The context the engine gives a step, over a stand-in for the engine (as RANK_SCRIPT
    makes it in each process)."""
    engine = SimpleNamespace(device=torch.device("cpu"), train_model=model,
                             train=SimpleNamespace(grad_accum=1), world_size=world_size)
    return _Context(engine)


def test_average_gradients_in_one_process_leaves_them_as_they_are():
    model = torch.nn.Linear(3, 2)
    model(torch.ones(4, 3)).sum().backward()
    before = [p.grad.clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    step_context(model, world_size=1).average_gradients(optimizer)
    assert all(torch.equal(p.grad, b) for p, b in zip(model.parameters(), before))


# Each rank's gradients are (rank + 1) everywhere; after averaging, both ranks hold 1.5.
RANK_SCRIPT = """
from types import SimpleNamespace
import torch
from studio.engine import _Context
torch.distributed.init_process_group("gloo")
rank = torch.distributed.get_rank()
model = torch.nn.Linear(3, 2)
for p in model.parameters():
    p.grad = torch.full_like(p, rank + 1.0)
engine = SimpleNamespace(device=torch.device("cpu"), train_model=model,
                         train=SimpleNamespace(grad_accum=1), world_size=2)
_Context(engine).average_gradients(torch.optim.SGD(model.parameters(), lr=0.1))
print(sorted({float(v) for p in model.parameters() for v in p.grad.flatten()}))
# Leave together, as the engine's ranks do: a rank that tore gloo down while the other still
# spoke to it aborted it ("terminate called without an active exception") on a loaded machine.
torch.distributed.barrier()
torch.distributed.destroy_process_group()
"""


def test_average_gradients_under_gloo_averages_over_the_processes():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
           "OMP_NUM_THREADS": "1"}
    ranks = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)})
             for rank in range(2)]
    outputs = [rank.communicate(timeout=120) for rank in ranks]
    for rank, (out, err) in zip(ranks, outputs):
        assert rank.returncode == 0, err[-2000:]
        assert out.strip() == "[1.5]"


class BuildRaises(ToyTextGenerator):
    def build(self):
        raise ValueError("no such layer")


class StepRaises(ToyTextGenerator):
    def training_step(self, batch, ctx):
        raise ValueError("shapes do not match")


@pytest.mark.parametrize("cls, when", [(BuildRaises, "while setting up"),
                                       (StepRaises, "at step 0")])
def test_a_generator_that_raises_ends_its_run_failed_in_one_line(tmp_path, cls, when):
    run = tmp_path / "run"
    with pytest.raises(StudioError) as caught:
        api.train(cls, run_dir=str(run), max_steps=2, events="none", settings=["device=cpu"])
    message = str(caught.value)
    assert "\n" not in message
    assert f"generator 'toy-text' failed {when}: ValueError: " in message
    assert f"{__file__}:" in message  # where in the generator's code it raised
    assert f"The run {run} is marked failed" in message
    assert isinstance(caught.value.__cause__, ValueError)  # the traceback stays chained
    store = RunDir(run)
    assert store.info()["status"] == "failed" and store.status() == "failed"
    assert any(e["event"] == "error" for e in store.events())


def test_studio_train_says_so_in_one_line_and_exits_2(tmp_path, monkeypatch, capsys):
    registry = Registry([])
    registry.add("toy-text", BuildRaises)
    monkeypatch.setattr(studio.registry, "_default", registry)
    run = tmp_path / "run"
    code = main(["train", "toy-text", "--run-dir", str(run), "--max-steps", "2",
                 "--set", "device=cpu", "--events", "none"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: generator 'toy-text' failed while setting up: ValueError: "
                          "no such layer") and err.count("\n") == 1
    assert "Traceback" not in err
    assert RunDir(run).info()["status"] == "failed"


def plugin_package(tmp_path, monkeypatch, package: str, api_range: str = ">=1.0,<2",
                   body: str = "pass") -> GeneratorEntry:
    """A plugin package with light declarations (config.py) and a class that subclasses them."""
    folder = tmp_path / package
    folder.mkdir()
    (folder / "config.py").write_text(textwrap.dedent(f"""
        from dataclasses import dataclass
        from studio.config import setting
        from studio.contract import Generator

        @dataclass
        class Config:
            width: int = setting(4, "units", min=1)

        class Declarations(Generator):
            name, modality, version = "later", "text", "1.0"
            api = {api_range!r}
            Config = Config

        DECLARATIONS = {{"Gen": Declarations}}
    """))
    (folder / "__init__.py").write_text(textwrap.dedent(f"""
        from {package}.config import Declarations

        class Gen(Declarations):
            {body}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in (package, f"{package}.config"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return GeneratorEntry("later", f"{package}:Gen", "studio-later")


def failed_checks(entry) -> dict:
    return {result.label: result.problem for result in validate(entry) if not result.ok}


def test_validate_refuses_a_plugin_written_for_another_api(tmp_path, monkeypatch):
    entry = plugin_package(tmp_path, monkeypatch, "later_plugin", api_range=">=2.0,<3")
    failed = failed_checks(entry)
    assert list(failed) == [API_CHECK]  # refused there, before anything is trained
    assert ">=2.0,<3" in failed[API_CHECK] and f"this studio's is {API_VERSION}" in failed[API_CHECK]
    assert str(tmp_path / "later_plugin") in failed[API_CHECK]  # file:line in the plugin


def test_validate_refuses_a_class_that_changes_its_light_declarations(tmp_path, monkeypatch):
    entry = plugin_package(tmp_path, monkeypatch, "changing_plugin", body='version = "9.9"')
    failed = failed_checks(entry)
    assert list(failed) == [LIGHT_CHECK]
    assert "changes `version`" in failed[LIGHT_CHECK]
    assert "changing_plugin.config" in failed[LIGHT_CHECK]


def test_the_generate_panel_names_the_missing_plugin_of_a_run(qtbot, tmp_path):
    """The window finds a run's generator as api.load_run does (loose end of part 2)."""
    from studio.gui.generate_panel import GeneratePanel
    from studio.gui.session import Session
    from studio.gui.settings import Settings

    RunDir.create(tmp_path / "bigram-run", {
        "generator": "bigram", "generator_version": "0.1.2",
        "plugin": {"distribution": "studio-bigram", "version": "0.1.2"}, "config": {}})
    panel = GeneratePanel(Session(Settings(runs_folder=str(tmp_path), default_device="cpu")))
    qtbot.addWidget(panel)
    panel.select_run(str(tmp_path / "bigram-run"))
    assert panel.generator_cls is None
    assert 'pip install "studio-bigram>=0.1.2"' in panel.run_problem
