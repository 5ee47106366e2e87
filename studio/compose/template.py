"""Ad templates: where each slot of a composition goes, as JSON data rather than code.

A template is a JSON object (the built-in ones are studio/compose/templates/*.json):

    {
      "format": 1,
      "description": "Portrait poster: picture on top, headline and body copy below",
      "canvas": {"width": 1080, "height": 1350, "background": "paper"},
      "margins": {"top": 64, "right": 64, "bottom": 64, "left": 64},
      "fonts": {"heading": {"family": "DejaVu Sans", "bold": true},
                "body": {"file": "fonts/Brand-Regular.ttf"}},
      "colours": {"paper": "#fbf7f0", "ink": "#1d1d1f"},
      "regions": {
        "picture": {"holds": "media", "slot": "picture", "clip_slot": "clip",
                    "box": [0, 0, 1080, 810], "fit": "cover"},
        "headline": {"holds": "text", "slot": "headline", "box": [64, 850, 952, 190],
                     "font": "heading", "max_size": 88, "min_size": 36, "colour": "ink",
                     "valign": "top", "line_spacing": 1.1}
      },
      "clip": {"fps": 12, "seconds": 4, "zoom": 1.08}
    }

Units and rules (each checked on load; a broken template gives one message naming the file and
the JSON path of the bad value):

* Boxes are `[x, y, w, h]` in whole pixels of the canvas, from its top-left corner. Pixels, not
  fractions, because font sizes are pixels too: a template is drawn at one size, exactly.
* `margins` is the safe area: text regions must lie inside it (text never touches the edge,
  which social sites crop); media regions may bleed to the canvas edge.
* A colour is `#rrggbb` or the name of an entry in `colours`; it is stored resolved (`#rrggbb`).
* A font is a `family` or a `file` (relative to the template file; it must exist), with
  `bold`. The shipped family is "DejaVu Sans" (assets/fonts/); studio.compose.fonts falls back
  to a font with the glyphs a text needs (CJK, Arabic) whatever the template names. Text
  regions name a font of `fonts`.
* A text region shows a text slot, wrapped and shrunk from `max_size` down to `min_size`
  (pixels), then ellipsised. `align` is left, center or right; left out, the side the text
  starts from (right for Arabic and Hebrew, else left). `valign` is top, middle or bottom
  (default top); `line_spacing` is baseline to baseline, in font sizes (default 1.2).
* A media region shows an image slot (`slot`) and, in the clip output, the video slot
  `clip_slot` if the recipe has one (else the still, slowly zoomed from 1 to `clip.zoom` over
  `clip.seconds`). `fit`: "cover" fills the box and crops, "contain" shows all of it, the
  background around it.
* Regions are drawn in the order they are written (later ones on top); each slot fills one
  region. Canvas sides are even, as MP4 video needs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import StudioError, json_kind
from studio.runstore import read_json

TEMPLATE_FORMAT = 1
BUILTIN_FOLDER = Path(__file__).resolve().parent / "templates"
HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
LARGEST_CANVAS = 8192
ALIGNS = ("left", "center", "right")
VALIGNS = ("top", "middle", "bottom")
FITS = ("cover", "contain")


# --- reading checked JSON (shared with recipe.py) ---------------------------------------------

@dataclass(frozen=True)
class Spot:
    """Where a value sits: the file it came from and its JSON path, for messages such as
    `ad.json: slots.headline.max_chars must be a whole number from 1 to 10000, got 0.`"""

    file: str
    path: str = ""

    def __truediv__(self, key: str | int) -> Spot:
        if isinstance(key, int):
            return Spot(self.file, f"{self.path}[{key}]")
        return Spot(self.file, f"{self.path}.{key}" if self.path else key)

    def error(self, problem: str) -> StudioError:
        return StudioError(f"{self.file}: {self.path} {problem}" if self.path
                           else f"{self.file}: {problem}")


def checked_object(value: Any, spot: Spot, required: tuple[str, ...],
                   optional: tuple[str, ...] = ()) -> dict:
    """`value` as a JSON object holding every `required` key and nothing unknown."""
    if not isinstance(value, dict):
        raise spot.error(f"must be a JSON object {{...}}, got {json_kind(value)}.")
    known = sorted(required + optional)
    for key in value:
        if key not in known:
            raise spot.error(f"has an unknown key '{key}'; the known keys are: "
                             f"{', '.join(known)}.")
    for key in required:
        if key not in value:
            raise spot.error(f"is missing '{key}'.")
    return value


def whole_number(value: Any, spot: Spot, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value != int(value) or not low <= value <= high:
        raise spot.error(f"must be a whole number from {low} to {high}, got {value!r}.")
    return int(value)


def number(value: Any, spot: Spot, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not low <= value <= high:
        raise spot.error(f"must be a number from {low} to {high}, got {value!r}.")
    return float(value)


def checked_text(value: Any, spot: Spot, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise spot.error(f"must be text (a JSON string), got {json_kind(value)}.")
    if not empty_ok and not value.strip():
        raise spot.error("must not be empty.")
    return value


def one_of(value: Any, spot: Spot, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise spot.error(f"must be one of {', '.join(choices)}; got {value!r}.")
    return value


def flag(value: Any, spot: Spot) -> bool:
    if not isinstance(value, bool):
        raise spot.error(f"must be true or false, got {value!r}.")
    return value


# --- what a template is -----------------------------------------------------------------------

@dataclass(frozen=True)
class Box:
    """A rectangle in canvas pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h


