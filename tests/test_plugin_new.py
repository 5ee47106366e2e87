"""`studio plugin new NAME --modality M` writes a plugin package that works as written: for
each modality it is installed the way pip would (the package folder on the path and a
dist-info with its entry point, as tests/test_plugin_guard.py installs plugins), `studio plugin
validate NAME` passes, and the package's own conformance tests pass unchanged, both in fresh
processes. A bad name and a folder that is not empty are refused in one line, exit 2, with
nothing written."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from studio.cli import main
from studio.plugin_new import TEMPLATES

PYTHON = sys.executable


def install(package_dir: Path, site: Path) -> dict:
    """Install the written package as pip would, from its own pyproject.toml: its metadata and
    entry points in a dist-info under `site`; returns the environment that sees it."""
    project = tomllib.loads((package_dir / "pyproject.toml").read_text())["project"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\n"
                                   f"Version: {project['version']}\n")
    points = project["entry-points"]["aigc_studio.generators"]
    (info / "entry_points.txt").write_text(
        "[aigc_studio.generators]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(site), str(package_dir)]))
    env.pop("PYTEST_ADDOPTS", None)
    return env


def run(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("modality", ["text", "image", "video"])
def test_new_plugin_installs_validates_and_passes_its_own_tests(modality, tmp_path, capsys):
    name = f"my_{modality}_gen"
    folder = tmp_path / f"studio-{name}"
    assert main(["plugin", "new", name, "--modality", modality, "--dir", str(folder)]) == 0
    assert str(folder) in capsys.readouterr().out
    package = folder / f"studio_{name}"
    written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert written == ["README.md", "pyproject.toml", f"studio_{name}/__init__.py",
                       f"studio_{name}/config.py", f"studio_{name}/generator.py",
                       f"tests/test_{name}.py"]
    for path in folder.rglob("*"):
        assert not path.is_file() or "{{" not in path.read_text(), f"{path} kept a placeholder"
    pyproject = tomllib.loads((folder / "pyproject.toml").read_text())
    assert pyproject["project"]["dependencies"] == ["aigc-studio"]
    assert pyproject["project"]["entry-points"]["aigc_studio.generators"] == {
        name: f"studio_{name}:My{modality.capitalize()}GenGenerator"}
    assert "import torch" not in (package / "config.py").read_text()  # the light declarations

    env = install(folder, tmp_path / "site")
    validated = run([PYTHON, "-m", "studio.cli", "plugin", "validate", name], env, tmp_path)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert f"ok       {name}: trains 2 steps" in validated.stdout
    assert "FAILED" not in validated.stdout

    tested = run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests"],
                 env, folder)
    assert tested.returncode == 0, tested.stdout[-4000:] + tested.stderr[-2000:]
    assert "passed" in tested.stdout, tested.stdout[-2000:]
    # The entry-point check runs (it skips when the package is not installed); only a text
    # generator streams, so the others skip the stream check, and none of the templates has a
    # continuous-batching decoder, so all skip the decoder's.
    skips = [line for line in tested.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("streams with the contract's default" in line or "has no decoder" in line
               for line in skips), skips
    assert len(skips) == (1 if modality == "text" else 2), skips


def test_the_light_config_is_read_without_torch(tmp_path):
    """`studio generators` lists the new plugin from its config.py alone (no torch import)."""
    folder = tmp_path / "studio-quick"
    assert main(["plugin", "new", "quick", "--modality", "image", "--dir", str(folder)]) == 0
    env = install(folder, tmp_path / "site")
    listed = run([PYTHON, "-c", "import sys; from studio.cli import main; main(['generators']);"
                  "print('torch imported' if 'torch' in sys.modules else 'no torch')"],
                 env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith("quick"))
    assert "image" in line and "0.1.0" in line
    assert listed.stdout.strip().endswith("no torch")


@pytest.mark.parametrize("name", ["1gen", "my-gen", "my gen", "class", "text", ""])
def test_a_bad_name_is_refused_in_one_line(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plugin", "new", name, "--modality", "text"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "name" in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_empty_is_never_overwritten(tmp_path, capsys):
    folder = tmp_path / "studio-mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert main(["plugin", "new", "mine", "--modality", "text", "--dir", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(folder) in err and "not empty" in err, err
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_an_empty_folder_is_used_and_the_name_is_lowercased(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    assert main(["plugin", "new", "CharLSTM", "--modality", "text", "--dir", str(folder)]) == 0
    pyproject = (folder / "pyproject.toml").read_text()
    assert 'charlstm = "studio_charlstm:CharlstmGenerator"' in pyproject


def test_every_template_file_is_packaged_with_the_studio():
    """The templates ship as package data (pyproject.toml's package-data covers them)."""
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["studio"]
    templates = {str(p.relative_to(TEMPLATES.parent)) for p in TEMPLATES.rglob("*.tmpl")}
    covered = {str(p.relative_to(TEMPLATES.parent)) for pattern in patterns
               for p in TEMPLATES.parent.glob(pattern) if p.is_file()}
    assert templates and templates <= covered


EXAMPLE = Path(__file__).parents[1] / "examples" / "studio-charlstm"


def test_the_example_plugin_trains_resumes_and_generates_through_the_cli(tmp_path):
    """examples/studio-charlstm, installed as pip would, through `studio train`, `studio
    train --resume` and `studio generate` in fresh processes."""
    env = install(EXAMPLE, tmp_path / "site")
    studio = [PYTHON, "-m", "studio.cli"]
    run_dir = tmp_path / "run"
    quiet = ["--events", "none", "--set", "eval_every=25", "--set", "preview_every=0"]
    trained = run([*studio, "train", "charlstm", "--preset", "tiny", "--max-steps", "50",
                   "--run-dir", str(run_dir), *quiet], env, tmp_path)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    resumed = run([*studio, "train", "--resume", str(run_dir), "--max-steps", "60",
                   "--events", "none"], env, tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "done" and state["step"] == 60
    assert state["best"]["metric"] == "val_loss"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["plugin"] == {"distribution": "studio-charlstm", "version": "0.1.0"}
    generated = run([*studio, "generate", str(run_dir), "--prompt", "it was", "--n", "2",
                     "--set", "length=40"], env, tmp_path)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    samples = [line for line in generated.stdout.splitlines() if line.startswith("it was")]
    assert len(samples) == 2, generated.stdout
