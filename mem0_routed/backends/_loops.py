"""One async client per running event loop, closed when that loop shuts down.

httpx's async connection pools belong to the loop that opened them, so a backend keeps one
client per loop. ``asyncio.run(router.execute_query(...))`` per call makes a new loop each time;
keeping those clients (with their sockets) for the backend's life leaked two file descriptors per
call. The loop itself tells us when it ends: ``asyncio.run`` closes every async generator the loop
started (``loop.shutdown_asyncgens``) before closing it, so each client is watched by a small async
generator whose ``finally`` closes the client while its loop still runs. Clients of loops closed
some other way are dropped on the next look-up (their sockets then close with them).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["LoopClients", "shared_ssl_context"]

C = TypeVar("C")
_SSL: Any = None
_SSL_LOCK = threading.Lock()


def shared_ssl_context() -> Any:
    """httpx's default TLS context, built once per process and shared by every client.

    Each new httpx client loads the CA bundle again (~20-90 ms), which made every
    ``asyncio.run(router.execute_query(...))`` pay it for a new per-loop client.
    """
    global _SSL
    if _SSL is None:
        import httpx

        with _SSL_LOCK:
            if _SSL is None:
                _SSL = httpx.create_ssl_context()  # honours SSL_CERT_FILE / SSL_CERT_DIR, like httpx
    return _SSL


class LoopClients(Generic[C]):
    """``get()`` returns the running loop's client, made by ``factory`` on first use."""

    def __init__(self, factory: Callable[[], C], closer: Callable[[C], Awaitable[Any]]) -> None:
        self._factory = factory
        self._closer = closer
        self._lock = threading.Lock()
        self._by_loop: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], C, AsyncGenerator[None, None]]] = {}

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._by_loop)

    def get(self) -> C:
        loop = asyncio.get_running_loop()
        key = id(loop)
        with self._lock:
            entry = self._by_loop.get(key)
            if entry is not None and entry[0]() is loop:
                return entry[1]
            self._purge()
            client = self._factory()
            watcher = self._watch(key, client)
            step = watcher.__anext__()  # the loop's first-iteration hook now tracks the watcher
            with contextlib.suppress(StopIteration):
                step.send(None)  # runs to the ``yield``: no await happens before it
            self._by_loop[key] = (weakref.ref(loop), client, watcher)
            return client

    def pop_running(self) -> C | None:
        """Forget the running loop's client and return it (the caller closes it)."""
        with self._lock:
            entry = self._by_loop.pop(id(asyncio.get_running_loop()), None)
        return entry[1] if entry is not None else None

    def clear(self) -> None:
        """Forget every client (each is closed when its loop shuts down, or dropped with it)."""
        with self._lock:
            self._by_loop.clear()

    def _purge(self) -> None:
        for key in [k for k, (ref, _, _) in self._by_loop.items() if (lp := ref()) is None or lp.is_closed()]:
            del self._by_loop[key]

    async def _watch(self, key: int, client: C) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:  # loop.shutdown_asyncgens(): the loop still runs, so the client can close cleanly
            with self._lock:
                entry = self._by_loop.get(key)
                if entry is not None and entry[1] is client:
                    del self._by_loop[key]
            with contextlib.suppress(Exception):
                await self._closer(client)
