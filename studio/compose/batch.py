"""A batch of ads: one recipe, one rows file, one ad per row, resumable.

`run_batch` writes out_dir/ads/<row key>/ (see render.write_ad) for every row, then
out_dir/review.json (each row a person should look at, with the reasons) and out_dir/index.html
(a contact sheet of the posters). A row whose folder already holds its finished ad (same recipe
document, same row) is skipped, so a batch that was stopped is started again with the same call.
One row's failure (a missing placeholder, a class the generator refuses) goes into the review
list and the batch goes on.

`remake_ad` makes one ad again from its ad.json (the recipe and row recorded there), exactly,
or with some slots re-rolled.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from studio.compose.recipe import duplicates, read_rows, recipe_from_document, rerolled
from studio.compose.render import LINEAGE_FILE, POSTER_FILE, check_formats, write_ad
from studio.compose.template import file_sha256
from studio.errors import StudioError
from studio.runstore import read_json, write_atomic, write_json

ADS_FOLDER, REVIEW_FILE, INDEX_FILE = "ads", "review.json", "index.html"
UNSAFE_IN_NAMES = re.compile(r"[^A-Za-z0-9._-]")
# Files a finished ad holds for each format write_ad was asked for.
FORMAT_FILES = {"png": POSTER_FILE, "mp4": "clip.mp4", "gif": "clip.gif"}

Progress = Callable[[int, int, str], None]


@dataclass
class BatchReport:
    """Row keys made now, skipped (finished earlier) and failed, and the review list: each
    {"row": key, "reasons": [...]}, in the rows file's order."""

    made: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    review: list[dict] = field(default_factory=list)
    stopped: bool = False  # `stop` asked for it before every row was handled


def run_batch(recipe_path: str | Path, rows_path: str | Path, out_dir: str | Path,
              formats: tuple[str, ...] = ("png",), progress: Progress | None = None,
              device: str = "cpu", stop: Callable[[], bool] | None = None) -> BatchReport:
    """Make (or finish) the ads of every row; see the module's docstring. `stop` is asked
    before each row: when it says True the batch ends there, its review list and contact sheet
    written for the rows handled so far (the same call later finishes the rest)."""
    out_dir = Path(out_dir).expanduser()
    check_formats(formats)
    ads_dir = _writable_ads_folder(out_dir)  # before any run is loaded or row read
    recipe_path = Path(recipe_path).expanduser()
    document = read_json(recipe_path, "The recipe file")  # read once: checked, then recorded
    recipe = recipe_from_document(document, recipe_path)
    rows, broken = read_rows(rows_path)

    report = BatchReport()
    reasons: dict[str, list[str]] = {}  # row key -> why it needs review
    lineages: dict[str, dict] = {}  # row key -> its finished ad's ad.json
    folders = {key: ads_dir / safe_name(key) for key, _ in rows}
    composer = None  # loaded only when a row needs making: a finished batch loads no weights
    for done, (key, row) in enumerate(rows, 1):
        if stop is not None and stop():
            report.stopped = True
            break
        finished = _finished_lineage(folders[key], document, key, row, formats)
        if finished is not None:
            report.skipped.append(key)
            lineages[key] = finished
        else:
            try:
                if composer is None:
                    from studio.compose.runner import Composer
                    composer = Composer(recipe, device, document=document)
                content = composer.make(key, row)
                write_ad(folders[key], recipe.template, content, formats)
                report.made.append(key)
                lineages[key] = content.lineage()
            except StudioError as exc:
                report.failed.append(key)
                reasons.setdefault(key, []).append(str(exc))
        if progress is not None:
            progress(done, len(rows), key)

    for key, lineage in lineages.items():
        reasons.setdefault(key, []).extend(lineage.get("review", []))
    for key, problems in _duplicate_texts(lineages).items():
        reasons.setdefault(key, []).extend(problems)
    for number, why in broken:
        reasons.setdefault(f"row {number}", []).append(f"broken row in {rows_path}: {why}")

    order = [key for key, _ in rows] + [f"row {number}" for number, _ in broken]
    report.review = [{"row": key, "reasons": reasons[key]} for key in order if reasons.get(key)]
    write_json(out_dir / REVIEW_FILE, report.review)
    write_atomic(out_dir / INDEX_FILE, _contact_sheet(rows, folders, lineages, reasons,
                                                      report, out_dir).encode("utf-8"))
    return report


def is_ad_lineage(path: str | Path) -> bool:
    """Whether `path` is an ad's ad.json (what write_ad writes) rather than a recipe."""
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"recipe", "row_key", "row", "slots"} <= data.keys()


def remake_ad(lineage_path: str | Path, out_folder: str | Path,
              formats: tuple[str, ...] = ("png",), reroll: tuple[str, ...] = (),
              device: str = "cpu") -> tuple[Path, list[str]]:
    """Make an ad again from its ad.json: the same recipe (as recorded, not as the file is
    now) and row give the same files; each slot in `reroll` draws anew (recipe.rerolled), the
    others stay as they were. Returns the folder and notes for the user (a template file that
    changed since the ad was made)."""
    lineage_path = Path(lineage_path).expanduser()
    check_formats(formats)
    lineage = read_json(lineage_path, "The ad's lineage file")
    try:
        recorded = lineage["recipe"]
        document, recipe_path = recorded["document"], recorded["path"]
        row_key, row = str(lineage["row_key"]), lineage["row"]
        template_sha = lineage.get("template", {}).get("sha256")
    except (KeyError, TypeError):
        raise StudioError(f"{lineage_path} is not an ad's ad.json (it lacks the recipe or the "
                          f"row the ad was made from). Give the ad.json `studio compose` wrote "
                          f"beside a poster, or a recipe with --rows.") from None
    for name in reroll:
        document = rerolled(document, name)
    recipe = recipe_from_document(document, recipe_path)
    notes = []
    if template_sha and template_sha != file_sha256(recipe.template.path):
        notes.append(f"the template {recipe.template.path} changed since the ad was made, so "
                     f"its layout differs")
    from studio.compose.runner import Composer
    content = Composer(recipe, device, document=document).make(row_key, row)
    return write_ad(out_folder, recipe.template, content, formats), notes + list(content.review)


