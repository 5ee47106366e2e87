"""From a recipe and one row to an ad's content: the text, pictures and clips its slots hold.

`Composer(recipe)` opens every run the recipe names once (two slots on one run share it) and
checks, before anything is generated, that each run exists, that its generator makes what the
slot needs (a text slot a text run, an image slot an image run, a clip slot a video run) and that
the slot's settings are valid sampling settings of that generator. Each problem is one message
naming the recipe file and the slot, e.g. `ad.json: slots.picture.run names ..., a text run`.

`Composer.make(row_key, row)` fills the recipe for the row (studio.compose.recipe.fill) and
generates every slot with its own seed, so the same recipe and row give the same content, and
changing one slot's seed_offset changes that slot only. A text slot whose text fails its guards
(recipe.check_text) is generated again with the next seed, up to the slot's `retries`; when every
try fails, the last text is kept and the ad is marked for review with the reasons.

What each slot was made from (run, checkpoint, seed, settings, prompt, every try) is kept in
`AdContent.lineage()`, which render.write_ad writes beside the ad.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.compose.recipe import FilledSlot, Recipe, Slot, check_text, fill, tidy_text
from studio.compose.template import Spot, file_sha256
from studio.errors import StudioError
from studio.runstore import RunDir, read_json

LINEAGE_FORMAT = 1
# What a slot's kind needs its run's generator to make.
MODALITY_OF_KIND = {"text": "text", "image": "image", "clip": "video"}


@dataclass(frozen=True)
class SlotContent:
    """What one slot holds for one ad: `text` (text slots), `image` (H x W x 3 uint8, image
    slots) or `frames` (T x H x W x 3 uint8) at `fps` (clip slots), and its lineage."""

    name: str
    kind: str
    lineage: dict
    text: str | None = None
    image: np.ndarray | None = field(default=None, compare=False, repr=False)
    frames: np.ndarray | None = field(default=None, compare=False, repr=False)
    fps: float | None = None


@dataclass(frozen=True)
class AdContent:
    """Everything one ad shows, before layout: the slots' content by slot name, and why the ad
    needs a person's review (empty when it does not)."""

    recipe: Recipe
    recipe_document: dict  # the recipe file as read, so the sidecar holds all of it
    row_key: str
    row: dict
    slots: dict[str, SlotContent]
    review: tuple[str, ...] = ()

    def lineage(self) -> dict:
        """The sidecar's content: enough to make this ad again exactly, or with one slot
        changed (edit that slot's seed_offset in `recipe.document` and compose the row again)."""
        template = self.recipe.template
        return {"format": LINEAGE_FORMAT,
                "recipe": {"path": str(self.recipe.path), "seed": self.recipe.seed,
                           "document": self.recipe_document},
                "template": {"name": template.name, "path": str(template.path),
                             "sha256": file_sha256(template.path)},
                "row_key": self.row_key, "row": self.row,
                "slots": {name: content.lineage for name, content in self.slots.items()},
                "review": list(self.review)}


@dataclass
class _LoadedRun:
    path: Path
    generator: Any  # a Generator with its weights loaded
    checkpoint: str  # the checkpoint folder's name, e.g. step_0002000


