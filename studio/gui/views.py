"""Views of plain samples, picked by kind: text, an image, a video with a player. Plugins
return plain data; these widgets are all the window needs to show any generator's output."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont, QImage, QPixmap
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton,
                               QScrollArea, QSlider, QVBoxLayout, QWidget)

from studio.contract import Sample


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


class TextView(QPlainTextEdit):
    def __init__(self, text: str = "", parent=None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setFont(QFont("monospace"))
        self.setPlainText(text)

    def append_piece(self, piece: str) -> None:
        cursor = self.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        cursor.insertText(piece)
        self.setTextCursor(cursor)


class ImageView(QLabel):
    def __init__(self, array: np.ndarray, size: int = 256, parent=None):
        super().__init__(parent)
        self.size_ = size
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.show_array(array)

    def show_array(self, array: np.ndarray) -> None:
        self.array = array
        self.setPixmap(to_pixmap(array, self.size_))


class VideoPlayer(QWidget):
    """Frames of a TxHxWxC clip with play/pause and a frame slider."""

    frame_changed = Signal(int)

    def __init__(self, frames: np.ndarray, size: int = 256, fps: int = 8, parent=None):
        super().__init__(parent)
        self.frames, self.size = frames, size
        self.screen_ = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.play_button = QPushButton("Pause")
        self.play_button.setToolTip("Play or pause the clip (Space)")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, len(frames) - 1)
        self.slider.setToolTip("Frame")
        self.timer = QTimer(self)
        self.timer.setInterval(max(10, 1000 // fps))
        self.timer.timeout.connect(self._advance)
        self.play_button.clicked.connect(self.toggle)
        self.slider.valueChanged.connect(self.show_frame)
        controls = QHBoxLayout()
        controls.addWidget(self.play_button)
        controls.addWidget(self.slider, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.screen_, 1)
        layout.addLayout(controls)
        self.show_frame(0)
        self.timer.start()

    @property
    def playing(self) -> bool:
        return self.timer.isActive()

    def toggle(self) -> None:
        if self.playing:
            self.timer.stop()
            self.play_button.setText("Play")
        else:
            self.timer.start()
            self.play_button.setText("Pause")

    def _advance(self) -> None:
        self.slider.setValue((self.slider.value() + 1) % len(self.frames))

    def show_frame(self, index: int) -> None:
        self.screen_.setPixmap(to_pixmap(self.frames[index], self.size))
        if self.slider.value() != index:
            self.slider.setValue(index)
        self.frame_changed.emit(index)


def view_for(sample: Sample, size: int = 256) -> QWidget:
    """The widget that shows one sample, chosen by its kind."""
    if sample.kind == "text":
        return TextView(sample.data)
    if sample.kind == "image":
        return ImageView(sample.data, size)
    if sample.kind == "video":
        return VideoPlayer(sample.data, size)
    return QLabel(f"(a {sample.kind} sample: no view for this kind)")


class SampleGrid(QScrollArea):
    """Several samples: text one under another, images and videos in a grid."""

    def __init__(self, parent=None, columns: int = 4, size: int = 160):
        super().__init__(parent)
        self.columns, self.size = columns, size
        self.setWidgetResizable(True)
        self.views: list[QWidget] = []
        self.set_samples([])

    def set_samples(self, samples: list[Sample], empty: str = "nothing to show yet") -> None:
        if self._update_in_place(samples):
            return
        body = QWidget()
        grid = QGridLayout(body)
        self.views = []
        if not samples:
            grid.addWidget(QLabel(empty, alignment=Qt.AlignmentFlag.AlignCenter), 0, 0)
        for i, sample in enumerate(samples):
            view = view_for(sample, self.size)
            self.views.append(view)
            if sample.kind == "text":
                grid.addWidget(view, i, 0, 1, self.columns)
            else:
                grid.addWidget(view, i // self.columns, i % self.columns)
        self.setWidget(body)

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
        return True
