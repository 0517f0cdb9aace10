"""A whole-call deadline for HTTP clients that only know per-read timeouts (httpx, so the ollama
and openai clients).

httpx's read timeout bounds each read, so a server trickling one byte every half second keeps a
call alive for ever (issue: 45 s and counting with a 3 s read timeout). The transport here wraps
every response body and raises ``httpx.ReadTimeout`` once the deadline of the call in progress
(``deadline_scope``) has passed; the per-read timeout is cut to what is left by the caller.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["current_deadline", "deadline_scope", "deadline_transport"]

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("mem0_routed_deadline", default=None)


@contextmanager
def deadline_scope(deadline: float | None) -> Iterator[None]:
    """Calls made inside end by ``deadline`` (a ``time.monotonic()`` instant; None: no bound).

    A scope inside another never extends it: the earlier deadline wins, so a backend's own bound
    for a side request (a model list, a model's window) stays within the caller's ``deadline_s``."""
    outer = _DEADLINE.get()
    if outer is not None:
        deadline = outer if deadline is None else min(deadline, outer)
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> float | None:
    return _DEADLINE.get()


class _Watchdog:
    """One thread that fires every sync body's deadline, instead of a ``threading.Timer`` (a new
    thread) per call: starting a thread cost ~0.1-0.16 ms a call on a busy 2-core machine, most of
    what a backend added to a bare client's call (``benchmarks/bench_compat_overhead.py``)."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._heap: list[list[Any]] = []  # [when, seq, fire or None when cancelled]
        self._seq = itertools.count()
        self._cancelled = 0
        self._pid: int | None = None

    def add(self, when: float, fire: Any) -> list[Any]:
        entry = [when, next(self._seq), fire]
        with self._cv:
            if self._pid != os.getpid():  # first use, or a forked child: the thread did not come along
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="mem0-routed-deadlines", daemon=True).start()
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._cv.notify()
        return entry

    def cancel(self, entry: list[Any]) -> None:
        with self._cv:
            if entry[2] is None:
                return
            entry[2] = None
            self._cancelled += 1
            if self._cancelled > 1024 and self._cancelled * 2 > len(self._heap):  # keep the heap small
                self._heap = [e for e in self._heap if e[2] is not None]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        while True:
            with self._cv:
                while True:
                    while self._heap and self._heap[0][2] is None:
                        heapq.heappop(self._heap)
                        self._cancelled = max(0, self._cancelled - 1)
                    if not self._heap:
                        self._cv.wait()
                        continue
                    left = self._heap[0][0] - time.monotonic()
                    if left <= 0:  # fired: a later cancel() is a no-op, not a heap entry counted as cancelled
                        entry = heapq.heappop(self._heap)
                        fire, entry[2] = entry[2], None
                        break
                    self._cv.wait(left)
            try:
                fire()
            except Exception:  # a failed shutdown must not stop the other deadlines
                logging.getLogger("mem0_routed").debug("mem0-routed: a deadline's shutdown failed", exc_info=True)


_WATCHDOG = _Watchdog()


def deadline_transport(is_async: bool, lib: str = "httpx", verify: Any = None) -> Any:
    """httpx's own transport, with every response body bounded by the current call's deadline.
    ``lib`` names the httpx package the client is built on (openai 3.x ships its own, ``httpx2``):
    its transport classes and its ``ReadTimeout`` are used, so the client maps the timeout as usual.
    ``verify`` (a shared TLS context) spares each new transport loading the CA bundle again.

    The cut is made *at* the deadline, not when the next chunk arrives: a server that sends a chunk
    just before the deadline and then falls silent would otherwise keep the call for one more full
    read timeout (measured: 5.5 s for a 3 s deadline). Async bodies wait for each chunk with the time
    left; sync bodies have the process's one deadline thread (``_Watchdog``) shut the socket down at
    the deadline, which wakes a blocked read."""
    import asyncio
    import importlib
    import socket

    httpx: Any = importlib.import_module(lib)

    def _late() -> Exception:
        err: Exception = httpx.ReadTimeout("the call's deadline passed while the answer was still arriving")
        return err

    class _SyncBody(httpx.SyncByteStream):  # type: ignore[misc]
        def __init__(self, inner: Any, deadline: float, sock: Any) -> None:
            self.inner, self.deadline, self.sock = inner, deadline, sock
            self.expired = threading.Event()

        def _expire(self) -> None:
            self.expired.set()
            if self.sock is not None:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)  # wakes the read blocked in the caller's thread
                except OSError:
                    pass  # already closed: the read ends by itself

        def __iter__(self) -> Iterator[bytes]:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise _late()
            timer = _WATCHDOG.add(self.deadline, self._expire)
            try:
                for chunk in self.inner:
                    if self.expired.is_set() or time.monotonic() > self.deadline:
                        raise _late()
                    yield chunk
                if self.expired.is_set():  # the shut socket ended the body early: it is cut, not whole
                    raise _late()
            except httpx.TimeoutException:
                raise
            except Exception as exc:
                if self.expired.is_set():  # the read failed because the timer shut the socket
                    raise _late() from exc
                raise
            finally:
                _WATCHDOG.cancel(timer)

        def close(self) -> None:
            self.inner.close()

    class _AsyncBody(httpx.AsyncByteStream):  # type: ignore[misc]
        def __init__(self, inner: Any, deadline: float) -> None:
            self.inner, self.deadline = inner, deadline

        async def __aiter__(self) -> AsyncIterator[bytes]:
            chunks = self.inner.__aiter__()
            while True:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise _late()
                try:
                    chunk = await asyncio.wait_for(chunks.__anext__(), left)
                except StopAsyncIteration:
                    return
                except asyncio.TimeoutError:
                    raise _late() from None
                yield chunk

        async def aclose(self) -> None:
            await self.inner.aclose()

    def _socket(response: Any) -> Any:
        stream = response.extensions.get("network_stream")
        try:
            return stream.get_extra_info("socket") if stream is not None else None
        except Exception:  # noqa: BLE001 - a transport without one: the per-chunk check still holds
            return None

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
                response.stream = _SyncBody(response.stream, when, _socket(response))
            return response

    return _Sync(**tls)
