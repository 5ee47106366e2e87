"""Fonts that have a glyph for every character of a text, offline, on a fresh machine.

The studio ships open fonts in assets/fonts/ (see its README.md): DejaVu Sans, regular and bold,
for Latin, Greek, Cyrillic, Arabic and Hebrew, and WenQuanYi Micro Hei for Chinese, Japanese and
Korean (with Latin letters and digits, for mixed text such as "iPhone 15 新品上市"). One text is
drawn in one font. `font_path_for` tries, in order:

1. the font files a template names (its designer chose the typeface, so they come first);
2. the shipped fonts;
3. the fonts installed on this machine (so that installing the package an error names is enough).

A font "has" a character when its cmap (the table from code points to glyphs) maps it to a real
glyph, not to glyph 0, the .notdef box ("tofu"). The cmap is read here directly: it is a small,
documented part of the TrueType/OpenType format, and reading it is exact, where comparing
rendered glyphs with .notdef would only be a guess.
"""
from __future__ import annotations

import os
import struct
import sys
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from PIL import ImageFont, features

from studio.errors import StudioError

FONTS_DIR = Path(__file__).resolve().parent.parent.parent / "assets" / "fonts"

# (regular, bold) file names in assets/fonts/, tried in this order. WenQuanYi Micro Hei has no
# bold cut: bold CJK text uses the regular one.
SHIPPED_FONTS: tuple[tuple[str, str], ...] = (
    ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    ("wqy-microhei.ttc", "wqy-microhei.ttc"),
)

FONT_SUFFIXES = (".ttf", ".otf", ".ttc")

# Characters drawn without a glyph of their own: line breaks, controls, bidi marks and joiners
# (Unicode categories Cc, Cf, Zl, Zp) and variation selectors, which only pick a form of the
# character before them. Shaping hides them even when a font lacks them.
_NO_GLYPH_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}


def needs_glyph(char: str) -> bool:
    """Whether `char` is drawn with a glyph of its own (False for line breaks, bidi marks...)."""
    code = ord(char)
    if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:  # variation selectors
        return False
    return unicodedata.category(char) not in _NO_GLYPH_CATEGORIES


def has_glyphs(font_path: str | Path, text: str) -> bool:
    """Whether the font file has a glyph for every character of `text` that needs one."""
    covered = _covered_code_points(*_file_key(Path(font_path)))
    return all(ord(char) in covered for char in text if needs_glyph(char))


def missing_glyphs(font_path: str | Path, text: str) -> list[str]:
    """The distinct characters of `text` that the font has no glyph for, in text order."""
    covered = _covered_code_points(*_file_key(Path(font_path)))
    return list(dict.fromkeys(c for c in text if needs_glyph(c) and ord(c) not in covered))


def font_path_for(text: str, bold: bool = False, *, fonts: Sequence[str | Path] = ()) -> Path:
    """The first font file that has a glyph for every character of `text`: the template's
    `fonts` in their order, then the shipped fonts, then the fonts installed on this machine.
    Raises StudioError naming the characters none of them has, and what to install."""
    for path in _check_user_fonts(fonts):
        if has_glyphs(path, text):
            return path
    for path in shipped_font_paths(bold):
        if has_glyphs(path, text):
            return path
    for path in _installed_font_paths(bold):
        try:
            if has_glyphs(path, text):
                return path
        except StudioError:  # a broken or unusual file among the system's fonts: not ours to fix
            continue
    raise StudioError(_no_font_message(text, fonts))


def font_for(text: str, bold: bool = False, *, size: int,
             fonts: Sequence[str | Path] = ()) -> ImageFont.FreeTypeFont:
    """A font of `size` pixels that has every glyph of `text` (see `font_path_for`)."""
    if not isinstance(size, int) or size < 1:
        raise StudioError(f"font size {size!r} is not a whole number of pixels >= 1: give the "
                          f"size in pixels, e.g. 32.")
    return load_font(font_path_for(text, bold, fonts=fonts), size)


def shipped_font_paths(bold: bool = False) -> list[Path]:
    """The shipped font files, in the order they are tried."""
    return [FONTS_DIR / (bold_name if bold else regular) for regular, bold_name in SHIPPED_FONTS]


def raqm_available() -> bool:
    """Whether Pillow has its complex layout (libraqm with FriBiDi and HarfBuzz): right-to-left
    order and Arabic joining need it."""
    return bool(features.check("raqm"))


def load_font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    """The font file at `size` pixels, with Pillow's complex layout when it has one."""
    return _load_font(*_file_key(path), size)


