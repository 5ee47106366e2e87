"""The training engine, shared by every generator.

The engine owns the loop: device, CPU threads, seeding, precision, gradient accumulation and
clipping, warmup + cosine LR, pause/resume/stop, the NaN guard, and distributed data parallel
under torchrun. Everything that happens *around* a step (held-out evaluation, previews,
checkpoints, logging) is a callback (studio/callbacks.py), so the loop below stays short.
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from studio import events, lora
from studio.config import TrainConfig, resolve_intervals  # noqa: F401  (TrainConfig re-exported)
from studio.config import MAX_THREADS
from studio.contract import Generator, TrainContext
from studio.errors import DiskFull, StudioError, TrainingDiverged
from studio.optim import default_adamw  # noqa: F401  (re-exported: bench/bench_core.py)

if TYPE_CHECKING:
    from studio.callbacks import Callback
    from studio.runstore import RunDir


# --- device, threads, precision ------------------------------------------------------------------

def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def pick_device(spec: str) -> torch.device:
    if spec == "auto":
        if torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", 0))
            if local_rank >= torch.cuda.device_count():
                raise StudioError(f"torchrun started more processes on this machine than it has "
                                  f"GPUs ({torch.cuda.device_count()}); lower --nproc_per_node, "
                                  f"or train on the CPU with --device cpu.")
            return torch.device("cuda", local_rank)
        if "mps" in available_devices():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise StudioError(f"device '{spec}' is not a device name; use auto, cpu, cuda, cuda:N "
                          f"or mps.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise StudioError(f"device '{spec}': no CUDA GPU is available here; use cpu or auto.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise StudioError(f"device '{spec}': only {torch.cuda.device_count()} CUDA device(s) "
                              f"are present; available: {', '.join(available_devices())}.")
    if device.type == "mps" and "mps" not in available_devices():
        raise StudioError(f"device '{spec}': MPS is not available here; use cpu or auto.")
    return device


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def configure_threads(requested: int) -> int:
    """Pin torch's intra-op threads explicitly: an oversubscribed pool made steps up to 30x
    slower on a 2-core machine. Under torchrun, the cores are shared among local ranks."""
    if not 0 <= requested <= MAX_THREADS:  # TrainConfig refuses these; callers may not use it
        raise StudioError(f"threads={requested}: give 0 (one per core) up to {MAX_THREADS}; this "
                          f"machine has {usable_cores()} usable core(s).")
    local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    threads = requested or max(1, usable_cores() // local)
    if torch.get_num_threads() != threads:
        try:
            torch.set_num_threads(threads)
        except RuntimeError as exc:  # the OS would not start that many threads
            raise StudioError(f"cannot start {threads} CPU threads ({exc}); lower --set "
                              f"threads (this machine has {usable_cores()} usable core(s)).") from None
    return threads


# glibc's malloc hands every freed block over 128 KiB back to the kernel (mmap/munmap, heap
# trimming), so each training step's activations were page-faulted and zeroed afresh: 20-25% of
# a CPU GAN step (bench/bench_image.py). Training reallocates the same sizes every step, so the
# process keeps what it frees instead (peak memory is unchanged: it is reached every step).
GLIBC_M_TRIM_THRESHOLD, GLIBC_M_TOP_PAD, GLIBC_M_MMAP_MAX = -1, -2, -4
HEAP_GROWTH_BYTES = 64 << 20


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed memory rather than return it to the kernel (Linux with
    glibc only; elsewhere, or with STUDIO_MALLOC=system, nothing changes). True if applied."""
    import ctypes
    import platform

    if os.environ.get("STUDIO_MALLOC") == "system" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    settings = ((GLIBC_M_MMAP_MAX, 0), (GLIBC_M_TRIM_THRESHOLD, 2**31 - 1),
                (GLIBC_M_TOP_PAD, HEAP_GROWTH_BYTES))
    return all(mallopt(option, value) == 1 for option, value in settings)


