"""`studio serve` under load (issue 16 item 1): a bounded queue (429 with Retry-After), batches,
timeouts, clients that go away, and a shutdown that answers everyone. The servers run in this
process (uvicorn in a thread) on the demo runs, so a test can hold a model's worker at a gate:
what is queued, refused or under way is then decided by the test, not by the machine's speed."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import signal
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from conftest import ROOT
from studio.serve import ServeSettings
from studio.serve.app import FileStore, Metrics, create_app
from studio.serve.server import bind
from studio.serve.validate import ApiError
from studio.serve.workers import load_models, start_workers, stop_workers

DEMO = ROOT / "assets" / "demo"
PATIENCE = 120  # seconds: the most any wait below may take before the test fails (nothing hangs)


# --- a server in this process ----------------------------------------------------------------------

@contextlib.contextmanager
def serving(models, **settings):
    """The models served on a free port of 127.0.0.1 until the block ends: (base URL, workers)."""
    settings = ServeSettings(port=0, **settings)
    metrics = Metrics()
    workers = start_workers(models, settings, metrics)
    metrics.watch(workers)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(models, settings, metrics), lifespan="off",
                                           log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the server to start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", workers
    finally:
        stop_workers(workers)
        server.should_exit = True
        thread.join(PATIENCE)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


def wait_for(condition, what: str):
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"waited {PATIENCE} s for {what}")


def health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=PATIENCE).json()


def held(url: str) -> int:
    """Requests the server's models hold: queued or under way."""
    state = health(url)
    return state["queued"] + state["active"]


def metric(url: str, line_start: str) -> float:
    """A series of /metrics (0 while it has none)."""
    text = httpx.get(f"{url}/metrics", timeout=PATIENCE).text
    return next((float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith(line_start)), 0.0)


class Gate:
    """Holds a worker before each step of its generator while closed. `holding` says that the
    worker waits at it: what it has queued and under way then stays as it is."""

    def __init__(self):
        self.opened = threading.Event()
        self.opened.set()
        self.holding = threading.Event()

    def close(self):
        self.opened.clear()

    def open(self):
        self.opened.set()

    def pass_(self):
        if not self.opened.is_set():
            self.holding.set()
        assert self.opened.wait(PATIENCE), "the gate stayed closed"
        self.holding.clear()


class GatedDecoder:
    """A decoder whose steps wait at the gate."""

    def __init__(self, decoder, gate: Gate):
        self.decoder, self.gate = decoder, gate
        self.max_rows = decoder.max_rows

    def add(self, params, seed, prompt):
        return self.decoder.add(params, seed, prompt)

    def prompt_tokens(self, row):
        return self.decoder.prompt_tokens(row)

    def drop(self, row):
        self.decoder.drop(row)

    @property
    def active(self):
        return self.decoder.active

    def step(self):
        self.gate.pass_()
        return self.decoder.step()


@pytest.fixture(scope="module")
def text_model():
    [model] = load_models([str(DEMO / "text")], device="cpu")
    return model


@pytest.fixture(scope="module")
def image_model():
    [model] = load_models([str(DEMO / "image")], device="cpu")
    return model


@pytest.fixture(params=["batched", "one at a time"])
def gated_text(request, text_model, monkeypatch):
    """The demo text run with a gate before every step: decoded in batches (the generator's
    decoder) or, as for a generator without one, one stream at a time."""
    gate, gen = Gate(), text_model.gen
    if request.param == "batched":
        opened = gen.open_decoder
        monkeypatch.setattr(gen, "open_decoder", lambda rows: GatedDecoder(opened(rows), gate))
    else:
        streamed = gen.stream

        def gated_stream(params, seed=0, prompt=None):
            for piece in streamed(params, seed, prompt):
                gate.pass_()
                yield piece
        monkeypatch.setattr(gen, "open_decoder", lambda rows: None)
        monkeypatch.setattr(gen, "stream", gated_stream)
    return text_model, gate


