"""bench/bench_adapt.py's labelled set: plays found and split by play, speaker tags and stage
directions left out, balanced classes, chunks within bounds, and no held-out play in the
pretraining text (a second or two; the benchmark itself is run by hand)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_adapt  # noqa: E402

from conftest import SHAKESPEARE_TRAIN, SHAKESPEARE_VAL  # noqa: E402

GLUED = """FIRST PLAY

by William Shakespeare


PERSONS REPRESENTED.

KING OF NOWHERE.
A FOOL.

ACT I.

SCENE 1. A room.

[Enter KING and FOOL.]

KING.
Good morrow, fool; what news of the wide world?

FOOL.
None, my liege, but that the world is wide.
[Exit.]

  FOOL.   Yet one more line, said after the door was shut.

[Exeunt.]THE TRAGEDY OF KING LEAR

by William Shakespeare

ACT I.

Lear.
Meantime we shall express our darker purpose.
"""


def test_glued_titles_and_speeches():
    works = bench_adapt.split_works(GLUED)
    assert [title for title, _ in works] == ["FIRST PLAY", "THE TRAGEDY OF KING LEAR"]
    assert "KING LEAR" not in works[0][1]
    found, stats = bench_adapt.speeches(works[0][1])
    text = [" ".join(s) for s in found]
    assert text == ["Good morrow, fool; what news of the wide world?",
                    "None, my liege, but that the world is wide.",
                    "Yet one more line, said after the door was shut."]
    assert stats["tagged"] == 2
    assert [" ".join(s) for s in bench_adapt.speeches(works[1][1])[0]] == [
        "Meantime we shall express our darker purpose."]


def test_chunks_stay_within_bounds():
    speech = ["A short line."] + ["word " * 80] + ["To be, or not to be, that is the question:"] * 4
    for chunk in bench_adapt.chunks(speech):
        assert bench_adapt.CHUNK_MIN <= len(chunk) <= bench_adapt.CHUNK_MAX


@pytest.mark.skipif(not (SHAKESPEARE_TRAIN.exists() and SHAKESPEARE_VAL.exists()),
                    reason="needs ../shared/data/text")
def test_build_data_splits_by_play(tmp_path):
    info = bench_adapt.build_data(SHAKESPEARE_TRAIN.parent, tmp_path, 100, 40, 20)
    assert info["unknown_titles"] == []
    assert all(p["start_found"] and p["chunks"] > 300 for p in info["parse"].values())
    assert info["counts"] == {"train": dict.fromkeys(bench_adapt.CLASSES, 100),
                              "dev": dict.fromkeys(bench_adapt.CLASSES, 20),
                              "test": dict.fromkeys(bench_adapt.CLASSES, 40)}
    held = set(bench_adapt.HELD_OUT)
    assert set(info["by_play"]["test"]) == held
    assert not held & (set(info["by_play"]["train"]) | set(info["by_play"]["dev"]))
    assert {bench_adapt.GENRES[t][1] for t in bench_adapt.GENRES
            if bench_adapt.GENRES[t][0] in held} == set(bench_adapt.CLASSES)
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert all(bench_adapt.CHUNK_MIN <= len(r["text"]) <= bench_adapt.CHUNK_MAX for r in rows)
    assert not any(r["text"].startswith("[") or bench_adapt.is_speaker(r["text"]) for r in rows)
    pretrain = (tmp_path / "pretrain.txt").read_text()
    assert "TWELFTH NIGHT" not in pretrain and "THE TRAGEDY OF KING LEAR" not in pretrain
    assert "ROMEO AND JULIET" in pretrain
    test_texts = {json.loads(line)["text"] for line in (tmp_path / "test.jsonl").read_text().splitlines()}
    assert not test_texts & {r["text"] for r in rows}