def cpu_has_native_bf16() -> bool:
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_precision(requested: str, device: torch.device, n_params: int = 0,
                      cpu_bf16_min_params: int = Generator.cpu_bf16_min_params) -> str:
    """`auto`: bf16 on GPUs that have it (fp16 + loss scaling on older ones); on CPUs with
    native bf16, bf16 for models of at least `cpu_bf16_min_params` (the generator's
    declaration: from that size on it gains from bf16), else fp32."""
    if requested != "auto":
        if requested == "fp16" and device.type == "cpu":
            raise StudioError("precision fp16 is not supported on CPU (it is far slower than fp32 "
                              "there); use fp32 or bf16.")
        if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise StudioError(f"precision bf16: {torch.cuda.get_device_name(device)} has no bf16; "
                              f"use fp16 or fp32.")
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and n_params >= cpu_bf16_min_params and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def init_distributed(device_spec: str) -> tuple[int, int]:
    """Join the process group when started by torchrun (WORLD_SIZE > 1). Returns (rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    if world > 1 and not torch.distributed.is_initialized():
        device = pick_device(device_spec)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- the LR schedule ------------------------------------------------------------------------

@dataclass(frozen=True)
class DecayStart:
    """Where a session's time-driven decay begins: `minutes` into the session, with the run's
    decay already `progress` of the way along (0 for a new run, more on a resume)."""
    minutes: float = 0.0
    progress: float = 0.0


def steps_progress(step: int, train: TrainConfig) -> float:
    """How far the decay has gone by steps: 0 at the end of warmup, 1 at max_steps."""
    span = max(1, train.max_steps - train.warmup_steps)
    return min(1.0, (step - train.warmup_steps) / span)


def schedule_progress(step: int, train: TrainConfig, elapsed_minutes: float = 0.0,
                      start: DecayStart = DecayStart()) -> float:
    """How far the decay has gone, 0 (peak LR) to 1 (the floor), for a step after warmup.

    With a time budget (max_minutes) this session's minutes drive it too: from `start` to the
    end of the budget they cover what is left of the decay. The larger of the two progresses
    wins, so the LR reaches its floor at whichever limit comes first: a run given only a time
    budget is annealed when the time runs out, not stopped halfway down at a high LR. The
    budget is this session's (a resume gets a fresh one, see TrainConfig.max_minutes), hence
    `start` carries the progress reached before. Without a budget the steps alone set it, as
    they always have (a resume with a larger max_steps stretches the decay)."""
    by_steps = steps_progress(step, train)
    if train.max_minutes is None:
        return by_steps
    minutes_left = train.max_minutes - start.minutes
    if minutes_left <= 0:
        return 1.0
    used = min(1.0, max(0.0, elapsed_minutes - start.minutes) / minutes_left)
    by_time = start.progress + (1 - start.progress) * used
    return max(by_steps, by_time)


def lr_factor(step: int, train: TrainConfig, elapsed_minutes: float = 0.0,
              start: DecayStart = DecayStart()) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio at max_steps or at the end of the time
    budget, whichever comes first (or constant). Pure: the engine passes its clock's reading.

    Warmup stays counted in steps even under a time budget: it is there to keep the first
    updates small while Adam's moment estimates are still noisy, which takes a number of
    updates, not minutes; in minutes it would also last more steps on a fast machine than on a
    slow one. The decay after it starts from the peak wherever warmup ended (see
    Engine._set_lr), so the LR has no jump there."""
    if step < train.warmup_steps:
        return (step + 1) / (train.warmup_steps + 1)
    if train.lr_schedule == "constant":
        return 1.0
    progress = schedule_progress(step, train, elapsed_minutes, start)
    return train.min_lr_ratio + (1 - train.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# --- state for checkpoints ---------------------------------------------------------------------------

def model_tensors(model: torch.nn.Module) -> tuple[dict, dict]:
    """State dict as unique CPU tensors plus the aliases of tied weights (safetensors refuses
    shared storage): {"lm_head.weight": "wte.weight"}."""
    tensors, aliases, seen = {}, {}, {}
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = tensor.detach().to("cpu").contiguous()
    return tensors, aliases


def _some(names: list[str], shown: int = 3) -> str:
    """'a', 'b', 'c' and 4 more: names in a one-line message."""
    listed = ", ".join(f"'{n}'" for n in names[:shown])
    return f"{listed} and {len(names) - shown} more" if len(names) > shown else listed


def load_model_tensors(model: torch.nn.Module, tensors: dict, aliases: dict, where: str) -> None:
    expected = model.state_dict()
    # The fit check comes before the aliases are applied: an alias names a tensor the file
    # should hold, and weights with other names made that a bare KeyError.
    found = set(tensors) | {name for name, source in aliases.items() if source in tensors}
    missing = sorted(set(expected) - found)
    unexpected = sorted(found - set(expected))
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"the model expects {_some(missing)}, which the file lacks")
        if unexpected:
            problems.append(f"the file has {_some(unexpected)}, which the model does not")
        raise StudioError(f"{where}: the weights do not fit this model: {'; '.join(problems)}. "
                          f"Was it saved by another generator or config?")
    full = {**tensors, **{name: tensors[source] for name, source in aliases.items()}}
    for name, tensor in full.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise StudioError(f"{where}: weight '{name}' has shape {tuple(tensor.shape)} but the "
                              f"model expects {tuple(expected[name].shape)}.")
    model.load_state_dict(full, strict=True)


