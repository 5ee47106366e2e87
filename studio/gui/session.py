"""What the panels share: the chosen generator, the data, the runs folder, the current run.

Panels never talk to each other directly; they read and set the session, and react to its
signals. The session reads runs from disk only (the run folder is the contract).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from studio.gui.settings import Settings
from studio.registry import Registry, default_registry
from studio.runstore import RunDir

DEMO_FOLDER = Path(__file__).resolve().parents[2] / "assets" / "demo"  # as api.demo_runs()


class Session(QObject):
    generator_changed = Signal(str)
    data_changed = Signal(object)  # str path, or None for the built-in demo data
    val_data_changed = Signal(object)  # the held-out data's path, or None: a part of the data
    # The current run: the one the title bar names, Train shows (charts, previews), Generate
    # samples from and Ctrl+G uses. "" when there is none (e.g. no run of this generator yet).
    run_changed = Signal(str)
    runs_changed = Signal()  # runs were added, finished or deleted
    theme_changed = Signal(str)  # "light" or "dark", after the window's palette changed
    # What the next run learns to do, for generators with a `task` setting (the text
    # generator: "generate", "classify" or "tag"); "" for those without. Data is read for it.
    task_changed = Signal(str)

    def __init__(self, settings: Settings | None = None, registry: Registry | None = None):
        super().__init__()
        self.settings = settings or Settings.load()
        self.registry = registry or default_registry()
        self.generator = self.settings.last_generator
        self.current_run: str | None = None
        self.task: str | None = None  # the Train form's task setting; None: the generator has none
        # The data chosen last time (training and held-out), if it is still there; `data_note`
        # says what is not (a built-in set's name is always there).
        self.data_source: str | None = None
        self.val_source: str | None = None
        self.data_note: str | None = None
        gone = []
        for attribute, what, instead in (
                ("data_source", "data", "using the built-in data. Pick your files again in Data."),
                ("val_source", "held-out data", "none is given now. Pick it again in Data's "
                                                "Held-out data row.")):
            remembered = getattr(self.settings, attribute)
            if remembered and _still_there(remembered):
                setattr(self, attribute, remembered)
            elif remembered:
                gone.append(f"The {what} chosen last time, {remembered}, is no longer there: "
                            f"{instead}")
        self.data_note = " ".join(gone) or None
        self.runs_changed.connect(self._forget_a_deleted_run)

    @property
    def runs_folder(self) -> Path:
        return Path(self.settings.runs_folder)

    def generator_class(self):
        return self.registry.get(self.generator)

    def usable_generators(self) -> list[dict]:
        return [row for row in (e.info() for e in self.registry.entries()) if row["status"] == "ok"]

    def broken_generators(self) -> list[dict]:
        return [row for row in (e.info() for e in self.registry.entries()) if row["status"] != "ok"]

    def set_generator(self, name: str) -> None:
        """Pick the generator every panel works with. The current run follows: a run of
        another generator gives way to the newest run of this one (or none)."""
        if name == self.generator:
            return
        self.generator = name
        self.settings.last_generator = name
        self.generator_changed.emit(name)
        if not self.current_run or self.run_generator(self.current_run) != name:
            self._set_current_run(self.newest_run(name))

    def newest_run(self, generator: str) -> str | None:
        """The newest run of `generator` in the runs folder, else its demo run, else None."""
        return next((r["run"] for r in self._runs_or_none() if r.get("generator") == generator), None)

    def _forget_a_deleted_run(self) -> None:
        """A current run deleted from disk gives way to the newest run of the generator: no
        panel keeps showing (or offers to resume) a folder that is gone."""
        if self.current_run and not Path(self.current_run).is_dir():
            self._set_current_run(self.newest_run(self.generator))

    def set_data(self, source: str | None) -> None:
        """Choose the training data (None: the built-in data); remembered for the next launch."""
        self.data_source = source or None
        self.data_note = None
        self.settings.data_source = self.data_source or ""
        self.settings.save()
        self.data_changed.emit(self.data_source)

    def set_val_data(self, source: str | None) -> None:
        """Choose the held-out data (None: the generator holds out a part of the training
        data); remembered for the next launch, as the training data is."""
        source = source or None
        if source == self.val_source:
            return
        self.val_source = source
        self.settings.val_source = source or ""
        self.settings.save()
        self.val_data_changed.emit(source)

    def set_task(self, task: str | None) -> None:
        """The task the Train form has chosen (None: the generator has no task setting)."""
        task = task or None
        if task != self.task:
            self.task = task
            self.task_changed.emit(task or "")

    def data_settings(self) -> list[str]:
        """The settings that decide how the data is read, as api.inspect_data takes them: a
        classify or tag run reads labelled data, a generation run plain text."""
        return [f"task={self.task}"] if self.task else []

    def open_run(self, path: str | None) -> None:
        """Make `path` the current run (None or "": no current run). The generator picker
        follows the run's generator first, so panels rebuilt for it see the run already."""
        if path:
            generator = self.run_generator(path)
            if generator and generator != self.generator:
                self.current_run = str(path)  # set first: set_generator keeps a run of its generator
                self.set_generator(generator)
        self._set_current_run(str(path) if path else None)

    def _set_current_run(self, path: str | None) -> None:
        changed = path != self.current_run
        self.current_run = path
        if changed or path:
            self.run_changed.emit(path or "")

    def has_own_runs(self) -> bool:
        """Whether the runs folder holds a run (the demo runs do not count); reads no run."""
        folder = self.runs_folder
        return folder.is_dir() and any(RunDir.is_run(p) for p in folder.iterdir())

    @staticmethod
    def run_title(path: str) -> str:
        """What the title bar calls a run (see `title_of`), read from its run.json."""
        run = RunDir(Path(path))
        return title_of(run.path.name, run.info().get("name"),
                        demo=run.path.resolve().parent == DEMO_FOLDER)

    @staticmethod
    def run_generator(path: str) -> str | None:
        """The generator a run folder was made with (None if it cannot be read)."""
        from studio.errors import StudioError
        try:
            return RunDir.open(Path(path)).config().get("generator")
        except (StudioError, OSError):
            return None

    def _runs_or_none(self) -> list[dict]:
        from studio.errors import StudioError
        try:
            return self.all_runs()
        except (StudioError, OSError):
            return []

    def new_run_dir(self, name: str = "") -> Path:
        """A fresh folder in the runs folder: the run's name made safe for a file name (or the
        generator's), then a time stamp so names can repeat."""
        import re
        import time
        self.runs_folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^\w.-]+", "-", name.strip(), flags=re.UNICODE).strip("-.")[:40]
        path = self.runs_folder / f"{slug or self.generator}-{stamp}"
        n = 2
        while path.exists():
            path = self.runs_folder / f"{self.generator}-{stamp}-{n}"
            n += 1
        return path

    def all_runs(self) -> list[dict]:
        """Rows of `studio runs` for the runs folder, plus the built-in demo runs."""
        from studio import api
        rows = api.runs_table(str(self.runs_folder)) if self.runs_folder.exists() else []
        for demo in api.demo_runs():
            for row in api.runs_table(str(demo)):
                rows.append({**row, "status": "demo"})
        return rows


