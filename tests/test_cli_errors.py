"""The last tracebacks become one line (issue 11): a read-only run folder, too many threads,
weights with other names, `generate --out` onto a file, `--stream` on an image run, a folder of
someone's own files as --run-dir, failed starts that left empty folders, and an index.json that
names a checkpoint that is gone. Each case: exit code 2, one line on stderr, no traceback, and
the run folder as it was."""

import builtins
import errno
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import run_cli
from image_fixtures import tiny_settings, write_shapes_folder
# Fixtures: a tiny text run with checkpoints at steps 10 and 20, and a copy of it per test.
from test_cli_bad_input import TINY, run_copy, trained_run  # noqa: F401
from test_text_hf import hf_folder  # noqa: F401  (a fixture: a tiny GPT-2 saved by transformers)
from studio.cli import main
from studio.runstore import LOCK_NAME, RunDir, file_digest


def one_line_error(code: int, err: str, *expected: str) -> str:
    """The promise: exit code 2 and one line "error: ..." naming what is expected."""
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert text.lower() in err.lower(), (text, err)
    return lines[0]


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with a hash of its bytes: equal snapshots, nothing changed.
    The run's lock file is left out: it names the last process that took the lock, which a
    refused resume may have been (RunDir.lock)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file() and p.name != LOCK_NAME}


@pytest.fixture
def short_corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("All the world's a stage, and all the men and women merely players.\n" * 30)
    return path


# 1. a read-only run folder ---------------------------------------------------------------------

def refuse_writes_under(monkeypatch, folder: Path) -> None:
    """Make `folder` behave as if on a read-only file system: opening a file under it for writing
    fails with EROFS (chmod cannot do that here when the tests run as root)."""
    real_open, folder = builtins.open, Path(folder).resolve()

    def read_only_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+"):
            if folder in Path(file).resolve().parents:
                raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only_open)
    monkeypatch.setattr(io, "open", read_only_open)  # pathlib opens files through io.open


def test_resume_on_a_read_only_run_folder_says_it_cannot_be_written(capsys, monkeypatch, run_copy):
    before = snapshot(run_copy)
    refuse_writes_under(monkeypatch, run_copy)
    code = main(["train", "--resume", str(run_copy), "--max-steps", "25", "--events", "none"])
    _, err = capsys.readouterr()
    one_line_error(code, err, "cannot write the run folder", "read-only", "copy the run")
    monkeypatch.undo()
    assert snapshot(run_copy) == before


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root ignores file permissions; the EROFS test above covers it")
def test_resume_on_a_run_folder_without_write_permission(run_copy):
    before = snapshot(run_copy)
    mode = run_copy.stat().st_mode
    run_copy.chmod(0o555)
    try:
        code, _, err = run_cli("train", "--resume", run_copy, "--max-steps", "25", "--events", "none")
    finally:
        run_copy.chmod(mode)
    one_line_error(code, err, "cannot write the run folder")
    assert snapshot(run_copy) == before


# 2. threads ------------------------------------------------------------------------------------

def test_a_thread_count_beyond_any_machine_is_refused_before_a_folder_is_made(tmp_path, short_corpus):
    code, _, err = run_cli("train", "text", "--data", short_corpus, "--run-dir", tmp_path / "r",
                           "--max-steps", "2", *TINY, "--set", "threads=100000")
    one_line_error(code, err, "threads", "1024")
    assert not (tmp_path / "r").exists()


def test_resuming_with_too_many_threads_leaves_the_run_as_it_was(run_copy):
    before = snapshot(run_copy)
    code, _, err = run_cli("train", "--resume", run_copy, "--set", "threads=100000",
                           "--events", "none")
    one_line_error(code, err, "threads", "1024")
    assert snapshot(run_copy) == before
    assert RunDir(run_copy).info()["status"] != "running"


def test_configure_threads_refuses_what_the_config_would(monkeypatch):
    from studio.engine import configure_threads
    from studio.errors import StudioError
    with pytest.raises(StudioError, match="1024"):
        configure_threads(100000)


# 3. weights with other names ---------------------------------------------------------------------

def test_weights_with_other_names_are_explained_not_a_key_error(run_copy):
    folder = RunDir(run_copy).resolve_checkpoint()
    weights = folder / "model.safetensors"
    renamed = {f"model.{name}": tensor for name, tensor in load_file(str(weights)).items()}
    save_file(renamed, str(weights))  # a valid safetensors file, its hash recorded as if ours
    state = json.loads((folder / "state.json").read_text())
    state["files"]["model.safetensors"] = file_digest(weights)
    (folder / "state.json").write_text(json.dumps(state))
    before = snapshot(run_copy)
    code, _, err = run_cli("generate", run_copy, "--prompt", "All", "--device", "cpu")
    line = one_line_error(code, err, "do not fit this model", "the model expects",
                          "the file has 'model.")
    assert "KeyError" not in line
    assert snapshot(run_copy) == before


# 4. generate --out onto a file -------------------------------------------------------------------

@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_generate_out_onto_a_file_is_refused(tmp_path, trained_run, where):
    existing = tmp_path / "notes.txt"
    existing.write_text("my notes")
    out = existing if where == "a file" else existing / "samples"
    before = snapshot(trained_run)
    code, _, err = run_cli("generate", trained_run, "--prompt", "All", "--device", "cpu", "--out", out)
    one_line_error(code, err, "--out", str(existing),
                   "is a file" if where == "a file" else f"under {existing}, which is a file")
    assert existing.read_text() == "my notes"
    assert snapshot(trained_run) == before


