"""Why a text model produced what it did: views of the explanations a text sample's meta holds.

- Explained generation (sampling setting `explain`): meta["tokens"], one record per generated
  token with the model's probability of it and the likeliest alternatives. Shown as the text,
  each token on a background that encodes its probability, the alternatives in its tooltip.
- A classifier's answer: meta["probabilities"], a bar per class, the chosen one highlighted
  (several labels: the 0.5 threshold marked); with `explain`, meta["attributions"]: the input
  text's pieces on a diverging scale, towards the target class or away from it.
- A tagger's answer: meta["words"] and meta["entities"], the entity spans highlighted by type.
- Attention (a generator with `attention(text, layer, head)`): a heat-map of one head's
  weights, computed off the GUI thread.

Colours come from the window's theme (studio.gui.theme): light tints under the light theme's
dark text, dark tints under the dark theme's light text, so the text reads on every background.
Samples come from plugins and from the history folder, so their meta is checked before it is
drawn: a record of another shape is not an explanation, and the sample shows as plain text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QRect, QSize, Qt
from PySide6.QtGui import (QColor, QFont, QLinearGradient, QPainter, QPalette, QPen,
                           QTextCharFormat, QTextCursor)
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFrame, QHBoxLayout,
                               QLabel, QPlainTextEdit, QPushButton, QScrollArea, QSizePolicy,
                               QSpinBox, QTextEdit, QToolTip, QVBoxLayout, QWidget)

from studio.contract import Sample
from studio.errors import StudioError
from studio.gui import theme
from studio.gui.workers import Task, start

MULTI_LABEL_THRESHOLD = 0.5  # a multi-label classifier predicts the classes at or above it

# Probability of a generated token, low to high: red, amber, blue (ColorBrewer's RdYlBu, which
# reads for red-green colour blindness), as tints under each theme's text.
PROBABILITY_STOPS = {
    "light": ((0.0, "#f4a582"), (0.5, "#fee090"), (1.0, "#abd9e9")),
    "dark": ((0.0, "#8c2d1e"), (0.5, "#6e5a14"), (1.0, "#1f4e6e")),
}
# Attribution scores: towards the target class in blue, away from it in red, fading to the
# text's own background at zero.
ATTRIBUTION_COLOURS = {
    "light": {"for": "#4393c3", "against": "#d6604d", "zero": "#ffffff"},
    "dark": {"for": "#2166ac", "against": "#b2182b", "zero": "#1e1e1e"},
}
# Entity types, by their place among the sample's types (ColorBrewer's Paired, as tints).
ENTITY_COLOURS = {
    "light": ("#a6cee3", "#b2df8a", "#fdbf6f", "#cab2d6", "#fb9a99", "#ffff99"),
    "dark": ("#1f5f7f", "#3a6b1f", "#8a5a12", "#5a3f7a", "#7f2f2f", "#6b6b1f"),
}
# How a few invisible characters are written where a token or piece stands alone.
VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥"}
ATTENTION_MAX_TICKS = 40  # more pieces than this: every k-th is named on the heat-map's axes


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    """The colour a fraction t (0..1) of the way from a to b."""
    t = min(1.0, max(0.0, t))
    return QColor(round(a.red() + (b.red() - a.red()) * t),
                  round(a.green() + (b.green() - a.green()) * t),
                  round(a.blue() + (b.blue() - a.blue()) * t))


def probability_colour(p: float) -> QColor:
    """The background of a token the model gave probability p, in the current theme."""
    stops = PROBABILITY_STOPS[theme.current()]
    p = min(1.0, max(0.0, float(p)))
    for (p0, c0), (p1, c1) in zip(stops, stops[1:]):
        if p <= p1:
            return _mix(QColor(c0), QColor(c1), (p - p0) / (p1 - p0))
    return QColor(stops[-1][1])


def attribution_colour(score: float, scale: float) -> QColor:
    """The background of a piece with this attribution score, `scale` the largest |score| of
    the text (which gets the full colour)."""
    colours = ATTRIBUTION_COLOURS[theme.current()]
    strength = abs(score) / scale if scale > 0 else 0.0
    return _mix(QColor(colours["zero"]), QColor(colours["for" if score >= 0 else "against"]), strength)


def visible(piece: str) -> str:
    """A token as a tooltip or an axis can show it: blanks named by a sign."""
    return "".join(VISIBLE.get(ch, ch) for ch in piece) if piece.strip() == "" else piece


def percent(p: float) -> str:
    return f"{p * 100:.1f}%" if p >= 0.001 else f"{p * 100:.2g}%"


# --- what a sample's meta explains (plain data, checked) ---------------------------------------

@dataclass
class TokenRecord:
    token: str
    p: float
    alternatives: list[tuple[str, float]]


def token_records(meta: dict) -> list[TokenRecord] | None:
    """meta["tokens"] of an explained text sample, or None when there is none of that shape."""
    records = meta.get("tokens")
    if not isinstance(records, list) or not records:
        return None
    try:
        return [TokenRecord(str(r["token"]), float(r["p"]),
                            [(str(t), float(q)) for t, q in r.get("alternatives", [])])
                for r in records]
    except (TypeError, KeyError, ValueError):
        return None


def class_probabilities(meta: dict) -> dict[str, float] | None:
    probabilities = meta.get("probabilities")
    if not isinstance(probabilities, dict) or not probabilities:
        return None
    try:
        return {str(name): float(p) for name, p in probabilities.items()}
    except (TypeError, ValueError):
        return None


def attributions(meta: dict) -> dict | None:
    """meta["attributions"] of an explained classifier answer, its pieces and scores paired."""
    doc = meta.get("attributions")
    if not isinstance(doc, dict):
        return None
    pieces, scores = doc.get("pieces"), doc.get("scores")
    if not isinstance(pieces, list) or not isinstance(scores, list) or len(pieces) != len(scores):
        return None
    try:
        return {**doc, "pieces": [str(p) for p in pieces], "scores": [float(s) for s in scores]}
    except (TypeError, ValueError):
        return None


def tagged_entities(meta: dict) -> tuple[list[str], list[dict]] | None:
    """The words of a tagger's answer and its entities (word spans, end included)."""
    words, found = meta.get("words"), meta.get("entities")
    if not isinstance(words, list) or not isinstance(found, list):
        return None
    try:
        spans = [{"type": str(e["type"]), "start": int(e["start"]), "end": int(e["end"])}
                 for e in found]
    except (TypeError, KeyError, ValueError):
        return None
    if any(not 0 <= e["start"] <= e["end"] < len(words) for e in spans):
        return None
    return [str(w) for w in words], spans


