"""The SQLite ledger: a file in the user's data directory, safe with several processes on one host.

WAL mode and one connection per thread; a reservation is checked and inserted inside
``BEGIN IMMEDIATE``, so concurrent processes serialise on the check (see ``_ledger`` for why
reservations exist). Reservations live in their own table and expire.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from . import _ledger
from ._errors import ConfigError
from ._ledger import (
    EMBEDDING,
    RESERVATION_TTL_S,
    _validate_amount,
    check_reservation,
    new_reservation_id,
)
from ._usage import Refusal, Reservation, ShareCounts, UsageRecord

__all__ = ["SQLiteLedger"]


_COLUMNS = (
    "ts", "call_kind", "query_type", "model", "backend", "is_local", "tokens_in", "tokens_out",
    "cost_usd", "latency_s", "outcome", "escalations", "fallback", "error", "external_check",
    "host", "prompt", "response",
)  # fmt: skip
_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL, call_kind TEXT NOT NULL, query_type TEXT NOT NULL, model TEXT NOT NULL,
    backend TEXT NOT NULL, is_local INTEGER NOT NULL, tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0,
    latency_s REAL NOT NULL DEFAULT 0, outcome TEXT NOT NULL DEFAULT 'ok',
    escalations TEXT NOT NULL DEFAULT '[]', fallback INTEGER NOT NULL DEFAULT 0, error TEXT,
    external_check TEXT, host TEXT NOT NULL DEFAULT '', prompt TEXT, response TEXT
);
-- covering index: share counts and spend over a window never touch the table rows
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts, call_kind, is_local, cost_usd);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY, amount_usd REAL NOT NULL, created REAL NOT NULL, expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_expires ON reservations (expires);
PRAGMA user_version = 1;
"""


