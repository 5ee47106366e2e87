"""The conformance suite catches a plugin author's plausible mistakes: each broken variant of
the toy text generator below fails the suite's check for it, with a message that names the
problem, and the unbroken toy passes the whole suite. The suite runs as a plugin author runs
it: a test file of theirs, under pytest, with the studio's pytest plugin loaded."""

import subprocess
import sys
import textwrap
from dataclasses import dataclass, replace
from importlib.metadata import entry_points

import pytest
import torch

from studio.config import setting
from studio.contract import Sample
from studio.testing import GeneratorConformance
from toy_generators import ToyTextConfig, ToyTextGenerator

pytest_plugins = ["pytester"]


class ToyTextConformance(GeneratorConformance):
    generator = ToyTextGenerator
    tiny_config = {"block": 6, "batch_size": 8}
    sample_params = {"length": 16, "temperature": 0.5}
    train_steps = 4

    def make_data(self, folder):
        path = folder / "tiny.txt"
        path.write_text("To be, or not to be, that is the question.\n" * 10, encoding="utf-8")
        return str(path)


class TestToyTextGenerator(ToyTextConformance):
    """The unbroken toy, which every variant below breaks in one way."""


# --- the broken variants: the three the suite used to miss ---------------------------

class PrivateRngBatches(ToyTextGenerator):
    """get_batch draws from a generator of its own, made in load_data, not from `rng`."""

    name = "toy-text-private-rng"

    def load_data(self, source, val_source, cache_dir):
        self.draws = torch.Generator().manual_seed(0)
        return super().load_data(source, val_source, cache_dir)

    def get_batch(self, split, rng):
        return super().get_batch(split, self.draws)


class EvaluateSourceCrashes(ToyTextGenerator):
    """evaluate takes `source` for a split's name (the `studio eval --data` path crashes)."""

    name = "toy-text-evaluate-source"

    def evaluate(self, source=None, max_batches=None):
        ids = self.splits[source or "val"]
        logits = self.model(ids[:-1])
        return {"val_loss": float(torch.nn.functional.cross_entropy(logits, ids[1:]))}


class EvaluateWithoutBestMetric(ToyTextGenerator):
    """evaluate names its metric "loss" while best_metric says "val_loss"."""

    name = "toy-text-no-best-metric"

    def evaluate(self, source=None, max_batches=None):
        return {"loss": super().evaluate(source, max_batches)["val_loss"]}


# --- more plausible mistakes ----------------------------------------------------------------

class GlobalRngBatches(ToyTextGenerator):
    """get_batch draws from the global torch RNG."""

    name = "toy-text-global-rng"

    def get_batch(self, split, rng):
        ids, block = self.splits[split], self.config.block
        starts = torch.randint(len(ids) - block, (self.config.batch_size,))
        x = torch.stack([ids[s:s + block] for s in starts])
        y = torch.stack([ids[s + 1:s + block + 1] for s in starts])
        return x, y


class SampleIgnoresSeed(ToyTextGenerator):
    """Sampling draws from the global RNG: the same seed gives other text each time."""

    name = "toy-text-ignores-seed"

    def stream(self, params, seed=0, prompt=None):
        current = 0
        for _ in range(params.length):
            logits = self.model(torch.tensor([current]))[0]
            current = int(torch.multinomial(torch.softmax(logits / params.temperature, -1), 1))
            yield self.vocab[current]


class BigramWithPrior(torch.nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.table = torch.nn.Embedding(size, size)
        # Not persistent: left out of state_dict, so no checkpoint keeps what training put here.
        self.register_buffer("prior", torch.zeros(size), persistent=False)

    def forward(self, x):
        return self.table(x) + self.prior


class CheckpointDropsABuffer(ToyTextGenerator):
    """Training keeps a running prior of the next characters in a buffer no checkpoint saves."""

    name = "toy-text-drops-buffer"

    def build(self):
        return BigramWithPrior(len(self.vocab))

    def training_step(self, batch, ctx):
        with torch.no_grad():
            counts = torch.bincount(batch[1].flatten(), minlength=len(self.vocab)).float()
            ctx.model.prior.mul_(0.9).add_(0.1 * torch.log1p(counts))
        return super().training_step(batch, ctx)


@dataclass
class TupleConfig(ToyTextConfig):
    window: tuple = setting((2, 3), "context sizes tried (a tuple: comes back a list from JSON)")


class ConfigNotJsonRoundTrippable(ToyTextGenerator):
    name = "toy-text-tuple-config"
    Config = TupleConfig


@dataclass
class TextDefaultConfig(ToyTextConfig):
    block: int = setting("8", "characters per training example (a str default)", min=2)


class DefaultOfTheWrongType(ToyTextGenerator):
    name = "toy-text-str-default"
    Config = TextDefaultConfig


class NonScalarLoss(ToyTextGenerator):
    """The loss is left per character (reduction="none")."""

    name = "toy-text-non-scalar-loss"

    def training_step(self, batch, ctx):
        x, y = batch
        logits = ctx.model(x)
        return {"loss": torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(),
                                                          reduction="none")}