@dataclass(frozen=True)
class Margins:
    top: int
    right: int
    bottom: int
    left: int


@dataclass(frozen=True)
class Font:
    """A font by family name (None when a file is given) or by file (an absolute path)."""

    name: str
    family: str | None
    file: Path | None
    bold: bool


@dataclass(frozen=True)
class TextStyle:
    font: Font
    max_size: int  # pixels
    min_size: int  # pixels: the text shrinks no further, it is ellipsised instead
    colour: str  # #rrggbb
    align: str | None  # left, center, right; None: the text's start side (right for RTL)
    valign: str  # top, middle, bottom
    line_spacing: float  # times the font size, from baseline to baseline


@dataclass(frozen=True)
class Region:
    """A named place on the canvas. `holds` is "text" (then `text` is set) or "media" (then
    `fit` is set, and `clip_slot` names the video slot that plays there, if any)."""

    name: str
    holds: str
    slot: str
    box: Box
    text: TextStyle | None = None
    fit: str | None = None
    clip_slot: str | None = None


@dataclass(frozen=True)
class ClipSettings:
    fps: int
    seconds: float  # length of a still's slow zoom (a clip keeps its own length)
    zoom: float  # the still's scale at the end of the zoom (1 = no zoom)


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    description: str
    width: int
    height: int
    background: str  # #rrggbb
    margins: Margins
    fonts: dict[str, Font]
    colours: dict[str, str]
    regions: dict[str, Region]  # in drawing order
    clip: ClipSettings

    def slot_kinds(self) -> dict[str, str]:
        """Each slot the template shows -> "text", "image" or "clip" (the run it needs)."""
        kinds: dict[str, str] = {}
        for region in self.regions.values():
            kinds[region.slot] = "text" if region.holds == "text" else "image"
            if region.clip_slot:
                kinds[region.clip_slot] = "clip"
        return kinds

    def optional_slots(self) -> set[str]:
        """Slots a recipe may leave out: the clip slots (a still is zoomed in their place)."""
        return {region.clip_slot for region in self.regions.values() if region.clip_slot}

    def region_of(self, slot: str) -> Region | None:
        for region in self.regions.values():
            if slot in (region.slot, region.clip_slot):
                return region
        return None


# --- loading ----------------------------------------------------------------------------------