@lru_cache(maxsize=256)
def _load_font(path: str, _mtime_ns: int, _bytes: int, size: int) -> ImageFont.FreeTypeFont:
    engine = ImageFont.Layout.RAQM if raqm_available() else ImageFont.Layout.BASIC
    try:
        return ImageFont.truetype(path, size, layout_engine=engine)
    except OSError as exc:
        raise StudioError(f"cannot open the font {path}: {exc}. Give a TrueType or OpenType "
                          f"font file (.ttf, .otf, .ttc).") from None


def _file_key(path: Path) -> tuple[str, int, int]:
    """The path with its modification time and size, so that caches see a replaced file."""
    try:
        stat = path.stat()
    except OSError:
        raise StudioError(f"the font file {path} does not exist or cannot be read: give the path "
                          f"of a .ttf, .otf or .ttc file.") from None
    return str(path), stat.st_mtime_ns, stat.st_size


def _check_user_fonts(fonts: Sequence[str | Path]) -> list[Path]:
    if isinstance(fonts, (str, Path)):  # one path given where a list was meant
        fonts = [fonts]
    paths = [Path(f).expanduser() for f in fonts]
    for path in paths:
        if not path.is_file():
            raise StudioError(f"the font file {path} named in the template's fonts does not "
                              f"exist: correct the path, or remove it to use the shipped fonts.")
    return paths


# --- Which characters a font has: its cmap table -------------------------------------------
# Read here rather than with fontTools: on the shipped fonts both give the same code points
# (5,918 / 5,898 / 34,600), this in 1-6 ms a font against fontTools' 11-67 ms
# (TTFont(lazy=True).getBestCmap()), and without another dependency.

@lru_cache(maxsize=64)
def _covered_code_points(path: str, _mtime_ns: int, _bytes: int) -> frozenset[int]:
    try:
        data = Path(path).read_bytes()
        return frozenset(_read_cmap(data))
    except (struct.error, IndexError, ValueError) as exc:
        raise StudioError(f"{path} is not a TrueType or OpenType font the studio can read "
                          f"({exc}): give a .ttf, .otf or .ttc file.") from None


def _read_cmap(data: bytes) -> set[int]:
    """The code points the font maps to a glyph other than .notdef. Reads the font's Unicode
    subtable the way FreeType picks it: format 12 (all planes) where there is one, else format 4
    (the Basic Multilingual Plane); of a collection (.ttc), the first font, which Pillow draws."""
    offset = 0
    if data[:4] == b"ttcf":
        (offset,) = struct.unpack_from(">I", data, 12)
    sfnt_version = data[offset:offset + 4]
    if sfnt_version not in (b"\x00\x01\x00\x00", b"OTTO", b"true"):
        raise ValueError("no TrueType/OpenType header")
    (num_tables,) = struct.unpack_from(">H", data, offset + 4)
    cmap = None
    for i in range(num_tables):
        tag, _checksum, table_offset, _length = struct.unpack_from(">4sIII", data,
                                                                    offset + 12 + 16 * i)
        if tag == b"cmap":
            cmap = table_offset
    if cmap is None:
        raise ValueError("no cmap table")
    (num_subtables,) = struct.unpack_from(">H", data, cmap + 2)
    unicode_subtables: dict[int, int] = {}  # format: where it starts
    for i in range(num_subtables):
        platform, encoding, sub_offset = struct.unpack_from(">HHI", data, cmap + 4 + 8 * i)
        if platform == 0 or (platform == 3 and encoding in (1, 10)):
            (fmt,) = struct.unpack_from(">H", data, cmap + sub_offset)
            unicode_subtables.setdefault(fmt, cmap + sub_offset)
    if 12 in unicode_subtables:
        return set(_format12(data, unicode_subtables[12]))
    if 4 in unicode_subtables:
        return set(_format4(data, unicode_subtables[4]))
    raise ValueError("no Unicode cmap of format 4 or 12")


