"""No plugin can take the host down (issue 14, parts 1 and 4).

Each broken plugin is a real package installed the way pip would (a dist-info with an entry
point) into a folder on sys.path: one that raises SystemExit at import, one that raises its own
BaseException subclass, one whose Config is not a dataclass, one with a default of the wrong
type, and one whose entry point is named differently from the class. For each: `studio
generators` lists the built-ins and the plugin as broken, --verbose shows the file and line it
broke at, `studio train` refuses it in one line without leaving a run folder, and `studio
plugin validate` names the problem; the window opens on a working generator when a broken one
was chosen last time.
"""

import textwrap
from pathlib import Path

import pytest

from conftest import ROOT
from studio import registry as registry_module
from studio.cli import main
from studio.gui import window as window_module
from studio.gui.session import Session
from studio.gui.settings import Settings
from studio.registry import GeneratorEntry, Registry

# A small but complete generator; each case below breaks one thing in it. {config} is its
# Config class, {prelude} runs at import; NAME is the class's `name`.
PLUGIN = '''\
from dataclasses import dataclass

import torch

from studio.config import setting
from studio.contract import DataReport, Generator, Sample
{prelude}

{config}


class Gen(Generator):
    name, modality, version = "{name}", "image", "0.1"
    Config = Config

    def load_data(self, source, val_source, cache_dir):
        self.images = torch.rand(32, 12)
        return DataReport(source=str(source), used=["random"])

    def build(self):
        return torch.nn.Linear(1, 12)

    def get_batch(self, split, rng):
        return self.images[torch.randint(len(self.images), (self.config.batch,), generator=rng)]

    def training_step(self, batch, ctx):
        out = ctx.model(torch.ones(len(batch), self.config.width // self.config.width))
        return {{"loss": torch.nn.functional.mse_loss(out, batch)}}

    def evaluate(self, source=None, max_batches=None):
        return {{"val_loss": 0.5}}

    def sample(self, params, n=1, seed=0, prompt=None):
        return [Sample("image", torch.zeros(2, 2, 3, dtype=torch.uint8).numpy()) for _ in range(n)]
'''
GOOD_CONFIG = '''\
@dataclass
class Config:
    width: int = setting(8, "units", min=1)
    batch: int = setting(4, "images per step", min=1)'''

# entry-point name -> (code run at import, the Config class, the class's `name`, what the error
# says). The line it breaks at is marked BROKEN HERE.
CASES = {
    "exits": ('raise SystemExit("plugin gave up")  # BROKEN HERE', GOOD_CONFIG, "exits",
              "SystemExit: plugin gave up"),
    "panics": ('class PluginPanic(BaseException):\n    pass\n\n\n'
               'raise PluginPanic("cannot start")  # BROKEN HERE', GOOD_CONFIG, "panics",
               "PluginPanic: cannot start"),
    "plainconfig": ("", "class Config:  # BROKEN HERE\n    width = 8\n    batch = 4",
                    "plainconfig", "Config must be a dataclass"),
    "wrongtype": ("", GOOD_CONFIG.replace('setting(8, "units", min=1)',
                                          'setting("8", "units", min=1)  # BROKEN HERE'),
                  "wrongtype", "default is '8' (str)"),
    "misnamed": ("", GOOD_CONFIG, "othername", "the class's `name` is 'othername'"),
}


def install_package_plugin(site: Path, entry_name: str, source: str) -> Path:
    """A pip-installed plugin package `<entry_name>_plugin` whose entry point is `entry_name`;
    returns its module file."""
    package = site / f"{entry_name}_plugin"
    package.mkdir(parents=True)
    module = package / "__init__.py"
    module.write_text(source)
    info = site / f"{entry_name}_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {entry_name}-plugin\n"
                                   f"Version: 0.1\n")
    (info / "entry_points.txt").write_text(f"[aigc_studio.generators]\n"
                                           f"{entry_name} = {entry_name}_plugin:Gen\n")
    return module


def plugin_source(case: str) -> str:
    prelude, config, class_name, _ = CASES[case]
    return PLUGIN.format(prelude=prelude, config=config, name=class_name)