def complete(url: str, **fields) -> httpx.Response:
    body = {"model": "text", "max_tokens": 8, "temperature": 0, **fields}
    return httpx.post(f"{url}/v1/completions", json=body, timeout=PATIENCE)


# --- the queue -------------------------------------------------------------------------------------

def test_32_clients_are_each_answered_or_told_to_retry(gated_text):
    model, gate = gated_text
    prompts = ["The ", "It is ", "A ", "import "]
    with serving([model], queue=4, max_batch=4) as (url, _):
        alone = {p: complete(url, prompt=p).json()["choices"][0]["text"] for p in prompts}
        gate.close()
        replies: list[httpx.Response | None] = [None] * 32

        def client(i):
            replies[i] = complete(url, prompt=prompts[i % 4], seed=i)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()

        def settled():  # every request refused, or held by the model (queued or under way)
            refused = sum(r is not None and r.status_code == 429 for r in replies)
            state = health(url)
            held = refused + state["queued"] + state["active"] == 32
            return (refused, state) if held and gate.holding.is_set() else None
        refused, held = wait_for(settled, "all 32 requests to be queued, under way or refused")
        assert held["queued"] <= 4  # the queue never holds more than --queue
        gate.open()
        for thread in threads:
            thread.join(PATIENCE)
        assert not any(thread.is_alive() for thread in threads), "a client hung"
    answered = [(i, r) for i, r in enumerate(replies) if r.status_code == 200]
    assert len(answered) == 32 - refused == held["queued"] + held["active"]
    for i, reply in answered:
        assert reply.json()["choices"][0]["text"] == alone[prompts[i % 4]]
    for reply in replies:
        if reply.status_code != 200:
            assert reply.status_code == 429 and reply.headers["Retry-After"] == "1"
            error = reply.json()["error"]
            assert error["code"] == "queue_full" and "--queue" in error["message"]


def test_choices_beyond_the_free_rows_wait_for_one(text_model):
    with serving([text_model], max_batch=2) as (url, _):
        many = complete(url, prompt="The ", n=5, temperature=0.8, seed=9, max_tokens=10).json()
        for choice in many["choices"]:
            alone = complete(url, prompt="The ", temperature=0.8, seed=9 + choice["index"],
                             max_tokens=10).json()
            assert choice["text"] == alone["choices"][0]["text"]


# --- timeouts, disconnects, shutdown ---------------------------------------------------------------

def test_a_request_over_the_timeout_is_dropped(gated_text):
    model, gate = gated_text
    with serving([model], timeout=1) as (url, _):
        gate.close()
        reply = complete(url, prompt="The ")
        assert reply.status_code == 504
        assert reply.json()["error"]["code"] == "timeout" and "--timeout" in reply.text
        with httpx.stream("POST", f"{url}/v1/completions", timeout=PATIENCE, json={
                "model": "text", "prompt": "The ", "max_tokens": 8, "stream": True}) as stream:
            said = stream.read().decode()
        # A stream either never started (504) or ends with the error as its last event.
        if stream.status_code == 200:
            last = json.loads(said.strip().split("\n\n")[-1].removeprefix("data: "))
            assert last["error"]["code"] == "timeout" and "[DONE]" not in said
        else:
            assert stream.status_code == 504
        gate.open()
        wait_for(lambda: health(url) == {"status": "ok", "queued": 0, "active": 0},
                 "the timed-out work to be dropped")
        assert metric(url, 'studio_serve_tokens_generated_total{model="text"}') < 8 * 2


@pytest.mark.parametrize("batched", [True, False])
def test_a_client_that_goes_away_mid_stream_frees_its_row(text_model, monkeypatch, batched):
    if not batched:
        monkeypatch.setattr(text_model.gen, "open_decoder", lambda rows: None)
    asked = 1024
    with serving([text_model], max_tokens=asked) as (url, _):
        with httpx.stream("POST", f"{url}/v1/completions", timeout=PATIENCE, json={
                "model": "text", "prompt": "The ", "max_tokens": asked, "stream": True,
                "temperature": 1}) as stream:
            lines = stream.iter_lines()
            for _ in range(3):
                while not next(lines).startswith("data: "):
                    pass
        # The connection is closed: the server drops the row at its next step.
        wait_for(lambda: health(url)["active"] == 0, "the row to be freed")
        made = metric(url, 'studio_serve_tokens_generated_total{model="text"}')
        assert 3 <= made < asked  # the generation stopped far short of what it was asked for
        assert health(url) == {"status": "ok", "queued": 0, "active": 0}


