"""Warm models and the per-model prompt choice.

Why: on a CPU the first mem0 ``add`` pays for loading the model and for reading the extraction
system prompt; Ollama then keeps both (the model for ``keep_alive``, the prompt in its prefix
cache) as long as later calls send the same ``num_ctx``. ``warmup`` pays that cost up front, with
exactly the ``num_ctx`` and system prompt the real calls will use, and measures the host's speed
first so the full-vs-compact choice is made from a measurement rather than a guess.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

from ._classify import estimate_tokens
from ._context import needed_tokens
from ._errors import BackendError, ContextOverflow
from ._requests import estimate_messages, mem0_extraction_need, window_cap
from ._speed import SPEEDS, describe
from ._types import QueryType
from .backends._base import Backend, ChatRequest

if TYPE_CHECKING:
    from ._config import RouterConfig
    from ._router import Router

__all__ = ["predict_prompt_choice", "warmup"]

#: A typical mem0 user prompt (conversation and existing memories) and answer, in tokens.
TYPICAL_USER_TOKENS = 400
TYPICAL_ANSWER_TOKENS = 150
#: Seconds one warm-up call may take (a cold 7B model on a CPU can need a minute to load).
WARMUP_DEADLINE_S = 300.0


def predict_prompt_choice(config: RouterConfig, backend: Backend, model: str) -> Literal["full", "compact"]:
    """"full" when mem0's full extraction prompt fits ``model`` and its predicted time at the
    measured speed is within ``extraction_latency_budget_s``; otherwise (or unmeasured) "compact"."""
    speed = SPEEDS.get(backend.name, model)
    from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT

    predicted = speed.predict(estimate_tokens(ADDITIVE_EXTRACTION_PROMPT) + TYPICAL_USER_TOKENS,
                              TYPICAL_ANSWER_TOKENS)
    if predicted is None or predicted > config.extraction_latency_budget_s:
        return "compact"
    try:
        _, cap = window_cap(config, backend, model)
    except BackendError:
        return "compact"
    return "full" if cap is None or mem0_extraction_need() <= cap else "compact"


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


def _chat(router: Router, backend: Backend, model: str, messages: list[dict[str, Any]], num_ctx: int | None,
          max_tokens: int) -> float:
    t0 = time.monotonic()
    result = backend.chat(ChatRequest(model=model, messages=messages, max_tokens=max_tokens, temperature=0.0,
                                      num_ctx=num_ctx, timeout_s=router.config.read_timeout_s,
                                      deadline=t0 + WARMUP_DEADLINE_S))
    SPEEDS.observe(backend.name, model, prompt_tokens=result.tokens_in, prompt_s=result.prompt_eval_s,
                   answer_tokens=result.tokens_out, answer_s=result.eval_s, load_s=result.load_s)
    return time.monotonic() - t0


def _plan_num_ctx(router: Router, backend: Backend, model: str, messages: list[dict[str, Any]]) -> int | None:
    if not backend.plans_context:
        return None
    need = max(needed_tokens(estimate_messages(messages), 1), router.num_ctx_floor(model, backend))
    window, _ = window_cap(router.config, backend, model)
    num_ctx = router.planner.plan(model, need, window)
    if num_ctx is None:
        raise ContextOverflow(f"{model} cannot hold the ~{need}-token extraction prompt", backend=backend.name,
                              model=model, fix="set compact_extraction: always or use a model with a larger window")
    return num_ctx


def warmup(router: Router, *, model: str | None = None, embedding_model: str | None = None) -> dict[str, Any]:
    """See ``Router.warmup``. Returns what was done per host; errors are reported, not raised."""
    kind = router.local_kind()
    policy = router.policy(kind)
    model = model or policy.local_model(QueryType.EXTRACTION)
    hosts: list[dict[str, Any]] = []
    for backend in router._backends_of(kind):
        entry: dict[str, Any] = {"host": backend.name, "model": model}
        try:
            if SPEEDS.get(backend.name, model).prefill_tps is None and router.planner.choices.get(model) is None:
                # measured before anything is planned, so the choice below rests on it; sent with
                # the compact plan's window (full, if chosen, reloads once, here and not in a call)
                probe = _probe_messages()
                size = router.planner.minimum if backend.plans_context else None
                entry["probe_s"] = round(_chat(router, backend, model, probe, size, 16), 2)
            choice = router.prompt_choice(backend, model)
            prime = _prime_messages(choice)
            num_ctx = _plan_num_ctx(router, backend, model, prime)
            entry["prime_s"] = round(_chat(router, backend, model, prime, num_ctx, 1), 2)
            entry.update(prompt=choice, num_ctx=num_ctx, keep_alive=getattr(backend, "keep_alive", None),
                         speed=describe(SPEEDS.get(backend.name, model)))
        except BackendError as exc:
            entry["error"] = f"{exc}" + (f" — to fix: {exc.fix}" if exc.fix else "")
        hosts.append(entry)
    report: dict[str, Any] = {"local_backend": kind, "model": model, "hosts": hosts}
    emb = embedding_model or policy.local_model(QueryType.EMBEDDING)
    t0 = time.monotonic()
    try:
        router.embeddings.embed(["warm-up"], model=emb)
        report["embedding"] = {"model": emb, "seconds": round(time.monotonic() - t0, 2)}
    except Exception as exc:  # noqa: BLE001 - a missing embedder is reported, the chat warm-up stands
        report["embedding"] = {"model": emb, "error": str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}
    report["ok"] = all("error" not in h for h in hosts) and bool(hosts)
    return report
