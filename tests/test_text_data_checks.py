"""Text data that used to be accepted silently is now reported or refused (issue 11): a stray
JSONL among plain text, empty responses, binary after the first 64 KB, UTF-16 with a byte
order mark, and new data that a run's saved vocabulary cannot read."""

import json

from generators.text import TextConfig, TextGenerator
from generators.text.data import read_text_file
from generators.text.tokenizer import BPETokenizer, CharTokenizer
from studio import api
from studio.cli import main
from studio.runstore import RunDir

SMALL = ["block_size=16"]
PAIRS = ["block_size=96"]  # room for a whole question and answer
PROSE = "All the world's a stage, and all the men and women merely players.\n"
QA = [("What are your opening hours?", "We open at 9 and close at 18."),
      ("How do I return an item?", "Bring it back within 30 days with the receipt."),
      ("Do you ship abroad?", "Yes, to every country in the EU."),
      ("Can I pay by card?", "Yes, all major cards are accepted.")]
TINY = ["--set", "n_layer=1", "--set", "n_head=2", "--set", "n_embd=16", "--set", "block_size=16",
        "--set", "batch_size=4", "--set", "device=cpu", "--set", "eval_every=0",
        "--set", "preview_every=0"]


def write_jsonl(path, pairs):
    path.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in pairs))
    return path


