"""How long the classifier takes per call, next to LiteLLM's rule-based complexity router.

Run from the repo root: ``python -m benchmarks.bench_classify [--n 3000] [--json out.json]``.
Targets (median, this machine): short query <= 15 µs; mem0's full extraction call <= 150 µs.
A figure over its target is printed with MISSED; targets are never loosened to pass.
LiteLLM (``pip install litellm``, the ``bench`` extra) is timed only if importable; its
``ComplexityRouter.classify(prompt, system_prompt)`` is the pure scoring function, like ours.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from mem0.configs.prompts import (  # type: ignore[import-untyped]
    ADDITIVE_EXTRACTION_PROMPT,
    AGENT_CONTEXT_SUFFIX,
    generate_additive_extraction_prompt,
)

from benchmarks._common import machine_info, median, p95, print_table, timeit_us, write_json
from mem0_routed import _classify
from mem0_routed._classify import classify_messages, classify_text

SHORT = "What's the capital of France?"
RIDDLE = "David has three sisters. Each of them has one brother. How many brothers does David have?"
TARGETS_US = {"short query": 15.0, "mem0 extraction call": 150.0}
#: ... and at least this many times faster than LiteLLM's complexity router on the same inputs.
RATIO_TARGET = 50.0


def _long_text(words: int = 1500) -> str:
    rng = random.Random(7)
    vocab = (
        "team",
        "meeting",
        "project",
        "budget",
        "quarter",
        "customer",
        "release",
        "design",
        "review",
        "notes",
        "agreed",
        "next",
        "week",
        "owner",
        "risk",
        "schedule",
        "feedback",
        "launch",
        "support",
        "sales",
        "marketing",
        "plan",
        "data",
        "report",
    )
    return " ".join(rng.choice(vocab) + ("." if i % 14 == 13 else "") for i in range(words))


def _extraction_user_prompt() -> str:
    prompt: str = generate_additive_extraction_prompt(
        existing_memories=[
            {"id": str(i), "text": f"User enjoys hiking trip {i} in the Alps"} for i in range(5)
        ],
        new_messages="user: I moved to Berlin last week and started at a bakery.\nassistant: Congrats!",
        last_k_messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}],
    )
    return prompt


def _cases() -> list[tuple[str, Callable[[], object], Callable[[Any], object] | None]]:
    """(name, our call, litellm call given its router) for each input."""
    user = _extraction_user_prompt()
    msgs = [{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, {"role": "user", "content": user}]
    fmt = {"type": "json_object"}
    agent_sys = ADDITIVE_EXTRACTION_PROMPT  # agent scope: mem0 builds a new string with += each call
    long = _long_text()

    def agent_call() -> object:
        system = agent_sys + AGENT_CONTEXT_SUFFIX
        return classify_messages(
            [{"role": "system", "content": system}, {"role": "user", "content": user}], fmt
        )

    def cold_call() -> object:
        _classify._system_info.cache_clear()
        return classify_messages(msgs, fmt)

    return [
        ("short query", lambda: classify_text(SHORT), lambda r: r.classify(SHORT)),
        ("short riddle", lambda: classify_text(RIDDLE), lambda r: r.classify(RIDDLE)),
        ("mem0 extraction call", lambda: classify_messages(msgs, fmt),
         lambda r: r.classify(user, ADDITIVE_EXTRACTION_PROMPT)),
        ("mem0 extraction, agent scope", agent_call,
         lambda r: r.classify(user, ADDITIVE_EXTRACTION_PROMPT + AGENT_CONTEXT_SUFFIX)),
        ("mem0 extraction, cold cache", cold_call, None),
        ("1500-word text", lambda: classify_text(long), lambda r: r.classify(long)),
    ]  # fmt: skip


def _litellm_router() -> Any | None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        from litellm.router_strategy.complexity_router.complexity_router import ComplexityRouter
    except Exception as e:  # noqa: BLE001 (not installed, or its import broke: compare without it)
        print(f"litellm not importable ({type(e).__name__}); timing ours only", file=sys.stderr)
        return None
    return ComplexityRouter(model_name="bench", ctx=object())  # ctx is unused by classify()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="calls per case (default 3000)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    ap.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM comparison")
    args = ap.parse_args(argv)

    router = None if args.no_litellm else _litellm_router()
    info = machine_info()
    rows: list[list[Any]] = []
    figures: dict[str, Any] = {"machine": info, "n": args.n, "targets_us": TARGETS_US, "cases": {}}
    for name, ours, theirs in _cases():
        n = args.n if "cold" not in name else max(50, args.n // 20)
        ours_t = timeit_us(ours, n, batch=1 if "cold" in name else 10)
        o_med, o_p95 = median(ours_t), p95(ours_t)
        target = TARGETS_US.get(name)
        missed = target is not None and o_med > target
        l_med = l_p95 = None
        if router is not None and theirs is not None:
            their_t = timeit_us(partial(theirs, router), max(100, n // 5))
            l_med, l_p95 = median(their_t), p95(their_t)
        ratio_val = l_med / o_med if l_med is not None else None
        ratio_missed = target is not None and ratio_val is not None and ratio_val < RATIO_TARGET
        ratio = f"{ratio_val:.1f}x" if ratio_val is not None else None
        if target is not None and ratio is not None:
            ratio += f" (>= {RATIO_TARGET:g}x: {'MISSED' if ratio_missed else 'ok'})"
        rows.append([name, o_med, o_p95, target, "MISSED" if missed else ("ok" if target else ""),
                     l_med, l_p95, ratio])  # fmt: skip
        figures["cases"][name] = {
            "ours_median_us": o_med, "ours_p95_us": o_p95, "target_us": target, "missed": missed,
            "litellm_median_us": l_med, "litellm_p95_us": l_p95,
            "ratio": ratio_val, "ratio_target": RATIO_TARGET if target is not None else None,
            "ratio_missed": ratio_missed,
        }  # fmt: skip
    print_table(
        f"Classifier, µs per call ({info})",
        ["input", "ours median", "ours p95", "target", "", "litellm median", "litellm p95", "litellm/ours"],
        rows,
    )
    print(f"\nshort query -> {classify_text(SHORT).query_type}; riddle -> {classify_text(RIDDLE).query_type}")
    if router is not None:
        print(f"litellm: short -> {router.classify(SHORT)[0]}; riddle -> {router.classify(RIDDLE)[0]}")
    if args.json:
        write_json(args.json, figures)
    return 1 if any(c["missed"] or c["ratio_missed"] for c in figures["cases"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
