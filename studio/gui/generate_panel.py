"""The Generation panel: pick a run and a checkpoint, set the sampling parameters, generate off
the GUI thread (text streams token by token, sample after sample; Stop ends it within a token
or a batch), keep a history of outputs with their lineage across restarts, recall an output's
settings and export it (TXT/JSONL, PNG, GIF/MP4 through studio/export.py).

The panel works from the plugin contract and the run folder only: the parameter form is built
from the run's generator's `SampleConfig`, and outputs are shown by their kind, so a plugin
generator gets all of this without writing UI. It follows the session's current run, and
choosing a run here makes it the current run.

Text outputs that explain themselves are shown explained (studio/gui/explain_view.py): with
the `explain` sampling setting ("Explain tokens"), each token on the colour of its probability;
a classifier's answer as class bars (and, explained, the input's attributions); a tagger's as
its entities. A generator with `attention(text, layer, head)` also shows its attention heads.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QListWidget, QListWidgetItem, QMessageBox, QPlainTextEdit,
                               QPushButton, QScrollArea, QSpinBox, QSplitter, QStackedWidget,
                               QStyle, QStyleOptionComboBox, QStylePainter, QVBoxLayout, QWidget)

from studio.config import from_dict, to_dict
from studio.contract import Generator, Sample
from studio.errors import StudioError
from studio.export import (EXPORT_FORMATS, HistoryStore, animation_frames, export,
                           frames_per_second, is_interpolation, output_kind, shorten)
from studio.gui.config_form import ConfigForm
from studio.gui.explain_view import AttentionDialog, ExplanationView
from studio.gui.messages import for_window
from studio.gui.views import SampleGrid, TextView
from studio.gui.workers import Task, start
from studio.runstore import RunDir

EMPTY_RUNS = "No trained runs yet — train one in the Train tab"
MAX_SEED = 2**31 - 1
# Images are made this many at a time and Stop is checked between batches, so Stop waits for
# at most an eighth of the largest request (64), however slow the model. 8 keeps the speed of
# batched sampling: the demo GAN makes 8 images in 12 ms and 64 in 96 ms on two CPU cores
# (measured), the same 1.5 ms per image.
IMAGE_BATCH = 8
# A clip is a batch of its own frames already, and one takes as long as dozens of images: clips
# are made one at a time, so Stop waits for at most the clip being rendered.
SAMPLE_BATCH = {"video": 1}
EXPLAIN_FIELD = "explain"  # the sampling setting that asks a text generator to explain itself


def show_error(parent: QWidget | None, message: str) -> None:
    """Tell the user what went wrong, in the window's words. Module-level so tests can
    intercept it."""
    QMessageBox.warning(parent, "Generation", message)


def _say(parent: QWidget | None, message: str) -> None:
    show_error(parent, for_window(message))


# --- outputs and their lineage (plain data) ---------------------------------------------------

class OutputEntry:
    """One press of Generate: the samples and where they came from. An entry read back from the
    history folder loads its samples the first time they are asked for."""

    def __init__(self, samples: list[Sample] | None, lineage: dict, created: float | None = None,
                 folder: Path | None = None, kind: str | None = None, made: int | None = None):
        self._samples = samples
        self.lineage = lineage  # run, checkpoint, generator, generator_version, params, seed,
        #                         prompt, count, time, device, stopped
        self.created = created if created is not None else time.time()
        self.folder = folder  # where the history keeps it (None until saved)
        self._kind = kind
        self._made = made

    @classmethod
    def from_history(cls, doc: dict) -> "OutputEntry":
        return cls(None, doc["lineage"], doc.get("created"), doc["folder"],
                   doc.get("output_kind"), doc.get("made"))

    @property
    def samples(self) -> list[Sample]:
        if self._samples is None:
            self._samples = HistoryStore.load_samples(self.folder)
        return self._samples

    @property
    def kind(self) -> str:
        """text, image, video or interpolation."""
        return self._kind or output_kind(self.samples)

    @property
    def made(self) -> int:
        return self._made if self._samples is None and self._made is not None else len(self.samples)

    @property
    def run_gone(self) -> bool:
        return not Path(self.lineage["run"]).exists()

    def count_text(self) -> str:
        if self.kind == "interpolation":
            return f"{self.made} frames (interpolation)"
        asked = self.lineage.get("count") or self.made
        noun = self.kind + ("s" if asked != 1 else "")
        return f"{self.made} of {asked} {noun}" if self.made != asked else f"{asked} {noun}"

    def title(self) -> str:
        lin = self.lineage
        today = time.strftime("%Y-%m-%d") == time.strftime("%Y-%m-%d", time.localtime(self.created))
        clock = time.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M", time.localtime(self.created))
        prompt = lin.get("prompt")
        quoted = f" · “{shorten(prompt, 24)}”" if prompt else ""
        stopped = " · stopped" if lin.get("stopped") else ""
        gone = " · run deleted" if self.run_gone else ""
        return (f"{clock} · {Path(lin['run']).name} · {lin['checkpoint']} · seed {lin['seed']} · "
                f"{self.count_text()}{quoted}{stopped}{gone}")

    def describe(self) -> str:
        """The lineage as a few readable lines."""
        lin = self.lineage
        params = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}"
                           for k, v in lin["params"].items()) or "none"
        lines = [f"Run {lin['run']} · checkpoint {lin['checkpoint']} · generator "
                 f"{lin['generator']} {lin['generator_version']}",
                 f"Seed {lin['seed']} · {self.count_text()} · {lin['time']} · {lin['device']}"
                 + (" · stopped early" if lin.get("stopped") else ""),
                 f"Parameters: {params}"]
        if lin.get("prompt"):
            lines.append(f"Prompt: {shorten(lin['prompt'], 200)}")
        if self.run_gone:
            lines.append("The run has been deleted since: this output and its lineage are kept "
                         "here, but its settings cannot be recalled.")
        return "\n".join(lines)


def sample_header(index: int, count: int, seed: int) -> str:
    """The line above each text of a multi-sample output."""
    return f"— sample {index + 1} of {count} · seed {seed} —"


# --- loading and generating, off the GUI thread ------------------------------------------------

@dataclass
class Request:
    """Everything one generation needs, copied from the form when Generate is pressed."""

    run: str
    checkpoint: str  # "latest", "best" or a checkpoint name
    device: str
    params: dict
    seed: int
    count: int
    prompt: str | None
    stream: bool  # text: shown token by token, one sample after another


class GeneratorCache:
    """Loaded generators by (run, checkpoint folder, device), the few most recent kept: loading
    is the slow part, and people generate many times from the same checkpoint."""

    def __init__(self, keep: int = 3):
        self.keep = keep
        self._loaded: OrderedDict = OrderedDict()
        self._lock = threading.Lock()  # tasks run on pool threads

    def get(self, run: str, checkpoint: str, device: str):
        """(generator, checkpoint folder). "latest" resolves anew each time, so a run that
        is still training gives its newest weights."""
        from studio import api
        folder = RunDir.open(Path(run)).resolve_checkpoint(checkpoint)
        key = (str(Path(run).resolve()), folder.name, device)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            _, gen, folder = api.load_run(run, folder.name, device)
            self._loaded[key] = (gen, folder)
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
            return gen, folder


def stream_start(gen, prompt: str | None) -> str:
    """What a streamed sample's text starts with, so that it equals what `sample` returns.

    The default `Generator.stream` yields whole samples; a text generator's stream is the new
    text, which its `sample` puts after the prompt (docs/plugins.md, section 6), as the plugin
    template does. The built-in text generator starts from a newline when there is no prompt,
    and runs trained on prompt/response pairs answer with the response alone."""
    from generators.text import TextGenerator  # loaded already: the window lists it

    if type(gen).stream is Generator.stream:
        return ""
    if isinstance(gen, TextGenerator):
        return "" if gen.format == "pairs" else ("\n" if prompt is None else prompt)
    return prompt or ""


def answers_text(gen) -> bool:
    """Whether the generator answers a text rather than continuing it: a classifier's or
    tagger's answer is the same whatever the seed."""
    from generators.text import TextGenerator

    return isinstance(gen, TextGenerator) and gen.task is not None


