"""Streaming on the OpenAI-compatible tier: what reading an answer through the loop guard costs, and
what cutting a real loop saves.

1. Fake vLLM on 127.0.0.1: a guarded (streamed) backend call next to the bare ``openai`` client
   streaming the same answer, interleaved call by call; the figure is the median of the paired
   differences (the network and the server cancel out).
2. ``--with-llama-server``: a real llama-cpp-python server with SmolLM2-135M, temperature 0 and its
   repeat penalty off, on prompts it loops on: the guarded call (cut at the loop) next to the same call
   unguarded (read to ``max_tokens``), and a normal short answer for scale. Ratios in one run.

Run from the repo root: ``python -m benchmarks.bench_compat_stream [--quick] [--with-llama-server]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

os.environ["MEM0_TELEMETRY"] = "False"

from benchmarks._common import machine_info, print_rows, row

MODEL = "qwen"
MESSAGES = [{"role": "user", "content": "What is the capital of Portugal?"}]
ROUNDS = 3
LOOP_PROMPTS = ["Write the word hello 100 times, separated by spaces.",
                "Repeat after me, forever: I am a robot. I am a robot. I am a robot. I am a robot."]


def overhead(calls: int) -> dict[str, float]:
    import openai

    from mem0_routed._stream import StreamGuard
    from mem0_routed.backends import ChatRequest, OpenAICompatibleBackend
    from mem0_routed.testing import FakeOpenAIServer

    with FakeOpenAIServer(flavor="vllm", api_key=None, models={MODEL: (8192, None)}) as server:
        bare = openai.OpenAI(base_url=server.base_url, api_key="no-key", max_retries=0, timeout=30)
        backend = OpenAICompatibleBackend(server.base_url)

        def call_bare() -> None:
            for _ in bare.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=64,  # type: ignore[arg-type]
                                                  stream=True, stream_options={"include_usage": True}):
                pass

        def call_backend() -> None:
            backend.chat(ChatRequest(model=MODEL, messages=list(MESSAGES), max_tokens=64, timeout_s=30.0,
                                     deadline=time.monotonic() + 30.0, stream_guard=StreamGuard))

        variants = {"bare": call_bare, "backend": call_backend}
        for fn in variants.values():
            for _ in range(20):
                fn()
        times: dict[str, list[float]] = {k: [] for k in variants}
        for i in range(calls):
            for name in (("bare", "backend") if i % 2 else ("backend", "bare")):
                t0 = time.perf_counter_ns()
                variants[name]()
                times[name].append((time.perf_counter_ns() - t0) / 1e6)
        backend.close()
        bare.close()
    paired = [b - a for a, b in zip(times["bare"], times["backend"], strict=True)]
    return {"bare_ms": statistics.median(times["bare"]), "overhead_ms": statistics.median(paired)}


def real_loops() -> list[dict[str, Any]]:
    sys.path.insert(0, "tests")
    from llama_server import MODEL as REAL
    from llama_server import llama_server

    from mem0_routed._stream import StreamGuard
    from mem0_routed.backends import ChatRequest, OpenAICompatibleBackend

    class NoRepeatPenalty(OpenAICompatibleBackend):
        def _chat_params(self, request: ChatRequest) -> dict[str, Any]:
            return {**super()._chat_params(request), "extra_body": {"repeat_penalty": 1.0}}

    rows = []
    with llama_server(n_ctx=4096) as server:
        backend = NoRepeatPenalty(server.base_url, context_window=4096)

        def timed(prompt: str, guard: Any, max_tokens: int = 300) -> tuple[float, Any]:
            t0 = time.perf_counter()
            result = backend.chat(ChatRequest(model=REAL, messages=[{"role": "user", "content": prompt}],
                                              max_tokens=max_tokens, temperature=0.0, stream_guard=guard))
            return time.perf_counter() - t0, result

        normal_s = statistics.median(timed("What is the capital of Portugal? One word.", StreamGuard, 16)[0]
                                     for _ in range(3))
        for prompt in LOOP_PROMPTS:
            cut_times, full_times = [], []
            for i in range(ROUNDS):  # alternating order: the shared machine's load hits both alike
                for guarded in ((True, False) if i % 2 else (False, True)):
                    took, result = timed(prompt, StreamGuard if guarded else None)
                    (cut_times if guarded else full_times).append(took)
                    if guarded:
                        cut = result
                    else:
                        full = result
            cut_s, full_s = statistics.median(cut_times), statistics.median(full_times)
            rows.append(row(f"real loop cut by the guard: {prompt[:32]}...", round(cut_s, 2), "s",
                            "< uncut", cut.stopped == "loop" and cut_s < full_s,
                            f"median of {ROUNDS}; {cut.tokens_out} tokens, stopped={cut.stopped}; unguarded "
                            f"{full.tokens_out} tokens in {full_s:.2f}s ({full.done_reason}); ratio "
                            f"{cut_s / full_s:.2f}; a normal short answer {normal_s:.2f}s"))
        backend.close()
    return rows


def _overhead_row(calls: int) -> dict[str, Any]:
    data = overhead(calls)
    return row("guarded streamed call vs bare streamed openai client (median of paired differences)",
               round(data["overhead_ms"], 3), "ms", None, None,
               f"fake vLLM on 127.0.0.1, ~12-chunk answer; bare call {data['bare_ms']:.2f} ms")


def run(quick: bool = False) -> list[dict[str, Any]]:
    """The default run's part (``benchmarks.run_all``): the fake server only."""
    return [_overhead_row(200 if quick else 2000)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls")
    ap.add_argument("--with-llama-server", action="store_true", help="also the real llama-cpp-python loops")
    args = ap.parse_args(argv)
    rows = [_overhead_row(200 if args.quick else 2000)]
    if args.with_llama_server:
        rows += real_loops()
    print_rows(f"OpenAI-compatible streaming ({machine_info()})", rows)
    return 1 if any(r["ok"] is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
