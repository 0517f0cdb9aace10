"""Streaming a local answer from an OpenAI-compatible server through the router's stream guard.

Why: a small model can repeat one memory item until ``max_tokens`` (issue 10: minutes of a loop,
then invalid JSON). Read as a stream, each delta goes to the guard, and the stream is closed (the
server sees the client go and stops generating) at the first repeat, or a few chunks after the JSON
object is complete. The chunk times are also what the router learns speeds from: the time to the
first token stands for prefill, first to last token for generation (these servers report no
durations the way Ollama does).

``usage`` comes in the last chunk when the server honours ``stream_options.include_usage`` (vLLM,
SGLang, llama-server); llama-cpp-python sends none, and a stream closed early has none: then the
counts are our own, as on the non-streamed path, and are never read as a cut prompt.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .._errors import BackendUnavailable
from ._base import AnswerGuard, ChatRequest, ChatResult, GuardedRead
from ._billing import billable_tokens, served_counts
from ._deadline import deadline_scope

if TYPE_CHECKING:
    from ._openai_compat import OpenAICompatibleBackend

__all__ = ["StreamRead", "astream_chat", "stream_chat"]

log = logging.getLogger("mem0_routed")


class StreamRead(GuardedRead):
    """A streamed answer being read: its text, content-chunk timing, the finish and the usage."""

    def __init__(self, sent_at: float) -> None:
        super().__init__()
        self.sent_at = sent_at
        self.chunks = 0
        self.first = self.last = 0.0
        self.usage: Any = None
        self.finish: str | None = None
        self.model: str | None = None
        self.ended = False  # the server ended the stream (else we closed it)

    def take(self, chunk: Any, guard: AnswerGuard) -> bool:
        """Record one chunk; True when reading should stop."""
        self.model = getattr(chunk, "model", None) or self.model
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        choice = chunk.choices[0] if getattr(chunk, "choices", None) else None
        delta = getattr(choice, "delta", None)
        content = getattr(delta, "content", None) or ""
        if choice is not None and choice.finish_reason:
            self.finish = choice.finish_reason
        if content:
            now = time.perf_counter()
            self.first = self.first or now
            self.last = now
            self.chunks += 1
        if not content and self.stopped != "complete":
            return False
        return self._guarded(content, guard)


def _params(backend: OpenAICompatibleBackend, request: ChatRequest) -> dict[str, Any]:
    params = backend._chat_params(request)
    params["stream"] = True
    if backend.stream_usage:
        params["stream_options"] = {"include_usage": True}
    return params


def _drain(stream: Any, state: StreamRead, guard: AnswerGuard) -> None:
    for chunk in stream:
        if state.take(chunk, guard):
            return
    state.ended = True


async def _adrain(stream: Any, state: StreamRead, guard: AnswerGuard) -> None:
    async for chunk in stream:
        if state.take(chunk, guard):
            return
    state.ended = True


def stream_chat(backend: OpenAICompatibleBackend, request: ChatRequest) -> ChatResult | None:
    """One streamed call, read until the server ends it or the guard stops it; bounded by
    ``request.deadline`` (the transport cuts the body at that instant). None when the server ended
    the stream before its first word (see ``result``)."""
    assert request.stream_guard is not None
    params = _params(backend, request)
    client = backend._sync(request.model)
    guard = request.stream_guard()
    t0 = time.perf_counter()
    state = StreamRead(t0)
    with deadline_scope(request.deadline):
        stream: Any = backend._invoke(request.model, "chat", client.chat.completions.create, **params)
        try:
            backend._invoke(request.model, "chat", _drain, stream=stream, state=state, guard=guard)
        finally:
            _close(stream.close)
    return result(backend, state, request, t0)


async def astream_chat(backend: OpenAICompatibleBackend, request: ChatRequest) -> ChatResult | None:
    assert request.stream_guard is not None
    params = _params(backend, request)
    client = backend._async(request.model)
    guard = request.stream_guard()
    t0 = time.perf_counter()
    state = StreamRead(t0)
    with deadline_scope(request.deadline):
        stream: Any = await backend._ainvoke(request.model, "chat", client.chat.completions.create, **params)
        try:
            await backend._ainvoke(request.model, "chat", _adrain, stream=stream, state=state, guard=guard)
        finally:
            try:
                await stream.close()
            except Exception:  # the answer (or the error being raised) matters, not the close
                log.debug("mem0-routed: closing a stream from %s failed", backend.name, exc_info=True)
    return result(backend, state, request, t0)


def _close(close: Any) -> None:
    try:
        close()
    except Exception:  # the answer (or the error being raised) matters, not the close
        log.debug("mem0-routed: closing a stream failed", exc_info=True)


def result(backend: OpenAICompatibleBackend, state: StreamRead, request: ChatRequest,
           t0: float) -> ChatResult | None:
    """The ``ChatResult`` of a read stream. ``stopped`` only when we closed it: a model that ended
    by itself right after its object gave a whole answer, with its finish and usage. Token counts
    are the server's when its usage is sane, else our own (no warning: a local server bills
    nothing); ``tokens_in`` is then our estimate, which can never look like a cut prompt.

    A stream the server ended without a ``finish_reason`` is not an answer: cut after some words
    (a server killed mid-answer) it is ``BackendUnavailable``, so the router fails over; with no
    word at all it is None, and the caller asks once without streaming (llama-cpp-python 0.3 ends
    the stream that way when the prompt exceeds its window, and only its unstreamed answer says so)."""
    if state.ended and state.finish is None:
        if not state.parts:
            return None
        raise BackendUnavailable(
            f"{backend.name} ended the stream before the answer was complete (model {request.model}, "
            f"{state.chunks} chunks read)", backend=backend.name, model=request.model, fix=backend.fix("unreachable"))
    text = "".join(state.parts)
    tokens_in, tokens_out = served_counts(state.usage) or billable_tokens(None, request, text, None)[:2]
    timed = state.chunks > 1
    return ChatResult(
        text=text,
        model=state.model or request.model,
        backend=backend.kind,
        host=backend.shown_url or "",
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        done_reason=state.finish,
        latency_s=time.perf_counter() - t0,
        stopped=None if state.ended or state.finish else state.stopped,  # the model ended by itself
        prompt_eval_s=(state.first - state.sent_at) if state.first else None,
        eval_s=(state.last - state.first) if timed else None,
    )
