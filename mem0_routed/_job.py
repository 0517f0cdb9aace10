"""What one chat call is (``ChatJob``) and what it produced (``ChatOutcome``).

Plain values, apart from the logic, so the runtime that prepares and records a call and the
executor that runs it can both speak of them without importing each other.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ._records import UsageRecord
from ._types import Attempt, Classification, RoutingDecision

__all__ = ["BILLED_KINDS", "ChatJob", "ChatOutcome", "chat_record", "failure_record", "rejected_external_answers"]


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


#: Attempt kinds of an external request the provider may have billed though no answer was kept.
BILLED_KINDS = ("invalid", "truncated", "timeout", "cancelled")


def rejected_external_answers(attempts: Iterable[Attempt]) -> int:
    """External requests that were sent and may be billed though no answer was kept: answers that
    were rejected (invalid JSON, cut, a truncated prompt), and requests that timed out or that the
    caller cancelled in flight (the provider usually finishes and bills them). A timeout before
    any byte was sent (connect) is counted too: over-billing it is the safe side of the budget."""
    return sum(1 for a in attempts if a.is_local is False and a.kind in BILLED_KINDS)


def chat_record(job: ChatJob, outcome: ChatOutcome, *, skipped: bool = False) -> UsageRecord:
    """The ledger's record of an answered call (``skipped``: answered by the router itself)."""
    first = job.decision.chain[0] if job.decision.chain else None
    return UsageRecord(
        ts=time.time(), call_kind=str(job.cls.call_kind), query_type=str(job.decision.query_type),
        model=outcome.model, backend=outcome.backend, is_local=outcome.is_local,
        tokens_in=outcome.tokens_in, tokens_out=outcome.tokens_out, cost_usd=outcome.cost_usd,
        latency_s=outcome.latency_s,
        outcome="skipped" if skipped else "degraded" if outcome.degraded
        else "escalated" if outcome.escalations else "ok",
        escalations=list(outcome.escalations),
        fallback=not skipped and first is not None
        and (first.model, first.is_local) != (outcome.model, outcome.is_local),
        external_check=None if outcome.is_local else job.external_check, host=outcome.host)


def failure_record(job: ChatJob, attempts: list[Attempt], escalations: list[str], latency: float, *,
                   outcome: Literal["error", "blocked"], cost_usd: float) -> UsageRecord:
    """The ledger's record of a call no candidate served, naming every attempt's error."""
    first = job.decision.chain[0] if job.decision.chain else None
    return UsageRecord(
        ts=time.time(), call_kind=str(job.cls.call_kind), query_type=str(job.decision.query_type),
        model=first.model if first else "", backend=first.backend if first else "",
        is_local=first.is_local if first else True, latency_s=latency, outcome=outcome, cost_usd=cost_usd,
        escalations=list(escalations), error="; ".join(f"{a.backend} {a.model}: {a.error}" for a in attempts)[:500])
