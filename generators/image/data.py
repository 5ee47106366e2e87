"""Image data: a folder of images, MNIST IDX files, or the built-in shapes; decoded once.

Three sources, one result (`ImageSet`: uint8 images (N, R, R, C), labels, class names, and
what was used and skipped):

- a folder, read recursively. When its top level holds only subfolders, each subfolder is a
  class (as torchvision's ImageFolder); otherwise the images are unlabelled. Pillow decodes
  every file and copes with what real folders hold: EXIF rotation, palette and alpha
  (composited on a background colour), greyscale, CMYK, 16-bit, any size (scaled so the
  shorter side fits, then centre-cropped; or, as the `fit` setting says, an image a little
  smaller than the resolution padded with its own background instead). Files that cannot be
  used -- empty, truncated, not an image, too small, decompression bombs -- are skipped, each
  with its reason.
- the MNIST IDX files (`*-images-idx3-ubyte[.gz]` with their `*-labels-idx1-ubyte[.gz]`), a
  file or a folder holding them (torchvision's MNIST/raw layout included); fitted the same way
  (fit=auto pads the 28 px digits to 32 px).
- `builtin:shapes`, the default: circles, squares, triangles and stars drawn with Pillow from
  a fixed seed. It needs no download and ships no one else's pictures.

Decoding is done once: the result is cached under the cache folder, keyed by the SHA-256 of
the files' contents and the decoding settings, as uint8 `.npy` files (memory-mapped, never
pickled) beside a JSON record of what was used and skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import shutil
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from generators.image.config import FITS
from studio.contract import DataReport
from studio.errors import DataError, StudioError

BUILTIN_SHAPES = "builtin:shapes"
SHAPE_CLASSES = ("circle", "square", "triangle", "star")
SHAPES_PER_CLASS = 1000
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm", ".pbm", ".tga"}
MIN_SIDE = 8  # pixels; smaller images carry nothing a GAN could learn from at 32 px and up
MIN_IMAGES = 8  # usable images a run needs at all (a few hundred give good results)
# Pillow's own guard against decompression bombs (about 89 megapixels); checked from the
# header, before any pixel is decoded.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
DECODER_VERSION = 1  # bump when decoding changes, so old cache entries are not reused
BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}
# fit=auto pads an image that is at most this many pixels smaller than the resolution on each
# side (MNIST's 28 px at 32): enlarging it by a few percent would only blur every edge.
PAD_AT_MOST = 4


@dataclass
class ImageSet:
    images: np.ndarray  # (N, R, R, C) uint8, C = 1 when every image is grey, else 3
    labels: np.ndarray  # (N,) int64 class index; -1: unlabelled
    classes: list[str]  # class names, index = label; empty when unlabelled
    source: str
    key: str  # content hash of the decoded set (cache key)
    used: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def grey(self) -> bool:
        return self.images.shape[-1] == 1


class Unusable(Exception):
    """A file that is skipped; the message is the reason shown to the user."""


# --- decoding one file ---------------------------------------------------------------------------

def decode_image(raw: bytes, resolution: int, background: str = "white", fit: str = "resize"
                 ) -> np.ndarray:
    """Bytes of one image file -> (resolution, resolution, 3) uint8 RGB, fitted as `fit_to`
    says. Raises Unusable."""
    if not raw:
        raise Unusable("empty file (0 bytes)")
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its pixel limit; refuse those too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(raw))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise Unusable(f"refused as a possible decompression bomb ({exc})") from None
        except Exception:  # UnidentifiedImageError, and what broken headers raise
            raise Unusable("not an image Pillow can read (unknown or damaged format)") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise Unusable(f"refused as a possible decompression bomb: {width}x{height} = "
                       f"{width * height:,} pixels, more than the limit of {MAX_PIXELS:,}")
    if min(width, height) < MIN_SIDE:
        raise Unusable(f"too small ({width}x{height} px); images need at least {MIN_SIDE} px a side")
    if image.format == "JPEG" and not pads(image.size, resolution, fit):
        image.draft("RGB", (resolution, resolution))  # decode at a reduced scale: much faster
    try:
        image.load()
    except Exception as exc:  # OSError "image file is truncated", SyntaxError, ...
        raise Unusable(f"damaged or truncated ({exc})") from None
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block is no reason to lose the picture: keep it as stored
        pass
    try:
        image = to_rgb(image, BACKGROUNDS[background])
    except (ValueError, OSError) as exc:
        raise Unusable(f"colour mode {image.mode} cannot be converted to RGB ({exc})") from None
    return fit_to(np.asarray(image, dtype=np.uint8), resolution, fit)


def to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any Pillow mode -> RGB: 16-bit and float scaled to 8 bits, transparency composited on
    `background`, CMYK and palettes converted."""
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            top = 1.0 if values.max(initial=0) <= 1.0 else 255.0
        else:  # 16-bit data (a 32-bit "I" image holding 0..255 is already 8-bit)
            top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(np.rint(values / top * 255), 0, 255).astype(np.uint8), "L")
    if image.mode in ("P", "PA", "LA", "La", "RGBa") or "transparency" in image.info:
        image = image.convert("RGBA")  # a palette's or a colour key's transparency becomes alpha
    if image.mode == "RGBA":
        base = Image.new("RGBA", image.size, background + (255,))
        image = Image.alpha_composite(base, image)
    return image.convert("RGB")


