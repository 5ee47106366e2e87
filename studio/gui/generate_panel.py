"""The Generation panel: pick a run and a checkpoint, set the sampling parameters, generate off
the GUI thread (text streams token by token, Stop ends it early), keep a history of outputs
with their lineage, recall an output's settings and export it (TXT/JSONL, PNG, GIF/MP4).

The panel works from the plugin contract and the run folder only: the parameter form is built
from the run's generator's `SampleConfig`, and outputs are shown by their kind, so a plugin
generator gets all of this without writing UI. Export is a plain function (`export`) that the
button calls after a file dialog, so it can be used and tested without one.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QListWidget, QListWidgetItem, QMessageBox, QPlainTextEdit,
                               QPushButton, QScrollArea, QSpinBox, QSplitter, QStackedWidget,
                               QVBoxLayout, QWidget)

from studio.config import from_dict, to_dict
from studio.contract import Generator, Sample
from studio.errors import StudioError
from studio.gui.config_form import ConfigForm
from studio.gui.views import SampleGrid, TextView
from studio.gui.workers import Task, start
from studio.runstore import RunDir, write_json

EMPTY_RUNS = "No trained runs yet — train one in the Train tab"
MAX_SEED = 2**31 - 1
VIDEO_FPS = 8  # what views.VideoPlayer plays at, unless a sample's meta says otherwise


def show_error(parent: QWidget | None, message: str) -> None:
    """Tell the user what went wrong. Module-level so tests can intercept it."""
    QMessageBox.warning(parent, "Generation", message)


# --- outputs and their lineage (plain data) ---------------------------------------------------

@dataclass
class OutputEntry:
    """One press of Generate: the samples and where they came from."""

    samples: list[Sample]
    lineage: dict  # run, checkpoint, generator, generator_version, params, seed, prompt, count,
    #                time, device, stopped
    created: float = field(default_factory=time.time)

    @property
    def kind(self) -> str:
        return self.samples[0].kind if self.samples else "text"

    def title(self) -> str:
        lin = self.lineage
        clock = time.strftime("%H:%M:%S", time.localtime(self.created))
        what = f"{lin['count']} {self.kind}" + ("s" if lin["count"] > 1 else "")
        prompt = lin.get("prompt")
        quoted = f" · “{_shorten(prompt, 24)}”" if prompt else ""
        stopped = " · stopped" if lin.get("stopped") else ""
        return (f"{clock} · {Path(lin['run']).name} · {lin['checkpoint']} · seed {lin['seed']} · "
                f"{what}{quoted}{stopped}")

    def describe(self) -> str:
        """The lineage as a few readable lines."""
        lin = self.lineage
        params = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}"
                           for k, v in lin["params"].items()) or "none"
        lines = [f"Run {lin['run']} · checkpoint {lin['checkpoint']} · generator "
                 f"{lin['generator']} {lin['generator_version']}",
                 f"Seed {lin['seed']} · count {lin['count']} · {lin['time']} · {lin['device']}"
                 + (" · stopped early" if lin.get("stopped") else ""),
                 f"Parameters: {params}"]
        if lin.get("prompt"):
            lines.append(f"Prompt: {_shorten(lin['prompt'], 200)}")
        return "\n".join(lines)


def _shorten(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


# --- export (no widgets: the button calls this after a file dialog) ---------------------------

EXPORT_FORMATS = {"text": (".txt", ".jsonl"), "image": (".png",), "video": (".gif", ".mp4")}


def export(entry: OutputEntry, path: str | Path, separate: bool = False) -> list[Path]:
    """Write an output to `path`, in the format its extension names, with its lineage:
    text as TXT (+ sidecar `<file>.json`) or JSONL (lineage on every line); images as PNG with
    the lineage in the PNG's text metadata (several images: one grid, or with `separate` one
    file each); video as GIF or MP4 with a sidecar `<file>.json`. Returns the files written."""
    path = Path(path)
    kind, ext = entry.kind, path.suffix.lower()
    if not entry.samples:
        raise StudioError("this output is empty (it was stopped before anything was made).")
    if ext not in EXPORT_FORMATS.get(kind, ()):
        allowed = ", ".join(EXPORT_FORMATS.get(kind, ())) or "nothing"
        raise StudioError(f"a {kind} output exports as {allowed}; '{path.name}' is not one of "
                          f"those. Pick a file name with one of these extensions.")
    try:
        if ext == ".txt":
            return _export_txt(entry, path)
        if ext == ".jsonl":
            return _export_jsonl(entry, path)
        if ext == ".png":
            return _export_png(entry, path, separate)
        return _export_video(entry, path)
    except OSError as exc:
        raise StudioError(f"cannot write {path}: {exc.strerror or exc}. "
                          f"Pick another folder.") from None


def sidecar_path(path: Path) -> Path:
    """`clip.gif` -> `clip.gif.json`: a GIF and an MP4 of the same name keep their own."""
    return path.with_name(path.name + ".json")


def _export_txt(entry: OutputEntry, path: Path) -> list[Path]:
    texts = [s.data for s in entry.samples]
    if len(texts) == 1:
        body = texts[0]
    else:
        body = "\n\n".join(f"--- sample {i + 1} of {len(texts)} ---\n{t}"
                           for i, t in enumerate(texts))
    path.write_text(body + ("" if body.endswith("\n") else "\n"), encoding="utf-8")
    write_json(sidecar_path(path), {"file": path.name, **entry.lineage})
    return [path, sidecar_path(path)]


def _export_jsonl(entry: OutputEntry, path: Path) -> list[Path]:
    lines = [json.dumps({"text": s.data, "index": i, "lineage": entry.lineage,
                         "meta": s.meta}, ensure_ascii=False, default=str)
             for i, s in enumerate(entry.samples)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [path]


def _as_rgb(array: np.ndarray) -> np.ndarray:
    """HxW, HxWx1 -> HxWx3; RGB and RGBA unchanged."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array


