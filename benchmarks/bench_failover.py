"""Figure 3: what a dead or hanging local Ollama costs per call once the circuit breaker is open.

* refused: the local host refuses connections; after the breaker opens, a routed call goes straight
  to the external backend. Extra latency = median routed call minus median of a direct
  ``OpenAIBackend.chat`` to the same ``FakeOpenAIServer`` (calls alternate one by one).
* hanging: the local host accepts and never answers. Over 100 paced calls, count the requests the
  hanging server received (each is a read timeout paid) against the cool-down windows elapsed:
  the breaker promises at most one per window. Two shapes: only ``/api/chat`` hangs (a stuck model),
  and every path hangs (a wedged server, where the model-list and ``/api/show`` calls hang too).

Run from the repo root: ``python -m benchmarks.bench_failover [--quick] [--profile]``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections import Counter
from typing import Any

from benchmarks._common import machine_info, print_rows, row

TARGET_EXTRA_MS = 0.2
PROMPT = [{"role": "user", "content": "hello, how are you today?"}]
_ENV_TO_CLEAR = ("OLLAMA_URL", "OPENAI_API_KEY", "MEM0_LLM_MODEL", "LLM_LOCAL_THRESHOLD")




def make_router(ollama_url: str, openai_url: str, key: str, **cfg: Any) -> Any:
    """A router as tests build it: given URLs, in-memory ledger, Ollama as the local tier."""
    from mem0_routed import Router, RouterConfig
    from mem0_routed._ledger import MemoryLedger

    values = {"ollama_base_url": ollama_url, "openai_base_url": openai_url, "openai_api_key": key,
              "ledger": "memory", "local_backend": "ollama", **cfg}  # fmt: skip
    return Router(RouterConfig.from_mapping(values), ledger=MemoryLedger())


def _refused(quick: bool, profile: bool) -> list[dict]:
    from mem0_routed._router import reset_routers
    from mem0_routed.backends._base import ChatRequest
    from mem0_routed.backends._openai import OpenAIBackend
    from mem0_routed.testing import DEFAULT_TEST_KEY, FakeOllamaServer, FakeOpenAIServer

    n = 150 if quick else 500
    reset_routers()
    with FakeOllamaServer() as ollama, FakeOpenAIServer(api_key=DEFAULT_TEST_KEY) as openai:
        router = make_router(ollama.url, openai.base_url, DEFAULT_TEST_KEY, breaker_cooldown_s=3600)
        direct = OpenAIBackend(DEFAULT_TEST_KEY, base_url=openai.base_url)
        request = ChatRequest(model="gpt-4o-mini", messages=PROMPT, timeout_s=60.0)
        ollama.set_fault("refused")
        for _ in range(5):  # open the breaker, warm both clients
            out = router.chat(PROMPT)
            direct.chat(request)
        assert out.backend == "openai", out
        state = router.get_metrics()["breakers"]
        routed_t: list[float] = []
        direct_t: list[float] = []
        clock = time.perf_counter
        for i in range(n):  # alternate one by one so both see the same machine noise
            for which in (0, 1) if i % 2 == 0 else (1, 0):
                t0 = clock()
                if which == 0:
                    router.chat(PROMPT)
                    routed_t.append(clock() - t0)
                else:
                    direct.chat(request)
                    direct_t.append(clock() - t0)
        stub_us = _stub_path_us(router, quick)
        prof_note = ""
        if profile:
            prof_note = _profile(lambda: router.chat(PROMPT), lambda: direct.chat(request))
        direct.close()
        reset_routers()
    r_med, d_med = statistics.median(routed_t) * 1e3, statistics.median(direct_t) * 1e3
    paired = statistics.median(a - b for a, b in zip(routed_t, direct_t)) * 1e3
    extra = r_med - d_med
    return [
        row(
            "failover, local refused, breaker open: extra per call",
            round(extra, 3),
            "ms",
            f"<= {TARGET_EXTRA_MS}",
            extra <= TARGET_EXTRA_MS,
            f"routed {r_med:.3f} ms - direct OpenAIBackend.chat {d_med:.3f} ms (medians of {n} alternating "
            f"calls; median paired diff {paired:.3f} ms); breakers {sorted(set(state.values()))}{prof_note}",
        ),
    ] + [
        row(
            f"failover path without network, ledger of {size} records",
            round(us, 1),
            "µs",
            None,
            None,
            "routed call, local refused + breaker open, external backend stubbed (no HTTP): router's own cost",
        )
        for size, us in stub_us.items()
    ]


def _stub_path_us(router: Any, quick: bool) -> dict[int, float]:
    """The router's own per-call cost on the failover path (external ``chat`` stubbed out), with the
    in-memory ledger holding N records: isolates the router from the HTTP client's noise."""
    from mem0_routed._ledger import MemoryLedger
    from mem0_routed.backends._base import ChatResult

    backend = router.runtime.backends_for(router.route_query("hello").chain[-1])[0]
    answer = ChatResult(text="hi there", model="gpt-4o-mini", backend="openai", tokens_in=5, tokens_out=3)
    real_chat, real_ledger = backend.chat, router.runtime._ledger
    proto = real_ledger.records()[-1]
    backend.chat = lambda request: answer
    out: dict[int, float] = {}
    try:
        for size in (0, 1000, 10000):
            times: list[float] = []
            for k in range(200 if quick else 600):
                if k % 50 == 0:  # keep the ledger near `size` records
                    router.runtime._ledger = MemoryLedger()
                    router.runtime._ledger._records = [proto] * size
                t0 = time.perf_counter()
                router.chat(PROMPT)
                times.append(time.perf_counter() - t0)
            out[size] = statistics.median(times) * 1e6
    finally:
        backend.chat, router.runtime._ledger = real_chat, real_ledger
    return out


