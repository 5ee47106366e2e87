"""Recipes: which run makes each slot of an ad, and how one row of a product sheet fills them.

A recipe is a JSON file:

    {
      "format": 1,
      "template": "poster",
      "seed": 2024,
      "slots": {
        "headline": {"run": "../../assets/demo/text", "checkpoint": "latest",
                     "prompt": "Headline for {product}:", "settings": {"temperature": 0.7},
                     "stop": "\\n", "max_chars": 60, "banned": ["free", "guarantee"],
                     "retries": 3},
        "body":     {"run": "../../assets/demo/text", "prompt": "{product}, {category}.",
                     "seed_offset": 0},
        "picture":  {"run": "../../assets/demo/image", "class": "{category}"},
        "clip":     {"run": "../../assets/demo/video", "class": "{category}"}
      }
    }

* `template`: a built-in template's name or a template file (relative to the recipe's folder).
  The template says what each slot is: a text region's slot is a text slot, a media region's
  `slot` an image slot and its `clip_slot` a clip (video) slot. Every slot the template shows
  must be in the recipe (clip slots may be left out) and every recipe slot must have a region.
* `run`: a run folder, relative to the recipe's folder or absolute. It is NOT opened here: the
  runner opens it (and says when it is missing or of the wrong kind), so that a recipe can be
  checked and edited on a machine without the runs.
* `checkpoint`: "latest" (the default), "best", a checkpoint name or a step number.
* `settings`: the generator's sampling settings, checked later against the run's generator.
* `prompt` (text slots) and `class` (image and clip slots: the class the generator draws) are
  templates whose `{placeholders}` name a row's columns; `{{` and `}}` are literal braces.
* Text slots only: `stop` (a string or a list: the text ends there), `max_chars`, `banned`
  (words or phrases), `retries` (regenerate up to this many times, each with the next seed,
  before the ad goes to review; default 2), `tidy` (default true: runs of spaces and line
  breaks become one space and punctuation before the first word goes, as an ad's copy is set;
  false shows the text as generated, line breaks and all).
* `seed_offset` is added to the slot's seed: raise it to re-roll one slot, keeping the others.

Seeds: a slot's seed is a function of the recipe's seed, the row's key and the slot's name only
(see `slot_seed`), so the same recipe and row give the same ad on any machine, and changing one
slot's offset changes only that slot.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import string
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from studio.compose.template import (Spot, Template, checked_object, checked_text, flag,
                                     load_template, template_path, whole_number)
from studio.errors import StudioError, json_kind
from studio.runstore import read_json

RECIPE_FORMAT = 1
# Seeds stay below 2**31: every generator seeds torch and numpy with them, and numpy takes
# 32-bit seeds only; the room above leaves `seed + retries` valid too.
SEED_LIMIT = 2 ** 31
SEED_DOMAIN = "aigc-studio compose seed 1"  # changing it would change every ad ever made
DEFAULT_RETRIES = 2
GUARD_KEYS = ("max_chars", "stop", "banned", "retries", "tidy")
ROW_KEY_COLUMN = "id"
# What tidy_text drops before a text's first word: dashes, connectors, closing brackets and
# quotes (by Unicode category), and the marks that end or separate phrases; what may open one
# (quotes, "¿", "#", "@", opening brackets) stays.
LEADING_CATEGORIES_DROPPED = ("Pd", "Pc", "Pe", "Pf")
LEADING_MARKS_DROPPED = set(".,:;!?…·、。，：；！？．｡､")
# Where a sentence ends, for text cut at the token limit: ".", "!", "?" or "…" (with closing
# quotes or brackets) before a space, or a full-width end mark anywhere.
SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s)|[。！？]")
# Scripts written without spaces between words: a banned word there is found as a substring,
# since there is no word boundary to look for (Korean attaches particles to words, so it is
# treated the same way).
UNSPACED_SCRIPTS = ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA",
                    "KATAKANA", "HALFWIDTH KATAKANA", "HANGUL", "THAI", "LAO", "KHMER",
                    "MYANMAR")


@dataclass(frozen=True)
class Slot:
    """One slot of a recipe. `prompt` is the template the generator's prompt is filled from: a
    text slot's `prompt`, an image or clip slot's `class` (None: the generator chooses)."""

    name: str
    kind: str  # "text", "image" or "clip": what the template's region needs
    run: Path  # absolute
    checkpoint: str
    settings: dict
    prompt: str | None
    seed_offset: int = 0
    max_chars: int | None = None
    stop: tuple[str, ...] = ()
    banned: tuple[str, ...] = ()
    retries: int = 0
    tidy: bool = True

    def placeholders(self) -> set[str]:
        return set(placeholders_in(self.prompt)) if self.prompt is not None else set()


@dataclass(frozen=True)
class Recipe:
    path: Path
    template: Template
    seed: int
    slots: dict[str, Slot]
    description: str = ""

    def placeholders(self) -> set[str]:
        """Every column name the recipe's prompts and classes use."""
        return set().union(*(slot.placeholders() for slot in self.slots.values()))


