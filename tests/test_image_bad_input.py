"""Bad image input gets one clear line and exit code 2 -- never a traceback -- and loses nothing."""

import io
import json
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from image_fixtures import tiny_settings, write_plain_folder, write_shapes_folder
from studio.cli import main
from studio.runstore import RunDir

QUIET = ["--set", "device=cpu", "--set", "eval_every=0", "--set", "preview_every=0",
         "--events", "none"]


def tiny(extra: dict | None = None) -> list[str]:
    return [arg for pair in tiny_settings(extra) for arg in ("--set", pair)] + QUIET


def studio(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def expect_error(capsys, *args, match: str) -> str:
    code, out, err = studio(capsys, *args)
    assert code == 2, (code, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert match.lower() in err.lower(), err
    return err


def bomb_png() -> bytes:
    """A PNG header claiming 30000 x 30000 pixels (900 megapixels) over a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, "JPEG")
    return buf.getvalue()[:len(buf.getvalue()) // 2]


def add_bad_files(folder: Path) -> dict[str, str]:
    """The bad files of issue 5, with the words their reasons must contain."""
    (folder / "zero.png").write_bytes(b"")
    (folder / "cut.jpg").write_bytes(truncated_jpeg())
    (folder / "letter.png").write_text("Dear reader, I am a text file in disguise.")
    (folder / "bomb.png").write_bytes(bomb_png())
    Image.new("RGB", (1, 1), (9, 9, 9)).save(folder / "pixel.png")
    return {"zero.png": "empty file", "cut.jpg": "truncated", "letter.png": "not an image",
            "bomb.png": "decompression bomb", "pixel.png": "too small (1x1 px)"}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("image-run")
    data = write_shapes_folder(root / "data")
    run = root / "run"
    assert main(["train", "image", "--data", str(data), "--run-dir", str(run), "--max-steps", "3",
                 *tiny()]) == 0
    return run


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def test_empty_folder(capsys, tmp_path):
    (tmp_path / "data").mkdir()
    expect_error(capsys, "train", "image", "--data", tmp_path / "data", "--run-dir", tmp_path / "r",
                 *tiny(), match="is an empty folder")
    assert not (tmp_path / "r" / "config.json").exists()


def test_folder_with_no_images(capsys, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("no pictures here")
    (tmp_path / "data" / "table.csv").write_text("a,b\n1,2\n")
    expect_error(capsys, "train", "image", "--data", tmp_path / "data", "--run-dir", tmp_path / "r",
                 *tiny(), match="no images in")


def test_only_unusable_files_is_an_error_that_names_them(capsys, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    add_bad_files(folder)
    err = expect_error(capsys, "train", "image", "--data", folder, "--run-dir", tmp_path / "r",
                       *tiny(), match="no usable images")
    assert "bomb.png: refused as a possible decompression bomb" in err


def test_bad_files_are_skipped_and_reported_and_training_goes_on(capsys, tmp_path):
    folder = write_plain_folder(tmp_path / "data", n=10)
    expected = add_bad_files(folder)
    code, out, err = studio(capsys, "train", "image", "--data", folder, "--run-dir", tmp_path / "r",
                            "--max-steps", "2", *tiny()[:-2], "--events", "plain")
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "data_report.json").read_text())
    reasons = {Path(item).name: why for item, why in report["skipped"]}
    assert set(reasons) == set(expected)
    for name, words in expected.items():
        assert words in reasons[name], (name, reasons[name])
        assert f"skipped {folder / name}: " in err  # also said as a warning while training
    assert len(report["used"]) == 10 and report["summary"]["images"] == 10
    assert RunDir(tmp_path / "r").checkpoints()[-1].step == 2


@pytest.mark.parametrize("pair, match", [("resolution=48", "must be one of 32, 64, 128"),
                                          ("channels=cmyk", "must be one of auto, grey, rgb"),
                                          ("augment=color,blur", "unknown augmentation 'blur'"),
                                          ("g_width=0", "must be >= 4")])
def test_unsupported_settings(capsys, tmp_path, pair, match):
    expect_error(capsys, "train", "image", "--run-dir", tmp_path / "r", *tiny(), "--set", pair,
                 match=match)
    assert not (tmp_path / "r" / "config.json").exists()


def test_conditional_yes_needs_classes(capsys, tmp_path):
    folder = write_plain_folder(tmp_path / "data", n=10)
    expect_error(capsys, "train", "image", "--data", folder, "--run-dir", tmp_path / "r", *tiny(),
                 "--set", "conditional=yes", match="has no classes")


def test_resume_cannot_change_the_resolution(capsys, run_copy):
    before = [c.step for c in RunDir(run_copy).checkpoints()]
    expect_error(capsys, "train", "--resume", run_copy, "--set", "resolution=64",
                 match="cannot change when resuming")
    # ... nor by editing the run's config: the checkpoint's resolution is checked
    doc = json.loads((run_copy / "config.json").read_text())
    doc["config"]["resolution"] = 64
    (run_copy / "config.json").write_text(json.dumps(doc))
    expect_error(capsys, "train", "--resume", run_copy, "--max-steps", "5",
                 match="trained at 32 px, but its config asks for 64 px")
    expect_error(capsys, "generate", run_copy, match="trained at 32 px")
    run = RunDir(run_copy)
    assert [c.step for c in run.checkpoints()] == before  # refused resumes write nothing
    for checkpoint in run.checkpoints():
        run.load_checkpoint(checkpoint.folder)  # intact


def test_unknown_class_and_class_out_of_range(capsys, trained_run):
    expect_error(capsys, "generate", trained_run, "--prompt", "hexagon",
                 match="no class 'hexagon' in this model; its classes are: circle, square")
    expect_error(capsys, "generate", trained_run, "--set", "class_label=5",
                 match="class_label 5 is out of range")
    expect_error(capsys, "generate", trained_run, "--set", "truncation=-1", match="must be >= 0")
    code, out, err = studio(capsys, "generate", trained_run, "--prompt", "square", "--n", "2",
                            "--json")
    assert code == 0 and [json.loads(line)["meta"]["class"] for line in out.splitlines()] == ["square"] * 2


def test_missing_or_unsafe_inception_weights(capsys, tmp_path):
    expect_error(capsys, "train", "image", "--run-dir", tmp_path / "r", *tiny(),
                 "--set", f"inception_weights={tmp_path / 'nope.pth'}", match="does not exist")

    class Boom:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    evil = tmp_path / "inception.pth"
    evil.write_bytes(pickle.dumps({"weights": Boom()}))
    expect_error(capsys, "train", "image", "--run-dir", tmp_path / "r", *tiny(),
                 "--set", f"inception_weights={evil}", match="not a weights file torch can read safely")
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "r" / "config.json").exists()
