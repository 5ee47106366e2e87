"""The run folder: the contract between the engine, the CLI and the window.

    run.json                 generator, status (running/paused/stopped/done/failed), step, best
    config.json              generator name + version, its full config, the training config, data
    events.jsonl             append-only log: one JSON object per event (progress, eval, ...)
    data_report.json         what the data loader used and skipped
    assets/                  the generator's files besides weights (e.g. tokenizer.json)
    previews/step_000500/    samples on the fixed probe set (samples.json, PNG, GIF)
    checkpoints/step_000500/ model.safetensors, trainer.safetensors (optimizers, RNG), state.json
    checkpoints/index.json   which checkpoint is the best, by the held-out metric
    control                  "pause" / "resume" / "stop", written by `studio control` or the window
    .lock                    an OS lock held by the process training the run (its PID inside)

Every file is written atomically (temp file, fsync, rename); a checkpoint folder is complete
before its rename makes it visible, so a crash mid-write leaves earlier checkpoints intact. A
checkpoint lists the size and SHA-256 of each of its files, checked on load, and its weights
file also carries the hash of its own tensors, so that the weights stay usable when the rest of
the checkpoint is damaged. A checkpoint that cannot be read is never taken for a missing one,
and a training process never deletes or overwrites a checkpoint folder it did not write: one in
its way is set aside as `step_N.kept-TIME`. Nothing in a run folder is ever unpickled: tensors
are safetensors, everything else JSON.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.errors import DiskFull, RunBusy, StudioError
from studio.events import read as read_events

RUN_FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
# What sampling needs besides the tensors; the weights file carries a copy of it, so that it
# can be used on its own when state.json is damaged.
# A LoRA run's weights are adapters, usable only with the base its "lora" record names.
WEIGHTS_STATE_KEYS = ("aliases", "generator", "generator_name", "generator_version", "lora")
CHECKPOINT_FOLDER = re.compile(r"step_(\d+)")
REPLACED_CHECKPOINT = re.compile(r"\.tmp-replaced-(step_\d+)-\d+")
LOCK_NAME = ".lock"
PICKLE_MAGICS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")


# --- atomic files ----------------------------------------------------------------------------

def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def swap_folder_in(staging: Path, target: Path) -> None:
    """Rename a complete folder into place. An earlier one there is moved aside first and
    removed only once the new one is in place (put back if the rename fails), so `target` is
    always whole: the old or the new (ONNX exports, composed ads)."""
    earlier = target.with_name(f".{target.name}.replaced-{os.getpid()}")
    shutil.rmtree(earlier, ignore_errors=True)
    had_one = target.exists()
    if had_one:
        os.replace(target, earlier)
    try:
        os.replace(staging, target)
    except OSError:
        if had_one:
            os.replace(earlier, target)
        raise
    if had_one:
        shutil.rmtree(earlier, ignore_errors=True)


def write_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode())


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudioError(f"{what} is missing: {path}.") from None
    except IsADirectoryError:
        raise StudioError(f"{what} should be a file, but {path} is a folder. Move that folder "
                          f"away.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StudioError(f"{what} is not valid JSON: {path} ({exc}).") from None


def file_digest(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def refuse_pickle(path: Path) -> None:
    """Say clearly why a pickle / torch.save file is not accepted, without ever loading it."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return
    if head.startswith(PICKLE_MAGICS) or path.suffix in (".pt", ".pth", ".pkl", ".bin", ".ckpt"):
        raise StudioError(f"{path} looks like a pickle / torch.save file. AIGC Studio never loads "
                          f"pickles because they can run arbitrary code; give a run folder or a "
                          f"checkpoint folder of safetensors files instead.")


