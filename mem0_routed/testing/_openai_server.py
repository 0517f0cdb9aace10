"""A fake OpenAI server on 127.0.0.1: chat completions, embeddings and the model list, with OpenAI's
error bodies (including the 401 that echoes a partly masked key) and the shared fault modes.

    with FakeOpenAIServer(api_key="sk-test-1234567890abcdef") as server:
        client = openai.OpenAI(api_key="sk-test-1234567890abcdef", base_url=server.url + "/v1")

``flavor`` makes it act like a local OpenAI-compatible server instead (``api_key=None``: no key needed):

* ``"vllm"``: ``/v1/models`` entries carry ``max_model_len``; structured output through
  ``response_format`` (``json_schema``) or ``guided_json``; an unknown model is a 404; a prompt over the
  window, or ``max_tokens`` that does not fit beside it, is vLLM's 400 ``BadRequestError``.
* ``"llamacpp"`` (llama.cpp's ``llama-server``): ``GET /props`` with ``default_generation_settings.n_ctx``
  (the server's window, ``n_ctx``, which may be below the model's trained one in ``/v1/models``
  ``meta.n_ctx_train``); structured output through ``response_format`` (``json_schema``, or
  ``json_object`` with a ``schema``) or a top-level ``json_schema``; any model name is answered by the
  loaded model; a prompt of ``n_ctx`` tokens or more is its 400 ``exceed_context_size_error``; an
  answer that would pass the window is cut (``finish_reason: "length"``).

``overflow="truncate"`` makes any flavor keep only the end of a prompt that does not fit (as Ollama
does) and report the kept size in ``usage.prompt_tokens``: what truncation detection is tested with.

``"stream": true`` chat requests get server-sent events (``_sse``: one chunk per ~4-character token,
``usage`` at the end when ``stream_options.include_usage`` asks, or as llama-server sends it);
``token_delay_s`` paces them and ``stream_log`` records (chunks sent, whether the client hung up
first) per streamed answer. Fault modes of its own besides the shared ones: ``"repeat_loop"`` --
the answer repeats its last memory item (or sentence) up to ``max_tokens``, a small model stuck in
a loop; ``"trailing_whitespace"`` -- a complete answer followed by newlines up to ``max_tokens``
(what a JSON grammar lets a small model do). The shared ``"trickle"`` trickles streams too.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
import uuid
from typing import Any, Literal, cast

from . import _fakemodel as fm
from ._base import Fault, Reply
from ._ollama_server import LOOP_TOKENS, _looping
from ._sse import OPENAI_FAULT_MODES, StreamingServer, sse_chat

__all__ = ["DEFAULT_OPENAI_MODELS", "FLAVORS", "OPENAI_FAULT_MODES", "FakeOpenAIServer", "Flavor", "mask_key"]

Flavor = Literal["openai", "vllm", "llamacpp"]
FLAVORS: tuple[str, ...] = ("openai", "vllm", "llamacpp")

#: Model name -> (context window, embedding dims or None for chat models).
DEFAULT_OPENAI_MODELS: dict[str, tuple[int, int | None]] = {
    "gpt-4o-mini": (128_000, None),
    "gpt-4o": (128_000, None),
    "gpt-5-mini": (400_000, None),
    "text-embedding-3-small": (8191, 1536),
    "text-embedding-3-large": (8191, 3072),
}
DEFAULT_TEST_KEY = "sk-test-0123456789abcdefABCDEF"


def mask_key(key: str) -> str:
    """The way OpenAI echoes a wrong key in its 401 message: ``sk-tes***********CDEF``."""
    if len(key) <= 10:
        return key[:2] + "*" * max(0, len(key) - 2)
    return key[:6] + "*" * (len(key) - 10) + key[-4:]


def _error(status: int, message: str, typ: str, code: str | None, param: str | None = None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": typ, "param": param, "code": code}})


class FakeOpenAIServer(StreamingServer):
    """Fake OpenAI API under ``/v1``. ``api_key`` is the one key accepted (``None`` accepts any).

    ``base_url`` (``url + "/v1"``) is what ``openai.OpenAI(base_url=...)`` wants.
    """

    def __init__(
        self,
        *,
        api_key: str | None = DEFAULT_TEST_KEY,
        models: dict[str, tuple[int, int | None]] | None = None,
        flavor: Flavor = "openai",
        n_ctx: int | None = None,
        overflow: Literal["refuse", "truncate"] = "refuse",
        **kw: Any,
    ) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {', '.join(FLAVORS)}, got {flavor!r}")
        if overflow not in ("refuse", "truncate"):
            raise ValueError(f"overflow must be 'refuse' or 'truncate', got {overflow!r}")
        if n_ctx is not None and (flavor != "llamacpp" or n_ctx < 16):
            raise ValueError(f"n_ctx (llama-server's window) needs flavor='llamacpp' and >= 16, got {n_ctx!r}")
        super().__init__(**kw)
        self.api_key, self.flavor, self.n_ctx, self.overflow = api_key, flavor, n_ctx, overflow
        self.models = dict(DEFAULT_OPENAI_MODELS if models is None else models)
        self._initial = (api_key, dict(self.models))
        self.auth_failures = 0
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:  # never the key
        port = self._port or "-"
        return f"FakeOpenAIServer(port={port}, flavor={self.flavor}, models={len(self.models)})"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def _reset_state(self) -> None:
        self.api_key, models = self._initial
        self.models = dict(models)
        with self._count_lock:
            self.auth_failures = 0
        self._reset_streams()

    # --- routing ---------------------------------------------------------------------------------

    def _route(
        self, method: str, path: str, body: Any, headers: dict[str, str], fault: Fault | None
    ) -> Reply:
        refused = self._check_key(headers, fault)
        if refused is not None:
            return refused
        if fault is not None and fault.mode == "error500":
            return _error(500, "The server had an error while processing your request. Sorry about that!",
                          "server_error", None)
        if fault is not None and fault.mode == "error429":
            reply = _error(429, "Rate limit reached for requests. Please try again in 1s.", "requests",
                           "rate_limit_exceeded")
            if fault.retry_after is not None:
                reply.headers = {"Retry-After": f"{fault.retry_after:g}"}
            return reply
        if method == "GET" and path == "/v1/models":
            return Reply(200, {"object": "list", "data": [self._model_entry(m) for m in self.models]})
        if method == "GET" and path == "/props" and self.flavor == "llamacpp":
            return Reply(200, self._props())
        if method == "GET" and path.startswith("/v1/models/") and self.flavor == "openai":
            name = path.rsplit("/", 1)[1]
            return Reply(200, self._model_entry(name)) if name in self.models else self._no_model(name)
        if method != "POST" or path not in ("/v1/chat/completions", "/v1/embeddings"):
            return _error(404, f"Invalid URL ({method} {path})", "invalid_request_error", None)
        if not isinstance(body, dict):
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error", None)
        model = body.get("model")
        if self.flavor == "llamacpp" and self.models:  # one model loaded: it answers whatever name is asked
            served = model if model in self.models else next(iter(self.models))
        elif not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter", "invalid_request_error", None)
        else:
            served = model
        if served not in self.models or (fault is not None and fault.mode == "model_missing"):
            return self._no_model(str(model))
        if path == "/v1/embeddings":
            return self._embeddings(served, body)
        return self._chat(served, body, fault, str(model)) if model != served else self._chat(served, body, fault)

    def _check_key(self, headers: dict[str, str], fault: Fault | None) -> Reply | None:
        """OpenAI wants a key always; a local server only when started with one (each with its own 401)."""
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        wrong = (self.api_key is not None and given != self.api_key) or (fault is not None and fault.mode == "error401")
        if self.flavor == "vllm":
            return self._auth_fail_raw({"error": "Unauthorized"}) if wrong else None
        if self.flavor == "llamacpp":
            return self._auth_fail_raw({"error": {"code": 401, "message": "Invalid API Key",
                                                  "type": "authentication_error"}}) if wrong else None
        if not given:
            return self._auth_fail(
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", None)
        if wrong:
            return self._auth_fail(f"Incorrect API key provided: {mask_key(given)}. You can find your API key at "
                                   "https://platform.openai.com/account/api-keys.", "invalid_api_key")
        return None

    def _model_entry(self, name: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": name, "object": "model", "created": 1700000000, "owned_by": "openai"}
        ctx, dims = self.models[name]
        if self.flavor == "vllm":
            entry.update(owned_by="vllm", root=name, parent=None, max_model_len=ctx, permission=[])
        elif self.flavor == "llamacpp":
            entry.update(owned_by="llamacpp", meta={"n_ctx_train": ctx, "n_embd": dims or 576, "n_vocab": 49152})
        return entry

    def _props(self) -> dict[str, Any]:
        """llama-server's ``GET /props``: the server's window is ``default_generation_settings.n_ctx``."""
        name = next(iter(self.models), "")
        return {"default_generation_settings": {"n_ctx": self._window(name), "params": {"n_predict": -1}},
                "total_slots": 1, "model_path": f"/models/{name}.gguf", "modalities": {"vision": False}}

    def _window(self, model: str) -> int:
        return self.n_ctx if self.n_ctx is not None else self.models[model][0]

    def _auth_fail_raw(self, payload: dict[str, Any]) -> Reply:
        with self._count_lock:
            self.auth_failures += 1
        return Reply(401, payload)

    def _auth_fail(self, message: str, code: str | None) -> Reply:
        with self._count_lock:
            self.auth_failures += 1
        return _error(401, message, "invalid_request_error", code)

    def _no_model(self, model: str) -> Reply:
        if self.flavor == "vllm":
            return Reply(404, {"error": {"message": f"The model `{model}` does not exist.", "type": "NotFoundError",
                                         "param": "model", "code": 404}})
        return _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                      "invalid_request_error", "model_not_found")

    # --- endpoints -------------------------------------------------------------------------------

    def _embeddings(self, model: str, body: dict[str, Any]) -> Reply:
        _, dims = self.models[model]
        if not dims:
            return _error(
                400, f"This model does not support embeddings: {model}", "invalid_request_error", None
            )
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return _error(
                400,
                "'input' must be a non-empty string or array of strings",
                "invalid_request_error",
                None,
                "input",
            )
        dims = int(body.get("dimensions") or dims)
        data = []
        for i, text in enumerate(texts):
            vec: Any = fm.embed_text(text, dims)
            if body.get("encoding_format") == "base64":
                vec = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vec})
        tokens = sum(fm.estimate_tokens(t) for t in texts)
        return Reply(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _chat(self, model: str, body: dict[str, Any], fault: Fault | None, echo: str | None = None) -> Reply:
        """``model`` answers; ``echo`` is the name the answer carries (llama-server echoes what was asked)."""
        echo = echo or model
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return _error(
                400,
                "'messages' must be a non-empty array of objects",
                "invalid_request_error",
                None,
                "messages",
            )
        dims = self.models[model][1]
        if dims:
            return _error(404, f"This is not a chat model: {model}", "invalid_request_error", "model_not_found")
        window = self._window(model)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        limit = limit if isinstance(limit, int) and limit > 0 else None
        prompt = fm.prompt_text(messages)
        if self.overflow == "truncate":  # keep the end that fits beside the answer, say so only in usage
            prompt, prompt_tokens, _ = fm.truncate_prompt(prompt, max(1, window - (limit or 0)))
        else:
            prompt_tokens = fm.estimate_tokens(prompt)
            refused = self._too_long(window, prompt_tokens, limit)
            if refused is not None:
                return refused
        if self.flavor == "llamacpp" and limit is not None:  # the answer stops where the window ends
            limit = min(limit, max(1, window - prompt_tokens))
        rf = body.get("response_format") or {}
        rf_type = rf.get("type") if isinstance(rf, dict) else None
        if rf_type == "json_object" and self.flavor == "openai" and "json" not in prompt.lower():
            return _error(400, "'messages' must contain the word 'json' in some form, to use 'response_format' "
                          "of type 'json_object'.", "invalid_request_error", None, "messages")
        schema = self._schema(body, rf if isinstance(rf, dict) else {})
        text = fm.fake_answer(messages, prompt, model=echo, json_format=rf_type == "json_object", schema=schema)
        finish = "stop"
        tool_calls = self._tool_calls(body)
        if tool_calls:
            text, finish = "", "tool_calls"
        if limit is not None and fm.estimate_tokens(text) > limit:
            text, finish = text[: limit * fm.CHARS_PER_TOKEN], "length"
        if fault is not None:
            if fault.mode == "invalid_json":
                text = '{"memory": [{"id": "0", "text": broken' if rf_type else "{oops"
            elif fault.mode == "empty":
                text = ""
            elif fault.mode == "truncate_output":
                text, finish = text[: max(1, len(text) // 2)], "length"
            elif cast(str, fault.mode) == "repeat_loop":
                text, finish = _looping(text, (limit or LOOP_TOKENS) * fm.CHARS_PER_TOKEN), "length"
            elif cast(str, fault.mode) == "trailing_whitespace":
                pad = max(0, (limit or LOOP_TOKENS) * fm.CHARS_PER_TOKEN - len(text))
                text, finish = text + "\n" * pad, "length"
        completion_tokens = max(1, fm.estimate_tokens(text))
        usage: dict[str, int] | None = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if fault is not None and fault.mode == "omit_usage":  # some OpenAI-compatible servers do
            usage = None
        elif fault is not None and fault.mode == "negative_usage":
            usage = {"prompt_tokens": -1_000_000, "completion_tokens": -1, "total_tokens": -1_000_001}
        elif fault is not None and fault.mode == "zero_usage":
            usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        elif fault is not None and fault.mode == "absurd_usage":
            usage = {"prompt_tokens": 10**15, "completion_tokens": 10**15, "total_tokens": 2 * 10**15}
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if tool_calls else text,
            "refusal": None,
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": echo,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "system_fingerprint": "fp_fake",
        }
        if usage is not None:
            payload["usage"] = usage
        if body.get("stream") is True:
            options = body.get("stream_options")
            wants_usage = isinstance(options, dict) and options.get("include_usage") is True
            return Reply(200, sse_chat(payload, flavor=self.flavor, include_usage=wants_usage,
                                       token_delay_s=self.token_delay_s, stopping=self._stopping,
                                       on_end=self._streamed), {"Content-Type": "text/event-stream"})
        return Reply(200, payload)

    def _too_long(self, window: int, prompt_tokens: int, limit: int | None) -> Reply | None:
        """Each server's refusal of a prompt (or prompt + answer) that does not fit its window."""
        if self.flavor == "llamacpp":
            if prompt_tokens < window:
                return None
            return Reply(400, {"error": {"code": 400, "message": f"request ({prompt_tokens} tokens) exceeds the "
                                         f"available context size ({window} tokens), try increasing it",
                                         "type": "exceed_context_size_error", "n_prompt_tokens": prompt_tokens,
                                         "n_ctx": window}})
        if self.flavor == "vllm":
            if prompt_tokens > window:
                message = (f"This model's maximum context length is {window} tokens. However, your request has "
                           f"{prompt_tokens} input tokens. Please reduce the length of the input messages.")
            elif limit is not None and prompt_tokens + limit > window:
                message = (f"'max_tokens' or 'max_completion_tokens' is too large: {limit}. This model's maximum "
                           f"context length is {window} tokens and your request has {prompt_tokens} input tokens "
                           f"({limit} > {window} - {prompt_tokens}).")
            else:
                return None
            return Reply(400, {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}})
        if prompt_tokens <= window:  # OpenAI refuses rather than truncates
            return None
        return _error(400, f"This model's maximum context length is {window} tokens. However, your messages "
                      f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages.",
                      "invalid_request_error", "context_length_exceeded", "messages")

    def _schema(self, body: dict[str, Any], rf: dict[str, Any]) -> dict[str, Any] | None:
        """The JSON schema the answer must follow, in the forms this flavor reads (others are ignored)."""
        rf_type = rf.get("type")
        found: Any = None
        if rf_type == "json_schema":
            found = (rf.get("json_schema") or {}).get("schema", {})
        elif rf_type == "json_object" and self.flavor == "llamacpp":
            found = rf.get("schema")
        elif self.flavor == "vllm" and body.get("guided_json") is not None:
            found = body["guided_json"]
        elif self.flavor == "llamacpp" and body.get("json_schema") is not None:
            found = body["json_schema"]
        if isinstance(found, str):  # vLLM takes guided_json as a JSON string too
            try:
                found = json.loads(found)
            except ValueError:
                found = None
        return found if isinstance(found, dict) else ({} if rf_type == "json_schema" else None)

    @staticmethod
    def _tool_calls(body: dict[str, Any]) -> list[dict[str, Any]] | None:
        """A call to the first (or the named) tool when ``tool_choice`` requires one."""
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        if not tools or choice in (None, "none", "auto"):
            return None
        wanted = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        for tool in tools:
            fn = tool.get("function", {}) if isinstance(tool, dict) else {}
            if wanted is None or fn.get("name") == wanted:
                args = fm.schema_instance(fn.get("parameters") or {"type": "object"})
                return [
                    {
                        "id": f"call_{uuid.uuid4().hex[:12]}",
                        "type": "function",
                        "function": {"name": fn.get("name", ""), "arguments": json.dumps(args)},
                    }
                ]
        return None
