"""Figure 4: does ``num_ctx`` stay put per model over a mixed mem0 workload?

Every change of ``num_ctx`` makes Ollama reload the model and drop its prompt-prefix cache (the thing
that makes mem0's fixed ~8.5k-token system prompt cheap after the first call). 50 calls through one
``Router`` against ``FakeOllamaServer``: extraction prompts from mem0's own builders (json_object,
max_tokens 2000 as ``RoutedLLM`` passes them), llm_reranker-style scoring calls (max_tokens 100),
procedural-memory summaries, and plain queries. Counted server-side: the ``num_ctx`` each request
carried per model, and the fake's reload counter. The router is flagged ``serves_mem0`` as the mem0
provider flags it, so the extraction route's model is sized for mem0's prompt from its first call.
Three orders: a fixed shuffle, the worst case
where every short call comes before the first extraction, and the best case (extractions first).

Run from the repo root: ``python -m benchmarks.bench_context``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
from collections import defaultdict
from typing import Any

from benchmarks._common import machine_info, print_rows, row

os.environ.setdefault("MEM0_TELEMETRY", "False")

N_CALLS = 50
_ENV_TO_CLEAR = ("OLLAMA_URL", "OPENAI_API_KEY", "MEM0_LLM_MODEL", "LLM_LOCAL_THRESHOLD")
FACTS = ["I moved to Lisbon last month and I work as a nurse.", "I'm vegetarian and allergic to peanuts.",
         "My dog Biscuit is a beagle.", "I'm planning a trip to Japan in October with my sister Ana.",
         "I play the cello on Thursdays.", "My manager is called Tom and he likes Rust."]  # fmt: skip
QUERIES = ["What's the capital of France?", "Summarize: the meeting moved to Tuesday and Bob will present.",
           "Write a python function that reverses a string.", "How many days are in a leap year?"]  # fmt: skip




Call = tuple[str, list[dict[str, Any]], dict[str, Any]]


def reranker_system_prompt() -> str:
    """``LLMReranker._SYSTEM_PROMPT``, read from mem0's source: importing ``mem0.reranker`` pulls in
    sentence-transformers and torch (~9 s here) for one string."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("mem0")
    assert spec is not None and spec.submodule_search_locations
    path = os.path.join(next(iter(spec.submodule_search_locations)), "reranker", "llm_reranker.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", "") == "_SYSTEM_PROMPT" for t in node.targets
        ):
            return str(ast.literal_eval(node.value))
    raise LookupError("LLMReranker._SYSTEM_PROMPT not found in mem0's source")


def workload() -> list[Call]:
    """(kind, messages, chat kwargs) for 50 calls, in a fixed build order."""
    from mem0.configs.prompts import (
        ADDITIVE_EXTRACTION_PROMPT,
        AGENT_CONTEXT_SUFFIX,
        PROCEDURAL_MEMORY_SYSTEM_PROMPT,
        generate_additive_extraction_prompt,
    )

    calls: list[Call] = []
    memories: list[dict[str, str]] = []
    for i in range(20):  # extraction: existing memories grow as mem0's would
        fact = FACTS[i % len(FACTS)]
        user = generate_additive_extraction_prompt(
            existing_memories=list(memories[-10:]),
            new_messages=f"user: {fact} (session {i})\nassistant: Noted!",
            last_k_messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}],
        )
        system = ADDITIVE_EXTRACTION_PROMPT + (AGENT_CONTEXT_SUFFIX if i % 5 == 4 else "")
        calls.append(
            (
                "extraction",
                [{"role": "system", "content": system}, {"role": "user", "content": user}],
                {"response_format": {"type": "json_object"}, "max_tokens": 2000, "temperature": 0.1},
            )
        )
        memories.append({"id": str(i), "text": fact})
    for i in range(15):  # llm_reranker: one call per candidate document
        user = f"Query: {QUERIES[i % 4]}\n\nDocument: {FACTS[i % len(FACTS)]}"
        calls.append(
            (
                "reranker",
                [{"role": "system", "content": reranker_system_prompt()}, {"role": "user", "content": user}],
                {"max_tokens": 100, "temperature": 0.0},
            )
        )
    for i in range(5):  # procedural memory, as Memory._create_procedural_memory builds it
        msgs = [
            {"role": "system", "content": PROCEDURAL_MEMORY_SYSTEM_PROMPT},
            {"role": "user", "content": f"Step {i}: open the browser and search for {FACTS[i]}"},
            {"role": "assistant", "content": "Opened the browser and searched."},
            {"role": "user", "content": "Create procedural memory of the above conversation."},
        ]
        calls.append(("procedural", msgs, {"max_tokens": 2000, "temperature": 0.1}))
    for i in range(10):  # plain queries (execute_query style: no max_tokens)
        calls.append(("query", [{"role": "user", "content": QUERIES[i % 4]}], {}))
    assert len(calls) == N_CALLS
    return calls


