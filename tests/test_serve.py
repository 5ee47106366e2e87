"""`studio serve` (issue 16 item 1) as clients meet it: the real CLI in a child process on a
free port, serving a tiny run trained on prompt/response pairs, the demo text, image and video
runs and a tiny classifier, talked to with the official `openai` client and with httpx. Each
answer is checked against what `studio generate` (api.generate) makes for the same seed."""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from conftest import ROOT, run_cli
from studio import api

KEY = "test-key-0123456789"
DEMO = ROOT / "assets" / "demo"
TINY = ["n_layer=1", "n_head=2", "n_embd=32", "batch_size=8", "device=cpu", "eval_every=0",
        "preview_every=0"]
MAX_TOKENS, MAX_N, MAX_FRAMES, MAX_BODY = 48, 4, 24, 8192


class CliServer:
    """`studio serve ... --port 0` in a child process: its URL from the first stdout line."""

    def __init__(self, args: list[str], env: dict | None = None, timeout: float = 300):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "studio", "serve", *map(str, args), "--port", "0"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.stderr: list[str] = []
        threading.Thread(target=self._keep_stderr, daemon=True).start()
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.process.stdout.readline()),
                         daemon=True).start()
        try:
            first = lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise AssertionError(f"studio serve did not start: {''.join(self.stderr)}") from None
        assert first.startswith("serving on "), (first, "".join(self.stderr))
        self.first_line = first.strip()
        self.url = first.split()[2]  # http://127.0.0.1:PORT/v1
        self.root = self.url.removesuffix("/v1")

    def _keep_stderr(self):
        for line in self.process.stderr:
            self.stderr.append(line)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=60)
        return self.process.returncode


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny run trained on the built-in prompt/response pairs ("shop"), a tiny classifier of
    the built-in reviews ("reviews"), a tiny tagger of the built-in named entities ("names"),
    and the demo text, image and video runs (read only)."""
    root = tmp_path_factory.mktemp("serve-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_CACHE_DIR", str(root / "cache"))
        api.train("text", data="builtin:customer-service", run_dir=str(root / "shop"),
                  settings=[*TINY, "block_size=128"], max_steps=3, events="none")
        api.train("text", data="builtin:sentiment", run_dir=str(root / "reviews"),
                  settings=[*TINY, "block_size=64", "task=classify"], max_steps=3, events="none")
        api.train("text", data="builtin:entities", run_dir=str(root / "names"),
                  settings=[*TINY, "block_size=64", "task=tag"], max_steps=3, events="none")
    return {"shop": root / "shop", "reviews": root / "reviews", "names": root / "names",
            "text": DEMO / "text", "image": DEMO / "image", "video": DEMO / "video"}


@pytest.fixture(scope="module")
def server(runs):
    served = CliServer([*runs.values(), "--max-tokens", MAX_TOKENS, "--max-n", MAX_N,
                        "--max-frames", MAX_FRAMES, "--max-body", MAX_BODY, "--device", "cpu"],
                       env={"STUDIO_API_KEY": KEY})
    yield served
    served.stop()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.root, timeout=120,
                      headers={"Authorization": f"Bearer {KEY}"}) as session:
        yield session


def generated(run: Path, prompt, seed: int, **settings) -> str:
    """What `studio generate` makes for the same request (one sample)."""
    said = [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in settings.items()]
    return api.generate(str(run), prompt=prompt, n=1, seed=seed, settings=said,
                        device="cpu")[0].data


def assert_openai_error(response: httpx.Response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert "Traceback" not in error["message"]
    for word in words:
        assert word.lower() in error["message"].lower(), (word, error)
    return error


# --- start-up ------------------------------------------------------------------------------------

def test_the_server_says_where_it_listens_and_who_can_reach_it(server, client):
    assert server.first_line.startswith("serving on http://127.0.0.1:")
    assert server.first_line.endswith("(models: shop, reviews, names, text, image, video)")
    said = "".join(server.stderr)
    assert "only this machine can reach it" in said and "API key" in said
    models = {model.id: model for model in client.models.list().data}
    assert set(models) == {"shop", "reviews", "names", "text", "image", "video"}
    assert models["image"].model_extra["studio"]["generator"] == "image"
    assert models["reviews"].model_extra["studio"]["task"] == "classify"


# --- text ----------------------------------------------------------------------------------------

def test_a_completion_is_what_studio_generate_makes(runs, client):
    prompt = "The "
    answer = client.completions.create(model="text", prompt=prompt, max_tokens=20,
                                       temperature=0, seed=3)
    choice = answer.choices[0]
    assert prompt + choice.text == generated(runs["text"], prompt, 3, temperature=0, top_k=0,
                                             max_new_tokens=20)
    assert choice.finish_reason == "length"
    assert answer.usage.completion_tokens == 20 and answer.usage.prompt_tokens == len(prompt)
    assert answer.usage.total_tokens == 20 + len(prompt)
    lineage = choice.model_extra["studio"]
    assert lineage["run"] == str(runs["text"]) and lineage["generator"] == "text"
    assert lineage["checkpoint"].startswith("step_") and lineage["seed"] == 3
    assert lineage["settings"]["temperature"] == 0 and lineage["settings"]["max_new_tokens"] == 20


def test_choice_i_uses_seed_plus_i(runs, client):
    answer = client.completions.create(model="text", prompt="A", max_tokens=12, temperature=0.9,
                                       top_p=0.95, n=3, seed=40)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    for i, choice in enumerate(answer.choices):
        assert choice.model_extra["studio"]["seed"] == 40 + i
        assert "A" + choice.text == generated(runs["text"], "A", 40 + i, temperature=0.9,
                                              top_p=0.95, top_k=0, max_new_tokens=12)


def test_a_request_without_a_seed_reports_the_one_it_drew(client):
    answer = client.completions.create(model="text", prompt="x", max_tokens=2)
    seed = answer.choices[0].model_extra["studio"]["seed"]
    assert isinstance(seed, int) and seed >= 0
    assert answer.choices[0].model_extra["studio"]["settings"]["temperature"] == 1  # OpenAI's


def test_a_list_of_prompts_gets_n_choices_each(runs, client):
    answer = client.completions.create(model="text", prompt=["The ", "It "], max_tokens=6,
                                       temperature=0, n=2, seed=0)
    texts = [c.text for c in sorted(answer.choices, key=lambda c: c.index)]
    for prompt, pair in zip(["The ", "It "], (texts[:2], texts[2:])):
        alone = generated(runs["text"], prompt, 0, temperature=0, top_k=0, max_new_tokens=6)
        assert [prompt + t for t in pair] == [alone, alone]
    assert answer.usage.prompt_tokens == len("The ") + len("It ")


def test_a_stop_string_ends_the_choice(client):
    whole = client.completions.create(model="text", prompt="The ", max_tokens=30,
                                      temperature=0).choices[0].text
    stop = whole[5:7]
    cut = client.completions.create(model="text", prompt="The ", max_tokens=30, temperature=0,
                                    stop=[stop]).choices[0]
    assert cut.text == whole[:whole.index(stop)] and cut.finish_reason == "stop"


def test_streamed_text_joins_into_the_whole_answer(client):
    whole = client.completions.create(model="text", prompt="The ", max_tokens=25,
                                      temperature=0, seed=1)
    chunks = list(client.completions.create(model="text", prompt="The ", max_tokens=25,
                                            temperature=0, seed=1, stream=True,
                                            stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" for c in chunks)
    text_chunks = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].text for c in text_chunks) == whole.choices[0].text
    assert text_chunks[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in text_chunks[:-1])
    assert text_chunks[-1].choices[0].model_extra["studio"]["seed"] == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 25


def test_sse_frames_are_openais(http):
    with http.stream("POST", "/v1/completions", json={"model": "text", "prompt": "a",
                                                      "max_tokens": 3, "stream": True}) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        body = reply.read().decode()
    frames = body.split("\n\n")
    assert frames[-1] == "" and frames[-2] == "data: [DONE]"
    assert all(frame.startswith("data: {") for frame in frames[:-2])


def test_chat_on_a_pairs_run_answers_as_its_prompt_would(runs, client):
    question = "Can I return my mug?"
    chat = client.chat.completions.create(
        model="shop", messages=[{"role": "user", "content": question}], max_tokens=30,
        temperature=0, seed=5)
    completion = client.completions.create(model="shop", prompt=question, max_tokens=30,
                                           temperature=0, seed=5)
    answer = chat.choices[0]
    assert chat.object == "chat.completion" and answer.message.role == "assistant"
    assert answer.message.content == completion.choices[0].text
    assert answer.message.content == generated(runs["shop"], question, 5, temperature=0,
                                               top_k=0, max_new_tokens=30)
    assert answer.finish_reason in ("stop", "length")
    assert chat.usage.prompt_tokens == completion.usage.prompt_tokens > len(question)


def test_a_streamed_chat_opens_with_the_role_and_ends_with_the_reason(client):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Where is my order?"}]
    whole = client.chat.completions.create(model="shop", messages=messages, max_tokens=20,
                                           temperature=0)
    chunks = list(client.chat.completions.create(model="shop", messages=messages,
                                                 max_tokens=20, temperature=0, stream=True))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == \
        whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_chat_messages_are_checked(http):
    for messages, param in (([], "messages"), ([{"role": "tool", "content": "x"}], "messages[0].role"),
                            ([{"role": "user", "content": [{"type": "image_url"}]}],
                             "messages[0].content")):
        error = assert_openai_error(http.post("/v1/chat/completions", json={
            "model": "shop", "messages": messages}), 400)
        assert error["param"] == param
    asked = {"model": "shop", "temperature": 0, "seed": 0}
    in_parts = http.post("/v1/chat/completions", json={**asked, "max_completion_tokens": 6,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Can I "},
                                                  {"type": "text", "text": "pay later?"}]}]})
    whole = http.post("/v1/chat/completions", json={**asked, "max_tokens": 6, "messages": [
        {"role": "user", "content": "Can I pay later?"}]})
    assert in_parts.status_code == whole.status_code == 200, in_parts.text
    assert in_parts.json()["choices"][0]["message"] == whole.json()["choices"][0]["message"]
    assert in_parts.json()["usage"] == whole.json()["usage"]


def test_chat_on_a_plain_text_run_is_refused(client, http):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="text", messages=[{"role": "user", "content": "hi"}])
    assert "completions" in str(refused.value)
    reply = http.post("/v1/chat/completions", json={
        "model": "text", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert_openai_error(reply, 400, "plain text")


# --- images and video ----------------------------------------------------------------------------

def decoded_png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def test_images_are_pngs_of_the_runs_size_with_their_lineage(runs, client):
    answer = client.images.generate(model="image", prompt="star", n=2, size="32x32",
                                    extra_body={"seed": 11, "truncation": 0.7})
    assert len(answer.data) == 2
    for i, item in enumerate(answer.data):
        image = decoded_png(item.b64_json)
        assert image.shape == (32, 32, 3)
        made = api.generate(str(runs["image"]), prompt="star", n=1, seed=11 + i,
                            settings=["truncation=0.7"], device="cpu")[0].data
        assert np.abs(image.astype(int) - made[..., :3].astype(int)).max() <= 2
        lineage = item.model_extra["studio"]
        assert lineage["seed"] == 11 + i and lineage["meta"]["class"] == "star"
        assert lineage["settings"]["truncation"] == 0.7 and lineage["generator"] == "image"


def test_an_image_url_is_served_from_memory(http):
    reply = http.post("/v1/images/generations", json={"model": "image", "prompt": "",
                                                      "response_format": "url", "seed": 2})
    assert reply.status_code == 200, reply.text
    url = reply.json()["data"][0]["url"]
    assert url.startswith(f"{str(http.base_url).rstrip('/')}/v1/files/") and url.endswith(".png")
    image = http.get(url)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (32, 32)
    assert httpx.get(url).status_code == 401  # the key guards the files too
    assert_openai_error(http.get("/v1/files/nothing.png"), 404, "no file")


def test_an_image_size_the_run_does_not_make_is_refused(http):
    error = assert_openai_error(http.post("/v1/images/generations", json={
        "model": "image", "prompt": "star", "size": "1024x1024"}), 400, "32x32")
    assert error["param"] == "size"


def test_videos_come_as_mp4_or_gif(http):
    import imageio.v3 as iio
    reply = http.post("/v1/videos/generations", json={"model": "video", "n": 2, "seed": 4,
                                                      "frames": 12})
    assert reply.status_code == 200, reply.text
    items = reply.json()["data"]
    assert len(items) == 2 and [i["studio"]["seed"] for i in items] == [4, 5]
    first = items[0]
    assert first["format"] == "mp4" and first["frames"] == 12
    assert (first["width"], first["height"]) == (32, 32)
    clip = iio.imread(base64.b64decode(first["b64_json"]), extension=".mp4", plugin="FFMPEG")
    assert clip.shape[0] == 12
    gif = http.post("/v1/videos/generations", json={"model": "video", "format": "gif",
                                                    "frames": 6, "class_label": 1})
    assert gif.status_code == 200, gif.text
    frames = iio.imread(base64.b64decode(gif.json()["data"][0]["b64_json"]), extension=".gif")
    assert frames.shape[:3] == (6, 32, 32)
    assert gif.json()["data"][0]["studio"]["settings"]["class_label"] == 1


def test_frames_over_the_servers_limit_are_refused(http):
    assert_openai_error(http.post("/v1/videos/generations", json={
        "model": "video", "frames": MAX_FRAMES + 1}), 400, "--max-frames")


# --- classify ------------------------------------------------------------------------------------

def test_the_openai_clients_own_post_reaches_the_studios_endpoints(client):
    answer = client.post("/classify", cast_to=object, body={"model": "reviews", "input": "Nice"})
    assert answer["data"][0]["label"] in answer["data"][0]["probabilities"]
    clip = client.post("/videos/generations", cast_to=object, body={
        "model": "video", "frames": 4, "format": "gif", "seed": 0})
    assert clip["data"][0]["frames"] == 4 and clip["data"][0]["b64_json"]


def test_a_classifier_answers_each_text(runs, http):
    texts = ["I love this lamp, it works perfectly.", "The kettle broke after two days."]
    reply = http.post("/v1/classify", json={"model": "reviews", "input": texts})
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    assert [d["input"] for d in data] == texts
    for text, item in zip(texts, data):
        made = api.generate(str(runs["reviews"]), prompt=text, device="cpu")[0]
        assert item["label"] == made.data and item["task"] == "classify"
        assert item["label"] in item["probabilities"]
        assert sum(item["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert item["studio"]["run"] == str(runs["reviews"])
    assert_openai_error(http.post("/v1/classify", json={"model": "text", "input": "x"}), 400,
                        "/v1/completions")
    assert_openai_error(http.post("/v1/classify", json={"model": "reviews", "input": []}), 400,
                        "non-empty list")
    assert_openai_error(http.post("/v1/completions", json={"model": "reviews", "prompt": "x"}),
                        400, "/v1/classify")


def test_a_tagger_answers_the_tags_of_each_word(runs, http):
    text = "Maria Lopez flew to Paris with Air France"
    reply = http.post("/v1/classify", json={"model": "names", "input": text})
    assert reply.status_code == 200, reply.text
    [item] = reply.json()["data"]
    made = api.generate(str(runs["names"]), prompt=text, device="cpu")[0]
    assert item["task"] == "tag" and "label" not in item
    assert item["words"] == text.split() and item["tags"] == made.meta["tags"]
    assert item["entities"] == made.meta["entities"]


# --- security and bad input ----------------------------------------------------------------------

def test_a_missing_or_wrong_key_is_401(server):
    assert httpx.get(f"{server.root}/health").status_code == 200  # needs no key
    missing = httpx.get(f"{server.url}/models")
    assert_openai_error(missing, 401, "no API key")
    wrong = httpx.post(f"{server.url}/completions", json={"model": "text", "prompt": "a"},
                       headers={"Authorization": "Bearer not-the-key"})
    assert_openai_error(wrong, 401, "wrong API key")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url, api_key="nope", max_retries=0).models.list()


def test_an_oversized_body_is_413(http):
    padding = "x" * MAX_BODY
    assert_openai_error(http.post("/v1/completions", json={"model": "text", "prompt": padding}),
                        413, "--max-body")

    def streamed():  # no Content-Length: the bytes sent are counted
        for _ in range(4):
            yield padding[:MAX_BODY // 2].encode()
    assert_openai_error(http.post("/v1/completions", content=streamed()), 413, "--max-body")


@pytest.mark.parametrize("body, status, param, words", [
    ({"model": "text", "prompt": "a", "temperature": -1}, 400, "temperature", [">= 0"]),
    ({"model": "text", "prompt": "a", "n": MAX_N + 1}, 400, "n", ["--max-n"]),
    ({"model": "text", "prompt": "a", "max_tokens": MAX_TOKENS + 1}, 400, "max_tokens",
     ["--max-tokens"]),
    ({"model": "nope", "prompt": "a"}, 404, "model", ["shop, reviews, names, text, image, video"]),
    ({"model": "text", "prompt": "a", "logprobs": 3}, 400, "logprobs", ["not supported"]),
    ({"model": "text", "prompt": "a", "frequency_penalty": 0}, 200, None, []),
    ({"model": "text", "prompt": "a", "colour": "red"}, 400, "colour", ["unknown field"]),
    ({"model": "text", "prompt": [1, 2]}, 400, "prompt", ["token ids"]),
    ({"prompt": "a"}, 400, "model", ["missing"]),
    ({"model": "text", "prompt": "a", "top_k": -2}, 400, "top_k", [">= 0"]),
    ({"model": "text", "prompt": "a", "echo": True}, 400, "echo", ["not supported"]),
    ({"model": "text", "prompt": "a", "stream": "yes"}, 400, "stream", ["true or false"]),
    ({"model": "text", "prompt": "a", "stream_options": {"include_usage": True}}, 400,
     "stream_options", ["stream: true"]),
    ({"model": "text", "prompt": "a", "seed": -1}, 400, "seed", ["at least 0"]),
])
def test_bad_parameters_are_said_in_openais_shape(http, body, status, param, words):
    body = {"max_tokens": 2, **body}
    reply = http.post("/v1/completions", json=body)
    if status == 200:
        assert reply.status_code == 200, reply.text
        return
    error = assert_openai_error(reply, status, *words)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_the_openai_client_raises_on_a_bad_parameter(client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model="text", prompt="a", temperature=-1)
    assert refused.value.status_code == 400 and "temperature" in str(refused.value)
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="gpt-4", prompt="a")
    assert missing.value.code == "model_not_found"


def test_a_body_that_is_not_json_and_an_unknown_path_are_said(http):
    assert_openai_error(http.post("/v1/completions", content=b"{nope"), 400, "not JSON")
    assert_openai_error(http.post("/v1/completions", json=["a"]), 400, "JSON object")
    assert_openai_error(http.get("/v1/engines"), 404, "no endpoint")


# --- metrics -------------------------------------------------------------------------------------

def test_metrics_count_requests_tokens_and_latency(http, client):
    client.completions.create(model="text", prompt="a", max_tokens=4, temperature=0)
    list(client.completions.create(model="text", prompt="a", max_tokens=4, stream=True))
    text = http.get("/metrics").text
    assert 'studio_serve_requests_total{endpoint="/v1/completions",status="200"}' in text
    assert 'studio_serve_queue_depth{model="text"} 0.0' in text
    assert 'studio_serve_request_latency_seconds_count{endpoint="/v1/completions"}' in text
    assert 'studio_serve_time_to_first_token_seconds_count{model="text"}' in text
    tokens = next(float(line.split()[-1]) for line in text.splitlines()
                  if line.startswith('studio_serve_tokens_generated_total{model="text"}'))
    assert tokens >= 8
    assert 'studio_serve_tokens_per_second{model="text"}' in text
    assert 'studio_serve_samples_generated_total{model="image"}' in text


# --- refusals at start-up ------------------------------------------------------------------------

def one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for word in words:
        assert word.lower() in err.lower(), (word, err)


def test_a_run_that_cannot_load_stops_the_start_with_one_line(tmp_path, runs):
    not_a_run = tmp_path / "notes"
    not_a_run.mkdir()
    code, out, err = run_cli("serve", runs["text"], not_a_run, "--port", "0")
    one_line_error(code, err, str(not_a_run))
    assert "serving on" not in out
    broken = tmp_path / "broken"
    shutil.copytree(runs["shop"], broken)
    for weights in broken.glob("checkpoints/*/model.safetensors"):
        weights.write_bytes(b"not safetensors")
    code, out, err = run_cli("serve", broken, "--port", "0")
    one_line_error(code, err, "broken")


def test_another_host_needs_a_key(runs, monkeypatch):
    monkeypatch.delenv("STUDIO_API_KEY", raising=False)
    code, out, err = run_cli("serve", runs["text"], "--host", "0.0.0.0", "--port", "0")
    one_line_error(code, err, "0.0.0.0", "STUDIO_API_KEY", "--api-key")
    code, out, err = run_cli("serve", runs["text"], "--api-key", " ", "--port", "0")
    one_line_error(code, err, "empty")


def test_two_runs_of_one_name_are_refused(tmp_path, runs):
    other = tmp_path / "elsewhere" / "text"
    shutil.copytree(runs["text"], other)
    code, out, err = run_cli("serve", runs["text"], other, "--port", "0")
    one_line_error(code, err, "two runs are named 'text'")


def test_a_taken_port_is_said(server, runs):
    port = server.root.rsplit(":", 1)[1]
    code, out, err = run_cli("serve", runs["text"], "--port", port)
    one_line_error(code, err, f":{port}", "--port")


@pytest.mark.parametrize("flag, value", [("--max-batch", "0"), ("--queue", "0"),
                                         ("--timeout", "0"), ("--max-body", "10")])
def test_settings_the_server_cannot_run_with_are_refused(runs, flag, value):
    code, out, err = run_cli("serve", runs["text"], flag, value, "--port", "0")
    one_line_error(code, err, flag)
