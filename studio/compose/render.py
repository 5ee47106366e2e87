"""An ad's content laid out by its template: a poster, a clip, and the files of one ad.

`render_poster` draws the template's regions in order on its background: a media region shows
its image slot fitted to the box ("cover" fills it and crops, "contain" shows all of it with the
background around it), a text region its text slot fitted by text_layout.fit_text (wrapped,
shrunk, then ellipsised: never outside the box) and placed vertically by its ink.

`render_clip` makes the same layout move: a media region with a clip slot plays the clip, scaled
like the still; a media region without one shows its still, slowly zoomed from 1 to the
template's `clip.zoom`. The text is drawn over every frame. With a clip the ad lasts as long as
the (longest) clip at its frame rate; with stills only, `clip.seconds` at `clip.fps`.

`write_ad` writes poster.png, clip.mp4 and/or clip.gif, and ad.json (the lineage) into a new
folder and only then puts it in place, so a folder holds a complete ad or the earlier one.
The same content gives byte-identical files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from studio.compose.runner import AdContent
from studio.compose.template import Region, Template
from studio.compose.text_layout import FittedText, draw_text, fit_text
from studio.errors import StudioError
from studio.runstore import swap_folder_in, write_json

AD_FORMATS = ("png", "mp4", "gif")
POSTER_FILE, LINEAGE_FILE = "poster.png", "ad.json"


def render_poster(template: Template, content: AdContent) -> Image.Image:
    """The ad as one still picture, template.width x template.height, RGB."""
    media = {region.name: _fit(_image_of(region, content), region, template.background)
             for region in _media_regions(template)}
    return _compose(template, _fitted_texts(template, content), media)


def render_clip(template: Template, content: AdContent) -> tuple[list[Image.Image], float]:
    """The ad's frames and their frame rate (see the module's docstring)."""
    texts = _fitted_texts(template, content)
    clips = {region.name: content.slots[region.clip_slot]
             for region in _media_regions(template)
             if region.clip_slot and region.clip_slot in content.slots}
    if clips:
        count = max(len(clip.frames) for clip in clips.values())
        fps = max(clip.fps for clip in clips.values())
    else:
        fps = float(template.clip.fps)
        count = max(1, round(template.clip.seconds * fps))
    frames = []
    for index in range(count):
        media = {}
        for region in _media_regions(template):
            if region.name in clips:  # a shorter clip holds its last frame
                clip = clips[region.name].frames
                media[region.name] = _fit(clip[min(index, len(clip) - 1)], region,
                                          template.background)
            else:
                zoom = 1 + (template.clip.zoom - 1) * index / max(1, count - 1)
                media[region.name] = _fit(_image_of(region, content), region,
                                          template.background, zoom)
        frames.append(_compose(template, texts, media))
    return frames, fps


def write_ad(folder: str | Path, template: Template, content: AdContent,
             formats: tuple[str, ...] = ("png", "mp4")) -> Path:
    """Write one ad into `folder`: poster.png ("png"), clip.mp4 ("mp4"), clip.gif ("gif") and
    always ad.json. An existing ad there is replaced only once the new one is complete.
    Returns the folder."""
    check_formats(formats)
    folder = Path(folder)
    _refuse_other_files(folder)
    lineage = content.lineage()
    staging = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    try:
        _fresh_folder(staging)
        if "png" in formats:
            _write_png(render_poster(template, content), staging / POSTER_FILE, lineage)
        if "mp4" in formats or "gif" in formats:
            frames, fps = render_clip(template, content)
            pixels = np.stack([np.asarray(frame) for frame in frames])
            for suffix in ("mp4", "gif"):
                if suffix in formats:
                    _write_video(pixels, fps, staging / f"clip.{suffix}")
        write_json(staging / LINEAGE_FILE, lineage)
        swap_folder_in(staging, folder)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StudioError(f"cannot write the ad {folder}: {exc.strerror or exc}. Pick a "
                          f"writable output folder (anything already there is kept).") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def check_formats(formats: tuple[str, ...]) -> None:
    """Refuse an empty or unknown list of ad formats (before any work is done)."""
    unknown = [f for f in formats if f not in AD_FORMATS]
    if unknown or not formats:
        raise StudioError(f"ad formats {list(formats)!r}: pick from {', '.join(AD_FORMATS)} "
                          f"(e.g. png and mp4).")


# --- layout ----------------------------------------------------------------------------------

def _media_regions(template: Template) -> list[Region]:
    return [region for region in template.regions.values() if region.holds == "media"]


def _image_of(region: Region, content: AdContent) -> np.ndarray:
    slot = content.slots.get(region.slot)
    if slot is None or slot.image is None:
        raise StudioError(f"the ad for row {content.row_key} has no picture for slot "
                          f"'{region.slot}', which region '{region.name}' shows: add an image "
                          f"slot '{region.slot}' to the recipe.")
    return slot.image


def _fitted_texts(template: Template, content: AdContent) -> dict[str, FittedText | None]:
    """Each text region's fitted text (None: nothing to draw). Fitting is the slow part, so a
    clip's frames share it."""
    fitted = {}
    for region in template.regions.values():
        if region.holds != "text":
            continue
        slot = content.slots.get(region.slot)
        text = slot.text if slot is not None and slot.text else ""
        if not text.strip():
            fitted[region.name] = None
            continue
        style = region.text
        try:
            fitted[region.name] = fit_text(
                text, region.box.w, region.box.h, max_size=style.max_size,
                min_size=style.min_size, bold=style.font.bold, align=style.align,
                line_spacing=style.line_spacing,
                fonts=[style.font.file] if style.font.file else ())
        except StudioError as exc:
            raise StudioError(f"{template.path}: regions.{region.name} cannot show the text of "
                              f"slot '{region.slot}' for row {content.row_key}: {exc}") from None
    return fitted


