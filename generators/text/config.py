"""The text generator's declarations: its settings (TextConfig, TextSampleConfig), name,
version, presets and training defaults. This module imports no torch, so `studio generators`,
`studio config text` and the window's generator picker read it without loading the model's
code (studio/registry.py: the registry finds a generator's `config.py` through DECLARATIONS).
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.config import setting
from studio.contract import Generator


@dataclass
class TextConfig:
    tokenizer: str = setting("char", "char: one token per character; bpe: byte-level BPE trained "
                             "on your corpus", choices=("char", "bpe"))
    vocab_size: int = setting(4096, "BPE vocabulary size (bpe only)", min=260, max=262144)
    block_size: int = setting(64, "context length in tokens", min=2, max=16384)
    n_layer: int = setting(4, "Transformer blocks", min=1, max=128)
    n_head: int = setting(4, "attention heads per block", min=1, max=128)
    n_embd: int = setting(128, "width of the residual stream", min=8, max=16384)
    dropout: float = setting(0.0, "dropout rate (0 for small data is often best at first)", min=0, max=0.9)
    bias: bool = setting(False, "biases in Linear and LayerNorm layers (GPT-2 had them)")
    batch_size: int = setting(12, "sequences per micro-batch", min=1, max=65536)
    val_fraction: float = setting(0.1, "share of the data held out for evaluation when no "
                                  "--val-data is given", min=0.001, max=0.5)
    freeze_layers: int = setting(0, "fine-tuning: keep the lowest N Transformer blocks fixed", min=0)
    task: str = setting("generate", "generate: continue text or answer prompts; classify: a class "
                        "per text (labelled JSONL/CSV/TSV); tag: a tag per word (CoNLL or JSONL "
                        "tokens/tags)", choices=("generate", "classify", "tag"))
    # Which pooling wins depends on where the body starts (held-out macro F1, last / mean).
    # From scratch, last: builtin:sentiment (1 block of width 32, batch 16, lr 3e-3, 30 held
    # out) 0.74 / 0.62 after 60 steps, 0.86 / 0.77 after 120; the genre of held-out plays'
    # lines (bench_adapt.py, 4 blocks of 128, 600 steps) 0.324 / 0.244. From a pretrained run,
    # mean (finetune_config below): the same genres 0.397 / 0.511 fine-tuned, 0.316 / 0.402
    # with LoRA. A body trained from scratch learns to gather the text into its last token; a
    # pretrained one was trained to predict the next character there, and the mean over all
    # its tokens likely carries more of what the text is about.
    pooling: str = setting("last", "classify: the text's vector is the last token's hidden "
                           "state, or the mean over its tokens (runs that start from trained "
                           "weights take mean)", choices=("last", "mean"))
    class_weights: str = setting("none", "classify/tag: balanced weighs each class's loss by "
                                 "how rare it is (for imbalanced data)", choices=("none", "balanced"))
    preview_tokens: int = setting(200, "tokens generated for each live preview", min=1, max=4096)

    def check(self) -> str | None:
        if self.n_embd % self.n_head:
            return f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})."
        if self.freeze_layers > self.n_layer:
            return f"freeze_layers ({self.freeze_layers}) cannot exceed n_layer ({self.n_layer})."
        return None


@dataclass
class TextSampleConfig:
    temperature: float = setting(0.8, "randomness: 0 = always the likeliest token", min=0, max=5)
    top_k: int = setting(200, "sample among the k likeliest tokens (0 = all)", min=0)
    top_p: float = setting(1.0, "sample among the likeliest tokens whose probabilities add up "
                           "to p (1 = all)", min=0, max=1, min_exclusive=True)
    repetition_penalty: float = setting(1.0, "above 1 makes repeating earlier tokens less "
                                        "likely (1 = off)", min=0, max=10, min_exclusive=True)
    max_new_tokens: int = setting(200, "tokens to generate", min=1, max=100000)
    stop: list[str] = setting([], "stop when any of these strings appears (it is not included)")
    explain: bool = setting(False, "record each new token's probability and the likeliest "
                            "alternatives in the sample; a classifier records how much each "
                            "token counted for its class (studio generate --json turns it on)")

    def check(self) -> str | None:
        if any(not isinstance(s, str) or not s for s in self.stop):
            return "stop strings must be non-empty text."
        return None


class TextDeclarations(Generator):
    """Who the text generator is: what listing, `studio config` and the window's forms read
    without importing torch. TextGenerator (generators/text/__init__.py) adds what it does."""

    name = "text"
    modality = "text"
    version = "0.2.0"
    Config = TextConfig
    SampleConfig = TextSampleConfig
    throughput_unit = "tokens"
    best_metric = "val_bits_per_byte"  # comparable across tokenizers
    # bf16 pays at every size on a CPU with native bf16 since attention of short blocks skips
    # SDPA's slow bf16 CPU kernel (model.explicit_attention_pays): at nanoGPT's 0.8M-parameter
    # shape bf16 autocast ran 1.36x fp32 (bench_core part 4, AMD EPYC with AVX512-BF16).
    cpu_bf16_min_params = 0
    finetune_defaults = {"lr": 1e-4, "warmup_steps": 20, "max_steps": 500}
    shape_settings = ("tokenizer", "vocab_size", "block_size", "n_layer", "n_head", "n_embd", "bias")
    finetune_config = {"pooling": "mean"}  # measured better from a pretrained body (pooling above)
    lora_targets = ("c_attn", "c_proj", "c_fc")  # attention and MLP; never lm_head (tied to wte)
    presets = {
        # nanoGPT's CPU shape for Shakespeare (its documented "baby GPT")
        "tiny": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "batch_size": 12,
                 "dropout": 0.0},
        # `studio demo text`: the tiny shape with a context of 128 characters, so that a short
        # question and its answer (the built-in customer-service pairs need up to 111) fit
        # whole when the demo is fine-tuned on prompt/response pairs
        "demo": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128, "batch_size": 12,
                 "dropout": 0.0, "tokenizer": "char"},
        # nanoGPT's shakespeare-char GPU shape
        "small": {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "batch_size": 64,
                  "dropout": 0.2},
        # GPT-2 124M
        "gpt2": {"tokenizer": "bpe", "vocab_size": 50257, "n_layer": 12, "n_head": 12,
                 "n_embd": 768, "block_size": 1024, "batch_size": 12, "dropout": 0.0},
    }


# What the registry reads instead of importing the generator's code (studio/registry.py).
DECLARATIONS = {"TextGenerator": TextDeclarations}
