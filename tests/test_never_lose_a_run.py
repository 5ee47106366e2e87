"""Never lose a run: a damaged checkpoint is never taken for a missing one, one process trains in
a run at a time (an OS lock that dies with it), a full disk stops the run with the last good
checkpoint intact, and the events a resume re-runs are not counted twice."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studio import api
from studio.cli import main
from studio.events import read as read_events, supersede
from studio.runstore import RunDir, file_digest, lock_owner

from test_cli_bad_input import TINY, run_copy, trained_run  # noqa: F401  (fixtures)
from test_cli_errors import one_line_error, snapshot


def studio(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def weights_of(folder: Path) -> dict:
    return {name: file_digest(folder / name) for name in ("model.safetensors",)}


# 1. damaged checkpoints ----------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated state.json", "missing state.json"])
def test_a_damaged_newest_checkpoint_is_resumed_past_never_restarted_from_zero(capsys, run_copy, damage):
    """The reported loss: `echo '{"step": ' > state.json`, then resume started over at step 0
    and at step 20 replaced the intact weights."""
    newest = RunDir(run_copy).checkpoint_dir("step_0000020")
    weights_before = (newest / "model.safetensors").read_bytes()
    if damage == "truncated state.json":
        (newest / "state.json").write_text('{"step": ')
    else:
        (newest / "state.json").unlink()

    code, out, err = studio(capsys, "train", "--resume", run_copy, "--max-steps", "25",
                            "--events", "plain")
    assert code == 0, err
    assert "step_0000020 is damaged" in err and "resuming from an earlier one" in err
    events = read_events(run_copy / "events.jsonl")
    assert [e["step"] for e in events if e["event"] == "start"][-1] == 10  # not 0
    # The damaged folder was never overwritten: set aside with its bytes as they were.
    kept = sorted((run_copy / "checkpoints").glob("step_0000020.kept-*"))
    assert len(kept) == 1 and (kept[0] / "model.safetensors").read_bytes() == weights_before
    assert [c.step for c in RunDir(run_copy).checkpoints()][-1] == 25
    assert any("kept as" in e.get("message", "") for e in events if e["event"] == "warning")


def test_resume_refuses_when_every_checkpoint_is_damaged_and_changes_nothing(capsys, run_copy):
    for ckpt in RunDir(run_copy).checkpoints():
        (ckpt.folder / "state.json").write_text('{"step": ')
    before = snapshot(run_copy)
    code, _, err = studio(capsys, "train", "--resume", run_copy, "--max-steps", "25")
    one_line_error(code, err, "no checkpoint", "can be resumed", "step_0000020", "not valid JSON",
                   "--init-from")
    assert snapshot(run_copy) == before


def test_generate_uses_weights_that_check_when_state_json_is_damaged_and_says_so(capsys, run_copy):
    folder = RunDir(run_copy).checkpoint_dir("step_0000020")
    (folder / "state.json").write_text('{"step": ')
    code, out, err = studio(capsys, "generate", run_copy, "--n", "1", "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["meta"]["checkpoint"] == "step_0000020"
    assert "note:" in err and "state.json is not valid JSON" in err and "own hash" in err


def test_generate_uses_the_weights_when_the_trainer_state_is_damaged_and_says_so(capsys, run_copy):
    folder = RunDir(run_copy).checkpoint_dir("step_0000020")
    with open(folder / "trainer.safetensors", "r+b") as f:
        f.truncate(100)
    code, out, err = studio(capsys, "generate", run_copy, "--n", "1", "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["meta"]["checkpoint"] == "step_0000020"
    assert "trainer.safetensors is damaged" in err
    # ...while a resume passes over that checkpoint to the one before it.
    engine, checkpoint = api.prepare_training(resume=str(run_copy), events="none")
    try:
        assert checkpoint.name == "step_0000010"
    finally:
        engine.run.unlock()


def test_weights_whose_own_hash_fails_are_not_used(capsys, run_copy):
    newest = RunDir(run_copy).checkpoint_dir("step_0000020")
    (newest / "state.json").unlink()
    data = bytearray((newest / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in the last tensor
    (newest / "model.safetensors").write_bytes(bytes(data))
    code, out, err = studio(capsys, "generate", run_copy, "--n", "1", "--json")
    assert code == 0, err  # the newest usable weights: step 10's
    assert json.loads(out.splitlines()[0])["meta"]["checkpoint"] == "step_0000010"
    assert "does not match its own hash" in err
    code, _, err = studio(capsys, "generate", run_copy, "--checkpoint", "step_0000020")
    one_line_error(code, err, "step_0000020 is damaged", "own hash")


def test_a_weights_only_checkpoint_samples_and_says_it_cannot_resume_not_that_it_is_damaged(
        capsys, run_copy):
    """A checkpoint kept without its trainer state (as the shipped demo models are) is not
    damaged: generate uses it and says only that training cannot resume from it."""
    (RunDir(run_copy).checkpoint_dir("step_0000020") / "trainer.safetensors").unlink()
    code, out, err = studio(capsys, "generate", run_copy, "--n", "1", "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["meta"]["checkpoint"] == "step_0000020"
    assert "holds weights only (trainer.safetensors not kept)" in err
    assert "damaged" not in err


def test_a_new_run_can_start_from_weights_left_in_a_damaged_checkpoint(capsys, run_copy, tmp_path):
    folder = RunDir(run_copy).checkpoint_dir("step_0000020")
    (folder / "state.json").unlink()
    code, _, err = studio(capsys, "train", "text", "--init-from", folder, "--run-dir",
                          tmp_path / "again", "--max-steps", "2", *TINY)
    assert code == 0, err


def test_resuming_from_an_earlier_checkpoint_keeps_the_later_ones(capsys, run_copy):
    later = RunDir(run_copy).checkpoint_dir("step_0000020")
    weights = (later / "model.safetensors").read_bytes()
    code, _, err = studio(capsys, "train", "--resume", run_copy, "--checkpoint", "step_0000010",
                          "--max-steps", "20", "--events", "none")
    assert code == 0, err
    kept = list((run_copy / "checkpoints").glob("step_0000020.kept-*"))
    assert len(kept) == 1 and (kept[0] / "model.safetensors").read_bytes() == weights


# 2. one process trains in a run at a time --------------------------------------------------------

def start_training(args: list, cwd: Path) -> subprocess.Popen:
    """`studio train ... --events json` in a child process, returned once it has started."""
    child = subprocess.Popen([sys.executable, "-m", "studio", "train", *map(str, args),
                              "--events", "json"], cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    for line in child.stdout:
        if json.loads(line)["event"] == "start":
            return child
    raise AssertionError(f"the training did not start: {child.stderr.read()}")


def test_a_second_trainer_on_a_run_gets_one_line_naming_the_first(capsys, run_copy, tmp_path):
    first = start_training(["--resume", run_copy, "--max-steps", "100000"], tmp_path)
    try:
        assert lock_owner(run_copy) == first.pid
        config = (run_copy / "config.json").read_bytes()
        code, _, err = studio(capsys, "train", "--resume", run_copy, "--max-steps", "30",
                              "--set", "lr=0.1")
        one_line_error(code, err, f"process {first.pid}", "is training it", "stop")
        assert (run_copy / "config.json").read_bytes() == config  # its settings stay its own
        # The same from another process (the window starts trainers as children too).
        second = subprocess.run([sys.executable, "-m", "studio", "train", "--resume",
                                 str(run_copy), "--max-steps", "30"], capture_output=True,
                                text=True, cwd=tmp_path)
        one_line_error(second.returncode, second.stderr, f"process {first.pid}")
        starts = [e for e in read_events(run_copy / "events.jsonl") if e["event"] == "start"]
        assert len(starts) == 2  # the run's first training and the one holding the lock
        rows = {row["run"]: row for row in api.runs_table(str(run_copy))}
        assert rows[str(run_copy)]["status"] == "running"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # kill -9 leaves no stale lock: the run reads as interrupted and resumes.
    assert lock_owner(run_copy) is None
    assert api.runs_table(str(run_copy))[0]["status"] == "interrupted"
    code, _, err = studio(capsys, "control", run_copy, "stop")
    one_line_error(code, err, "not training now", "interrupted")
    code, _, err = studio(capsys, "train", "--resume", run_copy, "--max-steps", "25",
                          "--events", "none")
    assert code == 0, err
    assert RunDir(run_copy).info()["status"] == "done"


def test_two_new_runs_into_one_folder_do_not_undo_each_other(capsys, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Now is the winter of our discontent made glorious summer.\n" * 40)
    run = tmp_path / "run"
    first = start_training(["text", "--data", corpus, "--run-dir", run, "--max-steps", "100000",
                            *[a for a in TINY if a not in ("--events", "none")]], tmp_path)
    try:
        code, _, err = studio(capsys, "train", "text", "--data", corpus, "--run-dir", run,
                              "--max-steps", "2", *TINY)
        one_line_error(code, err, str(run))
        assert RunDir.is_run(run)  # the failed start removed nothing of the first one's
    finally:
        first.send_signal(signal.SIGTERM)  # a graceful stop: it writes its final checkpoint
        first.wait(timeout=120)
    assert RunDir(run).info()["status"] == "stopped" and RunDir(run).checkpoints()


def test_the_lock_is_let_go_when_training_ends_in_this_process(run_copy):
    status, run = api.train(resume=str(run_copy), max_steps=22, events="none")
    assert status == "done" and lock_owner(run_copy) is None
    status, _ = api.train(resume=str(run_copy), max_steps=24, events="none")
    assert status == "done"


def test_a_run_whose_trainer_died_without_a_lock_reads_interrupted(run_copy):
    run = RunDir(run_copy)
    run.update(status="running", pid=os.getpid())  # a live PID, but no lock held: not training
    assert api.runs_table(str(run_copy))[0]["status"] == "interrupted"


def test_run_json_that_is_a_folder_is_one_line(capsys, run_copy):
    (run_copy / "run.json").unlink()
    (run_copy / "run.json").mkdir()
    code, _, err = studio(capsys, "train", "--resume", run_copy, "--max-steps", "25")
    one_line_error(code, err, "run.json", "is a folder")


# 3. a full disk ---------------------------------------------------------------------------------

def fill_disk_at(monkeypatch, free_bytes: int) -> None:
    """The disk under the run reports `free_bytes` free (as a nearly full disk would)."""
    real = shutil.disk_usage

    def usage(path):
        total, used, _ = real(path)
        return type(real(path))(total, used, free_bytes)

    monkeypatch.setattr(shutil, "disk_usage", usage)


def assert_stopped_for_disk_full(run_copy: Path, last_good: str) -> None:
    run = RunDir(run_copy)
    assert run.info()["status"] == "stopped" and run.info()["reason"] == "disk full"
    assert not list((run_copy / "checkpoints").glob(".tmp-*"))  # no half-written folder stays
    assert run.checkpoints()[-1].name == last_good
    run.load_checkpoint(run.checkpoints()[-1].folder)  # loadable
    rows = api.runs_table(str(run_copy))
    assert rows[0]["status"] == "stopped: disk full"


def test_too_little_space_for_a_checkpoint_stops_with_one_line_and_resumes_later(capsys, monkeypatch, run_copy):
    fill_disk_at(monkeypatch, 4096)
    code, _, err = studio(capsys, "train", "--resume", run_copy, "--max-steps", "30",
                          "--set", "checkpoint_every=5", "--events", "none")
    one_line_error(code, err, "not enough disk space", "step_0000025", "MB is free",
                   "step_0000020 is intact", "studio train --resume")
    assert_stopped_for_disk_full(run_copy, "step_0000020")
    monkeypatch.undo()  # space is freed
    code, _, err = studio(capsys, "train", "--resume", run_copy, "--max-steps", "30",
                          "--set", "checkpoint_every=5", "--events", "none")
    assert code == 0, err
    assert RunDir(run_copy).checkpoints()[-1].step == 30


def test_a_write_that_runs_out_of_space_midway_leaves_no_partial_folder(capsys, monkeypatch, run_copy):
    import safetensors.torch

    real_save = safetensors.torch.save_file

    def save_until_full(tensors, filename, metadata=None):
        if Path(filename).name == "trainer.safetensors":
            Path(filename).write_bytes(b"\0" * 1000)  # what got written before the disk filled
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_until_full)
    code, _, err = studio(capsys, "train", "--resume", run_copy, "--max-steps", "30",
                          "--set", "checkpoint_every=5", "--events", "none")
    one_line_error(code, err, "not enough disk space", "step_0000025")
    assert_stopped_for_disk_full(run_copy, "step_0000020")


def test_old_checkpoints_that_would_be_pruned_make_room_first(monkeypatch, run_copy):
    """keep_last=1 on a full disk: the older checkpoint goes before the new one is written (it
    went after, so the disk never had room), and the newest stays until the new one is there."""
    run = RunDir(run_copy)
    real = shutil.disk_usage
    freed = {"bytes": 0}
    removed = []  # (checkpoint removed, whether the new one was there yet)
    real_rmtree = shutil.rmtree

    def counting_rmtree(path, *args, **kwargs):
        if Path(path).parent == run.checkpoints_dir and Path(path).name.startswith("step_"):
            freed["bytes"] += sum(f.stat().st_size for f in Path(path).iterdir())
            removed.append((Path(path).name, run.checkpoint_dir("step_0000021").exists()))
        return real_rmtree(path, *args, **kwargs)

    def usage(path):
        total, used, _ = real(path)
        return type(real(path))(total, used, 3 * freed["bytes"])  # no room until one goes

    monkeypatch.setattr(shutil, "disk_usage", usage)
    monkeypatch.setattr(shutil, "rmtree", counting_rmtree)
    (run.checkpoints_dir / "index.json").write_text('{"best": "step_0000020"}')
    status, _ = api.train(resume=str(run_copy), max_steps=21, settings=["keep_last=1"],
                          events="none")
    assert status == "done" and run.checkpoints()[-1].step == 21
    assert removed[0] == ("step_0000010", False)  # made room first
    assert ("step_0000020", False) not in removed  # the newest stayed until 21 was written


def mount_tmpfs(folder: Path, size: str) -> bool:
    if os.geteuid() != 0 or sys.platform != "linux":
        return False
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True)
    return done.returncode == 0


def test_a_real_full_disk_on_a_small_tmpfs(tmp_path, trained_run):
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "3m"):
        pytest.skip("mounting a tmpfs needs root on Linux with CAP_SYS_ADMIN; the injected "
                    "ENOSPC tests above cover the same path")
    try:
        run = disk / "run"
        shutil.copytree(trained_run, run)
        checkpoint_bytes = sum(f.stat().st_size for f in (run / "checkpoints" / "step_0000020").iterdir())
        filler = disk / "filler"  # leaves room for half a checkpoint (and the logs)
        filler.write_bytes(b"\0" * max(0, shutil.disk_usage(disk).free - checkpoint_bytes // 2))
        done = subprocess.run([sys.executable, "-m", "studio", "train", "--resume", str(run),
                               "--max-steps", "30", "--set", "checkpoint_every=5", "--events",
                               "none"], capture_output=True, text=True)
        one_line_error(done.returncode, done.stderr, "not enough disk space")
        assert_stopped_for_disk_full(run, "step_0000020")
        filler.unlink()
        done = subprocess.run([sys.executable, "-m", "studio", "train", "--resume", str(run),
                               "--max-steps", "30", "--set", "keep_last=1", "--events", "none"],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert RunDir(run).checkpoints()[-1].step == 30
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# 4. steps re-run after a crash are not counted twice ------------------------------------------------

def test_a_resume_supersedes_the_events_of_the_steps_it_runs_again():
    log = [{"event": "start", "step": 0}, {"event": "progress", "step": 10, "loss": 3.0},
           {"event": "checkpoint", "step": 10}, {"event": "progress", "step": 20, "loss": 2.0},
           {"event": "warning", "message": "x"},  # killed here, after step 20's progress
           {"event": "start", "step": 10}, {"event": "progress", "step": 20, "loss": 2.1},
           {"event": "progress", "step": 30, "loss": 1.5}]
    kept = supersede(log)
    assert [(e["event"], e.get("step")) for e in kept] == [
        ("start", 0), ("progress", 10), ("checkpoint", 10), ("warning", None),
        ("start", 10), ("progress", 20), ("progress", 30)]
    assert [e["loss"] for e in kept if e["event"] == "progress" and e["step"] == 20] == [2.1]


def test_a_killed_and_resumed_run_logs_each_step_once(capsys, run_copy, tmp_path):
    child = start_training(["--resume", run_copy, "--max-steps", "100000", "--set", "log_every=1"],
                           tmp_path)
    try:
        for line in child.stdout:  # let it log a few steps past its last checkpoint (20)
            if json.loads(line).get("step", 0) >= 24:
                break
    finally:
        child.kill()
        child.wait()
    code, _, err = studio(capsys, "train", "--resume", run_copy, "--max-steps", "26",
                          "--set", "log_every=1", "--events", "none")
    assert code == 0, err
    steps = [e["step"] for e in read_events(run_copy / "events.jsonl") if e["event"] == "progress"]
    assert steps == sorted(set(steps)) and steps[-1] == 26


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_resume_clears_what_a_killed_process_left_half_written(run_copy):
    """A kill mid-write leaves `.NAME.tmp-PID` files (index.json, run.json), and a kill while a
    re-saved checkpoint is swapped in leaves it only under its temporary name: the next holder
    of the lock removes the debris and puts the checkpoint back."""
    pid = dead_pid()
    run = RunDir(run_copy)
    (run.checkpoints_dir / f".index.json.tmp-{pid}").write_text("{")
    (run_copy / f".run.json.tmp-{pid}").write_text("{")
    os.replace(run.checkpoint_dir("step_0000020"), run.checkpoints_dir / f".tmp-replaced-step_0000020-{pid}")
    run.lock()
    try:
        assert [c.step for c in run.checkpoints()] == [10, 20]
        run.load_checkpoint(run.checkpoint_dir("step_0000020"))
        leftovers = [p.name for p in (*run_copy.glob(".*tmp-*"), *run.checkpoints_dir.glob(".*tmp-*"))]
        assert leftovers == []
    finally:
        run.unlock()