def _format4(data: bytes, start: int) -> Iterable[int]:
    (seg_count_x2,) = struct.unpack_from(">H", data, start + 6)
    seg_count = seg_count_x2 // 2
    ends_at = start + 14
    starts_at = ends_at + seg_count_x2 + 2  # after the reserved pad
    deltas_at = starts_at + seg_count_x2
    range_offsets_at = deltas_at + seg_count_x2
    ends = struct.unpack_from(f">{seg_count}H", data, ends_at)
    starts = struct.unpack_from(f">{seg_count}H", data, starts_at)
    deltas = struct.unpack_from(f">{seg_count}H", data, deltas_at)
    range_offsets = struct.unpack_from(f">{seg_count}H", data, range_offsets_at)
    for seg in range(seg_count):
        first, last, delta, range_offset = starts[seg], ends[seg], deltas[seg], range_offsets[seg]
        if first == 0xFFFF:  # the segment that ends every format-4 table
            continue
        for code in range(first, last + 1):
            if range_offset == 0:
                glyph = (code + delta) & 0xFFFF
            else:  # idRangeOffset counts from where it is stored, into glyphIdArray
                at = range_offsets_at + 2 * seg + range_offset + 2 * (code - first)
                (glyph,) = struct.unpack_from(">H", data, at)
                glyph = (glyph + delta) & 0xFFFF if glyph else 0
            if glyph:
                yield code


def _format12(data: bytes, start: int) -> Iterable[int]:
    (num_groups,) = struct.unpack_from(">I", data, start + 12)
    for i in range(num_groups):
        first, last, first_glyph = struct.unpack_from(">III", data, start + 16 + 12 * i)
        # a group starting at glyph 0 maps its first code point to .notdef
        yield from range(first + (first_glyph == 0), last + 1)


# --- Fonts installed on this machine ---------------------------------------------------------

def system_font_dirs() -> list[Path]:
    """Where this operating system keeps installed fonts."""
    home = Path.home()
    if sys.platform == "win32":
        windir = Path(os.environ.get("WINDIR", r"C:\Windows"))
        local = Path(os.environ.get("LOCALAPPDATA", home))
        return [windir / "Fonts", local / "Microsoft" / "Windows" / "Fonts"]
    if sys.platform == "darwin":
        return [Path("/System/Library/Fonts"), Path("/Library/Fonts"), home / "Library" / "Fonts"]
    return [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"),
            home / ".local" / "share" / "fonts", home / ".fonts"]


def _installed_font_paths(bold: bool) -> list[Path]:
    """The installed font files, in a fixed order (so a machine always picks the same one):
    by path, with bold cuts first for bold text and last otherwise."""
    found = [path for folder in system_font_dirs() if folder.is_dir()
             for path in folder.rglob("*") if path.suffix.lower() in FONT_SUFFIXES]
    return sorted(found, key=lambda p: (("bold" in p.name.lower()) != bold, str(p)))


# --- The message when no font has the characters ---------------------------------------------

def _no_font_message(text: str, fonts: Sequence[str | Path]) -> str:
    missing = _missing_everywhere(text, fonts)
    shown = ", ".join(f"'{c}' (U+{ord(c):04X})" for c in missing[:8])
    if len(missing) > 8:
        shown += f" and {len(missing) - 8} more"
    where = "the template's fonts, the shipped fonts" if fonts else "the shipped fonts"
    return (f"no font has a glyph for {shown} in the text {_excerpt(text)} ({where} and the "
            f"fonts installed on this machine were searched). {_what_to_install(missing)}")


def _missing_everywhere(text: str, fonts: Sequence[str | Path]) -> list[str]:
    """The characters of `text` that no single candidate font has."""
    candidates = [*_check_user_fonts(fonts), *shipped_font_paths()]
    missing = [c for c in dict.fromkeys(text) if needs_glyph(c)]
    for path in candidates:
        covered = _covered_code_points(*_file_key(path))
        missing = [c for c in missing if ord(c) not in covered]
    return missing or list(dict.fromkeys(c for c in text if needs_glyph(c)))  # no font has all


def _what_to_install(missing: list[str]) -> str:
    if any(unicodedata.category(c) == "Co" for c in missing):
        return ("Private-use characters have no standard glyph: add the font file made for them "
                "to the template's fonts, or remove them from the text.")
    if any(unicodedata.category(c) == "Cn" for c in missing):
        return "Unassigned code points have no glyph anywhere: remove them from the text."
    names = " ".join(unicodedata.name(c, "") for c in missing)
    if any(word in names for word in ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO")):
        package = "fonts-noto-cjk"
    elif any(word in names for word in ("EMOJI", "FACE", "HEART")) or \
            any(ord(c) >= 0x1F000 for c in missing):
        package = "fonts-noto-color-emoji"
    else:
        package = "fonts-noto-core"
    return (f"Install a font that has them (on Debian/Ubuntu: apt-get install {package}; "
            f"elsewhere the matching Noto font), or add a .ttf/.otf file that has them to the "
            f"template's fonts.")


def _excerpt(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit - 1] + "…")
