#!/usr/bin/env bash
# The CUDA paths, checked on a GPU machine (run from the repo root, with the Shakespeare files
# in .devdata/): throughput per precision and with torch.compile (rates are over the last
# progress points, so compile warm-up is excluded), then a few tests with a GPU present.
set -uo pipefail
export STUDIO_CACHE_DIR=/tmp/studio-cache PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
TRAIN=.devdata/shakespeare_train.txt VAL=.devdata/shakespeare_val.txt
rate() { grep '"event": "progress"' "$1" | tail -3 | python3 -c "
import json, sys, statistics
rows = [json.loads(l) for l in sys.stdin]
print(f'{sys.argv[1]}: {statistics.median(r[\"items_per_s\"] for r in rows):.0f} tokens/s, loss {rows[-1][\"loss\"]:.3f} @ {rows[-1][\"step\"]}')" "$2"; }
common="--data $TRAIN --val-data $VAL --events json --set eval_every=0 --set preview_every=0 --set checkpoint_every=0"
train() { name=$1; shift; studio train text $common --run-dir /tmp/$name "$@" > /tmp/$name.log 2>/tmp/$name.err || { echo "FAILED $name"; tail -5 /tmp/$name.err; }; rate /tmp/$name.log "$name"; }
train small-bf16 --preset small --max-steps 500 --set log_every=25
train small-fp32 --preset small --max-steps 500 --set log_every=25 --set precision=fp32
train small-bf16-compile --preset small --max-steps 500 --set log_every=25 --set compile=true
train gpt2-bf16 --preset gpt2 --set vocab_size=8192 --max-steps 120 --set log_every=10
train gpt2-bf16-compile --preset gpt2 --set vocab_size=8192 --max-steps 120 --set log_every=10 --set compile=true
timeout 120 python3 -m pytest -q -x -p no:cacheprovider tests/test_distributed.py tests/test_text_conformance.py tests/test_engine.py 2>&1 | tail -3
