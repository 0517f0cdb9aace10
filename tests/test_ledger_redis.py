"""RedisLedger against a real redis-server: the whole ``Ledger`` contract from test_ledger.py
(collected again here with ``make_ledger`` overridden), plus races across threads and processes.

No server found -> these tests FAIL with instructions, unless MEM0_ROUTED_SKIP_REDIS=1.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mem0_routed._usage import Ledger, Reservation

try:
    from tests import test_ledger as contract
    from tests.redis_server import redis_or_fail
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import test_ledger as contract  # type: ignore[no-redef]
    from redis_server import redis_or_fail  # type: ignore[no-redef]

# The contract tests, collected again in this module so they use the Redis ``make_ledger`` below.
from_contract = [
    "test_implements_protocol_and_round_trips_every_field",
    "test_records_are_time_ordered_filtered_and_limited_to_newest",
    "test_counts_exclude_embeddings_and_respect_since",
    "test_open_reservations_count_as_external_until_settled_or_released",
    "test_budget_counts_settled_costs_in_window_plus_open_reservations",
    "test_share_rule_counts_the_call_being_reserved",
    "test_failed_and_blocked_calls_do_not_count_in_the_share",
    "test_negative_or_nan_amount_is_rejected",
    "test_expired_reservations_stop_holding_budget",
    "test_32_threads_never_overspend_the_last_dollar",
    "test_concurrent_reservations_cannot_push_the_share_past_the_limit",
]
for _name in from_contract:
    globals()[_name] = pytest.mark.redis(getattr(contract, _name))


@pytest.fixture(scope="module")
def redis_server_url() -> Iterator[str]:
    with redis_or_fail() as url:
        yield url


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def make_ledger(redis_server_url: str, prefix: str) -> Iterator[contract.MakeLedger]:
    from mem0_routed._ledger_redis import RedisLedger

    opened: list[RedisLedger] = []

    def make(**options: Any) -> Ledger:
        ledger = RedisLedger(redis_server_url, prefix=prefix, **options)
        opened.append(ledger)
        return ledger

    yield make
    if opened:
        cleanup = RedisLedger(redis_server_url, prefix=prefix)
        cleanup.clear()
        cleanup.close()
    for ledger in opened:
        ledger.close()


@pytest.mark.redis
def test_4_processes_never_overspend_redis(redis_server_url: str, make_ledger: contract.MakeLedger,
                                           prefix: str) -> None:  # fmt: skip
    contract.race_processes(redis_server_url, make_ledger(), {"prefix": prefix})


@pytest.mark.redis
def test_open_ledger_gives_redis_and_prefixes_isolate(redis_server_url: str, prefix: str) -> None:
    from mem0_routed._ledger import open_ledger
    from mem0_routed._ledger_redis import RedisLedger

    a = open_ledger(redis_server_url, prefix=prefix)
    b = open_ledger(redis_server_url, prefix=prefix + "other:")
    try:
        assert isinstance(a, RedisLedger)
        a.record(contract.rec(1.0, local=False, cost=0.5))
        assert b.records() == [] and b.spent_usd() == 0.0
        assert a.spent_usd() == pytest.approx(0.5)
        assert isinstance(a.reserve_external(0.1, budget_usd=1.0, budget_since=0.0, max_external_share=None,
                                             share_since=0.0), Reservation)  # fmt: skip
    finally:
        for led in (a, b):
            led.clear()  # type: ignore[attr-defined]
            led.close()


# --- no server needed ---------------------------------------------------------------------------


def test_password_never_shown() -> None:
    from mem0_routed._ledger_redis import RedisLedger

    ledger = RedisLedger("redis://user:s3cr3t-pw@127.0.0.1:1/0")  # no connection is made yet
    try:
        for shown in (repr(ledger), ledger.url, str(ledger.__dict__.get("url"))):
            assert "s3cr3t-pw" not in shown
        assert ledger.url == "redis://user:***@127.0.0.1:1/0"
    finally:
        ledger.close()


def test_missing_redis_package_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from mem0_routed._ledger import open_ledger

    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"pip install 'mem0-routed\[redis\]'"):
        open_ledger("redis://127.0.0.1:1/0")


def test_prefix_with_braces_is_refused() -> None:
    from mem0_routed._ledger_redis import RedisLedger

    with pytest.raises(ValueError, match="braces"):
        RedisLedger("redis://127.0.0.1:1/0", prefix="{bad}")


@pytest.mark.redis
def test_a_write_replayed_after_a_lost_reply_counts_once(make_ledger: contract.MakeLedger) -> None:
    """A held record is written again after a timeout, but the first write may have run in Redis
    (its reply was lost): the write id keeps it from being counted twice."""
    ledger = make_ledger()
    record = contract.rec(1.0, local=False, cost=0.5)
    ledger._write(record, None, "write-1")  # type: ignore[attr-defined]
    ledger._write(record, None, "write-1")  # type: ignore[attr-defined]
    ledger.record(contract.rec(2.0))
    assert [r.ts for r in ledger.records()] == [1.0, 2.0]
    assert ledger.spent_usd() == pytest.approx(0.5) and ledger.counts().total == 2
