"""generators/text/reports.py against the references it promises to match: every number is
compared with scikit-learn (classification_report with zero_division=0, confusion_matrix,
multilabel via MultiLabelBinarizer) and seqeval (default mode), on fixed predictions and on
random ones from hypothesis; the text table is compared with their printed tables."""

from __future__ import annotations

import unicodedata
import warnings

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

sklearn_metrics = pytest.importorskip("sklearn.metrics")
sklearn_preprocessing = pytest.importorskip("sklearn.preprocessing")
seqeval_metrics = pytest.importorskip("seqeval.metrics")
seqeval_labeling = pytest.importorskip("seqeval.metrics.sequence_labeling")

from generators.text.reports import (classification_report, entities,  # noqa: E402
                                     entity_report, format_report, multilabel_report)
from studio.errors import StudioError  # noqa: E402

SAME = {"rel": 1e-12, "abs": 1e-15}


def assert_rows_match(ours: dict, theirs: dict) -> None:
    """One row of our report against the reference's: we name F1 "f1", they "f1-score"."""
    assert ours["precision"] == pytest.approx(float(theirs["precision"]), **SAME)
    assert ours["recall"] == pytest.approx(float(theirs["recall"]), **SAME)
    assert ours["f1"] == pytest.approx(float(theirs["f1-score"]), **SAME)
    assert ours["support"] == int(theirs["support"])


def assert_matches_sklearn(ours: dict, y_true, y_pred) -> None:
    reference = sklearn_metrics.classification_report(
        y_true, y_pred, labels=ours["labels"], output_dict=True, zero_division=0)
    assert list(ours["classes"]) == ours["labels"]
    for label, row in ours["classes"].items():
        assert_rows_match(row, reference[str(label)])
    assert ours["accuracy"] == pytest.approx(reference["accuracy"], **SAME)
    assert "micro avg" not in ours
    for average in ("macro avg", "weighted avg"):
        assert_rows_match(ours[average], reference[average])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's note on a single label, which is fine here
        expected_matrix = sklearn_metrics.confusion_matrix(y_true, y_pred, labels=ours["labels"])
    assert ours["confusion_matrix"] == expected_matrix.tolist()


# ---------------------------------------------------------------------------------------------
# Single-label classification

REVIEWS_TRUE = ["pos", "neg", "pos", "neutral", "neg", "pos", "pos", "neg"]
REVIEWS_PRED = ["pos", "pos", "pos", "neg", "neg", "neutral", "pos", "neg"]


def test_fixed_predictions_match_sklearn():
    report = classification_report(REVIEWS_TRUE, REVIEWS_PRED)
    assert report["labels"] == ["neg", "neutral", "pos"]
    assert report["unexpected_labels"] == []
    assert report["accuracy"] == pytest.approx(5 / 8)
    assert report["classes"]["pos"] == {"precision": 0.75, "recall": 0.75, "f1": 0.75,
                                        "support": 4}
    assert_matches_sklearn(report, REVIEWS_TRUE, REVIEWS_PRED)


def test_labels_keep_the_callers_order_and_unseen_classes_get_rows():
    # "mixed" appears only in the test file and "spam" only in the predictions; "angry" was a
    # training class that the test file lacks: all three are rows, none is a crash.
    y_true = REVIEWS_TRUE + ["mixed"]
    y_pred = REVIEWS_PRED + ["spam"]
    report = classification_report(y_true, y_pred, labels=["pos", "neg", "neutral", "angry"])
    assert report["labels"] == ["pos", "neg", "neutral", "angry", "mixed", "spam"]
    assert report["unexpected_labels"] == ["mixed", "spam"]
    assert report["classes"]["mixed"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                          "support": 1}
    assert report["classes"]["angry"]["support"] == 0
    assert_matches_sklearn(report, y_true, y_pred)


