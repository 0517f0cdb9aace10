"""Figure 7: throughput through one shared ``Router`` from 1, 8 and 32 threads, next to the bare
``ollama.Client``, and a check that no lock is held across a network call.

Both variants send the same prompts (and the same ``num_ctx``, so the fake does the same work) to
one zero-latency ``FakeOllamaServer``. The server runs in this process, so both share its GIL and
absolute calls/s are far below a real deployment's; the router/bare ratio is the figure. Rounds
alternate router and bare at each thread count; medians are reported.

Lock check: the fake answers every chat after 0.2 s ("slow" fault). 8 threads each make one call
through one router: if a lock were held across the call they would queue (~1.6 s); if not, ~0.2 s.

Run from the repo root: ``python -m benchmarks.bench_concurrency [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks._common import machine_info, print_rows, row

THREADS = (1, 8, 32)
SLOW_S = 0.2
SLOW_THREADS = 8
PROMPTS = ["hi there, how are you?", "What's the capital of France?", "Name three colours of the rainbow.",
           "Say hello in Spanish.", "How many legs does a spider have?"]  # fmt: skip
_ENV_TO_CLEAR = ("OLLAMA_URL", "OPENAI_API_KEY", "MEM0_LLM_MODEL", "LLM_LOCAL_THRESHOLD")




def _blast(call: Callable[[int], object], threads: int, total: int) -> float:
    """Calls/s for ``total`` calls split over ``threads`` threads started together."""
    per = max(1, total // threads)
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        start.wait()
        try:
            for i in range(per):
                call(k * per + i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} worker(s) failed, first: {errors[0]!r}")
    return per * threads / elapsed


def run(quick: bool = False) -> list[dict]:
    import ollama

    from mem0_routed import Router, RouterConfig
    from mem0_routed._ledger import MemoryLedger
    from mem0_routed._router import reset_routers
    from mem0_routed.testing import FakeOllamaServer

    for name in _ENV_TO_CLEAR:
        os.environ.pop(name, None)
    rounds, total = (3, 160) if quick else (5, 320)
    reset_routers()
    rows: list[dict] = []
    with FakeOllamaServer() as server:  # listens with a backlog of 128, like a real server
        router = Router(
            RouterConfig.from_mapping(
                {"ollama_base_url": server.url, "ledger": "memory", "local_backend": "ollama"}
            ),
            ledger=MemoryLedger(),
        )
        messages = [[{"role": "user", "content": p}] for p in PROMPTS]
        first = router.chat(messages[0])  # warm: model list, context window, clients
        model, num_ctx = first.model, server.requests_to("/api/chat")[-1]["options"]["num_ctx"]
        bare = ollama.Client(host=server.url)

        def via_router(i: int) -> object:
            return router.chat(messages[i % len(messages)])

        def via_bare(i: int) -> object:
            return bare.chat(model=model, messages=messages[i % len(messages)], options={"num_ctx": num_ctx})

        via_bare(0)
        for threads in THREADS:
            got: dict[str, list[float]] = {"router": [], "bare": []}
            for r in range(rounds):
                order = (("router", via_router), ("bare", via_bare))
                for name, fn in order if r % 2 == 0 else order[::-1]:
                    got[name].append(_blast(fn, threads, total))
            ratios = [a / b for a, b in zip(got["router"], got["bare"])]
            rr, bb = statistics.median(got["router"]), statistics.median(got["bare"])
            rows.append(
                row(
                    f"calls/s router / bare ollama.Client, {threads} thread(s)",
                    round(statistics.median(ratios), 3),
                    "x",
                    None,
                    None,
                    f"router {rr:.0f} calls/s, bare {bb:.0f} calls/s (medians of {rounds} alternating "
                    f"rounds of {total} calls; per-round ratios {[round(x, 2) for x in ratios]})",
                )
            )
        # --- no lock across a network call ---------------------------------------------------------
        server.set_fault("slow", delay_s=SLOW_S, paths=["/api/chat"])
        walls = []
        for _ in range(1 if quick else 3):
            walls.append(_wall_of_parallel(router, messages, SLOW_THREADS))
        server.clear_faults()
        bare.close()
    reset_routers()
    wall = statistics.median(walls)
    serial = SLOW_S * SLOW_THREADS
    limit = 2 * SLOW_S
    rows.append(
        row(
            f"{SLOW_THREADS} parallel calls through one router, server delay {SLOW_S} s",
            round(wall, 3),
            "s",
            f"< {limit:.1f} (serial {serial:.1f})",
            wall < limit,
            f"wall time, median of {len(walls)} ({[round(w, 3) for w in walls]}); serial-equivalent "
            f"{serial:.1f} s; ~{SLOW_S} s means no lock is held across the HTTP call",
        )
    )
    return rows


def _wall_of_parallel(router: Any, messages: list[list[dict[str, str]]], threads: int) -> float:
    start = threading.Barrier(threads + 1)

    def worker(k: int) -> None:
        start.wait()
        router.chat(messages[k % len(messages)])

    pool = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    args = ap.parse_args(argv)
    rows = run(quick=args.quick)
    print_rows(f"Concurrency ({machine_info()})", rows)
    return 1 if any(r["ok"] is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