def tensors_digest(tensors: dict) -> str:
    """SHA-256 of tensors' names, dtypes, shapes and bytes, in name order: the hash a weights
    file carries of its own contents (a file cannot hold the hash of its own bytes)."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --- the lock of a run ---------------------------------------------------------------------------

def _try_lock(f) -> bool:
    """Take an exclusive, non-blocking OS lock on open file `f`; False if another holds it. The
    OS drops the lock when its process dies, so a `kill -9` never leaves a stale lock."""
    try:
        import fcntl
    except ImportError:  # Windows: lock one byte far past the PID written at the start
        import msvcrt
        f.seek(1 << 20)
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would end the process there: take it for alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, but another user's
        return True
    return True


def _owner_pid(path: Path) -> int:
    try:
        return int(path.read_text(encoding="utf-8").strip() or 0)
    except (OSError, ValueError):
        return 0


def lock_owner(run_path: Path) -> int | None:
    """The PID of the process training in this run folder (0: one whose PID could not be read),
    or None when none is. Asks the OS lock itself, so a process that died holds nothing."""
    path = Path(run_path) / LOCK_NAME
    try:  # opened for reading: asking must not write into the run (it may be read-only)
        f = open(path, encoding="utf-8")
    except OSError:  # no lock file (nothing trained here since locks came in) or unreadable
        return None
    with f:
        if _try_lock(f):
            return None  # closing the file lets go of the lock again
    return _owner_pid(path)


def busy_message(run_path: Path, pid: int) -> str:
    who = f"process {pid}" if pid else "another process"
    return (f"{run_path} is in use: {who} is training it right now. Wait for it to finish or "
            f"stop it (`studio control {run_path} stop`), or train a copy of the run.")


# --- checkpoints -----------------------------------------------------------------------------

@dataclass
class Checkpoint:
    name: str
    step: int
    folder: Path
    metrics: dict
    kept: list = field(default_factory=list)  # folders set aside while saving (step_N.kept-TIME)


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


class RunDir:
    """A run folder on disk. Create one with `RunDir.create`, open one with `RunDir.open`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.written: set[str] = set()  # checkpoint folders this object wrote (may overwrite)
        self._lock_file = None

    # -- paths
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def run_path(self) -> Path:
        return self.path / "run.json"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def assets_dir(self) -> Path:
        return self.path / "assets"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def previews_dir(self) -> Path:
        return self.path / "previews"

    @property
    def control_path(self) -> Path:
        return self.path / "control"

    def preview_dir(self, step: int) -> Path:
        """Where the preview made at `step` lives (whether or not it exists yet)."""
        return self.previews_dir / checkpoint_name(step)

    def checkpoint_dir(self, name: str) -> Path:
        """The folder of checkpoint `name` (e.g. "step_0000500"; whether or not it exists)."""
        return self.checkpoints_dir / name

    @staticmethod
    def is_run(path: Path) -> bool:
        """Whether `path` is a run folder: a folder with a config.json."""
        path = Path(path)
        return path.is_dir() and (path / "config.json").is_file()

    # -- create / open
    @classmethod
    def create(cls, path: Path, config_doc: dict) -> "RunDir":
        run = cls(path)
        if cls.is_run(run.path):
            raise StudioError(f"{path} already holds a run. Continue it with "
                              f"`studio train --resume {path}`, or pick a new --run-dir.")
        if run.path.exists() and not run.path.is_dir():
            raise StudioError(f"cannot use {path} as a run folder: it is a file. Pick a new --run-dir.")
        try:
            for folder in (run.path, run.assets_dir, run.checkpoints_dir, run.previews_dir):
                folder.mkdir(parents=True, exist_ok=True)
            write_json(run.config_path, {"format": RUN_FORMAT, **config_doc})
            run.update(status="created", step=0, created=time.time())
        except OSError as exc:
            raise StudioError(f"cannot write the run folder {path}: {exc.strerror or exc}. "
                              f"Pick a writable --run-dir.") from None
        return run

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        path = Path(path)
        if not path.exists():
            raise StudioError(f"{path} does not exist. Give a run folder (see `studio runs`).")
        if path.is_file():
            refuse_pickle(path)
            raise StudioError(f"{path} is a file, not a run folder. Give the folder that "
                              f"`studio train --run-dir` created.")
        if path.parent.name == "checkpoints" and (CHECKPOINT_FOLDER.fullmatch(path.name) or
                                                  (path / "state.json").exists()):
            path = path.parent.parent  # a checkpoint folder: its run is two levels up
        run = cls(path)
        if not cls.is_run(run.path):
            raise StudioError(f"{path} is not a run folder (no config.json). Give the folder that "
                              f"`studio train --run-dir` created.")
        for file in (run.run_path, run.events_path, run.control_path):
            if file.is_dir():
                raise StudioError(f"{file} should be a file, but it is a folder. Move that folder "
                                  f"out of the run; nothing was changed.")
        if run.checkpoints_dir.exists() and not run.checkpoints_dir.is_dir():
            raise StudioError(f"{run.checkpoints_dir} should be a folder, but it is a file. Move "
                              f"that file out of the run; nothing was changed.")
        return run

    # -- the lock: one process trains in a run folder at a time
    def lock(self) -> None:
        """Take the run's lock for this process, or raise RunBusy naming the process that has
        it. Held until `unlock` or the process ends (however it ends)."""
        if self._lock_file is not None:
            return
        path = self.path / LOCK_NAME
        f = open(path, "a+", encoding="utf-8")
        if not _try_lock(f):
            f.close()
            raise RunBusy(busy_message(self.path, _owner_pid(path)))
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f
        self._remove_debris()

    def _remove_debris(self) -> None:
        """Temporary files and folders left by a process killed mid-write (`.NAME.tmp-PID`,
        `checkpoints/.tmp-*`). Only the lock's holder may remove them, and only those of
        processes that are gone (`studio control` may be writing its file right now)."""
        for folder in (self.path, self.checkpoints_dir):
            if not folder.is_dir():
                continue
            for item in folder.glob(".*tmp-*"):
                pid = item.name.rsplit("-", 1)[-1]
                if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
                    replaced = REPLACED_CHECKPOINT.fullmatch(item.name)
                    if replaced and not self.checkpoint_dir(replaced.group(1)).exists():
                        os.replace(item, self.checkpoint_dir(replaced.group(1)))  # killed mid-swap
                    elif item.is_dir():
                        shutil.rmtree(item, ignore_errors=True)
                    else:
                        item.unlink(missing_ok=True)

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the OS lock
            self._lock_file = None

    def status(self) -> str:
        """The status as a person should read it: run.json's, except that a run no process
        holds the lock of is "interrupted" when run.json still says running, paused or created
        (its process died without saying so), and a run the disk stopped is "stopped: disk full"."""
        info = self.info()
        status = info.get("status", "?")
        if status in ("running", "paused", "created") and self.owner() is None:
            return "interrupted"
        if status == "stopped" and info.get("reason") == "disk full":
            return "stopped: disk full"
        return status

    def owner(self) -> int | None:
        """The PID training in this run now (0: unknown), None when nothing is."""
        return lock_owner(self.path)

    def config(self) -> dict:
        doc = read_json(self.config_path, "the run's config")
        if not isinstance(doc, dict) or "generator" not in doc:
            raise StudioError(f"{self.config_path} does not describe a run (no 'generator').")
        return doc

    def info(self) -> dict:
        try:
            return read_json(self.run_path, "run.json")
        except StudioError:
            return {}

    def update(self, **fields) -> dict:
        """Merge `fields` into run.json (atomically)."""
        info = self.info()
        info.update(fields, updated=time.time())
        write_json(self.run_path, info)
        return info

    # -- events
    def append_event(self, event: dict) -> None:
        with open(self.events_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event, ensure_ascii=False) + "\n")

    def events(self) -> list[dict]:
        """All events; a line cut short by a crash (the last one) is skipped."""
        return read_events(self.events_path)

    # -- control file (pause / resume / stop while running)
    def read_control(self) -> str | None:
        try:
            return self.control_path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def write_control(self, command: str) -> None:
        write_atomic(self.control_path, command.encode())

    def clear_control(self) -> None:
        self.control_path.unlink(missing_ok=True)

    # -- checkpoints
    def step_folders(self) -> list[tuple[int, Path]]:
        """(step, folder) of every checkpoint folder, readable or not, oldest first. Folders
        still being written (.tmp-*) and set aside (step_N.kept-TIME) are not among them."""
        found = []
        if self.checkpoints_dir.is_dir():
            for folder in self.checkpoints_dir.iterdir():
                match = CHECKPOINT_FOLDER.fullmatch(folder.name)
                if match and folder.is_dir():
                    found.append((int(match.group(1)), folder))
        return sorted(found)

    def checkpoints(self) -> list[Checkpoint]:
        """Checkpoints whose state.json reads, oldest first (see `damaged_checkpoints`)."""
        found = []
        for _, folder in self.step_folders():
            try:
                state = json.loads((folder / "state.json").read_text())
                found.append(Checkpoint(folder.name, int(state["step"]), folder,
                                        state.get("metrics", {})))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue  # damaged: see damaged_checkpoints
        return sorted(found, key=lambda c: c.step)

    def damaged_checkpoints(self) -> list[tuple[Path, str]]:
        """(folder, what is wrong) of checkpoint folders whose state.json cannot be read."""
        readable = {c.folder for c in self.checkpoints()}
        return [(folder, self._state_problem(folder)) for _, folder in self.step_folders()
                if folder not in readable]

    @staticmethod
    def _state_problem(folder: Path) -> str:
        path = folder / "state.json"
        if not path.is_file():
            return "its state.json is missing"
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            int(state["step"])
        except (OSError, ValueError, UnicodeDecodeError):
            return "its state.json is not valid JSON"
        except (KeyError, TypeError, AttributeError):
            return "its state.json does not name a step"
        return ""

    def checkpoint_problem(self, folder: Path) -> str | None:
        """What keeps a training from resuming from this checkpoint (None: nothing): state.json
        unreadable, or a file missing or not matching its recorded size and SHA-256."""
        problem = self._state_problem(folder)
        if problem:
            return problem
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        for filename, expected in (state.get("files") or {}).items():
            problem = _file_problem(folder, filename, expected)
            if problem:
                return f"its {problem}"
        return None

    def best_checkpoint(self) -> str | None:
        """The best checkpoint's name as index.json records it (None: none recorded, or an
        index.json that is not a JSON object naming one)."""
        try:
            best = json.loads((self.checkpoints_dir / "index.json").read_text()).get("best")
        except (OSError, ValueError, AttributeError):
            return None
        return best if isinstance(best, str) and best else None

    def save_checkpoint(self, step: int, files: dict[str, Any], state: dict, keep_last: int,
                        is_best: bool) -> Checkpoint:
        """Write a checkpoint atomically. `files` maps file name -> dict of tensors
        (safetensors). Keeps the last `keep_last` checkpoints and the best one. Raises DiskFull,
        with the partial folder removed, when the disk cannot hold it."""
        name = checkpoint_name(step)
        final = self.checkpoint_dir(name)
        tmp = self.checkpoints_dir / f".tmp-{name}-{os.getpid()}"
        self._make_room(name, _bytes_needed(files), keep_last, step)
        try:
            self._write_checkpoint_folder(tmp, step, files, state)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if _is_disk_full(exc, self.checkpoints_dir, _bytes_needed(files)):
                raise self._disk_full(name, _bytes_needed(files)) from None
            raise
        kept = []
        replaced = None
        if final.exists():
            if name in self.written:  # re-saving the same step (e.g. stop right after a save):
                # moved out of the way first, so a kill at any moment leaves one of the two
                replaced = self.checkpoints_dir / f".tmp-replaced-{name}-{os.getpid()}"
                os.replace(final, replaced)
            else:  # not ours: a damaged folder, or one from before an earlier resume point
                aside = final.with_name(f"{name}.kept-{time.strftime('%Y%m%d-%H%M%S')}")
                os.replace(final, aside)
                kept.append(aside)
        os.replace(tmp, final)
        _fsync_dir(self.checkpoints_dir)
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
        self.written.add(name)
        best = name if is_best else self.best_checkpoint()
        write_json(self.checkpoints_dir / "index.json", {"best": best, "latest": name})
        self._prune(keep_last, keep={name, best}, before=step)
        return Checkpoint(name, step, final, state.get("metrics", {}), kept)

    def _write_checkpoint_folder(self, tmp: Path, step: int, files: dict, state: dict) -> None:
        from safetensors.torch import save_file

        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        weights_state = json.dumps({k: state[k] for k in WEIGHTS_STATE_KEYS if k in state})
        digests = {}
        for filename, tensors in files.items():
            target = tmp / filename
            metadata = {"studio.step": str(step), "studio.sha256": tensors_digest(tensors)}
            if filename == WEIGHTS_FILE:
                metadata["studio.state"] = weights_state
            save_file(tensors, str(target), metadata=metadata)
            with open(target, "rb") as f:
                os.fsync(f.fileno())
            digests[filename] = file_digest(target)
        write_json(tmp / "state.json", {**state, "step": step, "files": digests})
        _fsync_dir(tmp)

    def _make_room(self, name: str, needed: int, keep_last: int, step: int) -> None:
        """Check the disk can hold a checkpoint of `needed` bytes before writing any of it. If
        it cannot, first remove the checkpoints this save would prune anyway (never the newest
        readable one, which stays loadable whatever happens next, nor the best)."""
        if shutil.disk_usage(self.checkpoints_dir).free >= needed:
            return
        older = [c for c in self.checkpoints() if c.step < step]
        protected = {self.best_checkpoint(), older[-1].name if older else None}
        for ckpt in older[:-(keep_last - 1)] if keep_last > 1 else older:
            if ckpt.name not in protected:
                shutil.rmtree(ckpt.folder, ignore_errors=True)
        if shutil.disk_usage(self.checkpoints_dir).free < needed:
            raise self._disk_full(name, needed)

    def _disk_full(self, name: str, needed: int) -> DiskFull:
        free = shutil.disk_usage(self.checkpoints_dir).free
        kept = self.checkpoints()
        last = (f"the last good checkpoint {kept[-1].name} is intact" if kept
                else "no earlier checkpoint was written")
        return DiskFull(f"not enough disk space for checkpoint {name} in {self.checkpoints_dir}: "
                        f"it needs about {_megabytes(needed)} and {_megabytes(free)} is free; "
                        f"{last}. Free some space (or lower keep_last), then resume with "
                        f"`studio train --resume {self.path}`.")

    def _prune(self, keep_last: int, keep: set, before: int) -> None:
        """Remove readable checkpoints older than step `before` beyond the newest `keep_last`.
        Damaged folders, folders set aside and later steps (another branch of the run, after a
        resume from an earlier checkpoint) are never removed."""
        complete = self.checkpoints()
        for ckpt in complete[:-keep_last] if keep_last > 0 else complete:
            if ckpt.name not in keep and ckpt.step < before:
                shutil.rmtree(ckpt.folder, ignore_errors=True)
        for leftover in self.checkpoints_dir.glob(".tmp-*"):  # from a crash mid-write
            if not leftover.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(leftover, ignore_errors=True)

    def resolve_checkpoint(self, which: str | None = None) -> Path:
        """`which`: None/"latest", "best", a checkpoint name or a step number. The folder may be
        damaged: `load_checkpoint` and `load_weights` say how."""
        folders = self.step_folders()
        if not folders:
            raise StudioError(f"{self.path} has no checkpoint yet. Train it first "
                              f"(`studio train --resume {self.path}`).")
        if which in (None, "latest"):
            return folders[-1][1]
        if which == "best":
            best = self.best_checkpoint()
            if best and not self.checkpoint_dir(best).is_dir():
                latest = folders[-1][1].name
                raise StudioError(f"{self.checkpoints_dir / 'index.json'} names {best} as the best "
                                  f"checkpoint, but {best} is missing. The latest is {latest}: "
                                  f"give --checkpoint {latest} (or latest).")
            return self.checkpoint_dir(best) if best else folders[-1][1]
        names = {folder.name: folder for _, folder in folders}
        names.update({str(step): folder for step, folder in folders})
        if which not in names:
            raise StudioError(f"{self.path} has no checkpoint '{which}'. Available: "
                              f"{', '.join(folder.name for _, folder in folders)}.")
        return names[which]

    def load_checkpoint(self, folder: Path) -> tuple[dict, dict]:
        """Verify and read a checkpoint: returns (state, {file name: dict of tensors})."""
        problem = self._state_problem(folder)
        if problem:
            raise self.damaged_error(folder, problem)
        state = read_json(folder / "state.json", "checkpoint state")
        tensors = {filename: self._verified_file(folder, filename, expected)
                   for filename, expected in state.get("files", {}).items()}
        return state, tensors

    def _verified_file(self, folder: Path, filename: str, expected: dict) -> dict:
        from safetensors.torch import load_file

        problem = _file_problem(folder, filename, expected)
        if problem:
            modified = "" if problem.endswith("missing") else " (truncated or modified)"
            raise self.damaged_error(folder, problem + modified)
        try:
            return load_file(str(folder / filename))
        except Exception as exc:  # safetensors raises its own error types
            raise self.damaged_error(folder, f"{filename} is not a valid safetensors file ({exc})")

    def load_weights(self, folder: Path) -> tuple[dict, dict, str | None]:
        """A checkpoint's weights for sampling: (tensors, the state sampling needs, a note or
        None). The weights are used when they check, by state.json's record or by their own
        hash, even if the rest of the checkpoint (state.json, trainer.safetensors) is damaged;
        the note then says what is damaged."""
        problem = self._state_problem(folder)
        if not problem:
            state = read_json(folder / "state.json", "checkpoint state")
            files = state.get("files", {})
            if WEIGHTS_FILE not in files:
                raise self.damaged_error(folder, f"its state.json lists no {WEIGHTS_FILE}")
            tensors = self._verified_file(folder, WEIGHTS_FILE, files[WEIGHTS_FILE])
            problems = {name: _file_problem(folder, name, expected)
                        for name, expected in files.items() if name != WEIGHTS_FILE}
            missing = [name for name, why in problems.items() if why and why.endswith("missing")]
            damaged = [name for name, why in problems.items() if why and name not in missing]
            note = None
            if damaged:
                note = (f"{folder.name}: {', '.join(damaged)} is damaged, so training cannot "
                        f"resume from it; its weights check and are used")
            elif missing:  # a weights-only copy (as the shipped demos are): nothing is wrong
                note = (f"{folder.name} holds weights only ({', '.join(missing)} not kept): it "
                        f"samples, but training cannot resume from it")
            return tensors, state, note
        tensors, state = self._self_checked_weights(folder, problem)
        return tensors, state, (f"{folder.name}: {problem}; its weights carry their own hash, "
                                f"which checks, and are used (training cannot resume from it)")

    def _self_checked_weights(self, folder: Path, problem: str) -> tuple[dict, dict]:
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = folder / WEIGHTS_FILE
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            tensors = load_file(str(path))
        except Exception as exc:  # missing, or not safetensors (its own error types)
            raise self.damaged_error(folder, f"{problem}, and its {WEIGHTS_FILE} cannot be read "
                                        f"({exc})") from None
        if "studio.sha256" not in metadata:
            raise self.damaged_error(folder, f"{problem}, and its {WEIGHTS_FILE} carries no hash of "
                                        f"its own to check it by (written by an older version)")
        if tensors_digest(tensors) != metadata["studio.sha256"]:
            raise self.damaged_error(folder, f"{problem}, and its {WEIGHTS_FILE} does not match its "
                                        f"own hash")
        try:
            state = json.loads(metadata.get("studio.state", "{}"))
        except ValueError:
            state = {}
        return tensors, state

    def latest_weights(self) -> tuple[Path, dict, dict, str | None]:
        """The newest checkpoint whose weights check: (folder, tensors, state, note). Newer
        ones whose weights do not check are named in the note."""
        folders = self.step_folders()
        if not folders:
            self.resolve_checkpoint()  # says there is none yet
        skipped = []
        for _, folder in reversed(folders):
            try:
                tensors, state, note = self.load_weights(folder)
            except StudioError as exc:
                skipped.append(str(exc).split(". ")[0])
                continue
            notes = [n for n in (note, *(f"skipped {s}" for s in skipped)) if n]
            return folder, tensors, state, "; ".join(notes) or None
        raise StudioError(f"no checkpoint of {self.path} can be used: "
                          f"{'; '.join(skipped)}. Train it again from the start in a new run.")

    def damaged_error(self, folder: Path, why: str) -> StudioError:
        others = [c.name for c in self.checkpoints()
                  if c.folder != folder and not self.checkpoint_problem(c.folder)]
        hint = (f"Use an earlier one with --checkpoint {others[-1]}." if others
                else "No other checkpoint is available.")
        return StudioError(f"checkpoint {folder} is damaged: {why}. {hint}")


