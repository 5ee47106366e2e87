"""Views of plain samples, picked by kind: text, an image, a video with a player. Plugins
return plain data; these widgets are all the window needs to show any generator's output.

Images and videos scale to the space they are given, keeping their aspect ratio: small images
(a 32 px GAN sample) are enlarged with whole pixels (nearest neighbour), large ones shrink
smoothly. A grid picks its number of columns to fit the widget's shape.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (QFont, QGuiApplication, QImage, QPainter, QPixmap, QTextCharFormat,
                           QTextOption)
from PySide6.QtWidgets import (QCheckBox, QGridLayout, QHBoxLayout, QLabel, QPlainTextEdit,
                               QPushButton, QScrollArea, QSizePolicy, QSlider, QSpinBox,
                               QVBoxLayout, QWidget)

from studio.contract import Sample

MIN_CELL = 32  # the smallest an image or a video is drawn before a grid scrolls instead
MAX_PLAYER_FPS = 50  # browsers play GIF delays under 20 ms slower, not faster; so does the player
SCRUBBER_MIN_WIDTH = 60  # a frame scrubber short enough to fit, long enough to drag


def to_pixmap(array: np.ndarray, size: int | None = None) -> QPixmap:
    """HxWxC uint8 (C = 1, 3 or 4) -> QPixmap, scaled to fit `size` without blurring pixels."""
    array = np.ascontiguousarray(array)
    if array.ndim == 2 or array.shape[-1] == 1:
        array = np.ascontiguousarray(np.repeat(array.reshape(array.shape[0], array.shape[1], 1), 3, axis=2))
    h, w, c = array.shape
    fmt = QImage.Format.Format_RGBA8888 if c == 4 else QImage.Format.Format_RGB888
    image = QImage(array.data, w, h, w * c, fmt).copy()  # copy: QImage does not own numpy memory
    pixmap = QPixmap.fromImage(image)
    if size:
        mode = Qt.TransformationMode.FastTransformation if max(h, w) < size else \
            Qt.TransformationMode.SmoothTransformation
        pixmap = pixmap.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode)
    return pixmap


def fit_rect(content: QSize, area: QRect) -> QRect:
    """The largest rectangle of `content`'s aspect ratio inside `area`, centred."""
    if content.isEmpty() or area.isEmpty():
        return QRect(area.topLeft(), QSize(0, 0))
    scale = min(area.width() / content.width(), area.height() / content.height())
    w, h = max(1, round(content.width() * scale)), max(1, round(content.height() * scale))
    return QRect(area.x() + (area.width() - w) // 2, area.y() + (area.height() - h) // 2, w, h)


def fit_columns(count: int, aspect: float, width: int, height: int, most: int | None = None) -> int:
    """How many columns show `count` items of aspect ratio `aspect` (width / height) largest in
    a `width` x `height` area (at most `most` columns)."""
    if count <= 1 or width <= 0 or height <= 0:
        return 1
    best, best_scale = 1, -1.0
    for columns in range(1, min(count, most or count) + 1):
        rows = math.ceil(count / columns)
        scale = min(width / columns / aspect, height / rows)  # the height of one item
        if scale > best_scale + 1e-9:
            best, best_scale = columns, scale
    return best


class TextView(QPlainTextEdit):
    """Read-only text that wraps at the widget's width (no sideways scrolling); a prompt can be
    set apart from what was generated after it (bold)."""

    def __init__(self, text: str = "", parent=None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setFont(QFont("monospace"))
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        # Anywhere, not only at spaces: generated text can hold long runs without one.
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setPlainText(text)

    def append_piece(self, piece: str, bold: bool = False) -> None:
        cursor = self.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        style = QTextCharFormat()
        style.setFontWeight(QFont.Weight.Bold if bold else QFont.Weight.Normal)
        cursor.insertText(piece, style)
        self.setTextCursor(cursor)

    def show_texts(self, texts: list[str], prompts: list[str | None] | None = None,
                   headers: list[str] | None = None) -> None:
        """Several texts one under another, each under its header; the part of each that is
        its prompt in bold."""
        self.setPlainText("")
        for i, text in enumerate(texts):
            if headers:
                self.append_piece(("\n\n" if i else "") + headers[i] + "\n")
            prompt = (prompts or [None] * len(texts))[i]
            if prompt and text.startswith(prompt):
                self.append_piece(prompt, bold=True)
                text = text[len(prompt):]
            self.append_piece(text)

    def contextMenuEvent(self, event) -> None:
        menu = self.createStandardContextMenu()
        menu.addSeparator()
        menu.addAction("Copy all text", self.copy_all)
        menu.exec(event.globalPos())

    def copy_all(self) -> None:
        QGuiApplication.clipboard().setText(self.toPlainText())


class ImageView(QWidget):
    """One image drawn as large as the widget allows, keeping its aspect ratio. `size` is the
    size it asks for (its size hint); the layout may give it more or less."""

    def __init__(self, array: np.ndarray, size: int = 256, parent=None):
        super().__init__(parent)
        self.cell_size = size
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.show_array(array)

    def show_array(self, array: np.ndarray) -> None:
        self.array = array
        self._image = to_pixmap(array)
        self.updateGeometry()
        self.update()

    def pixmap(self) -> QPixmap:
        """The image at its own size."""
        return self._image

    def sizeHint(self) -> QSize:
        return self._image.size().scaled(self.cell_size, self.cell_size,
                                         Qt.AspectRatioMode.KeepAspectRatio)

    def minimumSizeHint(self) -> QSize:
        return QSize(min(MIN_CELL, self.cell_size), min(MIN_CELL, self.cell_size))

    def shown_rect(self) -> QRect:
        """Where the image is drawn in the widget."""
        return fit_rect(self._image.size(), self.rect())

    def paintEvent(self, event) -> None:
        target = self.shown_rect()
        if target.isEmpty():
            return
        painter = QPainter(self)
        # Enlarging: whole pixels (a smoothed 32 px image is a blur); shrinking: smooth.
        shrinking = target.width() < self._image.width()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, shrinking)
        painter.drawPixmap(target, self._image)
        painter.end()


class VideoPlayer(QWidget):
    """Frames of a TxHxWxC clip with play/pause, a frame scrubber, loop and frame rate; the
    picture scales to the space given, like an ImageView."""

    frame_changed = Signal(int)

    def __init__(self, frames: np.ndarray, size: int = 256, fps: float = 8, parent=None):
        super().__init__(parent)
        self.frames, self.cell_size = frames, size
        self.screen_ = ImageView(frames[0], size)
        self.play_button = QPushButton("Pause")
        self.play_button.setToolTip("Play or pause the clip (Space)")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, len(frames) - 1)
        self.slider.setToolTip("Frame: drag to scrub through the clip")
        self.slider.setMinimumWidth(SCRUBBER_MIN_WIDTH)  # else squeezed to a dot beside the rest
        self.frame_label = QLabel()
        self.loop_box = QCheckBox("Loop")
        self.loop_box.setChecked(True)
        self.loop_box.setToolTip("Start again after the last frame")
        self.fps_spin = QSpinBox()
        self.fps_spin.setRange(1, MAX_PLAYER_FPS)
        self.fps_spin.setSuffix(" fps")
        self.fps_spin.setToolTip("Frames per second while playing")
        self.fps_spin.setValue(max(1, min(MAX_PLAYER_FPS, round(fps))))
        self.timer = QTimer(self)
        self._set_interval(self.fps_spin.value())
        self.timer.timeout.connect(self._advance)
        self.play_button.clicked.connect(self.toggle)
        self.slider.valueChanged.connect(self.show_frame)
        self.fps_spin.valueChanged.connect(self._set_interval)
        controls = QHBoxLayout()
        controls.addWidget(self.play_button)
        controls.addWidget(self.slider, 1)
        controls.addWidget(self.frame_label)
        controls.addWidget(self.loop_box)
        controls.addWidget(self.fps_spin)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.screen_, 1)
        layout.addLayout(controls)
        self.show_frame(0)
        self.timer.start()

    @property
    def playing(self) -> bool:
        return self.timer.isActive()

    def _set_interval(self, fps: int) -> None:
        self.timer.setInterval(max(10, round(1000 / fps)))

    def toggle(self) -> None:
        if self.playing:
            self.timer.stop()
            self.play_button.setText("Play")
        else:
            if self.slider.value() == len(self.frames) - 1:  # played to the end: from the start
                self.show_frame(0)
            self.timer.start()
            self.play_button.setText("Pause")

    def _advance(self) -> None:
        last = len(self.frames) - 1
        if self.slider.value() == last and not self.loop_box.isChecked():
            self.toggle()  # stops on the last frame
            return
        self.slider.setValue((self.slider.value() + 1) % (last + 1))

    def show_frame(self, index: int) -> None:
        self.screen_.show_array(self.frames[index])
        if self.slider.value() != index:
            self.slider.setValue(index)
        self.frame_label.setText(f"{index + 1}/{len(self.frames)}")
        self.frame_changed.emit(index)


