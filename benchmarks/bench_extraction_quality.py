"""Extraction quality, mem0's full prompt vs the compact one, on the labelled set (real models).

Run (each under 10 minutes on 2 busy cores)::

    python -m benchmarks.bench_extraction_quality --sample 12            # SmolLM2-135M in-process (~7 min)
    python -m benchmarks.bench_extraction_quality --ollama URL           # a real Ollama, smollm2:135m (~2.5 min)
    python -m benchmarks.bench_extraction_quality --gguf NAME=PATH --n-ctx 12288 --sample 6   # another GGUF

Prompts: ``full`` (mem0's), ``compact``, ``compact+skip`` (compact, and ``{"memory": []}`` without a
model call when ``small_talk_only`` says the new messages are only greetings).

Options: ``--sample N`` (N conversations spread over the set), ``--only ID,...``, ``--prompts
full,compact``, ``--max-tokens``, ``--json PATH``, ``--markdown`` (README rows).

Each conversation of ``benchmarks/extraction_set.json`` becomes the exact messages ``Memory.add``
sends (mem0's own builders), and the request is the one the router sends a local backend for an
extraction call: ``MEM0_EXTRACTION_SCHEMA`` as Ollama's ``format`` / a llama.cpp grammar, one
``num_ctx`` per model, temperature 0 (reproducible). "compact" is ``compact_extraction_messages``
of the same messages. A prompt that does not fit the model's window is reported as such, never
truncated (the router's own rule: estimated prompt + ``max_tokens`` within the window). Answers are
parsed as mem0 parses them and scored by ``benchmarks/extraction_score.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

os.environ.setdefault("MEM0_TELEMETRY", "False")

from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT, generate_additive_extraction_prompt
from mem0.memory.utils import parse_messages

from benchmarks.extraction_score import Conversation, load_set, memory_texts, score_conversation, summarize
from mem0_routed._compact_prompt import MEM0_EXTRACTION_SCHEMA, compact_extraction_messages, small_talk_only
from mem0_routed._errors import ContextOverflow, RoutingError
from mem0_routed._num_ctx import needed_tokens
from mem0_routed._request_shape import estimate_messages
from mem0_routed.backends._base import Backend, ChatRequest

OBSERVATION_DATE = "2025-06-02"

PROMPTS: dict[str, Callable[[list[dict[str, Any]]], list[dict[str, Any]]]] = {
    "full": lambda messages: messages,
    "compact": compact_extraction_messages,
    # the compact prompt, and no model call at all when the new messages are only small talk
    "compact+skip": compact_extraction_messages,
}


def mem0_messages(conversation: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    """The exact messages ``Memory.add`` sends for a first extraction (no existing memories)."""
    user_prompt = generate_additive_extraction_prompt(
        existing_memories=[], new_messages=parse_messages(list(conversation)), last_k_messages=[],
        current_date=OBSERVATION_DATE,
    )
    return [{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, {"role": "user", "content": user_prompt}]


def sample(convs: list[Conversation], n: int | None) -> list[Conversation]:
    """``n`` conversations spread evenly over the set (its kinds are interleaved), all if None."""
    if n is None or n >= len(convs):
        return convs
    step = len(convs) / n
    return [convs[int(i * step)] for i in range(n)]


@dataclass
class Row:
    id: str
    prompt: str
    fits: bool
    note: str = ""
    tokens_in: int | None = None
    tokens_out: int | None = None
    seconds: float | None = None
    valid_json: bool | None = None
    texts: list[str] = field(default_factory=list)
    expected: int = 0
    found: int = 0
    invented: int = 0
    stale: int = 0
    greeting_only: bool = False
    missed: list[str] = field(default_factory=list)


def run_one(backend: Backend, model: str, conv: Conversation, prompt: str, *, max_tokens: int,
            window: int | None, num_ctx: int | None) -> Row:
    original = mem0_messages(conv.as_messages())
    messages = PROMPTS[prompt](original)
    row = Row(id=conv.id, prompt=prompt, fits=True, expected=len(conv.facts), greeting_only=conv.greeting_only)
    if prompt.endswith("+skip") and small_talk_only(original):
        row.seconds, row.valid_json, row.note = 0.0, True, "small talk: no model call"
        score = score_conversation(conv, [])
        row.found, row.missed = score.found, score.missed
        return row
    need = needed_tokens(estimate_messages(messages), max_tokens)
    if window is not None and need > window:  # the router's rule: never send what would be truncated
        row.fits, row.note = False, f"does not fit: ~{need} tokens > window {window}"
        return row
    request = ChatRequest(model=model, messages=messages, temperature=0.0, max_tokens=max_tokens,
                          json_schema=MEM0_EXTRACTION_SCHEMA, num_ctx=num_ctx, timeout_s=600.0)
    start = time.perf_counter()
    try:
        result = backend.chat(request)
    except ContextOverflow as exc:
        row.fits, row.note = False, f"does not fit: {exc}"
        return row
    except RoutingError as exc:
        row.note = f"error: {type(exc).__name__}: {exc}"
        row.valid_json = False
        return row
    row.seconds = round(time.perf_counter() - start, 2)
    row.tokens_in, row.tokens_out = result.tokens_in, result.tokens_out
    texts = memory_texts(result.text)
    row.valid_json = texts is not None
    if texts is None:
        row.note = f"mem0 gets nothing: {result.text[:80]!r} (done_reason={result.done_reason})"
    row.texts = texts or []
    score = score_conversation(conv, row.texts)
    row.found, row.invented, row.stale, row.missed = score.found, score.invented, score.stale, score.missed
    return row


def summary(rows: list[Row], convs: list[Conversation], prompts: Sequence[str]) -> dict[str, Any]:
    """Per prompt: the set's scores where it ran, and recall on the conversations where every prompt fit."""
    by_id = {c.id: c for c in convs}
    both = {c.id for c in convs if all(r.fits for r in rows if r.id == c.id)}
    out: dict[str, Any] = {}
    for prompt in prompts:
        ran = [r for r in rows if r.prompt == prompt and r.fits]
        scores = [score_conversation(by_id[r.id], r.texts) for r in ran]
        common = summarize([score_conversation(by_id[r.id], r.texts) for r in ran if r.id in both])
        secs = [r.seconds for r in ran if r.seconds is not None]
        out[prompt] = {
            **summarize(scores).as_dict(),
            "fits": len(ran), "conversations": sum(r.prompt == prompt for r in rows),
            "valid_json": sum(bool(r.valid_json) for r in ran),
            "recall_where_all_fit": common.recall if common.expected else None,
            "facts_where_all_fit": f"{common.found}/{common.expected}",
            "mean_seconds": round(sum(secs) / len(secs), 2) if secs else None,
            "prompt_tokens": sorted({r.tokens_in for r in ran if r.tokens_in}),
        }
    return out