class ExtraStateNotJson(ToyTextGenerator):
    """extra_state holds a tensor: the checkpoint cannot be written, so a stop leaves none."""

    name = "toy-text-tensor-extra-state"

    def training_step(self, batch, ctx):
        self.seen = getattr(self, "seen", 0) + batch[0].numel()
        return super().training_step(batch, ctx)

    def extra_state(self):
        return {"characters_seen": torch.tensor(getattr(self, "seen", 0))}


class SampleReturnsIds(ToyTextGenerator):
    """Samples carry the characters' ids, not the text."""

    name = "toy-text-sample-ids"

    def sample(self, params, n=1, seed=0, prompt=None):
        return [Sample("text", self.encode(s.data).tolist(), s.meta)
                for s in super().sample(params, n, seed, prompt)]


class VocabularyNotRestored(ToyTextGenerator):
    """load_assets sorts the vocabulary it reads: the ids mean other characters after loading."""

    name = "toy-text-sorted-vocab"

    def load_assets(self, folder):
        super().load_assets(folder)
        self.vocab = "".join(sorted(self.vocab))


class StreamIgnoresTemperature(ToyTextGenerator):
    """stream and sample are written apart, and stream forgets the temperature."""

    name = "toy-text-stream-differs"

    def sample(self, params, n=1, seed=0, prompt=None):
        return [Sample("text", "".join(ToyTextGenerator.stream(self, params, seed + i, prompt)),
                       {"seed": seed + i}) for i in range(n)]

    def stream(self, params, seed=0, prompt=None):
        yield from super().stream(replace(params, temperature=1.0), seed, prompt)


# variant -> {the suite's check that must fail: words its message must hold}
CAUGHT_BY = {
    PrivateRngBatches: {"test_get_batch_draws_from_rng_only": "Draw every random choice with `rng`",
                        "test_stop_is_honoured_and_resume_is_bit_exact": "resumed, the loss at step"},
    EvaluateSourceCrashes: {"test_evaluate_returns_the_best_metric_on_both_paths":
                            "`studio eval --data`: evaluate(source="},
    EvaluateWithoutBestMetric: {"test_evaluate_returns_the_best_metric_on_both_paths":
                                "without 'val_loss', the generator's best_metric"},
    GlobalRngBatches: {"test_get_batch_draws_from_rng_only": "global torch/numpy/random RNGs"},
    SampleIgnoresSeed: {"test_save_load_round_trip_and_same_seed": "the same seed must give the same",
                        "test_stream_matches_sample": "must give the same text"},
    CheckpointDropsABuffer: {"test_save_load_round_trip_and_same_seed": "persistent buffers",
                             "test_stop_is_honoured_and_resume_is_bit_exact": "resumed, the loss"},
    ConfigNotJsonRoundTrippable: {"test_config_round_trip": "does not survive a JSON round trip",
                                  "test_default_config_validates_and_builds": "JSON round trip"},
    DefaultOfTheWrongType: {"test_default_config_validates_and_builds":
                            "the default of Config 'block' is '8', which the validator reads as 8"},
    NonScalarLoss: {"test_training_step_returns_a_scalar_loss": "(reduce it, e.g. .mean())"},
    ExtraStateNotJson: {"test_stop_is_honoured_and_resume_is_bit_exact":
                        "return JSON-able data from it"},
    SampleReturnsIds: {"test_save_load_round_trip_and_same_seed":
                       "a sample's data is a list: a text generator's samples are"},
    VocabularyNotRestored: {"test_save_load_round_trip_and_same_seed":
                            "the vocabulary, in the same order",
                            "test_stop_is_honoured_and_resume_is_bit_exact": "resumed, the loss"},
    StreamIgnoresTemperature: {"test_stream_matches_sample":
                               "streaming and sampling with the same seed"},
}
VARIANTS = {cls.__name__: cls for cls in CAUGHT_BY}


@pytest.fixture(scope="module")
def torch_primed(tmp_path_factory):
    """Train, load and sample the toy once in this process. pytester's in-process runs drop the
    modules first imported during them, and the first training imports much of torch lazily
    (its compiler stack, via the optimizers), whose operator libraries register only once per
    process: imported again by the next run, they fail."""
    from studio import api
    from studio.registry import default_registry
    folder = tmp_path_factory.mktemp("primed")
    data = ToyTextConformance().make_data(folder)
    default_registry().add(ToyTextGenerator.name, ToyTextGenerator)
    api.train(ToyTextGenerator, data=data, run_dir=str(folder / "run"), max_steps=1,
              settings=["device=cpu"], events="none")
    _, gen, _ = api.load_run(str(folder / "run"), device="cpu")
    gen.sample(gen.SampleConfig(), n=1)


