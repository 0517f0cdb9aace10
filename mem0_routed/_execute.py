"""Executing a decision: the fallback chain, context windows, validation cascade and reservations.

The chain logic is written once, as a generator that *yields* the backend calls it wants made
(``Call``) and receives their results or exceptions. ``run_sync`` and ``run_async`` (``_drivers``)
drive it, each wrapping a call in stamina's retries, so the sync path (mem0's ``Memory``) and the
async path (``execute_query``) can never drift apart. No lock is held across a network call.

One deadline (``deadline_s``) spans the whole chain; each local try also gets its own, from the
model's measured speed (``_speed``). A degenerate answer (a loop, cut JSON) keeps its complete
items when mem0's contract allows it (the call is then marked degraded), and is otherwise retried
once with a changed request (repeat penalty, temperature, the compact prompt), never the same one.
An external request that was sent but gave no kept answer (rejected, timed out, cancelled by the
caller) is charged at the call's worst case: the provider bills it all the same.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._breaker import Admission, CircuitBreaker, Token
from ._compact_prompt import small_talk_only
from ._drivers import Call, call_with_retries, retry_hook, run_async, run_sync
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
    RoutingError,
)
from ._requests import build_request, estimate_messages, fit_messages
from ._speed import SPEEDS, call_deadline_s, describe
from ._stream import salvage_extraction
from ._types import Attempt, CallKind, Candidate, Classification, RoutingDecision
from ._usage import Refusal, Reservation
from ._validate import ContractViolation, check_answer, check_extraction
from .backends._base import Backend, ChatResult
from .backends._kinds import kind_spec

if TYPE_CHECKING:
    from ._router import Router

__all__ = ["Call", "ChatJob", "ChatOutcome", "call_with_retries", "execute_chat", "note_failure", "retry_hook",
           "run_async", "run_sync"]

log = logging.getLogger("mem0_routed")

#: Answer tokens a deadline is planned for (mem0 asks for up to 2,000; a real answer is far shorter,
#: and a runaway one is stopped by the stream guard, not by the deadline).
PLANNED_ANSWER_TOKENS = 512


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
    #: Why the answer is usable but not whole: "repetition loop: kept 3 items", "answer cut at
    #: max_tokens", ... (None for a whole answer). Recorded as outcome "degraded".
    degraded: str | None = None

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
            "degraded": self.degraded,
        }


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
    #: ``time.monotonic()`` instant by which the whole call must end (``deadline_s``).
    deadline: float | None = None


def _small_talk(router: Router, job: ChatJob, started: float) -> ChatOutcome:
    """mem0's extraction when the new messages are only greetings, thanks or goodbyes: the answer is
    known, so no model is asked (SmolLM2 asked anyway invents memories from "Hello!"; see
    benchmarks/bench_extraction_quality.py). Recorded with outcome "skipped": no model answered, so
    it counts neither as local nor as external (it must not widen the external allowance)."""
    outcome = ChatOutcome(text=json.dumps({"memory": []}), model="-", backend="router",
                          is_local=True, decision=job.decision, latency_s=time.perf_counter() - started)
    router.record_chat(job, outcome, reservation=None, skipped=True)
    return outcome


def execute_chat(router: Router, job: ChatJob) -> Generator[Call, ChatResult, ChatOutcome]:
    """Walk the decision's chain until one candidate gives an answer that meets its contract."""
    started = time.perf_counter()
    if (router.config.skip_small_talk and job.cls.call_kind is CallKind.MEM0_EXTRACTION
            and small_talk_only(job.messages)):
        return _small_talk(router, job, started)
    if job.deadline is None:
        job.deadline = time.monotonic() + router.config.deadline_s
    attempts: list[Attempt] = []
    escalations: list[str] = []
    # claims of external answers that were then rejected: that money is spent, so each claim is held
    # until the call's record (which charges it) is written, never given back to other calls before
    held: list[Reservation] = []
    try:
        return (yield from _walk_chain(router, job, started, attempts, escalations, held))
    except GeneratorExit:
        # the caller cancelled (task cancel, wait_for) with an external request in flight: the
        # provider bills it, so it is recorded at the worst case before its claim is given back
        if any(a.kind == "cancelled" for a in attempts):
            router.record_failure(job, attempts, escalations, time.perf_counter() - started)
        raise
    finally:
        for claim in held:
            router.release(claim)


