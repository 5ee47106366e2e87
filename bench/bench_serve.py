"""How fast `studio serve` answers (issue 16): the same model, the same machine, one run.

1. Load: requests/s, tokens/s, p50/p99 latency and time to first token with 1, 4 and 16
   concurrent clients (each streaming completions, one request after another), against two
   servers on the same text run started side by side: continuous batching on
   (`--max-batch 16`) and off (`--max-batch 1`). The two take turns block by block, each
   concurrency level in each round, so load from elsewhere hits both alike; a round's blocks
   alternate which server goes first.
2. The HTTP layer's overhead: one request at a time (not streamed) through each server
   against the studio's own sampling in this process (`gen.sample`, what `studio generate`
   runs once the model is loaded), in turns.
3. Images: images/s from /v1/images/generations with 1 and 16 concurrent clients (n=1 each),
   batching on and off.
4. ONNX: the run exported with `studio export --format onnx`, sampled with onnxruntime (the
   README's torch-free example, greedy with the KV cache) against the studio's PyTorch
   decoding, tokens/s at batch 1; and the GAN's generator, images/s at batch 16, onnxruntime
   against PyTorch, in turns.

    .venv/bin/python bench/bench_serve.py            # ~10 min on 2 cores
    .venv/bin/python bench/bench_serve.py --quick    # a smoke run; writes nothing

Servers and this process each use --threads torch threads (2: the machine's cores); the
clients are threads of this process, so on 2 cores they take CPU from the server they
measure, as any client on the same machine would. A full run writes
bench/results/bench_serve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from side_by_side import cpu_description, cpu_snapshot, other_cpu_pct, pinned_env

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "The "  # the demo text run continues Python's documentation
SERVERS = {"batching on": 16, "batching off": 1}  # --max-batch


# --- the servers --------------------------------------------------------------------------------

class Server:
    """`studio serve` in a child process, on a free port, until stop()."""

    def __init__(self, runs: list[str], max_batch: int, threads: int, folder: Path):
        self.log = open(folder / f"serve-{max_batch}.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "studio", "serve", *runs, "--port", "0", "--max-batch",
             str(max_batch), "--queue", "1024", "--max-tokens", "4096", "--max-n", "64",
             "--timeout", "600"],
            cwd=ROOT, env={**pinned_env(threads), "STUDIO_CACHE_DIR": str(folder / "cache")},
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("serving on "):
            self.process.kill()
            raise SystemExit(f"error: studio serve did not start; see {self.log.name}")
        self.url = line.split()[2]  # http://127.0.0.1:PORT/v1

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# --- clients -------------------------------------------------------------------------------------

def streamed_completion(client, url: str, model: str, max_tokens: int, seed: int) -> dict:
    """One streamed completion: its latency, time to first token and tokens (from usage)."""
    body = {"model": model, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0.8,
            "seed": seed, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first, tokens = None, 0
    with client.stream("POST", f"{url}/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and chunk.get("choices") and chunk["choices"][0].get("text"):
                first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return {"latency": time.perf_counter() - start, "ttft": first, "tokens": tokens}


def load_block(url: str, model: str, clients: int, per_client: int, max_tokens: int,
               seed: int) -> dict:
    """`clients` threads, each sending `per_client` streamed requests one after another."""
    import httpx

    def one_client(index: int) -> list[dict]:
        with httpx.Client(timeout=600) as client:
            return [streamed_completion(client, url, model, max_tokens, seed + index * 1000 + i)
                    for i in range(per_client)]

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(one_client, range(clients)) for r in rs]
    wall = time.perf_counter() - start
    return {"wall": wall, "results": results}


def summarize(blocks: list[dict]) -> dict:
    """Medians over blocks of the rates; percentiles over all requests of the latencies."""
    results = [r for b in blocks for r in b["results"]]
    latencies = sorted(r["latency"] for r in results)
    ttfts = sorted(r["ttft"] for r in results if r["ttft"] is not None)
    return {
        "requests_per_s": statistics.median(len(b["results"]) / b["wall"] for b in blocks),
        "tokens_per_s": statistics.median(sum(r["tokens"] for r in b["results"]) / b["wall"]
                                          for b in blocks),
        "latency_p50_s": percentile(latencies, 50), "latency_p99_s": percentile(latencies, 99),
        "ttft_p50_s": percentile(ttfts, 50), "ttft_p99_s": percentile(ttfts, 99),
        "requests": len(results), "blocks": len(blocks)}


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return sorted(values)[k]


def image_block(url: str, model: str, clients: int, per_client: int, seed: int) -> dict:
    import httpx

    def one_client(index: int) -> list[dict]:
        out = []
        with httpx.Client(timeout=600) as client:
            for i in range(per_client):
                start = time.perf_counter()
                r = client.post(f"{url}/images/generations",
                                json={"model": model, "n": 1, "seed": seed + index * 1000 + i})
                r.raise_for_status()
                out.append({"latency": time.perf_counter() - start, "ttft": None, "tokens": 0})
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(one_client, range(clients)) for r in rs]
    return {"wall": time.perf_counter() - start, "results": results}


# --- the parts -----------------------------------------------------------------------------------

def part_load(servers: dict[str, Server], model: str, levels: list[int], rounds: int,
              per_client: int, max_tokens: int) -> dict:
    blocks = {(name, c): [] for name in servers for c in levels}
    before = cpu_snapshot(tuple(s.process.pid for s in servers.values()))
    for r in range(rounds):
        for c in levels:
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for name in order:
                blocks[(name, c)].append(load_block(servers[name].url, model, c, per_client,
                                                    max_tokens, seed=r * 100_000))
                print(f"  round {r + 1}, {c:>2} clients, {name}: "
                      f"{summarize(blocks[(name, c)][-1:])['tokens_per_s']:.0f} tokens/s", flush=True)
    after = cpu_snapshot(tuple(s.process.pid for s in servers.values()))
    table = {f"{name}, {c} clients": summarize(bs) for (name, c), bs in blocks.items()}
    for c in levels:
        on, off = table[f"batching on, {c} clients"], table[f"batching off, {c} clients"]
        table[f"batching on / off, {c} clients"] = {
            "tokens_per_s_ratio": on["tokens_per_s"] / off["tokens_per_s"]}
    table["other_cpu_pct"] = other_cpu_pct(before, after)
    return table


def part_overhead(servers: dict[str, Server], run: str, model: str, rounds: int, per_block: int,
                  max_tokens: int) -> dict:
    """Median latency of one non-streamed request through HTTP vs `gen.sample` in process."""
    import httpx
    import torch
    from studio import api
    from studio.config import from_dict
    _, gen, _ = api.load_run(run, "best", "cpu")
    params = from_dict(gen.SampleConfig, {"temperature": 0.8, "top_k": 0,
                                          "max_new_tokens": max_tokens}, "bench")
    times: dict[str, list[float]] = {"studio in process": [], **{name: [] for name in servers}}
    with httpx.Client(timeout=600) as client:
        for r in range(rounds):
            for kind in (list(times) if r % 2 == 0 else list(reversed(times))):
                for i in range(per_block):
                    start = time.perf_counter()
                    if kind == "studio in process":
                        with torch.no_grad():
                            gen.sample(params, n=1, seed=i, prompt=PROMPT)
                    else:
                        client.post(f"{servers[kind].url}/completions", json={
                            "model": model, "prompt": PROMPT, "max_tokens": max_tokens,
                            "temperature": 0.8, "seed": i}).raise_for_status()
                    times[kind].append(time.perf_counter() - start)
    medians = {kind: statistics.median(ts) for kind, ts in times.items()}
    own = medians["studio in process"]
    return {kind: {"median_s": m, "vs_in_process": m / own} for kind, m in medians.items()}


def part_images(servers: dict[str, Server], model: str, rounds: int, per_client: int) -> dict:
    blocks = {(name, c): [] for name in servers for c in (1, 16)}
    for r in range(rounds):
        for c in (1, 16):
            for name in (list(servers) if r % 2 == 0 else list(reversed(servers))):
                blocks[(name, c)].append(image_block(servers[name].url, model, c, per_client,
                                                     seed=r * 100_000))
    table = {}
    for (name, c), bs in blocks.items():
        s = summarize(bs)
        table[f"{name}, {c} clients"] = {"images_per_s": s["requests_per_s"],
                                         "latency_p50_s": s["latency_p50_s"],
                                         "latency_p99_s": s["latency_p99_s"]}
    return table


def onnx_greedy(decoder, manifest: dict, ids: list[int], tokens: int) -> list[int]:
    """Greedy decoding through the exported graph with its KV cache, as
    examples/onnx_text_sample.py does (the session made once, outside the timing)."""
    import numpy as np
    shape = (manifest["n_layer"], 1, manifest["n_head"], 0, manifest["head_size"])
    keys = values = np.zeros(shape, np.float32)
    feed, new = ids, []
    for _ in range(tokens):
        logits, keys, values = decoder.run(None, {"tokens": np.array([feed], np.int64),
                                                  "past_keys": keys, "past_values": values})
        scores = logits[0, -1]
        scores[manifest["banned_tokens"]] = -np.inf
        feed = [int(scores.argmax())]
        new += feed
    return new


def part_onnx(text_run: str, image_run: str, folder: Path, rounds: int, tokens: int) -> dict:
    """onnxruntime vs PyTorch, in turns: greedy text at batch 1, the GAN at batch 16."""
    import numpy as np
    import torch
    from studio import api
    from studio.config import from_dict
    from studio.onnx_export import export_onnx
    import onnxruntime as ort
    out = {}
    text_dir, image_dir = folder / "onnx-text", folder / "onnx-image"
    start = time.perf_counter()
    export_onnx(text_run, str(text_dir))
    out["text export s"] = time.perf_counter() - start
    start = time.perf_counter()
    export_onnx(image_run, str(image_dir))
    out["image export s"] = time.perf_counter() - start

    _, gen, _ = api.load_run(text_run, "best", "cpu")
    params = from_dict(gen.SampleConfig, {"temperature": 0, "max_new_tokens": tokens}, "bench")
    decoder = ort.InferenceSession(str(text_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    manifest = json.loads((text_dir / "manifest.json").read_text())["model"]
    prompt_ids = gen.tokenizer.encode(PROMPT).tolist()
    runners = {
        "text, PyTorch (studio)": lambda: gen.sample(params, n=1, seed=0, prompt=PROMPT),
        "text, onnxruntime": lambda: onnx_greedy(decoder, manifest, prompt_ids, tokens),
    }
    _, image_gen, _ = api.load_run(image_run, "best", "cpu")
    session = ort.InferenceSession(str(image_dir / "generator.onnx"),
                                   providers=["CPUExecutionProvider"])
    graph = image_gen.onnx_graphs()[0]
    feeds = {name: t.repeat(16, *[1] * (t.dim() - 1)).numpy() if t.size(0) == 1 else
             t[:1].repeat(16, *[1] * (t.dim() - 1)).numpy()
             for name, t in zip(graph.input_names, graph.inputs)}
    torch_inputs = tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values())
    runners["GAN x16, PyTorch"] = lambda: graph.module(*torch_inputs)
    runners["GAN x16, onnxruntime"] = lambda: session.run(None, feeds)
    times: dict[str, list[float]] = {k: [] for k in runners}
    with torch.no_grad():
        for run_fn in runners.values():  # warm-up
            run_fn()
        for r in range(rounds):
            for kind in (list(runners) if r % 2 == 0 else list(reversed(runners))):
                for _ in range(3):
                    start = time.perf_counter()
                    runners[kind]()
                    times[kind].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    out["text tokens/s"] = {"PyTorch (studio)": tokens / med["text, PyTorch (studio)"],
                            "onnxruntime": tokens / med["text, onnxruntime"]}
    out["text onnxruntime / PyTorch"] = med["text, PyTorch (studio)"] / med["text, onnxruntime"]
    out["GAN images/s (batch 16)"] = {"PyTorch": 16 / med["GAN x16, PyTorch"],
                                      "onnxruntime": 16 / med["GAN x16, onnxruntime"]}
    out["GAN onnxruntime / PyTorch"] = med["GAN x16, PyTorch"] / med["GAN x16, onnxruntime"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text-run", default=str(ROOT / "assets/demo/text"))
    p.add_argument("--image-run", default=str(ROOT / "assets/demo/image"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--per-client", type=int, default=4, help="requests each client sends a block")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--parts", default="load,overhead,images,onnx")
    p.add_argument("--quick", action="store_true", help="1 round, fewer requests; writes nothing")
    p.add_argument("--out", default=str(ROOT / "bench/results/bench_serve.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.per_client, args.max_tokens = 1, 1, 16
    os.environ.update(pinned_env(args.threads))
    import torch
    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    report = {"machine": cpu_description(), "threads": args.threads, "rounds": args.rounds,
              "per_client": args.per_client, "max_tokens": args.max_tokens,
              "text_run": args.text_run, "image_run": args.image_run}
    text_model, image_model = Path(args.text_run).name, Path(args.image_run).name
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        servers = {}
        if {"load", "overhead", "images"} & set(parts):
            servers = {name: Server([args.text_run, args.image_run], batch, args.threads, folder)
                       for name, batch in SERVERS.items()}
        try:
            if "load" in parts:
                print("load (streamed completions):", flush=True)
                report["load"] = part_load(servers, text_model, [1, 4, 16], args.rounds,
                                           args.per_client, args.max_tokens)
            if "overhead" in parts:
                print("HTTP overhead:", flush=True)
                report["overhead"] = part_overhead(servers, args.text_run, text_model, args.rounds,
                                                   max(2, args.per_client), args.max_tokens)
            if "images" in parts:
                print("images:", flush=True)
                report["images"] = part_images(servers, image_model, args.rounds,
                                               max(2, args.per_client))
        finally:
            for server in servers.values():
                server.stop()
        if "onnx" in parts:
            print("ONNX:", flush=True)
            report["onnx"] = part_onnx(args.text_run, args.image_run, folder, args.rounds, 100)
    print(json.dumps(report, indent=1, default=float))
    if not args.quick:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