def _compose(template: Template, texts: dict[str, FittedText | None],
             media: dict[str, Image.Image]) -> Image.Image:
    """The canvas with the regions drawn in the template's order (later ones on top)."""
    canvas = Image.new("RGB", (template.width, template.height), template.background)
    for region in template.regions.values():
        box = region.box
        if region.holds == "media":
            canvas.paste(media[region.name], (box.x, box.y))
        elif texts.get(region.name) is not None:
            fitted = texts[region.name]
            draw_text(canvas, fitted, (box.x, box.y + _valign_offset(fitted, region)),
                      region.text.colour)
    return canvas


def _valign_offset(fitted: FittedText, region: Region) -> int:
    """How far down to move the fitted lines in their box. "top" keeps the layout's own
    placement (the first line's ascender at the box's top, so headlines of different letters
    line up); "middle" and "bottom" place the ink, which fit_text keeps inside the box."""
    if fitted.ink_box is None:
        return 0
    ink_top, ink_bottom = fitted.ink_box[1], fitted.ink_box[3]
    if region.text.valign == "bottom":
        return region.box.h - ink_bottom
    if region.text.valign == "middle":
        return (region.box.h - (ink_bottom - ink_top)) // 2 - ink_top
    return 0


def _fit(pixels: np.ndarray, region: Region, background: str, zoom: float = 1.0) -> Image.Image:
    """`pixels` scaled into the region's box by its fit, then enlarged `zoom` times about the
    centre, as a picture of the box's size (the background where the picture does not reach).
    The visible part of the source is resampled straight to the box, with sub-pixel edges, so
    a slow zoom moves smoothly instead of a pixel at a time."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    box_w, box_h = region.box.w, region.box.h
    src_w, src_h = image.size
    pick = max if region.fit == "cover" else min
    scale = pick(box_w / src_w, box_h / src_h) * zoom
    seen_w, seen_h = min(src_w, box_w / scale), min(src_h, box_h / scale)  # source pixels shown
    shown_w = max(1, min(box_w, round(seen_w * scale)))
    shown_h = max(1, min(box_h, round(seen_h * scale)))
    left, top = (src_w - seen_w) / 2, (src_h - seen_h) / 2
    shown = image.resize((shown_w, shown_h), Image.Resampling.LANCZOS,
                         box=(left, top, left + seen_w, top + seen_h))
    if (shown_w, shown_h) == (box_w, box_h):
        return shown
    out = Image.new("RGB", (box_w, box_h), background)
    out.paste(shown, ((box_w - shown_w) // 2, (box_h - shown_h) // 2))
    return out


# --- files -----------------------------------------------------------------------------------

def _refuse_other_files(folder: Path) -> None:
    """An ad replaces an earlier ad, never a folder of other things: `folder` must be missing,
    empty, or hold an ad.json."""
    if folder.is_file():
        raise StudioError(f"cannot write the ad into {folder}: it is a file. Give a folder "
                          f"(it is made if missing).")
    if folder.is_dir() and not (folder / LINEAGE_FILE).is_file() and any(folder.iterdir()):
        raise StudioError(f"cannot write the ad into {folder}: it holds other files, and an ad "
                          f"replaces the folder it is written to. Give a new or empty folder, "
                          f"or an earlier ad's folder.")


def _fresh_folder(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)  # what an earlier interrupted write left
    path.mkdir(parents=True)


def _write_png(image: Image.Image, path: Path, lineage: dict) -> None:
    from studio.export import write_png
    write_png(np.asarray(image), path, lineage)


def _write_video(frames: np.ndarray, fps: float, path: Path) -> None:
    from studio.export import write_clip
    write_clip(frames, fps, path, bitexact=True)  # the lineage is in ad.json
