"""The video generator's data: every source kind, every bad input of issue 12's Data section,
the cache, bounded memory on a long video, and the built-in sets."""

import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import generators.video.data as video_data
from generators.video.data import (BUILTIN_BOUNCING_SHAPES, MAX_CLIPS_PER_FILE, ClipSet,
                                   bouncing_digits, bouncing_shapes, load_clips, natural_key)
from studio.errors import DataError, StudioError
from video_fixtures import (MNIST, moving_square, moving_squares, truncate, write_clip_folder,
                            write_faststart_video, write_frame_folders, write_long_video, write_npy,
                            write_unknown_codec_video, write_video, write_zero_frame_video)


def load(source, tmp_path, frames=8, stride=1, resolution=24, channels="auto", short_clips="loop") -> ClipSet:
    return load_clips(None if source is None else str(source), frames, stride, resolution, channels,
                      tmp_path / "cache", short_clips)


def reasons(data: ClipSet) -> dict[str, str]:
    return {Path(item).name: why for item, why in data.skipped}


def with_good_clips(folder: Path, n: int = 4) -> Path:
    """Enough usable clips beside the bad ones that the set loads and reports the bad ones."""
    write_frame_folders(folder, clips=n)
    return folder


# --- each source kind ---------------------------------------------------------------------------

def test_a_folder_of_videos_in_class_subfolders(tmp_path):
    data = load(write_clip_folder(tmp_path / "clips", classes=2, per_class=3), tmp_path, resolution=32)
    assert data.clips.shape == (6, 8, 32, 32, 3) and data.clips.dtype == np.uint8
    assert data.classes == ["class0", "class1"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1] and data.labels.dtype == np.int64
    assert data.fps == pytest.approx(8.0)
    assert sorted(Path(u).suffix for u in data.used) == [".gif", ".gif", ".mp4", ".mp4", ".mp4", ".mp4"]
    assert data.skipped == []


def test_a_video_is_decoded_frame_for_frame(tmp_path):
    """GIF is lossless: the clip read back is the clip written, frame for frame, in order."""
    clip = moving_square(8, 24, seed=5)
    folder = tmp_path / "gifs"
    for i in range(4):
        write_video(folder / f"c{i}.gif", clip)
    data = load(folder, tmp_path)
    assert np.array_equal(data.clips[0], clip)
    mp4 = load(write_clip_folder(tmp_path / "mp4", classes=0, per_class=5), tmp_path)
    expected = moving_square(8, 24, seed=0)  # the first MP4; lossy, so close rather than equal
    assert np.abs(mp4.clips[0].astype(int) - expected).mean() < 8


def test_a_gif_frame_shown_longer_is_repeated_at_the_typical_rate(tmp_path):
    """An encoder stores a held frame once with a longer delay; played at a constant rate, it
    must last as long as it is shown, or the motion around it speeds up."""
    frames = [Image.fromarray(f) for f in moving_square(4, 24, seed=2)]
    folder = tmp_path / "gifs"
    folder.mkdir()
    for i in range(4):
        frames[0].save(folder / f"hold{i}.gif", save_all=True, append_images=frames[1:], loop=0,
                       duration=[100, 300, 100, 100])
    data = load(folder, tmp_path, frames=6)
    shown = [np.asarray(f) for f in (frames[0], frames[1], frames[1], frames[1], frames[2], frames[3])]
    assert np.array_equal(data.clips[0], np.stack(shown))
    assert data.fps == pytest.approx(10.0)
    assert not any("looped" in n for n in data.notes)


def test_unlabelled_clips_at_the_top_level(tmp_path):
    data = load(write_clip_folder(tmp_path / "clips", classes=0, per_class=4), tmp_path)
    assert data.classes == [] and (data.labels == -1).all() and len(data) == 4


def test_a_single_video_file_gives_several_clips(tmp_path):
    video = write_video(tmp_path / "one.mp4", moving_square(72, 24), fps=20)
    data = load(video, tmp_path, frames=8, stride=2)
    assert data.clips.shape == (4, 8, 24, 24, 3)  # windows of 16 source frames: 72 frames hold 4
    assert data.fps == pytest.approx(10.0)  # 20 fps, every 2nd frame


