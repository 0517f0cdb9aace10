"""Executing a decision: the fallback chain, context windows, validation cascade and reservations.

The chain logic is written once, as a generator that *yields* the backend calls it wants made
(``Call``) and receives their results or exceptions. ``run_sync`` and ``run_async`` drive it, each
wrapping a call in stamina's retries, so the sync path (mem0's ``Memory``) and the async path
(``execute_query``) can never drift apart. No lock is held across a network call.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ._context import looks_truncated
from ._errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    BadRequest,
    BudgetExceeded,
    CircuitOpen,
    ContextOverflow,
    InvalidAnswer,
    ModelNotFound,
    RateLimited,
    RoutingError,
)
from ._logs import router_retries
from ._requests import build_request, estimate_messages, fit_messages
from ._types import Attempt, Candidate, Classification, RoutingDecision
from ._usage import Refusal, Reservation
from ._validate import ContractViolation, check_answer
from .backends._base import Backend, ChatRequest, ChatResult

if TYPE_CHECKING:
    from ._router import Router

log = logging.getLogger("mem0_routed")
T = TypeVar("T")

#: Longest Retry-After we wait out in place; longer ones fail over instead.
MAX_RETRY_AFTER_S = 5.0


@dataclass(slots=True)
class Call:
    """One backend call the generator asks its driver to make (with retries)."""

    backend: Backend
    request: ChatRequest
    retries: int


@dataclass(slots=True)
class ChatOutcome:
    """What a routed chat call produced, and how."""

    text: str
    model: str
    backend: str
    is_local: bool
    decision: RoutingDecision
    tool_calls: list[dict[str, Any]] | None = None
    host: str = ""
    cost_usd: float = 0.0
    latency_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    escalations: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    compact_prompt: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "response": self.text,
            "model": self.model,
            "backend": self.backend,
            "is_local": self.is_local,
            "cost": self.cost_usd,
            "latency_s": self.latency_s,
            "query_type": self.decision.query_type.value,
            "call_kind": self.decision.call_kind.value,
            "complexity": self.decision.complexity,
            "escalations": list(self.escalations),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "reasoning": self.decision.reasoning,
            "host": self.host,
        }


def retry_hook(exc: Exception) -> bool | float:
    """stamina backoff hook: retry refused/5xx/429, honour a short Retry-After; never a timeout
    (a hanging host would cost one timeout per retry) and never auth/model/bad-request errors."""
    if isinstance(exc, RateLimited):
        if exc.retry_after is None:
            return True
        return exc.retry_after if exc.retry_after <= MAX_RETRY_AFTER_S else False
    return isinstance(exc, BackendError) and exc.transient and not isinstance(exc, BackendTimeout)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:240]


@dataclass(slots=True)
class ChatJob:
    """Inputs of one chat call, as the router prepared them."""

    messages: list[dict[str, Any]]
    cls: Classification
    decision: RoutingDecision
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    json_schema: dict[str, Any] | None
    tools: list[dict[str, Any]] | None
    tool_choice: str | None
    external_check: str | None
    primary_external: bool


def execute_chat(router: Router, job: ChatJob) -> Generator[Call, ChatResult, ChatOutcome]:
    """Walk the decision's chain until one candidate gives an answer that meets its contract."""
    started = time.perf_counter()
    attempts: list[Attempt] = []
    escalations: list[str] = []
    cls = job.cls
    for cand in job.decision.chain:
        reservation: Reservation | None = None
        if not cand.is_local:
            got = router.reserve_external(job, primary=(cand is job.decision.chain[0] and job.primary_external))
            if got is None:
                pass  # nothing to reserve: no budget set and the share does not apply to a fallback
            elif isinstance(got, Refusal):
                attempts.append(Attempt("openai", cand.model, got.message, kind="blocked"))
                escalations.append(f"external refused: {got.reason}")
                if got.reason == "budget" and cand is job.decision.chain[-1]:
                    router.record_failure(job, attempts, escalations, time.perf_counter() - started,
                                          outcome="blocked")
                    raise BudgetExceeded("no candidate could serve the call", attempts, blocked_by=got.message)
                continue
            reservation = got
        backends = router.backends_for(cand)
        if not backends:
            attempts.append(Attempt(cand.backend, cand.model, "no backend configured", fix=_fix_for_missing(cand)))
        try:
            for backend in backends:
                outcome = yield from _try_backend(router, job, cand, backend, attempts, escalations)
                if outcome is not None:
                    outcome.latency_s = time.perf_counter() - started
                    router.record_chat(job, outcome, reservation=reservation)
                    reservation = None  # settled by the record
                    return outcome
        finally:
            if reservation is not None:
                router.release(reservation)
        if cand.is_local:
            escalations.append(f"local {cand.model} failed")
    router.record_failure(job, attempts, escalations, time.perf_counter() - started)
    blocked = job.decision.external_blocked_by
    raise RoutingError(
        f"every candidate failed for this {cls.call_kind} call ({cls.query_type})", attempts, blocked_by=blocked
    )


