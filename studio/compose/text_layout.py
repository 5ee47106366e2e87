"""Text fitted to a box, wrapped, shrunk and then ellipsised, and drawn without leaving the box.

`fit_text` picks the largest font size from max_size down to min_size at which the whole text
fits the box; when even min_size is too big, it keeps the lines that fit at min_size and ends the
last one with "…". Every check uses the pixels the glyphs cover (Pillow's ink boxes), not a
nominal line height, so a tall accent or an Arabic mark cannot cross the box's edge either.
`draw_text` draws the result. The same input gives the same pixels, byte for byte.

Line breaking, kept simple on purpose:
- a newline ends a paragraph; inside one, a run of white space is a break point and becomes one
  space (at a break it disappears); no-break spaces (U+00A0, U+2007, U+202F) do not break, and a
  zero-width space (U+200B) breaks without a space;
- a wide character (East Asian Width W or F: Han, kana, Hangul, full-width forms) is a word of
  its own, so Chinese, Japanese and Korean text breaks between characters (Korean too, which
  the language allows);
- closing punctuation (、。，！？）」… and ASCII ,.!?:;) stays with the character before it and
  opening punctuation (（「“) with the one after it, so that neither starts, or ends, a line
  alone;
- a word wider than the box is broken between characters, never before a combining mark, and
  only at min_size: above it, a smaller size that keeps the word whole is tried first.

Right-to-left text (Arabic, Hebrew) is laid out by Pillow's complex layout (libraqm): reordered
and shaped, in the direction of its first strongly directional character unless one is given,
and right-aligned unless told otherwise.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image, ImageDraw, ImageFont

from studio.compose.fonts import font_path_for, has_glyphs, load_font, raqm_available
from studio.errors import StudioError

ALIGNS = ("left", "center", "right")
DIRECTIONS = ("ltr", "rtl")
ELLIPSIS = "…"
ELLIPSIS_FALLBACK = "..."  # for a template's font that has no "…"

# Punctuation that must not start a line (it joins the character before it) and that must not
# end one (it joins the character after it), beyond the Unicode classes that say so (Pe, Pf
# and Ps, Pi).
NO_LINE_START = set("、。，．,.!！?？:：;；・ー～…‥々ゝゞ〜")
NO_LINE_END = set("([{")

# White space that lines break at: all of it but the no-break spaces.
BREAKING_SPACE = re.compile(r"[^\S\u00a0\u2007\u202f]+")
ZERO_WIDTH_SPACE = "\u200b"

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class FittedLine:
    """One line of fitted text. Coordinates are pixels from the box's top-left corner."""
    text: str
    origin: tuple[int, int]  # where the line's left edge and ascender line are drawn
    box: Box  # (left, top, right, bottom) that the line's pixels lie in; right, bottom exclusive


@dataclass(frozen=True)
class FittedText:
    """Text laid out in a box of box_size pixels, ready for `draw_text`."""
    size: int  # the font size chosen, in pixels
    lines: tuple[FittedLine, ...]
    ellipsised: bool  # True when the text did not fit at min_size and was cut, ending in "…"
    direction: str  # "ltr" or "rtl"
    align: str
    box_size: tuple[int, int]
    font_path: Path
    font: ImageFont.FreeTypeFont = field(compare=False, repr=False)

    @property
    def text_lines(self) -> list[str]:
        return [line.text for line in self.lines]

    @property
    def ink_box(self) -> Box | None:
        """The box all the lines' pixels lie in, or None when nothing is drawn."""
        boxes = [line.box for line in self.lines if line.text]
        if not boxes:
            return None
        return (min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] for b in boxes), max(b[3] for b in boxes))


def text_direction(text: str) -> str:
    """"rtl" when the first strongly directional character of `text` is right-to-left (Arabic,
    Hebrew...), else "ltr" (the Unicode bidi algorithm's rule for a paragraph's direction)."""
    for char in text:
        bidi = unicodedata.bidirectional(char)
        if bidi == "L":
            return "ltr"
        if bidi in ("R", "AL"):
            return "rtl"
    return "ltr"


