"""Work off the GUI thread: model loading, generation, data validation.

A `Task` runs a function in Qt's thread pool. The function receives a `TaskContext` to report
progress (delivered to the GUI thread as a signal) and to see whether it was cancelled. The
window never waits on a task; it reacts to `done`, `failed` and `progress`.
"""

from __future__ import annotations

import threading
import traceback

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from studio.errors import StudioError


class TaskContext:
    def __init__(self, signals: "TaskSignals"):
        self._signals = signals
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def progress(self, value) -> None:
        try:
            self._signals.progress.emit(value)
        except RuntimeError:  # the window that asked was closed meanwhile: nobody listens
            pass


class TaskSignals(QObject):
    progress = Signal(object)
    done = Signal(object)
    failed = Signal(str)
    finished = Signal()


class Task(QRunnable):
    def __init__(self, fn, *args, **kwargs):
        super().__init__()
        self.signals = TaskSignals()
        self.context = TaskContext(self.signals)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.setAutoDelete(False)  # the window may still hold it to cancel it

    def cancel(self) -> None:
        self.context._cancel.set()

    def run(self) -> None:
        try:
            result = self.fn(self.context, *self.args, **self.kwargs)
        except StudioError as exc:
            self._emit(self.signals.failed, str(exc))
        except BaseException as exc:  # noqa: BLE001 - shown in a dialog with its type; the window
            # stays up. BaseException too: a plugin calling sys.exit() (SystemExit) in a worker
            # thread would otherwise end the task silently and leave the window waiting forever.
            traceback.print_exc()
            self._emit(self.signals.failed, f"{type(exc).__name__}: {exc}")
        else:
            self._emit(self.signals.done, result)
        finally:
            self._emit(self.signals.finished)

    @staticmethod
    def _emit(signal, *args) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the window that asked was closed meanwhile: nobody listens
            pass


def start(task: Task) -> Task:
    QThreadPool.globalInstance().start(task)
    return task