def test_a_client_that_goes_away_while_queued_is_never_worked_on(gated_text):
    model, gate = gated_text
    with serving([model], max_batch=1) as (url, _):
        gate.close()
        first = threading.Thread(target=complete, kwargs={"url": url, "prompt": "The "})
        first.start()
        wait_for(lambda: health(url)["active"] == 1, "the first request to be under way")
        with pytest.raises(httpx.ReadTimeout):  # it waits behind the first, so it gives up
            httpx.post(f"{url}/v1/completions", timeout=1.5, json={
                "model": "text", "prompt": "gone ", "max_tokens": 8, "temperature": 0})
        wait_for(lambda: metric(url, 'studio_serve_requests_total{endpoint="/v1/completions",'
                                     'status="499"}') == 1, "the server to see the client leave")
        gate.open()
        first.join(PATIENCE)
        wait_for(lambda: health(url) == {"status": "ok", "queued": 0, "active": 0},
                 "the queue to empty")
        # Only the first request's 8 tokens were made: the one whose client left never started.
        assert metric(url, 'studio_serve_tokens_generated_total{model="text"}') == 8


def test_stopping_answers_every_waiting_request(gated_text):
    model, gate = gated_text
    with serving([model], max_batch=1) as (url, workers):
        gate.close()
        replies = {}

        def client(name, **fields):
            replies[name] = complete(url, prompt="The ", **fields)
        threads = [threading.Thread(target=client, args=(f"plain {i}",)) for i in range(3)]
        threads.append(threading.Thread(target=client, args=("streamed",), kwargs={"stream": True}))
        for thread in threads:
            thread.start()
        wait_for(lambda: gate.holding.is_set() and held(url) == 4, "4 requests held")
        stop_workers(workers, wait=0)  # what Ctrl+C does first
        gate.open()
        for thread in threads:
            thread.join(PATIENCE)
        assert not any(thread.is_alive() for thread in threads), "a client hung"
        assert health(url)["status"] == "stopping"
        refused = complete(url, prompt="late ")
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
    for name, reply in replies.items():
        if reply.status_code == 200:  # a stream that had started ends with the error
            assert name == "streamed" and '"shutting_down"' in reply.text
        else:
            assert reply.status_code == 503
            assert reply.json()["error"]["code"] == "shutting_down"


def long_completion_under_way(server) -> tuple[threading.Thread, list[httpx.Response]]:
    """A completion that would run for long, sent from a thread, once the server works on it:
    the thread, and the list its reply goes into."""
    reply: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: reply.append(httpx.post(
        f"{server.url}/completions", timeout=PATIENCE,
        json={"model": "text", "prompt": "The ", "max_tokens": 100000})))
    thread.start()
    wait_for(lambda: httpx.get(f"{server.root}/health").json()["active"] == 1,
             "the request to be under way")
    return thread, reply


def test_ctrl_c_stops_the_cli_server_and_answers_its_clients():
    from test_serve import CliServer
    server = CliServer([DEMO / "text", "--device", "cpu", "--max-tokens", "100000"])
    thread, reply = long_completion_under_way(server)
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=PATIENCE) == 130  # as every command stopped by Ctrl+C
    thread.join(PATIENCE)
    assert reply[0].status_code == 503 and reply[0].json()["error"]["code"] == "shutting_down"
    assert "Traceback" not in "".join(server.stderr)