def is_explained(sample: Sample) -> bool:
    """Whether a sample has anything these views show beyond its text."""
    meta = sample.meta if isinstance(sample.meta, dict) else {}
    return sample.kind == "text" and any(
        found is not None for found in (token_records(meta), class_probabilities(meta),
                                        attributions(meta), tagged_entities(meta)))


def describe_method(doc: dict) -> str:
    """"integrated gradients, 32 steps, zero token embedding baseline" from an attributions
    record."""
    parts = [str(doc.get("method", "attribution")).replace("_", " ")]
    if doc.get("steps"):
        parts.append(f"{doc['steps']} steps")
    if doc.get("baseline"):
        parts.append(f"{doc['baseline']} baseline")
    return ", ".join(parts)


# --- text with coloured spans -----------------------------------------------------------------

@dataclass
class Span:
    """A run of characters of a SpanText drawn on its own background, with its own tooltip."""

    start: int
    end: int
    colour: QColor
    tip: str


class SpanText(QTextEdit):
    """Read-only wrapped text whose spans have their own background and tooltip. It is as tall
    as its text (it sits in a scrolling list of samples, which does the scrolling)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setFont(QFont("monospace"))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.spans: list[Span] = []
        self.document().documentLayout().documentSizeChanged.connect(self._fit_height)

    def add(self, text: str, colour: QColor | None = None, tip: str = "", bold: bool = False,
            small: bool = False) -> None:
        """Append text, on `colour` when given (then it is a span with the tooltip `tip`)."""
        cursor = self.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        style = QTextCharFormat()
        style.setFontWeight(QFont.Weight.Bold if bold else QFont.Weight.Normal)
        if small:
            style.setFontPointSize(max(6.0, self.font().pointSizeF() * 0.75))
        if colour is not None:
            style.setBackground(colour)
        start = cursor.position()
        cursor.insertText(text, style)
        if colour is not None:
            self.spans.append(Span(start, cursor.position(), colour, tip))

    def clear_spans(self) -> None:
        self.clear()
        self.spans = []

    def span_at(self, point) -> Span | None:
        """The span under a point of the viewport, or None."""
        offset = QPointF(self.horizontalScrollBar().value(), self.verticalScrollBar().value())
        position = self.document().documentLayout().hitTest(QPointF(point) + offset,
                                                             Qt.HitTestAccuracy.ExactHit)
        if position < 0:
            return None
        return next((s for s in self.spans if s.start <= position < s.end), None)

    def span_rect(self, span: Span) -> QRect:
        """Where a span's first character is drawn, in viewport coordinates."""
        cursor = QTextCursor(self.document())
        cursor.setPosition(span.start)
        left = self.cursorRect(cursor)
        cursor.setPosition(span.start + 1)
        right = self.cursorRect(cursor)
        return QRect(left.left(), left.top(), max(1, right.left() - left.left()), left.height())

    def viewportEvent(self, event) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            span = self.span_at(event.pos())
            if span is not None and span.tip:
                QToolTip.showText(event.globalPos(), span.tip, self.viewport())
            else:
                QToolTip.hideText()
                event.ignore()
            return True
        return super().viewportEvent(event)

    def _fit_height(self, *_) -> None:
        margins = self.contentsMargins()
        height = math.ceil(self.document().size().height()) + margins.top() + margins.bottom()
        self.setFixedHeight(max(height, self.fontMetrics().height() + 8))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_height()