def test_frame_folders_are_sorted_naturally(tmp_path):
    """frame2 comes before frame10 (a plain sort would put frame10 second and scramble motion)."""
    folder = write_frame_folders(tmp_path / "frames", clips=4, frames=12, size=24)
    data = load(folder, tmp_path, frames=12)
    assert data.clips.shape == (4, 12, 24, 24, 3)
    for i in range(4):
        assert np.array_equal(data.clips[i], moving_square(12, 24, seed=i))
    assert sorted(["frame10", "frame2", "frame1"], key=natural_key) == ["frame1", "frame2", "frame10"]


def test_a_long_frame_folder_stops_at_the_per_source_cap(tmp_path):
    folder = write_frame_folders(tmp_path / "frames", clips=1, frames=70, size=16)
    data = load(folder, tmp_path, frames=1, resolution=16)
    assert len(data) == MAX_CLIPS_PER_FILE
    assert np.array_equal(data.clips[:, 0], moving_square(70, 16, seed=0)[:MAX_CLIPS_PER_FILE])
    assert any(f"the first {MAX_CLIPS_PER_FILE} clips were used" in n for n in data.notes)


@pytest.mark.parametrize("layout", ["TNHW", "NTHW", "NTHWC"])
def test_npy_layouts(tmp_path, layout):
    """Moving MNIST's (T, N, H, W) is told from (N, T, H, W) by which axis changes smoothly."""
    path = write_npy(tmp_path / "npy" / "clips.npy", layout, n=5, frames=8, size=24)
    data = load(path.parent, tmp_path)
    squares = moving_squares(5, 8, 24, grey=layout != "NTHWC")
    expected = squares if layout == "NTHWC" else squares[..., :1]
    assert data.clips.shape == expected.shape
    assert np.array_equal(data.clips, expected)
    assert any("read as" in note for note in data.notes)


def test_moving_mnist_layout_even_with_more_frames_than_clips(tmp_path):
    path = write_npy(tmp_path / "mm.npy", "TNHW", n=4, frames=20, size=24)  # (20, 4, 24, 24)
    data = load(path, tmp_path, frames=10)
    assert data.clips.shape == (8, 10, 24, 24, 1)
    assert np.array_equal(data.clips[0], moving_squares(4, 20, 24, grey=True)[0, :10, ..., :1])


def test_an_array_gives_all_its_clips_until_the_memory_budget(tmp_path, monkeypatch):
    """Moving MNIST holds 10,000 clips: an array is not cut at the per-video cap of 64 clips,
    only at the memory budget, and the notes say where it stopped."""
    path = write_npy(tmp_path / "many" / "many.npy", "NTHW", n=70, frames=8, size=16)
    assert len(load(path, tmp_path, resolution=16)) == 70
    one_clip = 8 * 16 * 16
    monkeypatch.setattr(video_data, "MAX_CLIP_BYTES", 10 * one_clip)
    write_npy(tmp_path / "many" / "more.npy", "NTHW", n=4, frames=8, size=16)
    data = load(path.parent, tmp_path, resolution=16)
    assert len(data) == 10
    assert any("many.npy: the first 10 of its 70 clips were used" in n for n in data.notes)
    assert reasons(data)["more.npy"].startswith("not read: the clips read before it fill the memory budget")


def test_mnist_files_give_bouncing_digits_labelled_by_digit(tmp_path):
    data = load(MNIST, tmp_path, frames=6, resolution=32)
    assert data.clips.shape[1:] == (6, 32, 32, 1) and len(data) >= 1000
    assert data.classes == [str(d) for d in range(10)]
    assert set(data.labels.tolist()) == set(range(10))
    assert not np.array_equal(data.clips[:, 0], data.clips[:, 1])  # they move


