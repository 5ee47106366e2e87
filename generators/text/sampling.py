"""Sampling strategies: small functions over logits, kept apart from the network."""

from __future__ import annotations

import torch


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """temperature 0 is handled by the caller as greedy decoding."""
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k highest logits per row (k <= 0: keep all)."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def next_token(logits: torch.Tensor, temperature: float, top_k: int,
               generator: torch.Generator | None) -> torch.Tensor:
    """logits (B, V) -> token ids (B, 1)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    probs = torch.softmax(top_k_filter(apply_temperature(logits.float(), temperature), top_k), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)
