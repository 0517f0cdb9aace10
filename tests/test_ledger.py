"""Ledger stores: the ``Ledger`` contract (memory + SQLite here; Redis reuses these tests in
test_ledger_redis.py by overriding ``make_ledger``), races for the last dollar, URL parsing."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mem0_routed import ConfigError, Ledger, MemoryLedger, UsageRecord, open_ledger
from mem0_routed._ledger import SQLiteLedger, default_ledger_path
from mem0_routed._ledger._sqlite import POOL_IDLE
from mem0_routed._records import Refusal, Reservation, utc_month_start

MakeLedger = Callable[..., Ledger]
JOIN_S = 120.0


def rec(
    ts: float | None = None, *, local: bool = True, cost: float = 0.0, kind: str = "query", **kw: Any
) -> UsageRecord:
    return UsageRecord(
        ts=time.time() if ts is None else ts, call_kind=kind, query_type="simple",
        model="llama3.2:3b" if local else "gpt-4o-mini", backend="ollama" if local else "openai",
        is_local=local, cost_usd=cost, **kw,
    )  # fmt: skip


@pytest.fixture(params=["memory", "sqlite"])
def make_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLedger]:
    opened: list[Ledger] = []

    def make(**options: Any) -> Ledger:
        if request.param == "memory":
            ledger: Ledger = MemoryLedger(**options)
        else:
            ledger = SQLiteLedger(tmp_path / "ledger.sqlite3", **options)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


def reserve(ledger: Ledger, amount: float, *, budget: float | None = None, share: float | None = None,
            since: float = 0.0) -> Reservation | Refusal:  # fmt: skip
    return ledger.reserve_external(
        amount, budget_usd=budget, budget_since=since, max_external_share=share, share_since=since
    )


# --- the contract -------------------------------------------------------------------------------


def test_implements_protocol_and_round_trips_every_field(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    assert isinstance(ledger, Ledger)
    assert isinstance(ledger.url, str) and ledger.url
    original = rec(
        1_700_000_000.25, local=False, cost=0.00123, tokens_in=1500, tokens_out=300, latency_s=1.5,
        outcome="escalated", escalations=["invalid json", "connection refused"], fallback=True,
        error="boom", external_check="secrets,pii: none matched", host="h1", prompt="p", response="r",
    )  # fmt: skip
    ledger.record(original)
    assert ledger.records() == [original]


def test_records_are_time_ordered_filtered_and_limited_to_newest(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    for ts in (30.0, 10.0, 20.0, 40.0):
        ledger.record(rec(ts))
    assert [r.ts for r in ledger.records()] == [10.0, 20.0, 30.0, 40.0]
    assert [r.ts for r in ledger.records(since=20.0)] == [20.0, 30.0, 40.0]
    assert [r.ts for r in ledger.records(limit=2)] == [30.0, 40.0]
    assert [r.ts for r in ledger.records(since=15.0, limit=10)] == [20.0, 30.0, 40.0]
    assert ledger.records(limit=0) == []


def test_counts_exclude_embeddings_and_respect_since(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.record(rec(5.0, local=False, cost=1.0))
    for ts in (10.0, 11.0, 12.0):
        ledger.record(rec(ts))
    ledger.record(rec(13.0, local=False, cost=0.5))
    ledger.record(rec(14.0, kind="embedding"))
    ledger.record(rec(15.0, kind="embedding", local=False, cost=0.25))
    all_time = ledger.counts()
    assert (all_time.total, all_time.local, all_time.external) == (5, 3, 2)
    recent = ledger.counts(since=10.0)
    assert (recent.total, recent.local, recent.external) == (4, 3, 1)
    # money counts whatever the call kind
    assert ledger.spent_usd() == pytest.approx(1.75)
    assert ledger.spent_usd(since=10.0) == pytest.approx(0.75)


def test_open_reservations_count_as_external_until_settled_or_released(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.record(rec(10.0))
    first = reserve(ledger, 0.2)
    second = reserve(ledger, 0.3)
    assert isinstance(first, Reservation) and isinstance(second, Reservation)
    assert first.id != second.id and first.amount_usd == pytest.approx(0.2)
    c = ledger.counts()
    assert (c.total, c.local, c.external) == (3, 1, 2)
    assert ledger.spent_usd() == 0.0  # reserved is not spent
    ledger.record(rec(20.0, local=False, cost=0.15), reservation=first)
    ledger.release(second)
    c = ledger.counts()
    assert (c.total, c.local, c.external) == (2, 1, 1)
    assert ledger.spent_usd() == pytest.approx(0.15)


def test_budget_counts_settled_costs_in_window_plus_open_reservations(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.record(rec(50.0, local=False, cost=5.0))  # before the window: ignored
    ledger.record(rec(150.0, local=False, cost=0.6))
    held = reserve(ledger, 0.3, budget=1.0, since=100.0)
    assert isinstance(held, Reservation)
    refused = reserve(ledger, 0.2, budget=1.0, since=100.0)
    assert isinstance(refused, Refusal) and refused.reason == "budget"
    assert "$1.00" in refused.message
    ledger.release(held)
    assert isinstance(reserve(ledger, 0.2, budget=1.0, since=100.0), Reservation)
    assert isinstance(reserve(ledger, 10.0, budget=None, since=100.0), Reservation)  # None: no cap


def test_share_rule_counts_the_call_being_reserved(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    for i in range(19):
        ledger.record(rec(float(i)))
    ok = reserve(ledger, 0.0, share=0.05)  # (0 + 0 + 1) / (19 + 0 + 1) = 5%
    assert isinstance(ok, Reservation)
    refused = reserve(ledger, 0.0, share=0.05)  # (0 + 1 + 1) / (19 + 1 + 1) > 5%
    assert isinstance(refused, Refusal) and refused.reason == "share"
    assert "5.0%" in refused.message


def test_failed_and_blocked_calls_do_not_count_in_the_share(make_ledger: MakeLedger) -> None:
    """A call no model answered is neither local nor external: counting failures as local would let
    the external share grow past the threshold while the local models were down."""
    ledger = make_ledger()
    for i in range(19):
        ledger.record(rec(float(i), outcome="error", error="ollama: connection refused"))
    ledger.record(rec(19.0, outcome="blocked"))
    ledger.record(rec(20.0))
    counts = ledger.counts()
    assert (counts.total, counts.local, counts.external) == (1, 1, 0)
    refused = reserve(ledger, 0.0, share=0.05)  # 1 / (1 + 1) external would be 50%, not 5%
    assert isinstance(refused, Refusal) and refused.reason == "share"


def test_negative_or_nan_amount_is_rejected(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    for bad in (-0.01, math.nan):
        with pytest.raises(ValueError, match="amount_usd"):
            reserve(ledger, bad, budget=1.0)


def test_expired_reservations_stop_holding_budget(make_ledger: MakeLedger) -> None:
    expiring = make_ledger(reservation_ttl_s=0.0)  # expires at once, as if its process crashed
    assert isinstance(reserve(expiring, 0.9, budget=1.0), Reservation)
    assert isinstance(reserve(expiring, 0.9, budget=1.0), Reservation)
    assert expiring.counts().external <= 1
    expiring.close()

    holding = make_ledger()  # same store, default expiry: the claim holds
    assert isinstance(reserve(holding, 0.9, budget=1.0), Reservation)
    assert isinstance(reserve(holding, 0.9, budget=1.0), Refusal)


# --- races --------------------------------------------------------------------------------------


def _race_threads(ledger: Ledger, n: int, **kw: Any) -> list[Reservation | Refusal]:
    barrier = threading.Barrier(n)
    results: list[Reservation | Refusal] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait(timeout=JOIN_S)
        out = reserve(ledger, **kw)
        with lock:
            results.append(out)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=JOIN_S)
    assert not any(t.is_alive() for t in threads), "a reserving thread hung"
    assert len(results) == n
    return results


def test_32_threads_never_overspend_the_last_dollar(make_ledger: MakeLedger) -> None:
    month = utc_month_start()
    ledger = make_ledger()
    ledger.record(rec(month + 1, local=False, cost=0.30))
    results = _race_threads(ledger, 32, amount=0.10, budget=1.00, since=month)
    won = [r for r in results if isinstance(r, Reservation)]
    assert len(won) == 7
    assert {r.reason for r in results if isinstance(r, Refusal)} == {"budget"}
    for r in won:  # settle at the estimated cost: exactly the budget
        ledger.record(rec(local=False, cost=r.amount_usd), reservation=r)
    assert ledger.spent_usd(since=month) <= 1.00 + 1e-9
    assert isinstance(reserve(ledger, 0.01, budget=1.00, since=month), Refusal)


def _max_reservations(local: int, share: float) -> int:
    """Largest n with n / (local + n) <= share: what the share rule must allow, and no more."""
    n = 0
    while (n + 1) / (local + n + 1) <= share + 1e-12:
        n += 1
    return n


def test_concurrent_reservations_cannot_push_the_share_past_the_limit(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    for i in range(95):
        ledger.record(rec(float(i)))
    results = _race_threads(ledger, 32, amount=0.0, share=0.05)
    won = [r for r in results if isinstance(r, Reservation)]
    assert len(won) == _max_reservations(95, 0.05)
    for r in won:
        ledger.record(rec(local=False), reservation=r)
    c = ledger.counts()
    assert c.external / c.total <= 0.05 + 1e-12
    assert isinstance(reserve(ledger, 0.0, share=0.05), Refusal)


def race_process(url: str, barrier: Any, queue: Any, attempts: int, options: dict[str, Any]) -> None:
    """Child process body (spawn): race for reservations, report how many were won."""
    ledger = open_ledger(url, **options)
    try:
        barrier.wait(timeout=JOIN_S)
        won = 0
        for _ in range(attempts):
            out = ledger.reserve_external(
                0.10, budget_usd=1.00, budget_since=0.0, max_external_share=None, share_since=0.0
            )
            won += isinstance(out, Reservation)
        queue.put(won)
    except BaseException as exc:  # report instead of hanging the parent
        queue.put(repr(exc))
        raise
    finally:
        ledger.close()


def race_processes(url: str, ledger: Ledger, options: dict[str, Any] | None = None) -> None:
    """4 spawned processes x 4 attempts at 0.10 with 0.30 of 1.00 spent: exactly 7 may win."""
    ledger.record(rec(10.0, local=False, cost=0.30))
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=race_process, args=(url, barrier, queue, 4, options or {})) for _ in range(4)]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=JOIN_S) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=JOIN_S)
            if p.is_alive():
                p.kill()
    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == 7
    assert ledger.counts().external == 1 + 7


def test_4_processes_never_overspend_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    ledger = SQLiteLedger(path)
    try:
        race_processes(f"sqlite://{path}", ledger)
    finally:
        ledger.close()


# --- SQLite specifics ---------------------------------------------------------------------------


def test_sqlite_survives_restart_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "ledger.sqlite3"  # parents are created
    first = SQLiteLedger(path)
    first.record(rec(1.0, escalations=["timeout"]))
    held = reserve(first, 0.5, budget=1.0)
    first.close()
    second = SQLiteLedger(path)
    try:
        assert [r.escalations for r in second.records()] == [["timeout"]]
        assert isinstance(held, Reservation)
        assert isinstance(reserve(second, 0.6, budget=1.0), Refusal)  # the reservation survived too
        import sqlite3

        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            indexed = {row[2] for row in raw.execute("PRAGMA index_info(usage_ts)")}
            assert "ts" in indexed
    finally:
        second.close()


def _open_files(prefix: Path) -> int:
    """File descriptors of this process open on ``prefix`` (the database, its -wal and -shm)."""
    import os

    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith(str(prefix))
        except OSError:
            pass
    return n


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_sqlite_close_releases_every_file(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    ledger = SQLiteLedger(path)
    threads = [threading.Thread(target=lambda: ledger.record(rec(1.0))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=JOIN_S)
    ledger.record(rec(2.0))
    assert _open_files(path) > 0
    ledger.close()
    assert _open_files(path) == 0
    with pytest.raises(RuntimeError, match="closed"):
        ledger.counts()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_sqlite_open_files_do_not_grow_with_threads(tmp_path: Path) -> None:
    """Each new thread used to keep its own connection (3 fds) until close(): 200 threads, 600 fds."""
    path = tmp_path / "l.sqlite3"
    ledger = SQLiteLedger(path)
    try:
        ledger.record(rec(0.5))

        def write(i: int) -> None:
            ledger.record(rec(1.0 + i))
            ledger.counts()

        for i in range(200):
            t = threading.Thread(target=write, args=(i,))
            t.start()
            t.join(timeout=JOIN_S)
        # the pool keeps a few idle connections (+ the anchor), each with the db, -wal and -shm
        assert _open_files(path) <= 3 * (POOL_IDLE + 1)
        assert len(ledger.records()) == 201
    finally:
        ledger.close()


def test_sqlite_rejects_memory_path() -> None:
    with pytest.raises(ConfigError, match="memory://"):
        SQLiteLedger(":memory:")


# --- open_ledger --------------------------------------------------------------------------------


def test_open_ledger_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    default = tmp_path / "data" / "ledger.sqlite3"
    monkeypatch.setattr("mem0_routed._ledger._sqlite.default_ledger_path", lambda: default)
    cases: dict[str | None, type | Path] = {
        None: default, "sqlite": default, "memory": MemoryLedger, "memory://": MemoryLedger,
        f"sqlite://{tmp_path}/abs.sqlite3": tmp_path / "abs.sqlite3",
        "sqlite://rel/r.sqlite3": tmp_path / "rel" / "r.sqlite3",
        str(tmp_path / "plain.db"): tmp_path / "plain.db", "plain2.db": tmp_path / "plain2.db",
    }  # fmt: skip
    for url, expected in cases.items():
        ledger = open_ledger(url)
        try:
            if isinstance(expected, Path):
                assert isinstance(ledger, SQLiteLedger), url
                assert ledger.path == expected, url
                assert expected.exists(), url
            else:
                assert isinstance(ledger, expected), url
        finally:
            ledger.close()


def test_open_ledger_rejects_unknown_schemes_without_leaking_passwords() -> None:
    with pytest.raises(ConfigError) as info:
        open_ledger("postgres://admin:hunter2secret@db.example/ledger")
    msg = str(info.value)
    assert "hunter2secret" not in msg
    assert "postgres://admin:***@db.example/ledger" in msg
    assert "memory://" in msg and "redis://" in msg and "sqlite:///" in msg
    assert info.value.key == "ledger"


def test_default_ledger_path_is_in_the_user_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    path = default_ledger_path()
    assert path.name == "ledger.sqlite3"
    assert path.parent.name == "mem0-routed"
    assert str(path).startswith(str(tmp_path / "xdg"))
    assert not path.exists()  # only opening the ledger creates it


# --- records are never lost silently ---------------------------------------------------------------


@pytest.mark.parametrize("field,value", [("tokens_in", -5), ("tokens_out", -1), ("cost_usd", -0.01),
                                         ("cost_usd", math.nan), ("cost_usd", math.inf), ("latency_s", -1.0)])
def test_impossible_records_are_refused(field: str, value: float) -> None:
    """A negative cost would lower the spend the budget is checked against."""
    good = rec(1.0).to_dict()
    with pytest.raises(ValueError, match=field):
        UsageRecord(**{**good, field: value})


def test_sqlite_failed_write_is_held_and_written_next_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    path = tmp_path / "l.sqlite3"
    ledger = SQLiteLedger(path, busy_timeout_s=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock for too long
        with caplog.at_level("ERROR", logger="mem0_routed"), pytest.raises(sqlite3.OperationalError):
            ledger.record(rec(1.0, local=False, cost=0.5))
        assert "1 record(s) held" in caplog.text and ledger.unwritten == 1
        blocker.execute("ROLLBACK")
        ledger.record(rec(2.0))
        assert [r.ts for r in ledger.records()] == [1.0, 2.0] and ledger.unwritten == 0
        assert ledger.spent_usd() == pytest.approx(0.5)
    finally:
        blocker.close()
        ledger.close()


def test_sqlite_close_writes_held_records(tmp_path: Path) -> None:
    """Router.close() closes its ledger and reopens a new one: records held after a failed write were
    left in the closed ledger's backlog and lost."""
    import sqlite3

    path = tmp_path / "l.sqlite3"
    ledger = SQLiteLedger(path, busy_timeout_s=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.OperationalError):
        ledger.record(rec(1.0, local=False, cost=0.5))
    blocker.execute("ROLLBACK")
    blocker.close()
    ledger.close()
    reopened = SQLiteLedger(path)
    try:
        assert [r.ts for r in reopened.records()] == [1.0] and reopened.spent_usd() == pytest.approx(0.5)
    finally:
        reopened.close()


