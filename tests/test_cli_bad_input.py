"""Bad input gets one clear line and exit code 2 -- never a traceback -- and loses nothing.

The plain cases (a missing or empty file, a wrong setting, a bad sampling value, a folder that
is not a run, ...) are rows of the table in test_cli_sweep.py; this file keeps the cases that
check more than one command's message, and the tiny run the CLI tests share."""

import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from studio.cli import main
from studio.config import setting
from studio.registry import default_registry
from studio.runstore import RunDir

TINY = ["--set", "n_layer=1", "--set", "n_head=2", "--set", "n_embd=16", "--set", "block_size=16",
        "--set", "batch_size=4", "--set", "device=cpu", "--set", "eval_every=0",
        "--set", "preview_every=0", "--events", "none"]


def studio(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def expect_error(capsys, *args, match: str) -> str:
    code, out, err = studio(capsys, *args)
    assert code == 2, (code, out, err)
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert match.lower() in err.lower(), err
    return err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A tiny text run with checkpoints at steps 10 and 20."""
    root = tmp_path_factory.mktemp("run")
    corpus = root / "corpus.txt"
    corpus.write_text("All the world's a stage, and all the men and women merely players.\n" * 30)
    run = root / "run"
    assert main(["train", "text", "--data", str(corpus), "--run-dir", str(run), "--max-steps", "20",
                 "--set", "checkpoint_every=10", *TINY]) == 0
    return run


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def test_latin1_file_is_decoded_and_said(capsys, tmp_path):
    text = "Café crème, déjà vu, naïve façade. Ça va très bien à Zürich.\n" * 20
    (tmp_path / "latin.txt").write_bytes(text.encode("latin-1"))
    code, out, err = studio(capsys, "train", "text", "--data", tmp_path / "latin.txt", "--run-dir",
                            tmp_path / "r", "--max-steps", "2", *TINY[:-2], "--events", "plain")
    assert code == 0, err
    assert "not UTF-8: decoded as Latin-1" in err
    from generators.text.tokenizer import load_tokenizer
    assert "é" in load_tokenizer(tmp_path / "r" / "assets" / "tokenizer.json").itos


@dataclass
class _OtherConfig:
    width: int = setting(4, "width", min=1)


def test_resume_a_run_of_another_generator(capsys, run_copy):
    from studio.contract import Generator

    class Other(Generator):
        name, modality, version, Config = "other-kind", "image", "0.1", _OtherConfig

    default_registry().add("other-kind", Other)
    expect_error(capsys, "train", "other-kind", "--resume", run_copy,
                 match="is a run of generator 'text', not 'other-kind'")


def test_a_truncated_checkpoint_is_refused_by_name_and_passed_over_when_not_named(capsys, run_copy):
    latest = run_copy / "checkpoints" / "step_0000020" / "model.safetensors"
    latest.write_bytes(latest.read_bytes()[:100])
    config = (run_copy / "config.json").read_bytes()
    err = expect_error(capsys, "train", "--resume", run_copy, "--checkpoint", "step_0000020",
                       "--max-steps", "25", "--events", "none", match="damaged")
    assert "--checkpoint step_0000010" in err
    assert (run_copy / "config.json").read_bytes() == config  # refused before anything was written
    expect_error(capsys, "generate", run_copy, "--checkpoint", "step_0000020", match="damaged")
    code, out, err = studio(capsys, "generate", run_copy, "--json")
    assert code == 0 and '"checkpoint": "step_0000010"' in out and "step_0000020" in err
    code, out, err = studio(capsys, "train", "--resume", run_copy, "--max-steps", "12",
                            "--events", "plain")
    assert code == 0 and "step_0000020 is damaged" in err and "resuming from an earlier one" in err


def test_corrupted_checkpoint_bytes_are_detected(capsys, run_copy):
    latest = run_copy / "checkpoints" / "step_0000020" / "trainer.safetensors"
    data = bytearray(latest.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit deep in the tensor data: safetensors alone would not notice
    latest.write_bytes(bytes(data))
    expect_error(capsys, "train", "--resume", run_copy, "--checkpoint", "step_0000020",
                 "--max-steps", "25", match="SHA-256")


def test_pickle_offered_as_a_checkpoint_is_never_loaded(capsys, tmp_path, run_copy):
    class Boom:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps({"weights": Boom()}))
    expect_error(capsys, "generate", evil, match="never loads pickles")
    expect_error(capsys, "train", "--resume", evil, match="never loads pickles")
    # a pickle dressed up as the checkpoint's safetensors file
    (run_copy / "checkpoints" / "step_0000020" / "model.safetensors").write_bytes(evil.read_bytes())
    expect_error(capsys, "generate", run_copy, "--checkpoint", "step_0000020", match="damaged")
    code, _, err = studio(capsys, "generate", run_copy)  # the newest weights that check
    assert code == 0 and "skipped checkpoint" in err
    assert not (tmp_path / "pwned").exists()


def test_nothing_is_lost_after_errors(capsys, trained_run):
    run = RunDir(trained_run)
    for ckpt in run.checkpoints():
        run.load_checkpoint(ckpt.folder)  # verifies sizes and hashes
    assert [c.step for c in run.checkpoints()] == [10, 20]


def test_resume_a_run_interrupted_before_its_first_checkpoint(capsys, run_copy):
    import shutil as sh
    for ckpt in (run_copy / "checkpoints").glob("step_*"):
        sh.rmtree(ckpt)
    (run_copy / "checkpoints" / "index.json").unlink()
    expect_error(capsys, "generate", run_copy, match="has no checkpoint yet")
    code, out, err = studio(capsys, "train", "--resume", run_copy, "--max-steps", "4")
    assert code == 0, err
    assert [c.step for c in RunDir(run_copy).checkpoints()] == [4]


def test_text_data_with_nothing_usable_carries_its_report_for_the_window(capsys, tmp_path):
    """A folder of PNGs given as text: the error names the data and carries the report, so the
    window can list every file skipped and why; the CLI still prints one line, exit 2."""
    from studio import api
    from studio.errors import DataError
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.jpg"):
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DataError, match="no usable text") as caught:
        api.inspect_data("text", str(folder))
    report = caught.value.report
    assert report.used == [] and report.source == str(folder)
    assert sorted(Path(item).name for item, _ in report.skipped) == ["a.png", "b.png", "c.jpg"]
    assert all("not a text file" in why for _, why in report.skipped)
    code, out, err = studio(capsys, "train", "text", "--data", str(folder), "--run-dir",
                            str(tmp_path / "r"), *TINY)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_jsonl_with_nothing_usable_carries_its_report(tmp_path):
    from studio import api
    from studio.errors import DataError
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "a"}\nnot json\n')
    with pytest.raises(DataError) as caught:
        api.inspect_data("text", str(data))
    assert [item.rsplit(":", 1)[1] for item, _ in caught.value.report.skipped] == ["1", "2"]


def test_a_corpus_shorter_than_one_block_carries_what_was_read(tmp_path):
    from studio import api
    from studio.errors import DataError
    (tmp_path / "short.txt").write_text("Too short.")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DataError, match="fewer than one block") as caught:
        api.inspect_data("text", str(tmp_path))
    report = caught.value.report
    assert [Path(f).name for f in report.used] == ["short.txt"]
    assert [Path(f).name for f, _ in report.skipped] == ["logo.png"]
