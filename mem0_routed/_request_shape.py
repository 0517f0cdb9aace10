"""Shaping a request for one backend: which messages, which output schema, which ``num_ctx``.

Kept apart from the chain logic so "what is sent" can be read (and tested) on its own: mem0's
compact extraction prompt when the full one does not fit a local model, mem0's JSON schema for
local extraction calls, and a context window that fits without ever shrinking.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ._classify import estimate_tokens
from ._errors import BackendError, ContextOverflow
from ._num_ctx import ContextPlanner, needed_tokens
from ._speed import SPEEDS
from ._stream import StreamGuard
from ._types import CallKind, Candidate
from .backends._base import Backend, ChatRequest

if TYPE_CHECKING:
    from ._config import RouterConfig
    from ._job import ChatJob


def message_text(messages: Sequence[Mapping[str, Any]], *, skip_system: bool) -> str:
    """The text of a conversation (text parts of multi-part messages included)."""
    parts: list[str] = []
    for m in messages:
        if skip_system and m.get("role") == "system":
            continue
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # text parts, and bare strings as the classifier counts them
            parts.extend(p if isinstance(p, str) else p.get("text", "") for p in content
                         if isinstance(p, str) or (isinstance(p, dict) and p.get("type") == "text"))
    return "\n".join(parts)


def estimate_messages(messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens of a whole conversation, with a few tokens per message for the chat template."""
    return estimate_tokens(message_text(messages, skip_system=False)) + 4 * len(messages)


def window_cap(config: RouterConfig, backend: Backend, model: str) -> tuple[int | None, int | None]:
    """``(model window, usable cap)``: the window from the backend, lowered by ``num_ctx_max``."""
    window = backend.context_window(model)
    caps = [c for c in (window, config.num_ctx_max) if c]
    return window, (min(caps) if caps else None)


def fit_messages(config: RouterConfig, job: ChatJob, cand: Candidate, backend: Backend,
                 *, prefer_compact: bool = False) -> tuple[list[dict[str, Any]], bool]:
    """The messages to send to ``backend``: as given, or mem0's compact extraction prompt when
    the full one does not fit the local model's window, or when ``prefer_compact`` (the runtime's
    per-model choice by predicted time, see ``Runtime.prompt_choice``). Raises ``ContextOverflow``
    if nothing fits."""
    messages = job.messages
    extraction = job.cls.call_kind is CallKind.MEM0_EXTRACTION and backend.is_local
    if extraction and (config.compact_extraction == "always"
                       or (prefer_compact and config.compact_extraction == "auto")):
        from ._compact_prompt import compact_extraction_messages

        return compact_extraction_messages(messages), True
    if not backend.is_local:
        return messages, False
    _, cap = window_cap(config, backend, cand.model)
    need = needed_tokens(job.cls.estimated_tokens, job.max_tokens)
    if cap is None or need <= cap:
        return messages, False
    if extraction and config.compact_extraction != "never":
        from ._compact_prompt import compact_extraction_messages

        small = compact_extraction_messages(messages)
        if needed_tokens(estimate_messages(small), job.max_tokens) <= cap:
            return small, True
    raise ContextOverflow(
        f"prompt needs ~{need} tokens but {cand.model} has a {cap}-token window",
        backend=backend.name, model=cand.model,
        fix=backend.fix("context_overflow", cand.model)
        or f"route this call type to a model with a larger window than {cand.model}"
        + (" or raise num_ctx_max" if cap == config.num_ctx_max else ""))


def mem0_extraction_need() -> int:
    """Window mem0's extraction call needs: its fixed system prompt, a typical user prompt and
    mem0's default max_tokens (2000). Sizing a mem0 router's extraction model for it from the
    first call means a short call that comes first cannot cause a reload later."""
    global _MEM0_NEED
    if _MEM0_NEED is None:
        from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT

        _MEM0_NEED = needed_tokens(estimate_tokens(ADDITIVE_EXTRACTION_PROMPT) + 1024, 2000)
    return _MEM0_NEED


_MEM0_NEED: int | None = None


def compact_extraction_need() -> int:
    """Window mem0's extraction call needs with the compact prompt: its system prompt and worked
    examples, a typical user prompt and mem0's default max_tokens (2000) -- 4,096 tokens, not 16k."""
    from ._compact_prompt import compact_extraction_messages

    head = compact_extraction_messages([{"role": "system", "content": ""}])
    return needed_tokens(estimate_messages(head) + 1024, 2000)


