"""Video data: a folder of videos, frame folders or .npy arrays, MNIST digits set bouncing, or
the built-in bouncing shapes; decoded once into fixed-length clips.

Every source gives one result (`ClipSet`: uint8 clips (N, T, R, R, C), labels, class names,
playback frame rate, and what was used, skipped and noticed):

- a folder, read recursively. Its items are videos (MP4, WebM, AVI, MOV, MKV through the
  ffmpeg that imageio-ffmpeg bundles; GIF through Pillow), frame folders (a folder holding
  image files: one clip, frames in natural order, frame2 before frame10) and `.npy` arrays.
  When every item lies in a top-level subfolder and there are two or more of them, each
  subfolder is a class (as the image generator's folders).
- one video file or one `.npy` file.
- the MNIST IDX files (a file or a folder holding them): each clip is one digit bouncing off
  the walls, labelled by the digit.
- `builtin:bouncing-shapes` (or no source): coloured circles, squares and triangles moving at
  a constant speed, spinning and bouncing, drawn with Pillow from a fixed seed (offline).

A clip is `frames` frames taken `frame_stride` source frames apart; a long video yields
several clips (non-overlapping windows), up to MAX_CLIPS_PER_FILE. A video is decoded frame
by frame and scaled by ffmpeg while it decodes, so a 4K minute-long file never sits in memory:
what Python holds is the clip being filled and the clips already made. A `.npy` is memory-mapped
and never unpickled. A source with fewer frames than a clip needs is looped (short_clips=loop)
or skipped (short_clips=skip), and the notes say which.

Anything that cannot be used (empty, damaged or truncated files, codecs the bundled ffmpeg
cannot decode, frames of different sizes, gaps in a frame folder's numbering, arrays of the
wrong rank or dtype, arrays holding pickled objects) is skipped with its reason. Decoded clips
are cached with the image generator's cache, keyed by the SHA-256 of the files' contents and
the decoding settings.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import numpy as np
from PIL import Image, ImageDraw, ImageSequence

from generators.image.data import (BACKGROUNDS, IMAGE_SUFFIXES, MAX_PIXELS, MIN_SIDE, Unusable,
                                   cached_arrays, decode_image, file_sha256, find_idx_sets,
                                   fit_square, is_grey, is_idx_source, read_idx, refuse_too_few,
                                   to_rgb)
from studio.contract import DataReport
from studio.errors import DataError, StudioError

BUILTIN_BOUNCING_SHAPES = "builtin:bouncing-shapes"
SHAPE_CLASSES = ("circle", "square", "triangle")
FFMPEG_SUFFIXES = {".mp4", ".m4v", ".webm", ".avi", ".mov", ".mkv"}
VIDEO_SUFFIXES = FFMPEG_SUFFIXES | {".gif"}
FRAME_SUFFIXES = IMAGE_SUFFIXES - {".gif"}  # a GIF in a frame folder is a clip of its own
CHANNELS = ("auto", "grey", "rgb")
SHORT_CLIPS = ("loop", "skip")
MAX_CLIPS_PER_FILE = 64  # a long video gives at most this many clips (windows of one scene)
MAX_CLIP_BYTES = 1 << 30  # decoded clips held at once; what lies past it is left unread, and said
MIN_CLIPS = 4  # usable clips a run needs at all (a few hundred give good results)
DEMO_CLIPS = 1500  # clips in a built-in set (fewer when they would pass DEMO_BYTES)
DEMO_BYTES = 256 << 20
DEMO_FPS = 8.0  # frame rate of the built-in sets, and of frame folders and arrays (no rate of their own)
DECODER_VERSION = 1  # bump when decoding changes, so old cache entries are not reused


@dataclass
class ClipSet:
    clips: np.ndarray  # (N, T, H, W, C) uint8, T == frames, H == W == resolution, C 1 (grey) or 3 (RGB)
    labels: np.ndarray  # (N,) int64; -1 for every clip when the data has no classes
    classes: list[str]  # class names (top-level subfolders), [] when none
    fps: float  # playback frame rate of the clips (source fps / frame_stride)
    used: list[str] = field(default_factory=list)  # what was read (files/folders)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)
    notes: list[str] = field(default_factory=list)  # one-line notes for the data report
    key: str = ""  # content hash of the decoded set (cache key)

    def __len__(self) -> int:
        return len(self.clips)


# --- cutting a stream of frames into clips ------------------------------------------------------

class ClipCutter:
    """Takes frames one at a time and keeps only what the clips need: every `stride`-th frame
    of non-overlapping windows of frames x stride source frames, at most `limit` clips."""

    def __init__(self, frames: int, stride: int, limit: int = MAX_CLIPS_PER_FILE):
        self.frames, self.stride, self.limit = frames, stride, limit
        self.clips: list[np.ndarray] = []
        self.current: list[np.ndarray] = []
        self.seen = 0  # source frames offered

    @property
    def full(self) -> bool:
        return len(self.clips) >= self.limit

    def add(self, frame: np.ndarray) -> None:
        if self.full:
            return
        if (self.seen % (self.frames * self.stride)) % self.stride == 0:
            self.current.append(frame)
            if len(self.current) == self.frames:
                self.clips.append(_grey_if_grey(np.stack(self.current)))
                self.current = []
        self.seen += 1

    def finish(self, short_clips: str) -> tuple[list[np.ndarray], str | None]:
        """The clips, and a note when a source too short for one clip was looped. Raises
        Unusable when there is no frame at all, or a short source is to be skipped."""
        if self.clips:
            return self.clips, None
        if not self.current:
            raise Unusable("holds no video frames (no video stream, or one with zero frames)")
        have = len(self.current)
        at_stride = f" at frame_stride {self.stride}" if self.stride > 1 else ""
        if short_clips == "skip":
            raise Unusable(f"too short: {have} frame(s){at_stride}, a clip needs {self.frames} "
                           f"(set short_clips=loop to loop it, or lower frames)")
        looped = np.stack([self.current[t % have] for t in range(self.frames)])
        return [_grey_if_grey(looped)], f"{have} of {self.frames} frames{at_stride}"


def _grey_if_grey(clip: np.ndarray) -> np.ndarray:
    """(T, R, R, 3) -> (T, R, R, 1) when every pixel is grey: a grey set then takes a third of
    the memory until the channels are settled."""
    return clip[..., :1].copy() if clip.shape[-1] == 3 and is_grey(clip) else clip


@dataclass
class Decoded:
    """What one item (a video, a frame folder, a .npy) gave."""
    clips: list[np.ndarray]
    fps: float | None = None  # playback rate after frame_stride; None: the item has no rate of its own
    notes: list[str] = field(default_factory=list)
    looped: str | None = None  # e.g. "5 of 16 frames": it was shorter than one clip and looped


# --- decoding one item ----------------------------------------------------------------------------

def _ffmpeg_reason(message: str) -> str:
    """ffmpeg's last words -> why the file is skipped, in plain words."""
    if "no decoder found" in message or "Decoder not found" in message or "Unknown decoder" in message:
        codec = re.search(r"Video: (\S+)(?: \(([^)]*)\))?", message)
        name = (codec.group(2) or codec.group(1)).split(" / ")[0] if codec else "its codec"
        return (f"the video codec ({name}) cannot be decoded by the bundled ffmpeg; re-encode it "
                f"as H.264 MP4 (ffmpeg -i IN -c:v libx264 OUT.mp4)")
    if "does not contain any stream" in message or "matches no streams" in message:
        return "holds no video frames (no video stream, or one with zero frames)"
    return "damaged, truncated or not a video (ffmpeg cannot read it)"


