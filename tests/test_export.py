"""studio/export.py, the one writer of generated samples (the window's Export and history,
`studio generate --out`): formats, lineage, interpolations as animations, the kept history.
No Qt here: the module is core."""

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from studio.cli import main
from studio.contract import Sample
from studio.errors import StudioError
from studio.export import (HistoryStore, export, is_interpolation, output_kind, sidecar_path, tile,
                           write_folder)
from studio.runstore import load_samples

LINEAGE = {"run": "runs/x", "checkpoint": "step_0000010", "generator": "image", "seed": 3,
           "count": 1, "params": {"interpolate_to": 9, "frames": 5}}
DEMO_IMAGE = ROOT / "assets" / "demo" / "image"


def interpolation(frames: int = 5, size: int = 6) -> list[Sample]:
    """What the image generator returns for interpolate_to: one image per frame, marked."""
    rng = np.random.default_rng(0)
    return [Sample("image", rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
                   {"seed": 3, "seed_to": 9, "t": i / (frames - 1), "frame": i})
            for i in range(frames)]


def images(n: int = 3) -> list[Sample]:
    rng = np.random.default_rng(1)
    return [Sample("image", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), {"seed": i, "index": i})
            for i in range(n)]


def test_the_module_imports_no_qt():
    code = ("import sys, studio.export; "
            "assert not [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph'))]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_an_interpolation_is_told_apart_from_a_set_of_images():
    assert is_interpolation(interpolation()) and output_kind(interpolation()) == "interpolation"
    assert not is_interpolation(images()) and output_kind(images()) == "image"
    assert output_kind([Sample("text", "hi")]) == "text"


@pytest.mark.parametrize("name", ["walk.gif", "walk.mp4"])
def test_an_interpolation_exports_as_an_animation_with_its_lineage(tmp_path, name):
    frames = interpolation()
    path = tmp_path / name
    assert export(frames, path, LINEAGE) == [path, sidecar_path(path)]
    read = iio.imread(path, index=None)
    assert read.shape[0] == 5  # one frame per image, in order
    side = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    assert (side["frames"], side["seed"], side["file"]) == (5, 3, name)
    if name.endswith(".gif"):  # lossless: the frames themselves
        assert np.array_equal(read[..., :3], np.stack([f.data for f in frames]))


def test_an_interpolation_exports_as_a_png_strip_in_frame_order(tmp_path):
    frames = interpolation(size=6)
    export(frames, tmp_path / "strip.png", LINEAGE)
    with Image.open(tmp_path / "strip.png") as image:
        assert image.size == (5 * 6 + 4 * 2, 6)  # one row, 2 px between frames
        assert json.loads(image.text["lineage"])["grid_of"] == 5
        strip = np.asarray(image.convert("RGB"))
    assert np.array_equal(strip[:, 8:14], frames[1].data)


def test_images_still_refuse_an_animation_format(tmp_path):
    with pytest.raises(StudioError, match=r"an image output exports as \.png"):
        export(images(), tmp_path / "x.gif", LINEAGE)


def test_tile_lays_images_out_in_a_near_square_grid():
    grid = tile([s.data for s in images(3)])
    assert grid.shape == (18, 18, 3)
    assert np.array_equal(grid[10:, :8], images(3)[2].data)


def test_a_folder_has_lineage_in_each_png_and_reads_back(tmp_path):
    written = write_folder(interpolation(), tmp_path / "out", LINEAGE)
    names = sorted(p.name for p in written)
    assert names == ["000.png", "001.png", "002.png", "003.png", "004.png", "interpolation.gif",
                     "interpolation.gif.json", "samples.json"]
    with Image.open(tmp_path / "out" / "002.png") as image:
        lineage = json.loads(image.text["lineage"])
    assert (lineage["run"], lineage["index"], lineage["meta"]["frame"]) == ("runs/x", 2, 2)
    extra, samples = load_samples(tmp_path / "out")
    assert extra["lineage"]["seed"] == 3
    assert is_interpolation(samples)
    assert np.array_equal(samples[4].data, interpolation()[4].data)


def test_a_folder_of_texts_has_a_txt_to_read(tmp_path):
    texts = [Sample("text", "ANNA: hello", {"seed": 0}), Sample("text", "ANNA: bye", {"seed": 1})]
    write_folder(texts, tmp_path, {**LINEAGE, "generator": "text"})
    body = (tmp_path / "samples.txt").read_text(encoding="utf-8")
    assert "ANNA: hello" in body and "ANNA: bye" in body
    assert [s.data for s in load_samples(tmp_path)[1]] == ["ANNA: hello", "ANNA: bye"]


def test_history_keeps_the_newest_entries_and_reads_them_back(tmp_path):
    store = HistoryStore(tmp_path, limit=3)
    for i in range(5):
        store.save(images(1), {**LINEAGE, "seed": i}, created=1_000_000 + i)
    index = store.load_index()
    assert [doc["lineage"]["seed"] for doc in index] == [2, 3, 4]  # oldest removed, order kept
    assert index[0]["made"] == 1 and index[0]["output_kind"] == "image"
    assert store.load_samples(index[-1]["folder"])[0].data.shape == (8, 8, 3)
    (index[0]["folder"] / "samples.json").write_text("{broken", encoding="utf-8")
    assert [doc["lineage"]["seed"] for doc in store.load_index()] == [3, 4]  # skipped, not fatal


def test_cli_generate_out_writes_through_the_exporter(tmp_path, capsys):
    """`studio generate --out`: the same files as the window's export, lineage included, and
    an interpolation as an animation too."""
    out = tmp_path / "walk"
    code = main(["generate", str(DEMO_IMAGE), "--seed", "3", "--set", "interpolate_to=9",
                 "--set", "frames=4", "--device", "cpu", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "interpolation.gif" in capsys.readouterr().err
    assert iio.imread(out / "interpolation.gif", index=None).shape[0] == 4
    with Image.open(out / "001.png") as image:
        lineage = json.loads(image.text["lineage"])
    assert (lineage["generator"], lineage["seed"], lineage["settings"]) == \
        ("image", 3, {"interpolate_to": "9", "frames": "4"})
    assert Path(lineage["run"]) == DEMO_IMAGE
    extra, samples = load_samples(out)
    assert extra["lineage"]["count"] == 1 and len(samples) == 4


@pytest.mark.parametrize("video_format, files", [
    ("gif", {"000.gif", "000.mp4", "001.gif", "001.mp4"}),
    ("mp4", {"000.mp4", "001.mp4"}),
    ("npy", {"clips.npy"}),
    ("frames", {"000/", "001/"}),
])
def test_clips_are_written_in_the_asked_format_and_read_back(tmp_path, video_format, files):
    """`studio generate --out DIR --set format=...`: GIF and MP4 to share, one clips.npy of
    shape (N, T, H, W, C) for code, or a folder of PNG frames per clip; samples.json names
    each, and load_samples reads every format back."""
    rng = np.random.default_rng(0)
    clips = [Sample("video", rng.integers(0, 255, (5, 16, 16, 3), dtype=np.uint8), {"fps": 8})
             for _ in range(2)]
    write_folder(clips, tmp_path, LINEAGE, video_format=video_format)
    written = {p.name + ("/" if p.is_dir() else "") for p in tmp_path.iterdir()}
    assert files <= written
    if video_format == "npy":
        array = np.load(tmp_path / "clips.npy", allow_pickle=False)
        assert array.shape == (2, 5, 16, 16, 3) and array.dtype == np.uint8
        assert (array[1] == clips[1].data).all()
    if video_format == "frames":
        assert len(list((tmp_path / "001").glob("*.png"))) == 5
    _, back = load_samples(tmp_path)
    assert [s.data.shape for s in back] == [(5, 16, 16, 3)] * 2
    if video_format in ("npy", "frames"):  # lossless
        assert all((b.data == c.data).all() for b, c in zip(back, clips))


def test_clips_of_different_shapes_cannot_share_one_npy(tmp_path):
    clips = [Sample("video", np.zeros((t, 8, 8, 3), np.uint8), {}) for t in (4, 6)]
    with pytest.raises(StudioError, match="one shape"):
        write_folder(clips, tmp_path, LINEAGE, video_format="npy")


def test_a_fast_clip_becomes_a_gif_browsers_play_at_its_speed(tmp_path):
    """A clip sampled at 120 fps: GIF delays under 20 ms play as 100 ms in browsers (a 2 s
    clip lasted 24 s), so every third frame is kept at 40 fps, and the clip lasts 2 s."""
    clip = Sample("video", np.repeat(np.arange(240, dtype=np.uint8)[:, None, None, None], 8, 1)
                  .repeat(8, 2).repeat(3, 3), {"fps": 120})
    export([clip], tmp_path / "fast.gif", LINEAGE)
    from PIL import ImageSequence
    with Image.open(tmp_path / "fast.gif") as gif:
        delays = [frame.info["duration"] for frame in ImageSequence.Iterator(gif)]
    assert len(delays) == 80 and min(delays) >= 20 and sum(delays) == 2000
