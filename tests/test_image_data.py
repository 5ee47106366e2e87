"""Reading images as real folders hold them, MNIST IDX files, the built-in shapes, the cache."""

import gzip
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED
from generators.image.data import (BUILTIN_SHAPES, SHAPE_CLASSES, ImageSet, Unusable, decode_image,
                                   is_grey, load_images, read_idx, refuse_too_few)
from image_fixtures import write_plain_folder, write_shapes_folder
from studio.errors import DataError, StudioError

MNIST = SHARED / "mnist"


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height grey pixels but holds almost no data: what a
    decompression bomb looks like before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_exif_rotation_is_applied():
    upright = Image.new("RGB", (32, 32), (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, 32, 16))  # red on top, blue below
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera held sideways writes it
    rgb = decode_image(encode(stored, "JPEG", exif=exif.tobytes(), quality=95), 32)
    assert rgb[:12].mean(axis=(0, 1)).round().tolist()[0] > 200  # red on top again
    assert rgb[20:].mean(axis=(0, 1))[2] > 200


def test_sixteen_bit_greyscale_is_scaled_to_eight_bits():
    values = np.zeros((32, 32), dtype=np.uint16)
    values[:, :16] = 65535
    values[:, 16:] = 128 * 257
    rgb = decode_image(encode(Image.fromarray(values)), 32)
    assert rgb[:, :14].min() == 255 and set(np.unique(rgb[:, 18:]).tolist()) == {128}
    assert is_grey(rgb)


def test_cmyk_is_converted():
    rgb = decode_image(encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"), 32)
    r, g, b = rgb.reshape(-1, 3).mean(axis=0)
    assert r > 230 and g < 30 and b < 30


@pytest.mark.parametrize("background, value", [("white", 255), ("black", 0)])
def test_transparency_is_composited_on_the_background(background, value):
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 0))  # fully transparent red
    rgba.paste((0, 255, 0, 255), (0, 0, 16, 32))  # opaque green on the left
    rgb = decode_image(encode(rgba), 32, background)
    assert rgb[:, :14].reshape(-1, 3).tolist()[0] == [0, 255, 0]
    assert rgb[:, 18:].reshape(-1, 3).tolist()[0] == [value] * 3
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (0, 0, 16, 32))
    rgb = decode_image(encode(palette, transparency=0), 32, background)  # index 0 transparent
    assert rgb[:, :14].reshape(-1, 3).tolist()[0] == [0, 0, 255]
    assert rgb[:, 18:].reshape(-1, 3).tolist()[0] == [value] * 3


def test_other_sizes_are_scaled_and_centre_cropped():
    wide = Image.new("RGB", (300, 100), (255, 0, 0))
    wide.paste((0, 255, 0), (100, 0, 200, 100))  # green middle third
    rgb = decode_image(encode(wide), 32)
    assert rgb.shape == (32, 32, 3)
    assert (rgb[:, 2:30, 1] > 240).all() and (rgb[:, 2:30, 0] < 15).all()
    small = decode_image(encode(Image.new("L", (10, 20), 77)), 64)  # enlarged
    assert small.shape == (64, 64, 3) and is_grey(small) and abs(int(small.mean()) - 77) <= 1


@pytest.mark.parametrize("raw, reason", [
    (b"", "empty file"),
    (b"just some text, not a picture\n", "not an image"),
    (png_header_only(30000, 30000), "decompression bomb"),  # past Pillow's hard limit
    (png_header_only(10000, 10000), "decompression bomb"),  # between its warning and its limit
])
def test_unusable_files_say_why(raw, reason):
    with pytest.raises(Unusable, match=reason):
        decode_image(raw, 32)