def _not_our_scaling(record: logging.LogRecord) -> bool:
    """imageio-ffmpeg warns when the frames read differ in size from the stream's; ours are
    scaled on purpose, so that warning would only alarm."""
    return "frame size for reading" not in record.getMessage()


logging.getLogger("imageio_ffmpeg").addFilter(_not_our_scaling)


def _video_frames(path: Path, resolution: int, found: dict):
    """Frames of a video file, (R, R, 3) uint8 each: ffmpeg scales the shorter side to R and
    crops the centre while it decodes, so only small frames cross the pipe. `found` gets the
    file's fps and its expected frame count."""
    import imageio_ffmpeg  # imageio's ffmpeg plugin; only needed for videos
    side = f"{resolution}:{resolution}"
    reader = imageio_ffmpeg.read_frames(str(path), output_params=[
        "-vf", f"scale={side}:force_original_aspect_ratio=increase:flags=lanczos,crop={side}"])
    try:
        try:
            meta = next(reader)
        except (OSError, RuntimeError, StopIteration) as exc:
            raise Unusable(_ffmpeg_reason(str(exc))) from None
        width, height = meta.get("source_size") or (resolution, resolution)
        if min(width, height) < MIN_SIDE:
            raise Unusable(f"too small ({width}x{height} px); frames need at least {MIN_SIDE} px a side")
        found["fps"] = float(meta.get("fps") or 0) or None
        duration = float(meta.get("duration") or 0)
        found["expected"] = round(duration * found["fps"]) if found["fps"] and math.isfinite(duration) else None
        while True:
            try:
                raw = next(reader)
            except StopIteration:
                return
            except (OSError, RuntimeError) as exc:  # broke off mid-stream: keep what decoded
                found["error"] = _ffmpeg_reason(str(exc))
                return
            yield np.frombuffer(raw, dtype=np.uint8).reshape(resolution, resolution, 3)
    finally:
        reader.close()  # stops ffmpeg when the clips are made before the file ends


