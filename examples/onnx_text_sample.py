"""Sample from a text model exported with `studio export RUN --format onnx --out DIR`, with
onnxruntime, numpy and tokenizers only (no torch): the prompt is read once, then one token a
step with the KV cache; past the context the window slides as the studio's does.

    python examples/onnx_text_sample.py DIR --prompt "ROMEO:" --tokens 100 [--temperature 0.8]
"""
import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer


def window_start(length: int, block: int) -> int:
    """Where the context starts once `length` tokens exist: the oldest quarter goes at once."""
    if length <= block:
        return 0
    drop = max(1, block // 4)
    return length - (block - drop) - ((length - block - 1) % (drop + 1))


def sample(folder, prompt=None, tokens=100, temperature=0.0, seed=0) -> list[int]:
    """The new token ids (greedy at temperature 0), as `studio generate` picks them."""
    folder = Path(folder)
    model = json.loads((folder / "manifest.json").read_text())["model"]
    tokenizer = Tokenizer.from_file(str(folder / model["tokenizer"]))
    tokenizer.encode_special_tokens = True  # "<|prompt|>" typed by a user is text, as in the studio
    decoder = onnxruntime.InferenceSession(str(folder / "decoder.onnx"),
                                           providers=["CPUExecutionProvider"])
    block, pinned, special = model["block_size"], model["pinned_tokens"], model["special_tokens"]
    if model["format"] == "pairs":  # <|prompt|> question <|response|>, cut to leave room
        room = block - max(1, block // 4) - 2
        ids = [special["prompt"], *tokenizer.encode(prompt or "").ids[-room:], special["response"]]
    else:
        ids = tokenizer.encode("\n" if prompt is None else prompt).ids or [model["empty_prompt_token"]]
    empty = np.zeros((model["n_layer"], 1, model["n_head"], 0, model["head_size"]), np.float32)
    rng, new, cache, cache_start = np.random.default_rng(seed), [], None, -1
    for _ in range(tokens):
        start = window_start(len(ids) - pinned, block - pinned)
        if start != cache_start:  # (re)read the window: the first step, or the window slid
            feed, (keys, values), cache_start = ids[:pinned] + ids[pinned:][start:], (empty, empty), start
        else:
            feed, (keys, values) = ids[-1:], cache
        logits, *cache = decoder.run(None, {"tokens": np.array([feed], np.int64),
                                            "past_keys": keys, "past_values": values})
        scores = logits[0, -1].astype(np.float64)
        scores[model["banned_tokens"]] = -np.inf  # framing tokens, and padding past the vocabulary
        if temperature == 0:
            token = int(scores.argmax())
        else:
            p = np.exp((scores - scores.max()) / temperature)
            token = int(rng.choice(len(p), p=p / p.sum()))
        if token == model["stop_token"]:
            break
        ids.append(token)
        new.append(token)
    return new


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--prompt")
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    new = sample(args.folder, args.prompt, args.tokens, args.temperature, args.seed)
    tokenizer_file = json.loads((Path(args.folder) / "manifest.json").read_text())["model"]["tokenizer"]
    print((args.prompt or "") + Tokenizer.from_file(str(Path(args.folder) / tokenizer_file)).decode(new))
