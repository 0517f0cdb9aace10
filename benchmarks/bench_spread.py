"""Figure 13: load spreading over 4 local hosts when one is 5x slower, latency-aware vs round-robin.

Four fake Ollama hosts from ``mem0_routed.testing`` that behave like model servers: each runs
``SLOTS`` calls at a time (Ollama's ``OLLAMA_NUM_PARALLEL``), a call holds a slot for the host's
service time (``FAST_S``; the slow host ``SLOW_X`` times that) and later calls queue. ``THREADS``
callers (4, then 6) make calls through one router for each policy, with all 4 hosts fast and with
one slow:

* ``latency-aware``: the router's own order (``mem0_routed._spread``: calls in flight x measured latency);
* ``least in flight``: the previous order (breaker, fewest calls in flight, rotation);
* ``round-robin``: each host in turn.

Runs alternate policies and scenarios (same machine noise for all), each with a fresh router and
fresh measurements, so learning the slow host is part of the figure. Reported: p50/p95 latency of a
call, the slow host's share of calls, and the ratio p95 (one slow) / p95 (all fast) per policy.
Target (issue 13): the router's ratio <= 1.2. With more callers than the fast hosts' slots, calls
must queue or go to the slow host, and no order keeps that ratio: the figure is for a load the
fast hosts can carry (4 callers: room to spare; 6: their 6 slots exactly).

Run from the repo root: ``python -m benchmarks.bench_spread [--quick] [--json PATH]``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any

from benchmarks._common import bench_main, median, p95, row

HOSTS = 4
SLOTS = 2
FAST_S = 0.04
SLOW_X = 5
#: Callers at once: 4 leaves the 3 fast hosts' 6 slots some room; 6 fills them exactly.
THREADS = (4, 6)
CALLS_PER_THREAD = 25
TARGET_RATIO = 1.2
POLICIES = ("latency-aware", "least in flight", "round-robin")
_ENV_TO_CLEAR = ("OLLAMA_URL", "OPENAI_API_KEY", "MEM0_LLM_MODEL", "LLM_LOCAL_THRESHOLD")


def _server(service_s: float) -> Any:
    """A fake Ollama whose chat calls take ``service_s`` each, ``SLOTS`` at a time (then they queue)."""
    from mem0_routed.testing import FakeOllamaServer

    class Host(FakeOllamaServer):
        def _serve(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
            if path == "/api/chat":
                with self.slots:
                    time.sleep(self.service_s)
            return super()._serve(method, path, body, headers)

    host = Host()
    host.slots, host.service_s = threading.Semaphore(SLOTS), service_s
    return host


def _use_policy(router: Any, policy: str) -> None:
    """Give ``router`` the order of ``policy`` (the router's own order for "latency-aware")."""
    from mem0_routed._spread import LOADS

    if policy == "latency-aware":
        return
    turns = itertools.count()
    rt = router.runtime
    own = rt.backends_for

    def order(cand: Any) -> list[Any]:
        found: list[Any] = list(own(cand))
        found.sort(key=lambda b: b.name)
        turn = next(turns)
        n = len(found)
        if policy == "round-robin":
            return [found[(turn + i) % n] for i in range(n)]
        return sorted(found, key=lambda b: (rt.breaker(b).state != "closed", LOADS.in_flight(b.name),
                                            (found.index(b) - turn) % n))

    rt.backends_for = order


def _run(urls: list[str], slow_url: str | None, policy: str, threads: int,
         calls: int) -> tuple[list[float], float]:
    """Latencies (s) of ``threads`` x ``calls`` calls, and the share that went to ``slow_url``."""
    from mem0_routed import MemoryLedger, Router, RouterConfig
    from mem0_routed.testing import reset

    reset()
    cfg = RouterConfig.from_mapping({"ollama_base_url": urls, "ledger": "memory", "local_backend": "ollama",
                                     "max_retries": 0})
    router = Router(cfg, ledger=MemoryLedger())
    _use_policy(router, policy)
    router.chat([{"role": "user", "content": "warm up"}])  # model lookups, clients: not part of the figure
    latencies: list[float] = []
    hosts: list[str | None] = []
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        start.wait()
        try:
            for i in range(calls):
                t0 = time.perf_counter()
                out = router.chat([{"role": "user", "content": f"question {k}.{i}: what is {k} + {i}?"}])
                took = time.perf_counter() - t0
                with lock:
                    latencies.append(took)
                    hosts.append(out.host)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    for t in pool:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} worker(s) failed, first: {errors[0]!r}")
    reset()
    share = sum(1 for h in hosts if slow_url is not None and h == slow_url) / len(hosts)
    return latencies, share