@dataclass(frozen=True)
class FilledSlot:
    """A slot made ready for one row: the prompt the generator gets (the class name for image
    and clip slots), the seed of its first try, and the sampling settings (for a text slot
    with `stop`, the stop strings are in them)."""

    slot: Slot
    row_key: str
    prompt: str | None
    seed: int
    settings: dict

    @property
    def name(self) -> str:
        return self.slot.name

    @property
    def kind(self) -> str:
        return self.slot.kind

    def seed_for_try(self, attempt: int) -> int:
        """Try 0 uses `seed`; each retry after a failed guard the next seed."""
        return (self.seed + attempt) % SEED_LIMIT

    def lineage(self, attempt: int = 0) -> dict:
        """What the sidecar records so that the slot can be made again exactly: `attempt` is
        the try whose output was kept (0 unless a guard made it retry)."""
        return {"slot": self.name, "kind": self.kind, "run": str(self.slot.run),
                "checkpoint": self.slot.checkpoint, "seed": self.seed_for_try(attempt),
                "attempt": attempt, "settings": self.settings, "prompt": self.prompt}


# --- loading ----------------------------------------------------------------------------------

def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe file and its template. Run folders are not opened (see above)."""
    path = Path(path).expanduser()
    return recipe_from_document(read_json(path, "The recipe file"), path)


def recipe_from_document(data: Any, path: str | Path) -> Recipe:
    """Check a recipe held in memory (the window edits one before it is saved) as if it were
    the file `path`: relative runs and templates are found from that file's folder, and
    messages name it."""
    path = Path(path).expanduser()
    spot = Spot(str(path))
    folder = path.resolve().parent  # runs and templates are found from here
    checked_object(data, spot, required=("template", "slots"),
                   optional=("format", "description", "seed"))
    if data.get("format", RECIPE_FORMAT) != RECIPE_FORMAT:
        raise (spot / "format").error(f"is {data['format']!r}; this studio reads format "
                                      f"{RECIPE_FORMAT}.")
    template = _recipe_template(data["template"], spot / "template", folder)
    seed = whole_number(data.get("seed", 0), spot / "seed", 0, 2 ** 63 - 1)
    slots = _slots(data["slots"], spot / "slots", template, folder)
    return Recipe(path=path, template=template, seed=seed, slots=slots,
                  description=checked_text(data.get("description", ""), spot / "description",
                                   empty_ok=True))


def _recipe_template(value: Any, spot: Spot, folder: Path) -> Template:
    try:
        template_file = template_path(checked_text(value, spot), relative_to=folder)
    except StudioError as exc:
        raise spot.error(f"cannot be used: {exc}") from None
    if not template_file.is_file():
        raise spot.error(f"names {template_file}, which does not exist (a relative path is "
                         f"taken from the recipe's folder).")
    return load_template(template_file)


def _slots(value: Any, spot: Spot, template: Template, folder: Path) -> dict[str, Slot]:
    if not isinstance(value, dict) or not value:
        raise spot.error("must be a JSON object naming each slot, e.g. {\"headline\": "
                         "{\"run\": ..., \"prompt\": ...}}.")
    kinds = template.slot_kinds()
    where_template = f"template {template.name} ({template.path})"
    for name in value:
        if name not in kinds:
            raise (spot / name).error(f"has no region in {where_template}, whose regions show "
                                      f"the slots {', '.join(sorted(kinds))}. Remove the slot "
                                      f"or use a template with a region for it.")
    for name, kind in kinds.items():
        if name not in value and name not in template.optional_slots():
            region = template.region_of(name)
            raise spot.error(f"has no slot '{name}', which {where_template} shows in region "
                             f"'{region.name}' (a {kind} slot). Add slots.{name}.")
    return {name: _slot(name, entry, spot / name, kinds[name], template, folder)
            for name, entry in value.items()}


def _slot(name: str, entry: Any, spot: Spot, kind: str, template: Template,
          folder: Path) -> Slot:
    common = ("checkpoint", "settings", "seed_offset")
    if kind == "text":
        checked_object(entry, spot, required=("run", "prompt"), optional=common + GUARD_KEYS)
    else:
        _refuse_guards(name, entry, spot, kind, template)
        checked_object(entry, spot, required=("run",), optional=common + ("class",))
    run = Path(checked_text(entry["run"], spot / "run")).expanduser()
    settings = entry.get("settings", {})
    if not isinstance(settings, dict):
        raise (spot / "settings").error("must be a JSON object of sampling settings, e.g. "
                                        "{\"temperature\": 0.8}.")
    prompt_key = "prompt" if kind == "text" else "class"
    prompt = entry.get(prompt_key)
    if prompt is not None:
        checked_text(prompt, spot / prompt_key, empty_ok=kind == "text")
        placeholders_in(prompt, spot / prompt_key)  # a malformed one is refused now
    guards = _guards(name, entry, spot, settings) if kind == "text" else {}
    return Slot(name=name, kind=kind, run=(folder / run).resolve(),
                checkpoint=_checkpoint(entry.get("checkpoint", "latest"), spot / "checkpoint"),
                settings=settings, prompt=prompt,
                seed_offset=whole_number(entry.get("seed_offset", 0), spot / "seed_offset", 0,
                                         SEED_LIMIT - 1),
                **guards)


def _refuse_guards(name: str, entry: Any, spot: Spot, kind: str, template: Template) -> None:
    """A guard on an image or clip slot: say why it does not apply (the template decides)."""
    for key in GUARD_KEYS:
        if isinstance(entry, dict) and key in entry:
            region = template.region_of(name)
            article = "an" if kind == "image" else "a"
            raise (spot / key).error(f"is for text slots only; '{name}' is {article} {kind} "
                                     f"slot (in region '{region.name}' of template "
                                     f"{template.name}).")


def _guards(name: str, entry: dict, spot: Spot, settings: dict) -> dict:
    if "stop" in settings:
        raise (spot / "settings" / "stop").error(f"is given here; write it as slots.{name}.stop "
                                                 f"instead (one place for it).")
    max_chars = entry.get("max_chars")
    return {"max_chars": None if max_chars is None
            else whole_number(max_chars, spot / "max_chars", 1, 10000),
            "stop": _stop(entry.get("stop", []), spot / "stop"),
            "banned": _banned(entry.get("banned", []), spot / "banned"),
            "retries": whole_number(entry.get("retries", DEFAULT_RETRIES), spot / "retries",
                                    0, 20),
            "tidy": flag(entry.get("tidy", True), spot / "tidy")}


def _checkpoint(value: Any, spot: Spot) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(whole_number(value, spot, 0, 2 ** 63 - 1))
    if not isinstance(value, str) or not value.strip():
        raise spot.error(f"must be \"latest\", \"best\", a checkpoint name (step_000500) or a "
                         f"step number, got {value!r}.")
    return value.strip()


def _stop(value: Any, spot: Spot) -> tuple[str, ...]:
    strings = [value] if isinstance(value, str) else value
    if not isinstance(strings, list) or not all(isinstance(s, str) and s for s in strings):
        raise spot.error(f"must be a string or a list of non-empty strings (e.g. \"\\n\"), got "
                         f"{value!r}.")
    return tuple(strings)


def _banned(value: Any, spot: Spot) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise spot.error(f"must be a list of words, e.g. [\"free\", \"guaranteed\"], got "
                         f"{value!r}.")
    return tuple(checked_text(word, spot / i) for i, word in enumerate(value))


# --- placeholders and seeds -------------------------------------------------------------------

def placeholders_in(template: str, spot: Spot | None = None) -> list[str]:
    """The `{column}` names in a prompt template, in order. Only plain names: `{x!r}`, `{x:>9}`
    and `{}` are refused, so that a row's text is never formatted in a surprising way."""
    names = []
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise _placeholder_error(spot, f"has an unbalanced brace ({exc}); write {{{{ and }}}} "
                                       f"for literal braces.") from None
    for _, name, spec, conversion in pieces:
        if name is None:
            continue
        if not name.strip():
            raise _placeholder_error(spot, "has an empty {}; put a column name inside it, or "
                                           "write {{ and }} for literal braces.")
        if spec or conversion:
            raise _placeholder_error(spot, f"has {{{name}{'!' + conversion if conversion else ''}"
                                           f"{':' + spec if spec else ''}}}; a placeholder is a "
                                           f"column name only, like {{{name}}}.")
        names.append(name)
    return names


