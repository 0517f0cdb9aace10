"""A local tier on any OpenAI-compatible server: vLLM, SGLang, llama.cpp's ``llama-server``,
llama-cpp-python, LM Studio, LocalAI.

It is the OpenAI backend (same client, key scrubbing, error translation) with what a local server
needs on top: it costs $0 and counts as local (keep-local rules may send calls here); it learns each
model's context window from the server (vLLM/SGLang ``/v1/models`` ``max_model_len``, llama-server
``/props`` ``n_ctx``, else the configured ``openai_compatible_context_window``) so a prompt that
cannot fit is refused before it is sent; it asks for mem0's extraction schema in the dialect the
server speaks; it streams guarded answers so a looping model is cut (``_openai_stream``); it names
the server in every fix.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from .._errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ContextOverflow,
    ModelNotFound,
    ServerError,
)
from .._num_ctx import looks_truncated
from .._types import BackendKind
from ._base import ChatRequest, ChatResult, Health, Problem, cached_listing
from ._billing import served_counts
from ._kinds import shared_backend
from ._openai import OpenAIBackend

if TYPE_CHECKING:
    from .._config import RouterConfig
    from ._base import Backend

__all__ = ["OpenAICompatibleBackend", "StructuredOutput", "from_config", "normalize_base_url", "routes"]

#: How a server is asked for JSON that follows a schema. ``json_schema``: OpenAI's
#: ``response_format`` (vLLM, SGLang, llama-server, LM Studio); ``json_object``: ``{"type":
#: "json_object", "schema": ...}`` (llama-cpp-python, llama-server); ``guided_json``: vLLM's own
#: field; ``auto``: ``json_schema``, and ``json_object`` from then on if the server refuses it.
StructuredOutput = Literal["auto", "json_schema", "json_object", "guided_json", "none"]

#: The servers' own words for "the prompt is longer than my window" (vLLM, llama-cpp-python, llama-server).
_TOO_LONG_RE = re.compile(r"maximum context length|exceeds? (the )?(available )?context|context (window|size|length)"
                          r".{0,40}exceed|prompt is too long|too many tokens", re.IGNORECASE)
_KEY_FIX = ("set openai_compatible_api_key (env OPENAI_COMPATIBLE_API_KEY) to the key the server was started "
            "with (vLLM --api-key, llama-server --api-key)")
#: A server refusing the ``json_schema`` response_format *type* (not one caller's schema): the switch
#: to ``json_object`` is then right for every caller of that server.
_REFUSES_SCHEMA_TYPE = re.compile(
    r"response_format\W{1,4}type|should be 'text' or 'json_object'"
    r"|json_schema\W.{0,40}(not supported|unsupported)|(not supported|unsupported).{0,40}\Wjson_schema", re.I | re.S)

log = logging.getLogger("mem0_routed")
_NO_KEY = "no-key"  # the openai client needs some key; most local servers accept any


def normalize_base_url(url: str) -> str:
    """``http://host:8000`` -> ``http://host:8000/v1``: the servers document both forms, the
    client needs the one ending in ``/v1``."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return urlunsplit((parts.scheme, parts.netloc, "/v1", "", ""))
    return url