def safe_name(row_key: str) -> str:
    """A folder name for a row key: letters, digits, '.', '_' and '-' kept, anything else '_'.
    A changed key gets a short hash of the original, so that 'a b' and 'a_b' stay two folders;
    so does one starting with '.', which would be hidden (and could be '..')."""
    name = UNSAFE_IN_NAMES.sub("_", row_key)
    if name == row_key and name and not name.startswith("."):
        return name
    digest = hashlib.sha256(row_key.encode("utf-8")).hexdigest()[:8]
    return f"{name.lstrip('.')[:80]}-{digest}"


def _writable_ads_folder(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise StudioError(f"The batch's output folder {out_dir} is a file. Pick a folder (it is "
                          f"made if missing), or move that file away.")
    ads_dir = out_dir / ADS_FOLDER
    try:
        ads_dir.mkdir(parents=True, exist_ok=True)
        # A real write, not os.access: read-only mounts and ACLs are what it would miss.
        write_atomic(out_dir / ".write-check", b"")
        os.remove(out_dir / ".write-check")
    except OSError as exc:
        raise StudioError(f"The batch's output folder {out_dir} cannot be written "
                          f"({exc.strerror or exc}). Pick a writable folder.") from None
    return ads_dir


def _finished_lineage(folder: Path, document: dict, key: str, row: dict,
                      formats: tuple[str, ...]) -> dict | None:
    """The ad.json of the row's finished ad, or None when it must be made (again): no ad yet,
    or one from another recipe document, another row, or without a requested format's file."""
    try:
        lineage = json.loads((folder / LINEAGE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(lineage, dict):
        return None
    same = (lineage.get("recipe", {}).get("document") == document
            and lineage.get("row_key") == key and lineage.get("row") == row)
    if not same or not all((folder / FORMAT_FILES[f]).is_file() for f in formats):
        return None
    return lineage


def _texts(lineage: dict) -> dict[str, str]:
    """A finished ad's text slots: name -> text, in the recipe's order."""
    return {name: slot.get("text", "") for name, slot in lineage.get("slots", {}).items()
            if slot.get("kind") == "text"}


def _duplicate_texts(lineages: dict[str, dict]) -> dict[str, list[str]]:
    """Each text slot checked across the batch: the same headline on two ads is a mistake a
    person should see, even though each ad alone passed its guards."""
    slot_names = {name for lineage in lineages.values() for name in _texts(lineage)}
    problems: dict[str, list[str]] = {}
    for name in sorted(slot_names):
        texts = {key: _texts(lineage).get(name, "") for key, lineage in lineages.items()}
        for key, others in duplicates(texts).items():
            problems.setdefault(key, []).append(
                f"slots.{name}: the same text as row{'s' if len(others) > 1 else ''} "
                f"{', '.join(others)}")
    return problems


def _contact_sheet(rows: list[tuple[str, dict]], folders: dict[str, Path],
                   lineages: dict[str, dict], reasons: dict[str, list[str]],
                   report: BatchReport, out_dir: Path) -> str:
    """index.html: every ad's poster with its row key and texts; ads to review are marked.
    Links are relative to out_dir, so the folder can be moved or zipped."""
    esc = html.escape
    cards = []
    for key, _ in rows:
        marked = " review" if reasons.get(key) else ""
        parts = [f'<figure class="ad{marked}">']
        poster = folders[key] / POSTER_FILE
        if key in lineages and poster.is_file():
            link = poster.relative_to(out_dir).as_posix()  # safe_name: nothing to quote
            parts.append(f'<img src="{esc(link)}" alt="{esc(key)}">')
        parts.append(f"<figcaption><b>{esc(key)}</b>")
        for name, text in _texts(lineages.get(key, {})).items():
            parts.append(f'<div class="{esc(name)}">{esc(text)}</div>')
        for why in reasons.get(key, []):
            parts.append(f'<div class="reason">{esc(why)}</div>')
        parts.append("</figcaption></figure>")
        cards.append("".join(parts))
    others = [entry for entry in report.review if entry["row"] not in folders]
    broken = "".join(f"<li>{esc(entry['row'])}: {esc('; '.join(entry['reasons']))}</li>"
                     for entry in others)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Ads</title><style>"
            "figure{display:inline-block;vertical-align:top;width:260px;margin:8px}"
            "img{max-width:100%}.review{outline:3px solid #d33}.reason{color:#d33}"
            "</style></head><body>\n"
            f"<p>{len(report.made)} made, {len(report.skipped)} finished earlier, "
            f"{len(report.failed)} failed, {len(report.review)} to review."
            f"{' Stopped before the end: the same batch again finishes it.' if report.stopped else ''}"
            f"</p>\n"
            + "\n".join(cards)
            + (f"\n<h2>Rows not made</h2><ul>{broken}</ul>" if broken else "")
            + "\n</body></html>\n")
