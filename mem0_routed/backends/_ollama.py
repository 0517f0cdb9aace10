"""The Ollama backend: one call at a time over the official ``ollama`` client, errors normalised.

``ollama`` and ``httpx`` are imported when a backend is first used, so ``import mem0_routed`` stays
cheap. One sync client and one async client per running event loop are kept for the backend's life
(connection pooling comes with them).
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._config import mask_url
from .._errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ModelNotFound,
    RateLimited,
    ServerError,
)
from .._types import BackendKind
from ._base import ChatRequest, ChatResult, Health, normalize_model_name
from ._deadline import deadline_scope, deadline_transport
from ._loops import LoopClients, shared_ssl_context

if TYPE_CHECKING:
    import httpx
    import ollama

__all__ = ["OllamaBackend"]

START_OLLAMA = "start Ollama (`ollama serve`) or set OLLAMA_URL to a running host"


async def _aclose(client: ollama.AsyncClient) -> None:
    await client.close()  # type: ignore[no-untyped-call]


def _count(value: object) -> int | None:
    """A token count as reported, or ``None`` when it cannot be one (a usage record refuses negatives)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


@dataclass(slots=True)
class _Call:
    """Per-call state shared with the httpx hooks: the timeout override, the Retry-After seen."""

    timeout_s: float | None = None
    connect_s: float = 2.0
    retry_after: float | None = None
    deadline: float | None = None
    sent: bool = False  # a request went out: an error before that is our request's, not the server's


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("mem0_routed_ollama_call", default=None)


def _on_request(request: httpx.Request) -> None:
    """Apply a per-call timeout: the ollama client has no timeout argument, httpx reads this one.
    With a deadline, no single wait may outlast it (the transport checks between reads)."""
    call = _CALL.get()
    if call is None:
        return
    call.sent = True
    t = call.timeout_s
    if call.deadline is not None:
        left = max(call.deadline - time.monotonic(), 0.001)
        t = left if t is None else min(t, left)
    if t is not None:
        request.extensions["timeout"] = {"connect": min(call.connect_s, t), "read": t, "write": t, "pool": t}


def _on_response(response: httpx.Response) -> None:
    """Keep Retry-After: ``ollama.ResponseError`` drops the headers."""
    call = _CALL.get()
    if call is not None and response.status_code == 429:
        try:
            call.retry_after = max(0.0, float(response.headers.get("retry-after", "")))
        except ValueError:
            call.retry_after = None  # absent or an HTTP date: the router uses its own backoff


async def _aon_request(request: httpx.Request) -> None:
    _on_request(request)


async def _aon_response(response: httpx.Response) -> None:
    _on_response(response)