def measure(quick: bool = False) -> dict[str, Any]:
    """The figures: per policy and scenario, p50/p95 (ms) and the slow host's share."""
    for name in _ENV_TO_CLEAR:
        os.environ.pop(name, None)
    rounds, calls = (1, 15) if quick else (3, CALLS_PER_THREAD)
    levels = THREADS[:1] if quick else THREADS
    fast = [_server(FAST_S) for _ in range(HOSTS)]
    slow = _server(FAST_S * SLOW_X)
    for s in (*fast, slow):
        s.start()
    lat: dict[tuple[int, str, str], list[float]] = {}
    shares: dict[tuple[int, str], list[float]] = {}
    try:
        all_fast = [s.url for s in fast]
        one_slow = [s.url for s in fast[:-1]] + [slow.url]
        for r in range(rounds):
            order = POLICIES if r % 2 == 0 else POLICIES[::-1]
            for threads, policy in itertools.product(levels, order):
                for scenario, urls in (("all fast", all_fast), ("one slow", one_slow)):
                    xs, share = _run(urls, slow.url if scenario == "one slow" else None, policy, threads, calls)
                    lat.setdefault((threads, policy, scenario), []).extend(xs)
                    if scenario == "one slow":
                        shares.setdefault((threads, policy), []).append(share)
    finally:
        for s in (*fast, slow):
            s.stop()
    out: dict[str, Any] = {"hosts": HOSTS, "slots": SLOTS, "fast_ms": FAST_S * 1000, "slow_x": SLOW_X,
                           "calls_per_thread": calls, "rounds": rounds, "runs": []}
    for threads, policy in itertools.product(levels, POLICIES):
        f, s = lat[(threads, policy, "all fast")], lat[(threads, policy, "one slow")]
        sh = shares[(threads, policy)]
        out["runs"].append({
            "threads": threads, "policy": policy,
            "p50_all_fast_ms": median(f) * 1000, "p95_all_fast_ms": p95(f) * 1000,
            "p50_one_slow_ms": median(s) * 1000, "p95_one_slow_ms": p95(s) * 1000,
            "ratio_p95": p95(s) / p95(f), "slow_share": sum(sh) / len(sh),
        })
    return out


def rows_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for p in data["runs"]:
        policy, threads = p["policy"], p["threads"]
        setup = (f"{data['hosts']} hosts x {data['slots']} slots, {data['fast_ms']:.0f} ms per call, slow host "
                 f"{data['slow_x']}x; {threads * data['calls_per_thread']} calls x {data['rounds']} rounds")
        ours = policy == "latency-aware"
        rows.append(row(f"p95 one slow / all fast, {threads} threads: {policy}", round(p["ratio_p95"], 2), "x",
                        f"<= {TARGET_RATIO}" if ours else None, p["ratio_p95"] <= TARGET_RATIO if ours else None,
                        f"p95 {p['p95_all_fast_ms']:.0f} -> {p['p95_one_slow_ms']:.0f} ms, p50 "
                        f"{p['p50_all_fast_ms']:.0f} -> {p['p50_one_slow_ms']:.0f} ms; {setup}"))
        rows.append(row(f"slow host's share of calls, {threads} threads: {policy}", round(100 * p["slow_share"], 1), "%", None, None,
                        "round-robin would give it 25 %"))
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    return rows_of(measure(quick))


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, doc=__doc__, title="Load spreading", quick_help="one round of fewer calls", measure=measure, rows_of=rows_of)


if __name__ == "__main__":
    raise SystemExit(main())
