"""The conformance suite every generator passes: the built-ins and third-party plugins alike.

Use it from your plugin's tests (pytest is all it needs besides the studio itself)::

    from studio.testing import GeneratorConformance

    class TestMyGenerator(GeneratorConformance):
        generator = MyGenerator                  # the class (installed or not)
        tiny_config = {"width": 8}               # a config that trains in a second on CPU
        sample_params = {}                       # sampling settings for the checks

        def make_data(self, folder):             # write a small dataset, return its path
            ...

It checks, each failure saying what went wrong and how to fix it:

- the entry point: when the class is installed under `aigc_studio.generators`, the entry point
  has the class's `name` and loads this very class (the studio finds runs' generators by name);
- the config: it survives a JSON round trip, rejects unknown keys, every setting has help;
  Config and SampleConfig are dataclasses whose defaults pass the validator as they are; the
  default config builds a model on the test data (it is not trained:
  the default is the real-size model, minutes on a CPU; the tiny config checks training);
  presets and `train_defaults` validate;
- `training_step` returns {"loss": a scalar}, and one batch trained repeatedly lowers it;
- `get_batch` draws from its `rng` only (the engine checkpoints that generator, not the global
  RNGs or a private one), and a run stopped halfway and resumed equals a straight run exactly:
  every step's loss, every weight, the optimizer and RNG states;
- a stop request is honoured with a checkpoint, and the run resumes from it;
- a checkpoint saved and loaded gives back the same weights and the same samples; the same
  seed gives the same sample; samples are plain data of the declared kind;
- `evaluate()` on the held-out split and `evaluate(source=PATH)` (what `studio eval --data`
  calls) return finite numbers including `best_metric`;
- `stream` (where the generator implements it) yields the pieces of the text `sample` returns
  with the same seed (after the prompt, which the sample may begin with);
- the order of calls: a new run calls load_data, then build, then save_assets; a resumed one
  load_assets, then load_data, then build;
- previews are plain data.

Installing the studio also installs a pytest plugin (studio.pytest_plugin) that lets pytest show
the values behind a failed check of this suite and offers a `studio_cache_dir` fixture.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch

from studio import api
from studio.callbacks import Callback, EvalMode
from studio.config import TrainConfig, check_field, from_dict, to_dict
from studio.contract import Generator, Sample, SampleRequest
from studio.errors import StudioError
from studio.registry import GROUP, default_registry
from studio.runstore import RunDir

QUIET = ["eval_every=0", "preview_every=0", "checkpoint_every=0", "device=cpu", "warmup_steps=0",
         "log_every=1"]

# What to do when a resumed run differs from a straight one.
RESUME_ADVICE = ("A resumed run must repeat a straight one exactly: draw batches only from "
                 "get_batch's `rng` (the engine checkpoints it); keep every other piece of "
                 "training state in the model's state_dict (parameters and persistent buffers) "
                 "or in extra_state()/load_extra_state(); and let load_data, which a resume calls "
                 "after load_assets, keep what load_assets restored (e.g. the vocabulary).")


class StopAfter(Callback):
    """Asks the run to stop (as the window's Stop button does) once `step` is reached."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, engine, metrics):
        if engine.step == self.step:
            engine.run.write_control("stop")


def assert_plain_sample(sample: Sample, modality: str) -> None:
    shapes = {"text": "a str", "image": "an HxWxC uint8 numpy array",
              "video": "a TxHxWxC uint8 numpy array"}
    fix = f"a {modality} generator's samples are Sample('{modality}', {shapes[modality]}, meta)."
    assert isinstance(sample, Sample), f"sample() returned a {type(sample).__name__}: {fix}"
    assert sample.kind == modality, f"a sample's kind is {sample.kind!r}: {fix}"
    assert isinstance(sample.meta, dict), f"a sample's meta is a {type(sample.meta).__name__}: {fix}"
    try:
        json.dumps(sample.meta)
    except TypeError as exc:
        raise AssertionError(f"a sample's meta is not JSON-able ({exc}); it is saved as the "
                             f"sample's lineage: put numbers, strings, lists and dicts in it.") from None
    data = sample.data
    if modality == "text":
        assert isinstance(data, str), f"a sample's data is a {type(data).__name__}: {fix}"
        return
    assert isinstance(data, np.ndarray) and data.dtype == np.uint8, \
        f"a sample's data is {describe_value(data)}: {fix}"
    assert data.ndim == (3 if modality == "image" else 4) and data.shape[-1] in (1, 3, 4), \
        f"a sample's data has shape {data.shape}: {fix} (C is 1, 3 or 4)"


def describe_value(value) -> str:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"a {type(value).__name__} of {value.dtype} and shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def same_samples(a: list[Sample], b: list[Sample]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x.data, str) or isinstance(y.data, str):
            if x.data != y.data:
                return False
        elif not np.array_equal(x.data, y.data):
            return False
    return True


def near_samples(a: Sample, b: Sample) -> bool:
    """Same kind and data, arrays within one level (a batched forward rounds differently)."""
    if a.kind != b.kind:
        return False
    if isinstance(a.data, np.ndarray) or isinstance(b.data, np.ndarray):
        return (np.shape(a.data) == np.shape(b.data) and np.abs(
            np.asarray(a.data, dtype=np.int64) - np.asarray(b.data, dtype=np.int64)).max() <= 1)
    return a.data == b.data


def same_batch(a, b) -> bool:
    """Whether two batches (tensors, arrays, and tuples, lists or dicts of them) are equal."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.shape == b.shape and bool(torch.equal(a.cpu(), b.cpu())))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_batch(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_batch(a[k], b[k]) for k in a)
    return a == b


def progress_losses(run_dir: Path) -> dict[int, float]:
    """step -> loss from the run log (the suite trains with log_every=1)."""
    return {e["step"]: e["loss"] for e in RunDir(run_dir).events() if e["event"] == "progress"}


def final_tensors(run_dir: Path) -> dict[str, np.ndarray]:
    """Every tensor of the run's latest checkpoint: weights, optimizer and RNG states."""
    from safetensors.numpy import load_file
    folder = RunDir(run_dir).checkpoints()[-1].folder
    return {**load_file(str(folder / "model.safetensors")),
            **load_file(str(folder / "trainer.safetensors"))}


def recording(cls: type, calls: list[str]) -> type:
    """A subclass of `cls` that notes each lifecycle call in `calls` (for the order check)."""
    def noted(method: str):
        def call(self, *args, **kwargs):
            calls.append(method)
            return getattr(super(recorder, self), method)(*args, **kwargs)
        return call
    recorder = type(cls.__name__, (cls,), {m: noted(m) for m in
                                           ("load_data", "build", "save_assets", "load_assets")})
    recorder.__module__, recorder.__qualname__ = cls.__module__, cls.__qualname__
    return recorder


def failure_hint(exc: BaseException) -> str:
    if isinstance(exc, TypeError) and "JSON serializable" in str(exc):
        return (" A checkpoint keeps extra_state() in state.json: return JSON-able data from it "
                "(numbers, strings, lists, dicts; .item() or .tolist() for tensors and numpy "
                "values), and keep tensors in the model's state_dict.")
    return ""


class GeneratorConformance:
    generator: type
    tiny_config: dict = {}
    sample_params: dict = {}
    train_steps: int = 6  # even: the resume check stops halfway
    prompt = None  # what the stream check passes as `prompt`

    def make_data(self, folder: Path) -> str:
        raise NotImplementedError("write a small dataset into `folder` and return its path")

    # -- helpers
    @pytest.fixture
    def data(self, tmp_path) -> str:
        folder = tmp_path / "data"
        folder.mkdir()
        return self.make_data(folder)

    @pytest.fixture(autouse=True)
    def _registered(self, tmp_path, monkeypatch):
        """Runs are loaded by generator name through the registry: an installed generator is
        found through its entry point; one that is not installed (or whose name an installed
        one holds) is registered for the test, and what held the name is put back after it."""
        monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path / "cache"))
        registry, cls = default_registry(), self.generator
        previous = None
        if cls.name in registry.names():
            try:
                previous = registry.get(cls.name)
            except StudioError:
                pass
            if previous is cls:
                yield
                return
        registry.add(cls.name, cls)
        yield
        if previous is not None:
            registry.add(cls.name, previous)

    def settings(self, extra: list[str] = ()) -> list[str]:
        return [f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}"
                for k, v in self.tiny_config.items()] + QUIET + list(extra)

    def params(self):
        return from_dict(self.generator.SampleConfig, self.sample_params, "sample_params")

    def train(self, data, run_dir, steps, extra=(), callbacks=None, resume=None, generator=None):
        """Train (or resume) the tiny config; a failure says which and why."""
        try:
            engine, ckpt = api.prepare_training(
                generator or self.generator, data=data,
                run_dir=str(run_dir) if resume is None else None,
                settings=self.settings(extra) if resume is None else [f"max_steps={steps}"],
                max_steps=steps, resume=str(resume) if resume else None, events="none",
                callbacks=callbacks)
            status = engine.fit(resume_from=ckpt)
        except Exception as exc:
            what = f"resuming {resume} to step {steps}" if resume else f"training {steps} steps"
            said = str(exc).rstrip(".")
            raise AssertionError(f"{what} of the tiny config failed: {type(exc).__name__}: "
                                 f"{said}.{failure_hint(exc)}") from exc
        return engine, status

    def loaded(self, data, config: dict | None = None) -> Generator:
        """A generator of the tiny config (or `config`) on the CPU with the test data read."""
        gen = self.generator(self.generator.config_from(
            self.tiny_config if config is None else config))
        gen.device = torch.device("cpu")
        gen.load_data(data, None, api.cache_dir())
        return gen

    def fixed_batch_loss(self, gen, batch, ctx) -> float:
        """Loss on `batch` without changing the model. Manual-optimization generators, whose
        training_step steps the optimizers, override this with their own measure."""
        with torch.no_grad():
            return float(gen.training_step(batch, ctx)["loss"])

    # -- the checks
    def test_entry_point_loads_this_class(self):
        cls = self.generator
        target = f"{cls.__module__}:{cls.__qualname__}"
        points = [ep for ep in entry_points(group=GROUP)
                  if ep.name == cls.name or ep.value.replace(" ", "") == target]
        if not points:
            pytest.skip(f"{target} is not installed: to have the studio find it, declare it under "
                        f"[project.entry-points.\"{GROUP}\"] as {cls.name} = \"{target}\" in "
                        f"pyproject.toml and `pip install -e .`")
        for ep in points:
            assert ep.name == cls.name, (
                f"the entry point '{ep.name}' = \"{ep.value}\" differs from the class's name "
                f"'{cls.name}': runs record the class's name and are loaded by it, so `studio "
                f"generate` would not find the generator. Name the entry point '{cls.name}'.")
            try:
                loaded = ep.load()
            except Exception as exc:
                raise AssertionError(f"the entry point '{ep.name}' = \"{ep.value}\" fails to load: "
                                     f"{type(exc).__name__}: {exc}") from exc
            assert loaded is cls, (
                f"the entry point '{ep.name}' loads {ep.value}, not the class under test "
                f"({target}): the studio would run that one. Point the entry point at "
                f"\"{target}\", or reinstall the package (`pip install -e .`).")
        assert default_registry().get(cls.name) is cls, \
            f"the studio's registry does not resolve '{cls.name}' to {target}"

    def test_config_round_trip(self):
        cls = self.generator
        config = cls.config_from(self.tiny_config)
        plain = json.loads(json.dumps(to_dict(config)))
        assert from_dict(cls.Config, plain) == config, (
            f"the config does not survive a JSON round trip (runs store it in config.json): "
            f"{config!r} came back as {from_dict(cls.Config, plain)!r}. Use fields of type int, "
            f"float, str, bool or list (optionally `| None`), not tuples, sets or objects.")
        with pytest.raises(StudioError, match="unknown setting"):
            cls.config_from({**self.tiny_config, "no_such_setting_xyz": 1})
        described = cls.describe()
        assert {f["name"] for f in described["config"]} == set(to_dict(config))
        missing = [f["name"] for f in described["config"] if not f.get("help")]
        assert not missing, (f"settings without help text: {', '.join(missing)}. Declare each "
                             f"field with studio.config.setting(default, \"what it does\", ...).")

    def test_default_config_validates_and_builds(self, data):
        """Not trained: the default config is the real-size model (minutes per step on a busy
        CPU for the built-ins); the tiny config checks training."""
        cls = self.generator
        for kind in ("Config", "SampleConfig"):
            schema = getattr(cls, kind)
            assert dataclasses.is_dataclass(schema), (
                f"{cls.__qualname__}.{kind} is not a dataclass: declare it with @dataclass and "
                f"fields made by studio.config.setting(default, \"help\", ...).")
            # The validator checks given values only: a default is checked here.
            for field in dataclasses.fields(schema):
                default = getattr(schema(), field.name)
                try:
                    valid = check_field(schema, field.name, default, f"{cls.__qualname__}.{kind}")
                except StudioError as exc:
                    raise AssertionError(f"the default of '{field.name}' fails the validator: "
                                         f"{exc} Give it a default of its type within its min, "
                                         f"max and choices.") from None
                assert valid == default, (
                    f"the default of {kind} '{field.name}' is {default!r}, which the validator "
                    f"reads as {valid!r}: give it a default of its declared type.")
        config = cls.config_from({})
        plain = json.loads(json.dumps(to_dict(config)))
        assert from_dict(cls.Config, plain) == config, \
            f"the default config does not survive a JSON round trip: {config!r}"
        for name, preset in cls.presets.items():
            try:
                cls.config_from(preset, f"preset '{name}'")
            except StudioError as exc:
                raise AssertionError(f"{exc} Fix the preset in {cls.__qualname__}.presets.") from None
        try:
            from_dict(TrainConfig, dict(cls.train_defaults), "train_defaults")
        except StudioError as exc:
            raise AssertionError(f"{exc} train_defaults may hold only training settings "
                                 f"(`studio config {cls.name}` lists them).") from None
        gen = self.loaded(data, {})
        model = gen.build()
        assert isinstance(model, torch.nn.Module) and any(True for _ in model.parameters()), \
            f"build() returned {describe_value(model)}: return a torch.nn.Module with parameters."

    def test_training_step_returns_a_scalar_loss(self, data, tmp_path):
        from studio.engine import _Context
        engine, _ = api.prepare_training(self.generator, data=data, run_dir=str(tmp_path / "run"),
                                         settings=self.settings(), max_steps=1, events="none")
        try:
            gen, ctx = engine.generator, _Context(engine)
            with ctx.autocast():
                out = gen.training_step(gen.get_batch("train", engine.data_rng), ctx)
        finally:
            engine.run.unlock()
        fix = 'training_step returns a dict {"loss": a scalar tensor, ...more metrics}'
        assert isinstance(out, dict) and "loss" in out, \
            f"training_step returned {describe_value(out)}" \
            f"{' with keys ' + repr(sorted(out)) if isinstance(out, dict) else ''}: {fix}."
        loss = out["loss"]
        assert isinstance(loss, (torch.Tensor, float, int)) and torch.as_tensor(loss).numel() == 1 \
            and torch.as_tensor(loss).ndim == 0, \
            f'training_step\'s "loss" is {describe_value(loss)}: {fix} (reduce it, e.g. .mean()).'
        if not self.generator.manual_optimization:
            assert isinstance(loss, torch.Tensor) and loss.requires_grad, (
                f'training_step\'s "loss" does not require grad: the engine calls backward on it. '
                f"Compute it from ctx.model's output without detaching, or set "
                f"manual_optimization = True and step the optimizers yourself.")
        value = float(torch.as_tensor(loss).detach())
        assert math.isfinite(value), f'training_step\'s "loss" is {value} on the first batch.'

    def test_get_batch_draws_from_rng_only(self, data):
        gen = self.loaded(data)
        draws = []
        state = (random.getstate(), np.random.get_state())
        with torch.random.fork_rng():
            for global_seed in (1, 2):  # other global RNG states, the same `rng`
                torch.manual_seed(global_seed)
                np.random.seed(global_seed)
                random.seed(global_seed)
                draws.append(gen.get_batch("train", torch.Generator().manual_seed(1234)))
        random.setstate(state[0])
        np.random.set_state(state[1])
        assert same_batch(*draws), (
            "get_batch('train', rng) gave different batches for the same `rng` state: it draws "
            "from something else as well (the global torch/numpy/random RNGs, a generator of its "
            "own, a position it keeps). The engine checkpoints only `rng`, so a resumed run would "
            "see other batches than a straight one. Draw every random choice with `rng`, e.g. "
            "torch.randint(n, (batch,), generator=rng).")

    def test_one_batch_repeated_lowers_loss(self, data, tmp_path):
        from studio.engine import _Context
        engine, ckpt = api.prepare_training(self.generator, data=data, run_dir=str(tmp_path / "run"),
                                            settings=self.settings(), max_steps=30, events="none")
        gen = engine.generator
        batch = gen.get_batch("train", engine.data_rng)
        ctx = _Context(engine)
        before = self.fixed_batch_loss(gen, batch, ctx)
        gen.get_batch = lambda split, rng: batch
        engine.fit()
        after = self.fixed_batch_loss(gen, batch, ctx)
        assert after < before, (f"trained 30 steps on one batch, its loss went from {before} to "
                                f"{after}: the model does not learn. Check that the loss depends "
                                f"on ctx.model's parameters and that the optimizers hold them.")

    def test_save_load_round_trip_and_same_seed(self, data, tmp_path):
        engine, status = self.train(data, tmp_path / "run", self.train_steps)
        assert status == "done"
        live = engine.generator
        try:
            run, loaded, folder = api.load_run(str(tmp_path / "run"), device="cpu")
        except Exception as exc:
            raise AssertionError(
                f"loading the trained run (load_assets, build, then the checkpoint's weights) "
                f"failed: {type(exc).__name__}: {exc}. save_assets must write everything build() "
                f"needs besides the weights (e.g. the vocabulary), and load_assets read it "
                f"back.") from exc
        assert folder.name.endswith(str(self.train_steps))
        live_state = live.model.state_dict()
        for name, tensor in loaded.model.state_dict().items():
            assert np.array_equal(tensor.numpy(), live_state[name].cpu().numpy()), (
                f"'{name}' differs between the trained model and the one loaded from its "
                f"checkpoint: build() must make the same modules, and load_state_dict restore them.")
        live.model.eval()
        params = self.params()
        with torch.no_grad():
            a = live.sample(params, n=2, seed=11)
            b = loaded.sample(params, n=2, seed=11)
            c = loaded.sample(params, n=2, seed=11)
        for s in a + b:
            assert_plain_sample(s, self.generator.modality)
        assert same_samples(b, c), (
            "sample(params, n=2, seed=11) twice gave different samples: the same seed must give "
            "the same samples. Draw every random choice from a generator seeded with `seed` "
            "(torch.Generator().manual_seed(seed)), not from the global RNG.")
        assert same_samples(a, b), (
            "the model loaded from the checkpoint samples differently from the trained one with "
            "the same seed, though their weights are equal: something sampling depends on is not "
            "restored. Save it with save_assets and read it back in load_assets (e.g. the "
            "vocabulary, in the same order), keep tensors in the model's state_dict (persistent "
            "buffers, not plain attributes), or other state in extra_state()/load_extra_state().")

    def test_stop_is_honoured_and_resume_is_bit_exact(self, data, tmp_path):
        steps, half = self.train_steps, self.train_steps // 2
        straight, split = tmp_path / "straight", tmp_path / "split"
        engine, status = self.train(data, split, steps, callbacks=[StopAfter(half)])
        assert status == "stopped" and engine.step == half, \
            f"asked to stop at step {half}, the run ended {status} at step {engine.step}"
        run = engine.run
        assert [c.step for c in run.checkpoints()] == [half], \
            f"a stopped run keeps a checkpoint of the step it stopped at; found {run.checkpoints()}"
        assert run.info()["status"] == "stopped"
        engine, status = self.train(data, split, steps, resume=split)
        assert status == "done" and engine.step == steps
        assert [c.step for c in run.checkpoints()][-1] == steps
        self.train(data, straight, steps)
        a, b = progress_losses(straight), progress_losses(split)
        assert sorted(a) == sorted(b) == list(range(1, steps + 1)), (sorted(a), sorted(b))
        for step in sorted(a):
            assert a[step] == b[step], (
                f"stopped at step {half} and resumed, the loss at step {step} is {b[step]} where a "
                f"straight run's is {a[step]}. {RESUME_ADVICE}")
        ta, tb = final_tensors(straight), final_tensors(split)
        assert ta.keys() == tb.keys(), (sorted(ta), sorted(tb))
        for name in ta:
            assert np.array_equal(ta[name], tb[name]), (
                f"stopped at step {half} and resumed to {steps}, the checkpoint's '{name}' differs "
                f"from a straight run's. {RESUME_ADVICE}")

    def test_evaluate_returns_the_best_metric_on_both_paths(self, data, tmp_path):
        cls = self.generator
        self.train(data, tmp_path / "run", 2)
        run, gen, _ = api.load_run(str(tmp_path / "run"), device="cpu")
        doc = run.config()["data"]
        results = {}
        for path, source in (("the held-out split: evaluate()", None),
                             (f"`studio eval --data`: evaluate(source={data!r})", data)):
            try:
                if source is None:  # as api.evaluate does: the data is read again first
                    gen.load_data(doc.get("source"), doc.get("val_source"), api.cache_dir())
                with torch.no_grad():
                    results[path] = gen.evaluate(source=source, max_batches=None)
            except Exception as exc:
                raise AssertionError(
                    f"{path} raised {type(exc).__name__}: {exc}. `source` is a path to data in "
                    f"the format load_data reads (evaluate the model on it, with the vocabulary "
                    f"and settings of the run); None means the held-out split.") from exc
        for path, metrics in results.items():
            assert isinstance(metrics, dict), f"{path} returned {describe_value(metrics)}, not a dict"
            # Words say how a number was measured (an image run's "val_extractor").
            bad = {k: v for k, v in metrics.items() if not isinstance(v, str)
                   and (not isinstance(v, (int, float)) or not math.isfinite(v))}
            assert not bad, (f"{path} returned {bad}: metrics are finite Python numbers "
                             f"(float(tensor) or tensor.item()), or words saying how one was "
                             f"measured.")
            if cls.best_metric:
                assert cls.best_metric in metrics, (
                    f"{path} returned {sorted(metrics)} without '{cls.best_metric}', the "
                    f"generator's best_metric: the run never gets a best checkpoint and "
                    f"`--checkpoint best` falls back to the latest. Return it, or set best_metric "
                    f"to one of the keys evaluate() returns.")
        if cls.best_metric:
            best = run.info().get("best") or {}
            assert best.get("metric") == cls.best_metric and best.get("value") is not None, \
                f"the trained run recorded no best '{cls.best_metric}' (run.json: {best})"

    def test_stream_matches_sample(self, data):
        cls = self.generator
        if cls.stream is Generator.stream:
            pytest.skip("the generator streams with the contract's default (its sample, whole)")
        gen = self.loaded(data)
        gen.model = gen.build().eval()
        params = self.params()
        with torch.no_grad():
            pieces = list(gen.stream(params, seed=5, prompt=self.prompt))
            whole = gen.sample(params, n=1, seed=5, prompt=self.prompt)[0].data
        if cls.modality == "text":
            assert all(isinstance(p, str) for p in pieces), \
                f"a text generator's stream yields str pieces; it yielded {describe_value(pieces[0])}"
            # The stream is the new text; the sample may put the prompt (or the start it
            # implies) before it, as the built-in text generator does.
            streamed = "".join(pieces)
            assert streamed and whole.endswith(streamed), (
                f"stream(params, seed=5) gave {streamed!r} where sample(params, n=1, seed=5) gave "
                f"{whole!r}: streaming and sampling with the same seed must give the same text "
                f"(the window streams what `studio generate` samples; the sample may begin with "
                f"the prompt). Build one on the other.")
        else:
            assert pieces and np.array_equal(pieces[-1], whole), \
                "stream's last piece differs from sample(params, n=1) with the same seed"

    def test_sample_batch_matches_sample(self, data):
        """`studio serve` answers waiting requests together through sample_batch."""
        gen = self.loaded(data)
        gen.model = gen.build().eval()
        params = self.params()
        requests = [SampleRequest(params, n=2, seed=3, prompt=self.prompt),
                    SampleRequest(params, n=1, seed=9, prompt=self.prompt)]
        with torch.no_grad():
            answers = gen.sample_batch(requests)
            alone = [gen.sample(r.params, n=r.n, seed=r.seed, prompt=r.prompt) for r in requests]
        assert isinstance(answers, list) and len(answers) == len(requests), (
            f"sample_batch(2 requests) returned {describe_value(answers)}: it must return one "
            f"list of samples per request, in order")
        for i, (got, want) in enumerate(zip(answers, alone)):
            assert len(got) == len(want) and all(
                near_samples(a, b) for a, b in zip(got, want)), (
                f"sample_batch's answer to request {i} (n={requests[i].n}, seed="
                f"{requests[i].seed}) differs from sample() with the same arguments: each "
                f"answer must be what sample gives alone (pixels within 1 level).")

    def test_decoder_matches_stream(self, data):
        """A text generator's continuous-batching decoder (open_decoder) against its stream."""
        gen = self.loaded(data)
        gen.model = gen.build().eval()
        decoder = gen.open_decoder(4)
        if decoder is None:
            pytest.skip("the generator has no decoder: the server streams one request at a time")
        params = self.params()
        if hasattr(params, "temperature"):  # batched float rounding may move a sampled token
            params = dataclasses.replace(params, temperature=0)
        with torch.no_grad():
            texts = {decoder.add(params, seed, self.prompt): "" for seed in (5, 6)}
            for _ in range(100_000):
                if not decoder.active:
                    break
                for piece in decoder.step():
                    texts[piece.row] += piece.text
            streamed = ["".join(gen.stream(params, seed=seed, prompt=self.prompt)) for seed in (5, 6)]
        assert decoder.active == 0, "the decoder's rows never finished"
        assert list(texts.values()) == streamed, (
            f"two rows decoded together gave {list(texts.values())!r} where stream() gave "
            f"{streamed!r}: a decoder row must produce what stream(params, seed, prompt) does.")

    def test_call_order(self, data, tmp_path):
        calls: list[str] = []
        recorder = recording(self.generator, calls)
        run_dir = tmp_path / "run"
        self.train(data, run_dir, 1, generator=recorder)
        new_run = [c for c in calls if c != "build"]
        assert new_run == ["load_data", "save_assets"], \
            f"a new run called {calls}; expected load_data, build, save_assets"
        calls.clear()
        self.train(data, run_dir, 2, resume=run_dir, generator=recorder)
        assert calls == ["load_assets", "load_data", "build"], (
            f"resuming called {calls}; expected load_assets, load_data, build (load_data must "
            f"keep what load_assets restored)")

    def test_preview_returns_plain_data(self, data, tmp_path):
        engine, status = self.train(data, tmp_path / "run", 2, extra=["preview_every=2"])
        previews = sorted((tmp_path / "run" / "previews").iterdir())
        assert previews and (previews[-1] / "samples.json").exists()
        with EvalMode(engine):
            for s in engine.generator.preview():
                assert_plain_sample(s, self.generator.modality)
