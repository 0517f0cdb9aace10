"""The OpenAI-compatible tier on real llama-cpp-python servers (``python -m llama_cpp.server``,
SmolLM2-135M): the real mem0 ``Memory`` on it as the only local tier, structured output and the
context window checked, and two servers with one killed mid-run.

Two servers start once for the module (``--embedding true``: they chat and embed; ``n_ctx`` 4096,
which mem0's compact extraction prompt needs). What a 135M model extracts is not asserted: these
tests prove the path.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("MEM0_TELEMETRY", "False")

import mem0.memory.main as mem0_main
import mem0.memory.telemetry as mem0_telemetry
import pytest
from llama_server import MODEL, LlamaServer, llama_server_or_skip
from mem0 import Memory

from mem0_routed import Router, RouterConfig, RoutingError
from mem0_routed._registration import register
from mem0_routed.backends import OpenAICompatibleBackend
from mem0_routed.testing import reset as reset_routers

pytestmark = pytest.mark.llamaserver

N_CTX = 4096
DIMS = 576
USER = "alice"
SCHEMA = {"type": "object", "properties": {"animal": {"type": "string", "enum": ["zebra", "okapi"]}},
          "required": ["animal"], "additionalProperties": False}


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[LlamaServer, LlamaServer]]:
    with llama_server_or_skip(embedding=True, n_ctx=N_CTX) as a, llama_server_or_skip(embedding=True, n_ctx=N_CTX) as b:
        yield a, b


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ("OPENAI_API_KEY", "OLLAMA_URL", "MEM0_LLM_MODEL", "MEM0_EMBEDDER_MODEL", "OPENAI_COMPATIBLE_URLS",
                 "VLLM_BASE_URL", "MEM0_ROUTED_LOCAL_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEM0_DIR", str(tmp_path / "mem0"))
    monkeypatch.setattr(mem0_main, "MEM0_TELEMETRY", False)
    monkeypatch.setattr(mem0_telemetry, "MEM0_TELEMETRY", False)
    register()
    reset_routers()
    yield
    reset_routers()


def common(*servers: LlamaServer) -> dict[str, Any]:
    """The tier's keys: llama-cpp-python reports no window, so it is configured."""
    return {"local_backend": "openai_compatible", "openai_compatible_urls": [s.base_url for s in servers],
            "openai_compatible_context_window": N_CTX, "ollama_base_url": "http://127.0.0.1:9", "ledger": "memory",
            "max_retries": 1}


def router(*servers: LlamaServer, **cfg: Any) -> Router:
    models = {"code": MODEL, "medium": MODEL, "complex": MODEL}
    return Router(RouterConfig.from_mapping({**common(*servers), "llm_model": MODEL, "embedder_model": MODEL,
                                             "models": models, **cfg}))


def test_memory_add_and_search_with_the_compatible_server_as_the_only_local_tier(
        servers: tuple[LlamaServer, LlamaServer], tmp_path: Path) -> None:
    a, _ = servers
    config = {
        "llm": {"provider": "routed", "config": {**common(a), "model": MODEL, "temperature": 0.0,
                                                 "max_tokens": 256}},
        "embedder": {"provider": "routed", "config": {**common(a), "model": MODEL, "embedding_dims": DIMS}},
        "vector_store": {"provider": "qdrant", "config": {"path": str(tmp_path / "qdrant"),
                                                          "embedding_model_dims": DIMS, "collection_name": "compat"}},
        "history_db_path": str(tmp_path / "history.db"),
    }
    memory = Memory.from_config(config)
    try:
        memory.add([{"role": "user", "content": "My name is Alice. I live in Lisbon."}], user_id=USER)
        stored = memory.add([{"role": "user", "content": "Alice's cat is called Miso."}], user_id=USER, infer=False)
        assert stored["results"] and stored["results"][0]["memory"] == "Alice's cat is called Miso."
        hits = memory.search("Alice's cat is called Miso.", filters={"user_id": USER}, top_k=3)["results"]
        assert hits and hits[0]["memory"] == "Alice's cat is called Miso."  # its own vector ranks first
        metrics = memory.llm.router.get_metrics(scope="process")  # the embedder's router counts its own
        assert metrics["by_call_kind"]["mem0_extraction"] == 1 and metrics["failed_queries"] == 0
        assert metrics["local_queries"] == metrics["total_queries"] >= 1 and metrics["total_cost"] == 0
        assert memory.llm.router.health()["local_backend"] == "openai_compatible"
        assert metrics["embeddings_total"] >= 2 and metrics["embeddings_failed"] == 0
    finally:
        memory.vector_store.client.close()