def _gif_frames(path: Path, resolution: int, found: dict):
    """Frames of an animated GIF through Pillow (palettes and transparency as for images), at
    a constant rate: the typical delay sets the rate, and a frame shown longer (a hold, or
    repeated frames an encoder merged into one) is repeated for as long as it is shown."""
    try:
        image = Image.open(path)
    except Exception:
        raise Unusable("not a GIF Pillow can read (damaged or another format)") from None
    with image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise Unusable(f"refused as a possible decompression bomb: {width}x{height} px")
        if min(width, height) < MIN_SIDE:
            raise Unusable(f"too small ({width}x{height} px); frames need at least {MIN_SIDE} px a side")
        delays = []
        try:
            for frame in ImageSequence.Iterator(image):
                delays.append(_shown_for(frame.info.get("duration")))
        except (OSError, ValueError, EOFError) as exc:  # keep the frames before the damage
            found["error"] = f"damaged or truncated ({exc})"
        if not delays:
            raise Unusable(found.get("error", "holds no frames"))
        typical = median(delays)
        repeats = [max(1, round(delay / typical)) for delay in delays]
        found["fps"], found["expected"] = 1000.0 / typical, sum(repeats)
        for frame, times in zip(ImageSequence.Iterator(image), repeats):
            rgb = np.asarray(fit_square(to_rgb(frame, BACKGROUNDS["white"]), resolution), dtype=np.uint8)
            for _ in range(times):
                yield rgb


def _shown_for(delay_ms) -> float:
    """How long browsers show a GIF frame: delays of 10 ms or less are played as 100 ms."""
    return float(delay_ms) if delay_ms and delay_ms > 10 else 100.0


def _numbered(name: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"(.*?)(\d+)", Path(name).stem)
    return (match.group(1), int(match.group(2))) if match else None


