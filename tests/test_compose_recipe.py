"""Compose (issue 17), the data half: templates and recipes are read and checked, with one clear
message naming the file and the JSON path of anything wrong; a row fills a recipe's
placeholders; seeds are deterministic per (recipe seed, row, slot); rows come from CSV or
JSONL with broken rows reported one by one; the text guards and the duplicate check."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from studio.compose.recipe import (SEED_LIMIT, Slot, check_text, duplicates, fill, load_recipe,
                                   placeholders_in, read_rows, recipe_from_document, rerolled,
                                   slot_seed, tidy_text)
from studio.compose.template import builtin_templates, load_template
from studio.errors import StudioError

EXAMPLE_RECIPE = ROOT / "examples" / "compose" / "ad.json"
EXAMPLE_ROWS = ROOT / "examples" / "compose" / "products.csv"
DEMO_RUNS = ROOT / "assets" / "demo"


def good_template() -> dict:
    return {
        "description": "a small test layout",
        "canvas": {"width": 400, "height": 600, "background": "paper"},
        "margins": {"top": 20, "right": 20, "bottom": 20, "left": 20},
        "fonts": {"heading": {"family": "DejaVu Sans", "bold": True},
                  "body": {"file": "fonts/brand.ttf"}},
        "colours": {"paper": "#FAFAF0", "ink": "#101010"},
        "regions": {
            "picture": {"holds": "media", "slot": "picture", "clip_slot": "clip",
                        "box": [0, 0, 400, 300], "fit": "contain"},
            "headline": {"holds": "text", "slot": "headline", "box": [20, 320, 360, 120],
                         "font": "heading", "max_size": 48, "min_size": 16, "colour": "ink",
                         "align": "center", "valign": "middle", "line_spacing": 1.1},
            "body": {"holds": "text", "slot": "body", "box": [20, 450, 360, 130],
                     "font": "body", "max_size": 24, "min_size": 12, "colour": "#334455"},
        },
        "clip": {"fps": 10, "seconds": 3, "zoom": 1.2},
    }


def write_template(folder: Path, data: dict, name: str = "mine.json") -> Path:
    (folder / "fonts").mkdir(exist_ok=True)
    (folder / "fonts" / "brand.ttf").write_bytes(b"not parsed here: only its presence counts")
    path = folder / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def good_recipe(template: str = "poster") -> dict:
    return {
        "template": template,
        "seed": 7,
        "slots": {
            "headline": {"run": "runs/text", "prompt": "Headline for {product}:",
                         "settings": {"temperature": 0.5}, "stop": "\n", "max_chars": 40,
                         "banned": ["free"], "retries": 1},
            "body": {"run": "runs/text", "prompt": "{product} is {tagline}"},
            "picture": {"run": "runs/image", "class": "{category}"},
            "clip": {"run": "runs/video", "class": "{category}", "checkpoint": "best"},
        },
    }


def write_recipe(folder: Path, data: dict, name: str = "recipe.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def one_line_error(call) -> str:
    with pytest.raises(StudioError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message, message
    return message


# --- templates --------------------------------------------------------------------------------

def test_the_four_builtin_templates_load_with_their_shapes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # found beside the module, not from the working folder
    assert set(builtin_templates()) >= {"poster", "square", "banner", "story"}
    shapes = {name: load_template(name) for name in builtin_templates()}
    assert shapes["poster"].height > shapes["poster"].width
    assert shapes["square"].height == shapes["square"].width
    assert shapes["banner"].width >= 2.5 * shapes["banner"].height
    assert shapes["story"].height * 9 == shapes["story"].width * 16
    for template in shapes.values():
        # The same slots everywhere, so that a recipe can switch between them.
        assert template.slot_kinds() == {"headline": "text", "body": "text",
                                         "picture": "image", "clip": "clip"}
        assert template.optional_slots() == {"clip"}
        for region in template.regions.values():
            assert region.box.right <= template.width and region.box.bottom <= template.height
        headline = template.regions["headline"].text
        assert headline.font.family == "DejaVu Sans" and headline.font.bold
        assert headline.colour.startswith("#") and len(headline.colour) == 7


def test_a_user_template_file_loads_with_names_resolved(tmp_path):
    path = write_template(tmp_path, good_template())
    template = load_template(path)
    assert (template.name, template.width, template.height) == ("mine", 400, 600)
    assert template.background == "#fafaf0"  # the palette's name, resolved and lower-cased
    assert list(template.regions) == ["picture", "headline", "body"]  # drawing order
    headline = template.regions["headline"]
    assert (headline.box.x, headline.box.y, headline.box.w, headline.box.h) == (20, 320, 360, 120)
    assert headline.text.colour == "#101010" and headline.text.align == "center"
    body = template.regions["body"].text
    assert body.font.file == tmp_path / "fonts" / "brand.ttf" and not body.font.bold
    assert body.align is None and body.valign == "top" and body.line_spacing == 1.2  # defaults
    picture = template.regions["picture"]
    assert (picture.fit, picture.clip_slot) == ("contain", "clip")
    assert (template.clip.fps, template.clip.seconds, template.clip.zoom) == (10, 3.0, 1.2)
    # A relative path is taken from the folder given (a recipe's), not the working folder.
    relative = load_template("mine.json", relative_to=tmp_path)
    assert relative.path == path and relative.regions == template.regions


def test_an_unknown_template_name_lists_the_builtin_ones():
    message = one_line_error(lambda: load_template("postr"))
    assert "unknown template 'postr'" in message
    assert all(name in message for name in ("banner", "poster", "square", "story"))


def broken(change):
    data = good_template()
    change(data)
    return data


BAD_TEMPLATES = {
    "unknown key": (
        lambda t: t["regions"]["headline"].update(color="#000000"),
        "regions.headline has an unknown key 'color'; the known keys are: align, box, colour"),
    "unknown top key": (lambda t: t.update(layout={}), "has an unknown key 'layout'"),
    "bad colour": (lambda t: t["canvas"].update(background="#fff"),
                   "canvas.background must be a colour written #rrggbb"),
    "bad palette colour": (lambda t: t["colours"].update(ink="black"),
                           "colours.ink must be a colour written #rrggbb"),
    "box outside the canvas": (lambda t: t["regions"]["picture"].update(box=[0, 0, 420, 300]),
                               "regions.picture.box [0, 0, 420, 300] reaches x 0 to 420"),
    "text box in the margin": (
        lambda t: t["regions"]["body"].update(box=[20, 450, 360, 140]),
        "regions.body.box [20, 450, 360, 140] reaches x 20 to 380, y 450 to 590, outside the "
        "safe area inside the margins"),
    "box not four numbers": (lambda t: t["regions"]["picture"].update(box=[0, 0, 400]),
                             "regions.picture.box must be [x, y, w, h]"),
    "negative box": (lambda t: t["regions"]["picture"].update(box=[-5, 0, 400, 300]),
                     "regions.picture.box[0] must be a whole number from 0"),
    "min above max": (lambda t: t["regions"]["headline"].update(min_size=60),
                      "regions.headline.min_size must be a whole number from 1 to 48, got 60"),
    "fractional size": (lambda t: t["regions"]["headline"].update(max_size=40.5),
                        "regions.headline.max_size must be a whole number"),
    "odd canvas": (lambda t: t["canvas"].update(width=401), "canvas.width must be even"),
    "unknown font": (lambda t: t["regions"]["body"].update(font="serif"),
                     "regions.body.font is 'serif', which is not one of the template's fonts: "
                     "heading, body"),
    "missing font file": (lambda t: t["fonts"]["body"].update(file="fonts/gone.ttf"),
                          "fonts.body.file names"),
    "family and file": (lambda t: t["fonts"]["body"].update(family="DejaVu Sans"),
                        "fonts.body must give either 'family'"),
    "missing box": (lambda t: t["regions"]["body"].pop("box"), "regions.body is missing 'box'"),
    "bad holds": (lambda t: t["regions"]["body"].update(holds="video"),
                  "regions.body.holds must be one of text, media; got 'video'"),
    "slot shown twice": (lambda t: t["regions"]["body"].update(slot="headline"),
                         "regions.body.slot names slot 'headline', which region 'headline' "
                         "shows already"),
    "bad fit": (lambda t: t["regions"]["picture"].update(fit="stretch"),
                "regions.picture.fit must be one of cover, contain"),
    "clip fps": (lambda t: t["clip"].update(fps=0), "clip.fps must be a whole number from 1 to 60"),
}


@pytest.mark.parametrize("case", sorted(BAD_TEMPLATES))
def test_a_bad_template_gets_one_message_naming_the_file_and_field(tmp_path, case):
    change, expected = BAD_TEMPLATES[case]
    path = write_template(tmp_path, broken(change))
    message = one_line_error(lambda: load_template(path))
    assert message.startswith(f"{path}: "), message
    assert expected in message, message


def test_a_template_that_is_not_json_says_so(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{\"canvas\": ", encoding="utf-8")
    message = one_line_error(lambda: load_template(path))
    assert "not valid JSON" in message and str(path) in message


# --- recipes ----------------------------------------------------------------------------------

def test_the_example_recipe_uses_the_three_demo_runs():
    recipe = load_recipe(EXAMPLE_RECIPE)
    assert recipe.template.name == "poster" and recipe.seed == 2024
    kinds = {name: slot.kind for name, slot in recipe.slots.items()}
    assert kinds == {"headline": "text", "body": "text", "picture": "image", "clip": "clip"}
    runs = {name: slot.run for name, slot in recipe.slots.items()}
    assert runs["headline"] == (DEMO_RUNS / "text").resolve()
    assert runs["picture"] == (DEMO_RUNS / "image").resolve()
    assert runs["clip"] == (DEMO_RUNS / "video").resolve()
    assert all((run / "run.json").is_file() for run in runs.values())
    assert recipe.placeholders() == {"product", "category", "tagline"}
    rows, broken_rows = read_rows(EXAMPLE_ROWS)
    assert len(rows) == 5 and broken_rows == []
    assert all(recipe.placeholders() <= set(row) for _, row in rows)
    # The demo image and video runs know circle, square and triangle.
    assert {row["category"] for _, row in rows} <= {"circle", "square", "triangle"}


@pytest.mark.parametrize("template", ["poster", "square", "banner", "story"])
def test_one_recipe_fits_every_builtin_template(tmp_path, template):
    recipe = load_recipe(write_recipe(tmp_path, good_recipe(template)))
    assert recipe.template.name == template


def test_a_recipe_reads_its_slots_and_takes_paths_from_its_own_folder(tmp_path, monkeypatch):
    folder = tmp_path / "ads"
    folder.mkdir()
    write_template(folder, good_template(), "layout.json")
    data = good_recipe("layout.json")
    data["slots"]["picture"]["run"] = str(tmp_path / "elsewhere" / "image")
    path = write_recipe(folder, data)
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(Path("ads") / "recipe.json")
    assert recipe.template.path == (folder / "layout.json").resolve()
    headline = recipe.slots["headline"]
    # The run folders do not exist: opening them is the runner's job, not the recipe's.
    assert headline.run == (folder / "runs" / "text").resolve() and not headline.run.exists()
    assert recipe.slots["picture"].run == (tmp_path / "elsewhere" / "image").resolve()
    assert (headline.checkpoint, headline.stop, headline.banned) == ("latest", ("\n",), ("free",))
    assert (headline.max_chars, headline.retries, headline.seed_offset) == (40, 1, 0)
    assert recipe.slots["body"].retries == 2 and recipe.slots["body"].max_chars is None
    assert recipe.slots["clip"].checkpoint == "best"
    assert recipe.slots["picture"].prompt == "{category}"
    assert path.is_file()


def test_a_recipe_may_leave_out_the_clip_slot(tmp_path):
    data = good_recipe()
    del data["slots"]["clip"]
    recipe = load_recipe(write_recipe(tmp_path, data))
    assert set(recipe.slots) == {"headline", "body", "picture"}


def mutated(change):
    data = good_recipe()
    change(data)
    return data


BAD_RECIPES = {
    "unknown key": (lambda r: r.update(rows="x.csv"), "has an unknown key 'rows'"),
    "unknown slot key": (lambda r: r["slots"]["body"].update(temperature=0.3),
                         "slots.body has an unknown key 'temperature'"),
    "slot without region": (
        lambda r: r["slots"].update(logo={"run": "runs/image"}),
        "slots.logo has no region in template poster"),
    "region without slot": (
        lambda r: r["slots"].pop("body"),
        "slots has no slot 'body', which template poster"),
    "guard on a picture": (lambda r: r["slots"]["picture"].update(max_chars=10),
                           "slots.picture.max_chars is for text slots only; 'picture' is an "
                           "image slot"),
    "max_chars zero": (lambda r: r["slots"]["headline"].update(max_chars=0),
                       "slots.headline.max_chars must be a whole number from 1 to 10000, got 0"),
    "retries text": (lambda r: r["slots"]["headline"].update(retries="3"),
                     "slots.headline.retries must be a whole number"),
    "stop twice": (lambda r: r["slots"]["headline"]["settings"].update(stop=["."]),
                   "slots.headline.settings.stop is given here; write it as slots.headline.stop"),
    "empty stop": (lambda r: r["slots"]["headline"].update(stop=[""]),
                   "slots.headline.stop must be a string or a list of non-empty strings"),
    "banned not a list": (lambda r: r["slots"]["headline"].update(banned="free"),
                          "slots.headline.banned must be a list of words"),
    "banned empty word": (lambda r: r["slots"]["headline"].update(banned=["ok", " "]),
                          "slots.headline.banned[1] must not be empty"),
    "settings not an object": (lambda r: r["slots"]["body"].update(settings=[1]),
                               "slots.body.settings must be a JSON object"),
    "missing prompt": (lambda r: r["slots"]["body"].pop("prompt"),
                       "slots.body is missing 'prompt'"),
    "missing run": (lambda r: r["slots"]["clip"].pop("run"), "slots.clip is missing 'run'"),
    "unbalanced brace": (lambda r: r["slots"]["body"].update(prompt="{product is new"),
                         "slots.body.prompt has an unbalanced brace"),
    "empty placeholder": (lambda r: r["slots"]["picture"].update(**{"class": "{}"}),
                          "slots.picture.class has an empty {}"),
    "formatted placeholder": (lambda r: r["slots"]["body"].update(prompt="{product!r}"),
                              "slots.body.prompt has {product!r}; a placeholder is a column "
                              "name only"),
    "negative seed": (lambda r: r.update(seed=-1), "seed must be a whole number from 0"),
    "unknown template": (lambda r: r.update(template="postr"),
                         "template cannot be used: unknown template 'postr'"),
    "missing template file": (lambda r: r.update(template="layouts/gone.json"),
                              "template names"),
    "tidy not a flag": (lambda r: r["slots"]["body"].update(tidy="yes"),
                        "slots.body.tidy must be true or false"),
    "tidy on a picture": (lambda r: r["slots"]["picture"].update(tidy=False),
                          "slots.picture.tidy is for text slots only"),
    "bad checkpoint": (lambda r: r["slots"]["body"].update(checkpoint=""),
                       "slots.body.checkpoint must be \"latest\", \"best\""),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_a_bad_recipe_gets_one_message_naming_the_file_and_field(tmp_path, case):
    change, expected = BAD_RECIPES[case]
    path = write_recipe(tmp_path, mutated(change))
    message = one_line_error(lambda: load_recipe(path))
    assert message.startswith(f"{path}: "), message
    assert expected in message, message


def test_a_slot_without_a_region_and_a_region_without_a_slot_say_which(tmp_path):
    data = good_recipe()
    data["slots"]["headlin"] = data["slots"].pop("headline")
    message = one_line_error(lambda: load_recipe(write_recipe(tmp_path, data)))
    assert "slots.headlin has no region" in message
    assert "body, clip, headline, picture" in message  # the slots the template does show
    del data["slots"]["headlin"]
    message = one_line_error(lambda: load_recipe(write_recipe(tmp_path, data)))
    assert "no slot 'headline'" in message and "region 'headline' (a text slot)" in message


def test_a_broken_user_template_is_named_by_its_own_file(tmp_path):
    layout = write_template(tmp_path, broken(lambda t: t["canvas"].update(height=2)),
                            "layout.json")
    message = one_line_error(lambda: load_recipe(write_recipe(tmp_path,
                                                              good_recipe("layout.json"))))
    assert message.startswith(f"{layout.resolve()}: canvas.height must be"), message


def test_a_missing_recipe_file_says_so(tmp_path):
    message = one_line_error(lambda: load_recipe(tmp_path / "nope.json"))
    assert "missing" in message and "nope.json" in message


# --- filling a row ----------------------------------------------------------------------------

ROW = {"id": "lamp-1", "product": "Orbit lamp", "category": "circle", "tagline": "warm {light}"}


def test_a_row_fills_the_placeholders(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, good_recipe()))
    filled = {slot.name: slot for slot in fill(recipe, ROW, "lamp-1")}
    assert list(filled) == ["headline", "body", "picture", "clip"]
    assert filled["headline"].prompt == "Headline for Orbit lamp:"
    assert filled["body"].prompt == "Orbit lamp is warm {light}"  # a value is never re-filled
    assert filled["picture"].prompt == filled["clip"].prompt == "circle"
    # The slot's stop strings go to the generator with its settings; the recipe is unchanged.
    assert filled["headline"].settings == {"temperature": 0.5, "stop": ["\n"]}
    assert recipe.slots["headline"].settings == {"temperature": 0.5}
    lineage = filled["clip"].lineage()
    assert lineage["checkpoint"] == "best" and lineage["prompt"] == "circle"
    assert lineage["seed"] == filled["clip"].seed and lineage["attempt"] == 0
    assert json.loads(json.dumps(lineage)) == lineage  # the sidecar can hold it as it is


def test_literal_braces_and_numbers_fill_as_written(tmp_path):
    data = good_recipe()
    data["slots"]["body"]["prompt"] = "{{new}} {product} at {price} ({in_stock})"
    recipe = load_recipe(write_recipe(tmp_path, data))
    assert recipe.placeholders() == {"product", "price", "in_stock", "category"}
    row = {"product": "Vase", "price": 12.5, "in_stock": True, "category": "triangle"}
    body = next(slot for slot in fill(recipe, row, "3") if slot.name == "body")
    assert body.prompt == "{new} Vase at 12.5 (true)"


def test_a_placeholder_with_no_column_names_it_the_row_and_the_columns(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, good_recipe()))
    row = {"id": "lamp-1", "product": "Orbit lamp", "category": "circle"}
    message = one_line_error(lambda: fill(recipe, row, "lamp-1"))
    assert "slots.body.prompt uses {tagline}" in message
    assert "row lamp-1 has no column 'tagline'" in message
    assert "its columns: id, product, category" in message
    assert message.startswith(str(tmp_path / "recipe.json"))


@pytest.mark.parametrize("value", ["", "   ", None])
def test_an_empty_value_counts_as_missing(tmp_path, value):
    recipe = load_recipe(write_recipe(tmp_path, good_recipe()))
    message = one_line_error(lambda: fill(recipe, {**ROW, "category": value}, "r9"))
    assert "slots.picture.class uses {category}, but row r9 leaves 'category' empty" in message


def test_placeholders_in_a_prompt_in_order():
    assert placeholders_in("{a} and {b c}, {{not}} {a}") == ["a", "b c", "a"]
    with pytest.raises(StudioError, match="unbalanced"):
        placeholders_in("oops }")


# --- seeds ------------------------------------------------------------------------------------

def test_the_seed_is_the_documented_hash_pinned_across_machines():
    # The formula of slot_seed's docstring, written out: a change to it changes every ad.
    key = json.dumps(["aigc-studio compose seed 1", 2024, "orbit-lamp", "headline"],
                     ensure_ascii=False, separators=(",", ":"))
    expected = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 2 ** 31
    assert slot_seed(2024, "orbit-lamp", "headline") == expected == 1071368617


def test_seeds_are_the_same_in_a_fresh_process_with_another_hash_salt():
    code = ("from studio.compose.recipe import slot_seed; "
            "print(slot_seed(5, 'row-ü', 'picture'))")
    seeds = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env={"PYTHONHASHSEED": salt, "PATH": ""},
                            check=True).stdout.strip() for salt in ("1", "2")}
    assert seeds == {str(slot_seed(5, "row-ü", "picture"))}


def seeds_of(recipe, rows) -> dict[tuple[str, str], int]:
    return {(key, slot.name): slot.seed for key, row in rows for slot in fill(recipe, row, key)}


def test_seeds_are_deterministic_and_differ_per_row_and_slot(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, good_recipe()))
    rows = [(f"r{i}", {**ROW, "product": f"P{i}"}) for i in range(5)]
    first = seeds_of(recipe, rows)
    assert seeds_of(load_recipe(recipe.path), rows) == first
    assert len(set(first.values())) == len(first) == 20
    assert all(0 <= seed < SEED_LIMIT for seed in first.values())
    # The row's values do not enter the seed, only its key.
    assert seeds_of(recipe, [("r0", {**ROW, "product": "Other"})])[("r0", "body")] \
        == first[("r0", "body")]


def test_seeds_change_with_the_recipe_seed(tmp_path):
    rows = [(f"r{i}", ROW) for i in range(3)]
    before = seeds_of(load_recipe(write_recipe(tmp_path, good_recipe())), rows)
    after = seeds_of(load_recipe(write_recipe(tmp_path, {**good_recipe(), "seed": 8})), rows)
    assert all(before[key] != after[key] for key in before)


def test_a_seed_offset_changes_only_its_slot(tmp_path):
    rows = [("r1", ROW), ("r2", ROW)]
    before = seeds_of(load_recipe(write_recipe(tmp_path, good_recipe())), rows)
    data = good_recipe()
    data["slots"]["picture"]["seed_offset"] = 3
    after = seeds_of(load_recipe(write_recipe(tmp_path, data)), rows)
    for (key, slot), seed in before.items():
        expected = (seed + 3) % SEED_LIMIT if slot == "picture" else seed
        assert after[(key, slot)] == expected


def test_a_retry_takes_the_next_seed_and_wraps_below_the_limit(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, good_recipe()))
    headline = fill(recipe, ROW, "r1")[0]
    assert [headline.seed_for_try(i) for i in range(3)] == [
        headline.seed, (headline.seed + 1) % SEED_LIMIT, (headline.seed + 2) % SEED_LIMIT]
    assert headline.lineage(attempt=2)["seed"] == headline.seed_for_try(2)
    from dataclasses import replace
    assert replace(headline, seed=SEED_LIMIT - 1).seed_for_try(1) == 0


# --- rows -------------------------------------------------------------------------------------

def test_csv_rows_with_a_bom_keep_their_id_column(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes("\ufeffid,product,category\r\nA1,Lamp ,circle\r\nB2,\"Vase, tall\",square\r\n"
                     .encode("utf-8"))
    rows, broken_rows = read_rows(path)
    assert rows == [("A1", {"id": "A1", "product": "Lamp", "category": "circle"}),
                    ("B2", {"id": "B2", "product": "Vase, tall", "category": "square"})]
    assert broken_rows == []


def test_without_an_id_column_the_row_number_is_the_key(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("product,note\nLamp,\"two\nlines\"\n\n,\nVase,x\n", encoding="utf-8")
    rows, broken_rows = read_rows(path)
    # Blank lines and rows of empty cells are no rows; a quoted newline stays in its cell.
    assert rows == [("1", {"product": "Lamp", "note": "two\nlines"}),
                    ("2", {"product": "Vase", "note": "x"})]
    assert broken_rows == []


def test_a_broken_csv_row_is_reported_and_the_others_are_kept(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("id,product,category\nA,Lamp,circle\nB,Vase\nC,Clock,square,extra\n"
                    "D,Mirror,circle\n", encoding="utf-8")
    rows, broken_rows = read_rows(path)
    assert [key for key, _ in rows] == ["A", "D"]
    assert broken_rows == [
        (2, "line 3: 2 fields, but the header has 3 columns (id, product, category)"),
        (3, "line 4: 4 fields, but the header has 3 columns (id, product, category)")]


def test_bad_quoting_is_a_broken_row_not_a_cell_that_swallows_the_rest(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('id,product\nA,"Lamp"s\nB,Vase 10" tall\nC,"open\nD,Clock\n',
                    encoding="utf-8")
    rows, broken_rows = read_rows(path)
    assert rows == [("B", {"id": "B", "product": 'Vase 10" tall'})]
    assert [(number, reason.split(" (")[0]) for number, reason in broken_rows] == [
        (1, "line 2: not valid CSV"), (3, "line 4: not valid CSV")]
    assert broken_rows[1][1].endswith("a quote is left open)")


def test_jsonl_rows_and_their_broken_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = ['{"id": 7, "product": "Lamp", "price": 12.5}', "", '["not", "an", "object"]',
             '{"id": "x", "product": "Vase\u2028tall"}', "{broken", '{"id": 7, "product": "Dup"}',
             '{"product": "no id"}', '"text"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows, broken_rows = read_rows(path)
    assert rows == [("7", {"id": 7, "product": "Lamp", "price": 12.5}),
                    ("x", {"id": "x", "product": "Vase\u2028tall"})]
    numbers = [number for number, _ in broken_rows]
    assert numbers == [2, 4, 5, 6, 7]
    reasons = dict(broken_rows)
    assert reasons[2] == ('line 3 is a list, not a JSON object of columns such as '
                          '{"product": "..."}')
    assert reasons[4].startswith("line 5 is not valid JSON")
    assert reasons[5] == "line 6: id '7' is row 1's already; ids must be unique (they name the ads)"
    assert reasons[6].startswith("line 7: the id is missing or empty")
    assert reasons[7].startswith("line 8 is a string, not a JSON object")


def test_a_repeated_or_empty_csv_id_is_a_broken_row(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("id,product\nA,Lamp\nA,Vase\n ,Clock\n", encoding="utf-8")
    rows, broken_rows = read_rows(path)
    assert rows == [("A", {"id": "A", "product": "Lamp"})]
    assert [number for number, _ in broken_rows] == [2, 3]


@pytest.mark.parametrize("name, content, expected", [
    ("empty.csv", b"", "is empty"),
    ("blank.jsonl", b"\n  \n", "is empty"),
    ("header.csv", b"id,product\n", "has a header line but no rows"),
    ("latin1.csv", "product\nCaf\u00e9\n".encode("latin-1"), "is not UTF-8 text"),
    ("rows.xlsx", b"PK\x03\x04", "must be .csv"),
    ("twice.csv", b"id,product,id\n1,a,2\n", "names column 'id' twice"),
    ("unnamed.csv", b"id,,product\n1,2,3\n", "column 2 of the header line has no name"),
])
def test_a_rows_file_that_cannot_be_used_says_why(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    message = one_line_error(lambda: read_rows(path))
    assert expected in message and str(path) in message


def test_a_missing_rows_file_says_so(tmp_path):
    message = one_line_error(lambda: read_rows(tmp_path / "gone.csv"))
    assert "missing" in message and "gone.csv" in message


# --- guards -----------------------------------------------------------------------------------

def text_slot(**guards) -> Slot:
    return Slot(name="headline", kind="text", run=Path("/runs/text"), checkpoint="latest",
                settings={}, prompt="Headline:", **guards)


def test_text_within_its_guards_has_no_problems():
    slot = text_slot(max_chars=21, banned=("free",))
    assert check_text("  Bright light, at home  ", slot) == []  # the spaces around are not shown
    assert check_text("Freedom to read", slot) == []  # whole words only


def test_text_over_max_chars_or_empty_is_a_problem():
    slot = text_slot(max_chars=10)
    assert check_text("Eleven char", slot) == ["11 characters, over the limit of 10"]
    assert check_text("Ten chars!", slot) == []
    assert check_text(" \n ", slot) == ["the text is empty"]


@pytest.mark.parametrize("text, banned", [
    ("Get it FREE today", "free"),
    ("free.", "Free"),
    ("ＦＲＥＥ delivery", "free"),  # full-width letters
    ("Jetzt GRATIS testen", "gratis"),
    ("Доставка бесплатно!", "Бесплатно"),
    ("Size: STRASSE", "straße"),
    ("No risk,  money back guarantee", "money back"),
    ("全场免费送货", "免费"),  # Chinese: no spaces, found anywhere
    ("今だけ無料です", "無料"),  # Japanese
    ("배송비무료로", "무료"),  # Korean, a particle attached
])
def test_a_banned_word_is_found_in_any_case_and_language(text, banned):
    assert check_text(text, text_slot(banned=(banned,))) == [f"holds the banned word '{banned}'"]


@pytest.mark.parametrize("text, banned", [
    ("Freedom and freelance", "free"),
    ("гратисный", "гратис"),
    ("Carefree", "free"),
])
def test_a_banned_word_inside_another_word_is_not_flagged(text, banned):
    assert check_text(text, text_slot(banned=(banned,))) == []


def test_every_problem_is_listed():
    slot = text_slot(max_chars=5, banned=("free", "best"))
    assert check_text("The best, and free", slot) == [
        "18 characters, over the limit of 5", "holds the banned word 'free'",
        "holds the banned word 'best'"]


def test_duplicates_after_normalising_whitespace_and_case():
    texts = {"r1": "Bright  light\n", "r2": "bright LIGHT", "r3": "Other", "r4": " ",
             "r5": "BRIGHT light", "r6": "", "r7": "other!"}
    assert duplicates(texts) == {"r1": ["r2", "r5"], "r2": ["r1", "r5"], "r5": ["r1", "r2"]}
    assert duplicates({"a": "x", "b": "y"}) == {}


# --- lightness --------------------------------------------------------------------------------

def test_recipes_and_templates_import_neither_torch_nor_qt():
    code = ("import sys, studio.compose.recipe, studio.compose.template; "
            "print(sorted(m for m in ('torch', 'PySide6') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          check=True)
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("generated, shown", [
    (": Light that follows\nthe sun", "Light that follows the sun"),
    ("\n\n  — Warm,   bright.\n", "Warm, bright."),
    ("，新品上市\n限时", "新品上市 限时"),  # a full-width comma is punctuation too
    ('"Bright" at home', '"Bright" at home'),  # an opening quote opens the phrase: kept
    ("(new) lamp", "(new) lamp"),
    ("¿Listo? #lamp", "¿Listo? #lamp"),
    (".,;:", ""),
])
def test_tidy_text_sets_generated_text_as_ad_copy(generated, shown):
    assert tidy_text(generated) == shown


@pytest.mark.parametrize("generated, shown", [
    ("The lamp is bright. It foll", "The lamp is bright."),
    ('He said "go." Then we wen', 'He said "go."'),
    ("Bright light for your hom", "Bright light for your…"),
    ("a, b, c an", "a, b, c…"),
    ("Bright light for your home ", "Bright light for your home…"),  # the last word was whole
    ("Bright light for your home,\n", "Bright light for your home…"),
    ("新品上市。限时优", "新品上市。"),
    ("新品上市限时优", "新品上市限时优…"),  # no spaces: no word to drop
    ("Ends here!", "Ends here!"),  # cut where a sentence ends anyway
    ("", ""),
])
def test_text_cut_at_the_token_limit_ends_at_a_sentence_or_a_whole_word(generated, shown):
    assert tidy_text(generated, cut=True) == shown
    assert tidy_text(generated) == " ".join(generated.split())  # not cut: the words all kept


def test_tidy_is_on_by_default_and_can_be_turned_off(tmp_path):
    data = good_recipe()
    data["slots"]["body"]["tidy"] = False
    recipe = load_recipe(write_recipe(tmp_path, data))
    assert recipe.slots["headline"].tidy is True and recipe.slots["body"].tidy is False


def test_a_recipe_in_memory_is_checked_as_the_file_it_would_be(tmp_path):
    data = good_recipe()
    from_memory = recipe_from_document(data, tmp_path / "draft.json")
    from_file = load_recipe(write_recipe(tmp_path, data, name="draft.json"))
    assert from_memory == from_file
    assert from_memory.slots["body"].run == (tmp_path / "runs" / "text").resolve()
    data["slots"]["body"]["retries"] = -1
    message = one_line_error(lambda: recipe_from_document(data, tmp_path / "draft.json"))
    assert message.startswith(f"{tmp_path / 'draft.json'}: slots.body.retries")


def test_a_reroll_moves_a_text_slot_past_its_retries_and_a_picture_by_one():
    document = good_recipe()  # headline: retries 1; body: the default 2
    once = rerolled(document, "headline")
    assert once["slots"]["headline"]["seed_offset"] == 2
    assert rerolled(once, "headline")["slots"]["headline"]["seed_offset"] == 4
    assert rerolled(document, "body")["slots"]["body"]["seed_offset"] == 3
    assert rerolled(document, "picture")["slots"]["picture"]["seed_offset"] == 1
    assert "seed_offset" not in document["slots"]["headline"]  # the original is not changed
    message = one_line_error(lambda: rerolled(document, "logo"))
    assert message == ("there is no slot 'logo' to re-roll; the recipe's slots: headline, body, "
                       "picture, clip.")
