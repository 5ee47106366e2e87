"""The Compose tab: ads made from the studio's runs (issue 17), one previewed live, many from a
rows file.

The panel edits a recipe (studio/compose/recipe.py) held in memory as its JSON document: a
template, a seed, and per slot of the template a run, a checkpoint, the prompt or class with
`{placeholders}`, sampling settings and, for text, the guards. The document is the one truth:
each control writes its own key into it, so keys the panel has no control for (`stop`, `tidy`,
other settings) are kept as they were, and Save writes exactly what Preview used.

Preview makes one ad for the row in the Row box (typed, or picked from a rows file) in a
background task: the runs are loaded once and reused (Composer's `reuse`), and only what changed
is made again. The panel remembers what each shown slot was made from; a new request remakes
the slots whose recipe entry differs since (all of them for a new row or template), never a
locked slot. Re-roll raises one slot's `seed_offset` (past its guard's retry seeds, so no try is
repeated) and remakes that slot alone, so the ad stays reproducible from the saved recipe. A
request made while another runs supersedes it: one task at a time, the newest one next.

A batch runs `studio.compose.batch.run_batch` on the saved recipe and the rows file, with a
progress bar, Stop between rows, and each ad's poster shown as it is finished; ads for review
are marked with their reasons.
"""

from __future__ import annotations

import copy
import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (QBrush, QColor, QDesktopServices, QIcon, QImage, QKeySequence, QPixmap,
                           QShortcut)
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QFileDialog, QFormLayout,
                               QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListView, QListWidget,
                               QListWidgetItem, QMessageBox, QProgressBar, QPushButton,
                               QScrollArea, QSizePolicy, QSpinBox, QSplitter, QStackedWidget,
                               QTabWidget, QVBoxLayout, QWidget)

from studio.compose.batch import ADS_FOLDER, INDEX_FILE, REVIEW_FILE, safe_name
from studio.compose.recipe import (DEFAULT_RETRIES, RECIPE_FORMAT, ROW_KEY_COLUMN, SEED_LIMIT,
                                   placeholders_in, read_rows, recipe_from_document, rerolled)
from studio.compose.render import AD_FORMATS, LINEAGE_FILE, POSTER_FILE
from studio.compose.runner import MODALITY_OF_KIND
from studio.compose.template import builtin_templates, load_template, template_path
from studio.errors import StudioError
from studio.export import shorten
from studio.gui.messages import duration_text, for_window
from studio.gui.session import title_of
from studio.gui.views import ImageView, VideoPlayer
from studio.gui.workers import Task, start
from studio.runstore import RunDir, read_json, write_json

# Until it is saved a recipe is checked as this file in the working folder: messages name it,
# and the runs a new recipe picks are absolute paths, so nothing depends on that folder.
UNTITLED = "Untitled recipe.json"
DEFAULT_TEMPLATE = "poster"
DEFAULT_SEED = 2024
# The row a new recipe starts with: the first product of examples/compose/products.csv, so the
# preview is the ad the example batch makes for it.
DEFAULT_ROW = {"id": "orbit-lamp", "product": "Orbit lamp", "category": "circle",
               "tagline": "a warm light that follows the sun"}
# What a new recipe asks of each slot, as examples/compose/ad.json does. Settings are the
# built-in generators' own; a slot on another generator's run starts with none.
TEXT_SLOT_DEFAULTS = {
    "headline": {"prompt": "Headline for {product}:", "stop": "\n", "max_chars": 60,
                 "banned": ["free", "guarantee", "cheapest"], "retries": 3,
                 "settings": {"temperature": 0.7, "top_k": 40, "max_new_tokens": 60}},
    "body": {"prompt": "{product}: {tagline}.", "max_chars": 200, "banned": ["free", "guarantee"],
             "settings": {"temperature": 0.8, "max_new_tokens": 160}},
}
OTHER_TEXT_SLOT = {"prompt": "{product}", "max_chars": 120, "settings": {"max_new_tokens": 80}}
MEDIA_SLOT_DEFAULTS = {"image": {"class": "{category}", "settings": {"truncation": 1.0}},
                       "clip": {"class": "{category}", "settings": {"fps": 12}}}
BUILTIN_GENERATOR_OF_KIND = {"text": "text", "image": "image", "clip": "video"}
KIND_TITLES = {"text": "text", "image": "image", "clip": "video clip"}
BROWSE = "\0browse"  # the run picker's last item: choose a run folder elsewhere
TEMPLATE_FILE = "\0file"  # the template picker's last item: a template file
LIVE_DELAY_MS = 500  # after the last edit, before a live preview starts
# A clip preview's frames are scaled down to this side: 48 frames of a 1080x1350 poster would
# hold 200 MB; the view is rarely larger.
CLIP_PREVIEW_SIDE = 720
DETAILS_TEXT = 70  # characters of a slot's text in the details under the poster (all: tooltip)
THUMBNAIL = QSize(120, 150)
PROBLEM_COLOUR = "#d9534f"


def show_error(parent: QWidget | None, message: str) -> None:
    """Tell the user what went wrong, in the window's words. Module-level so tests can
    intercept it."""
    QMessageBox.warning(parent, "Compose", for_window(message))


def ask_unsaved(parent: QWidget | None, name: str) -> str:
    """"save", "discard" or "cancel" for a recipe with unsaved changes (tests replace it)."""
    answer = QMessageBox.question(
        parent, "Unsaved recipe", f"The recipe {name} has changes that are not saved. Save them?",
        QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
        | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Save)
    return {QMessageBox.StandardButton.Save: "save",
            QMessageBox.StandardButton.Discard: "discard"}.get(answer, "cancel")


def open_path(path: Path) -> None:
    """Show a file or folder with the platform's viewer (tests replace this function)."""
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


# --- recipes as documents (plain functions, no Qt) ------------------------------------------------

def new_document(template_name: str, run_for_kind: dict[str, tuple[str, str | None]]) -> dict:
    """A recipe for `template_name` whose every slot has a run and a sensible prompt.
    `run_for_kind`: kind -> (run path, its generator's name), "" when there is none."""
    template = load_template(template_name)
    slots = {name: default_slot(name, kind, *run_for_kind.get(kind, ("", None)))
             for name, kind in template.slot_kinds().items()}
    return {"format": RECIPE_FORMAT, "template": template_name, "seed": DEFAULT_SEED,
            "slots": slots}


def default_slot(name: str, kind: str, run: str, generator: str | None) -> dict:
    if kind == "text":
        wanted = copy.deepcopy(TEXT_SLOT_DEFAULTS.get(name, OTHER_TEXT_SLOT))
    else:
        wanted = copy.deepcopy(MEDIA_SLOT_DEFAULTS[kind])
    settings = wanted.pop("settings")
    entry = {"run": run, "checkpoint": "latest", **wanted}
    if generator == BUILTIN_GENERATOR_OF_KIND[kind]:
        entry["settings"] = settings
    return entry


def rebased(document: dict, old_folder: Path, new_folder: Path) -> dict:
    """The document to save in `new_folder`: relative run and template paths, which are read
    from the recipe's folder, made absolute when that folder changes."""
    if old_folder.resolve() == new_folder.resolve():
        return document
    document = copy.deepcopy(document)
    template = document.get("template")
    if isinstance(template, str) and template not in builtin_templates():
        path = Path(template).expanduser()
        if not path.is_absolute():
            document["template"] = str((old_folder / path).resolve())
    for entry in (document.get("slots") or {}).values():
        run = entry.get("run") if isinstance(entry, dict) else None
        if isinstance(run, str) and run and not Path(run).expanduser().is_absolute():
            entry["run"] = str((old_folder / Path(run).expanduser()).resolve())
    return document


def settings_text(settings: dict) -> str:
    """A slot's settings as the line the panel shows: `temperature=0.7, max_new_tokens=60`."""
    return ", ".join(f"{key}={json.dumps(value, ensure_ascii=False)}"
                     for key, value in settings.items())


def parse_settings(text: str) -> dict:
    """The settings line back into a dict: each value read as JSON (0.7, true, "gif", [..]),
    else kept as the text typed. Raises StudioError naming a part that is not key=value."""
    settings = {}
    # Split at the commas that start the next `key=`, so a list value may hold commas.
    for part in re.split(r",\s*(?=[A-Za-z_][\w]*\s*=)", text.strip()):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key.strip()):
            raise StudioError(f"'{part.strip()}' is not a setting: write key=value, separated "
                              f"by commas (e.g. temperature=0.7, max_new_tokens=60).")
        value = value.strip().rstrip(",").strip()
        try:
            settings[key.strip()] = json.loads(value)
        except ValueError:
            settings[key.strip()] = value
    return settings


def words_text(words: list) -> str:
    return ", ".join(str(word) for word in words)


def parse_words(text: str) -> list[str]:
    return [word.strip() for word in text.split(",") if word.strip()]


def used_placeholders(document: dict) -> list[str]:
    """The row columns the document's prompts and classes name, in the order they first
    appear; a prompt with a malformed brace adds none (the recipe check names it)."""
    names: list[str] = []
    for entry in (document.get("slots") or {}).values():
        for key in ("prompt", "class"):
            text = entry.get(key) if isinstance(entry, dict) else None
            if not isinstance(text, str):
                continue
            try:
                found = placeholders_in(text)
            except StudioError:
                continue
            names += [name for name in found if name not in names]
    return names


def cell_text(value) -> str:
    """A row's value as a field shows it: as a placeholder fills it in (numbers and true/false
    as JSON writes them)."""
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return str(value)


def is_an_ad(folder: Path) -> bool:
    return (folder / LINEAGE_FILE).is_file()


