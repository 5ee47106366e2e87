"""Compose batches (issue 17, item 3): every row's ad, review.json and index.html are written; a
second run skips finished rows; an interrupted batch resumes without redoing a row; broken rows
and rows missing a placeholder go to review while the others are made; an output folder that
is a file is refused before any work."""

import json
from pathlib import Path

import pytest

from conftest import ROOT
from studio.compose.batch import run_batch, safe_name
from studio.errors import StudioError

EXAMPLE = ROOT / "examples" / "compose"
# Very short texts and no retries: the batch's bookkeeping is under test, not the text.
SHORT_TEXT = {"headline": 8, "body": 8}
HEADER = "id,product,category,tagline\n"
GOOD = ["orbit-lamp,Orbit lamp,circle,a warm light\n", "cube speaker,Cube speaker,square,loud\n"]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    document = json.loads((EXAMPLE / "ad.json").read_text(encoding="utf-8"))
    for name, slot in document["slots"].items():
        slot["run"] = str((EXAMPLE / slot["run"]).resolve())
        if name in SHORT_TEXT:
            slot["settings"]["max_new_tokens"] = SHORT_TEXT[name]
            slot["retries"] = 0
    path = tmp_path_factory.mktemp("recipe") / "recipe.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def rows_file(folder: Path, lines: list[str]) -> Path:
    path = folder / "rows.csv"
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return path


def mtimes(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in sorted((folder / "ads").rglob("*"))}


def test_a_batch_writes_every_ad_and_a_second_run_skips_them(recipe, tmp_path):
    rows, out = rows_file(tmp_path, GOOD), tmp_path / "out"
    seen = []
    report = run_batch(recipe, rows, out, progress=lambda *args: seen.append(args))
    assert report.made == ["orbit-lamp", "cube speaker"] and not report.failed
    assert seen == [(1, 2, "orbit-lamp"), (2, 2, "cube speaker")]
    folders = [out / "ads" / "orbit-lamp", out / "ads" / safe_name("cube speaker")]
    assert folders[1].name.startswith("cube_speaker-")  # made safe, and kept distinct
    for folder in folders:
        assert (folder / "poster.png").is_file() and (folder / "ad.json").is_file()
    assert isinstance(json.loads((out / "review.json").read_text()), list)
    sheet = (out / "index.html").read_text(encoding="utf-8")
    assert f'src="ads/{folders[1].name}/poster.png"' in sheet and "cube speaker" in sheet

    before = mtimes(out)
    again = run_batch(recipe, rows, out)
    assert again.made == [] and again.skipped == ["orbit-lamp", "cube speaker"]
    assert mtimes(out) == before


def test_an_interrupted_batch_resumes_without_redoing_a_row(recipe, tmp_path):
    rows, out = rows_file(tmp_path, GOOD), tmp_path / "out"

    def stop_after_first(done, total, key):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(recipe, rows, out, progress=stop_after_first)
    first = mtimes(out)
    assert (out / "ads" / "orbit-lamp" / "ad.json").is_file()
    report = run_batch(recipe, rows, out)
    assert report.skipped == ["orbit-lamp"] and report.made == ["cube speaker"]
    assert all(mtimes(out)[p] == t for p, t in first.items())


def test_a_batch_asked_to_stop_ends_between_rows_and_finishes_later(recipe, tmp_path):
    rows, out = rows_file(tmp_path, GOOD), tmp_path / "out"
    handled = []
    report = run_batch(recipe, rows, out, progress=lambda done, total, key: handled.append(key),
                       stop=lambda: bool(handled))
    assert report.stopped and report.made == ["orbit-lamp"] and handled == ["orbit-lamp"]
    assert not (out / "ads" / safe_name("cube speaker")).exists()
    assert "Stopped before the end" in (out / "index.html").read_text(encoding="utf-8")
    report = run_batch(recipe, rows, out)
    assert not report.stopped and report.made == ["cube speaker"]
    assert report.skipped == ["orbit-lamp"]


def test_broken_rows_and_missing_placeholders_go_to_review(recipe, tmp_path):
    lines = [GOOD[0], "bad,\"Quote left open,circle,x\"y\n", "empty-tagline,Vase,triangle,\n"]
    out = tmp_path / "out"
    report = run_batch(recipe, rows_file(tmp_path, lines), out)
    assert report.made == ["orbit-lamp"] and report.failed == ["empty-tagline"]
    review = {entry["row"]: entry["reasons"] for entry in
              json.loads((out / "review.json").read_text(encoding="utf-8"))}
    assert "{tagline}" in " ".join(review["empty-tagline"])
    assert any("broken row" in " ".join(reasons) for key, reasons in review.items()
               if key.startswith("row "))
    assert (out / "ads" / "orbit-lamp" / "poster.png").is_file()
    assert "review" in (out / "index.html").read_text(encoding="utf-8")


