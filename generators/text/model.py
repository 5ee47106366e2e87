"""A GPT-style decoder-only Transformer, in plain torch. Imports nothing from the app.

Pre-LayerNorm blocks, causal `scaled_dot_product_attention` (flash / memory-efficient kernels
where the device has them), GELU MLP, input and output embeddings tied, GPT-2 initialisation.
References: GPT-2 (Radford et al. 2019), nanoGPT (Karpathy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTShape:
    vocab_size: int
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False


class KVCache:
    """Keys and values of the tokens seen so far, per layer: prefill once, then one token per
    step attends to everything cached instead of recomputing the whole context."""

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.length = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, nh, T, hs) after the cached ones; return all keys and values so far."""
        B, nh, T, hs = k.shape
        if layer == len(self.keys):  # first use of this layer: allocate the whole block once
            self.keys.append(k.new_empty(B, nh, self.max_len, hs))
            self.values.append(v.new_empty(B, nh, self.max_len, hs))
        end = self.length + T
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]



class SlotCache:
    """Keys and values of up to `rows` sequences side by side, for continuous batching: a slot
    per sequence (rows, nh, max_len, hs per layer), each with its own length. A sequence is
    prefilled alone into its slot (`prefill`, a KVCache for one row); `step` then reads one
    new token of several rows at once, each at its own position and seeing only its own keys."""

    def __init__(self, rows: int, max_len: int):
        self.rows, self.max_len = rows, max_len
        self.lengths = [0] * rows  # tokens held per slot
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def layer(self, layer: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The slots of one layer, allocated on first use in the dtype and device of `like`
        (under autocast that is the autocast dtype)."""
        if layer == len(self.keys):
            _, nh, _, hs = like.shape
            self.keys.append(like.new_zeros(self.rows, nh, self.max_len, hs))
            self.values.append(like.new_zeros(self.rows, nh, self.max_len, hs))
        return self.keys[layer], self.values[layer]

    def prefill(self, row: int) -> "SlotPrefill":
        """A cache for a forward of one row's tokens (B=1) that fills its slot from the start."""
        self.lengths[row] = 0
        return SlotPrefill(self, row)

    def free(self, row: int) -> None:
        self.lengths[row] = 0

    def step(self, rows: list[int], device: torch.device) -> "SlotStep":
        return SlotStep(self, rows, device)


class SlotPrefill:
    """KVCache's interface over one slot of a SlotCache: a forward with it computes exactly
    what a forward with a fresh KVCache(max_len) of batch 1 does (the same shapes and strides),
    so a row's prefill gives the logits an unbatched decode gives."""

    def __init__(self, slots: SlotCache, row: int):
        self.slots, self.row, self.length = slots, row, 0

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        keys, values = self.slots.layer(layer, k)
        row, end = slice(self.row, self.row + 1), self.length + k.size(2)
        keys[row, :, self.length:end] = k
        values[row, :, self.length:end] = v
        self.slots.lengths[self.row] = end
        return keys[row, :, :end], values[row, :, :end]


class SlotStep:
    """One new token for each of `rows` (R of the slots), read by one forward
    (GPT.decode_rows): each row's token sits at that row's own position and attends to its
    own keys only. Only these rows are read, so a mostly empty SlotCache costs what its
    active rows cost."""

    def __init__(self, slots: SlotCache, rows: list[int], device: torch.device):
        self.slots = slots
        self.rows = rows
        lengths = [slots.lengths[r] for r in rows]
        if max(lengths) + 1 > slots.max_len:
            raise ValueError(f"a row of {max(lengths)} tokens has no room for one more in the "
                             f"block ({slots.max_len})")
        self.span = max(lengths) + 1  # keys read: up to the longest row's new token
        self.index = torch.tensor(rows, dtype=torch.long, device=device)
        self.write_at = torch.tensor(lengths, dtype=torch.long, device=device)
        self.positions = self.write_at[:, None]  # (R, 1) position ids of the new tokens
        # Rows side by side in their slots are read as a view (no copy), as KVCache is.
        adjacent = rows == list(range(rows[0], rows[0] + len(rows)))
        self.side_by_side = slice(rows[0], rows[0] + len(rows)) if adjacent else None
        self.one_length = len(set(lengths)) == 1
        if self.one_length:
            self.mask = None  # every row sees all `span` keys: attention needs no mask
        else:  # (R, 1, 1, span): True where a key is one of the row's own
            seen = torch.arange(self.span, device=device)[None, :] <= self.write_at[:, None]
            self.mask = seen[:, None, None, :]

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store the rows' new k, v (R, nh, 1, hs) in their slots; attention of q (R, nh, 1, hs)
        over each row's keys so far."""
        keys, values = self.slots.layer(layer, k)
        rows = self.side_by_side
        if rows is not None and self.one_length:  # one block of the slots: plain slices
            keys[rows, :, self.span - 1:self.span] = k
            values[rows, :, self.span - 1:self.span] = v
        else:  # (R, nh, hs) at each row's own length
            keys[self.index, :, self.write_at] = k[:, :, 0]
            values[self.index, :, self.write_at] = v[:, :, 0]
        if rows is not None:
            k, v = keys[rows, :, :self.span], values[rows, :, :self.span]
        else:
            k, v = keys[self.index, :, :self.span], values[self.index, :, :self.span]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)

    def advance(self) -> None:
        for row in self.rows:
            self.slots.lengths[row] += 1