def _placeholder_error(spot: Spot | None, problem: str) -> StudioError:
    return spot.error(problem) if spot is not None else StudioError(f"prompt template {problem}")


def slot_seed(recipe_seed: int, row_key: str, slot_name: str) -> int:
    """The seed of a slot for a row, before its seed_offset: the SHA-256 of the compact JSON
    array [SEED_DOMAIN, recipe_seed, row_key, slot_name] (UTF-8), its first 8 bytes read as a
    big-endian integer, modulo 2**31. Stable across runs, machines and Python versions (unlike
    hash(), which is salted per process)."""
    key = json.dumps([SEED_DOMAIN, recipe_seed, str(row_key), slot_name], ensure_ascii=False,
                     separators=(",", ":"))
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % SEED_LIMIT


def rerolled(document: dict, slot_name: str) -> dict:
    """A copy of recipe `document` with one slot's seed_offset raised so that it draws anew:
    by 1 for a picture or clip, by retries + 1 for a text slot, so that none of its new tries
    repeats a seed an earlier try used. The copy still makes the new ad exactly."""
    slots = document.get("slots") if isinstance(document, dict) else None
    if not isinstance(slots, dict) or not isinstance(slots.get(slot_name), dict):
        names = ", ".join(slots) if isinstance(slots, dict) else "none"
        raise StudioError(f"there is no slot '{slot_name}' to re-roll; the recipe's slots: "
                          f"{names}.")
    changed = json.loads(json.dumps(document))
    entry = changed["slots"][slot_name]
    tries = entry.get("retries", DEFAULT_RETRIES) + 1 if "prompt" in entry else 1
    entry["seed_offset"] = (entry.get("seed_offset", 0) + tries) % SEED_LIMIT
    return changed


