"""The in-memory ledger: one process, gone at exit; for tests and throw-away runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from .._records import Refusal, Reservation, ShareCounts, UsageRecord, counts_in_share, validate_record
from ._base import RESERVATION_TTL_S, check_reservation, new_reservation_id, validate_amount

__all__ = ["MemoryLedger"]


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
        validate_amount(amount_usd)
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
            res = Reservation(new_reservation_id(), float(amount_usd))
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
