"""Shared fixtures: fake Ollama and OpenAI servers on 127.0.0.1.

Each server starts once per test module and is reset before and after every test (faults cleared,
request log emptied, models restored), so tests may set faults freely.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mem0_routed.testing import DEFAULT_TEST_KEY, FakeOllamaServer, FakeOpenAIServer

os.environ.setdefault("MEM0_TELEMETRY", "False")
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