def _walk_chain(router: Router, job: ChatJob, started: float, attempts: list[Attempt], escalations: list[str],
                held: list[Reservation]) -> Generator[Call, ChatResult, ChatOutcome]:
    cls = job.cls
    deadline = job.deadline if job.deadline is not None else time.monotonic() + router.config.deadline_s
    for cand in job.decision.chain:
        if time.monotonic() >= deadline:
            attempts.append(Attempt(cand.backend, cand.model, f"not tried: the call's deadline_s "
                                    f"({router.config.deadline_s:g}s) had passed", kind="not tried",
                                    fix="raise deadline_s, or make local calls faster (compact prompt, warmup)"))
            escalations.append("deadline_s reached")
            break
        reservation: Reservation | None = None
        if not cand.is_local:
            got = router.reserve_external(job, primary=(cand is job.decision.chain[0] and job.primary_external))
            if got is None:
                pass  # nothing to reserve: no budget set and the share does not apply to a fallback
            elif isinstance(got, Refusal):
                attempts.append(Attempt(cand.backend, cand.model, got.message, kind="blocked"))
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
        tried_from = len(attempts)
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
                if rejected_external_answers(attempts[tried_from:]):
                    held.append(reservation)
                else:
                    router.release(reservation)
        if cand.is_local:
            escalations.append(f"local {cand.model} failed")
    router.record_failure(job, attempts, escalations, time.perf_counter() - started)
    blocked = job.decision.external_blocked_by
    raise RoutingError(
        f"every candidate failed for this {cls.call_kind} call ({cls.query_type})", attempts, blocked_by=blocked
    )


#: Attempt kinds of an external request the provider may have billed though no answer was kept.
BILLED_KINDS = ("invalid", "truncated", "timeout", "cancelled")


def rejected_external_answers(attempts: list[Attempt]) -> int:
    """External requests that were sent and may be billed though no answer was kept: answers that
    were rejected (invalid JSON, cut, a truncated prompt), and requests that timed out or that the
    caller cancelled in flight (the provider usually finishes and bills them). A timeout before
    any byte was sent (connect) is counted too: over-billing it is the safe side of the budget."""
    return sum(1 for a in attempts if a.is_local is False and a.kind in BILLED_KINDS)


def _fix_for_missing(cand: Candidate) -> str:
    return kind_spec(cand.backend).missing


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
    if token is False:
        attempts.append(Attempt(backend.name, cand.model, f"circuit open (retry in {breaker.retry_in():.0f}s)",
                                fix=breaker.last_fix, kind="skipped"))
        return None
    try:
        return (yield from _tries(router, job, cand, backend, breaker, adm := Admission(token), attempts,
                                  escalations))
    finally:
        breaker.release(adm.token)  # no-op unless a probe that has had no verdict yet


def _budget(router: Router, job: ChatJob, cand: Candidate, backend: Backend, prompt_tokens: int) -> float | None:
    """Seconds one try may take: from the measured speed for a local backend (None: no own bound)."""
    if not backend.is_local:
        return None
    cfg = router.config
    speed = SPEEDS.get(backend.name, cand.model)
    answer = min(job.max_tokens or PLANNED_ANSWER_TOKENS, PLANNED_ANSWER_TOKENS)
    return call_deadline_s(speed.predict(prompt_tokens, answer), margin=cfg.call_deadline_margin,
                           floor_s=cfg.call_deadline_floor_s, ceiling_s=cfg.call_deadline_ceiling_s,
                           load_s=speed.load_s)


