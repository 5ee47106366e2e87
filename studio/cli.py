"""`studio ...`: every action of the window as a command.

torch is imported only by the commands that need it, so `studio --help` is instant. A problem
the user can fix is printed as one line (what, where, what to do) with exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys

from studio import __version__
from studio.errors import StudioError

EXAMPLES = """\
examples:
  studio generators
  studio train text --data corpus.txt --run-dir runs/shk --max-minutes 5
  studio train --resume runs/shk
  studio generate runs/shk --prompt "ROMEO:" --n 3 --seed 7 --set temperature=0.8
  studio eval runs/shk --data held_out.txt
  studio runs runs/
  studio control runs/shk pause        (resume, stop)
  studio config text                   (every setting, its default, bounds and help)
  studio plugin validate mygen --set width=8   (check a plugin, with a short training)
  studio plugin new mygen --modality image     (start a plugin package: ./studio-mygen)
  studio --safe-mode                   (the window with the built-in generators only)
"""


# What `studio demo` trains: run folder, steps, preset, and what it shows afterwards.
DEMOS = {
    "text": {"run_dir": "runs/demo", "steps": 2000, "preset": "demo",
             "about": "a small GPT on the built-in corpus (Python's own documentation)"},
    "image": {"run_dir": "runs/demo-image", "steps": 6000, "preset": "demo",
              "about": "a class-conditional GAN on the built-in shapes"},
    "video": {"run_dir": "runs/demo-video", "steps": 2500, "preset": "demo",
              "about": "a video GAN on the built-in bouncing shapes"},
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="studio", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="AIGC Studio: train, fine-tune, evaluate and sample generative models on "
                    "your own data.")
    p.add_argument("--version", action="version", version=f"aigc-studio {__version__}")
    p.add_argument("--safe-mode", action="store_true",
                   help="load the built-in generators only, no plugins (e.g. when a plugin "
                        "misbehaves); for the window too")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    g = sub.add_parser("generators", help="list registered generators (name, modality, version, status)")
    g.add_argument("--json", action="store_true", help="print JSON instead of a table")
    g.add_argument("--verbose", "-v", action="store_true",
                   help="with each broken plugin's full traceback")

    pl = sub.add_parser("plugin", help="tools for plugin authors: `studio plugin new`, "
                                       "`studio plugin validate`")
    plugin_sub = pl.add_subparsers(dest="plugin_command", metavar="ACTION", required=True)
    v = plugin_sub.add_parser(
        "validate", help="check a generator plugin as the studio will use it",
        description="Load the generator through its entry point and check what it declares "
                    "(name, modality, Config and SampleConfig, presets, train_defaults), then "
                    "train it 2 steps on a tiny config in a temporary folder and check that "
                    "evaluate() and evaluate(source) return its best_metric. The tiny config is "
                    "the generator's `tiny` preset if it has one, else its defaults, then the "
                    "--set values. One line per check; exit code 2 when one fails.")
    v.add_argument("generator", nargs="?",
                   help="the generator to check (default: every plugin that is not built in)")
    v.add_argument("--set", dest="settings", action="append", metavar="KEY=VALUE",
                   help="a setting for the short training (model or training); repeatable")
    v.add_argument("--data", help="training data for the short training, also given to "
                                  "evaluate(source) (default: the generator's built-in data)")

    n = plugin_sub.add_parser(
        "new", help="write a new generator plugin package that works as it is",
        description="Write a pip-installable plugin package (default ./studio-NAME): "
                    "pyproject.toml with the entry point, a light config.py (the settings, no "
                    "torch), a small generator of the modality that trains, evaluates and "
                    "samples, a test file running the studio's conformance suite, and a README. "
                    "Nothing is overwritten: the folder must not exist or be empty.")
    n.add_argument("name", help="the generator's name: letters, digits and underscores, "
                                "starting with a letter (lowercased)")
    n.add_argument("--modality", required=True, choices=("text", "image", "video"),
                   help="what the generator makes")
    n.add_argument("--dir", dest="plugin_dir", metavar="PATH",
                   help="the folder to write (default: ./studio-NAME)")

    c = sub.add_parser("config", help="show a generator's settings: defaults, bounds, choices, help")
    c.add_argument("generator")

    t = sub.add_parser("train", help="train a new run, or continue one with --resume",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Settings: `studio config GENERATOR` lists every key --set accepts.")
    t.add_argument("generator", nargs="?", help="generator name (see `studio generators`)")
    t.add_argument("--data", help="training data: a file or folder (default: the built-in demo data)")
    t.add_argument("--val-data", help="held-out data (default: a share of --data)")
    t.add_argument("--run-dir", help="folder for the new run (default: runs/GENERATOR-TIME)")
    t.add_argument("--name", help="a name for the run, shown by `studio runs` and the window "
                   "(default: its folder's name); with --resume: renames it")
    t.add_argument("--notes", help="notes on the run (what you are trying); with --resume: "
                   "replaces them")
    t.add_argument("--resume", metavar="RUN", help="continue this run from its latest checkpoint")
    t.add_argument("--checkpoint", help="with --resume: which checkpoint (name, step, best)")
    t.add_argument("--init-from", metavar="RUN", help="fine-tune: start from this run's (or "
                   "checkpoint folder's) weights and tokenizer, with fine-tuning defaults")
    t.add_argument("--init-from-hf", metavar="DIR", help="fine-tune: start from a local Hugging "
                   "Face GPT-2 folder (config.json, model.safetensors, tokenizer files)")
    t.add_argument("--task", help="what the model learns (same as --set task=...): text's "
                   "generate (default), classify or tag")
    t.add_argument("--preset", help="a named starting config of the generator (e.g. tiny, small)")
    t.add_argument("--config", dest="config_file", help="JSON file of settings")
    t.add_argument("--set", dest="settings", action="append", metavar="KEY=VALUE",
                   help="override one setting; repeatable")
    t.add_argument("--max-steps", type=int, help="stop after this many optimizer steps in total")
    t.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this many minutes; the LR "
                   "schedule's decay then ends when they run out (or at --max-steps if sooner)")
    t.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps (same as --set device=...)")
    t.add_argument("--events", choices=("json", "bar", "plain", "none"),
                   help="json: one JSON event per line on stdout (for the window); "
                        "default: a progress bar on a terminal, plain lines otherwise")

    gen = sub.add_parser("generate", help="sample from a run")
    gen.add_argument("run", help="run folder (or one of its checkpoint folders)")
    gen.add_argument("--prompt", help="text to continue (text generators)")
    gen.add_argument("--data", help="classify and tag runs: a file of texts, one a line, each "
                     "answered in turn")
    gen.add_argument("--n", type=int, default=1, help="number of samples (default 1)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (same seed, same output)")
    gen.add_argument("--set", dest="settings", action="append", metavar="KEY=VALUE",
                     help="sampling setting, e.g. temperature=0.8, top_k=50, max_new_tokens=300")
    gen.add_argument("--checkpoint", help="latest (default), best, a name or a step")
    gen.add_argument("--device", default="auto")
    gen.add_argument("--stream", action="store_true", help="print text as it is generated (one sample)")
    gen.add_argument("--out", help="write the samples into this folder with their lineage: images as "
                          "PNG, texts in samples.txt, all listed in samples.json")
    gen.add_argument("--json", action="store_true", help="print samples as JSON lines")

    e = sub.add_parser("eval", help="evaluate a run on held-out data; prints JSON metrics")
    e.add_argument("run")
    e.add_argument("--data", help="held-out data (default: the run's own held-out split)")
    e.add_argument("--checkpoint", help="latest (default), best, a name or a step")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="classify and tag runs: print the report "
                   "as JSON instead of a table")

    r = sub.add_parser("runs", help="list runs with generator, status, step and best held-out metric")
    r.add_argument("root", nargs="?", default="runs")
    r.add_argument("--json", action="store_true")

    d = sub.add_parser("demo", help="train a built-in generator on its built-in demo data "
                                    "(offline), then show samples; continues where it stopped")
    d.add_argument("generator", nargs="?", default="text", choices=sorted(DEMOS),
                   help="text (default): a small GPT on Python's own documentation; image: a "
                        "class-conditional GAN on drawn shapes; video: a video GAN on "
                        "bouncing shapes")
    d.add_argument("--run-dir", help="default: runs/demo (text), runs/demo-image or runs/demo-video")
    d.add_argument("--steps", type=int, help="training steps (default: text 2000, ~1 min; "
                                             "image 6000, ~7 min; video 2500, ~10 min)")
    d.add_argument("--device", default="auto")
    d.add_argument("--export-to", metavar="DIR", help="then copy the trained run, weights only, "
                   "to DIR (how assets/demo/<generator>, the window's first-launch models, are made)")

    x = sub.add_parser("export", help="copy a run with its best weights only (no trainer "
                                      "state; --merge folds a LoRA run's adapters into its "
                                      "base), or export its model as ONNX graphs (--format onnx)")
    x.add_argument("run")
    x.add_argument("--out", metavar="DIR", help="the new folder (default: beside the run, "
                   "named RUN-onnx or RUN-export)")
    x.add_argument("--format", choices=("safetensors", "onnx"), default="safetensors",
                   help="safetensors (default): a run folder the studio loads; onnx: the model "
                        "as ONNX graphs with a manifest.json (and tokenizer.json for text), each "
                        "checked with onnxruntime against PyTorch (needs the onnx extra: pip "
                        "install 'aigc-studio[onnx]')")
    x.add_argument("--merge", action="store_true",
                   help="LoRA runs: write base + adapters as one plain run that needs no base "
                        "(ONNX graphs are always merged)")
    x.add_argument("--checkpoint", default="best", help="with --merge or --format onnx: which "
                   "checkpoint (default best)")

    _add_serve_parser(sub)

    cp = sub.add_parser("compose", help="make ads from a recipe: for each row of a CSV/JSONL "
                                        "file, text, picture and clip from your runs, laid out")
    cp.add_argument("recipe", help="the recipe JSON (a template and a run, prompt and seed per "
                    "slot), or an ad's ad.json to make that ad again")
    cp.add_argument("--rows", help="CSV or JSONL: one ad per row, filling the recipe's "
                    "{placeholders} (with a recipe)")
    cp.add_argument("--out", required=True, metavar="DIR", help="ads/<row>/ per ad, review.json "
                    "and index.html; run again to finish an interrupted batch (with an ad.json: "
                    "the ad's folder)")
    cp.add_argument("--reroll", action="append", default=[], metavar="SLOT",
                    help="with an ad.json: draw this slot anew, the others as they were "
                         "(repeatable)")
    cp.add_argument("--format", dest="formats", action="append", choices=("png", "mp4", "gif"),
                    help="what to write per ad (repeatable; default png)")
    cp.add_argument("--device", default="cpu")

    sub.add_parser("gui", help="open the studio window (also: `studio` with no command)")

    ctl = sub.add_parser("control", help="pause, resume or stop a run that is training")
    ctl.add_argument("run")
    ctl.add_argument("action", choices=("pause", "resume", "stop"))
    return p


def _add_serve_parser(sub) -> None:
    from studio.serve import API_KEY_VARIABLE, ServeSettings
    default = ServeSettings()
    s = sub.add_parser(
        "serve", help="serve runs over an OpenAI-compatible HTTP API (completions, chat, "
                      "images, video, classify)",
        description="Serve the runs named over HTTP as the OpenAI API does: /v1/completions and "
                    "/v1/chat/completions (text), /v1/images/generations, "
                    "/v1/videos/generations, /v1/classify, /v1/models, /health and /metrics. "
                    "The official `openai` client works against http://HOST:PORT/v1; a model's "
                    "id is its run folder's name. All runs load before the server listens; "
                    "then it prints `serving on URL (models: ...)` on stdout.")
    s.add_argument("runs", nargs="+", metavar="RUN", help="run folders to serve")
    s.add_argument("--host", default=default.host,
                   help=f"address to listen on (default {default.host}: this machine only); any "
                        f"other needs an API key")
    s.add_argument("--port", type=int, default=default.port,
                   help=f"port (default {default.port}; 0: a free one)")
    s.add_argument("--api-key", metavar="KEY",
                   help=f"the key every request must send (Authorization: Bearer KEY); better "
                        f"the environment variable {API_KEY_VARIABLE}, which `ps` does not show")
    s.add_argument("--checkpoint", help="latest (default), best, a name or a step")
    s.add_argument("--device", default="auto")
    s.add_argument("--max-batch", type=int, default=default.max_batch,
                   help=f"texts decoded together, or image/video/classify requests sampled "
                        f"together (default {default.max_batch}; 1: no batching)")
    s.add_argument("--queue", type=int, default=default.queue,
                   help=f"requests that may wait per model; more are answered 429 (default "
                        f"{default.queue})")
    s.add_argument("--timeout", type=float, default=default.timeout,
                   help=f"seconds a request may take, waiting included (default {default.timeout:g})")
    s.add_argument("--max-tokens", type=int, default=default.max_tokens,
                   help=f"the most max_tokens a request may ask for (default {default.max_tokens})")
    s.add_argument("--max-n", type=int, default=default.max_n,
                   help=f"the most choices, images or clips a request may ask for (default "
                        f"{default.max_n})")
    s.add_argument("--max-frames", type=int, default=default.max_frames,
                   help=f"the most frames a clip may have (default {default.max_frames})")
    s.add_argument("--max-body", type=int, default=default.max_body, metavar="BYTES",
                   help=f"the largest request body (default {default.max_body:,})")
    s.add_argument("--stop-with-stdin", action="store_true",
                   help="stop when standard input closes (the window starts its servers so: "
                        "one never outlives the window)")


def _print_table(rows: list[dict], columns: list[str]) -> None:
    cells = [[("" if r.get(c) is None else (f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c])))
              for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _cmd_generators(args) -> int:
    from studio.registry import default_registry
    rows = [e.info() for e in default_registry().entries()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no generators registered: is aigc-studio installed (pip install -e .)?")
        return 0
    _print_table(rows, ["name", "modality", "version", "status", "source"])
    for row in rows:
        if row["error"]:
            where = f" ({row['where']})" if row["where"] else ""
            print(f"  {row['name']}: {row['error']}{where}")
            if args.verbose and row["details"]:
                print("    " + row["details"].rstrip().replace("\n", "\n    "))
    if any(row["error"] for row in rows) and not args.verbose:
        print("(`studio generators --verbose` shows each broken plugin's traceback)")
    return 0


def _cmd_plugin_new(args) -> int:
    from studio.plugin_new import check_name, new_plugin
    folder = new_plugin(args.name, args.modality, args.plugin_dir)
    name = check_name(args.name)
    print(f"wrote the {args.modality} generator plugin '{name}' to {folder}. Next:\n"
          f"  pip install -e {folder}\n"
          f"  studio plugin validate {name}\n"
          f"  pytest {folder}")
    return 0


def _cmd_plugin(args) -> int:
    if args.plugin_command == "new":
        return _cmd_plugin_new(args)
    from studio.plugins import plugins_to_validate, validate
    entries = plugins_to_validate(args.generator)
    if not entries:
        print("no plugins installed besides the built-in generators; name one to check it "
              "(e.g. `studio plugin validate text`).")
        return 0
    failed = 0
    for entry in entries:
        for result in validate(entry, settings=args.settings, data=args.data):
            if result.skipped:
                print(f"skipped  {result.generator}: {result.label}: {result.skipped}")
            elif result.ok:
                print(f"ok       {result.generator}: {result.label}")
            else:
                failed += 1
                print(f"FAILED   {result.generator}: {result.label}: {result.problem}")
    if failed:
        print(f"error: {failed} check(s) failed.", file=sys.stderr)
        return 2
    return 0


def _cmd_train(args) -> int:
    from studio import api
    if args.checkpoint and not args.resume:
        raise StudioError("--checkpoint picks where a resumed run continues from: use it with "
                          "--resume RUN (to start a new run from a checkpoint, use --init-from).")
    if args.resume:
        clash = [flag for flag, value in (("--init-from", args.init_from), ("--init-from-hf",
                 args.init_from_hf), ("--run-dir", args.run_dir)) if value]
        if clash:
            raise StudioError(f"{' and '.join(clash)} cannot go with --resume: a resumed run "
                              f"continues in its own folder from its own checkpoint.")
    settings = list(args.settings or [])
    if args.task:
        settings.append(f"task={args.task}")
    if args.device:
        settings.append(f"device={args.device}")
    events = args.events or ("bar" if sys.stderr.isatty() else "plain")
    status, run = api.train(args.generator, data=args.data, val_data=args.val_data,
                            run_dir=args.run_dir, preset=args.preset, config_file=args.config_file,
                            settings=settings, max_steps=args.max_steps,
                            max_minutes=args.max_minutes, resume=args.resume,
                            checkpoint=args.checkpoint, events=events,
                            init_from=args.init_from, init_from_pretrained=args.init_from_hf,
                            name=args.name, notes=args.notes)
    if events != "json" and int(os.environ.get("RANK", 0)) == 0:
        # A classifier or tagger answers a text it is given: say so in the command shown.
        answers_texts = run.config().get("config", {}).get("task") in ("classify", "tag")
        sample = f"studio generate {run.path}" + (' --prompt "..."' if answers_texts else "")
        print(f"run {run.path}: {status}. Sample with `{sample}`, "
              f"continue with `studio train --resume {run.path}`.", file=sys.stderr)
    return 0


MAX_SAMPLES = 10_000  # per command: a mistyped --n 100000000 ran out of memory without a word
MAX_SEED = 2**62  # seeds are 64-bit, and each sample's is seed + its index


def _cmd_generate(args) -> int:
    from studio import api
    from studio.export import shorten
    if not 1 <= args.n <= MAX_SAMPLES:
        raise StudioError(f"--n must be from 1 to {MAX_SAMPLES:,}, got {args.n}; generate more "
                          f"with several commands and different --seed values.")
    if not 0 <= args.seed < MAX_SEED:
        raise StudioError(f"--seed must be from 0 to 2**62 - 1, got {args.seed}.")
    if args.out:
        from studio.export import folder_problem
        problem = folder_problem(args.out)
        if problem:
            raise StudioError(f"--out {problem}")
    if args.stream:
        if args.n != 1 or args.json or args.out:
            raise StudioError("--stream prints one sample as it is made; drop --n, --json and --out.")
        for piece in api.stream(args.run, prompt=args.prompt, seed=args.seed, settings=args.settings,
                                checkpoint=args.checkpoint, device=args.device):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    prompt = args.prompt
    if args.data:
        if args.prompt is not None or args.stream:
            raise StudioError("--data gives the texts to answer; drop --prompt and --stream.")
        prompt = _texts_to_answer(args.data)
    samples = api.generate(args.run, prompt=prompt, n=args.n, seed=args.seed,
                           settings=args.settings, checkpoint=args.checkpoint, device=args.device,
                           explain=args.json)
    if args.out:
        _write_generated(args, samples)
    # Notes are per sample (one answer may outgrow the context, another end in time): each
    # different one is said once.
    for note in dict.fromkeys(s.meta["note"] for s in samples if s.meta.get("note")):
        print(f"note: {note}", file=sys.stderr)
    for i, s in enumerate(samples):
        if args.json:
            data = s.data if s.kind == "text" else f"<{s.kind} {list(s.data.shape)}>"
            print(json.dumps({"kind": s.kind, "data": data, "meta": s.meta}, ensure_ascii=False))
        elif s.kind == "text":
            if len(samples) > 1:  # a classifier's or tagger's answer is the same at any seed
                print(f"--- text {i + 1}: {shorten(s.meta['prompt'], 60)} ---" if s.meta.get("task")
                      else f"--- sample {i + 1} (seed {args.seed}) ---")
            print(s.data)
        elif not args.out:
            print(f"sample {i + 1}: {s.kind} of shape {list(s.data.shape)} (use --out to save it)")
    return 0


def _texts_to_answer(path: str) -> list[str]:
    """generate --data: the file's non-empty lines, each a text to classify or tag."""
    from pathlib import Path

    from generators.text.data import read_text_file
    if not Path(path).is_file():
        raise StudioError(f"--data {path} is not a file; give a text file with one text a line.")
    text, problem = read_text_file(Path(path))
    if text is None:
        raise StudioError(f"--data {path} cannot be read as text: {problem}.")
    texts = [line.strip() for line in text.splitlines() if line.strip()]
    if not texts:
        raise StudioError(f"--data {path} has no text; give one text a line.")
    return texts


