"""A chat completion streamed as server-sent events, the way OpenAI-compatible servers send it.

Kept apart from ``_openai_server`` (which builds the answer) so each stays readable; the streaming
server base (``StreamingServer``) both fakes stand on lives here too. What differs between servers,
and is what a client must cope with:

* OpenAI and vLLM send ``usage`` only when asked (``stream_options.include_usage``), in one last
  chunk whose ``choices`` is empty;
* llama.cpp's ``llama-server`` puts ``usage`` (and its ``timings``) on the chunk that carries
  ``finish_reason``;
* llama-cpp-python sends no ``usage`` in a stream at all (the fake's ``omit_usage`` fault).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

from . import _fakemodel as fm
from ._base import FakeServerBase, Reply, _Handler, _HTTPServer

__all__ = ["OPENAI_FAULT_MODES", "StreamingServer", "sse_chat"]

#: Fault modes only the fake OpenAI server has (on top of ``FAULT_MODES``).
OPENAI_FAULT_MODES = ("repeat_loop", "trailing_whitespace")


def _body_bytes(reply: Reply) -> bytes | Iterator[bytes]:
    if isinstance(reply.payload, bytes):
        return reply.payload
    if isinstance(reply.payload, (dict, list)):
        return json.dumps(reply.payload).encode()
    return cast("Iterator[bytes]", reply.payload)


class _StreamingHandler(_Handler):
    """The shared handler, plus bodies that are written as they are produced (no length: the
    connection's end closes the body, as an HTTP/1.0 server does)."""

    def _dispatch(self, method: str) -> None:
        reply = self._reply(method)
        if reply is None:
            self.close_connection = True
            return
        if reply.trickle_s is not None:  # the base's "trickle" fault, for whole and streamed bodies alike
            trickled = self.server.owner._trickle(_body_bytes(reply), reply.trickle_s)
            reply = Reply(reply.status, trickled, reply.headers)
        if isinstance(reply.payload, (bytes, dict, list, str, int, float)) or reply.payload is None:
            self._write_whole(reply)
            return
        chunks = cast("Iterator[bytes]", reply.payload)
        try:
            self.send_response(reply.status)
            headers = {"Content-Type": "application/json; charset=utf-8", **(reply.headers or {})}
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client hung up: stop producing
            pass
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        self.close_connection = True


class _StreamingHTTPServer(_HTTPServer):
    handler_class = _StreamingHandler


class StreamingServer(FakeServerBase):
    """A fake server whose iterator bodies are written as they are produced, with ``token_delay_s``
    pacing them and ``stream_log`` (content chunks sent, client hung up first) per streamed answer
    (both fakes); by default with the fault modes of ``OPENAI_FAULT_MODES``."""

    EXTRA_FAULT_MODES: tuple[str, ...] = OPENAI_FAULT_MODES
    _http_server = _StreamingHTTPServer

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._stream_lock = threading.Lock()
        self.token_delay_s = 0.0
        self.stream_log: list[tuple[int, bool]] = []

    def _reset_streams(self) -> None:
        with self._stream_lock:
            self.stream_log.clear()
        self.token_delay_s = 0.0

    def _streamed(self, sent: int, hung_up: bool) -> None:
        with self._stream_lock:
            self.stream_log.append((sent, hung_up))


def sse_chat(payload: dict[str, Any], *, flavor: str, include_usage: bool, token_delay_s: float,
             stopping: threading.Event, on_end: Callable[[int, bool], None]) -> Iterator[bytes]:
    """``payload`` (a whole ``chat.completion``) as ``chat.completion.chunk`` events: one per
    ~4-character token, ``token_delay_s`` apart, then the finish, the usage and ``[DONE]``.
    ``on_end(content chunks sent, client hung up first)`` is called once the body ends."""
    base = {"id": payload["id"], "object": "chat.completion.chunk", "created": payload["created"],
            "model": payload["model"], "system_fingerprint": payload.get("system_fingerprint")}
    choice = payload["choices"][0]
    message = choice["message"]
    text: str = message.get("content") or ""
    usage = payload.get("usage")

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

    def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

    sent, finished = 0, False
    try:
        yield event(delta({"role": "assistant", "content": ""}))
        for i in range(0, len(text), fm.CHARS_PER_TOKEN):
            if token_delay_s and stopping.wait(token_delay_s):
                return
            sent += 1
            yield event(delta({"content": text[i:i + fm.CHARS_PER_TOKEN]}))
        if message.get("tool_calls"):
            calls = [{"index": n, **call} for n, call in enumerate(message["tool_calls"])]
            yield event(delta({"tool_calls": calls}))
        last = delta({}, choice["finish_reason"])
        if flavor == "llamacpp" and usage is not None:
            yield event(last, usage=usage, timings={"predicted_n": usage["completion_tokens"],
                                                    "prompt_n": usage["prompt_tokens"]})
        else:
            yield event(last)
            if include_usage and usage is not None:
                yield event([], usage=usage)
        yield b"data: [DONE]\n\n"
        finished = True
    finally:
        on_end(sent, not finished)