def author_test_file(pytester, generator_expression: str) -> None:
    """A plugin author's test file: the suite for one class, on the toy's config and data."""
    pytester.makepyfile(test_author=textwrap.dedent(f"""
        import os

        import test_conformance_mutations as here
        from studio.testing import GeneratorConformance

        class TestAuthorsGenerator(GeneratorConformance):
            generator = {generator_expression}
            tiny_config = here.ToyTextConformance.tiny_config
            sample_params = here.ToyTextConformance.sample_params
            train_steps = here.ToyTextConformance.train_steps
            make_data = here.ToyTextConformance.make_data

        def test_the_plugin_fixture_isolates_the_cache(studio_cache_dir):
            assert os.environ["STUDIO_CACHE_DIR"] == str(studio_cache_dir)
    """))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_suite_catches_the_broken_variant(variant, pytester, torch_primed):
    """Only the checks that must catch the variant run (the whole suite per variant would take
    a minute); each must fail, saying what is wrong."""
    expected = CAUGHT_BY[VARIANTS[variant]]
    author_test_file(pytester, f"here.VARIANTS[{variant!r}]")
    result = pytester.inline_run("-k", " or ".join(expected), "-p", "no:cacheprovider")
    passed, _, failed = result.listoutcomes()
    failures = {report.nodeid.rsplit("::", 1)[-1]: str(report.longrepr) for report in failed}
    assert set(failures) == set(expected), (
        f"{variant}: expected {sorted(expected)} to fail, got {sorted(failures)} failing "
        f"and {[r.nodeid for r in passed]} passing")
    for check, words in expected.items():
        assert words in failures[check], f"{variant}: {check} failed without saying {words!r}:\n" \
                                         f"{failures[check]}"


def test_an_authors_test_file_passes_on_the_unbroken_toy(pytester, torch_primed):
    """With pytest and the studio's plugin alone: every check passes but the entry point's
    (skipped, saying how to install it: the toy is not installed) and the decoder's (the toy
    has none), and the plugin's fixture is there."""
    author_test_file(pytester, "here.ToyTextGenerator")
    result = pytester.inline_run("-p", "no:cacheprovider")
    passed, skipped, failed = result.listoutcomes()
    assert not failed, "\n".join(str(report.longrepr) for report in failed)
    assert len(passed) >= 12 and any(r.nodeid.endswith("isolates_the_cache") for r in passed)
    assert sorted(r.nodeid.rsplit("::", 1)[-1] for r in skipped) == [
        "test_decoder_matches_stream", "test_entry_point_loads_this_class"]
    entry_point = next(r for r in skipped if r.nodeid.endswith("test_entry_point_loads_this_class"))
    assert "pip install -e ." in str(entry_point.longrepr)


def test_a_class_sharing_a_registered_name_is_tested_as_itself(pytester, torch_primed):
    """Runs are loaded by name: a class under test whose name the registry holds for another
    class is registered for the test (the suite checks it, not the other), then given back."""
    from studio.registry import default_registry
    assert default_registry().get("toy-text") is ToyTextGenerator
    author_test_file(pytester, 'type("Renamed", (here.SampleReturnsIds,), {"name": "toy-text"})')
    result = pytester.inline_run("-k", "test_save_load_round_trip", "-p", "no:cacheprovider")
    _, _, failed = result.listoutcomes()
    assert len(failed) == 1 and "a sample's data is a list" in str(failed[0].longrepr)
    assert default_registry().get("toy-text") is ToyTextGenerator


def test_the_pytest_plugin_is_installed_and_light():
    """pytest loads the plugin in every session of a user who installed the studio: it must not
    import torch; and the suite needs nothing of the dev extras, only pytest and the studio."""
    assert {ep.name: ep.value for ep in entry_points(group="pytest11")}.get("aigc_studio") == \
        "studio.pytest_plugin"
    dev_only = ["hypothesis", "tensorboard", "transformers", "scipy", "pytestqt",
                "pytest_timeout", "importlinter"]
    code = textwrap.dedent(f"""
        import sys
        for name in {dev_only!r}:
            sys.modules[name] = None  # importing it now raises ImportError
        import studio.pytest_plugin
        assert "torch" not in sys.modules, "the pytest plugin imported torch"
        from studio.testing import GeneratorConformance
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_generator_installed_under_another_name_is_refused(pytester, monkeypatch, torch_primed):
    """The entry-point check: an installed entry point whose name differs from the class's."""
    import studio.testing

    class FakeEntryPoint:
        name, value = "toytext", "toy_generators:ToyTextGenerator"

        def load(self):
            return ToyTextGenerator

    monkeypatch.setattr(studio.testing, "entry_points", lambda group: [FakeEntryPoint()])
    author_test_file(pytester, "here.ToyTextGenerator")
    result = pytester.inline_run("-k", "test_entry_point", "-p", "no:cacheprovider")
    _, _, failed = result.listoutcomes()
    assert len(failed) == 1 and "Name the entry point 'toy-text'" in str(failed[0].longrepr)


def test_every_variant_is_in_the_table():
    """Every broken variant above is checked, each by at least one check of the suite."""
    variants = [obj for obj in globals().values() if isinstance(obj, type)
                and issubclass(obj, ToyTextGenerator) and obj is not ToyTextGenerator]
    assert set(variants) == set(CAUGHT_BY) and all(CAUGHT_BY.values())
    assert len(CAUGHT_BY) >= 9, sorted(VARIANTS)