def test_no_source_gives_the_builtin_bouncing_shapes(tmp_path):
    data = load(None, tmp_path, frames=4, resolution=32)
    assert data.clips.shape[1:] == (4, 32, 32, 3) and len(data) >= 1000
    assert data.classes == ["circle", "square", "triangle"]
    assert data.used == [BUILTIN_BOUNCING_SHAPES] and data.fps == 8.0
    assert np.array_equal(load(BUILTIN_BOUNCING_SHAPES, tmp_path, frames=4, resolution=32).clips, data.clips)


@pytest.mark.parametrize("resolution", [32, 64])
def test_resized_and_centre_cropped_to_the_resolution(tmp_path, resolution):
    folder = tmp_path / "wide"
    for i in range(4):  # 48x24, black at the sides: the bright centre 24x24 is kept, then scaled
        clip = np.zeros((8, 24, 48, 3), np.uint8)
        clip[:, :, 12:36] = (200 + np.arange(8))[:, None, None, None]
        write_video(folder / f"c{i}.gif", clip)
    data = load(folder, tmp_path, resolution=resolution)
    assert data.clips.shape == (4, 8, resolution, resolution, 1)
    assert data.clips.mean() > 195  # squeezed instead of cropped, a third would be black


def test_channels_grey_rgb_and_auto(tmp_path):
    colour = write_clip_folder(tmp_path / "colour", classes=0, per_class=4)
    assert load(colour, tmp_path, channels="grey").clips.shape[-1] == 1
    assert load(colour, tmp_path, channels="auto").clips.shape[-1] == 3
    grey = write_npy(tmp_path / "grey.npy", "NTHW")
    assert load(grey, tmp_path, channels="auto").clips.shape[-1] == 1
    rgb = load(grey, tmp_path, channels="rgb").clips
    assert rgb.shape[-1] == 3 and np.array_equal(rgb[..., 0], rgb[..., 2])


# --- short clips ---------------------------------------------------------------------------------

def test_a_short_clip_is_looped_by_default_and_said_so(tmp_path):
    folder = write_clip_folder(tmp_path / "clips", classes=0, per_class=4, frames=5)
    data = load(folder, tmp_path, frames=8)
    assert len(data) == 4
    first = data.clips[0]
    assert np.array_equal(first[5:], first[:3])  # frames 5, 6, 7 repeat frames 0, 1, 2
    assert any("4 source(s) shorter than one clip of 8 frames were looped" in n for n in data.notes)


def test_a_short_clip_is_skipped_when_asked(tmp_path):
    folder = with_good_clips(tmp_path / "mix", n=4)
    write_video(folder / "short.gif", moving_square(5, 24))
    data = load(folder, tmp_path, frames=8, short_clips="skip")
    assert len(data) == 4
    assert reasons(data)["short.gif"].startswith("too short: 5 frame(s), a clip needs 8")
    assert not any("looped" in n for n in data.notes)


# --- bad input: skipped with the reason ----------------------------------------------------------

def test_a_gap_in_a_frame_folders_numbering_skips_that_clip(tmp_path):
    folder = write_frame_folders(tmp_path / "frames", clips=5, frames=8)
    (folder / "clip02" / "frame4.png").unlink()
    data = load(folder, tmp_path)
    assert len(data) == 4
    assert "gap in the frame numbering: 1 frame(s) missing (4)" in reasons(data)["clip02"]


def test_frames_of_different_sizes_skip_that_clip(tmp_path):
    folder = write_frame_folders(tmp_path / "frames", clips=5, frames=8)
    Image.new("RGB", (30, 24), "white").save(folder / "clip01" / "frame3.png")
    data = load(folder, tmp_path)
    assert len(data) == 4
    assert "frames of different sizes in one clip" in reasons(data)["clip01"]
    assert "30x24" in reasons(data)["clip01"]