def marked_line(module: Path) -> str:
    """"file:line" of the line marked BROKEN HERE, as the studio should report it."""
    lines = module.read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if "BROKEN HERE" in line)
    return f"{module}:{number}"


@pytest.fixture(autouse=True)
def _forget_plugin_modules():
    """Each test imports its plugins from its own folder: none stays imported for the next."""
    import sys
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.endswith("_plugin"):
            del sys.modules[name]


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Install one broken case as a plugin seen by this process's default registry."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry_module, "_default", None)  # discovered afresh, with the plugin

    def install(case: str, source: str | None = None) -> Path:
        return install_package_plugin(site, case, source or plugin_source(case))
    return install


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_plugin_is_listed_refused_and_named(case, installed, capsys, tmp_path):
    module = installed(case)
    expected = CASES[case][3]

    code, out, err = cli(capsys, "generators")
    assert code == 0, err
    status = {line.split()[0]: line.split()[3] for line in out.splitlines()[1:5]}
    assert status == {"image": "ok", "text": "ok", "video": "ok", case: "broken"}
    assert expected in out

    if case == "misnamed":  # the class is fine in itself: where it is defined
        where = f"{module}:{module.read_text().splitlines().index('class Gen(Generator):') + 1}"
    else:
        where = marked_line(module)
    code, out, err = cli(capsys, "generators", "--verbose")
    assert code == 0 and where in out, out
    if case in ("exits", "panics"):  # the full traceback, with the plugin's frame
        assert "Traceback (most recent call last)" in out and f'"{module}", line' in out

    run_dir = tmp_path / "runs" / "r"
    code, out, err = cli(capsys, "train", case, "--run-dir", run_dir, "--max-steps", 2)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in err and where in err and "Traceback" not in err
    assert not run_dir.exists()  # refused before any folder was made

    code, out, err = cli(capsys, "plugin", "validate", case)
    assert code == 2, out
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert failed and expected in failed[0] and where in failed[0], out


