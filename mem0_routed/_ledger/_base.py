"""What every ledger store shares: the ``Ledger`` protocol, the reservation rule, and the backlog
that keeps records whose write failed.

Why reservations: an external call's cost is known only after it returns, so checking the budget
and then recording would let 32 concurrent callers all pass the check. Instead each caller claims
its estimated cost atomically (``reserve_external``) and settles the claim with the real record.
Reservations expire (15 minutes by default) so a crashed process cannot hold budget forever.

Embedding calls (``call_kind == "embedding"``) are left out of the share counts: the local-share
target is about LLM calls, and counting the many always-local embeddings would let the share look
better than it is. Their cost still counts towards the budget.

The record types themselves (``UsageRecord``, ``Reservation``, ...) live in ``_records``: the router,
policy and metrics read records without loading any store.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

from .._records import Refusal, Reservation, ShareCounts, UsageRecord
from .._urls import mask_url

__all__ = [
    "MAX_UNWRITTEN",
    "RESERVATION_TTL_S",
    "Backlog",
    "Ledger",
    "check_ledger",
    "check_reservation",
    "new_reservation_id",
    "validate_amount",
]

log = logging.getLogger("mem0_routed")
RESERVATION_TTL_S = 15 * 60.0
_EPS = 1e-9  # money compared in floats: 0.3 + 7 * 0.1 must still fit a 1.00 budget


@runtime_checkable
class Ledger(Protocol):
    """Append-only usage log plus atomic reservations for external calls.

    Implementations: ``MemoryLedger`` (tests, one process), SQLite (default; several processes on
    one host), Redis (many hosts sharing one budget and one local share). Any object with these
    members can be passed as ``Router(ledger=...)``.
    """

    url: str

    def record(self, record: UsageRecord, *, reservation: Reservation | None = None) -> None:
        """Append ``record``; when it settles ``reservation``, remove the reservation in the same
        atomic step so the call is never counted twice nor dropped."""
        ...

    def reserve_external(
        self,
        amount_usd: float,
        *,
        budget_usd: float | None,
        budget_since: float,
        max_external_share: float | None,
        share_since: float,
    ) -> Reservation | Refusal:
        """Atomically check and claim one external call.

        Refuse with ``"budget"`` if spent (settled costs since ``budget_since`` plus open
        reservations) + ``amount_usd`` would exceed ``budget_usd``. Refuse with ``"share"`` if
        ``max_external_share`` (a fraction 0..1) is given and (external + open reservations + 1)
        / (total + open reservations + 1) over records since ``share_since`` would exceed it.
        ``None`` disables that check. 32 threads or 4 processes racing must never overspend.
        """
        ...

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation whose call was not made or failed (its cost was not spent)."""
        ...

    def counts(self, since: float | None = None) -> ShareCounts: ...

    def spent_usd(self, since: float | None = None) -> float: ...

    def records(self, since: float | None = None, limit: int | None = None) -> list[UsageRecord]:
        """Records in time order (oldest first); ``limit`` keeps the newest ``limit``."""
        ...

    def close(self) -> None: ...


_MEMBERS = ("url", "record", "reserve_external", "release", "counts", "spent_usd", "records", "close")