def answers_whole(gen, params) -> bool:
    """Whether a text request is made with `sample` rather than streamed. What an explained
    sample or a classifier's or tagger's answer shows is in its meta (token probabilities,
    class probabilities, entities), and `stream` yields text only."""
    return bool(getattr(params, EXPLAIN_FIELD, False)) or answers_text(gen)


def produce(ctx, cache: GeneratorCache, request: Request) -> "OutputEntry | None":
    """The task: load (or reuse) the generator, then stream texts or sample in batches.
    Progress values are ("stage", text), ("start", (index, header, text the sample begins
    with)), ("piece", text) and ("made", (done, count)). Returns None when stopped before
    anything was made."""
    import torch

    ctx.progress(("stage", "Loading the model…"))
    gen, folder = cache.get(request.run, request.checkpoint, request.device)
    if ctx.cancelled:
        return None
    params = from_dict(gen.SampleConfig, request.params, "sampling settings")
    ctx.progress(("stage", "Generating…"))
    with torch.no_grad():
        if request.stream and answers_whole(gen, params):
            samples, stopped = _texts_one_by_one(ctx, gen, params, request)
        elif request.stream:
            samples, stopped = _stream_texts(ctx, gen, params, request)
        else:
            samples, stopped = _sample_in_batches(ctx, gen, params, request)
    if not samples:
        return None
    for sample in samples:
        sample.meta.update(run=request.run, checkpoint=folder.name, generator=gen.name)
    lineage = {"run": request.run, "checkpoint": folder.name, "generator": gen.name,
               "generator_version": gen.version, "params": to_dict(params),
               "seed": request.seed, "prompt": request.prompt, "count": request.count,
               "time": time.strftime("%Y-%m-%d %H:%M:%S"), "device": str(gen.device),
               "stopped": stopped, "note": gen.weights_note}  # what is damaged in the checkpoint
    return OutputEntry(samples, lineage)


def _stream_texts(ctx, gen, params, request: Request) -> tuple[list[Sample], bool]:
    """`count` texts, one after another, sample i from seed + i, each token shown as it comes;
    Stop is checked after every token. The seeds make each text the one `sample(n=1)` gives
    for its seed."""
    samples = []
    for index in range(request.count):
        if ctx.cancelled:
            return samples, True
        seed = request.seed + index
        start_text = stream_start(gen, request.prompt)
        header = sample_header(index, request.count, seed) if request.count > 1 else ""
        ctx.progress(("start", (index, header, start_text)))
        pieces = []
        # closing(): a generator left suspended mid-stream would hold its model context.
        with contextlib.closing(gen.stream(params, seed=seed, prompt=request.prompt)) as stream:
            for piece in stream:
                pieces.append(piece)
                ctx.progress(("piece", piece))
                if ctx.cancelled:
                    break
        samples.append(Sample("text", start_text + "".join(pieces),
                              {"prompt": request.prompt, "seed": seed, "index": index,
                               "params": to_dict(params)}))
        if ctx.cancelled:
            return samples, True
    return samples, False