def studio(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def one_line_error(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


def names(items) -> dict[str, str]:
    return {path.replace("\\", "/").rsplit("/", 1)[-1]: reason for path, reason in items}


# --- 1. mixed formats ---------------------------------------------------------------------------

def test_stray_jsonl_among_text_files_is_skipped_and_the_choice_said(tmp_path):
    data = tmp_path / "books"
    data.mkdir()
    for i in range(3):
        (data / f"book{i}.txt").write_text(PROSE * 10)
    write_jsonl(data / "stray.jsonl", QA[:1])
    report = api.inspect_data("text", str(data), SMALL)
    assert report.summary["format"] == "text"
    assert sorted(names([(u, "") for u in report.used])) == ["book0.txt", "book1.txt", "book2.txt"]
    assert "separate run" in names(report.skipped)["stray.jsonl"]
    (note,) = [n for n in report.summary["notes"] if "mixes" in n]
    assert "3 files" in note and "1 file," in note and "training on the plain text" in note


def test_stray_text_file_among_jsonl_is_skipped_and_the_choice_said(tmp_path):
    data = tmp_path / "qa"
    data.mkdir()
    write_jsonl(data / "qa.jsonl", QA * 5)
    (data / "README.md").write_text("Support answers, collected in May.\n")
    report = api.inspect_data("text", str(data), PAIRS)
    assert report.summary["format"] == "pairs"
    assert "separate run" in names(report.skipped)["README.md"]
    assert any("training on the prompt/response JSONL" in n for n in report.summary["notes"])


# --- 2. empty responses -------------------------------------------------------------------------

def test_all_empty_responses_are_refused(capsys, tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", [(p, "") for p, _ in QA])
    code, err = studio(capsys, "train", "text", "--data", data, "--run-dir", tmp_path / "r",
                       *TINY, "--set", "block_size=96", "--max-steps", "2", "--events", "none")
    line = one_line_error(code, err)
    assert "every response" in line and "nothing to learn" in line
    assert not (tmp_path / "r").exists()


def test_some_empty_responses_are_counted_in_a_warning(tmp_path):
    rows = QA * 2 + [("Anything else?", ""), ("Hello?", "  ")]
    report = api.inspect_data("text", str(write_jsonl(tmp_path / "qa.jsonl", rows)), PAIRS)
    assert any("2 of 10 responses" in n and "empty" in n for n in report.summary["notes"])


# --- 3. binary after the first 64 KB ------------------------------------------------------------

def test_binary_after_the_first_64_kb_is_skipped(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "good.txt").write_text(PROSE * 10)
    text = (PROSE * 2000).encode()[:100_000]
    (data / "nul_tail.txt").write_bytes(text + b"PK\x03\x04\x00\x00" + bytes(range(256)) * 8)
    (data / "control_tail.txt").write_bytes(text + b"\xff" + bytes(range(1, 32)) * 400)
    report = api.inspect_data("text", str(data), SMALL)
    reasons = names(report.skipped)
    assert names([(u, "") for u in report.used]).keys() == {"good.txt"}
    assert "binary" in reasons["nul_tail.txt"] and "100,004" in reasons["nul_tail.txt"]
    assert "binary" in reasons["control_tail.txt"]


def test_a_binary_file_is_given_up_on_at_its_first_nul(tmp_path, monkeypatch):
    # Read window by window: the file is dropped at its first NUL, never joined whole and
    # decoded (bounded memory for a large binary file).
    from generators.text import data

    def whole_file_decoded(raw, name):
        raise AssertionError(f"{name} was read whole ({len(raw):,} bytes)")

    monkeypatch.setattr(data, "decode_text", whole_file_decoded)
    blob = tmp_path / "big.txt"
    blob.write_bytes(b"x" * 70_000 + b"\x00" + b"y" * 3_000_000)
    text, reason = read_text_file(blob)
    assert text is None and "binary" in reason and "70,000" in reason


# --- 4. byte order marks ------------------------------------------------------------------------

def test_utf16_with_a_byte_order_mark_is_decoded(tmp_path):
    sentence = "Grüße aus Zürich — ça va? 你好.\n" * 20
    for codec, label in (("utf-16", "UTF-16"), ("utf-16-be", "UTF-16 BE"), ("utf-8-sig", None)):
        path = tmp_path / f"{codec}.txt"
        raw = sentence.encode(codec)
        path.write_bytes(raw if codec != "utf-16-be" else b"\xfe\xff" + raw)
        report = api.inspect_data("text", str(path), SMALL)
        assert report.preview[0].data.startswith("Grüße aus Zürich"), codec
        assert report.summary["characters"] == len(sentence)
        if label:
            assert any(label in n for n in report.summary["notes"]), report.summary["notes"]


# --- 5. a saved vocabulary meets new data -------------------------------------------------------

def test_new_data_with_unknown_characters_is_warned_with_its_share(tmp_path):
    gen = TextGenerator(TextConfig(block_size=16))
    gen.tokenizer = CharTokenizer.train(PROSE)  # as load_assets gives a resumed run
    new = tmp_path / "new.txt"
    new.write_text(("x" * 17 + "a" * 83) * 20)  # 'x' is not in PROSE: 17%
    report = gen.load_data(str(new), None, tmp_path / "cache")
    (note,) = [n for n in report.summary["notes"] if "<unk>" in n]
    assert "(17%)" in note and "'x'" in note and "tokenizer=bpe" in note and "new run" in note
    # A trace of unknown characters is not worth a warning, and BPE has none.
    (tmp_path / "ok.txt").write_text(PROSE * 20 + "x")
    assert not [n for n in gen.load_data(str(tmp_path / "ok.txt"), None, tmp_path / "c")
                .summary["notes"] if "<unk>" in n]
    gen.tokenizer = BPETokenizer.train([PROSE * 10], vocab_size=300)
    assert not [n for n in gen.load_data(str(new), None, tmp_path / "c").summary["notes"]
                if "<unk>" in n]


def test_resuming_on_new_data_warns_about_unknown_characters(capsys, tmp_path):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text(PROSE * 30)
    second.write_text("Ζωή και ψυχή, " * 60 + PROSE * 30)
    run = tmp_path / "run"
    code, err = studio(capsys, "train", "text", "--data", first, "--run-dir", run, "--max-steps", "2",
                       *TINY, "--events", "none")
    assert code == 0, err
    code, err = studio(capsys, "train", "--resume", run, "--data", second, "--max-steps", "4",
                       "--events", "plain")
    assert code == 0, err
    assert "become <unk>" in err and "second.txt" in err
    warnings = [e for e in RunDir(run).events() if e.get("event") == "warning"]
    assert any("<unk>" in e["message"] for e in warnings)