def test_systemexit_at_import_leaves_the_studio_command_working(tmp_path):
    """In a real process: SystemExit at a plugin's import once ended `studio generators` with
    exit code 1 before the built-ins were listed."""
    import os
    import subprocess
    import sys
    site = tmp_path / "site"
    install_package_plugin(site, "exits", plugin_source("exits"))
    proc = subprocess.run([sys.executable, "-m", "studio", "generators"], capture_output=True,
                          text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "exits" in proc.stdout and "SystemExit: plugin gave up" in proc.stdout
    assert " ok " in proc.stdout.splitlines()[2]  # text, a built-in, still listed and usable


def test_safe_mode_loads_the_built_ins_only(installed, capsys):
    installed("exits")
    try:
        code, out, err = cli(capsys, "--safe-mode", "generators")
        assert code == 0, err
        assert [line.split()[0] for line in out.splitlines()[1:]] == ["image", "text", "video"]
        code, out, err = cli(capsys, "--safe-mode", "train", "exits")
        assert code == 2 and "Safe mode is on" in err
    finally:
        import os
        os.environ.pop(registry_module.SAFE_MODE_ENV, None)


def test_validate_a_good_built_in_generator(capsys, corpus):
    """Two steps of `text` at its tiny preset, evaluate() and evaluate(source) on the corpus."""
    code, out, err = cli(capsys, "plugin", "validate", "text", "--data", corpus,
                         "--set", "n_layer=1", "--set", "n_embd=16", "--set", "n_head=2",
                         "--set", "block_size=16")
    assert code == 0, out + err
    assert "FAILED" not in out
    assert "ok       text: trains 2 steps" in out
    assert "ok       text: evaluate(source=corpus.txt) returns val_bits_per_byte" in out


def test_validate_catches_evaluate_without_the_best_metric(installed, capsys):
    """A plugin that imports and trains but whose evaluate() leaves out its best_metric: runs
    would never get a best checkpoint."""
    source = plugin_source("plainconfig").replace(
        "class Config:  # BROKEN HERE\n    width = 8\n    batch = 4", GOOD_CONFIG).replace(
        '"plainconfig"', '"nobest"').replace('return {"val_loss": 0.5}',
                                             'return {"loss_on_held_out": 0.5}')
    installed("nobest", source)
    assert registry_module.default_registry().get("nobest").name == "nobest"  # listed as ok
    code, out, err = cli(capsys, "plugin", "validate", "nobest")
    assert code == 2, out
    assert "ok       nobest: trains 2 steps" in out
    assert "FAILED   nobest: evaluate() returns val_loss, finite: evaluate() returned no " \
           "'val_loss'" in out


# -- the window --------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["exits", "plainconfig"])
def test_window_opens_on_a_working_generator_when_the_chosen_one_is_broken(case, qtbot,
                                                                           tmp_path,
                                                                           monkeypatch):
    site = tmp_path / "site"
    install_package_plugin(site, case, plugin_source(case))
    monkeypatch.syspath_prepend(str(site))
    registry = Registry([GeneratorEntry("image", "generators.image:ImageGenerator", "aigc-studio"),
                         GeneratorEntry("text", "generators.text:TextGenerator", "aigc-studio"),
                         GeneratorEntry(case, f"{case}_plugin:Gen", f"{case}-plugin")])
    session = Session(Settings(runs_folder=str(tmp_path / "runs"), last_generator=case),
                      registry)
    win = window_module.MainWindow(session)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.train_panel is not None, timeout=60_000)
    assert session.generator == "image"  # the first built-in that works
    assert f"'{case}'" in win.notice.text() and "Using 'image' instead" in win.notice.text()
    names = [win.picker.itemData(i) for i in range(win.picker.count())]
    assert names == ["image", "text"] and win.picker.currentData() == "image"
    assert "1 broken" in win.plugins_button.text()

    win.picker.setCurrentIndex(names.index("text"))  # picking another one afterwards works
    assert session.generator == "text"
    assert "n_layer" in win.train_panel.gen_form.widgets

    dialog = window_module.PluginsDialog(session, win)
    qtbot.addWidget(dialog)
    assert CASES[case][3] in dialog.details.toPlainText()
    assert f"{site / f'{case}_plugin' / '__init__.py'}:" in dialog.details.toPlainText()


def test_a_keyboardinterrupt_the_plugin_raises_is_its_failure(installed):
    installed("interrupts", plugin_source("exits").replace(
        'raise SystemExit("plugin gave up")', 'raise KeyboardInterrupt("not the user")'))
    entry = registry_module.default_registry().entry("interrupts")
    assert entry.info()["status"] == "broken"
    assert entry.error == "KeyboardInterrupt: not the user"


def test_a_real_ctrl_c_during_a_plugins_import_still_stops_the_command(installed):
    """SIGINT arriving while the plugin imports is the user's wish to quit, not a broken plugin."""
    installed("slow", plugin_source("exits").replace(
        'raise SystemExit("plugin gave up")',
        'import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)'))
    entry = registry_module.default_registry().entry("slow")
    with pytest.raises(KeyboardInterrupt):
        entry.load()
    assert entry.error is None  # not marked broken: loading it again tries again


def test_the_window_restarts_in_safe_mode_and_says_it_is_in_it(qtbot, tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(window_module.subprocess, "Popen", lambda command: started.append(command))
    session = Session(Settings(runs_folder=str(tmp_path / "runs")))
    win = window_module.MainWindow(session)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.train_panel is not None, timeout=60_000)
    assert win.safe_mode_action.isEnabled()
    win.safe_mode_action.trigger()
    assert started and started[0][-3:] == ["studio", "--safe-mode", "gui"]
    assert not win.isVisible()

    safe = Registry([GeneratorEntry("text", "generators.text:TextGenerator", "aigc-studio"),
                     GeneratorEntry("other", "other_plugin:Gen", "other-plugin")], safe_mode=True)
    assert safe.names() == ["text"]
    win = window_module.MainWindow(Session(Settings(runs_folder=str(tmp_path / "runs")), safe))
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.train_panel is not None, timeout=60_000)
    assert window_module.SAFE_MODE_NOTE in win.notice.text()
    assert not win.safe_mode_action.isEnabled()
