"""Drivers of the chain generator: they make the backend calls it yields, with stamina's retries,
inside the call's deadlines.

The first try is a plain call: stamina's retry machinery costs ~50 µs to set up, so it is entered
only after a failure it should retry. Replaying that failure as attempt 1 lets stamina apply its
backoff (or a server's Retry-After) and its test mode exactly as if it had made the first try.
Retries never outlive the call's overall deadline (``deadline_s``): stamina's own timeout is set
to what is left of it, no retry is scheduled whose wait (backoff or Retry-After) would end past
it, and each attempt gets its own deadline, the nearer of "now + the attempt's
budget" and the overall one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from ._breaker import CircuitBreaker, Token
from ._errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    BadRequest,
    CircuitOpen,
    ContextOverflow,
    InvalidAnswer,
    ModelNotFound,
    RateLimited,
)
from ._logs import router_retries
from ._types import Attempt, Candidate
from .backends._base import Backend, ChatRequest, ChatResult

T = TypeVar("T")

#: Longest Retry-After we wait out in place; longer ones fail over instead.
MAX_RETRY_AFTER_S = 5.0
#: stamina's backoff between retries: 0.05 s, doubling, at most 2 s, plus up to 0.05 s of jitter.
_WAIT_INITIAL, _WAIT_MAX, _WAIT_JITTER = 0.05, 2.0, 0.05
log = logging.getLogger("mem0_routed")


@dataclass(slots=True)
class Call:
    """One backend call the generator asks its driver to make (with retries).

    ``budget_s``: seconds one attempt may take; ``deadline``: the ``time.monotonic()`` instant the
    whole routed call must end by (retries included)."""

    backend: Backend
    request: ChatRequest
    retries: int
    budget_s: float | None = None
    deadline: float | None = None


def retry_hook(exc: Exception) -> bool | float:
    """stamina backoff hook: retry refused/5xx/429, honour a short Retry-After; never a timeout
    (a hanging host would cost one timeout per retry) and never auth/model/bad-request errors."""
    if isinstance(exc, RateLimited):
        if exc.retry_after is None:
            return True
        return exc.retry_after if exc.retry_after <= MAX_RETRY_AFTER_S else False
    return isinstance(exc, BackendError) and exc.transient and not isinstance(exc, BackendTimeout)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def retry_hook_until(deadline: float | None) -> Callable[[Exception], bool | float]:
    """``retry_hook`` that never schedules a wait ending at or after ``deadline``: stamina's own
    timeout is checked only before it sleeps, so a Retry-After or a backoff could outlive the call.

    The backoff is computed here (stamina's formula, same settings) so that its length is known."""
    if deadline is None:
        return retry_hook
    tries = 0

    def hook(exc: Exception) -> bool | float:
        nonlocal tries
        tries += 1
        verdict = retry_hook(exc)
        if verdict is False:
            return False
        wait = verdict if not isinstance(verdict, bool) else min(
            _WAIT_MAX, _WAIT_INITIAL * 2 ** (tries - 1) + random.uniform(0, _WAIT_JITTER))
        if time.monotonic() + wait >= deadline:
            log.info("mem0-routed: no retry after %s: its %.2fs wait would end past the call's deadline_s",
                     type(exc).__name__, wait)
            return False
        return wait

    return hook


def _retry_context(retries: int, deadline: float | None) -> Any:
    import stamina

    left = _left(deadline)
    return stamina.retry_context(on=retry_hook_until(deadline), attempts=retries + 1,
                                 timeout=None if left is None else max(left, 0.0),
                                 wait_initial=_WAIT_INITIAL, wait_max=_WAIT_MAX, wait_jitter=_WAIT_JITTER)


def call_with_retries(fn: Callable[[], T], retries: int, *, deadline: float | None = None) -> T:
    """``fn()``, retried by stamina on what ``retry_hook`` accepts (used for chat and embeddings)."""
    try:
        return fn()
    except Exception as exc:
        if retries <= 0 or not retry_hook(exc):
            raise
        left = _left(deadline)
        if left is not None and left <= 0:
            raise
        first: Exception | None = exc
    with router_retries():  # stamina's log lines go through the package logger
        for attempt in _retry_context(retries, deadline):
            with attempt:
                if first is not None:
                    replay, first = first, None
                    raise replay
                return fn()
    raise AssertionError("unreachable: stamina re-raises the last error")


def attempt_request(call: Call) -> ChatRequest:
    """The request of one attempt, with its own deadline (the overall one bounds it)."""
    now = time.monotonic()
    ends = [t for t in (None if call.budget_s is None else now + call.budget_s, call.deadline) if t is not None]
    if not ends:
        return call.request
    when = min(ends)
    if when <= now:
        raise BackendTimeout("the call's deadline (deadline_s) passed before this attempt",
                             backend=call.backend.name, model=call.request.model)
    timeout = call.request.timeout_s  # for clients that only know a timeout (OpenAI's)
    return dataclasses.replace(call.request, deadline=when,
                               timeout_s=when - now if timeout is None else min(timeout, when - now))


def _call_sync(call: Call) -> ChatResult:
    return call_with_retries(lambda: call.backend.chat(attempt_request(call)), call.retries,
                             deadline=call.deadline)


async def _call_async(call: Call) -> ChatResult:
    try:
        return await call.backend.achat(attempt_request(call))
    except Exception as exc:
        if call.retries <= 0 or not retry_hook(exc):
            raise
        left = _left(call.deadline)
        if left is not None and left <= 0:
            raise
        first: Exception | None = exc
    with router_retries():
        async for attempt in _retry_context(call.retries, call.deadline):
            with attempt:
                if first is not None:
                    replay, first = first, None
                    raise replay
                return await call.backend.achat(attempt_request(call))
    raise AssertionError("unreachable: stamina re-raises the last error")


def run_sync(gen: Generator[Call, ChatResult, T]) -> T:
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            call = gen.throw(error) if error is not None else gen.send(send)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        send, error = None, None
        try:
            send = _call_sync(call)
        except Exception as exc:  # noqa: BLE001 - handed to the generator, which decides
            error = exc


def _step(gen: Generator[Call, ChatResult, T], send: Any, error: BaseException | None) -> tuple[bool, Any]:
    """One resumption of the chain: ``(False, next call)`` or ``(True, outcome)``."""
    try:
        return False, (gen.throw(error) if error is not None else gen.send(send))
    except StopIteration as stop:
        return True, stop.value


async def run_async(gen: Generator[Call, ChatResult, T]) -> T:
    """Like ``run_sync``, but the generator's own steps (ledger writes, a first ``/api/show``, a model
    load) run in a worker thread, so only the backend call itself runs on the event loop."""
    import asyncio

    send: Any = None
    error: BaseException | None = None
    try:
        while True:
            # StopIteration cannot cross a Future (it would leave it pending forever), so the
            # generator's end travels back as a value.
            done, call = await asyncio.to_thread(_step, gen, send, error)
            if done:
                return call  # type: ignore[no-any-return]
            send, error = None, None
            try:
                send = await _call_async(call)
            except Exception as exc:  # noqa: BLE001
                error = exc
    finally:
        # cancelled mid-call: settle the breaker probe and release any reservation now (if the
        # worker thread is still inside a step, the generator is closed when that step returns)
        with contextlib.suppress(ValueError):
            gen.close()


def short_error(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:240]


def require_model(backend: Backend, model: str) -> None:
    """Raise ``ModelNotFound`` when ``backend`` knows it does not serve ``model`` (None, "cannot
    tell", lets the call go ahead): a clear fix instead of the server's own 404."""
    if backend.has_model(model) is False:
        raise ModelNotFound(f"model {model!r} not found on {backend.name}", backend=backend.name, model=model,
                            fix=backend.fix("model_missing", model))


def note_failure(breaker: CircuitBreaker, exc: BackendError, attempts: list[Attempt], backend: Backend,
                 cand: Candidate, *, token: Token = "probe") -> None:
    """Tell the breaker and the attempts about a failure. ``token`` is what ``breaker.allow()`` gave
    this caller: only the probe may clear the probe. It defaults to ``"probe"`` for callers that do
    not pass theirs yet (a probe left set would lock the host out for good; see ``_embedding``)."""
    if exc.trips_breaker:
        breaker.failure(short_error(exc), fix=exc.fix)
    else:
        breaker.release(token)
    kind = "timeout" if isinstance(exc, BackendTimeout) else "skipped" if isinstance(exc, CircuitOpen) else "error"
    if isinstance(exc, (ModelNotFound, AuthenticationError, ContextOverflow, InvalidAnswer, BadRequest)):
        kind = type(exc).__name__
    attempts.append(Attempt(backend.name, cand.model, short_error(exc), fix=exc.fix, kind=kind, is_local=backend.is_local))
    log.info("mem0-routed: %s %s failed: %s", backend.name, cand.model, short_error(exc))