def _texts_one_by_one(ctx, gen, params, request: Request) -> tuple[list[Sample], bool]:
    """`count` texts made whole, sample i from seed + i as `_stream_texts` makes them; Stop is
    checked between texts. A classifier or tagger is asked once, as `studio generate` asks
    it: its answer does not change with the seed."""
    if answers_text(gen):
        samples = gen.sample(params, n=request.count, seed=request.seed, prompt=request.prompt)
        ctx.progress(("made", (len(samples), request.count)))
        return samples, False
    samples: list[Sample] = []
    for index in range(request.count):
        if ctx.cancelled:
            return samples, True
        made = gen.sample(params, n=1, seed=request.seed + index, prompt=request.prompt)
        for sample in made:
            sample.meta.setdefault("seed", request.seed + index)
            sample.meta["index"] = index
        samples += made
        ctx.progress(("made", (len(samples), request.count)))
    return samples, False


def _sample_in_batches(ctx, gen, params, request: Request) -> tuple[list[Sample], bool]:
    """`count` samples, a batch at a time (IMAGE_BATCH; clips one by one), batch b from seed +
    its first index; Stop is checked between batches. Up to a batch this is exactly
    `sample(n=count, seed)`."""
    samples: list[Sample] = []
    batch_size = SAMPLE_BATCH.get(getattr(gen, "modality", "image"), IMAGE_BATCH)
    while len(samples) < request.count:
        asked = min(batch_size, request.count - len(samples))
        batch = gen.sample(params, n=asked, seed=request.seed + len(samples), prompt=request.prompt)
        if len(batch) != asked or is_interpolation(batch):
            # Not one sample per n: the generator makes its output as a whole (the frames of an
            # interpolation, one grid of all the samples), so it cannot come in batches.
            if len(batch) != asked and asked < request.count and not is_interpolation(batch):
                batch = gen.sample(params, n=request.count, seed=request.seed,
                                   prompt=request.prompt)
            ctx.progress(("made", (request.count, request.count)))
            return batch, False
        samples += batch
        ctx.progress(("made", (len(samples), request.count)))
        if ctx.cancelled and len(samples) < request.count:
            return samples, True
    return samples, False


# --- the panel ---------------------------------------------------------------------------------

def _same_path(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


class RunCombo(QComboBox):
    """The run picker. Its text is elided in the middle, so the run's name and its status and
    step both stay readable when the panel is narrow; the tooltip has the full path."""

    def shown_text(self, width: int) -> str:
        return self.fontMetrics().elidedText(self.currentText(), Qt.TextElideMode.ElideMiddle, width)

    def paintEvent(self, event) -> None:
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        field = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                            QStyle.SubControl.SC_ComboBoxEditField, self)
        option.currentText = self.shown_text(field.width())
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)


