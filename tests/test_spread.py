"""Load spreading: the per-host tracker on a hand-moved clock (no sleeps), then the router over real
HTTP against fake Ollama hosts, one of them slowed by the fake's "slow" fault."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from mem0_routed import Router, RouterConfig
from mem0_routed._ledger import MemoryLedger
from mem0_routed._router import reset_routers
from mem0_routed._spread import LOADS, LoadTracker
from mem0_routed.testing import FakeOllamaServer

M = "mistral:7b"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pick(tracker: LoadTracker, hosts: list[str], *, turn: int = 0, down: frozenset[str] = frozenset(),
         model: str | None = M) -> list[str]:
    return tracker.order(hosts, name=str, model=model, healthy=lambda h: h not in down, turn=turn)


def call(tracker: LoadTracker, clock: Clock, host: str, seconds: float, *, ok: bool = True,
         model: str | None = M) -> None:
    ticket = tracker.begin(host, model)
    clock.now += seconds
    ticket.ok = ok
    tracker.end(ticket)


def run_sequential(tracker: LoadTracker, clock: Clock, speeds: dict[str, float], n: int) -> Counter[str]:
    """``n`` calls one after another, each to the first host of the order, taking that host's time."""
    got: Counter[str] = Counter()
    hosts = list(speeds)
    for turn in range(n):
        host = pick(tracker, hosts, turn=turn)[0]
        got[host] += 1
        call(tracker, clock, host, speeds[host])
    return got


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tracker(clock: Clock) -> LoadTracker:
    return LoadTracker(clock=clock, stale_s=10.0)


# --- the tracker ------------------------------------------------------------------------------------


def test_unmeasured_hosts_take_turns_and_the_least_busy_goes_first(tracker: LoadTracker) -> None:
    hosts = ["a", "b", "c"]
    assert [pick(tracker, hosts, turn=t)[0] for t in range(3)] == ["a", "b", "c"]
    tracker.begin("a", M)
    tracker.begin("b", M)
    assert pick(tracker, hosts)[0] == "c"


def test_a_slow_host_gets_only_the_exploration_calls(tracker: LoadTracker, clock: Clock) -> None:
    speeds = {"a": 0.2, "b": 0.2, "c": 0.2, "slow": 1.0}
    got = run_sequential(tracker, clock, speeds, 200)  # ~40 s of clock: a re-measure every 10 s at most
    assert got["slow"] <= 1 + 40 / 10 + 1, got
    assert min(got["a"], got["b"], got["c"]) >= 50, got  # the fast hosts share the rest


def test_equal_hosts_with_jitter_share_the_calls(tracker: LoadTracker, clock: Clock) -> None:
    got = run_sequential(tracker, clock, {"a": 0.100, "b": 0.130}, 100)  # 30 % apart: noise, not speed
    assert min(got.values()) >= 40, got


def test_busy_fast_hosts_overflow_to_the_slow_one(tracker: LoadTracker, clock: Clock) -> None:
    for host, seconds in (("fast", 0.1), ("slow", 1.0)):
        call(tracker, clock, host, seconds)
    for _ in range(2):
        tracker.begin("fast", M)
    assert pick(tracker, ["slow", "fast"])[0] == "fast"  # (2+1) x 0.1 s beats 1 s
    for _ in range(10):
        tracker.begin("fast", M)
    assert pick(tracker, ["fast", "slow"])[0] == "slow"  # (12+1) x 0.1 s: waiting costs more


def test_a_call_in_flight_counts_as_at_least_its_age(tracker: LoadTracker, clock: Clock) -> None:
    call(tracker, clock, "a", 0.1)
    tracker.begin("stalled", M)  # never measured, and its call has been out for 1 s ...
    clock.now += 1.0
    tracker.begin("new", M)  # ... while this one's just left: both taken at the best latency, 0.1 s
    for _ in range(3):
        tracker.begin("a", M)
    assert pick(tracker, ["stalled", "a", "new"]) == ["new", "a", "stalled"]  # waits 0.2, 0.4, 2.0 s


def test_only_calls_of_the_same_model_count_by_their_age(tracker: LoadTracker, clock: Clock) -> None:
    call(tracker, clock, "a", 0.1)
    call(tracker, clock, "b", 0.1)
    tracker.begin("a", "embedder")  # a long embedding batch says nothing of a's chat speed
    clock.now += 5.0
    tracker.begin("b", M)
    tracker.begin("b", M)
    assert pick(tracker, ["b", "a"])[0] == "a"  # waits: a (1+1) x 0.1 s, b (2+1) x 0.1 s


def test_an_open_breaker_goes_last_however_fast(tracker: LoadTracker, clock: Clock) -> None:
    call(tracker, clock, "fast", 0.01)
    call(tracker, clock, "slow", 1.0)
    assert pick(tracker, ["fast", "slow"], down=frozenset({"fast"})) == ["slow", "fast"]


