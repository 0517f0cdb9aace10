"""RedisLedger against a real redis-server: the whole ``Ledger`` contract from test_ledger.py
(collected again here with ``make_ledger`` overridden), plus races across threads and processes.

No server found -> these tests FAIL with instructions, unless MEM0_ROUTED_SKIP_REDIS=1.
"""

from __future__ import annotations

import logging
import shutil
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mem0_routed import Ledger
from mem0_routed._records import Refusal, Reservation

try:
    from tests import test_ledger as contract
    from tests.redis_server import redis_or_fail, redis_process
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    import test_ledger as contract  # type: ignore[no-redef,import-not-found]
    from redis_server import redis_or_fail, redis_process  # type: ignore[no-redef,import-not-found]

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
    from mem0_routed._ledger._redis import RedisLedger

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
    from mem0_routed import open_ledger
    from mem0_routed._ledger._redis import RedisLedger

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
    from mem0_routed._ledger._redis import RedisLedger

    ledger = RedisLedger("redis://user:s3cr3t-pw@127.0.0.1:1/0")  # no connection is made yet
    try:
        for shown in (repr(ledger), ledger.url, str(ledger.__dict__.get("url"))):
            assert "s3cr3t-pw" not in shown
        assert ledger.url == "redis://user:***@127.0.0.1:1/0"
    finally:
        ledger.close()


def test_missing_redis_package_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from mem0_routed import open_ledger

    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"pip install 'mem0-routed\[redis\]'"):
        open_ledger("redis://127.0.0.1:1/0")


def test_prefix_with_braces_is_refused() -> None:
    from mem0_routed._ledger._redis import RedisLedger

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


# --- a Redis restarted empty or flushed ---------------------------------------------------------
# FLUSHDB wipes every prefix, so these run on a redis-server of their own (never REDIS_URL's).


@pytest.fixture(scope="module")
def own_redis_url() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        with redis_or_fail():  # skips (MEM0_ROUTED_SKIP_REDIS=1) or fails with instructions
            pass
    with redis_process() as (url, _):
        yield url


def flush(url: str) -> None:
    """What a restart without persistence leaves: no keys and no cached Lua scripts."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        client.script_flush()
    finally:
        client.close()


def reserve(ledger: Ledger, amount: float = 0.1, budget: float | None = 1.0) -> Reservation | Refusal:
    return ledger.reserve_external(amount, budget_usd=budget, budget_since=0.0, max_external_share=None,
                                   share_since=0.0)  # fmt: skip


@pytest.mark.redis
def test_flush_mid_run_refuses_external_until_acknowledged(
    own_redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before the epoch, a flush reset the month's spend to $0: the $0.9 spent below was forgotten and
    external calls went on as if nothing had been spent."""
    from mem0_routed._ledger._redis import RedisLedger

    ledger = RedisLedger(own_redis_url, prefix="flush:")
    try:
        first = reserve(ledger, 0.9)
        assert isinstance(first, Reservation)
        ledger.record(contract.rec(1.0, local=False, cost=0.9), reservation=first)
        flush(own_redis_url)
        with caplog.at_level(logging.ERROR, logger="mem0_routed"):
            refused = [reserve(ledger) for _ in range(3)]
        for got in refused:
            assert isinstance(got, Refusal) and got.reason == "budget"
            assert "was reset" in got.message and "acknowledge_reset()" in got.message
        assert sum("was reset" in r.getMessage() for r in caplog.records) == 1  # logged once
        ledger.record(contract.rec(2.0))  # records (local calls) are still written
        ledger.record(contract.rec(3.0, local=False, cost=0.05))
        assert [r.ts for r in ledger.records()] == [2.0, 3.0]
        assert isinstance(reserve(ledger, budget=None), Reservation)  # no budget set: nothing to protect

        ledger.acknowledge_reset()
        again = reserve(ledger, 0.8)  # the budget now counts from what Redis holds ($0.05 + $0.1 open)
        assert isinstance(again, Reservation)
        assert isinstance(reserve(ledger, 0.9), Refusal)  # and is still a cap
    finally:
        ledger.clear()
        ledger.close()