class GeneratePanel(QWidget):
    generation_finished = Signal(object)  # an OutputEntry, as it joins the history
    streamed = Signal(str)  # each piece of text, as it is shown

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.cache = GeneratorCache()
        self.history_store = HistoryStore(session.runs_folder)
        self.history: list[OutputEntry] = []  # oldest first; the list shows the newest first
        self.task: Task | None = None
        self.rows: list[dict] = []  # the runs in the combo (rows of session.all_runs())
        self.opened_rows: list[dict] = []  # runs opened from elsewhere that the list lacks
        self.forms: dict[str, ConfigForm] = {}  # one per generator, so values survive switching
        self.generator_cls = None
        self.run_task: str | None = None  # a text run's task: generate, classify or tag
        self.run_problem: str | None = None  # why the selected run cannot generate
        self.attention_dialog: AttentionDialog | None = None
        self._checkpoints_of: str | None = None  # the run the checkpoint combo lists
        self._history_loaded = False
        self.last_export_dir = Path.home()
        self._build()
        session.runs_changed.connect(self.refresh_runs)
        session.run_changed.connect(self._follow_current_run)
        session.theme_changed.connect(self._restyle)
        self.refresh_runs()
        if session.current_run:
            self.select_run(session.current_run)
        self.load_history()

    # -- layout
    def _build(self) -> None:
        self.run_combo = RunCombo()
        self.run_combo.setToolTip("The trained run to generate from (runs folder and demo runs)")
        self.run_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_combo.setMinimumContentsLength(18)
        self.run_combo.view().setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.run_combo.currentIndexChanged.connect(self._on_run_selected)
        self.run_combo.activated.connect(self._on_run_chosen)  # by the user only
        self.empty_label = QLabel(EMPTY_RUNS)
        self.empty_label.setWordWrap(True)
        self.empty_label.setStyleSheet("color: palette(mid); font-style: italic;")
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.setToolTip("Which weights to use: the latest checkpoint, the best "
                                         "on held-out data, or a particular step")
        self.checkpoint_combo.currentIndexChanged.connect(self._update_state)

        self.prompt_label = QLabel("Prompt")
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setPlaceholderText("Text to continue (empty: start from scratch)")
        self.prompt_edit.setToolTip("The text the model continues, or the question a "
                                    "prompt/response run answers (Ctrl+Enter generates)")
        self.prompt_edit.setMinimumHeight(60)
        self.prompt_edit.setMaximumHeight(120)

        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, MAX_SEED)
        self.seed_spin.setToolTip("Random seed: the same seed and settings give the same output "
                                  "(several samples use seed, seed+1, …)")
        self.random_seed_button = QPushButton("New seed")
        self.random_seed_button.setToolTip("Pick a random seed")
        self.random_seed_button.clicked.connect(self._new_seed)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_spin, 1)
        seed_row.addWidget(self.random_seed_button)
        self.count_spin = QSpinBox()
        self.count_spin.setRange(1, 64)
        self.count_spin.setToolTip("How many samples to make (texts stream one after another)")
        # The generator's `explain` setting, here rather than among the sampling parameters
        # (whose row of it is hidden): one control, named for what it shows.
        self.explain_box = QCheckBox("Explain tokens")
        self.explain_box.toggled.connect(self._on_explain_toggled)

        pick = QFormLayout()
        pick.addRow("Run", self.run_combo)
        pick.addRow(self.empty_label)
        pick.addRow("Checkpoint", self.checkpoint_combo)
        pick.addRow(self.prompt_label, self.prompt_edit)
        pick.addRow("Seed", seed_row)
        pick.addRow("Count", self.count_spin)
        pick.addRow("", self.explain_box)

        self.form_stack = QStackedWidget()
        self.no_params_label = QLabel("This generator takes no sampling parameters.")
        self.no_params_label.setWordWrap(True)
        self.form_stack.addWidget(self.no_params_label)
        params_box = QGroupBox("Sampling parameters")
        params_box.setToolTip("The generator's own sampling settings (hover a field for help)")
        QVBoxLayout(params_box).addWidget(self.form_stack)

        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet("color: #d9534f;")
        self.generate_button = QPushButton("Generate")
        self.generate_button.setDefault(True)
        self.generate_button.clicked.connect(self.generate)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop generating (Ctrl+.): what was made so far is kept")
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 1)
        buttons.addWidget(self.stop_button)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        # Ctrl+Enter generates while this panel (or anything in it) has the focus; Ctrl+G
        # belongs to the window.
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self, self.generate,
                      context=Qt.ShortcutContext.WidgetWithChildrenShortcut)

        # The settings scroll when the window is short; the buttons below them never do.
        settings = QWidget()
        settings_layout = QVBoxLayout(settings)
        settings_layout.setContentsMargins(0, 0, 0, 0)
        settings_layout.addLayout(pick)
        settings_layout.addWidget(params_box)
        settings_layout.addStretch(1)
        settings_scroll = QScrollArea()
        settings_scroll.setWidgetResizable(True)
        settings_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        settings_scroll.setWidget(settings)
        controls = QWidget()
        controls.setMinimumWidth(320)
        left = QVBoxLayout(controls)
        left.setContentsMargins(0, 0, 0, 0)
        left.addWidget(settings_scroll, 1)
        left.addWidget(self.problem_label)
        left.addLayout(buttons)
        left.addWidget(self.status_label)

        # Output: texts in the text view (streamed, wrapped, prompts in bold), everything else
        # in the grid, which scales images and players to the space there is.
        self.text_view = TextView()
        self.text_view.setToolTip("The generated text (the prompt in bold)")
        self.grid = SampleGrid(columns=None, size=256)
        self.grid.setToolTip("The generated samples")
        self.grid.set_samples([], "Generated output appears here: pick a run, set the "
                                  "parameters and press Generate.")
        self.explanation_view = ExplanationView()
        self.output_stack = QStackedWidget()
        self.output_stack.addWidget(self.grid)
        self.output_stack.addWidget(self.text_view)
        self.output_stack.addWidget(self.explanation_view)
        self.output_stack.setMinimumHeight(160)
        self.lineage_label = QLabel("")
        self.lineage_label.setWordWrap(True)
        self.lineage_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.copy_button = QPushButton("Copy text")
        self.copy_button.setToolTip("Copy the generated text to the clipboard")
        self.copy_button.clicked.connect(self.copy_text)
        self.show_explanation_box = QCheckBox("Show explanation")
        self.show_explanation_box.setChecked(True)
        self.show_explanation_box.setToolTip("Show this output explained (token probabilities, "
                                             "class bars, entities); off: the plain text")
        self.show_explanation_box.toggled.connect(self._on_show_explanation_toggled)
        self.show_explanation_box.setVisible(False)
        self.attention_button = QPushButton("Attention…")
        self.attention_button.setToolTip("See how the model's attention heads read a text: "
                                         "the shown sample's, or the prompt")
        self.attention_button.clicked.connect(self.open_attention)
        below_output = QHBoxLayout()
        below_output.addWidget(self.lineage_label, 1)
        for widget in (self.show_explanation_box, self.attention_button, self.copy_button):
            below_output.addWidget(widget, 0, Qt.AlignmentFlag.AlignTop)
        output_box = QWidget()
        output_layout = QVBoxLayout(output_box)
        output_layout.setContentsMargins(0, 0, 0, 0)
        output_layout.addWidget(self.output_stack, 1)
        output_layout.addLayout(below_output)

        self.history_list = QListWidget()
        self.history_list.setToolTip("Outputs, newest first, kept across restarts: select one "
                                     "to see it again with its lineage")
        self.history_list.currentRowChanged.connect(self._on_history_selected)
        self.recall_button = QPushButton("Recall")
        self.recall_button.setToolTip("Put this output's run, checkpoint, parameters, seed and "
                                      "prompt back into the form")
        self.recall_button.clicked.connect(lambda: self.recall(self.selected_entry()))
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save this output with its lineage: text as TXT or JSONL, "
                                      "images as PNG, video and interpolations as GIF or MP4")
        self.export_button.clicked.connect(self._export_clicked)
        history_buttons = QHBoxLayout()
        history_buttons.addStretch(1)
        history_buttons.addWidget(self.recall_button)
        history_buttons.addWidget(self.export_button)
        history_box = QGroupBox("History")
        history_layout = QVBoxLayout(history_box)
        history_layout.addWidget(self.history_list, 1)
        history_layout.addLayout(history_buttons)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(output_box)
        right.addWidget(history_box)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 1)
        right.setChildrenCollapsible(False)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(controls)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        split.setSizes([360, 700])
        QVBoxLayout(self).addWidget(split)

    # -- runs and checkpoints
    def refresh_runs(self) -> None:
        """Fill the run combo from the session, keeping the selected run."""
        previous = self.selected_run()
        try:
            rows = self.session.all_runs()
        except StudioError as exc:
            rows = []
            self.status_label.setText(for_window(str(exc)))
        known = [r["run"] for r in rows]
        self.opened_rows = [r for r in self.opened_rows if Path(r["run"]).is_dir()]  # not deleted since
        rows += [r for r in self.opened_rows if not any(_same_path(r["run"], k) for k in known)]
        self.rows = rows
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        for row in rows:
            status = row.get("status", "?")
            name = row.get("name") or Path(row["run"]).name
            self.run_combo.addItem(f"{name} — {row['generator']} · {status} · "
                                   f"step {row.get('step', 0)}", row["run"])
            self.run_combo.setItemData(self.run_combo.count() - 1, row["run"],
                                       Qt.ItemDataRole.ToolTipRole)
        index = next((i for i, r in enumerate(rows) if previous and _same_path(r["run"], previous)), 0)
        self.run_combo.setCurrentIndex(index if rows else -1)
        self.run_combo.blockSignals(False)
        self.run_combo.setEnabled(bool(rows))
        self.empty_label.setVisible(not rows)
        # The list opens wide enough for its longest entry, whatever the combo's width.
        self.run_combo.view().setMinimumWidth(self.run_combo.view().sizeHintForColumn(0) + 24)
        self._on_run_selected()

    def selected_run(self) -> str | None:
        return self.run_combo.currentData()

    def select_run(self, path: str) -> None:
        """Show `path` (e.g. a run opened in the Runs tab); a run outside the runs folder is
        added to the list."""
        path = str(path)
        if not any(_same_path(r["run"], path) for r in self.rows):
            self.refresh_runs()
        if not any(_same_path(r["run"], path) for r in self.rows):
            try:
                run = RunDir.open(Path(path))
                info = run.info()
                self.opened_rows.append({"run": path, "generator": run.config()["generator"],
                                         "status": run.status(), "step": info.get("step", 0)})
            except StudioError as exc:
                self.status_label.setText(for_window(str(exc)))
                return
            self.refresh_runs()
        index = next(i for i, r in enumerate(self.rows) if _same_path(r["run"], path))
        self.run_combo.setCurrentIndex(index)

    def _follow_current_run(self, path: str) -> None:
        """The session's current run changed (Runs › Open, a new run, the generator picker):
        show it. "" (no current run) leaves the list as it is."""
        if path and not (self.selected_run() and _same_path(self.selected_run(), path)):
            self.select_run(path)

    def _on_run_chosen(self, index: int) -> None:
        """The user picked a run here: it becomes the current run of the whole window. The
        session's answer (run_changed) finds it already selected, so nothing loops."""
        path = self.run_combo.itemData(index)
        if path and not (self.session.current_run and _same_path(self.session.current_run, path)):
            self.session.open_run(path)

    def _row(self) -> dict | None:
        index = self.run_combo.currentIndex()
        return self.rows[index] if 0 <= index < len(self.rows) else None

    def _on_run_selected(self, *_) -> None:
        row = self._row()
        self.run_problem = None
        self.generator_cls = None
        self.run_task = None
        self.run_combo.setToolTip(row["run"] if row else "The trained run to generate from")
        if row is not None:
            try:
                # As api.load_run finds it: a missing plugin is named, with the version to install.
                from studio import api
                run = RunDir.open(Path(row["run"]))
                self.generator_cls = api.run_generator(run.config(), run.path, self.session.registry)
                self.run_task = (run.config().get("config") or {}).get("task")
            except StudioError as exc:
                self.run_problem = for_window(str(exc))
        self._fill_checkpoints(row)
        self._show_form()
        is_text = self.generator_cls is not None and self.generator_cls.modality == "text"
        self.prompt_label.setVisible(is_text)
        self.prompt_edit.setVisible(is_text)
        self._sync_explain_box()
        self._update_state()

    def _fill_checkpoints(self, row: dict | None) -> None:
        # Keep the choice when the same run is refreshed; another run starts from its latest.
        same_run = row is not None and self._checkpoints_of is not None and \
            _same_path(row["run"], self._checkpoints_of)
        previous = self.checkpoint_combo.currentData() if same_run else None
        self._checkpoints_of = row["run"] if row else None
        self.checkpoint_combo.blockSignals(True)
        self.checkpoint_combo.clear()
        checkpoints = RunDir(Path(row["run"])).checkpoints() if row else []
        if checkpoints:
            best = RunDir(Path(row["run"])).best_checkpoint()
            self.checkpoint_combo.addItem(f"Latest ({checkpoints[-1].name})", "latest")
            if best:
                self.checkpoint_combo.addItem(f"Best held-out ({best})", "best")
            for ckpt in reversed(checkpoints):
                self.checkpoint_combo.addItem(f"{ckpt.name} (step {ckpt.step})", ckpt.name)
            index = self.checkpoint_combo.findData(previous)
            self.checkpoint_combo.setCurrentIndex(max(index, 0))
        elif row is not None and self.run_problem is None:
            self.run_problem = (f"{Path(row['run']).name} has no checkpoint yet: generate once "
                                f"it has saved one.")
        self.checkpoint_combo.blockSignals(False)
        self.checkpoint_combo.setEnabled(bool(checkpoints))

    # -- parameters
    @property
    def form(self) -> ConfigForm | None:
        widget = self.form_stack.currentWidget()
        return widget if isinstance(widget, ConfigForm) else None

    def _show_form(self) -> None:
        cls = self.generator_cls
        if cls is None or not _has_fields(cls.SampleConfig):
            self.form_stack.setCurrentWidget(self.no_params_label)
            return
        if cls.name not in self.forms:
            form = ConfigForm(cls.SampleConfig)
            form.changed.connect(self._on_form_changed)
            if EXPLAIN_FIELD in form.widgets:  # shown as the panel's explain_box instead
                form.layout().setRowVisible(form.widgets[EXPLAIN_FIELD], False)
            self.forms[cls.name] = form
            self.form_stack.addWidget(form)
        self.form_stack.setCurrentWidget(self.forms[cls.name])

    def _on_form_changed(self) -> None:
        self._sync_explain_box()
        self._update_state()

    def _explain_field(self) -> QCheckBox | None:
        """The form's widget of the `explain` setting, when the generator has it."""
        widget = self.form.widgets.get(EXPLAIN_FIELD) if self.form is not None else None
        return widget if isinstance(widget, QCheckBox) else None

    def _sync_explain_box(self) -> None:
        """The explain check box shows the form's setting, named for what the run explains:
        a generation run its tokens, a classifier its answer (a tagger has nothing to add)."""
        field = self._explain_field()
        self.explain_box.setVisible(field is not None and self.run_task != "tag")
        if self.run_task == "classify":
            self.explain_box.setText("Explain the answer")
            self.explain_box.setToolTip("Also show which parts of the text led to the answer "
                                        "(integrated gradients; each text takes longer)")
        else:
            self.explain_box.setText("Explain tokens")
            self.explain_box.setToolTip("Colour each generated token by the probability the "
                                        "model gave it, with the likeliest alternatives on "
                                        "hover (texts then appear when made, not token by token)")
        self.explain_box.blockSignals(True)
        self.explain_box.setChecked(field is not None and field.isChecked())
        self.explain_box.blockSignals(False)

    def _on_explain_toggled(self, checked: bool) -> None:
        field = self._explain_field()
        if field is not None:
            field.setChecked(checked)  # the form says changed: state and box follow

    def _new_seed(self) -> None:
        import random
        self.seed_spin.setValue(random.randint(0, MAX_SEED))

    # -- state
    @property
    def busy(self) -> bool:
        return self.task is not None

    def problem(self) -> str | None:
        """Why Generate cannot run now, or None."""
        if not self.rows:
            return EMPTY_RUNS
        if self.run_problem:
            return self.run_problem
        if self.form is not None:
            _, problem = self.form.validate()
            return problem
        return None

    def _update_state(self, *_) -> None:
        problem = None if self.busy else self.problem()
        self.problem_label.setText(problem or "")
        self.problem_label.setVisible(bool(problem))
        self.generate_button.setEnabled(not self.busy and problem is None)
        self.generate_button.setToolTip(
            "Generating…" if self.busy else
            f"Cannot generate: {problem}" if problem else
            "Generate with these settings (Ctrl+Enter)")
        self.stop_button.setEnabled(self.busy and not self.task.context.cancelled)
        entry = self.selected_entry()
        self.recall_button.setEnabled(entry is not None)
        self.export_button.setEnabled(entry is not None and entry.made > 0)
        self.copy_button.setVisible(self.output_stack.currentWidget() in (self.text_view,
                                                                          self.explanation_view))
        cls = self.generator_cls
        self.attention_button.setVisible(cls is not None and callable(getattr(cls, "attention", None)))
        self.attention_button.setEnabled(self.run_problem is None and bool(self.rows))

    # -- generating
    def _request(self) -> Request:
        is_text = self.generator_cls.modality == "text"
        prompt = self.prompt_edit.toPlainText() if is_text else ""
        return Request(run=self.selected_run(), checkpoint=self.checkpoint_combo.currentData(),
                       device=self.session.settings.default_device or "auto",
                       params=self.form.config_values() if self.form is not None else {},
                       seed=self.seed_spin.value(), count=self.count_spin.value(),
                       prompt=prompt or None, stream=is_text)

    def generate(self) -> bool:
        """Start generating with the form's settings; False when it cannot start now."""
        if self.busy or self.problem() is not None:
            return False
        request = self._request()
        task = Task(produce, self.cache, request)
        task.signals.progress.connect(self._on_progress)
        task.signals.done.connect(self._on_done)
        task.signals.failed.connect(self._on_failed)
        task.signals.finished.connect(self._on_finished)
        self.task = task
        # The last output goes at once: what shows from now on is this request's.
        self.show_explanation_box.setVisible(False)
        if request.stream:
            self.text_view.setPlainText("")
            self.output_stack.setCurrentWidget(self.text_view)
        else:
            self.grid.set_samples([], "Generating…")
            self.output_stack.setCurrentWidget(self.grid)
        self.lineage_label.setText("")
        self.status_label.setText("Starting…")
        self._update_state()
        start(task)
        return True

    def stop(self) -> None:
        """Stop generating: texts end within a token, images within a batch; what was made
        so far is kept."""
        if self.task is not None:
            self.task.cancel()
            self.status_label.setText("Stopping…")
            self._update_state()

    def _on_progress(self, value) -> None:
        kind, payload = value
        if kind == "stage":
            if not (self.task and self.task.context.cancelled):
                self.status_label.setText(payload)
        elif kind == "start":
            index, header, start_text = payload
            if header:
                self.text_view.append_piece(("\n\n" if index else "") + header + "\n")
            self.text_view.append_piece(start_text, bold=True)
        elif kind == "piece":
            self.text_view.append_piece(payload)
            self.streamed.emit(payload)
        elif kind == "made":
            done, count = payload
            if not (self.task and self.task.context.cancelled):
                self.status_label.setText(f"Generating… {done} of {count} made.")

    def _on_done(self, entry: OutputEntry | None) -> None:
        if entry is None:
            self.status_label.setText("Stopped before anything was made.")
            return
        self._remember(entry)
        self.history_list.setCurrentRow(0)  # shows it, with its lineage
        if entry.lineage["stopped"]:
            text = f"Stopped: kept {entry.count_text()}."
        else:
            text = "Done."
        note = entry.lineage.get("note")
        self.status_label.setText(f"{text} Note: {note}." if note else text)
        self.generation_finished.emit(entry)

    def _on_failed(self, message: str) -> None:
        self.status_label.setText("Generation failed.")
        _say(self, message)

    def _on_finished(self) -> None:
        self.task = None
        self._update_state()

    # -- history
    def load_history(self) -> None:
        """The outputs kept in the runs folder, their samples read when first shown."""
        if self._history_loaded:
            return
        self._history_loaded = True
        for doc in self.history_store.load_index():
            self._add_to_list(OutputEntry.from_history(doc))

    def _remember(self, entry: OutputEntry) -> None:
        """Add an output to the history, and keep it on disk (a full disk or a read-only runs
        folder costs only the keeping: the output stays for this session)."""
        try:
            entry.folder = self.history_store.save(entry.samples, entry.lineage, entry.created)
        except StudioError as exc:
            self.lineage_label.setText(f"Not kept for later sessions: {for_window(str(exc))}")
        self._add_to_list(entry)
        self._drop_pruned()

    def _add_to_list(self, entry: OutputEntry) -> None:
        self.history.append(entry)
        item = QListWidgetItem(entry.title())
        item.setToolTip(entry.describe())
        self.history_list.insertItem(0, item)

    def _drop_pruned(self) -> None:
        """Entries the store removed (beyond its limit) leave the list too."""
        while len(self.history) > self.history_store.limit:
            self.history.pop(0)
            self.history_list.takeItem(self.history_list.count() - 1)

    def selected_entry(self) -> OutputEntry | None:
        row = self.history_list.currentRow()
        # The list shows the newest first; self.history keeps them oldest first.
        return self.history[len(self.history) - 1 - row] if 0 <= row < len(self.history) else None

    def _on_history_selected(self, *_) -> None:
        entry = self.selected_entry()
        if entry is not None:
            try:
                self.show_entry(entry)
            except StudioError as exc:
                self.grid.set_samples([], str(exc))
                self.output_stack.setCurrentWidget(self.grid)
                self.lineage_label.setText(entry.describe())
        self._update_state()

    def show_entry(self, entry: OutputEntry) -> None:
        samples = entry.samples
        if entry.kind == "text":
            headers = ([sample_header(i, len(samples), s.meta.get("seed", entry.lineage["seed"] + i))
                        for i, s in enumerate(samples)] if len(samples) > 1 else None)
            self.text_view.show_texts([s.data for s in samples],
                                      [entry.lineage.get("prompt")] * len(samples), headers)
            # Copy and export keep the plain text; what explains it is shown beside.
            explained = self.explanation_view.show_samples(samples, headers)
            self.show_explanation_box.setVisible(explained)
            self.output_stack.setCurrentWidget(
                self.explanation_view if explained and self.show_explanation_box.isChecked()
                else self.text_view)
        elif entry.kind == "interpolation":  # played as the animation it is
            clip = Sample("video", animation_frames(samples), {"fps": frames_per_second(samples)})
            self.grid.set_samples([clip])
            self.output_stack.setCurrentWidget(self.grid)
        else:
            self.grid.set_samples(samples, "Stopped before anything was made.")
            self.output_stack.setCurrentWidget(self.grid)
        if entry.kind != "text":
            self.show_explanation_box.setVisible(False)
        self.lineage_label.setText(entry.describe())

    def _on_show_explanation_toggled(self, checked: bool) -> None:
        if self.output_stack.currentWidget() in (self.text_view, self.explanation_view) \
                and not self.show_explanation_box.isHidden():
            self.output_stack.setCurrentWidget(self.explanation_view if checked else self.text_view)
            self._update_state()

    def _restyle(self, *_) -> None:
        """The theme changed: the explanation's colours follow it."""
        self.explanation_view.restyle()
        if self.attention_dialog is not None:
            self.attention_dialog.attention_view.apply_style()

    # -- attention
    def attention_text(self) -> str:
        """The text to show the attention of: the shown output's first text (a classifier's or
        tagger's: the text it read), else the prompt."""
        entry = self.selected_entry()
        try:
            if entry is not None and entry.kind == "text" and entry.samples:
                first = entry.samples[0]
                read = first.meta.get("prompt") if first.meta.get("task") else first.data
                if isinstance(read, str) and read.strip():
                    return read
        except StudioError:
            pass  # an unreadable history entry: the prompt, then
        return self.prompt_edit.toPlainText()

    def open_attention(self) -> None:
        """Open the attention view for the selected run and checkpoint; the weights are
        computed off the GUI thread, by the generator the cache holds."""
        run, checkpoint = self.selected_run(), self.checkpoint_combo.currentData()
        if not run or not checkpoint:
            return
        device = self.session.settings.default_device or "auto"
        cache = self.cache

        def source(text: str, layer: int, head: int) -> dict:
            import torch
            gen, _ = cache.get(run, checkpoint, device)
            if not callable(getattr(gen, "attention", None)):
                raise StudioError(f"the generator '{gen.name}' does not show its attention.")
            with torch.no_grad():
                return gen.attention(text, layer=layer, head=head)

        if self.attention_dialog is not None:
            self.attention_dialog.close()
        self.attention_dialog = AttentionDialog(
            source, self.attention_text(), f"Attention — {Path(run).name} · {checkpoint}", self)
        self.attention_dialog.show()
        self.attention_dialog.attention_view.refresh()

    def copy_text(self) -> None:
        """The generated text, as plain text (explained or not), to the clipboard."""
        QGuiApplication.clipboard().setText(self.text_view.toPlainText())
        self.status_label.setText("Copied the text to the clipboard.")

    def recall(self, entry: OutputEntry | None) -> None:
        """Put an output's run, checkpoint, parameters, seed, count and prompt back in the form."""
        if entry is None:
            return
        lin = entry.lineage
        if entry.run_gone:
            show_error(self, f"The run {lin['run']} has been deleted, so this output's settings "
                             f"cannot be put back in the form. The output and its lineage stay "
                             f"in the history, and Export still saves them.")
            return
        self.select_run(lin["run"])
        index = self.checkpoint_combo.findData(lin["checkpoint"])
        if index < 0:
            self.status_label.setText(f"Checkpoint {lin['checkpoint']} is gone (old checkpoints "
                                      f"are pruned); using the latest.")
        self.checkpoint_combo.setCurrentIndex(max(index, 0))
        if self.form is not None:
            self.form.set_values(lin["params"])
        self.seed_spin.setValue(lin["seed"])
        self.count_spin.setValue(lin["count"])
        self.prompt_edit.setPlainText(lin.get("prompt") or "")
        self._update_state()

    # -- export
    def _export_clicked(self) -> None:
        entry = self.selected_entry()
        try:
            if entry is None or not entry.samples:
                return
        except StudioError as exc:
            _say(self, str(exc))
            return
        filters = {"text": ["Text (*.txt)", "JSON Lines (*.jsonl)"],
                   "image": ["PNG image (*.png)"] if len(entry.samples) == 1 else
                            ["PNG, all images in one grid (*.png)", "PNG, one file per image (*.png)"],
                   "video": ["GIF animation (*.gif)", "MP4 video (*.mp4)"],
                   "interpolation": ["GIF animation (*.gif)", "MP4 video (*.mp4)",
                                     "PNG, the frames in a row (*.png)"]}[entry.kind]
        lin = entry.lineage
        suggested = self.last_export_dir / (f"{Path(lin['run']).name}-{lin['checkpoint']}-seed"
                                            f"{lin['seed']}{EXPORT_FORMATS[entry.kind][0]}")
        path, chosen = QFileDialog.getSaveFileName(self, "Export output", str(suggested),
                                                   ";;".join(filters))
        if not path:
            return
        path = Path(path)
        wanted = chosen[chosen.rfind("*") + 1:].rstrip(")") if chosen else ""
        if not path.suffix and wanted:
            path = path.with_suffix(wanted)
        try:
            written = export(entry, path, separate="one file per image" in chosen)
        except StudioError as exc:
            _say(self, str(exc))
            return
        self.last_export_dir = path.parent
        self.status_label.setText(f"Exported {', '.join(p.name for p in written)} to {path.parent}.")


def _has_fields(config_cls) -> bool:
    import dataclasses
    return bool(dataclasses.fields(config_cls))