def run_order(name: str, calls: list[Call]) -> tuple[list[dict], dict[str, Any]]:
    from mem0_routed import Router, RouterConfig
    from mem0_routed._ledger import MemoryLedger
    from mem0_routed._router import reset_routers
    from mem0_routed.testing import FakeOllamaServer

    reset_routers()
    with FakeOllamaServer() as server:
        router = Router(
            RouterConfig.from_mapping(
                {"ollama_base_url": server.url, "ledger": "memory", "local_backend": "ollama"}
            ),
            ledger=MemoryLedger(),
        )
        router.serves_mem0 = True  # what RoutedLLM sets: mem0's calls come through the provider
        kinds: dict[str, set[str]] = defaultdict(set)
        errors = 0
        for kind, messages, kwargs in calls:
            try:
                out = router.chat(messages, **kwargs)
                kinds[out.model].add(kind)
            except Exception:  # noqa: BLE001 - counted, the figure is about num_ctx
                errors += 1
        sizes: dict[str, list[int]] = defaultdict(list)
        for body in server.requests_to("/api/chat"):
            sizes[body["model"]].append((body.get("options") or {}).get("num_ctx"))
        reloads = dict(server.reloads)
        planner_changes = dict(router.get_metrics().get("num_ctx_changes", {}))
    reset_routers()
    rows = []
    for model, seq in sorted(sizes.items()):
        changes = sum(1 for a, b in itertools.pairwise(seq) if a != b)
        rows.append(
            row(
                f"num_ctx changes after first call [{name}] {model}",
                changes,
                "changes",
                "0",
                changes == 0,
                f"{len(seq)} calls ({', '.join(sorted(kinds[model]))}); num_ctx sent {sorted(set(seq))}; "
                f"fake server reloads {reloads.get(model, 0)}; router planner changes "
                f"{planner_changes.get(model, 0)}",
            )
        )
    info = {"errors": errors}
    if errors:
        rows.append(row(f"failed calls [{name}]", errors, "calls", "0", False, "router.chat raised"))
    return rows, info


def run(quick: bool = False) -> list[dict]:
    """All three orders (the workload is 50 calls either way; ``quick`` changes nothing)."""
    for var in _ENV_TO_CLEAR:
        os.environ.pop(var, None)
    calls = workload()
    shuffled = list(calls)
    random.Random(4).shuffle(shuffled)
    short_first = [c for c in calls if c[0] != "extraction"] + [c for c in calls if c[0] == "extraction"]
    rows: list[dict] = []
    extraction_first = [c for c in calls if c[0] == "extraction"] + [c for c in calls if c[0] != "extraction"]
    orders = (
        ("shuffled", shuffled),
        ("short calls first", short_first),
        ("extraction first", extraction_first),
    )
    for name, order in orders:
        got, _ = run_order(name, order)
        rows += got
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="accepted for symmetry; the workload is fixed")
    args = ap.parse_args(argv)
    rows = run(quick=args.quick)
    print_rows(f"Context stability ({machine_info()})", rows)
    return 1 if any(r["ok"] is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