# Up to this many tokens, bf16 attention on a CPU runs faster as plain matmuls and a softmax
# than through scaled_dot_product_attention, whose CPU flash kernel is slow in bf16 (forward and
# backward, microbenchmark on a 2-core AMD EPYC with AVX512-BF16, torch 2.14): 3.5x at
# 64 tokens (batch 12, 4 heads of 32), 1.7x at 256 (batch 16, 6 heads of 64), even at 512 and
# 0.6x at 1024, where the T x T scores also grow too big to keep for backward. In fp32 the two
# are even at 64 tokens and SDPA wins beyond, so fp32 keeps SDPA.
EXPLICIT_ATTENTION_MAX_TOKENS = 256


def explicit_attention_pays(q: torch.Tensor) -> bool:
    return (q.device.type == "cpu" and q.dtype == torch.bfloat16
            and q.size(-2) <= EXPLICIT_ATTENTION_MAX_TOKENS)


class CausalSelfAttention(nn.Module):
    def __init__(self, shape: GPTShape):
        super().__init__()
        assert shape.n_embd % shape.n_head == 0
        self.c_attn = nn.Linear(shape.n_embd, 3 * shape.n_embd, bias=shape.bias)  # q, k, v at once
        self.c_proj = nn.Linear(shape.n_embd, shape.n_embd, bias=shape.bias)
        self.resid_dropout = nn.Dropout(shape.dropout)
        self.n_head = shape.n_head
        self.dropout = shape.dropout

    def forward(self, x: torch.Tensor, cache: KVCache | SlotStep | None = None,
                layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, nh, T, hs)
        if isinstance(cache, SlotStep):  # continuous batching: rows of different lengths
            y = cache.attend(layer, q, k, v).transpose(1, 2).contiguous().view(B, T, C)
            return self.resid_dropout(self.c_proj(y))
        past = cache.length if cache is not None else 0
        if cache is not None:
            k, v = cache.append(layer, k, v)  # (B, nh, past + T, hs)
        if past == 0 and explicit_attention_pays(q):
            y = self._explicit_causal_attention(q, k, v)
        elif past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)
        elif T == 1:  # one new token sees every cached one: no mask needed
            y = F.scaled_dot_product_attention(q, k, v)
        else:  # a chunk after a cache: token i sees the past and the chunk up to i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads
        return self.resid_dropout(self.c_proj(y))

    def _explicit_causal_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """softmax(q k^T / sqrt(hs), causal) v as three plain ops: see explicit_attention_pays."""
        weights = causal_attention_weights(q, k)
        if self.training and self.dropout > 0:
            weights = F.dropout(weights, self.dropout)
        return weights @ v

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights (B, nh, T, T) this layer gives its input x (B, T, C): what
        forward computes, made visible (forward itself never keeps them; SDPA does not
        return them)."""
        q, k, _ = self.c_attn(x).split(x.size(-1), dim=2)
        return causal_attention_weights(self._heads(q), self._heads(k))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, nh, T, hs): the heads side by side."""
        B, T, C = t.shape
        return t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)