def test_a_server_started_to_stop_with_stdin_stops_when_its_starter_goes():
    """The window starts its servers so: the pipe closes when the window's process ends, even
    killed, and the server must not serve on without it."""
    from test_serve import CliServer
    server = CliServer([DEMO / "text", "--device", "cpu", "--max-tokens", "100000",
                        "--stop-with-stdin"])
    thread, reply = long_completion_under_way(server)
    server.process.stdin.close()
    assert server.process.wait(timeout=PATIENCE) == 0
    thread.join(PATIENCE)
    assert reply[0].status_code == 503 and reply[0].json()["error"]["code"] == "shutting_down"
    assert "Traceback" not in "".join(server.stderr)


# --- image batches ---------------------------------------------------------------------------------

@pytest.mark.parametrize("max_batch", [4, 1])
def test_queued_image_requests_are_sampled_in_one_batch(image_model, monkeypatch, max_batch):
    gate, batches = Gate(), []
    sample_batch = image_model.gen.sample_batch

    def gated(requests):
        batches.append(len(requests))
        gate.pass_()
        return sample_batch(requests)
    monkeypatch.setattr(image_model.gen, "sample_batch", gated)
    asks = [{"prompt": "star", "seed": 1}, {"prompt": "circle", "seed": 2, "n": 2},
            {"prompt": "hexagon", "seed": 3}, {"prompt": "", "seed": 4, "truncation": 0.5}]
    with serving([image_model], max_batch=max_batch) as (url, _):
        alone = {i: post_image(url, ask) for i, ask in enumerate(asks) if i != 2}
        batches.clear()
        gate.close()
        first = threading.Thread(target=post_image, args=(url, {"seed": 0}))
        first.start()
        wait_for(lambda: batches, "the first batch")
        replies = {}
        threads = [threading.Thread(target=lambda i=i, a=a: replies.__setitem__(i, post_image(url, a)))
                   for i, a in enumerate(asks)]
        for thread in threads:
            thread.start()
        wait_for(lambda: health(url)["queued"] == 4, "4 requests queued")
        gate.open()
        for thread in threads + [first]:
            thread.join(PATIENCE)
    assert batches[1] == min(4, max_batch)  # the queued requests, together up to --max-batch
    assert max(batches) <= max_batch
    for i, reply in replies.items():
        if i == 2:  # a class the run has not: only this request is refused
            assert reply.status_code == 400 and "hexagon" in reply.json()["error"]["message"]
        else:
            assert reply.status_code == 200
            batched, single = reply.json()["data"], alone[i].json()["data"]
            assert [d["studio"]["meta"] for d in batched] == [d["studio"]["meta"] for d in single]
            for one, other in zip(batched, single):  # the same images, float rounding aside
                assert np.abs(pixels(one) - pixels(other)).max() <= 2


def post_image(url: str, ask: dict) -> httpx.Response:
    return httpx.post(f"{url}/v1/images/generations", json={"model": "image", **ask},
                      timeout=PATIENCE)


def pixels(item: dict) -> np.ndarray:
    png = Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))
    return np.asarray(png.convert("RGB")).astype(int)


# --- memory ----------------------------------------------------------------------------------------

