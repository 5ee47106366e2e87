"""LoRA fine-tuning (Hu et al. 2021): low-rank adapters beside a frozen base model.

With `--set lora_rank=R` a run trains only small matrices A (R x in) and B (out x R) beside
each targeted Linear layer, whose output becomes W x + (alpha / R) B A x; the base weights W
stay as they were. Its checkpoints hold the adapters alone and, in JSON, a reference to the
base (the run and checkpoint it started from, or the imported folder, with the SHA-256 of the
base's weights file), so that loading it can rebuild base + adapters and notice a base that
was deleted, moved or changed. `studio export RUN --merge` folds the adapters into W and
writes a plain run that needs no base.

The adapters come from the peft library (`pip install "aigc-studio[lora]"`): its
`inject_adapter_in_model` wraps the targeted Linear layers of a plain torch model in place,
with no PeftModel wrapper, so the model keeps its forward signature and the generator's code
runs unchanged; peft's merge is tested against the unmerged model in tests/test_lora.py. It is
imported only when a run uses LoRA.

A LoRA record (config.json's "lora", and each checkpoint's state.json) is plain JSON:
{"rank": 8, "alpha": 16.0, "targets": ["c_attn", ...], "whole": ["head."], "base": {"run": PATH,
"checkpoint": "step_0000500", "weights": PATH/model.safetensors, "sha256": ...}} (or
{"pretrained": DIR, ...} for an imported model). "whole" names the layers that train whole and
are stored beside the adapters: a classifier's or tagger's task layer, which starts fresh.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from studio.errors import StudioError
from studio.runstore import WEIGHTS_FILE, file_digest

if TYPE_CHECKING:
    import torch

# peft names the one adapter of a model "default" in its parameter names
# (c_attn.lora_A.default.weight); its state-dict helpers leave the name out (c_attn.lora_A.weight).
ADAPTER_NAME = "default"
PIP_COMMAND = 'pip install "aigc-studio[lora]"  (or: pip install "peft>=0.11")'


def _peft():
    try:
        import peft
    except ImportError:
        raise StudioError(f"lora_rank > 0 needs the peft library, which is not installed. "
                          f"Install it with: {PIP_COMMAND}. Or train without LoRA "
                          f"(lora_rank=0).") from None
    return peft


def merge_advice(lora_run) -> str:
    """How to get a run that needs no base. Merging is a terminal command (the window has no
    control for it), so the advice says so in every front end."""
    return f"(from a terminal: `studio export {lora_run} --merge --out DIR`)"


def default_alpha(rank: int) -> float:
    """alpha = 2 x rank: the adapters' scale alpha / rank is then 2 at every rank, so trying
    another rank does not also change how far a step moves the output (the LR found for one
    rank holds for the others), and 2 rather than 1 lets the zero-initialised B reach a useful
    size in a short fine-tuning."""
    return 2.0 * rank


# Adapters learn at this multiple of the learning rate full fine-tuning would use: measured on
# the genre of held-out plays' lines (bench_adapt.py, char 4 blocks of 128, 600 steps from the
# project's pretrained run, rank 8), held-out macro F1 0.402 at the fine-tuning LR 1e-4, 0.514
# at 1e-3, 0.300 at 3e-3 (full fine-tuning: 0.511 at 1e-4, 0.381 at 1e-3). The LoRA paper and peft's examples
# also train adapters at about 10x a full fine-tuning's LR.
LR_SCALE = 10.0


def default_lr(fine_tuning_lr: float) -> float:
    """The learning rate of a LoRA run whose LR nobody set."""
    return fine_tuning_lr * LR_SCALE


# --- the record ------------------------------------------------------------------------------

def make_record(train, gen_cls, init_record: dict | None, init_given: bool) -> dict | None:
    """The LoRA record of a new run from its training settings (`train`), its generator class
    and what it starts from (`init_record`, the run's "init"); None when lora_rank is 0."""
    if train.lora_rank == 0:
        return None
    if not init_given or not init_record:
        raise StudioError(f"lora_rank={train.lora_rank} trains adapters on top of a base model, "
                          f"and this run starts from none. Give the base with --init-from RUN "
                          f"(a trained run) or --init-from-hf DIR (an imported model), or train "
                          f"all weights with lora_rank=0.")
    targets = list(train.lora_targets) or list(gen_cls.lora_targets)
    if not targets:
        raise StudioError(f"generator '{gen_cls.name}' declares no default lora_targets; name "
                          f"the Linear layers to adapt (suffixes of their names), e.g. --set "
                          f"lora_targets=[\"proj\"]")
    alpha = train.lora_alpha if train.lora_alpha is not None else default_alpha(train.lora_rank)
    # A layer the generator makes fresh for each run (a classifier's head: `fresh_on_init`) has
    # no trained weights to adapt, so it trains whole and is stored beside the adapters (what
    # peft calls modules_to_save).
    whole = list(getattr(gen_cls, "fresh_on_init", ()))
    return {"rank": train.lora_rank, "alpha": float(alpha), "targets": targets,
            "whole": whole, "base": base_reference(init_record)}


def base_reference(init_record: dict) -> dict:
    """Where the base's weights are and their SHA-256, taken now, so a later load can verify
    that the base it finds is the one the adapters were trained on."""
    if "pretrained" in init_record:
        weights = Path(init_record["pretrained"]) / WEIGHTS_FILE
        if not weights.is_file():
            raise StudioError(f"LoRA on an imported model needs its weights in {weights}, which "
                              f"is missing; give a folder with {WEIGHTS_FILE}.")
        return {"pretrained": str(Path(init_record["pretrained"]).resolve()),
                "weights": str(weights.resolve()), "sha256": file_digest(weights)["sha256"]}
    run = Path(init_record["run"]).resolve()
    weights = run / "checkpoints" / init_record["checkpoint"] / WEIGHTS_FILE
    if not weights.is_file():
        raise StudioError(f"the base checkpoint {weights.parent} has no {WEIGHTS_FILE}; give "
                          f"another --init-from checkpoint.")
    return {"run": str(run), "checkpoint": init_record["checkpoint"], "weights": str(weights),
            "sha256": file_digest(weights)["sha256"]}


def check_base(record: dict, lora_run: Path) -> None:
    """Refuse a base that is gone or not the one the adapters were trained on, saying which
    path, what changed and what to do."""
    base = record["base"]
    where = base.get("run") or base.get("pretrained")
    weights = Path(base["weights"])
    restore = (f"Put the base back at {where} as it was (its weights must hash to "
               f"{base['sha256'][:12]}...); once {lora_run} loads again, merge it into a run "
               f"that needs no base {merge_advice(lora_run)}.")
    if not Path(where).exists():
        raise StudioError(f"{lora_run} is a LoRA run whose base {where} is missing (deleted or "
                          f"moved); its checkpoints hold only the adapters. {restore}")
    if not weights.is_file():
        raise StudioError(f"{lora_run} is a LoRA run whose base weights {weights} are missing "
                          f"(the base {where} lost that checkpoint). {restore}")
    found = file_digest(weights)["sha256"]
    if found != base["sha256"]:
        raise StudioError(f"{lora_run} is a LoRA run whose base weights {weights} changed since "
                          f"the adapters were trained (SHA-256 {found[:12]}..., expected "
                          f"{base['sha256'][:12]}...): the adapters would be applied to other "
                          f"weights. {restore}")


# --- adapters in a model -----------------------------------------------------------------------

def tied_modules(model: "torch.nn.Module") -> set[str]:
    """Names of the modules whose parameters are shared with another module (e.g. a text
    model's lm_head, whose weight is the token embedding's): an adapter there would change
    the embedding too, so it is never targeted."""
    owners: dict[int, set[str]] = {}
    for module_name, module in model.named_modules():
        for param in module.parameters(recurse=False):
            owners.setdefault(id(param), set()).add(module_name)
    return {name for names in owners.values() if len(names) > 1 for name in names}


def _targeted(model: "torch.nn.Module", targets: list[str]) -> dict[str, list[str]]:
    """For each target suffix, the Linear layers it names (peft's matching: the module's
    name is the target or ends with "." + the target)."""
    import torch
    linears = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    return {target: [name for name in linears if name == target or name.endswith("." + target)]
            for target in targets}


def inject(model: "torch.nn.Module", record: dict) -> None:
    """Add the adapters to `model` (its base weights already loaded) and freeze everything
    else, so that only the adapters (and the layers the record trains whole) train. A Linear
    layer the generator froze (freeze_layers) keeps its adapter frozen too."""
    import torch
    peft = _peft()
    matched = _targeted(model, record["targets"])
    unmatched = [target for target, names in matched.items() if not names]
    if unmatched:
        linears = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                          if isinstance(m, torch.nn.Linear)})
        raise StudioError(f"lora_targets {unmatched} name no Linear layer of this model; its "
                          f"Linear layers end in: {', '.join(linears)}.")
    tied = sorted({name for names in matched.values() for name in names} & tied_modules(model))
    if tied:
        raise StudioError(f"lora_targets would adapt {', '.join(tied)}, whose weight is tied to "
                          f"another module (an adapter there changes both); leave it out of "
                          f"lora_targets.")
    frozen = {name for name, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad}
    model.requires_grad_(False)
    config = peft.LoraConfig(r=record["rank"], lora_alpha=record["alpha"], lora_dropout=0.0,
                             target_modules=list(record["targets"]), bias="none")
    peft.inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    whole = tuple(record.get("whole", ()))
    for name, param in model.named_parameters():
        adapted_layer = name.split(".lora_")[0]
        param.requires_grad_((is_adapter(name) and adapted_layer not in frozen)
                             or (bool(whole) and name.startswith(whole)))


