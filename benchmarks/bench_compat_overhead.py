"""Figure 14: what the OpenAI-compatible backend adds per call, next to the bare ``openai`` client.

Both send the same chat request to the same fake vLLM-like server (``FakeOpenAIServer(flavor="vllm")``)
on 127.0.0.1. The variants are interleaved call by call in rotating order (the machine is shared and
noisy: drift hits all alike), and the figure is the median of the paired differences (backend call -
the bare call next to it). The backend's cost is its request
shaping, error translation, deadline transport and result/usage reading; the network and the server
are the same for both, so they cancel out. The whole router path (classify, policy, ledger, breaker,
spread) through this backend is shown too, for scale.

Run from the repo root: ``python -m benchmarks.bench_compat_overhead [--quick] [--json PATH]``.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

os.environ["MEM0_TELEMETRY"] = "False"

from benchmarks._common import bench_main, row

TARGET_MS = 0.2
MODEL = "qwen"
MESSAGES = [{"role": "user", "content": "What is the capital of Portugal?"}]


def measure(quick: bool = False) -> dict[str, Any]:
    import openai

    from mem0_routed import Router, RouterConfig
    from mem0_routed.backends import ChatRequest, OpenAICompatibleBackend
    from mem0_routed.testing import FakeOpenAIServer
    from mem0_routed.testing import reset as reset_routers

    calls = 300 if quick else 3000
    with FakeOpenAIServer(flavor="vllm", api_key=None, models={MODEL: (8192, None)}) as server:
        bare = openai.OpenAI(base_url=server.base_url, api_key="no-key", max_retries=0, timeout=30)
        backend = OpenAICompatibleBackend(server.base_url)
        router = Router(RouterConfig.from_mapping({
            "openai_compatible_urls": [server.base_url], "local_backend": "openai_compatible", "llm_model": MODEL,
            "models": {"code": MODEL, "medium": MODEL, "complex": MODEL}, "ledger": "memory",
            "ollama_base_url": "http://127.0.0.1:9"}))

        def call_bare() -> None:
            bare.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=16)  # type: ignore[arg-type]

        def call_backend() -> None:
            backend.chat(ChatRequest(model=MODEL, messages=list(MESSAGES), max_tokens=16, timeout_s=30.0,
                                     deadline=time.monotonic() + 30.0))

        def call_router() -> None:
            router.chat(list(MESSAGES), max_tokens=16)

        variants = {"bare": call_bare, "backend": call_backend, "router": call_router}
        for fn in variants.values():  # warm up: clients, pools, model list, imports
            for _ in range(20):
                fn()
        times: dict[str, list[float]] = {k: [] for k in variants}
        names = list(variants)
        for i in range(calls):  # one call of each, in rotating order: drift hits every variant alike
            for name in names[i % 3:] + names[:i % 3]:
                t0 = time.perf_counter_ns()
                variants[name]()
                times[name].append((time.perf_counter_ns() - t0) / 1e6)
        backend.close()
        bare.close()
        reset_routers()
    paired = {k: [v - b for v, b in zip(times[k], times["bare"], strict=True)] for k in ("backend", "router")}
    return {"calls": calls,
            "bare_ms": statistics.median(times["bare"]),
            "backend_ms": statistics.median(times["backend"]),
            "router_ms": statistics.median(times["router"]),
            "backend_overhead_ms": statistics.median(paired["backend"]),
            "router_overhead_ms": statistics.median(paired["router"])}


def rows_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    setup = (f"fake vLLM on 127.0.0.1; {data['calls']} calls per variant, interleaved, median of paired "
             f"differences; bare call {data['bare_ms']:.2f} ms")
    over = data["backend_overhead_ms"]
    return [
        row("OpenAI-compatible backend overhead per call vs bare openai client (median)", round(over, 3), "ms",
            f"<= {TARGET_MS}", over <= TARGET_MS, setup),
        row("whole router path through it vs bare openai client (median)", round(data["router_overhead_ms"], 3),
            "ms", None, None, "classify, policy, ledger (memory), breaker, spread; for scale"),
    ]


def run(quick: bool = False) -> list[dict[str, Any]]:
    return rows_of(measure(quick))


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, doc=__doc__, title="OpenAI-compatible backend overhead", quick_help="fewer rounds and calls", measure=measure, rows_of=rows_of)


if __name__ == "__main__":
    raise SystemExit(main())