@pytest.mark.redis
def test_a_new_ledger_on_an_empty_redis_works_and_says_it_starts_there(
    own_redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A process that starts after the flush cannot know what was lost: it starts a new epoch (with a
    WARNING) and works as before, while a process that saw the old epoch keeps refusing."""
    from mem0_routed._ledger._redis import RedisLedger

    old = RedisLedger(own_redis_url, prefix="fresh:")
    try:
        assert isinstance(reserve(old), Reservation)
        flush(own_redis_url)
        new = RedisLedger(own_redis_url, prefix="fresh:")
        with caplog.at_level(logging.WARNING, logger="mem0_routed"):
            got = reserve(new, 0.5)
        assert isinstance(got, Reservation)
        assert "had no epoch key: a new ledger starts here" in caplog.text
        new.record(contract.rec(1.0, local=False, cost=0.5), reservation=got)
        assert isinstance(reserve(new, 0.6), Refusal) and isinstance(reserve(new, 0.5), Reservation)
        refused = reserve(old)  # the epoch it remembers was replaced by the new process's
        assert isinstance(refused, Refusal) and "replaced" in refused.message
        other = RedisLedger(own_redis_url, prefix="fresh:")  # a third process adopts the new epoch quietly
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mem0_routed"):
            assert isinstance(reserve(other, 0.0), Reservation)
        assert "epoch" not in caplog.text
        other.close()
        new.close()
    finally:
        old.clear()
        old.close()


@pytest.mark.redis
def test_records_from_before_epochs_keep_counting_without_a_warning(
    own_redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A ledger a version without epochs wrote (records, no epoch key) is an upgrade, not a reset:
    its spend still counts and no "new ledger" warning is logged."""
    from mem0_routed._ledger._redis import RedisLedger

    ledger = RedisLedger(own_redis_url, prefix="upgrade:")
    try:
        ledger.record(contract.rec(1.0, local=False, cost=0.9))  # record() never writes the epoch
        with caplog.at_level(logging.WARNING, logger="mem0_routed"):
            over = reserve(ledger, 0.2)
        assert isinstance(over, Refusal) and "would be exceeded" in over.message
        assert "had no epoch key" not in caplog.text
        assert isinstance(reserve(ledger, 0.1), Reservation)
    finally:
        ledger.clear()
        ledger.close()


@pytest.mark.redis
def test_flushed_redis_sends_nothing_out_but_local_calls_go_on(
    own_redis_url: str, ollama_server: Any, openai_server: Any, openai_key: str
) -> None:
    """Through the router: after FLUSHDB a call that would go external is answered locally (nothing
    reaches OpenAI), every call is recorded, and acknowledging lets external calls out again."""
    from mem0_routed import Router
    from mem0_routed.testing import reset

    reset()
    router = Router({
        "ollama_base_url": ollama_server.url, "openai_base_url": openai_server.base_url,
        "openai_api_key": openai_key, "ledger": own_redis_url, "monthly_budget_usd": 5.0,
        "local_threshold": 0, "local_backend": "ollama", "max_retries": 0,
    })  # fmt: skip
    hard = "prove step by step that there are infinitely many primes, then analyse the proof"
    try:
        assert router.query(hard)["is_local"] is False
        sent = len(openai_server.requests_to("/v1/chat/completions"))
        flush(own_redis_url)
        outs = [router.query(text) for text in (hard, "what's the capital of France?")]
        assert all(o["is_local"] for o in outs)
        assert len(openai_server.requests_to("/v1/chat/completions")) == sent  # nothing went out
        assert len(router.ledger.records()) == 2  # both calls recorded in the flushed Redis
        router.ledger.acknowledge_reset()  # type: ignore[attr-defined]
        assert router.query(hard)["is_local"] is False
    finally:
        router.ledger.clear()  # type: ignore[attr-defined]
        router.ledger.close()
        reset()
