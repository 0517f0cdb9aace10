"""Ollama's wire format and per-call plumbing: message conversion, httpx hooks, stream reading.

Kept apart from ``_ollama`` (the backend's calls and error translation) so each stays readable.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ModelNotFound,
    RateLimited,
    ServerError,
)
from ._base import AnswerGuard, GuardedRead

if TYPE_CHECKING:
    import httpx

START_OLLAMA = "start Ollama (`ollama serve`) or set OLLAMA_URL to a running host"


def count(value: object) -> int | None:
    """A token count as reported, or ``None`` when it cannot be one (a usage record refuses negatives)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


@dataclass(slots=True)
class Call:
    """Per-call state shared with the httpx hooks: the timeout override, the Retry-After seen."""

    timeout_s: float | None = None
    connect_s: float = 2.0
    retry_after: float | None = None
    deadline: float | None = None
    sent: bool = False  # a request went out: an error before that is our request's, not the server's


CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar("mem0_routed_ollama_call", default=None)


def on_request(request: httpx.Request) -> None:
    """Apply a per-call timeout: the ollama client has no timeout argument, httpx reads this one.
    With a deadline, no single wait may outlast it (the transport checks between reads)."""
    call = CALL.get()
    if call is None:
        return
    call.sent = True
    t = call.timeout_s
    if call.deadline is not None:
        left = max(call.deadline - time.monotonic(), 0.001)
        t = left if t is None else min(t, left)
    if t is not None:
        request.extensions["timeout"] = {"connect": min(call.connect_s, t), "read": t, "write": t, "pool": t}


def on_response(response: httpx.Response) -> None:
    """Keep Retry-After: ``ollama.ResponseError`` drops the headers."""
    call = CALL.get()
    if call is not None and response.status_code == 429:
        try:
            call.retry_after = max(0.0, float(response.headers.get("retry-after", "")))
        except ValueError:
            call.retry_after = None  # absent or an HTTP date: the router uses its own backoff


async def aon_request(request: httpx.Request) -> None:
    on_request(request)


async def aon_response(response: httpx.Response) -> None:
    on_response(response)


#: ollama's request models: a ValidationError titled by one of them was raised before anything was sent
_REQUEST_MODELS = frozenset({"Message", "ChatRequest", "EmbedRequest", "Tool", "Options", "Image", "ToolCall"})


def is_request_validation(exc: Exception) -> bool:
    return type(exc).__name__ == "ValidationError" and getattr(exc, "title", None) in _REQUEST_MODELS


def request_error(exc: Exception) -> str:
    """What was wrong with our request, without the input itself (it is the user's text and may hold
    a secret): pydantic's error locations and messages, else the exception's type."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            items = errors(include_input=False, include_url=False)
            return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in items[:3])
        except Exception:  # noqa: BLE001 - only a description
            pass
    return type(exc).__name__


class Streamed(GuardedRead):
    """A streamed Ollama answer being read: its text, chunk timing, and the final (or last) chunk,
    which carries Ollama's token counts and timings."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks = 0
        self.first = self.last = 0.0
        self.last_part: Any = None

    def take(self, part: Any, guard: AnswerGuard) -> bool:
        """Record one chunk; True when reading should stop."""
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.last_part = part
        content = part.message.content or "" if part.message is not None else ""
        if part.done:
            if self.stopped is None:
                self.parts.append(content)
            return True
        self.chunks += 1
        return self._guarded(content, guard)


def seconds(ns: int | None) -> float | None:
    return ns / 1e9 if ns else None


def context_length(info: Mapping[str, Any]) -> int | None:
    arch = info.get("general.architecture")
    value = info.get(f"{arch}.context_length") if arch else None
    if value is None:  # unusual metadata: take any "<x>.context_length"
        value = next((v for k, v in info.items() if k.endswith(".context_length")), None)
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def _image_data(part: Mapping[str, Any]) -> str:
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, Mapping) else url
    if isinstance(url, str) and url.startswith("data:") and "," in url:
        return url.split(",", 1)[1]
    raise BadRequest(
        "Ollama takes images as base64 data, not URLs", fix="pass data:image/...;base64,... URLs"
    )


