"""docs/plugins.md, the plugin author's guide, is true of the code: its complete example (the
bigram plugin: config.py, generator.py, __init__.py, pyproject.toml, its test file) is
installed as pip would (a dist-info with the pyproject's entry point) and passes the
conformance suite, run as its author runs it, and `studio plugin validate`; its other Python
snippets compile, import what exists and run (the manual-optimization steps train a tiny GAN,
migrate_config renames a setting); every `studio` command in its shell blocks parses; its
table of checks names the suite's checks.

Marking: a fenced block right after `<!-- example: PATH -->` is a file of the example project
(PATH from the project's parent folder); after `<!-- snippet: NAME -->`, a snippet run here.
"""

import ast
import dataclasses
import inspect
import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from studio import registry as registry_module
from studio.testing import GeneratorConformance

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
FENCE = re.compile(r"^(?:<!-- (example|snippet): (\S+) -->\n)?```(\w*)\n(.*?)^```",
                   re.MULTILINE | re.DOTALL)
PROJECT = "studio-bigram"
PACKAGE = "studio_bigram"


@dataclasses.dataclass
class Block:
    language: str
    code: str
    line: int
    kind: str | None  # "example", "snippet" or None
    label: str | None  # the example's path or the snippet's name


def doc_blocks() -> list[Block]:
    text = DOC.read_text(encoding="utf-8")
    # Blocks nested in a list item are indented: their fences and code are dedented alike.
    flat = re.sub(r"^ {3}(```|\S)", r"\1", text, flags=re.MULTILINE)
    return [Block(m.group(3), m.group(4), flat.count("\n", 0, m.start()) + 1, m.group(1),
                  m.group(2)) for m in FENCE.finditer(flat)]


def examples() -> dict[str, str]:
    return {b.label: b.code for b in doc_blocks() if b.kind == "example"}


def snippet(name: str) -> str:
    found = [b.code for b in doc_blocks() if b.kind == "snippet" and b.label == name]
    assert len(found) == 1, f"docs/plugins.md has {len(found)} snippets marked '{name}'"
    return found[0]


def python_blocks() -> list[Block]:
    return [b for b in doc_blocks() if b.language == "python"]


# --- the doc's shape --------------------------------------------------------------------------

def test_the_complete_example_is_a_whole_project():
    assert set(examples()) == {f"{PROJECT}/pyproject.toml", f"{PROJECT}/tests/test_bigram.py",
                               *(f"{PROJECT}/{PACKAGE}/{name}" for name in
                                 ("__init__.py", "config.py", "generator.py"))}


@pytest.mark.parametrize("block", python_blocks(), ids=lambda b: f"line{b.line}")
def test_every_python_block_compiles(block):
    compile(block.code, f"docs/plugins.md:{block.line}", "exec")


def studio_imports(code: str) -> list[tuple[str, str]]:
    tree = ast.parse(code)
    return [(node.module, alias.name) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module.partition(".")[0] == "studio"
            for alias in node.names]


def test_what_the_snippets_import_from_the_studio_exists():
    for block in python_blocks():
        for module, name in studio_imports(block.code):
            imported = __import__(module, fromlist=[name])
            assert hasattr(imported, name), \
                f"docs/plugins.md:{block.line} imports {name} from {module}, which has no {name}"


def test_every_ctx_attribute_the_doc_uses_is_the_engines():
    from studio.engine import _Context
    known = set(dir(_Context)) | set(re.findall(r"self\.(\w+)\s*=",
                                                inspect.getsource(_Context.__init__)))
    text = DOC.read_text(encoding="utf-8")
    used = set(re.findall(r"\bctx\.(\w+)", text))
    assert used and used <= known, f"the doc uses ctx.{sorted(used - known)}, which the engine's " \
                                   f"TrainContext does not have"


def test_every_studio_command_in_a_shell_block_parses():
    from studio.cli import _parser
    commands = [line.split("#")[0].strip() for b in doc_blocks() if b.language == "bash"
                for line in b.code.splitlines() if line.startswith("studio ")]
    assert len(commands) >= 7
    for command in commands:
        try:
            _parser().parse_args(shlex.split(command)[1:])
        except SystemExit:
            pytest.fail(f"docs/plugins.md shows `{command}`, which the CLI does not accept")


def test_the_table_of_checks_names_every_check_of_the_suite():
    suite = {name for name in dir(GeneratorConformance) if name.startswith("test_")}
    text = DOC.read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `(test_\w+)`", text, flags=re.MULTILINE))
    assert table == suite, f"missing from the doc: {sorted(suite - table)}; no such check: " \
                           f"{sorted(table - suite)}"


def test_the_api_version_the_doc_names_is_the_studios():
    from studio.contract import API_VERSION
    assert f"(now `{API_VERSION}`)" in DOC.read_text(encoding="utf-8")


# --- the example project, installed ------------------------------------------------------------

