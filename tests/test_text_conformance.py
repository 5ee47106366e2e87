"""The shared conformance suite, run on the built-in text generator."""

from generators.text import TextGenerator
from studio.testing import GeneratorConformance


class TestTextGenerator(GeneratorConformance):
    generator = TextGenerator
    tiny_config = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, "batch_size": 4}
    sample_params = {"max_new_tokens": 12, "temperature": 1.0}

    def make_data(self, folder):
        path = folder / "tiny.txt"
        path.write_text("To be, or not to be, that is the question.\n" * 40, encoding="utf-8")
        return str(path)


class TestTextGeneratorOnPromptResponsePairs(TestTextGenerator):
    """The same suite with JSONL prompt/response data (response-only loss, answers)."""

    tiny_config = {**TestTextGenerator.tiny_config, "block_size": 48}

    def make_data(self, folder):
        import json
        path = folder / "qa.jsonl"
        rows = [{"prompt": f"Question {i}?", "response": f"Answer {i % 3}."} for i in range(30)]
        path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
        return str(path)
