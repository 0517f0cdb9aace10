"""Token counts to bill for an external call, whatever the server's ``usage`` says.

The cost of a call, and so the monthly budget, is computed from these counts. OpenAI-compatible
servers (vLLM, LiteLLM proxies, local gateways) may omit ``usage`` or send nonsense; billing that as
$0 let 200 of 200 calls through a budget that allowed ~11. A reported count is kept only when it
can be real: a whole number, not negative, not far above what the request could produce, and not
under a quarter of our own estimate. Otherwise our own count is billed (``estimate_tokens`` runs a
little high, which errs on the side of the budget).
"""

from __future__ import annotations

import json
from typing import Any

from .._classify import estimate_tokens
from .._requests import estimate_messages
from ._base import ChatRequest

__all__ = ["MAX_TOKENS", "billable_tokens"]

#: No single call bills more tokens than this (the largest windows are ~1M tokens).
MAX_TOKENS = 4_000_000


def billable_tokens(
    usage: Any, request: ChatRequest, text: str, calls: list[dict[str, Any]] | None
) -> tuple[int, int, str | None]:
    """``(tokens_in, tokens_out, problem)``: ``problem`` says what was wrong with ``usage``, or None."""
    own_in = estimate_messages(request.messages)
    own_out = estimate_tokens(text + (json.dumps(calls) if calls else ""))
    reported_in = getattr(usage, "prompt_tokens", None)
    reported_out = getattr(usage, "completion_tokens", None)
    # images are not in our count: room for a few thousand of their tokens above four times ours
    got_in = _plausible(reported_in, own_in, min(own_in * 4 + 8192, MAX_TOKENS))
    got_out = _plausible(reported_out, own_out, min(max(request.max_tokens or 0, own_out) * 4 + 64, MAX_TOKENS))
    problem = None
    if got_in is None or got_out is None:
        problem = "missing" if usage is None else (
            f"prompt_tokens={reported_in!r}, completion_tokens={reported_out!r}"[:120])
    return (own_in if got_in is None else got_in), (own_out if got_out is None else got_out), problem


def _plausible(value: object, own: int, cap: int) -> int | None:
    """``value`` when it can be a real token count near ``own`` (our estimate); else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if value < 0 or value > cap or value < own // 4:
        return None
    return value
