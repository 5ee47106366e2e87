"""`studio plugin validate`: the declaration checks (studio/plugin_checks.py), the API range
and agreement with the light config.py declarations (as the registry refuses them), plus what
needs the generator to run: presets and train_defaults, two training steps on a tiny config, and
`evaluate()` / `evaluate(source)` returning the metric that picks the best checkpoint.

Every problem says where in the plugin's code it comes from (file and line). torch is imported
only by the training check, so `studio --help` stays light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from studio.errors import StudioError
from studio.plugin_checks import (DECLARATION_CHECKS, PluginProblem, as_problem, plugin_files,
                                   where_defined)


@dataclass
class CheckResult:
    generator: str
    label: str
    problem: str | None = None  # None: passed
    skipped: str | None = None  # why the check did not run

    @property
    def ok(self) -> bool:
        return self.problem is None


def plugins_to_validate(name: str | None, registry=None) -> list:
    """The entries `studio plugin validate [NAME]` checks: NAME (built-ins allowed), or every
    plugin that does not ship with the studio."""
    from studio.registry import BUILTIN_DISTRIBUTION, default_registry
    registry = registry or default_registry()
    if name is not None:
        entry = registry.entry(name)
        if entry is None:
            raise StudioError(f"no generator named '{name}'. Registered generators: "
                              f"{', '.join(registry.names()) or 'none'} (see `studio generators`).")
        return [entry]
    return [e for e in registry.entries() if e.distribution != BUILTIN_DISTRIBUTION]


def validate(entry, settings: list[str] | None = None, data: str | None = None
             ) -> Iterator[CheckResult]:
    """Check one registered generator as the studio will use it, one result per check; the
    run-time checks are skipped once a declaration check fails. Training uses the generator's
    `tiny` preset when it has one, else its defaults, then `settings` (--set k=v), for 2 steps
    on `data` (None: the generator's built-in demo data), in a temporary folder."""
    from studio.registry import guarded
    root = plugin_files(entry.target) if entry.target and ":" in entry.target else None

    cls, problem = None, None
    with guarded() as caught:
        cls = entry.import_class()
    if caught:
        problem = as_problem(caught[0], root)
    yield CheckResult(entry.name, f"imports through its entry point ({entry.target})",
                      str(problem) if problem else None)
    if cls is None:
        return
    declared = True
    checks = [(label, lambda check=check: check(cls, entry.name))
              for label, check in DECLARATION_CHECKS]
    checks += [(API_CHECK, lambda: _check_api(cls))]
    for label, run_check in checks:
        result = _run(entry.name, label, run_check, root)
        declared = declared and result.ok
        yield result
    if not declared:
        return
    # Once the class itself passes (light declarations get the same checks: a problem they
    # share would be said twice). The registry refuses a class that disagrees: nothing runs.
    agrees = _run(entry.name, LIGHT_CHECK, lambda: _check_light_declarations(cls, entry), root)
    yield agrees
    if not agrees.ok:
        return
    yield _run(entry.name, "presets name real settings and their values validate",
               lambda: _check_presets(cls), root)
    yield _run(entry.name, "train_defaults name real training settings and their values "
               "validate", lambda: _check_train_defaults(cls), root)
    yield from _check_running(entry, cls, settings, data, root)


API_CHECK = "its `api` range includes this studio's plugin API version"
LIGHT_CHECK = "it declares what its light config.py declares for it (the listing's source)"


def _check_api(cls) -> None:
    from studio.registry import api_problem
    problem = api_problem(cls)
    if problem is not None:
        raise problem


def _check_light_declarations(cls, entry) -> None:
    """The class declares what its light config.py says (what `studio generators` and the
    window's picker showed without importing it), as the registry checks on loading."""
    entry.light_declarations()  # raises StudioError when the light declarations are broken
    problem = entry._disagreement(cls)  # the registry's own rule, not a copy of it
    if problem is not None:
        raise problem


def _run(generator: str, label: str, check: Callable, root: Path | None) -> CheckResult:
    from studio.registry import guarded
    with guarded() as caught:
        check()
    return CheckResult(generator, label, str(as_problem(caught[0], root)) if caught else None)


def _check_presets(cls) -> None:
    from studio.config import from_dict
    presets = getattr(cls, "presets", {})
    if not isinstance(presets, dict):
        raise PluginProblem(f"presets must be a dict of name -> settings, got {presets!r}",
                            where_defined(cls))
    for name, values in presets.items():
        try:
            from_dict(cls.Config, values, f"preset '{name}'")
        except StudioError as exc:
            raise PluginProblem(str(exc), where_defined(cls)) from None


def _check_train_defaults(cls) -> None:
    from studio.config import TrainConfig, from_dict
    for attribute, config_cls in (("train_defaults", TrainConfig), ("finetune_defaults", TrainConfig),
                                  ("finetune_config", cls.Config)):
        try:
            from_dict(config_cls, getattr(cls, attribute, {}), attribute)
        except StudioError as exc:
            raise PluginProblem(str(exc), where_defined(cls)) from None


TRAIN_STEPS = 2


def _check_running(entry, cls, settings, data, root) -> Iterator[CheckResult]:
    """Two training steps, then evaluate() and evaluate(source) on the trained run."""
    import tempfile
    from studio import api
    with tempfile.TemporaryDirectory(prefix="studio-validate-") as tmp:
        run_dir = Path(tmp) / "run"
        preset = "tiny" if "tiny" in getattr(cls, "presets", {}) else None
        start = [*(settings or []), "device=cpu", "eval_every=0", "preview_every=0",
                 "checkpoint_every=0", "warmup_steps=0"]
        label = (f"trains {TRAIN_STEPS} steps (preset {preset or '(defaults)'}"
                 f"{', --set ' + ' '.join(settings) if settings else ''})")
        trained = _run(entry.name, label, lambda: api.train(
            entry.name, data=data, run_dir=str(run_dir), preset=preset, settings=start,
            max_steps=TRAIN_STEPS, events="none"), root)
        yield trained
        if not trained.ok:
            return
        held_out: dict = {}
        yield _run(entry.name, f"evaluate() returns {cls.best_metric}, finite",
                   lambda: held_out.update(_evaluate(cls, run_dir, given=data, own=True)), root)
        source = data or held_out.get("source")
        if source is None:
            yield CheckResult(entry.name, "evaluate(source) returns the best metric",
                              skipped="the built-in data has no file to give as source: "
                                      "pass --data to check it")
            return
        yield _run(entry.name, f"evaluate(source={Path(source).name}) returns "
                   f"{cls.best_metric}, finite",
                   lambda: _evaluate(cls, run_dir, given=source, own=False), root)


def _evaluate(cls, run_dir: Path, given: str | None, own: bool) -> dict:
    """evaluate() on the run's held-out split (own) or evaluate(source=given), as `studio
    eval` calls them; returns {"source": the file the run trained on, if any}."""
    import torch

    from studio import api
    run, gen, _ = api.load_run(str(run_dir), device="cpu")
    data_doc = run.config()["data"]
    report = gen.load_data(data_doc.get("source"), data_doc.get("val_source"), api.cache_dir())
    with torch.no_grad():
        metrics = gen.evaluate() if own else gen.evaluate(source=given, max_batches=None)
    what = "evaluate()" if own else "evaluate(source)"
    if not isinstance(metrics, dict):
        raise PluginProblem(f"{what} returned {type(metrics).__name__}, not a dict of metrics",
                            where_defined(type(gen)))
    best = getattr(cls, "best_metric", None)
    if best:
        value = metrics.get(best)
        if value is None:
            raise PluginProblem(f"{what} returned no '{best}' (the class's best_metric; it "
                                f"returned {', '.join(map(str, metrics)) or 'nothing'}): runs "
                                f"would never get a best checkpoint", where_defined(type(gen)))
        if not (isinstance(value, (int, float)) and math.isfinite(float(value))):
            raise PluginProblem(f"{what} returned {best}={value!r}, not a finite number",
                                where_defined(type(gen)))
    source = report.source if report.source and Path(report.source).exists() else None
    return {"source": source}
