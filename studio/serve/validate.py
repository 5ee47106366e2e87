"""What a request asks for, read from its JSON body and checked: each endpoint's body becomes
an Ask (the model, the generator's sampling settings, the seeds), or an ApiError saying what is
wrong with which field and what to do. No HTTP framework and no torch here."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from typing import Any

from studio.config import check_field, from_dict, to_dict
from studio.errors import StudioError, json_kind
from studio.serve import ServeSettings

MAX_SEED = 2**62  # as `studio generate`: seeds are 64-bit, and each choice's is seed + its index
MAX_TEXTS_TO_CLASSIFY = 256  # texts in one /v1/classify request


class ApiError(Exception):
    """An answer in OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error",
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type, self.headers = type, headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


# --- the fields of each endpoint ---------------------------------------------------------------

ANY = object()  # a field accepted with any value, and ignored

# OpenAI fields this server does not act on, with the values that ask for nothing it does not
# do anyway (None: the field sent as null). Any other value is refused, naming the field.
TEXT_NEUTRAL = {"user": ANY, "metadata": ANY, "service_tier": ANY, "store": (None, False),
                "presence_penalty": (None, 0), "frequency_penalty": (None, 0),
                "logit_bias": (None, {}), "logprobs": (None, False), "echo": (None, False),
                "suffix": (None, ""), "top_logprobs": (None, 0), "tools": (None, []),
                "tool_choice": (None, "none"), "functions": (None, []),
                "function_call": (None, "none"), "parallel_tool_calls": ANY,
                "response_format": (None, {"type": "text"}), "modalities": (None, ["text"]),
                "prediction": (None,), "audio": (None,), "reasoning_effort": (None,),
                "web_search_options": (None,)}
SAMPLING_FIELDS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
                   "repetition_penalty": "repetition_penalty", "stop": "stop"}
COMPLETION_FIELDS = {"model", "prompt", "max_tokens", "n", "seed", "stream", "stream_options",
                     "best_of", *SAMPLING_FIELDS}
CHAT_FIELDS = {"model", "messages", "max_tokens", "max_completion_tokens", "n", "seed", "stream",
               "stream_options", *SAMPLING_FIELDS}
IMAGE_FIELDS = {"model", "prompt", "n", "size", "response_format", "seed", "class_label",
                "truncation"}
IMAGE_NEUTRAL = {"user": ANY, "quality": (None, "auto", "standard"), "style": (None,),
                 "output_format": (None, "png"), "moderation": ANY, "background": (None, "auto")}
VIDEO_FIELDS = {"model", "prompt", "n", "seed", "frames", "fps", "class_label", "truncation",
                "format", "response_format"}
CLASSIFY_FIELDS = {"model", "input"}
CHAT_ROLES = ("system", "developer", "user", "assistant")


def check_fields(body: dict, endpoint: str, known: set, neutral: dict) -> None:
    for name, value in body.items():
        if name in known:
            continue
        if name not in neutral:
            raise bad(f"unknown field '{name}' for POST {endpoint}; this server reads "
                      f"{', '.join(sorted(known))}.", param=name, code="unknown_field")
        allowed = neutral[name]
        if allowed is not ANY and not any(same(value, ok) for ok in allowed):
            raise bad(f"'{name}' is not supported by this server (it may only be "
                      f"{' or '.join(_shown(ok) for ok in allowed)}); leave it out.",
                      param=name, code="unsupported_field")


def same(value, neutral) -> bool:
    """JSON equality, where true and false are not the numbers 1 and 0."""
    return value is neutral or (value == neutral and
                                isinstance(value, bool) == isinstance(neutral, bool))


def _shown(value) -> str:
    return "null" if value is None else repr(value).replace("False", "false").replace("True", "true")


# --- plain fields ------------------------------------------------------------------------------

def whole_number(body: dict, name: str, default: int | None, low: int, high: int,
                 limit_flag: str | None = None) -> int | None:
    """An integer field from low to high; over a server limit the message names its flag."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise bad(f"'{name}' must be a whole number, got {value!r}.", param=name)
    if value < low:
        raise bad(f"'{name}' must be at least {low}, got {value}.", param=name)
    if value > high:
        limit = f", this server's limit (--{limit_flag})" if limit_flag else ""
        raise bad(f"'{name}' must be at most {high:,}{limit}; got {value:,}.", param=name)
    return value


def seed_of(body: dict, n: int) -> int:
    """The request's seed; a random one when it gives none (reported in the lineage)."""
    seed = whole_number(body, "seed", None, 0, MAX_SEED - n)
    return secrets.randbelow(2**31) if seed is None else seed