def export_folder(parent: Path, row_key: str) -> Path:
    """Where Export puts an ad chosen to go into `parent`: a folder named for its row, or with
    -2, -3, ... when something other than an earlier ad of that name is there (write_ad
    replaces the folder it is given)."""
    name = safe_name(row_key) or "ad"
    target, number = parent / name, 2
    while target.exists() and not is_an_ad(target):
        target, number = parent / f"{name}-{number}", number + 1
    return target


def fitted(image, side: int):
    """A PIL image scaled down to fit `side` x `side` (never up)."""
    scale = side / max(image.size)
    if scale >= 1:
        return image
    from PIL import Image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.LANCZOS)


# --- work off the GUI thread ----------------------------------------------------------------------

@dataclass
class AdRequest:
    """One preview: the recipe as it is now, the row, and which slots to make again."""

    document: dict
    path: Path  # what the recipe is checked as: its file, or UNTITLED
    row_key: str
    row: dict
    device: str
    keep: object | None = None  # the AdContent shown; None: every slot made anew
    remake: tuple[str, ...] = ()  # with keep: the slots made again


@dataclass
class MadeAd:
    request: AdRequest
    content: object  # AdContent
    poster: np.ndarray  # H x W x 3
    seconds: float


@dataclass
class LoadedRuns:
    """The composer whose loaded runs the next preview reuses. A task sets it as soon as the
    runs are loaded, so a preview that fails later (a missing column) or is superseded does
    not make the next one load them again."""

    composer: object | None = None


def make_ad(ctx, request: AdRequest, loaded: LoadedRuns) -> MadeAd:
    """The task behind Preview and Re-roll: check the recipe, load (or reuse) its runs, make
    the slots asked for and lay the poster out."""
    from studio.compose.render import render_poster
    from studio.compose.runner import Composer

    began = time.monotonic()
    recipe = recipe_from_document(request.document, request.path)
    earlier = loaded.composer
    ctx.progress("Making the ad…" if earlier is not None else "Loading the runs…")
    composer = Composer(recipe, request.device, document=request.document, reuse=earlier)
    loaded.composer = composer
    ctx.progress("Making the ad…")
    content = composer.make(request.row_key, request.row, keep=request.keep,
                            remake=request.remake)
    poster = np.asarray(render_poster(recipe.template, content))
    return MadeAd(request, content, poster, time.monotonic() - began)


def make_clip(ctx, template, content) -> tuple[np.ndarray, float]:
    """The task behind Play clip: the ad's frames, scaled for the view."""
    from studio.compose.render import render_clip

    frames, fps = render_clip(template, content)
    return np.stack([np.asarray(fitted(frame, CLIP_PREVIEW_SIDE)) for frame in frames]), fps


def export_ad(ctx, folder: Path, template, content, formats: tuple[str, ...]) -> Path:
    from studio.compose.render import write_ad

    return write_ad(folder, template, content, formats)


def batch_rows(ctx, recipe_path: Path, rows_path: Path, out_dir: Path,
               formats: tuple[str, ...], device: str):
    """The task behind Run batch: progress values are (done, total, row key, the ad's
    thumbnail or None, its own review reasons); Stop (the task cancelled) ends it before the
    next row. The batch adds duplicates and failures to the reasons at the end."""
    from studio.compose.batch import run_batch

    def progress(done: int, total: int, key: str) -> None:
        folder = out_dir / ADS_FOLDER / safe_name(key)
        try:
            reasons = [str(why) for why in read_json(folder / LINEAGE_FILE, "ad.json")["review"]]
        except (StudioError, KeyError, TypeError):
            reasons = []  # a failed row: its reason comes with the batch's report
        ctx.progress((done, total, key, thumbnail(folder / POSTER_FILE), reasons))

    return run_batch(recipe_path, rows_path, out_dir, formats, progress=progress,
                     device=device, stop=lambda: ctx.cancelled)


def earlier_results(ctx, out: Path) -> list[tuple[str, list[str], QImage | None]]:
    """The task that lists the ads a batch left in `out`: (row key, review reasons,
    thumbnail) each, the reasons from its review.json; then the rows it has reasons for and
    no ad (failed and broken rows)."""
    try:
        review = read_json(out / REVIEW_FILE, "review.json")
    except StudioError:
        review = []
    reasons = {entry["row"]: [str(why) for why in entry.get("reasons", [])] for entry in review
               if isinstance(entry, dict) and isinstance(entry.get("row"), str)
               and isinstance(entry.get("reasons", []), list)} if isinstance(review, list) else {}
    results = []
    ads = out / ADS_FOLDER
    for folder in sorted(ads.iterdir()) if ads.is_dir() else []:
        if ctx.cancelled:
            break
        try:
            key = str(read_json(folder / LINEAGE_FILE, "ad.json").get("row_key", folder.name))
        except (StudioError, AttributeError):
            continue  # not an ad, or one being written
        results.append((key, reasons.get(key, []), thumbnail(folder / POSTER_FILE)))
    listed = {key for key, _, _ in results}
    return results + [(key, why, None) for key, why in reasons.items() if key not in listed]


def thumbnail(poster: Path) -> QImage | None:
    """A poster scaled for the results list, read off the GUI thread (a QImage may be; a
    QPixmap may not). None when there is no poster (a failed row, a batch without PNGs)."""
    image = QImage(str(poster)) if poster.is_file() else QImage()
    if image.isNull():
        return None
    return image.scaled(THUMBNAIL, Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation)


@dataclass
class ShownAd:
    """The ad in the preview and what each of its slots was made from: the recipe's seed and
    the slot's entry then. Per slot, not per ad, because a locked slot keeps content made with
    an earlier seed or entry."""

    content: object  # AdContent
    template: object  # the document's "template" value
    row_key: str
    row: dict
    made_with: dict = field(default_factory=dict)  # slot -> (recipe seed, slot entry)

    def changed(self, document: dict) -> set[str]:
        """The slots of `document` whose content may differ from what is shown."""
        seed = document.get("seed")
        return {name for name, entry in document["slots"].items()
                if self.made_with.get(name) != (seed, entry)}


# --- one slot's controls --------------------------------------------------------------------------