@pytest.mark.parametrize("also_wal", [False, True], ids=["db", "db+wal+shm"])
def test_sqlite_deleted_file_is_recreated_with_its_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, also_wal: bool
) -> None:
    """Deleting the ledger used to send every later record to the unlinked inode, silently: the next
    process started from $0 and the month's budget with it."""
    import os

    path = tmp_path / "l.sqlite3"
    ledger = SQLiteLedger(path)
    try:
        for i in range(3):
            ledger.record(rec(1.0 + i, local=False, cost=0.25))
        held = reserve(ledger, 0.1, budget=10.0)
        assert isinstance(held, Reservation)
        for suffix in ("", "-wal", "-shm") if also_wal else ("",):
            os.remove(f"{path}{suffix}")
        with caplog.at_level("ERROR", logger="mem0_routed"):
            ledger.record(rec(5.0, local=False, cost=0.25))
        assert "was deleted while in use" in caplog.text and str(path) in caplog.text
        ledger.record(rec(6.0))
        fresh = SQLiteLedger(path)  # what the next process sees
        try:
            assert [r.ts for r in fresh.records()] == [1.0, 2.0, 3.0, 5.0, 6.0]
            assert fresh.spent_usd() == pytest.approx(1.0)
            assert isinstance(reserve(fresh, 9.0, budget=10.0), Refusal)  # the reservation came along
        finally:
            fresh.close()
    finally:
        ledger.close()