def why_not_a_base(row: dict) -> str | None:
    """Why a run (a row of `all_runs`) cannot be the weights a new run starts from (Train's
    Start from, Runs › Fine-tune from this run), in words; None when it can. Its best
    checkpoint is taken, as `studio train --init-from RUN` takes it, so it needs one, and it
    must not be training now; a LoRA run holds only adapters (the core refuses it too)."""
    from studio.errors import StudioError
    name = row.get("name") or Path(row["run"]).name
    if row.get("status") in ("running", "paused"):
        return f"{name} is training now; start from it once it has finished or stopped"
    if not row.get("checkpoints"):
        return f"{name} has no checkpoint to start from"
    try:
        lora_run = bool(RunDir.open(Path(row["run"])).config().get("lora"))
    except (StudioError, OSError) as exc:
        return f"{name} cannot be read: {exc}"
    if lora_run:
        return (f"{name} is a LoRA run: its checkpoints hold only adapters (merge them into a "
                f"plain run from a terminal first)")
    return None


def _still_there(source: str) -> bool:
    """Whether remembered data can still be read: a path that exists, or a built-in set's name."""
    from studio import api
    return api.is_builtin_source(source) or Path(source).exists()


def title_of(folder: str, name: str | None, demo: bool) -> str:
    """What the window calls a run, everywhere: the name it was given, else its folder's name;
    "text demo" for a built-in demo run (its folder is just the generator's name)."""
    if name and name != folder:
        return str(name)
    return f"{folder} demo" if demo else folder
