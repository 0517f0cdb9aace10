"""What both fake servers share: a stdlib HTTP server on 127.0.0.1 in a daemon thread, a request
log, and fault modes that can be switched on at runtime (per model, for N requests).

Stdlib only, so the servers ship in the package and cost nothing to import.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["FAULT_MODES", "FakeServerBase", "Fault", "FaultMode", "Reply"]

FaultMode = Literal[
    "refused",
    "hang",
    "error500",
    "error429",
    "error401",
    "model_missing",
    "invalid_json",
    "empty",
    "slow",
    "truncate_output",
    "trickle",
    "omit_usage",
    "negative_usage",
    "zero_usage",
    "absurd_usage",
]
FAULT_MODES: tuple[str, ...] = get_args(FaultMode)


@dataclass(slots=True)
class Fault:
    """One active fault. ``times=None`` lasts until cleared; ``model=None`` hits every model;
    ``paths=None`` hits every endpoint."""

    mode: FaultMode
    model: str | None = None
    times: int | None = None
    delay_s: float = 1.0
    retry_after: float | None = 1.0
    paths: tuple[str, ...] | None = None

    def matches(self, path: str, model: str | None) -> bool:
        if self.paths is not None and path not in self.paths:
            return False
        return self.model is None or self.model == model


@dataclass(slots=True)
class Reply:
    """What a handler answers: status, JSON-able payload (or raw bytes), extra headers."""

    status: int
    payload: Any
    headers: dict[str, str] | None = None
    trickle_s: float | None = None  # send the body one byte at a time, this many seconds apart


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"  # one request per connection: "refused" then really refuses

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _reply(self, method: str) -> Reply | None:
        """Read the request (a JSON body, or its text when it is not JSON) and ask the server."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = self.path.split("?", 1)[0]
        return self.server.owner._serve(method, path, body, dict(self.headers.items()))

    def _dispatch(self, method: str) -> None:
        reply = self._reply(method)
        if reply is None:  # server stopping during a hang/slow fault: drop the connection
            self.close_connection = True
            return
        self._write_whole(reply)

    def _write_whole(self, reply: Reply) -> None:
        """The reply with its length; with ``trickle_s``, one byte at a time."""
        data = reply.payload if isinstance(reply.payload, bytes) else json.dumps(reply.payload).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (reply.headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if reply.trickle_s is None:
                self.wfile.write(data)
                return
            self.wfile.flush()
            for i in range(len(data)):  # a server that never stops sending: no read timeout fires
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                if self.server.owner._stopping.wait(reply.trickle_s):
                    return
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. its timeout)
            pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # real Ollama listens with the OS maximum; 5 resets 32 eager threads

    handler_class: type[_Handler] = _Handler

    def __init__(self, addr: tuple[str, int], owner: FakeServerBase) -> None:
        self.owner = owner
        super().__init__(addr, self.handler_class)


