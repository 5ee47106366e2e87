"""Small video datasets written to disk for the video generator's tests.

Every clip is a coloured square moving with a constant velocity on a plain background, so a
test can tell motion from noise; all of it comes from a fixed seed and is written offline
(MP4 through imageio's ffmpeg plugin, GIF through Pillow, frames as PNG, arrays as .npy).
"""

from pathlib import Path

import numpy as np
from PIL import Image

MNIST = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


def moving_square(frames: int = 8, size: int = 24, seed: int = 0, grey: bool = False) -> np.ndarray:
    """(frames, size, size, 3) uint8: a square of a random colour moving across a background."""
    rng = np.random.default_rng(seed)
    side = max(size // 4, 2)
    background = rng.integers(170, 256, 3)
    colour = rng.integers(0, 120, 3)
    if grey:
        background[:], colour[:] = background[0], colour[0]
    x, y = rng.integers(0, size - side, 2)
    dx, dy = rng.choice([-2, -1, 1, 2], 2)
    clip = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        clip[t] = background
        clip[t, y:y + side, x:x + side] = colour
        if not 0 <= x + dx <= size - side:
            dx = -dx
        if not 0 <= y + dy <= size - side:
            dy = -dy
        x, y = x + dx, y + dy
    return clip


def write_video(path: Path, frames: np.ndarray, fps: float = 8) -> Path:
    """Frames (T, H, W, 3) uint8 -> an MP4/WebM/AVI/MOV (ffmpeg; H and W even) or a GIF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                       duration=int(round(1000 / fps)))
    else:
        import imageio.v3 as iio
        # macro_block_size=1: keep tiny test sizes as they are instead of padding them to 16.
        iio.imwrite(path, np.asarray(frames), plugin="FFMPEG", fps=fps, macro_block_size=1)
    return path


def write_clip_folder(folder: Path, classes: int = 2, per_class: int = 3, frames: int = 8,
                      size: int = 24) -> Path:
    """Clips in class subfolders (class0, class1, ...), alternately MP4 and GIF, each a
    moving square; `classes=0` writes them unlabelled at the top level."""
    folder.mkdir(parents=True, exist_ok=True)
    for c in range(max(classes, 1)):
        target = folder / f"class{c}" if classes else folder
        for i in range(per_class):
            suffix = ".mp4" if i % 2 == 0 else ".gif"
            write_video(target / f"clip{i:02d}{suffix}", moving_square(frames, size, seed=100 * c + i))
    return folder


def write_frame_folders(folder: Path, clips: int = 3, frames: int = 8, size: int = 24,
                        first: int = 1, digits: int = 0) -> Path:
    """One folder of PNG frames per clip, named frame1.png, frame2.png, ... (digits=0: not
    zero-padded, so only a natural sort orders them right)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(clips):
        clip_folder = folder / f"clip{i:02d}"
        clip_folder.mkdir(exist_ok=True)
        for t, frame in enumerate(moving_square(frames, size, seed=i)):
            Image.fromarray(frame).save(clip_folder / f"frame{first + t:0{digits}d}.png")
    return folder


def moving_squares(n: int = 4, frames: int = 8, size: int = 24, grey: bool = False) -> np.ndarray:
    """(n, frames, size, size, 3) uint8."""
    return np.stack([moving_square(frames, size, seed=i, grey=grey) for i in range(n)])


def write_npy(path: Path, layout: str = "NTHW", n: int = 4, frames: int = 8, size: int = 24) -> Path:
    """A .npy of grey (layout "TNHW": Moving MNIST's, or "NTHW") or RGB ("NTHWC") clips."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clips = moving_squares(n, frames, size, grey=layout != "NTHWC")
    array = {"NTHWC": clips, "NTHW": clips[..., 0], "TNHW": clips[..., 0].transpose(1, 0, 2, 3)}[layout]
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    return path


# --- videos that real folders hold and the loader must cope with -----------------------------------

def ffmpeg(*args: str) -> None:
    """Run the ffmpeg that imageio-ffmpeg bundles (quiet; raises when it fails)."""
    import subprocess
    import imageio_ffmpeg
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *map(str, args)],
                   check=True, capture_output=True)


def write_long_video(path: Path, frames: int = 300, width: int = 640, height: int = 480,
                     fps: int = 25) -> Path:
    """ffmpeg's moving test pattern, encoded by ffmpeg itself (no frame passes through Python)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate={fps}", "-frames:v", frames,
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", path)
    return path


def write_zero_frame_video(path: Path) -> Path:
    """A valid MP4 container in which not one frame was encoded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=32x32:r=8", "-frames:v", 0, "-c:v", "libx264", path)
    return path


def write_unknown_codec_video(path: Path) -> Path:
    """An AVI whose video stream names a codec (FourCC 'QQQQ') that no ffmpeg decodes: an
    MJPEG AVI with its FourCC overwritten."""
    source = write_video(path.with_name(path.stem + ".source.mp4"), moving_square(8, 24))
    mjpeg = path.with_name(path.stem + ".mjpeg.avi")
    ffmpeg("-i", source, "-c:v", "mjpeg", mjpeg)
    path.write_bytes(mjpeg.read_bytes().replace(b"MJPG", b"QQQQ"))
    source.unlink()
    mjpeg.unlink()
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to `keep` of its bytes, as an interrupted download or copy leaves it."""
    raw = path.read_bytes()
    path.write_bytes(raw[:int(len(raw) * keep)])
    return path


def write_faststart_video(path: Path, frames: int = 30, size: int = 24) -> Path:
    """An MP4 with its index at the front (as streamed files are), so a truncated copy still
    decodes up to where it was cut."""
    plain = write_video(path.with_name(path.stem + ".plain.mp4"), moving_squares(1, frames, size)[0])
    ffmpeg("-i", plain, "-c", "copy", "-movflags", "+faststart", path)
    plain.unlink()
    return path