def test_sqlite_replaced_file_is_merged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A backup restored over the live file: switch to it and add the records it lacks."""
    import os
    import shutil

    path = tmp_path / "l.sqlite3"
    ledger = SQLiteLedger(path)
    try:
        ledger.record(rec(1.0, local=False, cost=0.5))
        backup = tmp_path / "backup.sqlite3"
        with __import__("sqlite3").connect(path) as src, __import__("sqlite3").connect(backup) as dst:
            src.backup(dst)
        ledger.record(rec(2.0, local=False, cost=0.5))
        os.remove(path)
        shutil.copy(backup, path)
        with caplog.at_level("ERROR", logger="mem0_routed"):
            ledger.record(rec(3.0))
        assert "replaced by another file" in caplog.text
        fresh = SQLiteLedger(path)
        try:
            assert [r.ts for r in fresh.records()] == [1.0, 2.0, 3.0]
        finally:
            fresh.close()
    finally:
        ledger.close()


def test_sqlite_replacing_file_with_its_own_rows_still_gets_ours(tmp_path: Path) -> None:
    """The merge deduplicated by row id: the other file's own rows 1 and 2 hid our (different)
    records 1 and 2, and their spend vanished from the budget."""
    import os
    import sqlite3

    path = tmp_path / "l.sqlite3"
    ledger = SQLiteLedger(path)
    try:
        ledger.record(rec(1.0, local=False, cost=0.5))
        ledger.record(rec(2.0, local=False, cost=0.25))
        other_path = tmp_path / "other.sqlite3"
        other = SQLiteLedger(other_path)
        other.record(rec(10.0))
        other.record(rec(11.0))
        other.close()
        os.remove(path)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{path}{suffix}")
        with sqlite3.connect(other_path) as src, sqlite3.connect(path) as dst:
            src.backup(dst)
        ledger.record(rec(3.0))
        fresh = SQLiteLedger(path)
        try:
            assert [r.ts for r in fresh.records()] == [1.0, 2.0, 3.0, 10.0, 11.0]
            assert fresh.spent_usd() == pytest.approx(0.75)
        finally:
            fresh.close()
    finally:
        ledger.close()


def test_sqlite_deleted_file_is_rescued_before_a_new_connection_opens_the_path(tmp_path: Path) -> None:
    """A reader that needs a new connection must not create an empty file next to the old -wal."""
    import os
    import sqlite3

    path = tmp_path / "l.sqlite3"
    ledger = SQLiteLedger(path)
    try:
        ledger.record(rec(1.0, local=False, cost=0.5))
        os.remove(path)  # the -wal and -shm stay
        with ledger._tx():  # holds the pooled connection, so the read below opens a new one
            assert ledger.counts().total == 1
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        fresh = SQLiteLedger(path)
        try:
            assert [r.ts for r in fresh.records()] == [1.0] and fresh.spent_usd() == pytest.approx(0.5)
        finally:
            fresh.close()
    finally:
        ledger.close()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_sqlite_ledger_used_after_fork_rescues_with_its_own_connection(tmp_path: Path) -> None:
    """A forked child never uses the parent's connections, and can still rescue a deleted file."""
    import os

    path = tmp_path / "l.sqlite3"
    ledger = SQLiteLedger(path)
    try:
        ledger.record(rec(1.0, local=False, cost=0.25))
        ledger.record(rec(2.0))
        pid = os.fork()
        if pid == 0:  # the child: exit status tells the parent what happened
            ok = 1
            try:
                ledger.record(rec(3.0))
                os.remove(path)
                ledger.record(rec(4.0))
                ok = 0
            finally:
                os._exit(ok)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        fresh = SQLiteLedger(path)
        try:
            assert [r.ts for r in fresh.records()] == [1.0, 2.0, 3.0, 4.0]
            assert fresh.spent_usd() == pytest.approx(0.25)
        finally:
            fresh.close()
        ledger.record(rec(5.0))  # the parent notices the new file and carries on in it
        assert [r.ts for r in ledger.records()] == [1.0, 2.0, 3.0, 4.0, 5.0]
    finally:
        ledger.close()
