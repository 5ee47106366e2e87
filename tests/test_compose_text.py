"""Text in compositions (issue 17): fonts with the glyphs, and text fitted to its box, checked on
the rendered pixels."""
import shutil
import unicodedata

import pytest
from PIL import Image, ImageChops

from studio.compose import fonts as fonts_module
from studio.compose import text_layout
from studio.compose.fonts import (FONTS_DIR, font_for, font_path_for, has_glyphs, load_font,
                                  missing_glyphs, shipped_font_paths)
from studio.compose.text_layout import ELLIPSIS, draw_text, fit_text, text_direction
from studio.errors import StudioError

DEJAVU = FONTS_DIR / "DejaVuSans.ttf"
DEJAVU_BOLD = FONTS_DIR / "DejaVuSans-Bold.ttf"
CJK_FONT = FONTS_DIR / "wqy-microhei.ttc"

LATIN = ("Our new espresso machine brews a perfect cup in thirty seconds, grinds its own beans, "
         "cleans itself overnight and still fits beside the toaster in the smallest kitchen.")
CJK = "全新咖啡机，三十秒冲出一杯完美的咖啡。「自动研磨」，夜间自清洁，小厨房也放得下！iPhone 15 同款配色。"
ARABIC = "آلة القهوة الجديدة تحضر فنجانًا مثاليًا في ثلاثين ثانية وتطحن حبوبها بنفسها"
HEBREW = "מכונת הקפה החדשה מכינה כוס מושלמת בשלושים שניות וטוחנת את הפולים בעצמה"
PRIVATE_USE = "\ue000"

BACKGROUND = (250, 250, 250)
INK = (20, 20, 20)


@pytest.fixture(autouse=True)
def _no_installed_fonts(monkeypatch):
    """Only the shipped fonts (and a test's own): what this machine has installed must not
    change which font is picked or whether an error is raised."""
    monkeypatch.setattr(fonts_module, "system_font_dirs", lambda: [])


def render(fitted, canvas=(400, 300), box_xy=(50, 40)):
    image = Image.new("RGB", canvas, BACKGROUND)
    draw_text(image, fitted, box_xy, INK)
    return image


def changed_pixels_box(image):
    """The box (left, top, right, bottom; exclusive) of every pixel that is not background."""
    return ImageChops.difference(image, Image.new("RGB", image.size, BACKGROUND)).getbbox()


def ink_pixels(image):
    """How many pixels are not background."""
    difference = ImageChops.difference(image, Image.new("RGB", image.size, BACKGROUND))
    red, green, blue = difference.split()
    changed = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    return image.width * image.height - changed.histogram()[0]


def within(inner, outer):
    return (inner[0] >= outer[0] and inner[1] >= outer[1]
            and inner[2] <= outer[2] and inner[3] <= outer[3])


def notdef_mask(font):
    """The font's .notdef glyph (the "tofu" box), drawn for a code point the font lacks."""
    assert not has_glyphs(font.path, PRIVATE_USE)
    return bytes(font.getmask(PRIVATE_USE))


# --- Long text never leaves its box -----------------------------------------------------------

@pytest.mark.parametrize("text", [LATIN, CJK, ARABIC, HEBREW, LATIN * 4,
                                  "Unbreakable" * 12, "Ẫ̃̃ Ŝ̈̈̈ stacked accents " * 6],
                         ids=["latin", "cjk", "arabic", "hebrew", "latin-x4", "one-long-word",
                              "stacked-accents"])
@pytest.mark.parametrize("align", ["left", "center", "right"])
def test_long_text_never_leaves_its_box(text, align):
    box_xy, box_w, box_h = (50, 40), 220, 90
    fitted = fit_text(text, box_w, box_h, max_size=48, min_size=14, align=align)
    image = render(fitted, box_xy=box_xy)

    drawn = changed_pixels_box(image)
    assert drawn is not None, "nothing was drawn"
    box = (box_xy[0], box_xy[1], box_xy[0] + box_w, box_xy[1] + box_h)
    assert within(drawn, box), f"pixels at {drawn} leave the box {box}"
    for line in fitted.lines:
        assert within(line.box, (0, 0, box_w, box_h))


