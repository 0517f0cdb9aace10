"""A real Ollama 0.5.4 answers through the router (the fixture and script work end to end)."""

from __future__ import annotations

import pytest

from mem0_routed import Router, RouterConfig

pytestmark = pytest.mark.realollama


def test_router_chats_with_a_real_ollama(real_ollama_url: str) -> None:
    router = Router(RouterConfig(ollama_base_url=real_ollama_url, llm_model="smollm2:135m", ledger="memory",
                                 local_backend="ollama"))
    try:
        outcome = router.chat([{"role": "user", "content": "Say hello."}], max_tokens=16)
    finally:
        router.close()
    assert outcome.is_local and outcome.backend == "ollama"
    assert outcome.model == "smollm2:135m"
    assert outcome.text.strip()
    assert outcome.tokens_out > 0