class SQLiteLedger:
    """A SQLite file in WAL mode; safe for several processes and threads on one host.

    One connection per thread; ``reserve_external`` checks and inserts inside ``BEGIN IMMEDIATE``
    (the write lock), so concurrent callers are serialised by SQLite itself.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        reservation_ttl_s: float = RESERVATION_TTL_S,
        busy_timeout_s: float = 30.0,
    ) -> None:
        if path is not None and str(path) in ("", ":memory:"):
            raise ConfigError(
                f"SQLiteLedger needs a file path, got {str(path)!r}; use ledger='memory://' for an "
                "in-memory ledger",
                key="ledger",
            )
        self.path = (Path(path).expanduser() if path is not None else _ledger.default_ledger_path()).absolute()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the ledger directory {str(self.path.parent)!r}: {exc}. "
                "Pick a writable path, e.g. ledger='sqlite:///tmp/mem0-routed.sqlite3'",
                key="ledger",
            ) from exc
        self.url = f"sqlite:///{str(self.path).lstrip('/')}"
        self._ttl = reservation_ttl_s
        self._busy_s = busy_timeout_s
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        with self._tx(immediate=True) as db:  # schema once, under the write lock
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)

    def __repr__(self) -> str:
        return f"SQLiteLedger({str(self.path)!r})"

    # -- connections -----------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; open a new ledger with open_ledger()")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():  # new thread or forked
            import sqlite3  # here, not at module level: `import mem0_routed` stays cheap

            try:
                conn = sqlite3.connect(
                    self.path, timeout=self._busy_s, isolation_level=None, check_same_thread=False
                )
            except sqlite3.Error as exc:
                raise ConfigError(
                    f"cannot open the ledger file {str(self.path)!r}: {exc}. Pick a writable path.",
                    key="ledger",
                ) from exc
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_s * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _tx(self, *, immediate: bool = False) -> _Transaction:
        return _Transaction(self._conn(), immediate)

    # -- Ledger ----------------------------------------------------------------------------------
    def record(self, record: UsageRecord, *, reservation: Reservation | None = None) -> None:
        row = [getattr(record, c) for c in _COLUMNS]
        row[_COLUMNS.index("escalations")] = json.dumps(list(record.escalations))
        with self._tx(immediate=True) as db:
            db.execute(
                f"INSERT INTO usage ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})", row
            )
            if reservation is not None:
                db.execute("DELETE FROM reservations WHERE id = ?", (reservation.id,))

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
        with self._tx(immediate=True) as db:
            now = time.time()
            db.execute("DELETE FROM reservations WHERE expires <= ?", (now,))
            n_open, open_amt = db.execute("SELECT COUNT(*), TOTAL(amount_usd) FROM reservations").fetchone()
            spent = 0.0
            if budget_usd is not None:
                (spent,) = db.execute(
                    "SELECT TOTAL(cost_usd) FROM usage WHERE ts >= ?", (budget_since,)
                ).fetchone()
            total = external = 0
            if max_external_share is not None:
                total, external = self._share(db, share_since)
            refusal = check_reservation(
                amount_usd, spent_usd=spent, open_amount=open_amt, open_count=n_open,
                budget_usd=budget_usd, budget_since=budget_since, total=total, external=external,
                max_external_share=max_external_share, share_since=share_since,
            )  # fmt: skip
            if refusal is not None:
                return refusal
            res = Reservation(new_reservation_id(), float(amount_usd), now)
            db.execute(
                "INSERT INTO reservations (id, amount_usd, created, expires) VALUES (?, ?, ?, ?)",
                (res.id, res.amount_usd, now, now + self._ttl),
            )
            return res

    @staticmethod
    def _share(db: sqlite3.Connection, since: float | None) -> tuple[int, int]:
        total, external = db.execute(
            "SELECT COUNT(*), TOTAL(is_local = 0) FROM usage WHERE ts >= ? AND call_kind != ?",
            (since if since is not None else float("-inf"), EMBEDDING),
        ).fetchone()
        return int(total), int(external)

    def release(self, reservation: Reservation) -> None:
        with self._tx(immediate=True) as db:
            db.execute("DELETE FROM reservations WHERE id = ?", (reservation.id,))

    def counts(self, since: float | None = None) -> ShareCounts:
        with self._tx() as db:
            total, external = self._share(db, since)
            (n_open,) = db.execute(
                "SELECT COUNT(*) FROM reservations WHERE expires > ?", (time.time(),)
            ).fetchone()
        return ShareCounts(total + n_open, total - external, external + n_open)

    def spent_usd(self, since: float | None = None) -> float:
        """Settled costs only; open reservations are not money spent yet."""
        with self._tx() as db:
            (spent,) = db.execute(
                "SELECT TOTAL(cost_usd) FROM usage WHERE ts >= ?",
                (since if since is not None else float("-inf"),),
            ).fetchone()
        return float(spent)

    def records(self, since: float | None = None, limit: int | None = None) -> list[UsageRecord]:
        where, args = ("WHERE ts >= ?", [since]) if since is not None else ("", [])
        cols = ", ".join(_COLUMNS)
        if limit is None:
            sql = f"SELECT {cols} FROM usage {where} ORDER BY ts, id"
        else:
            sql = f"SELECT * FROM (SELECT id, {cols} FROM usage {where} ORDER BY ts DESC, id DESC LIMIT ?) ORDER BY ts, id"
            args.append(max(int(limit), 0))
        with self._tx() as db:
            rows = db.execute(sql, args).fetchall()
        return [_row_to_record(r if limit is None else r[1:]) for r in rows]

    def close(self) -> None:
        """Close every thread's connection; the file stays for the next run."""
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(Exception):  # best effort: another thread may be mid-query
                conn.close()


class _Transaction:
    """``with`` block: BEGIN [IMMEDIATE] ... COMMIT, ROLLBACK on error (autocommit connection)."""

    __slots__ = ("_db", "_immediate")

    def __init__(self, db: sqlite3.Connection, immediate: bool) -> None:
        self._db, self._immediate = db, immediate

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE" if self._immediate else "BEGIN")
        return self._db

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _row_to_record(row: tuple[object, ...]) -> UsageRecord:
    d = dict(zip(_COLUMNS, row))
    d["is_local"] = bool(d["is_local"])
    d["fallback"] = bool(d["fallback"])
    d["escalations"] = json.loads(d["escalations"] or "[]")  # type: ignore[arg-type]
    return UsageRecord(**d)  # type: ignore[arg-type]


# --- choosing a store ---------------------------------------------------------------------------