def to_ollama_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI-style messages (mem0's) to Ollama's: text parts joined, data-URL images to base64,
    tool-call arguments as objects."""
    out: dict[str, Any] = {"role": message.get("role", "user")}
    content = message.get("content")
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, Mapping)]
        out["content"] = "\n".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")
        images = [_image_data(p) for p in parts if p.get("type") == "image_url"]
        if images:
            out["images"] = images
    elif content is not None:
        out["content"] = str(content)
    if message.get("images"):
        out["images"] = list(message["images"])
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {"function": {"name": fn.get("name", ""), "arguments": _args(fn.get("arguments"))}}
            for fn in (call.get("function", call) for call in message["tool_calls"])
        ]
    if message.get("role") == "tool" and message.get("name"):
        out["tool_name"] = message["name"]
    return out


def _args(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {"input": value}
    return dict(value) if isinstance(value, Mapping) else {}


def translate(exc: Exception, *, where: str, name: str, model: str, what: str, state: Call) -> BackendError:
    """Every ollama/httpx error as one of ours, with the fix when there is one."""
    import httpx
    import ollama

    about = f" ({what}, model {model})" if model else f" ({what})"
    kw: dict[str, Any] = {"backend": name, "model": model}
    if isinstance(exc, ollama.ResponseError):
        status, detail = exc.status_code, str(exc.error)
        if status == 404 or "try pulling" in detail:
            return ModelNotFound(
                f"{where} does not have model {model!r}: {detail}", fix=f"run `ollama pull {model}`", **kw
            )
        if status == 429:
            return RateLimited(
                f"{where} is rate limiting{about}: {detail}", retry_after=state.retry_after, **kw
            )
        if status in (401, 403):
            return AuthenticationError(
                f"{where} refused the credentials{about}: {detail}",
                fix="check OLLAMA_API_KEY or the proxy in front of Ollama",
                **kw,
            )
        if status >= 500 or status < 0:
            return ServerError(f"{where} failed{about}: {detail} (HTTP {status})", **kw)
        return BadRequest(f"{where} rejected the request{about}: {detail} (HTTP {status})", **kw)
    if isinstance(exc, httpx.TimeoutException):
        kind = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for an answer"
        return BackendTimeout(
            f"{where} timed out {kind}{about}", fix=START_OLLAMA if kind == "connecting" else None, **kw
        )
    if isinstance(exc, (ConnectionError, httpx.TransportError)):
        reason = "connection refused" if isinstance(exc, ConnectionError) else type(exc).__name__
        return BackendUnavailable(f"{where} is not reachable{about}: {reason}", fix=START_OLLAMA, **kw)
    if isinstance(exc, httpx.InvalidURL):
        return BackendUnavailable(
            f"{where}: invalid URL ({exc})", fix="set OLLAMA_URL to e.g. http://localhost:11434", **kw
        )
    if isinstance(exc, ollama.RequestError):
        return BadRequest(f"{where}: bad request{about}: {exc.error}", **kw)
    if is_request_validation(exc):  # the client refused our request before sending it
        return BadRequest(f"{where}: the ollama client rejected the request{about}: {request_error(exc)}", **kw)
    if isinstance(exc, UnicodeEncodeError):  # our request could not be encoded: not the server's fault
        return BadRequest(f"{where}: the request has text UTF-8 cannot encode{about} (a lone surrogate)",
                          fix="clean the text: text.encode('utf-8', 'replace').decode()", **kw)
    if not state.sent:  # the client failed building our request (e.g. serialising it): nothing was sent
        return BadRequest(f"{where}: the request could not be sent as it is{about}: {request_error(exc)}",
                          **kw)
    # A 200 whose body is not Ollama's JSON (a proxy page, a broken server).
    return ServerError(f"{where} sent an unreadable answer{about}: {type(exc).__name__}", **kw)

# --- chat ------------------------------------------------------------------------------------
