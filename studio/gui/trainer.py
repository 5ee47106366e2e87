"""Training in a child process: the same `studio train ... --events json` a user can type.

A crash, an out-of-memory error or a hung step in training cannot take the window down. The
child's stdout carries one JSON event per line; its stderr is kept (the last lines) to show
when it fails. Pause, resume and stop go through the run folder's control file, exactly as
`studio control` does.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

from studio.runstore import RunDir


class TrainerProcess(QObject):
    event = Signal(dict)  # every JSON event of the child
    failed = Signal(str, str)  # message, the last lines of its log
    finished = Signal(int, str)  # exit code, final status ("done", "stopped", ...)

    def __init__(self, parent=None, extra_env: dict | None = None):
        super().__init__(parent)
        self.process: QProcess | None = None
        self.run_dir: Path | None = None
        self.log = deque(maxlen=40)
        self.status = "idle"
        self.last_error = ""
        self.extra_env = dict(extra_env or {})
        self._buffer = b""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    def start(self, args: list[str], run_dir: str) -> None:
        """`args` after `studio train`, e.g. ["text", "--data", ...] or ["--resume", RUN]."""
        if self.running:
            raise RuntimeError("a training process is already running")
        self.run_dir = Path(run_dir)
        self.log.clear()
        self.status, self.last_error, self._buffer = "starting", "", b""
        process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        for key, value in self.extra_env.items():
            env.insert(key, value)
        process.setProcessEnvironment(env)
        process.readyReadStandardOutput.connect(self._read_stdout)
        process.readyReadStandardError.connect(self._read_stderr)
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._error)
        self.process = process
        process.start(sys.executable, ["-m", "studio", "train", *args, "--events", "json"])

    def _read_stdout(self) -> None:
        self._buffer += bytes(self.process.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            text = line.decode("utf-8", "replace").strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                self.log.append(text)  # stray output (a library's print): keep it for the log
                continue
            if record.get("event") == "start":
                self.status = "running"
            elif record.get("event") in ("paused", "resumed"):
                self.status = "paused" if record["event"] == "paused" else "running"
            elif record.get("event") == "error":
                self.last_error = record.get("message", "")
            elif record.get("event") == "done":
                self.status = record.get("status", "done")
            self.event.emit(record)

    def _read_stderr(self) -> None:
        text = bytes(self.process.readAllStandardError()).decode("utf-8", "replace")
        for line in text.splitlines():
            if line.strip():
                self.log.append(line)

    def _finished(self, code: int, exit_status) -> None:
        self._read_stdout()
        self._read_stderr()
        if code != 0 or exit_status != QProcess.ExitStatus.NormalExit:
            message = self.last_error or next(
                (l.removeprefix("error: ") for l in reversed(self.log) if l.startswith("error: ")),
                f"the training process ended unexpectedly (exit code {code})")
            self.status = "failed"
            self.failed.emit(message, "\n".join(self.log))
        self.finished.emit(code, self.status)

    def _error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.status = "failed"
            self.failed.emit(f"could not start {sys.executable}", "")

    def control(self, command: str) -> None:
        if self.run_dir is not None and self.running:
            RunDir(self.run_dir).write_control(command)

    def pause(self) -> None:
        self.control("pause")

    def resume(self) -> None:
        self.control("resume")

    def stop(self) -> None:
        self.control("stop")

    def kill(self) -> None:
        if self.running:
            self.process.kill()