def _file_problem(folder: Path, filename: str, expected: dict) -> str | None:
    """Whether a checkpoint's file is there with its recorded size and SHA-256 (None: it is)."""
    path = folder / filename
    if not path.is_file():
        return f"{filename} is missing"
    if file_digest(path) != expected:
        return f"{filename} does not match its recorded size/SHA-256"
    return None


def _bytes_needed(files: dict) -> int:
    """A checkpoint's size on disk, known before it is written: its tensors' bytes, plus room
    for the safetensors headers and state.json."""
    tensors = [t for group in files.values() for t in group.values()]
    return sum(t.numel() * t.element_size() for t in tensors) + 256 * len(tensors) + (64 << 10)


def _is_disk_full(exc: BaseException, folder: Path, needed: int) -> bool:
    """Whether a failed write ran out of space. safetensors reports ENOSPC as its own error
    type, so the free space is asked too."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(exc, Exception) or isinstance(exc, StudioError):
        return False
    try:
        return "No space left" in str(exc) or shutil.disk_usage(folder).free < needed
    except OSError:
        return False


def _megabytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


# --- samples (previews and exports) ------------------------------------------------------------

def save_samples(folder: Path, samples: list, extra: dict | None = None) -> Path:
    """Write samples as plain files (text in samples.json and samples.txt, images as PNG,
    videos as GIF) through the one writer of samples, studio/export.py, that `studio generate
    --out` and the window's Export use too."""
    from studio.export import write_folder  # it builds on this module's atomic writes

    write_folder(list(samples), folder, lineage={}, extra=extra)
    return Path(folder)


