"""Labelled data for text task adaptation (issue 15): texts with classes and token-tagged
sentences are read from every accepted format, and bad files are refused with file and line."""

import json

import pytest

from generators.text.labelled import (LabelledSet, describe, read_labelled, read_tagged, tag_scheme,
                                      unseen_labels)
from studio.errors import DataError, StudioError


def write_jsonl(path, rows, bom=False):
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


SENTIMENT = [{"text": "A wonderful film.", "label": "pos"}, {"text": "Dull and long.", "label": "neg"},
             {"text": "I loved every minute.", "label": "pos"}, {"text": "Never again.", "label": "neg"}]


# --- labelled texts: formats -------------------------------------------------------------------

def test_jsonl_single_label(tmp_path):
    data = read_labelled(str(write_jsonl(tmp_path / "reviews.jsonl", SENTIMENT)))
    assert data.texts == [row["text"] for row in SENTIMENT]
    assert data.labels == ["pos", "neg", "pos", "neg"]
    assert not data.multi_label
    assert data.classes == ["neg", "pos"] and data.counts == {"neg": 2, "pos": 2}
    assert data.where == [f"{tmp_path / 'reviews.jsonl'}:{n}" for n in (1, 2, 3, 4)]
    assert data.notes == []


def test_jsonl_multi_label_with_labels_key(tmp_path):
    rows = [{"text": "Election and football", "labels": ["sport", "politics"]},
            {"text": "The match", "labels": ["sport"]},
            {"text": "The vote", "label": ["politics", "politics"]}]
    data = read_labelled(str(write_jsonl(tmp_path / "news.jsonl", rows)))
    assert data.multi_label
    assert data.labels == [("politics", "sport"), ("sport",), ("politics",)]
    assert data.counts == {"politics": 2, "sport": 2}


def test_integer_labels_are_class_names(tmp_path):
    rows = [{"text": "good", "label": 1}, {"text": "bad", "label": 0}]
    assert read_labelled(str(write_jsonl(tmp_path / "glue.jsonl", rows))).labels == ["1", "0"]


def test_csv_with_quoted_multiline_text_and_extra_columns(tmp_path):
    file = tmp_path / "reviews.csv"
    file.write_text('id,Text,Label\n1,"Great, really great",pos\n2,"Bad.\nVery bad.",neg\n3,Fine,pos\n',
                    encoding="utf-8")
    data = read_labelled(str(file))
    assert data.texts == ["Great, really great", "Bad.\nVery bad.", "Fine"]
    assert data.labels == ["pos", "neg", "pos"]
    assert data.where == [f"{file}:2", f"{file}:3", f"{file}:5"]  # where each example starts


def test_tsv_is_read_without_quoting(tmp_path):
    file = tmp_path / "sst.tsv"
    file.write_text('text\tlabel\n"Brilliant" is the word\tpos\nboring\tneg\n', encoding="utf-8")
    data = read_labelled(str(file))
    assert data.texts == ['"Brilliant" is the word', "boring"]
    assert data.labels == ["pos", "neg"]


def test_multi_label_cells_separated_by_bar(tmp_path):
    file = tmp_path / "topics.csv"
    file.write_text("text,labels\nmatch and vote,sport|politics\nthe match,sport\n", encoding="utf-8")
    data = read_labelled(str(file))
    assert data.multi_label
    assert data.labels == [("politics", "sport"), ("sport",)]


def test_folder_of_mixed_formats_with_bom_and_chinese(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "这部电影很好看", "label": "正面"}], bom=True)
    (tmp_path / "b.csv").write_bytes(b"\xef\xbb\xbf" + "text,label\n太无聊了,负面\n".encode("utf-8"))
    (tmp_path / "README.md").write_text("about this data")
    data = read_labelled(str(tmp_path))
    assert data.texts == ["这部电影很好看", "太无聊了"]
    assert data.labels == ["正面", "负面"]
    assert data.classes == sorted(["正面", "负面"])
    assert any("README.md" in note for note in data.notes)
    assert json.loads(json.dumps(describe(data), ensure_ascii=False))["classes"] == {"正面": 1, "负面": 1}


def test_line_numbers_count_only_real_line_breaks(tmp_path):
    # U+2028 inside a JSON string is valid JSON; splitting on it would break the line.
    file = tmp_path / "odd.jsonl"
    file.write_text(json.dumps({"text": "one\u2028two", "label": "a"}, ensure_ascii=False) + "\n"
                    + json.dumps({"text": "three", "label": "b"}) + "\n", encoding="utf-8")
    data = read_labelled(str(file))
    assert data.texts == ["one\u2028two", "three"] and data.where[1] == f"{file}:2"