def make_backend(args: argparse.Namespace) -> tuple[Backend, str, int | None, int | None]:
    """(backend, model, window, num_ctx)."""
    if args.ollama:
        from mem0_routed.backends._ollama import OllamaBackend

        ollama = OllamaBackend(args.ollama, read_timeout_s=600.0, keep_alive="30m")
        window = ollama.context_window(args.model)
        return ollama, args.model, window, args.num_ctx or window
    from mem0_routed.backends._embedded import EmbeddedBackend

    models = dict(spec.split("=", 1) for spec in args.gguf)
    embedded = EmbeddedBackend(models, n_threads=args.threads, n_ctx=args.n_ctx)
    model = next(iter(models)) if models and args.model == DEFAULT_MODEL else args.model
    return embedded, model, None, None  # the embedded backend checks the window itself, exactly


DEFAULT_MODEL = "smollm2:135m"


def markdown(label: str, s: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.0f} %"

    return (f"| {label} | {s['fits']}/{s['conversations']} | {s['valid_json']}/{s['fits']} | "
            f"{s['found']}/{s['expected']} ({pct(s['recall'] if s['fits'] else None)}) | "
            f"{s['facts_where_all_fit']} | {s['invented']} | {s['stale']} | {s['greeting_memories']} | "
            f"{s['mean_seconds'] if s['mean_seconds'] is not None else '—'} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--ollama", metavar="URL", help="a real Ollama server instead of the in-process model")
    parser.add_argument("--gguf", action="append", default=[], metavar="NAME=PATH", help="an extra GGUF model")
    parser.add_argument("--n-ctx", type=int, help="in-process context window cap (default: the model's)")
    parser.add_argument("--num-ctx", type=int, help="Ollama num_ctx, one value for every call (default: window)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--prompts", default="full,compact,compact+skip")
    parser.add_argument("--sample", type=int, help="only N conversations, spread over the set")
    parser.add_argument("--only", help="comma-separated conversation ids")
    parser.add_argument("--json", metavar="PATH", help="save every answer and the summary as JSON")
    parser.add_argument("--markdown", action="store_true", help="print README table rows")
    args = parser.parse_args(argv)

    prompts = [p for p in args.prompts.split(",") if p]
    if unknown := [p for p in prompts if p not in PROMPTS]:
        parser.error(f"unknown prompt(s) {unknown}; choose from {sorted(PROMPTS)}")
    convs = load_set()
    if args.only:
        wanted = args.only.split(",")
        convs = [c for c in convs if c.id in wanted]
    convs = sample(convs, args.sample)
    backend, model, window, num_ctx = make_backend(args)
    where = f"Ollama {args.ollama}" if args.ollama else "in-process (llama-cpp-python)"

    rows: list[Row] = []
    done: dict[tuple[str, str], Row] = {}
    started = time.perf_counter()
    for prompt in prompts:  # one prompt at a time: the model's prefix cache keeps its system prompt
        for conv in convs:
            same = done.get((conv.id, prompt.removesuffix("+skip")))
            if prompt.endswith("+skip") and same and not small_talk_only(mem0_messages(conv.as_messages())):
                row = dataclasses.replace(same, prompt=prompt)  # the same request: greedy decoding, same answer
            else:
                row = run_one(backend, model, conv, prompt, max_tokens=args.max_tokens, window=window,
                              num_ctx=num_ctx)
            done[(conv.id, prompt)] = row
            rows.append(row)
            result = row.note or f"{row.seconds}s {row.found}/{row.expected} invented {row.invented}"
            print(f"  {conv.id:<15} {prompt:<8} {result}  {' | '.join(t[:50] for t in row.texts)}",
                  file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started

    s = summary(rows, convs, prompts)
    print(f"\n{model} ({where}), max_tokens {args.max_tokens}, {len(convs)} conversations, "
          f"{platform.machine()}, {os.cpu_count()} cores, {elapsed:.0f} s")
    for prompt in prompts:
        print(f"{prompt:<8} {json.dumps(s[prompt])}")
    if args.markdown:
        print("\n| model, prompt | fits | valid JSON | facts found (recall) | facts where both fit | invented | "
              "stale | memories from greetings | s/call |")
        for prompt in prompts:
            print(markdown(f"{model}, {prompt}", s[prompt]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"model": model, "where": where, "max_tokens": args.max_tokens, "seconds": round(elapsed),
                       "summary": s, "rows": [asdict(r) for r in rows]}, f, indent=1, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