def test_structured_output_on_the_real_server(servers: tuple[LlamaServer, LlamaServer]) -> None:
    """llama-cpp-python refuses OpenAI's ``json_schema`` form; the backend switches to ``json_object``
    + schema and the grammar holds the answer to the schema."""
    out = router(servers[0]).chat([{"role": "user", "content": "Pick an animal. Answer in JSON."}],
                                  response_format={"type": "json_schema",
                                                   "json_schema": {"name": "pick", "schema": SCHEMA}},
                                  max_tokens=24)
    assert json.loads(out.text)["animal"] in ("zebra", "okapi") and out.is_local


def test_the_context_window_is_enforced_before_sending(servers: tuple[LlamaServer, LlamaServer]) -> None:
    backend = OpenAICompatibleBackend(servers[0].base_url, context_window=N_CTX)
    assert backend.context_window(MODEL) == N_CTX and backend.has_model(MODEL) and not backend.has_model("x:1b")
    with pytest.raises(RoutingError) as info:
        router(servers[0]).chat([{"role": "user", "content": "word " * 5000}])
    assert info.value.attempts[0].kind == "ContextOverflow"
    assert any("--n_ctx" in fix for fix in info.value.fixes), info.value.fixes


def test_the_server_s_own_refusal_is_a_context_overflow(servers: tuple[LlamaServer, LlamaServer]) -> None:
    """Configured too large, the window is the server's to refuse: its 400 is a ContextOverflow."""
    with pytest.raises(RoutingError) as info:
        router(servers[0], openai_compatible_context_window=32768).chat([{"role": "user", "content": "word " * 5000}])
    assert [a.kind for a in info.value.attempts] == ["ContextOverflow"]


def test_one_of_two_servers_killed_mid_run(servers: tuple[LlamaServer, LlamaServer]) -> None:
    """Calls run on both; one server is killed while calls go on: none is lost, its breaker opens.
    (Last in the module: the server stays dead.)"""
    a, b = servers
    r = router(a, b, breaker_failures=2)
    results: list[Any] = []
    lock = threading.Lock()

    def call(i: int, max_tokens: int = 8) -> None:
        try:
            out = r.chat([{"role": "user", "content": f"Say the number {i}."}], max_tokens=max_tokens)
        except Exception as exc:  # noqa: BLE001 - a lost call is what the test looks for
            out = exc
        with lock:
            results.append(out)

    for i in range(4):
        call(i)
    assert {o.host for o in results if not isinstance(o, Exception)} == {a.base_url, b.base_url}  # both served
    threads = [threading.Thread(target=call, args=(10 + i, 64)) for i in range(4)]  # long: in flight at the kill
    for t in threads:
        t.start()
    os.killpg(a.pid, signal.SIGKILL)  # killed while calls are in flight
    for t in threads:
        t.join(timeout=120)
    for i in range(6):
        call(20 + i)
    lost = [o for o in results if isinstance(o, Exception)]
    assert not lost, lost
    assert len(results) == 14 and all(o.is_local for o in results)
    assert all(o.host == b.base_url for o in results[-6:])
    hosts = {h["name"]: h for h in r.health()["hosts"]}
    assert hosts[f"openai_compatible@{a.base_url}"]["breaker"] == "open"
    assert hosts[f"openai_compatible@{b.base_url}"]["breaker"] == "closed"