def test_integer_labels_and_a_perfect_classifier():
    report = classification_report([0, 1, 1, 2], [0, 1, 1, 2])
    assert report["accuracy"] == 1.0
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 2, 0], [0, 0, 1]]
    assert_matches_sklearn(report, [0, 1, 1, 2], [0, 1, 1, 2])


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_random_predictions_match_sklearn(data):
    alphabet = data.draw(st.sampled_from([list("abcde"), [0, 1, 2, 3], ["正面", "负面", "中性"]]))
    label = st.sampled_from(alphabet)
    y_true = data.draw(st.lists(label, min_size=1, max_size=40))
    y_pred = data.draw(st.lists(label, min_size=len(y_true), max_size=len(y_true)))
    labels = data.draw(st.none() | st.lists(label, unique=True))
    report = classification_report(y_true, y_pred, labels=labels)
    assert set(report["labels"]) >= set(y_true) | set(y_pred)
    if labels is not None:
        assert report["labels"][:len(labels)] == labels
    assert_matches_sklearn(report, y_true, y_pred)


# ---------------------------------------------------------------------------------------------
# Multi-label classification


def assert_multilabel_matches_sklearn(ours: dict, y_true, y_pred) -> None:
    binarizer = sklearn_preprocessing.MultiLabelBinarizer(classes=ours["labels"])
    truth = binarizer.fit_transform(y_true)
    guess = binarizer.transform(y_pred)
    reference = sklearn_metrics.classification_report(
        truth, guess, target_names=[str(label) for label in ours["labels"]],
        output_dict=True, zero_division=0)
    for label, row in ours["classes"].items():
        assert_rows_match(row, reference[str(label)])
    for average in ("micro avg", "macro avg", "weighted avg", "samples avg"):
        assert_rows_match(ours[average], reference[average])
    matrices = sklearn_metrics.multilabel_confusion_matrix(truth, guess)
    assert list(ours["confusion_matrices"].values()) == matrices.tolist()


def test_fixed_multilabel_predictions_match_sklearn():
    y_true = [{"sport"}, {"sport", "news"}, set(), ["politics", "news"]]
    y_pred = [{"sport", "news"}, {"news"}, {"sport"}, ["politics"]]
    report = multilabel_report(y_true, y_pred, labels=["sport", "news", "politics"])
    assert report["classes"]["news"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5,
                                         "support": 2}
    assert report["unexpected_labels"] == []
    assert_multilabel_matches_sklearn(report, y_true, y_pred)


def test_multilabel_reports_labels_it_was_not_told_about():
    report = multilabel_report([{"a"}, {"b"}], [{"a", "z"}, set()], labels=["a", "b"])
    assert report["labels"] == ["a", "b", "z"]
    assert report["unexpected_labels"] == ["z"]
    assert report["classes"]["z"]["precision"] == 0.0
    assert_multilabel_matches_sklearn(report, [{"a"}, {"b"}], [{"a", "z"}, set()])


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_random_multilabel_predictions_match_sklearn(data):
    label_set = st.sets(st.sampled_from(list("wxyz")), max_size=4)
    y_true = data.draw(st.lists(label_set, min_size=1, max_size=25))
    y_pred = data.draw(st.lists(label_set, min_size=len(y_true), max_size=len(y_true)))
    labels = data.draw(st.none() | st.lists(st.sampled_from(list("wxyz")), unique=True))
    assume(len((labels or []) + [label for row in y_true + y_pred for label in row]) > 0)
    report = multilabel_report(y_true, y_pred, labels=labels)
    # sklearn reads a one-column indicator matrix as a binary problem, not a multilabel one.
    assume(len(report["labels"]) >= 2)
    assert_multilabel_matches_sklearn(report, y_true, y_pred)


# ---------------------------------------------------------------------------------------------
# Entity-level scores

# I- after O starts an entity, a type change ends one, E- and S- close one (IOBES), a bare
# "B" is an entity of type "_": the cases where chunking rules differ between implementations.
TAGS_TRUE = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"],
             ["I-ORG", "I-ORG", "O", "S-PER", "B-MISC", "E-MISC"],
             ["B", "I", "O", "B-LOC", "I-PER", "O"],
             []]
