"""`studio serve RUN [RUN ...]`: the runs named on the command line behind an OpenAI-compatible
HTTP API, for clients that already speak it (the official `openai` package, pointed at
http://HOST:PORT/v1, works unchanged).

Endpoints (a model is a served run, its id the run folder's name):

- `GET /v1/models`, `GET /v1/models/{id}`: the served runs (generator, modality, task,
  checkpoint under "studio").
- `POST /v1/completions`, `POST /v1/chat/completions` (text runs that generate): OpenAI's
  fields `model, prompt | messages, max_tokens (chat also max_completion_tokens), temperature,
  top_p, stop, seed, n, stream, stream_options.include_usage`; and as extra fields `top_k`
  (default 0: all tokens, as OpenAI has no top-k) and `repetition_penalty`. temperature
  defaults to 1 (OpenAI's), max_tokens to the generator's own default (200 for the built-in
  text generator) within --max-tokens. A list of prompts answers each prompt with n choices,
  as OpenAI does: choice p*n+i is choice i of prompt p. Choice i uses seed + i, so it is what
  `studio generate --seed SEED+i` gives with n=1; a request without a seed gets a random one,
  reported in each choice's lineage. Chat passes the messages to the generator, which encodes
  them in its training's chat format (runs trained on prompt/response pairs) or refuses
  (plain-text runs: use /v1/completions). The text returned is the new text only (OpenAI's
  `echo` is not supported). Streaming is OpenAI's server-sent events, ending with
  `data: [DONE]`. Usage counts the prompt's tokens once per prompt, and every choice's new
  tokens (generators without a step-wise decoder count pieces of streamed text instead, and
  no prompt tokens).
- `POST /v1/images/generations` (image runs): `model, prompt` (a class name or index; "" or
  none: the classes in turn), `n, size` ("WxH": must be the size the run makes, or left out),
  `response_format` (b64_json, the default, or url), and `seed, class_label, truncation`.
- `POST /v1/videos/generations` (video runs; this server's own design, in the images'
  shape): `model, prompt` (as for images), `n, seed, frames, fps, class_label, truncation`,
  `format` (mp4, the default, or gif) and `response_format` (b64_json or url). It answers
  `{"created", "data": [{"b64_json" | "url", "format", "frames", "fps", "width", "height",
  "studio"}]}`.
- `POST /v1/classify` (classify and tag runs): `model, input` (a text or a list of texts) ->
  `{"object": "list", "model", "data": [{"index", "input", "task", and "label",
  "probabilities" (and "labels" for several labels) for a classifier, or "words", "tags",
  "entities" for a tagger, "studio"}]}`.
- `GET /v1/files/{id}`: an output answered as a url; kept in memory (the newest first, at
  most FILE_STORE_BYTES: older ones are dropped), never on disk.
- `GET /health` (never needs a key: the status and the requests queued and under way, no
  model names), `GET /metrics` (Prometheus text format).

Lineage: every choice and every data item carries a "studio" object: run, checkpoint,
generator, seed, settings (the sampling settings used) and, for images and clips, the
sample's own meta (class, truncation, ...).

Fields: a field OpenAI defines that this server does not do (logprobs, tools, echo, suffix,
logit_bias, ...) is refused with a 400 naming it, unless it asks for what the server does
anyway (presence_penalty 0, logprobs false, echo false, best_of equal to n, tools [], ...);
`user`, `metadata`, `service_tier`, `store` false and `parallel_tool_calls` are accepted and
ignored. A field OpenAI does not define is refused as OpenAI refuses it.

Under load: one worker thread per model owns its generator (no torch work on the event
loop). A text run with a step-wise decoder (`Generator.open_decoder`) is continuously
batched: queued choices join free rows between steps, and every step is one forward pass for
all rows; other text runs stream one choice at a time. Image and video runs take up to
--max-batch queued requests into one `sample_batch` call; classify and tag runs answer the
texts of up to --max-batch requests in one call. Each model queues at most --queue requests
(more: 429 with Retry-After); a request not answered within --timeout seconds gets a 504 and
its work is dropped; a client that goes away has its rows dropped at the next step.

Security: 127.0.0.1 by default (only this machine can reach it); any other host needs an API
key (--api-key, or the environment variable STUDIO_API_KEY, which `ps` does not show), and
with a key every endpoint but /health needs `Authorization: Bearer KEY` (compared in constant
time). Request bodies, max_tokens, n and frames are bounded by the flags below; only the
runs named on the command line can be reached, and no request names a path. Every error is
OpenAI's `{"error": {"message", "type", "param", "code"}}`, never a traceback (those go to
the server's stderr): 400 a field (named in "param") or a prompt the generator refuses, 401 the
key, 404 a model, endpoint or file, 413 the body, 429 the queue (with Retry-After), 500 the
generator failed, 503 shutting down, 504 --timeout. A stream that has started ends with such an
error as its last event instead (no [DONE]).

This package's own module imports nothing heavy: the CLI reads the settings' defaults from
it while `studio --help` stays instant; the server is in studio.serve.server.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from studio.errors import StudioError

API_KEY_VARIABLE = "STUDIO_API_KEY"
FILE_STORE_BYTES = 256 << 20  # outputs kept for GET /v1/files/{id}; the oldest go first


@dataclass(frozen=True)
class ServeSettings:
    """What `studio serve` is started with (the flags of the same names)."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch: int = 8  # rows decoded together, or requests sampled together; 1: no batching
    queue: int = 64  # requests waiting per model; more are answered 429
    timeout: float = 120.0  # seconds a request may take, waiting included
    max_tokens: int = 1024
    max_n: int = 8  # choices (or images, clips) per request
    max_frames: int = 256
    max_body: int = 1 << 20  # bytes
    file_store_bytes: int = FILE_STORE_BYTES

    def check(self) -> None:
        """Refuse settings the server cannot run with, naming the flag."""
        whole = {"--port": (self.port, 0, 65535), "--max-batch": (self.max_batch, 1, 4096),
                 "--queue": (self.queue, 1, 1_000_000), "--max-tokens": (self.max_tokens, 1, 1_000_000),
                 "--max-n": (self.max_n, 1, 10_000), "--max-frames": (self.max_frames, 1, 100_000),
                 "--max-body": (self.max_body, 1024, 1 << 34)}
        for flag, (value, low, high) in whole.items():
            if not low <= value <= high:
                raise StudioError(f"{flag} must be from {low:,} to {high:,}, got {value:,}.")
        if not self.timeout > 0:
            raise StudioError(f"--timeout must be a number of seconds above 0, got {self.timeout}.")
        if self.api_key is not None and not self.api_key.strip():
            raise StudioError(f"the API key is empty (--api-key or {API_KEY_VARIABLE}): give a "
                              f"key, or leave both out on 127.0.0.1.")
        if not is_local(self.host) and self.api_key is None:
            raise StudioError(f"--host {self.host} lets other machines reach the server, so it "
                              f"needs an API key: set {API_KEY_VARIABLE}=KEY (or --api-key KEY), "
                              f"or serve on 127.0.0.1.")


def is_local(host: str) -> bool:
    """Whether only this machine can reach a server bound to `host` (a loopback address)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address