def test_empty_zero_frame_truncated_and_unknown_codec_videos_are_skipped(tmp_path):
    folder = with_good_clips(tmp_path / "mix")
    (folder / "empty.mp4").write_bytes(b"")
    write_zero_frame_video(folder / "zero.mp4")
    truncate(write_video(folder / "cut.mp4", moving_square(16, 24)))  # its index was at the end
    (folder / "notavideo.mp4").write_bytes(b"this is a text file that someone renamed\n" * 20)
    write_unknown_codec_video(folder / "codec.avi")
    data = load(folder, tmp_path)
    why = reasons(data)
    assert len(data) == 4
    assert why["empty.mp4"] == "empty file (0 bytes)"
    assert why["zero.mp4"].startswith("holds no video frames")
    assert why["cut.mp4"].startswith("damaged, truncated or not a video")
    assert why["notavideo.mp4"].startswith("damaged, truncated or not a video")
    assert "QQQQ" in why["codec.avi"] and "cannot be decoded by the bundled ffmpeg" in why["codec.avi"]
    assert "re-encode" in why["codec.avi"]


def test_a_truncated_video_with_its_index_first_keeps_what_decodes(tmp_path):
    folder = with_good_clips(tmp_path / "mix")
    truncate(write_faststart_video(folder / "stream.mp4", frames=30), keep=0.8)
    data = load(folder, tmp_path, frames=4)
    assert str(folder / "stream.mp4") in data.used
    note = next(n for n in data.notes if n.startswith("stream.mp4"))
    assert "could be decoded (truncated or damaged?)" in note and "of about 30 frames" in note


def test_other_files_are_listed_as_skipped(tmp_path):
    folder = with_good_clips(tmp_path / "mix")
    (folder / "readme.txt").write_text("hello")
    assert reasons(load(folder, tmp_path))["readme.txt"].startswith("not a video, a frame or a .npy file (.txt)")


class Tripwire:
    """Unpickling this calls _unpickled: a loader that unpickles would be caught."""
    def __reduce__(self):
        return (_unpickled, ())


UNPICKLED = []


def _unpickled():
    UNPICKLED.append(True)
    return "unpickled"


def test_npy_of_wrong_rank_dtype_or_holding_pickles_is_skipped_never_unpickled(tmp_path):
    folder = with_good_clips(tmp_path / "mix")
    np.save(folder / "rank3.npy", np.zeros((4, 24, 24), np.uint8))
    np.save(folder / "floats.npy", np.zeros((2, 8, 24, 24), np.float32))
    np.save(folder / "objects.npy", np.array([Tripwire(), Tripwire()], dtype=object), allow_pickle=True)
    (folder / "pickle.npy").write_bytes(pickle.dumps(Tripwire()))
    np.save(folder / "alpha.npy", np.zeros((2, 8, 24, 24, 4), np.uint8))
    truncate(write_npy(folder / "cut.npy", "NTHW"))
    data = load(folder, tmp_path)
    why = reasons(data)
    assert len(data) == 4
    assert why["rank3.npy"].startswith("an array of rank 3 (4, 24, 24)")
    assert why["floats.npy"].startswith("dtype float32; clips must be uint8")
    assert why["objects.npy"].startswith("holds Python objects, which would need unpickling: refused")
    assert why["pickle.npy"].startswith("not a NumPy .npy file") and "never loaded" in why["pickle.npy"]
    assert why["alpha.npy"].startswith("4 channels")
    assert why["cut.npy"].startswith("damaged or truncated")
    assert UNPICKLED == []


# --- bad input: one clear line -------------------------------------------------------------------

def test_nothing_usable_is_one_line_with_the_report(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"")
    (folder / "b.npy").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataError) as caught:
        load(folder, tmp_path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"no usable clips in {folder}")
    assert "a.mp4: empty file" in message and "add videos" in message
    assert {Path(item).name for item, _ in caught.value.report.skipped} == {"a.mp4", "b.npy"}


