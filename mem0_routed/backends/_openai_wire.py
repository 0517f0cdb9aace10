"""The OpenAI API's plumbing shared by every backend that speaks it: key handling and scrubbing,
Retry-After, known context windows, which httpx the client uses.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._loops import shared_ssl_context

SET_KEY = "set OPENAI_API_KEY"
NOT_CONFIGURED = "OpenAI not configured: set OPENAI_API_KEY"
_KEY_RE = re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-*]{3,}")
#: A key echoed half-masked by a server ("abcdef**********7890"): a key of any shape, not only sk-.
_MASKED_RE = re.compile(r"[^\s'\"`]*\*{3,}[^\s'\".,;`]*")
SCHEMA_NAME_RE = re.compile(r"[^a-zA-Z0-9_-]")

#: Context windows of the models the router may fall back to (tokens).
KNOWN_CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-4o-mini": 128_000,
    "gpt-4o": 128_000,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4.1-nano": 1_047_576,
    "gpt-4.1": 1_047_576,
    "gpt-5-mini": 400_000,
    "gpt-5-nano": 400_000,
    "gpt-5": 400_000,
}
DATED_RE = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def scrub_secrets(text: str, *secrets: str) -> str:
    """``text`` with every key-like substring (``sk-...``) and each given secret replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _MASKED_RE.sub(lambda m: (m.group(0)[:3] if m.group(0)[:3] in ("sk-", "rk-", "pk-") else "") + "***", text)
    return _KEY_RE.sub(lambda m: f"{m.group(1)}-***", text)


class Key:
    """Holds the key so that ``vars(backend)`` or a debugger shows ``'***'``, not the key."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"


def retry_after(headers: Any) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue
    return None


def json_or_text(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except (TypeError, ValueError):
        return arguments


def tls() -> Any:
    """The shared TLS context when the client is built on ``httpx`` itself (openai 3.x's ``httpx2``
    builds its own)."""
    return shared_ssl_context() if httpx_lib() == "httpx" else None


def httpx_lib() -> str:
    """The httpx package the openai client is built on (``httpx``, or ``httpx2`` in openai 3.x)."""
    import openai

    for base in openai.DefaultHttpxClient.__mro__[1:]:
        if base.__name__ == "Client":
            return base.__module__.split(".")[0]
    return "httpx"