def test_bold_text_stays_in_its_box_and_uses_the_bold_font():
    regular = fit_text("Summer sale", 300, 80, max_size=40, min_size=40)
    bold = fit_text("Summer sale", 300, 80, max_size=40, min_size=40, bold=True)
    assert (regular.font_path, bold.font_path) == (DEJAVU, DEJAVU_BOLD)
    image = render(bold, box_xy=(10, 10))
    assert within(changed_pixels_box(image), (10, 10, 310, 90))
    assert ink_pixels(image) > ink_pixels(render(regular, box_xy=(10, 10)))


# --- Shrink, then ellipsise -------------------------------------------------------------------

def test_short_text_keeps_the_largest_size():
    fitted = fit_text("Fresh coffee", 400, 100, max_size=40, min_size=10)
    assert (fitted.size, fitted.ellipsised, fitted.text_lines) == (40, False, ["Fresh coffee"])


def test_text_shrinks_before_it_is_ellipsised():
    fitted = fit_text(LATIN, 300, 150, max_size=60, min_size=8)
    assert 8 < fitted.size < 60
    assert not fitted.ellipsised
    assert " ".join(fitted.text_lines) == LATIN  # every word is there, in order
    # and the size chosen is the largest that fits: one pixel more must cut the text
    one_larger = fit_text(LATIN, 300, 150, max_size=fitted.size + 1, min_size=fitted.size + 1)
    assert one_larger.ellipsised


def test_a_long_word_shrinks_the_text_rather_than_being_broken():
    fitted = fit_text("Supercalifragilisticexpialidocious", 300, 200, max_size=60, min_size=8)
    assert fitted.text_lines == ["Supercalifragilisticexpialidocious"]
    assert fitted.size < 60 and not fitted.ellipsised


def test_text_too_long_for_min_size_is_cut_with_an_ellipsis():
    text = LATIN * 5
    fitted = fit_text(text, 240, 80, max_size=40, min_size=12)
    assert fitted.size == 12
    assert fitted.ellipsised
    lines = fitted.text_lines
    assert lines[-1].endswith(ELLIPSIS)
    shown = " ".join(lines)[:-len(ELLIPSIS)].rstrip()
    assert text.startswith(shown)  # what is shown is the start of the text, in order
    assert len(shown) < len(text) / 2
    assert fitted.ink_box[3] <= 80


def test_a_word_wider_than_the_box_at_min_size_is_broken_between_characters():
    word = "Donaudampfschifffahrtsgesellschaftskapitän"
    fitted = fit_text(word, 120, 200, max_size=30, min_size=16)
    assert fitted.size == 16 and not fitted.ellipsised
    assert len(fitted.lines) > 1
    assert "".join(fitted.text_lines) == word
    assert all(line.box[2] - line.box[0] <= 120 for line in fitted.lines)


def test_newlines_start_new_lines():
    fitted = fit_text("\n\nBIG SALE\n\nthis weekend only\n", 400, 300, max_size=30, min_size=10)
    assert fitted.text_lines == ["BIG SALE", "", "this weekend only"]


def test_a_no_break_space_keeps_its_words_together_and_a_zero_width_space_breaks():
    box_w = load_font(DEJAVU, 20).getbbox("Only 100")[2] + 2  # "Only 100" fits, "€" does not
    kept = fit_text("Only 100\u00a0€", box_w, 200, max_size=20, min_size=20)
    assert kept.text_lines == ["Only", "100\u00a0€"]
    broken = fit_text("Only 100\u200b€", box_w, 200, max_size=20, min_size=20)
    assert broken.text_lines == ["Only 100", "€"]