def is_adapter(parameter_name: str) -> bool:
    return ".lora_A." in parameter_name or ".lora_B." in parameter_name


def adapter_tensors(model: "torch.nn.Module") -> dict:
    """What a LoRA checkpoint stores, as CPU tensors: the adapters' weights and the layers
    trained whole (inject: the trainable parameters that are no adapters)."""
    from peft import get_peft_model_state_dict
    state = get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME)
    state.update({name: p for name, p in model.named_parameters()
                  if p.requires_grad and not is_adapter(name)})
    return {name: tensor.detach().to("cpu").contiguous() for name, tensor in state.items()}


def load_adapter_tensors(model: "torch.nn.Module", tensors: dict, where: str) -> None:
    """Put a LoRA checkpoint's adapter weights into a model with adapters injected; refuse
    a file whose adapters are not exactly the model's."""
    from peft import set_peft_model_state_dict
    expected = adapter_tensors(model)
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise StudioError(f"{where}: the adapter weights do not fit this run's LoRA settings "
                          f"(missing: {missing[:3] or 'none'}; not expected: "
                          f"{unexpected[:3] or 'none'}). Was the checkpoint written by another run?")
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise StudioError(f"{where}: adapter '{name}' has shape {tuple(tensor.shape)}, the "
                              f"run's LoRA settings make {tuple(expected[name].shape)}.")
    import torch
    adapters = {name: tensor for name, tensor in tensors.items() if is_adapter(name)}
    set_peft_model_state_dict(model, adapters, adapter_name=ADAPTER_NAME)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in tensors.items():
            if name not in adapters:  # a layer trained whole
                parameters[name].copy_(tensor)


def merge(model: "torch.nn.Module") -> "torch.nn.Module":
    """Fold the adapters into their base weights (W + alpha/r B A) and put the plain Linear
    layers back, so the model's state dict has the names of a model without LoRA."""
    from peft.tuners.lora import LoraLayer
    wrapped = [(name, module) for name, module in model.named_modules()
               if isinstance(module, LoraLayer)]
    for name, module in wrapped:
        module.merge(safe_merge=True, adapter_names=[ADAPTER_NAME])
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    return model


def keep_trainable_only(optimizers: list) -> None:
    """Drop frozen parameters from optimizers a generator built over its whole model, so that
    the optimizer of a LoRA run holds the adapters alone (before its first step: no state)."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if p.requires_grad]
