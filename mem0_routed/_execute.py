"""Executing a decision: the fallback chain, context windows, validation cascade and reservations.

The chain logic is written once, as a generator that *yields* the backend calls it wants made
(``Call``) and receives their results or exceptions. ``run_sync`` and ``run_async`` (``_drivers``)
drive it, each wrapping a call in stamina's retries, so the sync path (mem0's ``Memory``) and the
async path (``Router.achat``) can never drift apart. No lock is held across a network call.

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
from typing import Any, Literal

from ._breaker import Admission, CircuitBreaker
from ._compact_prompt import small_talk_only
from ._drivers import Call, note_failure, require_model, short_error
from ._errors import AuthenticationError, BackendError, BackendTimeout, BudgetExceeded, ModelNotFound, RoutingError
from ._job import ChatJob, ChatOutcome, rejected_external_answers
from ._records import Refusal, Reservation
from ._request_shape import build_request, estimate_messages, fit_messages
from ._runtime import Runtime
from ._speed import SPEEDS, call_deadline_s, describe
from ._spread import LOADS
from ._stream import salvage_extraction
from ._types import Attempt, CallKind, Candidate
from ._validate import ContractViolation, check_answer, check_extraction
from .backends._base import Backend, ChatRequest, ChatResult
from .backends._deadline import deadline_scope
from .backends._kinds import kind_spec

__all__ = ["execute_chat"]

log = logging.getLogger("mem0_routed")

#: Answer tokens a deadline is planned for (mem0 asks for up to 2,000; a real answer is far shorter,
#: and a runaway one is stopped by the stream guard, not by the deadline).
PLANNED_ANSWER_TOKENS = 512


def _small_talk(rt: Runtime, job: ChatJob, started: float) -> ChatOutcome:
    """mem0's extraction when the new messages are only greetings, thanks or goodbyes: the answer is
    known, so no model is asked (SmolLM2 asked anyway invents memories from "Hello!"; see
    benchmarks/bench_extraction_quality.py). Recorded with outcome "skipped": no model answered, so
    it counts neither as local nor as external (it must not widen the external allowance)."""
    outcome = ChatOutcome(text=json.dumps({"memory": []}), model="-", backend="router",
                          is_local=True, decision=job.decision, latency_s=time.perf_counter() - started)
    rt.record_chat(job, outcome, reservation=None, skipped=True)
    return outcome


def execute_chat(rt: Runtime, job: ChatJob) -> Generator[Call, ChatResult, ChatOutcome]:
    """Walk the decision's chain until one candidate gives an answer that meets its contract."""
    started = time.perf_counter()
    if (rt.config.skip_small_talk and job.cls.call_kind is CallKind.MEM0_EXTRACTION
            and small_talk_only(job.messages)):
        return _small_talk(rt, job, started)
    if job.deadline is None:
        job.deadline = time.monotonic() + rt.config.deadline_s
    attempts: list[Attempt] = []
    escalations: list[str] = []
    # claims of external answers that were then rejected: that money is spent, so each claim is held
    # until the call's record (which charges it) is written, never given back to other calls before
    held: list[Reservation] = []
    try:
        return (yield from _walk_chain(rt, job, job.deadline, started, attempts, escalations, held))
    except GeneratorExit:
        # the caller cancelled (task cancel, wait_for) with an external request in flight: the
        # provider bills it, so it is recorded at the worst case before its claim is given back
        if any(a.kind == "cancelled" for a in attempts):
            rt.record_failure(job, attempts, escalations, time.perf_counter() - started)
        raise
    finally:
        for claim in held:
            rt.release(claim)


