"""Compose (issue 17), from a filled recipe to files: the example recipe on the three demo runs
makes one ad offline (poster, clip, lineage); the same recipe and row give the same bytes;
changing one slot's seed_offset changes that slot only; text never leaves its region on the
rendered pixels; a recipe naming a missing run, a run of the wrong kind or a bad setting gives
one message naming the slot."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from studio.compose.recipe import load_recipe, read_rows, recipe_from_document
from studio.compose.render import render_clip, render_poster, write_ad
from studio.compose.runner import Composer
from studio.errors import StudioError

EXAMPLE = ROOT / "examples" / "compose"
# Short texts keep the test quick; the slots are otherwise the example's.
SHORT_TEXT = {"headline": 24, "body": 40}


def recipe_document(**slot_changes) -> dict:
    """The example recipe with absolute run paths and short texts, each slot updated by
    `slot_changes[name]` (a dict of keys to set)."""
    document = json.loads((EXAMPLE / "ad.json").read_text(encoding="utf-8"))
    for name, slot in document["slots"].items():
        slot["run"] = str((EXAMPLE / slot["run"]).resolve())
        if name in SHORT_TEXT:
            slot["settings"]["max_new_tokens"] = SHORT_TEXT[name]
        slot.update(slot_changes.get(name, {}))
    return document


def write_recipe(folder: Path, document: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def composer(tmp_path_factory):
    path = write_recipe(tmp_path_factory.mktemp("recipe"), recipe_document())
    return Composer(load_recipe(path))


@pytest.fixture(scope="module")
def row():
    key, values = read_rows(EXAMPLE / "products.csv").rows[0]
    return key, values


@pytest.fixture(scope="module")
def content(composer, row):
    return composer.make(*row)


def test_an_ad_is_written_offline_with_its_lineage(composer, content, tmp_path):
    template = composer.recipe.template
    folder = write_ad(tmp_path / "ad", template, content, formats=("png", "mp4", "gif"))

    assert sorted(p.name for p in folder.iterdir()) == ["ad.json", "clip.gif", "clip.mp4",
                                                        "poster.png"]
    from PIL import Image
    with Image.open(folder / "poster.png") as poster:
        assert poster.size == (template.width, template.height)
    import imageio.v3 as iio
    clip = iio.imread(folder / "clip.mp4", plugin="FFMPEG", index=...)
    assert clip.shape[1:3] == (template.height, template.width)
    assert len(clip) == len(content.slots["clip"].frames)

    lineage = json.loads((folder / "ad.json").read_text(encoding="utf-8"))
    assert lineage["row_key"] == "orbit-lamp" and lineage["row"]["product"] == "Orbit lamp"
    assert lineage["template"]["name"] == "poster"
    assert set(lineage["slots"]) == {"headline", "body", "picture", "clip"}
    headline = lineage["slots"]["headline"]
    assert headline["text"] == content.slots["headline"].text
    assert headline["prompt"] == "Headline for Orbit lamp:"
    assert headline["checkpoint_used"] == "step_0002000"
    assert headline["seed"] == headline["attempts"][-1]["seed"]
    assert headline["settings"]["stop"] == ["\n"]
    assert lineage["slots"]["picture"]["prompt"] == "circle"
    # A text the generator cut at its token limit is set to end at a sentence or a whole word.
    body = lineage["slots"]["body"]["attempts"][-1]
    assert body["cut_at_length"] and body["generated"] != body["text"]
    assert body["text"][-1] in '.!?…"\')]'
    assert body["text"].removesuffix("…") in " ".join(body["generated"].split())
    # Each text slot either passed its guards or put the ad on the review list, saying why.
    for name in ("headline", "body"):
        passed = not lineage["slots"][name]["attempts"][-1]["problems"]
        flagged = any(reason.startswith(f"slots.{name}:") for reason in lineage["review"])
        assert passed != flagged


def test_the_same_recipe_and_row_give_the_same_bytes(composer, content, row, tmp_path):
    again = composer.make(*row)
    assert again.lineage() == content.lineage()
    template = composer.recipe.template
    first = write_ad(tmp_path / "first", template, content)
    second = write_ad(tmp_path / "second", template, again)
    for name in ("poster.png", "ad.json", "clip.mp4"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_a_seed_offset_changes_only_its_slot(content, row, tmp_path):
    changed = Composer(load_recipe(write_recipe(
        tmp_path, recipe_document(picture={"seed_offset": 1})))).make(*row)

    assert changed.slots["picture"].lineage["seed"] == content.slots["picture"].lineage["seed"] + 1
    assert not np.array_equal(changed.slots["picture"].image, content.slots["picture"].image)
    for name in ("headline", "body"):
        assert changed.slots[name].text == content.slots[name].text
        assert changed.slots[name].lineage == content.slots[name].lineage
    assert np.array_equal(changed.slots["clip"].frames, content.slots["clip"].frames)
    assert changed.slots["clip"].lineage == content.slots["clip"].lineage


def with_texts(content, **texts):
    slots = {**content.slots, **{name: replace(content.slots[name], text=text)
                                 for name, text in texts.items()}}
    return replace(content, slots=slots)


def test_long_text_never_leaves_its_region(composer, content):
    template = composer.recipe.template
    long_text = "An extraordinarily long headline that keeps going " * 30
    poster = np.asarray(render_poster(template, with_texts(content, headline=long_text,
                                                           body=long_text)))
    bare = np.asarray(render_poster(template, with_texts(content, headline="", body="")))

    inside_text = np.zeros(poster.shape[:2], bool)
    for region in template.regions.values():
        if region.holds == "text":
            box = region.box
            inside_text[box.y:box.bottom, box.x:box.right] = True
            # The text is drawn (so the check below has something to catch).
            assert (poster[box.y:box.bottom, box.x:box.right] != bare[box.y:box.bottom,
                                                                       box.x:box.right]).any()
    # Everywhere else the poster is the background and the picture, untouched.
    assert np.array_equal(poster[~inside_text], bare[~inside_text])
    background = tuple(int(template.background[i:i + 2], 16) for i in (1, 3, 5))
    picture = template.regions["picture"].box
    outside_all = inside_text.copy()
    outside_all[picture.y:picture.bottom, picture.x:picture.right] = True
    assert (bare[~outside_all] == background).all()


def test_the_clip_shows_the_text_over_every_frame(composer, content):
    template = composer.recipe.template
    frames, fps = render_clip(template, content)
    poster = np.asarray(render_poster(template, content))
    headline = template.regions["headline"].box
    assert fps == content.slots["clip"].fps
    for frame in (frames[0], frames[-1]):
        pixels = np.asarray(frame)
        assert np.array_equal(pixels[headline.y:headline.bottom, headline.x:headline.right],
                              poster[headline.y:headline.bottom, headline.x:headline.right])


def test_without_a_clip_the_still_zooms_slowly(composer, content):
    template = composer.recipe.template
    still = replace(content, slots={k: v for k, v in content.slots.items() if k != "clip"})
    frames, fps = render_clip(template, still)
    assert fps == template.clip.fps
    assert len(frames) == round(template.clip.seconds * template.clip.fps)
    picture = template.regions["picture"].box
    first, last = (np.asarray(f)[picture.y:picture.bottom, picture.x:picture.right]
                   for f in (frames[0], frames[-1]))
    assert np.array_equal(first, np.asarray(render_poster(template, still))[
        picture.y:picture.bottom, picture.x:picture.right])
    assert not np.array_equal(first, last)


@pytest.mark.parametrize("slot, change, expected", [
    ("headline", {"run": "/nonexistent/run"}, "slots.headline.run names /nonexistent/run, "
                                              "which does not exist"),
    ("picture", {"run": str(ROOT / "assets" / "demo" / "text")},
     "slots.picture.run names"),
    ("body", {"settings": {"temperature": "hot"}}, "slots.body.settings"),
])
def test_a_bad_slot_gives_one_message_naming_it(tmp_path, slot, change, expected):
    path = write_recipe(tmp_path, recipe_document(**{slot: change}))
    with pytest.raises(StudioError) as caught:
        Composer(load_recipe(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message
    assert "\n" not in message
    if slot == "picture":
        assert "a text run" in message and "needs an image run" in message


def test_an_ad_is_replaced_only_by_a_complete_one(composer, content, tmp_path):
    folder = write_ad(tmp_path / "ad", composer.recipe.template, content, formats=("png",))
    before = (folder / "poster.png").read_bytes()
    with pytest.raises(StudioError, match="ad formats"):
        write_ad(folder, composer.recipe.template, content, formats=("png", "webm"))
    broken = replace(content, slots={name: slot for name, slot in content.slots.items()
                                     if name != "picture"})  # rendering fails part way
    with pytest.raises(StudioError, match="no picture for slot 'picture'"):
        write_ad(folder, composer.recipe.template, broken, formats=("png",))
    assert (folder / "poster.png").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ad"]  # no staging folder left behind


def test_remaking_one_slot_keeps_the_others_as_they_were(composer, content, row, tmp_path):
    """The window's re-roll: the slot's seed_offset raised, only that slot made again, the
    others (locked) taken from the ad on screen; the result equals composing the whole row
    from the changed recipe, so the saved recipe makes it again."""
    document = recipe_document(headline={"seed_offset": 4})
    path = tmp_path / "recipe.json"
    rerolled = Composer(recipe_from_document(document, path), document=document,
                        reuse=composer)
    assert rerolled._loaded.keys() == composer._loaded.keys()  # no weights read again

    remade = rerolled.make(*row, keep=content, remake=("headline",))
    assert remade.slots["headline"].lineage["seed"] != content.slots["headline"].lineage["seed"]
    for name in ("body", "picture", "clip"):
        assert remade.slots[name] is content.slots[name]
    assert remade.lineage() == rerolled.make(*row).lineage()


def test_cjk_text_on_a_poster_is_drawn_with_real_glyphs(composer, content):
    """On the rendered pixels: two Chinese headlines of the same length differ (a font without
    the glyphs draws every character as the same .notdef box), and the font picked has each
    character (its glyph is not the .notdef box)."""
    from studio.compose.text_layout import fit_text
    template = composer.recipe.template
    box = template.regions["headline"].box
    first, second = "新品上市限时优惠", "明亮灯光温暖你家"

    def headline_pixels(text):
        poster = np.asarray(render_poster(template, with_texts(content, headline=text)))
        return poster[box.y:box.bottom, box.x:box.right]

    bare = headline_pixels("")
    assert (headline_pixels(first) != bare).any()
    assert not np.array_equal(headline_pixels(first), headline_pixels(second))
    style = template.regions["headline"].text
    fitted = fit_text(first, box.w, box.h, max_size=style.max_size, min_size=style.min_size,
                      bold=style.font.bold)
    from studio.compose.fonts import has_glyphs
    assert not has_glyphs(fitted.font.path, "\ue000")  # so it draws as the .notdef box
    tofu = bytes(fitted.font.getmask("\ue000"))
    assert all(bytes(fitted.font.getmask(char)) != tofu for char in first)


def test_an_ad_never_replaces_a_folder_of_other_files(composer, content, tmp_path):
    template = composer.recipe.template
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"a person's own file")
    with pytest.raises(StudioError, match="holds other files"):
        write_ad(mine, template, content, formats=("png",))
    assert [p.name for p in mine.iterdir()] == ["holiday.jpg"]
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(StudioError, match="it is a file"):
        write_ad(tmp_path / "a-file", template, content, formats=("png",))
    empty = tmp_path / "empty"
    empty.mkdir()
    write_ad(empty, template, content, formats=("png",))  # an empty folder, then an earlier ad
    write_ad(empty, template, content, formats=("png",))
    assert (empty / "poster.png").is_file()


def test_a_composer_takes_over_only_the_runs_its_recipe_uses(composer, tmp_path):
    document = recipe_document()
    del document["slots"]["clip"]  # the video run is not used now
    smaller = Composer(recipe_from_document(document, tmp_path / "r.json"), document=document,
                       reuse=composer)
    video = (EXAMPLE / "../../assets/demo/video").resolve()
    assert all(run != video for run, _ in smaller._loaded)
    assert all(smaller._loaded[key] is composer._loaded[key] for key in smaller._loaded)