def text_of(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(f"'{name}' must be text, got {json_kind(value)}.", param=name)
    return value


def choice_of(body: dict, name: str, choices: tuple[str, ...]) -> str:
    value = body.get(name)
    if value is None:
        return choices[0]
    if value not in choices:
        raise bad(f"'{name}' must be one of {', '.join(choices)}; got {value!r}.", param=name)
    return value


# --- the generator's settings ------------------------------------------------------------------

def settings_for(sample_config: type, given: dict[str, Any], defaults: dict[str, Any],
                 run: str) -> Any:
    """The generator's sampling settings (its SampleConfig) from the request's fields
    (`given`: setting -> (field, value)) over `defaults`, each checked by the studio's one
    validator; a field the generator has no setting for is refused."""
    names = {f.name for f in dataclasses.fields(sample_config)}
    values = {name: value for name, value in defaults.items() if name in names}
    for setting, (field_name, value) in given.items():
        if setting not in names:
            raise bad(f"'{field_name}' is not a setting of {run}'s generator; its sampling "
                      f"settings are {', '.join(sorted(names)) or 'none'}.", param=field_name)
        try:
            values[setting] = check_field(sample_config, setting, value, field_name)
        except StudioError as exc:
            raise bad(str(exc).replace(f"'{setting}'", "it", 1), param=field_name) from None
    try:
        return from_dict(sample_config, values, "the sampling settings")
    except StudioError as exc:
        raise bad(str(exc)) from None


def setting_default(sample_config: type, name: str):
    for f in dataclasses.fields(sample_config):
        if f.name == name:
            return f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return None


# --- text --------------------------------------------------------------------------------------

@dataclass
class TextAsk:
    """A completion or chat request: choice k is (prompt index, prompt, seed)."""

    model: Any  # the ServedModel
    chat: bool
    params: Any
    seed: int
    n: int
    choices: list[tuple[int, Any, int]]
    stream: bool = False
    include_usage: bool = False

    @property
    def settings(self) -> dict:
        return to_dict(self.params)


def text_ask(body: dict, model, settings: ServeSettings, chat: bool) -> TextAsk:
    endpoint = "/v1/chat/completions" if chat else "/v1/completions"
    check_fields(body, endpoint, CHAT_FIELDS if chat else COMPLETION_FIELDS, TEXT_NEUTRAL)
    if model.kind != "text":
        raise wrong_endpoint(model, endpoint)
    if chat:
        prompts = [{"messages": messages_of(body)}]
        if body.get("max_tokens") is not None and body.get("max_completion_tokens") is not None:
            raise bad("give max_tokens or max_completion_tokens, not both.", param="max_tokens")
        tokens_field = "max_completion_tokens" if body.get("max_completion_tokens") is not None \
            else "max_tokens"
    else:
        prompts = prompts_of(body)
        tokens_field = "max_tokens"
    n = whole_number(body, "n", 1, 1, settings.max_n, "max-n")
    if not chat and body.get("best_of") not in (None, n):
        raise bad("'best_of' is not supported by this server (it may only equal n); leave it out.",
                  param="best_of", code="unsupported_field")
    if len(prompts) * n > settings.max_n:
        raise bad(f"{len(prompts)} prompts x n={n} ask for {len(prompts) * n} choices, more than "
                  f"this server's limit of {settings.max_n} (--max-n); send fewer prompts a "
                  f"request.", param="prompt")
    config = model.gen.SampleConfig
    own_max = setting_default(config, "max_new_tokens")
    default_tokens = min(own_max, settings.max_tokens) if isinstance(own_max, int) else None
    max_tokens = whole_number(body, tokens_field, default_tokens, 1, settings.max_tokens,
                              "max-tokens")
    given = {setting: (name, body[name]) for name, setting in SAMPLING_FIELDS.items()
             if body.get(name) is not None}
    if "stop" in given and isinstance(given["stop"][1], str):
        given["stop"] = ("stop", [given["stop"][1]])
    if max_tokens is not None:
        given["max_new_tokens"] = (tokens_field, max_tokens)
    # OpenAI's defaults where they differ from the generator's: temperature 1, and no top-k.
    params = settings_for(config, given, {"temperature": 1.0, "top_k": 0}, model.name)
    seed = seed_of(body, n)
    stream, include_usage = streaming_of(body)
    choices = [(p, prompt, seed + i) for p, prompt in enumerate(prompts) for i in range(n)]
    return TextAsk(model, chat, params, seed, n, choices, stream, include_usage)


def streaming_of(body: dict) -> tuple[bool, bool]:
    """Whether to stream, and whether a last chunk gives the usage."""
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad(f"'stream' must be true or false, got {stream!r}.", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise bad("'stream_options' may hold include_usage only.", param="stream_options")
    if options and not stream:
        raise bad("'stream_options' goes with stream: true only.", param="stream_options")
    return bool(stream), bool(options.get("include_usage"))


def prompts_of(body: dict) -> list:
    """A completion's prompts: one text, or a list of texts (none: start from nothing)."""
    prompt = body.get("prompt")
    if prompt is None:
        return [None]
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, (int, list)) for p in prompt):
        raise bad("a prompt of token ids is not supported: send the prompt as text (or a list "
                  "of texts).", param="prompt")
    raise bad(f"'prompt' must be text or a non-empty list of texts, got {json_kind(prompt)}.",
              param="prompt")