def resident_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:  # Linux, where CI runs
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_bursts_of_32_clients_leave_the_servers_memory_where_it_was():
    """Waves of 32 clients at once against a small queue, images as urls kept in the file
    store, streams cut short: what the server holds for them is bounded, so its memory after
    many waves is what it was after the first."""
    from test_serve import CliServer
    server = CliServer([DEMO / "text", DEMO / "image", "--device", "cpu", "--queue", "4",
                        "--max-batch", "4"])

    def one_client(i: int) -> int:
        with httpx.Client(timeout=PATIENCE) as client:
            if i % 3 == 0:
                return client.post(f"{server.url}/images/generations", json={
                    "model": "image", "n": 2, "seed": i, "response_format": "url"}).status_code
            if i % 3 == 1:
                with client.stream("POST", f"{server.url}/completions", json={
                        "model": "text", "prompt": "The ", "max_tokens": 200, "seed": i,
                        "stream": True}) as reply:
                    next(reply.iter_lines(), None)  # then the client goes away
                    return reply.status_code
            return client.post(f"{server.url}/completions", json={
                "model": "text", "prompt": "The ", "max_tokens": 20, "seed": i}).status_code

    def wave(number: int) -> list[int]:
        threads, codes = [], [0] * 32
        for i in range(32):
            threads.append(threading.Thread(target=lambda i=i: codes.__setitem__(
                i, one_client(number * 32 + i))))
            threads[-1].start()
        for thread in threads:
            thread.join(PATIENCE)
        assert not any(thread.is_alive() for thread in threads), "a client hung"
        return codes

    try:
        for number in range(2):  # the first waves fill caches and pools once
            wave(number)
        settled = resident_mib(server.process.pid)
        codes = [code for number in range(2, 10) for code in wave(number)]
        wait_for(lambda: httpx.get(f"{server.root}/health").json()["active"] == 0,
                 "the server to be idle")
        grown = resident_mib(server.process.pid) - settled
    finally:
        server.stop()
    assert set(codes) <= {200, 429} and 200 in codes and 429 in codes, sorted(set(codes))
    assert grown < 64, f"the server grew {grown:.0f} MiB over 8 waves of 32 clients"


def test_the_file_store_keeps_the_newest_within_its_size():
    store = FileStore(max_bytes=100)
    first = store.put(b"a" * 40, "png")
    second = store.put(b"b" * 40, "png")
    third = store.put(b"c" * 40, "gif")
    assert store.get(first) is None and store.size == 80
    assert store.get(second) == (b"b" * 40, "image/png")
    assert store.get(third) == (b"c" * 40, "image/gif")
    assert first != second != third and len(second) > 20  # unguessable ids
    with pytest.raises(ApiError) as too_big:
        store.put(b"d" * 101, "mp4")
    assert too_big.value.status == 400 and "b64_json" in too_big.value.message


# --- failures ----------------------------------------------------------------------------------------

def test_a_generator_that_fails_answers_500_and_logs_why(image_model, monkeypatch, capfd):
    def broken(requests):
        raise RuntimeError("boom in the generator")
    monkeypatch.setattr(image_model.gen, "sample_batch", broken)
    with serving([image_model]) as (url, _):
        for seed in (1, 2):  # the model goes on serving
            reply = post_image(url, {"seed": seed})
            assert reply.status_code == 500
            error = reply.json()["error"]
            assert error["type"] == "server_error" and error["code"] == "generator_failed"
            assert "RuntimeError" in error["message"] and "log" in error["message"]
            assert "Traceback" not in reply.text and "boom" not in reply.text
    said = capfd.readouterr().err
    assert "Traceback" in said and "boom in the generator" in said


def test_a_failure_outside_the_generator_is_a_500_in_openais_shape(image_model, monkeypatch,
                                                                   capfd):
    import studio.serve.app as app

    def broken(*args):
        raise ValueError("kaboom while encoding")
    monkeypatch.setattr(app, "encode", broken)
    with serving([image_model]) as (url, _):
        reply = post_image(url, {"seed": 1})
        assert reply.status_code == 500
        assert reply.json()["error"]["code"] == "internal_error"
        assert "kaboom" not in reply.text and "Traceback" not in reply.text
        assert post_image(url, {"seed": 1, "response_format": "nope"}).status_code == 400
    assert "kaboom while encoding" in capfd.readouterr().err  # the traceback, in the log


def test_a_worker_that_fails_refuses_what_follows(text_model, monkeypatch, capfd):
    def broken(rows):
        raise RuntimeError("no decoder today")
    monkeypatch.setattr(text_model.gen, "open_decoder", broken)
    with serving([text_model]) as (url, workers):
        workers[0].join(PATIENCE)  # it failed at once
        reply = complete(url, prompt="The ")
        assert reply.status_code == 500 and reply.json()["error"]["code"] == "model_failed"
    assert "no decoder today" in capfd.readouterr().err
