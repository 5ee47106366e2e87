"""Reports for classifier and tagger heads: per-class precision, recall and F1, and the table.

The numbers are those of the two references people compare against, so a figure printed here
reads the same as one in a paper or notebook:

- `classification_report` and `multilabel_report` compute what scikit-learn's
  `classification_report(..., output_dict=True, zero_division=0)` computes (a ratio with a zero
  denominator is 0; F1 is 2tp / (2tp + fp + fn));
- `entity_report` computes what seqeval's `classification_report(..., output_dict=True)` does
  in its default (conlleval-compatible, not strict) mode: entities are chunked by seqeval's
  `get_entities` rules, and F1 is 2PR / (P + R) of the rounded-off ratios, as seqeval does.

Neither library is used here (both are test-only references); this is plain Python and numpy.

A report is a plain dict: "classes" maps each label (or entity type) to {"precision", "recall",
"f1", "support"}, followed by average rows named as the references name them ("accuracy",
"micro avg", "macro avg", "weighted avg", "samples avg"), and "labels", the row order. Labels
that the caller's `labels` list does not name (a class in the test file never seen in training,
or a prediction of one) get rows of their own and are listed under "unexpected_labels".
`format_report` prints any of them as scikit-learn's text table.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np

from studio.errors import StudioError

_AVERAGE_ROWS = ("accuracy", "micro avg", "macro avg", "weighted avg", "samples avg")


# ---------------------------------------------------------------------------------------------
# Single-label classification


def classification_report(y_true: list, y_pred: list, labels: list | None = None) -> dict:
    """Precision, recall, F1 and support per class, the averages and the confusion matrix.

    `labels` fixes the row order (e.g. the classes seen in training); labels found in `y_true`
    or `y_pred` but missing from it are appended in sorted order and listed under
    "unexpected_labels". Without `labels` the rows are all labels seen, sorted. Every label
    present has a row, so the micro average is the accuracy and is reported as "accuracy" (a
    float), as scikit-learn does.
    """
    y_true, y_pred = list(y_true), list(y_pred)
    _check_same_length(y_true, y_pred, "examples")
    if not y_true:
        raise StudioError("there are no examples to report on: y_true and y_pred are empty. "
                          "Evaluate on a file with at least one labelled example.")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        for index, label in enumerate(values):
            _check_hashable(label, f"{name}[{index}]")
    labels, unexpected = _rows(labels, set(y_true) | set(y_pred))

    index_of = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(confusion, ([index_of[y] for y in y_true], [index_of[y] for y in y_pred]), 1)

    true_positives = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    report = _per_class_and_averages(labels, true_positives, predicted, actual)
    # The micro average over every label is the accuracy: precision, recall and F1 coincide.
    report["accuracy"] = float(true_positives.sum() / actual.sum())
    report = _in_reference_order(report, ("accuracy", "macro avg", "weighted avg"))
    report["confusion_matrix"] = confusion.tolist()
    report["labels"] = labels
    report["unexpected_labels"] = unexpected
    return report


# ---------------------------------------------------------------------------------------------
# Multi-label classification


def multilabel_report(y_true: list, y_pred: list, labels: list | None = None) -> dict:
    """The same report when each example carries a set of labels (scikit-learn's multilabel
    case, on the binarised indicator matrices): micro, macro, weighted and samples averages, and
    per label its 2x2 confusion matrix [[tn, fp], [fn, tp]] under "confusion_matrices"."""
    y_true = [_label_set(row, f"y_true[{i}]") for i, row in enumerate(y_true)]
    y_pred = [_label_set(row, f"y_pred[{i}]") for i, row in enumerate(y_pred)]
    _check_same_length(y_true, y_pred, "examples")
    if not y_true:
        raise StudioError("there are no examples to report on: y_true and y_pred are empty. "
                          "Evaluate on a file with at least one labelled example.")
    labels, unexpected = _rows(labels, set().union(*y_true, *y_pred))
    if not labels:
        raise StudioError("no example has a label, true or predicted, and no labels were "
                          "given: there is nothing to report. Pass the classes as `labels`.")

    truth = _indicator_matrix(y_true, labels)
    guess = _indicator_matrix(y_pred, labels)
    true_positives = (truth & guess).sum(axis=0)
    predicted = guess.sum(axis=0)
    actual = truth.sum(axis=0)
    report = _per_class_and_averages(labels, true_positives, predicted, actual)

    # Samples average: the scores of each example's label set, averaged over the examples.
    sample_scores = _scores((truth & guess).sum(axis=1), guess.sum(axis=1), truth.sum(axis=1))
    report["samples avg"] = _row(*(float(np.mean(score)) for score in sample_scores),
                                 int(actual.sum()))
    report = _in_reference_order(report, ("micro avg", "macro avg", "weighted avg", "samples avg"))
    examples = len(y_true)
    report["confusion_matrices"] = {
        label: [[int(examples - actual[i] - predicted[i] + true_positives[i]),
                 int(predicted[i] - true_positives[i])],
                [int(actual[i] - true_positives[i]), int(true_positives[i])]]
        for i, label in enumerate(labels)}
    report["labels"] = labels
    report["unexpected_labels"] = unexpected
    return report


# ---------------------------------------------------------------------------------------------
# Entity-level scores for taggers

_SCHEMES = {
    # Which tag prefixes each scheme allows. Chunking follows seqeval's default rules whatever
    # the scheme; naming one only rejects tags that do not belong to it.
    "auto": "BIES",
    "BIO": "BI",
    "IOB2": "BI",
    "IOBES": "BIES",
}
_TAG = re.compile(r"(?P<prefix>[BIES])(?:-(?P<type>.+))?", re.DOTALL)


def entities(tags: Sequence[str], scheme: str = "auto") -> list[tuple[str, int, int]]:
    """The entities in one sentence's tags as (type, first token, last token), as seqeval's
    `get_entities` finds them: an I- after O (or after another type) starts an entity, an E- or
    S- ends one; untyped tags ("B", "I") give entities of type "_"."""
    return _entities(tags, _scheme_prefixes(scheme), where="")


def entity_report(true_tags: list[list[str]], pred_tags: list[list[str]],
                  scheme: str = "auto") -> dict:
    """Entity-level precision, recall, F1 and support per entity type, with micro, macro and
    weighted averages, as seqeval's default-mode `classification_report` computes them. An
    entity counts as found when the prediction has the same type, first and last token."""
    prefixes = _scheme_prefixes(scheme)
    _check_same_length(true_tags, pred_tags, "sentences")
    found: dict[str, dict[str, set]] = {"true": {}, "predicted": {}}
    for sentence, (truth, guess) in enumerate(zip(true_tags, pred_tags)):
        for side, tags in (("true", truth), ("predicted", guess)):
            if isinstance(tags, (str, bytes)):
                raise StudioError(f"sentence {sentence} (counting from 0) of the {side} tags is "
                                  f"the string {tags[:40]!r}: give each sentence as a list of "
                                  "tags, one per token (e.g. ['B-PER', 'I-PER', 'O']).")
        if len(truth) != len(guess):
            raise StudioError(f"sentence {sentence} (counting from 0) has {len(truth)} true tags "
                              f"but {len(guess)} predicted tags: give one predicted tag per "
                              "token.")
        for side, tags in (("true", truth), ("predicted", guess)):
            where = f" in sentence {sentence} (counting from 0) of the {side} tags"
            for kind, start, end in _entities(tags, prefixes, where):
                found[side].setdefault(kind, set()).add((sentence, start, end))

    types = sorted(found["true"].keys() | found["predicted"].keys())
    true_positives = np.array([len(found["true"].get(t, set()) & found["predicted"].get(t, set()))
                               for t in types], dtype=np.int64)
    predicted = np.array([len(found["predicted"].get(t, ())) for t in types], dtype=np.int64)
    actual = np.array([len(found["true"].get(t, ())) for t in types], dtype=np.int64)

    precision, recall, f1 = _seqeval_scores(true_positives, predicted, actual)
    report: dict = {"classes": {t: _row(precision[i], recall[i], f1[i], actual[i])
                                for i, t in enumerate(types)}}
    total = int(actual.sum())
    report["micro avg"] = _row(*(s[0] for s in _seqeval_scores(
        true_positives.sum(keepdims=True), predicted.sum(keepdims=True),
        actual.sum(keepdims=True))), total)
    # With no entity anywhere seqeval's macro average is NaN (the mean of nothing); 0 reads
    # better in a table and says the same: nothing was found.
    report["macro avg"] = _row(*(float(np.mean(s)) if types else 0.0
                                 for s in (precision, recall, f1)), total)
    if total == 0:
        # seqeval's rule when no entity is in the truth: nothing to weight by, all zero.
        report["weighted avg"] = _row(0.0, 0.0, 0.0, 0)
    else:
        report["weighted avg"] = _row(*(float(np.average(s, weights=actual))
                                        for s in (precision, recall, f1)), total)
    report["labels"] = types
    return report


def _scheme_prefixes(scheme: str) -> str:
    if scheme not in _SCHEMES:
        raise StudioError(f"unknown tagging scheme {scheme!r}: use one of "
                          f"{', '.join(_SCHEMES)}.")
    return _SCHEMES[scheme]


def _entities(tags: Sequence[str], prefixes: str, where: str) -> list[tuple[str, int, int]]:
    """seqeval's chunking (sequence_labeling.get_entities), read as: walk the tags with an "O"
    after the last one, and at each tag decide whether the open entity ends before it and
    whether a new one starts at it."""
    found = []
    previous_prefix, previous_type, start = "O", "", 0
    for position, tag in enumerate([*tags, "O"]):
        prefix, kind = _parse_tag(tag, prefixes, position, where)
        if _entity_ends(previous_prefix, prefix, previous_type, kind):
            found.append((previous_type, start, position - 1))
        if _entity_starts(previous_prefix, prefix, previous_type, kind):
            start = position
        previous_prefix, previous_type = prefix, kind
    return found


def _parse_tag(tag: str, prefixes: str, position: int, where: str) -> tuple[str, str]:
    if tag == "O":
        return "O", "_"
    match = _TAG.fullmatch(tag) if isinstance(tag, str) else None
    if match is None or match["prefix"] not in prefixes:
        allowed = ", ".join(f"{p}-" for p in prefixes)
        raise StudioError(f"tag {tag!r} at token {position}{where} is not a tag of the "
                          f"{'BIO' if prefixes == 'BI' else 'BIO/IOBES'} scheme: write O, or "
                          f"{allowed} followed by the entity type (e.g. B-PER).")
    return match["prefix"], match["type"] or "_"


def _entity_ends(previous_prefix: str, prefix: str, previous_type: str, kind: str) -> bool:
    if previous_prefix in "ES":
        return True
    if previous_prefix in "BI" and prefix in "BSO":
        return True
    return previous_prefix != "O" and previous_type != kind


def _entity_starts(previous_prefix: str, prefix: str, previous_type: str, kind: str) -> bool:
    if prefix in "BS":
        return True
    if previous_prefix in "ESO" and prefix in "EI":
        return True
    return prefix != "O" and previous_type != kind


def _seqeval_scores(true_positives, predicted, actual):
    precision = _divide(true_positives, predicted)
    recall = _divide(true_positives, actual)
    denominator = precision + recall
    f1 = 2 * precision * recall / np.where(denominator == 0, 1, denominator)
    return precision, recall, f1


# ---------------------------------------------------------------------------------------------
# The text table


def format_report(report: dict, digits: int = 2) -> str:
    """The report as scikit-learn's `classification_report` prints it (header, a row per class,
    a blank line, the average rows), then the confusion matrix when the report has one. Labels
    are aligned by their width on screen, so Chinese or Japanese labels line up too."""
    names = [str(label) for label in report["classes"]]
    width = max([_screen_width(n) for n in names] + [len("weighted avg"), digits])
    number = f" {{:>9.{digits}f}}"
    lines = [_pad_left("", width) + " " + "".join(f" {h:>9}" for h in
                                                  ("precision", "recall", "f1-score", "support")),
             ""]
    for name, row in zip(names, report["classes"].values()):
        lines.append(_pad_left(name, width) + " " + _numbers(row, number))
    lines.append("")
    for heading in _AVERAGE_ROWS:
        if heading not in report:
            continue
        if heading == "accuracy":
            support = sum(row["support"] for row in report["classes"].values())
            lines.append(_pad_left(heading, width) + " " + " " * 20
                         + number.format(report["accuracy"]) + f" {support:>9}")
        else:
            lines.append(_pad_left(heading, width) + " " + _numbers(report[heading], number))
    text = "\n".join(lines) + "\n"
    if report.get("confusion_matrix") is not None:
        text += "\n" + _format_confusion(report["confusion_matrix"], names)
    return text


def _numbers(row: dict, number: str) -> str:
    return (number.format(row["precision"]) + number.format(row["recall"])
            + number.format(row["f1"]) + f" {row['support']:>9}")


def _format_confusion(matrix: list[list[int]], names: list[str]) -> str:
    name_width = max(_screen_width(n) for n in names + ["true \\ predicted"])
    column_widths = [max(_screen_width(name), *(len(str(row[j])) for row in matrix))
                     for j, name in enumerate(names)]
    lines = ["confusion matrix (rows: true label, columns: predicted label)",
             _pad_right("true \\ predicted", name_width)
             + "".join("  " + _pad_left(n, w) for n, w in zip(names, column_widths))]
    for name, row in zip(names, matrix):
        lines.append(_pad_right(name, name_width)
                     + "".join("  " + _pad_left(str(count), w)
                               for count, w in zip(row, column_widths)))
    return "\n".join(lines) + "\n"


def _screen_width(text: str) -> int:
    """Columns a terminal gives the text: wide (CJK) characters take two, combining marks none."""
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad_left(text: str, width: int) -> str:
    return " " * max(0, width - _screen_width(text)) + text


def _pad_right(text: str, width: int) -> str:
    return text + " " * max(0, width - _screen_width(text))


# ---------------------------------------------------------------------------------------------
# Shared arithmetic and checks


def _per_class_and_averages(labels, true_positives, predicted, actual) -> dict:
    """Per-class rows and the micro, macro and weighted averages, as scikit-learn computes them
    from each label's true positives, predicted and actual counts."""
    precision, recall, f1 = _scores(true_positives, predicted, actual)
    total = int(actual.sum())
    report: dict = {"classes": {label: _row(precision[i], recall[i], f1[i], actual[i])
                                for i, label in enumerate(labels)}}
    micro = _scores(true_positives.sum(keepdims=True), predicted.sum(keepdims=True),
                    actual.sum(keepdims=True))
    report["micro avg"] = _row(*(s[0] for s in micro), total)
    report["macro avg"] = _row(*(float(np.mean(s)) for s in (precision, recall, f1)), total)
    # scikit-learn weights by support, and falls back to the plain mean when no label has any.
    weights = actual if total else None
    report["weighted avg"] = _row(*(float(np.average(s, weights=weights))
                                    for s in (precision, recall, f1)), total)
    return report