def _timeout_attempt(router: Router, job: ChatJob, cand: Candidate, backend: Backend, exc: BackendTimeout,
                     elapsed: float, budget: float | None, prompt_tokens: int) -> Attempt:
    """A timeout that says how long, for how much work, at what speed, and what to do."""
    speed = SPEEDS.get(backend.name, cand.model)
    overall = job.deadline is not None and time.monotonic() >= job.deadline
    limit = f"the call's deadline_s ({router.config.deadline_s:g}s)" if overall or budget is None else (
        f"its {budget:.1f}s deadline")
    text = (f"{cand.model} on {backend.name} gave no complete answer within {limit}: {elapsed:.1f}s spent "
            f"on a ~{prompt_tokens}-token prompt and up to {job.max_tokens} answer tokens ({describe(speed)}); "
            f"{exc}")
    fix = ("run `mem0-routed warmup` so the first call does not load the model, set compact_extraction: always, "
           "use a faster/smaller model, or raise call_deadline_ceiling_s / deadline_s")
    return Attempt(backend.name, cand.model, text[:400], fix=fix, kind="timeout", is_local=backend.is_local)


def _tries(
    router: Router,
    job: ChatJob,
    cand: Candidate,
    backend: Backend,
    breaker: CircuitBreaker,
    adm: Admission,
    attempts: list[Attempt],
    escalations: list[str],
) -> Generator[Call, ChatResult, ChatOutcome | None]:
    tries = 2
    varied = False  # the next try follows a degenerate answer: change the request
    extraction = job.cls.call_kind is CallKind.MEM0_EXTRACTION
    for n in range(tries):
        try:
            if n == 0:
                if backend.is_local and backend.has_model(cand.model) is False:
                    raise ModelNotFound(f"model {cand.model!r} not found on {backend.name}",
                                        backend=backend.name, model=cand.model, fix=backend.fix("model_missing", cand.model))
                messages, compact = fit_messages(router.config, job, cand, backend,
                                                 prefer_compact=router.prompt_choice(backend, cand.model) == "compact")
                prompt_tokens = estimate_messages(messages)  # the same for both tries
            elif varied and extraction and backend.is_local and not compact \
                    and router.config.compact_extraction != "never":
                from ._compact_prompt import compact_extraction_messages

                messages, compact = compact_extraction_messages(job.messages), True
                prompt_tokens = estimate_messages(messages)
            request = build_request(router.config, router.planner, job, cand, backend, messages, prompt_tokens,
                                    min_need=router.num_ctx_floor(cand.model, backend), varied=varied)
        except BackendError as exc:
            note_failure(breaker, exc, attempts, backend, cand, token=adm.settle())
            return None
        budget = _budget(router, job, cand, backend, prompt_tokens)
        ticket = router.begin(backend, cand.model)
        t0 = time.monotonic()
        try:
            result = yield Call(backend, request, router.config.max_retries, budget_s=budget, deadline=job.deadline)
            ticket.ok = True
        except GeneratorExit:
            if not backend.is_local:  # sent, and likely billed: execute_chat records it
                attempts.append(Attempt(backend.name, cand.model, "cancelled by the caller while the request "
                                        "was in flight", kind="cancelled", is_local=False))
            raise
        except BackendTimeout as exc:
            attempt = _timeout_attempt(router, job, cand, backend, exc, time.monotonic() - t0, budget, prompt_tokens)
            if job.deadline is not None and time.monotonic() >= job.deadline:
                breaker.release(adm.settle())  # our own deadline ran out: no verdict on the host
            else:
                adm.settle()
                breaker.failure(attempt.error, fix=attempt.fix)
            attempts.append(attempt)
            escalations.append(f"timeout on {cand.model}")
            log.info("mem0-routed: %s", attempt.error)
            return None
        except BackendError as exc:
            note_failure(breaker, exc, attempts, backend, cand, token=adm.settle())
            return None
        except Exception as exc:  # a client bug must not escape as a deep traceback
            err = BackendError(f"unexpected {type(exc).__name__}: {_short(exc)}", backend=backend.name)
            note_failure(breaker, err, attempts, backend, cand, token=adm.settle())
            return None
        finally:
            router.end(backend, ticket)
        adm.settle()
        breaker.success()
        if backend.is_local:
            SPEEDS.observe(backend.name, cand.model, prompt_tokens=result.tokens_in, prompt_s=result.prompt_eval_s,
                           answer_tokens=result.tokens_out, answer_s=result.eval_s, load_s=result.load_s)
        if backend.truncated(request, result, prompt_tokens):
            escalations.append(f"truncated prompt on {cand.model} (num_ctx {request.num_ctx})")
            attempts.append(Attempt(backend.name, cand.model, f"prompt truncated at num_ctx {request.num_ctx}",
                                    kind="truncated", is_local=backend.is_local,
                                    fix=backend.fix("context_overflow", cand.model)))
            if not backend.plans_context or router.planner.grow(cand.model, _window_of(backend, cand.model)) is None:
                return None
            continue
        degenerate = "repetition loop" if result.stopped == "loop" else (
            "answer cut at max_tokens" if result.done_reason == "length" else None)
        degraded: str | None = None
        try:
            if degenerate and extraction:
                text, degraded = _salvage(result.text, degenerate)
            elif result.stopped == "loop":
                raise ContractViolation(degenerate or "repetition loop")
            else:
                text = check_answer(result.text, call_kind=job.cls.call_kind, wants_json=job.cls.wants_json,
                                    has_tool_calls=bool(result.tool_calls))
                degraded = degenerate  # a text answer cut at max_tokens is usable, but not whole
        except ContractViolation as bad:
            escalations.append(f"{bad} from {cand.model}")
            attempts.append(Attempt(backend.name, cand.model, f"answer rejected: {bad}"
                                    + (f" (stopped after {result.tokens_out or '?'} tokens)" if result.stopped else ""),
                                    kind="invalid", is_local=backend.is_local))
            if n + 1 < tries and cand.is_local:
                varied = True
                continue
            return None
        if degraded:
            escalations.append(f"{degraded} from {cand.model}")
        return ChatOutcome(
            text=text, model=result.model or cand.model, backend=backend.kind, is_local=backend.is_local,
            decision=job.decision, tool_calls=result.tool_calls, host=result.host or backend.name,
            tokens_in=result.tokens_in or (prompt_tokens if backend.is_local else 0), tokens_out=result.tokens_out or 0,
            escalations=escalations, attempts=attempts, compact_prompt=compact, degraded=degraded,
        )
    return None


