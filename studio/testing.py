"""The conformance suite every generator passes: the built-ins and third-party plugins alike.

Use it from your plugin's tests::

    from studio.testing import GeneratorConformance

    class TestMyGenerator(GeneratorConformance):
        generator = MyGenerator                  # the class (registered or not)
        tiny_config = {"width": 8}               # a config that trains in a second on CPU
        sample_params = {}                       # sampling settings for the checks

        def make_data(self, folder):             # write a small dataset, return its path
            ...

It checks: the config survives a JSON round trip and rejects unknown keys; one batch trained
repeatedly lowers the loss; a checkpoint saved and loaded gives back the same weights and the
same samples; the same seed gives the same sample; samples are plain data of the declared
kind; a stop request is honoured with a checkpoint, and the run resumes from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from studio import api
from studio.callbacks import Callback, EvalMode
from studio.config import from_dict, to_dict
from studio.contract import Sample
from studio.errors import StudioError
from studio.registry import default_registry

QUIET = ["eval_every=0", "preview_every=0", "checkpoint_every=0", "device=cpu", "warmup_steps=0"]


class StopAfter(Callback):
    """Asks the run to stop (as the window's Stop button does) once `step` is reached."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, engine, metrics):
        if engine.step == self.step:
            engine.run.write_control("stop")


def assert_plain_sample(sample: Sample, modality: str) -> None:
    assert isinstance(sample, Sample)
    assert sample.kind == modality
    assert isinstance(sample.meta, dict)
    json.dumps(sample.meta)  # lineage must be JSON-able
    if modality == "text":
        assert isinstance(sample.data, str)
    else:
        assert isinstance(sample.data, np.ndarray) and sample.data.dtype == np.uint8
        assert sample.data.ndim == (3 if modality == "image" else 4)
        assert sample.data.shape[-1] in (1, 3, 4)


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


class GeneratorConformance:
    generator: type
    tiny_config: dict = {}
    sample_params: dict = {}
    train_steps: int = 6

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
        monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path / "cache"))
        registry = default_registry()
        if self.generator.name not in registry.names():
            registry.add(self.generator.name, self.generator)

    def settings(self, extra: list[str] = ()) -> list[str]:
        return [f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}"
                for k, v in self.tiny_config.items()] + QUIET + list(extra)

    def params(self):
        return from_dict(self.generator.SampleConfig, self.sample_params, "sample_params")

    def train(self, data, run_dir, steps, extra=(), callbacks=None, resume=None):
        engine, ckpt = api.prepare_training(
            self.generator, data=data, run_dir=str(run_dir) if resume is None else None,
            settings=self.settings(extra) if resume is None else [f"max_steps={steps}"],
            max_steps=steps, resume=str(resume) if resume else None, events="none",
            callbacks=callbacks)
        status = engine.fit(resume_from=ckpt)
        return engine, status

    def fixed_batch_loss(self, gen, batch, ctx) -> float:
        """Loss on `batch` without changing the model. Manual-optimization generators, whose
        training_step steps the optimizers, override this with their own measure."""
        import torch
        with torch.no_grad():
            return float(gen.training_step(batch, ctx)["loss"])

    # -- the checks
    def test_config_round_trip(self):
        cls = self.generator
        config = cls.config_from(self.tiny_config)
        assert from_dict(cls.Config, json.loads(json.dumps(to_dict(config)))) == config
        with pytest.raises(StudioError, match="unknown setting"):
            cls.config_from({**self.tiny_config, "no_such_setting_xyz": 1})
        described = cls.describe()
        assert {f["name"] for f in described["config"]} == set(to_dict(config))
        assert all(f.get("help") for f in described["config"]), "every setting needs help text"

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
        assert after < before, f"loss on a fixed batch went from {before} to {after}"

    def test_save_load_round_trip_and_same_seed(self, data, tmp_path):
        engine, status = self.train(data, tmp_path / "run", self.train_steps)
        assert status == "done"
        live = engine.generator
        run, loaded, folder = api.load_run(str(tmp_path / "run"), device="cpu")
        assert folder.name.endswith(str(self.train_steps))
        live_state = live.model.state_dict()
        for name, tensor in loaded.model.state_dict().items():
            assert np.array_equal(tensor.numpy(), live_state[name].cpu().numpy()), name
        live.model.eval()
        a = live.sample(self.params(), n=2, seed=11)
        b = loaded.sample(self.params(), n=2, seed=11)
        c = loaded.sample(self.params(), n=2, seed=11)
        assert same_samples(a, b) and same_samples(b, c)
        for s in a:
            assert_plain_sample(s, self.generator.modality)

    def test_stop_is_honoured_and_resume_continues(self, data, tmp_path):
        run_dir = tmp_path / "run"
        engine, status = self.train(data, run_dir, 50, callbacks=[StopAfter(3)])
        assert status == "stopped" and engine.step == 3
        run = engine.run
        assert [c.step for c in run.checkpoints()] == [3]
        assert run.info()["status"] == "stopped"
        engine, status = self.train(data, run_dir, 5, resume=run_dir)
        assert status == "done" and engine.step == 5
        assert [c.step for c in run.checkpoints()][-1] == 5

    def test_preview_returns_plain_data(self, data, tmp_path):
        engine, status = self.train(data, tmp_path / "run", 2, extra=["preview_every=2"])
        previews = sorted((tmp_path / "run" / "previews").iterdir())
        assert previews and (previews[-1] / "samples.json").exists()
        with EvalMode(engine):
            for s in engine.generator.preview():
                assert_plain_sample(s, self.generator.modality)