def _scores(true_positives, predicted, actual):
    """scikit-learn's precision, recall and F1 with zero_division=0."""
    precision = _divide(true_positives, predicted)
    recall = _divide(true_positives, actual)
    f1 = _divide(2 * true_positives, predicted + actual)
    return precision, recall, f1


def _divide(numerator, denominator) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator),
                     where=denominator != 0)


def _row(precision, recall, f1, support) -> dict:
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1),
            "support": int(support)}


def _in_reference_order(report: dict, averages: tuple[str, ...]) -> dict:
    return {"classes": report["classes"], **{name: report[name] for name in averages}}


def _rows(labels: list | None, seen: set) -> tuple[list, list]:
    """The row labels: the caller's `labels` in their order, then any label seen but not named
    (sorted, as scikit-learn sorts); and the list of those unexpected ones."""
    if labels is None:
        return _sorted(seen), []
    labels = list(labels)
    for index, label in enumerate(labels):
        _check_hashable(label, f"labels[{index}]")
    duplicates = sorted({str(label) for label in labels if labels.count(label) > 1})
    if duplicates:
        raise StudioError(f"labels lists {', '.join(duplicates)} more than once: name each "
                          "class once.")
    unexpected = _sorted(seen - set(labels))
    return labels + unexpected, unexpected