def natural_key(name: str) -> list:
    """'frame2' before 'frame10': digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _folder_frames(files: list[Path], resolution: int):
    """Frames of a frame folder, in natural order; refuses gaps in the numbering and frames of
    different sizes, which would make the clip jump."""
    files = sorted(files, key=lambda f: natural_key(f.name))
    numbers = [_numbered(f.name) for f in files]
    if all(numbers) and len({prefix for prefix, _ in numbers}) == 1:
        taken = [n for _, n in numbers]
        if len(set(taken)) < len(taken):
            raise Unusable("two frames have the same number (e.g. frame1 and frame01); keep one")
        missing = sorted(set(range(taken[0], taken[-1] + 1)) - set(taken))
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
            raise Unusable(f"gap in the frame numbering: {len(missing)} frame(s) missing ({shown}); "
                           f"the clip would jump. Add the missing frames or renumber them")
    sizes = {}
    for f in files:
        try:
            with Image.open(f) as image:
                sizes.setdefault(image.size, f.name)
        except Exception:
            raise Unusable(f"frame {f.name} is not an image Pillow can read") from None
    if len(sizes) > 1:
        (a, first), (b, other) = list(sizes.items())[:2]
        raise Unusable(f"frames of different sizes in one clip ({first} is {a[0]}x{a[1]}, "
                       f"{other} is {b[0]}x{b[1]}); make them one size")
    for f in files:
        try:
            yield decode_image(f.read_bytes(), resolution)
        except Unusable as exc:
            raise Unusable(f"frame {f.name}: {exc}") from None


def _array_clip_frames(clip: np.ndarray, resolution: int):
    """Frames (H, W, C) of one clip of a .npy -> (R, R, C)."""
    for frame in clip:
        if frame.shape[:2] == (resolution, resolution):
            yield np.ascontiguousarray(frame)
        else:
            image = Image.fromarray(frame[..., 0], "L") if frame.shape[-1] == 1 else Image.fromarray(frame, "RGB")
            fitted = np.asarray(fit_square(image, resolution), dtype=np.uint8)
            yield fitted[..., None] if fitted.ndim == 2 else fitted


def open_array(path: Path) -> tuple[np.ndarray, str]:
    """A .npy of clips, memory-mapped, as (N, T, H, W, C), and the layout it was read in.
    Its header is read before any data: an array of Python objects (which would need
    unpickling) or a file that is not .npy at all is refused, never loaded."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
    except (ValueError, OSError, EOFError) as exc:
        if path.stat().st_size == 0:
            raise Unusable("empty file (0 bytes)") from None
        raise Unusable(f"not a NumPy .npy file ({exc}); pickles are never loaded") from None
    if dtype.hasobject:
        raise Unusable("holds Python objects, which would need unpickling: refused. Save the "
                       "clips as a plain uint8 array")
    if len(shape) not in (4, 5):
        raise Unusable(f"an array of rank {len(shape)} {tuple(shape)}; clips are (T, N, H, W) as "
                       f"Moving MNIST's, or (N, T, H, W) or (N, T, H, W, C)")
    if dtype != np.uint8:
        raise Unusable(f"dtype {dtype}; clips must be uint8 (0-255). Convert with "
                       f"np.clip(a * 255, 0, 255).astype(np.uint8) when the values are 0-1")
    if len(shape) == 5 and shape[-1] not in (1, 3):
        raise Unusable(f"{shape[-1]} channels in {tuple(shape)}; (N, T, H, W, C) needs C 1 or 3")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise Unusable(f"damaged or truncated ({exc})") from None
    if min(shape[-3:-1] if len(shape) == 5 else shape[-2:]) < MIN_SIDE:
        raise Unusable(f"frames too small ({tuple(shape)}); they need at least {MIN_SIDE} px a side")
    if array.ndim == 5:
        return array, "(N, T, H, W, C)"
    if _time_is_first_axis(array):
        return array.transpose(1, 0, 2, 3)[..., None], "(T, N, H, W) (Moving MNIST)"
    return array[..., None], "(N, T, H, W)"


def _time_is_first_axis(array: np.ndarray) -> bool:
    """A 4-D grey array is (T, N, H, W) or (N, T, H, W): time is the axis along which
    neighbouring frames are alike. Measured on a few samples."""
    a, b = array.shape[:2]
    if a < 2 or b < 2:
        return b < 2
    idx = np.linspace(0, min(a, b) - 2, num=min(8, min(a, b) - 1)).astype(int)
    along_first = np.mean([np.abs(array[i + 1, j].astype(np.int16) - array[i, j]).mean() for i in idx for j in idx[:4]])
    along_second = np.mean([np.abs(array[i, j + 1].astype(np.int16) - array[i, j]).mean() for i in idx[:4] for j in idx])
    return along_first < along_second


# --- the sources ---------------------------------------------------------------------------------

