"""The studio's pytest plugin, installed with it (the `pytest11` entry point `aigc_studio`).

pytest loads it in every session of everyone who installed the studio, so it stays light: it
imports neither torch nor the conformance suite. A plugin author's tests import the suite
themselves (`from studio.testing import GeneratorConformance`); this plugin makes a failed
check of the suite show the values behind it, as pytest does in the author's own test files,
and offers a fixture for the author's other tests.
"""

import pytest

# Before any test module imports the suite: pytest rewrites asserts only in modules it is told of.
pytest.register_assert_rewrite("studio.testing")


@pytest.fixture
def studio_cache_dir(tmp_path, monkeypatch):
    """A fresh folder for the studio's cache (encoded data, features) for one test, so the test
    neither reads what another left there nor fills the user's cache."""
    folder = tmp_path / "studio-cache"
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(folder))
    return folder
