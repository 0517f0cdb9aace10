"""One interface for every place a model runs (an Ollama host, OpenAI, an in-process model, a fake).

Like httpx's transports: the router holds ``Backend`` objects and never knows which kind it has.
A backend does one call and translates its client's errors into ``mem0_routed._errors`` classes;
retries, breakers, fallback and validation belong to the router, not here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from .._errors import BackendError, BackendTimeout
from .._types import BackendKind


@dataclass(slots=True)
class ChatRequest:
    """Everything a backend needs for one chat call, already decided by the router.

    ``json_schema`` (a JSON Schema dict) asks for structured output; ``json_mode`` alone asks for
    any JSON object. ``num_ctx`` is set by the router for local backends (never silent truncation);
    remote backends ignore it.

    ``deadline`` (a ``time.monotonic()`` instant) bounds the whole call, however slowly the server
    sends; ``stream_guard`` makes a local backend stream the answer and stop when the guard says
    so (a loop, or a complete JSON object). ``repeat_penalty`` is set by a retry after a
    degenerate answer, so the same request is never sent twice.
    """

    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    json_mode: bool = False
    json_schema: dict[str, Any] | None = None
    num_ctx: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | None = None
    timeout_s: float | None = None
    deadline: float | None = None
    stream_guard: Callable[[], AnswerGuard] | None = None
    repeat_penalty: float | None = None


class AnswerGuard(Protocol):
    """What a backend feeds a streamed answer to (``mem0_routed._stream.StreamGuard``)."""

    @property
    def stopped(self) -> str | None: ...

    def feed(self, chunk: str) -> str | None: ...


class GuardedRead:
    """What both streamed reads (Ollama's NDJSON, OpenAI-compatible SSE) share: the text so far
    and the guard's verdict. After "complete", up to ``GRACE_CHUNKS`` more chunks are read as long
    as they carry no text: the model usually ends right after the closing brace, and the chunks
    that follow carry the finish and the token counts."""

    GRACE_CHUNKS = 8

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.stopped: str | None = None
        self.grace = 0

    def _guarded(self, content: str, guard: AnswerGuard) -> bool:
        """Feed one chunk's text to ``guard``; True when reading should stop."""
        if self.stopped == "complete":  # only whitespace may follow a complete object
            self.grace += 1
            return bool(content.strip()) or self.grace >= self.GRACE_CHUNKS
        self.parts.append(content)
        verdict = guard.feed(content)
        if verdict is not None:
            self.stopped = verdict
            return verdict != "complete"
        return False


@dataclass(slots=True)
class ChatResult:
    """One model answer. ``tokens_in``/``tokens_out`` come from the server's usage / eval counts.

    ``stopped`` says the router's guard ended a streamed answer early (``"loop"``/``"complete"``);
    ``prompt_eval_s``/``eval_s``/``load_s`` are the server's own timings when it reports them (the
    speeds the router learns)."""

    text: str
    model: str
    backend: BackendKind
    host: str = ""
    tokens_in: int | None = None
    tokens_out: int | None = None
    done_reason: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    latency_s: float = 0.0
    stopped: str | None = None
    prompt_eval_s: float | None = None
    eval_s: float | None = None
    load_s: float | None = None


@dataclass(slots=True)
class Health:
    """What a backend said when asked: reachable or not, which models it has, why not."""

    name: str
    kind: BackendKind
    reachable: bool
    models: list[str] = field(default_factory=list)
    error: str | None = None
    latency_s: float | None = None
    context_windows: dict[str, int] = field(default_factory=dict)
    configured: bool = True


#: What can go wrong that a backend knows the fix for (see ``Backend.fix``).
Problem = Literal["unreachable", "model_missing", "not_configured", "context_overflow"]


@runtime_checkable
class Backend(Protocol):
    """The interface. ``name`` is unique per instance (e.g. ``ollama@http://127.0.0.1:11434``)
    and keys its circuit breaker; ``kind`` names its entry in ``backends.KINDS``; ``is_local``
    decides cost and the local share.

    A backend also carries what only its kind knows, so the router never tests ``kind``:
    ``plans_context`` (the router must size its context window per call, as Ollama's ``num_ctx``),
    ``model_key`` (when two model names are the same model), ``truncated`` (did the server drop
    part of the prompt) and ``fix`` (what the user should do about a failure).
    """

    name: str
    kind: BackendKind
    is_local: bool
    plans_context: bool

    def chat(self, request: ChatRequest) -> ChatResult: ...

    async def achat(self, request: ChatRequest) -> ChatResult: ...

    def embed(self, model: str, texts: list[str], *, timeout_s: float | None = None) -> list[list[float]]: ...

    def health(self, *, timeout_s: float | None = None) -> Health: ...

    def context_window(self, model: str) -> int | None:
        """The model's real context window in tokens (cached after the first look-up), or None
        when the backend cannot tell or has no such limit the router must manage."""
        ...

    def has_model(self, model: str) -> bool | None:
        """True/False when the backend knows (from a cached model list), None when unknown."""
        ...

    def model_key(self, model: str) -> str:
        """The name under which the server lists ``model`` (Ollama adds ``:latest``)."""
        ...

    def truncated(self, request: ChatRequest, result: ChatResult, estimated_tokens: int) -> bool:
        """Did the server silently cut the prompt of this answered call?"""
        ...

    def fix(self, problem: Problem, model: str | None = None) -> str | None:
        """The one-line fix to show the user for ``problem`` on this backend."""
        ...

    def close(self) -> None: ...


def normalize_model_name(name: str) -> str:
    """Ollama treats ``mistral`` and ``mistral:latest`` as the same model."""
    return name if ":" in name else f"{name}:latest"


L = TypeVar("L")


def cached_listing(cached: tuple[float, L] | None, ttl_s: float, fetch: Callable[[], L]) -> L | None:
    """A server's model list: ``cached`` (``(monotonic time, list)``) while younger than ``ttl_s``,
    else ``fetch()``; None when the server cannot be asked. A timeout is raised, not swallowed: a
    hanging host must trip its breaker after one wait, not cost a second one on the chat call."""
    if cached is not None and time.monotonic() - cached[0] <= ttl_s:
        return cached[1]
    try:
        return fetch()
    except BackendTimeout:
        raise
    except BackendError:
        return None