def fit_square(image: Image.Image, side: int) -> Image.Image:
    """Scale so the shorter side is `side`, then crop the centre square (torchvision's
    Resize + CenterCrop). Lanczos when shrinking, bicubic when enlarging (less ringing)."""
    method = Image.Resampling.LANCZOS if min(image.size) >= side else Image.Resampling.BICUBIC
    return ImageOps.fit(image, (side, side), method=method, centering=(0.5, 0.5))


def pads(size: tuple[int, int], side: int, fit: str) -> bool:
    """Whether an image of `size` (width, height) is padded to `side` rather than resized:
    fit=pad pads whatever is smaller than `side` on some axis; auto only images at most
    PAD_AT_MOST px smaller on each axis (and none larger), resize never."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
    width, height = size
    if fit == "pad":
        return min(width, height) < side
    if fit == "auto":
        return side - PAD_AT_MOST <= min(width, height) and max(width, height) <= side and \
            min(width, height) < side
    return False


def fit_to(pixels: np.ndarray, side: int, fit: str) -> np.ndarray:
    """uint8 (H, W, C) -> (side, side, C): padded (`pad_square`) when `pads` says so, else
    scaled and centre-cropped (`fit_square`)."""
    height, width = pixels.shape[:2]
    if pads((width, height), side, fit):
        return pad_square(pixels, side)
    mode = "L" if pixels.shape[2] == 1 else "RGB"
    fitted = np.asarray(fit_square(Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode), side))
    return fitted.reshape(side, side, pixels.shape[2])


def pad_square(pixels: np.ndarray, side: int) -> np.ndarray:
    """uint8 (H, W, C) centred unscaled on a (side, side, C) canvas of the image's own
    background; an axis longer than `side` is centre-cropped instead.

    The background is the median of the image's outermost ring of pixels, per channel and per
    image: one value for the whole dataset would draw a frame around every image whose
    background differs from it (photos, drawings on coloured paper), a frame the generator
    would then have to learn; the median ignores the few strokes that touch the edge (MNIST's
    ring is black, 0)."""
    height, width, channels = pixels.shape
    ring = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    background = np.median(ring, axis=0).round().astype(np.uint8)
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    pixels = pixels[top:top + side, left:left + side]
    height, width = pixels.shape[:2]
    canvas = np.empty((side, side, channels), dtype=np.uint8)
    canvas[:] = background
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top:top + height, left:left + width] = pixels
    return canvas


def is_grey(rgb: np.ndarray) -> bool:
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


# --- MNIST IDX files -----------------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not) -> array of its declared shape."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise StudioError(f"cannot read the IDX file {path}: {exc}. Is it complete? Download it "
                          f"again.") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise StudioError(f"{path} is not an IDX file of unsigned bytes (as MNIST's are).")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(dims):
        raise StudioError(f"{path} is truncated: its header promises {math.prod(dims):,} values "
                          f"but it holds {data.size:,}. Download it again.")
    return data.reshape(dims)


def find_idx_sets(path: Path) -> list[tuple[Path, Path | None]]:
    """(images file, labels file or None) for each MNIST-style set at or under `path`."""
    candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*idx3-ubyte*") if p.is_file())
    by_stem: dict[str, Path] = {}
    for p in candidates:  # torchvision keeps both x and x.gz: read each set once
        stem = p.name.removesuffix(".gz")
        if "idx3-ubyte" in stem and (stem not in by_stem or p.suffix != ".gz"):
            by_stem[stem] = p
    sets = []
    for stem, images in sorted(by_stem.items()):
        label_name = stem.replace("images-idx3", "labels-idx1").replace("idx3", "idx1")
        labels = next((images.parent / n for n in (label_name, label_name + ".gz")
                       if (images.parent / n).is_file()), None)
        sets.append((images, labels))
    return sets


def is_idx_source(path: Path) -> bool:
    if path.is_file():
        return "idx3-ubyte" in path.name
    return path.is_dir() and any(True for _ in path.rglob("*idx3-ubyte*"))


# --- the built-in shapes ---------------------------------------------------------------------------

def draw_shapes(resolution: int, per_class: int = SHAPES_PER_CLASS, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Coloured circles, squares, triangles and stars on plain backgrounds, of random size,
    place and rotation; drawn at 4x (at most 256 px) and scaled down, so edges are smooth."""
    rng = np.random.default_rng(seed)
    canvas = min(4 * resolution, 256)
    images, labels = [], []
    for i in range(per_class * len(SHAPE_CLASSES)):
        label = i % len(SHAPE_CLASSES)
        bg = tuple(int(v) for v in rng.integers(170, 256, 3))  # light backgrounds
        fg = tuple(int(v) for v in rng.integers(0, 150, 3))  # darker, saturated shapes
        image = Image.new("RGB", (canvas, canvas), bg)
        draw = ImageDraw.Draw(image)
        radius = canvas * rng.uniform(0.22, 0.40)
        cx, cy = canvas * rng.uniform(0.4, 0.6, 2)
        angle = rng.uniform(0, 2 * math.pi)
        name = SHAPE_CLASSES[label]
        if name == "circle":
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fg)
        else:
            corners = {"square": 4, "triangle": 3, "star": 10}[name]
            points = []
            for k in range(corners):
                r = radius * (0.45 if name == "star" and k % 2 else 1.0)
                a = angle + 2 * math.pi * k / corners
                points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
            draw.polygon(points, fill=fg)
        images.append(np.asarray(image.resize((resolution, resolution), Image.Resampling.LANCZOS)))
        labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


