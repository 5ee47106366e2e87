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

Every file is written atomically (temp file, fsync, rename); a checkpoint folder is complete
before its rename makes it visible, so a crash mid-write leaves earlier checkpoints intact. A
checkpoint lists the size and SHA-256 of each of its files, checked on load. Nothing in a run
folder is ever unpickled: tensors are safetensors, everything else JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import StudioError
from studio.events import read as read_events

RUN_FORMAT = 1
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


# --- checkpoints -----------------------------------------------------------------------------

@dataclass
class Checkpoint:
    name: str
    step: int
    folder: Path
    metrics: dict


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


class RunDir:
    """A run folder on disk. Create one with `RunDir.create`, open one with `RunDir.open`."""

    def __init__(self, path: Path):
        self.path = Path(path)

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
        if (path / "state.json").exists() and path.parent.name == "checkpoints":
            path = path.parent.parent  # a checkpoint folder: its run is two levels up
        run = cls(path)
        if not cls.is_run(run.path):
            raise StudioError(f"{path} is not a run folder (no config.json). Give the folder that "
                              f"`studio train --run-dir` created.")
        return run

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
    def checkpoints(self) -> list[Checkpoint]:
        """Complete checkpoints, oldest first (folders still being written are ignored)."""
        found = []
        if not self.checkpoints_dir.is_dir():
            return found
        for folder in self.checkpoints_dir.iterdir():
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            try:
                state = json.loads((folder / "state.json").read_text())
                found.append(Checkpoint(folder.name, int(state["step"]), folder,
                                        state.get("metrics", {})))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # unreadable: `load_checkpoint` names it if asked for explicitly
        return sorted(found, key=lambda c: c.step)

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
        (safetensors). Keeps the last `keep_last` checkpoints and the best one."""
        from safetensors.torch import save_file

        name = checkpoint_name(step)
        final = self.checkpoint_dir(name)
        tmp = self.checkpoints_dir / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        digests = {}
        for filename, tensors in files.items():
            target = tmp / filename
            save_file(tensors, str(target))
            with open(target, "rb") as f:
                os.fsync(f.fileno())
            digests[filename] = file_digest(target)
        write_json(tmp / "state.json", {**state, "step": step, "files": digests})
        _fsync_dir(tmp)
        if final.exists():  # re-saving the same step (e.g. stop right after a periodic save)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(self.checkpoints_dir)
        best = name if is_best else self.best_checkpoint()
        write_json(self.checkpoints_dir / "index.json", {"best": best, "latest": name})
        self._prune(keep_last, keep={name, best})
        return Checkpoint(name, step, final, state.get("metrics", {}))

    def _prune(self, keep_last: int, keep: set) -> None:
        complete = self.checkpoints()
        for ckpt in complete[:-keep_last] if keep_last > 0 else complete:
            if ckpt.name not in keep:
                shutil.rmtree(ckpt.folder, ignore_errors=True)
        for leftover in self.checkpoints_dir.glob(".tmp-*"):  # from a crash mid-write
            if not leftover.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(leftover, ignore_errors=True)

    def resolve_checkpoint(self, which: str | None = None) -> Path:
        """`which`: None/"latest", "best", a checkpoint name or a step number."""
        complete = self.checkpoints()
        if not complete:
            raise StudioError(f"{self.path} has no checkpoint yet. Train it first "
                              f"(`studio train --resume {self.path}`).")
        if which in (None, "latest"):
            return complete[-1].folder
        if which == "best":
            best = self.best_checkpoint()
            if best and best not in {c.name for c in complete}:
                raise StudioError(f"{self.checkpoints_dir / 'index.json'} names {best} as the best "
                                  f"checkpoint, but {best} is missing or unreadable. The latest "
                                  f"is {complete[-1].name}: give --checkpoint {complete[-1].name} "
                                  f"(or latest).")
            return self.checkpoint_dir(best) if best else complete[-1].folder
        names = {c.name: c.folder for c in complete} | {str(c.step): c.folder for c in complete}
        if which not in names:
            candidate = self.checkpoint_dir(which)
            if candidate.is_dir():
                return candidate  # exists but incomplete/unreadable: load_checkpoint says why
            raise StudioError(f"{self.path} has no checkpoint '{which}'. Available: "
                              f"{', '.join(c.name for c in complete)}.")
        return names[which]

    def load_checkpoint(self, folder: Path) -> tuple[dict, dict]:
        """Verify and read a checkpoint: returns (state, {file name: dict of tensors})."""
        from safetensors.torch import load_file

        state = read_json(folder / "state.json", "checkpoint state")
        tensors = {}
        for filename, expected in state.get("files", {}).items():
            path = folder / filename
            if not path.exists():
                raise self._corrupt(folder, f"{filename} is missing")
            actual = file_digest(path)
            if actual != expected:
                raise self._corrupt(folder, f"{filename} does not match its recorded size/SHA-256 "
                                            f"(truncated or modified)")
            try:
                tensors[filename] = load_file(str(path))
            except Exception as exc:  # safetensors raises its own error types
                raise self._corrupt(folder, f"{filename} is not a valid safetensors file ({exc})")
        return state, tensors

    def _corrupt(self, folder: Path, why: str) -> StudioError:
        others = [c.name for c in self.checkpoints() if c.folder != folder]
        hint = (f"Use an earlier one with --checkpoint {others[-1]}." if others
                else "No other checkpoint is available.")
        return StudioError(f"checkpoint {folder} is damaged: {why}. {hint}")


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
            import imageio.v3 as iio
            frames = iio.imread(Path(folder) / entry["file"], index=None)
            data = frames[..., :3] if frames.ndim == 4 else np.stack([frames] * 3, axis=-1)
        else:
            continue
        samples.append(Sample(kind, data, entry.get("meta", {})))
    return {k: v for k, v in doc.items() if k != "samples"}, samples


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
    candidates = [root] if RunDir.is_run(root) else sorted(root.iterdir())
    runs = [RunDir(p) for p in candidates if RunDir.is_run(p)]
    return sorted(runs, key=lambda r: r.info().get("created", 0), reverse=True)
