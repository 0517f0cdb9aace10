"""Warm models: load them and prime the prompt cache before the first real call.

Why: on a CPU the first mem0 ``add`` pays for loading the model and for reading the extraction
system prompt; Ollama then keeps both (the model for ``keep_alive``, the prompt in its prefix
cache) as long as later calls send the same ``num_ctx``. ``warmup`` pays that cost up front, with
exactly the ``num_ctx`` and system prompt the real calls will use, and measures the host's speed
first so the full-vs-compact choice is made from a measurement rather than a guess.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ._embedding import embed
from ._errors import BackendError, ContextOverflow
from ._num_ctx import needed_tokens
from ._request_shape import estimate_messages, window_cap
from ._runtime import Runtime
from ._speed import SPEEDS, describe
from ._types import QueryType
from .backends._base import Backend, ChatRequest

__all__ = ["warmup"]

#: Seconds one warm-up call may take (a cold 7B model on a CPU can need a minute to load).
WARMUP_DEADLINE_S = 300.0


def _probe_messages() -> list[dict[str, Any]]:
    """A prompt no cache has seen (a fresh id first), long enough to time the prefill."""
    from ._compact_prompt import COMPACT_EXTRACTION_PROMPT

    return [{"role": "user", "content": f"[{uuid.uuid4().hex}] Read this and answer OK.\n"
                                        + COMPACT_EXTRACTION_PROMPT * 2}]


def _prime_messages(choice: str) -> list[dict[str, Any]]:
    """The system prompt (and worked examples) mem0's extraction calls will start with."""
    from ._compact_prompt import compact_extraction_messages

    user = {"role": "user", "content": "## New Messages\nuser: Hello!\n"}
    if choice == "compact":
        return compact_extraction_messages([{"role": "system", "content": ""}, user])
    from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT

    return [{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, user]


def _chat(rt: Runtime, backend: Backend, model: str, messages: list[dict[str, Any]], num_ctx: int | None,
          max_tokens: int) -> float:
    t0 = time.monotonic()
    result = backend.chat(ChatRequest(model=model, messages=messages, max_tokens=max_tokens, temperature=0.0,
                                      num_ctx=num_ctx, timeout_s=rt.config.read_timeout_s,
                                      deadline=t0 + WARMUP_DEADLINE_S))
    SPEEDS.observe(backend.name, model, prompt_tokens=result.tokens_in, prompt_s=result.prompt_eval_s,
                   answer_tokens=result.tokens_out, answer_s=result.eval_s, load_s=result.load_s)
    return time.monotonic() - t0


def _plan_num_ctx(rt: Runtime, backend: Backend, model: str, messages: list[dict[str, Any]]) -> int | None:
    if not backend.plans_context:
        return None
    need = max(needed_tokens(estimate_messages(messages), 1), rt.num_ctx_floor(model, backend))
    window, _ = window_cap(rt.config, backend, model)
    num_ctx = rt.planner.plan(model, need, window)
    if num_ctx is None:
        raise ContextOverflow(f"{model} cannot hold the ~{need}-token extraction prompt", backend=backend.name,
                              model=model, fix="set compact_extraction: always or use a model with a larger window")
    return num_ctx


def warmup(rt: Runtime, *, model: str | None = None, embedding_model: str | None = None) -> dict[str, Any]:
    """See ``Router.warmup``. Returns what was done per host; errors are reported, not raised."""
    kind = rt.local_kind()
    policy = rt.policy(kind)
    model = model or policy.local_model(QueryType.EXTRACTION)
    hosts: list[dict[str, Any]] = []
    for backend in rt.backends(kind):
        entry: dict[str, Any] = {"host": backend.name, "model": model}
        try:
            if SPEEDS.get(backend.name, model).prefill_tps is None and rt.planner.choices.get(model) is None:
                # measured before anything is planned, so the choice below rests on it; sent with
                # the compact plan's window (full, if chosen, reloads once, here and not in a call)
                probe = _probe_messages()
                size = rt.planner.minimum if backend.plans_context else None
                entry["probe_s"] = round(_chat(rt, backend, model, probe, size, 16), 2)
            choice = rt.prompt_choice(backend, model)
            prime = _prime_messages(choice)
            num_ctx = _plan_num_ctx(rt, backend, model, prime)
            entry["prime_s"] = round(_chat(rt, backend, model, prime, num_ctx, 1), 2)
            entry.update(prompt=choice, num_ctx=num_ctx, keep_alive=getattr(backend, "keep_alive", None),
                         speed=describe(SPEEDS.get(backend.name, model)))
        except BackendError as exc:
            entry["error"] = f"{exc}" + (f" — to fix: {exc.fix}" if exc.fix else "")
        hosts.append(entry)
    report: dict[str, Any] = {"local_backend": kind, "model": model, "hosts": hosts}
    emb = embedding_model or policy.local_model(QueryType.EMBEDDING)
    t0 = time.monotonic()
    try:
        embed(rt, ["warm-up"], model=emb)
        report["embedding"] = {"model": emb, "seconds": round(time.monotonic() - t0, 2)}
    except Exception as exc:  # noqa: BLE001 - a missing embedder is reported, the chat warm-up stands
        report["embedding"] = {"model": emb, "error": str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}
    report["ok"] = all("error" not in h for h in hosts) and bool(hosts)
    return report