def optimizer_state(optimizers: list[torch.optim.Optimizer]) -> tuple[dict, list]:
    """Split optimizer state into tensors (safetensors) and the rest (JSON)."""
    tensors, meta = {}, []
    for i, opt in enumerate(optimizers):
        sd = opt.state_dict()
        scalars = {}
        for pid, slots in sd["state"].items():
            for key, value in slots.items():
                if torch.is_tensor(value):
                    tensors[f"opt{i}.{pid}.{key}"] = value.detach().to("cpu").contiguous()
                else:
                    scalars[f"{pid}.{key}"] = value
        meta.append({"param_groups": sd["param_groups"], "scalars": scalars})
    return tensors, meta


def load_optimizer_state(optimizers: list[torch.optim.Optimizer], tensors: dict, meta: list) -> None:
    if len(meta) != len(optimizers):
        raise StudioError(f"checkpoint has {len(meta)} optimizer(s) but the generator uses "
                          f"{len(optimizers)}.")
    for i, (opt, info) in enumerate(zip(optimizers, meta)):
        state: dict = {}
        prefix = f"opt{i}."
        for name, value in tensors.items():
            if name.startswith(prefix):
                pid, key = name[len(prefix):].split(".", 1)
                state.setdefault(int(pid), {})[key] = value
        for name, value in info["scalars"].items():
            pid, key = name.split(".", 1)
            state.setdefault(int(pid), {})[key] = value
        opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
        _match_parameter_layout(opt)


