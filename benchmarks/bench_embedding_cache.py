"""Figure 6: the router's embedding cache: what a hit costs, and how many Ollama calls it saves.

* hit latency: ``Router.embed([text])`` for a cached text, median µs over batches (``timeit_us``);
  a miss (one ``/api/embed`` round trip to the zero-latency fake) is timed beside it for scale.
* calls saved: a mem0 ``Memory`` with the routed embedder runs 5 adds, then 5 distinct searches
  asked 3 times each (an agent that looks memory up every turn repeats its queries); the fake
  counts ``/api/embed`` requests with the cache on (default size) and off (``embedding_cache_size=0``).

Run from the repo root: ``python -m benchmarks.bench_embedding_cache [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

os.environ["MEM0_TELEMETRY"] = "False"

from benchmarks._common import machine_info, median, p95, print_rows, row, timeit_us
from benchmarks.bench_mem0_overhead import (
    _ENV_TO_CLEAR,
    CONVERSATIONS,
    EMBED_MODEL,
    QUERIES,
    ensure_registered,
    fresh_memory,
)

SEARCH_REPEATS = 3




def _latency_rows(url: str, quick: bool) -> list[dict]:
    from mem0_routed import Router, RouterConfig
    from mem0_routed._ledger import MemoryLedger
    from mem0_routed._router import reset_routers

    reset_routers()
    router = Router(RouterConfig.from_mapping({"ollama_base_url": url, "ledger": "memory", "local_backend": "ollama"}),
                    ledger=MemoryLedger())  # fmt: skip
    text = "Where does Priya live and what does she do for work?"
    router.embed([text], model=EMBED_MODEL)
    hit = timeit_us(lambda: router.embed([text], model=EMBED_MODEL), 2000 if quick else 10000, batch=20)
    counter = iter(range(10**9))
    miss = timeit_us(lambda: router.embed([f"{text} #{next(counter)}"], model=EMBED_MODEL),
                     100 if quick else 300, batch=1, warmup=5)  # fmt: skip
    reset_routers()
    return [
        row(
            "embedding cache hit latency",
            round(median(hit), 2),
            "µs",
            None,
            None,
            f"Router.embed of 1 cached text; p95 {p95(hit):.2f} µs over {len(hit)} batches of 20",
        ),
        row(
            "embedding miss latency (for scale)",
            round(median(miss), 1),
            "µs",
            None,
            None,
            f"one /api/embed round trip to the zero-latency fake; p95 {p95(miss):.1f} µs",
        ),
    ]


def _count_embeds(url: str, server: Any, tag: str, **embedder: Any) -> tuple[int, int]:
    """(/api/embed requests, texts embedded) for the fixed Memory workload."""
    with fresh_memory("routed", url, tag, **embedder) as memory:
        server.reset()
        for conv in CONVERSATIONS:
            memory.add(conv, user_id="u")
        for _ in range(SEARCH_REPEATS):
            for q in QUERIES:
                memory.search(q, filters={"user_id": "u"}, top_k=3)
        bodies = server.requests_to("/api/embed")
    texts = sum(1 if isinstance(b.get("input"), str) else len(b.get("input") or []) for b in bodies)
    return len(bodies), texts


def run(quick: bool = False) -> list[dict]:
    from mem0_routed.testing import FakeOllamaServer

    for name in _ENV_TO_CLEAR:
        os.environ.pop(name, None)
    ensure_registered()
    with FakeOllamaServer() as server:
        rows = _latency_rows(server.url, quick)
        on = [_count_embeds(server.url, server, f"cache_on_{i}") for i in range(1 if quick else 2)]
        off = [_count_embeds(server.url, server, f"cache_off_{i}", embedding_cache_size=0)
               for i in range(1 if quick else 2)]  # fmt: skip
    calls_on = statistics.median(c for c, _ in on)
    calls_off = statistics.median(c for c, _ in off)
    saved = 1 - calls_on / calls_off if calls_off else 0.0
    workload = f"{len(CONVERSATIONS)} adds + {len(QUERIES)} queries x {SEARCH_REPEATS}"
    rows += [
        row(
            "Ollama /api/embed calls saved by the cache",
            round(100 * saved, 1),
            "%",
            None,
            None,
            f"{calls_on:.0f} calls with the cache vs {calls_off:.0f} with embedding_cache_size=0 "
            f"({workload}; texts embedded {on[0][1]} vs {off[0][1]})",
        ),
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer timed calls, one workload each")
    args = ap.parse_args(argv)
    rows = run(quick=args.quick)
    print_rows(f"Embedding cache ({machine_info()})", rows)
    return 1 if any(r["ok"] is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