def token_tip(record: TokenRecord) -> str:
    lines = [f"“{visible(record.token)}”  p = {record.p:.3f} ({percent(record.p)})"]
    if record.alternatives:
        lines.append("Likeliest tokens here:")
        lines += [f"  {'▸' if token == record.token else ' '} “{visible(token)}”  {q:.3f}"
                  for token, q in record.alternatives]
    return "\n".join(lines)


class TokenText(SpanText):
    """A generated text, each token on the colour of its probability (PROBABILITY_STOPS); the
    prompt it continues in bold, uncoloured."""

    def show_tokens(self, prompt: str, records: list[TokenRecord]) -> None:
        self.clear_spans()
        if prompt:
            self.add(prompt, bold=True)
        for record in records:
            self.add(record.token, probability_colour(record.p), token_tip(record))


class AttributionText(SpanText):
    """The pieces a classifier read, on a diverging scale: blue where a piece pushed towards
    the target class, red where it pushed away, the stronger the larger the score."""

    def show_attributions(self, doc: dict) -> None:
        self.clear_spans()
        scale = max((abs(s) for s in doc["scores"]), default=0.0)
        target = doc.get("target", "the class")
        for piece, score in zip(doc["pieces"], doc["scores"]):
            side = "towards" if score >= 0 else "away from"
            self.add(piece, attribution_colour(score, scale),
                     f"“{visible(piece)}”  score {score:+.4f}: {side} “{target}”")


