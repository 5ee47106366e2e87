"""The optimizers the studio makes for generators: AdamW with nanoGPT's decay split, on the
fused kernel where this torch and device have it.

Apart from the engine so that the plugin contract (`Generator.configure_optimizers`) can offer
them without importing the engine: the contract sits below it (pyproject.toml's layers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from studio.config import TrainConfig


def fused_adamw(params: list, device_type: str, **kwargs) -> torch.optim.AdamW:
    """AdamW over `params` (tensors or parameter groups) that live on `device_type`. The fused
    kernel runs the whole update in one pass on CPU and CUDA; where this torch or device lacks
    it (MPS, an older torch), foreach is the fallback."""
    try:
        return torch.optim.AdamW(params, fused=device_type in ("cpu", "cuda"), **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, foreach=True, **kwargs)


def default_adamw(model: torch.nn.Module, train: "TrainConfig", lr: float | None = None,
                  betas: tuple[float, float] | None = None) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (nanoGPT's split), fused where possible."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": train.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return fused_adamw(groups, params[0].device.type if params else "cpu",
                       lr=lr if lr is not None else train.lr,
                       betas=betas or (train.beta1, train.beta2))
