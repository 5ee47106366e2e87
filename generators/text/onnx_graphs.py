"""The text generator as ONNX graphs (`studio export --format onnx`, studio/onnx_export.py).

A generation run exports one graph, "decoder": the run's GPT with its KV cache as inputs and
outputs, so that a client decodes step by step as the studio does (model.generate): a prefill
of the prompt with an empty cache, then one token at a time with the cache the last call
returned. The wrapper below is written here, over the model's own submodules and weights
(model.py is left as it is): its attention takes the cache as plain tensors instead of a
KVCache object, and is written as matmuls and a masked softmax, which every ONNX runtime runs.

A classify or tag run exports its classifier instead, "classifier": tokens and each row's
length -> class scores (or a tag score per token), the TaskGPT itself (tasks.py).

`manifest` writes what a client needs besides the graphs: the tokenizer as a Hugging Face
`tokenizers` file (tokenizer.json, loadable with `tokenizers.Tokenizer.from_file`, encoding
and decoding as the run's own tokenizer does), the context length, the special tokens, how
prompts are framed and the sampling defaults.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn

from studio.contract import OnnxGraph

from generators.text.config import TextSampleConfig
from generators.text.model import GPT
from generators.text.tasks import MULTI_LABEL_THRESHOLD, TaskGPT
from generators.text.tokenizer import END, END_OF_TEXT, PROMPT, RESPONSE, UNK

TOKENIZER_FILE = "tokenizer.json"
# Logits are sums over the width of the model; float32 rounding differs between PyTorch's and
# onnxruntime's kernels by about 1e-5 of their size (measured: under 2e-5 on the demo model).
LOGITS_TOLERANCE = 1e-3


class CachedDecoder(nn.Module):
    """tokens (B, T) int64, past_keys and past_values (n_layer, B, n_head, P, head_size) ->
    logits (B, T, vocab), present_keys and present_values (n_layer, B, n_head, P + T,
    head_size): GPT.forward with a cache, on plain tensors. The new tokens sit at positions
    P .. P+T-1, and token i sees the P cached ones and the new ones up to itself."""

    def __init__(self, gpt: GPT):
        super().__init__()
        self.gpt = gpt

    def forward(self, tokens: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor):
        gpt = self.gpt
        T, P = tokens.shape[1], past_keys.shape[3]
        positions = torch.arange(T, device=tokens.device) + P
        x = gpt.transformer.wte(tokens) + gpt.transformer.wpe(positions)
        # Query i (at position P + i) sees keys 0 .. P + i: the cache and the new tokens to i.
        keys_seen = torch.arange(P + T, device=tokens.device)
        future = keys_seen[None, :] > positions[:, None]  # (T, P + T)
        present_keys, present_values = [], []
        for layer, block in enumerate(gpt.transformer.h):
            attended, k, v = self._attention(block.attn, block.ln_1(x), past_keys[layer],
                                             past_values[layer], future)
            x = x + attended
            x = x + block.mlp(block.ln_2(x))
            present_keys.append(k)
            present_values.append(v)
        logits = gpt.lm_head(gpt.transformer.ln_f(x))
        return logits, torch.stack(present_keys), torch.stack(present_values)

    @staticmethod
    def _attention(attn, x: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor,
                   future: torch.Tensor):
        """CausalSelfAttention.forward's arithmetic with the cache as tensors: the layer's
        output and its keys and values, cached ones first."""
        B, T, C = x.shape
        q, k, v = attn.c_attn(x).split(C, dim=2)
        q, k, v = attn._heads(q), attn._heads(k), attn._heads(v)  # (B, nh, T, hs)
        k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        scores = (q @ k.transpose(-2, -1)) * (q.size(-1) ** -0.5)
        weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(B, T, C)
        return attn.c_proj(y), k, v


class Classifier(nn.Module):
    """tokens (B, T) int64, lengths (B,) int64 -> class scores (B, classes), or tag scores per
    token (B, T, tags): the TaskGPT's forward, with the inputs it is exported with."""

    def __init__(self, model: TaskGPT):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(tokens, lengths)


def graphs(gen) -> list[OnnxGraph]:
    if gen.task is not None:
        return [_classifier_graph(gen)]
    return [_decoder_graph(gen)]