def _write_generated(args, samples) -> None:
    """--out: the samples as files with their lineage, written as the window exports them
    (studio/export.py): PNGs with the lineage in their metadata, texts in samples.txt, an
    interpolation also as a GIF, and samples.json listing them."""
    import time
    from pathlib import Path

    from studio.config import parse_assignments
    from studio.export import write_folder
    first = samples[0].meta if samples else {}
    lineage = {"run": first.get("run", args.run), "checkpoint": first.get("checkpoint"),
               "generator": first.get("generator"), "settings": parse_assignments(args.settings),
               "seed": args.seed, "prompt": args.prompt,
               # --data: one answer per text of the file (a classifier answers each once)
               **({"data": args.data, "count": len(samples)} if args.data else {"count": args.n}),
               "time": time.strftime("%Y-%m-%d %H:%M:%S"), "device": args.device}
    clips = any(s.kind == "video" for s in samples)
    video_format = str(lineage["settings"].get("format", "gif")) if clips else None
    written = write_folder(samples, Path(args.out), lineage, video_format=video_format)
    print(f"wrote {len(samples)} sample(s) to {args.out}: "
          f"{', '.join(p.name for p in written[:6])}{' …' if len(written) > 6 else ''}",
          file=sys.stderr)


def _cmd_eval(args) -> int:
    from studio import api
    result = api.evaluate(args.run, data=args.data, checkpoint=args.checkpoint, device=args.device)
    report = result.pop("report", None)
    if report is None:  # a generation run: its metrics are the output
        print(json.dumps(result, indent=2))
        return 0
    # A classifier or tagger: the report (reports.py), as scikit-learn / seqeval print it.
    from generators.text.reports import format_report
    notes = result.pop("notes", [])
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        print(json.dumps({k: v for k, v in result.items()}))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _cmd_runs(args) -> int:
    from studio import api
    rows = api.runs_table(args.root)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no runs in {args.root} yet: start one with `studio train text`.")
    else:
        # FIDs from different feature networks are not comparable: say which measured each
        measured = ["measured_with"] if any(r["measured_with"] for r in rows) else []
        _print_table(rows, ["name", "run", "generator", "status", "step", "best_metric", "best",
                            *measured, "checkpoints"])
    return 0


