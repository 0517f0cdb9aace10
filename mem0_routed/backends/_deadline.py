"""A whole-call deadline for HTTP clients that only know per-read timeouts (httpx, so the ollama
and openai clients).

httpx's read timeout bounds each read, so a server trickling one byte every half second keeps a
call alive for ever (issue: 45 s and counting with a 3 s read timeout). The transport here wraps
every response body and raises ``httpx.ReadTimeout`` once the deadline of the call in progress
(``deadline_scope``) has passed; the per-read timeout is cut to what is left by the caller.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["current_deadline", "deadline_scope", "deadline_transport"]

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("mem0_routed_deadline", default=None)


@contextmanager
def deadline_scope(deadline: float | None) -> Iterator[None]:
    """Calls made inside end by ``deadline`` (a ``time.monotonic()`` instant; None: no bound)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> float | None:
    return _DEADLINE.get()


def deadline_transport(is_async: bool, lib: str = "httpx", verify: Any = None) -> Any:
    """httpx's own transport, with every response body bounded by the current call's deadline.
    ``lib`` names the httpx package the client is built on (openai 3.x ships its own, ``httpx2``):
    its transport classes and its ``ReadTimeout`` are used, so the client maps the timeout as usual.
    ``verify`` (a shared TLS context) spares each new transport loading the CA bundle again."""
    import importlib

    httpx: Any = importlib.import_module(lib)

    def _past(deadline: float) -> None:
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the call's deadline passed while the answer was still arriving")

    class _SyncBody(httpx.SyncByteStream):  # type: ignore[misc]
        def __init__(self, inner: Any, deadline: float) -> None:
            self.inner, self.deadline = inner, deadline

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self.inner:
                _past(self.deadline)
                yield chunk

        def close(self) -> None:
            self.inner.close()

    class _AsyncBody(httpx.AsyncByteStream):  # type: ignore[misc]
        def __init__(self, inner: Any, deadline: float) -> None:
            self.inner, self.deadline = inner, deadline

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self.inner:
                _past(self.deadline)
                yield chunk

        async def aclose(self) -> None:
            await self.inner.aclose()

    tls = {} if verify is None else {"verify": verify}
    if is_async:
        class _Async(httpx.AsyncHTTPTransport):  # type: ignore[misc]
            async def handle_async_request(self, request: Any) -> Any:
                response = await super().handle_async_request(request)
                when = _DEADLINE.get()
                if when is not None:
                    response.stream = _AsyncBody(response.stream, when)
                return response

        return _Async(**tls)

    class _Sync(httpx.HTTPTransport):  # type: ignore[misc]
        def handle_request(self, request: Any) -> Any:
            response = super().handle_request(request)
            when = _DEADLINE.get()
            if when is not None:
                response.stream = _SyncBody(response.stream, when)
            return response

    return _Sync(**tls)