class OllamaBackend:
    """One Ollama host. ``name`` (``ollama@<url>``) keys its circuit breaker in the router.

    ``chat``/``embed`` raise only ``mem0_routed`` errors (``BackendUnavailable``, ``BackendTimeout``,
    ``ModelNotFound``, ``RateLimited``, ``ServerError``, ``AuthenticationError``, ``BadRequest``).
    ``ChatRequest.timeout_s`` overrides the read timeout for that call. ``tool_choice`` is ignored:
    Ollama has no such option.
    """

    kind: BackendKind = "ollama"
    is_local: bool = True

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 300.0,
        models_ttl_s: float = 30.0,
        keep_alive: str | float | None = None,
    ) -> None:
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must be an http(s) URL such as 'http://localhost:11434', got {mask_url(str(base_url))!r}"
            )
        for label, value in (("connect_timeout_s", connect_timeout_s), ("read_timeout_s", read_timeout_s)):
            if value <= 0:
                raise ValueError(f"{label} must be > 0 seconds, got {value!r}")
        self.base_url = base_url.rstrip("/")
        self.shown_url = mask_url(self.base_url)  # what names, errors and records show: no password
        self.name = f"ollama@{self.shown_url}"
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.models_ttl_s = models_ttl_s
        self.keep_alive = keep_alive
        self._lock = threading.Lock()
        self._client: ollama.Client | None = None
        self._aclients: LoopClients[ollama.AsyncClient] = LoopClients(self._new_async, _aclose)
        self._ctx_cache: dict[str, int] = {}
        #: num_ctx last sent per model: an embed call to a model that also chats sends the same
        #: one, else Ollama reloads the model (dropping its prompt cache) at every switch.
        self._sent_ctx: dict[str, int] = {}
        self._warned: set[str] = set()
        self._models: tuple[float, frozenset[str]] | None = None

    def __repr__(self) -> str:
        return f"OllamaBackend(base_url={self.shown_url!r})"

    # --- clients ---------------------------------------------------------------------------------

    def _client_kwargs(self, *, is_async: bool) -> dict[str, Any]:
        import httpx

        hooks: dict[str, list[Any]] = (
            {"request": [_aon_request], "response": [_aon_response]}
            if is_async
            else {"request": [_on_request], "response": [_on_response]}
        )
        return {
            "host": self.base_url,
            "timeout": httpx.Timeout(self.read_timeout_s, connect=self.connect_timeout_s),
            "event_hooks": hooks,
            "transport": deadline_transport(is_async, verify=shared_ssl_context()),
        }

    def _sync(self) -> ollama.Client:
        if self._client is None:
            import ollama

            with self._lock:
                if self._client is None:
                    self._client = ollama.Client(**self._client_kwargs(is_async=False))
        return self._client

    def _async(self) -> ollama.AsyncClient:
        """The AsyncClient of the running loop (httpx async pools cannot cross loops), closed with it."""
        return self._aclients.get()

    def _new_async(self) -> ollama.AsyncClient:
        import ollama

        return ollama.AsyncClient(**self._client_kwargs(is_async=True))

    def close(self) -> None:
        """Close the sync client; async clients are closed when their loops shut down."""
        with self._lock:
            client, self._client = self._client, None
        self._aclients.clear()
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        """Close the running loop's async client (and the sync one)."""
        client = self._aclients.pop_running()
        if client is not None:
            await client.close()  # type: ignore[no-untyped-call]
        self.close()

    # --- errors ----------------------------------------------------------------------------------

    @contextmanager
    def _call(self, model: str, timeout_s: float | None = None, what: str = "chat",
              deadline: float | None = None) -> Iterator[_Call]:
        """Run one client call with its timeout and turn every client error into ours. Calls other
        than chat (embed, show, list) end within their timeout as a whole, however slowly a server
        sends; a chat call ends by its request's deadline (the router always sets one)."""
        if deadline is None and what != "chat":
            deadline = time.monotonic() + (timeout_s or self.read_timeout_s)
        state = _Call(timeout_s=timeout_s, connect_s=self.connect_timeout_s, deadline=deadline)
        token = _CALL.set(state)
        try:
            with deadline_scope(deadline):
                yield state
        except BackendError:
            raise
        except Exception as exc:  # every client error is translated, none escapes
            raise self._translate(exc, model, what, state) from exc
        finally:
            _CALL.reset(token)

    def _translate(self, exc: Exception, model: str, what: str, state: _Call) -> BackendError:
        import httpx
        import ollama

        where = f"Ollama at {self.shown_url}"
        about = f" ({what}, model {model})" if model else f" ({what})"
        kw: dict[str, Any] = {"backend": self.name, "model": model}
        if isinstance(exc, ollama.ResponseError):
            status, detail = exc.status_code, str(exc.error)
            if status == 404 or "try pulling" in detail:
                return ModelNotFound(
                    f"{where} does not have model {model!r}: {detail}", fix=f"ollama pull {model}", **kw
                )
            if status == 429:
                return RateLimited(
                    f"{where} is rate limiting{about}: {detail}", retry_after=state.retry_after, **kw
                )
            if status in (401, 403):
                return AuthenticationError(
                    f"{where} refused the credentials{about}: {detail}",
                    fix="check OLLAMA_API_KEY or the proxy in front of Ollama",
                    **kw,
                )
            if status >= 500 or status < 0:
                return ServerError(f"{where} failed{about}: {detail} (HTTP {status})", **kw)
            return BadRequest(f"{where} rejected the request{about}: {detail} (HTTP {status})", **kw)
        if isinstance(exc, httpx.TimeoutException):
            kind = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for an answer"
            return BackendTimeout(
                f"{where} timed out {kind}{about}", fix=START_OLLAMA if kind == "connecting" else None, **kw
            )
        if isinstance(exc, (ConnectionError, httpx.TransportError)):
            reason = "connection refused" if isinstance(exc, ConnectionError) else type(exc).__name__
            return BackendUnavailable(f"{where} is not reachable{about}: {reason}", fix=START_OLLAMA, **kw)
        if isinstance(exc, httpx.InvalidURL):
            return BackendUnavailable(
                f"{where}: invalid URL ({exc})", fix="set OLLAMA_URL to e.g. http://localhost:11434", **kw
            )
        if isinstance(exc, ollama.RequestError):
            return BadRequest(f"{where}: bad request{about}: {exc.error}", **kw)
        if _is_request_validation(exc):  # the client refused our request before sending it
            return BadRequest(f"{where}: the ollama client rejected the request{about}: {_request_error(exc)}", **kw)
        if isinstance(exc, UnicodeEncodeError):  # our request could not be encoded: not the server's fault
            return BadRequest(f"{where}: the request has text UTF-8 cannot encode{about} (a lone surrogate)",
                              fix="clean the text: text.encode('utf-8', 'replace').decode()", **kw)
        if not state.sent:  # the client failed building our request (e.g. serialising it): nothing was sent
            return BadRequest(f"{where}: the request could not be sent as it is{about}: {_request_error(exc)}",
                              **kw)
        # A 200 whose body is not Ollama's JSON (a proxy page, a broken server).
        return ServerError(f"{where} sent an unreadable answer{about}: {type(exc).__name__}", **kw)

    # --- chat ------------------------------------------------------------------------------------

    def _chat_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        sizes = (request.num_ctx, request.temperature, request.top_p, request.max_tokens, request.repeat_penalty)
        names = ("num_ctx", "temperature", "top_p", "num_predict", "repeat_penalty")
        options = {k: v for k, v in zip(names, sizes) if v is not None}
        if request.num_ctx:
            self._sent_ctx[normalize_model_name(request.model)] = request.num_ctx
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": [_to_ollama_message(m) for m in request.messages],
            "options": options or None,
            "keep_alive": self.keep_alive,
        }
        if request.json_schema is not None:
            kwargs["format"] = request.json_schema
        elif request.json_mode:
            kwargs["format"] = "json"
        if request.tools:
            kwargs["tools"] = request.tools
        return kwargs

    def _result(self, resp: Any, request: ChatRequest, t0: float, text: str | None = None,
                stopped: str | None = None, streamed: _Streamed | None = None) -> ChatResult:
        msg = resp.message
        calls = None
        if msg.tool_calls:
            calls = [
                {"name": c.function.name, "arguments": dict(c.function.arguments)} for c in msg.tool_calls
            ]
        final = bool(resp.done)
        eval_s = _seconds(resp.eval_duration) if final else None
        tokens_out = _count(resp.eval_count) if final else None
        if not final and streamed is not None and streamed.chunks > 1:  # stopped early: time the chunks
            tokens_out, eval_s = streamed.chunks, streamed.last - streamed.first
        return ChatResult(
            text=msg.content or "" if text is None else text,
            model=resp.model or request.model,
            backend="ollama",
            host=self.shown_url,
            tokens_in=_count(resp.prompt_eval_count) if final else None,
            tokens_out=tokens_out,
            done_reason=resp.done_reason if final else None,
            tool_calls=calls,
            latency_s=time.perf_counter() - t0,
            stopped=stopped,
            prompt_eval_s=_seconds(resp.prompt_eval_duration) if final else None,
            eval_s=eval_s,
            load_s=_seconds(resp.load_duration) if final else None,
        )

    def _embed_options(self, model: str) -> dict[str, Any] | None:
        key = normalize_model_name(model)
        num_ctx = self._sent_ctx.get(key)
        if num_ctx and key not in self._warned:
            self._warned.add(key)
            logging.getLogger("mem0_routed").warning(
                "mem0-routed: %s serves both chat and embeddings on %s; each embed call evicts the chat "
                "prompt from Ollama's cache (measured on 0.5.4: 1.4 s prefill cached, 16 s after an embed); "
                "a separate embedding model (e.g. nomic-embed-text, all-minilm) keeps chat calls fast",
                model, self.shown_url)
        return {"num_ctx": num_ctx} if num_ctx else None

    def chat(self, request: ChatRequest) -> ChatResult:
        kwargs = self._chat_kwargs(request)
        t0 = time.perf_counter()
        with self._call(request.model, request.timeout_s, deadline=request.deadline):
            if request.stream_guard is None or request.tools:
                return self._result(self._sync().chat(**kwargs), request, t0)
            guard = request.stream_guard()
            state = _Streamed()
            stream = self._sync().chat(**kwargs, stream=True)
            try:
                for part in stream:
                    if state.take(part, guard):
                        break
            finally:
                stream.close()  # type: ignore[attr-defined]
        return state.result(self, request, t0, guard)

    async def achat(self, request: ChatRequest) -> ChatResult:
        kwargs = self._chat_kwargs(request)
        t0 = time.perf_counter()
        with self._call(request.model, request.timeout_s, deadline=request.deadline):
            if request.stream_guard is None or request.tools:
                return self._result(await self._async().chat(**kwargs), request, t0)
            guard = request.stream_guard()
            state = _Streamed()
            stream = await self._async().chat(**kwargs, stream=True)
            try:
                async for part in stream:
                    if state.take(part, guard):
                        break
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
        return state.result(self, request, t0, guard)

    # --- embeddings ------------------------------------------------------------------------------

    def _vectors(self, resp: Any, model: str, texts: list[str]) -> list[list[float]]:
        vectors = [[float(x) for x in v] for v in resp.embeddings]
        if len(vectors) != len(texts):
            raise ServerError(
                f"Ollama at {self.shown_url} returned {len(vectors)} embeddings for {len(texts)} texts (model {model})",
                backend=self.name,
                model=model,
            )
        return vectors

    def embed(self, model: str, texts: list[str], *, timeout_s: float | None = None) -> list[list[float]]:
        """All ``texts`` in one ``/api/embed`` call."""
        if not texts:
            return []
        with self._call(model, timeout_s, "embed"):
            resp = self._sync().embed(model=model, input=list(texts), keep_alive=self.keep_alive,
                                      options=self._embed_options(model))
        return self._vectors(resp, model, texts)

    async def aembed(
        self, model: str, texts: list[str], *, timeout_s: float | None = None
    ) -> list[list[float]]:
        if not texts:
            return []
        with self._call(model, timeout_s, "embed"):
            resp = await self._async().embed(model=model, input=list(texts), keep_alive=self.keep_alive,
                                             options=self._embed_options(model))
        return self._vectors(resp, model, texts)

    # --- model facts -----------------------------------------------------------------------------

    def context_window(self, model: str) -> int | None:
        """``model_info["<arch>.context_length"]`` from ``/api/show``, read once per model.

        Raises the usual backend errors (e.g. ``ModelNotFound``) when it cannot ask; None when
        Ollama does not report a context length for the model.
        """
        key = normalize_model_name(model)
        if key in self._ctx_cache:
            return self._ctx_cache[key]
        with self._call(model, min(self.read_timeout_s, 30.0), "show"):
            info: Mapping[str, Any] = self._sync().show(model).modelinfo or {}
        value = _context_length(info)
        if value is not None:
            self._ctx_cache[key] = value
        return value

    def _model_names(self, timeout_s: float | None = None) -> frozenset[str]:
        with self._call("", timeout_s or min(self.read_timeout_s, self.connect_timeout_s + 5.0), "list models"):
            listed = self._sync().list().models
        names = frozenset(normalize_model_name(m.model) for m in listed if m.model)
        self._models = (time.monotonic(), names)
        return names

    def has_model(self, model: str) -> bool | None:
        """From the ``/api/tags`` list cached for ``models_ttl_s``; None when Ollama cannot be asked.

        A timeout is raised, not swallowed: a hanging host must trip its breaker after one wait,
        not cost a second timeout on the chat call that would follow."""
        cached = self._models
        if cached is None or time.monotonic() - cached[0] > self.models_ttl_s:
            try:
                names = self._model_names()
            except BackendTimeout:
                raise
            except BackendError:
                return None
        else:
            names = cached[1]
        return normalize_model_name(model) in names

    def health(self, *, timeout_s: float | None = None) -> Health:
        t0 = time.perf_counter()
        try:
            names = self._model_names(timeout_s)
        except BackendError as exc:
            error = f"{exc} — to fix: {exc.fix}" if exc.fix else str(exc)
            return Health(
                self.name, "ollama", reachable=False, error=error, latency_s=time.perf_counter() - t0
            )
        return Health(
            self.name,
            "ollama",
            reachable=True,
            models=sorted(names),
            latency_s=time.perf_counter() - t0,
            context_windows=dict(self._ctx_cache),
        )


