"""Shared fixtures: fake Ollama and OpenAI servers on 127.0.0.1.

Each server starts once per test module and is reset before and after every test (faults cleared,
request log emptied, models restored), so tests may set faults freely.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import pytest

# Before anything imports mem0: its telemetry module reads the variable once, at import, and
# importing mem0_routed imports mem0 (the test suite was sending events to mem0's PostHog).
os.environ.setdefault("MEM0_TELEMETRY", "False")

from mem0_routed.testing import DEFAULT_TEST_KEY, FakeOllamaServer, FakeOpenAIServer
from llama_server import real_llama_embedding_server, real_llama_server  # noqa: E402,F401 - session fixtures

# Tests keep their usage records in memory, not in the user's SQLite ledger.
os.environ["MEM0_ROUTED_LEDGER"] = "memory"


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