def test_truncated_jpeg_and_tiny_images_say_why():
    jpeg = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(Unusable, match="truncated"):
        decode_image(jpeg[:len(jpeg) // 2], 32)
    with pytest.raises(Unusable, match=r"too small \(1x1 px\)"):
        decode_image(encode(Image.new("RGB", (1, 1))), 32)


def test_class_subfolders_become_classes_and_the_cache_is_reused(tmp_path):
    folder = write_shapes_folder(tmp_path / "data", per_class=5)
    first = load_images(str(folder), 32, "white", tmp_path / "cache")
    assert first.classes == ["circle", "square"] and len(first) == 10
    assert sorted(first.labels.tolist()) == [0] * 5 + [1] * 5
    assert first.images.shape == (10, 32, 32, 3) and first.images.dtype == np.uint8
    again = load_images(str(folder), 32, "white", tmp_path / "cache")
    assert isinstance(again.images, np.memmap)  # read back from the cache, not decoded again
    assert again.key == first.key and np.array_equal(again.images, first.images)
    # the key is the content: change one file and the set is decoded anew
    victim = sorted((folder / "circle").iterdir())[0]
    Image.new("RGB", (40, 40), (1, 2, 3)).save(victim)
    changed = load_images(str(folder), 32, "white", tmp_path / "cache")
    assert changed.key != first.key
    assert not list((tmp_path / "cache" / "images").glob("**/*.pkl"))


def test_grey_images_are_stored_with_one_channel_and_loose_files_have_no_classes(tmp_path):
    folder = tmp_path / "grey"
    folder.mkdir()
    for i in range(9):
        Image.new("L", (32, 32), i * 20).save(folder / f"{i}.png")
    data = load_images(str(folder), 32, "white", tmp_path / "cache")
    assert data.grey and data.images.shape[-1] == 1 and data.classes == []
    assert (data.labels == -1).all()


def test_bad_files_are_skipped_with_their_reasons_and_the_rest_is_used(tmp_path):
    folder = write_plain_folder(tmp_path / "data", n=9)
    (folder / "zero.png").write_bytes(b"")
    (folder / "notes.png").write_text("a text file with an image's name")
    (folder / "readme.txt").write_text("not an image at all")
    jpeg = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    (folder / "cut.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    (folder / "bomb.png").write_bytes(png_header_only(30000, 30000))
    (folder / "dot.png").write_bytes(encode(Image.new("RGB", (1, 1))))
    data = load_images(str(folder), 32, "white", tmp_path / "cache")
    assert len(data) == 9 and len(data.used) == 9
    reasons = {name.rsplit("/", 1)[-1]: why for name, why in data.skipped}
    assert set(reasons) == {"zero.png", "notes.png", "readme.txt", "cut.jpg", "bomb.png", "dot.png"}
    assert "empty" in reasons["zero.png"] and "not an image" in reasons["notes.png"]
    assert "truncated" in reasons["cut.jpg"] and "decompression bomb" in reasons["bomb.png"]
    assert "too small" in reasons["dot.png"] and "not an image file (.txt)" in reasons["readme.txt"]
    cached = load_images(str(folder), 32, "white", tmp_path / "cache")  # replayed from the cache
    assert sorted(cached.skipped) == sorted(data.skipped)


def test_mnist_idx_files_with_labels():
    raw = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")
    assert raw.shape == (10000, 28, 28) and labels.shape == (10000,) and labels.max() == 9


def test_mnist_folder_loads_as_ten_classes(tmp_path):
    data = load_images(str(MNIST), 32, "white", tmp_path / "cache")
    assert len(data) == 10000 and data.classes == [str(d) for d in range(10)]
    assert data.grey and data.images.shape == (10000, 32, 32, 1)
    assert np.bincount(data.labels).min() > 800


def test_broken_idx_files_are_explained(tmp_path):
    good = gzip.decompress((MNIST / "t10k-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "cut-images-idx3-ubyte").write_bytes(good[:5000])
    with pytest.raises(StudioError, match="truncated"):
        read_idx(tmp_path / "cut-images-idx3-ubyte")
    (tmp_path / "fake-images-idx3-ubyte").write_bytes(b"hello world")
    with pytest.raises(StudioError, match="not an IDX file"):
        read_idx(tmp_path / "fake-images-idx3-ubyte")


def test_builtin_shapes_need_no_files(tmp_path):
    data = load_images(None, 32, "white", tmp_path / "cache")
    assert data.source == BUILTIN_SHAPES and data.classes == list(SHAPE_CLASSES)
    assert data.images.shape == (4000, 32, 32, 3)
    again = load_images(BUILTIN_SHAPES, 32, "white", tmp_path / "other-cache")
    assert np.array_equal(data.images, again.images)  # drawn from a fixed seed


def test_too_few_usable_images_is_an_error_naming_the_reasons(tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    Image.new("RGB", (32, 32)).save(folder / "b.png")
    with pytest.raises(StudioError, match=r"only 1 usable image\(s\).*a.png: empty file"):
        load_images(str(folder), 32, "white", tmp_path / "cache")


def test_too_few_items_are_refused_in_the_loaders_own_words():
    """The check the image and video loaders share: enough passes; fewer is one line that
    counts them as the loader's items, names the first three skipped files with their
    reasons, says who needs how many and what to add, and carries the report."""
    two = ImageSet(np.zeros((2, 8, 8, 1), np.uint8), np.full(2, -1), [], "data", "key",
                   used=["data/a.png", "data/b.png"])
    refuse_too_few(two, 2, Path("data"), item="image", needed_by="A GAN", remedy="add images")
    with pytest.raises(DataError) as caught:
        refuse_too_few(two, 3, Path("data"), item="clip", needed_by="The video generator",
                       remedy="add videos")
    assert str(caught.value) == ("only 2 usable clip(s) in data. The video generator needs at "
                                 "least 3 (a few hundred give good results); add videos.")
    assert caught.value.report.summary == {"clips": 2} and len(caught.value.report.used) == 2

    none = ImageSet(np.zeros((0, 8, 8, 1), np.uint8), np.zeros(0, np.int64), [], "data", "key",
                    skipped=[(f"data/{n}.png", "empty file") for n in "abcd"])
    with pytest.raises(DataError) as caught:
        refuse_too_few(none, 1, Path("data"), item="image", needed_by="A GAN", remedy="add images")
    assert str(caught.value) == ("no usable images in data (a.png: empty file; b.png: empty "
                                 "file; c.png: empty file). A GAN needs at least 1 (a few "
                                 "hundred give good results); add images.")
    assert len(caught.value.report.skipped) == 4 and caught.value.report.summary == {"images": 0}


def test_unusable_image_folders_carry_their_report(tmp_path):
    from studio.errors import DataError
    folder = tmp_path / "few"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    Image.new("RGB", (32, 32)).save(folder / "b.png")
    with pytest.raises(DataError) as caught:
        load_images(str(folder), 32, "white", tmp_path / "cache")
    report = caught.value.report
    assert [Path(f).name for f, _ in report.skipped] == ["a.png"]
    assert report.summary["images"] == 1
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    with pytest.raises(DataError, match="no images") as caught:
        load_images(str(tmp_path / "notes"), 32, "white", tmp_path / "cache")
    assert [Path(f).name for f, _ in caught.value.report.skipped] == ["readme.txt"]


def test_the_report_of_an_image_folder_counts_images_and_reads_as_plain_values(tmp_path):
    """A report says how many images (not "1 item"), per class as a dict of class -> count, and
    what FID compares with when nothing is held out (not "held out images: 0")."""
    import json
    from generators.image import ImageConfig, ImageGenerator
    from studio.contract import DataReport

    folder = write_shapes_folder(tmp_path / "shapes", per_class=6)
    report: DataReport = ImageGenerator(ImageConfig()).load_data(str(folder), None, tmp_path / "c")
    summary = report.summary
    assert summary["images"] == 12 and len(report.used) == 12
    assert summary["class_counts"] == {"circle": 6, "square": 6}
    assert "held_out_images" not in summary
    assert summary["held_out"] == "none: FID compares the samples with the training images"
    assert summary["channels"] in ("grey", "rgb")
    for key, value in summary.items():
        plain = (int, float, str) if key != "class_counts" else (dict,)
        assert isinstance(value, plain) or (isinstance(value, list) and
                                            all(isinstance(v, str) for v in value)), key
    json.dumps(report.to_json())
    builtin = ImageGenerator(ImageConfig()).load_data(None, None, tmp_path / "c")
    assert builtin.summary["images"] == 4000
    held = ImageGenerator(ImageConfig()).load_data(str(folder), str(folder), tmp_path / "c")
    assert held.summary["held_out"] == f"12 images from {folder}"


@pytest.mark.parametrize("max_steps, sizes", [(30, (200, 100)), (1000, (1000, 500)),
                                              (20000, (2000, 600))])
def test_fid_is_measured_on_fewer_images_in_short_runs(tmp_path, max_steps, sizes):
    """Left empty, FID's sample and feature-network steps scale to the run (a 30-step run
    spent most of its time on 2000 images and 600 feature steps); the run's checkpoint keeps
    them, so evaluating it later measures the same way. Values given are kept."""
    from generators.image import ImageConfig, ImageGenerator
    from studio.config import TrainConfig

    def chosen(config, steps):
        gen = ImageGenerator(config)
        gen.load_data(str(write_shapes_folder(tmp_path / "shapes", per_class=6)), None, tmp_path / "c")
        gen.model = gen.build()
        gen.configure_optimizers(TrainConfig(max_steps=steps))
        return gen

    gen = chosen(ImageConfig(g_width=8, d_width=8), max_steps)
    assert (gen.config.eval_images, gen.config.feature_steps) == sizes
    later = ImageGenerator(ImageConfig(g_width=8, d_width=8))
    later.load_extra_state(gen.extra_state())
    assert (later.config.eval_images, later.config.feature_steps) == sizes
    given = chosen(ImageConfig(g_width=8, d_width=8, eval_images=64, feature_steps=5), max_steps)
    assert (given.config.eval_images, given.config.feature_steps) == (64, 5)