def _fix_for_missing(cand: Candidate) -> str:
    if cand.backend == "openai":
        return "set OPENAI_API_KEY"
    if cand.backend == "embedded":
        return "pip install 'mem0-routed[embedded]'"
    return "start Ollama (`ollama serve`) or set OLLAMA_URL"


def _try_backend(
    router: Router,
    job: ChatJob,
    cand: Candidate,
    backend: Backend,
    attempts: list[Attempt],
    escalations: list[str],
) -> Generator[Call, ChatResult, ChatOutcome | None]:
    """Up to two tries on one backend (a bad answer or a truncation gets one local retry).

    Whatever happens — an answer, an error, or the caller cancelling at the ``yield`` — the breaker
    hears about it: a half-open probe that is never settled would lock the host out for good."""
    breaker = router.breaker(backend)
    token = breaker.allow()
    if not token:
        attempts.append(Attempt(backend.name, cand.model, f"circuit open (retry in {breaker.retry_in():.0f}s)",
                                fix=breaker.last_fix, kind="skipped"))
        return None
    try:
        return (yield from _tries(router, job, cand, backend, breaker, attempts, escalations))
    finally:
        if token == "probe":
            breaker.release()  # no-op when the probe was settled by success() or failure()


def _tries(
    router: Router,
    job: ChatJob,
    cand: Candidate,
    backend: Backend,
    breaker: Any,
    attempts: list[Attempt],
    escalations: list[str],
) -> Generator[Call, ChatResult, ChatOutcome | None]:
    tries = 2
    for n in range(tries):
        try:
            if n == 0:
                if backend.is_local and backend.has_model(cand.model) is False:
                    raise ModelNotFound(f"model {cand.model!r} not found on {backend.name}",
                                        backend=backend.name, model=cand.model, fix=f"ollama pull {cand.model}"
                                        if backend.kind == "ollama" else None)
                messages, compact = fit_messages(router.config, job, cand, backend)
                prompt_tokens = estimate_messages(messages)  # the same for both tries
            request = build_request(router.config, router.planner, job, cand, backend, messages, prompt_tokens,
                                    min_need=router.num_ctx_floor(cand.model))
        except BackendError as exc:
            note_failure(breaker, exc, attempts, backend, cand)
            return None
        router.begin(backend)
        try:
            result = yield Call(backend, request, router.config.max_retries)
        except BackendError as exc:
            note_failure(breaker, exc, attempts, backend, cand)
            return None
        except Exception as exc:  # a client bug must not escape as a deep traceback
            err = BackendError(f"unexpected {type(exc).__name__}: {_short(exc)}", backend=backend.name)
            note_failure(breaker, err, attempts, backend, cand)
            return None
        finally:
            router.end(backend)
        breaker.success()
        if backend.kind == "ollama" and looks_truncated(
            prompt_eval_count=result.tokens_in, estimated_tokens=prompt_tokens, num_ctx=request.num_ctx
        ):
            escalations.append(f"truncated prompt on {cand.model} (num_ctx {request.num_ctx})")
            attempts.append(Attempt(backend.name, cand.model, f"prompt truncated at num_ctx {request.num_ctx}",
                                    kind="truncated"))
            if router.planner.grow(cand.model, _window_of(backend, cand.model)) is None:
                return None
            continue
        if result.done_reason == "length" and not (result.text or "").strip():
            escalations.append(f"no output within max_tokens on {cand.model}")
            attempts.append(Attempt(backend.name, cand.model, "answer cut at max_tokens", kind="invalid"))
            return None
        try:
            text = check_answer(result.text, call_kind=job.cls.call_kind, wants_json=job.cls.wants_json,
                                has_tool_calls=bool(result.tool_calls))
        except ContractViolation as bad:
            escalations.append(f"{bad} from {cand.model}")
            attempts.append(Attempt(backend.name, cand.model, f"answer rejected: {bad}", kind="invalid"))
            if n + 1 < tries and cand.is_local:
                continue
            return None
        return ChatOutcome(
            text=text, model=result.model or cand.model, backend=backend.kind, is_local=backend.is_local,
            decision=job.decision, tool_calls=result.tool_calls, host=result.host or backend.name,
            tokens_in=result.tokens_in or 0, tokens_out=result.tokens_out or 0,
            escalations=escalations, attempts=attempts, compact_prompt=compact,
        )
    return None


