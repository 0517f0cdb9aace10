"""A real, throw-away redis-server for tests (no mocks: the Lua scripts must run for real).

``redis_url()`` is a context manager: with ``REDIS_URL`` set it yields that URL untouched;
otherwise it starts ``redis-server`` on a free 127.0.0.1 port with a temporary directory and no
persistence, waits (bounded) until it answers PING, yields its URL and stops it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


class RedisUnavailable(RuntimeError):
    """No REDIS_URL and no redis-server binary on PATH."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """Yield the URL of a redis server that lives for the ``with`` block."""
    env = os.environ.get("REDIS_URL")
    if env:
        yield env
        return
    with redis_process() as (url, _):
        yield url


@contextlib.contextmanager
def redis_process() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start our own redis-server (never ``REDIS_URL``'s: the fault tests stop and freeze it) and
    yield its URL and process."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable(
            "redis-server not found on PATH and REDIS_URL is not set. Install it "
            "(apt-get install -y redis-server), or set REDIS_URL=redis://host:port/0, "
            "or set MEM0_ROUTED_SKIP_REDIS=1 to skip the tests marked 'redis'."
        )
    with tempfile.TemporaryDirectory(prefix="mem0routed-redis-") as tmp:
        for _attempt in range(3):  # a port picked free can be taken before redis binds it
            port = _free_port()
            proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + START_TIMEOUT_S
            while proc.poll() is None and time.monotonic() < deadline and not _ping(port):
                time.sleep(0.05)
            if proc.poll() is None and _ping(port):
                break
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
        else:
            raise RedisUnavailable(f"redis-server ({binary}) did not answer PING within {START_TIMEOUT_S}s")
        try:
            yield f"redis://127.0.0.1:{port}/0", proc
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)  # a test may have left it frozen
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)


def redis_or_fail() -> contextlib.AbstractContextManager[str]:
    """``redis_url()``, but inside pytest: skip when MEM0_ROUTED_SKIP_REDIS=1, else fail clearly."""
    import pytest

    if shutil.which("redis-server") is None and not os.environ.get("REDIS_URL"):
        if os.environ.get("MEM0_ROUTED_SKIP_REDIS") == "1":
            pytest.skip("MEM0_ROUTED_SKIP_REDIS=1 and no redis-server / REDIS_URL")
        pytest.fail(
            "tests marked 'redis' need a redis server: install redis-server (apt-get install -y "
            "redis-server) or set REDIS_URL; set MEM0_ROUTED_SKIP_REDIS=1 to skip them instead",
            pytrace=False,
        )
    return redis_url()
