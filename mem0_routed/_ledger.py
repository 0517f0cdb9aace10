"""Ledger stores: in-memory (tests), the rules every store shares, and ``open_ledger`` to pick one
from a URL. SQLite (the default; several processes on one host) lives in ``_ledger_sqlite``, Redis
(optional extra) in ``_ledger_redis``.

Why reservations: an external call's cost is known only after it returns, so checking the budget
and then recording would let 32 concurrent callers all pass the check. Instead each caller claims
its estimated cost atomically (``reserve_external``) and settles the claim with the real record.
Reservations expire (15 minutes by default) so a crashed process cannot hold budget forever.

Embedding calls (``call_kind == "embedding"``) are left out of the share counts: the local-share
target is about LLM calls, and counting the many always-local embeddings would let the share look
better than it is. Their cost still counts towards the budget.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ._config import mask_url
from ._errors import ConfigError
from ._usage import (
    Ledger,
    Refusal,
    Reservation,
    ShareCounts,
    UsageRecord,
    counts_in_share,
    validate_record,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "RESERVATION_TTL_S",
    "MemoryLedger",
    "SQLiteLedger",
    "default_ledger_path",
    "mask_url",
    "open_ledger",
]

log = logging.getLogger("mem0_routed")
RESERVATION_TTL_S = 15 * 60.0
_EPS = 1e-9  # money compared in floats: 0.3 + 7 * 0.1 must still fit a 1.00 budget
_ACCEPTED = (
    "None or 'sqlite' (default file), 'memory://', 'sqlite:///abs/path', 'sqlite://relative/path', "
    "a plain file path, 'redis://[:password@]host:port/db' or 'rediss://...'"
)


def default_ledger_path() -> Path:
    """``<user data dir>/mem0-routed/ledger.sqlite3`` (platformdirs); not created here."""
    import platformdirs

    return Path(platformdirs.user_data_dir("mem0-routed")) / "ledger.sqlite3"


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


def _validate_amount(amount_usd: float) -> None:
    if not amount_usd >= 0:  # also catches NaN
        raise ValueError(f"amount_usd={amount_usd!r} must be a cost in US dollars, 0 or more")


# --- in memory ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Open:
    reservation: Reservation
    expires: float


class MemoryLedger:
    """Thread-safe, one process, gone at exit: for tests and throw-away runs."""

    def __init__(self, *, reservation_ttl_s: float = RESERVATION_TTL_S) -> None:
        self.url = "memory://"
        self._ttl = reservation_ttl_s
        self._lock = threading.Lock()
        self._records: list[UsageRecord] = []
        self._open: dict[str, _Open] = {}

    def __repr__(self) -> str:
        return f"MemoryLedger(records={len(self._records)}, open_reservations={len(self._open)})"

    def _live(self, now: float) -> list[Reservation]:
        for rid in [rid for rid, o in self._open.items() if o.expires <= now]:
            del self._open[rid]
        return [o.reservation for o in self._open.values()]

    def record(self, record: UsageRecord, *, reservation: Reservation | None = None) -> None:
        validate_record(record)
        with self._lock:
            self._records.append(record)
            if reservation is not None:
                self._open.pop(reservation.id, None)

    def reserve_external(
        self,
        amount_usd: float,
        *,
        budget_usd: float | None,
        budget_since: float,
        max_external_share: float | None,
        share_since: float,
    ) -> Reservation | Refusal:
        _validate_amount(amount_usd)
        with self._lock:
            now = time.time()
            live = self._live(now)
            spent = sum(r.cost_usd for r in self._records if r.ts >= budget_since)
            total, _, external = _count(self._records, share_since)
            refusal = check_reservation(
                amount_usd, spent_usd=spent, open_amount=sum(r.amount_usd for r in live),
                open_count=len(live), budget_usd=budget_usd, budget_since=budget_since,
                total=total, external=external, max_external_share=max_external_share,
                share_since=share_since,
            )  # fmt: skip
            if refusal is not None:
                return refusal
            res = Reservation(new_reservation_id(), float(amount_usd), now)
            self._open[res.id] = _Open(res, now + self._ttl)
            return res

    def release(self, reservation: Reservation) -> None:
        with self._lock:
            self._open.pop(reservation.id, None)

    def counts(self, since: float | None = None) -> ShareCounts:
        with self._lock:
            total, local, external = _count(self._records, since)
            n_open = len(self._live(time.time()))
        return ShareCounts(total + n_open, local, external + n_open)

    def spent_usd(self, since: float | None = None) -> float:
        """Settled costs only; open reservations are not money spent yet."""
        with self._lock:
            return sum(r.cost_usd for r in self._records if since is None or r.ts >= since)

    def records(self, since: float | None = None, limit: int | None = None) -> list[UsageRecord]:
        with self._lock:
            out = sorted((r for r in self._records if since is None or r.ts >= since), key=lambda r: r.ts)
        return out[-limit:] if limit is not None and limit > 0 else ([] if limit == 0 else out)

    def close(self) -> None:
        """Nothing to release; records stay readable."""


def _count(records: Iterable[UsageRecord], since: float | None) -> tuple[int, int, int]:
    total = local = 0
    for r in records:
        if counts_in_share(r) and (since is None or r.ts >= since):
            total += 1
            local += bool(r.is_local)
    return total, local, total - local


# --- SQLite -------------------------------------------------------------------------------------

def open_ledger(url: str | None = None, **options: object) -> Ledger:
    """Open the store a URL names (see ``_ACCEPTED``); ``options`` go to the store's constructor."""
    if url is None or url.strip() in ("", "sqlite"):
        return SQLiteLedger(**options)  # type: ignore[arg-type]
    raw = url.strip()
    low = raw.lower()
    if low in ("memory", "memory://", ":memory:"):
        return MemoryLedger(**options)  # type: ignore[arg-type]
    if low.startswith(("redis://", "rediss://")):
        from ._ledger_redis import RedisLedger

        return RedisLedger(raw, **options)  # type: ignore[arg-type]
    if low.startswith("sqlite://"):
        rest = raw[len("sqlite://") :]  # "/abs/path" or "relative/path"
        if rest.startswith("//"):  # SQLAlchemy's four-slash absolute form
            rest = "/" + rest.lstrip("/")
        if not rest:
            return SQLiteLedger(**options)  # type: ignore[arg-type]
        return SQLiteLedger(rest, **options)  # type: ignore[arg-type]
    if "://" not in raw:
        return SQLiteLedger(raw, **options)  # type: ignore[arg-type]
    raise ConfigError(f"unsupported ledger URL {mask_url(raw)!r}; accepted: {_ACCEPTED}", key="ledger")


from ._ledger_sqlite import SQLiteLedger  # noqa: E402  (re-exported; it uses the helpers above)