def fit_text(text: str, box_w: int, box_h: int, *, max_size: int, min_size: int,
             bold: bool = False, align: str | None = None, line_spacing: float = 1.15,
             direction: str | None = None, fonts: Sequence[str | Path] = ()) -> FittedText:
    """Lay `text` out in a box of box_w x box_h pixels: wrapped, at the largest size from
    max_size down to min_size at which it all fits, else at min_size cut to the lines that fit
    with "…" at the end. `align` defaults to "right" for right-to-left text and "left"
    otherwise; `line_spacing` is the distance between baselines in font sizes; `fonts` are a
    template's font files, tried before the shipped ones (see studio.compose.fonts).
    Raises StudioError for bad arguments, for text no font has glyphs for, and for a box too
    small for even one line at min_size."""
    _check_arguments(text, box_w, box_h, max_size, min_size, align, line_spacing, direction)
    direction = direction or text_direction(text)
    align = align or ("right" if direction == "rtl" else "left")
    if direction == "rtl" and not raqm_available():
        raise StudioError("right-to-left text needs Pillow's complex text layout (libraqm with "
                          "FriBiDi), which this Pillow lacks: install FriBiDi (on Debian/Ubuntu: "
                          "apt-get install libfribidi0) and reinstall Pillow from its wheel.")
    font_path = font_path_for(text, bold, fonts=fonts)
    layout = _Layout(_paragraphs(text), box_w, box_h, line_spacing, align, direction)

    def fitted(font, lines: list[FittedLine], ellipsised: bool) -> FittedText:
        return FittedText(size=font.size, lines=tuple(lines), ellipsised=ellipsised,
                          direction=direction, align=align, box_size=(box_w, box_h),
                          font_path=font_path, font=font)

    # Find the largest size that fits by bisection: a smaller size fits wherever a larger one
    # does, but for rare wrapping quirks where it would not, the size found still fits.
    lines_at: dict[int, list[FittedLine] | None] = {}

    def fits(size: int) -> bool:
        lines_at[size] = layout.whole(load_font(font_path, size))
        return lines_at[size] is not None

    if fits(max_size):
        return fitted(load_font(font_path, max_size), lines_at[max_size], False)
    if fits(min_size):
        fitting, too_big = min_size, max_size
        while too_big - fitting > 1:
            middle = (fitting + too_big) // 2
            fitting, too_big = (middle, too_big) if fits(middle) else (fitting, middle)
        return fitted(load_font(font_path, fitting), lines_at[fitting], False)

    font = load_font(font_path, min_size)
    ellipsis = ELLIPSIS if has_glyphs(font_path, ELLIPSIS) else ELLIPSIS_FALLBACK
    lines, ellipsised = layout.cut(font, ellipsis)
    return fitted(font, lines, ellipsised)


def draw_text(image: Image.Image, fitted: FittedText, box_xy: tuple[int, int], colour) -> None:
    """Draw fitted text on `image` in place, its box's top-left corner at box_xy, in `colour`
    (any colour Pillow takes for the image's mode, e.g. (255, 255, 255) or "#1a1a1a")."""
    if not (isinstance(box_xy, (tuple, list)) and len(box_xy) == 2
            and all(isinstance(v, int) for v in box_xy)):
        raise StudioError(f"draw_text: box_xy {box_xy!r} is not a pair of whole pixel "
                          f"coordinates: give the box's top-left corner as (x, y).")
    box_x, box_y = box_xy
    draw = ImageDraw.Draw(image)
    for line in fitted.lines:
        if line.text:
            x, y = line.origin
            draw.text((box_x + x, box_y + y), line.text, font=fitted.font, fill=colour,
                      anchor="la", direction=_direction_arg(fitted.direction))


# --- Arguments ----------------------------------------------------------------------------