def tile(images: list[np.ndarray], columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Images of one size side by side in a grid (like torchvision's make_grid), with `pad`
    pixels of black between them."""
    images = [_as_rgb(im) for im in images]
    if len(images) == 1:
        return images[0]
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    h, w, c = images[0].shape
    grid = np.zeros((rows * h + (rows - 1) * pad, columns * w + (columns - 1) * pad, c), np.uint8)
    for i, im in enumerate(images):
        r, col = divmod(i, columns)
        grid[r * (h + pad):r * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = im
    return grid


def _write_png(array: np.ndarray, path: Path, lineage: dict) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_itxt("lineage", json.dumps(lineage, ensure_ascii=False, default=str))
    info.add_text("Software", "AIGC Studio")
    Image.fromarray(np.ascontiguousarray(_as_rgb(array))).save(path, pnginfo=info)


def _export_png(entry: OutputEntry, path: Path, separate: bool) -> list[Path]:
    images = [s.data for s in entry.samples]
    if separate and len(images) > 1:
        written = []
        for i, (image, sample) in enumerate(zip(images, entry.samples)):
            target = path.with_name(f"{path.stem}-{i:03d}{path.suffix}")
            _write_png(image, target, {**entry.lineage, "index": i, "meta": sample.meta})
            written.append(target)
        return written
    layout = {"grid_of": len(images)} if len(images) > 1 else {}
    _write_png(tile(images), path, {**entry.lineage, **layout})
    return [path]


def _video_frames(entry: OutputEntry) -> np.ndarray:
    """The output's clips as one TxHxWx3 clip: several clips play side by side in a grid
    (a shorter clip holds its last frame)."""
    clips = [np.asarray(s.data) for s in entry.samples]
    length = max(len(c) for c in clips)
    frames = [tile([c[min(t, len(c) - 1)] for c in clips]) for t in range(length)]
    return np.stack(frames)[..., :3]


def _export_video(entry: OutputEntry, path: Path) -> list[Path]:
    import imageio.v3 as iio
    frames = _video_frames(entry)
    fps = float(entry.samples[0].meta.get("fps", VIDEO_FPS))
    comment = json.dumps(entry.lineage, ensure_ascii=False, default=str)
    scale = 1
    if path.suffix.lower() == ".gif":
        iio.imwrite(path, frames, extension=".gif", duration=1000 / fps, loop=0,
                    comment=comment.encode("utf-8"))
    else:
        # H.264 smears clips a few pixels wide into colour blocks: enlarge tiny clips with
        # nearest-neighbour pixels first, and pad to even sides (yuv420p needs them).
        scale = max(1, math.ceil(64 / min(frames.shape[1:3])))
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
        odd_h, odd_w = frames.shape[1] % 2, frames.shape[2] % 2
        frames = np.pad(frames, ((0, 0), (0, odd_h), (0, odd_w), (0, 0)), mode="edge")
        iio.imwrite(path, frames, extension=".mp4", plugin="FFMPEG", fps=fps, macro_block_size=2,
                    output_params=["-metadata", f"comment={comment}"])
    write_json(sidecar_path(path), {"file": path.name, "frames": len(frames), "fps": fps,
                                    "scale": scale, **entry.lineage})
    return [path, sidecar_path(path)]


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
    stream: bool  # text, one sample: show it token by token


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

    The contract does not say this: the default `Generator.stream` yields whole samples, while
    the text generator streams only the new text and its `sample` prepends the prompt (or a
    newline) — except for runs trained on prompt/response pairs, which answer with the
    response alone."""
    if type(gen).stream is Generator.stream or getattr(gen, "format", "text") == "pairs":
        return ""
    return "\n" if prompt is None else prompt


def produce(ctx, cache: GeneratorCache, request: Request) -> OutputEntry | None:
    """The task: load (or reuse) the generator, then sample or stream. Progress values are
    ("stage", text), ("start", text the stream begins with) and ("piece", text). Returns None
    when stopped before anything was made."""
    import torch

    def progress(kind: str, value: str) -> None:
        ctx.progress((kind, value))

    progress("stage", "Loading the model…")
    gen, folder = cache.get(request.run, request.checkpoint, request.device)
    if ctx.cancelled:
        return None
    params = from_dict(gen.SampleConfig, request.params, "sampling settings")
    progress("stage", "Generating…")
    stopped = False
    with torch.no_grad():
        if request.stream:
            start_text = stream_start(gen, request.prompt)
            progress("start", start_text)
            pieces = []
            # closing(): a generator left suspended mid-stream would hold its model context.
            stream = gen.stream(params, seed=request.seed, prompt=request.prompt)
            with contextlib.closing(stream):
                for piece in stream:
                    pieces.append(piece)
                    progress("piece", piece)
                    if ctx.cancelled:
                        stopped = True
                        break
            samples = [Sample("text", start_text + "".join(pieces),
                              {"prompt": request.prompt, "seed": request.seed, "index": 0,
                               "params": to_dict(params)})]
        else:
            samples = gen.sample(params, n=request.count, seed=request.seed, prompt=request.prompt)
    for sample in samples:
        sample.meta.update(run=request.run, checkpoint=folder.name, generator=gen.name)
    lineage = {"run": request.run, "checkpoint": folder.name, "generator": gen.name,
               "generator_version": gen.version, "params": to_dict(params),
               "seed": request.seed, "prompt": request.prompt, "count": request.count,
               "time": time.strftime("%Y-%m-%d %H:%M:%S"), "device": str(gen.device),
               "stopped": stopped}
    return OutputEntry(samples, lineage)


# --- the panel ---------------------------------------------------------------------------------

def _same_path(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


class GeneratePanel(QWidget):
    generation_finished = Signal(object)  # an OutputEntry, as it joins the history
    streamed = Signal(str)  # each piece of text, as it is shown

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.cache = GeneratorCache()
        self.history: list[OutputEntry] = []
        self.task: Task | None = None
        self.rows: list[dict] = []  # the runs in the combo (rows of session.all_runs())
        self.opened_rows: list[dict] = []  # runs opened from elsewhere that the list lacks
        self.forms: dict[str, ConfigForm] = {}  # one per generator, so values survive switching
        self.generator_cls = None
        self.run_problem: str | None = None  # why the selected run cannot generate
        self._checkpoints_of: str | None = None  # the run the checkpoint combo lists
        self.last_export_dir = Path.home()
        self._build()
        session.runs_changed.connect(self.refresh_runs)
        session.run_changed.connect(self.select_run)
        self.refresh_runs()
        if session.current_run:
            self.select_run(session.current_run)

    # -- layout
    def _build(self) -> None:
        self.run_combo = QComboBox()
        self.run_combo.setToolTip("The trained run to generate from (runs folder and demo runs)")
        self.run_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_combo.setMinimumContentsLength(18)
        self.run_combo.currentIndexChanged.connect(self._on_run_selected)
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
                                    "prompt/response run answers")
        self.prompt_edit.setMinimumHeight(60)
        self.prompt_edit.setMaximumHeight(120)

        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, MAX_SEED)
        self.seed_spin.setToolTip("Random seed: the same seed and settings give the same output")
        self.random_seed_button = QPushButton("New seed")
        self.random_seed_button.setToolTip("Pick a random seed")
        self.random_seed_button.clicked.connect(self._new_seed)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_spin, 1)
        seed_row.addWidget(self.random_seed_button)
        self.count_spin = QSpinBox()
        self.count_spin.setRange(1, 64)
        self.count_spin.setToolTip("How many samples to make at once (text streams token by "
                                   "token when it is 1)")

        pick = QFormLayout()
        pick.addRow("Run", self.run_combo)
        pick.addRow(self.empty_label)
        pick.addRow("Checkpoint", self.checkpoint_combo)
        pick.addRow(self.prompt_label, self.prompt_edit)
        pick.addRow("Seed", seed_row)
        pick.addRow("Count", self.count_spin)

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
        self.stop_button.setToolTip("Stop generating (text made so far is kept)")
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 1)
        buttons.addWidget(self.stop_button)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        controls = QWidget()
        left = QVBoxLayout(controls)
        left.addLayout(pick)
        left.addWidget(params_box)
        left.addWidget(self.problem_label)
        left.addLayout(buttons)
        left.addWidget(self.status_label)
        left.addStretch(1)
        controls_scroll = QScrollArea()
        controls_scroll.setWidgetResizable(True)
        controls_scroll.setWidget(controls)
        controls_scroll.setMinimumWidth(320)

        # Output: streamed text in a text view, everything else in the grid of views.
        self.text_view = TextView()
        self.text_view.setToolTip("The generated text")
        self.grid = SampleGrid()
        self.grid.setToolTip("The generated samples")
        self.grid.set_samples([], "Generated output appears here: pick a run, set the "
                                  "parameters and press Generate.")
        self.output_stack = QStackedWidget()
        self.output_stack.addWidget(self.grid)
        self.output_stack.addWidget(self.text_view)
        self.output_stack.setMinimumHeight(240)
        self.lineage_label = QLabel("")
        self.lineage_label.setWordWrap(True)
        self.lineage_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        output_box = QWidget()
        output_layout = QVBoxLayout(output_box)
        output_layout.setContentsMargins(0, 0, 0, 0)
        output_layout.addWidget(self.output_stack, 1)
        output_layout.addWidget(self.lineage_label)

        self.history_list = QListWidget()
        self.history_list.setToolTip("Outputs of this session, newest first: select one to see "
                                     "it again with its lineage")
        self.history_list.currentRowChanged.connect(self._on_history_selected)
        self.recall_button = QPushButton("Recall")
        self.recall_button.setToolTip("Put this output's run, checkpoint, parameters, seed and "
                                      "prompt back into the form")
        self.recall_button.clicked.connect(lambda: self.recall(self.selected_entry()))
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save this output with its lineage: text as TXT or JSONL, "
                                      "images as PNG, video as GIF or MP4")
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
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(controls_scroll)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
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
            self.status_label.setText(str(exc))
        known = [r["run"] for r in rows]
        self.opened_rows = [r for r in self.opened_rows if Path(r["run"]).is_dir()]  # not deleted since
        rows += [r for r in self.opened_rows if not any(_same_path(r["run"], k) for k in known)]
        self.rows = rows
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        for row in rows:
            status = row.get("status", "?")
            self.run_combo.addItem(f"{Path(row['run']).name} — {row['generator']} · {status} · "
                                   f"step {row.get('step', 0)}", row["run"])
            self.run_combo.setItemData(self.run_combo.count() - 1, row["run"],
                                       Qt.ItemDataRole.ToolTipRole)
        index = next((i for i, r in enumerate(rows) if previous and _same_path(r["run"], previous)), 0)
        self.run_combo.setCurrentIndex(index if rows else -1)
        self.run_combo.blockSignals(False)
        self.run_combo.setEnabled(bool(rows))
        self.empty_label.setVisible(not rows)
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
                                         "status": info.get("status", "?"), "step": info.get("step", 0)})
            except StudioError as exc:
                self.status_label.setText(str(exc))
                return
            self.refresh_runs()
        index = next(i for i, r in enumerate(self.rows) if _same_path(r["run"], path))
        self.run_combo.setCurrentIndex(index)

    def _row(self) -> dict | None:
        index = self.run_combo.currentIndex()
        return self.rows[index] if 0 <= index < len(self.rows) else None

    def _on_run_selected(self, *_) -> None:
        row = self._row()
        self.run_problem = None
        self.generator_cls = None
        if row is not None:
            try:
                self.generator_cls = self.session.registry.get(row["generator"])
            except StudioError as exc:
                self.run_problem = str(exc)
        self._fill_checkpoints(row)
        self._show_form()
        is_text = self.generator_cls is not None and self.generator_cls.modality == "text"
        self.prompt_label.setVisible(is_text)
        self.prompt_edit.setVisible(is_text)
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
            self.forms[cls.name] = form
            self.form_stack.addWidget(form)
        self.form_stack.setCurrentWidget(self.forms[cls.name])

    def _on_form_changed(self) -> None:
        self._update_state()

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
            "Generate with these settings (Ctrl+G)")
        self.stop_button.setEnabled(self.busy and not self.task.context.cancelled)
        has_entry = self.selected_entry() is not None
        self.recall_button.setEnabled(has_entry)
        self.export_button.setEnabled(has_entry and bool(self.selected_entry().samples))

    # -- generating
    def _request(self) -> Request:
        is_text = self.generator_cls.modality == "text"
        prompt = self.prompt_edit.toPlainText() if is_text else ""
        count = self.count_spin.value()
        return Request(run=self.selected_run(), checkpoint=self.checkpoint_combo.currentData(),
                       device=self.session.settings.default_device or "auto",
                       params=self.form.config_values() if self.form is not None else {},
                       seed=self.seed_spin.value(), count=count, prompt=prompt or None,
                       stream=is_text and count == 1)

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
        if request.stream:
            self.text_view.setPlainText("")
            self.output_stack.setCurrentWidget(self.text_view)
        self.lineage_label.setText("")
        self.status_label.setText("Starting…")
        self._update_state()
        start(task)
        return True

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.status_label.setText("Stopping…")
            self._update_state()

    def _on_progress(self, value) -> None:
        kind, payload = value
        if kind == "stage":
            self.status_label.setText(payload)
        elif kind == "start":
            self.text_view.setPlainText(payload)
        elif kind == "piece":
            self.text_view.append_piece(payload)
            self.streamed.emit(payload)

    def _on_done(self, entry: OutputEntry | None) -> None:
        if entry is None:
            self.status_label.setText("Stopped before anything was made.")
            return
        self.history.append(entry)
        item = QListWidgetItem(entry.title())
        item.setToolTip(entry.describe())
        self.history_list.insertItem(0, item)
        self.history_list.setCurrentRow(0)  # shows it, with its lineage
        self.status_label.setText("Stopped early; the output so far is kept." if entry.lineage["stopped"]
                                  else "Done.")
        self.generation_finished.emit(entry)

    def _on_failed(self, message: str) -> None:
        self.status_label.setText("Generation failed.")
        show_error(self, message)

    def _on_finished(self) -> None:
        self.task = None
        self._update_state()

    # -- history
    def selected_entry(self) -> OutputEntry | None:
        row = self.history_list.currentRow()
        # The list shows the newest first; self.history keeps them oldest first.
        return self.history[len(self.history) - 1 - row] if 0 <= row < len(self.history) else None

    def _on_history_selected(self, *_) -> None:
        entry = self.selected_entry()
        if entry is not None:
            self.show_entry(entry)
        self._update_state()

    def show_entry(self, entry: OutputEntry) -> None:
        if entry.kind == "text" and len(entry.samples) == 1:
            self.text_view.setPlainText(entry.samples[0].data)
            self.output_stack.setCurrentWidget(self.text_view)
        else:
            single = len(entry.samples) == 1
            self.grid.columns, self.grid.size = (1, 384) if single else (4, 160)
            self.grid.set_samples(entry.samples, "Stopped before anything was made.")
            self.output_stack.setCurrentWidget(self.grid)
        self.lineage_label.setText(entry.describe())

    def recall(self, entry: OutputEntry | None) -> None:
        """Put an output's run, checkpoint, parameters, seed, count and prompt back in the form."""
        if entry is None:
            return
        lin = entry.lineage
        if not Path(lin["run"]).exists():
            show_error(self, f"the run {lin['run']} no longer exists, so its settings cannot be "
                             f"recalled.")
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
        if entry is None or not entry.samples:
            return
        filters = {"text": ["Text (*.txt)", "JSON Lines (*.jsonl)"],
                   "image": ["PNG image (*.png)"] if len(entry.samples) == 1 else
                            ["PNG, all images in one grid (*.png)", "PNG, one file per image (*.png)"],
                   "video": ["GIF animation (*.gif)", "MP4 video (*.mp4)"]}[entry.kind]
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
            show_error(self, str(exc))
            return
        self.last_export_dir = path.parent
        self.status_label.setText(f"Exported {', '.join(p.name for p in written)} to {path.parent}.")


def _has_fields(config_cls) -> bool:
    import dataclasses
    return bool(dataclasses.fields(config_cls))