def _match_parameter_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each restored per-parameter tensor (Adam's moments) its parameter's memory layout.
    Checkpoints store tensors contiguous; fused and foreach optimizers walk a parameter and its
    moments as flat memory, so a channels-last weight with NCHW moments would apply each moment
    to the wrong element (measured: resumed GAN runs drifted from straight ones)."""
    for param, slots in optimizer.state.items():
        for key, value in slots.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                slots[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def rng_state(data_rng: torch.Generator) -> tuple[dict, dict]:
    tensors = {"rng.torch": torch.get_rng_state(), "rng.data": data_rng.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {"python": [py[0], list(py[1]), py[2]],
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    return tensors, meta


def load_rng_state(data_rng: torch.Generator, tensors: dict, meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    data_rng.set_state(tensors["rng.data"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda")]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = meta["numpy"]
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))


# --- the step context a generator sees -------------------------------------------------------------

class _Context(TrainContext):
    def __init__(self, engine: "Engine"):
        self._engine = engine
        self.step = 0
        self.device = engine.device
        self.model = engine.train_model
        self.micro_steps = engine.train.grad_accum

    def autocast(self):
        return autocast_context(self._engine.device, self._engine.precision)

    def backward(self, loss: torch.Tensor) -> None:
        scaler = self._engine.scaler
        (scaler.scale(loss) if scaler else loss).backward()

    def step_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self._engine.step_optimizer(optimizer)

    def average_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        average_gradients(optimizer, self._engine.world_size)


def average_gradients(optimizer: torch.optim.Optimizer, world_size: int) -> None:
    """Average the gradients of `optimizer`'s parameters over the torchrun ranks, in one
    all-reduce (nothing to do in a single process). For manual-optimization generators whose
    steps call their networks directly rather than through the engine's DDP wrapper: a GAN
    runs D's and G's steps apart, which the wrapper's single forward cannot express."""
    if world_size == 1 or not (torch.distributed.is_available()
                               and torch.distributed.is_initialized()):
        return
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def bind_device(gen: Generator, device: torch.device, precision: str) -> str:
    """The one place a generator is given its device and precision, for training
    (Engine.setup) and for sampling or evaluating a run (api.load_run): sets `gen.device`,
    builds the model onto it as `gen.model`, resolves the `precision` setting for the model's
    size and makes `gen.autocast` enter it. Returns the precision resolved."""
    gen.device = device
    gen.model = gen.build().to(device)
    resolved = resolve_precision(precision, device, sum(p.numel() for p in gen.model.parameters()),
                                 gen.cpu_bf16_min_params)
    gen.autocast = lambda: autocast_context(device, resolved)
    return resolved


# --- the engine --------------------------------------------------------------------------------------

class Engine:
    def __init__(self, generator: Generator, train: TrainConfig, run: "RunDir",
                 callbacks: list["Callback"]):
        self.generator = generator
        self.train = resolve_intervals(train)  # api.prepare_training has done so for a run
        self.run = run
        self.callbacks = callbacks
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self.is_main = self.rank == 0
        self.threads = configure_threads(train.threads)
        keep_freed_memory()  # a training process reaches its peak every step anyway
        self.device = pick_device(train.device)
        self.precision = resolve_precision(train.precision, self.device)  # final after build()
        self.scaler = None
        self.step = 0
        self.started = time.monotonic()
        self.paused_seconds = 0.0
        self.side_seconds = 0.0  # evaluating, sampling previews, saving: see training_seconds()
        self.stop_reason: str | None = None
        self.last_metrics: dict = {}
        self.pending_losses: list[torch.Tensor] = []
        self.items_seen = 0
        self.data_rng = torch.Generator()
        self.optimizers: list[torch.optim.Optimizer] = []
        self.peak_lrs: list[list[float]] = []
        # The LR schedule under a time budget (see schedule_progress): how far the decay had gone
        # at the last step (kept in checkpoints), where this session's decay by time began, and
        # under torchrun the minutes the ranks last agreed on.
        self.decay_progress = 0.0
        self.decay_start: DecayStart | None = None
        self.agreed_minutes: float | None = None
        self.train_model: torch.nn.Module | None = None
        # A LoRA run's record (studio/lora.py), set by api.prepare_training: its checkpoints
        # then hold the adapters alone, with this record naming their base.
        self.lora: dict | None = None

    # -- events go to every callback (the run log, the terminal, the window)
    def emit(self, event: str, **data) -> None:
        """Send an event declared in studio/events.py (a kind or field it does not declare
        raises EventError: a bug)."""
        record = events.make(event, **data)
        if not self.is_main:
            return
        for cb in self.callbacks:
            cb.on_event(self, record)

    # -- set-up
    def setup(self, prepare_model=None) -> None:
        """Build the model on the device, wrap it for DDP/compile, and make its optimizers.
        `prepare_model(model)` runs between the build and the rest: it loads the weights a new
        run starts from and adds a LoRA run's adapters, which the optimizers must see."""
        init_distributed(self.train.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        seed_everything(self.train.seed)
        self.data_rng.manual_seed(self.train.seed + self.rank)
        gen = self.generator
        self.precision = bind_device(gen, self.device, self.train.precision)
        model = gen.model
        if prepare_model is not None:
            prepare_model(model)
        if self.precision == "fp16":
            self.scaler = torch.amp.GradScaler(self.device.type)
        self.train_model = model
        if self.train.compile:
            model.compile()  # compiles forward in place; state_dict keys stay unchanged
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(model, device_ids=ids)
        optimizers = gen.configure_optimizers(self.train)
        self.optimizers = list(optimizers) if isinstance(optimizers, (list, tuple)) else [optimizers]
        if self.lora is not None:
            lora.keep_trainable_only(self.optimizers)
        # The peak LR of each parameter group, from this session's settings: a checkpoint's
        # optimizer state brings back the LRs it was saved with, which would ignore a resume
        # with --set lr=...
        self.peak_lrs = [[group["lr"] for group in opt.param_groups] for opt in self.optimizers]

    # -- checkpoints
    def checkpoint_payload(self) -> tuple[dict, dict]:
        if self.lora is not None:
            model, aliases = lora.adapter_tensors(self.generator.model), {}
        else:
            model, aliases = model_tensors(self.generator.model)
        opt_tensors, opt_meta = optimizer_state(self.optimizers)
        rng_tensors, rng_meta = rng_state(self.data_rng)
        state = {
            "aliases": aliases, "optimizers": opt_meta, "rng": rng_meta,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "generator": self.generator.extra_state(),
            "callbacks": {type(cb).__name__: cb.state_dict() for cb in self.callbacks},
            "metrics": dict(self.last_metrics), "items_seen": self.items_seen,
            "decay_progress": self.decay_progress,
            "generator_name": self.generator.name, "generator_version": self.generator.version,
        }
        if self.lora is not None:
            state["lora"] = self.lora
        return {"model.safetensors": model, "trainer.safetensors": {**opt_tensors, **rng_tensors}}, state

    def restore(self, state: dict, tensors: dict, where: str) -> None:
        if state.get("generator_name") != self.generator.name:
            raise StudioError(f"{where} was written by generator '{state.get('generator_name')}', "
                              f"not '{self.generator.name}'.")
        if self.lora is not None:
            lora.load_adapter_tensors(self.generator.model, tensors["model.safetensors"], where)
        else:
            load_model_tensors(self.generator.model, tensors["model.safetensors"], state["aliases"],
                               where)
        trainer = tensors.get("trainer.safetensors", {})
        load_optimizer_state(self.optimizers, trainer, state["optimizers"])
        load_rng_state(self.data_rng, trainer, state["rng"])
        if self.rank:  # other ranks draw their own batches: reseed from (seed, rank, step)
            self.data_rng.manual_seed(self.train.seed + self.rank + 1_000_003 * int(state["step"]))
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.generator.load_extra_state(state.get("generator", {}))
        for cb in self.callbacks:
            cb.load_state_dict(state.get("callbacks", {}).get(type(cb).__name__, {}))
        self.step = int(state["step"])
        self.items_seen = int(state.get("items_seen", 0))
        self.last_metrics = dict(state.get("metrics", {}))
        self.decay_progress = float(state.get("decay_progress", 0.0))  # none kept before: 0

    # -- one optimizer step (also used by manual-optimization generators)
    def step_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler:
            self.scaler.unscale_(optimizer)
        if self.train.grad_clip > 0:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.train.grad_clip, foreach=True)
        if self.scaler:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def _set_lr(self) -> float:
        """Move every optimizer's LR along the schedule; returns the scheduled `lr` setting.
        (Optimizers may run at multiples of it, as a GAN's discriminator does: reporting the
        first optimizer's LR showed 0.0004 on a chart beside a field that said 0.0002.)"""
        train = self.train
        elapsed = self._schedule_minutes()
        if self.decay_start is None and self.step >= train.warmup_steps:
            # The decay by time runs from here (the end of warmup, or the resume point) to the
            # end of the budget, on from where the run's decay had got to: the LR neither jumps
            # at the end of warmup nor goes back up to the peak on a resume.
            self.decay_start = DecayStart(elapsed, max(self.decay_progress,
                                                       steps_progress(self.step, train)))
        start = self.decay_start or DecayStart()
        factor = lr_factor(self.step, train, elapsed, start)
        if self.step >= train.warmup_steps:
            self.decay_progress = schedule_progress(self.step, train, elapsed, start)
        for opt, peaks in zip(self.optimizers, self.peak_lrs):
            for group, peak in zip(opt.param_groups, peaks):
                group["lr"] = peak * factor
        return self.train.lr * factor

    def _train_step(self, ctx: _Context) -> dict:
        gen = self.generator
        if gen.manual_optimization:
            batch = gen.get_batch("train", self.data_rng)
            self.items_seen += gen.count_items(batch)
            return gen.training_step(batch, ctx)
        accum = self.train.grad_accum
        metrics: dict = {}
        for micro in range(accum):
            batch = gen.get_batch("train", self.data_rng)
            self.items_seen += gen.count_items(batch)
            sync = nullcontext()
            if self.world_size > 1 and micro < accum - 1:
                sync = self.train_model.no_sync()
            with sync:
                with ctx.autocast():
                    out = gen.training_step(batch, ctx)
                ctx.backward(out["loss"] / accum if accum > 1 else out["loss"])
            metrics = out
        for opt in self.optimizers:
            self.step_optimizer(opt)
        return metrics

    # -- losses are read back in groups, so a GPU is not synchronised every step
    def flush_losses(self) -> float | None:
        if not self.pending_losses:
            return None
        values = torch.stack(self.pending_losses).float().cpu()
        self.pending_losses.clear()
        if not torch.isfinite(values).all():
            raise TrainingDiverged(self._diverged_message())
        return float(values.mean())

    def _diverged_message(self) -> str:
        kept = self.run.checkpoints()
        where = f"the last good checkpoint {kept[-1].name} is kept" if kept else "no checkpoint had been written yet"
        return (f"training diverged: the loss became NaN or infinite near step {self.step} of "
                f"{self.run.path}; {where}. Lower lr (--set lr=...) or raise warmup_steps, then "
                f"resume.")

    def elapsed_minutes(self) -> float:
        return (time.monotonic() - self.started - self.paused_seconds) / 60

    def _schedule_minutes(self) -> float:
        """This session's minutes as the LR schedule reads them (0 without a time budget, which
        the schedule then ignores). Under torchrun every rank must set the same LR or the
        replicas drift apart, so the ranks agree on the latest clock every `log_every` steps
        (when they already meet to agree on stopping) and keep it in between."""
        if self.train.max_minutes is None:
            return 0.0
        if self.world_size == 1:
            return self.elapsed_minutes()
        if self.agreed_minutes is None or self.step % self.train.log_every == 0:
            minutes = torch.tensor([self.elapsed_minutes()], device=self.device)
            torch.distributed.all_reduce(minutes, op=torch.distributed.ReduceOp.MAX)
            self.agreed_minutes = float(minutes.item())
        return self.agreed_minutes

    def training_seconds(self) -> float:
        """The clock that training rates are measured on: wall time less pauses and less the
        callbacks' side work (evaluation, previews, checkpoints). Measured on the wall clock, a
        rate dropped by a third for the few log points after every evaluation, though training
        itself was no slower."""
        return time.monotonic() - self.started - self.paused_seconds - self.side_seconds

    # -- control: signals and the control file
    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def _should_stop(self) -> bool:
        """Single process: stop when asked. Under torchrun the ranks must leave the loop at the
        same step, so they agree every `log_every` steps (one tiny all-reduce)."""
        if self.world_size == 1:
            return self.stop_reason is not None
        if self.step % self.train.log_every:
            return False
        flag = torch.tensor([1.0 if self.stop_reason else 0.0], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item() and self.stop_reason is None:
            self.stop_reason = "stop requested on another rank"
        return bool(flag.item())

    def _install_signal_handlers(self):
        previous = {}

        def handler(signum, frame):
            if self.stop_reason is not None:  # second signal: stop now, earlier checkpoints stay
                raise KeyboardInterrupt
            self.request_stop(signal.Signals(signum).name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (e.g. embedded); rely on the control file
                pass
        return previous

    def _poll_control(self) -> None:
        command = self.run.read_control() if self.is_main else None
        if command == "stop":
            self.run.clear_control()
            self.request_stop("stop requested")
        elif command == "pause":
            self._pause()

    def _pause(self) -> None:
        began = time.monotonic()  # the checkpoint written on pause is part of the pause
        for cb in self.callbacks:
            cb.on_pause(self)
        self.emit("paused", step=self.step)
        self.run.update(status="paused", step=self.step)
        while self.stop_reason is None:
            command = self.run.read_control()
            if command == "stop":
                self.request_stop("stop requested")
            elif command != "pause":
                break
            time.sleep(0.2)
        self.run.clear_control()
        self.paused_seconds += time.monotonic() - began
        if self.stop_reason is None:
            self.run.update(status="running", step=self.step)
            self.emit("resumed", step=self.step)

    # -- the loop
    def fit(self, resume_from: Path | None = None) -> str:
        """Train until max_steps, max_minutes, a stop request or a signal. Returns the status."""
        if resume_from is not None:
            state, tensors = self.run.load_checkpoint(resume_from)
            self.restore(state, tensors, str(resume_from))
        previous_handlers = self._install_signal_handlers()
        ctx = _Context(self)
        train = self.train
        if self.is_main:
            self.run.clear_control()
            self.run.update(status="running", step=self.step, pid=os.getpid())
        self.emit("start", step=self.step, max_steps=train.max_steps, device=str(self.device),
                  precision=self.precision, threads=self.threads, world_size=self.world_size,
                  params=sum(p.numel() for p in self.generator.model.parameters()),
                  trainable_params=sum(p.numel() for p in self.generator.model.parameters()
                                       if p.requires_grad),
                  unit=self.generator.throughput_unit, run=str(self.run.path))
        for cb in self.callbacks:
            cb.on_train_start(self)
        status = "failed"
        try:
            while self.step < train.max_steps:
                self._poll_control()
                if train.max_minutes is not None and self.elapsed_minutes() >= train.max_minutes:
                    self.request_stop(f"time limit of {train.max_minutes:g} min")
                if self._should_stop():
                    break
                lr = self._set_lr()
                ctx.step = self.step
                metrics = self._train_step(ctx)
                self.pending_losses.append(metrics["loss"].detach())
                self.step += 1
                self.last_metrics["lr"] = lr
                for cb in self.callbacks:
                    began = time.monotonic()
                    cb.on_step_end(self, metrics)
                    if getattr(cb, "side_work", False):
                        self.side_seconds += time.monotonic() - began
            status = "done" if self.stop_reason is None else "stopped"
            for cb in self.callbacks:
                cb.on_train_end(self, status)
            barrier()  # ranks leave together, after rank 0's final evaluation and checkpoint
        except TrainingDiverged as exc:
            status = "diverged"
            self.emit("error", message=str(exc), step=self.step)
            raise
        except DiskFull as exc:  # the last good checkpoint is intact: resume once there is room
            status, self.stop_reason = "stopped", "disk full"
            self.emit("error", message=str(exc), step=self.step)
            raise
        except StudioError as exc:
            self.emit("error", message=str(exc), step=self.step)
            raise
        except KeyboardInterrupt:
            status = "stopped"
            self.emit("warning", message="stopped without a final checkpoint (second interrupt)")
        except BaseException as exc:
            self.emit("error", message=f"{type(exc).__name__}: {exc}", step=self.step)
            raise
        finally:
            for sig, old in previous_handlers.items():
                signal.signal(sig, old)
            if self.is_main:
                self.run.update(status=status, step=self.step, pid=None,
                                reason=self.stop_reason if status == "stopped" else None)
                self.run.unlock()
            if self.world_size > 1 and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
        self.emit("done", status=status, step=self.step, reason=self.stop_reason or "max_steps reached")
        return status
