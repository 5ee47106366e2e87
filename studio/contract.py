"""The plugin contract: what a generator declares and implements. The engine does the rest.

A generator is a class registered under the entry-point group `aigc_studio.generators`. It
declares who it is and what it is configured by, and implements six methods: load data,
draw a batch, build the model, take a training step, evaluate on held-out data, and sample
(`configure_optimizers` has a default: AdamW). Everything else -- devices, precision,
accumulation, clipping, the LR schedule, when to evaluate, previews, checkpoints,
stop/pause/resume, DDP, the CLI and the window -- comes from the studio.

A minimal generator::

    @dataclass
    class Config:
        width: int = setting(64, "hidden units", min=1)
        batch_size: int = setting(32, "examples per step", min=1)

    class MyGenerator(Generator):
        name, modality, version = "mine", "image", "0.1"
        Config = Config
        SampleConfig = NoSampleParams

        def load_data(self, source, val_source, cache_dir): ...   # -> DataReport
        def get_batch(self, split, rng): ...                      # -> anything training_step takes
        def build(self): ...                                      # -> torch.nn.Module
        def training_step(self, batch, ctx): ...                  # -> {"loss": tensor, ...}
        def evaluate(self, source=None, max_batches=None): ...    # -> {"val_loss": float, ...}
        def sample(self, params, n, seed, prompt=None): ...       # -> list[Sample]

The order of calls (studio/api.py, studio/engine.py):

- a new run: `__init__(config)` -> `load_data` -> `build` -> `configure_optimizers` ->
  `save_assets` -> the loop: `get_batch` and `training_step` each step, `evaluate` and
  `preview` every so often and once at the end of every run.
- a resumed run: `__init__(config)` -> `load_assets` -> `load_data` -> `build` ->
  `configure_optimizers` -> `load_extra_state` -> the loop, from the checkpoint's step.
- a loaded run (`studio generate`, `studio eval`, the window's Generate tab):
  `__init__(config)` -> `load_assets` -> `build` -> weights -> `load_extra_state`, and no
  optimizers. `studio eval` then calls `load_data` again with the run's own training data
  (so a held-out split carved from it is there) before `evaluate`; with --data it calls
  `evaluate(source=PATH)` as well.

Before `build` the engine sets `self.device` (build may use it, e.g. to pick a memory
layout); it then moves the model there, keeps it as `self.model` and sets `self.autocast` to
the run's precision (studio.engine.bind_device, the same for training and loading). During
training `self.model` is the bare model; `ctx.model` is what to call in a step (wrapped for
DDP under torchrun). `evaluate`, `preview` and `sample` run with the model in eval mode and
autograd off (no_grad), and during training with torch's global RNG (the CPU's and the CUDA
device's) put back afterwards, so they do not change a resumed run; Python's `random` and
numpy's global state are not put back, so draw from torch (or a generator of your own) there.
The model is back in train mode for the next step.

Reproducibility: draw every batch from the `rng` that `get_batch` is given (the engine
checkpoints it, so a resume is bit-exact), and sample from `seed` alone: the same `params`,
`n`, `seed` and `prompt` give the same samples. How `n` and `seed` relate is the generator's
to say: the image and video generators draw item i from seed + i (one item is made again
with n=1, seed=seed+i, and the window draws them in batches that way); the text generator
draws its n texts together from `seed` (the window asks for texts one at a time, seed + i,
and `stream(seed)` gives what `sample(n=1, seed)` does).

Sampling returns plain data, never widgets: text as `str`, an image as an HxWxC uint8 numpy
array, a video as a TxHxWxC uint8 numpy array, each with a metadata dict.

Versions: `api` names the versions of this contract (API_VERSION) the generator was written
for; `version` is the generator's own. Runs record it with the package that provided it, and
a run made by an older `version` has its settings passed through `migrate_config` first, so a
renamed setting does not break old runs.

Instant listing: a plugin package may put its declarations (name, modality, version, Config,
SampleConfig, presets, train_defaults) in a `config.py` that imports no torch, as a Generator
subclass without methods named in `DECLARATIONS = {"MyGenerator": MyDeclarations}`, and
subclass it: `class MyGenerator(MyDeclarations)`. `studio generators`, `studio config` and the
window's picker then read it without importing the generator's code (generators/text/config.py
does this; studio/registry.py says how it is found).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Literal

if TYPE_CHECKING:  # torch is imported lazily so that `studio --help` stays instant
    import torch

Modality = Literal["text", "image", "video"]

# The version of this contract (semantic: a new minor version adds to it and keeps every
# plugin working; a new major version breaks some). A generator says which versions it was
# written for (`Generator.api`); the registry refuses one this studio's version does not fit.
API_VERSION = "1.1"  # 1.1: sample_batch, open_decoder, onnx_graphs (serving, export)
API_OPERATORS = (">=", "<=", "==", "!=", ">", "<")  # the longer first: ">=" before ">"


def version_tuple(version: str) -> tuple[int, ...]:
    """"1.2" -> (1, 2); ValueError for what is not dotted numbers."""
    parts = str(version).strip().split(".")
    if not all(part.isdigit() for part in parts):
        raise ValueError(f"{version!r} is not a version of dotted numbers (e.g. 1.0)")
    numbers = [int(part) for part in parts]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()  # 1.0 == 1
    return tuple(numbers)


def api_fits(api_range: str, version: str = API_VERSION) -> bool:
    """Whether `version` is in `api_range`: comma-separated clauses such as ">=1.0,<2" (all
    must hold). ValueError for a range that cannot be read."""
    have = version_tuple(version)
    clauses = [clause.strip() for clause in str(api_range).split(",")]
    if not api_range or not all(clauses):
        raise ValueError(f"{api_range!r} is not an API range (e.g. \">=1.0,<2\")")
    for clause in clauses:
        operator = next((op for op in API_OPERATORS if clause.startswith(op)), None)
        if operator is None:
            raise ValueError(f"{clause!r} in {api_range!r} does not start with one of "
                             f"{' '.join(API_OPERATORS)} (e.g. \">=1.0,<2\")")
        want = version_tuple(clause[len(operator):])
        holds = {">=": have >= want, "<=": have <= want, "==": have == want,
                 "!=": have != want, ">": have > want, "<": have < want}[operator]
        if not holds:
            return False
    return True


@dataclass
class Sample:
    """One generated item: `kind` says how to show it, `data` is plain data, `meta` its lineage."""

    kind: Modality
    data: Any  # str | np.ndarray (H, W, C) uint8 | np.ndarray (T, H, W, C) uint8
    meta: dict = field(default_factory=dict)


@dataclass
class DataReport:
    """What `load_data` used and what it skipped (with the reason per item)."""

    source: str
    used: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)
    summary: dict = field(default_factory=dict)  # e.g. {"tokens": ..., "train_tokens": ...}
    preview: list[Sample] = field(default_factory=list)  # a few items for the data panel

    def to_json(self) -> dict:
        return {"source": self.source, "used": self.used,
                "skipped": [list(s) for s in self.skipped], "summary": self.summary}


@dataclass
class NoSampleParams:
    """For generators whose sampling takes no parameters besides count and seed."""


@dataclass
class SampleRequest:
    """One request of `Generator.sample_batch`: what `sample` would be called with."""

    params: Any
    n: int = 1
    seed: int = 0
    prompt: Any = None


@dataclass
class DecodedPiece:
    """What one step of a Decoder produced for one of its rows."""

    row: int
    text: str  # the new text (valid UTF-8; "" while a character is incomplete or held back)
    done: bool = False
    reason: str | None = None  # when done: "stop" (a stop string or the end token) or "length"
    tokens: int = 0  # tokens the row has produced so far


class Decoder:
    """Continuous batching for a text generator (`Generator.open_decoder`): samples join and
    leave between steps; each step runs one forward pass for all active rows. A row's text
    must be what `stream(params, seed, prompt)` gives for the same request (float rounding
    of the batched forward aside: greedy decoding gives the same tokens)."""

    max_rows: int

    def add(self, params: Any, seed: int, prompt: Any) -> int:  # pragma: no cover - interface
        """Start a sample (reads its prompt: the prefill) and return its row. Raises
        StudioError for a prompt the model cannot take; ValueError when all rows are busy."""
        raise NotImplementedError

    def prompt_tokens(self, row: int) -> int:  # pragma: no cover - interface
        """How many tokens the row's prompt became (for usage counts)."""
        raise NotImplementedError

    def step(self) -> list[DecodedPiece]:  # pragma: no cover - interface
        """One token for every active row. A row that is done is freed at once."""
        raise NotImplementedError

    def drop(self, row: int) -> None:  # pragma: no cover - interface
        """Free a row before it is done (its client went away)."""
        raise NotImplementedError

    @property
    def active(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class OnnxGraph:
    """One graph of `Generator.onnx_graphs`: `module(*inputs)` returns a tensor or a tuple of
    tensors, named `output_names`. `dynamic_axes` as torch.onnx.export takes them
    ({"tokens": {0: "batch", 1: "length"}}); `checks` are more input tuples the exported graph
    must also match the module on (e.g. other lengths, a non-empty cache)."""

    name: str  # the file: NAME.onnx
    module: "torch.nn.Module"
    inputs: tuple
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict = field(default_factory=dict)
    checks: list[tuple] = field(default_factory=list)
    tolerance: float = 1e-4  # the largest absolute difference from the module accepted
    description: str = ""


class TrainContext:
    """What a step sees of the engine (`training_step(batch, ctx)`).

    `model` is the model to call: the generator's, wrapped for DDP under torchrun (reach the
    bare one as `getattr(ctx.model, "module", ctx.model)`). `autocast()` enters the run's mixed
    precision. Automatic optimization: return the loss; the engine scales, accumulates,
    clips and steps. Manual optimization (`manual_optimization = True`, e.g. a GAN's two
    optimizers): call `backward(loss)`, then `average_gradients(optimizer)` when the step
    did not run its forward through `ctx.model` (DDP averages only what goes through it; this
    is a no-op in a single process), then `step_optimizer(optimizer)`, which unscales, clips,
    steps and zeroes the gradients."""

    step: int  # the optimizer step this one is (0 for the first)
    device: "torch.device"
    model: "torch.nn.Module"
    micro_steps: int  # gradient accumulation: training_step calls per optimizer step

    def autocast(self):  # pragma: no cover - implemented by the engine
        raise NotImplementedError

    def backward(self, loss: "torch.Tensor") -> None:  # pragma: no cover
        raise NotImplementedError

    def average_gradients(self, optimizer: "torch.optim.Optimizer") -> None:  # pragma: no cover
        raise NotImplementedError

    def step_optimizer(self, optimizer: "torch.optim.Optimizer") -> None:  # pragma: no cover
        raise NotImplementedError


class Generator:
    """Base class of every generator. Subclasses set the class attributes and implement the
    methods that raise NotImplementedError; the others have sensible defaults."""

    # --- who it is ------------------------------------------------------------------------
    name: ClassVar[str]
    modality: ClassVar[Modality]
    version: ClassVar[str] = "0.0"
    Config: ClassVar[type]  # a dataclass of `studio.config.setting` fields: model and data
    SampleConfig: ClassVar[type] = NoSampleParams  # sampling parameters, validated the same way
    presets: ClassVar[dict[str, dict]] = {}  # named partial configs, e.g. {"tiny": {...}}
    train_defaults: ClassVar[dict] = {}  # engine settings this generator prefers (e.g. lr)
    manual_optimization: ClassVar[bool] = False  # True: training_step steps its own optimizers
    best_metric: ClassVar[str] = "val_loss"  # held-out metric that picks the best checkpoint
    best_mode: ClassVar[Literal["min", "max"]] = "min"
    throughput_unit: ClassVar[str] = "samples"  # what count_items counts, e.g. "tokens"
    finetune_defaults: ClassVar[dict] = {}  # engine settings for runs that start from weights
    finetune_config: ClassVar[dict] = {}  # and the generator's own settings for them
    # Settings that fix the shapes of the model's weights: a run that starts from weights keeps
    # them (the window shows them fixed when a run starts from another).
    shape_settings: ClassVar[tuple[str, ...]] = ()
    # LoRA (`--set lora_rank=R`, studio/lora.py): suffixes of the names of the Linear layers
    # that get adapters when the run names none (lora_targets). Never a layer whose weight is
    # tied to another module's (the adapter would change both); () = the user must name them.
    lora_targets: ClassVar[tuple[str, ...]] = ()
    # precision=auto on a CPU with native bf16 (AVX512-BF16, AMX) takes bf16 autocast for models
    # of at least this many parameters; below it the casts usually cost more than the faster
    # matmuls save. A generator whose kernels gain from bf16 at any size sets a lower figure.
    cpu_bf16_min_params: ClassVar[int] = 5_000_000
    # The contract versions (API_VERSION) it was written for; the registry refuses it when
    # this studio's version is outside them.
    api: ClassVar[str] = ">=1.0,<2"

    def __init__(self, config):
        self.config = config
        self.model: "torch.nn.Module | None" = None
        self.device = None  # set by the engine (bind_device) before build()
        self.autocast = contextlib.nullcontext  # after build(), the run's mixed precision
        self.weights_note: str | None = None  # set on loading: what was damaged in the checkpoint

    # --- data -----------------------------------------------------------------------------
    def load_data(self, source: str | None, val_source: str | None,
                  cache_dir: Path) -> DataReport:
        """Read and validate the training data (`source` None: the built-in demo data) and keep
        a held-out split (from `val_source`, or carved from `source`). Raise StudioError when
        nothing usable is left; report skipped items otherwise."""
        raise NotImplementedError

    def get_batch(self, split: Literal["train", "val"], rng: "torch.Generator") -> Any:
        """One batch, drawn with `rng` only, so the engine can checkpoint the data position."""
        raise NotImplementedError

    def count_items(self, batch: Any) -> int:
        """How many `throughput_unit`s a batch holds (for the rate the window shows)."""
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        return int(first.shape[0]) if hasattr(first, "shape") else 0

    # --- model ----------------------------------------------------------------------------
    def build(self) -> "torch.nn.Module":
        """Create the network (after load_data on a new run, after load_assets and load_data on
        a resumed one, after load_assets on a loaded one; `self.device` is set). The engine
        moves it to the device and keeps it as `self.model`."""
        raise NotImplementedError

    def configure_optimizers(self, train) -> "list[torch.optim.Optimizer]":
        """Default: AdamW with decay on matrices only (nanoGPT's split), fused where possible."""
        from studio.optim import default_adamw
        return [default_adamw(self.model, train)]

    @classmethod
    def pretrained_config(cls, path: str) -> dict:
        """Config values implied by a foreign pretrained model folder (e.g. Hugging Face)."""
        from studio.errors import StudioError
        raise StudioError(f"generator '{cls.name}' cannot import models from other tools.")

    def use_pretrained(self, path: str) -> None:
        """Start from that folder's weights: read its assets now; build() loads the weights."""
        from studio.errors import StudioError
        raise StudioError(f"generator '{self.name}' cannot import models from other tools.")

    def training_step(self, batch: Any, ctx: TrainContext) -> dict:
        """Return {"loss": scalar tensor, ...more metrics}. With manual_optimization, call
        ctx.backward and ctx.step_optimizer yourself and return detached metrics."""
        raise NotImplementedError

    def evaluate(self, source: str | None = None, max_batches: int | None = None) -> dict:
        """Held-out metrics ({"val_loss": ...}, including `best_metric`). `source` None: the
        held-out split that load_data kept (from `val_source`, or carved from the training
        data); a path (`studio eval --data PATH`): read that data and evaluate on it instead.
        `max_batches` None: all of it. Called in eval mode under no_grad, at the end of every
        run that took a step too: required."""
        raise NotImplementedError

    def evaluate_baselines(self, source: str | None = None) -> dict[str, dict]:
        """Optional: the same held-out metrics for reference outputs that show what the numbers
        mean (e.g. {"static": {...}, "shuffled": {...}} for a video generator); `studio eval`
        prints them beside the run's own. {}: none."""
        return {}

    # --- sampling -------------------------------------------------------------------------
    def sample(self, params, n: int = 1, seed: int = 0, prompt: Any = None) -> list[Sample]:
        """`n` samples with `params` (a SampleConfig), determined by `seed` (see the module's
        docstring for how `n` and `seed` relate). `prompt` (text generators) is what to
        continue; None: start from nothing. Called in eval mode under no_grad."""
        raise NotImplementedError

    def stream(self, params, seed: int = 0, prompt: Any = None) -> Iterator[Any]:
        """Optional: one sample's output piece by piece (text generators: str pieces)."""
        yield from (s.data for s in self.sample(params, n=1, seed=seed, prompt=prompt))

    # --- serving and export (studio serve, studio export --format onnx): all optional ---------
    def sample_batch(self, requests: "list[SampleRequest]") -> list[list[Sample]]:
        """Several independent requests answered together (e.g. in one forward pass): the
        answer to each must be what `sample(r.params, r.n, r.seed, r.prompt)` gives, within
        float rounding. `studio serve` batches queued requests through it. The default answers
        them one after another."""
        return [self.sample(r.params, n=r.n, seed=r.seed, prompt=r.prompt) for r in requests]

    def open_decoder(self, max_rows: int) -> "Decoder | None":
        """Text generators: a step-wise decoder that takes new samples while others are under
        way (continuous batching: one forward pass a step for all of them). `studio serve`
        uses it when given; None (the default): the server streams one request at a time."""
        return None

    def onnx_graphs(self) -> "list[OnnxGraph]":
        """The model as ONNX graphs for `studio export --format onnx`: each a plain-tensor
        module with example inputs; the studio exports, checks them with onnxruntime against
        the module's own outputs and lists them in the manifest. []: none (the export says the
        generator cannot be exported)."""
        return []

    def onnx_manifest(self, folder: Path) -> dict:
        """What a client of the exported graphs needs besides them (JSON-able): e.g. the
        tokenizer file written into `folder`, sampling defaults, shapes."""
        return {}

    def preview(self) -> list[Sample]:
        """Samples on a fixed probe set (same prompts and seeds every time) for live previews,
        in eval mode under no_grad; the default samples 4 from seed 0."""
        return self.sample(self.SampleConfig(), n=4, seed=0)

    # --- state that is not tensors of the model -------------------------------------------
    def save_assets(self, folder: Path) -> None:
        """Write files the model needs besides its weights (e.g. the tokenizer); called once
        on a new run, after build() and configure_optimizers()."""

    def load_assets(self, folder: Path) -> None:
        """Read what save_assets wrote; called first when resuming or loading a run, before
        load_data and build()."""

    def extra_state(self) -> dict:
        """JSON-able state to put in each checkpoint (besides model, optimizers, RNG)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    # --- helpers ----------------------------------------------------------------------------
    @classmethod
    def config_from(cls, values: dict, where: str = "config"):
        from studio.config import from_dict
        return from_dict(cls.Config, values, where)

    @classmethod
    def migrate_config(cls, old: dict, from_version: str) -> dict:
        """The settings of a run made by version `from_version` of this generator, as this
        version names them (called on loading and resuming a run made by an older version,
        before they are validated): rename or drop settings here, so old runs keep working.
        The default keeps them as they are."""
        return old

    @classmethod
    def describe(cls) -> dict:
        from studio.config import describe
        return {"name": cls.name, "modality": cls.modality, "version": cls.version,
                "config": describe(cls.Config), "sample": describe(cls.SampleConfig),
                "presets": cls.presets, "train_defaults": cls.train_defaults}