def _walk_chain(rt: Runtime, job: ChatJob, deadline: float, started: float, attempts: list[Attempt],
                escalations: list[str], held: list[Reservation]) -> Generator[Call, ChatResult, ChatOutcome]:
    cls = job.cls
    for cand in job.decision.chain:
        if time.monotonic() >= deadline:
            attempts.append(Attempt(cand.backend, cand.model, f"not tried: the call's deadline_s "
                                    f"({rt.config.deadline_s:g}s) had passed", kind="not tried",
                                    fix="raise deadline_s, or make local calls faster (compact prompt, warmup)"))
            escalations.append("deadline_s reached")
            break
        reservation: Reservation | None = None
        if not cand.is_local:
            got = rt.reserve_external(job, primary=(cand is job.decision.chain[0] and job.primary_external))
            if got is None:
                pass  # nothing to reserve: no budget set and the share does not apply to a fallback
            elif isinstance(got, Refusal):
                attempts.append(Attempt(cand.backend, cand.model, got.message, kind="blocked"))
                escalations.append(f"external refused: {got.reason}")
                if got.reason == "budget" and cand is job.decision.chain[-1]:
                    rt.record_failure(job, attempts, escalations, time.perf_counter() - started,
                                          outcome="blocked")
                    raise BudgetExceeded("no candidate could serve the call", attempts, blocked_by=got.message)
                continue
            reservation = got
        backends = rt.backends_for(cand)
        if not backends:
            attempts.append(Attempt(cand.backend, cand.model, "no backend configured",
                                    fix=kind_spec(cand.backend).missing))
        tried_from = len(attempts)
        try:
            for backend in backends:
                outcome = yield from _try_backend(rt, job, cand, backend, attempts, escalations)
                if outcome is not None:
                    outcome.latency_s = time.perf_counter() - started
                    rt.record_chat(job, outcome, reservation=reservation)
                    reservation = None  # settled by the record
                    return outcome
        finally:
            if reservation is not None:
                if rejected_external_answers(attempts[tried_from:]):
                    held.append(reservation)
                else:
                    rt.release(reservation)
        if cand.is_local:
            escalations.append(f"local {cand.model} failed")
    rt.record_failure(job, attempts, escalations, time.perf_counter() - started)
    blocked = job.decision.external_blocked_by
    raise RoutingError(
        f"every candidate failed for this {cls.call_kind} call ({cls.query_type})", attempts, blocked_by=blocked
    )


def _try_backend(rt: Runtime, job: ChatJob, cand: Candidate, backend: Backend, attempts: list[Attempt],
                 escalations: list[str]) -> Generator[Call, ChatResult, ChatOutcome | None]:
    """Up to two tries on one backend (a bad answer or a truncation gets one local retry).

    Whatever happens — an answer, an error, or the caller cancelling at the ``yield`` — the breaker
    hears about it: a half-open probe that is never settled would lock the host out for good."""
    breaker = rt.breaker(backend)
    token = breaker.allow()
    if token is False:
        attempts.append(Attempt(backend.name, cand.model, f"circuit open (retry in {breaker.retry_in():.0f}s)",
                                fix=breaker.last_fix, kind="skipped"))
        return None
    tries = _Tries(rt, job, cand, backend, breaker, Admission(token), attempts, escalations)
    try:
        return (yield from tries.run())
    finally:
        breaker.release(tries.adm.token)  # no-op unless a probe that has had no verdict yet


def _idle_prediction(job: ChatJob, cand: Candidate, backend: Backend, prompt_tokens: int) -> float | None:
    """Seconds the try should take at the measured speed on an idle host (None: nothing measured)."""
    answer = min(job.max_tokens or PLANNED_ANSWER_TOKENS, PLANNED_ANSWER_TOKENS)
    return SPEEDS.get(backend.name, cand.model).predict(prompt_tokens, answer)


def _predicted(job: ChatJob, cand: Candidate, backend: Backend, prompt_tokens: int) -> float | None:
    """Seconds the try should take at the measured speed, queued behind the host's calls in flight."""
    predicted = _idle_prediction(job, cand, backend, prompt_tokens)
    if predicted is not None:
        # a busy host queues this call behind the ones already there: it is slow, not broken, and
        # a deadline for an idle host would trip its breaker for everyone
        predicted *= 1 + LOADS.in_flight(backend.name)
    return predicted


def _budget(rt: Runtime, job: ChatJob, cand: Candidate, backend: Backend, prompt_tokens: int) -> float | None:
    """Seconds one try may take: from the measured speed for a local backend (None: no own bound)."""
    if not backend.is_local:
        return None
    cfg = rt.config
    return call_deadline_s(_predicted(job, cand, backend, prompt_tokens), margin=cfg.call_deadline_margin,
                           floor_s=cfg.call_deadline_floor_s, ceiling_s=cfg.call_deadline_ceiling_s,
                           load_s=SPEEDS.get(backend.name, cand.model).load_s)


def _beyond_ceiling(rt: Runtime, job: ChatJob, cand: Candidate, backend: Backend, prompt_tokens: int) -> bool:
    """The try alone was known to need more than ``call_deadline_ceiling_s`` (a huge prompt at the
    measured speed): its timeout is the request's size, not the host's health, so no breaker
    verdict. The queue is left out: a hung host piles calls up, and must still trip its breaker."""
    predicted = _idle_prediction(job, cand, backend, prompt_tokens) if backend.is_local else None
    return predicted is not None and predicted > rt.config.call_deadline_ceiling_s