def _check_arguments(text, box_w, box_h, max_size, min_size, align, line_spacing, direction):
    if not isinstance(text, str):
        raise StudioError(f"fit_text: the text is a {type(text).__name__}, not a string: pass "
                          f"the generated text as str.")
    for name, value in (("box_w", box_w), ("box_h", box_h), ("max_size", max_size),
                        ("min_size", min_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise StudioError(f"fit_text: {name} {value!r} is not a whole number of pixels >= 1: "
                              f"give it in pixels, e.g. 24.")
    if min_size > max_size:
        raise StudioError(f"fit_text: min_size {min_size} is larger than max_size {max_size}: "
                          f"give min_size <= max_size.")
    if align is not None and align not in ALIGNS:
        raise StudioError(f"fit_text: align {align!r} is not one of {', '.join(ALIGNS)}: pick "
                          f"one, or leave it out (right for right-to-left text, else left).")
    if isinstance(line_spacing, bool) or not isinstance(line_spacing, (int, float)) \
            or not 0 < line_spacing <= 10:
        raise StudioError(f"fit_text: line_spacing {line_spacing!r} is not a number between 0 "
                          f"and 10 (baseline to baseline, in font sizes): e.g. 1.15.")
    if direction is not None and direction not in DIRECTIONS:
        raise StudioError(f"fit_text: direction {direction!r} is not 'ltr' or 'rtl': pick one, "
                          f"or leave it out to detect it from the text.")


def _direction_arg(direction: str) -> str | None:
    # Pillow's basic layout takes no direction (and then all text is left-to-right anyway).
    return direction if raqm_available() else None


# --- Breaking text into pieces that lines may break between ------------------------------------

@dataclass(frozen=True)
class _Piece:
    text: str
    space_before: bool  # a break here drops a space; no break keeps one


def _paragraphs(text: str) -> list[list[_Piece]]:
    """The text's paragraphs (split at newlines), each as the pieces a line may break between;
    blank paragraphs at the start and end are dropped."""
    paragraphs = [_pieces(p) for p in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while paragraphs and not paragraphs[0]:
        paragraphs.pop(0)
    while paragraphs and not paragraphs[-1]:
        paragraphs.pop()
    return paragraphs


def _pieces(paragraph: str) -> list[_Piece]:
    pieces: list[_Piece] = []
    for word in BREAKING_SPACE.split(paragraph):
        first = True
        for part in (p for chunk in word.split(ZERO_WIDTH_SPACE) for p in _split_wide(chunk)):
            pieces.append(_Piece(part, space_before=first and bool(pieces)))
            first = False
    return _keep_punctuation_attached(pieces)


def _split_wide(word: str) -> list[str]:
    """A wide (CJK) character is a part of its own; other characters stay together."""
    parts: list[str] = []
    for char in word:
        wide = unicodedata.east_asian_width(char) in ("W", "F")
        if parts and not wide and not _is_wide(parts[-1][-1]):
            parts[-1] += char
        elif parts and _is_mark(char):  # a combining mark stays on its base character
            parts[-1] += char
        else:
            parts.append(char)
    return parts


def _keep_punctuation_attached(pieces: list[_Piece]) -> list[_Piece]:
    merged: list[_Piece] = []
    glue_next = False  # the previous piece was opening punctuation
    for piece in pieces:
        if merged and not piece.space_before and (glue_next or _no_line_start(piece.text[0])):
            merged[-1] = _Piece(merged[-1].text + piece.text, merged[-1].space_before)
        else:
            merged.append(piece)
        glue_next = _no_line_end(piece.text[-1])
    return merged


def _no_line_start(char: str) -> bool:
    return char in NO_LINE_START or unicodedata.category(char) in ("Pe", "Pf")


def _no_line_end(char: str) -> bool:
    return char in NO_LINE_END or unicodedata.category(char) in ("Ps", "Pi")


def _is_wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def _is_mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


def _cut_points(text: str) -> list[int]:
    """Where `text` may be cut between characters: not before a combining mark or a joiner, not
    after a joiner (so a letter keeps its accents and an emoji sequence stays whole)."""
    return [i for i in range(1, len(text))
            if not _is_mark(text[i]) and text[i] != "\u200d" and text[i - 1] != "\u200d"]


# --- Lines at one font size -----------------------------------------------------------------

class _Layout:
    """The text's paragraphs and the box; lays them out at a given font."""

    def __init__(self, paragraphs: list[list[_Piece]], box_w: int, box_h: int,
                 line_spacing: float, align: str, direction: str):
        self.paragraphs = paragraphs
        self.box_w, self.box_h = box_w, box_h
        self.line_spacing = line_spacing
        self.align, self.direction = align, direction

    def whole(self, font) -> list[FittedLine] | None:
        """The whole text's lines at this font, keeping every word whole, or None where it
        does not fit the box."""
        lines, complete = self._wrap(font, break_long_words=False)
        if not complete:
            return None
        placed = self._place(font, lines)
        return placed if _bottom(placed) <= self.box_h else None

    def cut(self, font, ellipsis: str) -> tuple[list[FittedLine], bool]:
        """The lines that fit at this font, the last ending in `ellipsis` when text was left
        out; words wider than the box are broken between characters."""
        lines, complete = self._wrap(font, break_long_words=True)
        placed = self._place(font, lines)
        if complete and _bottom(placed) <= self.box_h:
            return placed, False
        fitting = max((n for n in range(1, len(lines) + 1)
                       if _bottom(self._place(font, lines[:n])) <= self.box_h), default=0)
        for count in range(fitting, 0, -1):  # the "…" may make a line taller: then one fewer
            last = self._ellipsised(font, lines[count - 1], ellipsis)
            placed = self._place(font, lines[:count - 1] + [last])
            if _bottom(placed) <= self.box_h:
                return placed, True
        raise StudioError(f"the text box ({self.box_w} x {self.box_h} px) is too small for one "
                          f"line of text at min_size {font.size}: make the box taller or "
                          f"min_size smaller.")

    def pitch(self, font) -> int:
        """Baseline to baseline, in whole pixels (so every line lands on the same pixel grid)."""
        return max(1, round(font.size * self.line_spacing))

    def _wrap(self, font, break_long_words: bool) -> tuple[list[str], bool]:
        """The lines, and whether they hold the whole text: False where a word is wider than
        the box (and may not be broken), or where wrapping stopped at a line that starts below
        the box, which can never fit."""
        fits = self._fits_width(font)
        max_lines = self.box_h // self.pitch(font) + 1
        lines: list[str] = []
        for pieces in self.paragraphs:
            line = ""
            for piece in pieces:
                candidate = line + (" " if line and piece.space_before else "") + piece.text
                if fits(candidate):
                    line = candidate
                    continue
                if line:
                    lines.append(line)
                if fits(piece.text):
                    line = piece.text
                elif break_long_words:
                    *whole_lines, line = self._break_word(font, piece.text, fits)
                    lines.extend(whole_lines)
                else:
                    return lines, False
                if len(lines) > max_lines:
                    return lines, False
            lines.append(line)
        return lines, True

    def _break_word(self, font, word: str, fits: Callable[[str], bool]) -> list[str]:
        chunks = []
        while word:
            cut = next((i for i in reversed([*_cut_points(word), len(word)])
                        if fits(word[:i])), None)
            if cut is None:
                raise StudioError(f"the text box is {self.box_w} px wide, narrower than the "
                                  f"character {word[0]!r} at min_size {font.size}: make the "
                                  f"box wider or min_size smaller.")
            chunks.append(word[:cut])
            word = word[cut:]
        return chunks

    def _ellipsised(self, font, line: str, ellipsis: str) -> str:
        fits = self._fits_width(font)
        for cut in reversed([0, *_cut_points(line), len(line)]):
            candidate = line[:cut].rstrip() + ellipsis
            if fits(candidate):
                return candidate
        raise StudioError(f"the text box is {self.box_w} px wide, too narrow for "
                          f"{ellipsis!r} at min_size {font.size}: make the box wider or "
                          f"min_size smaller.")

    def _fits_width(self, font) -> Callable[[str], bool]:
        def fits(text: str) -> bool:
            left, _, right, _ = self._ink(font, text)
            return right - left <= self.box_w
        return fits

    def _ink(self, font, text: str) -> Box:
        """The box the text's pixels lie in, drawn with its left edge and ascender line at 0, 0."""
        return font.getbbox(text, anchor="la", direction=_direction_arg(self.direction))

    def _place(self, font, lines: list[str]) -> list[FittedLine]:
        """Each line's origin and pixel box: lines a pitch apart, moved down as a block if a
        glyph reaches above the first line's ascender, aligned by their pixels."""
        pitch = self.pitch(font)
        inks = [self._ink(font, line) if line else None for line in lines]
        overshoot = max([-(i * pitch + ink[1]) for i, ink in enumerate(inks) if ink] + [0])
        placed = []
        for i, (line, ink) in enumerate(zip(lines, inks)):
            y = overshoot + i * pitch
            if ink is None:
                placed.append(FittedLine(line, (0, y), (0, y, 0, y)))
                continue
            left, top, right, bottom = ink
            if self.align == "left":
                x = -left
            elif self.align == "right":
                x = self.box_w - right
            else:
                x = (self.box_w - (right - left)) // 2 - left
            placed.append(FittedLine(line, (x, y), (x + left, y + top, x + right, y + bottom)))
        return placed


def _bottom(lines: list[FittedLine]) -> int:
    return max((line.box[3] for line in lines), default=0)