def messages_of(body: dict) -> list[dict]:
    """A chat's messages, each {"role", "content"} with its content as text (content given as
    parts must be text parts, which are joined)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("'messages' must be a non-empty list of {\"role\", \"content\"} objects.",
                  param="messages")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(f"{where} must be an object with role and content.", param=where)
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise bad(f"{where}.role must be one of {', '.join(CHAT_ROLES)}; got {role!r} (tools "
                      f"are not supported).", param=f"{where}.role")
        content = message.get("content")
        if isinstance(content, list):
            if not all(isinstance(part, dict) and part.get("type") == "text"
                       and isinstance(part.get("text"), str) for part in content):
                raise bad(f"{where}.content: only text parts are supported.",
                          param=f"{where}.content")
            content = "".join(part["text"] for part in content)
        if not isinstance(content, str):
            raise bad(f"{where}.content must be text, got {json_kind(content)}.",
                      param=f"{where}.content")
        out.append({"role": role, "content": content})
    return out


def wrong_endpoint(model, endpoint: str) -> ApiError:
    right = {"text": "/v1/completions or /v1/chat/completions", "answers": "/v1/classify",
             "image": "/v1/images/generations", "video": "/v1/videos/generations"}[model.kind]
    what = {"text": "a text generation run", "answers": f"a {model.task} run",
            "image": "an image run", "video": "a video run"}[model.kind]
    return bad(f"model '{model.name}' is {what}: POST {endpoint} does not serve it; use "
               f"{right}.", param="model", code="wrong_endpoint")


# --- images and video --------------------------------------------------------------------------

@dataclass
class MediaAsk:
    """An image or video request: what sample_batch gets, and how to answer."""

    model: Any
    params: Any
    n: int
    seed: int
    prompt: str | None
    response_format: str
    file_format: str  # png, mp4, gif
    settings: dict = field(default_factory=dict)


def media_ask(body: dict, model, settings: ServeSettings, video: bool) -> MediaAsk:
    endpoint = "/v1/videos/generations" if video else "/v1/images/generations"
    check_fields(body, endpoint, VIDEO_FIELDS if video else IMAGE_FIELDS,
                 {} if video else IMAGE_NEUTRAL)
    if model.kind != ("video" if video else "image"):
        raise wrong_endpoint(model, endpoint)
    n = whole_number(body, "n", 1, 1, settings.max_n, "max-n")
    prompt = text_of(body, "prompt") or None
    response_format = choice_of(body, "response_format", ("b64_json", "url"))
    names = ("class_label", "truncation") + (("frames", "fps") if video else ())
    given = {name: (name, body[name]) for name in names if body.get(name) is not None}
    if video:
        frames = whole_number(body, "frames", None, 1, settings.max_frames, "max-frames")
        if frames is not None:
            given["frames"] = ("frames", frames)
        file_format = choice_of(body, "format", ("mp4", "gif"))
        if setting_default(model.gen.SampleConfig, "format") is not None:
            given["format"] = ("format", file_format)  # the lineage says what was made
    else:
        check_size(body.get("size"), model)
        file_format = "png"
    params = settings_for(model.gen.SampleConfig, given, {}, model.name)
    if video and getattr(params, "frames", None) is None and model.frames > settings.max_frames:
        raise bad(f"{model.name} makes clips of {model.frames} frames, more than this server's "
                  f"limit of {settings.max_frames} (--max-frames); ask for fewer frames.",
                  param="frames")
    return MediaAsk(model, params, n, seed_of(body, n), prompt, response_format, file_format,
                    to_dict(params))


def check_size(size, model) -> None:
    makes = f"{model.width}x{model.height}"
    if size in (None, "auto", makes):
        return
    raise bad(f"size {size!r}: {model.name} makes images of {makes} only; ask for size "
              f"{makes!r} or leave size out.", param="size", code="unsupported_size")


# --- classify and tag --------------------------------------------------------------------------

@dataclass
class ClassifyAsk:
    model: Any
    texts: list[str]
    params: Any  # the generator's default sampling settings: a classifier's answer takes none


def classify_ask(body: dict, model) -> ClassifyAsk:
    check_fields(body, "/v1/classify", CLASSIFY_FIELDS, {"user": ANY})
    if model.kind != "answers":
        raise wrong_endpoint(model, "/v1/classify")
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise bad("'input' must be a text or a non-empty list of texts.", param="input")
    if len(texts) > MAX_TEXTS_TO_CLASSIFY:
        raise bad(f"'input' holds {len(texts)} texts; send at most {MAX_TEXTS_TO_CLASSIFY} a "
                  f"request.", param="input")
    if not all(t.strip() for t in texts):
        raise bad("'input' holds an empty text; every text needs words to classify.",
                  param="input")
    return ClassifyAsk(model, texts, model.gen.SampleConfig())