def _timeout_attempt(rt: Runtime, job: ChatJob, cand: Candidate, backend: Backend, exc: BackendTimeout,
                     elapsed: float, budget: float | None, prompt_tokens: int) -> Attempt:
    """A timeout that says how long, for how much work, at what speed, and what to do."""
    speed = SPEEDS.get(backend.name, cand.model)
    overall = job.deadline is not None and time.monotonic() >= job.deadline
    limit = f"the call's deadline_s ({rt.config.deadline_s:g}s)" if overall or budget is None else (
        f"its {budget:.1f}s deadline")
    text = (f"{cand.model} on {backend.name} gave no complete answer within {limit}: {elapsed:.1f}s spent "
            f"on a ~{prompt_tokens}-token prompt and up to {job.max_tokens} answer tokens ({describe(speed)}); "
            f"{exc}")
    fix = ("run `mem0-routed warmup` so the first call does not load the model, set compact_extraction: always, "
           "use a faster/smaller model, or raise call_deadline_ceiling_s / deadline_s")
    return Attempt(backend.name, cand.model, text[:400], fix=fix, kind="timeout", is_local=backend.is_local)


#: Failures that say "this host cannot serve this model" without tripping its breaker (a replica
#: started with another key, a model it does not serve). A bad request is the caller's, not the host's.
_HOST_REFUSALS = (AuthenticationError, ModelNotFound)

#: A pass's verdict: an answer, "retry" (once, with a changed request), or None (this backend failed).
_Verdict = ChatOutcome | Literal["retry"] | None


