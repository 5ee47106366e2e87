"""The HTTP side of `studio serve`: the FastAPI routes, OpenAI's response shapes (whole and
streamed), the guard in front of every route (API key, body size, request metrics), the
in-memory store behind url answers, and the Prometheus metrics.

Handlers run on the event loop and never touch torch: they validate a request
(studio.serve.validate), hand it to the model's worker (studio.serve.workers) and wait for its
events, within the request's deadline, watching for the client going away.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hmac
import io
import json
import secrets
import tempfile
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)
from starlette.exceptions import HTTPException

from studio import export
from studio.config import to_dict
from studio.serve import ServeSettings
from studio.serve.validate import ApiError, bad, classify_ask, media_ask, text_ask
from studio.serve.workers import Answer, Failed, Job, Piece, ServedModel, Started

DISCONNECT_POLL = 0.25  # seconds between checks that a waiting client is still there
CLIENT_GONE = 499  # the status recorded for a request whose client went away (nginx's)
MEDIA_TYPES = {"png": "image/png", "mp4": "video/mp4", "gif": "image/gif"}
ENDPOINTS = ("/v1/completions", "/v1/chat/completions", "/v1/images/generations",
             "/v1/videos/generations", "/v1/classify", "/v1/models", "/health", "/metrics")


# --- metrics -------------------------------------------------------------------------------------

class Metrics:
    """The server's Prometheus metrics, in a registry of its own (one per app)."""

    LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

    def __init__(self):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("studio_serve_requests", "HTTP requests answered, by endpoint "
                                "and status (499: the client went away)",
                                ["endpoint", "status"], registry=registry)
        self.latency = Histogram("studio_serve_request_latency_seconds", "Seconds from a "
                                 "request's arrival to the end of its answer (streams included)",
                                 ["endpoint"], buckets=self.LATENCY_BUCKETS, registry=registry)
        self.first_token = Histogram("studio_serve_time_to_first_token_seconds", "Seconds from a "
                                     "streamed text request's arrival to its first text", ["model"],
                                     buckets=self.LATENCY_BUCKETS, registry=registry)
        self.tokens = Counter("studio_serve_tokens_generated", "Tokens generated", ["model"],
                              registry=registry)
        self.samples = Counter("studio_serve_samples_generated", "Images, clips and answers "
                               "made", ["model"], registry=registry)
        self.queue_depth = Gauge("studio_serve_queue_depth", "Requests waiting for the model",
                                 ["model"], registry=registry)
        self.active = Gauge("studio_serve_active", "Rows (text) or requests (batches) being "
                            "generated now", ["model"], registry=registry)
        self.tokens_per_second = Gauge("studio_serve_tokens_per_second", "Tokens a second over "
                                       "the last 10 s", ["model"], registry=registry)
        self.samples_per_second = Gauge("studio_serve_samples_per_second", "Images, clips or "
                                        "answers a second over the last 10 s", ["model"],
                                        registry=registry)

    def watch(self, workers) -> None:
        """The gauges read each worker when /metrics is asked for; each model's counters start
        at 0 (a series shows before its first sample)."""
        for worker in workers:
            name = worker.model.name
            if worker.model.kind == "text":
                self.tokens.labels(name)
                self.first_token.labels(name)
            else:
                self.samples.labels(name)
            self.queue_depth.labels(name).set_function(lambda w=worker: w.queued)
            self.active.labels(name).set_function(lambda w=worker: w.active)
            rate = self.tokens_per_second if worker.model.kind == "text" else self.samples_per_second
            rate.labels(name).set_function(worker.rate)

    def generated(self, model: ServedModel, amount: int) -> None:
        (self.tokens if model.kind == "text" else self.samples).labels(model.name).inc(amount)

    def text(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def endpoint_of(path: str) -> str:
    """A path as a metrics label: the route, never a file id or a model id."""
    if path in ENDPOINTS:
        return path
    if path.startswith("/v1/files/"):
        return "/v1/files"
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    return "other"


# --- the guard in front of every route -----------------------------------------------------------

class Guard:
    """ASGI middleware: the API key (every path but /health), the body's size (Content-Length
    and the bytes actually sent), and each request's count and latency. Pure ASGI, so streamed
    answers and disconnects pass through as they are."""

    def __init__(self, app, settings: ServeSettings, metrics: Metrics):
        self.app, self.settings, self.metrics = app, settings, metrics
        self.key = settings.api_key.encode() if settings.api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.monotonic(), [500]

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refusal = self.unauthorized(scope)
            body = None
            if refusal is None:
                body, refusal = await self.read_body(scope, receive)
            if refusal is not None:
                await send_error(send_counted, refusal)
            elif body is None:  # the client left while sending its body
                status[0] = CLIENT_GONE
            else:
                await self.app(scope, replay(body, receive), send_counted)
        finally:
            endpoint = endpoint_of(scope["path"])
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.monotonic() - started)

    def unauthorized(self, scope) -> ApiError | None:
        if self.key is None or scope["path"] == "/health":
            return None
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = given.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            return None
        said = "a wrong API key" if given else "no API key"
        return ApiError(401, f"{said}: send the header 'Authorization: Bearer KEY' with the key "
                             f"the server was started with.", type="invalid_request_error",
                        code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    async def read_body(self, scope, receive) -> tuple[bytes | None, ApiError | None]:
        """The whole body, or why not: more than --max-body bytes (announced or sent)."""
        limit = self.settings.max_body
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return None, too_large(int(length), limit)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None, too_large(size, limit, sent=True)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def too_large(size: int, limit: int, sent: bool = False) -> ApiError:
    amount = f"more than {limit:,} bytes" if sent else f"{size:,} bytes"
    return ApiError(413, f"the request body is {amount}, over this server's limit of {limit:,} "
                         f"bytes (--max-body); send less.", code="body_too_large")


def replay(body: bytes, receive):
    """A receive that gives the body already read, then what the client sends next (its
    disconnect)."""
    given = False

    async def receive_again():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return receive_again


async def send_error(send, error: ApiError) -> None:
    content = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


# --- outputs kept for url answers ---------------------------------------------------------------

class FileStore:
    """Recent outputs in memory, by random id, for GET /v1/files/{id}: at most `max_bytes` in
    all, the oldest dropped first. Used on the event loop only."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.files: collections.OrderedDict[str, tuple[bytes, str]] = collections.OrderedDict()
        self.size = 0

    def put(self, content: bytes, extension: str) -> str:
        if len(content) > self.max_bytes:
            raise bad(f"this output is {len(content):,} bytes, more than the server keeps for "
                      f"url answers ({self.max_bytes:,}); ask for response_format b64_json.",
                      param="response_format")
        while self.size + len(content) > self.max_bytes:
            _, (old, _) = self.files.popitem(last=False)
            self.size -= len(old)
        name = f"{secrets.token_urlsafe(18)}.{extension}"
        self.files[name] = (content, MEDIA_TYPES[extension])
        self.size += len(content)
        return name

    def get(self, name: str) -> tuple[bytes, str] | None:
        return self.files.get(name)


# --- waiting for a worker ------------------------------------------------------------------------

class ClientGone(Exception):
    """The client of a request went away while it waited."""


class Waiter:
    """A job's events, one at a time, within the request's deadline. Given the request (not
    for streamed answers: Starlette itself watches their clients and cancels them), it also
    checks every DISCONNECT_POLL seconds that the client is still there. Either way out
    cancels the job, so its worker drops it."""

    def __init__(self, job: Job, timeout: float, request=None):
        self.job, self.timeout, self.request = job, timeout, request
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + timeout
        self.next_check = self.loop.time() + DISCONNECT_POLL

    async def next(self):
        while True:
            now = self.loop.time()
            if now >= self.deadline:
                self.job.cancel()
                raise ApiError(504, f"the request took longer than this server's limit of "
                                    f"{self.timeout:g} s (--timeout) and was dropped; ask for "
                                    f"less (fewer tokens, choices or frames).",
                               type="timeout_error", code="timeout")
            if self.request is not None and now >= self.next_check:
                self.next_check = now + DISCONNECT_POLL
                if await self.request.is_disconnected():
                    self.job.cancel()
                    raise ClientGone()
            try:
                return self.job.events.get_nowait()
            except asyncio.QueueEmpty:
                pass
            until = min(self.deadline, self.next_check) if self.request is not None \
                else self.deadline
            try:
                return await asyncio.wait_for(self.job.events.get(), max(until - now, 0.001))
            except asyncio.TimeoutError:
                continue


# --- text answers ----------------------------------------------------------------------------------

def sse(doc) -> str:
    return f"data: {json.dumps(doc, ensure_ascii=False)}\n\n"


class TextReply:
    """A completion or chat answer being put together from its choices' events: as whole JSON,
    or as OpenAI's stream chunks."""

    def __init__(self, ask, metrics: Metrics):
        self.ask, self.model, self.metrics = ask, ask.model, metrics
        self.chat = ask.chat
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + secrets.token_hex(12)
        self.created = int(time.time())
        self.started = time.monotonic()
        count = len(ask.choices)
        self.texts: list[list[str]] = [[] for _ in range(count)]
        self.tokens, self.prompt_tokens = [0] * count, [0] * count
        self.reasons: list[str | None] = [None] * count
        self.opened = [False] * count  # chat streams: the role chunk was sent
        self.first_text_seen = False

    @property
    def finished(self) -> bool:
        return all(reason is not None for reason in self.reasons)

    def take(self, event) -> list[dict]:
        """Record an event; the stream chunks it makes."""
        chunks = []
        if isinstance(event, Started):
            self.prompt_tokens[event.choice] = event.prompt_tokens
            return self.open(event.choice)
        if not isinstance(event, Piece):
            return chunks
        choice = event.choice
        chunks += self.open(choice)
        if event.text:
            if not self.first_text_seen and self.ask.stream:  # a whole answer comes at once
                self.first_text_seen = True
                self.metrics.first_token.labels(self.model.name).observe(
                    time.monotonic() - self.started)
            self.texts[choice].append(event.text)
            chunks.append(self.chunk(choice, event.text))
        self.tokens[choice] = max(self.tokens[choice], event.tokens)
        if event.done:
            self.reasons[choice] = event.reason or "stop"
            chunks.append(self.chunk(choice, None, self.reasons[choice]))
        return chunks

    def open(self, choice: int) -> list[dict]:
        if not self.chat or self.opened[choice]:
            return []
        self.opened[choice] = True
        return [self.chunk(choice, "", role=True)]

    def lineage(self, choice: int) -> dict:
        return {**self.model.lineage, "seed": self.ask.choices[choice][2],
                "settings": self.ask.settings}

    def head(self, object_name: str) -> dict:
        return {"id": self.id, "object": object_name, "created": self.created,
                "model": self.model.name}

    def chunk(self, choice: int, text: str | None, reason: str | None = None,
              role: bool = False) -> dict:
        if self.chat:
            delta = {"role": "assistant", "content": ""} if role else \
                ({"content": text} if text is not None else {})
            item = {"index": choice, "delta": delta, "logprobs": None, "finish_reason": reason}
        else:
            item = {"index": choice, "text": text or "", "logprobs": None, "finish_reason": reason}
        if reason is not None:
            item["studio"] = self.lineage(choice)
        doc = {**self.head("chat.completion.chunk" if self.chat else "text_completion"),
               "choices": [item]}
        if self.ask.include_usage:
            doc["usage"] = None
        return doc

    def usage(self) -> dict:
        per_prompt = {prompt: tokens for (prompt, _, _), tokens
                      in zip(self.ask.choices, self.prompt_tokens)}
        prompt, completion = sum(per_prompt.values()), sum(self.tokens)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def usage_chunk(self) -> dict:
        return {**self.head("chat.completion.chunk" if self.chat else "text_completion"),
                "choices": [], "usage": self.usage()}

    def whole(self) -> dict:
        choices = []
        for choice, pieces in enumerate(self.texts):
            text = "".join(pieces)
            item = {"index": choice}
            if self.chat:
                item["message"] = {"role": "assistant", "content": text}
            else:
                item["text"] = text
            item.update(logprobs=None, finish_reason=self.reasons[choice],
                        studio=self.lineage(choice))
            choices.append(item)
        return {**self.head("chat.completion" if self.chat else "text_completion"),
                "choices": choices, "usage": self.usage()}


# --- images and clips ----------------------------------------------------------------------------

def encode(sample, file_format: str, lineage: dict) -> bytes:
    """One image as PNG, or one clip as MP4 or GIF, with its lineage inside (studio.export's
    writers; a clip goes through a temporary folder that is removed again)."""
    if file_format == "png":
        buffer = io.BytesIO()
        buffer.name = "sample.png"  # Pillow picks the format by the name
        export.write_png(sample.data, buffer, lineage)
        return buffer.getvalue()
    with tempfile.TemporaryDirectory(prefix="studio-serve-") as folder:
        path = Path(folder) / f"clip.{file_format}"
        export.export([sample], path, lineage)
        return path.read_bytes()


def plain(value):
    """A sample's meta as JSON has it (numbers, text, lists)."""
    return json.loads(json.dumps(value, default=str))


# --- the app -------------------------------------------------------------------------------------

class Hub:
    """What every route shares: the models by id, the settings, the metrics, the file store."""

    def __init__(self, models: list[ServedModel], settings: ServeSettings, metrics: Metrics):
        self.models = {model.name: model for model in models}
        self.settings, self.metrics = settings, metrics
        self.files = FileStore(settings.file_store_bytes)

    def model(self, body: dict) -> ServedModel:
        name = body.get("model")
        served = ", ".join(self.models)
        if name is None or name == "":
            raise bad(f"'model' is missing: name one of the served models ({served}).",
                      param="model")
        if not isinstance(name, str):
            raise bad(f"'model' must be the id of a served model ({served}), got {name!r}.",
                      param="model")
        if name not in self.models:
            raise ApiError(404, f"model '{name}' is not served here; the served models are "
                                f"{served} (GET /v1/models).", param="model",
                           code="model_not_found")
        return self.models[name]

    def submit(self, ask) -> Job:
        job = Job(asyncio.get_running_loop(), ask)
        ask.model.worker.submit(job)
        return job


async def json_body(request) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise bad(f"the request body is not JSON ({exc}); send a JSON object with "
                  f"Content-Type: application/json.") from None
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object of fields, e.g. {\"model\": ...}.")
    return body


def create_app(models: list[ServedModel], settings: ServeSettings, metrics: Metrics):
    """The ASGI app: FastAPI's routes behind the Guard. The models' workers must be running."""
    hub = Hub(models, settings, metrics)
    app = FastAPI(title="AIGC Studio", docs_url=None, redoc_url=None, openapi_url=None)

    def error_response(error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return error_response(exc)

    @app.exception_handler(ClientGone)
    async def client_gone(request, exc):
        return Response(status_code=CLIENT_GONE)

    @app.exception_handler(HTTPException)
    async def no_route(request, exc: HTTPException):
        if exc.status_code == 404:
            message = (f"no endpoint {request.method} {request.url.path} here; this server "
                       f"answers {', '.join(ENDPOINTS)} and /v1/files/ID.")
        else:
            message = f"{request.method} {request.url.path}: {exc.detail}."
        return error_response(ApiError(exc.status_code, message, code="not_found"
                                       if exc.status_code == 404 else None))

    @app.exception_handler(RequestValidationError)
    async def unreadable(request, exc: RequestValidationError):
        return error_response(bad(f"{request.method} {request.url.path}: the request cannot be "
                                  f"read ({exc.errors()[0].get('msg', 'invalid')})."))

    @app.exception_handler(Exception)
    async def crashed(request, exc):
        # Starlette re-raises it after this answer, and uvicorn logs its traceback to stderr.
        return error_response(ApiError(500, f"the server failed on this request "
                                            f"({type(exc).__name__}); its log has the details.",
                                       type="server_error", code="internal_error"))

    @app.get("/health")
    async def health():
        workers = [model.worker for model in hub.models.values()]
        stopping = any(worker.stopping.is_set() for worker in workers)
        return {"status": "stopping" if stopping else "ok",
                "queued": sum(worker.queued for worker in workers),
                "active": sum(worker.active for worker in workers)}

    @app.get("/metrics")
    async def metrics_text():
        content, media_type = metrics.text()
        return Response(content, media_type=media_type)

    def model_card(model: ServedModel) -> dict:
        return {"id": model.name, "object": "model", "created": int(model.run.path.stat().st_mtime),
                "owned_by": "aigc-studio",
                "studio": {**model.lineage, "modality": model.gen.modality, "task": model.task,
                           "endpoint": {"text": "/v1/completions", "answers": "/v1/classify",
                                        "image": "/v1/images/generations",
                                        "video": "/v1/videos/generations"}[model.kind]}}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [model_card(m) for m in hub.models.values()]}

    @app.get("/v1/models/{model_id}")
    async def one_model(model_id: str):
        return model_card(hub.model({"model": model_id}))

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await answer_text(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await answer_text(request, chat=True)

    async def answer_text(request, chat: bool):
        body = await json_body(request)
        ask = text_ask(body, hub.model(body), settings, chat)
        job = hub.submit(ask)
        reply = TextReply(ask, metrics)
        waiter = Waiter(job, settings.timeout, request)
        try:
            if not ask.stream:
                while not reply.finished:
                    reply.take(await next_event(waiter))
                return reply.whole()
            # The first event comes before the answer starts: a refusal is still a plain error.
            first = await next_event(waiter)
        except BaseException:
            job.cancel()  # whatever ended the wait, the work for it stops
            raise
        waiter.request = None  # Starlette watches a streamed answer's client itself
        return StreamingResponse(stream_text(job, reply, first, waiter),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def next_event(waiter: Waiter):
        event = await waiter.next()
        if isinstance(event, Failed):
            raise event.error
        return event

    async def stream_text(job: Job, reply: TextReply, first, waiter: Waiter):
        try:
            event = first
            while True:
                for chunk in reply.take(event):
                    yield sse(chunk)
                if reply.finished:
                    break
                try:
                    event = await waiter.next()
                except ApiError as exc:
                    yield sse(exc.body())
                    return
                if isinstance(event, Failed):
                    yield sse(event.error.body())
                    return
            if reply.ask.include_usage:
                yield sse(reply.usage_chunk())
            yield "data: [DONE]\n\n"
        finally:
            job.cancel()  # the client went away (or it is over): no more work for it

    @app.post("/v1/images/generations")
    async def images(request: Request):
        return await answer_media(request, video=False)

    @app.post("/v1/videos/generations")
    async def videos(request: Request):
        return await answer_media(request, video=True)

    async def answer_media(request, video: bool):
        body = await json_body(request)
        ask = media_ask(body, hub.model(body), settings, video)
        samples = await answer_of(request, hub.submit(ask))
        data = []
        for sample in samples:
            meta = plain(sample.meta)
            lineage = {**ask.model.lineage, "seed": meta.get("seed"), "settings": ask.settings,
                       "prompt": ask.prompt, "meta": meta}
            content = await asyncio.to_thread(encode, sample, ask.file_format, lineage)
            item = {"b64_json": base64.b64encode(content).decode()} \
                if ask.response_format == "b64_json" else \
                {"url": f"{request.base_url}v1/files/{hub.files.put(content, ask.file_format)}"}
            if video:
                frames, height, width = sample.data.shape[:3]
                item.update({"format": ask.file_format, "frames": int(frames),
                             "fps": meta.get("fps"), "width": int(width), "height": int(height)})
            item["studio"] = lineage
            data.append(item)
        return {"created": int(time.time()), "data": data}

    async def answer_of(request, job: Job) -> list:
        """A batch job's samples (an image, video or classify request)."""
        try:
            event = await next_event(Waiter(job, settings.timeout, request))
        except BaseException:
            job.cancel()
            raise
        if not isinstance(event, Answer):
            raise TypeError(f"a batch job was answered with {event!r}")
        return event.samples

    @app.post("/v1/classify")
    async def classify(request: Request):
        body = await json_body(request)
        ask = classify_ask(body, hub.model(body))
        samples = await answer_of(request, hub.submit(ask))
        data = []
        for i, (text, sample) in enumerate(zip(ask.texts, samples)):
            meta = plain(sample.meta)
            item = {"index": i, "input": text, "task": meta.get("task")}
            if meta.get("task") == "classify":
                item["label"] = sample.data
            for name in ("labels", "probabilities", "words", "tags", "entities", "note"):
                if name in meta:
                    item[name] = meta[name]
            item["studio"] = {**ask.model.lineage, "settings": plain(to_dict(ask.params))}
            data.append(item)
        return {"object": "list", "model": ask.model.name, "data": data}

    @app.get("/v1/files/{name}")
    async def files(name: str):
        found = hub.files.get(name)
        if found is None:
            raise ApiError(404, f"no file {name} here: the server keeps recent outputs only "
                                f"(the oldest go first) and forgets them when it stops; ask for "
                                f"the output again.", param="name", code="file_not_found")
        return Response(found[0], media_type=found[1])

    app.state.hub = hub
    return Guard(app, settings, metrics)