def check_ledger(ledger: object) -> Ledger | None:
    """``ledger`` if it is a ``Ledger`` (or ``None``); else a ``TypeError`` saying what to pass.

    Checked when the router is built: a wrong object used to fail only at the first external call,
    deep inside the budget check."""
    if ledger is None or isinstance(ledger, Ledger):
        return ledger
    if isinstance(ledger, (str, bytes)) or hasattr(ledger, "__fspath__"):
        url = mask_url(ledger.decode() if isinstance(ledger, bytes) else str(ledger))
        fix = (f"a URL goes in the config, Router({{'ledger': {url!r}}}), or through "
               f"Router(ledger=open_ledger({url!r}))")
    else:
        missing = ", ".join(m for m in _MEMBERS if not hasattr(ledger, m))
        fix = f"it lacks {missing}; pass open_ledger(url), MemoryLedger(), or an object implementing Ledger"
    raise TypeError(f"ledger must be a mem0_routed.Ledger, got {type(ledger).__name__}: {fix}")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def check_reservation(
    amount_usd: float,
    *,
    spent_usd: float,
    open_amount: float,
    open_count: int,
    budget_usd: float | None,
    budget_since: float,
    total: int,
    external: int,
    max_external_share: float | None,
    share_since: float,
) -> Refusal | None:
    """The rule every store applies inside its atomic step; ``None`` means "may reserve".

    Kept in one place so the memory, SQLite and Redis (Lua mirrors it) stores agree.
    """
    if budget_usd is not None and spent_usd + open_amount + amount_usd > budget_usd + _EPS:
        return Refusal(
            "budget",
            f"external budget ${budget_usd:.2f} would be exceeded: ${spent_usd:.4f} spent and "
            f"${open_amount:.4f} reserved since {_when(budget_since)}, this call needs ~${amount_usd:.4f}",
        )
    if max_external_share is not None:
        after = (external + open_count + 1) / (total + open_count + 1)
        if after > max_external_share + 1e-12:
            return Refusal(
                "share",
                f"external share would be {100 * after:.1f}% > {100 * max_external_share:.1f}% allowed "
                f"({external} external + {open_count} in flight of {total} calls since {_when(share_since)})",
            )
    return None


def new_reservation_id() -> str:
    """128 random bits as hex (``os.urandom``; cheaper to import than ``uuid``)."""
    return os.urandom(16).hex()


def validate_amount(amount_usd: float) -> None:
    """A negative or NaN claim would lower the spend every other caller is checked against."""
    if not amount_usd >= 0:  # also catches NaN
        raise ValueError(f"amount_usd={amount_usd!r} must be a cost in US dollars, 0 or more")


#: Records whose write failed, held in memory and written before the next record (oldest dropped
#: beyond this, with an error in the log): a broken ledger never loses a record silently.
MAX_UNWRITTEN = 10_000


class Backlog:
    """Usage records a store could not write yet. Thread-safe; every change is logged."""

    def __init__(self, url: str, flush: Callable[[], None] | None = None) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._held: list[UsageRecord] = []
        self._flush = flush  # writes the held records (the store's own ``flush``), tried at exit
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._held)

    def take(self) -> list[UsageRecord]:
        """The held records, oldest first; the caller writes them or gives them back."""
        with self._lock:
            out, self._held = self._held, []
        return out

    def hold(self, records: list[UsageRecord]) -> None:
        """Keep ``records`` (not written) for the next write, and say so loudly."""
        with self._lock:
            held = [*records, *self._held]
            dropped = max(0, len(held) - MAX_UNWRITTEN)
            self._held = held[dropped:]
            n = len(self._held)
            self._pid = os.getpid()  # a forked child's copy is its parent's to write, not its own
        _HOLDING.add(self)
        log.error("mem0-routed: ledger %s: usage record not written; %d record(s) held in memory and "
                  "retried on the next write%s", self._url, n, f"; {dropped} oldest DROPPED" if dropped else "")

    def written(self, n: int) -> None:
        if n:
            log.warning("mem0-routed: ledger %s: %d held usage record(s) written", self._url, n)

    def flush_at_exit(self) -> None:
        """One last write of the held records; if that fails too, say at exit how many are lost
        (the earlier error promised a retry on the next write, and there is none)."""
        if not self._held or self._pid != os.getpid():
            return
        try:
            if self._flush is not None:
                self._flush()
        except Exception as exc:  # noqa: BLE001 - reported below, never raised at exit
            log.error("mem0-routed: ledger %s: last write at exit failed: %s", self._url,
                      mask_url(str(exc).splitlines()[0][:200]) if str(exc) else type(exc).__name__)
        if self._held:
            log.error("mem0-routed: ledger %s: process exits with %d usage record(s) never written",
                      self._url, len(self._held))

    def report_at_close(self) -> None:
        if self._held:
            log.error("mem0-routed: ledger %s closed with %d usage record(s) never written",
                      self._url, len(self._held))


#: Backlogs that held records at some point: written once more when the interpreter exits.
_HOLDING: weakref.WeakSet[Backlog] = weakref.WeakSet()


@atexit.register
def _flush_backlogs() -> None:
    """A record held after a failed write was lost, without a word, when the process then exited."""
    for backlog in list(_HOLDING):
        backlog.flush_at_exit()