def _cmd_config(args) -> int:
    from studio import api
    print(json.dumps(api.describe_generator(args.generator), indent=2, ensure_ascii=False))
    return 0


def _cmd_demo(args) -> int:
    from pathlib import Path
    from studio import api
    from studio.runstore import RunDir
    demo = DEMOS[args.generator]
    steps = demo["steps"] if args.steps is None else args.steps
    if steps < 1:
        raise StudioError(f"--steps must be at least 1, got {steps}.")
    events = "bar" if sys.stderr.isatty() else "plain"
    run = Path(args.run_dir or demo["run_dir"])
    if run.exists() and not run.is_dir():
        raise StudioError(f"{run} is a file; the demo trains into a folder. Give another --run-dir.")
    if args.export_to and Path(args.export_to).exists() and not api.is_exported_run(Path(args.export_to)):
        raise StudioError(f"{args.export_to} already exists and is not an exported run; nothing "
                          f"in it was changed. Give a new folder to --export-to.")
    if not RunDir.is_run(run):
        print(f"training {demo['about']} into {run}", file=sys.stderr)
        api.train(args.generator, run_dir=str(run), max_steps=steps, events=events,
                  preset=demo["preset"], settings=[f"device={args.device}"])
    elif api.runs_table(str(run))[0]["step"] < steps:
        api.train(resume=str(run), max_steps=steps, events=events)
    print(json.dumps({k: v for k, v in api.evaluate(str(run)).items() if k != "run"}), file=sys.stderr)
    if args.generator == "text":
        for i, sample in enumerate(api.generate(str(run), prompt="The ", n=2, seed=0,
                                                settings=["max_new_tokens=300"])):
            print(f"--- sample {i + 1} ---\n{sample.data}")
    elif args.generator == "image":
        from studio.runstore import save_samples
        samples = api.generate(str(run), n=16, seed=0, settings=["grid=true"])
        print(f"a grid of 16 samples: {save_samples(run / 'demo-samples', samples)}")
    else:
        from studio.runstore import save_samples
        samples = api.generate(str(run), n=8, seed=0)
        print(f"8 clips: {save_samples(run / 'demo-samples', samples)}")
    if args.export_to:
        print(f"exported to {api.export_slim_run(str(run), args.export_to)}", file=sys.stderr)
    return 0