class OpenAICompatibleBackend(OpenAIBackend):
    """One OpenAI-compatible server at ``base_url``, used as a local tier. ``name`` keys its breaker.

    ``api_key`` is optional (most local servers need none). ``context_window`` is used for models
    the server does not report a window for. ``models_ttl_s``: how long the model list is trusted.
    """

    kind: BackendKind = "openai_compatible"
    is_local: bool = True
    plans_context: bool = False  # the window is fixed when the server starts; prompts are checked against it

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        context_window: int | None = None,
        structured_output: StructuredOutput = "auto",
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 300.0,
        models_ttl_s: float = 30.0,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.strip().startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL such as 'http://localhost:8000/v1', got {base_url!r}")
        from .._urls import check_no_credentials

        check_no_credentials(base_url.strip())  # no user:password@ or ?key=: the URL names the backend everywhere
        real_key = api_key.strip() if api_key and api_key.strip() else None
        super().__init__(real_key or _NO_KEY, base_url=normalize_base_url(base_url),
                         connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s)
        self._real_key = real_key is not None
        self.name = f"openai_compatible@{self.shown_url}"
        self.configured_window = context_window
        self.structured_output: StructuredOutput = structured_output
        self.models_ttl_s = models_ttl_s
        self._windows: dict[str, int | None] = {}
        self._models: tuple[float, dict[str, dict[str, Any]]] | None = None
        self._props: dict[str, Any] | None = None
        self._meta_lock = threading.Lock()
        self._pooled = False
        #: ask for ``usage`` at the end of a stream (``stream_options``) until the server refuses it
        self.stream_usage = True

    def __repr__(self) -> str:
        return f"OpenAICompatibleBackend(base_url={self.shown_url!r}, key={'set' if self._real_key else 'none'})"

    def _scrub(self, text: str) -> str:
        from ._openai_wire import scrub_secrets

        return scrub_secrets(text, self._key.get() if self._real_key and self._key else "")

    # --- errors: the server's words, our fixes -------------------------------------------------------

    def _translate(self, exc: Exception, model: str, what: str) -> BackendError:
        err = super()._translate(exc, model, what)
        body = getattr(exc, "body", None)
        if isinstance(err, BadRequest) and isinstance(body, dict) and "detail" in body:
            # FastAPI's validation error (vLLM, llama-cpp-python) says which field it refused; its
            # "input" echoes the refused value (a message: the prompt, maybe a secret), which would
            # reach the log and the ledger's error field, so only where and why are kept
            err = BadRequest(f"{err}: {self._scrub(json.dumps(_where_and_why(body['detail']))[:400])}",
                             backend=self.name, model=model)
        text = str(err)
        if isinstance(err, BadRequest) and _TOO_LONG_RE.search(text):
            return ContextOverflow(text, backend=self.name, model=model, fix=self._overflow_fix(model))
        if isinstance(err, AuthenticationError):
            err.fix = _KEY_FIX
        elif isinstance(err, ModelNotFound):
            err.fix = self.fix("model_missing", model)
        elif isinstance(err, (BackendUnavailable, BackendTimeout)):
            err.fix = self.fix("unreachable")
        return err

    def _overflow_fix(self, model: str) -> str:
        return (f"start the server with a larger window for {model} (vLLM --max-model-len, llama-server -c, "
                "llama-cpp-python --n_ctx), or route this call type to a model with a larger window")

    def fix(self, problem: Problem, model: str | None = None) -> str | None:
        if problem == "context_overflow":
            return self._overflow_fix(model or "the model")
        if problem == "model_missing":
            return (f"serve {model!r} at {self.shown_url} (vLLM: `vllm serve {model}`; llama-server/llama-cpp-python: "
                    f"--alias/--model_alias {model}), or route to a model GET {self.shown_url}/models lists")
        if problem == "not_configured":
            return "set openai_compatible_urls (env OPENAI_COMPATIBLE_URLS), e.g. http://localhost:8000/v1"
        return (f"start the OpenAI-compatible server at {self.shown_url} (e.g. `vllm serve MODEL`, "
                "`llama-server -m MODEL.gguf`, `python -m llama_cpp.server --model MODEL.gguf`) or fix "
                "openai_compatible_urls")

    # --- chat ---------------------------------------------------------------------------------------

    def _chat_params(self, request: ChatRequest) -> dict[str, Any]:
        params = super()._chat_params(request)
        limit = params.pop("max_completion_tokens", None)
        if limit is not None:  # every local server reads max_tokens; some ignore the newer name
            params["max_tokens"] = limit
        if request.json_schema is not None:
            mode = self.structured_output
            params.pop("response_format", None)
            if mode in ("auto", "json_schema"):
                params["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "response", "schema": request.json_schema, "strict": True}}
            elif mode == "json_object":
                params["response_format"] = {"type": "json_object", "schema": request.json_schema}
            elif mode == "guided_json":
                params["extra_body"] = {"guided_json": request.json_schema}
        if request.repeat_penalty is not None:  # the standard field every server reads
            params["frequency_penalty"] = min(2.0, max(0.0, request.repeat_penalty - 1.0))
        return params

    def _result(self, resp: Any, request: ChatRequest, t0: float) -> ChatResult:
        result = super()._result(resp, request, t0)
        result.backend = self.kind
        result.host = self.shown_url or ""
        return result

    def chat(self, request: ChatRequest) -> ChatResult:
        """Streamed through the router's guard when the request has one (a loop is cut, not read
        to ``max_tokens``: ``_openai_stream``); sent once more in a form the server takes when it
        refuses ours (``json_schema``, ``stream_options``)."""
        for _ in range(2):
            try:
                return self._chat_once(request)
            except (BadRequest, ServerError) as exc:
                if not self._adapt(request, exc):
                    raise
        return self._chat_once(request)

    async def achat(self, request: ChatRequest) -> ChatResult:
        for _ in range(2):
            try:
                return await self._achat_once(request)
            except (BadRequest, ServerError) as exc:
                if not self._adapt(request, exc):
                    raise
        return await self._achat_once(request)

    def _streams(self, request: ChatRequest) -> bool:
        return request.stream_guard is not None and not request.tools

    def _chat_once(self, request: ChatRequest) -> ChatResult:
        """Streamed when guarded. A stream that ended before its first word is asked once more
        unstreamed (the server then says why, e.g. a prompt over its window); that server may have
        reset the stream's connection, which the client finds only on reuse: so once more then."""
        if self._streams(request):
            from ._openai_stream import stream_chat

            streamed = stream_chat(self, request)
            if streamed is not None:
                return streamed
            try:
                return super().chat(request)
            except BackendUnavailable:
                pass
        return super().chat(request)

    async def _achat_once(self, request: ChatRequest) -> ChatResult:
        if self._streams(request):
            from ._openai_stream import astream_chat

            streamed = await astream_chat(self, request)
            if streamed is not None:
                return streamed
            try:
                return await super().achat(request)
            except BackendUnavailable:
                pass
        return await super().achat(request)

    def _adapt(self, request: ChatRequest, exc: BackendError) -> bool:
        """True when the call should be sent again in a form the server takes."""
        if self._fall_back_to_json_object(request, exc):
            return True
        if self._streams(request) and self.stream_usage and "stream_options" in str(exc):
            self.stream_usage = False  # counted by us from then on, as when a server sends no usage
            return True
        return False

    def _fall_back_to_json_object(self, request: ChatRequest, exc: BackendError) -> bool:
        """``auto``: a server that refuses ``json_schema`` (llama-cpp-python 0.3 answers 500 "Input
        should be 'text' or 'json_object'"; a stricter FastAPI server 422) is asked
        with ``json_object`` + schema from then on; True when the call should be sent again."""
        if request.json_schema is None or self.structured_output != "auto" or not _REFUSES_SCHEMA_TYPE.search(str(exc)):
            return False  # a refusal of one caller's schema says nothing of the server: it is that call's error
        self.structured_output = "json_object"
        return True

    def _vectors(self, resp: Any, model: str, texts: list[str]) -> list[list[float]]:
        """One vector per text. A server that returns one vector per *token* (llama-cpp-python
        with a model that has no pooling, e.g. SmolLM2) gets them mean-pooled: the same text
        always gives the same vector, so the store stays consistent."""
        for item in resp.data:
            tokens = item.embedding
            if tokens and isinstance(tokens[0], list):
                if not self._pooled:
                    self._pooled = True
                    log.warning("mem0-routed: %s returns one embedding per token for %s; mean-pooling them "
                                "(a model with pooling, e.g. an embedding model, gives better vectors)",
                                self.name, model)
                item.embedding = [sum(col) / len(tokens) for col in zip(*tokens)]
        return super()._vectors(resp, model, texts)

    def _usage(self, resp: Any, request: ChatRequest, text: str, calls: list[dict[str, Any]] | None
               ) -> tuple[int, int]:
        """The server's own counts when sane: nothing is billed here, and a ``prompt_tokens`` far
        below our estimate is the sign of a cut prompt (see ``truncated``), not a count to correct."""
        return served_counts(getattr(resp, "usage", None)) or super()._usage(resp, request, text, calls)

    def truncated(self, request: ChatRequest, result: ChatResult, estimated_tokens: int) -> bool:
        """A server that keeps only the end of a long prompt (vLLM ``truncate_prompt_tokens``,
        llama.cpp's context shift) reports the kept count in ``usage.prompt_tokens``."""
        window = self._windows.get(request.model)
        return result.stopped is None and looks_truncated(
            prompt_eval_count=result.tokens_in, estimated_tokens=estimated_tokens, num_ctx=window)

    # --- what the server says about its models ---------------------------------------------------------

    def _listed(self, timeout_s: float | None = None) -> dict[str, dict[str, Any]]:
        """``GET /models``: each model id with its entry (vLLM adds ``max_model_len``)."""
        client = self._sync("")
        page = self._invoke("", "list models", client.models.list,
                            timeout=timeout_s or min(self.read_timeout_s, self.connect_timeout_s + 5.0))
        data = getattr(page, "data", None)
        if not isinstance(data, list):  # `"data": null` escaped as a bare TypeError from every call
            raise BackendError(f"{self.name} answered GET /models without a list of models "
                               f"(data: {type(data).__name__})", backend=self.name,
                               fix=f"check that {self.shown_url} is an OpenAI-compatible server (GET /v1/models)")
        listed = {m.id: {**(getattr(m, "model_extra", None) or {})} for m in data
                  if isinstance(getattr(m, "id", None), str)}
        self._models = (time.monotonic(), listed)
        return listed

    def has_model(self, model: str) -> bool | None:
        """From the model list cached for ``models_ttl_s``; None when the server cannot be asked
        (a timeout is raised: a hanging server must trip its breaker after one wait)."""
        listed = cached_listing(self._models, self.models_ttl_s, self._listed)
        return None if listed is None else model in listed

    def context_window(self, model: str) -> int | None:
        """The server's window for ``model`` (read once), else ``openai_compatible_context_window``."""
        with self._meta_lock:
            if model in self._windows:
                return self._windows[model]
        window = self._served_window(model) or self.configured_window
        with self._meta_lock:
            self._windows[model] = window
        return window

    def _served_window(self, model: str) -> int | None:
        entry = (self._models[1] if self._models else None) or self._listed()
        meta = entry.get(model) or {}
        for key in ("max_model_len", "context_length", "max_context_length", "loaded_context_length"):
            if _positive(meta.get(key)):
                return int(meta[key])
        props = self._server_props()
        settings = props.get("default_generation_settings") or {}
        for value in (settings.get("n_ctx") if isinstance(settings, dict) else None, props.get("n_ctx")):
            if isinstance(value, int) and _positive(value):
                return value
        return None

    def _server_props(self) -> dict[str, Any]:
        """llama-server's ``GET /props`` (at the root, not under ``/v1``); ``{}`` elsewhere."""
        if self._props is None:
            root = (self.base_url or "").removesuffix("/v1")
            try:
                got = self._invoke("", "props", self._sync("").get, path=f"{root}/props", cast_to=object,
                                   options={"timeout": min(self.read_timeout_s, self.connect_timeout_s + 5.0)})
            except BackendTimeout:
                raise
            except BackendError:
                got = {}
            self._props = got if isinstance(got, dict) else {}
        return self._props

    def health(self, *, timeout_s: float | None = None) -> Health:
        t0 = time.perf_counter()
        try:
            listed = self._listed(timeout_s)
        except BackendError as exc:
            return Health(self.name, self.kind, reachable=False, error=f"{exc} — to fix: {self.fix('unreachable')}",
                          latency_s=time.perf_counter() - t0)
        windows = {m: w for m, w in self._windows.items() if w}
        windows.update({m: int(e["max_model_len"]) for m, e in listed.items() if _positive(e.get("max_model_len"))})
        return Health(self.name, self.kind, reachable=True, models=sorted(listed),
                      latency_s=time.perf_counter() - t0, context_windows=windows)


def _where_and_why(detail: Any) -> Any:
    """A FastAPI/pydantic ``detail`` without the values it echoes (``input``, ``ctx``)."""
    if isinstance(detail, list):
        return [{k: v for k, v in d.items() if k in ("loc", "msg", "type")} if isinstance(d, dict) else "?"
                for d in detail]
    return detail if isinstance(detail, str) and len(detail) <= 200 else "?"


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def routes(config: RouterConfig) -> dict[str, str]:
    """The route table on this tier: a route left at the seed's Ollama default (``codellama:13b``...)
    goes to ``llm_model`` instead, because a vLLM or llama-server deployment serves the models it was
    started with, not Ollama's names. Routes you set stay as they are."""
    from .._config import DEFAULT_MODELS

    table = dict(config.models)
    if config.llm_model:
        for route, model in table.items():
            if route != "embedding" and model == DEFAULT_MODELS.get(route):
                table[route] = config.llm_model
    return table


def from_config(config: RouterConfig) -> list[Backend]:
    """One shared backend per ``openai_compatible_urls`` entry and settings (the table's factory)."""
    key = config.openai_compatible_api_key
    raw = key.get_secret_value() if key is not None else None
    import hashlib

    tag = hashlib.sha256(raw.encode()).hexdigest()[:12] if raw else "-"  # the key itself is never a dict key
    settings = (f"{tag}/{config.openai_compatible_context_window}/{config.openai_compatible_structured_output}/"
                f"{config.connect_timeout_s}/{config.read_timeout_s}")
    return [shared_backend(f"openai_compatible@{url}#{settings}", partial(
        OpenAICompatibleBackend, url, api_key=raw, context_window=config.openai_compatible_context_window,
        structured_output=config.openai_compatible_structured_output, connect_timeout_s=config.connect_timeout_s,
        read_timeout_s=config.read_timeout_s)) for url in config.openai_compatible_urls]