# --- labelled texts: bad input -----------------------------------------------------------------

def refused(reader, source) -> str:
    with pytest.raises(DataError) as info:
        reader(str(source))
    return str(info.value)


def test_missing_and_empty_labels_and_texts_are_listed_with_count(tmp_path):
    rows = SENTIMENT + [{"text": "x", "label": ""}, {"text": "", "label": "pos"}, {"label": "neg"},
                        {"text": "y"}, {"text": "z", "label": []}, {"text": "w", "label": "  "},
                        {"text": "v", "label": {"a": 1}}]
    file = write_jsonl(tmp_path / "r.jsonl", rows)
    message = refused(read_labelled, file)
    assert message.startswith(f"7 line(s) of {file}")
    assert f"{file}:5: empty label" in message and f"{file}:6: empty text" in message
    assert f"{file}:7: no text" in message and f"{file}:8: no label" in message
    assert "(and 2 more)" in message and f"{file}:11" not in message


def test_not_json_and_not_an_object(tmp_path):
    file = tmp_path / "r.jsonl"
    file.write_text("".join(json.dumps(row) + "\n" for row in SENTIMENT) + "{broken\n[1, 2]\n")
    message = refused(read_labelled, file)
    assert f"{file}:5: not valid JSON" in message
    assert f"{file}:6: expected a JSON object, got list" in message


def test_csv_without_the_columns_names_those_found(tmp_path):
    file = tmp_path / "r.csv"
    file.write_text("review,sentiment\ngood,pos\nbad,neg\n")
    message = refused(read_labelled, file)
    assert f"{file}:1" in message and "'review', 'sentiment'" in message and "'label'" in message


def test_empty_csv_cells(tmp_path):
    file = tmp_path / "r.tsv"
    file.write_text("text\tlabel\ngood\tpos\nbad\t\n\tneg\nshort row\n")
    message = refused(read_labelled, file)
    assert f"{file}:3: empty label" in message and f"{file}:4: empty text" in message
    assert f"{file}:5: empty label" in message


def test_one_class_is_refused(tmp_path):
    file = write_jsonl(tmp_path / "r.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": "pos"}])
    assert "a classifier needs at least two classes" in refused(read_labelled, file)


def test_mixed_single_and_multi_label_is_refused(tmp_path):
    file = write_jsonl(tmp_path / "r.jsonl", [{"text": "a", "label": "pos"},
                                              {"text": "b", "label": ["x", "y"]}])
    message = refused(read_labelled, file)
    assert "mixed single-label and multi-label" in message
    assert f"{file}:1" in message and f"{file}:2" in message


def test_missing_path_and_wrong_suffix(tmp_path):
    with pytest.raises(StudioError, match="does not exist"):
        read_labelled(str(tmp_path / "nowhere.jsonl"))
    (tmp_path / "notes.txt").write_text("text,label\n")
    assert ".jsonl, .csv or .tsv" in refused(read_labelled, tmp_path / "notes.txt")


def test_folder_without_labelled_files(tmp_path):
    (tmp_path / "a.txt").write_text("just prose")
    message = refused(read_labelled, tmp_path)
    assert "no labelled texts" in message and "a.txt" in message


# --- labelled texts: notes ---------------------------------------------------------------------

def test_class_imbalance_is_noted(tmp_path):
    rows = [{"text": f"good {i}", "label": "pos"} for i in range(22)] + [
        {"text": "bad 1", "label": "neg"}, {"text": "bad 2", "label": "neg"}]
    data = read_labelled(str(write_jsonl(tmp_path / "r.jsonl", rows)))
    assert len(data.notes) == 1
    note = data.notes[0]
    assert "class imbalance" in note and "'pos' has 22" in note and "'neg' only 2" in note


def test_imbalance_of_ten_is_not_noted(tmp_path):
    rows = [{"text": f"good {i}", "label": "pos"} for i in range(10)] + [{"text": "bad", "label": "neg"}]
    assert read_labelled(str(write_jsonl(tmp_path / "r.jsonl", rows))).notes == []


def test_same_text_with_different_labels_is_noted(tmp_path):
    file = write_jsonl(tmp_path / "r.jsonl", SENTIMENT + [{"text": "Dull and long. ", "label": "pos"},
                                                          {"text": "Never again.", "label": "neg"}])
    data = read_labelled(str(file))
    assert len(data.notes) == 1
    note = data.notes[0]
    assert note.startswith("1 text(s) appear with different labels")
    assert f"'neg' at {file}:2" in note and f"'pos' at {file}:5" in note