def file_sha256(path: str | Path) -> str:
    """A template file's digest, kept in each ad's lineage: a later edit of the file shows."""
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def builtin_templates() -> list[str]:
    """The names of the templates that ship with the studio, e.g. ["banner", "poster", ...]."""
    return sorted(path.stem for path in BUILTIN_FOLDER.glob("*.json"))


def load_template(name_or_path: str | Path, relative_to: Path | None = None) -> Template:
    """A built-in template by name ("poster"), or a user's template file. A name is a word with
    no ".json" and no folder in it; anything else is a path, taken relative to the folder
    `relative_to` (a recipe's folder) when it is not absolute. Every field is checked."""
    path = template_path(name_or_path, relative_to)
    spot = Spot(str(path))
    data = read_json(path, "The template file")
    return _parse_template(data, path, spot)


def template_path(name_or_path: str | Path, relative_to: Path | None) -> Path:
    given = str(name_or_path)
    looks_like_a_path = (isinstance(name_or_path, Path) or given.endswith(".json")
                         or "/" in given or "\\" in given)
    if not looks_like_a_path:
        if given in builtin_templates():
            return BUILTIN_FOLDER / f"{given}.json"
        raise StudioError(f"unknown template '{given}'. The built-in templates are: "
                          f"{', '.join(builtin_templates())}; or give the path of a template "
                          f"file (ending in .json).")
    path = Path(given).expanduser()
    if not path.is_absolute() and relative_to is not None:
        path = Path(relative_to) / path
    return path


def _parse_template(data: Any, path: Path, spot: Spot) -> Template:
    checked_object(data, spot, required=("canvas", "fonts", "regions"),
                   optional=("format", "description", "margins", "colours", "clip"))
    if data.get("format", TEMPLATE_FORMAT) != TEMPLATE_FORMAT:
        raise (spot / "format").error(f"is {data['format']!r}; this studio reads format "
                                      f"{TEMPLATE_FORMAT}.")
    description = checked_text(data.get("description", ""), spot / "description", empty_ok=True)
    colours = _palette(data.get("colours", {}), spot / "colours")
    width, height, background = _canvas(data["canvas"], spot / "canvas", colours)
    margins = _margins(data.get("margins", {}), spot / "margins", width, height)
    fonts = _fonts(data["fonts"], spot / "fonts", path.parent)
    regions = _regions(data["regions"], spot / "regions", width, height, margins, fonts,
                       colours)
    clip = _clip(data.get("clip", {}), spot / "clip")
    return Template(name=path.stem, path=path, description=description, width=width,
                    height=height, background=background, margins=margins, fonts=fonts,
                    colours=colours, regions=regions, clip=clip)


def _palette(value: Any, spot: Spot) -> dict[str, str]:
    if not isinstance(value, dict):
        raise spot.error(f"must be a JSON object of names and #rrggbb colours, got "
                         f"{json_kind(value)}.")
    return {name: _hex_colour(colour, spot / name) for name, colour in value.items()}


def _hex_colour(value: Any, spot: Spot) -> str:
    if not isinstance(value, str) or not HEX_COLOUR.fullmatch(value):
        raise spot.error(f"must be a colour written #rrggbb (e.g. #1d1d1f), got {value!r}.")
    return value.lower()


def _colour(value: Any, spot: Spot, palette: dict[str, str]) -> str:
    """`#rrggbb`, or the name of a colour in the template's `colours`."""
    if isinstance(value, str) and value in palette:
        return palette[value]
    if isinstance(value, str) and HEX_COLOUR.fullmatch(value):
        return value.lower()
    named = f", or one of the template's colours: {', '.join(palette)}" if palette else ""
    raise spot.error(f"must be a colour written #rrggbb (e.g. #1d1d1f){named}; got {value!r}.")


