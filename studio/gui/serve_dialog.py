"""The Serve dialog: runs behind `studio serve`, the HTTP API that OpenAI's clients speak,
started and stopped from the Runs tab.

The server is the same `python -m studio serve RUN ...` a user can type, run as a child process
(QProcess, never waited on from the GUI thread): loading a model, a crash or a hung request can
neither block nor take down the window. Its one stdout line `serving on URL (models: ...)` says
it is ready; its stderr is its log, and the last line of it says why it stopped. The API key
goes to the child in STUDIO_API_KEY, never on its command line, where `ps` would show it.

The examples are written for what each run answers, read from its folder the way the Generate
tab does: completions or chat (a run trained on prompt/response pairs), images, video, or
classify (classifiers and taggers).
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import re
import secrets
import shlex
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QProcess, QProcessEnvironment, Qt, QTimer
from PySide6.QtGui import QFont, QGuiApplication
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDialog, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QPushButton,
                               QRadioButton, QSpinBox, QTabWidget, QVBoxLayout, QWidget)

from studio.gui import theme
from studio.gui.trainer import _yield_to_the_window
from studio.runstore import RunDir, read_json

THIS_COMPUTER = "127.0.0.1"
LOCAL_NETWORK = "0.0.0.0"
DEFAULT_PORT = 8000
SERVING_PREFIX = "serving on "  # the line `studio serve` prints on stdout once it answers
LOG_LINES = 500  # the server's log keeps its last lines only: it can run for days
LONGEST_LINE = 64 * 1024  # a line without an end this long is shown as it is
STOP_GRACE_MS = 5000  # how long a server told to stop may take to finish before it is killed
CLOSE_GRACE_MS = 3000  # the same when the window closes: it waits for the server, so less
# A problem and a server that answers, in the Runs tab's status colours on the light theme,
# lighter on the dark one (where those dark tones can hardly be read).
COLORS = {"light": {"problem": "#c62828", "serving": "#2e7d32"},
          "dark": {"problem": "#ef5350", "serving": "#66bb6a"}}

# What each kind of run answers, in the words of the dialog.
KIND_WORDS = {
    "completions": "text completions (POST /v1/completions)",
    "chat": "chat completions (POST /v1/chat/completions): the run was trained on "
            "prompt/response pairs",
    "images": "image generation (POST /v1/images/generations)",
    "videos": "video generation (POST /v1/videos/generations)",
    "classify": "classification or tagging (POST /v1/classify)",
}
COMPLETION_PROMPT = "Once upon a time"
CHAT_MESSAGE = "Hello! Can you help me?"
CLASSIFY_INPUT = "I love this product, it works perfectly."


# --- what is served and how to ask it (plain functions, no Qt) ----------------------------------

@dataclass(frozen=True)
class ServedRun:
    path: str
    model: str  # the model id clients send: the run folder's name
    kind: str  # completions, chat, images, videos, classify; else the generator's modality


def served_run(path: str, registry) -> ServedRun:
    """What a run answers, from its folder: its generator's modality, its task (classify and
    tag runs classify) and, for text, whether it was trained on prompt/response pairs (the
    format its assets record). Raises StudioError for a run that cannot be read."""
    run = RunDir.open(Path(path))
    doc = run.config()
    modality = registry.declarations(doc["generator"]).modality
    task = (doc.get("config") or {}).get("task")
    if task in ("classify", "tag"):
        kind = "classify"
    elif modality == "text":
        kind = "chat" if trained_on_pairs(run) else "completions"
    else:
        kind = {"image": "images", "video": "videos"}.get(modality, modality)
    return ServedRun(str(path), run.path.name, kind)


def trained_on_pairs(run: RunDir) -> bool:
    generation = run.assets_dir / "generation.json"
    if not generation.exists():
        return False  # runs of version 0.1 were trained on plain text only
    return read_json(generation, "generation settings").get("format") == "pairs"


def new_key() -> str:
    return secrets.token_urlsafe(32)


def port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port now (None: it can, as far as one can tell
    before trying). Asked with the option uvicorn sets, so a port a server just left counts as
    free, as it does for the server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} is taken by another program"
            if exc.errno == errno.EACCES:
                return f"port {port} needs administrator rights (ports below 1024 do)"
            return f"port {port} cannot be used: {exc.strerror or exc}"
    return None


def free_port(host: str) -> int:
    """A port no program listens on now (the system picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def served_url(line: str) -> str | None:
    """The base URL of a `serving on http://HOST:PORT/v1 (models: ...)` line; None for any
    other line."""
    if not line.startswith(SERVING_PREFIX):
        return None
    words = line[len(SERVING_PREFIX):].split()
    return words[0] if words else None


def url_port(url: str) -> int | None:
    from urllib.parse import urlsplit
    try:
        return urlsplit(url).port
    except ValueError:
        return None


def curl_example(run: ServedRun, url: str, key: str | None) -> str:
    """A curl command for what the run answers, with the server's URL, the model id and the
    key filled in."""
    path, body, after = {
        "completions": ("/completions", {"model": run.model, "prompt": COMPLETION_PROMPT,
                                         "max_tokens": 64}, ""),
        "chat": ("/chat/completions", {"model": run.model, "max_tokens": 64,
                                       "messages": [{"role": "user", "content": CHAT_MESSAGE}]},
                 ""),
        "images": ("/images/generations", {"model": run.model, "prompt": "", "n": 1, "seed": 0,
                                           "response_format": "b64_json"},
                   _save_first_b64("image.png")),
        "videos": ("/videos/generations", {"model": run.model, "prompt": "", "n": 1, "seed": 0,
                                           "format": "mp4", "response_format": "b64_json"},
                   _save_first_b64("video.mp4")),
        "classify": ("/classify", {"model": run.model, "input": CLASSIFY_INPUT}, ""),
    }.get(run.kind, ("/models", None, ""))
    lines = [f"curl {shlex.quote(url + path)}"]
    if key:
        lines.append(f"  -H {shlex.quote('Authorization: Bearer ' + key)}")
    if body is not None:
        lines.append("  -H 'Content-Type: application/json'")
        lines.append(f"  -d {shlex.quote(json.dumps(body))}")
    return " \\\n".join(lines) + after


def _save_first_b64(filename: str) -> str:
    """The end of a curl command that writes the answer's first base64 item to a file."""
    script = (f"import base64, json, sys; open({filename!r}, 'wb').write("
              f"base64.b64decode(json.load(sys.stdin)['data'][0]['b64_json']))")
    return f" \\\n  | python3 -c {shlex.quote(script)}"


def python_example(run: ServedRun, url: str, key: str | None) -> str:
    """A short program with the official `openai` package, pointed at the server."""
    head = ("from openai import OpenAI\n\n"
            f"client = OpenAI(base_url={url!r}, api_key={key or 'not-needed'!r})\n")
    model = repr(run.model)
    if run.kind == "completions":
        return head + (f"answer = client.completions.create(\n"
                       f"    model={model}, prompt={COMPLETION_PROMPT!r}, max_tokens=64)\n"
                       f"print(answer.choices[0].text)\n")
    if run.kind == "chat":
        return head + (f"answer = client.chat.completions.create(\n"
                       f"    model={model}, max_tokens=64,\n"
                       f"    messages=[{{'role': 'user', 'content': {CHAT_MESSAGE!r}}}])\n"
                       f"print(answer.choices[0].message.content)\n")
    if run.kind == "images":
        return "import base64\n" + head + (
            f"# prompt: a class name of the run, or '' for its classes in turn\n"
            f"result = client.images.generate(model={model}, prompt='', n=1,\n"
            f"                                response_format='b64_json')\n"
            f"with open('image.png', 'wb') as f:\n"
            f"    f.write(base64.b64decode(result.data[0].b64_json))\n")
    if run.kind == "videos":  # no such call in the package: its generic post reaches it
        return "import base64\n" + head + (
            f"result = client.post('/videos/generations', cast_to=object, body={{\n"
            f"    'model': {model}, 'prompt': '', 'n': 1, 'seed': 0, 'format': 'mp4',\n"
            f"    'response_format': 'b64_json'}})\n"
            f"with open('video.mp4', 'wb') as f:\n"
            f"    f.write(base64.b64decode(result['data'][0]['b64_json']))\n")
    if run.kind == "classify":
        return head + (f"answer = client.post('/classify', cast_to=object, body={{\n"
                       f"    'model': {model}, 'input': {CLASSIFY_INPUT!r}}})\n"
                       f"print(answer)\n")
    return head + "print([model.id for model in client.models.list()])\n"


# The server's advice names its flags; here they are the dialog's controls. Most specific first.
_FLAGS_IN_DIALOG_WORDS = [(re.compile(pattern), words) for pattern, words in [
    (r"\(--port 0 takes a free one\)", "(“any free port” takes one that no program uses)"),
    (r" or --host\b", ""),  # the other choice there is, who can reach it, changes no port
    (r"--port\b", "port"),
    (r"--host (\S+)", r"\1"),
]]


def in_dialog_words(message: str) -> str:
    """A line of the server's with its command-line advice turned into the dialog's controls."""
    for pattern, words in _FLAGS_IN_DIALOG_WORDS:
        message = pattern.sub(words, message)
    return message


def server_command(paths: list[str], host: str, port: int, device: str,
                   checkpoint: str = "latest") -> list[str]:
    """`python -m studio serve ...` for these runs (the key travels in the environment)."""
    command = [sys.executable, "-m", "studio", "serve", *paths, "--host", host,
               "--port", str(port), "--stop-with-stdin"]  # never outlives the window
    if device and device != "auto":
        command += ["--device", device]
    if checkpoint != "latest":
        command += ["--checkpoint", checkpoint]
    return command


def key_problem(key: str) -> str | None:
    """Why a typed key cannot be sent in an HTTP header, or None."""
    if not key:
        return "The API key is empty: type one, or press New key"
    if not all("!" <= char <= "~" for char in key):
        return ("The API key may hold letters, digits and punctuation only (no spaces or other "
                "characters): HTTP headers carry nothing else. Press New key for a random one")
    return None


# --- the dialog ----------------------------------------------------------------------------------

# The process ids of the servers running now. The window stops its servers when it closes; but
# when Python exits another way (an error out of the event loop, a test session ending), Qt's
# objects are not destroyed, so no QProcess kills its child, and a server would serve on with
# nobody to stop it: these are killed at exit instead.
_running_servers: set[int] = set()


@atexit.register
def _kill_servers_left_running() -> None:
    for pid in _running_servers:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)  # gone before Python is
        except OSError:
            pass  # it had ended, or Qt collected it first


