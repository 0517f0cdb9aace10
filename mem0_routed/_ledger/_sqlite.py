"""The SQLite ledger: a file in the user's data directory, safe with several processes on one host.

WAL mode; a reservation is checked and inserted inside ``BEGIN IMMEDIATE``, so concurrent processes
serialise on the check (see ``_base`` for why reservations exist). Reservations live in their own
table and expire.

Connections come from a small pool, not one per thread: a thread-per-request server or
``asyncio.run`` per call (a fresh worker thread each time) kept one open file per thread until
``close()``, and ran out of file descriptors. Every write checks that the path still names the
file the ledger has open (``_sqlite_file``): a deleted or replaced ledger is recreated with its
records, loudly, instead of writing on into an unlinked file the next process never sees.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .._errors import ConfigError
from .._records import EMBEDDING, UNSERVED, Refusal, Reservation, ShareCounts, UsageRecord, validate_record
from ._base import RESERVATION_TTL_S, Backlog, check_reservation, new_reservation_id, validate_amount
from ._sqlite_file import FileId, file_id, recover_file

__all__ = ["POOL_IDLE", "POOL_MAX", "SQLiteLedger", "default_ledger_path"]

log = logging.getLogger("mem0_routed")

_COLUMNS = (
    "ts", "call_kind", "query_type", "model", "backend", "is_local", "tokens_in", "tokens_out",
    "cost_usd", "latency_s", "outcome", "escalations", "fallback", "error", "external_check",
    "host", "prompt", "response",
)  # fmt: skip
_INSERT = f"INSERT INTO usage ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
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
#: Idle connections kept open; more concurrent callers open extra ones and close them afterwards.
POOL_IDLE = 4
#: Connections open at once, at most (a caller beyond waits for one, up to the busy timeout):
#: SQLite serialises writers anyway, and this bounds the ledger's file descriptors for any
#: number of threads.
POOL_MAX = 8


def default_ledger_path() -> Path:
    """``<user data dir>/mem0-routed/ledger.sqlite3`` (platformdirs); not created here."""
    import platformdirs  # only when the default file is used: keeps the import light

    return Path(platformdirs.user_data_dir("mem0-routed")) / "ledger.sqlite3"


class _Conn:
    """A pooled connection and the file (device, inode) it was opened on."""

    __slots__ = ("db", "file", "gen", "pid")

    def __init__(self, db: sqlite3.Connection, file: FileId | None, gen: int) -> None:
        self.db, self.file, self.gen, self.pid = db, file, gen, os.getpid()


class SQLiteLedger:
    """A SQLite file in WAL mode; safe for several processes and threads on one host.

    At most ``POOL_MAX`` connections are open (``POOL_IDLE`` when idle), whatever the number of
    threads, plus one held to rescue the records if the file is deleted; ``reserve_external``
    checks and inserts inside ``BEGIN IMMEDIATE`` (the write lock), so concurrent callers are
    serialised by SQLite itself.
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
        self.path = (Path(path).expanduser() if path is not None else default_ledger_path()).absolute()
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
        self._lock = threading.Lock()
        self._recover_lock = threading.RLock()
        self._file: FileId | None = None
        self._idle: list[_Conn] = []
        self._orphans: list[_Conn] = []  # a forked parent's connections: never closed by the child
        self._pid = os.getpid()
        self._slots = threading.BoundedSemaphore(POOL_MAX)
        self._gen = 0  # bumped when the file is recreated: older connections are retired
        self._closed = False
        self._backlog = Backlog(self.url, self.flush)
        # held open for the ledger's life and used only to rescue the records if the file vanishes
        self._anchor: _Conn | None = self._connect()
        self._file = self._anchor.file
        self._wal = file_id(Path(f"{self.path}-wal"))

    def __repr__(self) -> str:
        return f"SQLiteLedger({str(self.path)!r})"

    # -- connections -----------------------------------------------------------------------------
    def _connect(self) -> _Conn:
        if self._file is not None:  # opening the path again: it must still be our file (or be rescued
            self._check_file()      # first), else a new empty file would meet the old one's -wal
        try:
            db = sqlite3.connect(self.path, timeout=self._busy_s, isolation_level=None, check_same_thread=False)
            try:
                db.execute(f"PRAGMA busy_timeout = {int(self._busy_s * 1000)}")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'reservations'").fetchone():
                    db.execute("BEGIN IMMEDIATE")  # schema once, under the write lock
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            db.execute(stmt)
                    db.execute("COMMIT")
            except BaseException:
                db.close()
                raise
        except sqlite3.Error as exc:
            raise ConfigError(
                f"cannot open the ledger file {str(self.path)!r}: {exc}. Pick a writable path, or move a "
                "damaged file aside (the next run starts a new ledger).",
                key="ledger",
            ) from exc
        return _Conn(db, file_id(self.path), self._gen)

    def _checkout(self) -> _Conn:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; open a new ledger with open_ledger()")
        with self._lock:
            forked = self._pid != os.getpid()
            if forked:  # the parent's connections are not ours to use (nor to close)
                self._orphans.extend(self._idle)
                self._idle, self._pid = [], os.getpid()
                self._slots = threading.BoundedSemaphore(POOL_MAX)
            slots = self._slots
        if forked:
            with self._recover_lock:  # this process's own rescue connection
                if self._anchor is not None and self._anchor.pid != os.getpid():
                    self._orphans.append(self._anchor)
                    self._anchor = None
                if self._anchor is None:
                    self._anchor = self._connect()
        if not slots.acquire(timeout=self._busy_s):
            raise sqlite3.OperationalError(
                f"all {POOL_MAX} connections of the ledger {str(self.path)!r} stayed busy for {self._busy_s:g}s"
            )
        try:
            with self._lock:
                while self._idle:
                    conn = self._idle.pop()
                    if conn.gen == self._gen:
                        return conn
                    conn.db.close()
            return self._connect()
        except BaseException:
            slots.release()
            raise

    def _checkin(self, conn: _Conn, *, healthy: bool) -> None:
        try:
            if healthy and not self._closed and conn.gen == self._gen:
                with self._lock:
                    if len(self._idle) < POOL_IDLE and self._pid == os.getpid() == conn.pid:
                        self._idle.append(conn)
                        return
            with contextlib.suppress(Exception):
                conn.db.close()
        finally:
            if conn.pid == os.getpid():
                with contextlib.suppress(ValueError):  # a semaphore renewed by a fork in between
                    self._slots.release()

    @contextlib.contextmanager
    def _tx(self, *, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """``with`` block: a pooled connection, BEGIN [IMMEDIATE] ... COMMIT, ROLLBACK on error.
        A write first makes sure the path still names the ledger's file."""
        if immediate:
            self._check_file()
        conn = self._checkout()
        healthy = False
        try:
            db = conn.db
            db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                healthy = True
                raise
            db.execute("COMMIT")
            healthy = True
        finally:
            self._checkin(conn, healthy=healthy)

    def _check_file(self) -> None:
        """Deleted or replaced under us: copy our records into a new file at the path, loudly."""
        if file_id(self.path) == self._file:
            return
        with self._recover_lock:
            if file_id(self.path) == self._file:
                return
            old = self._anchor
            if old is not None and old.pid != os.getpid():  # a forked parent's: not ours to use
                self._orphans.append(old)
                old = self._anchor = None
            # if this raises, the anchor stays open (with the records) for the next write to retry
            self._file = recover_file(self.path, old.db if old is not None else None, self._schema, self._wal)
            self._anchor = None
            if old is not None:
                old.db.close()
            self._anchor = self._connect()
            self._wal = file_id(Path(f"{self.path}-wal"))
            with self._lock:
                self._gen += 1
                stale, self._idle = self._idle, []
            for conn in stale:
                conn.db.close()

    @staticmethod
    def _schema(db: sqlite3.Connection) -> None:
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                db.execute(stmt)

    # -- Ledger ----------------------------------------------------------------------------------
    def record(self, record: UsageRecord, *, reservation: Reservation | None = None) -> None:
        """Append ``record`` (and any earlier ones whose write failed). On failure the record is kept
        in memory for the next write and the error is raised: a record is never dropped silently."""
        validate_record(record)
        backlog = self._backlog.take()
        try:
            with self._tx(immediate=True) as db:
                db.executemany(_INSERT, [_row(r) for r in (*backlog, record)])
                if reservation is not None:
                    db.execute("DELETE FROM reservations WHERE id = ?", (reservation.id,))
        except Exception:
            self._backlog.hold([*backlog, record])
            raise
        self._backlog.written(len(backlog))

    def flush(self) -> None:
        """Write the records held after failed writes (at exit, or whenever the caller likes)."""
        backlog = self._backlog.take()
        if not backlog:
            return
        try:
            with self._tx(immediate=True) as db:
                db.executemany(_INSERT, [_row(r) for r in backlog])
        except Exception:
            self._backlog.hold(backlog)
            raise
        self._backlog.written(len(backlog))

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
            res = Reservation(new_reservation_id(), float(amount_usd))
            db.execute(
                "INSERT INTO reservations (id, amount_usd, created, expires) VALUES (?, ?, ?, ?)",
                (res.id, res.amount_usd, now, now + self._ttl),
            )
            return res

    @staticmethod
    def _share(db: sqlite3.Connection, since: float | None) -> tuple[int, int]:
        total, external = db.execute(
            "SELECT COUNT(*), TOTAL(is_local = 0) FROM usage"
            f" WHERE ts >= ? AND call_kind != ? AND outcome NOT IN ({', '.join('?' * len(UNSERVED))})",
            (since if since is not None else float("-inf"), EMBEDDING, *sorted(UNSERVED)),
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
        """Write what the backlog holds, then close the idle connections (busy ones close when their
        call ends); the file stays. Held records are written here, not lost with the closed ledger."""
        with contextlib.suppress(Exception):
            self.flush()
        self._closed = True
        with self._lock:
            idle, self._idle = self._idle, []
            if self._anchor is not None and self._anchor.pid == os.getpid():
                idle.append(self._anchor)
            self._anchor = None
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.db.close()
        self._backlog.report_at_close()

    @property
    def unwritten(self) -> int:
        """Records whose write failed and that wait for the next write."""
        return len(self._backlog)


def _row(record: UsageRecord) -> list[object]:
    row = [getattr(record, c) for c in _COLUMNS]
    row[_COLUMNS.index("escalations")] = json.dumps(list(record.escalations))
    return row


def _row_to_record(row: tuple[object, ...]) -> UsageRecord:
    d = dict(zip(_COLUMNS, row))
    d["is_local"] = bool(d["is_local"])
    d["fallback"] = bool(d["fallback"])
    d["escalations"] = json.loads(d["escalations"] or "[]")  # type: ignore[arg-type]
    return UsageRecord(**d)  # type: ignore[arg-type]