class _Tries:
    """The tries of one candidate on one backend, and what carries from one to the next: the
    messages sent (full or compact), their size, and whether the next request must vary."""

    TRIES = 2

    def __init__(self, rt: Runtime, job: ChatJob, cand: Candidate, backend: Backend, breaker: CircuitBreaker,
                 adm: Admission, attempts: list[Attempt], escalations: list[str]) -> None:
        self.rt, self.job, self.cand, self.backend, self.breaker, self.adm = rt, job, cand, backend, breaker, adm
        self.attempts, self.escalations = attempts, escalations
        self.extraction = job.cls.call_kind is CallKind.MEM0_EXTRACTION
        self.messages: list[dict[str, Any]] = job.messages
        self.compact = False
        self.prompt_tokens = 0
        self.varied = False  # the next try follows a degenerate answer: change the request

    def run(self) -> Generator[Call, ChatResult, ChatOutcome | None]:
        for n in range(self.TRIES):
            try:
                with deadline_scope(self.job.deadline):  # the model list and window look-ups too
                    request = self._request(first=n == 0)
            except BackendError as exc:  # the host's model list or window could not be read, or lacks the model
                note_failure(self.breaker, exc, self.attempts, self.backend, self.cand, token=self.adm.settle())
                if isinstance(exc, _HOST_REFUSALS):
                    self.rt.rejected(self.backend, self.cand.model)
                return None
            result = yield from self._send(request)
            if result is None:
                return None
            verdict = self._judge(request, result, last=n + 1 >= self.TRIES)
            if verdict != "retry":
                return verdict
        return None

    def _request(self, *, first: bool) -> ChatRequest:
        rt, job, cand, backend = self.rt, self.job, self.cand, self.backend
        if first:
            if backend.is_local:
                require_model(backend, cand.model)
            self.messages, self.compact = fit_messages(
                rt.config, job, cand, backend, prefer_compact=rt.prompt_choice(backend, cand.model) == "compact")
            self.prompt_tokens = estimate_messages(self.messages)  # the same for both tries
        elif self.varied and self.extraction and backend.is_local and not self.compact \
                and rt.config.compact_extraction != "never":
            from ._compact_prompt import compact_extraction_messages

            self.messages, self.compact = compact_extraction_messages(job.messages), True
            self.prompt_tokens = estimate_messages(self.messages)
        return build_request(rt.config, rt.planner, job, cand, backend, self.messages, self.prompt_tokens,
                             min_need=rt.num_ctx_floor(cand.model, backend), varied=self.varied)

    def _send(self, request: ChatRequest) -> Generator[Call, ChatResult, ChatResult | None]:
        """One call through the driver; a failure is noted (breaker, attempts) and gives None."""
        rt, job, cand, backend, breaker, adm = self.rt, self.job, self.cand, self.backend, self.breaker, self.adm
        budget = _budget(rt, job, cand, backend, self.prompt_tokens)
        ticket = rt.begin(backend, cand.model)
        t0 = time.monotonic()
        try:
            result = yield Call(backend, request, rt.config.max_retries, budget_s=budget, deadline=job.deadline)
            ticket.ok = True
        except GeneratorExit:
            if not backend.is_local:  # sent, and likely billed: execute_chat records it
                self.attempts.append(Attempt(backend.name, cand.model, "cancelled by the caller while the request "
                                             "was in flight", kind="cancelled", is_local=False))
            raise
        except BackendTimeout as exc:
            attempt = _timeout_attempt(rt, job, cand, backend, exc, time.monotonic() - t0, budget,
                                       self.prompt_tokens)
            if (job.deadline is not None and time.monotonic() >= job.deadline) or \
                    _beyond_ceiling(rt, job, cand, backend, self.prompt_tokens):
                breaker.release(adm.settle())  # our own deadline ran out, or one request's size: no verdict
            else:
                adm.settle()
                breaker.failure(attempt.error, fix=attempt.fix)
            self.attempts.append(attempt)
            self.escalations.append(f"timeout on {cand.model}")
            log.info("mem0-routed: %s", attempt.error)
            return None
        except BackendError as exc:
            note_failure(breaker, exc, self.attempts, backend, cand, token=adm.settle())
            if isinstance(exc, _HOST_REFUSALS):  # its breaker never opens: spreading must stop
                rt.rejected(backend, cand.model)  # giving it the first turn
            return None
        except Exception as exc:  # noqa: BLE001 - a client bug must not escape as a deep traceback
            err = BackendError(f"unexpected {type(exc).__name__}: {short_error(exc)}", backend=backend.name)
            note_failure(breaker, err, self.attempts, backend, cand, token=adm.settle())
            return None
        finally:
            rt.end(backend, ticket)
        adm.settle()
        breaker.success()
        if backend.is_local:
            SPEEDS.observe(backend.name, cand.model, prompt_tokens=result.tokens_in, prompt_s=result.prompt_eval_s,
                           answer_tokens=result.tokens_out, answer_s=result.eval_s, load_s=result.load_s)
        return result

    def _judge(self, request: ChatRequest, result: ChatResult, *, last: bool) -> _Verdict:
        """The answer if it meets the call's contract; "retry" after a truncation or (locally) a
        degenerate answer; None when this backend has nothing more to give."""
        job, cand, backend = self.job, self.cand, self.backend
        if backend.truncated(request, result, self.prompt_tokens):
            self.escalations.append(f"truncated prompt on {cand.model} (num_ctx {request.num_ctx})")
            self.attempts.append(Attempt(backend.name, cand.model, f"prompt truncated at num_ctx {request.num_ctx}",
                                         kind="truncated", is_local=backend.is_local,
                                         fix=backend.fix("context_overflow", cand.model)))
            if not backend.plans_context or self.rt.planner.grow(cand.model, _window_of(backend, cand.model)) is None:
                return None
            return "retry"
        degenerate = "repetition loop" if result.stopped == "loop" else (
            "answer cut at max_tokens" if result.done_reason == "length" else None)
        degraded: str | None = None
        try:
            if degenerate and self.extraction:
                text, degraded = _salvage(result.text, degenerate)
            elif result.stopped == "loop":
                raise ContractViolation(degenerate or "repetition loop")
            else:
                text = check_answer(result.text, call_kind=job.cls.call_kind, wants_json=job.cls.wants_json,
                                    has_tool_calls=bool(result.tool_calls))
                degraded = degenerate  # a text answer cut at max_tokens is usable, but not whole
        except ContractViolation as bad:
            self.rt.rejected(backend, cand.model)  # fast garbage must not look like a fast host
            self.escalations.append(f"{bad} from {cand.model}")
            self.attempts.append(Attempt(backend.name, cand.model, f"answer rejected: {bad}"
                                         + (f" (stopped after {result.tokens_out or '?'} tokens)"
                                            if result.stopped else ""),
                                         kind="invalid", is_local=backend.is_local))
            if not last and cand.is_local:
                self.varied = True
                return "retry"
            return None
        if degraded:
            self.escalations.append(f"{degraded} from {cand.model}")
        return ChatOutcome(
            text=text, model=result.model or cand.model, backend=backend.kind, is_local=backend.is_local,
            decision=job.decision, tool_calls=result.tool_calls, host=result.host or backend.name,
            tokens_in=result.tokens_in or (self.prompt_tokens if backend.is_local else 0),
            tokens_out=result.tokens_out or 0, escalations=self.escalations, attempts=self.attempts,
            compact_prompt=self.compact, degraded=degraded,
        )


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
