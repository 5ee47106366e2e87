"""Text generation and fine-tuning benchmark, measured side by side in one run.

1. Generation tokens/s with and without the KV cache for a 6-layer, 384-wide GPT at 64, 256
   and 1024 tokens of context (batch 1, greedy; block 1280 so no window slides). Without the
   cache every new token recomputes the whole context; with it, one token per step.
2. The project's generation against Hugging Face `transformers`' `generate` on the same
   GPT-2-shaped weights (built randomly by `transformers`, saved as safetensors, imported with
   the project's --init-from-hf path), same prompt, greedy, same number of new tokens; the
   two outputs are checked to be the same tokens. Blocks alternate so noise hits both alike.
3. Fine-tuning tokens/s from that GPT-2-shaped import on prompt/response JSONL, through the
   real `studio.api` path.
4. Training from scratch against nanoGPT's own train.py (../shared/ref/nanoGPT, a temporary
   copy whose data are the project's tokens of the Shakespeare files in the same character
   vocabulary): `studio train text` and train.py at nanoGPT's CPU shape (char, 4 layers, 4
   heads, 128 wide, block 64, batch 12, fp32, dropout 0), same torch, same threads, each in
   a process of its own, taking turns in blocks; median step time of each after warm-up, a
   step being the end of one to the end of the next on both sides (side_by_side.py says
   what each includes).

    .venv/bin/python bench/bench_text.py            # ~5 min on 2 cores
    .venv/bin/python bench/bench_text.py --quick    # smoke run

Prints a table and writes bench/results/bench_text.json (a --quick run: bench_text_quick.json
in the temporary folder, unless --out says where).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("STUDIO_CACHE_DIR", "/tmp/studio-cache-bench")

import torch  # noqa: E402

from generators.text import TextConfig, TextGenerator  # noqa: E402
from generators.text.model import GPT, GPTShape, generate  # noqa: E402
from studio.engine import configure_threads  # noqa: E402

from side_by_side import (cpu_description, prepare_nanogpt, refuse_bad_peer_arguments,  # noqa: E402
                          studio_vs_nanogpt_steps)

SHAKESPEARE = ROOT.parent / "shared" / "data" / "text"
QUICK_VAL_CHARS = 20_000  # of the held-out text in a --quick run


def greedy(logits, history):
    return logits.argmax(-1, keepdim=True)


def time_generation(model, prompt, new_tokens, use_cache) -> float:
    """Seconds to generate `new_tokens` after `prompt`."""
    start = time.perf_counter()
    for _ in generate(model, prompt, new_tokens, greedy, use_cache=use_cache):
        pass
    return time.perf_counter() - start


def kv_cache_speedup(contexts, new_tokens, repeats) -> list[dict]:
    torch.manual_seed(0)
    model = GPT(GPTShape(vocab_size=4096, block_size=max(contexts) + new_tokens, n_layer=6,
                         n_head=6, n_embd=384)).eval()
    rows = []
    for context in contexts:
        prompt = torch.randint(4096, (1, context))
        cached, full = [], []
        time_generation(model, prompt, 4, True)  # warm-up
        for _ in range(repeats):  # alternate, so machine noise hits both
            cached.append(time_generation(model, prompt, new_tokens, True))
            full.append(time_generation(model, prompt, new_tokens, False))
        with_cache = new_tokens / statistics.median(cached)
        without = new_tokens / statistics.median(full)
        rows.append({"context": context, "with_cache_tok_s": round(with_cache, 1),
                     "without_cache_tok_s": round(without, 1),
                     "speedup": round(with_cache / without, 2)})
        print(f"  context {context:5d}: {with_cache:8.1f} tok/s with cache, {without:8.1f} without "
              f"-> {with_cache / without:.1f}x", flush=True)
    return rows


def make_gpt2_folder(folder: Path, n_layer: int, n_embd: int, n_head: int, vocab: int) -> None:
    """A GPT-2-shaped model and byte-level BPE tokenizer written the way Hugging Face does."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    text = SHAKESPEARE / "shakespeare_val.txt"
    corpus = text.read_text() if text.exists() else "To be, or not to be, that is the question. " * 2000
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator([corpus[i:i + 4096] for i in range(0, len(corpus), 4096)],
                           trainer=trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    hf_tok = transformers.GPT2TokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>")
    hf_tok.save_pretrained(folder)
    config = transformers.GPT2Config(vocab_size=len(hf_tok), n_positions=1024, n_embd=n_embd,
                                     n_layer=n_layer, n_head=n_head, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)


def versus_transformers(folder: Path, prompt_tokens: int, new_tokens: int, repeats: int) -> dict:
    import transformers
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(folder, use_safetensors=True).eval()
    gen = TextGenerator(TextConfig(**TextGenerator.pretrained_config(str(folder))))
    gen.use_pretrained(str(folder))
    ours = gen.build().eval()
    vocab = hf_model.config.vocab_size
    prompt = torch.randint(vocab, (1, prompt_tokens), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(prompt)

    def run_hf():
        with torch.no_grad():
            return hf_model.generate(prompt, attention_mask=mask, max_new_tokens=new_tokens,
                                     min_new_tokens=new_tokens, do_sample=False,
                                     pad_token_id=0)[0, prompt_tokens:]

    def run_ours():
        pick = lambda logits, history: logits[:, :vocab].argmax(-1, keepdim=True)
        return torch.cat(list(generate(ours, prompt, new_tokens, pick)), dim=1)[0]

    same = run_hf().tolist() == run_ours().tolist()
    hf_times, our_times = [], []
    for _ in range(repeats):
        for fn, bucket in ((run_hf, hf_times), (run_ours, our_times)):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    hf_rate = new_tokens / statistics.median(hf_times)
    our_rate = new_tokens / statistics.median(our_times)
    print(f"  ours {our_rate:.1f} tok/s, transformers {hf_rate:.1f} tok/s -> {our_rate / hf_rate:.2f}x; "
          f"same tokens: {same}", flush=True)
    return {"ours_tok_s": round(our_rate, 1), "transformers_tok_s": round(hf_rate, 1),
            "ratio": round(our_rate / hf_rate, 2), "same_tokens": same,
            "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
            "transformers_version": transformers.__version__}


def fine_tune_rate(folder: Path, steps: int, work: Path) -> dict:
    from studio import api
    qa = [{"prompt": f"Customer question number {i}: when does the shop open on weekdays?",
           "response": f"Hello! On weekdays we open at {8 + i % 3} o'clock and close at six."}
          for i in range(200)]
    data = work / "qa.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in qa))
    run = work / "finetune"
    status, store = api.train("text", init_from_pretrained=str(folder), data=str(data),
                              run_dir=str(run), max_steps=steps, events="none",
                              settings=["device=cpu", "eval_every=0", "preview_every=0",
                                        "checkpoint_every=0", f"log_every={max(1, steps // 6)}",
                                        "batch_size=8"])
    progress = [e for e in store.events() if e["event"] == "progress"][1:]  # after warm-up
    rate = statistics.median(e["items_per_s"] for e in progress)
    first, last = progress[0]["loss"], progress[-1]["loss"]
    print(f"  {rate:.0f} tokens/s (padded batch tokens), loss {first:.3f} -> {last:.3f}", flush=True)
    return {"tokens_per_s": round(rate, 1), "steps": steps, "loss_first": first, "loss_last": last}


def versus_nanogpt(work: Path, train_data: str, val_data: str, threads: int, quick: bool) -> dict:
    from studio import api

    gen = TextGenerator(TextConfig())  # the project's tokens and character vocabulary
    if quick:  # the smoke run reads a slice of the held-out text
        short = work / "val-quick.txt"
        short.write_text(Path(val_data).read_text()[:QUICK_VAL_CHARS])
        val_data = str(short)
    gen.load_data(train_data, val_data, api.cache_dir())
    copy = prepare_nanogpt(work, gen.tokenizer, gen.train_ids, gen.val_ids)
    result = studio_vs_nanogpt_steps(work, copy, train_data, val_data, threads,
                                     blocks=2 if quick else 10, block=5 if quick else 50,
                                     warmup=3 if quick else 30)
    print(f"  studio {result['studio_ms']:.2f} ms/step ({result['studio_precision']}), "
          f"{result['studio_fp32_ms']:.2f} in fp32, nanoGPT {result['nanogpt_ms']:.2f} ms/step "
          f"-> studio {result['speed_ratio']:.2f}x nanoGPT's speed "
          f"({result['speed_ratio_fp32']:.2f}x in fp32)", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: a few steps of each part")
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="torch threads for everything, both sides (default 0: one per core)")
    parser.add_argument("--train-data", default=str(SHAKESPEARE / "shakespeare_train.txt"),
                        help="text that part 4 trains on (both sides)")
    parser.add_argument("--val-data", default=str(SHAKESPEARE / "shakespeare_val.txt"))
    parser.add_argument("--out", default=None,
                        help="where the JSON results go (default bench/results/bench_text.json; "
                             "with --quick, bench_text_quick.json in the temporary folder)")
    args = parser.parse_args()
    refuse_bad_peer_arguments(parser, args)
    if args.out is None:  # bench/results/ holds full runs only
        args.out = str(Path(tempfile.gettempdir()) / "bench_text_quick.json" if args.quick
                       else ROOT / "bench" / "results" / "bench_text.json")
    threads = configure_threads(args.threads)
    quick = args.quick
    cpu = cpu_description()
    results = {"threads": threads, "torch": torch.__version__, "quick": quick, "cpu": cpu}
    print(f"bench_text ({'quick' if quick else 'full'}): {cpu['model']}, torch {torch.__version__}, "
          f"{threads} threads")

    print("[1/4] KV cache vs recomputation, 6 layers x 384 wide, batch 1, greedy")
    with torch.no_grad():
        results["kv_cache"] = kv_cache_speedup([64, 256] if quick else [64, 256, 1024],
                                               new_tokens=16 if quick else 32,
                                               repeats=2 if quick else 5)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shape = dict(n_layer=2, n_embd=128, n_head=4, vocab=2000) if quick else \
            dict(n_layer=6, n_embd=384, n_head=6, vocab=8000)
        make_gpt2_folder(tmp / "gpt2", **shape)
        print(f"[2/4] ours vs transformers.generate on the same GPT-2-shaped weights {shape}")
        results["vs_transformers"] = versus_transformers(tmp / "gpt2", prompt_tokens=32,
                                                         new_tokens=32 if quick else 128,
                                                         repeats=2 if quick else 5)
        results["vs_transformers"]["shape"] = shape
        print("[3/4] fine-tuning from the imported GPT-2 on prompt/response JSONL")
        results["fine_tune"] = fine_tune_rate(tmp / "gpt2", 6 if quick else 60, tmp)
        print("[4/4] training at nanoGPT's CPU shape: studio train text vs nanoGPT's train.py, "
              "taking turns")
        results["vs_nanogpt"] = versus_nanogpt(tmp, args.train_data, args.val_data, threads, quick)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nSUMMARY  {cpu['model']}, {threads} threads, torch {torch.__version__}")
    for row in results["kv_cache"]:
        print(f"  KV cache at context {row['context']:5d}: {row['speedup']:5.1f}x "
              f"({row['with_cache_tok_s']} vs {row['without_cache_tok_s']} tok/s)")
    v = results["vs_transformers"]
    print(f"  generation vs transformers {v['transformers_version']}: {v['ratio']:.2f}x "
          f"({v['ours_tok_s']} vs {v['transformers_tok_s']} tok/s), identical tokens: {v['same_tokens']}")
    print(f"  fine-tuning from the GPT-2 import: {results['fine_tune']['tokens_per_s']} tokens/s")
    n = results["vs_nanogpt"]
    busy = n["other_cpu_pct"]
    print(f"  training from scratch vs nanoGPT's train.py: {n['speed_ratio']:.2f}x its speed "
          f"({n['studio_ms']:.2f} ms/step in {n['studio_precision']} vs {n['nanogpt_ms']:.2f}; "
          f"{n['speed_ratio_fp32']:.2f}x in fp32), {n['steps_timed_each']} steps "
          f"each in {n['blocks']} turns, {n['threads']} threads)"
          + (f"  [NOISY: other processes used {busy}% of the CPUs]" if busy and busy > 5 else ""))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