def load_samples(folder: Path) -> tuple[dict, list]:
    """Read what save_samples wrote: (the extra fields, samples with their arrays)."""
    import numpy as np
    from PIL import Image

    from studio.contract import Sample

    doc = read_json(Path(folder) / "samples.json", "samples")
    samples = []
    for entry in doc.get("samples", []):
        kind = entry.get("kind")
        if kind == "text":
            data = entry.get("text", "")
        elif kind == "image":
            data = np.asarray(Image.open(Path(folder) / entry["file"]).convert("RGB"))
        elif kind == "video":
            data = _read_clip(Path(folder), entry["file"])
        else:
            continue
        samples.append(Sample(kind, data, entry.get("meta", {})))
    return {k: v for k, v in doc.items() if k != "samples"}, samples


def _read_clip(folder: Path, name: str):
    """A clip as studio/export.py wrote it: a GIF or MP4, a folder of PNG frames ("003/"), or
    one clip of clips.npy ("clips.npy#3", never unpickled)."""
    import numpy as np

    if "#" in name:
        file, index = name.rsplit("#", 1)
        return np.load(folder / file, mmap_mode="r", allow_pickle=False)[int(index)].copy()
    if name.endswith("/"):
        from PIL import Image
        frames = sorted((folder / name).glob("*.png"))
        return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in frames])
    import imageio.v3 as iio
    plugin = {"plugin": "FFMPEG"} if name.endswith(".mp4") else {}
    frames = iio.imread(folder / name, index=None, **plugin)
    frames = frames[..., :3] if frames.ndim == 4 else np.stack([frames] * 3, axis=-1)
    if name.endswith(".mp4"):  # tiny clips were enlarged and padded for H.264: undo that
        sidecar = read_json(folder / f"{name}.json", "the clip's sidecar")
        scale = int(sidecar.get("scale", 1))
        frames = frames[:, ::scale, ::scale][:, :sidecar.get("height"), :sidecar.get("width")]
    return frames


def list_previews(run: RunDir) -> list[tuple[int, Path]]:
    """(step, folder) of the run's previews, oldest first."""
    found = []
    if run.previews_dir.is_dir():
        for folder in run.previews_dir.iterdir():
            if folder.name.startswith("step_") and (folder / "samples.json").exists():
                try:
                    found.append((int(folder.name[5:]), folder))
                except ValueError:
                    continue
    return sorted(found)


def list_runs(root: Path) -> list[RunDir]:
    """Run folders at `root` or one level below it, newest first."""
    root = Path(root)
    if not root.exists():
        raise StudioError(f"{root} does not exist. Give the folder that holds your runs.")
    if not root.is_dir():
        raise StudioError(f"{root} is a file. Give the folder that holds your runs.")
    candidates = [root] if RunDir.is_run(root) else sorted(root.iterdir())
    runs = [RunDir(p) for p in candidates if RunDir.is_run(p)]
    return sorted(runs, key=lambda r: r.info().get("created", 0), reverse=True)