def causal_attention_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs)) with each query seeing the keys up to its own position:
    (..., T, hs) queries and keys -> (..., T, T) weights, zero above the diagonal."""
    T = q.size(-2)
    scores = (q @ k.transpose(-2, -1)) * (q.size(-1) ** -0.5)
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)


class MLP(nn.Module):
    def __init__(self, shape: GPTShape):
        super().__init__()
        self.c_fc = nn.Linear(shape.n_embd, 4 * shape.n_embd, bias=shape.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's GELU
        self.c_proj = nn.Linear(4 * shape.n_embd, shape.n_embd, bias=shape.bias)
        self.dropout = nn.Dropout(shape.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm: normalise the input of each sub-layer, keep the residual path clean."""

    def __init__(self, shape: GPTShape):
        super().__init__()
        self.ln_1 = nn.LayerNorm(shape.n_embd, bias=shape.bias)
        self.attn = CausalSelfAttention(shape)
        self.ln_2 = nn.LayerNorm(shape.n_embd, bias=shape.bias)
        self.mlp = MLP(shape)

    def forward(self, x: torch.Tensor, cache: KVCache | SlotStep | None = None,
                layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, shape: GPTShape):
        super().__init__()
        self.shape = shape
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(shape.vocab_size, shape.n_embd),
            wpe=nn.Embedding(shape.block_size, shape.n_embd),
            drop=nn.Dropout(shape.dropout),
            h=nn.ModuleList([Block(shape) for _ in range(shape.n_layer)]),
            ln_f=nn.LayerNorm(shape.n_embd, bias=shape.bias),
        ))
        self.lm_head = nn.Linear(shape.n_embd, shape.vocab_size, bias=False)
        # Weight tying (Press & Wolf 2017): one matrix embeds tokens and scores them.
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer) so that the residual
        # stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * shape.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                loss_weights: torch.Tensor | None = None, cache: KVCache | None = None,
                all_logits: bool = False):
        """idx (B, T) token ids -> logits (B, T, vocab); with targets also the mean loss
        (weighted per target token by `loss_weights`). Without targets only the last position
        is scored (all that sampling needs) unless `all_logits`. With a cache, idx continues
        the cached tokens."""
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        if past + T > self.shape.block_size:
            raise ValueError(f"{past + T} tokens are more than the block ({self.shape.block_size})")
        pos = torch.arange(past, past + T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for i, block in enumerate(self.transformer.h):
            x = block(x, cache, i)
        if cache is not None:
            cache.length += T
        x = self.transformer.ln_f(x)
        if targets is None:
            return self.lm_head(x if all_logits else x[:, [-1], :]), None
        logits = self.lm_head(x)
        if loss_weights is None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))
        else:
            per_token = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1),
                                        reduction="none")
            w = loss_weights.reshape(-1).to(per_token.dtype)
            loss = (per_token * w).sum() / w.sum().clamp_min(1)
        return logits, loss

    def decode_rows(self, idx: torch.Tensor, step: SlotStep) -> torch.Tensor:
        """idx (R, 1): the next token of each of step's rows -> logits (R, vocab) of the token
        after it. Each row continues its own slot (its own positions and keys): what
        forward(idx, cache=...) does for one cached sequence, for R of them in one pass."""
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(step.positions))
        for i, block in enumerate(self.transformer.h):
            x = block(x, step, i)
        step.advance()
        return self.lm_head(self.transformer.ln_f(x))[:, -1, :]

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward + backward), as in the PaLM appendix B."""
        s = self.shape
        n = self.num_params()
        return 6 * n + 12 * s.n_layer * s.n_embd * s.block_size


def window_start(length: int, block_size: int) -> int:
    """Where the context window starts once `length` tokens exist. When the block is full,
    the oldest quarter is dropped at once, so the cache is rebuilt every block/4 tokens rather
    than every token; each token then sees between 3/4 of a block and a full block."""
    if length <= block_size:
        return 0
    drop = max(1, block_size // 4)
    keep = block_size - drop
    return length - keep - ((length - block_size - 1) % (drop + 1))


def window(tokens: torch.Tensor, block_size: int, pinned: int = 0) -> torch.Tensor:
    """The tokens the model sees next: the first `pinned` always (framing such as <|prompt|>,
    which the answer needs to stay an answer), then the rest, sliding as window_start says
    within the room the pinned tokens leave."""
    if pinned == 0:
        return tokens[:, window_start(tokens.size(1), block_size):]
    rest = tokens[:, pinned:]
    return torch.cat([tokens[:, :pinned], rest[:, window_start(rest.size(1), block_size - pinned):]], dim=1)


@torch.no_grad()
def generate(model: GPT, idx: torch.Tensor, max_new_tokens: int, pick, use_cache: bool = True,
             pinned: int = 0):
    """Yield (B, 1) new tokens one step at a time. `pick(logits (B, V), tokens (B, L))` chooses
    them. Beyond the block the context slides (see window_start), always keeping the first
    `pinned` tokens; `use_cache=False` recomputes the same windows from scratch, the reference
    the cache is tested against."""
    block = model.shape.block_size
    if not 0 <= pinned < block or pinned > idx.size(1):
        raise ValueError(f"pinned ({pinned}) must be among the {idx.size(1)} given tokens and "
                         f"leave room in the block ({block})")
    tokens = idx
    cache, cache_start = None, 0
    for _ in range(max_new_tokens):
        # Where the sliding part starts; the cache holds a window as long as it stays put.
        start = window_start(tokens.size(1) - pinned, block - pinned)
        if not use_cache:
            logits, _ = model(window(tokens, block, pinned))
        elif cache is None or start != cache_start:  # (re)fill the cache with the window
            cache, cache_start = KVCache(block), start
            logits, _ = model(window(tokens, block, pinned), cache=cache)
        else:
            logits, _ = model(tokens[:, -1:], cache=cache)
        new = pick(logits[:, -1, :], tokens)
        tokens = torch.cat([tokens, new], dim=1)
        yield new
