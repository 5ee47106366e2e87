"""Labelled text for task adaptation: texts with classes (`--task classify`) and sentences with
a tag per token (`--task tag`), read, checked and described for the data report.

Files are decoded by data.py's `read_text_file` (UTF-8, a byte order mark's UTF-16/32, Latin-1
reported), and every complaint names the file and line, as `read_pairs` does. Unlike plain text,
a bad line here is refused rather than skipped: a dropped example would silently change the
classes a model learns, so the user fixes the file instead.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from generators.text.data import _data_files, read_text_file
from studio.contract import DataReport
from studio.errors import DataError, StudioError

LABELLED_SUFFIXES = {".jsonl", ".csv", ".tsv"}
TAGGED_SUFFIXES = {".jsonl", ".conll", ".txt", ".bio", ".iob", ".iobes", ".tsv"}
LABEL_SEPARATOR = "|"  # between the labels of a multi-label CSV/TSV cell
IMBALANCE_RATIO = 10  # largest / smallest class count above which the notes warn
SHOWN = 5  # places listed in a message; the rest are counted


@dataclass
class LabelledSet:
    """Texts with one class each, or a set of classes each (`multi_label`: labels are sorted
    tuples). `where[i]` is "file:line" of example i; `notes` are warnings, not errors."""

    texts: list[str]
    labels: list  # list[str], or list[tuple[str, ...]] when multi_label
    multi_label: bool
    classes: list[str]
    counts: dict[str, int]
    where: list[str]
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


@dataclass
class TaggedSet:
    """Sentences as token lists with one tag per token. `where[i]` is "file:line" where
    sentence i starts (in CoNLL, token k of it is on the k-th line after)."""

    sentences: list[list[str]]
    tags: list[list[str]]
    scheme: str  # "BIO" or "IOBES"
    entity_types: list[str]
    tag_set: list[str]
    entity_counts: dict[str, int]
    where: list[str]
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


# --- reading files -----------------------------------------------------------------------------

def _files_to_read(source: str, suffixes: set[str],
                   kind: str) -> tuple[Path, list[Path], list[tuple[str, str]]]:
    """(path, files to read, skipped (file, reason)) of a file or a folder of files."""
    path = Path(source).expanduser()
    if not path.exists():
        raise StudioError(f"data path {path} does not exist. Give a file of {kind} or a folder of them.")
    if path.is_file():
        return path, [path], []
    files, skipped = [], []
    for file in _data_files(path):
        if file.suffix.lower() in suffixes:
            files.append(file)
        else:
            skipped.append((str(file), f"not {kind} ({file.suffix or 'no suffix'}); "
                                       f"those files end in {', '.join(sorted(suffixes))}"))
    return path, files, skipped


def _decoded(file: Path, notes: list[str], skipped: list[tuple[str, str]]) -> str | None:
    try:
        text, note = read_text_file(file)
    except OSError as exc:
        skipped.append((str(file), f"cannot read: {exc.strerror or exc}"))
        return None
    if text is None:
        skipped.append((str(file), note))
        return None
    if note:
        notes.append(f"{file}: {note}")
    return text


def _numbered_lines(text: str):
    """(line number, line) as an editor counts them: only \\n, \\r\\n and \\r end a line
    (str.splitlines would also split a JSON string holding U+2028 and shift every number)."""
    return enumerate((line.rstrip("\r\n") for line in io.StringIO(text, newline=None)), start=1)


def _refuse_bad_lines(problems: list[tuple[str, str]], source: Path, what: str, fix: str,
                      report: DataReport) -> None:
    """A DataError naming the first bad lines; its report lists every one of them among the
    skipped items ("file:line", why), so the window's Data panel can show them all."""
    if not problems:
        return
    shown = "; ".join(f"{where}: {reason}" for where, reason in problems[:SHOWN])
    more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
    report.skipped = [*report.skipped, *problems]
    raise DataError(f"{len(problems)} line(s) of {source} cannot be read as {what}: {shown}{more}. "
                    f"{fix}", report)


def _refuse_empty(path: Path, what: str, skipped: list[tuple[str, str]], report: DataReport) -> None:
    why = "; ".join(f"{Path(f).name}: {r}" for f, r in skipped[:3]) or "no lines"
    raise DataError(f"no {what} in {path} ({why}).", report)


