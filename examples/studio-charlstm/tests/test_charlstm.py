"""The studio's conformance suite on the `charlstm` generator (pytest; install the package
first, `pip install -e .`, so the entry point is checked too)."""

from studio_charlstm import CharlstmGenerator
from studio.testing import GeneratorConformance


class TestCharlstm(GeneratorConformance):
    generator = CharlstmGenerator
    tiny_config = {"block": 8, "embed": 8, "hidden": 16, "layers": 1, "batch_size": 8}
    sample_params = {"length": 12}
    prompt = "the "

    def make_data(self, folder):
        path = folder / "corpus.txt"
        path.write_text("the cat sat on the mat. the dog sat on the log.\n" * 30,
                        encoding="utf-8")
        return str(path)