# --- the cache -------------------------------------------------------------------------------------

def _cache_folder(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / "images" / key


def _read_cache(folder: Path) -> tuple[np.ndarray, np.ndarray, dict] | None:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        images = np.load(folder / "images.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(folder / "labels.npy", allow_pickle=False)
        if len(images) != len(labels) or images.dtype != np.uint8:
            raise ValueError("inconsistent cache entry")
        return images, labels, meta
    except (OSError, ValueError, KeyError):
        return None


def _write_cache(folder: Path, images: np.ndarray, labels: np.ndarray, meta: dict
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Write atomically (a temporary folder renamed into place); on a read-only cache keep the
    arrays in memory."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        np.save(tmp / "images.npy", images, allow_pickle=False)
        np.save(tmp / "labels.npy", labels, allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)  # a damaged entry of the same key
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return images, labels
    cached = _read_cache(folder)
    return (cached[0], cached[1]) if cached else (images, labels)


def cached_arrays(cache_dir: Path, key: str, build) -> tuple[np.ndarray, np.ndarray, dict]:
    """The decoded arrays (items, labels) and their JSON record cached under `key`, or, when
    there is no readable entry, `build()`'s, written to the cache for next time. The video
    loader keeps its clips here too."""
    folder = _cache_folder(cache_dir, key)
    hit = _read_cache(folder)
    if hit is not None:
        return hit
    images, labels, meta = build()
    images, labels = _write_cache(folder, images, labels, meta)
    return images, labels, meta


def _stack(rgb: list[np.ndarray], resolution: int) -> np.ndarray:
    """(N, R, R, 1) when every image is grey, else (N, R, R, 3)."""
    if not rgb:
        return np.zeros((0, resolution, resolution, 3), dtype=np.uint8)
    images = np.stack(rgb)
    return images[..., :1].copy() if is_grey(images) else images


# --- the three sources -------------------------------------------------------------------------------

def load_images(source: str | None, resolution: int, background: str, cache_dir: Path,
                fit: str = "auto") -> ImageSet:
    """Read `source` (None: the built-in shapes, drawn at `resolution`, so `fit` does not
    apply), each image fitted to `resolution` as `fit` says (see `pads`). Raises StudioError
    when too little is usable."""
    if source in (None, BUILTIN_SHAPES):
        return _load_shapes(resolution, cache_dir)
    path = Path(source).expanduser()
    if not path.exists():
        raise StudioError(f"data path {path} does not exist. Give a folder of images (one "
                          f"subfolder per class if they have classes), MNIST IDX files, or leave "
                          f"--data out for the built-in shapes.")
    if is_idx_source(path):
        data = _load_idx(path, resolution, cache_dir, fit)
    elif path.is_dir():
        data = _load_folder(path, resolution, background, cache_dir, fit)
    else:
        raise StudioError(f"{path} is a single file; give the folder that holds your images "
                          f"(or MNIST IDX files).")
    refuse_too_few(data, MIN_IMAGES, path, item="image", needed_by="A GAN",
                   remedy="add PNG or JPEG images")
    return data


def refuse_too_few(data, least: int, path: Path, item: str, needed_by: str, remedy: str) -> None:
    """Raise DataError when `data` (an ImageSet, or the video loader's ClipSet: anything with a
    length, `used` and `skipped`) holds fewer than `least` usable items. The one-line message
    counts them in the loader's own words (`item`: "image", "clip"), names the first skipped
    files with their reasons, and says who needs how many and what to add; the report carries
    every used and skipped file."""
    if len(data) >= least:
        return
    why = "; ".join(f"{Path(f).name}: {r}" for f, r in data.skipped[:3])
    found = f"only {len(data)} usable {item}(s)" if len(data) else f"no usable {item}s"
    raise DataError(f"{found} in {path}" + (f" ({why})" if why else "") +
                    f". {needed_by} needs at least {least} (a few hundred give good results); "
                    f"{remedy}.",
                    DataReport(source=str(path), used=data.used, skipped=data.skipped,
                               summary={f"{item}s": len(data)}))


def _load_shapes(resolution: int, cache_dir: Path) -> ImageSet:
    key = hashlib.sha256(f"shapes-v{DECODER_VERSION}-{resolution}-{SHAPES_PER_CLASS}".encode()).hexdigest()[:32]

    def build():
        images, labels = draw_shapes(resolution)
        return images, labels, {"classes": list(SHAPE_CLASSES)}

    images, labels, meta = cached_arrays(cache_dir, key, build)
    return ImageSet(images, labels, meta["classes"], BUILTIN_SHAPES, key, used=[BUILTIN_SHAPES])


def _load_idx(path: Path, resolution: int, cache_dir: Path, fit: str) -> ImageSet:
    sets = find_idx_sets(path)
    if not sets:
        raise StudioError(f"no MNIST images file (*-images-idx3-ubyte) in {path}.")
    digest = hashlib.sha256(f"idx-v{DECODER_VERSION}-{resolution}-{fit}".encode())
    for images_file, labels_file in sets:
        for f in (images_file, labels_file):
            if f is not None:
                digest.update(hashlib.sha256(f.read_bytes()).digest())
    key = digest.hexdigest()[:32]
    used = [str(f) for pair in sets for f in pair if f is not None]

    def build():
        all_images, all_labels, has_labels = [], [], all(lbl is not None for _, lbl in sets)
        for images_file, labels_file in sets:
            raw = read_idx(images_file)
            if raw.ndim != 3:
                raise StudioError(f"{images_file} holds arrays of shape {raw.shape[1:]}, not "
                                  f"2-D images.")
            labels = read_idx(labels_file).astype(np.int64) if labels_file else None
            if labels is not None and len(labels) != len(raw):
                raise StudioError(f"{labels_file} has {len(labels)} labels for {len(raw)} images "
                                  f"in {images_file}.")
            for image in raw:
                all_images.append(fit_to(image[..., None], resolution, fit))
            all_labels.append(labels if labels is not None else np.full(len(raw), -1, np.int64))
        labels = np.concatenate(all_labels)
        if not has_labels:  # labels for only some of the sets: train without classes
            labels[:] = -1
        classes = [str(c) for c in range(int(labels.max()) + 1)] if has_labels else []
        return np.stack(all_images), labels, {"classes": classes}

    images, labels, meta = cached_arrays(cache_dir, key, build)
    return ImageSet(images, labels, meta["classes"], str(path), key, used=used)


def _load_folder(root: Path, resolution: int, background: str, cache_dir: Path, fit: str) -> ImageSet:
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise StudioError(f"{root} is an empty folder. Put images in it (PNG, JPEG, ...), one "
                          f"subfolder per class if they have classes.")
    skipped: list[tuple[str, str]] = []
    candidates = []
    for f in files:
        if f.suffix.lower() in IMAGE_SUFFIXES:
            candidates.append(f)
        else:
            skipped.append((str(f), f"not an image file ({f.suffix or 'no suffix'}); images end in "
                                    f"{', '.join(sorted(IMAGE_SUFFIXES))}"))
    if not candidates:
        raise DataError(f"no images in {root}: {len(files)} file(s), none of them an image "
                        f"({Path(skipped[0][0]).name}: {skipped[0][1]}).",
                        DataReport(source=str(root), skipped=skipped))
    # Classes: the top level holds only subfolders, and at least two of them hold images.
    top_level = {f.relative_to(root).parts[0] for f in candidates if len(f.relative_to(root).parts) > 1}
    loose = [f for f in candidates if len(f.relative_to(root).parts) == 1]
    classes = sorted(top_level) if len(top_level) >= 2 and not loose else []
    notes = []
    if len(top_level) >= 2 and loose:
        notes.append(f"{root}: images lie both at the top and in subfolders, so the subfolders "
                     f"are not used as classes (put every image in a class subfolder to train a "
                     f"class-conditional model)")

    digest = hashlib.sha256(f"folder-v{DECODER_VERSION}-{resolution}-{background}-{fit}".encode())
    for f in candidates:
        digest.update(str(f.relative_to(root)).encode() + b"\0")
        digest.update(file_sha256(f))
    key = digest.hexdigest()[:32]

    def build():
        rgb, labels, used, bad = [], [], [], []
        for f in candidates:
            rel = str(f.relative_to(root))
            try:
                rgb.append(decode_image(f.read_bytes(), resolution, background, fit))
            except Unusable as exc:
                bad.append((rel, str(exc)))
                continue
            except OSError as exc:
                bad.append((rel, f"cannot read: {exc.strerror or exc}"))
                continue
            used.append(rel)
            labels.append(classes.index(f.relative_to(root).parts[0]) if classes else -1)
        meta = {"classes": classes, "used": used, "skipped": bad}
        return _stack(rgb, resolution), np.asarray(labels, dtype=np.int64), meta

    images, labels, meta = cached_arrays(cache_dir, key, build)
    skipped += [(str(root / rel), reason) for rel, reason in meta["skipped"]]
    return ImageSet(images, labels, meta["classes"], str(root), key,
                    used=[str(root / rel) for rel in meta["used"]], skipped=skipped, notes=notes)


def file_sha256(path: Path) -> bytes:
    """The SHA-256 digest of a file's contents, read in chunks (part of a cache key)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:  # unreadable: hash the error, so the decode step reports it
        h.update(f"unreadable:{exc}".encode())
    return h.digest()
