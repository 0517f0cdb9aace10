"""What the ledger stores: usage records, share counts, reservations and refusals.

Kept apart from the stores (``_ledger``) so the router, the policy and the metrics read records
without loading any store; the ``Ledger`` protocol itself is in ``_ledger._base``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

Outcome = Literal["ok", "escalated", "degraded", "error", "blocked", "skipped"]

EMBEDDING = "embedding"
#: Calls that got no answer because something failed (no model answered, or every way was refused).
FAILED_OUTCOMES = frozenset({"error", "blocked"})
#: Calls no model answered: failed ones, and "skipped" (mem0's extraction of greetings only, answered
#: by the router itself). They are neither local nor external, so no share, metric or report counts them.
UNSERVED = FAILED_OUTCOMES | {"skipped"}


def counts_in_share(record: UsageRecord) -> bool:
    """Whether ``record`` is an LLM call a model served (embeddings are always local: not counted)."""
    return record.call_kind != EMBEDDING and record.outcome not in UNSERVED


@dataclass(slots=True)
class UsageRecord:
    """One routed call. Never the prompt or the answer unless the user opted in; never a key.

    ``ts`` is a POSIX timestamp (UTC seconds). ``escalations`` lists short reasons
    ("invalid json", "connection refused", ...). ``external_check`` records the keep-local rule
    check that allowed an external send (so "what left this machine" can be answered).
    """

    ts: float
    call_kind: str
    query_type: str
    model: str
    backend: str
    is_local: bool
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    outcome: Outcome = "ok"
    escalations: list[str] = field(default_factory=list)
    fallback: bool = False
    error: str | None = None
    external_check: str | None = None
    host: str = ""
    prompt: str | None = None
    response: str | None = None

    def __post_init__(self) -> None:
        """Refuse counts no call can have: a negative cost or token count would lower the spend
        the budget is checked against, and NaN would make every comparison false."""
        validate_record(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate_record(record: UsageRecord) -> None:
    """Raise ``ValueError`` naming the field when a record holds an impossible number."""
    for name in ("tokens_in", "tokens_out"):
        value = getattr(record, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"UsageRecord.{name}={value!r} must be a whole number of tokens, 0 or more")
    for name in ("cost_usd", "latency_s", "ts"):
        value = getattr(record, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or (name != "ts" and value < 0):
            raise ValueError(f"UsageRecord.{name}={value!r} must be a finite number, 0 or more")


@dataclass(frozen=True, slots=True)
class ShareCounts:
    """Call counts over a window; ``external`` includes reservations not yet settled."""

    total: int
    local: int
    external: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """A claim on one external call (and its estimated cost) made atomically before sending it.

    ``id`` is opaque to callers. Settle it with the real record, or release it if the call failed.
    """

    id: str
    amount_usd: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why ``reserve_external`` said no: ``"budget"`` or ``"share"``, with a sentence for people."""

    reason: Literal["budget", "share"]
    message: str


def utc_month_start(now: datetime | None = None) -> float:
    """Start of the current calendar month (UTC) as a POSIX timestamp: the money window."""
    from datetime import timezone

    now = now or datetime.now(timezone.utc)
    return datetime(now.year, now.month, 1, tzinfo=timezone.utc).timestamp()