@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The doc's project written out and installed as `pip install -e .` would: the project
    folder on sys.path with a dist-info holding the pyproject's name, version and entry points.
    Returns the project folder."""
    for path, code in examples().items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code, encoding="utf-8")
    project = tmp_path / PROJECT
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    info = project / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\n"
                                   f"Version: {meta['version']}\n")
    groups = "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
                     for group, points in meta["entry-points"].items())
    (info / "entry_points.txt").write_text(groups)
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.setattr(registry_module, "_default", None)  # discovered afresh, with the plugin
    yield project
    for module in [m for m in sys.modules if m.partition(".")[0] == PACKAGE]:
        del sys.modules[module]


def tiny_text(folder: Path) -> str:
    path = folder / "tiny.txt"
    path.write_text("To be, or not to be, that is the question.\n" * 20, encoding="utf-8")
    return str(path)


def test_the_example_is_listed_from_its_light_declarations(installed):
    entry = registry_module.default_registry().entry("bigram")
    assert entry is not None and entry.distribution == "studio-bigram"
    row = entry.info(load=registry_module.LIGHT)
    assert (row["status"], row["modality"], row["version"]) == ("ok", "text", "0.1.0"), row
    assert f"{PACKAGE}.generator" not in sys.modules, "listing imported the generator's code"


@pytest.fixture(scope="module")
def torch_primed(tmp_path_factory):
    """Train, load and sample a toy once in this process before pytester runs the suite in it:
    pytester's in-process run drops the modules first imported during it, and the parts of
    torch that training imports lazily register their operators only once per process (the
    next test to train would fail)."""
    from studio import api
    from toy_generators import ToyTextGenerator
    folder = tmp_path_factory.mktemp("primed")
    registry_module.default_registry().add(ToyTextGenerator.name, ToyTextGenerator)
    api.train(ToyTextGenerator, data=tiny_text(folder), run_dir=str(folder / "run"),
              max_steps=1, settings=["device=cpu"], events="none")
    _, gen, _ = api.load_run(str(folder / "run"), device="cpu")
    gen.sample(gen.SampleConfig(), n=1)


def test_the_example_passes_the_conformance_suite_as_its_author_runs_it(installed, pytester,
                                                                        torch_primed):
    pytester.makepyfile(test_bigram=examples()[f"{PROJECT}/tests/test_bigram.py"])
    result = pytester.inline_run("-p", "no:cacheprovider")
    passed, skipped, failed = result.listoutcomes()
    assert not failed, "\n\n".join(f"{r.nodeid}:\n{r.longrepr}" for r in failed)
    # The entry point check ran too; only the decoder's is skipped (the bigram has none).
    assert [r.nodeid.rsplit("::", 1)[-1] for r in skipped] == ["test_decoder_matches_stream"]
    names = {r.nodeid.rsplit("::", 1)[-1] for r in passed}
    assert {n for n in dir(GeneratorConformance) if n.startswith("test_")} - names == {
        "test_decoder_matches_stream"}


def test_the_example_passes_studio_plugin_validate(installed, tmp_path, capsys):
    from studio.cli import main
    code = main(["plugin", "validate", "bigram", "--data", tiny_text(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "FAILED" not in out and "skipped" not in out and out.count("ok ") >= 6, out


def test_the_migrate_config_snippet_renames_the_setting(installed):
    namespace: dict = {}
    exec(snippet("migrate_config"), namespace)
    gen_cls = namespace["BigramGenerator"]
    assert gen_cls.migrate_config({"block": 8, "batch_size": 4}, "0.1.0") == \
        {"context": 8, "batch_size": 4}
    assert gen_cls.migrate_config({"context": 8}, "0.2.0") == {"context": 8}


# --- the manual-optimization snippet, on a tiny GAN --------------------------------------------

def test_the_manual_optimization_snippet_trains_a_gan(tmp_path):
    from studio import api
    from studio.config import setting
    from studio.contract import DataReport, Generator, Sample

    namespace: dict = {}
    exec(snippet("manual_optimization"), namespace)

    @dataclasses.dataclass
    class GanConfig:
        batch_size: int = setting(8, "images per step", min=1)

    class TinyGAN(torch.nn.Module):
        latent_dim = 4

        def __init__(self):
            super().__init__()
            self.G = torch.nn.Sequential(torch.nn.Linear(4, 48), torch.nn.Sigmoid())
            self.D = torch.nn.Linear(48, 1)

    class GanGenerator(namespace["TinyGANSteps"], Generator):
        name, modality, version = "doc-gan", "image", "0.1"
        Config = GanConfig
        manual_optimization = True

        def load_data(self, source, val_source, cache_dir):
            self.images = torch.rand(32, 48, generator=torch.Generator().manual_seed(0))
            return DataReport(source="random")

        def build(self):
            return TinyGAN()

        def get_batch(self, split, rng):
            idx = torch.randint(len(self.images), (self.config.batch_size,), generator=rng)
            return self.images[idx].to(self.device)

        def evaluate(self, source=None, max_batches=None):
            return {"val_loss": float(self.model.D(self.images).mean())}

        def sample(self, params, n=1, seed=0, prompt=None):
            z = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))
            pixels = (self.model.G(z) * 255).to(torch.uint8).reshape(n, 4, 4, 3).numpy()
            return [Sample("image", p, {"seed": seed}) for p in pixels]

    engine, _ = api.prepare_training(GanGenerator, run_dir=str(tmp_path / "gan"), max_steps=3,
                                     settings=["device=cpu", "warmup_steps=0", "log_every=1"],
                                     events="none")
    gan = engine.generator.model
    start = {part: [p.detach().clone() for p in getattr(gan, part).parameters()]
             for part in ("G", "D")}
    assert engine.fit() == "done"
    losses = [e for e in engine.run.events() if e["event"] == "progress"]
    assert [e["step"] for e in losses] == [1, 2, 3]
    assert all({"d_loss", "g_loss"} <= set(e) for e in losses)
    for part, before in start.items():  # both optimizers stepped
        after = list(getattr(gan, part).parameters())
        assert not all(torch.equal(a, b) for a, b in zip(before, after)), \
            f"{part} did not change in training"
