"""Token counts to bill for an external call, whatever the server's ``usage`` says.

The cost of a call, and so the monthly budget, is computed from these counts. OpenAI-compatible
servers (vLLM, LiteLLM proxies, local gateways) may omit ``usage`` or send nonsense; billing that as
$0 let 200 of 200 calls through a budget that allowed ~11. A reported count is kept only when it
can be real: a whole number, not negative, not far above what the request could produce, and not
under a quarter of our own estimate. Otherwise our own count is billed (``estimate_tokens`` runs a
little high, which errs on the side of the budget).

Our count is of everything the provider reads (``prompt_tokens_max``): the messages, the tool
definitions and the JSON schema as sent, and each image at the most a provider bills for one.
Counting message text alone turned a real 26,000-token prompt with 60 tools into "implausible",
billed as 7 tokens; the reservation (``Router.worst_cost``) was as short.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .._classify import estimate_tokens
from .._request_shape import estimate_messages
from ._base import ChatRequest

__all__ = ["IMAGE_TOKENS_MAX", "MAX_TOKENS", "billable_tokens", "prompt_tokens_max", "served_counts"]

#: No single call bills more tokens than this (the largest windows are ~1M tokens).
MAX_TOKENS = 4_000_000

#: The most one image is billed as prompt tokens: gpt-4o-mini's 2,833 + 5,667 per 512-px tile, for
#: the 8 tiles of a detail "high" 2048x768 image (gpt-4o bills 1,445; its price per token is higher).
IMAGE_TOKENS_MAX = 2_833 + 8 * 5_667

_IMAGE_PARTS = ("image_url", "input_image", "image")


def count_images(messages: Sequence[Mapping[str, Any]]) -> int:
    """Images the messages carry: OpenAI content parts and Ollama's ``images`` lists."""
    n = 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            n += sum(1 for p in content if isinstance(p, Mapping)
                     and (p.get("type") in _IMAGE_PARTS or "image_url" in p))
        images = m.get("images")
        if isinstance(images, list):
            n += len(images)
    return n


def prompt_parts(messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None,
                 json_schema: Mapping[str, Any] | None) -> tuple[int, int]:
    """``(text tokens, images)`` of a request: messages, tool definitions and schema as sent."""
    text = estimate_messages(messages)
    for extra in (tools, json_schema):
        if extra:
            text += estimate_tokens(json.dumps(extra, ensure_ascii=False, default=str))
    return text, count_images(messages)


def prompt_tokens_max(messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None,
                      json_schema: Mapping[str, Any] | None) -> int:
    """The most prompt tokens a provider can bill for this request (images at ``IMAGE_TOKENS_MAX``)."""
    text, images = prompt_parts(messages, tools, json_schema)
    return min(text + images * IMAGE_TOKENS_MAX, MAX_TOKENS)


def billable_tokens(
    usage: Any, request: ChatRequest, text: str, calls: list[dict[str, Any]] | None
) -> tuple[int, int, str | None]:
    """``(tokens_in, tokens_out, problem)``: ``problem`` says what was wrong with ``usage``, or None."""
    text_in, images = prompt_parts(request.messages, request.tools, request.json_schema)
    own_in = min(text_in + images * IMAGE_TOKENS_MAX, MAX_TOKENS)  # billed when the report is unusable
    own_out = estimate_tokens(text + (json.dumps(calls) if calls else ""))
    reported_in = getattr(usage, "prompt_tokens", None)
    reported_out = getattr(usage, "completion_tokens", None)
    # an image may be billed at far less than its maximum (detail "low"), so the floor counts text
    got_in = _plausible(reported_in, text_in, min(own_in * 4 + 8192, MAX_TOKENS))
    got_out = _plausible(reported_out, own_out, min(max(request.max_tokens or 0, own_out) * 4 + 64, MAX_TOKENS))
    problem = None
    if got_in is None or got_out is None:
        problem = "missing" if usage is None else (
            f"prompt_tokens={reported_in!r}, completion_tokens={reported_out!r}"[:120])
    return (own_in if got_in is None else got_in), (own_out if got_out is None else got_out), problem


def served_counts(usage: Any) -> tuple[int, int] | None:
    """A local server's own ``(prompt_tokens, completion_tokens)`` when both are sane counts, else
    None. Not checked against our estimate: nothing is billed, and a ``prompt_tokens`` far below it
    is the sign of a cut prompt, not a count to correct."""
    counts = (getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None))
    if all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < 10**9 for n in counts):
        return int(counts[0]), int(counts[1])  # type: ignore[arg-type]
    return None


def _plausible(value: object, own: int, cap: int) -> int | None:
    """``value`` when it can be a real token count near ``own`` (our estimate); else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if value < 0 or value > cap or value < own // 4:
        return None
    return value