# What Qt's xcb platform plugin needs on a bare Linux machine; Qt's own error names only the
# first missing library (libxcb-cursor0), so people fix one, relaunch and hit the next.
XCB_APT_LINE = ("sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 "
                "libxkbcommon-x11-0 libgl1 libegl1")


def missing_xcb_libraries(plugin) -> list[str]:
    """The shared libraries Qt's xcb plugin (`plugin`, a path to libqxcb.so) cannot find;
    [] when it loads."""
    import ctypes
    import re
    import shutil
    import subprocess
    from pathlib import Path
    try:
        ctypes.CDLL(str(plugin))
        return []
    except OSError as exc:
        first = re.findall(r"(lib[\w.+-]+\.so[\w.]*)", str(exc))
    missing = []
    if shutil.which("ldd"):  # every one at once, where the loader names just the first
        out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
        missing = [line.split()[0] for line in out.splitlines() if "not found" in line]
    return missing or [name for name in first if Path(name).name != Path(plugin).name] or [str(plugin)]


def xcb_plugin_path():
    """Where PySide6 keeps Qt's xcb platform plugin (None if PySide6 is not installed)."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.find_spec("PySide6")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"


def display_problem(env=None, system: str | None = None, plugin=None) -> str | None:
    """Why the window cannot open on this machine, said before Qt aborts with its own message
    (None: it can, or Qt was told which platform to use)."""
    env = os.environ if env is None else env
    system = sys.platform if system is None else system
    if not system.startswith("linux") or env.get("QT_QPA_PLATFORM"):
        return None
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        return ("no display: the window needs a desktop session. Run `xvfb-run -a studio`, or "
                "use the command line (`studio --help`).")
    if env.get("WAYLAND_DISPLAY"):
        return None  # Qt may use its Wayland plugin; xcb's libraries may not be needed
    plugin = xcb_plugin_path() if plugin is None else plugin
    if plugin is None or not os.path.exists(plugin):
        return None
    missing = missing_xcb_libraries(plugin)
    if not missing:
        return None
    return (f"the window cannot open: Qt's X11 plugin misses {', '.join(missing)}. Install "
            f"what it needs with:\n  {XCB_APT_LINE}")


def _cmd_export(args) -> int:
    from pathlib import Path

    from studio import api
    if args.out is None:
        run = Path(args.run).resolve()
        run = run.parent.parent if run.parent.name == "checkpoints" else run
        args.out = str(run.with_name(f"{run.name}-{'onnx' if args.format == 'onnx' else 'export'}"))
    if args.format == "onnx":
        from studio.onnx_export import export_onnx
        report = export_onnx(args.run, args.out, args.checkpoint)
        for graph in report["graphs"]:
            print(f"{graph['file']}: max abs error vs PyTorch {graph['max_abs_error']:.2e} "
                  f"(tolerance {graph['tolerance']:.0e}, {graph['checked_inputs']} inputs checked "
                  f"with onnxruntime)", file=sys.stderr)
        for note in report["notes"]:
            print(f"note: {note}", file=sys.stderr)
        print(report["out"])
        return 0
    if args.merge:
        written = api.export_merged_run(args.run, args.out, args.checkpoint)
    else:
        written = api.export_slim_run(args.run, args.out)
    print(written)
    return 0


def _cmd_serve(args) -> int:
    from studio.serve import API_KEY_VARIABLE, ServeSettings
    from studio.serve.server import serve
    settings = ServeSettings(
        host=args.host, port=args.port,
        api_key=args.api_key if args.api_key is not None else os.environ.get(API_KEY_VARIABLE),
        max_batch=args.max_batch, queue=args.queue, timeout=args.timeout,
        max_tokens=args.max_tokens, max_n=args.max_n, max_frames=args.max_frames,
        max_body=args.max_body)
    return serve(args.runs, settings, checkpoint=args.checkpoint, device=args.device,
                 stop_with_stdin=args.stop_with_stdin)


def _cmd_compose(args) -> int:
    from studio.compose.batch import is_ad_lineage, remake_ad, run_batch
    formats = tuple(args.formats or ("png",))
    if is_ad_lineage(args.recipe):
        if args.rows:
            raise StudioError(f"{args.recipe} is an ad's ad.json: it makes that one ad again "
                              f"from the row it records, so leave out --rows (or give the "
                              f"recipe to make a batch).")
        folder, notes = remake_ad(args.recipe, args.out, formats, tuple(args.reroll), args.device)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        print(f"made {folder}")
        return 0
    if args.reroll:
        raise StudioError("--reroll works on one ad: give its ad.json instead of the recipe "
                          "(e.g. studio compose ads/<row>/ad.json --out again/ --reroll "
                          "headline).")
    if not args.rows:
        raise StudioError(f"{args.recipe} is a recipe: give the rows to fill it with, "
                          f"--rows products.csv (CSV or JSONL, one ad per row).")
    bar = None

    def progress(done: int, total: int, row: str) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="ad", file=sys.stderr, disable=not sys.stderr.isatty())
        bar.update(done - bar.n)
        bar.set_postfix_str(row)

    try:
        report = run_batch(args.recipe, args.rows, args.out, formats, progress, args.device)
    finally:
        if bar is not None:
            bar.close()
    print(f"{len(report.made)} made, {len(report.skipped)} finished earlier, {len(report.failed)} "
          f"failed; {len(report.review)} for review (review.json); contact sheet: "
          f"{os.path.join(args.out, 'index.html')}")
    for item in report.review:
        print(f"review {item['row']}: {'; '.join(item['reasons'])}", file=sys.stderr)
    return 0


def _cmd_gui(args) -> int:
    problem = display_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from studio.gui.window import main as open_window
    return open_window()


def _cmd_control(args) -> int:
    from studio import api
    api.control(args.run, args.action)
    print(f"asked {args.run} to {args.action}", file=sys.stderr)
    return 0


def _written_file(filename) -> str:
    """The file a failed write was for: an atomic write's temp file ".NAME.tmp-PID" is NAME."""
    import re
    if not filename:
        return "a file"
    temp = re.fullmatch(r"\.(.+)\.tmp-\d+", os.path.basename(filename))
    return os.path.join(os.path.dirname(filename), temp.group(1)) if temp else str(filename)