def test_a_quick_failure_never_makes_a_host_look_fast(tracker: LoadTracker, clock: Clock) -> None:
    call(tracker, clock, "a", 0.001, ok=False)  # connection refused in 1 ms
    assert tracker.latency("a", M) is None
    call(tracker, clock, "a", 0.5)
    call(tracker, clock, "a", 0.001, ok=False)
    assert tracker.latency("a", M) == pytest.approx(0.5)
    assert tracker.in_flight("a") == 0


def test_a_host_slow_once_is_remeasured_and_gets_its_share_back(tracker: LoadTracker, clock: Clock) -> None:
    call(tracker, clock, "a", 0.1)
    call(tracker, clock, "b", 5.0)  # a model load, a busy moment
    assert run_sequential(tracker, clock, {"a": 0.1, "b": 0.1}, 20)["b"] == 0  # 2 s: still trusted
    clock.now += 10.0  # b's measurement is stale now
    first = pick(tracker, ["a", "b"], turn=0)
    assert first[0] == "b" or pick(tracker, ["a", "b"], turn=1)[0] == "b"
    ticket = tracker.begin("b", M)  # while that re-measure is in flight, b is not flooded
    assert pick(tracker, ["a", "b"], turn=1)[0] == "a" and pick(tracker, ["a", "b"], turn=0)[0] == "a"
    clock.now += 0.1
    ticket.ok = True
    tracker.end(ticket)
    assert tracker.latency("b", M) == pytest.approx(0.1)  # replaced, not blended with the 5 s
    assert run_sequential(tracker, clock, {"a": 0.1, "b": 0.1}, 20)["b"] >= 8


def test_latency_is_kept_per_model(tracker: LoadTracker, clock: Clock) -> None:
    call(tracker, clock, "a", 2.0, model="chat")
    call(tracker, clock, "b", 0.02, model="embed")  # b's fast embeddings say nothing of its chat speed
    call(tracker, clock, "b", 4.0, model="chat")
    assert pick(tracker, ["b", "a"], model="chat")[0] == "a"
    assert tracker.latency("b", "embed") == pytest.approx(0.02)


def test_ending_a_ticket_twice_counts_once(tracker: LoadTracker) -> None:
    ticket = tracker.begin("a", M)
    tracker.begin("a", M)
    tracker.end(ticket)
    tracker.end(ticket)
    assert tracker.in_flight("a") == 1


def test_threads_leave_no_call_in_flight(tracker: LoadTracker) -> None:
    def work() -> None:
        for _ in range(500):
            ticket = tracker.begin("a", M)
            pick(tracker, ["a", "b"])
            ticket.ok = True
            tracker.end(ticket)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tracker.in_flight("a") == 0


def test_bad_settings_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="alpha"):
        LoadTracker(alpha=0)
    with pytest.raises(ValueError, match="tolerance"):
        LoadTracker(tolerance=0.5)


# --- through the router, real HTTP ------------------------------------------------------------------


@pytest.fixture
def fresh() -> object:
    reset_routers()
    yield None
    reset_routers()


def router_for(urls: list[str]) -> Router:
    cfg = RouterConfig.from_mapping({"ollama_base_url": urls, "ledger": "memory", "local_backend": "ollama"})
    return Router(cfg, ledger=MemoryLedger())


def test_the_router_avoids_a_slow_host_and_a_second_router_knows_it(fresh: object) -> None:
    with FakeOllamaServer() as a, FakeOllamaServer() as b, FakeOllamaServer() as slow:
        slow.set_fault("slow", delay_s=0.3)  # ~100x the fakes' own few ms
        urls = [a.url, b.url, slow.url]
        first = router_for(urls)
        for i in range(3):  # unmeasured: the three take turns, so the slow one is measured once
            first.chat([{"role": "user", "content": f"warm {i}"}])
        hosts = Counter(first.chat([{"role": "user", "content": f"hi {i}"}]).host for i in range(12))
        assert hosts[slow.url] == 0 and hosts[a.url] >= 3 and hosts[b.url] >= 3, hosts
        second = router_for(urls)  # mem0's embedder or reranker router: the same hosts, the same view
        assert second.chat([{"role": "user", "content": "and you?"}]).host != slow.url
        assert all(LOADS.in_flight(b.name) == 0 for b in first._backends_of("ollama"))


def test_embeddings_avoid_a_slow_host(fresh: object) -> None:
    with FakeOllamaServer() as a, FakeOllamaServer() as slow:
        slow.set_fault("slow", delay_s=0.3, paths=["/api/embed"])
        router = router_for([a.url, slow.url])
        for i in range(8):
            router.embed([f"text {i}"])
        assert len(slow.requests_to("/api/embed")) <= 1
        assert len(a.requests_to("/api/embed")) >= 7