class EntityText(SpanText):
    """A tagger's words, each entity on its type's colour with the type after it."""

    def show_entities(self, words: list[str], found: list[dict]) -> dict[str, QColor]:
        """Shows them; returns the colour of each type."""
        self.clear_spans()
        palette = ENTITY_COLOURS[theme.current()]
        types = sorted({e["type"] for e in found})
        colours = {t: QColor(palette[i % len(palette)]) for i, t in enumerate(types)}
        starts = {e["start"]: e for e in found}
        i = 0
        while i < len(words):
            if i:
                self.add(" ")
            entity = starts.get(i)
            if entity is None:
                self.add(words[i])
                i += 1
                continue
            text = " ".join(words[entity["start"]:entity["end"] + 1])
            colour = colours[entity["type"]]
            self.add(text, colour, f"{entity['type']}: {text}")
            self.add(f" {entity['type']}", colour, f"{entity['type']}: {text}", bold=True, small=True)
            i = entity["end"] + 1
        return colours


# --- scales and bars ---------------------------------------------------------------------------

class ScaleLegend(QWidget):
    """A colour scale as a strip, with words under its ends and middle."""

    def __init__(self, colour_at, left: str, middle: str, right: str, parent=None):
        super().__init__(parent)
        self.colour_at = colour_at  # 0..1 -> QColor, read at each paint (the theme may change)
        self.words = (left, middle, right)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(180)
        self.setMaximumWidth(480)  # a scale, not a banner

    def sizeHint(self) -> QSize:
        return QSize(320, 12 + self.fontMetrics().height() + 4)

    def minimumSizeHint(self) -> QSize:
        return QSize(180, self.sizeHint().height())

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        strip = QRect(0, 0, self.width() - 1, 12)
        gradient = QLinearGradient(strip.left(), 0, strip.right(), 0)
        for i in range(11):
            gradient.setColorAt(i / 10, self.colour_at(i / 10))
        painter.fillRect(strip, gradient)
        painter.setPen(self.palette().color(QPalette.ColorRole.Mid))
        painter.drawRect(strip)
        painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        below = QRect(0, strip.bottom() + 2, self.width(), self.fontMetrics().height() + 2)
        left, middle, right = self.words
        painter.drawText(below, Qt.AlignmentFlag.AlignLeft, left)
        painter.drawText(below, Qt.AlignmentFlag.AlignHCenter, middle)
        painter.drawText(below, Qt.AlignmentFlag.AlignRight, right)
        painter.end()


def probability_legend() -> ScaleLegend:
    legend = ScaleLegend(probability_colour, "p = 0 (surprising)", "0.5", "1 (expected)")
    legend.setToolTip("Each token's background: the probability the model gave it")
    return legend


def attribution_legend(target: str) -> ScaleLegend:
    legend = ScaleLegend(lambda t: attribution_colour(2 * t - 1, 1.0), f"against “{target}”",
                         "0", f"for “{target}”")
    legend.setToolTip("Each piece's background: how much it moved the answer towards the "
                      "target class (blue) or away from it (red)")
    return legend


@dataclass
class Bar:
    name: str
    p: float
    chosen: bool


