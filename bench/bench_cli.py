"""How fast the CLI answers what needs no training (issue 14, part 3): `studio --help`,
`studio generators` and `studio config text`, each the median wall time of N fresh processes
(`python -m studio ...`, output discarded), and how many lines of `python -X importtime` for
each mention torch (the target is 0; unlike the times, this does not depend on the machine's
load). Beside them, what the registry chose between (studio/registry.py's docstring): importing
the built-in generators' code (`generators.text`, `.image`, `.video`: torch) against importing
only their light declarations (`generators.<x>.config`, through the registry's light import).

    .venv/bin/python bench/bench_cli.py            # 15 runs each
    .venv/bin/python bench/bench_cli.py --quick    # 3 runs each, writes nothing

A full run writes bench/results/bench_cli.json. Target: `studio generators` and
`studio config NAME` < 0.5 s.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.5

COMMANDS = {
    "studio --help": ["-m", "studio", "--help"],
    "studio generators": ["-m", "studio", "generators"],
    "studio config text": ["-m", "studio", "config", "text"],
}
# What listing would cost each way: the generators' code, or their light declarations only.
IMPORTS = {
    "import the generators' code": ["-c", "import generators.text, generators.image, "
                                          "generators.video"],
    "import their light declarations": ["-c", "from studio.registry import import_light\n"
                                              "for x in ('text', 'image', 'video'):\n"
                                              "    import_light(f'generators.{x}.config')"],
}


def environment(folder: str) -> dict:
    """One thread, and caches and settings in a folder of the bench's own."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "STUDIO_CACHE_DIR": f"{folder}/cache",
            "STUDIO_CONFIG_DIR": f"{folder}/config"}


def median_seconds(args: list[str], runs: int, env: dict) -> dict:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"error: `python {' '.join(args)}` failed:\n{proc.stderr}")
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "runs": runs}


def torch_import_lines(args: list[str], env: dict) -> int:
    """Lines of `python -X importtime` output that mention torch."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return sum("torch" in line for line in proc.stderr.splitlines()
               if line.startswith("import time:"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs each; writes nothing")
    parser.add_argument("--runs", type=int, default=15, help="processes per command (full run)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_cli.json"))
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    results = {"quick": args.quick, "python": sys.version.split()[0], "cpus": os.cpu_count(),
               "target_s": TARGET_S, "commands": {}, "imports": {}}
    with tempfile.TemporaryDirectory() as folder:
        env = environment(folder)
        for label, command in COMMANDS.items():
            row = median_seconds(command, runs, env)
            row["torch_import_lines"] = torch_import_lines(command, env)
            results["commands"][label] = row
        for label, command in IMPORTS.items():
            row = median_seconds(command, runs, env)
            row["torch_import_lines"] = torch_import_lines(command, env)
            results["imports"][label] = row

    print(f"median of {runs} fresh processes each (wall time; a loaded machine inflates them):")
    for label, row in {**results["commands"], **results["imports"]}.items():
        over = " (over the target)" if label in COMMANDS and label != "studio --help" \
            and row["median_s"] >= TARGET_S else ""
        print(f"  {label:34s} {row['median_s']:6.3f} s  (min {row['min_s']:.3f}){over}; "
              f"importtime lines with torch: {row['torch_import_lines']}")
    if args.quick:
        print("(--quick: nothing written)")
        return
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