#: Bounds added to mem0's extraction schema: a model cannot write a hundred items or a sentence
#: without end, even inside a grammar (Ollama's ``format`` and llama.cpp both honour them).
MAX_MEMORY_ITEMS = 24
MAX_MEMORY_CHARS = 400


def extraction_schema() -> dict[str, Any]:
    """mem0's extraction schema (``MEM0_EXTRACTION_SCHEMA``) with ``maxItems`` and ``maxLength``."""
    global _SCHEMA
    if _SCHEMA is None:
        import copy

        from ._compact_prompt import MEM0_EXTRACTION_SCHEMA

        schema = copy.deepcopy(MEM0_EXTRACTION_SCHEMA)
        memory = schema["properties"]["memory"]
        memory["maxItems"] = MAX_MEMORY_ITEMS
        props = memory["items"]["properties"]
        props["text"]["maxLength"] = MAX_MEMORY_CHARS
        props["id"]["maxLength"] = 16
        if "linked_memory_ids" in props:
            props["linked_memory_ids"]["maxItems"] = 8
        _SCHEMA = schema
    return _SCHEMA


_SCHEMA: dict[str, Any] | None = None


def guard_factory(job: ChatJob, schema: dict[str, Any] | None) -> Callable[[], StreamGuard]:
    """The stream guard of a local call: JSON answers stop when their object closes, mem0's
    extraction answers also at a repeated memory item, every answer at a repeated phrase."""
    json_object = bool(job.cls.wants_json or schema is not None)
    items = "memory" if job.cls.call_kind is CallKind.MEM0_EXTRACTION else None
    return functools.partial(StreamGuard, json_object=json_object, items_key=items)


#: How a retry after a degenerate answer (a loop, invalid JSON) changes the request.
RETRY_REPEAT_PENALTY = 1.3
RETRY_TEMPERATURE_STEP = 0.4


def build_request(config: RouterConfig, planner: ContextPlanner, job: ChatJob, cand: Candidate, backend: Backend,
                  messages: list[dict[str, Any]], prompt_tokens: int, *, min_need: int = 0,
                  varied: bool = False) -> ChatRequest:
    """The request for one try; ``num_ctx`` comes from the planner, so it only ever grows.
    ``prompt_tokens`` is ``estimate_messages(messages)``, computed once by the caller.
    ``min_need`` sizes a model for calls it will get later (see ``mem0_extraction_need``).
    ``varied``: a retry after a degenerate answer, sent with a repeat penalty and more randomness
    (the same request would get the same answer)."""
    schema = job.json_schema
    if job.cls.call_kind is CallKind.MEM0_EXTRACTION and backend.is_local:
        schema = extraction_schema()
    num_ctx = None
    if backend.plans_context:
        need = needed_tokens(prompt_tokens, job.max_tokens)
        window, cap = window_cap(config, backend, cand.model)
        if min_need > need:  # size up front for later calls, but never past what the model allows
            need = min(min_need, cap) if cap else min_need
        num_ctx = planner.plan(cand.model, need, window)
        if num_ctx is None:  # never send such a call without num_ctx: it would truncate silently
            raise ContextOverflow(
                f"prompt needs ~{need} tokens but {cand.model} allows {cap if cap else '?'}",
                backend=backend.name, model=cand.model,
                fix="raise num_ctx_max or route this call type to a model with a larger window")
    temperature, top_p, penalty = job.temperature, job.top_p, None
    if varied:
        temperature = min(1.0, (temperature or 0.0) + RETRY_TEMPERATURE_STEP)
        top_p = None if top_p is None else max(top_p, 0.8)
        penalty = RETRY_REPEAT_PENALTY
    return ChatRequest(
        model=cand.model, messages=messages, temperature=temperature, top_p=top_p,
        max_tokens=job.max_tokens, json_mode=job.cls.wants_json and schema is None, json_schema=schema,
        num_ctx=num_ctx, tools=job.tools, tool_choice=job.tool_choice,
        timeout_s=config.read_timeout_s if backend.is_local else config.external_timeout_s,
        stream_guard=guard_factory(job, schema) if backend.is_local and not job.tools else None,
        repeat_penalty=penalty)


#: A typical mem0 user prompt (conversation and existing memories) and answer, in tokens.
TYPICAL_USER_TOKENS = 400
TYPICAL_ANSWER_TOKENS = 150


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