class ClassBars(QWidget):
    """A horizontal bar per class, longest first, its length the class's probability; the
    chosen class (or classes) in the highlight colour. Several labels: the threshold marked."""

    ROW_GAP = 6

    def __init__(self, probabilities: dict[str, float], chosen: list[str], multi_label: bool,
                 parent=None):
        super().__init__(parent)
        self.bars = [Bar(name, p, name in chosen) for name, p in
                     sorted(probabilities.items(), key=lambda item: -item[1])]
        self.multi_label = multi_label
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMouseTracking(True)

    def _row_height(self) -> int:
        return self.fontMetrics().height() + self.ROW_GAP

    def _top(self) -> int:
        """Room above the bars for the threshold's label."""
        return self.fontMetrics().height() + 2 if self.multi_label else 0

    def _label_width(self) -> int:
        widest = max((self.fontMetrics().horizontalAdvance(b.name) for b in self.bars), default=0)
        return min(widest + 12, max(60, self.width() // 3))

    def _track(self) -> QRect:
        """Where a bar of probability 1 would be drawn (its row's part of it)."""
        left = self._label_width()
        room_for_value = self.fontMetrics().horizontalAdvance("100.0%") + 10
        return QRect(left, self._top(), max(10, self.width() - left - room_for_value),
                     len(self.bars) * self._row_height())

    def bar_rects(self) -> list[QRect]:
        """Where each bar is drawn, in the order of self.bars."""
        track, row = self._track(), self._row_height()
        return [QRect(track.left(), track.top() + i * row + self.ROW_GAP // 2,
                      round(track.width() * min(1.0, max(0.0, bar.p))), row - self.ROW_GAP)
                for i, bar in enumerate(self.bars)]

    def threshold_x(self) -> int | None:
        if not self.multi_label:
            return None
        track = self._track()
        return track.left() + round(track.width() * MULTI_LABEL_THRESHOLD)

    def sizeHint(self) -> QSize:
        return QSize(360, self._top() + len(self.bars) * self._row_height() + 2)

    def minimumSizeHint(self) -> QSize:
        return QSize(200, self.sizeHint().height())

    def bar_at(self, point) -> Bar | None:
        row = (point.y() - self._top()) // self._row_height()
        return self.bars[row] if 0 <= point.y() - self._top() and row < len(self.bars) else None

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            bar = self.bar_at(event.pos())
            if bar is not None:
                chosen = " (chosen)" if bar.chosen else ""
                QToolTip.showText(event.globalPos(), f"{bar.name}: p = {bar.p:.4f}{chosen}", self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        palette = self.palette()
        text_colour = palette.color(QPalette.ColorRole.WindowText)
        chosen_colour = palette.color(QPalette.ColorRole.Highlight)
        other_colour = palette.color(QPalette.ColorRole.Mid)
        track = self._track()
        row = self._row_height()
        for i, (bar, rect) in enumerate(zip(self.bars, self.bar_rects())):
            line = QRect(0, track.top() + i * row, self._label_width() - 8, row)
            font = painter.font()
            font.setBold(bar.chosen)
            painter.setFont(font)
            painter.setPen(text_colour)
            name = self.fontMetrics().elidedText(bar.name, Qt.TextElideMode.ElideRight, line.width())
            painter.drawText(line, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, name)
            painter.fillRect(rect, chosen_colour if bar.chosen else other_colour)
            value = QRect(rect.right() + 6, line.top(), self.width() - rect.right() - 6, row)
            painter.drawText(value, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             percent(bar.p))
        x = self.threshold_x()
        if x is not None:
            painter.setPen(QPen(text_colour, 1, Qt.PenStyle.DashLine))
            painter.drawLine(x, self._top() - 2, x, track.bottom())
            painter.setFont(self.font())
            painter.drawText(QRect(x - 60, 0, 120, self._top()), Qt.AlignmentFlag.AlignHCenter,
                             f"threshold {MULTI_LABEL_THRESHOLD}")
        painter.end()


# --- one sample, explained ---------------------------------------------------------------------

def _caption(text: str, muted: bool = False) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if muted:  # the theme's placeholder grey: quieter than the text, readable on both themes
        palette = label.palette()
        palette.setColor(QPalette.ColorRole.WindowText,
                         palette.color(QPalette.ColorRole.PlaceholderText))
        label.setPalette(palette)
    return label


class ExplainedSample(QWidget):
    """One text sample with what its meta explains: coloured tokens, class bars and the
    attribution heat-map, or a tagger's entities. `parts` names what is shown, for tests and
    for the panel's status."""

    def __init__(self, sample: Sample, header: str = "", parent=None):
        super().__init__(parent)
        self.sample = sample
        self.parts: dict[str, QWidget] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        if header:
            layout.addWidget(_caption(header, muted=True))
        meta = sample.meta
        records = token_records(meta)
        probabilities = class_probabilities(meta)
        tagged = tagged_entities(meta)
        attributed = attributions(meta)
        if records is not None:
            self._add_tokens(layout, sample, records)
        if probabilities is not None:
            self._add_bars(layout, sample, probabilities)
        if attributed is not None:
            self._add_attributions(layout, attributed)
        elif probabilities is not None and meta.get("prompt"):
            layout.addWidget(_caption(f"Text: {meta['prompt']}"))
        if tagged is not None:
            self._add_entities(layout, *tagged)
        if meta.get("note"):
            layout.addWidget(_caption(f"Note: {meta['note']}.", muted=True))

    def _add_tokens(self, layout, sample: Sample, records: list[TokenRecord]) -> None:
        # The prompt the tokens continue, in bold before them (a run that answers
        # prompt/response pairs gives the response alone).
        prompt = sample.meta.get("prompt") or ""
        if not str(sample.data).startswith(prompt):
            prompt = ""
        view = TokenText()
        view.setToolTip("")
        view.show_tokens(prompt, records)
        self.parts["tokens"] = view
        low = min(records, key=lambda r: r.p)
        mean = sum(r.p for r in records) / len(records)
        layout.addWidget(view)
        layout.addWidget(_caption(f"{len(records)} tokens · mean probability {mean:.2f} · least "
                                  f"expected “{visible(low.token)}” ({percent(low.p)}). Hover a "
                                  f"token for its alternatives."))

    def _add_bars(self, layout, sample: Sample, probabilities: dict[str, float]) -> None:
        labels = sample.meta.get("labels")
        multi_label = isinstance(labels, list)
        chosen = [str(l) for l in labels] if multi_label else [max(probabilities, key=probabilities.get)]
        answer = ", ".join(chosen) if chosen else "no class at or above the threshold"
        layout.addWidget(_caption(f"<b>Answer: {_escape(answer)}</b>"
                                  + (" (several labels: each class at or above the threshold "
                                     f"{MULTI_LABEL_THRESHOLD})" if multi_label else "")))
        bars = ClassBars(probabilities, chosen, multi_label)
        self.parts["bars"] = bars
        layout.addWidget(bars)

    def _add_attributions(self, layout, doc: dict) -> None:
        target = str(doc.get("target", ""))
        gap = doc.get("completeness_gap")
        gap_text = f" · completeness gap {float(gap):.3g}" if isinstance(gap, (int, float)) else ""
        caption = _caption(f"Why “{target}”: {describe_method(doc)}{gap_text}", muted=True)
        caption.setToolTip("Each piece's share of the answer's score for the target class "
                           "against the baseline; the completeness gap is how far the shares' "
                           "sum is from that difference (small: the shares are trustworthy)")
        view = AttributionText()
        view.show_attributions(doc)
        self.parts["attributions"] = view
        self.parts["attribution_caption"] = caption
        layout.addWidget(caption)
        layout.addWidget(view)
        layout.addWidget(attribution_legend(target))

    def _add_entities(self, layout, words: list[str], found: list[dict]) -> None:
        view = EntityText()
        colours = view.show_entities(words, found)
        self.parts["entities"] = view
        layout.addWidget(view)
        if colours:
            legend = " ".join(f"<span style='background:{c.name()}'>&nbsp;{_escape(t)}&nbsp;</span>"
                              for t, c in colours.items())
            layout.addWidget(_caption(f"Entities: {legend}"))
        else:
            layout.addWidget(_caption("No entities found.", muted=True))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class ExplanationView(QScrollArea):
    """The explained samples of one output, one under another (a legend on top for tokens)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.sections: list[ExplainedSample] = []
        self._shown: tuple[list[Sample], list[str] | None] = ([], None)

    def show_samples(self, samples: list[Sample], headers: list[str] | None = None) -> bool:
        """Show the samples; False (and nothing shown) when none has an explanation."""
        self._shown = (list(samples), headers)
        body = QWidget()
        layout = QVBoxLayout(body)
        self.sections = []
        explained = [s for s in samples if is_explained(s)]
        if explained and any(token_records(s.meta) for s in explained):
            layout.addWidget(probability_legend())
        for i, sample in enumerate(samples):
            section = ExplainedSample(sample, headers[i] if headers else "")
            self.sections.append(section)
            layout.addWidget(section)
        layout.addStretch(1)
        self.setWidget(body)
        return bool(explained)

    def restyle(self) -> None:
        """Draw again in the current theme's colours."""
        samples, headers = self._shown
        if samples:
            self.show_samples(samples, headers)


# --- attention ---------------------------------------------------------------------------------

def checked_attention(doc) -> tuple[list[str], np.ndarray]:
    """The pieces and the T x T weights of an `attention` answer, or a StudioError saying what
    is wrong with it (it comes from a generator's own code)."""
    if not isinstance(doc, dict):
        raise StudioError(f"the generator's attention answer is a {type(doc).__name__}, not a "
                          f"dict with pieces and weights.")
    pieces = doc.get("pieces")
    if not isinstance(pieces, list) or not pieces:
        raise StudioError("the generator's attention answer has no pieces.")
    try:
        weights = np.asarray(doc.get("weights"), dtype=np.float64)
    except (TypeError, ValueError):
        raise StudioError("the generator's attention weights are not a table of numbers.") from None
    if weights.shape != (len(pieces), len(pieces)) or not np.isfinite(weights).all():
        raise StudioError(f"the generator's attention weights are {'x'.join(map(str, weights.shape))}"
                          f"; {len(pieces)} pieces need {len(pieces)} x {len(pieces)} finite "
                          f"numbers.")
    return [str(p) for p in pieces], weights


class AttentionView(QWidget):
    """One attention head's weights for a text: layer and head spin boxes, a heat-map (row:
    the piece that attends, column: the piece attended to) and a readout of the cell under the
    mouse. `source(text, layer, head)` answers as a generator's `attention` does; it runs off
    the GUI thread, and whatever it raises is shown as a message."""

    def __init__(self, source, text: str = "", parent=None):
        super().__init__(parent)
        self.source = source
        self.task: Task | None = None
        self.pending = False  # asked again while a task ran: ask once more when it ends
        self.pieces: list[str] = []
        self.weights: np.ndarray | None = None
        self.text_edit = QPlainTextEdit(text)
        self.text_edit.setMaximumHeight(70)
        self.text_edit.setToolTip("The text whose attention is shown (the model reads at most "
                                  "its context)")
        self.layer_spin = QSpinBox()
        self.layer_spin.setToolTip("Transformer block, from 0 (nearest the input)")
        self.head_spin = QSpinBox()
        self.head_spin.setToolTip("Attention head of that block, from 0")
        for spin in (self.layer_spin, self.head_spin):
            spin.setRange(0, 0)
            spin.valueChanged.connect(self.refresh)
        self.show_button = QPushButton("Show")
        self.show_button.setToolTip("Compute the attention for this text")
        self.show_button.clicked.connect(self.refresh)
        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        self.readout_label = QLabel("Hover a cell: how much a piece (row) attends to an earlier "
                                    "one (column).")
        self.readout_label.setWordWrap(True)

        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.invertY(True)  # the first piece's row on top, as in a table
        self.plot.setAspectLocked(True)
        self.heat = pg.ImageItem()
        self.heat.setColorMap(pg.colormap.get("viridis"))
        self.plot.addItem(self.heat)
        self.plot.setLabel("bottom", "attended to (key)")
        self.plot.setLabel("left", "attending (query)")
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot.setMinimumSize(320, 280)
        self.apply_style()

        choose = QHBoxLayout()
        choose.addWidget(QLabel("Layer"))
        choose.addWidget(self.layer_spin)
        choose.addWidget(QLabel("Head"))
        choose.addWidget(self.head_spin)
        choose.addStretch(1)
        choose.addWidget(self.show_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text_edit)
        layout.addLayout(choose)
        layout.addWidget(self.message_label)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.readout_label)

    def apply_style(self) -> None:
        style = theme.chart_style()
        self.plot.setBackground(style["background"])
        for side in ("left", "bottom"):
            axis = self.plot.getAxis(side)
            axis.setPen(pg.mkPen(style["foreground"]))
            axis.setTextPen(pg.mkPen(style["foreground"]))

    @property
    def busy(self) -> bool:
        return self.task is not None

    def refresh(self, *_) -> None:
        """Compute the weights for the text, layer and head now chosen (once the running
        computation ends, when one runs)."""
        if self.busy:
            self.pending = True
            return
        text = self.text_edit.toPlainText()
        if not text.strip():
            self._say("Type a text to see its attention.", problem=True)
            return
        layer, head = self.layer_spin.value(), self.head_spin.value()
        task = Task(_attend, self.source, text, layer, head)
        task.signals.done.connect(self._on_done)
        task.signals.failed.connect(self._on_failed)
        task.signals.finished.connect(self._on_finished)
        self.task = task
        self._say(f"Computing layer {layer}, head {head}…")
        start(task)

    def _on_done(self, answer) -> None:
        doc, pieces, weights = answer
        self.pieces, self.weights = pieces, weights
        # The spin boxes learn the model's shape from its first answer.
        for spin, key in ((self.layer_spin, "layers"), (self.head_spin, "heads")):
            if isinstance(doc.get(key), int) and doc[key] > 0:
                spin.blockSignals(True)
                spin.setMaximum(doc[key] - 1)
                spin.blockSignals(False)
        self.heat.setImage(weights.T, levels=(0.0, max(float(weights.max()), 1e-9)))
        self.heat.setRect(0, 0, len(pieces), len(pieces))
        self._set_ticks(pieces)
        self.plot.autoRange(padding=0)
        layer, head = doc.get("layer", self.layer_spin.value()), doc.get("head", self.head_spin.value())
        self._say(f"Layer {layer}, head {head}: {len(pieces)} pieces. Brighter: more attention "
                  f"(each row adds up to 1; a piece sees only those before it).")

    def _set_ticks(self, pieces: list[str]) -> None:
        every = max(1, math.ceil(len(pieces) / ATTENTION_MAX_TICKS))
        ticks = [(i + 0.5, visible(p)) for i, p in enumerate(pieces) if i % every == 0]
        for side in ("left", "bottom"):
            self.plot.getAxis(side).setTicks([ticks, []])

    def _on_failed(self, message: str) -> None:
        self._say(f"Attention could not be shown: {message}", problem=True)

    def _on_finished(self) -> None:
        self.task = None
        if self.pending:
            self.pending = False
            self.refresh()

    def _say(self, text: str, problem: bool = False) -> None:
        self.message_label.setText(text)
        self.message_label.setStyleSheet("color: #d9534f;" if problem else "")

    def cell_text(self, query: int, key: int) -> str:
        return (f"“{visible(self.pieces[query])}” ({query}) attends to “{visible(self.pieces[key])}”"
                f" ({key}): {self.weights[query, key]:.3f}")

    def _on_mouse_moved(self, position) -> None:
        if self.weights is None:
            return
        point = self.plot.getPlotItem().vb.mapSceneToView(position)
        key, query = int(math.floor(point.x())), int(math.floor(point.y()))
        if 0 <= query < len(self.pieces) and 0 <= key < len(self.pieces):
            self.readout_label.setText(self.cell_text(query, key))


def _attend(ctx, source, text: str, layer: int, head: int):
    """The task: ask for the weights and check the answer. A StudioError's message is shown as
    it is; anything else the generator's code raises (BaseException included: a plugin's
    sys.exit) becomes a message naming it, never a traceback."""
    try:
        doc = source(text, layer, head)
    except StudioError:
        raise
    except BaseException as exc:  # noqa: BLE001 - foreign code: reported, the window stays up
        raise StudioError(f"the generator's attention failed ({type(exc).__name__}: {exc}).") from None
    pieces, weights = checked_attention(doc)
    return doc, pieces, weights


class AttentionDialog(QDialog):
    """The attention view in a window of its own, beside the panel (not modal)."""

    def __init__(self, source, text: str, title: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.attention_view = AttentionView(source, text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.attention_view, 1)
        layout.addWidget(buttons)
        self.resize(640, 620)