# 5. --stream on an image run ---------------------------------------------------------------------

def test_stream_on_an_image_run_says_it_is_for_text(tmp_path):
    data = write_shapes_folder(tmp_path / "shapes")
    run = tmp_path / "image-run"
    assert main(["train", "image", "--data", str(data), "--run-dir", str(run), "--max-steps", "2",
                 *[arg for pair in tiny_settings() for arg in ("--set", pair)], "--set",
                 "device=cpu", "--set", "eval_every=0", "--set", "preview_every=0",
                 "--events", "none"]) == 0
    before = snapshot(run)
    code, out, err = run_cli("generate", run, "--stream", "--device", "cpu")
    one_line_error(code, err, "only text runs can stream", "generate its samples whole")
    assert out == ""
    assert snapshot(run) == before


# 6. a folder of the user's own files as --run-dir ----------------------------------------------------

def test_a_folder_of_other_files_is_not_taken_as_a_run_dir(tmp_path, short_corpus):
    mine = tmp_path / "my-project"
    mine.mkdir()
    (mine / "events.jsonl").write_text('{"my": "own log"}\n')
    (mine / "notes.txt").write_text("keep me")
    before = snapshot(mine)
    code, _, err = run_cli("train", "text", "--data", short_corpus, "--run-dir", mine,
                           "--max-steps", "2", *TINY)
    one_line_error(code, err, str(mine), "not empty", "--run-dir")
    assert snapshot(mine) == before
    assert sorted(p.name for p in mine.iterdir()) == ["events.jsonl", "notes.txt"]


def test_an_empty_existing_folder_is_a_fine_run_dir(capsys, tmp_path, short_corpus):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "text", "--data", str(short_corpus), "--run-dir", str(empty),
                 "--max-steps", "2", *TINY]) == 0
    assert RunDir.is_run(empty) and RunDir(empty).checkpoints()


# 7. failed starts leave no folder ------------------------------------------------------------------

def test_a_start_that_fails_on_its_data_leaves_no_run_folder(tmp_path):
    (tmp_path / "short.txt").write_text("too short")
    code, _, err = run_cli("train", "text", "--data", tmp_path / "short.txt", "--run-dir",
                           tmp_path / "new" / "run", "--max-steps", "2", *TINY)
    one_line_error(code, err)
    assert not (tmp_path / "new" / "run").exists()


def test_a_failed_start_in_an_empty_folder_leaves_it_empty(capsys, tmp_path):
    (tmp_path / "short.txt").write_text("too short")
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["train", "text", "--data", str(tmp_path / "short.txt"), "--run-dir", str(empty),
                 "--max-steps", "2", *TINY])
    _, err = capsys.readouterr()
    one_line_error(code, err)
    assert empty.is_dir() and not any(empty.iterdir())


# 8. an index.json that names a checkpoint that is gone ------------------------------------------------

def test_index_naming_a_missing_best_checkpoint_names_it_and_the_latest(run_copy):
    run = RunDir(run_copy)
    latest = run.checkpoints()[-1].name
    (run.checkpoints_dir / "index.json").write_text(json.dumps({"best": "step_0000007",
                                                                "latest": latest}))
    before = snapshot(run_copy)
    code, _, err = run_cli("generate", run_copy, "--checkpoint", "best", "--prompt", "All",
                           "--device", "cpu")
    one_line_error(code, err, "step_0000007", "missing", latest, "--checkpoint")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("damage", ["integer weights", "a flat embedding"])
def test_a_pretrained_folder_with_odd_weights_is_explained(capsys, tmp_path, hf_folder, damage):
    folder = Path(shutil.copytree(hf_folder[0], tmp_path / "hf"))
    weights = load_file(str(folder / "model.safetensors"))
    if damage == "integer weights":
        weights = {name: (tensor * 100).to(torch.int64) for name, tensor in weights.items()}
    else:
        weights["transformer.wte.weight"] = weights["transformer.wte.weight"].flatten()
    save_file(weights, str(folder / "model.safetensors"))
    code = main(["train", "text", "--init-from-hf", str(folder), "--run-dir",
                 str(tmp_path / "r"), "--max-steps", "1", "--events", "none"])
    _, err = capsys.readouterr()
    one_line_error(code, err, "model.safetensors",
                   "int64 numbers" if damage == "integer weights" else "has shape")
    assert not (tmp_path / "r").exists()


def test_a_write_refused_past_the_checks_is_still_one_line(capsys, monkeypatch, run_copy):
    """The folder passes the write probe but its config.json cannot be replaced (a file made
    read-only): the command still ends in one line, not an OSError traceback."""
    real_open = builtins.open

    def refuse_config(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and "w" in mode and "config.json" in str(file):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refuse_config)
    monkeypatch.setattr(io, "open", refuse_config)
    code = main(["train", "--resume", str(run_copy), "--max-steps", "25", "--events", "none"])
    _, err = capsys.readouterr()
    line = one_line_error(code, err, "cannot write", "permission denied")
    assert f"cannot write {run_copy / 'config.json'}:" in line  # the file, not its temp file
