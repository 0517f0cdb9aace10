"""Compact vs full mem0 extraction prompt on a real in-process model (SmolLM2-135M by default).

Run: ``python -m benchmarks.bench_compact_extraction [--json PATH] [--model NAME] [--max-tokens N]``

For each fixed conversation, mem0's own builders make the extraction messages; the call goes through
``EmbeddedBackend`` with ``MEM0_EXTRACTION_SCHEMA`` as a llama.cpp grammar. It reports, per prompt:
whether it fits the window (the full prompt is never truncated: "does not fit" is a result), seconds
per call, memories extracted, and how many expected key facts (keywords) appear in their texts.
Prompts: "full" (mem0's own), "compact" (the compact system prompt + its worked example turns) and
"no-ex" (the compact system prompt alone). A quick smoke run for ``run_all --with-model``; the quality
comparison on the labelled set is ``benchmarks/bench_extraction_quality.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

os.environ.setdefault("MEM0_TELEMETRY", "False")

from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT, generate_additive_extraction_prompt
from mem0.memory.utils import parse_messages

from mem0_routed._compact_prompt import MEM0_EXTRACTION_SCHEMA, compact_extraction_messages
from mem0_routed._errors import ContextOverflow
from mem0_routed.backends._base import ChatRequest
from mem0_routed.backends._embedded import EmbeddedBackend

# (name, messages, key facts: each a list of alternative keywords, any one counts as found)
CONVERSATIONS: list[tuple[str, list[dict[str, str]], list[list[str]]]] = [
    (
        "intro",
        [
            {"role": "user", "content": "Hi, I'm Priya. I moved to Lisbon last month and I work as a nurse."},
            {"role": "assistant", "content": "Welcome, Priya! How are you finding Lisbon?"},
        ],
        [["priya"], ["lisbon"], ["nurse"]],
    ),
    (
        "diet",
        [
            {"role": "user", "content": "I'm vegetarian and allergic to peanuts. Can you suggest a dinner?"},
            {"role": "assistant", "content": "Try a chickpea curry with rice; it has no peanuts."},
        ],
        [["vegetarian"], ["peanut"], ["chickpea", "curry"]],
    ),
    (
        "pets",
        [
            {"role": "user", "content": "My dog Biscuit is a beagle. He turns 3 in May."},
            {"role": "assistant", "content": "Happy early birthday to Biscuit!"},
            {"role": "user", "content": "Thanks! I also have a cat called Miso."},
        ],
        [["biscuit"], ["beagle"], ["miso"]],
    ),
    (
        "travel",
        [
            {"role": "user", "content": "I'm planning a trip to Japan in October with my sister Ana."},
            {"role": "assistant", "content": "Kyoto is lovely in October; book the ryokan early."},
        ],
        [["japan"], ["october"], ["ana", "sister"], ["kyoto", "ryokan"]],
    ),
    (
        "smalltalk",
        [
            {"role": "user", "content": "Hello!"},
            {"role": "assistant", "content": "Hi there! How can I help you today?"},
        ],
        [],  # nothing worth remembering: the right answer is {"memory": []}
    ),
]

OBSERVATION_DATE = "2025-06-02"


@dataclass
class Row:
    conversation: str
    prompt: str
    fits: bool
    prompt_tokens: int | None = None
    note: str = ""
    seconds: float | None = None
    valid_json: bool | None = None
    memories: int | None = None
    facts_expected: int = 0
    facts_found: int | None = None
    texts: list[str] = field(default_factory=list)


def mem0_messages(conversation: list[dict[str, str]]) -> list[dict[str, str]]:
    """The exact messages ``Memory.add`` sends for a first extraction (no existing memories)."""
    user_prompt = generate_additive_extraction_prompt(
        existing_memories=[],
        new_messages=parse_messages(conversation),
        last_k_messages=[],
        current_date=OBSERVATION_DATE,
    )
    return [
        {"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT},
        {"role": "user", "content": user_prompt},
    ]


def run_one(
    backend: EmbeddedBackend,
    model: str,
    name: str,
    which: str,
    messages: list[dict[str, str]],
    facts: list[list[str]],
    max_tokens: int,
) -> Row:
    row = Row(conversation=name, prompt=which, fits=True, facts_expected=len(facts))
    request = ChatRequest(
        model=model,
        messages=messages,
        temperature=0.0,
        max_tokens=max_tokens,
        json_schema=MEM0_EXTRACTION_SCHEMA,
    )
    start = time.perf_counter()
    try:
        result = backend.chat(request)
    except ContextOverflow as exc:
        row.fits = False
        row.note = f"does not fit: {exc}"
        return row
    row.seconds = round(time.perf_counter() - start, 2)
    row.prompt_tokens = result.tokens_in
    try:
        items = json.loads(result.text)["memory"]
        row.valid_json = True
    except (ValueError, KeyError, TypeError):
        row.valid_json, items = False, []
        row.note = f"unparsable: {result.text[:80]!r} (done_reason={result.done_reason})"
    row.texts = [str(item.get("text", "")) for item in items if isinstance(item, dict)]
    row.memories = len(row.texts)
    blob = " ".join(row.texts).lower()
    row.facts_found = sum(any(k in blob for k in alternatives) for alternatives in facts)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2:135m")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", metavar="PATH", help="save the figures as JSON")
    args = parser.parse_args(argv)

    backend = EmbeddedBackend(n_threads=args.threads)
    rows: list[Row] = []
    for name, conversation, facts in CONVERSATIONS:
        full = mem0_messages(conversation)
        variants = (
            ("full", full),
            ("compact", compact_extraction_messages(full)),
            ("no-ex", compact_extraction_messages(full, examples=False)),
        )
        for which, messages in variants:
            row = run_one(backend, args.model, name, which, messages, facts, args.max_tokens)
            rows.append(row)
            print(
                f"  {name:<10} {which:<8} {row.note or f'{row.seconds}s, {row.memories} memories'}",
                file=sys.stderr,
            )

    print(
        f"\nmodel {args.model}, window {backend.context_window(args.model)}, max_tokens {args.max_tokens}, "
        f"threads {args.threads}, {platform.machine()}"
    )
    header = (
        f"{'conversation':<12} {'prompt':<8} {'fits':<5} {'tok_in':>6} {'sec':>6} {'json':<5} "
        f"{'mems':>4} {'facts':>6}  texts / note"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        facts = f"{r.facts_found}/{r.facts_expected}" if r.facts_found is not None else "-"
        detail = r.note or " | ".join(t[:60] for t in r.texts)
        print(
            f"{r.conversation:<12} {r.prompt:<8} {r.fits!s:<5} {r.prompt_tokens or '-':>6} "
            f"{r.seconds if r.seconds is not None else '-':>6} {r.valid_json or '-'!s:<5} "
            f"{r.memories if r.memories is not None else '-':>4} {facts:>6}  {detail}"
        )
    summary: dict[str, Any] = {}
    for which in ("full", "compact", "no-ex"):
        ran = [r for r in rows if r.prompt == which and r.fits]
        summary[which] = {
            "fits": f"{len(ran)}/{sum(r.prompt == which for r in rows)}",
            "mean_seconds": round(sum(r.seconds or 0 for r in ran) / len(ran), 2) if ran else None,
            "valid_json": sum(bool(r.valid_json) for r in ran),
            "facts_found": sum(r.facts_found or 0 for r in ran),
            "facts_expected": sum(r.facts_expected for r in rows if r.prompt == which),
        }
    print("\nsummary:", json.dumps(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "model": args.model,
                    "max_tokens": args.max_tokens,
                    "threads": args.threads,
                    "summary": summary,
                    "rows": [asdict(r) for r in rows],
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