def _sorted(labels: Iterable) -> list:
    try:
        return sorted(labels)
    except TypeError:  # labels of mixed types (1 and "1"): any fixed order will do
        return sorted(labels, key=lambda label: (type(label).__name__, repr(label)))


def _label_set(row, where: str) -> set:
    if isinstance(row, (str, bytes)) or not isinstance(row, Iterable):
        raise StudioError(f"{where} is {row!r}, not a collection of labels: give each example's "
                          "labels as a list or set (e.g. ['sport', 'news'], or [] for none).")
    row = list(row)
    for label in row:
        _check_hashable(label, where)
    return set(row)


def _indicator_matrix(rows: list[set], labels: list) -> np.ndarray:
    index_of = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(rows), len(labels)), dtype=bool)
    for i, row in enumerate(rows):
        matrix[i, [index_of[label] for label in row]] = True
    return matrix


def _check_same_length(truth: Sequence, guess: Sequence, what: str) -> None:
    if len(truth) != len(guess):
        raise StudioError(f"there are {len(truth)} true {what} but {len(guess)} predicted ones: "
                          f"give one prediction per example, in the same order.")


def _check_hashable(label, where: str) -> None:
    try:
        hash(label)
    except TypeError:
        raise StudioError(f"label {label!r} at {where} cannot be a class label (it is a "
                          f"{type(label).__name__}): use a string or number.") from None