def _canvas(value: Any, spot: Spot, palette: dict[str, str]) -> tuple[int, int, str]:
    checked_object(value, spot, required=("width", "height", "background"))
    sides = []
    for side in ("width", "height"):
        pixels = whole_number(value[side], spot / side, 16, LARGEST_CANVAS)
        if pixels % 2:
            raise (spot / side).error(f"must be even (MP4 video needs even sides), got "
                                      f"{pixels}.")
        sides.append(pixels)
    return sides[0], sides[1], _colour(value["background"], spot / "background", palette)


def _margins(value: Any, spot: Spot, width: int, height: int) -> Margins:
    checked_object(value, spot, required=(), optional=("top", "right", "bottom", "left"))
    sides = {side: whole_number(value.get(side, 0), spot / side, 0, LARGEST_CANVAS)
             for side in ("top", "right", "bottom", "left")}
    if sides["left"] + sides["right"] >= width or sides["top"] + sides["bottom"] >= height:
        raise spot.error(f"leave no room inside the {width} x {height} canvas.")
    return Margins(**sides)


def _fonts(value: Any, spot: Spot, folder: Path) -> dict[str, Font]:
    if not isinstance(value, dict) or not value:
        raise spot.error('must name at least one font, e.g. {"body": {"family": "DejaVu Sans"}}.')
    fonts = {}
    for name, entry in value.items():
        where = spot / name
        checked_object(entry, where, required=(), optional=("family", "file", "bold"))
        if ("family" in entry) == ("file" in entry):
            raise where.error("must give either 'family' (a font's name) or 'file' (a .ttf, "
                              ".otf or .ttc file), one of the two.")
        family = checked_text(entry["family"], where / "family") if "family" in entry else None
        file = _font_file(entry["file"], where / "file", folder) if "file" in entry else None
        fonts[name] = Font(name=name, family=family, file=file,
                           bold=flag(entry.get("bold", False), where / "bold"))
    return fonts


def _font_file(value: Any, spot: Spot, folder: Path) -> Path:
    path = Path(checked_text(value, spot)).expanduser()
    path = path if path.is_absolute() else folder / path
    if path.suffix.lower() not in FONT_SUFFIXES:
        raise spot.error(f"must be a font file ending in {', '.join(FONT_SUFFIXES)}, got "
                         f"{value!r}.")
    if not path.is_file():
        raise spot.error(f"names {path}, which does not exist (a relative path is taken from "
                         f"the template's folder). Put the font there or fix the path.")
    return path


def _regions(value: Any, spot: Spot, width: int, height: int, margins: Margins,
             fonts: dict[str, Font], palette: dict[str, str]) -> dict[str, Region]:
    if not isinstance(value, dict) or not value:
        raise spot.error("must name at least one region, e.g. {\"headline\": {\"holds\": "
                         "\"text\", ...}}.")
    regions: dict[str, Region] = {}
    shown_by: dict[str, str] = {}  # slot -> the region that shows it
    for name, entry in value.items():
        where = spot / name
        if not isinstance(entry, dict):
            raise where.error(f"must be a JSON object {{...}}, got {json_kind(entry)}.")
        holds = one_of(entry.get("holds"), where / "holds", ("text", "media"))
        if holds == "text":
            region = _text_region(name, entry, where, fonts, palette)
        else:
            region = _media_region(name, entry, where)
        _check_inside(region, where / "box", width, height, margins)
        for key, slot in (("slot", region.slot), ("clip_slot", region.clip_slot)):
            if slot is None:
                continue
            if slot in shown_by:
                raise (where / key).error(f"names slot '{slot}', which region "
                                          f"'{shown_by[slot]}' shows already; a slot fills "
                                          f"one region.")
            shown_by[slot] = name
        regions[name] = region
    return regions