TAGS_PRED = [["B-PER", "I-PER", "O", "B-LOC", "O", "O"],
             ["B-ORG", "I-ORG", "O", "S-PER", "B-MISC", "I-MISC"],
             ["B", "I", "O", "B-LOC", "I-LOC", "B-LOC"],
             []]


def assert_matches_seqeval(ours: dict, true_tags, pred_tags) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns for undefined ratios (which are 0)
        reference = seqeval_metrics.classification_report(true_tags, pred_tags, output_dict=True)
    types = sorted(set(reference) - {"micro avg", "macro avg", "weighted avg"})
    assert ours["labels"] == types == list(ours["classes"])
    for kind in types:
        assert_rows_match(ours["classes"][kind], reference[kind])
    averages = ["micro avg", "weighted avg"] + (["macro avg"] if types else [])
    for average in averages:
        assert_rows_match(ours[average], reference[average])
    if not types:  # seqeval's macro average of nothing is NaN; ours says 0
        assert ours["macro avg"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_entities_follow_seqevals_chunking():
    assert entities(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    assert entities(["O", "I-ORG", "I-ORG", "B-ORG"]) == [("ORG", 1, 2), ("ORG", 3, 3)]
    assert entities(["B-PER", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 1)]
    assert entities(["S-PER", "B-MISC", "I-MISC", "E-MISC", "E-MISC"]) == [
        ("PER", 0, 0), ("MISC", 1, 3), ("MISC", 4, 4)]
    for sentence in TAGS_TRUE + TAGS_PRED:
        assert entities(sentence) == seqeval_labeling.get_entities(sentence)


def test_fixed_tags_match_seqeval():
    report = entity_report(TAGS_TRUE, TAGS_PRED)
    assert report["labels"] == ["LOC", "MISC", "ORG", "PER", "_"]
    # The third sentence's "I-PER" after "B-LOC" is a PER entity the prediction misses.
    assert report["classes"]["PER"] == {"precision": 1.0, "recall": pytest.approx(2 / 3),
                                        "f1": pytest.approx(0.8), "support": 3}
    assert report["classes"]["LOC"]["support"] == 2
    assert_matches_seqeval(report, TAGS_TRUE, TAGS_PRED)


def test_sentences_without_entities_give_zeros_not_nan():
    report = entity_report([["O", "O"]], [["O", "O"]])
    assert report["classes"] == {}
    assert_matches_seqeval(report, [["O", "O"]], [["O", "O"]])


TAG = st.sampled_from(["O", "O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC",
                       "E-LOC", "S-LOC", "B", "I"])


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_random_tags_match_seqeval(data):
    lengths = data.draw(st.lists(st.integers(0, 10), min_size=1, max_size=6))
    true_tags = [data.draw(st.lists(TAG, min_size=n, max_size=n)) for n in lengths]
    pred_tags = [data.draw(st.lists(TAG, min_size=n, max_size=n)) for n in lengths]
    for sentence in true_tags:
        assert entities(sentence) == seqeval_labeling.get_entities(sentence)
    assert_matches_seqeval(entity_report(true_tags, pred_tags), true_tags, pred_tags)


@pytest.mark.parametrize("bad_tag", ["X-PER", "B_PER", "B-", "b-per", "PER", "", None])
def test_a_bad_tag_is_named_with_its_sentence(bad_tag):
    pred_tags = [["B-PER", "O"], ["O", bad_tag]]
    with pytest.raises(StudioError) as caught:
        entity_report([["B-PER", "O"], ["O", "O"]], pred_tags)
    message = str(caught.value)
    assert repr(bad_tag) in message
    assert "sentence 1" in message and "token 1" in message and "predicted" in message
    assert "B-PER" in message  # says what a good tag looks like


def test_a_scheme_rejects_tags_outside_it():
    assert entity_report([["B-PER", "I-PER"]], [["B-PER", "I-PER"]], scheme="BIO")[
        "micro avg"]["f1"] == 1.0
    with pytest.raises(StudioError, match="'S-PER'.*sentence 0"):
        entity_report([["S-PER"]], [["S-PER"]], scheme="BIO")
    with pytest.raises(StudioError, match="unknown tagging scheme 'BILOU'"):
        entity_report([["O"]], [["O"]], scheme="BILOU")


def test_mismatched_tag_lists_say_where():
    with pytest.raises(StudioError, match="sentence 1 .*3 true tags but 2 predicted"):
        entity_report([["O"], ["O", "O", "O"]], [["O"], ["O", "O"]])
    with pytest.raises(StudioError, match="2 true sentences but 1 predicted"):
        entity_report([["O"], ["O"]], [["O"]])
    with pytest.raises(StudioError, match="list of tags"):
        entity_report(["B-PER O"], [["B-PER", "O"]])


# ---------------------------------------------------------------------------------------------
# Other bad input


def test_bad_classification_input_is_explained():
    with pytest.raises(StudioError, match="3 true examples but 2 predicted"):
        classification_report(["a", "b", "a"], ["a", "b"])
    with pytest.raises(StudioError, match="no examples"):
        classification_report([], [])
    with pytest.raises(StudioError, match=r"y_pred\[1\]"):
        classification_report(["a", "b"], ["a", ["b"]])
    with pytest.raises(StudioError, match="more than once"):
        classification_report(["a"], ["a"], labels=["a", "b", "a"])
    with pytest.raises(StudioError, match=r"y_true\[0\] is 'sport'.*list or set"):
        multilabel_report(["sport"], [{"sport"}])
    with pytest.raises(StudioError, match="nothing to report"):
        multilabel_report([set()], [[]])


# ---------------------------------------------------------------------------------------------
# The text table


def test_text_matches_sklearns_table_then_the_confusion_matrix():
    labels = ["pos", "neg", "neutral"]
    report = classification_report(REVIEWS_TRUE, REVIEWS_PRED, labels=labels)
    for digits in (2, 4):
        reference = sklearn_metrics.classification_report(
            REVIEWS_TRUE, REVIEWS_PRED, labels=labels, digits=digits, zero_division=0)
        table, matrix = format_report(report, digits=digits).split("\nconfusion matrix")
        assert table == reference
    assert matrix == (" (rows: true label, columns: predicted label)\n"
                      "true \\ predicted  pos  neg  neutral\n"
                      "pos                 3    0        1\n"
                      "neg                 1    2        0\n"
                      "neutral             0    1        0\n")


def test_text_of_entity_and_multilabel_reports_matches_the_references():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seqeval_text = seqeval_metrics.classification_report(TAGS_TRUE, TAGS_PRED)
    assert format_report(entity_report(TAGS_TRUE, TAGS_PRED)) == seqeval_text

    y_true, y_pred = [{"a"}, {"a", "b"}, set()], [{"a", "b"}, {"b"}, {"a"}]
    binarizer = sklearn_preprocessing.MultiLabelBinarizer(classes=["a", "b"])
    sklearn_text = sklearn_metrics.classification_report(
        binarizer.fit_transform(y_true), binarizer.transform(y_pred), target_names=["a", "b"],
        zero_division=0)
    assert format_report(multilabel_report(y_true, y_pred, ["a", "b"])) == sklearn_text


def screen_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def test_chinese_labels_line_up():
    y_true = ["正面", "负面", "中性", "正面", "非常非常长的类别名称"]
    y_pred = ["正面", "中性", "中性", "负面", "非常非常长的类别名称"]
    table, matrix = format_report(classification_report(y_true, y_pred)).split("\n\nconfusion")
    rows = [line for line in table.splitlines()[2:] if line]
    # Right-aligned names: every row is as wide on screen as the others, so the columns line up.
    assert len({screen_width(line) for line in rows}) == 1, table
    assert "非常非常长的类别名称" in rows[-4]
    matrix_rows = matrix.splitlines()[2:]
    assert len({screen_width(line) for line in matrix_rows}) == 1, matrix