# Why a write failed, when the fix is outside the studio: permissions, a read-only file system,
# a full disk or quota.
UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}

COMMANDS = {"generators": _cmd_generators, "train": _cmd_train, "generate": _cmd_generate,
            "eval": _cmd_eval, "runs": _cmd_runs, "config": _cmd_config, "control": _cmd_control,
            "demo": _cmd_demo, "gui": _cmd_gui, "plugin": _cmd_plugin, "export": _cmd_export,
            "serve": _cmd_serve, "compose": _cmd_compose}


# Arguments that name files or folders: given as "" (an unset shell variable), each was taken
# for "not given" and fell back on a default (the built-in data, runs/, a new run folder).
PATH_ARGUMENTS = {"data": "--data", "val_data": "--val-data", "run_dir": "--run-dir",
                  "rows": "--rows", "recipe": "the recipe", "resume": "--resume",
                  "init_from": "--init-from", "init_from_hf": "--init-from-hf",
                  "config_file": "--config", "out": "--out", "export_to": "--export-to",
                  "run": "the run folder", "root": "the runs folder"}


def _refuse_empty_paths(args) -> None:
    for name, what in PATH_ARGUMENTS.items():
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.strip():
            raise StudioError(f"{what} is empty: give a path (is a shell variable unset?).")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.command = "gui"
    if args.safe_mode:
        from studio.registry import enter_safe_mode
        enter_safe_mode()
    try:
        _refuse_empty_paths(args)
        return COMMANDS[args.command](args)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in UNWRITABLE:
            raise
        # The last net under every write the checks before it could not foresee (a file made
        # read-only, a folder remounted), so it reads as one line like every other error.
        print(f"error: cannot write {_written_file(exc.filename)}: {exc.strerror}. Check the "
              f"folder's permissions and free space, then run the command again.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
