"""The demo models that ship in assets/demo/ work at first launch, and `studio demo image`
makes one the way the shipped one was made."""

import numpy as np
from PIL import Image

from studio import api
from studio.cli import main


def test_every_built_in_generator_ships_a_demo_model_that_generates():
    shipped = {api.runs_table(str(run))[0]["generator"]: run for run in api.demo_runs()}
    assert {"text", "image", "video"} <= set(shipped)
    text = api.generate(str(shipped["text"]), prompt="The ", n=1, seed=0,
                        settings=["max_new_tokens=20"], device="cpu")
    assert isinstance(text[0].data, str) and text[0].data
    images = api.generate(str(shipped["image"]), n=4, seed=0, device="cpu")
    assert [im.data.shape for im in images] == [(32, 32, 3)] * 4
    assert all(im.data.dtype == np.uint8 for im in images)
    assert len({im.data.tobytes() for im in images}) == 4  # four seeds, four different images
    # the demo model is class-conditional: a prompt names the class it draws
    circle = api.generate(str(shipped["image"]), prompt="circle", n=2, seed=0, device="cpu")
    assert {s.meta["class"] for s in circle} == {"circle"}
    clips = api.generate(str(shipped["video"]), n=2, seed=0, device="cpu")
    assert [c.data.shape for c in clips] == [(16, 32, 32, 3)] * 2 and clips[0].data.dtype == np.uint8
    assert len({c.data.tobytes() for c in clips}) == 2
    moving = np.abs(np.diff(clips[0].data.astype(int), axis=0)).mean()
    assert moving > 0.5  # the frames of a clip differ: it moves


def test_studio_demo_image_trains_continues_and_writes_a_sample_grid(tmp_path, capsys):
    run = tmp_path / "demo-image"
    common = ["demo", "image", "--run-dir", str(run), "--device", "cpu"]
    assert main(common + ["--steps", "6"]) == 0
    grid = run / "demo-samples" / "000.png"
    assert grid.exists() and Image.open(grid).size[0] > 32 * 4  # 16 images in one picture
    assert main(common + ["--steps", "10", "--export-to", str(tmp_path / "slim")]) == 0
    assert api.runs_table(str(run))[0]["step"] == 10  # continued, not started over
    out = capsys.readouterr()
    assert "a grid of 16 samples" in out.out and '"fid"' in out.err
    slim = api.generate(str(tmp_path / "slim"), n=1, seed=1, device="cpu")
    assert slim[0].data.shape == (32, 32, 3)