def copy_text(text: str) -> None:
    QGuiApplication.clipboard().setText(text)


def code_view() -> QPlainTextEdit:
    view = QPlainTextEdit()
    view.setReadOnly(True)
    view.setFont(QFont("monospace"))
    view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)  # commands are copied line by line
    return view


class ServeDialog(QDialog):
    """Who can reach the server, its port and key, Start and Stop, then its URL, examples and
    log. Non-modal: the window goes on working while it serves. Closing it stops the server."""

    def __init__(self, paths: list[str], session, parent=None):
        super().__init__(parent)
        self.session = session
        self.served = [served_run(path, session.registry) for path in paths]
        self.server: QProcess | None = None
        self.url: str | None = None  # the base URL, once the server said it serves
        self.running_key: str | None = None  # the key the server was started with
        self.stopping = False  # Stop (or closing) asked it to end: its end is no failure
        self.last_line = ""  # the server's last stderr line: why it ended, when it did
        self.error_line = ""  # its last `error: ...` line, the one it fails to start with
        self.status_tone: str | None = None  # how the status line is coloured
        self.offered_port = 0  # the free port the button offers when the one chosen is taken
        self.server_process_id: int | None = None  # the running server's, for the exit's check
        self._stdout_rest = self._stderr_rest = b""  # output after the last line end
        self.kill_timer = QTimer(self)
        self.kill_timer.setSingleShot(True)
        self.kill_timer.timeout.connect(self._kill)

        models = ", ".join(run.model for run in self.served)
        self.setWindowTitle(f"Serve {models}")
        intro = QLabel(f"An HTTP API for {'this run' if len(self.served) == 1 else 'these runs'} "
                       f"that OpenAI's clients (and curl) can use: model "
                       f"{'id' if len(self.served) == 1 else 'ids'} {models}.")
        intro.setWordWrap(True)

        self.this_computer = QRadioButton(f"This computer only ({THIS_COMPUTER})")
        self.this_computer.setToolTip("Only programs on this computer can reach the server")
        self.local_network = QRadioButton(f"Local network ({LOCAL_NETWORK}): always with the key")
        self.local_network.setToolTip("Other computers on your network can reach it too; every "
                                      "request must carry the API key")
        self.this_computer.setChecked(True)
        self.reach_group = QButtonGroup(self)
        for button in (self.this_computer, self.local_network):
            self.reach_group.addButton(button)
        reach = QVBoxLayout()
        reach.addWidget(self.this_computer)
        reach.addWidget(self.local_network)

        self.port_spin = QSpinBox()
        self.port_spin.setRange(0, 65535)
        self.port_spin.setValue(DEFAULT_PORT)
        self.port_spin.setSpecialValueText("any free port")  # shown for 0
        self.port_spin.setToolTip("The TCP port the server listens on; 0 lets the system pick "
                                  "a free one (the address below then shows it)")
        self.port_note = QLabel()
        self.port_note.setWordWrap(True)
        self.free_port_button = QPushButton()
        self.free_port_button.setToolTip("Use a port no program listens on now")
        self.free_port_button.clicked.connect(self._use_free_port)
        port_row = QHBoxLayout()
        port_row.addWidget(self.port_spin)
        port_row.addWidget(self.port_note, 1)
        port_row.addWidget(self.free_port_button)

        self.key_edit = QLineEdit(new_key())
        self.key_edit.setCursorPosition(0)
        self.key_edit.setFont(QFont("monospace"))
        self.key_edit.setToolTip("Clients send it as 'Authorization: Bearer KEY'. Type your own "
                                 "(e.g. one your clients already use) or press New key.")
        self.use_key = QCheckBox("Require the key")
        self.use_key.setChecked(True)
        self.use_key.setToolTip("Every request but /health must carry the key (always on for "
                                "the local network)")
        self.copy_key_button = QPushButton("Copy")
        self.copy_key_button.setToolTip("Copy the key to the clipboard")
        self.copy_key_button.clicked.connect(lambda: copy_text(self.key_edit.text()))
        self.new_key_button = QPushButton("New key")
        self.new_key_button.setToolTip("Make a new random key (the old one stops working at the "
                                       "next Start)")
        self.new_key_button.clicked.connect(self._new_key)
        key_row = QHBoxLayout()
        key_row.addWidget(self.key_edit, 1)
        key_row.addWidget(self.copy_key_button)
        key_row.addWidget(self.new_key_button)
        key_row.addWidget(self.use_key)

        self.checkpoint_box = QComboBox()
        self.checkpoint_box.addItem("Latest checkpoint", "latest")
        self.checkpoint_box.addItem("Best checkpoint (best held-out score; else the latest)",
                                    "best")
        self.checkpoint_box.setToolTip("Which weights of each run the server answers with")

        form = QFormLayout()
        form.addRow("Weights", self.checkpoint_box)
        form.addRow("Who can reach it", reach)
        form.addRow("Port", port_row)
        form.addRow("API key", key_row)

        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Start the server in a process of its own")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the server. Closing this dialog or the window stops "
                                    "it too.")
        self.stop_button.clicked.connect(self.stop)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        controls = QHBoxLayout()
        controls.addWidget(self.start_button)
        controls.addWidget(self.stop_button)
        controls.addWidget(self.status_label, 1)

        self.url_edit = QLineEdit()
        self.url_edit.setReadOnly(True)
        self.url_edit.setPlaceholderText("shown once the server runs")
        self.copy_url_button = QPushButton("Copy")
        self.copy_url_button.setToolTip("Copy the address to the clipboard")
        self.copy_url_button.clicked.connect(lambda: copy_text(self.url_edit.text()))
        url_row = QHBoxLayout()
        url_row.addWidget(QLabel("Address"))
        url_row.addWidget(self.url_edit, 1)
        url_row.addWidget(self.copy_url_button)
        self.network_note = QLabel()
        self.network_note.setWordWrap(True)

        self.example_model = QComboBox()
        for run in self.served:
            self.example_model.addItem(run.model, run.path)
        self.example_model.setToolTip("Whose examples are shown")
        self.example_model.setVisible(len(self.served) > 1)
        self.example_kind = QLabel()
        self.example_kind.setWordWrap(True)
        self.curl_view = code_view()
        self.python_view = code_view()
        self.example_tabs = QTabWidget()
        for view, title in ((self.curl_view, "curl"), (self.python_view, "Python (openai)")):
            page = QWidget()
            copy_button = QPushButton("Copy")
            copy_button.setToolTip("Copy this example to the clipboard")
            copy_button.clicked.connect(lambda _=False, v=view: copy_text(v.toPlainText()))
            page_layout = QVBoxLayout(page)
            page_layout.addWidget(view, 1)
            page_layout.addWidget(copy_button)
            self.example_tabs.addTab(page, title)
        self.example_model.currentIndexChanged.connect(self._show_examples)

        self.log_view = code_view()
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)  # read, not copied
        self.log_view.setMaximumBlockCount(LOG_LINES)
        self.log_view.setPlaceholderText("The server's log")

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addLayout(controls)
        layout.addLayout(url_row)
        layout.addWidget(self.network_note)
        examples_head = QHBoxLayout()
        examples_head.addWidget(self.example_kind, 1)
        examples_head.addWidget(self.example_model)
        layout.addLayout(examples_head)
        layout.addWidget(self.example_tabs, 2)
        layout.addWidget(QLabel("Log"))
        layout.addWidget(self.log_view, 1)

        session.theme_changed.connect(self._apply_colors)
        self.reach_group.buttonToggled.connect(lambda *_: self._update_controls())
        self.port_spin.valueChanged.connect(lambda *_: self._update_controls())
        self.use_key.toggled.connect(lambda *_: self._update_controls())
        self._set_status("Not running.")
        self._show_examples()
        self._update_controls()
        self.resize(720, 640)

    # -- what the controls say
    @property
    def running(self) -> bool:
        return self.server is not None and self.server.state() != QProcess.ProcessState.NotRunning

    def host(self) -> str:
        return LOCAL_NETWORK if self.local_network.isChecked() else THIS_COMPUTER

    def key(self) -> str | None:
        """The key the server is started with; None when it answers without one."""
        return self.key_edit.text() if self.use_key.isChecked() else None

    def _update_controls(self) -> None:
        running = self.running
        on_network = self.local_network.isChecked()
        if on_network:
            self.use_key.setChecked(True)  # the server refuses other hosts without a key
        for control in (self.this_computer, self.local_network, self.port_spin,
                        self.new_key_button, self.checkpoint_box):
            control.setEnabled(not running)
        self.key_edit.setReadOnly(running)
        self.use_key.setEnabled(not running and not on_network)
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running and not self.stopping)
        problem = None if running else self.port_problem()
        self.port_note.setText(f"{problem[:1].upper()}{problem[1:]}." if problem else "")
        self.free_port_button.setVisible(problem is not None)
        if problem is not None:
            self.offered_port = free_port(self.host())
            self.free_port_button.setText(f"Use port {self.offered_port}")

    def _new_key(self) -> None:
        self.key_edit.setText(new_key())
        self.key_edit.setCursorPosition(0)  # its start in view, as when the dialog opened

    def port_problem(self) -> str | None:
        port = self.port_spin.value()
        return None if port == 0 else port_problem(self.host(), port)

    def _use_free_port(self) -> None:
        self.port_spin.setValue(self.offered_port)

    def _set_status(self, text: str, tone: str | None = None) -> None:
        """The status line; `tone` "problem" or "serving" colours it."""
        self.status_label.setText(text)
        self.status_tone = tone
        self._apply_colors()

    def _apply_colors(self, *_) -> None:
        """The status and port notes in the colours of the theme now (also when it changes)."""
        colors = COLORS[theme.current()]
        tone = self.status_tone
        self.status_label.setStyleSheet(f"color: {colors[tone]};" if tone else "")
        self.port_note.setStyleSheet(f"color: {colors['problem']};")

    def status(self) -> str:
        return self.status_label.text()

    def selected_example_run(self) -> ServedRun:
        return self.served[max(0, self.example_model.currentIndex())]

    def _show_examples(self, *_) -> None:
        run = self.selected_example_run()
        words = KIND_WORDS.get(run.kind, f"a {run.kind} generator: the server lists it at "
                                         f"GET /v1/models")
        self.example_kind.setText(f"Examples for {run.model}: {words}")
        if self.url is None:
            for view in (self.curl_view, self.python_view):
                view.setPlainText("")
                view.setPlaceholderText("Shown once the server runs, with its address and key.")
            return
        # From this computer a server on every interface answers at 127.0.0.1.
        url = self.url.replace(f"//{LOCAL_NETWORK}:", f"//{THIS_COMPUTER}:")
        self.curl_view.setPlainText(curl_example(run, url, self.running_key))
        self.python_view.setPlainText(python_example(run, url, self.running_key))

    # -- the server
    def start(self) -> None:
        if self.running:
            return
        problem = key_problem(self.key_edit.text()) if self.key() is not None else None
        if problem:
            self._set_status(f"{problem}.", "problem")
            return
        self.url, self.stopping, self.last_line, self.error_line = None, False, "", ""
        self.running_key = self.key()
        self._stdout_rest = self._stderr_rest = b""
        self.url_edit.clear()
        self.network_note.setText("")
        self._show_examples()
        if self.server is not None:
            self.server.deleteLater()
        server = self.server = QProcess(self)
        environment = QProcessEnvironment.systemEnvironment()
        environment.insert("PYTHONUNBUFFERED", "1")  # its ready line must come at once
        if self.running_key:
            environment.insert("STUDIO_API_KEY", self.running_key)
        else:
            environment.remove("STUDIO_API_KEY")  # one the window was started with
        server.setProcessEnvironment(environment)
        server.readyReadStandardOutput.connect(self._read_stdout)
        server.readyReadStandardError.connect(self._read_stderr)
        server.finished.connect(self._ended)
        server.errorOccurred.connect(self._process_error)
        server.started.connect(lambda: self._started(server.processId()))
        command = server_command([run.path for run in self.served], self.host(),
                                 self.port_spin.value(), self.session.settings.default_device,
                                 self.checkpoint_box.currentData())
        self.log_view.appendPlainText(f"$ python {shlex.join(command[1:])}")
        server.start(command[0], command[1:])
        self._set_status(f"Starting… (loading {len(self.served)} "
                         f"{'model' if len(self.served) == 1 else 'models'})")
        self.start_button.setText("Start again")
        self._update_controls()

    def _started(self, pid: int) -> None:
        self.server_process_id = pid
        _running_servers.add(pid)
        _yield_to_the_window(pid)  # as training does: its answers never make the window lag

    def stop(self) -> None:
        """Ask the server to end (it finishes what it is answering); killed if it has not
        after STOP_GRACE_MS. Returns at once: `_ended` says when it has."""
        if not self.running:
            return
        self.stopping = True
        self._set_status("Stopping…")
        self.server.terminate()
        self.kill_timer.start(STOP_GRACE_MS)
        self._update_controls()

    def stop_now(self) -> None:
        """Stop the server and wait until it is gone (the window is closing: nothing may be
        left running); killed after CLOSE_GRACE_MS."""
        if not self.running:
            return
        self.stopping = True
        self.server.terminate()
        if not self.server.waitForFinished(CLOSE_GRACE_MS):
            self._kill()
            self.server.waitForFinished(CLOSE_GRACE_MS)

    def _kill(self) -> None:
        if self.running:
            self.log_view.appendPlainText("(it did not stop when asked: killed)")
            self.server.kill()

    def server_pid(self) -> int | None:
        return self.server.processId() if self.running else None

    def _read_stdout(self) -> None:
        for line in self._lines(bytes(self.server.readAllStandardOutput()), "_stdout_rest"):
            self._stdout_line(line)

    def _read_stderr(self) -> None:
        for line in self._lines(bytes(self.server.readAllStandardError()), "_stderr_rest"):
            self._stderr_line(line)

    def _stdout_line(self, line: str) -> None:
        self.log_view.appendPlainText(line)
        url = served_url(line)
        if url is not None and self.url is None:
            self._serving(url)

    def _stderr_line(self, line: str) -> None:
        self.log_view.appendPlainText(line)
        if line.strip():
            self.last_line = line.strip()
            if self.last_line.startswith("error: "):
                self.error_line = self.last_line.removeprefix("error: ")

    def _lines(self, chunk: bytes, rest_name: str, flush: bool = False) -> list[str]:
        """The whole lines of `chunk` after what came before it without a line end (kept in
        the attribute `rest_name` for the next chunk); `flush` gives that rest too."""
        *lines, rest = (getattr(self, rest_name) + chunk).split(b"\n")
        if rest and (flush or len(rest) > LONGEST_LINE):
            lines, rest = [*lines, rest], b""
        setattr(self, rest_name, rest)
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]

    def _serving(self, url: str) -> None:
        self.url = url
        self.url_edit.setText(url)
        port = url_port(url)
        asked_any = self.port_spin.value() == 0
        picked = f" (port {port}: a free one the system picked)" if asked_any else ""
        self._set_status(f"Serving on {url}{picked}", "serving")
        if self.host() == LOCAL_NETWORK:
            self.network_note.setText(
                f"From other computers, use this computer's network name or address instead of "
                f"{LOCAL_NETWORK}, e.g. http://{socket.gethostname()}:{port}/v1 (a firewall may "
                f"have to allow port {port}).")
        self._show_examples()

    def _ended(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self.kill_timer.stop()
        _running_servers.discard(self.server_process_id)
        # What it wrote as it ended, the last line without a line end included.
        self._read_stdout()
        self._read_stderr()
        for line in self._lines(b"", "_stdout_rest", flush=True):
            self._stdout_line(line)
        for line in self._lines(b"", "_stderr_rest", flush=True):
            self._stderr_line(line)
        was_serving = self.url is not None
        self.url = None
        self.url_edit.clear()
        self.network_note.setText("")
        self._show_examples()
        self._update_controls()  # before the message: it may offer the free port shown
        if self.error_line:
            why = in_dialog_words(self.error_line)
        elif exit_status == QProcess.ExitStatus.CrashExit:
            why = "it crashed or was killed" + (f" (its last line: {self.last_line})"
                                                if self.last_line else "")
        else:
            why = self.last_line or f"it ended with exit code {exit_code}"
        if self.stopping:
            self._set_status("Stopped.")
        elif not was_serving:  # a taken port is said beside the port, with a free one offered
            self._set_status(f"Could not start: {why}", "problem")
        else:
            self._set_status(f"The server stopped by itself: {why}. Start again to restart it.",
                             "problem")

    def _process_error(self, error: QProcess.ProcessError) -> None:
        # A server that started and then crashes says so through `finished`; only a process
        # that never started has no `finished` to come.
        if error == QProcess.ProcessError.FailedToStart:
            self._set_status(f"Could not start the server process: {self.server.errorString()}. "
                             f"Is {sys.executable} still there?", "problem")
            self._update_controls()

    def done(self, result: int) -> None:
        """Closing the dialog (Esc, the title bar's close) stops its server: none serves on
        without a window that shows it is there. The Runs tab keeps the dialog to show it
        again, so the stopping goes on after it is hidden."""
        self.stop()
        super().done(result)
