"""Generated outputs as files, with their lineage: the one writer of samples for the window's
Export button, its history and `studio generate --out`.

An output is what one request made: a list of `Sample`s and a lineage dict (run, checkpoint,
generator, parameters, seed, prompt, count, ...). `export` writes it to one file in the format
its extension names; `write_folder` writes it as a folder that `runstore.load_samples` reads
back (the history keeps its entries that way). No Qt here: the CLI uses it too.

An interpolation (image samples that are the frames of one walk between two seeds: each meta
has a "frame") is an animation: it exports as GIF or MP4, or as a PNG strip.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np

from studio.contract import Sample
from studio.errors import StudioError
from studio.runstore import read_json, write_atomic, write_json

VIDEO_FPS = 8  # what the window's player plays at, unless a sample's meta says otherwise
INTERPOLATION_FPS = 8

EXPORT_FORMATS = {"text": (".txt", ".jsonl"), "image": (".png",), "video": (".gif", ".mp4"),
                  "interpolation": (".gif", ".mp4", ".png")}


# --- what an output is -------------------------------------------------------------------------

def is_interpolation(samples: list[Sample]) -> bool:
    """Images that are the frames of one animation (the image generator's `interpolate_to`
    marks each frame's meta with its index)."""
    return len(samples) > 1 and all(s.kind == "image" and "frame" in s.meta for s in samples)


def output_kind(samples: list[Sample]) -> str:
    """"text", "image", "video" or "interpolation": what the output is to a person."""
    if is_interpolation(samples):
        return "interpolation"
    return samples[0].kind if samples else "text"


def animation_frames(samples: list[Sample]) -> np.ndarray:
    """An interpolation's frames, or several clips side by side, as one TxHxWx3 clip (a shorter
    clip holds its last frame)."""
    if is_interpolation(samples):
        return np.stack([_as_rgb(s.data) for s in samples])[..., :3]
    clips = [np.asarray(s.data) for s in samples]
    length = max(len(c) for c in clips)
    frames = [tile([c[min(t, len(c) - 1)] for c in clips]) for t in range(length)]
    return np.stack(frames)[..., :3]


def frames_per_second(samples: list[Sample]) -> float:
    if is_interpolation(samples):
        return float(INTERPOLATION_FPS)
    return float(samples[0].meta.get("fps", VIDEO_FPS))


# --- one file ----------------------------------------------------------------------------------

MAX_GIF_FPS = 50  # GIF delays are whole hundredths of a second, and browsers floor them at 20 ms


def sidecar_path(path: Path) -> Path:
    """`clip.gif` -> `clip.gif.json`: a GIF and an MP4 of the same name keep their own."""
    return path.with_name(path.name + ".json")


def export(output, path: str | Path, lineage: dict | None = None,
           separate: bool = False) -> list[Path]:
    """Write an output (an object with `samples` and `lineage`, or a list of samples with
    `lineage` given) to `path`, in the format its extension names, with its lineage: text as
    TXT (+ sidecar `<file>.json`) or JSONL (lineage on every line); images as PNG with the
    lineage in the PNG's text metadata (several images: one grid, or with `separate` one file
    each); video and interpolations as GIF or MP4 with a sidecar `<file>.json` (an
    interpolation also as a PNG strip). Returns the files written."""
    samples, lineage = _unpack(output, lineage)
    path = Path(path)
    kind, ext = output_kind(samples), path.suffix.lower()
    if not samples:
        raise StudioError("this output is empty (it was stopped before anything was made).")
    if ext not in EXPORT_FORMATS.get(kind, ()):
        allowed = ", ".join(EXPORT_FORMATS.get(kind, ())) or "nothing"
        article = "an" if kind[0] in "aeiou" else "a"
        raise StudioError(f"{article} {kind} output exports as {allowed}; '{path.name}' is not "
                          f"one of those. Pick a file name with one of these extensions.")
    try:
        if ext == ".txt":
            return _export_txt(samples, lineage, path)
        if ext == ".jsonl":
            return _export_jsonl(samples, lineage, path)
        if ext == ".png":
            columns = len(samples) if kind == "interpolation" else None  # a strip, in order
            return _export_png(samples, lineage, path, separate, columns)
        return _export_video(samples, lineage, path)
    except OSError as exc:
        raise StudioError(f"cannot write {path}: {exc.strerror or exc}. "
                          f"Pick another folder.") from None


def _unpack(output, lineage: dict | None) -> tuple[list[Sample], dict]:
    if isinstance(output, list):
        return output, dict(lineage or {})
    return list(output.samples), dict(lineage if lineage is not None else output.lineage)


def _export_txt(samples: list[Sample], lineage: dict, path: Path) -> list[Path]:
    texts = [s.data for s in samples]
    if len(texts) == 1:
        body = texts[0]
    else:
        body = "\n\n".join(f"--- sample {i + 1} of {len(texts)} ---\n{t}"
                           for i, t in enumerate(texts))
    path.write_text(body + ("" if body.endswith("\n") else "\n"), encoding="utf-8")
    write_json(sidecar_path(path), {"file": path.name, **lineage})
    return [path, sidecar_path(path)]


def _export_jsonl(samples: list[Sample], lineage: dict, path: Path) -> list[Path]:
    lines = [json.dumps({"text": s.data, "index": i, "lineage": lineage, "meta": s.meta},
                        ensure_ascii=False, default=str)
             for i, s in enumerate(samples)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [path]


def _as_rgb(array: np.ndarray) -> np.ndarray:
    """HxW, HxWx1 -> HxWx3; RGB and RGBA unchanged."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array


def tile(images: list[np.ndarray], columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Images of one size side by side in a grid (like torchvision's make_grid), with `pad`
    pixels of black between them."""
    images = [_as_rgb(im) for im in images]
    if len(images) == 1:
        return images[0]
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    h, w, c = images[0].shape
    grid = np.zeros((rows * h + (rows - 1) * pad, columns * w + (columns - 1) * pad, c), np.uint8)
    for i, im in enumerate(images):
        r, col = divmod(i, columns)
        grid[r * (h + pad):r * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = im
    return grid


def write_png(array: np.ndarray, path: Path, lineage: dict) -> None:
    """A PNG with the lineage as JSON in its "lineage" text chunk."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_itxt("lineage", json.dumps(lineage, ensure_ascii=False, default=str))
    info.add_text("Software", "AIGC Studio")
    Image.fromarray(np.ascontiguousarray(_as_rgb(array))).save(path, pnginfo=info)


def _export_png(samples: list[Sample], lineage: dict, path: Path, separate: bool,
                columns: int | None) -> list[Path]:
    images = [s.data for s in samples]
    if separate and len(images) > 1:
        written = []
        for i, (image, sample) in enumerate(zip(images, samples)):
            target = path.with_name(f"{path.stem}-{i:03d}{path.suffix}")
            write_png(image, target, {**lineage, "index": i, "meta": sample.meta})
            written.append(target)
        return written
    layout = {"grid_of": len(images)} if len(images) > 1 else {}
    write_png(tile(images, columns), path, {**lineage, **layout})
    return [path]


def _export_video(samples: list[Sample], lineage: dict, path: Path) -> list[Path]:
    frames = animation_frames(samples)
    fps = frames_per_second(samples)
    height, width = frames.shape[1:3]
    written, scale = write_clip(frames, fps, path,
                                comment=json.dumps(lineage, ensure_ascii=False, default=str))
    write_json(sidecar_path(path), {"file": path.name, "frames": written, "fps": fps,
                                    "scale": scale, "height": int(height), "width": int(width),
                                    **lineage})
    return [path, sidecar_path(path)]


# ffmpeg's bit-exact flags leave its version out of the file, so that the same frames give the
# same bytes on any machine with the same encoder; x264's output depends on its thread count,
# so it is fixed rather than taken from the machine's cores (2 threads: 0.43 s for a 16-frame
# 1080x1350 ad against 0.60 s with 1, on 2 cores; the same bytes run after run).
BITEXACT_MP4_PARAMS = ["-threads", "2", "-fflags", "+bitexact", "-flags:v", "+bitexact",
                       "-map_metadata", "-1"]


def write_clip(frames: np.ndarray, fps: float, path: Path, comment: str | None = None,
               bitexact: bool = False) -> tuple[int, int]:
    """Write T x H x W x 3 uint8 `frames` as a GIF or an MP4 (by `path`'s suffix), with
    `comment` in its metadata; `bitexact`: the same frames always give the same MP4 bytes.
    Returns the frames written and the factor tiny clips were enlarged by (MP4)."""
    import imageio.v3 as iio
    if path.suffix.lower() == ".gif":
        # Browsers play delays under 20 ms as 100 ms: above 50 fps, every k-th frame is kept.
        # Delays are whole hundredths of a second: each frame's is the step between its
        # rounded start times, so the clip lasts exactly as long as it should (2.5 cs each
        # became 2, and a 2 s clip played in 1.6 s).
        keep = math.ceil(fps / MAX_GIF_FPS)
        frames = frames[::keep]
        starts = [round(i * keep * 100 / fps) for i in range(len(frames) + 1)]
        delays = [10 * (b - a) for a, b in zip(starts, starts[1:])]
        extra = {"comment": comment.encode("utf-8")} if comment is not None else {}
        iio.imwrite(path, frames, extension=".gif", duration=delays, loop=0, **extra)
        return len(frames), 1
    # H.264 smears clips a few pixels wide into colour blocks: enlarge tiny clips with
    # nearest-neighbour pixels first, and pad to even sides (yuv420p needs them).
    scale = max(1, math.ceil(64 / min(frames.shape[1:3])))
    frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    odd_h, odd_w = frames.shape[1] % 2, frames.shape[2] % 2
    frames = np.pad(frames, ((0, 0), (0, odd_h), (0, odd_w), (0, 0)), mode="edge")
    # x264's "veryfast" preset: on a 16-frame 1080x1350 ad, 0.46 s against the default
    # "medium"'s 0.92 s, a smaller file (174 vs 188 KiB), 0.3 dB less PSNR (41.0 vs 41.3).
    params = ["-preset", "veryfast"] + (BITEXACT_MP4_PARAMS if bitexact else [])
    if comment is not None:
        params += ["-metadata", f"comment={comment}"]
    iio.imwrite(path, frames, extension=".mp4", plugin="FFMPEG", fps=fps, macro_block_size=2,
                output_params=params)
    return len(frames), scale


# --- a folder ----------------------------------------------------------------------------------

def folder_problem(folder: str | Path) -> str | None:
    """Why samples cannot go into `folder` (it is a file, or lies under one), or None. Asked
    before generating, so a long generation is not thrown away at the end."""
    folder = Path(folder)
    for place in (folder, *folder.parents):
        if place.exists():
            if place.is_dir():
                return None
            where = "is a file" if place == folder else f"lies under {place}, which is a file"
            return f"{folder} {where}; samples go into a folder. Give a new or existing folder."
    return None


VIDEO_FORMATS = ("gif", "mp4", "npy", "frames")


def write_folder(output, folder: str | Path, lineage: dict | None = None,
                 extra: dict | None = None, video_format: str | None = None) -> list[Path]:
    """Write an output into `folder`: each image as `NNN.png` (lineage in its metadata), each
    video as `NNN.gif`, texts in `samples.txt`, an interpolation also as `interpolation.gif`,
    and `samples.json` listing them with their meta and the lineage — the layout
    `runstore.load_samples` reads back. `extra` fields join `samples.json`. `video_format`
    (what `studio generate --out` asks for): "gif" writes each clip as GIF and MP4, "mp4" as
    MP4, "npy" all clips in one `clips.npy` (N, T, H, W, C) uint8, "frames" a folder of PNGs
    per clip; None (previews, the history) a GIF each. Returns the files written."""
    samples, lineage = _unpack(output, lineage)
    folder = Path(folder)
    if video_format not in (None, *VIDEO_FORMATS):
        raise StudioError(f"format={video_format}: clips are written as one of "
                          f"{', '.join(VIDEO_FORMATS)}.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written, entries, clips_seen = [], [], 0
        clips = [s for s in samples if s.kind == "video"]
        if clips and video_format == "npy":
            written += _export_npy(clips, lineage, folder / "clips.npy")
        for i, sample in enumerate(samples):
            entry = {"kind": sample.kind, "meta": sample.meta}
            if sample.kind == "text":
                entry["text"] = sample.data
            elif sample.kind == "image":
                entry["file"] = f"{i:03d}.png"
                write_png(sample.data, folder / entry["file"], {**lineage, "index": i,
                                                                "meta": sample.meta})
                written.append(folder / entry["file"])
            elif sample.kind == "video":
                entry["file"], files = _write_clip(sample, i, clips_seen, folder,
                                                   {**lineage, "index": i}, video_format)
                written += files
                clips_seen += 1
            entries.append(entry)
        if samples and output_kind(samples) == "text":
            written += _export_txt(samples, lineage, folder / "samples.txt")
        if is_interpolation(samples):
            written += _export_video(samples, lineage, folder / "interpolation.gif")
        write_json(folder / "samples.json", {**(extra or {}), "lineage": lineage,
                                             "samples": entries})
        written.append(folder / "samples.json")
    except OSError as exc:
        raise StudioError(f"cannot write into {folder}: {exc.strerror or exc}. "
                          f"Pick another folder.") from None
    return written


def _write_clip(sample: Sample, i: int, clip_index: int, folder: Path, lineage: dict,
                video_format: str | None) -> tuple[str, list[Path]]:
    """One clip in the asked format: (the name samples.json gives it, the files written)."""
    if video_format == "npy":
        return f"clips.npy#{clip_index}", []  # written once for all clips
    if video_format == "frames":
        frames_folder = folder / f"{i:03d}"
        frames_folder.mkdir(exist_ok=True)
        files = []
        for t, frame in enumerate(sample.data):
            write_png(frame, frames_folder / f"{t:04d}.png", {**lineage, "frame": t})
            files.append(frames_folder / f"{t:04d}.png")
        return f"{i:03d}/", files
    if video_format == "mp4":
        return f"{i:03d}.mp4", _export_video([sample], lineage, folder / f"{i:03d}.mp4")
    files = _export_video([sample], lineage, folder / f"{i:03d}.gif")
    if video_format == "gif":  # what a person shares: an MP4 beside the GIF
        files += _export_video([sample], lineage, folder / f"{i:03d}.mp4")
    return f"{i:03d}.gif", files


def _export_npy(clips: list[Sample], lineage: dict, path: Path) -> list[Path]:
    """All clips as one (N, T, H, W, C) uint8 array (clips of one length and size, as one
    generation makes them), written atomically; the lineage in a sidecar JSON."""
    import io
    shapes = {clip.data.shape for clip in clips}
    if len(shapes) > 1:
        raise StudioError(f"format=npy stacks clips of one shape, but these have "
                          f"{len(shapes)} shapes; use format=gif or frames.")
    buffer = io.BytesIO()
    np.save(buffer, np.stack([clip.data for clip in clips]).astype(np.uint8), allow_pickle=False)
    write_atomic(path, buffer.getvalue())
    write_json(sidecar_path(path), {"file": path.name, "shape": [len(clips), *shapes.pop()],
                                    **lineage})
    return [path, sidecar_path(path)]


# --- the generation history, kept in the runs folder -------------------------------------------

HISTORY_FOLDER = "generate-history"
HISTORY_LIMIT = 200  # older entries are removed: a history, not an archive (Export keeps files)


class HistoryStore:
    """Generation outputs kept across restarts: one folder per output under
    `<runs folder>/generate-history/`, written by `write_folder` with the lineage and the time
    it was made, oldest removed beyond `limit`."""

    def __init__(self, runs_folder: str | Path, limit: int = HISTORY_LIMIT):
        self.root = Path(runs_folder) / HISTORY_FOLDER
        self.limit = limit

    def save(self, samples: list[Sample], lineage: dict, created: float) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(created))
        folder = self.root / f"{stamp}-{int(created * 1000) % 1000:03d}"
        n = 2
        while folder.exists():
            folder = folder.with_name(f"{folder.name.split('~')[0]}~{n}")
            n += 1
        write_folder(samples, folder, lineage, extra={"created": created,
                                                      "made": len(samples),
                                                      "output_kind": output_kind(samples)})
        self._prune()
        return folder

    def folders(self) -> list[Path]:
        """Entry folders, oldest first (names start with the time they were made)."""
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.iterdir() if (p / "samples.json").is_file()),
                      key=lambda p: _natural(p.name))

    def load_index(self) -> list[dict]:
        """Each entry's samples.json without its arrays: lineage, created, kind, folder. An
        entry that cannot be read is left out (and left on disk)."""
        docs = []
        for folder in self.folders():
            try:
                doc = read_json(folder / "samples.json", "a history entry")
            except StudioError:
                continue
            if isinstance(doc, dict) and isinstance(doc.get("lineage"), dict):
                docs.append({**doc, "folder": folder})
        return docs

    @staticmethod
    def load_samples(folder: Path) -> list[Sample]:
        from studio.runstore import load_samples
        try:
            return load_samples(folder)[1]
        except (OSError, ValueError) as exc:
            raise StudioError(f"the history entry {folder} cannot be read ({exc}); delete the "
                              f"folder to remove it.") from None

    def _prune(self) -> None:
        folders = self.folders()
        for folder in folders[:max(0, len(folders) - self.limit)]:
            shutil.rmtree(folder, ignore_errors=True)


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def shorten(text: str, limit: int) -> str:
    """A one-line excerpt of `text` at most `limit` characters long, for titles and headers
    that name an output by its prompt."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"