def _hanging(quick: bool, paths: list[str] | None, failures: int) -> list[dict]:
    """Paced calls against a hanging local host; timeouts paid versus cool-down windows elapsed."""
    from mem0_routed._router import reset_routers
    from mem0_routed.testing import DEFAULT_TEST_KEY, FakeOllamaServer, FakeOpenAIServer

    read_timeout, cooldown = 0.5, 2.0
    calls = 100
    pace = 0.03 if quick else 0.06  # seconds between calls, so several windows elapse
    reset_routers()
    with FakeOllamaServer(hang_limit_s=30.0) as ollama, FakeOpenAIServer(api_key=DEFAULT_TEST_KEY) as openai:
        router = make_router(
            ollama.url,
            openai.base_url,
            DEFAULT_TEST_KEY,
            read_timeout_s=read_timeout,
            breaker_cooldown_s=cooldown,
            breaker_failures=failures,
        )
        ollama.set_fault("hang", paths=paths)
        backends: Counter[str] = Counter()
        slow, lost = 0, 0.0
        fast_t: list[float] = []
        t_start = time.perf_counter()
        for i in range(calls):
            t0 = time.perf_counter()
            out = router.chat([{"role": "user", "content": f"question {i}: how are you?"}])
            dt = time.perf_counter() - t0
            backends[out.backend] += 1
            if dt >= read_timeout * 0.9:
                slow, lost = slow + 1, lost + dt
            else:
                fast_t.append(dt)
            time.sleep(pace)
        elapsed = time.perf_counter() - t_start
        hung = Counter(p for p, _ in ollama.requests if paths is None or p in paths)
        ollama.release()
        ollama.clear_faults()
        reset_routers()
    paid = sum(hung.values())
    windows = 1 + math.floor(elapsed / cooldown)  # the window the first call opens, then each one elapsed
    allowed = windows if failures == 1 else failures - 1 + windows
    where = "every path" if paths is None else "+".join(paths)
    per_path = ", ".join(f"{p} {c}" for p, c in sorted(hung.items()))
    fast_ms = statistics.median(fast_t) * 1e3 if fast_t else float("nan")
    return [
        row(
            f"hang ({where}), breaker_failures={failures}: timeouts paid",
            paid,
            "timeouts",
            f"<= {allowed} ({windows} windows)",
            paid <= allowed,
            f"{calls} calls in {elapsed:.1f} s, cool-down {cooldown} s, read_timeout_s {read_timeout}; requests "
            f"held: {per_path}; answered by {dict(backends)}; median call without a timeout {fast_ms:.2f} ms",
        ),
        row(
            f"hang ({where}), breaker_failures={failures}: seconds waited",
            round(lost, 2),
            "s",
            None,
            None,
            f"{slow} calls took >= read_timeout_s; {lost / max(1, slow):.2f} s per such call "
            f"(read_timeout_s is {read_timeout})",
        ),
    ]


def _profile(routed: Any, direct: Any) -> str:
    """cProfile 200 routed and 200 direct calls; prints the top routed functions by own time."""
    import cProfile
    import pstats

    for label, fn in (
        ("routed (local refused, breaker open)", routed),
        ("direct OpenAIBackend.chat", direct),
    ):
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(200):
            fn()
        prof.disable()
        print(f"\n--- cProfile, 200 calls, {label} (tottime) ---", file=sys.stderr)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return "; profile printed to stderr"


def run(quick: bool = False, profile: bool = False) -> list[dict]:
    for name in _ENV_TO_CLEAR:
        os.environ.pop(name, None)
    rows = _refused(quick, profile)
    rows += _hanging(quick, ["/api/chat"], failures=1)
    rows += _hanging(quick, None, failures=1)
    if not quick:
        rows += _hanging(quick, ["/api/chat"], failures=3)  # the default breaker_failures
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls, shorter pacing")
    ap.add_argument("--profile", action="store_true", help="cProfile the refused-open path")
    args = ap.parse_args(argv)
    rows = run(quick=args.quick, profile=args.profile)
    print_rows(f"Failover ({machine_info()})", rows)
    return 1 if any(r["ok"] is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