#: ollama's request models: a ValidationError titled by one of them was raised before anything was sent
_REQUEST_MODELS = frozenset({"Message", "ChatRequest", "EmbedRequest", "Tool", "Options", "Image", "ToolCall"})


def _is_request_validation(exc: Exception) -> bool:
    return type(exc).__name__ == "ValidationError" and getattr(exc, "title", None) in _REQUEST_MODELS


def _request_error(exc: Exception) -> str:
    """What was wrong with our request, without the input itself (it is the user's text and may hold
    a secret): pydantic's error locations and messages, else the exception's type."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            items = errors(include_input=False, include_url=False)
            return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in items[:3])
        except Exception:  # noqa: BLE001 - only a description
            pass
    return type(exc).__name__


class _Streamed:
    """A streamed answer being read: its text, chunk timing, and the final (or last) chunk.

    After the guard says "complete", a few more chunks are read: the model usually ends right
    after the closing brace, and that last chunk carries Ollama's token counts and timings."""

    GRACE_CHUNKS = 8

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.chunks = 0
        self.first = self.last = 0.0
        self.last_part: Any = None
        self.stopped: str | None = None
        self.grace = 0

    def take(self, part: Any, guard: Any) -> bool:
        """Record one chunk; True when reading should stop."""
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.last_part = part
        content = part.message.content or "" if part.message is not None else ""
        if part.done:
            if self.stopped is None:
                self.parts.append(content)
            return True
        self.chunks += 1
        if self.stopped == "complete":  # only whitespace may follow a complete object
            self.grace += 1
            return bool(content.strip()) or self.grace >= self.GRACE_CHUNKS
        self.parts.append(content)
        verdict: str | None = guard.feed(content)
        if verdict is not None:
            self.stopped = verdict
            return verdict != "complete"
        return False

    def result(self, backend: OllamaBackend, request: ChatRequest, t0: float, guard: Any) -> ChatResult:
        if self.last_part is None:
            raise ServerError(f"Ollama at {backend.shown_url} closed the stream without an answer",
                              backend=backend.name, model=request.model)
        stopped = self.stopped
        if stopped == "complete" and self.last_part.done:
            stopped = None  # the model ended by itself: a normal answer with its counts
        return backend._result(self.last_part, request, t0, text="".join(self.parts), stopped=stopped,
                               streamed=self)


