"""Import a local Hugging Face GPT-2 folder: config.json + model.safetensors + its tokenizer.

Nothing is downloaded and nothing is unpickled: a folder that has only `pytorch_model.bin`
(a pickle) is refused with a hint to convert it. GPT-2 stores its projections as `Conv1D`
(weight shaped in x out); they are transposed into this project's `nn.Linear` layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from studio.errors import StudioError

from generators.text.tokenizer import BPETokenizer

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _folder(path: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise StudioError(f"{folder} is not a folder. Give a Hugging Face GPT-2 folder with "
                          f"config.json, model.safetensors and tokenizer files.")
    return folder


def read_config(path: str) -> dict:
    """The text generator's config values for a GPT-2 folder."""
    folder = _folder(path)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise StudioError(f"{folder} has no config.json; a Hugging Face GPT-2 folder needs one.")
    try:
        cfg = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StudioError(f"{config_path} is not valid JSON ({exc}).") from None
    if cfg.get("model_type") != "gpt2":
        raise StudioError(f"{config_path} describes a '{cfg.get('model_type')}' model; only GPT-2 "
                          f"folders (model_type gpt2) can be imported.")
    needed = ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size")
    missing = [k for k in needed if not isinstance(cfg.get(k), int)]
    if missing:
        raise StudioError(f"{config_path} lacks {', '.join(missing)}; it does not describe a GPT-2.")
    activation = cfg.get("activation_function", "gelu_new")
    if activation not in ("gelu_new", "gelu_pytorch_tanh"):
        raise StudioError(f"{config_path}: activation '{activation}' is not GPT-2's tanh GELU; "
                          f"this model cannot be imported exactly.")
    return {"tokenizer": "bpe", "n_layer": cfg["n_layer"], "n_head": cfg["n_head"],
            "n_embd": cfg["n_embd"], "block_size": cfg["n_positions"],
            "vocab_size": cfg["vocab_size"], "bias": True, "dropout": 0.0}


def read_tokenizer(path: str) -> BPETokenizer:
    """The folder's byte-level BPE; its vocabulary must match the model's (config.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    folder = _folder(path)
    expected = read_config(path)["vocab_size"]
    try:
        if (folder / "tokenizer.json").exists():
            tk = Tokenizer.from_file(str(folder / "tokenizer.json"))
        elif (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
            tk = Tokenizer(models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt")))
            tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tk.decoder = decoders.ByteLevel()
        else:
            raise StudioError(f"{folder} has no tokenizer (tokenizer.json, or vocab.json + "
                              f"merges.txt).")
    except StudioError:
        raise
    except Exception as exc:  # `tokenizers` raises its own exception types
        raise StudioError(f"the tokenizer files in {folder} cannot be read ({exc}).") from None
    if tk.get_vocab_size() != expected:
        raise StudioError(f"the tokenizer in {folder} has {tk.get_vocab_size()} tokens but "
                          f"config.json says vocab_size {expected}: they do not belong together.")
    return BPETokenizer(tk)


def load_weights(model: torch.nn.Module, path: str, vocab_size: int, fresh: tuple = ()) -> None:
    """Copy GPT-2's weights into `model` (built from read_config's values). The model's extra
    vocabulary rows (padding, special tokens) start at the mean embedding; its parameters
    named under a `fresh` prefix (a classifier's task layer) keep their initial values."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = _folder(path)
    weights = folder / "model.safetensors"
    if not weights.exists():
        pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
        hint = (f" It has {', '.join(pickles)}, a pickle, which AIGC Studio never loads because "
                f"it can run arbitrary code; convert it to safetensors first." if pickles else "")
        raise StudioError(f"{folder} has no model.safetensors.{hint}")
    try:
        source = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise StudioError(f"{weights} is not a valid safetensors file ({exc}).") from None
    source = {k.removeprefix("transformer."): v for k, v in source.items()}
    target = model.state_dict()
    wte = source.get("wte.weight")
    if wte is None:
        raise StudioError(f"{weights} has no token embedding (wte.weight); is it a GPT-2?")
    if wte.ndim != 2:
        raise StudioError(f"{weights}: the token embedding 'wte.weight' has shape "
                          f"{tuple(wte.shape)}; a GPT-2's is (vocabulary, width).")
    if wte.shape[0] != vocab_size:
        raise StudioError(f"{weights} has {wte.shape[0]} token embeddings but config.json says "
                          f"vocab_size {vocab_size}: the weights and the vocabulary do not match.")
    loaded = {}
    for name, tensor in target.items():
        key = name.removeprefix("transformer.")
        if name == "lm_head.weight":
            continue  # tied to wte
        if name.startswith(fresh):
            loaded[name] = tensor
            continue
        if key not in source:
            raise StudioError(f"{weights} lacks '{key}'; it does not fit the config in config.json.")
        value = source[key]
        if not value.is_floating_point():  # integers made the embedding's mean a RuntimeError
            raise StudioError(f"{weights}: '{key}' holds {str(value.dtype).removeprefix('torch.')} "
                              f"numbers, not floating-point weights; is it a GPT-2?")
        if key.endswith(CONV1D):
            value = value.t()
        if key == "wte.weight":
            padded = value.mean(0, keepdim=True).repeat(tensor.shape[0], 1)
            padded[: value.shape[0]] = value
            value = padded
        if key == "wpe.weight" and value.shape[0] != tensor.shape[0]:
            value = _positions(value, tensor.shape[0], weights)
        if tuple(value.shape) != tuple(tensor.shape):
            raise StudioError(f"{weights}: '{key}' has shape {tuple(value.shape)}, expected "
                              f"{tuple(tensor.shape)} from config.json.")
        loaded[name] = value.to(tensor.dtype)
    loaded["lm_head.weight"] = loaded["transformer.wte.weight"]
    model.load_state_dict(loaded, strict=True)


def _positions(table: torch.Tensor, block_size: int, weights: Path) -> torch.Tensor:
    """The position embeddings of a run whose block_size differs from the model's n_positions:
    a shorter context uses the first block_size rows (the positions it reaches); a longer one
    has positions the model never learned, so it is refused."""
    if block_size > table.shape[0]:
        raise StudioError(f"block_size {block_size} is longer than the {table.shape[0]} positions "
                          f"{weights.parent} was trained for; set block_size to at most "
                          f"{table.shape[0]}.")
    return table[:block_size]