def _salvage(text: str, why: str) -> tuple[str, str]:
    """The complete, distinct memory items before a loop or a cut, or ``ContractViolation`` when
    there are none (an empty list would tell mem0 "no facts", which is not what happened)."""
    try:
        whole = check_answer(text, call_kind=CallKind.MEM0_EXTRACTION, wants_json=True)
        items = json.loads(whole).get("memory", [])
        if why == "answer cut at max_tokens":
            return whole, f"{why}: kept {len(items)} items"
    except ContractViolation:
        pass
    found = salvage_extraction(text)
    if not found or not found["memory"]:
        raise ContractViolation(f"{why} before any complete memory item")
    clean = check_extraction(found)
    return json.dumps(clean, ensure_ascii=False), f"{why}: kept {len(clean['memory'])} items"


def _window_of(backend: Backend, model: str) -> int | None:
    """The model's window, already cached by the first try; a failed look-up means "unknown"."""
    try:
        return backend.context_window(model)
    except BackendError:
        return None


def note_failure(breaker: CircuitBreaker, exc: BackendError, attempts: list[Attempt], backend: Backend,
                 cand: Candidate, *, token: Token = "probe") -> None:
    """Tell the breaker and the attempts about a failure. ``token`` is what ``breaker.allow()`` gave
    this caller: only the probe may clear the probe. It defaults to ``"probe"`` for callers that do
    not pass theirs yet (a probe left set would lock the host out for good; see ``_embedding``)."""
    if exc.trips_breaker:
        breaker.failure(_short(exc), fix=exc.fix)
    else:
        breaker.release(token)
    kind = "timeout" if isinstance(exc, BackendTimeout) else "skipped" if isinstance(exc, CircuitOpen) else "error"
    if isinstance(exc, (ModelNotFound, AuthenticationError, ContextOverflow, InvalidAnswer, BadRequest)):
        kind = type(exc).__name__
    attempts.append(Attempt(backend.name, cand.model, _short(exc), fix=exc.fix, kind=kind, is_local=backend.is_local))
    log.info("mem0-routed: %s %s failed: %s", backend.name, cand.model, _short(exc))