def load_clips(source: str | None, frames: int, frame_stride: int, resolution: int,
               channels: str, cache_dir: Path, short_clips: str = "loop") -> ClipSet:
    """source None: the built-in bouncing coloured shapes (fixed seed, offline). A path: a folder
    of videos, a folder of frame folders, .npy files (Moving MNIST (T,N,H,W) or (N,T,H,W[,C])), or
    the MNIST idx files folder (-> bouncing digits, labelled by digit). channels: auto|grey|rgb.
    short_clips: loop|skip. Raises studio.errors.StudioError (one line: what, where, what to do)
    when nothing usable is left."""
    if channels not in CHANNELS or short_clips not in SHORT_CLIPS:
        raise StudioError(f"channels must be one of {', '.join(CHANNELS)} and short_clips one of "
                          f"{', '.join(SHORT_CLIPS)} (got {channels!r}, {short_clips!r}).")
    if frames < 1 or frame_stride < 1 or resolution < MIN_SIDE:
        raise StudioError(f"frames and frame_stride must be 1 or more and resolution at least "
                          f"{MIN_SIDE} (got {frames}, {frame_stride}, {resolution}).")
    settings = f"v{DECODER_VERSION}-{frames}-{frame_stride}-{resolution}-{channels}-{short_clips}"
    if source in (None, BUILTIN_BOUNCING_SHAPES):
        return _load_shapes(frames, frame_stride, resolution, channels, cache_dir, settings)
    path = Path(source).expanduser()
    if not path.exists():
        raise StudioError(f"data path {path} does not exist. Give a folder of videos (MP4, WebM, "
                          f"AVI, MOV, GIF), of frame folders or of .npy clips (one subfolder per "
                          f"class if they have classes), or leave --data out for the built-in clips.")
    if is_idx_source(path):
        data = _load_digits(path, frames, frame_stride, resolution, channels, cache_dir, settings)
    elif path.is_dir() or path.suffix.lower() in VIDEO_SUFFIXES | {".npy"}:
        data = _load_items(path, frames, frame_stride, resolution, channels, short_clips,
                           cache_dir, settings)
    else:
        raise StudioError(f"{path} is neither a video, a .npy file nor a folder; give a folder of "
                          f"videos, frame folders or .npy clips.")
    refuse_too_few(data, MIN_CLIPS, path, item="clip", needed_by="The video generator",
                   remedy="add videos, frame folders or .npy clips")
    return data


def _items(root: Path) -> tuple[list[tuple[Path, list[Path]]], list[tuple[str, str]]]:
    """The clip sources under `root`: (video or .npy file, []) or (frame folder, its frames),
    in natural order; and the files that are none of these, with the reason."""
    if root.is_file():
        return [(root, [])], []
    items, skipped, frame_folders = [], [], {}
    for f in sorted(root.rglob("*"), key=lambda p: natural_key(str(p.relative_to(root)))):
        if not f.is_file() or any(part.startswith(".") for part in f.relative_to(root).parts):
            continue
        suffix = f.suffix.lower()
        if suffix in VIDEO_SUFFIXES or suffix == ".npy":
            items.append((f, []))
        elif suffix in FRAME_SUFFIXES:
            frame_folders.setdefault(f.parent, []).append(f)
        else:
            skipped.append((str(f), f"not a video, a frame or a .npy file ({suffix or 'no suffix'}); "
                                    f"videos end in {', '.join(sorted(VIDEO_SUFFIXES))}"))
    items += list(frame_folders.items())
    items.sort(key=lambda item: natural_key(str(item[0].relative_to(root))))
    return items, skipped


