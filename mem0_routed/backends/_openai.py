"""The OpenAI backend: one call at a time over the official ``openai`` client, errors normalised.

The key never appears in a repr, a log or an error: OpenAI's 401 body echoes a partly masked key
("Incorrect API key provided: sk-abc***xyz"), so every message is scrubbed of key-like text and
OpenAI's own exception is not chained (its message would carry the echo).
``openai`` is imported when the backend is first used; ``max_retries=0`` because the router retries.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

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
from ._base import ChatRequest, ChatResult, Health, Problem
from ._billing import billable_tokens
from ._deadline import deadline_scope, deadline_transport
from ._kinds import shared_backend
from ._loops import LoopClients
from ._openai_wire import (
    DATED_RE,
    KNOWN_CONTEXT_WINDOWS,
    NOT_CONFIGURED,
    SCHEMA_NAME_RE,
    SET_KEY,
    Key,
    httpx_lib,
    json_or_text,
    retry_after,
    scrub_secrets,
    tls,
)

if TYPE_CHECKING:
    import openai
    from pydantic import SecretStr

    from .._config import RouterConfig
    from ._base import Backend

__all__ = ["OpenAIBackend", "scrub_secrets"]

T = TypeVar("T")
log = logging.getLogger("mem0_routed")

class OpenAIBackend:
    """OpenAI (or an OpenAI-compatible server at ``base_url``). ``name`` keys its circuit breaker.

    Without a key every call raises ``AuthenticationError`` before any HTTP request and ``health()``
    reports ``configured=False``. The key is taken as given (``None`` means "not configured"); reading
    ``OPENAI_API_KEY`` is the config's job.
    """

    kind: BackendKind = "openai"
    is_local: bool = False
    plans_context: bool = False  # the provider refuses a prompt too long for the model, it never cuts one

    def __init__(
        self,
        api_key: str | SecretStr | None,
        *,
        base_url: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 120.0,
    ) -> None:
        raw: str | None
        if api_key is None or isinstance(api_key, str):
            raw = api_key
        elif hasattr(api_key, "get_secret_value"):
            raw = api_key.get_secret_value()
        else:
            raise TypeError(
                f"api_key must be a str, a pydantic SecretStr or None, got {type(api_key).__name__}"
            )
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must be an http(s) URL such as 'https://api.openai.com/v1', got {mask_url(str(base_url))!r}"
            )
        for label, value in (("connect_timeout_s", connect_timeout_s), ("read_timeout_s", read_timeout_s)):
            if value <= 0:
                raise ValueError(f"{label} must be > 0 seconds, got {value!r}")
        self._key = Key(raw.strip()) if raw and raw.strip() else None
        self.base_url = base_url.rstrip("/") if base_url else None
        self.shown_url = mask_url(self.base_url) if self.base_url else None  # no password in names
        self.name = f"openai@{self.shown_url}" if self.shown_url else "openai"
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._lock = threading.Lock()
        self._warned_usage = False
        self._client: openai.OpenAI | None = None
        self._aclients: LoopClients[openai.AsyncOpenAI] = LoopClients(self._new_async, _aclose)

    @property
    def configured(self) -> bool:
        """Whether a key was given (not whether it is valid)."""
        return self._key is not None

    def __repr__(self) -> str:
        key = "set" if self._key else "missing"
        url = f", base_url={self.shown_url!r}" if self.shown_url else ""
        return f"OpenAIBackend(key={key}{url})"

    # --- clients ---------------------------------------------------------------------------------

    def _client_kwargs(self, *, is_async: bool = False) -> dict[str, Any]:
        import openai

        assert self._key is not None
        http = openai.DefaultAsyncHttpxClient if is_async else openai.DefaultHttpxClient
        kwargs: dict[str, Any] = {
            "api_key": self._key.get(),
            "max_retries": 0,
            "timeout": openai.Timeout(self.read_timeout_s, connect=self.connect_timeout_s),
            # the deadline bounds the body; one TLS context per process
            "http_client": http(transport=deadline_transport(is_async, httpx_lib(), verify=tls())),
        }
        if self.base_url:
            kwargs["base_url"] = self.base_url
        return kwargs

    def _sync(self, model: str) -> openai.OpenAI:
        self._require_key(model)
        if self._client is None:
            import openai

            with self._lock:
                if self._client is None:
                    self._client = openai.OpenAI(**self._client_kwargs())
        return self._client

    def _async(self, model: str) -> openai.AsyncOpenAI:
        """The AsyncOpenAI of the running loop (async pools cannot cross loops), closed with it."""
        self._require_key(model)
        return self._aclients.get()

    def _new_async(self) -> openai.AsyncOpenAI:
        import openai

        return openai.AsyncOpenAI(**self._client_kwargs(is_async=True))

    def _require_key(self, model: str) -> None:
        if self._key is None:
            raise AuthenticationError(
                f"{self.name}: no API key configured (model {model or '-'})",
                backend=self.name,
                model=model,
                fix=SET_KEY,
            )

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        self._aclients.clear()
        if client is not None:
            client.close()

    # --- errors ----------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return scrub_secrets(text, self._key.get() if self._key else "")

    def _invoke(self, model: str, what: str, fn: Callable[..., T], /, **params: Any) -> T:
        """Run one client call; every client error becomes ours, with no link back to it
        (neither ``__cause__`` nor ``__context__``: openai's exception may echo the key)."""
        try:
            return fn(**params)
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - every client error is translated, none escapes
            err = self._translate(exc, model, what)
        raise err from None  # raised outside the except block, so no __context__ either

    async def _ainvoke(self, model: str, what: str, fn: Callable[..., Awaitable[T]], /, **params: Any) -> T:
        try:
            return await fn(**params)
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001
            err = self._translate(exc, model, what)
        raise err from None

    def _translate(self, exc: Exception, model: str, what: str) -> BackendError:
        import openai

        kw: dict[str, Any] = {"backend": self.name, "model": model}
        about = f"{what}, model {model}" if model else what
        if isinstance(exc, openai.APITimeoutError):
            return BackendTimeout(f"{self.name} timed out ({about})", **kw)
        if isinstance(exc, openai.APIConnectionError):
            return BackendUnavailable(
                f"{self.name} is not reachable ({about}): {self._scrub(str(exc.message))}",
                fix="check the network connection to OpenAI (or base_url)",
                **kw,
            )
        if isinstance(exc, openai.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            detail = self._scrub(str(body.get("message") or exc.message))
            status = exc.status_code
            msg = f"{self.name} answered HTTP {status} ({about}): {detail}"
            if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
                return AuthenticationError(msg, fix="set OPENAI_API_KEY to a valid key", **kw)
            if isinstance(exc, openai.RateLimitError):
                return RateLimited(msg, retry_after=retry_after(exc.response.headers), **kw)
            if isinstance(exc, openai.NotFoundError):
                return ModelNotFound(
                    msg, fix="use a model your OpenAI account can access, e.g. gpt-4o-mini", **kw
                )
            if status >= 500:
                return ServerError(msg, **kw)
            return BadRequest(msg, **kw)
        if isinstance(exc, UnicodeEncodeError):  # our request could not be encoded: not the server's fault
            return BadRequest(f"{self.name}: the request has text UTF-8 cannot encode ({about}, a lone surrogate)",
                              fix="clean the text: text.encode('utf-8', 'replace').decode()", **kw)
        return ServerError(
            f"{self.name} failed ({about}): {type(exc).__name__}: {self._scrub(str(exc))}", **kw
        )

    # --- chat ------------------------------------------------------------------------------------

    def _chat_params(self, request: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = {"model": request.model, "messages": request.messages}
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.top_p is not None:
            params["top_p"] = request.top_p
        if request.max_tokens is not None:
            params["max_completion_tokens"] = request.max_tokens
        if request.json_schema is not None:
            name = SCHEMA_NAME_RE.sub("_", str(request.json_schema.get("title") or "response"))[:64]
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": request.json_schema, "strict": False},
            }
        elif request.json_mode:
            params["response_format"] = {"type": "json_object"}
        if request.tools:
            params["tools"] = request.tools
            if request.tool_choice is not None:
                params["tool_choice"] = request.tool_choice
        if request.timeout_s is not None:
            params["timeout"] = request.timeout_s
        return params

    def _result(self, resp: Any, request: ChatRequest, t0: float) -> ChatResult:
        if not resp.choices:
            raise ServerError(
                f"{self.name} answered without choices (model {request.model})",
                backend=self.name,
                model=request.model,
            )
        choice = resp.choices[0]
        calls = None
        if choice.message.tool_calls:
            calls = [
                {"id": c.id, "name": c.function.name, "arguments": json_or_text(c.function.arguments)}
                for c in choice.message.tool_calls
                if getattr(c, "function", None) is not None
            ]
        text = choice.message.content or ""
        tokens_in, tokens_out = self._usage(resp, request, text, calls)
        return ChatResult(
            text=text,
            model=resp.model or request.model,
            backend="openai",
            host=self.shown_url or "https://api.openai.com/v1",
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            done_reason=choice.finish_reason,
            tool_calls=calls,
            latency_s=time.perf_counter() - t0,
        )

    def _usage(
        self, resp: Any, request: ChatRequest, text: str, calls: list[dict[str, Any]] | None
    ) -> tuple[int, int]:
        """Token counts to bill (never ``None``, never a server's nonsense: see ``_billing``)."""
        tokens_in, tokens_out, problem = billable_tokens(getattr(resp, "usage", None), request, text, calls)
        if problem is not None:
            with self._lock:
                first = not self._warned_usage
                self._warned_usage = True
            (log.warning if first else log.debug)(
                "mem0-routed: %s sent no usable token usage (%s, model %s); the call is billed at our own "
                "count (%d in, %d out) so the budget still holds",
                self.name, problem, request.model, tokens_in, tokens_out,
            )  # fmt: skip
        return tokens_in, tokens_out

    def chat(self, request: ChatRequest) -> ChatResult:
        params = self._chat_params(request)
        client = self._sync(request.model)
        t0 = time.perf_counter()
        with deadline_scope(request.deadline):
            resp = self._invoke(request.model, "chat", client.chat.completions.create, **params)
        return self._result(resp, request, t0)

    async def achat(self, request: ChatRequest) -> ChatResult:
        params = self._chat_params(request)
        client = self._async(request.model)
        t0 = time.perf_counter()
        with deadline_scope(request.deadline):
            resp = await self._ainvoke(request.model, "chat", client.chat.completions.create, **params)
        return self._result(resp, request, t0)

    # --- embeddings ------------------------------------------------------------------------------

    def _vectors(self, resp: Any, model: str, texts: list[str]) -> list[list[float]]:
        data = sorted(resp.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise ServerError(
                f"{self.name} returned {len(data)} embeddings for {len(texts)} texts (model {model})",
                backend=self.name,
                model=model,
            )
        return [[float(x) for x in d.embedding] for d in data]

    def _embed_params(self, model: str, texts: list[str], timeout_s: float | None) -> dict[str, Any]:
        params: dict[str, Any] = {"model": model, "input": list(texts), "encoding_format": "float"}
        if timeout_s is not None:
            params["timeout"] = timeout_s
        return params

    def embed(self, model: str, texts: list[str], *, timeout_s: float | None = None) -> list[list[float]]:
        if not texts:
            return []
        client = self._sync(model)
        resp = self._invoke(
            model, "embed", client.embeddings.create, **self._embed_params(model, texts, timeout_s)
        )
        return self._vectors(resp, model, texts)

    # --- model facts -----------------------------------------------------------------------------

    def context_window(self, model: str) -> int | None:
        """Known windows of OpenAI's models (dated snapshots included); None for others."""
        return KNOWN_CONTEXT_WINDOWS.get(DATED_RE.sub("", model))

    def has_model(self, model: str) -> bool | None:
        """Unknown (None): listing models costs a request and OpenAI is rarely called."""
        return None

    def model_key(self, model: str) -> str:
        return model

    def truncated(self, request: ChatRequest, result: ChatResult, estimated_tokens: int) -> bool:
        return False

    def fix(self, problem: Problem, model: str | None = None) -> str | None:
        if problem == "not_configured":
            return SET_KEY
        if problem == "model_missing":
            return f"check the model name {model!r} (fallback_model) against the provider's model list"
        return "check the network, OPENAI_BASE_URL and the provider's status page"

    def health(self, *, timeout_s: float | None = None) -> Health:
        if self._key is None:
            return Health(self.name, "openai", reachable=False, error=NOT_CONFIGURED, configured=False)
        t0 = time.perf_counter()
        try:
            client = self._sync("")
            page = self._invoke("", "list models", client.models.list, timeout=timeout_s or 5.0)
            models = sorted(m.id for m in page.data)
        except BackendError as exc:
            error = f"{exc} — to fix: {exc.fix}" if exc.fix else str(exc)
            return Health(
                self.name, "openai", reachable=False, error=error, latency_s=time.perf_counter() - t0
            )
        return Health(self.name, "openai", reachable=True, models=models, latency_s=time.perf_counter() - t0)


async def _aclose(client: openai.AsyncOpenAI) -> None:
    await client.close()


def from_config(config: RouterConfig) -> list[Backend]:
    """The external backend for ``config`` (none without a key): shared per base URL, key and timeouts."""
    key = config.openai_api_key
    if key is None:
        return []
    # keyed by a hash of the key: two keys, two clients; the key itself is never a dict key
    tag = hashlib.sha256(key.get_secret_value().encode()).hexdigest()[:12]
    return [shared_backend(
        f"openai@{config.openai_base_url}#{tag}/{config.connect_timeout_s}/{config.external_timeout_s}",
        lambda: OpenAIBackend(key, base_url=config.openai_base_url, connect_timeout_s=config.connect_timeout_s,
                              read_timeout_s=config.external_timeout_s))]
