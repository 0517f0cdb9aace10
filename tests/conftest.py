"""Shared fixtures: fake Ollama and OpenAI servers on 127.0.0.1, a fresh process, a fake breaker clock.

Each server starts once per test module and is reset before and after every test (faults cleared,
request log emptied, models restored), so tests may set faults freely. A module whose tests build
routers asks for a fresh process with ``pytestmark = pytest.mark.usefixtures("fresh")`` and builds
them with :func:`make_router` (``from conftest import make_router``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

# Before anything imports mem0: its telemetry module reads the variable once, at import, and
# importing mem0_routed imports mem0 (the test suite was sending events to mem0's PostHog).
os.environ.setdefault("MEM0_TELEMETRY", "False")

import stamina
from llama_server import real_llama_embedding_server, real_llama_server  # noqa: F401 - session fixtures

from mem0_routed import MemoryLedger, Router, RouterConfig
from mem0_routed._config import ROUTER_ENV_VARS
from mem0_routed.testing import DEFAULT_TEST_KEY, FakeOllamaServer, FakeOpenAIServer, reset

# Tests keep their usage records in memory, not in the user's SQLite ledger.
os.environ["MEM0_ROUTED_LEDGER"] = "memory"


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No router env var from the caller's shell (the ledger stays in memory), and a fresh process
    (``mem0_routed.testing.reset()``) before and after the test."""
    for name in ROUTER_ENV_VARS.values():
        if name != "MEM0_ROUTED_LEDGER":
            monkeypatch.delenv(name, raising=False)
    reset()
    yield
    reset()


@pytest.fixture
def no_backoff() -> Iterator[None]:
    """stamina keeps its retries (up to 3 attempts) but drops the waits between them."""
    with stamina.set_testing(True, attempts=3, cap=True):
        yield


class FakeClock:
    """A monotonic clock that moves only when told to (``advance``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def breaker_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The clock of every circuit breaker in the process, stepped by the test instead of sleeping."""
    from mem0_routed._process import BREAKERS

    clock = FakeClock()
    monkeypatch.setattr(BREAKERS, "clock", clock)
    return clock


def make_router(ollama: Any, openai: Any = None, key: str | None = None, *, ledger: Any = None,
                **cfg: Any) -> Router:
    """A router on ``ollama`` (a fake server or a URL) only, its records in a new ``MemoryLedger``
    (or ``ledger``); with ``openai`` and ``key``, an external fallback too. ``cfg``: more keys."""
    values: dict[str, Any] = {"ollama_base_url": getattr(ollama, "url", ollama), "ledger": "memory",
                              "local_backend": "ollama", **cfg}
    if openai is not None:
        values.update(openai_base_url=openai.base_url, openai_api_key=key)
    return Router(RouterConfig.from_mapping(values), ledger=ledger if ledger is not None else MemoryLedger())


@pytest.fixture(scope="module")
def _ollama_server_module() -> Iterator[FakeOllamaServer]:
    with FakeOllamaServer() as server:
        yield server


@pytest.fixture
def ollama_server(_ollama_server_module: FakeOllamaServer) -> Iterator[FakeOllamaServer]:
    """A running fake Ollama (``.url``) with the default route-table models, freshly reset."""
    server = _ollama_server_module
    server.reset()
    server.start()  # in case a test stopped it
    yield server
    server.reset()


@pytest.fixture(scope="module")
def _openai_server_module() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=DEFAULT_TEST_KEY) as server:
        yield server


@pytest.fixture
def openai_server(_openai_server_module: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """A running fake OpenAI (``.base_url`` ends in /v1) accepting ``openai_key``, freshly reset."""
    server = _openai_server_module
    server.reset()
    server.start()
    yield server
    server.reset()


@pytest.fixture
def openai_key() -> str:
    """The key ``openai_server`` accepts."""
    return DEFAULT_TEST_KEY


@pytest.fixture(scope="session")
def real_ollama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real Ollama 0.5.4 server with ``smollm2:135m`` (chat) and ``all-minilm`` (384-d
    embeddings) (marker ``realollama``).

    Uses ``REAL_OLLAMA_URL`` when set; otherwise stands one up with ``scripts/real_ollama.sh`` on a free
    port for the session (converting all-minilm with this interpreter, which has the test extras).
    Skips when that cannot be done locally; fails under ``CI`` (the tests must run).
    """
    url = os.environ.get("REAL_OLLAMA_URL")
    if url:
        yield url.rstrip("/")
        return
    import signal
    import socket
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "real_ollama.sh"
    env = {**os.environ, "PYTHON_FOR_CONVERT": os.environ.get("PYTHON_FOR_CONVERT", sys.executable)}
    setup = subprocess.run(["bash", str(script), "setup"], capture_output=True, text=True, timeout=900, env=env,
                           check=False)
    if setup.returncode != 0:
        message = f"real Ollama could not be set up: {setup.stderr[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = subprocess.run(["bash", str(script), "serve", str(port)], capture_output=True, text=True,
                             timeout=60, check=False)
    if started.returncode != 0:
        pytest.fail(f"real Ollama did not start: {started.stderr[-2000:]}")
    pid = int(started.stdout.split()[-1])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def run_bounded(fn: Any, limit_s: float = 30.0) -> BaseException | Any:
    """Run ``fn`` in a thread; fail the test if it is still running after ``limit_s`` (a hang)."""
    box: list[Any] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # noqa: BLE001
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"the call was still running after {limit_s}s: no deadline held it"
    return box[0]
