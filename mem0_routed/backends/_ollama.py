"""The Ollama backend: one call at a time over the official ``ollama`` client, errors normalised.

``ollama`` and ``httpx`` are imported when a backend is first used, so ``import mem0_routed`` stays
cheap. One sync client and one async client per running event loop are kept for the backend's life
(connection pooling comes with them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from .._config import mask_url
from .._errors import BackendError, ServerError
from .._num_ctx import looks_truncated
from .._types import BackendKind
from ._base import ChatRequest, ChatResult, Health, Problem, cached_listing, normalize_model_name
from ._deadline import current_deadline, deadline_scope, deadline_transport
from ._kinds import shared_backend
from ._loops import LoopClients, shared_ssl_context
from ._ollama_wire import (
    CALL,
    START_OLLAMA,
    Call,
    Streamed,
    aon_request,
    aon_response,
    context_length,
    count,
    on_request,
    on_response,
    seconds,
    to_ollama_message,
    translate,
)

if TYPE_CHECKING:
    import ollama

    from .._config import RouterConfig
    from ._base import Backend

__all__ = ["OllamaBackend"]



async def _aclose(client: ollama.AsyncClient) -> None:
    await client.close()  # type: ignore[no-untyped-call]


class OllamaBackend:
    """One Ollama host. ``name`` (``ollama@<url>``) keys its circuit breaker in the router.

    ``chat``/``embed`` raise only ``mem0_routed`` errors (``BackendUnavailable``, ``BackendTimeout``,
    ``ModelNotFound``, ``RateLimited``, ``ServerError``, ``AuthenticationError``, ``BadRequest``).
    ``ChatRequest.timeout_s`` overrides the read timeout for that call. ``tool_choice`` is ignored:
    Ollama has no such option.
    """

    kind: BackendKind = "ollama"
    is_local: bool = True
    plans_context: bool = True  # Ollama truncates silently past num_ctx: the router sizes every call

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
            {"request": [aon_request], "response": [aon_response]}
            if is_async
            else {"request": [on_request], "response": [on_response]}
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

    # --- errors ----------------------------------------------------------------------------------

    @contextmanager
    def _call(self, model: str, timeout_s: float | None = None, what: str = "chat",
              deadline: float | None = None) -> Iterator[Call]:
        """Run one client call with its timeout and turn every client error into ours. Calls other
        than chat (embed, show, list) end within their timeout as a whole, however slowly a server
        sends; a chat call ends by its request's deadline (the router always sets one)."""
        if deadline is None and what != "chat":
            deadline = time.monotonic() + (timeout_s or self.read_timeout_s)
        outer = current_deadline()  # the caller's deadline_s bounds side requests too (/api/tags, /api/show)
        if outer is not None:
            deadline = outer if deadline is None else min(deadline, outer)
        state = Call(timeout_s=timeout_s, connect_s=self.connect_timeout_s, deadline=deadline)
        token = CALL.set(state)
        try:
            with deadline_scope(deadline):
                yield state
        except BackendError:
            raise
        except Exception as exc:  # every client error is translated, none escapes
            raise translate(exc, where=f"Ollama at {self.shown_url}", name=self.name, model=model, what=what,
                            state=state) from exc
        finally:
            CALL.reset(token)

    def _chat_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        sizes = (request.num_ctx, request.temperature, request.top_p, request.max_tokens, request.repeat_penalty)
        names = ("num_ctx", "temperature", "top_p", "num_predict", "repeat_penalty")
        options = {k: v for k, v in zip(names, sizes) if v is not None}
        if request.num_ctx:
            self._sent_ctx[normalize_model_name(request.model)] = request.num_ctx
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": [to_ollama_message(m) for m in request.messages],
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
                stopped: str | None = None, streamed: Streamed | None = None) -> ChatResult:
        msg = resp.message
        calls = None
        if msg.tool_calls:
            calls = [
                {"name": c.function.name, "arguments": dict(c.function.arguments)} for c in msg.tool_calls
            ]
        final = bool(resp.done)
        eval_s = seconds(resp.eval_duration) if final else None
        tokens_out = count(resp.eval_count) if final else None
        if not final and streamed is not None and streamed.chunks > 1:  # stopped early: time the chunks
            tokens_out, eval_s = streamed.chunks, streamed.last - streamed.first
        return ChatResult(
            text=msg.content or "" if text is None else text,
            model=resp.model or request.model,
            backend="ollama",
            host=self.shown_url,
            tokens_in=count(resp.prompt_eval_count) if final else None,
            tokens_out=tokens_out,
            done_reason=resp.done_reason if final else None,
            tool_calls=calls,
            latency_s=time.perf_counter() - t0,
            stopped=stopped,
            prompt_eval_s=seconds(resp.prompt_eval_duration) if final else None,
            eval_s=eval_s,
            load_s=seconds(resp.load_duration) if final else None,
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
            state = Streamed()
            stream = self._sync().chat(**kwargs, stream=True)
            try:
                for part in stream:
                    if state.take(part, guard):
                        break
            finally:
                stream.close()  # type: ignore[attr-defined]
        return self._streamed_result(state, request, t0)

    async def achat(self, request: ChatRequest) -> ChatResult:
        kwargs = self._chat_kwargs(request)
        t0 = time.perf_counter()
        with self._call(request.model, request.timeout_s, deadline=request.deadline):
            if request.stream_guard is None or request.tools:
                return self._result(await self._async().chat(**kwargs), request, t0)
            guard = request.stream_guard()
            state = Streamed()
            stream = await self._async().chat(**kwargs, stream=True)
            try:
                async for part in stream:
                    if state.take(part, guard):
                        break
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
        return self._streamed_result(state, request, t0)

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

    def _streamed_result(self, state: Streamed, request: ChatRequest, t0: float) -> ChatResult:
        if state.last_part is None:
            raise ServerError(f"Ollama at {self.shown_url} closed the stream without an answer",
                              backend=self.name, model=request.model)
        stopped = state.stopped
        if stopped == "complete" and state.last_part.done:
            stopped = None  # the model ended by itself: a normal answer with its counts
        return self._result(state.last_part, request, t0, text="".join(state.parts), stopped=stopped,
                            streamed=state)

    # --- what only Ollama knows --------------------------------------------------------------------

    def model_key(self, model: str) -> str:
        return normalize_model_name(model)

    def truncated(self, request: ChatRequest, result: ChatResult, estimated_tokens: int) -> bool:
        """Ollama keeps the end of a prompt longer than ``num_ctx`` and says nothing; its
        ``prompt_eval_count`` gives it away. A stream the router's guard stopped has no count."""
        return result.stopped is None and looks_truncated(
            prompt_eval_count=result.tokens_in, estimated_tokens=estimated_tokens, num_ctx=request.num_ctx)

    def fix(self, problem: Problem, model: str | None = None) -> str | None:
        if problem == "model_missing":
            return f"run `ollama pull {model}`"
        if problem == "unreachable":
            return START_OLLAMA
        return None

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
        value = context_length(info)
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
        names = cached_listing(self._models, self.models_ttl_s, self._model_names)
        return None if names is None else normalize_model_name(model) in names

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


def from_config(config: RouterConfig) -> list[Backend]:
    """One shared backend per ``ollama_urls`` entry and timeout settings (the table's factory)."""
    timeouts = f"{config.connect_timeout_s}/{config.read_timeout_s}"
    return [shared_backend(f"ollama@{url}#{timeouts}", partial(
        OllamaBackend, url, connect_timeout_s=config.connect_timeout_s, read_timeout_s=config.read_timeout_s))
        for url in config.ollama_urls]