def fill(recipe: Recipe, row: dict, row_key: str) -> list[FilledSlot]:
    """Each slot of `recipe` made ready for one row, in the recipe's order. A placeholder the
    row has no value for (no such column, null, or an empty cell) raises StudioError naming it,
    the row and the columns it has."""
    filled = []
    for slot in recipe.slots.values():
        prompt = None
        if slot.prompt is not None:
            key = "prompt" if slot.kind == "text" else "class"
            prompt = _fill_text(slot.prompt, row, str(row_key),
                                f"{recipe.path}: slots.{slot.name}.{key}")
        settings = dict(slot.settings)
        if slot.stop:
            settings["stop"] = list(slot.stop)
        seed = (slot_seed(recipe.seed, row_key, slot.name) + slot.seed_offset) % SEED_LIMIT
        filled.append(FilledSlot(slot=slot, row_key=str(row_key), prompt=prompt, seed=seed,
                                 settings=settings))
    return filled


def _fill_text(template: str, row: dict, row_key: str, where: str) -> str:
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            parts.append(_row_value(row, name, row_key, where))
    return "".join(parts)


def _row_value(row: dict, name: str, row_key: str, where: str) -> str:
    columns = ", ".join(map(str, row)) or "none"
    value = row.get(name)
    if name not in row:
        raise StudioError(f"{where} uses {{{name}}}, but row {row_key} has no column '{name}' "
                          f"(its columns: {columns}). Add that column to the rows file or "
                          f"change the placeholder.")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise StudioError(f"{where} uses {{{name}}}, but row {row_key} leaves '{name}' empty "
                          f"(its columns: {columns}). Fill it in or change the placeholder.")
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)  # true, 12, 12.5: as written in the file
    raise StudioError(f"{where} uses {{{name}}}, but row {row_key} holds a "
                      f"{type(value).__name__} there; a placeholder takes text or a number.")