class FakeServerBase:
    """Start/stop, request log, faults. Subclasses implement :meth:`_route`.

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``hang_limit_s`` bounds how long
    a "hang" fault holds a request when nobody releases it.
    """

    #: Fault modes a subclass answers in its own ``_route``, on top of ``FAULT_MODES``.
    EXTRA_FAULT_MODES: tuple[str, ...] = ()
    #: The listener class; a streaming subclass swaps in one that writes bodies as produced.
    _http_server: type[_HTTPServer] = _HTTPServer

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hang_limit_s: float = 120.0,
        log_path: str | None = None,
    ) -> None:
        self._host = host
        #: Each request is also appended to this file as one JSON line (path and body), flushed at
        #: once, so a test can read what a server in another process received, even after a kill.
        self.log_path = log_path
        self._port = port
        self.hang_limit_s = hang_limit_s
        self._lock = threading.RLock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._unhang = threading.Event()
        self._faults: list[Fault] = []
        self._refusing = False
        self.requests: list[tuple[str, Any]] = []

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (valid once started; the port stays the same after "refused")."""
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} is not started; call start() or use `with`")
        return f"http://{self._host}:{self._port}"

    def start(self) -> Self:
        with self._lock:
            if self._httpd is None and not self._refusing:
                self._stopping.clear()
                self._listen()
        return self

    def stop(self) -> None:
        """Stop listening and end held requests; never blocks on a hung request."""
        with self._lock:
            self._stopping.set()
            self._unhang.set()
            self._refusing = False
            self._close_listener()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self) -> None:
        httpd = self._http_server((self._host, self._port), self)
        self._port = httpd.server_address[1]
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}",
            daemon=True,
        )
        self._httpd, self._thread = httpd, thread
        thread.start()

    def _close_listener(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    # --- faults ----------------------------------------------------------------------------------

    def set_fault(
        self,
        mode: FaultMode | str,
        *,
        model: str | None = None,
        times: int | None = None,
        delay_s: float = 1.0,
        retry_after: float | None = 1.0,
        paths: tuple[str, ...] | list[str] | None = None,
    ) -> Fault:
        """Switch a fault on. Faults are checked in the order set; the first that matches is used.

        "refused" closes the listening socket (connection refused) until :meth:`clear_faults` or
        :meth:`reset`; it is server-wide, so ``model``/``times``/``paths`` are not allowed with it.
        """
        modes = FAULT_MODES + self.EXTRA_FAULT_MODES
        if mode not in modes:
            raise ValueError(f"unknown fault mode {mode!r}; choose one of {', '.join(modes)}")
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None (until cleared), got {times}")
        if mode == "refused":
            if model is not None or times is not None or paths is not None:
                raise ValueError(
                    "'refused' is server-wide: set it without model/times/paths, clear it with clear_faults()"
                )
            with self._lock:
                self._refusing = True
                self._close_listener()
            return Fault(cast(FaultMode, mode))
        fault = Fault(
            cast(FaultMode, mode),
            model=self._norm(model) if model else None,
            times=times,
            delay_s=delay_s,
            retry_after=retry_after,
            paths=tuple(paths) if paths is not None else None,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every fault, release held requests, listen again after "refused"."""
        with self._lock:
            self._faults.clear()
            self.release()
            if self._refusing:
                self._refusing = False
                if not self._stopping.is_set():
                    self._listen()

    def release(self) -> None:
        """Let requests held by a "hang" fault go on (they are then answered normally)."""
        with self._lock:
            self._unhang.set()
            self._unhang = threading.Event()

    def reset(self) -> None:
        """Back to a fresh server: no faults, empty request log, counters cleared."""
        with self._lock:
            self.clear_faults()
            self.requests.clear()
            self._reset_state()

    def _reset_state(self) -> None:
        """Subclasses clear their own counters here."""

    def _trickle(self, data: bytes | Iterator[bytes], delay_s: float) -> Iterator[bytes]:
        """One byte every ``delay_s`` (the "trickle" fault, streamed bodies included): each read is
        quick, the whole answer is not."""
        for chunk in [data] if isinstance(data, bytes) else data:
            for i in range(len(chunk)):
                if self._stopping.wait(delay_s):
                    return
                yield chunk[i:i + 1]

    def _take_fault(self, path: str, model: str | None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(path, model):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    # --- request handling ------------------------------------------------------------------------

    def requests_to(self, path: str) -> list[Any]:
        """Bodies of the logged requests to ``path`` (in order)."""
        with self._lock:
            return [body for p, body in self.requests if p == path]

    def _admin(self, path: str, body: Any) -> Reply:
        """``POST /_admin/fault`` (``set_fault`` arguments as JSON), ``/_admin/clear``, ``/_admin/reset``:
        faults for a server running in another process. Not logged as requests."""
        try:
            if path == "/_admin/fault" and isinstance(body, dict):
                self.set_fault(**body)
            elif path == "/_admin/clear":
                self.clear_faults()
            elif path == "/_admin/reset":
                self.reset()
            else:
                return Reply(404, {"error": f"unknown admin path {path}"})
        except (TypeError, ValueError) as exc:
            return Reply(400, {"error": str(exc)})
        return Reply(200, {"ok": True})

    def _serve(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Reply | None:
        if method == "POST" and path.startswith("/_admin/"):
            return self._admin(path, body)
        with self._lock:
            self.requests.append((path, body))
            if self.log_path is not None:
                with open(self.log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"path": path, "body": body}) + "\n")
        model = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None
        fault = self._take_fault(path, self._norm(model) if model else None)
        if fault is not None and fault.mode == "hang":
            held = self._unhang
            held.wait(self.hang_limit_s)
            if self._stopping.is_set():
                return None
            fault = None
        elif fault is not None and fault.mode == "slow":
            if self._stopping.wait(fault.delay_s):
                return None
            fault = None
        elif fault is not None and fault.mode == "trickle":
            reply = self._route(method, path, body, headers, None)
            reply.trickle_s = fault.delay_s
            return reply
        return self._route(method, path, body, headers, fault)

    def _route(
        self, method: str, path: str, body: Any, headers: dict[str, str], fault: Fault | None
    ) -> Reply:
        raise NotImplementedError

    @staticmethod
    def _norm(model: str) -> str:
        return model