def test_the_same_headline_twice_is_flagged(recipe, tmp_path):
    from studio.compose.batch import _duplicate_texts
    ad = {"slots": {"headline": {"kind": "text", "text": "Bright  Light"},
                    "picture": {"kind": "image"}}}
    other = {"slots": {"headline": {"kind": "text", "text": "bright light"}}}
    problems = _duplicate_texts({"a": ad, "b": other})
    assert problems == {"a": ["slots.headline: the same text as row b"],
                        "b": ["slots.headline: the same text as row a"]}


def test_an_output_folder_that_is_a_file_is_refused(recipe, tmp_path):
    out = tmp_path / "out"
    out.write_text("not a folder")
    with pytest.raises(StudioError, match="is a file"):
        run_batch(recipe, rows_file(tmp_path, GOOD), out)


def test_safe_names_stay_distinct():
    names = {safe_name(k) for k in ["a b", "a_b", "a/b", "..", ".x", "x"]}
    assert len(names) == 6 and "a_b" in names and "x" in names
    assert all(not n.startswith(".") and "/" not in n for n in names)


def test_studio_compose_makes_the_batch_and_says_where(recipe, tmp_path):
    from conftest import run_cli
    rows, out = rows_file(tmp_path, GOOD), tmp_path / "out"
    code, stdout, stderr = run_cli("compose", recipe, "--rows", rows, "--out", out)
    assert code == 0, stderr
    assert stdout.startswith("2 made, 0 finished earlier, 0 failed") and "index.html" in stdout
    assert (out / "ads" / "orbit-lamp" / "poster.png").is_file()
    code, stdout, stderr = run_cli("compose", recipe, "--rows", rows, "--out", out)
    assert code == 0 and stdout.startswith("0 made, 2 finished earlier"), stderr
    code, _, stderr = run_cli("compose", recipe, "--rows", tmp_path / "missing.csv", "--out", out)
    assert code == 2 and stderr.startswith("error: ") and len(stderr.strip().splitlines()) == 1


def test_an_ad_is_made_again_from_its_ad_json_exactly_or_with_one_slot_rerolled(recipe,
                                                                                 tmp_path):
    from conftest import run_cli
    out = tmp_path / "out"
    run_batch(recipe, rows_file(tmp_path, GOOD[:1]), out)
    ad = out / "ads" / "orbit-lamp"
    recipe.write_text("{}", encoding="utf-8")  # the recipe file changed since: not used
    try:
        code, stdout, stderr = run_cli("compose", ad / "ad.json", "--out", tmp_path / "again")
        assert code == 0, stderr
        assert stdout.strip() == f"made {tmp_path / 'again'}"
        for name in ("poster.png", "ad.json"):
            assert (tmp_path / "again" / name).read_bytes() == (ad / name).read_bytes(), name

        code, _, stderr = run_cli("compose", ad / "ad.json", "--out", tmp_path / "new",
                                  "--reroll", "picture")
        assert code == 0, stderr
    finally:
        recipe.write_text(json.dumps(json.loads((ad / "ad.json").read_text())["recipe"]
                                     ["document"]), encoding="utf-8")
    before, after = (json.loads((folder / "ad.json").read_text(encoding="utf-8"))
                     for folder in (ad, tmp_path / "new"))
    assert after["recipe"]["document"]["slots"]["picture"]["seed_offset"] == 1
    assert after["slots"]["picture"]["seed"] == before["slots"]["picture"]["seed"] + 1
    for name in ("headline", "body", "clip"):
        assert after["slots"][name] == before["slots"][name]


@pytest.mark.parametrize("args, expected", [
    (["--rows", "x.csv"], "is an ad's ad.json: it makes that one ad again"),
    (["--reroll", "logo"], "there is no slot 'logo' to re-roll; the recipe's slots: headline"),
])
def test_making_an_ad_again_refuses_what_does_not_apply(recipe, tmp_path, args, expected):
    from conftest import run_cli
    out = tmp_path / "out"
    run_batch(recipe, rows_file(tmp_path, GOOD[:1]), out)
    code, _, stderr = run_cli("compose", out / "ads" / "orbit-lamp" / "ad.json", "--out",
                              tmp_path / "again", *args)
    assert code == 2 and expected in stderr and len(stderr.strip().splitlines()) == 1


def test_a_recipe_needs_rows_and_takes_no_reroll(recipe, tmp_path):
    from conftest import run_cli
    code, _, stderr = run_cli("compose", recipe, "--out", tmp_path / "out")
    assert code == 2 and "give the rows to fill it with, --rows" in stderr
    code, _, stderr = run_cli("compose", recipe, "--rows", "x.csv", "--out", tmp_path / "o",
                              "--reroll", "headline")
    assert code == 2 and "--reroll works on one ad" in stderr