def test_unseen_labels_list_their_places(tmp_path):
    train = read_labelled(str(write_jsonl(tmp_path / "train.jsonl", SENTIMENT)))
    held = write_jsonl(tmp_path / "val.jsonl", [{"text": "ok", "label": "neutral"}] * 7 + [
        {"text": "fine", "label": "pos"}, {"text": "meh", "label": "mixed"}])
    unseen = unseen_labels(train, read_labelled(str(held)))
    assert unseen == {"mixed": [f"{held}:9"], "neutral": [f"{held}:{n}" for n in range(1, 6)]}
    assert unseen_labels(train, train) == {}


def test_describe_labelled_is_json(tmp_path):
    data = read_labelled(str(write_jsonl(tmp_path / "r.jsonl", SENTIMENT)))
    assert isinstance(data, LabelledSet)
    summary = json.loads(json.dumps(describe(data)))
    assert summary["examples"] == 4 and summary["classes"] == {"neg": 2, "pos": 2}
    assert summary["multi_label"] is False and summary["notes"] == []


# --- tagged sentences --------------------------------------------------------------------------

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

"""


def test_conll_with_docstart_and_extra_columns(tmp_path):
    file = tmp_path / "train.conll"
    file.write_text(CONLL)
    data = read_tagged(str(file))
    assert data.sentences == [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    assert data.tags == [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]]
    assert data.where == [f"{file}:3", f"{file}:8"]
    assert data.scheme == "BIO"
    assert data.entity_types == ["MISC", "ORG", "PER"]
    assert data.entity_counts == {"MISC": 1, "ORG": 1, "PER": 1}
    assert data.tag_set == ["B-MISC", "B-ORG", "B-PER", "I-PER", "O"]
    summary = json.loads(json.dumps(describe(data)))
    assert summary["sentences"] == 2 and summary["tokens"] == 6 and summary["scheme"] == "BIO"


def test_jsonl_tags_iobes_and_chinese_with_bom(tmp_path):
    file = write_jsonl(tmp_path / "ner.jsonl", [
        {"tokens": ["张", "三", "在", "北京"], "tags": ["B-PER", "E-PER", "O", "S-LOC"]},
        {"tokens": ["李四"], "tags": ["S-PER"]}], bom=True)
    data = read_tagged(str(file))
    assert data.sentences[0] == ["张", "三", "在", "北京"]
    assert data.scheme == "IOBES"
    assert data.entity_counts == {"LOC": 1, "PER": 2}
    assert data.where == [f"{file}:1", f"{file}:2"]


def test_iob1_starts_are_counted_and_noted(tmp_path):
    file = tmp_path / "old.txt"
    file.write_text("Peter I-PER\nBlackburn I-PER\nin O\nParis I-LOC\n")
    data = read_tagged(str(file))
    assert data.entity_counts == {"LOC": 1, "PER": 1}
    assert any("2 entities begin with I-" in note for note in data.notes)


def test_tag_scheme():
    assert tag_scheme([["B-PER", "I-PER", "O"]], ["f:1"]) == "BIO"
    assert tag_scheme([["O"], ["S-LOC"], ["B-PER", "E-PER"]], ["f:1", "f:3", "f:5"]) == "IOBES"
    for bad in ("B_PER", "X-PER", "PER", "B-"):
        with pytest.raises(DataError) as info:
            tag_scheme([["O"], ["O", bad]], ["f.conll:1", "f.conll:3"])
        assert f"{bad!r} at f.conll:3 (token 2)" in str(info.value)
        assert "B-TYPE" in str(info.value) and "IOBES" in str(info.value)


def test_bad_tag_in_a_file_names_file_and_line(tmp_path):
    file = tmp_path / "t.conll"
    file.write_text("a O\n\nPeter B_PER\n")
    assert f"'B_PER' at {file}:3" in refused(read_tagged, file)


def test_tokens_and_tags_of_different_lengths(tmp_path):
    file = write_jsonl(tmp_path / "t.jsonl", [{"tokens": ["a", "b"], "tags": ["B-X", "O"]},
                                              {"tokens": ["a", "b"], "tags": ["O"]}])
    assert f"{file}:2: 2 tokens but 1 tags" in refused(read_tagged, file)


def test_conll_one_column_and_empty_token(tmp_path):
    file = tmp_path / "t.conll"
    file.write_text("Peter\tB-PER\nBlackburn\n\n\tO\nParis B-LOC\n")
    message = refused(read_tagged, file)
    assert f"{file}:2: one column" in message and f"{file}:4: empty token" in message


def test_only_o_tags_is_refused(tmp_path):
    file = tmp_path / "t.conll"
    file.write_text("a O\nb O\n")
    assert "at least one entity type" in refused(read_tagged, file)
