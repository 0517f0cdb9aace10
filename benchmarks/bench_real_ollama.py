"""mem0 ``Memory.add`` through provider "routed" on a real Ollama: facts stored, failed adds, first
add on a cold model, steady add, the cost of a degenerate (looping) answer vs a normal one.

Run: ``python -m benchmarks.bench_real_ollama [--url URL] [--model smollm2:135m] [--embedder all-minilm]
[--json PATH]`` (``bash scripts/real_ollama.sh setup && bash scripts/real_ollama.sh serve PORT`` gives a
server with ``smollm2:135m`` and ``all-minilm``).

Embedders: ``all-minilm`` (the default: a separate 384-d embedding model on the same Ollama, as a user
would run it); ``smollm2:135m`` (the chat model embeds too: every embed call evicts the chat's cached
prompt prefix in Ollama 0.5.4's runner, measured prefill 1.4 s cached vs 16 s after an embed call);
``embedded`` (all-MiniLM in-process). ``--dims`` defaults to the embedder's width.

Every Ollama call is traced (tokens and the server's own prefill/generation/load times), so each add's
time splits into chat, embed and the rest (mem0, qdrant, the router): see ``per_add`` in the JSON.

Measured (2 cores shared with other jobs, load 2-3; smollm2:135m, compact prompt, num_ctx 4096): with
all-minilm, steady add 2.3-2.5 s, of which the extraction call is >95 %: prefill of the ~110-250 tokens
after the cached prefix (system prompt, worked examples and the session's earlier "Last k Messages",
~420-540 tokens, reused by Ollama's cache) ~1-1.5 s, generation of 40-120 answer tokens ~0.7-3.5 s; the
two embed calls ~0.05 s; mem0 + qdrant <0.1 s. With smollm2:135m also embedding, steady add 6.6 s (the
cache is lost at every embed). At load 5-7 the same run gives 5-15 s (prefill and generation ~3x slower).

The workload is the 5 conversations / 13 key facts of ``bench_compact_extraction``, added in order
for one user (so later adds also carry existing memories). The model is unloaded first (keep_alive
0), so the first add pays the load. A second phase unloads again, runs ``router.warmup()`` and
times the first add after it. Degenerate answer: SmolLM2 loops on a "continue the list" prompt
without a repeat penalty; the guard's stop time is compared with a normal extraction call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from typing import Any

os.environ.setdefault("MEM0_TELEMETRY", "False")

from benchmarks._common import machine_info
from benchmarks.bench_compact_extraction import CONVERSATIONS

LOOP_PROMPT = "Continue the list: red, blue, red, blue, red, blue, red, blue, red, blue, red, blue,"


class Trace:
    """Wraps ``OllamaBackend.chat``/``embed`` to keep each call's server timings (a benchmark probe)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def install(self) -> None:
        from mem0_routed.backends._ollama import OllamaBackend

        chat, embed, calls = OllamaBackend.chat, OllamaBackend.embed, self.calls

        def traced_chat(backend: Any, request: Any) -> Any:
            t0 = time.perf_counter()
            try:
                r = chat(backend, request)
            except Exception as exc:
                calls.append({"kind": "chat", "s": time.perf_counter() - t0, "error": type(exc).__name__})
                raise
            calls.append({"kind": "chat", "s": time.perf_counter() - t0, "tokens_in": r.tokens_in,
                          "prompt_eval_s": r.prompt_eval_s, "tokens_out": r.tokens_out, "eval_s": r.eval_s,
                          "load_s": r.load_s, "num_ctx": request.num_ctx, "stopped": r.stopped})
            return r

        def traced_embed(backend: Any, model: str, texts: list[str], **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return embed(backend, model, texts, **kw)
            finally:
                calls.append({"kind": "embed", "s": time.perf_counter() - t0, "texts": len(texts)})

        OllamaBackend.chat = traced_chat  # type: ignore[method-assign]
        OllamaBackend.embed = traced_embed  # type: ignore[method-assign]

    def split(self, since: int, total_s: float) -> dict[str, Any]:
        """Where one add's time went: chat calls (prefill/generation/load), embed calls, the rest."""
        chats = [c for c in self.calls[since:] if c["kind"] == "chat"]
        embeds = [c for c in self.calls[since:] if c["kind"] == "embed"]

        def total(rows: list[dict[str, Any]], key: str) -> float:
            return round(sum(r.get(key) or 0 for r in rows), 2)

        chat_s, embed_s = total(chats, "s"), total(embeds, "s")
        return {"total_s": round(total_s, 2), "chat_calls": len(chats), "chat_s": chat_s,
                "tokens_in": [c.get("tokens_in") for c in chats],
                "prefill_s": total(chats, "prompt_eval_s"), "tokens_out": [c.get("tokens_out") for c in chats],
                "generate_s": total(chats, "eval_s"), "load_s": total(chats, "load_s"),
                "embed_calls": len(embeds), "embed_texts": sum(e["texts"] for e in embeds), "embed_s": embed_s,
                "other_s": round(total_s - chat_s - embed_s, 2)}


TRACE = Trace()


def unload(url: str, model: str) -> None:
    """Ask Ollama to drop the model now (keep_alive 0), so the next call loads it cold."""
    body = json.dumps({"model": model, "keep_alive": 0}).encode()
    req = urllib.request.Request(f"{url}/api/generate", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        resp.read()
    time.sleep(1.0)


def make_memory(url: str, model: str, embedder: str, dims: int, path: str) -> Any:
    from mem0 import Memory

    import mem0_routed  # noqa: F401 - registers "routed"

    router = {"ollama_base_url": url, "ledger": "memory", "local_backend": "ollama"}
    if embedder == "embedded":  # all-MiniLM-L6-v2 in-process (the [embedded] extra), 384-d
        emb_config: dict[str, Any] = {**router, "local_backend": "embedded", "embedding_dims": dims}
    else:
        emb_config = {**router, "model": embedder, "embedding_dims": dims}
    return Memory.from_config({
        "llm": {"provider": "routed", "config": {**router, "model": model}},
        "embedder": {"provider": "routed", "config": emb_config},
        "vector_store": {"provider": "qdrant", "config": {"path": path, "embedding_model_dims": dims}},
        # mem0's default ~/.mem0/history.db outlives the run: its "Last k Messages" would feed earlier
        # runs' conversations into every extraction prompt (longer prompts, facts from other runs)
        "history_db_path": os.path.join(path, "history.db"),
    })


def facts_found(texts: list[str]) -> int:
    blob = " ".join(texts).lower()
    return sum(any(k in blob for k in alternatives) for _, _, facts in CONVERSATIONS for alternatives in facts)


def workload(memory: Any) -> dict[str, Any]:
    times: list[float] = []
    failed: list[str] = []
    stored_per_add: list[int] = []
    per_add: list[dict[str, Any]] = []
    for name, conversation, _ in CONVERSATIONS:
        since = len(TRACE.calls)
        t0 = time.perf_counter()
        try:
            out = memory.add(conversation, user_id="bench")
            stored_per_add.append(len(out.get("results", [])))
        except Exception as exc:  # noqa: BLE001 - a failed add is a figure, not a crash
            failed.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
            stored_per_add.append(0)
        times.append(time.perf_counter() - t0)
        per_add.append({"add": name, **TRACE.split(since, times[-1])})
        print(f"  add {name:<10} {times[-1]:6.1f}s  stored {stored_per_add[-1]}  {per_add[-1]}",
              file=sys.stderr, flush=True)
    texts = [m["memory"] for m in memory.get_all(filters={"user_id": "bench"})["results"]]
    smalltalk = [i for i, (n, _, f) in enumerate(CONVERSATIONS) if not f]
    return {
        "add_seconds": [round(t, 1) for t in times],
        "first_add_s": round(times[0], 1),
        "steady_add_s": round(statistics.median(times[1:]), 1),
        "per_add": per_add,
        "failed_adds": len(failed),
        "failures": failed,
        "facts_found": facts_found(texts),
        "facts_expected": sum(len(f) for _, _, f in CONVERSATIONS),
        "memories": len(texts),
        "invented_from_greetings": sum(stored_per_add[i] for i in smalltalk),
        "texts": texts,
    }


def extraction_latencies() -> list[float]:
    from mem0_routed._process import PROCESS_RECORDS

    return [r.latency_s for r in PROCESS_RECORDS if r.call_kind == "mem0_extraction" and r.outcome != "error"]


def degenerate(url: str, model: str, max_tokens: int) -> dict[str, Any]:
    """Time until the stream guard stops a real loop, and what the loop would have cost."""
    from mem0_routed._speed import SPEEDS
    from mem0_routed._stream import StreamGuard
    from mem0_routed.backends._base import ChatRequest
    from mem0_routed.backends._ollama import OllamaBackend

    backend = OllamaBackend(url, keep_alive="1h")
    t0 = time.perf_counter()
    result = backend.chat(ChatRequest(model=model, messages=[{"role": "user", "content": LOOP_PROMPT}],
                                      max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.0, num_ctx=4096,
                                      stream_guard=StreamGuard))
    seconds = time.perf_counter() - t0
    backend.close()
    speed = SPEEDS.get(f"ollama@{url}", model)
    unguarded = max_tokens / speed.gen_tps if speed.gen_tps else None
    return {"stopped": result.stopped, "tokens_before_stop": result.tokens_out, "seconds": round(seconds, 1),
            "max_tokens": max_tokens, "unguarded_estimate_s": round(unguarded, 1) if unguarded else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("REAL_OLLAMA_URL", "http://127.0.0.1:11500"))
    parser.add_argument("--model", default="smollm2:135m")
    parser.add_argument("--embedder", default="all-minilm",
                        help="Ollama embedding model (all-minilm, smollm2:135m), or 'embedded' for all-MiniLM "
                             "in-process")
    parser.add_argument("--dims", type=int, help="embedding width (default: 576 for smollm2, else 384)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    if args.dims is None:
        args.dims = 576 if args.embedder.startswith("smollm2") else 384
    TRACE.install()
    from mem0_routed._router import reset_routers

    report: dict[str, Any] = {"machine": machine_info(), "model": args.model, "embedder": args.embedder}
    unload(url, args.model)
    with tempfile.TemporaryDirectory() as tmp:
        memory = make_memory(url, args.model, args.embedder, args.dims, os.path.join(tmp, "cold"))
        report["cold"] = workload(memory)
        router = memory.llm.router
        report["num_ctx"] = router.runtime.planner.snapshot()
        report["num_ctx_changes"] = dict(router.runtime.planner.changes)
        report["extraction_prompt"] = dict(router.runtime.planner.choices)
        from mem0_routed._speed import SPEEDS

        report["speeds"] = SPEEDS.snapshot()
        normal = extraction_latencies()[1:]  # warm extraction calls
        report["normal_extraction_s"] = round(statistics.median(normal), 1) if normal else None
        report["degenerate"] = degenerate(url, args.model, 2000)
        if report["normal_extraction_s"]:
            report["degenerate_vs_normal"] = round(report["degenerate"]["seconds"] / report["normal_extraction_s"], 2)
        memory.vector_store.client.close()
        print(json.dumps({k: v for k, v in report.items() if k != "cold"} | {"cold": {
            k: v for k, v in report["cold"].items() if k != "texts"}}, default=str), file=sys.stderr, flush=True)

        reset_routers()
        unload(url, args.model)
        memory = make_memory(url, args.model, args.embedder, args.dims, os.path.join(tmp, "warm"))
        t0 = time.perf_counter()
        warm = memory.llm.router
        warm.serves_mem0 = True
        report["warmup"] = warm.warmup(embedding_model=None if args.embedder == "embedded" else args.embedder)
        if args.embedder == "embedded":
            memory.embedding_model.embed("warm-up")
        report["warmup_s"] = round(time.perf_counter() - t0, 1)
        _, conversation, _ = CONVERSATIONS[0]
        since = len(TRACE.calls)
        t0 = time.perf_counter()
        memory.add(conversation, user_id="bench2")
        report["first_add_after_warmup_s"] = round(time.perf_counter() - t0, 1)
        report["first_add_after_warmup"] = TRACE.split(since, time.perf_counter() - t0)
        memory.vector_store.client.close()

    cold = report["cold"]
    targets = [
        ("facts stored", f"{cold['facts_found']}/{cold['facts_expected']}", ">= 12/13", cold["facts_found"] >= 12),
        ("failed adds", cold["failed_adds"], "0", cold["failed_adds"] == 0),
        ("first add, cold model (s)", cold["first_add_s"], "<= 30", cold["first_add_s"] <= 30),
        ("first add after warmup (s)", report["first_add_after_warmup_s"], "-", True),
        ("steady add, median (s)", cold["steady_add_s"], "<= 5", cold["steady_add_s"] <= 5),
        ("degenerate / normal answer", report.get("degenerate_vs_normal"), "<= 2",
         (report.get("degenerate_vs_normal") or 99) <= 2),
    ]
    print(f"\n{report['machine']}; model {args.model}, embedder {args.embedder}")
    for label, value, target, ok in targets:
        print(f"  {label:<30} {value!s:>10}  target {target:<9} {'ok' if ok else 'MISSED'}")
    print(f"  degenerate answer: {report['degenerate']}; normal extraction call {report['normal_extraction_s']}s")
    print(f"  memories from the greetings-only conversation: {cold['invented_from_greetings']}")
    print(f"  num_ctx {report['num_ctx']} (changes {report['num_ctx_changes']}), prompt {report['extraction_prompt']}")
    print(f"  speeds {report['speeds']}")
    print("  where each add's time went (s): total = chat (prefill + generate + load + client) + embed + other")
    for row in [*cold["per_add"], {"add": "warm 1st", **report["first_add_after_warmup"]}]:
        print(f"    {row['add']:<10} {row['total_s']:6.2f} = chat {row['chat_s']:5.2f} x{row['chat_calls']} "
              f"(prefill {row['prefill_s']:.2f} of {row['tokens_in']} tok, generate {row['generate_s']:.2f} of "
              f"{row['tokens_out']} tok, load {row['load_s']:.2f}) + embed {row['embed_s']:.2f} "
              f"x{row['embed_calls']} ({row['embed_texts']} texts) + other {row['other_s']:.2f}")
    report["targets"] = [{"figure": t[0], "value": t[1], "target": t[2], "ok": t[3]} for t in targets]
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