def _load_items(path: Path, frames: int, stride: int, resolution: int, channels: str,
                short_clips: str, cache_dir: Path, settings: str) -> ClipSet:
    root = path if path.is_dir() else path.parent
    items, skipped = _items(path)
    if not items:
        detail = f" ({Path(skipped[0][0]).name}: {skipped[0][1]})" if skipped else ""
        raise DataError(f"no videos, frame folders or .npy clips in {path}{detail}.",
                        DataReport(source=str(path), skipped=skipped))
    relative = [item.relative_to(root) for item, _ in items]
    # Classes: every item lies in a top-level subfolder, and there are two or more of them.
    in_subfolders = all(len(rel.parts) > 1 for rel in relative) and path.is_dir()
    top = sorted({rel.parts[0] for rel in relative}, key=natural_key)
    classes = top if in_subfolders and len(top) >= 2 else []

    digest = hashlib.sha256(f"video-items-{settings}".encode())
    for (item, frame_files), rel in zip(items, relative):
        for f in frame_files or [item]:
            digest.update(str(f.relative_to(root)).encode() + b"\0" + file_sha256(f))
    key = digest.hexdigest()[:32]

    def build():
        clips, labels, used, bad, notes, rates, looped = [], [], [], [], [], [], []
        held = 0
        for (item, frame_files), rel in zip(items, relative):
            if held >= MAX_CLIP_BYTES:
                bad.append((str(rel), f"not read: the clips read before it fill the memory budget "
                                      f"of {MAX_CLIP_BYTES >> 20} MiB; lower the resolution or "
                                      f"the number of files"))
                continue
            try:
                decoded = _decode_item(item, frame_files, frames, stride, resolution, short_clips,
                                       MAX_CLIP_BYTES - held)
            except Unusable as exc:
                bad.append((str(rel), str(exc)))
                continue
            except OSError as exc:
                bad.append((str(rel), f"cannot read: {exc.strerror or exc}"))
                continue
            clips += decoded.clips
            labels += [classes.index(rel.parts[0]) if classes else -1] * len(decoded.clips)
            held += sum(c.nbytes for c in decoded.clips)
            used.append(str(rel))
            rates += [decoded.fps] * len(decoded.clips) if decoded.fps else []
            notes += [f"{rel}: {note}" for note in decoded.notes]
            looped += [f"{rel} ({decoded.looped})"] if decoded.looped else []
        if looped:
            notes.append(f"{len(looped)} source(s) shorter than one clip of {frames} frames were "
                         f"looped (set short_clips=skip to leave them out): " + ", ".join(looped[:5]) +
                         (", ..." if len(looped) > 5 else ""))
        fps = median(rates) if rates else DEMO_FPS / stride
        if rates and max(rates) > 1.5 * min(rates):
            notes.append(f"the clips have different frame rates ({min(rates):.3g} to "
                         f"{max(rates):.3g} fps, after frame_stride); they play at {fps:.3g} fps")
        meta = {"classes": classes, "used": used, "skipped": bad, "notes": notes, "fps": fps}
        return _settle_channels(clips, channels, frames, resolution), np.asarray(labels, np.int64), meta

    clips, labels, meta = cached_arrays(cache_dir, key, build)
    return ClipSet(clips, labels, meta["classes"], meta["fps"],
                   used=[str(root / rel) for rel in meta["used"]],
                   skipped=skipped + [(str(root / rel), why) for rel, why in meta["skipped"]],
                   notes=meta["notes"], key=key)


def _decode_item(item: Path, frame_files: list[Path], frames: int, stride: int, resolution: int,
                 short_clips: str, room: int) -> Decoded:
    """One item -> its clips; `room`: the bytes of clips it may still add (a big array stops there)."""
    found: dict = {}  # what the reader learns: fps, the frames expected, an error mid-stream
    if frame_files:
        source = _folder_frames(frame_files, resolution)
    elif item.stat().st_size == 0:
        raise Unusable("empty file (0 bytes)")
    elif item.suffix.lower() == ".npy":
        return _decode_array(item, frames, stride, resolution, short_clips, room)
    elif item.suffix.lower() == ".gif":
        source = _gif_frames(item, resolution, found)
    else:
        source = _video_frames(item, resolution, found)
    cutter = ClipCutter(frames, stride)
    for frame in source:
        cutter.add(frame)
        if cutter.full:
            source.close()  # a video's ffmpeg stops here: the rest of a long file is never decoded
            break
    notes = []
    if cutter.full:
        notes.append(f"the first {MAX_CLIPS_PER_FILE} clips were used (the most one source gives); "
                     f"the rest was not read")
    elif found.get("error") or (found.get("expected") and cutter.seen < 0.9 * found["expected"]):
        if not cutter.seen:
            raise Unusable(found.get("error") or "holds no video frames")
        expected = f" of about {found['expected']}" if found.get("expected") else ""
        notes.append(f"only {cutter.seen}{expected} frames could be decoded (truncated or "
                     f"damaged?); the clips use those")
    made, looped = cutter.finish(short_clips)
    return Decoded(made, found["fps"] / stride if found.get("fps") else None, notes, looped)


def _decode_array(path: Path, frames: int, stride: int, resolution: int, short_clips: str,
                  room: int) -> Decoded:
    """Each clip of the array gives its own clips (a long one several, up to MAX_CLIPS_PER_FILE)
    until `room` bytes are used."""
    array, layout = open_array(path)
    made, looped, held = [], 0, 0
    notes = [f"read as {layout}: {array.shape[0]} clip(s) of {array.shape[1]} frames"]
    for index, clip in enumerate(array):
        if held >= room:
            notes.append(f"the first {index} of its {len(array)} clips were used: the clips fill "
                         f"the memory budget of {MAX_CLIP_BYTES >> 20} MiB (lower the resolution "
                         f"or frames to use more)")
            break
        cutter = ClipCutter(frames, stride)
        for frame in _array_clip_frames(clip, resolution):
            cutter.add(frame)
            if cutter.full:
                break
        clips, short = cutter.finish(short_clips)
        made += clips
        held += sum(c.nbytes for c in clips)
        looped += short is not None
    return Decoded(made, notes=notes,
                   looped=f"{looped} of its clips, of {array.shape[1]} frames" if looped else None)