def view_for(sample: Sample, size: int = 256) -> QWidget:
    """The widget that shows one sample, chosen by its kind."""
    if sample.kind == "text":
        return TextView(sample.data)
    if sample.kind == "image":
        return ImageView(sample.data, size)
    if sample.kind == "video":
        return VideoPlayer(sample.data, size, fps=sample.meta.get("fps", 8))
    return QLabel(f"(a {sample.kind} sample: no view for this kind)")


class SampleGrid(QScrollArea):
    """Several samples: text one under another, images and videos in a grid that fills the
    space (as many columns as fit its shape best, at most `columns`). It scrolls only when the
    samples would be drawn smaller than MIN_CELL pixels."""

    def __init__(self, parent=None, columns: int | None = 4, size: int = 160):
        super().__init__(parent)
        self.columns, self.cell_size = columns, size
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.views: list[QWidget] = []
        self._samples: list[Sample] = []
        self._laid_out_columns = 0
        self.set_samples([])

    def set_samples(self, samples: list[Sample], empty: str = "nothing to show yet") -> None:
        self._samples = list(samples)
        if self._update_in_place(samples):
            return
        self.views = [view_for(sample, self.cell_size) for sample in samples]
        self._empty = empty
        self._lay_out()

    def media_columns(self) -> int:
        """Columns for the images and videos now, from the viewport's shape."""
        media = [s for s in self._samples if s.kind in ("image", "video")]
        if not media:
            return 1
        first = np.asarray(media[0].data)
        h, w = (first.shape[1:3] if media[0].kind == "video" else first.shape[:2])
        viewport = self.viewport().size()
        most = self.columns
        players = [v for v in self.views if isinstance(v, VideoPlayer)]
        if players:  # a player needs room for its controls, however small its picture
            fit = max(1, viewport.width() // players[0].minimumSizeHint().width())
            most = min(most or fit, fit)
        return fit_columns(len(media), w / max(h, 1), viewport.width(), viewport.height(), most)

    def _lay_out(self) -> None:
        """Place the views in a new body; views kept from the old one move into it (addWidget
        reparents them) before setWidget deletes the old body with whatever is left in it."""
        body = QWidget()
        grid = QGridLayout(body)
        grid.setContentsMargins(0, 0, 0, 0)
        columns = self._laid_out_columns = self.media_columns()
        if not self.views:
            grid.addWidget(QLabel(self._empty, alignment=Qt.AlignmentFlag.AlignCenter,
                                  wordWrap=True), 0, 0)
        row = col = 0
        for sample, view in zip(self._samples, self.views):
            if sample.kind == "text" or not isinstance(view, (ImageView, VideoPlayer)):
                row, col = row + (col > 0), 0
                grid.addWidget(view, row, 0, 1, columns)
                row += 1
            else:
                grid.addWidget(view, row, col)
                col += 1
                if col == columns:
                    row, col = row + 1, 0
        self.setWidget(body)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.views and self.media_columns() != self._laid_out_columns:
            self._lay_out()

    def _update_in_place(self, samples: list[Sample]) -> bool:
        """New texts or images into the views already shown, when there are as many of the same
        kinds (each new preview during training): building new widgets re-laid out and
        repainted the whole window, several times the cost (measured)."""
        reusable = {"text": TextView, "image": ImageView}
        if not samples or len(samples) != len(self.views) or not all(
                type(view) is reusable.get(sample.kind) for sample, view in zip(samples, self.views)):
            return False
        for sample, view in zip(samples, self.views):
            if sample.kind == "text":
                view.setPlainText(sample.data)
            else:
                view.show_array(sample.data)
        if self.media_columns() != self._laid_out_columns:  # another shape of image
            self._lay_out()
        return True
