"""Training in a child process: the same `studio train ... --events json` a user can type.

A crash, an out-of-memory error or a hung step in training cannot take the window down. The
child runs in a session of its own, with its output going to log files that the window
follows, so a run can also keep training after the window closes ("leave running"). Its stdout carries one
JSON event per line; its stderr is kept to show when it fails. Pause, resume and stop go
through the run folder's control file, exactly as `studio control` does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from studio.events import parse_line
from studio.gui.settings import config_dir
from studio.runstore import RunDir

# The child's output is read once a second, and the Train panel redraws right after (on the
# `polled` signal): one wake-up of the window a second in all. On 2 cores each wake-up takes a
# core from one of the child's two compute threads and the other waits for it.
POLL_MS = 1000
TRAINING_NICENESS = 5  # how much lower the training child's priority is than the window's


def _yield_to_the_window(pid: int) -> None:
    """Give the just-started child a slightly lower priority, so that when the window wakes (a
    repaint, a click) the scheduler hands it a core at once instead of after the training
    threads' time slice. The window uses a few percent of a core, so training loses little;
    without this, on 2 cores the window's event loop waited up to 126 ms (measured). Set from
    here rather than in a preexec_fn, which is unsafe in a process with threads (Qt has them);
    the child's compute threads start after its imports and inherit the value."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, pid) + TRAINING_NICENESS)
    except (AttributeError, OSError):  # not on this platform, or the child is already gone
        pass


class TrainerProcess(QObject):
    event_read = Signal(dict)  # every JSON event of the child (not `event`: QObject.event())
    failed = Signal(str, str)  # message, the last lines of its log
    finished = Signal(int, str)  # 0 when it ended by itself, else 1; final status
    polled = Signal()  # the new events (if any) have been emitted: time to redraw

    def __init__(self, parent=None, extra_env: dict | None = None):
        super().__init__(parent)
        self.pid: int | None = None
        self.process: subprocess.Popen | None = None
        self.run_dir: Path | None = None
        self.log = deque(maxlen=40)
        self.status = "idle"
        self.started = False  # the child's "start" event came: it is training, not still setting up
        self.last_error = ""
        self.extra_env = dict(extra_env or {})
        self._out_path = self._err_path = None
        self._out_offset = 0
        self._partial = b""
        self._done_seen = False
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, args: list[str], run_dir: str) -> None:
        """`args` after `studio train`, e.g. ["text", "--data", ...] or ["--resume", RUN]."""
        if self.running:
            raise RuntimeError("a training process is already running")
        self.run_dir = Path(run_dir)
        self.log.clear()
        self.status, self.last_error, self._done_seen, self.started = "starting", "", False, False
        logs = config_dir() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{id(self) % 10000}"
        self._out_path, self._err_path = logs / f"train-{stamp}.out", logs / f"train-{stamp}.err"
        self._out_offset, self._partial = 0, b""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        command = [sys.executable, "-m", "studio", "train", *args, "--events", "json"]
        try:
            with open(self._out_path, "wb") as out, open(self._err_path, "wb") as err:
                # A session of its own: the run survives the window ("leave running").
                self.process = subprocess.Popen(command, stdout=out, stderr=err,
                                                stdin=subprocess.DEVNULL, env=env,
                                                start_new_session=True)
        except OSError as exc:
            self.status = "failed"
            self.failed.emit(f"could not start training: {exc}", "")
            self.finished.emit(1, self.status)
            return
        pid = self.process.pid
        _yield_to_the_window(pid)
        self.pid = pid
        self.timer.start()

    def poll(self) -> None:
        """Read new events; notice when the process has ended."""
        ended = self.pid is not None and self.process.poll() is not None
        self._read_events()
        if ended:
            self._read_events()  # what it wrote while it was ending
        self.polled.emit()
        if ended:
            self._ended()

    def _read_events(self) -> None:
        try:
            with open(self._out_path, "rb") as f:
                f.seek(self._out_offset)
                chunk = f.read()
        except OSError:
            return
        self._out_offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            record = parse_line(line)
            if record is None:
                text = line.decode("utf-8", "replace").strip()
                if text:
                    self.log.append(text)  # stray output (a library's print): keep it for the log
                continue
            kind = record.get("event")
            if kind == "start":
                self.status, self.started = "running", True
            elif kind in ("paused", "resumed"):
                self.status = "paused" if kind == "paused" else "running"
            elif kind == "error":
                self.last_error = record.get("message", "")
            elif kind == "done":
                self.status, self._done_seen = record.get("status", "done"), True
            self.event_read.emit(record)

    def _ended(self) -> None:
        self.timer.stop()
        self.pid = None
        try:
            err = self._err_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            err = ""
        for line in err.splitlines():
            if line.strip():
                self.log.append(line)
        if not self._done_seen:
            message = self.last_error or next(
                (l.removeprefix("error: ") for l in reversed(self.log) if l.startswith("error: ")),
                "the training process ended unexpectedly")
            self.status = "failed"
            self.failed.emit(message, "\n".join(self.log))
        self.finished.emit(0 if self._done_seen else 1, self.status)

    def control(self, command: str) -> None:
        if self.run_dir is None or not self.running:
            return
        if RunDir.is_run(self.run_dir):
            RunDir(self.run_dir).write_control(command)
        elif command == "stop":  # still reading its data: nothing to save yet
            try:
                os.kill(self.pid, signal.SIGTERM)
            except OSError:
                pass

    def pause(self) -> None:
        self.control("pause")

    def resume(self) -> None:
        self.control("resume")

    def stop(self) -> None:
        self.control("stop")

    def wait(self, timeout_s: float) -> bool:
        """Block until the process ends (used when the window closes with 'stop')."""
        deadline = time.monotonic() + timeout_s
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
            self.poll()
        return not self.running

    def detach(self) -> None:
        """Stop following the process; it trains on by itself."""
        self.timer.stop()
        self.pid = None

    def kill(self) -> None:
        if self.running:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
