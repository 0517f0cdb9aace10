"""Fake Ollama and OpenAI servers on 127.0.0.1 for tests, benchmarks and examples.

They speak the real HTTP APIs (so the official clients and mem0 itself can talk to them), answer
with a deterministic fake model, and can be told to fail in every way a real server does:

    from mem0_routed.testing import FakeOllamaServer

    with FakeOllamaServer() as ollama:
        ollama.set_fault("hang", model="mistral:7b", times=1)
        ...  # point OLLAMA_URL / the router at ollama.url

Between tests, :func:`reset` puts the process back to a fresh state (routers, backends, breakers,
hooks, records)::

    @pytest.fixture(autouse=True)
    def fresh():
        mem0_routed.testing.reset()
        yield
        mem0_routed.testing.reset()

The servers are stdlib only; nothing here is imported by ``import mem0_routed``.
"""

from __future__ import annotations

from ._base import FAULT_MODES, Fault, FaultMode
from ._fakemodel import embed_text, estimate_tokens
from ._ollama_server import DEFAULT_OLLAMA_MODELS, FakeOllamaServer, ModelSpec
from ._openai_server import DEFAULT_OPENAI_MODELS, DEFAULT_TEST_KEY, FakeOpenAIServer, mask_key
from ._reset import reset

__all__ = [
    "DEFAULT_OLLAMA_MODELS",
    "DEFAULT_OPENAI_MODELS",
    "DEFAULT_TEST_KEY",
    "FAULT_MODES",
    "FakeOllamaServer",
    "FakeOpenAIServer",
    "Fault",
    "FaultMode",
    "ModelSpec",
    "embed_text",
    "estimate_tokens",
    "mask_key",
    "reset",
]
