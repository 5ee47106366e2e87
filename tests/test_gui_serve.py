"""Runs › Serve…: the dialog that runs `studio serve` as a child process of the window, with
its address, key and examples that fit the run, and that never leaves a server behind.

Three tiny text runs (plain text, prompt/response pairs, a classifier) are trained once for the
module; the built-in image and video demo runs are read, never written.
"""

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PySide6.QtCore import QProcess

from studio import api
from studio.gui import runs_panel as runs_panel_module
from studio.gui import serve_dialog
from studio.gui.runs_panel import RunsPanel
from studio.gui.serve_dialog import (ServeDialog, ServedRun, curl_example, python_example,
                                     served_run)
from studio.gui.session import Session
from studio.gui.settings import Settings
from studio.runstore import RunDir

TINY = ["n_layer=1", "n_head=2", "n_embd=16", "block_size=64", "device=cpu", "eval_every=0",
        "preview_every=0", "log_every=1", "warmup_steps=1"]
DEMO_RUNS = {run.name: run for run in api.demo_runs()}  # before no_demo_runs hides them


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    corpus = root / "corpus.txt"
    words = "the sea is calm and the night is long we sail at dawn to find the light".split()
    corpus.write_text("\n".join(" ".join(words[(i * 7 + j) % len(words)] for j in range(8))
                                for i in range(300)), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_CACHE_DIR", str(root / "cache"))
        for name, data, extra in (("text", str(corpus), []),
                                  ("pairs", "builtin:customer-service", []),
                                  ("classify", "builtin:sentiment", ["task=classify"])):
            status, _ = api.train("text", data=data, run_dir=str(root / "runs" / name),
                                  settings=TINY + extra, max_steps=2, events="none")
            assert status == "done"
    return root / "runs"


@pytest.fixture(autouse=True)
def no_demo_runs(monkeypatch):
    """The Runs tab lists only the runs each test puts in its folder."""
    monkeypatch.setattr(api, "demo_runs", lambda: [])


@pytest.fixture
def runs_folder(trained_runs, tmp_path):
    folder = tmp_path / "runs"
    shutil.copytree(trained_runs, folder)
    return folder


@pytest.fixture
def session(runs_folder):
    return Session(Settings(runs_folder=str(runs_folder), default_device="cpu"))


OPENED: list[ServeDialog] = []


@pytest.fixture(autouse=True)
def stop_the_servers_of_each_test():
    """A test that ends with its server running (or fails midway) stops it, so no server
    loads the machine during the tests after it."""
    yield
    for dialog in OPENED:
        dialog.stop_now()
    OPENED.clear()


def make_dialog(qtbot, session, *paths) -> ServeDialog:
    dialog = ServeDialog([str(p) for p in paths], session)
    qtbot.addWidget(dialog)
    OPENED.append(dialog)
    return dialog


def curl_request(command: str) -> dict:
    """What a curl example sends, read back as a shell would split it."""
    words = shlex.split(command.split(" | ")[0].replace("\\\n", " "))
    assert words[0] == "curl"
    headers = [words[i + 1] for i, word in enumerate(words) if word == "-H"]
    body = words[words.index("-d") + 1] if "-d" in words else None
    return {"url": words[1], "headers": headers, "body": json.loads(body) if body else None}


# --- what each run answers, and the examples for it ----------------------------------------------

def test_the_dialog_for_a_text_run_offers_completions_and_waits_for_start(qtbot, session,
                                                                          runs_folder):
    dialog = make_dialog(qtbot, session, runs_folder / "text")
    assert dialog.served == [ServedRun(str(runs_folder / "text"), "text", "completions")]
    assert "text completions" in dialog.example_kind.text()
    assert dialog.status() == "Not running."
    assert dialog.start_button.isEnabled() and not dialog.stop_button.isEnabled()
    assert dialog.host() == "127.0.0.1" and dialog.port_spin.value() == 8000
    assert dialog.key() == dialog.key_edit.text() and len(dialog.key()) >= 40
    # No address yet: the examples wait for the real one.
    assert dialog.url_edit.text() == "" and dialog.curl_view.toPlainText() == ""
    assert dialog.example_model.isHidden()  # one run: nothing to choose between


@pytest.mark.parametrize("name, kind, endpoint", [
    ("pairs", "chat", "/chat/completions"),
    ("classify", "classify", "/classify"),
    ("image", "images", "/images/generations"),
    ("video", "videos", "/videos/generations"),
])
def test_each_kind_of_run_gets_examples_for_its_endpoint(qtbot, session, runs_folder, name,
                                                         kind, endpoint):
    path = runs_folder / name if (runs_folder / name).exists() else DEMO_RUNS[name]
    run = served_run(str(path), session.registry)
    assert run == ServedRun(str(path), path.name, kind)
    url, key = "http://127.0.0.1:8123/v1", "the-key"
    request = curl_request(curl_example(run, url, key))
    assert request["url"] == url + endpoint
    assert request["headers"][0] == "Authorization: Bearer the-key"
    assert request["body"]["model"] == path.name
    program = python_example(run, url, key)
    compile(program, "example.py", "exec")  # it runs as pasted
    assert f"base_url={url!r}" in program and "api_key='the-key'" in program
    assert repr(path.name) in program
    dialog = make_dialog(qtbot, session, path)
    assert dialog.example_kind.text().startswith(f"Examples for {path.name}: ")
    assert f"/v1{endpoint}" in dialog.example_kind.text()


def test_examples_quote_odd_model_names_and_leave_the_header_out_without_a_key():
    run = ServedRun("/runs/it's mine", "it's mine", "completions")
    request = curl_request(curl_example(run, "http://127.0.0.1:9/v1", None))
    assert request["body"]["model"] == "it's mine"
    assert request["headers"] == ["Content-Type: application/json"]
    program = python_example(run, "http://127.0.0.1:9/v1", None)
    compile(program, "example.py", "exec")
    assert "\"it's mine\"" in program and "api_key='not-needed'" in program


def test_several_runs_show_the_examples_of_the_one_chosen(qtbot, session, runs_folder):
    dialog = make_dialog(qtbot, session, runs_folder / "text", runs_folder / "pairs")
    assert not dialog.example_model.isHidden()
    assert [dialog.example_model.itemText(i) for i in range(2)] == ["text", "pairs"]
    assert "text completions" in dialog.example_kind.text()
    dialog.example_model.setCurrentIndex(1)
    assert "chat completions" in dialog.example_kind.text()
    assert "text, pairs" in dialog.windowTitle()


# --- who can reach it, its port and key --------------------------------------------------------

def test_the_local_network_always_uses_the_key(qtbot, session, runs_folder):
    dialog = make_dialog(qtbot, session, runs_folder / "text")
    dialog.use_key.setChecked(False)
    assert dialog.key() is None
    dialog.local_network.setChecked(True)
    assert dialog.host() == "0.0.0.0"
    assert dialog.use_key.isChecked() and not dialog.use_key.isEnabled()
    assert dialog.key() == dialog.key_edit.text()
    dialog.this_computer.setChecked(True)
    assert dialog.host() == "127.0.0.1" and dialog.use_key.isEnabled()


def test_new_key_and_copy(qtbot, session, runs_folder):
    from PySide6.QtGui import QGuiApplication
    dialog = make_dialog(qtbot, session, runs_folder / "text")
    first = dialog.key_edit.text()
    dialog.new_key_button.click()
    assert dialog.key_edit.text() != first and dialog.key() == dialog.key_edit.text()
    dialog.copy_key_button.click()
    assert QGuiApplication.clipboard().text() == dialog.key_edit.text()


@pytest.mark.parametrize("typed, problem", [
    ("my-clients-key_2026", None),
    ("", "The API key is empty"),
    ("two words", "letters, digits and punctuation only"),
    ("schlüssel", "letters, digits and punctuation only"),
])
def test_a_typed_key_is_used_or_refused_before_start(qtbot, session, runs_folder, monkeypatch,
                                                      typed, problem):
    dialog = make_dialog(qtbot, session, runs_folder / "text")
    assert not dialog.key_edit.isReadOnly()
    started = []
    monkeypatch.setattr(QProcess, "start", lambda self, *args: started.append(args))
    dialog.key_edit.setText(typed)
    dialog.start()
    if problem is None:
        assert started and dialog.running_key == typed
    else:
        assert not started and problem in dialog.status()
        dialog.use_key.setChecked(False)  # without a key there is nothing to check
        dialog.start()
        assert started and dialog.running_key is None


def test_the_weights_served_are_the_latest_or_the_best_checkpoint(qtbot, session, runs_folder,
                                                                  monkeypatch):
    dialog = make_dialog(qtbot, session, runs_folder / "text")
    started = []
    monkeypatch.setattr(QProcess, "start", lambda self, program, args: started.append(args))
    dialog.start()
    assert "--checkpoint" not in started[-1]  # the server's default: latest
    dialog.checkpoint_box.setCurrentIndex(dialog.checkpoint_box.findData("best"))
    dialog.start_button.setEnabled(True)
    dialog.server = None  # the first start's process never ran
    dialog.start()
    assert started[-1][-2:] == ["--checkpoint", "best"]
    assert serve_dialog.server_command(["r"], "127.0.0.1", 0, "cpu", "best")[-2:] == [
        "--checkpoint", "best"]


def test_a_taken_port_is_said_and_a_free_one_offered(qtbot, session, runs_folder):
    dialog = make_dialog(qtbot, session, runs_folder / "text")
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        taken = other_program.getsockname()[1]
        dialog.port_spin.setValue(taken)
        assert dialog.port_note.text() == f"Port {taken} is taken by another program."
        assert not dialog.free_port_button.isHidden()
        dialog.free_port_button.click()
        assert dialog.port_spin.value() not in (taken, 0)
        assert dialog.port_note.text() == "" and dialog.free_port_button.isHidden()


def test_port_zero_means_any_free_port(qtbot, session, runs_folder):
    dialog = make_dialog(qtbot, session, runs_folder / "text")
    dialog.port_spin.setValue(0)
    assert dialog.port_spin.text() == "any free port" and dialog.port_note.text() == ""


def test_the_notes_follow_the_theme(qtbot, session, runs_folder):
    from studio.gui import theme
    dialog = make_dialog(qtbot, session, runs_folder / "text")
    try:
        session.theme_changed.emit(theme.apply_theme("dark"))
        assert serve_dialog.COLORS["dark"]["problem"] in dialog.port_note.styleSheet()
    finally:
        session.theme_changed.emit(theme.apply_theme("light"))
    assert serve_dialog.COLORS["light"]["problem"] in dialog.port_note.styleSheet()


def test_the_log_keeps_the_last_lines_and_the_last_words_without_a_line_end(qtbot, session,
                                                                           runs_folder,
                                                                           monkeypatch):
    chatty = ("import sys\n"
              "for i in range(3000): print(f'line {i}', file=sys.stderr)\n"
              "print('error: the last words', end='', file=sys.stderr)\n"
              "sys.exit(2)\n")
    monkeypatch.setattr(serve_dialog, "server_command",
                        lambda *_: [sys.executable, "-c", chatty])
    dialog = make_dialog(qtbot, session, runs_folder / "text")
    dialog.start()
    qtbot.waitUntil(lambda: not dialog.running, timeout=SERVER_WAIT_MS)
    log = dialog.log_view.toPlainText().splitlines()
    assert len(log) == serve_dialog.LOG_LINES
    assert log[-2:] == ["line 2999", "error: the last words"]
    assert dialog.status() == "Could not start: the last words"


# --- the Runs tab's action ---------------------------------------------------------------------

def make_panel(qtbot, session):
    panel = RunsPanel(session)
    qtbot.addWidget(panel)
    return panel


def test_serve_is_offered_for_runs_with_a_checkpoint_only(qtbot, session, runs_folder):
    empty = runs_folder / "empty"
    shutil.copytree(runs_folder / "text", empty)
    for _, folder in RunDir(empty).step_folders():
        shutil.rmtree(folder)
    (empty / "checkpoints" / "index.json").unlink(missing_ok=True)
    panel = make_panel(qtbot, session)
    panel.select_runs([str(empty)])
    assert not panel.serve_button.isEnabled()
    assert "has no checkpoint yet" in panel.serve_button.toolTip()
    panel.select_runs([str(runs_folder / "text")])
    assert panel.serve_button.isEnabled()
    entry = next(a for a in panel.context_menu().actions() if a.text() == "Serve…")
    assert entry.isEnabled()
    panel.select_runs([str(runs_folder / "text"), str(empty)])
    assert not panel.serve_button.isEnabled()


def test_serve_opens_one_dialog_per_set_of_runs_and_shows_it_again(qtbot, session, runs_folder,
                                                                   monkeypatch):
    panel = make_panel(qtbot, session)
    panel.select_runs([str(runs_folder / "text"), str(runs_folder / "classify")])
    panel.serve_button.click()
    (dialog,) = panel.serve_dialogs.values()
    assert dialog.isVisible() and not dialog.isModal()
    assert sorted(run.model for run in dialog.served) == ["classify", "text"]
    dialog.close()
    panel.serve_button.click()
    assert list(panel.serve_dialogs.values()) == [dialog] and dialog.isVisible()
    panel.select_runs([str(runs_folder / "pairs")])
    panel.serve_button.click()
    assert len(panel.serve_dialogs) == 2


def test_a_run_that_cannot_be_read_is_said_in_a_dialog(qtbot, session, runs_folder, monkeypatch):
    panel = make_panel(qtbot, session)
    panel.select_runs([str(runs_folder / "text")])
    (runs_folder / "text" / "config.json").write_text("{not json", encoding="utf-8")
    warned = []
    monkeypatch.setattr(runs_panel_module, "warn", lambda parent, title, text: warned.append(text))
    panel.serve_selected()
    assert warned and "config.json" in warned[0] and not panel.serve_dialogs


def test_the_server_command_names_the_runs_and_keeps_the_key_off_it(runs_folder):
    command = serve_dialog.server_command([str(runs_folder / "text")], "127.0.0.1", 0, "cpu")
    assert command[1:] == ["-m", "studio", "serve", str(runs_folder / "text"), "--host",
                           "127.0.0.1", "--port", "0", "--stop-with-stdin", "--device", "cpu"]
    assert "--device" not in serve_dialog.server_command(["r"], "127.0.0.1", 0, "auto")


# --- the real server ------------------------------------------------------------------------------
# Loading torch and the models on a busy 2-core machine is slow: the waits are generous, and
# nothing here is timed.
SERVER_WAIT_MS = 240_000


def start_and_wait(qtbot, dialog) -> None:
    dialog.start()
    qtbot.waitUntil(lambda: dialog.url is not None or not dialog.running, timeout=SERVER_WAIT_MS)
    assert dialog.url is not None, f"{dialog.status()}\n{dialog.log_view.toPlainText()}"


def process_gone(pid: int) -> bool:
    """Whether no process of this id runs: there is none, or only its exit status is left for
    its parent to collect (a zombie, as a killed orphan stays where nothing collects it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def send_like_curl(command: str) -> httpx.Response:
    request = curl_request(command)
    headers = dict(header.split(": ", 1) for header in request["headers"])
    if request["body"] is None:
        return httpx.get(request["url"], headers=headers, timeout=SERVER_WAIT_MS / 1000)
    return httpx.post(request["url"], headers=headers, json=request["body"],
                      timeout=SERVER_WAIT_MS / 1000)


def test_one_server_for_several_runs_answers_its_examples_and_stop_ends_it(qtbot, session,
                                                                           runs_folder, tmp_path):
    dialog = make_dialog(qtbot, session, *(runs_folder / name for name in ("text", "pairs",
                                                                          "classify")))
    dialog.port_spin.setValue(0)
    start_and_wait(qtbot, dialog)
    url, key = dialog.url, dialog.key()
    port = serve_dialog.url_port(url)
    assert url == f"http://127.0.0.1:{port}/v1" and dialog.url_edit.text() == url
    assert dialog.status() == f"Serving on {url} (port {port}: a free one the system picked)"
    assert dialog.stop_button.isEnabled() and not dialog.start_button.isEnabled()
    assert not dialog.port_spin.isEnabled() and not dialog.new_key_button.isEnabled()

    models = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"}).json()
    assert sorted(model["id"] for model in models["data"]) == ["classify", "pairs", "text"]
    assert httpx.get(f"{url}/models").status_code == 401  # the key is required

    for index, (model, endpoint) in enumerate((("text", "/completions"),
                                               ("pairs", "/chat/completions"),
                                               ("classify", "/classify"))):
        dialog.example_model.setCurrentIndex(index)
        curl, program = dialog.curl_view.toPlainText(), dialog.python_view.toPlainText()
        for example in (curl, program):
            assert url in example and key in example and model in example
        answer = send_like_curl(curl)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == model and endpoint in curl
        ran = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                             cwd=tmp_path, timeout=SERVER_WAIT_MS / 1000)
        assert ran.returncode == 0, f"the {model} example failed:\n{program}\n{ran.stderr}"
        assert ran.stdout.strip()

    pid = dialog.server_pid()
    dialog.stop_button.click()
    qtbot.waitUntil(lambda: not dialog.running, timeout=SERVER_WAIT_MS)
    assert dialog.status() == "Stopped." and process_gone(pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health")
    assert dialog.start_button.isEnabled() and dialog.start_button.text() == "Start again"
    assert dialog.curl_view.toPlainText() == ""  # the examples named a server that is gone


def test_the_image_and_video_examples_write_their_files(qtbot, session, tmp_path):
    """On the built-in demo runs, which the server only reads."""
    dialog = make_dialog(qtbot, session, DEMO_RUNS["image"], DEMO_RUNS["video"])
    dialog.port_spin.setValue(0)
    start_and_wait(qtbot, dialog)
    for index, (model, written, starts) in enumerate((("image", "image.png", b"\x89PNG"),
                                                      ("video", "video.mp4", b"ftyp"))):
        dialog.example_model.setCurrentIndex(index)
        for example in ("curl", "python"):
            folder = tmp_path / f"{model}-{example}"
            folder.mkdir()
            if example == "curl":  # what the curl line sends, then its pipe into python3
                answer = send_like_curl(dialog.curl_view.toPlainText())
                assert answer.status_code == 200, answer.text
                script = shlex.split(dialog.curl_view.toPlainText().split(" | ")[1])[2]
                ran = subprocess.run([sys.executable, "-c", script], input=answer.text,
                                     capture_output=True, text=True, cwd=folder, timeout=60)
            else:
                ran = subprocess.run([sys.executable, "-c", dialog.python_view.toPlainText()],
                                     capture_output=True, text=True, cwd=folder,
                                     timeout=SERVER_WAIT_MS / 1000)
            assert ran.returncode == 0, f"the {model} {example} example failed:\n{ran.stderr}"
            assert starts in (folder / written).read_bytes()[:16]


def test_a_run_that_cannot_load_shows_the_servers_error_and_nothing_runs_on(qtbot, session,
                                                                            runs_folder):
    broken = runs_folder / "broken"
    shutil.copytree(runs_folder / "text", broken)
    for _, folder in RunDir(broken).step_folders():
        (folder / "model.safetensors").write_bytes(b"not weights")
    dialog = make_dialog(qtbot, session, broken)
    dialog.port_spin.setValue(0)
    dialog.start()
    assert dialog.status().startswith("Starting…")
    qtbot.waitUntil(lambda: not dialog.running, timeout=SERVER_WAIT_MS)
    assert dialog.url is None and dialog.error_line, dialog.log_view.toPlainText()
    assert dialog.status() == f"Could not start: {dialog.error_line}"
    assert f"error: {dialog.error_line}" in dialog.log_view.toPlainText()
    assert dialog.server.exitCode() == 2
    assert dialog.start_button.isEnabled() and not dialog.stop_button.isEnabled()


def test_a_taken_port_fails_to_start_then_the_free_port_offered_serves(qtbot, session,
                                                                       runs_folder):
    dialog = make_dialog(qtbot, session, runs_folder / "text")
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        taken = other_program.getsockname()[1]
        dialog.port_spin.setValue(taken)
        dialog.start()  # started anyway, despite the note
        qtbot.waitUntil(lambda: not dialog.running, timeout=SERVER_WAIT_MS)
        assert dialog.status().startswith(f"Could not start: cannot listen on 127.0.0.1:{taken}")
        assert "Pick another port" in dialog.status() and "--" not in dialog.status()
        assert dialog.port_note.text() == f"Port {taken} is taken by another program."
        offered = dialog.free_port_button.text()
        dialog.free_port_button.click()
        start_and_wait(qtbot, dialog)
    assert dialog.url == f"http://127.0.0.1:{offered.rsplit(' ', 1)[1]}/v1"


def test_a_server_that_dies_says_so_and_closing_the_dialog_stops_the_next(qtbot, session,
                                                                          runs_folder):
    dialog = make_dialog(qtbot, session, runs_folder / "text")
    dialog.port_spin.setValue(0)
    start_and_wait(qtbot, dialog)
    os.kill(dialog.server_pid(), signal.SIGKILL)  # as the out-of-memory killer would
    qtbot.waitUntil(lambda: not dialog.running, timeout=SERVER_WAIT_MS)
    assert dialog.status().startswith("The server stopped by itself: it crashed or was killed")
    assert dialog.url_edit.text() == "" and dialog.start_button.isEnabled()

    dialog.show()  # closing is what a user does to a dialog on the screen
    start_and_wait(qtbot, dialog)
    pid = dialog.server_pid()
    dialog.close()
    assert not dialog.isVisible()
    qtbot.waitUntil(lambda: not dialog.running, timeout=SERVER_WAIT_MS)
    assert dialog.status() == "Stopped." and process_gone(pid)


def test_a_server_is_killed_when_python_exits_without_closing_the_window(tmp_path, runs_folder):
    """A test session that ends with a server running: Qt's objects are not destroyed at
    that exit, so no QProcess ends its child; the dialog's exit hook does."""
    inner = tmp_path / "test_leaves_a_server.py"
    pid_file = tmp_path / "pid"
    inner.write_text(f"""
import sys
from studio.gui import serve_dialog
from studio.gui.session import Session
from studio.gui.settings import Settings

WAITS = ("import time; print('serving on http://127.0.0.1:9/v1 (models: text)', flush=True); "
         "time.sleep(600)")


def test_leaves_its_server_running(qtbot, monkeypatch):
    monkeypatch.setattr(serve_dialog, "server_command", lambda *_: [sys.executable, "-c", WAITS])
    dialog = serve_dialog.ServeDialog([{str(runs_folder / "text")!r}], Session(Settings()))
    qtbot.addWidget(dialog)
    dialog.start()
    qtbot.waitUntil(lambda: dialog.url is not None, timeout=60_000)
    open({str(pid_file)!r}, "w").write(str(dialog.server_pid()))
""", encoding="utf-8")
    ran = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(inner)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=SERVER_WAIT_MS / 1000)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    pid = int(pid_file.read_text())
    try:
        assert process_gone(pid)  # killed before the session's Python ended
    finally:
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_closing_the_window_stops_every_server_it_started(qtbot, session, runs_folder):
    from studio.gui.window import MainWindow
    window = MainWindow(session)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.runs_panel is not None, timeout=SERVER_WAIT_MS)
    panel = window.runs_panel
    pids = []
    for name in ("text", "classify"):
        panel.select_runs([str(runs_folder / name)])
        panel.serve_button.click()
        dialog = panel.serve_dialogs[frozenset([str(runs_folder / name)])]
        dialog.port_spin.setValue(0)
        start_and_wait(qtbot, dialog)
        pids.append(dialog.server_pid())
    window.close()
    assert all(process_gone(pid) for pid in pids)