def test_a_box_too_small_for_one_line_is_a_clear_error():
    with pytest.raises(StudioError, match=r"too small for one line.*min_size 20"):
        fit_text("Hello", 200, 10, max_size=30, min_size=20)


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_size=10, min_size=20), "min_size 20 is larger than max_size 10"),
    (dict(max_size=20, min_size=0), "min_size 0 is not a whole number of pixels"),
    (dict(max_size=20, min_size=10, align="middle"), "align 'middle' is not one of"),
    (dict(max_size=20, min_size=10, direction="ttb"), "direction 'ttb' is not 'ltr' or 'rtl'"),
    (dict(max_size=20, min_size=10, line_spacing=0), "line_spacing 0 is not a number"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(StudioError, match=message):
        fit_text("Hello", 200, 100, **kwargs)


def test_a_box_of_no_width_is_a_clear_error():
    with pytest.raises(StudioError, match="box_w 0 is not a whole number of pixels"):
        fit_text("Hello", 0, 100, max_size=20, min_size=10)


# --- CJK ------------------------------------------------------------------------------------

def test_cjk_text_renders_real_glyphs_not_tofu():
    fitted = fit_text(CJK, 300, 200, max_size=40, min_size=12)
    assert fitted.font_path == CJK_FONT
    tofu = notdef_mask(fitted.font)
    drawn = [c for c in "".join(fitted.text_lines) if not c.isspace()]
    assert len(drawn) > 40
    tofu_chars = [c for c in drawn if bytes(fitted.font.getmask(c)) == tofu]
    assert tofu_chars == []


def test_the_tofu_check_catches_a_missing_glyph():
    """The comparison above can fail: a font without Hangul draws its .notdef box for it."""
    latin_font = load_font(DEJAVU, 40)
    assert bytes(latin_font.getmask("안")) == notdef_mask(latin_font)
    assert bytes(latin_font.getmask("A")) != notdef_mask(latin_font)


def test_korean_and_japanese_have_glyphs_too():
    for text in ("안녕하세요, 새로운 커피 머신", "新しいコーヒーメーカー、ついに登場"):
        font = font_for(text, size=32)
        tofu = notdef_mask(font)
        assert all(bytes(font.getmask(c)) != tofu for c in text if not c.isspace())


def test_cjk_text_breaks_between_characters_and_keeps_punctuation_with_its_neighbour():
    fitted = fit_text(CJK, 200, 400, max_size=24, min_size=24)
    lines = fitted.text_lines
    assert len(lines) > 3
    assert "".join(lines).replace(" ", "") == CJK.replace(" ", "")
    for line in lines:
        assert unicodedata.category(line[0]) not in ("Pe", "Pf") and line[0] not in "，。！、"
        assert unicodedata.category(line[-1]) not in ("Ps", "Pi")
    assert "iPhone" in "".join(lines)  # a Latin word inside CJK text stays whole


# --- Right-to-left --------------------------------------------------------------------------

def test_direction_comes_from_the_first_strong_character():
    assert text_direction(ARABIC) == "rtl"
    assert text_direction(HEBREW) == "rtl"
    assert text_direction("123 " + HEBREW) == "rtl"  # digits are weak
    assert text_direction("Sale " + HEBREW) == "ltr"
    assert text_direction("") == "ltr"


def test_arabic_is_right_aligned_by_default_and_drawn_right_to_left():
    box_w = 300
    fitted = fit_text("اب", box_w, 80, max_size=40, min_size=40)  # alef, then beh
    assert (fitted.direction, fitted.align) == ("rtl", "right")
    image = render(fitted, box_xy=(0, 0))
    left, top, right, _ = changed_pixels_box(image)
    assert box_w - 5 <= right <= box_w and left > box_w / 2  # against the box's right edge
    # Alef, the first letter, is the tall stroke: it must be on the right, beh to its left.
    top_row = [x for x in range(image.width) if image.getpixel((x, top)) != BACKGROUND]
    assert min(top_row) > (left + right) / 2


def test_arabic_letters_are_joined_not_drawn_in_their_isolated_forms():
    fitted = fit_text("ببب", 300, 80, max_size=40, min_size=40)
    font = fitted.font

    def width(text):
        left, _, right, _ = font.getbbox(text, direction="rtl")
        return right - left
    joined = fitted.lines[0].box[2] - fitted.lines[0].box[0]
    assert joined < 0.75 * 3 * width("ب")  # initial, medial, final forms are narrower


def test_hebrew_can_be_aligned_left_on_request():
    fitted = fit_text(HEBREW, 300, 200, max_size=20, min_size=20, align="left")
    assert fitted.direction == "rtl"
    assert all(line.box[0] == 0 for line in fitted.lines)


def test_right_to_left_text_without_complex_layout_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(text_layout, "raqm_available", lambda: False)
    with pytest.raises(StudioError, match="right-to-left text needs .*libfribidi0"):
        fit_text(ARABIC, 300, 100, max_size=30, min_size=10)


# --- Fonts ----------------------------------------------------------------------------------

def test_shipped_fonts_cover_the_scripts_they_are_shipped_for():
    assert has_glyphs(DEJAVU, "Ελληνικά Русский عربي עברית")
    assert has_glyphs(DEJAVU_BOLD, "Ελληνικά Русский عربي עברית")
    assert has_glyphs(CJK_FONT, "中文 日本語 かな 한국어 iPhone 15 €…")
    assert missing_glyphs(DEJAVU, "a中b文") == ["中", "文"]
    assert has_glyphs(DEJAVU, "line\nbreak\u200f")  # breaks and bidi marks need no glyph


@pytest.mark.parametrize("font_file", [DEJAVU, CJK_FONT])
def test_the_font_table_agrees_with_what_the_font_draws(font_file):
    """has_glyphs reads the font's cmap; a character it says is missing must draw as .notdef,
    and one it says is there must not."""
    font = load_font(font_file, 32)
    tofu = notdef_mask(font)
    for char in "AzЖωبש中あ안€…\u0e01\u0915\U0001F600":
        assert has_glyphs(font_file, char) == (bytes(font.getmask(char)) != tofu), char


def format4_only_font(path):
    """A font file holding nothing but a format-4 cmap (as older BMP-only fonts have): 'A'-'C'
    mapped by a delta, U+4E00-U+4E02 through the glyph array, where U+4E01 maps to glyph 0."""
    import struct
    segments = [(0x41, 0x43, 10 - 0x41, 0), (0x4E00, 0x4E02, 0, 4), (0xFFFF, 0xFFFF, 1, 0)]
    glyph_array = [20, 0, 22]  # idRangeOffset 4: from segment 1's entry, past segment 2's
    seg_x2 = 2 * len(segments)
    column = lambda i: struct.pack(f">{len(segments)}H",  # noqa: E731
                                   *[seg[i] & 0xFFFF for seg in segments])
    body = (struct.pack(">7H", 4, 0, 0, seg_x2, 0, 0, 0) + column(1) + b"\0\0" + column(0)
            + column(2) + column(3) + struct.pack(f">{len(glyph_array)}H", *glyph_array))
    cmap = struct.pack(">HHHHI", 0, 1, 3, 1, 12) + body
    header = struct.pack(">IHHHH", 0x00010000, 1, 0, 0, 0) + struct.pack(">4sIII", b"cmap", 0,
                                                                          28, len(cmap))
    path.write_bytes(header + cmap)
    return path


def test_a_bmp_only_font_table_is_read_too(tmp_path):
    font = format4_only_font(tmp_path / "old.ttf")
    assert has_glyphs(font, "ABC \u4e00\u4e02") is False  # no space in this font
    assert has_glyphs(font, "ABCA\u4e00\u4e02")
    assert missing_glyphs(font, "ABCD\u4e00\u4e01\u4e02") == ["D", "\u4e01"]


def test_the_first_shipped_font_with_every_glyph_is_picked():
    assert font_path_for("Hello") == DEJAVU
    assert font_path_for("Hello", bold=True) == DEJAVU_BOLD
    assert font_path_for("新品上市 iPhone 15") == CJK_FONT
    assert font_path_for("新品", bold=True) == CJK_FONT  # no bold CJK cut: the regular one
    assert shipped_font_paths() == [DEJAVU, CJK_FONT]
    assert font_for("Hello", size=21).size == 21


def test_a_templates_font_is_tried_before_the_shipped_ones(tmp_path):
    brand = tmp_path / "Brand.ttc"
    shutil.copy(CJK_FONT, brand)
    assert font_path_for("Hello", fonts=[brand]) == brand
    assert font_path_for("مرحبا", fonts=[brand]) == DEJAVU  # it lacks Arabic: the next one
    assert fit_text("Hello", 200, 50, max_size=20, min_size=10,
                    fonts=[str(brand)]).font_path == brand


def test_a_missing_template_font_is_a_clear_error(tmp_path):
    with pytest.raises(StudioError, match=r"Brand\.ttf named in the template's fonts does not "
                                          r"exist"):
        font_path_for("Hello", fonts=[tmp_path / "Brand.ttf"])


def test_a_file_that_is_not_a_font_is_a_clear_error(tmp_path):
    not_a_font = tmp_path / "notes.ttf"
    not_a_font.write_text("just some words")
    with pytest.raises(StudioError, match="notes.ttf is not a TrueType or OpenType font"):
        font_path_for("Hello", fonts=[not_a_font])


def test_an_installed_font_is_found_when_no_shipped_one_has_the_glyphs(tmp_path, monkeypatch):
    installed = tmp_path / "fonts" / "truetype" / "dejavu"
    installed.mkdir(parents=True)
    shutil.copy(DEJAVU, installed / "DejaVuSans.ttf")
    monkeypatch.setattr(fonts_module, "SHIPPED_FONTS", (("wqy-microhei.ttc",) * 2,))
    monkeypatch.setattr(fonts_module, "system_font_dirs", lambda: [tmp_path / "fonts"])
    assert font_path_for("مرحبا") == installed / "DejaVuSans.ttf"


def test_a_private_use_character_no_font_has_is_a_clear_error():
    with pytest.raises(StudioError) as caught:
        fit_text(f"Sale {PRIVATE_USE} today", 300, 100, max_size=30, min_size=10)
    message = str(caught.value)
    assert "no font has a glyph for" in message and "U+E000" in message
    assert "template's fonts" in message  # what to do: give the font file made for it


def test_a_rare_cjk_character_error_names_the_package_to_install():
    rare = "\U0002A6D6"  # CJK Extension B, beyond the shipped CJK font
    with pytest.raises(StudioError, match=r"U\+2A6D6.*apt-get install fonts-noto-cjk"):
        font_path_for(f"新品{rare}")


def test_arabic_mixed_with_chinese_has_no_single_shipped_font():
    with pytest.raises(StudioError, match="no font has a glyph for") as caught:
        font_path_for("مرحبا 你好")
    assert "apt-get install" in str(caught.value)


# --- Deterministic, and nothing for nothing -----------------------------------------------------

@pytest.mark.parametrize("text", [LATIN * 3, CJK, ARABIC])
def test_the_same_input_gives_identical_pixels(text):
    def draw():
        return render(fit_text(text, 250, 120, max_size=40, min_size=12, align="center")).tobytes()
    first = draw()
    fonts_module._load_font.cache_clear()  # a fresh font object too
    assert draw() == first
    assert draw() != render(fit_text(text + " x", 250, 60, max_size=40, min_size=12)).tobytes()


@pytest.mark.parametrize("text", ["", "   ", "\n \n\t"])
def test_empty_text_draws_nothing(text):
    fitted = fit_text(text, 200, 100, max_size=30, min_size=10)
    assert fitted.lines == () and fitted.ink_box is None and not fitted.ellipsised
    assert changed_pixels_box(render(fitted)) is None


def test_draw_text_needs_a_box_position_in_whole_pixels():
    fitted = fit_text("Hello", 200, 100, max_size=30, min_size=10)
    with pytest.raises(StudioError, match=r"box_xy \(1.5, 2\) is not a pair"):
        draw_text(Image.new("RGB", (10, 10)), fitted, (1.5, 2), INK)