# --- labelled texts ----------------------------------------------------------------------------

@dataclass
class _Row:
    text: str
    labels: tuple[str, ...]
    # "one": a single label; "list": a set of labels; "cell": a CSV cell with one label, which
    # is a set of one when the data is multi-label
    shape: str
    where: str


def _label_value(value) -> tuple[str, tuple[str, ...]]:
    """A JSON label -> (shape, labels), or ValueError with the reason. Integers are accepted as
    class names ("0", "1"), as many published data sets number their classes."""
    def one(item) -> str:
        if isinstance(item, int) and not isinstance(item, bool):
            return str(item)
        if not isinstance(item, str):
            raise ValueError(f"a label must be a string or a list of strings, got {type(item).__name__}")
        if not item.strip():
            raise ValueError("empty label")
        return item.strip()

    if value is None:
        raise ValueError("no label")
    if isinstance(value, list):
        if not value:
            raise ValueError("empty label list")
        return "list", tuple(one(item) for item in value)
    return "one", (one(value),)


def _json_objects(text: str, file: Path, problems: list[tuple[str, str]]):
    """(file:line, object) of each JSONL line that holds a JSON object; a line that does not
    is recorded in `problems` instead, and blank lines are skipped."""
    for number, line in _numbered_lines(text):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append((where, f"not valid JSON ({exc.msg})"))
            continue
        if not isinstance(obj, dict):
            problems.append((where, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        yield where, obj


def _labelled_jsonl(text: str, file: Path, rows: list[_Row], problems: list[tuple[str, str]]) -> None:
    for where, obj in _json_objects(text, file, problems):
        body = obj.get("text")
        if not isinstance(body, str) or not body.strip():
            problems.append((where, "no text" if body is None else
                             "empty text" if isinstance(body, str) else "'text' is not a string"))
            continue
        try:
            shape, labels = _label_value(obj["label"] if "label" in obj else obj.get("labels"))
        except ValueError as exc:
            problems.append((where, str(exc)))
            continue
        rows.append(_Row(body, labels, shape, where))


def _labelled_table(text: str, file: Path, rows: list[_Row], problems: list[tuple[str, str]]) -> None:
    """CSV, or TSV read as plain tab-separated lines without quoting (GLUE's form): a TSV
    review that starts with a quote mark must not swallow the lines after it."""
    tsv = file.suffix.lower() == ".tsv"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if tsv else ",",
                        quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
    header, columns, label_key, line_before = None, {}, "label", 0
    try:
        for row in reader:
            start, line_before = line_before + 1, reader.line_num  # a quoted field may span lines
            if not any(cell.strip() for cell in row):
                continue
            where = f"{file}:{start}"
            if header is None:
                header = [cell.strip() for cell in row]
                columns = {name.lower(): i for i, name in reversed(list(enumerate(header)))}
                label_key = "label" if "label" in columns else "labels"
                if "text" not in columns or label_key not in columns:
                    found = ", ".join(repr(name) for name in header)
                    raise DataError(f"{where}: the header has the columns {found}, but a {file.suffix} "
                                    f"file needs a 'text' and a 'label' column. Name them so in its "
                                    f"first line.")
                continue
            body = row[columns["text"]] if columns["text"] < len(row) else ""
            cell = row[columns[label_key]].strip() if columns[label_key] < len(row) else ""
            if not body.strip():
                problems.append((where, "empty text"))
                continue
            labels = tuple(part.strip() for part in cell.split(LABEL_SEPARATOR) if part.strip())
            if not labels:
                problems.append((where, "empty label"))
                continue
            rows.append(_Row(body, labels, "list" if LABEL_SEPARATOR in cell else "cell", where))
    except csv.Error as exc:
        raise DataError(f"{file}:{reader.line_num}: not readable as {file.suffix} ({exc}). "
                        f"Save it again as plain {'tab' if tsv else 'comma'}-separated text.") from None
    if header is None:
        problems.append((f"{file}:1", "no header line (it needs 'text' and 'label' columns)"))


def _read_files(files, read_jsonl, read_other, out: list, problems: list, notes: list,
                skipped: list) -> list[str]:
    """Decode each file and hand it to its reader (JSONL or the other format), which appends
    to `out` and `problems`; returns the files that gave anything (examples or problems)."""
    used = []
    for file in files:
        text = _decoded(file, notes, skipped)
        if text is None:
            continue
        before = len(out) + len(problems)
        read_file = read_jsonl if file.suffix.lower() == ".jsonl" else read_other
        read_file(text, file, out, problems)
        if len(out) + len(problems) > before:
            used.append(str(file))
    return used


def read_labelled(source: str) -> LabelledSet:
    """Read labelled texts from a file or a folder of .jsonl, .csv and .tsv files.

    JSONL: one object a line, `{"text": "...", "label": "pos"}`, or for multi-label data
    `{"text": "...", "label": ["a", "b"]}` ("labels" is accepted as the key too; integer labels
    are read as class names).
    CSV/TSV: a header line naming a `text` and a `label` (or `labels`) column, other columns
    ignored. A multi-label cell separates its labels with `|` ("sport|politics"); once any
    example has several labels, a cell with one label is a set of one. TSV is split on tabs
    without quoting, so its texts may hold quote marks but not tabs or line breaks.

    A line without a usable text or label, or that is not a JSON object, is a DataError that
    lists the first places and the count; so are fewer than two classes and a mix of one-label
    strings with label lists. Class imbalance and one text given different labels are notes."""
    path, files, skipped = _files_to_read(source, LABELLED_SUFFIXES, "labelled texts")
    if path.is_file() and path.suffix.lower() not in LABELLED_SUFFIXES:
        raise DataError(f"{path} is not labelled data ({path.suffix or 'no suffix'}): give a .jsonl, "
                        f".csv or .tsv file with text and label fields.")
    notes: list[str] = []
    rows: list[_Row] = []
    problems: list[tuple[str, str]] = []
    used = _read_files(files, _labelled_jsonl, _labelled_table, rows, problems, notes, skipped)
    report = DataReport(source=str(path), used=used, skipped=skipped)
    _refuse_bad_lines(problems, path, "labelled texts",
                      'Each needs a non-empty text and label ({"text": "...", "label": "..."}); '
                      "fix or remove these lines.", report)
    if not rows:
        _refuse_empty(path, "labelled texts", skipped, report)

    multi_label = _is_multi_label(rows)
    labels = [tuple(sorted(set(row.labels))) if multi_label else row.labels[0] for row in rows]
    counts = Counter(name for label in labels for name in (label if multi_label else (label,)))
    if len(counts) < 2:
        only = next(iter(counts))
        raise DataError(f"every example in {path} has the class {only!r} ({len(rows)} examples): a "
                        f"classifier needs at least two classes. Add examples of another class.", report)
    notes += [f"skipped {file}: {reason}" for file, reason in skipped]
    for note in (_imbalance_note(counts), _conflict_note(rows, labels)):
        if note:
            notes.append(note)
    return LabelledSet(texts=[row.text for row in rows], labels=labels, multi_label=multi_label,
                       classes=sorted(counts), counts=dict(sorted(counts.items())),
                       where=[row.where for row in rows], notes=notes, files=used)


def _is_multi_label(rows: list[_Row]) -> bool:
    """A one-label string beside label lists is refused: either the lists were meant to be
    single classes or the strings were meant as sets, and guessing would train the wrong head."""
    first_one = next((row for row in rows if row.shape == "one"), None)
    first_list = next((row for row in rows if row.shape == "list"), None)
    if first_one and first_list:
        raise DataError(f"mixed single-label and multi-label examples: {first_one.where} has one "
                        f"label ({first_one.labels[0]!r}), {first_list.where} a list "
                        f"({list(first_list.labels)}). Write every label as a list for multi-label "
                        f"data, or every label as one string.")
    return first_list is not None


def _imbalance_note(counts: Counter) -> str | None:
    (largest, most), (smallest, fewest) = counts.most_common()[0], counts.most_common()[-1]
    if most <= IMBALANCE_RATIO * fewest:
        return None
    return (f"class imbalance: {largest!r} has {most} examples, {smallest!r} only {fewest} "
            f"({most / fewest:.0f}x); the classifier may learn to ignore {smallest!r}. Add examples "
            f"of the small classes, or expect weak results on them.")


def _shown_label(label) -> str:
    return LABEL_SEPARATOR.join(label) if isinstance(label, tuple) else label


def _conflict_note(rows: list[_Row], labels: list) -> str | None:
    """The same text under different labels: the model cannot learn both, and it is often a
    labelling mistake worth a look."""
    by_text = defaultdict(dict)  # text -> {label: first place}
    for row, label in zip(rows, labels):
        by_text[row.text.strip()].setdefault(label, row.where)
    conflicts = {text: places for text, places in by_text.items() if len(places) > 1}
    if not conflicts:
        return None
    text, places = next(iter(conflicts.items()))
    multi_label = isinstance(labels[0], tuple)
    shown = " and ".join(f"{_shown_label(label)!r} at {where}"
                         for label, where in list(places.items())[:3])
    excerpt = text if len(text) <= 60 else text[:57] + "..."
    return (f"{len(conflicts)} text(s) appear with different labels, e.g. {excerpt!r} as {shown}. "
            f"Keep one label per text" + (" (or one set of labels)." if multi_label else
                                          ", or make the data multi-label."))


def unseen_labels(train: LabelledSet, held_out: LabelledSet) -> dict[str, list[str]]:
    """Labels of the held-out data that training never saw, each with up to 5 file:line places
    where it occurs. The caller reports them: a model cannot predict a class it has no output
    for, so those examples can only count as wrong."""
    known = set(train.classes)
    places: dict[str, list[str]] = {}
    for label, where in zip(held_out.labels, held_out.where):
        for name in (label if held_out.multi_label else (label,)):
            if name not in known:
                found = places.setdefault(name, [])
                if len(found) < SHOWN:
                    found.append(where)
    return dict(sorted(places.items()))


# --- tagged sentences --------------------------------------------------------------------------

_TAG = re.compile(r"([BIES])-(\S+)")
TAG_FORMS = "O, or B-TYPE and I-TYPE (BIO), adding E-TYPE and S-TYPE for IOBES (e.g. B-PER, I-PER)"


def _conll_columns(line: str) -> list[str]:
    """Columns split on tabs when there are any (so an empty token shows as one), else on runs
    of spaces; trailing empty columns (a stray tab at the end) are dropped."""
    columns = [column.strip() for column in (line.split("\t") if "\t" in line else line.split())]
    while columns and not columns[-1]:
        columns.pop()
    return columns


def _tagged_conll(text: str, file: Path, out: list, problems: list[tuple[str, str]]) -> None:
    tokens, tags, start = [], [], 0

    def end_sentence():
        nonlocal tokens, tags
        if tokens:
            out.append((tokens, tags, f"{file}:{start}"))
        tokens, tags = [], []

    for number, line in _numbered_lines(text):
        columns = _conll_columns(line)
        if not columns:
            end_sentence()
            continue
        if columns[0].startswith("-DOCSTART-"):
            end_sentence()
            continue
        where = f"{file}:{number}"
        if not columns[0]:
            problems.append((where, "empty token"))
            continue
        if len(columns) < 2:
            problems.append((where, f"one column ({columns[0]!r}): a line needs the token and, "
                                    f"in its last column, the tag"))
            continue
        if not tokens:
            start = number
        tokens.append(columns[0])
        tags.append(columns[-1])
    end_sentence()


def _tagged_jsonl(text: str, file: Path, out: list, problems: list[tuple[str, str]]) -> None:
    for where, obj in _json_objects(text, file, problems):
        tokens, tags = obj.get("tokens"), obj.get("tags")
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t.strip() for t in tokens):
            problems.append((where, "'tokens' must be a list of non-empty strings"))
        elif not tokens:
            problems.append((where, "no tokens"))
        elif not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            problems.append((where, "'tags' must be a list of strings"))
        elif len(tokens) != len(tags):
            problems.append((where, f"{len(tokens)} tokens but {len(tags)} tags"))
        else:
            out.append((tokens, [tag.strip() for tag in tags], where))


def tag_scheme(tags: list[list[str]], where: list[str]) -> str:
    """"BIO" when every tag is O, B-TYPE or I-TYPE (IOB2); "IOBES" when E-TYPE or S-TYPE appear
    too. Any other tag (B_PER, X-PER, a bare PER) is a DataError naming it and its place."""
    bad, iobes = [], False
    for sentence, place in zip(tags, where):
        for position, tag in enumerate(sentence, start=1):
            if tag == "O":
                continue
            match = _TAG.fullmatch(tag)
            if not match:
                bad.append(f"{tag!r} at {place} (token {position})")
            elif match.group(1) in "ES":
                iobes = True
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise DataError(f"tag {bad[0]}{more} is not a BIO or IOBES tag. Write {TAG_FORMS}.")
    return "IOBES" if iobes else "BIO"


def _entity_counts(tags: list[list[str]]) -> tuple[Counter, int]:
    """(entities per type, how many began with I- or E-). An I- that does not continue an
    entity of its type starts one, as conlleval reads IOB1 data."""
    counts, loose_starts = Counter(), 0
    for sentence in tags:
        previous = "O"
        for tag in sentence:
            if tag != "O":
                prefix, kind = tag.split("-", 1)
                continues = previous != "O" and previous[0] in "BI" and previous[2:] == kind
                if prefix in "BS":
                    counts[kind] += 1
                elif not continues:
                    counts[kind] += 1
                    loose_starts += 1
            previous = tag
    return counts, loose_starts


def read_tagged(source: str) -> TaggedSet:
    """Read token-tagged sentences from a file or a folder of them.

    CoNLL (any file but .jsonl): one token a line, its tag in the last whitespace-separated
    column (the columns between, such as part of speech, are ignored), a blank line between
    sentences, `-DOCSTART-` lines skipped. JSONL: `{"tokens": [...], "tags": [...]}` a line.
    Tags are BIO or IOBES (see `tag_scheme`). Bad lines are a DataError naming file and line."""
    path, files, skipped = _files_to_read(source, TAGGED_SUFFIXES, "tagged sentences")
    notes: list[str] = []
    found: list[tuple[list[str], list[str], str]] = []
    problems: list[tuple[str, str]] = []
    used = _read_files(files, _tagged_jsonl, _tagged_conll, found, problems, notes, skipped)
    report = DataReport(source=str(path), used=used, skipped=skipped)
    _refuse_bad_lines(problems, path, "tagged tokens",
                      'CoNLL lines are "token tag" (tag last); JSONL lines are {"tokens": [...], '
                      '"tags": [...]} of equal length.', report)
    if not found:
        _refuse_empty(path, "tagged sentences", skipped, report)
    sentences, tags, where = (list(column) for column in zip(*found))
    scheme = tag_scheme(tags, where)
    counts, loose_starts = _entity_counts(tags)
    if not counts:
        raise DataError(f"every tag in {path} is O ({len(sentences)} sentences): a tagger needs at "
                        f"least one entity type. Tag the entities as {TAG_FORMS}.", report)
    notes += [f"skipped {file}: {reason}" for file, reason in skipped]
    if loose_starts:
        notes.append(f"{loose_starts} entities begin with I- or E- instead of B- (IOB1 style); each "
                     f"is read as the start of an entity.")
    return TaggedSet(sentences=sentences, tags=tags, scheme=scheme, entity_types=sorted(counts),
                     tag_set=sorted({tag for sentence in tags for tag in sentence}),
                     entity_counts=dict(sorted(counts.items())), where=where, notes=notes, files=used)


# --- the data report ---------------------------------------------------------------------------

def describe(data: LabelledSet | TaggedSet) -> dict:
    """A JSON-serialisable summary for `studio data validate` and the window's Data panel."""
    if isinstance(data, LabelledSet):
        return {"kind": "labelled", "files": list(data.files), "examples": len(data.texts),
                "multi_label": data.multi_label, "classes": dict(data.counts),
                "notes": list(data.notes)}
    if isinstance(data, TaggedSet):
        return {"kind": "tagged", "files": list(data.files), "examples": len(data.sentences),
                "sentences": len(data.sentences),
                "tokens": sum(len(sentence) for sentence in data.sentences),
                "scheme": data.scheme, "entity_types": dict(data.entity_counts),
                "tags": list(data.tag_set), "notes": list(data.notes)}
    raise TypeError(f"describe() takes a LabelledSet or TaggedSet, not {type(data).__name__}")
