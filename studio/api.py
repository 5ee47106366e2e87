"""What the CLI and the window do, as plain functions: train, resume, load, evaluate, generate.

The CLI (studio/cli.py) parses arguments and prints; the window calls the same functions or
starts `studio train --events json` in a child process. Nothing here prints.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import fields, replace
from pathlib import Path

from studio.config import (TrainConfig, from_dict, parse_assignments, resolve_intervals,
                           split_settings, to_dict)
from studio import lora
from studio.errors import StudioError
from studio.registry import default_registry
from studio.runstore import RunDir, read_json, write_json


def cache_dir() -> Path:
    """Where token and feature caches live (STUDIO_CACHE_DIR overrides the platform's)."""
    override = os.environ.get("STUDIO_CACHE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("aigc-studio"))


def build_configs(gen_cls, preset: str | None = None, config_file: str | None = None,
                  settings: list[str] | None = None, overrides: dict | None = None,
                  start_from: dict | None = None, fine_tune: bool = False):
    """Generator config and training config from: defaults < the model started from
    (`start_from`, with the generator's fine-tuning defaults and config) < preset < JSON file < --set <
    explicit flags (overrides). Every value goes through the one validator. A LoRA run whose
    learning rate nobody set trains at lora.default_lr of the one it would have."""
    gen_values: dict = {**(start_from or {}), **(gen_cls.finetune_config if fine_tune else {})}
    train_values: dict = {**gen_cls.train_defaults, **(gen_cls.finetune_defaults if fine_tune else {})}
    given: set[str] = set()  # the training settings the user chose (file, --set, flags)
    if preset:
        if preset not in gen_cls.presets:
            raise StudioError(f"generator '{gen_cls.name}' has no preset '{preset}'. Presets: "
                              f"{', '.join(gen_cls.presets) or 'none'}.")
        gen_values.update(gen_cls.presets[preset])
    if config_file:
        doc = read_json(Path(config_file), "the config file")
        if not isinstance(doc, dict):
            raise StudioError(f"{config_file}: expected a JSON object.")
        if "config" in doc or "train" in doc:  # a run's config.json or a saved preset
            same_generator = doc.get("generator") == gen_cls.name  # a run of an older version
            gen_values.update(run_settings(gen_cls, doc, config_file) if same_generator
                              else doc.get("config", {}))
            train_values.update(doc.get("train", {}))
            given.update(doc.get("train", {}))
        else:
            file_gen, file_train = split_settings(doc, gen_cls.Config, TrainConfig, where=config_file)
            gen_values.update(file_gen)
            train_values.update(file_train)
            given.update(file_train)
    set_gen, set_train = split_settings(parse_assignments(settings), gen_cls.Config, TrainConfig)
    gen_values.update(set_gen)
    train_values.update(set_train)
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    train_values.update(flags)
    given.update(set_train, flags)
    train_config = from_dict(TrainConfig, train_values, "training config")
    if train_config.lora_rank > 0 and "lr" not in given:
        train_config = replace(train_config, lr=lora.default_lr(train_config.lr))
    return (from_dict(gen_cls.Config, gen_values, f"{gen_cls.name} config"),
            resolve_intervals(train_config))


def _ensure_writable(folder: Path, advice: str = "Pick a writable --run-dir.") -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StudioError(f"cannot write the run folder {folder}: {exc.strerror or exc}. "
                          f"{advice}") from None


def _refuse_foreign_folder(folder: Path) -> None:
    """A new run goes into a new or empty folder: a folder of the user's own files is not a
    run, and training there appended to their events.jsonl and mixed our files with theirs."""
    if folder.is_dir() and any(folder.iterdir()):
        raise StudioError(f"{folder} is not empty and not a run folder; a new run needs a new or "
                          f"empty folder. Pick another --run-dir (nothing in {folder} was changed).")


def default_run_dir(gen_name: str) -> Path:
    return Path("runs") / f"{gen_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _callbacks(events: str, run: RunDir):
    from studio import callbacks as cb
    sinks = {"json": [cb.JsonLinesOut()], "bar": [cb.ProgressBar()], "plain": [cb.PlainOut()],
             "none": []}[events]
    extra = []
    try:
        extra.append(cb.TensorBoard(run.path / "tensorboard"))
    except ImportError:  # tensorboard is optional; events.jsonl holds the same scalars
        pass
    return cb.standard_callbacks() + extra + sinks


def train(*args, **kwargs) -> tuple[str, RunDir]:
    """Start a new run, or continue one (`resume`), and train it. Returns (status, run).
    Takes the arguments of `prepare_training`."""
    engine, checkpoint = prepare_training(*args, **kwargs)
    try:
        return engine.fit(resume_from=checkpoint), engine.run
    except StudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - the generator's code raised: one line, not a traceback
        where = where_in_generator(engine.generator, exc)
        if where is None:
            raise  # the studio's own bug (or a callback's): its traceback is what helps
        raise generator_failure(engine.generator, exc, engine.run.path, engine.step, where) from exc


def where_in_generator(gen, exc: Exception) -> str | None:
    """"file:line" of the traceback's last frame in the generator's own files (None: the
    traceback does not pass through them)."""
    from studio.plugin_checks import plugin_files, where_raised
    return where_raised(exc, plugin_files(type(gen).__module__))


def generator_failure(gen, exc: Exception, run_path: Path, step: int | None = None,
                      where: str | None = None) -> StudioError:
    """What a generator's code raised while training (a bug in the plugin), as one line: the
    exception, where in the generator's files it was raised (`where`, found here when not
    given), the run it failed, and what to do. The traceback stays chained to it
    (`raise ... from exc`)."""
    where = where or where_in_generator(gen, exc)
    said = " ".join(str(exc).split()).rstrip(".")
    when = f"at step {step}" if step is not None else "while setting up"
    return StudioError(
        f"generator '{gen.name}' failed {when}: {type(exc).__name__}"
        f"{': ' + said if said else ''}{' at ' + where if where else ''}. The run {run_path} is "
        f"marked failed. Fix the generator (`studio plugin validate {gen.name}` runs it on a "
        f"tiny config), or report it to its author.")


def prepare_training(*args, **kwargs):
    """Everything before the loop (see `_prepare_training` for the arguments). A new run whose
    start fails (bad data, weights that do not fit, Ctrl+C) leaves no run folder behind: the
    folder this call made, or filled when it was empty, is emptied or removed again."""
    start: dict = {}  # the new run's folder: {"folder", "existed", "run_written"}
    locked: list[RunDir] = []  # the run whose lock this call took
    try:
        return _prepare_training(*args, start=start, locked=locked, **kwargs)
    except BaseException:
        for run in locked:
            run.unlock()
        if start:
            _undo_start(**start)
        raise


def _undo_start(folder: Path, existed: bool, run_written: bool) -> None:
    if RunDir.is_run(folder) and not run_written:
        return  # another process made a run there meanwhile: not ours to remove
    if not existed:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for item in folder.iterdir():  # everything in it is ours: it was empty
        if item.is_dir():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)


def _prepare_training(generator: str | type | None = None, data: str | None = None,
                     val_data: str | None = None, run_dir: str | None = None,
                     preset: str | None = None, config_file: str | None = None,
                     settings: list[str] | None = None, max_steps: int | None = None,
                     max_minutes: float | None = None, resume: str | None = None,
                     checkpoint: str | None = None, events: str = "plain",
                     callbacks: list | None = None, init_from: str | None = None,
                     init_from_pretrained: str | None = None, name: str | None = None,
                     notes: str | None = None, *, start: dict, locked: list):
    """Everything before the loop: configs, data, run folder, model. Returns (engine, the
    checkpoint to resume from or None). `generator` is a registered name or a Generator class
    (tests and notebooks); `callbacks` are added after the standard ones. A new run can start
    from another run's weights and assets (`init_from`: a run or checkpoint folder) or from a
    foreign pretrained folder the generator can read (`init_from_pretrained`). `name` and
    `notes` label the run for people (run.json); a resumed run keeps them unless given.
    `start` records the folder a new run is put in, for `prepare_training` to undo on failure;
    `locked` the run whose lock was taken (the engine lets go of it when training ends)."""
    from studio.engine import Engine, barrier, init_distributed, pick_device, resolve_precision

    flags = {"max_steps": max_steps, "max_minutes": max_minutes}
    if resume is not None:
        if preset or config_file:
            raise StudioError("--preset and --config cannot change a run being resumed; use --set "
                              "for training settings, or start a new run.")
        run = RunDir.open(Path(resume))
        doc = run.config()
        # A read-only folder (EROFS, EACCES) said so only as a traceback at the first write.
        _ensure_writable(run.path, f"Make it writable, or copy the run somewhere writable and "
                                   f"resume the copy.")
        if int(os.environ.get("RANK", 0)) == 0:
            run.lock()  # before anything is read to decide on, or written
            locked.append(run)
        gen_cls = _generator_class(generator) if isinstance(generator, type) else \
            run_generator(doc, run.path)
        if generator is not None and _generator_class(generator).name != gen_cls.name:
            raise StudioError(f"{run.path} is a run of generator '{gen_cls.name}', not "
                              f"'{generator}'. Use `studio train --resume {run.path}`.")
        gen_config = from_dict(gen_cls.Config, run_settings(gen_cls, doc, run.config_path),
                               f"{run.config_path}")
        set_gen, set_train = split_settings(parse_assignments(settings), gen_cls.Config,
                                            TrainConfig)
        if set_gen:
            raise StudioError(f"model setting '{next(iter(set_gen))}' cannot change when resuming; "
                              f"only training settings can (e.g. --set lr=...).")
        _refuse_lora_change(doc, set_train, run.path)
        train_values = {**doc.get("train", {}), **set_train,
                        **{k: v for k, v in flags.items() if v is not None}}
        train_config = resolve_intervals(from_dict(TrainConfig, train_values, "training config"))
        # A run stopped before its first checkpoint starts again from step 0 with its config.
        ckpt, resume_notes = _resume_point(run, checkpoint)
        data_doc = doc.get("data", {})
        data, val_data = data or data_doc.get("source"), val_data or data_doc.get("val_source")
        gen = gen_cls(gen_config)
        if ckpt is not None:
            gen.load_assets(run.assets_dir)
    else:
        if generator is None:
            raise StudioError("name a generator (e.g. `studio train text`) or --resume a run; "
                              "`studio generators` lists them.")
        gen_cls = _generator_class(generator)
        init = _describe_init(gen_cls, init_from, init_from_pretrained)
        if init and preset:
            raise StudioError("--preset cannot be combined with --init-from: the model's shape "
                              "comes from the weights you start from.")
        gen_config, train_config = build_configs(gen_cls, preset, config_file, settings, flags,
                                                 start_from=init.get("config"), fine_tune=bool(init))
        run_path = Path(run_dir) if run_dir else default_run_dir(gen_cls.name)
        if RunDir.is_run(run_path) and int(os.environ.get("RANK", 0)) == 0:
            raise StudioError(f"{run_path} already holds a run. Continue it with "
                              f"`studio train --resume {run_path}`, or pick a new --run-dir.")
        if int(os.environ.get("RANK", 0)) == 0:
            _refuse_foreign_folder(run_path)
            start.update(folder=run_path, existed=run_path.is_dir(), run_written=False)
        _ensure_writable(run_path)
        if int(os.environ.get("RANK", 0)) == 0:
            holder = RunDir(run_path)
            try:
                holder.lock()  # two starts into one new folder: the second stops here
            except StudioError:
                start.clear()  # the folder is the other process's now: leave it be
                raise
            locked.append(holder)
        gen = gen_cls(gen_config)
        ckpt, resume_notes = None, []
        doc = {"init": init.get("record"),
               "lora": lora.make_record(train_config, gen_cls, init.get("record"), bool(init))}

    # A new run (or one stopped before its first checkpoint) starts from the weights it names;
    # a LoRA run always starts from its base (verified by its hash), with adapters added.
    lora_record = doc.get("lora")
    if lora_record:
        prepare_model = _prepare_lora(gen, lora_record, Path(resume or run_path),
                                      load_assets=ckpt is None)
    else:
        prepare_model = _prepare_init(gen, doc.get("init")) if ckpt is None else None
    # Refuse a bad device or precision before any data is read or folder written.
    resolve_precision(train_config.precision, pick_device(train_config.device))
    # Under torchrun every rank reads the data; rank 0 alone writes the run folder.
    rank, _ = init_distributed(train_config.device)
    report = gen.load_data(data, val_data, cache_dir())
    if resume is None:
        if rank == 0:
            run = RunDir.create(run_path, {
                "generator": gen_cls.name, "generator_version": gen_cls.version,
                "plugin": _provenance(generator, gen_cls),
                "config": to_dict(gen_config), "train": to_dict(train_config),
                "data": {"source": data, "val_source": val_data}, "init": doc.get("init"),
                **({"lora": lora_record} if lora_record else {})})
            start.update(run_written=True)
            write_json(run.path / "data_report.json", report.to_json())
            run.update(**_labels(name, notes))
        barrier()
        run = locked[0] if locked else RunDir(run_path)  # the engine lets go of the lock
    elif rank == 0:
        # The run goes on under the generator installed now: its version and its settings'
        # names (migrated), so loading it later migrates nothing.
        doc.update(generator_version=gen_cls.version, config=to_dict(gen_config),
                   train=to_dict(train_config), data={"source": data, "val_source": val_data})
        if not isinstance(generator, type):
            doc["plugin"] = _provenance(generator, gen_cls)
        write_json(run.config_path, doc)
        run.update(**_labels(name, notes))

    engine = Engine(gen, train_config, run, _callbacks(events, run) + list(callbacks or []))
    engine.lora = lora_record
    try:
        engine.setup(prepare_model)
        if ckpt is None and engine.is_main:
            gen.save_assets(run.assets_dir)
    except StudioError:
        raise  # a bad start (weights that do not fit): a new run's folder is removed again
    except Exception as exc:  # noqa: BLE001 - build, configure_optimizers or save_assets raised
        # A bug in the generator, not in what was asked: the run is kept, marked failed with
        # the reason in its log, so that the plugin's author can see what happened.
        failure = generator_failure(gen, exc, run.path)
        if engine.is_main:
            engine.emit("error", message=str(failure), step=engine.step)
            run.update(status="failed", step=engine.step, pid=None)
            start.clear()
        raise failure from exc
    for note in [*resume_notes, *report.summary.get("notes", [])]:
        engine.emit("warning", message=note)
    for item, reason in report.skipped[:20]:
        engine.emit("warning", message=f"skipped {item}: {reason}")
    return engine, ckpt


def _resume_point(run: RunDir, which: str | None) -> tuple:
    """The checkpoint a resume continues from, and notes on the damaged ones passed over. Asked
    for none: the newest one that verifies (a damaged one is never taken for a missing one);
    None when the run has no checkpoint folder at all (it stopped before its first)."""
    if which is not None:  # exactly that one, verified before anything is written
        folder = run.resolve_checkpoint(which)
        problem = run.checkpoint_problem(folder)
        if problem:
            raise run.damaged_error(folder, problem)
        return folder, []
    notes, problems = [], []
    folders = run.step_folders()
    for _, folder in reversed(folders):
        problem = run.checkpoint_problem(folder)
        if problem is None:
            return folder, notes
        problems.insert(0, f"{folder.name}: {problem}")
        notes.append(f"checkpoint {folder.name} is damaged ({problem}); resuming from an earlier "
                     f"one. It is kept: a new {folder.name} sets it aside as {folder.name}.kept-TIME.")
    if folders:
        damaged = "; ".join(problems)
        raise StudioError(f"no checkpoint of {run.path} can be resumed from ({damaged}); nothing "
                          f"was changed. Sampling still works from weights whose own hash checks "
                          f"(`studio generate {run.path}`); to train on, start a new run from them "
                          f"(`studio train --init-from {folders[-1][1]}`).")
    return None, []


def _labels(name: str | None, notes: str | None) -> dict:
    """run.json's "name" and "notes", as given (None: not given, keep what the run has)."""
    labels = {"name": name.strip() if name is not None else None, "notes": notes}
    return {key: value for key, value in labels.items() if value is not None}


def _describe_init(gen_cls, init_from: str | None, pretrained: str | None) -> dict:
    """What a new run starts from: the config it implies and a record for config.json."""
    if init_from and pretrained:
        raise StudioError("give either --init-from (a run) or --init-from-hf (a pretrained "
                          "folder), not both.")
    if init_from:
        source = RunDir.open(Path(init_from))
        source_doc = source.config()
        if source_doc["generator"] != gen_cls.name:
            raise StudioError(f"{init_from} is a run of generator '{source_doc['generator']}'; "
                              f"it cannot start a '{gen_cls.name}' run.")
        if source_doc.get("lora"):
            raise StudioError(f"{init_from} is a LoRA run: its checkpoints hold only adapters. "
                              f"Merge them into a plain run first {lora.merge_advice(init_from)} "
                              f"and start from that.")
        given = Path(init_from)
        folder = given if source.path != given else source.resolve_checkpoint("best")
        return {"config": source_doc.get("config", {}),
                "record": {"run": str(source.path), "checkpoint": folder.name}}
    if pretrained:
        return {"config": gen_cls.pretrained_config(pretrained),
                "record": {"pretrained": str(Path(pretrained).resolve())}}
    return {}


def _prepare_init(gen, record: dict | None, load_assets: bool = True):
    """Read the assets (e.g. tokenizer) of what the run starts from, before its data is
    encoded (`load_assets` False: the run has its own); return a function that loads the
    weights once the model is built, or None."""
    from studio.engine import load_model_tensors
    if not record:
        return None
    if "pretrained" in record:
        gen.use_pretrained(record["pretrained"])  # build() loads the weights
        return None
    source = RunDir.open(Path(record["run"]))
    folder = source.checkpoint_dir(record["checkpoint"])
    weights, state, _ = source.load_weights(folder)  # its trainer state is not needed
    if load_assets:
        gen.load_assets(source.assets_dir)
    # A generator's task layer (e.g. a classifier's head, `fresh_on_init`) is made for the new
    # run's classes: whatever the source has there is dropped and the new layer kept as built.
    fresh = tuple(getattr(gen, "fresh_on_init", ()))
    body = {name: tensor for name, tensor in weights.items() if not name.startswith(fresh)}
    aliases = {name: source for name, source in state.get("aliases", {}).items()
               if not name.startswith(fresh) and source in body}

    def load(model):
        own_layer = {name: tensor for name, tensor in model.state_dict().items()
                     if name.startswith(fresh)} if fresh else {}
        load_model_tensors(model, {**body, **own_layer}, aliases, f"{folder} (--init-from)")
    return load


def _prepare_lora(gen, record: dict, run_path: Path, load_assets: bool):
    """For a LoRA run: verify its base (gone or changed: a StudioError saying which and what to
    do), read it as `_prepare_init` does, and return what loads the base into the built model
    and adds the adapters."""
    lora.check_base(record, run_path)
    load_base = _prepare_init(gen, record["base"], load_assets)

    def prepare(model):
        if load_base is not None:  # an imported base is loaded by build() itself
            load_base(model)
        lora.inject(model, record)
    return prepare


LORA_SETTINGS = ("lora_rank", "lora_alpha", "lora_targets")


def _refuse_lora_change(doc: dict, set_train: dict, run_path: Path) -> None:
    """A resumed run keeps its LoRA settings: its checkpoints hold weights of that shape (or
    all weights, without LoRA)."""
    recorded = from_dict(TrainConfig, doc.get("train", {}), "training config")
    asked = from_dict(TrainConfig, {**doc.get("train", {}), **set_train}, "training config")
    for name in LORA_SETTINGS:
        if getattr(asked, name) != getattr(recorded, name):
            raise StudioError(f"{name} cannot change when resuming {run_path} (it was "
                              f"{getattr(recorded, name)!r}): its checkpoints hold weights of "
                              f"those settings. Start a new run (--init-from {run_path}) instead.")


def _generator_class(generator: str | type) -> type:
    return generator if isinstance(generator, type) else default_registry().get(generator)


def _provenance(generator: str | type | None, gen_cls: type) -> dict | None:
    """The package (and its version) that provides the generator, for the run's config.json;
    None for a class given directly (tests, notebooks)."""
    return None if isinstance(generator, type) else default_registry().provenance(gen_cls.name)


def run_generator(doc: dict, run_path, registry=None) -> type:
    """The class of the generator that made a run (its config.json `doc`), from `registry`
    (None: the studio's). When it is not installed, the error names the package the run
    recorded, and the version to install."""
    from importlib.metadata import PackageNotFoundError, version as installed_version
    name = doc.get("generator")
    registry = registry or default_registry()
    plugin = doc.get("plugin") or {}
    package, version = plugin.get("distribution"), plugin.get("version")
    if registry.entry(name) is not None or not package or registry.safe_mode:
        return registry.get(name)
    try:
        installed = installed_version(package)
    except PackageNotFoundError:
        wanted = f"{package}>={version}" if version else package
        raise StudioError(f"{run_path} was made by generator '{name}' of the package {package}"
                          f"{' ' + version if version else ''}, which is not installed: install "
                          f"it (pip install \"{wanted}\") and try again.") from None
    try:
        return registry.get(name)
    except StudioError as exc:
        raise StudioError(f"{exc} The run was made with {package} {version or ''}".rstrip()
                          + f"; the installed {package} {installed} has no generator "
                            f"'{name}'.") from None


def run_settings(gen_cls, doc: dict, where) -> dict:
    """A run's recorded generator settings, as the installed version of the generator names
    them: passed through its `migrate_config` when an older version made the run."""
    from studio.contract import version_tuple
    values = dict(doc.get("config", {}))
    made_by = doc.get("generator_version")
    if made_by is None or str(made_by) == str(gen_cls.version):
        return values
    try:
        older = version_tuple(made_by) < version_tuple(gen_cls.version)
    except ValueError:
        older = True  # versions that are not plain numbers: let the generator decide
    if not older:
        return values
    try:
        migrated = gen_cls.migrate_config(values, str(made_by))
    except Exception as exc:  # noqa: BLE001 - plugin code: said as one line, with the fix
        raise StudioError(f"{where}: generator '{gen_cls.name}' {gen_cls.version} cannot migrate "
                          f"the settings of this run, made by version {made_by}: "
                          f"{type(exc).__name__}: {exc}. Fix its migrate_config, or install "
                          f"version {made_by} of the generator to use this run.") from None
    if not isinstance(migrated, dict):
        raise StudioError(f"{where}: generator '{gen_cls.name}''s migrate_config returned "
                          f"{type(migrated).__name__}, not a dict of settings. Fix the plugin.")
    return migrated


def is_builtin_source(source: str) -> bool:
    """A data set that ships with a generator, named `builtin:NAME` (e.g.
    builtin:customer-service): the generator resolves it, it is no path to check."""
    return source.startswith("builtin:")


def inspect_data(generator: str, source: str | None, settings: list[str] | None = None,
                 val_source: str | None = None):
    """Read and validate data the way training would, without training: the DataReport. With
    `val_source` (held-out data, as `studio train --val-data` takes it) the report covers both:
    its counts, what it skipped and its notes (e.g. labels never seen in training)."""
    gen_cls = _generator_class(generator)
    gen_config, _ = build_configs(gen_cls, settings=settings)
    return gen_cls(gen_config).load_data(source, val_source, cache_dir())


def demo_runs() -> list[Path]:
    """The small pretrained demo runs that ship in assets/demo/ (one per generator)."""
    root = Path(__file__).resolve().parent.parent / "assets" / "demo"
    return sorted(p for p in root.iterdir() if RunDir.is_run(p)) if root.is_dir() else []


def export_slim_run(path: str, dest: str) -> Path:
    """Copy a run with only its best weights (no optimizer state): small enough to ship as a
    demo model in assets/demo/, and loadable by `generate` and the window like any run."""
    run = RunDir.open(Path(path))
    folder = run.resolve_checkpoint("best")
    state, _ = run.load_checkpoint(folder)  # verified before it is copied
    target = RunDir(Path(dest))
    if target.path.exists():
        if not is_exported_run(target.path):  # it once emptied a folder of the user's documents
            raise StudioError(f"{dest} already exists and is not an exported run; nothing in it "
                              f"was changed. Export to a new folder.")
        shutil.rmtree(target.path)  # an earlier export of a demo model, replaced
    target.checkpoint_dir(folder.name).mkdir(parents=True)
    for name in ("config.json", "run.json", "data_report.json", "events.jsonl"):
        if (run.path / name).exists():
            shutil.copy2(run.path / name, target.path / name)
    shutil.copytree(run.assets_dir, target.assets_dir)
    previews = [p for p in sorted(run.previews_dir.glob("step_*"))]
    if previews:
        shutil.copytree(previews[-1], target.previews_dir / previews[-1].name)
    shutil.copy2(folder / "model.safetensors", target.checkpoint_dir(folder.name) / "model.safetensors")
    state["files"] = {"model.safetensors": state["files"]["model.safetensors"]}
    state.pop("optimizers", None)
    write_json(target.checkpoint_dir(folder.name) / "state.json", state)
    write_json(target.checkpoints_dir / "index.json", {"best": folder.name, "latest": folder.name})
    target.update(pid=None)
    return target.path


def is_exported_run(path: Path) -> bool:
    """Whether `path` is a run that export_slim_run wrote: weights only, no trainer state."""
    run = RunDir(path)
    if not run.is_run(path) or not run.step_folders():
        return False
    try:
        return all(set(read_json(folder / "state.json", "state").get("files", {})) <= {"model.safetensors"}
                   for _, folder in run.step_folders())
    except StudioError:
        return False


def export_merged_run(path: str, dest: str, checkpoint: str | None = "best") -> Path:
    """`studio export RUN --merge`: a LoRA run's base and adapters folded into one plain run
    (weights only, as export_slim_run writes) that loads with no base. Written into a
    temporary folder beside `dest` and renamed into place, so `dest` is either the whole run
    or absent."""
    from studio.engine import model_tensors

    source = RunDir.open(Path(path))
    if not source.config().get("lora"):
        raise StudioError(f"{source.path} is not a LoRA run: its weights are whole already, "
                          f"so there is nothing to merge; export it as it is.")
    target = Path(dest)
    if target.exists() and not is_exported_run(target):
        raise StudioError(f"{dest} already exists and is not an exported run; nothing in it "
                          f"was changed. Export to a new folder.")
    run, gen, folder = load_run(path, checkpoint, device="cpu")  # the base is verified here
    state, _ = run.load_checkpoint(folder)
    tensors, aliases = model_tensors(lora.merge(gen.model))
    doc = run.config()
    base = doc.pop("lora")["base"]
    doc["train"] = {**doc.get("train", {}), "lora_rank": 0, "lora_alpha": None, "lora_targets": []}
    doc["merged_from"] = {"run": str(run.path.resolve()), "checkpoint": folder.name, "base": base}
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        merged = RunDir.create(tmp, {k: v for k, v in doc.items() if k != "format"})
        shutil.copytree(run.assets_dir, merged.assets_dir, dirs_exist_ok=True)
        for name in ("data_report.json", "events.jsonl"):
            if (run.path / name).exists():
                shutil.copy2(run.path / name, merged.path / name)
        step = int(state["step"])
        weights_state = {"aliases": aliases, "generator": state.get("generator", {}),
                         "generator_name": gen.name, "generator_version": gen.version,
                         "metrics": state.get("metrics", {})}
        merged.save_checkpoint(step, {"model.safetensors": tensors}, weights_state, keep_last=1,
                               is_best=True)
        merged.update(status="done", step=step, pid=None, name=run.info().get("name"),
                      notes=f"{run.path.name} (LoRA) merged into its base {base.get('run') or base.get('pretrained')}")
        if target.exists():
            shutil.rmtree(target)  # an earlier export, replaced
        os.replace(tmp, target)
    except OSError as exc:
        raise StudioError(f"cannot write {dest}: {exc.strerror or exc}. Pick another folder; "
                          f"nothing was written there.") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_run(path: str, checkpoint: str | None = None, device: str = "auto",
             threads: int = 0):
    """A generator with a run's weights loaded, ready to sample or evaluate (no optimizer)."""
    from studio.engine import bind_device, configure_threads, load_model_tensors, pick_device

    run = RunDir.open(Path(path))
    if checkpoint is None and Path(path).parent.name == "checkpoints":
        checkpoint = Path(path).name  # a checkpoint folder given: that checkpoint, no other
    doc = run.config()
    gen_cls = run_generator(doc, run.path)
    gen = gen_cls(from_dict(gen_cls.Config, run_settings(gen_cls, doc, run.config_path),
                            str(run.config_path)))
    if checkpoint in (None, "latest"):
        folder, weights, state, note = run.latest_weights()
    else:
        folder = run.resolve_checkpoint(checkpoint)
        weights, state, note = run.load_weights(folder)
    if state.get("generator_name", gen_cls.name) != gen_cls.name:
        raise StudioError(f"{folder} was written by generator '{state.get('generator_name')}'.")
    configure_threads(threads)
    gen.load_assets(run.assets_dir)
    lora_record = state.get("lora")
    prepare_model = _prepare_lora(gen, lora_record, run.path, load_assets=False) \
        if lora_record else None
    bind_device(gen, pick_device(device), doc.get("train", {}).get("precision", "auto"))
    if prepare_model is not None:  # base + adapters
        prepare_model(gen.model)
        lora.load_adapter_tensors(gen.model, weights, str(folder))
    else:
        load_model_tensors(gen.model, weights, state.get("aliases", {}), str(folder))
    gen.model.eval()
    gen.load_extra_state(state.get("generator", {}))
    gen.weights_note = note  # what was damaged in the checkpoint, said with the samples
    return run, gen, folder


def evaluate(path: str, data: str | None = None, checkpoint: str | None = None,
             device: str = "auto") -> dict:
    run, gen, folder = load_run(path, checkpoint, device)
    if data is None:
        doc = run.config()["data"]
        gen.load_data(doc.get("source"), doc.get("val_source"), cache_dir())
    elif not is_builtin_source(data) and not Path(data).exists():
        raise StudioError(f"data path {data} does not exist. Give held-out text to evaluate on.")
    import torch
    with torch.no_grad():
        metrics = gen.evaluate(source=data, max_batches=None)
        baselines = gen.evaluate_baselines(source=data)
    plain = {k.removeprefix("val_"): v for k, v in metrics.items()}
    return {"run": str(run.path), "checkpoint": folder.name, "data": data or "held-out split",
            **plain, **({"baselines": baselines} if baselines else {})}


def generate(path: str, prompt=None, n: int = 1, seed: int = 0, settings: list[str] | None = None,
             checkpoint: str | None = None, device: str = "auto", explain: bool = False):
    """Samples of a run. `explain`: turn on the generator's `explain` sampling setting where it
    has one (what each output token's probability was), unless the settings say otherwise."""
    run, gen, folder = load_run(path, checkpoint, device)
    values = parse_assignments(settings)
    if explain and "explain" in {f.name for f in fields(gen.SampleConfig)}:
        values.setdefault("explain", True)
    params = from_dict(gen.SampleConfig, values, "sampling settings")
    import torch
    with torch.no_grad():
        samples = gen.sample(params, n=n, seed=seed, prompt=prompt)
    for s in samples:
        s.meta.update(run=str(run.path), checkpoint=folder.name, generator=gen.name)
        if gen.weights_note:
            s.meta["note"] = "; ".join(filter(None, (s.meta.get("note"), gen.weights_note)))
    return samples


def attention(path: str, text: str, layer: int = 0, head: int = 0, checkpoint: str | None = None,
              device: str = "auto") -> dict:
    """What one attention head of a run's model looks at as it reads `text`, as the
    generator's `attention` method gives it (the text generator: the tokens read and each
    one's weights over the tokens before it)."""
    run, gen, _ = load_run(path, checkpoint, device)
    if not callable(getattr(gen, "attention", None)):
        raise StudioError(f"{run.path} is a {gen.name} run; this generator has no attention view.")
    return gen.attention(text, layer=layer, head=head)


def stream(path: str, prompt=None, seed: int = 0, settings: list[str] | None = None,
           checkpoint: str | None = None, device: str = "auto"):
    """One sample's output as it is generated (pieces of text for text generators)."""
    import torch
    run, gen, folder = load_run(path, checkpoint, device)
    if gen.modality != "text":  # the contract's default stream yields whole samples: arrays
        raise StudioError(f"only text runs can stream their output; {run.path} is a "
                          f"{gen.modality} run: generate its samples whole instead.")
    params = from_dict(gen.SampleConfig, parse_assignments(settings), "sampling settings")
    with torch.no_grad():
        yield from gen.stream(params, seed=seed, prompt=prompt)


def runs_table(root: str) -> list[dict]:
    from studio.runstore import list_runs
    rows = []
    for run in list_runs(Path(root)):
        info = run.info()
        try:
            doc = run.config()
        except StudioError:
            continue
        status = run.status()
        best = info.get("best") or {}
        rows.append({"run": str(run.path), "name": info.get("name") or run.path.name,
                     "notes": info.get("notes", ""), "generator": doc["generator"], "status": status,
                     "step": info.get("step", 0), "max_steps": doc.get("train", {}).get("max_steps"),
                     "best_metric": best.get("metric"), "best": best.get("value"),
                     "best_step": best.get("step"), "measured_with": best.get("measured_with"),
                     "checkpoints": len(run.checkpoints())})
    return rows


def control(path: str, command: str) -> None:
    run = RunDir.open(Path(path))
    if run.owner() is None:
        status = run.info().get("status", "?")
        if status in ("running", "paused"):
            status = "interrupted"
        raise StudioError(f"{run.path} is not training now (status: {status}); "
                          f"start it with `studio train --resume {run.path}`.")
    run.write_control(command)


def describe_generator(name: str) -> dict:
    from studio.config import describe
    gen_cls = default_registry().declarations(name)  # no torch where the generator allows
    doc = gen_cls.describe()
    doc["train"] = describe(TrainConfig)
    for field in doc["train"]:
        if field["name"] in gen_cls.train_defaults:
            field["default"] = gen_cls.train_defaults[field["name"]]
    return json.loads(json.dumps(doc, default=str))