def _settle_channels(clips: list[np.ndarray], channels: str, frames: int, resolution: int) -> np.ndarray:
    """Clips of 1 or 3 channels -> one (N, T, R, R, C) array: grey (ITU-R 601 luma, as Pillow's
    "L") when asked or when every clip is grey, else RGB."""
    grey = channels == "grey" or (channels == "auto" and all(c.shape[-1] == 1 for c in clips))
    out = np.empty((len(clips), frames, resolution, resolution, 1 if grey else 3), dtype=np.uint8)
    for i, clip in enumerate(clips):
        if grey and clip.shape[-1] == 3:
            out[i, ..., 0] = (clip.astype(np.uint32) @ np.array([299, 587, 114], np.uint32) + 500) // 1000
        else:
            out[i] = clip if clip.shape[-1] == out.shape[-1] else np.repeat(clip, 3, axis=-1)
    return out


# --- the built-in sets ----------------------------------------------------------------------------

def _demo_count(frames: int, resolution: int, channels: int) -> int:
    return max(MIN_CLIPS, min(DEMO_CLIPS, DEMO_BYTES // (frames * resolution * resolution * channels)))


def bouncing_shapes(n: int, frames: int, resolution: int, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """n clips (n, frames, R, R, 3) uint8 of a coloured circle, square or triangle (label i % 3)
    moving at a constant velocity, spinning at a constant rate and bouncing off the walls, on a
    plain light background; drawn at 4x (at most 256 px) and reduced by averaging, so edges are
    smooth (a box reduction: 9x faster than Lanczos for thousands of frames)."""
    rng = np.random.default_rng(seed)
    factor = max(1, min(4, 256 // resolution))
    canvas = factor * resolution
    clips = np.empty((n, frames, resolution, resolution, 3), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % len(SHAPE_CLASSES)
    for i in range(n):
        name = SHAPE_CLASSES[labels[i]]
        background = tuple(int(v) for v in rng.integers(170, 256, 3))
        colour = tuple(int(v) for v in rng.integers(0, 150, 3))
        radius = canvas * rng.uniform(0.14, 0.24)
        position = rng.uniform(radius, canvas - radius, 2)
        heading = rng.uniform(0, 2 * math.pi)
        velocity = canvas * rng.uniform(0.03, 0.07) * np.array([math.cos(heading), math.sin(heading)])
        angle, spin = rng.uniform(0, 2 * math.pi), rng.uniform(-0.25, 0.25)
        for t in range(frames):
            image = Image.new("RGB", (canvas, canvas), background)
            draw = ImageDraw.Draw(image)
            cx, cy = position
            if name == "circle":
                draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
            else:
                corners = 4 if name == "square" else 3
                draw.polygon([(cx + radius * math.cos(angle + 2 * math.pi * k / corners),
                               cy + radius * math.sin(angle + 2 * math.pi * k / corners))
                              for k in range(corners)], fill=colour)
            clips[i, t] = np.asarray(image.reduce(factor) if factor > 1 else image)
            position, velocity = _bounce(position + velocity, velocity, radius, canvas - radius)
            angle += spin
    return clips, labels, list(SHAPE_CLASSES)


def _bounce(position: np.ndarray, velocity: np.ndarray, low: float, high: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Reflect a position that left [low, high] back inside, reversing that velocity component."""
    position, velocity = position.copy(), velocity.copy()
    for axis in range(len(position)):
        if position[axis] < low:
            position[axis], velocity[axis] = 2 * low - position[axis], -velocity[axis]
        elif position[axis] > high:
            position[axis], velocity[axis] = 2 * high - position[axis], -velocity[axis]
    return position, velocity


def bouncing_digits(digits: np.ndarray, labels: np.ndarray, n: int, frames: int, resolution: int,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n clips (n, frames, R, R, 1) uint8, each one digit (drawn from `digits`, (M, H, W) uint8,
    white on black as MNIST's) moving at a constant velocity on black and bouncing off the
    walls, as in Moving MNIST (a 28 px digit on 64 px, scaled with R); and each clip's label."""
    rng = np.random.default_rng(seed)
    side = max(round(resolution * 28 / 64), 4)
    clips = np.zeros((n, frames, resolution, resolution, 1), dtype=np.uint8)
    picks = rng.integers(0, len(digits), n)
    room = resolution - side
    for i, pick in enumerate(picks):
        digit = np.asarray(Image.fromarray(digits[pick], "L").resize((side, side), Image.Resampling.LANCZOS))
        position = rng.uniform(0, room, 2)
        heading = rng.uniform(0, 2 * math.pi)
        velocity = max(room, 1) * rng.uniform(0.06, 0.12) * np.array([math.cos(heading), math.sin(heading)])
        for t in range(frames):
            x, y = np.rint(position).astype(int)
            clips[i, t, y:y + side, x:x + side, 0] = digit
            position, velocity = _bounce(position + velocity, velocity, 0.0, float(room))
    return clips, np.asarray(labels, dtype=np.int64)[picks]


def _demo_frames(make, frames: int, stride: int):
    """Render (frames - 1) x stride + 1 frames and keep every stride-th, so frame_stride speeds
    the motion up as it does for a video."""
    clips, *rest = make((frames - 1) * stride + 1)
    return (np.ascontiguousarray(clips[:, ::stride]), *rest)


def _load_shapes(frames: int, stride: int, resolution: int, channels: str, cache_dir: Path,
                 settings: str) -> ClipSet:
    n = _demo_count(frames, resolution, 1 if channels == "grey" else 3)
    key = hashlib.sha256(f"bouncing-shapes-{settings}-{n}".encode()).hexdigest()[:32]

    def build():
        clips, labels, classes = _demo_frames(lambda t: bouncing_shapes(n, t, resolution), frames, stride)
        return _settle_channels(list(clips), channels, frames, resolution), labels, {"classes": classes}

    clips, labels, meta = cached_arrays(cache_dir, key, build)
    return ClipSet(clips, labels, meta["classes"], DEMO_FPS / stride,
                   used=[BUILTIN_BOUNCING_SHAPES], key=key)


def _load_digits(path: Path, frames: int, stride: int, resolution: int, channels: str,
                 cache_dir: Path, settings: str) -> ClipSet:
    sets = find_idx_sets(path)
    if not sets:
        raise StudioError(f"no MNIST images file (*-images-idx3-ubyte) in {path}.")
    labelled = all(labels is not None for _, labels in sets)
    n = _demo_count(frames, resolution, 3 if channels == "rgb" else 1)
    digest = hashlib.sha256(f"bouncing-digits-{settings}-{n}".encode())
    for images_file, labels_file in sets:
        for f in (images_file, labels_file):
            if f is not None:
                digest.update(file_sha256(f))
    key = digest.hexdigest()[:32]

    def build():
        digits, labels = [], []
        for images_file, labels_file in sets:
            images = read_idx(images_file)
            if images.ndim != 3:
                raise StudioError(f"{images_file} holds arrays of shape {images.shape[1:]}, not 2-D images.")
            digits.append(images)
            labels.append(read_idx(labels_file).astype(np.int64) if labelled else np.full(len(images), -1))
            if len(labels[-1]) != len(images):
                raise StudioError(f"{labels_file} has {len(labels[-1])} labels for {len(images)} "
                                  f"images in {images_file}.")
        all_labels = np.concatenate(labels)
        clips, clip_labels = _demo_frames(
            lambda t: bouncing_digits(np.concatenate(digits), all_labels, n, t, resolution), frames, stride)
        classes = [str(c) for c in range(int(all_labels.max()) + 1)] if labelled else []
        return _settle_channels(list(clips), channels, frames, resolution), clip_labels, {"classes": classes}

    clips, labels, meta = cached_arrays(cache_dir, key, build)
    return ClipSet(clips, labels, meta["classes"], DEMO_FPS / stride,
                   used=[str(f) for pair in sets for f in pair if f is not None],
                   notes=[f"{len(clips)} clips of a bouncing digit made from the MNIST digits"], key=key)