class SlotEditor(QGroupBox):
    """The controls of one slot: run and checkpoint, prompt or class, settings, a text slot's
    guards, the seed offset, Lock and Re-roll. Each control writes its own key of the slot's
    entry (`self.entry`, the document's own dict); keys without a control stay as they are.
    An optional slot (a clip) is a checkable group: unchecked, it leaves the recipe."""

    changed = Signal(str)  # the slot's name, after an edit
    included_changed = Signal(str, bool)
    reroll_requested = Signal(str)
    lock_changed = Signal(str, bool)

    def __init__(self, name: str, kind: str, optional: bool, parent=None):
        super().__init__(parent)
        self.name, self.kind, self.optional = name, kind, optional
        self.entry: dict = {}
        self.runs: list[tuple[str, str]] = []  # (title, path) of the runs of this kind
        self.folder = Path.cwd()  # the recipe's folder: relative runs are found from it
        self.problem: str | None = None  # a settings line that cannot be read
        self._loading = False
        what = KIND_TITLES[kind]
        self.setTitle(f"{name} — {what}" + (" (optional)" if optional else ""))
        if optional:
            self.setCheckable(True)
            self.setToolTip(f"Leave the {what} out of the recipe: the poster does not need it, "
                            f"and the ad's clip then zooms the picture slowly instead")
            self.toggled.connect(self._on_included)

        self.run_combo = QComboBox()
        self.run_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_combo.setMinimumContentsLength(14)
        self.run_combo.activated.connect(self._on_run_chosen)
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.setToolTip("Which weights: the latest checkpoint, or the best on "
                                         "held-out data")
        self.checkpoint_combo.activated.connect(self._on_checkpoint_chosen)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_combo, 1)
        run_row.addWidget(self.checkpoint_combo)

        prompt_key = "prompt" if kind == "text" else "class"
        self.prompt_edit = QLineEdit()
        self.prompt_edit.setObjectName(f"{name}_{prompt_key}")
        if kind == "text":
            self.prompt_edit.setPlaceholderText("e.g. Headline for {product}:")
            self.prompt_edit.setToolTip("What the text run continues; {column} is the row's "
                                        "value of that column ({{ and }} for braces)")
        else:
            self.prompt_edit.setPlaceholderText("e.g. {category} (empty: the run chooses)")
            self.prompt_edit.setToolTip("The class the run draws; {column} is the row's value "
                                        "of that column")
        self.prompt_edit.textEdited.connect(self._on_prompt_edited)
        self.settings_edit = QLineEdit()
        self.settings_edit.setPlaceholderText("e.g. temperature=0.7" if kind == "text"
                                              else "e.g. truncation=1.0")
        self.settings_edit.setToolTip("The run's sampling settings as key=value, separated by "
                                      "commas; checked against its generator when the ad is made")
        self.settings_edit.textEdited.connect(self._on_settings_edited)

        self.seed_offset_spin = QSpinBox()
        self.seed_offset_spin.setRange(0, SEED_LIMIT - 1)
        self.seed_offset_spin.setToolTip("Added to this slot's seed for every row: Re-roll "
                                         "raises it, so the saved recipe makes this ad again")
        self.seed_offset_spin.valueChanged.connect(self._on_seed_offset)
        self.lock_box = QCheckBox("Lock")
        self.lock_box.setToolTip("Keep what this slot shows while you change the others "
                                 "(within one row; a new row or template makes it again)")
        self.lock_box.toggled.connect(self._on_lock)
        self.reroll_button = QPushButton("Re-roll")
        self.reroll_button.setToolTip("Make this slot again with a new seed, keeping the others")
        self.reroll_button.clicked.connect(lambda: self.reroll_requested.emit(self.name))
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_offset_spin, 1)
        seed_row.addSpacing(12)
        seed_row.addWidget(self.lock_box)
        seed_row.addWidget(self.reroll_button)

        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Run", run_row)
        form.addRow("Prompt" if kind == "text" else "Class", self.prompt_edit)
        form.addRow("Settings", self.settings_edit)
        if kind == "text":
            self.max_chars_spin = QSpinBox()
            self.max_chars_spin.setRange(0, 10000)
            self.max_chars_spin.setSpecialValueText("no limit")
            self.max_chars_spin.setToolTip("Longer texts are made again (see Retries), then "
                                           "marked for review")
            self.max_chars_spin.valueChanged.connect(self._on_max_chars)
            self.retries_spin = QSpinBox()
            self.retries_spin.setRange(0, 20)
            self.retries_spin.setToolTip("How many times a text that fails a guard is made "
                                         "again, each with the next seed")
            self.retries_spin.valueChanged.connect(self._on_retries)
            self.banned_edit = QLineEdit()
            self.banned_edit.setPlaceholderText("words, separated by commas")
            self.banned_edit.setToolTip("A text holding one of these words (any case) is made "
                                        "again, then marked for review")
            self.banned_edit.textEdited.connect(self._on_banned)
            guards = QHBoxLayout()
            guards.addWidget(QLabel("Max chars"))
            guards.addWidget(self.max_chars_spin)
            guards.addWidget(QLabel("Retries"))
            guards.addWidget(self.retries_spin)
            form.addRow("Guards", guards)
            form.addRow("Banned", self.banned_edit)
        form.addRow("Seed offset", seed_row)

    # -- filling the controls from the entry
    def load(self, entry: dict | None, folder: Path, runs: list[tuple[str, str]]) -> None:
        """Show `entry` (the document's dict for this slot; None: an optional slot left out)."""
        self._loading = True
        try:
            self.folder = folder
            if self.optional:
                self.setChecked(entry is not None)
            self.entry = entry if entry is not None else {}
            self.set_runs(runs)
            self._fill_checkpoints()
            key = "prompt" if self.kind == "text" else "class"
            self.prompt_edit.setText(str(self.entry.get(key) or ""))
            settings = self.entry.get("settings", {})
            self.settings_edit.setText(settings_text(settings) if isinstance(settings, dict)
                                       else json.dumps(settings))
            self._mark_settings(None)
            offset = self.entry.get("seed_offset", 0)
            self.seed_offset_spin.setValue(offset if isinstance(offset, int) else 0)
            if self.kind == "text":
                max_chars = self.entry.get("max_chars")
                self.max_chars_spin.setValue(max_chars if isinstance(max_chars, int) else 0)
                retries = self.entry.get("retries", DEFAULT_RETRIES)
                self.retries_spin.setValue(retries if isinstance(retries, int) else DEFAULT_RETRIES)
                banned = self.entry.get("banned", [])
                self.banned_edit.setText(words_text(banned) if isinstance(banned, list) else "")
        finally:
            self._loading = False

    def run_path(self) -> Path | None:
        """The run the entry names, as the recipe check reads it (relative: from the folder)."""
        run = self.entry.get("run")
        if not isinstance(run, str) or not run.strip():
            return None
        return (self.folder / Path(run).expanduser()).resolve()

    def set_runs(self, runs: list[tuple[str, str]]) -> None:
        """The runs of this slot's kind, (title, path); the entry's own run stays listed (and
        chosen) even when it is elsewhere, or missing."""
        self.runs = list(runs)
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        for title, path in runs:
            self.run_combo.addItem(title, path)
            self.run_combo.setItemData(self.run_combo.count() - 1, path,
                                       Qt.ItemDataRole.ToolTipRole)
        current = self.run_path()
        index = next((i for i, (_, path) in enumerate(runs)
                      if current is not None and Path(path).resolve() == current), -1)
        if current is not None and index < 0:
            missing = "" if current.exists() else " (missing)"
            self.run_combo.insertItem(0, f"{current.name}{missing}", str(current))
            self.run_combo.setItemData(0, str(current), Qt.ItemDataRole.ToolTipRole)
            index = 0
        if current is None:
            self.run_combo.insertItem(0, "(choose a run)", "")
            index = 0
        self.run_combo.addItem("Browse…", BROWSE)
        self.run_combo.setCurrentIndex(index)
        self.run_combo.setToolTip(str(current) if current else
                                  f"The {MODALITY_OF_KIND[self.kind]} run that makes this slot")
        self.run_combo.blockSignals(False)

    def _fill_checkpoints(self) -> None:
        choices = [("Latest", "latest"), ("Best", "best")]
        chosen = str(self.entry.get("checkpoint", "latest"))
        if chosen not in ("latest", "best"):
            choices.append((chosen, chosen))
        self.checkpoint_combo.clear()
        for text, value in choices:
            self.checkpoint_combo.addItem(text, value)
        self.checkpoint_combo.setCurrentIndex(self.checkpoint_combo.findData(chosen))

    def set_locked(self, locked: bool) -> None:
        self.lock_box.setChecked(locked)

    @property
    def locked(self) -> bool:
        return self.lock_box.isChecked()

    @property
    def included(self) -> bool:
        return not self.optional or self.isChecked()

    def set_seed_offset(self, offset: int) -> None:
        self._loading = True
        self.seed_offset_spin.setValue(offset)
        self._loading = False

    # -- edits into the entry
    def _edited(self) -> None:
        if not self._loading:
            self.changed.emit(self.name)

    def _on_run_chosen(self, index: int) -> None:
        path = self.run_combo.itemData(index)
        if path == BROWSE:
            chosen = QFileDialog.getExistingDirectory(self, f"Run folder for {self.name}")
            if chosen and not RunDir.is_run(Path(chosen)):
                show_error(self, f"{chosen} is not a run folder (it has no config.json). Pick "
                                 f"a folder that training made.")
                chosen = ""
            if not chosen:  # the choice before Browse… stays
                self.set_runs(self.runs)
                return
            path = str(Path(chosen).resolve())
        if not path:
            return
        self.entry["run"] = path
        self.set_runs(self.runs)
        self._edited()

    def _on_checkpoint_chosen(self, index: int) -> None:
        self.entry["checkpoint"] = self.checkpoint_combo.itemData(index)
        self._edited()

    def _on_prompt_edited(self, text: str) -> None:
        key = "prompt" if self.kind == "text" else "class"
        if self.kind != "text" and not text.strip():
            self.entry.pop(key, None)  # no class: the run chooses
        else:
            self.entry[key] = text
        self._edited()

    def _on_settings_edited(self, text: str) -> None:
        try:
            settings = parse_settings(text)
        except StudioError as exc:
            self._mark_settings(f"slots.{self.name}.settings: {exc}")
        else:
            self._mark_settings(None)
            if settings:
                self.entry["settings"] = settings
            else:
                self.entry.pop("settings", None)
        self._edited()

    def _mark_settings(self, problem: str | None) -> None:
        self.problem = problem
        self.settings_edit.setStyleSheet(f"border: 1px solid {PROBLEM_COLOUR};" if problem else "")

    def _on_seed_offset(self, value: int) -> None:
        if self._loading:
            return
        if value:
            self.entry["seed_offset"] = value
        else:
            self.entry.pop("seed_offset", None)
        self._edited()

    def _on_max_chars(self, value: int) -> None:
        if self._loading:
            return
        if value:
            self.entry["max_chars"] = value
        else:
            self.entry.pop("max_chars", None)
        self._edited()

    def _on_retries(self, value: int) -> None:
        if self._loading:
            return
        self.entry["retries"] = value
        self._edited()

    def _on_banned(self, text: str) -> None:
        words = parse_words(text)
        if words:
            self.entry["banned"] = words
        else:
            self.entry.pop("banned", None)
        self._edited()

    def _on_lock(self, locked: bool) -> None:
        self.reroll_button.setEnabled(not locked)
        self.lock_changed.emit(self.name, locked)

    def _on_included(self, included: bool) -> None:
        if not self._loading:
            self.included_changed.emit(self.name, included)


# --- the panel ------------------------------------------------------------------------------------