def _text_region(name: str, entry: dict, spot: Spot, fonts: dict[str, Font],
                 palette: dict[str, str]) -> Region:
    checked_object(entry, spot, required=("holds", "slot", "box", "font", "max_size",
                                          "min_size", "colour"),
                   optional=("align", "valign", "line_spacing"))
    font_name = entry["font"]
    if font_name not in fonts:
        raise (spot / "font").error(f"is {font_name!r}, which is not one of the template's "
                                    f"fonts: {', '.join(fonts)}.")
    box = _box(entry["box"], spot / "box")
    max_size = whole_number(entry["max_size"], spot / "max_size", 1, 2000)
    min_size = whole_number(entry["min_size"], spot / "min_size", 1, max_size)
    if min_size > box.h:
        raise (spot / "min_size").error(f"is {min_size} px, taller than the box ({box.h} px "
                                        f"high): no line could ever fit.")
    style = TextStyle(font=fonts[font_name], max_size=max_size, min_size=min_size,
                      colour=_colour(entry["colour"], spot / "colour", palette),
                      align=(one_of(entry["align"], spot / "align", ALIGNS)
                             if "align" in entry else None),
                      valign=one_of(entry.get("valign", "top"), spot / "valign", VALIGNS),
                      line_spacing=number(entry.get("line_spacing", 1.2), spot / "line_spacing",
                                          0.8, 3.0))
    return Region(name=name, holds="text", slot=_slot_name(entry["slot"], spot / "slot"),
                  box=box, text=style)


def _media_region(name: str, entry: dict, spot: Spot) -> Region:
    checked_object(entry, spot, required=("holds", "slot", "box"), optional=("fit", "clip_slot"))
    slot = _slot_name(entry["slot"], spot / "slot")
    clip_slot = entry.get("clip_slot")
    if clip_slot is not None:
        clip_slot = _slot_name(clip_slot, spot / "clip_slot")
        if clip_slot == slot:
            raise (spot / "clip_slot").error(f"must differ from slot ('{slot}'): the picture "
                                             f"and the clip come from different runs.")
    return Region(name=name, holds="media", slot=slot, box=_box(entry["box"], spot / "box"),
                  fit=one_of(entry.get("fit", "cover"), spot / "fit", FITS), clip_slot=clip_slot)


def _slot_name(value: Any, spot: Spot) -> str:
    name = checked_text(value, spot)
    if name != name.strip():
        raise spot.error(f"must have no spaces around it, got {name!r}.")
    return name


def _box(value: Any, spot: Spot) -> Box:
    if not isinstance(value, list) or len(value) != 4:
        raise spot.error(f"must be [x, y, w, h] in pixels, got {value!r}.")
    x, y = (whole_number(v, spot / i, 0, LARGEST_CANVAS) for i, v in enumerate(value[:2]))
    w, h = (whole_number(v, spot / (i + 2), 1, LARGEST_CANVAS) for i, v in enumerate(value[2:]))
    return Box(x, y, w, h)


def _check_inside(region: Region, spot: Spot, width: int, height: int, margins: Margins) -> None:
    """Media may bleed to the canvas edge; text stays inside the margins (the safe area)."""
    box = region.box
    if region.holds == "text":
        left, top = margins.left, margins.top
        right, bottom = width - margins.right, height - margins.bottom
        area = (f"the safe area inside the margins (x {left} to {right}, y {top} to {bottom} "
                f"on the {width} x {height} canvas)")
    else:
        left, top, right, bottom = 0, 0, width, height
        area = f"the {width} x {height} canvas"
    if box.x < left or box.y < top or box.right > right or box.bottom > bottom:
        raise spot.error(f"[{box.x}, {box.y}, {box.w}, {box.h}] reaches x {box.x} to "
                         f"{box.right}, y {box.y} to {box.bottom}, outside {area}.")


def _clip(value: Any, spot: Spot) -> ClipSettings:
    checked_object(value, spot, required=(), optional=("fps", "seconds", "zoom"))
    return ClipSettings(fps=whole_number(value.get("fps", 12), spot / "fps", 1, 60),
                        seconds=number(value.get("seconds", 4.0), spot / "seconds", 0.5, 60.0),
                        zoom=number(value.get("zoom", 1.08), spot / "zoom", 1.0, 2.0))