def _random_tokens(gen, batch: int, length: int, seed: int) -> torch.Tensor:
    rng = torch.Generator().manual_seed(seed)
    tokens = torch.randint(gen.tokenizer.vocab_size, (batch, length), generator=rng)
    return tokens.to(gen.device or torch.device("cpu"))


def empty_cache(gen, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of no tokens yet: (n_layer, batch, n_head, 0, head_size) each."""
    cfg = gen.config
    shape = (cfg.n_layer, batch, cfg.n_head, 0, cfg.n_embd // cfg.n_head)
    empty = torch.zeros(shape, device=gen.device or torch.device("cpu"))
    return empty, empty.clone()


def _decoder_graph(gen) -> OnnxGraph:
    decoder = CachedDecoder(gen.model).eval()
    block = gen.config.block_size
    # The example continues a real cache (the exporter must not fix its length, or the batch,
    # to the example's, so both are above 1); the checks add prefills of other lengths (one
    # token, a full block) and single steps after a cache, at batch 1 and 3.
    prefix = _random_tokens(gen, 2, min(3, block - 2), seed=1)
    with torch.no_grad():
        _, past_keys, past_values = decoder(prefix, *empty_cache(gen, 2))
    example = (_random_tokens(gen, 2, 2, seed=2), past_keys, past_values)
    checks = [(_random_tokens(gen, 1, length, seed=3 + length), *empty_cache(gen, 1))
              for length in sorted({1, min(7, block), block})]
    with torch.no_grad():
        _, keys_3, values_3 = decoder(_random_tokens(gen, 3, block - 1, seed=11), *empty_cache(gen, 3))
    checks += [(_random_tokens(gen, 2, 1, seed=12), past_keys, past_values),
               (_random_tokens(gen, 3, 1, seed=13), keys_3, values_3)]
    cache_axes = {1: "batch", 3: "past"}
    return OnnxGraph(
        name="decoder", module=decoder, inputs=example,
        input_names=["tokens", "past_keys", "past_values"],
        output_names=["logits", "present_keys", "present_values"],
        dynamic_axes={"tokens": {0: "batch", 1: "length"}, "past_keys": cache_axes,
                      "past_values": cache_axes, "logits": {0: "batch", 1: "length"},
                      "present_keys": {1: "batch", 3: "total"},
                      "present_values": {1: "batch", 3: "total"}},
        checks=checks, tolerance=LOGITS_TOLERANCE,
        description="next-token logits with the KV cache: feed the prompt with an empty cache "
                    "(past = 0), then each new token with the cache the last call returned; "
                    f"past + length must stay within block_size ({block})")


def _classifier_graph(gen) -> OnnxGraph:
    task = gen.task
    classifier = Classifier(gen.model).eval()
    block = gen.config.block_size
    length = min(6, block)
    example = (_random_tokens(gen, 2, length, seed=1),
               torch.tensor([length, max(1, length - 2)], device=gen.device))
    checks = [(_random_tokens(gen, 1, 1, seed=2), torch.tensor([1], device=gen.device)),
              (_random_tokens(gen, 3, block, seed=3),
               torch.tensor([block, 1, max(1, block // 2)], device=gen.device))]
    per_token = {0: "batch", 1: "length"} if task.per_token else {0: "batch"}
    what = "a tag score per token" if task.per_token else "class scores"
    return OnnxGraph(
        name="classifier", module=classifier, inputs=example,
        input_names=["tokens", "lengths"], output_names=["logits"],
        dynamic_axes={"tokens": {0: "batch", 1: "length"}, "lengths": {0: "batch"},
                      "logits": per_token},
        checks=checks, tolerance=LOGITS_TOLERANCE,
        description=f"{what} of texts of up to block_size ({block}) tokens, rows padded on "
                    f"the right (any id), `lengths` the real tokens of each")


# --- the manifest ------------------------------------------------------------------------------

def manifest(gen, folder: Path) -> dict:
    """Write tokenizer.json into `folder`; return what a client needs besides the graphs."""
    tk, cfg = gen.tokenizer, gen.config
    write_hf_tokenizer(tk, Path(folder) / TOKENIZER_FILE)
    doc = {"tokenizer": TOKENIZER_FILE, "tokenizer_kind": tk.kind,
           # tokenizers does not save the setting: set it after Tokenizer.from_file, so that
           # text spelling a special token ("<|prompt|>") stays text, as in the studio.
           "tokenizer_settings": {"encode_special_tokens": True},
           "block_size": cfg.block_size, "vocab_size": tk.vocab_size,
           "n_layer": cfg.n_layer, "n_head": cfg.n_head, "head_size": cfg.n_embd // cfg.n_head,
           "special_tokens": {name: tk.special_id(token) for name, token in
                              (("prompt", PROMPT), ("response", RESPONSE), ("end", END),
                               ("end_of_text", END_OF_TEXT))}}
    if gen.task is not None:
        task = gen.task
        doc.update(task=task.kind, labels=list(task.names), multi_label=task.multi_label)
        if task.per_token:
            doc["reading"] = ("the text's words joined with single spaces; each word's tag is "
                              "read at its first token that holds more than the space")
        elif task.multi_label:
            doc["reading"] = (f"sigmoid of each class's score; a class is chosen at "
                              f"{MULTI_LABEL_THRESHOLD} or above")
        else:
            doc["reading"] = "softmax over the classes; the answer is the highest"
        return doc
    doc.update(task="generate", format=gen.format, sampling=asdict(TextSampleConfig()),
               banned_tokens=_banned_tokens(gen), **_prompting(gen))
    return doc


def _banned_tokens(gen) -> list[int]:
    """Ids never sampled (generation sets their logits to -inf): the framing tokens, except
    <|end|> where it closes an answer, and the logits past the vocabulary (BPE models round
    their output up to a multiple of 64)."""
    tk = gen.tokenizer
    end_id = tk.special_id(END) if gen.format == "pairs" else None
    framing = [tk.special_id(t) for t in (PROMPT, RESPONSE, END)]
    padding = range(tk.vocab_size, gen.model.lm_head.out_features)
    return sorted({i for i in framing if i is not None and i != end_id} | set(padding))


def _prompting(gen) -> dict:
    """How the studio turns a prompt into the first tokens, and when decoding stops or the
    context slides (TextGenerator._prompt_ids, _context_ids; model.window_start)."""
    tk = gen.tokenizer
    if gen.format == "pairs":
        return {"prompt_template": "<|prompt|> + encode(prompt) + <|response|>",
                "stop_token": tk.special_id(END), "pinned_tokens": 1,
                "context": "a prompt too long for the block is cut from the left, keeping "
                           "<|prompt|> and a quarter of the block for the answer"}
    start = tk.special_id(END_OF_TEXT) if tk.kind == "bpe" else None
    return {"prompt_template": "encode(prompt); no prompt: encode(\"\\n\")",
            "empty_prompt_token": start if start is not None else int(tk.encode("\n")[0]),
            "stop_token": None, "pinned_tokens": 0,
            "context": "beyond block_size the studio drops the oldest quarter of the block at "
                       "once and reads the rest again into an empty cache (model.window_start)"}


# --- the tokenizer as a Hugging Face tokenizers file ---------------------------------------------

def write_hf_tokenizer(tokenizer, path: Path) -> None:
    """The run's tokenizer as a `tokenizers` file whose encode and decode give what the run's
    own do. Byte-level BPE already is one; the character tokenizer becomes a word-level model
    over single characters: every character is a piece of its own (a Split pre-tokenizer),
    looked up in the vocabulary, unknown ones as <unk>, which decodes to U+FFFD as the studio's
    does; decoding joins the pieces without spaces. The framing tokens are special: decode
    leaves them out (the studio's decode gives them no bytes) and encode never reads them from
    text (encode_special_tokens)."""
    from studio.runstore import write_atomic
    if tokenizer.kind == "bpe":
        text = tokenizer.tk.to_str()
    else:
        text = _char_tokenizer(tokenizer).to_str()
    write_atomic(path, text.encode("utf-8"))


def _char_tokenizer(tokenizer):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    vocab = {piece: i for i, piece in enumerate(tokenizer.itos)}
    hf = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    # Decoders act on each piece: only the piece that is <unk> (or a framing token) matches.
    hf.decoder = decoders.Sequence([decoders.Replace(UNK, "\ufffd"),
                                    *(decoders.Replace(t, "") for t in tokenizer.specials),
                                    decoders.Fuse()])
    return hf