def _seconds(ns: int | None) -> float | None:
    return ns / 1e9 if ns else None


def _context_length(info: Mapping[str, Any]) -> int | None:
    arch = info.get("general.architecture")
    value = info.get(f"{arch}.context_length") if arch else None
    if value is None:  # unusual metadata: take any "<x>.context_length"
        value = next((v for k, v in info.items() if k.endswith(".context_length")), None)
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def _image_data(part: Mapping[str, Any]) -> str:
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, Mapping) else url
    if isinstance(url, str) and url.startswith("data:") and "," in url:
        return url.split(",", 1)[1]
    raise BadRequest(
        "Ollama takes images as base64 data, not URLs", fix="pass data:image/...;base64,... URLs"
    )


def _to_ollama_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI-style messages (mem0's) to Ollama's: text parts joined, data-URL images to base64,
    tool-call arguments as objects."""
    out: dict[str, Any] = {"role": message.get("role", "user")}
    content = message.get("content")
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, Mapping)]
        out["content"] = "\n".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")
        images = [_image_data(p) for p in parts if p.get("type") == "image_url"]
        if images:
            out["images"] = images
    elif content is not None:
        out["content"] = str(content)
    if message.get("images"):
        out["images"] = list(message["images"])
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {"function": {"name": fn.get("name", ""), "arguments": _args(fn.get("arguments"))}}
            for fn in (call.get("function", call) for call in message["tool_calls"])
        ]
    if message.get("role") == "tool" and message.get("name"):
        out["tool_name"] = message["name"]
    return out


def _args(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {"input": value}
    return dict(value) if isinstance(value, Mapping) else {}