class Composer:
    """Makes the content of ads from one recipe (see the module's docstring)."""

    def __init__(self, recipe: Recipe, device: str = "cpu", document: dict | None = None,
                 reuse: Composer | None = None):
        """`document`: the recipe as JSON when it is not (yet) the file at recipe.path, as in
        the window's editor. `reuse`: a composer whose loaded runs this one may share (the
        window makes a new composer on every edit; the weights are read once)."""
        self.recipe = recipe
        self.recipe_document = (document if document is not None
                                else read_json(recipe.path, "The recipe file"))
        self.device = device
        self._loaded: dict[tuple[Path, str], _LoadedRun] = {}
        # Only the runs this recipe uses are taken over: the window makes composer after
        # composer, and runs a user tried and left must not stay in memory.
        reusable = reuse._loaded if reuse is not None and reuse.device == device else {}
        self._sample_settings: dict[str, Any] = {}  # slot name -> its checked SampleConfig
        # Every slot is checked before any weights are read: a mistake in the last slot is
        # reported at once, not after the others' runs have loaded.
        for slot in recipe.slots.values():
            self._sample_settings[slot.name] = self._checked_settings(slot)
        for slot in recipe.slots.values():
            self._load(slot, device, reusable)

    def _spot(self, slot: Slot) -> Spot:
        return Spot(str(self.recipe.path)) / "slots" / slot.name

    def _checked_settings(self, slot: Slot):
        """The slot's sampling settings, checked against its run's generator, once the run is
        found to exist and to be of the slot's kind (read from its config, not its weights)."""
        from studio.api import run_generator
        from studio.config import from_dict

        spot = self._spot(slot)
        if not slot.run.exists():
            raise (spot / "run").error(f"names {slot.run}, which does not exist. Train that run "
                                       f"first, or point the slot at an existing run folder (a "
                                       f"relative path is taken from the recipe's folder).")
        if not RunDir.is_run(slot.run):
            raise (spot / "run").error(f"names {slot.run}, which is not a run folder (it has no "
                                       f"config.json). Point the slot at a run folder.")
        try:
            gen_cls = run_generator(RunDir.open(slot.run).config(), slot.run)
        except StudioError as exc:
            raise (spot / "run").error(f"cannot be opened: {exc}") from None
        wanted = MODALITY_OF_KIND[slot.kind]
        if gen_cls.modality != wanted:
            raise (spot / "run").error(
                f"names {slot.run}, a {gen_cls.modality} run (generator '{gen_cls.name}'), but "
                f"'{slot.name}' is {_a(slot.kind)} slot of template "
                f"{self.recipe.template.name}, which needs {_a(wanted)} run. Point it at "
                f"{_a(wanted)} run.")
        settings = dict(slot.settings)
        if slot.stop:
            settings["stop"] = list(slot.stop)
        return from_dict(gen_cls.SampleConfig, settings, f"{spot.file}: {spot.path}.settings")

    def _load(self, slot: Slot, device: str, reusable: dict) -> None:
        """Load the slot's run, once per run and checkpoint (or take it from `reusable`)."""
        from studio.api import load_run

        spot = self._spot(slot)
        key = (slot.run, slot.checkpoint)
        if key not in self._loaded and key in reusable:
            self._loaded[key] = reusable[key]
        if key not in self._loaded:
            checkpoint = None if slot.checkpoint == "latest" else slot.checkpoint
            try:
                _, gen, folder = load_run(str(slot.run), checkpoint, device)
            except StudioError as exc:
                raise (spot / "checkpoint").error(f"'{slot.checkpoint}' of {slot.run} cannot be "
                                                  f"loaded: {exc}") from None
            self._loaded[key] = _LoadedRun(slot.run, gen, folder.name)

    def make(self, row_key: str, row: dict, keep: AdContent | None = None,
             remake: tuple[str, ...] = ()) -> AdContent:
        """The content of the ad for one row: every slot generated, in the recipe's order.
        With `keep` (an earlier ad of the same row), its slots are kept except those named in
        `remake` and those `keep` lacks: the window re-rolls one slot with the others locked."""
        slots, review = {}, []
        for filled in fill(self.recipe, row, str(row_key)):
            if keep is not None and filled.name not in remake and filled.name in keep.slots:
                slots[filled.name] = keep.slots[filled.name]
                review += [why for why in keep.review if why.startswith(f"slots.{filled.name}:")]
                continue
            if filled.kind == "text":
                content, problems = self._text(filled)
                if problems:
                    tries = content.lineage["attempts"]
                    review.append(f"slots.{filled.name}: {'; '.join(problems)} (kept the last of "
                                  f"{len(tries)} tr{'y' if len(tries) == 1 else 'ies'})")
            else:
                content = self._media(filled)
            slots[filled.name] = content
        return AdContent(recipe=self.recipe, recipe_document=self.recipe_document,
                         row_key=str(row_key), row=dict(row), slots=slots, review=tuple(review))

    def _run_of(self, filled: FilledSlot) -> _LoadedRun:
        return self._loaded[(filled.slot.run, filled.slot.checkpoint)]

    def _sample(self, filled: FilledSlot, seed: int):
        """One sample of the slot's run; a prompt or class the generator refuses is reported
        with the slot and row it came from."""
        import torch

        loaded = self._run_of(filled)
        try:
            with torch.no_grad():
                return loaded.generator.sample(self._sample_settings[filled.name], n=1,
                                               seed=seed, prompt=filled.prompt)[0]
        except StudioError as exc:
            key = "prompt" if filled.kind == "text" else "class"
            raise (self._spot(filled.slot) / key).error(
                f"gave {filled.prompt!r} for row {filled.row_key}, which {loaded.path} cannot "
                f"make: {exc}") from None

    def _text(self, filled: FilledSlot) -> tuple[SlotContent, list[str]]:
        """Generate until the guards pass or the retries are spent; keep the last try."""
        tries = []
        for attempt in range(filled.slot.retries + 1):
            seed = filled.seed_for_try(attempt)
            sample = self._sample(filled, seed)
            generated = _continuation(sample.data, filled.prompt)
            cut = sample.meta.get("finish_reason") == "length"  # generators that say so
            text = tidy_text(generated, cut) if filled.slot.tidy else generated.strip()
            problems = check_text(text, filled.slot)
            tries.append({"seed": seed, "generated": generated, "cut_at_length": cut,
                          "text": text, "problems": problems})
            if not problems:
                break
        lineage = {**filled.lineage(attempt), **self._run_lineage(filled), "text": text,
                   "attempts": tries}
        return SlotContent(filled.name, filled.kind, lineage, text=text), problems

    def _media(self, filled: FilledSlot) -> SlotContent:
        sample = self._sample(filled, filled.seed)
        lineage = {**filled.lineage(0), **self._run_lineage(filled)}
        pixels = _rgb(np.asarray(sample.data), ndim=3 if filled.kind == "image" else 4)
        if filled.kind == "image":
            return SlotContent(filled.name, filled.kind, lineage, image=pixels)
        fps = float(sample.meta.get("fps", 8.0))
        lineage["fps"] = fps
        return SlotContent(filled.name, filled.kind, lineage, frames=pixels, fps=fps)

    def _run_lineage(self, filled: FilledSlot) -> dict:
        loaded = self._run_of(filled)
        return {"checkpoint_used": loaded.checkpoint, "generator": loaded.generator.name,
                "generator_version": getattr(loaded.generator, "version", None)}


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _continuation(text: str, prompt: str | None) -> str:
    """The text generator's sample starts with its prompt; the ad shows what follows it."""
    if prompt and text.startswith(prompt):
        return text[len(prompt):]
    return text


def _rgb(pixels: np.ndarray, ndim: int) -> np.ndarray:
    """Grey (no channel axis, or one channel) and RGBA pixels as RGB, uint8; `ndim` counts the
    channel axis (3 for an image, 4 for a clip)."""
    if pixels.ndim == ndim - 1:
        pixels = pixels[..., None]
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return np.ascontiguousarray(pixels[..., :3], dtype=np.uint8)