def test_too_few_clips_and_wrong_paths_are_one_line(tmp_path):
    with pytest.raises(DataError, match=r"^only 2 usable clip\(s\) in .* needs at least 4") as caught:
        load(write_frame_folders(tmp_path / "two", clips=2), tmp_path)
    assert caught.value.report.summary == {"clips": 2} and len(caught.value.report.used) == 2
    with pytest.raises(StudioError, match="does not exist"):
        load(tmp_path / "missing", tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(StudioError, match="neither a video, a .npy file nor a folder"):
        load(tmp_path / "notes.txt", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no videos, frame folders or .npy clips in"):
        load(tmp_path / "empty", tmp_path)
    with pytest.raises(StudioError, match="channels must be one of auto, grey, rgb"):
        load(None, tmp_path, channels="colour")


# --- cache and memory ----------------------------------------------------------------------------

def test_a_second_load_comes_from_the_cache(tmp_path, monkeypatch):
    folder = write_clip_folder(tmp_path / "clips", classes=2, per_class=2)
    (folder / "class0" / "readme.txt").write_text("not a clip")
    first = load(folder, tmp_path)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the files did not change")

    monkeypatch.setattr(video_data, "_decode_item", no_decoding)
    again = load(folder, tmp_path)
    assert np.array_equal(again.clips, first.clips) and np.array_equal(again.labels, first.labels)
    assert (again.classes, again.fps, again.used, again.skipped, again.notes, again.key) == \
           (first.classes, first.fps, first.used, first.skipped, first.notes, first.key)
    with pytest.raises(AssertionError, match="decoded again"):  # other settings: another entry
        load(folder, tmp_path, frames=4)


def test_a_long_large_video_is_read_with_bounded_memory(tmp_path):
    """300 frames of 640x480 would take 276 MB decoded; frames are scaled while they decode and
    only the clips are kept, so what Python allocates stays a few MB. Reading stops at the
    per-file cap of clips."""
    video = write_long_video(tmp_path / "long" / "long.mp4", frames=300, width=640, height=480)
    tracemalloc.start()
    try:
        data = load(video, tmp_path, frames=4, resolution=32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) == MAX_CLIPS_PER_FILE  # 75 windows of 4 frames; 64 kept
    assert any(f"the first {MAX_CLIPS_PER_FILE} clips were used" in n for n in data.notes)
    one_full_frame = 640 * 480 * 3
    assert peak < 10 * one_full_frame, f"peak {peak / 1e6:.1f} MB"


# --- the built-in sets ---------------------------------------------------------------------------

def test_bouncing_shapes_are_deterministic_for_a_seed_and_move(tmp_path):
    clips, labels, classes = bouncing_shapes(6, 10, 32, seed=3)
    again, labels_again, _ = bouncing_shapes(6, 10, 32, seed=3)
    other, _, _ = bouncing_shapes(6, 10, 32, seed=4)
    assert clips.shape == (6, 10, 32, 32, 3) and clips.dtype == np.uint8
    assert np.array_equal(clips, again) and np.array_equal(labels, labels_again)
    assert not np.array_equal(clips, other)
    assert classes == ["circle", "square", "triangle"] and labels.tolist() == [0, 1, 2, 0, 1, 2]
    motion = np.abs(np.diff(clips.astype(int), axis=1)).mean(axis=(2, 3, 4))
    assert (motion > 0).all()  # every clip changes between every pair of frames


def test_bouncing_digits_are_deterministic_labelled_and_stay_inside():
    digits = np.zeros((10, 28, 28), np.uint8)
    for d in range(10):
        digits[d, 4:24, 4:24] = 20 + 20 * d  # each "digit" its own brightness
    clips, labels = bouncing_digits(digits, np.arange(10), n=12, frames=30, resolution=32, seed=1)
    again, labels_again = bouncing_digits(digits, np.arange(10), n=12, frames=30, resolution=32, seed=1)
    assert clips.shape == (12, 30, 32, 32, 1)
    assert np.array_equal(clips, again) and np.array_equal(labels, labels_again)
    for clip, label in zip(clips, labels):
        # the digit drawn is the one labelled (brightnesses 20 apart; scaling overshoots a little)
        assert abs(int(clip.max()) - (20 + 20 * int(label))) < 8
        ink = (clip > 0).sum(axis=(1, 2, 3))
        assert (ink == ink[0]).all()  # never clipped by the walls: it bounces