def _window_of(backend: Backend, model: str) -> int | None:
    """The model's window, already cached by the first try; a failed look-up means "unknown"."""
    try:
        return backend.context_window(model)
    except BackendError:
        return None


def note_failure(breaker: Any, exc: BackendError, attempts: list[Attempt], backend: Backend, cand: Candidate) -> None:
    if exc.trips_breaker:
        breaker.failure(_short(exc), fix=exc.fix)
    else:
        breaker.release()
    kind = "timeout" if isinstance(exc, BackendTimeout) else "skipped" if isinstance(exc, CircuitOpen) else "error"
    if isinstance(exc, (ModelNotFound, AuthenticationError, ContextOverflow, InvalidAnswer, BadRequest)):
        kind = type(exc).__name__
    attempts.append(Attempt(backend.name, cand.model, _short(exc), fix=exc.fix, kind=kind))
    log.info("mem0-routed: %s %s failed: %s", backend.name, cand.model, _short(exc))


# --- drivers ------------------------------------------------------------------------------------
# The first try is a plain call: stamina's retry machinery costs ~50 µs to set up, so it is entered
# only after a failure it should retry. Replaying that failure as attempt 1 lets stamina apply its
# backoff (or a server's Retry-After) and its test mode exactly as if it had made the first try.


def _retry_context(retries: int) -> Any:
    import stamina

    return stamina.retry_context(on=retry_hook, attempts=retries + 1, timeout=None,
                                 wait_initial=0.05, wait_max=2.0, wait_jitter=0.05)


def call_with_retries(fn: Callable[[], T], retries: int) -> T:
    """``fn()``, retried by stamina on what ``retry_hook`` accepts (used for chat and embeddings)."""
    try:
        return fn()
    except Exception as exc:
        if retries <= 0 or not retry_hook(exc):
            raise
        first: Exception | None = exc
    with router_retries():  # stamina's log lines go through the package logger
        for attempt in _retry_context(retries):
            with attempt:
                if first is not None:
                    replay, first = first, None
                    raise replay
                return fn()
    raise AssertionError("unreachable: stamina re-raises the last error")


def _call_sync(call: Call) -> ChatResult:
    return call_with_retries(lambda: call.backend.chat(call.request), call.retries)


async def _call_async(call: Call) -> ChatResult:
    try:
        return await call.backend.achat(call.request)
    except Exception as exc:
        if call.retries <= 0 or not retry_hook(exc):
            raise
        first: Exception | None = exc
    with router_retries():
        async for attempt in _retry_context(call.retries):
            with attempt:
                if first is not None:
                    replay, first = first, None
                    raise replay
                return await call.backend.achat(call.request)
    raise AssertionError("unreachable: stamina re-raises the last error")


def run_sync(gen: Generator[Call, ChatResult, ChatOutcome]) -> ChatOutcome:
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


def _step(gen: Generator[Call, ChatResult, ChatOutcome], send: Any,
          error: BaseException | None) -> tuple[bool, Any]:
    """One resumption of the chain: ``(False, next call)`` or ``(True, outcome)``."""
    try:
        return False, (gen.throw(error) if error is not None else gen.send(send))
    except StopIteration as stop:
        return True, stop.value


async def run_async(gen: Generator[Call, ChatResult, ChatOutcome]) -> ChatOutcome:
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
