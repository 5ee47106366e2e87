"""Sampling strategies: small functions over logits, kept apart from the network.

They run in the order Hugging Face's `generate` applies them (repetition penalty, then
temperature, top-k, top-p), so the same settings mean the same thing in both.
"""

from __future__ import annotations

import torch


def repetition_penalty(logits: torch.Tensor, history: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019): make every token already in `history` (B, L) less
    likely -- divide a positive logit by `penalty`, multiply a negative one."""
    if penalty == 1.0:
        return logits
    seen = logits.gather(1, history)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(1, history, seen)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """temperature 0 is handled by the caller as greedy decoding."""
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k highest logits per row (k <= 0: keep all)."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus sampling (Holtzman et al. 2019): keep the smallest set of likeliest tokens whose
    probabilities add up to at least p (always at least one token)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative - sorted_logits.softmax(dim=-1) >= p  # mass before this token already >= p
    drop[..., 0] = False
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


def choose(logits: torch.Tensor, history: torch.Tensor, *, temperature: float, top_k: int = 0,
           top_p: float = 1.0, repetition: float = 1.0,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """logits (B, V), tokens so far (B, L) -> next token ids (B, 1)."""
    logits = repetition_penalty(logits.float(), history, repetition)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