# --- rows -------------------------------------------------------------------------------------

class RowsRead(NamedTuple):
    """The usable rows, each (row key, {column: value}), and the broken ones, each (row number,
    reason), for the batch's review list. Row numbers count data rows from 1 (a CSV's header
    and blank lines do not count); the reason names the file's line."""

    rows: list[tuple[str, dict]]
    broken: list[tuple[int, str]]


def read_rows(path: str | Path) -> RowsRead:
    """Rows from a CSV file (UTF-8, with or without a BOM; the first line names the columns) or
    a JSONL file (one JSON object a line). A row's key is its `id` if the file has that column,
    else its row number. A broken row is reported in `broken` and the others are still read;
    a missing, empty or undecodable file raises StudioError."""
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise StudioError(f"{path}: a rows file must be .csv (a header line, then one line a "
                          f"row) or .jsonl (one JSON object a line); rename or convert it.")
    content = _rows_text(path)
    if not content.strip():
        raise StudioError(f"{path} is empty: it has no rows. Add a header line and one line "
                          f"per ad.")
    rows, broken = _csv_rows(content, path) if suffix == ".csv" else _jsonl_rows(content)
    if not rows and not broken:
        raise StudioError(f"{path} has a header line but no rows. Add one line per ad.")
    return _keyed(rows, broken)


def _rows_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StudioError(f"The rows file is missing: {path}.") from None
    except IsADirectoryError:
        raise StudioError(f"The rows file should be a file, but {path} is a folder.") from None
    try:
        return data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:
        raise StudioError(f"{path} is not UTF-8 text (byte {data[exc.start]:#04x} at offset "
                          f"{exc.start}). Save it as UTF-8 (in Excel: CSV UTF-8).") from None


# Both readers give (row number, line, row) for each readable row, and (row number, reason)
# for each broken one; `_keyed` then gives the rows their keys.
ReadableRow = tuple[int, int, dict]


def _csv_rows(content: str, path: Path) -> tuple[list[ReadableRow], list[tuple[int, str]]]:
    # strict: a quote left open or text after a closing quote is a broken row, not a cell that
    # silently swallows the lines after it.
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    header = None
    rows, broken, number = [], [], 0
    while True:
        line = reader.line_num + 1  # where the next record starts (a quoted cell may go on)
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if header is None:
                raise StudioError(f"{path}: the header line cannot be read as CSV ({exc}).") \
                    from None
            number += 1
            hint = "; a quote is left open" if "end of data" in str(exc) else ""
            broken.append((number, f"line {line}: not valid CSV ({exc}{hint})"))
            if reader.line_num < line:
                break  # the reader cannot move past this point
            continue
        if not any(cell.strip() for cell in cells):
            continue  # blank lines, and spreadsheets' rows of empty cells
        if header is None:
            header = _header(cells, path)
            continue
        number += 1
        if len(cells) != len(header):
            broken.append((number, f"line {line}: {len(cells)} fields, but the header has "
                                   f"{len(header)} columns ({', '.join(header)})"))
            continue
        # Spaces around a cell are an artefact of hand-written CSV, never meant as text.
        rows.append((number, line, {column: cell.strip() for column, cell in zip(header, cells)}))
    return rows, broken


def _header(cells: list[str], path: Path) -> list[str]:
    header = [cell.strip() for cell in cells]
    for index, column in enumerate(header):
        if not column:
            raise StudioError(f"{path}: column {index + 1} of the header line has no name; name "
                              f"every column (the names are the placeholders).")
        if header.index(column) != index:
            raise StudioError(f"{path}: the header line names column '{column}' twice; rename "
                              f"one of them.")
    return header


def _jsonl_rows(content: str) -> tuple[list[ReadableRow], list[tuple[int, str]]]:
    rows, broken, number = [], [], 0
    # split("\n"), not splitlines(): a JSON string may hold U+2028 and other line breaks.
    for line, raw in enumerate(content.split("\n"), 1):
        if not raw.strip():
            continue
        number += 1
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            broken.append((number, f"line {line} is not valid JSON ({exc.msg} at column "
                                   f"{exc.colno})"))
            continue
        if not isinstance(value, dict):
            broken.append((number, f"line {line} is {json_kind(value)}, not a JSON object of "
                                   f"columns such as {{\"product\": \"...\"}}"))
            continue
        rows.append((number, line, value))
    return rows, broken