class ComposePanel(QWidget):
    preview_shown = Signal()  # each time a previewed poster appears
    batch_finished = Signal(object)  # the BatchReport

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.document: dict = {}
        self.saved_document: dict | None = None  # as on disk (or as new): the unsaved marker
        self.recipe_path: Path | None = None
        self.editors: dict[str, SlotEditor] = {}
        # Slot entries out of the recipe for now (an optional slot left out, a slot the new
        # template lacks), by (name, kind), to come back as they were.
        self.set_aside: dict[tuple[str, str], dict] = {}
        self.locked: set[str] = set()
        self.loaded = LoadedRuns()
        self.shown: ShownAd | None = None
        self.ad_task: Task | None = None
        # What the running preview was asked for, and what waits to start after it: slot
        # names (re-rolls), None (what changed), or False (nothing waits).
        self.ad_asked: tuple[str, ...] | None = None
        self.pending: tuple[str, ...] | None | bool = False
        self.clip_task: Task | None = None
        self.export_task: Task | None = None
        self.batch_task: Task | None = None
        self.results_task: Task | None = None  # reading an output folder's earlier ads
        self.batch_started = 0.0
        self._batch_first_done: tuple[float, int] | None = None  # when the first ad was done
        self.batch_out: Path | None = None
        self.batch_items: dict[str, QListWidgetItem] = {}
        self.rows: list[tuple[str, dict]] = []  # the rows file's rows
        self.rows_path: Path | None = None
        self.row_base: dict = {}  # the chosen row of the rows file, before the fields' edits
        self.row_values: dict[str, str] = {k: v for k, v in DEFAULT_ROW.items()
                                           if k != ROW_KEY_COLUMN}
        self.row_fields: dict[str, QLineEdit] = {}
        self.shown_placeholders: list[str] | None = None
        self.runs_of_kind: dict[str, list[tuple[str, str]]] = {}
        self.demo_runs: set[str] = set()
        self._modalities: dict[str, str | None] = {}
        self.last_export_dir = Path.home()
        self._build()
        self.refresh_runs()
        session.runs_changed.connect(self.refresh_runs)
        self._start_with_last_recipe()

    # -- layout
    def _build(self) -> None:
        self.new_button = QPushButton("New")
        self.new_button.setToolTip("A new recipe on the demo runs (or your newest runs)")
        self.open_button = QPushButton("Open…")
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("Save the recipe (JSON, as `studio compose` reads it)")
        self.save_as_button = QPushButton("Save as…")
        self.new_button.clicked.connect(lambda: self.new_recipe())  # not clicked's bool as `ask`
        self.open_button.clicked.connect(self.open_recipe)
        self.save_button.clicked.connect(self.save)
        self.save_as_button.clicked.connect(self.save_as)
        self.recipe_label = QLabel()
        self.recipe_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.template_combo = QComboBox()
        self.template_combo.setToolTip("The layout: where the picture, the clip and the texts "
                                       "go, and the ad's size")
        self.template_combo.activated.connect(self._on_template_chosen)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, SEED_LIMIT - 1)
        self.seed_spin.setToolTip("The recipe's seed: with a row's id it picks every slot's "
                                  "seed, so the same recipe and row make the same ad")
        self.seed_spin.valueChanged.connect(self._on_seed)
        self.new_seed_button = QPushButton("New seed")
        self.new_seed_button.setToolTip("A random seed for the recipe: every slot not locked "
                                        "changes")
        self.new_seed_button.clicked.connect(
            lambda: self.seed_spin.setValue(random.randint(0, SEED_LIMIT - 1)))
        bar = QHBoxLayout()
        for button in (self.new_button, self.open_button, self.save_button, self.save_as_button):
            bar.addWidget(button)
        bar.addWidget(self.recipe_label, 1)
        bar.addWidget(QLabel("Template"))
        bar.addWidget(self.template_combo)
        bar.addWidget(QLabel("Seed"))
        bar.addWidget(self.seed_spin)
        bar.addWidget(self.new_seed_button)
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem_label.setStyleSheet(f"color: {PROBLEM_COLOUR};")
        self.problem_label.hide()

        # Left: the row, then the slots; they scroll when the window is short.
        self.row_box = self._build_row_box()
        self.slots_column = QVBoxLayout()
        left_body = QWidget()
        left = QVBoxLayout(left_body)
        left.setContentsMargins(0, 0, 4, 0)
        left.addWidget(self.row_box)
        left.addLayout(self.slots_column)
        left.addStretch(1)
        left_scroll = QScrollArea()
        left_scroll.setWidgetResizable(True)
        left_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        left_scroll.setWidget(left_body)
        left_scroll.setMinimumWidth(360)
        left_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.left_scroll = left_scroll

        self.results = QTabWidget()
        self.results.addTab(self._build_preview_page(), "Preview")
        self.results.addTab(self._build_batch_page(), "Batch")
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left_scroll)
        split.addWidget(self.results)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        split.setSizes([460, 700])
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.problem_label)
        layout.addWidget(split, 1)
        # Ctrl+Enter previews while this panel (or anything in it) has the focus, as it
        # generates in Generate.
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self, self.preview,
                      context=Qt.ShortcutContext.WidgetWithChildrenShortcut)

    def _build_row_box(self) -> QGroupBox:
        box = QGroupBox("Row")
        box.setToolTip("What the ad is about: the values of the columns the prompts name")
        self.rows_button = QPushButton("Rows file…")
        self.rows_button.setToolTip("A CSV (header line, then one line a row) or JSONL file of "
                                    "rows: pick one to preview, run them all in Batch")
        self.rows_button.clicked.connect(self.choose_rows_file)
        self.row_combo = QComboBox()
        self.row_combo.setToolTip("The row of the rows file to preview")
        self.row_combo.activated.connect(self._on_row_chosen)
        self.row_combo.hide()
        self.rows_label = QLabel()
        self.rows_label.setWordWrap(True)
        self.rows_label.hide()
        top = QHBoxLayout()
        top.addWidget(self.rows_button)
        top.addWidget(self.row_combo, 1)
        top.addStretch(0)
        self.key_edit = QLineEdit(DEFAULT_ROW[ROW_KEY_COLUMN])
        self.key_edit.setToolTip("The row's id: it names the ad and, with the recipe's seed, "
                                 "picks the slots' seeds (the same id in a rows file gives the "
                                 "same ad)")
        self.key_edit.textEdited.connect(lambda _: self._row_edited())
        self.row_form = QFormLayout()
        self.row_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.row_form.addRow("id", self.key_edit)
        layout = QVBoxLayout(box)
        layout.addLayout(top)
        layout.addWidget(self.rows_label)
        layout.addLayout(self.row_form)
        return box

    def _build_preview_page(self) -> QWidget:
        self.hint_label = QLabel("Press Preview (Ctrl+Enter) to make an ad from this recipe and "
                                 "row. The first one loads the runs: a few seconds.",
                                 alignment=Qt.AlignmentFlag.AlignCenter)
        self.hint_label.setWordWrap(True)
        self.poster_view = ImageView(np.zeros((1, 1, 3), np.uint8), size=480)
        self.poster_view.setToolTip("The ad's poster, scaled to the space")
        self.clip_holder = QWidget()
        QVBoxLayout(self.clip_holder).setContentsMargins(0, 0, 0, 0)
        self.clip_player: VideoPlayer | None = None
        self.view_stack = QStackedWidget()
        for widget in (self.hint_label, self.poster_view, self.clip_holder):
            self.view_stack.addWidget(widget)
        self.view_stack.setMinimumHeight(200)
        self.review_label = QLabel()
        self.review_label.setWordWrap(True)
        self.review_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_label = QLabel()
        self.details_label.setWordWrap(True)
        self.details_label.setTextFormat(Qt.TextFormat.RichText)
        self.details_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.preview_button = QPushButton("Preview")
        self.preview_button.setDefault(True)
        self.preview_button.setToolTip("Make the ad for this row (Ctrl+Enter): slots changed "
                                       "since the last preview are made again, locked ones never")
        self.preview_button.clicked.connect(self.preview)
        self.clip_button = QPushButton("Play clip")
        self.clip_button.setToolTip("Render the ad's clip and play it (the poster again: Show "
                                    "poster)")
        self.clip_button.clicked.connect(self.toggle_clip)
        self.live_box = QCheckBox("Live")
        self.live_box.setChecked(True)
        self.live_box.setToolTip("After a preview, make the ad again by itself a moment after "
                                 "each edit")
        self.live_timer = QTimer(self)
        self.live_timer.setSingleShot(True)
        self.live_timer.setInterval(LIVE_DELAY_MS)
        self.live_timer.timeout.connect(self._live_preview)
        self.export_boxes = self._format_boxes("the exported ad")
        self.export_button = QPushButton("Export ad…")
        self.export_button.setToolTip("Write this ad (poster, clip, ad.json with its lineage) "
                                      "into a folder of its own")
        self.export_button.clicked.connect(self.export)
        buttons = QHBoxLayout()
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.clip_button)
        buttons.addWidget(self.live_box)
        buttons.addStretch(1)
        for box in self.export_boxes.values():
            buttons.addWidget(box)
        buttons.addWidget(self.export_button)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(self.view_stack, 1)
        layout.addWidget(self.review_label)
        layout.addWidget(self.details_label)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        return page

    def _format_boxes(self, what: str) -> dict[str, QCheckBox]:
        boxes = {}
        for name in AD_FORMATS:
            box = QCheckBox(name.upper())
            box.setToolTip({"png": f"The poster of {what} (poster.png)",
                            "mp4": f"The clip of {what} as MP4 video (clip.mp4)",
                            "gif": f"The clip of {what} as a GIF animation (clip.gif)"}[name])
            box.setChecked(name == "png")
            boxes[name] = box
        return boxes

    def _build_batch_page(self) -> QWidget:
        self.batch_rows_label = QLabel("No rows file yet: choose one.")
        self.batch_rows_label.setWordWrap(True)
        self.batch_rows_button = QPushButton("Rows file…")
        self.batch_rows_button.clicked.connect(self.choose_rows_file)
        rows_row = QHBoxLayout()
        rows_row.addWidget(self.batch_rows_label, 1)
        rows_row.addWidget(self.batch_rows_button)
        self.out_edit = QLineEdit(self.session.settings.compose_output)
        self.out_edit.setPlaceholderText("a folder for the ads (made if missing)")
        self.out_edit.setToolTip("Where the batch writes ads/<row id>/, review.json and "
                                 "index.html; a batch run again there finishes what is missing")
        self.out_edit.editingFinished.connect(self._on_out_edited)
        out_button = QPushButton("Folder…")
        out_button.clicked.connect(self.choose_output_folder)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(out_button)
        self.batch_boxes = self._format_boxes("each ad")
        formats_row = QHBoxLayout()
        for box in self.batch_boxes.values():
            formats_row.addWidget(box)
        formats_row.addStretch(1)
        form = QFormLayout()
        form.addRow("Rows", rows_row)
        form.addRow("Output", out_row)
        form.addRow("Formats", formats_row)

        self.run_batch_button = QPushButton("Run batch")
        self.run_batch_button.setToolTip("Make one ad per row of the rows file with the saved "
                                         "recipe (unsaved changes are saved first)")
        self.run_batch_button.clicked.connect(self.run_batch)
        self.stop_batch_button = QPushButton("Stop")
        self.stop_batch_button.setToolTip("Stop after the ad being made; Run batch later "
                                          "finishes the rest")
        self.stop_batch_button.clicked.connect(self.stop_batch)
        self.stop_batch_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_label = QLabel()
        self.progress_label.setWordWrap(True)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_batch_button)
        run_row.addWidget(self.stop_batch_button)
        run_row.addWidget(self.progress_bar, 1)

        self.results_list = QListWidget()
        self.results_list.setViewMode(QListView.ViewMode.IconMode)
        self.results_list.setIconSize(THUMBNAIL)
        self.results_list.setResizeMode(QListView.ResizeMode.Adjust)
        self.results_list.setMovement(QListView.Movement.Static)
        self.results_list.setWordWrap(True)
        self.results_list.setSpacing(6)
        self.results_list.setUniformItemSizes(True)
        self.results_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.results_list.setToolTip("The batch's ads; ⚠ marks one to review. Double-click to "
                                     "open its poster")
        self.results_list.currentItemChanged.connect(self._on_result_selected)
        self.results_list.itemDoubleClicked.connect(self._open_result)
        self.result_details = QLabel()
        self.result_details.setWordWrap(True)
        self.result_details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.sheet_button = QPushButton("Open contact sheet")
        self.sheet_button.setToolTip("index.html: every ad with its texts, those to review "
                                     "marked, in the web browser")
        self.sheet_button.clicked.connect(lambda: self._open_output(INDEX_FILE))
        self.folder_button = QPushButton("Open folder")
        self.folder_button.clicked.connect(lambda: self._open_output(""))
        open_row = QHBoxLayout()
        open_row.addWidget(self.summary_label, 1)
        open_row.addWidget(self.sheet_button)
        open_row.addWidget(self.folder_button)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addLayout(form)
        layout.addLayout(run_row)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.results_list, 1)
        layout.addWidget(self.result_details)
        layout.addLayout(open_row)
        return page

    # -- runs
    def refresh_runs(self) -> None:
        """The runs each kind of slot may use, from the runs folder and the demo runs: text
        runs that generate (not classifiers or taggers), image runs, video runs."""
        try:
            rows = self.session.all_runs()
        except (StudioError, OSError) as exc:
            rows = []
            self._say(for_window(str(exc)))
        runs: dict[str, list[tuple[str, str]]] = {kind: [] for kind in MODALITY_OF_KIND}
        for row in rows:
            modality = self._modality(row.get("generator"))
            if modality == "text" and self._answers_text(row["run"]):
                continue
            title = title_of(Path(row["run"]).name, row.get("name"),
                             demo=row.get("status") == "demo")
            for kind, wanted in MODALITY_OF_KIND.items():
                if modality == wanted:
                    runs[kind].append((f"{title} — {row['generator']}", row["run"]))
        self.runs_of_kind = runs
        self.demo_runs = {row["run"] for row in rows if row.get("status") == "demo"}
        for editor in self.editors.values():
            editor.set_runs(runs[editor.kind])

    def _modality(self, generator: str | None) -> str | None:
        if generator not in self._modalities:
            try:
                self._modalities[generator] = \
                    self.session.registry.declarations(generator).modality
            except (StudioError, KeyError, TypeError):
                self._modalities[generator] = None
        return self._modalities[generator]

    @staticmethod
    def _answers_text(run: str) -> bool:
        """Whether a text run classifies or tags: its samples are answers, not ad copy."""
        try:
            return (RunDir.open(Path(run)).config().get("config") or {}).get("task") \
                in ("classify", "tag")
        except (StudioError, OSError):
            return False

    def default_runs(self) -> dict[str, tuple[str, str | None]]:
        """Each kind's run for a new recipe: its demo run, else the newest listed."""
        chosen = {}
        for kind, runs in self.runs_of_kind.items():
            demos = [path for _, path in runs if path in self.demo_runs]
            path = (demos or [path for _, path in runs] or [""])[0]
            chosen[kind] = (path, self.session.run_generator(path) if path else None)
        return chosen

    # -- the recipe: new, open, save
    def _start_with_last_recipe(self) -> None:
        remembered = self.session.settings.compose_recipe
        if remembered and Path(remembered).is_file():
            try:
                self._open_document(Path(remembered))
            except StudioError as exc:
                self.new_recipe(ask=False)
                self._say(f"The recipe opened last time cannot be read: {for_window(str(exc))}")
        else:
            self.new_recipe(ask=False)
        rows = self.session.settings.compose_rows
        if rows and Path(rows).is_file():
            self.load_rows(Path(rows), pick_first=False, quiet=True)
        out = self.output_folder()
        if out is not None and out.is_dir():
            self.show_results(out)

    def new_recipe(self, ask: bool = True) -> bool:
        """A new recipe on the template shown (a built-in one), each slot on its kind's demo
        run with the example's prompts. `ask`: about unsaved changes first."""
        if ask and not self.may_discard():
            return False
        template = self.document.get("template", DEFAULT_TEMPLATE) if self.document \
            else DEFAULT_TEMPLATE
        if not isinstance(template, str) or template not in builtin_templates():
            template = DEFAULT_TEMPLATE
        self._set_document(new_document(template, self.default_runs()), None)
        self._remember("compose_recipe", "")
        return True

    def open_recipe(self) -> bool:
        if not self.may_discard():
            return False
        start_in = str(self.recipe_path.parent) if self.recipe_path else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open recipe", start_in,
                                              "Recipes (*.json);;All files (*)")
        if not path:
            return False
        try:
            self._open_document(Path(path))
        except StudioError as exc:
            show_error(self, str(exc))
            return False
        self._remember("compose_recipe", str(self.recipe_path))
        return True

    def _open_document(self, path: Path) -> None:
        """Open a recipe file; one the panel cannot show (not an object of slots, an unknown
        template) raises StudioError and the recipe shown stays. Other problems are shown in
        the problem line, to be fixed here."""
        document = read_json(path, "The recipe file")
        if not isinstance(document, dict) or not isinstance(document.get("slots"), dict) \
                or not all(isinstance(entry, dict) for entry in document["slots"].values()):
            raise StudioError(f"{path} is not a recipe: it needs \"template\" and \"slots\", an "
                              f"object with one object per slot (see examples/compose/ad.json).")
        self._template_of(document, path.resolve().parent)  # raises when it cannot be read
        self._set_document(document, path)

    def _template_of(self, document: dict, folder: Path):
        value = document.get("template")
        if not isinstance(value, str) or not value.strip():
            raise StudioError("The recipe has no \"template\": name a built-in one "
                              f"({', '.join(builtin_templates())}) or a template file.")
        return load_template(template_path(value, folder))

    def _set_document(self, document: dict, path: Path | None) -> None:
        """Show a recipe: its template and seed, one editor per slot of the template."""
        if self.ad_task is not None:  # an ad of the recipe shown before is never shown
            self.ad_task.cancel()
            self.pending = False
        self.document = document
        self.recipe_path = path
        self.saved_document = copy.deepcopy(document)
        self.set_aside.clear()
        self.locked.clear()
        self.shown = None
        self._show_template_choice()
        self.seed_spin.blockSignals(True)
        seed = document.get("seed", 0)
        self.seed_spin.setValue(seed if isinstance(seed, int) and 0 <= seed < SEED_LIMIT else 0)
        self.seed_spin.blockSignals(False)
        self._build_editors()
        self._clear_preview("Press Preview (Ctrl+Enter) to make an ad from this recipe and "
                            "row. The first one loads the runs: a few seconds.")
        self._document_changed(edited=False)

    def _show_template_choice(self) -> None:
        self.template_combo.blockSignals(True)
        self.template_combo.clear()
        for name in builtin_templates():
            self.template_combo.addItem(name, name)
        value = self.document.get("template")
        if isinstance(value, str) and value not in builtin_templates():
            self.template_combo.addItem(Path(value).name, value)
            self.template_combo.setItemData(self.template_combo.count() - 1, value,
                                            Qt.ItemDataRole.ToolTipRole)
        self.template_combo.addItem("Template file…", TEMPLATE_FILE)
        self.template_combo.setCurrentIndex(max(0, self.template_combo.findData(value)))
        self.template_combo.blockSignals(False)

    def _build_editors(self) -> None:
        for editor in self.editors.values():
            editor.setParent(None)
            editor.deleteLater()
        self.editors.clear()
        try:
            template = self._template_of(self.document, self.folder())
        except StudioError as exc:
            self._say(for_window(str(exc)))
            return
        optional = template.optional_slots()
        slots = self.document["slots"]
        for name, kind in template.slot_kinds().items():
            editor = SlotEditor(name, kind, name in optional)
            editor.load(slots.get(name), self.folder(), self.runs_of_kind.get(kind, []))
            editor.changed.connect(self._slot_edited)
            editor.included_changed.connect(self._slot_included)
            editor.reroll_requested.connect(self.reroll)
            editor.lock_changed.connect(self._lock_changed)
            editor.set_locked(name in self.locked)  # a slot kept by a template chosen anew
            self.editors[name] = editor
            self.slots_column.addWidget(editor)

    def folder(self) -> Path:
        """The folder relative runs and templates are read from: the recipe's."""
        return self.recipe_path.resolve().parent if self.recipe_path else Path.cwd()

    def check_path(self) -> Path:
        return self.recipe_path if self.recipe_path else Path(UNTITLED)

    def save(self) -> bool:
        """Save to the recipe's file (Save as… for a new one). True once written."""
        if self.recipe_path is None:
            return self.save_as()
        return self._write(self.recipe_path)

    def save_as(self) -> bool:
        start_in = self.recipe_path or (self.folder() / "recipe.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save recipe", str(start_in),
                                              "Recipes (*.json)")
        if not path:
            return False
        path = Path(path)
        if not path.suffix:
            path = path.with_suffix(".json")
        return self._write(path)

    def _write(self, path: Path) -> bool:
        document = rebased(self.document, self.folder(), path.parent)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, document)
        except OSError as exc:
            show_error(self, f"Cannot save the recipe to {path}: {exc.strerror or exc}. Pick "
                             f"a writable folder.")
            return False
        moved = self.recipe_path is None or path.resolve() != self.recipe_path.resolve()
        if document is not self.document:  # the same recipe, its paths now absolute
            self.document.clear()
            self.document.update(document)
            self._reload_editors()
        self.recipe_path = path
        self.saved_document = copy.deepcopy(self.document)
        if moved:
            for editor in self.editors.values():
                editor.folder = self.folder()
        self._remember("compose_recipe", str(path))
        self._update_title()
        self.status_label.setText(f"Saved {path}.")
        return True

    def _reload_editors(self) -> None:
        """The editors show the document's entries again (after Save as made paths absolute)."""
        slots = self.document["slots"]
        for name, editor in self.editors.items():
            editor.load(slots.get(name), self.folder(), self.runs_of_kind.get(editor.kind, []))
            editor.set_locked(name in self.locked)

    @property
    def dirty(self) -> bool:
        return self.document != self.saved_document

    def may_discard(self) -> bool:
        """Whether the recipe shown may give way to another: saved, or the user says so."""
        if not self.dirty:
            return True
        answer = ask_unsaved(self, self.recipe_name())
        if answer == "save":
            return self.save()
        return answer == "discard"

    def recipe_name(self) -> str:
        return self.recipe_path.name if self.recipe_path else UNTITLED.removesuffix(".json")

    def _update_title(self) -> None:
        marker = " •" if self.dirty else ""
        self.recipe_label.setText(f"<b>{self.recipe_name()}</b>{marker}")
        where = str(self.recipe_path) if self.recipe_path else "Not saved yet"
        self.recipe_label.setToolTip(where + (" · unsaved changes (•)" if marker else ""))

    # -- edits
    def _on_template_chosen(self, index: int) -> None:
        value = self.template_combo.itemData(index)
        if value == TEMPLATE_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Template file", str(self.folder()),
                                                  "Templates (*.json)")
            if not path:
                self._show_template_choice()
                return
            value = str(Path(path).resolve())
        if value == self.document.get("template"):
            return
        try:
            template = load_template(template_path(value, self.folder()))
        except StudioError as exc:
            show_error(self, str(exc))
            self._show_template_choice()
            return
        earlier_kinds = {name: editor.kind for name, editor in self.editors.items()}
        self.document["template"] = value
        self._fit_slots_to(template, earlier_kinds)
        self._show_template_choice()
        self._build_editors()
        self._document_changed()

    def _fit_slots_to(self, template, earlier_kinds: dict[str, str]) -> None:
        """The slots a new template shows: those of the same name and kind kept, new ones on
        the default runs, the others set aside (a template chosen back brings them back)."""
        slots = self.document["slots"]
        kinds = template.slot_kinds()
        defaults = self.default_runs()
        for name in list(slots):
            if kinds.get(name) != earlier_kinds.get(name):
                self.set_aside[name, earlier_kinds.get(name, "")] = slots.pop(name)
        for name, kind in kinds.items():
            if name not in slots and name not in template.optional_slots():
                slots[name] = self.set_aside.pop((name, kind), None) or \
                    default_slot(name, kind, *defaults[kind])
        self.locked &= set(slots)

    def _on_seed(self, value: int) -> None:
        self.document["seed"] = value
        self._document_changed()

    def _slot_edited(self, name: str) -> None:
        self._document_changed()

    def _slot_included(self, name: str, included: bool) -> None:
        slots = self.document["slots"]
        editor = self.editors[name]
        if included:
            slots[name] = self.set_aside.pop((name, editor.kind), None) or default_slot(
                name, editor.kind, *self.default_runs()[editor.kind])
            editor.load(slots[name], self.folder(), self.runs_of_kind.get(editor.kind, []))
        elif name in slots:
            self.set_aside[name, editor.kind] = slots.pop(name)
        self._document_changed()

    def _lock_changed(self, name: str, locked: bool) -> None:
        if locked:
            self.locked.add(name)
        else:
            self.locked.discard(name)
        self._show_slot_states()

    def _document_changed(self, edited: bool = True) -> None:
        self._update_title()
        self._update_row_fields()
        self._update_state()
        if edited:
            self._schedule_live()

    def _row_edited(self) -> None:
        self._update_state()
        self._schedule_live()

    def _schedule_live(self) -> None:
        """Live: once an ad is shown, each edit makes it again a moment later (the timer
        restarts with every key, so typing does not start a preview per letter)."""
        if self.live_box.isChecked() and self.shown is not None:
            self.live_timer.start()

    def _live_preview(self) -> None:
        if self.live_box.isChecked() and self.shown is not None and self.problem() is None:
            self.preview()

    # -- the row
    def _update_row_fields(self) -> None:
        """One field per column the prompts name (kept when it stops being named, so that a
        placeholder typed again gets its value back)."""
        names = [name for name in used_placeholders(self.document) if name != ROW_KEY_COLUMN]
        if names == self.shown_placeholders:
            return
        self.shown_placeholders = names
        while self.row_form.rowCount() > 1:  # the id stays
            self.row_form.removeRow(1)
        self.row_fields.clear()
        for name in names:
            edit = QLineEdit(self.row_values.get(name, ""))
            edit.setObjectName(f"row_{name}")
            edit.setToolTip(f"The value of {{{name}}} in the prompts")
            edit.textEdited.connect(lambda text, column=name: self._on_row_value(column, text))
            self.row_fields[name] = edit
            self.row_form.addRow(name, edit)

    def _on_row_value(self, column: str, text: str) -> None:
        self.row_values[column] = text
        self._row_edited()

    def row(self) -> tuple[str, dict]:
        """The row to preview: (key, {column: value}), the chosen rows-file row with the
        fields' edits."""
        key = self.key_edit.text().strip()
        row = dict(self.row_base)
        if not self.row_base or ROW_KEY_COLUMN in self.row_base:
            row[ROW_KEY_COLUMN] = key
        for name in self.row_fields:
            value = self.row_values.get(name, "")
            if name not in self.row_base or value != cell_text(self.row_base[name]):
                row[name] = value  # typed; a JSONL row's numbers and true/false stay as read
        return key, row

    def set_row(self, key: str, values: dict) -> None:
        """Fill the row fields (tests and scripts; a user types or picks a row)."""
        self.key_edit.setText(key)
        self.row_values.update({name: str(value) for name, value in values.items()})
        for name, edit in self.row_fields.items():
            edit.setText(self.row_values.get(name, ""))
        self._row_edited()

    def choose_rows_file(self) -> None:
        start_in = str(self.rows_path.parent) if self.rows_path else str(self.folder())
        path, _ = QFileDialog.getOpenFileName(self, "Rows file", start_in,
                                              "Rows (*.csv *.jsonl *.ndjson);;All files (*)")
        if path:
            self.load_rows(Path(path))

    def load_rows(self, path: Path, pick_first: bool = True, quiet: bool = False) -> bool:
        """Read a rows file for the row chooser and the batch; its broken rows are counted
        (the batch lists them for review). `quiet`: a problem goes to the status line, not a
        dialog (the file remembered from last time, at start)."""
        try:
            read = read_rows(path)
        except StudioError as exc:
            if quiet:
                self._say(for_window(str(exc)))
            else:
                show_error(self, str(exc))
            return False
        self.rows, self.rows_path = read.rows, path
        self._remember("compose_rows", str(path))
        self.row_combo.clear()
        for key, row in self.rows:
            self.row_combo.addItem(key, key)
        self.row_combo.setVisible(bool(self.rows))
        broken = f", {len(read.broken)} broken (listed for review after a batch)" \
            if read.broken else ""
        summary = f"{path.name}: {len(self.rows)} row{'s' if len(self.rows) != 1 else ''}{broken}"
        self.rows_label.setText(summary)
        self.rows_label.setToolTip(str(path) + "".join(f"\nrow {number}: {why}"
                                                       for number, why in read.broken))
        self.rows_label.show()
        self.batch_rows_label.setText(summary)
        self.batch_rows_label.setToolTip(str(path))
        if pick_first and self.rows:
            self.pick_row(0)
        self._update_state()
        return True

    def _on_row_chosen(self, index: int) -> None:
        self.pick_row(index)

    def pick_row(self, index: int) -> None:
        key, row = self.rows[index]
        self.row_combo.setCurrentIndex(index)
        self.row_base = dict(row)
        self.set_row(key, {name: cell_text(value) for name, value in row.items()
                           if name != ROW_KEY_COLUMN and value is not None})

    # -- checking
    def problem(self) -> str | None:
        """Why no ad can be made now: the recipe's first problem, a settings line that cannot
        be read, or a placeholder the row leaves empty. Runs are checked when it is made."""
        for editor in self.editors.values():
            if editor.included and editor.problem:
                return editor.problem
        try:
            recipe = recipe_from_document(self.document, self.check_path())
        except StudioError as exc:
            return for_window(str(exc))
        key, row = self.row()
        if not key:
            return "Give the row an id: it names the ad and picks its seeds."
        empty = [name for name in sorted(recipe.placeholders(), key=self._placeholder_order)
                 if not str(row.get(name, "")).strip()]
        if empty:
            names = ", ".join(f"{{{name}}}" for name in empty)
            return f"The row leaves {names} empty: fill {'it' if len(empty) == 1 else 'them'} " \
                   f"in (the prompts use {'it' if len(empty) == 1 else 'them'})."
        return None

    def _placeholder_order(self, name: str) -> int:
        names = used_placeholders(self.document)
        return names.index(name) if name in names else len(names)

    def _update_state(self) -> None:
        problem = self.problem()
        self.problem_label.setText(problem or "")
        self.problem_label.setVisible(bool(problem))
        self.preview_button.setEnabled(problem is None)
        self.preview_button.setToolTip(f"Cannot preview: {problem}" if problem else
                                       "Make the ad for this row (Ctrl+Enter): slots changed "
                                       "since the last preview are made again, locked ones never")
        shown = self.shown is not None
        self.clip_button.setEnabled(shown)
        self.export_button.setEnabled(shown and self.export_task is None)
        for editor in self.editors.values():
            editor.reroll_button.setEnabled(shown and not editor.locked and editor.included
                                            and problem is None)
        running = self.batch_task is not None
        self.run_batch_button.setEnabled(not running and self.rows_path is not None)
        self.stop_batch_button.setEnabled(running and not self.batch_task.context.cancelled)
        out = self.output_folder()
        self.sheet_button.setEnabled(out is not None and (out / INDEX_FILE).is_file())
        self.folder_button.setEnabled(out is not None and out.is_dir())
        self._show_slot_states()

    def _say(self, text: str) -> None:
        self.status_label.setText(text)

    # -- preview
    def preview(self) -> bool:
        """Make the ad of the row with the recipe as it is now: slots whose entry changed since
        the shown ad are made again, locked ones never (every slot for a new row or template).
        False when it cannot start (the problem line says why)."""
        return self._request_ad(None)

    def reroll(self, name: str) -> bool:
        """Make slot `name` again with a new seed, keeping the others: its seed_offset is
        raised in the recipe, so the saved recipe makes this ad again."""
        editor = self.editors.get(name)
        if editor is None or self.shown is None or editor.locked or not editor.included \
                or self.problem() is not None:
            return False
        # By recipe.rerolled's rule (past a text slot's retry seeds), into the entry the
        # editor holds rather than a copy of the document.
        entry = self.document["slots"][name]
        entry["seed_offset"] = rerolled(self.document, name)["slots"][name]["seed_offset"]
        editor.set_seed_offset(entry["seed_offset"])
        self._update_title()
        return self._request_ad((name,))

    def _request_ad(self, only: tuple[str, ...] | None) -> bool:
        """Start making an ad (`only`: these slots; None: what changed). A request while one
        runs supersedes it: that one's ad is not shown, and this one starts when it ends."""
        problem = self.problem()
        if problem is not None:
            self._update_state()
            return False
        if self.ad_task is not None:
            # The running request's slots are asked for again too: its ad is never shown.
            self.ad_task.cancel()
            self.pending = _merged(_merged(self.pending, self.ad_asked), only)
            self._say("Making the ad… (the newest changes next)")
            return True
        key, row = self.row()
        request = AdRequest(copy.deepcopy(self.document), self.check_path(), key, row,
                            self.session.settings.default_device or "auto")
        shown = self.shown
        fresh = (shown is None or shown.row_key != key or shown.row != row
                 or shown.template != self.document.get("template"))
        if fresh:
            note = "Making the ad…"
        else:
            wanted = shown.changed(self.document) if only is None else set(only)
            request.keep = shown.content
            request.remake = tuple(name for name in self.document["slots"]
                                   if name in wanted and name not in self.locked)
            note = (f"Making {', '.join(request.remake)} again…" if request.remake
                    else "Nothing changed in the slots not locked: laying the ad out again…")
        task = Task(make_ad, request, self.loaded)
        task.signals.progress.connect(lambda text, t=task: self._ad_progress(t, text))
        task.signals.done.connect(lambda made, t=task: self._ad_made(t, made))
        task.signals.failed.connect(lambda message, t=task: self._ad_failed(t, message))
        task.signals.finished.connect(lambda t=task: self._ad_finished(t))
        self.ad_task, self.ad_asked = task, only
        self._say(note)
        start(task)
        return True

    @property
    def busy(self) -> bool:
        return self.ad_task is not None

    def _ad_progress(self, task: Task, text: str) -> None:
        if not task.context.cancelled:
            self._say(text)

    def _ad_made(self, task: Task, made: MadeAd) -> None:
        if task.context.cancelled:
            return  # superseded: the next request shows its own
        request, content = made.request, made.content
        earlier = self.shown.made_with if request.keep is not None else {}
        remade = {name for name in content.slots
                  if request.keep is None or name in request.remake or name not in earlier}
        seed = request.document.get("seed")
        made_with = {name: (seed, copy.deepcopy(request.document["slots"][name]))
                     if name in remade else earlier[name] for name in content.slots}
        self.shown = ShownAd(content, request.document.get("template"), request.row_key,
                             request.row, made_with)
        self.poster_view.show_array(made.poster)
        showing_clip = self.view_stack.currentWidget() is self.clip_holder
        self.view_stack.setCurrentWidget(self.poster_view)
        self._show_review(content)
        self._show_details(content, remade)
        made_now = "every slot" if request.keep is None else (", ".join(sorted(remade)) or
                                                              "no slot")
        self._say(f"Made {made_now} in {made.seconds:.1f} s · row {request.row_key} · "
                  f"{self.shown_template_size()}")
        self._update_state()
        self.preview_shown.emit()
        if showing_clip:
            self.play_clip()  # the clip follows the ad it belongs to

    def shown_template_size(self) -> str:
        template = self.shown.content.recipe.template if self.shown else None
        return f"{template.name} {template.width}×{template.height}" if template else ""

    def _ad_failed(self, task: Task, message: str) -> None:
        if task.context.cancelled:
            return
        text = for_window(message)
        self.problem_label.setText(text)
        self.problem_label.show()
        self._say("The ad could not be made: see the line above. Fix it and press Preview.")

    def _ad_finished(self, task: Task) -> None:
        if task is not self.ad_task:
            return
        self.ad_task = None
        pending, self.pending = self.pending, False
        if pending is not False:
            self._request_ad(pending)
        else:
            self._update_state_keeping_failure()

    def _update_state_keeping_failure(self) -> None:
        """The buttons follow the state; a failure's message stays until the next edit."""
        failure = self.problem_label.text() if not self.problem_label.isHidden() else ""
        self._update_state()
        if failure and self.problem_label.isHidden():
            self.problem_label.setText(failure)
            self.problem_label.show()

    def _clear_preview(self, hint: str) -> None:
        self.hint_label.setText(hint)
        self.view_stack.setCurrentWidget(self.hint_label)
        self.review_label.setText("")
        self.details_label.setText("")
        self.clip_button.setText("Play clip")
        self._drop_clip_player()

    def _show_review(self, content) -> None:
        if content.review:
            self.review_label.setStyleSheet(f"color: {PROBLEM_COLOUR};")
            self.review_label.setText("Needs review: " + " · ".join(content.review))
        else:
            self.review_label.setStyleSheet("")
            self.review_label.setText("The guards passed every text.")

    def _show_details(self, content, remade: set[str]) -> None:
        """Each slot of the shown ad: its seed (and try), what it holds, and whether it was
        made now or kept."""
        import html
        rows, texts = [], []
        for name, slot in content.slots.items():
            lineage = slot.lineage
            if name in remade:
                state = "made now"
            else:
                state = "locked" if name in self.locked else "kept"
            tries = len(lineage.get("attempts", [])) or 1
            seed = f"seed {lineage.get('seed')}" + (f", try {lineage.get('attempt', 0) + 1} of "
                                                    f"{tries}" if tries > 1 else "")
            if slot.text is not None:
                what = f"“{html.escape(shorten(slot.text, DETAILS_TEXT))}”"
                texts.append(f"{name}: {slot.text}")
            elif slot.frames is not None:
                what = f"{len(slot.frames)} frames at {slot.fps:g} fps"
            else:
                height, width = slot.image.shape[:2]
                drawn = html.escape(str(lineage.get("prompt")))
                what = f"{width}×{height} picture of “{drawn}”"
            rows.append(f"<tr><td><b>{html.escape(name)}</b>&nbsp;</td><td>{seed} · {state}"
                        f"&nbsp;</td><td>{what}</td></tr>")
        self.details_label.setText(f"<table cellspacing='2'>{''.join(rows)}</table>")
        self.details_label.setToolTip("\n\n".join(texts))

    def _show_slot_states(self) -> None:
        """The slot groups say which are locked, and which shown content their edits have
        left behind (made again by the next Preview)."""
        changed = self.shown.changed(self.document) & set(self.shown.made_with) \
            if self.shown is not None else set()
        for name, editor in self.editors.items():
            what = KIND_TITLES[editor.kind] + (" (optional)" if editor.optional else "")
            notes = []
            if editor.locked:
                notes.append("locked")
            if name in changed:
                notes.append("changed since the preview")
            editor.setTitle(f"{name} — {what}" + (f" · {', '.join(notes)}" if notes else ""))

    # -- the clip
    def toggle_clip(self) -> None:
        if self.view_stack.currentWidget() is self.clip_holder:
            self._drop_clip_player()
            self.view_stack.setCurrentWidget(self.poster_view if self.shown else self.hint_label)
            self.clip_button.setText("Play clip")
        else:
            self.play_clip()

    def play_clip(self) -> bool:
        """Render the shown ad's clip in the background and play it."""
        if self.shown is None:
            return False
        if self.clip_task is not None:
            self.clip_task.cancel()
        content = self.shown.content
        task = Task(make_clip, content.recipe.template, content)
        task.signals.done.connect(lambda result, t=task, c=content: self._clip_made(t, c, result))
        task.signals.failed.connect(lambda message, t=task: self._clip_failed(t, message))
        self.clip_task = task
        self.clip_button.setText("Rendering the clip…")
        self.clip_button.setEnabled(False)
        start(task)
        return True

    def _clip_made(self, task: Task, content, result) -> None:
        if task is not self.clip_task:
            return
        self.clip_task = None
        self.clip_button.setEnabled(True)
        if task.context.cancelled or self.shown is None or self.shown.content is not content:
            self.clip_button.setText("Play clip")
            return
        frames, fps = result
        self._drop_clip_player()
        self.clip_player = VideoPlayer(frames, size=480, fps=fps)
        self.clip_holder.layout().addWidget(self.clip_player)
        self.view_stack.setCurrentWidget(self.clip_holder)
        self.clip_button.setText("Show poster")

    def _clip_failed(self, task: Task, message: str) -> None:
        if task is self.clip_task:
            self.clip_task = None
            self.clip_button.setEnabled(True)
            self.clip_button.setText("Play clip")
            show_error(self, message)

    def _drop_clip_player(self) -> None:
        if self.clip_player is not None:
            self.clip_player.timer.stop()
            self.clip_player.setParent(None)
            self.clip_player.deleteLater()
            self.clip_player = None

    # -- export
    def export_formats(self, boxes: dict[str, QCheckBox]) -> tuple[str, ...]:
        return tuple(name for name, box in boxes.items() if box.isChecked())

    def export(self) -> bool:
        """Write the shown ad into a folder of its own (named for its row) in a folder the
        user picks: poster, clip and ad.json, as the batch writes each ad."""
        if self.shown is None:
            return False
        formats = self.export_formats(self.export_boxes)
        if not formats:
            show_error(self, "Tick at least one format to export (PNG, MP4 or GIF).")
            return False
        parent = QFileDialog.getExistingDirectory(self, "Export the ad into this folder",
                                                  str(self.last_export_dir))
        if not parent:
            return False
        self.last_export_dir = Path(parent)
        content = self.shown.content
        target = export_folder(Path(parent), content.row_key)
        task = Task(export_ad, target, content.recipe.template, content, formats)
        task.signals.done.connect(self._exported)
        task.signals.failed.connect(lambda message: show_error(self, message))
        task.signals.finished.connect(self._export_finished)
        self.export_task = task
        self._say(f"Exporting to {target}…")
        self._update_state()
        start(task)
        return True

    def _exported(self, folder: Path) -> None:
        files = sorted(path.name for path in folder.iterdir())
        self._say(f"Exported {', '.join(files)} to {folder}.")

    def _export_finished(self) -> None:
        self.export_task = None
        self._update_state_keeping_failure()

    # -- batch
    def output_folder(self) -> Path | None:
        text = self.out_edit.text().strip()
        return Path(text).expanduser() if text else None

    def choose_output_folder(self) -> None:
        start_in = self.out_edit.text() or str(self.folder())
        chosen = QFileDialog.getExistingDirectory(self, "Folder for the batch's ads", start_in)
        if chosen:
            self.out_edit.setText(chosen)
            self._on_out_edited()

    def _on_out_edited(self) -> None:
        out = self.output_folder()
        self._remember("compose_output", str(out) if out else "")
        if out is not None and self.batch_task is None:
            self.show_results(out)
        self._update_state()

    def run_batch(self) -> bool:
        """Make one ad per row of the rows file into the output folder, with the recipe as
        saved (unsaved changes are saved first; a new recipe asks where)."""
        if self.batch_task is not None:
            return False
        if self.rows_path is None:
            show_error(self, "Choose a rows file first (Rows file…): a CSV or JSONL file with "
                             "one row per ad.")
            return False
        if (self.recipe_path is None or self.dirty) and not self.save():
            return False
        out = self.output_folder()
        if out is None:
            out = self.recipe_path.resolve().parent / f"{self.recipe_path.stem}-ads"
            self.out_edit.setText(str(out))
        self._remember("compose_output", str(out))
        formats = self.export_formats(self.batch_boxes)
        if not formats:
            show_error(self, "Tick at least one format for the batch (PNG, MP4 or GIF).")
            return False
        self.batch_out = out
        self.batch_items.clear()
        self.results_list.clear()
        self.result_details.setText("")
        self.summary_label.setText("")
        self.progress_bar.setRange(0, max(1, len(self.rows)))
        self.progress_bar.setValue(0)
        self.progress_label.setText("Loading the runs…")
        task = Task(batch_rows, self.recipe_path, self.rows_path, out, formats,
                    self.session.settings.default_device or "auto")
        task.signals.progress.connect(self._batch_progress)
        task.signals.done.connect(self._batch_done)
        task.signals.failed.connect(self._batch_failed)
        task.signals.finished.connect(self._batch_finished)
        self.batch_task = task
        self.batch_started = time.monotonic()
        self._batch_first_done = None
        self.results.setCurrentIndex(1)
        self._update_state()
        start(task)
        return True

    def stop_batch(self) -> None:
        """Stop once the ad being made is written; the same batch later finishes the rest."""
        if self.batch_task is not None and not self.batch_task.context.cancelled:
            self.batch_task.cancel()
            self.progress_label.setText(self.progress_label.text() + " · stopping after this "
                                                                     "ad…")
            self._update_state()

    @property
    def batch_running(self) -> bool:
        return self.batch_task is not None

    def _batch_progress(self, value) -> None:
        done, total, key, image, reasons = value
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(done)
        now = time.monotonic()
        # The first ad's time includes loading the runs: the rate is measured after it.
        if self._batch_first_done is None:
            self._batch_first_done = (now, done)
        first_time, first_done = self._batch_first_done
        eta = ""
        if done > first_done and done < total:
            seconds = (now - first_time) / (done - first_done) * (total - done)
            eta = f" · about {duration_text(seconds)} left"
        stopping = " · stopping after this ad…" if self.batch_task is not None and \
            self.batch_task.context.cancelled else ""
        self.progress_label.setText(f"{done} of {total} · {key}{eta}{stopping}")
        self._add_result(key, reasons, image)

    def _ad_folder(self, key: str) -> Path:
        return self.batch_out / ADS_FOLDER / safe_name(key)

    def _add_result(self, key: str, reasons: list[str], image: QImage | None = None) -> None:
        """Show one ad in the results (its reasons updated, if it is there already)."""
        item = self.batch_items.get(key)
        if item is None:
            item = QListWidgetItem(key)
            self.batch_items[key] = item
            self.results_list.addItem(item)
        if image is not None:
            item.setIcon(QIcon(QPixmap.fromImage(image)))
        self._mark(item, key, reasons)

    def _mark(self, item: QListWidgetItem, key: str, reasons: list[str]) -> None:
        item.setData(Qt.ItemDataRole.UserRole, {"key": key, "reasons": reasons})
        item.setText(f"⚠ {key}" if reasons else key)
        item.setForeground(QBrush(QColor(PROBLEM_COLOUR)) if reasons else QBrush())
        item.setToolTip("\n".join([key] + reasons) if reasons else key)

    def _batch_done(self, report) -> None:
        reasons = {entry["row"]: entry["reasons"] for entry in report.review}
        for key in report.made + report.skipped + report.failed:
            self._add_result(key, reasons.get(key, []))
        for key, why in reasons.items():
            if key not in self.batch_items:  # broken rows of the file: no ad, only reasons
                self._add_result(key, why)
        parts = [f"{len(report.made)} made", f"{len(report.skipped)} finished earlier",
                 f"{len(report.failed)} failed", f"{len(report.review)} to review"]
        stopped = " Stopped: Run batch again finishes the rest." if report.stopped else ""
        self.summary_label.setText(", ".join(parts) + "." + stopped)
        took = duration_text(time.monotonic() - self.batch_started)
        self.progress_label.setText(f"Done in {took}" if not report.stopped else "Stopped.")
        self.batch_finished.emit(report)

    def _batch_failed(self, message: str) -> None:
        self.progress_label.setText("The batch could not run.")
        show_error(self, message)

    def _batch_finished(self) -> None:
        self.batch_task = None
        self._update_state_keeping_failure()

    def show_results(self, out: Path) -> None:
        """The ads a batch left in `out` earlier, with its review list, read in the
        background (a folder may hold thousands)."""
        self.batch_out = out
        self.batch_items.clear()
        self.results_list.clear()
        if self.results_task is not None:
            self.results_task.cancel()
        task = Task(earlier_results, out)
        task.signals.done.connect(lambda results, t=task: self._earlier_results(t, results))
        task.signals.finished.connect(lambda t=task: self._results_read(t))
        self.results_task = task
        start(task)

    def _earlier_results(self, task: Task, results) -> None:
        if task is not self.results_task or task.context.cancelled or self.batch_running:
            return  # another folder was chosen since, or a batch fills the list now
        for key, reasons, image in results:
            self._add_result(key, reasons, image)

    def _results_read(self, task: Task) -> None:
        if task is self.results_task:
            self.results_task = None

    def _on_result_selected(self, item: QListWidgetItem | None, _previous=None) -> None:
        data = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if not data:
            self.result_details.setText("")
            return
        reasons = data["reasons"]
        self.result_details.setText(f"{data['key']}: " + ("; ".join(reasons) if reasons
                                                           else "no problems found"))

    def _open_result(self, item: QListWidgetItem) -> None:
        data = item.data(Qt.ItemDataRole.UserRole)
        if data and self.batch_out is not None:
            poster = self._ad_folder(data["key"]) / POSTER_FILE
            open_path(poster if poster.is_file() else self._ad_folder(data["key"]))

    def _open_output(self, name: str) -> None:
        out = self.output_folder()
        if out is not None:
            open_path(out / name if name else out)

    # -- settings
    def _remember(self, name: str, value: str) -> None:
        settings = self.session.settings
        if getattr(settings, name) != value:
            setattr(settings, name, value)
            try:
                settings.save()
            except OSError:
                pass  # remembering is a convenience: an unwritable config folder costs only it


def _merged(first, second):
    """Two preview requests as one: slot names together; None (what changed, re-rolled slots
    included) when either is; False is no request."""
    if first is False or second is False:
        return second if first is False else first
    if first is None or second is None:
        return None
    return tuple(dict.fromkeys(first + second))
