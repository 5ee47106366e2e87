"""Run-folder paths that the panels and the core used to compute by hand."""

from studio.runstore import RunDir, list_previews, list_runs, save_samples
from studio.contract import Sample


def test_preview_and_checkpoint_folders_are_named_by_step(tmp_path):
    run = RunDir.create(tmp_path / "run", {"generator": "toy"})
    assert run.preview_dir(500) == run.path / "previews" / "step_0000500"
    assert run.checkpoint_dir("step_0000500") == run.path / "checkpoints" / "step_0000500"
    save_samples(run.preview_dir(40), [Sample("text", "hello", {})], {"step": 40})
    assert list_previews(run) == [(40, run.preview_dir(40))]


def test_is_run_means_a_folder_with_a_config(tmp_path):
    run = RunDir.create(tmp_path / "run", {"generator": "toy"})
    assert RunDir.is_run(run.path) and RunDir.is_run(str(run.path))
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    assert not RunDir.is_run(tmp_path / "empty")
    assert not RunDir.is_run(tmp_path / "file")
    assert not RunDir.is_run(tmp_path / "missing")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").mkdir()  # a folder named config.json is not a run
    assert not RunDir.is_run(tmp_path / "odd")
    assert [r.path for r in list_runs(tmp_path)] == [run.path]