def _keyed(rows: list[ReadableRow], broken: list[tuple[int, str]]) -> RowsRead:
    """Keys from the `id` column when the file has one (then every row needs a unique id: it
    names the ad), else the row numbers; never a mix of the two, which could collide."""
    uses_ids = any(ROW_KEY_COLUMN in row for _, _, row in rows)
    keyed, first_with = [], {}
    for number, line, row in rows:
        if not uses_ids:
            keyed.append((str(number), row))
            continue
        key = _id_text(row.get(ROW_KEY_COLUMN))
        if key is None:
            broken.append((number, f"line {line}: the id is missing or empty (the other rows "
                                   f"have one; it names the ad)"))
        elif key in first_with:
            broken.append((number, f"line {line}: id '{key}' is row {first_with[key]}'s "
                                   f"already; ids must be unique (they name the ads)"))
        else:
            first_with[key] = number
            keyed.append((key, row))
    return RowsRead(keyed, sorted(broken))


def _id_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


# --- guards -----------------------------------------------------------------------------------

def check_text(text: str, slot: Slot) -> list[str]:
    """What is wrong with a text slot's generated text, for the guards and the review list:
    empty, longer than max_chars, or holding a banned word (whole words, any case; for scripts
    written without spaces, such as Chinese and Japanese, anywhere in the text). Leading and
    trailing whitespace is not shown, so it does not count."""
    shown = unicodedata.normalize("NFC", text.strip())
    if not shown:
        return ["the text is empty"]
    problems = []
    if slot.max_chars is not None and len(shown) > slot.max_chars:
        problems.append(f"{len(shown)} characters, over the limit of {slot.max_chars}")
    problems += [f"holds the banned word '{word}'" for word in slot.banned
                 if contains_word(shown, word)]
    return problems


def tidy_text(text: str, cut: bool = False) -> str:
    """Generated text set as ad copy: every run of whitespace (line breaks too) one space, and
    what comes before the first word dropped when it is punctuation that cannot open a phrase
    (a model continuing "Headline for Orbit lamp:" may write ": Light ..."); opening quotes
    and brackets stay. `cut`: the generator stopped at its token limit, perhaps mid-word; the
    text then ends at its last finished sentence, or, with none, at its last whole word with an
    ellipsis (text without spaces, such as Chinese, keeps its characters and gets the
    ellipsis)."""
    last_word_whole = text[-1:].isspace()  # a space came after it: the cut is between words
    text = " ".join(text.split())
    start = 0
    while start < len(text) and (text[start] in LEADING_MARKS_DROPPED or unicodedata.category(
            text[start]) in LEADING_CATEGORIES_DROPPED or text[start].isspace()):
        start += 1
    text = text[start:]
    if not cut or not text:
        return text
    ends = list(SENTENCE_END.finditer(text + " "))  # the space: an end at the very end counts
    if ends:
        return text[:ends[-1].end()].rstrip()
    last_space = text.rfind(" ")
    if last_space > 0 and not last_word_whole:
        text = text[:last_space]
    return text.rstrip(" ,;:-–—") + "…"


def contains_word(text: str, word: str) -> bool:
    """Whether `word` (or a phrase) is in `text`, ignoring case and width variants."""
    haystack, needle = _normalised(text), _normalised(word)
    if not needle:
        return False
    if any(unicodedata.name(ch, "").startswith(UNSPACED_SCRIPTS) for ch in needle):
        return needle in haystack
    return re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", haystack) is not None


def duplicates(texts_by_row: dict[str, str]) -> dict[str, list[str]]:
    """Rows whose texts are identical once whitespace and case are normalised: each such row's
    key -> the keys of the other rows with the same text, in the order given. Empty texts are
    left to check_text."""
    rows_by_text: dict[str, list[str]] = {}
    for key, generated in texts_by_row.items():
        normal = _normalised(generated)
        if normal:
            rows_by_text.setdefault(normal, []).append(key)
    return {key: [other for other in keys if other != key]
            for keys in rows_by_text.values() if len(keys) > 1 for key in keys}


def _normalised(text: str) -> str:
    """NFKC (full-width letters become plain ones), case-folded (so "STRASSE" matches
    "straße"), runs of whitespace made one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
