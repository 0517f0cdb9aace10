"""The real mem0 ``Memory``/``AsyncMemory`` through provider "routed" on a real Ollama 0.5.4 (SmolLM2-135M
as chat and embedding model, 576-d), and ``mem0-routed health`` against it.

What a 135M model extracts is not asserted here (it invents facts; quality is measured in
``benchmarks/``): these tests prove the path — the calls are served by the real server, stored,
searchable, failures reach the user as one exception type, and health tells present from missing.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("MEM0_TELEMETRY", "False")

import mem0.memory.main as mem0_main
import mem0.memory.telemetry as mem0_telemetry
import pytest
from click.testing import CliRunner
from mem0 import AsyncMemory, Memory
from mem0.exceptions import EmbeddingError, LLMError
from mem0.exceptions import MemoryError as Mem0Error

from mem0_routed import register, routing_error
from mem0_routed._cli import main

pytestmark = pytest.mark.realollama

MODEL = "smollm2:135m"
DIMS = 576
USER = "alice"
CONVERSATION = [{"role": "user", "content": "My name is Alice. I live in Lisbon and I am allergic to peanuts."}]


@pytest.fixture(autouse=True)
def _clean(fresh: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("MEM0_DIR", str(tmp_path / "mem0"))
    monkeypatch.setattr(mem0_main, "MEM0_TELEMETRY", False)
    monkeypatch.setattr(mem0_telemetry, "MEM0_TELEMETRY", False)
    register()
    yield


@pytest.fixture
def dead_url() -> str:
    """A port nothing listens on: "Ollama down" without stopping the session's real server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _config(tmp_path: Path, llm_url: str, embedder_url: str, embedder_model: str = MODEL) -> dict[str, Any]:
    common = {"local_backend": "ollama", "ledger": "memory", "max_retries": 1}
    return {
        "llm": {"provider": "routed", "config": {**common, "ollama_base_url": llm_url, "model": MODEL,
                                                 "temperature": 0.0}},
        "embedder": {"provider": "routed", "config": {**common, "ollama_base_url": embedder_url,
                                                      "model": embedder_model, "embedding_dims": DIMS}},
        "vector_store": {"provider": "qdrant", "config": {"path": str(tmp_path / "qdrant"),
                                                          "embedding_model_dims": DIMS, "collection_name": "real"}},
        "history_db_path": str(tmp_path / "history.db"),
    }


def test_memory_add_and_search_on_a_real_ollama(real_ollama_url: str, tmp_path: Path) -> None:
    memory = Memory.from_config(_config(tmp_path, real_ollama_url, real_ollama_url))
    try:
        extracted = memory.add(CONVERSATION, user_id=USER)  # one real extraction call, then embeddings
        stored = memory.add([{"role": "user", "content": "Alice's cat is called Miso."}], user_id=USER,
                            infer=False)  # no extraction: the message itself, embedded by the real model
        assert stored["results"] and stored["results"][0]["memory"] == "Alice's cat is called Miso."
        hits = memory.search("Alice's cat is called Miso.", filters={"user_id": USER}, top_k=3)["results"]
        assert hits and hits[0]["memory"] == "Alice's cat is called Miso."  # its own vector ranks first
        all_texts = {m["memory"] for m in memory.get_all(filters={"user_id": USER})["results"]}
        assert {m["memory"] for m in extracted["results"]} <= all_texts
        metrics = memory.llm.router.get_metrics(scope="process")  # the LLM's and the embedder's calls
        assert metrics["by_call_kind"]["mem0_extraction"] == 1 and metrics["failed_queries"] == 0
        assert metrics["local_queries"] == metrics["total_queries"] >= 1 and metrics["external_queries"] == 0
        assert metrics["by_model"] == {MODEL: metrics["calls"] + metrics["embeddings_total"]}
        assert metrics["embeddings_total"] >= 2 and metrics["embeddings_failed"] == 0
        assert metrics["latency_by_model"][MODEL]["calls"] >= 3
    finally:
        memory.vector_store.client.close()


@pytest.mark.parametrize("down", ["llm", "embedder"])
def test_ollama_down_is_one_exception_type_on_a_real_ollama(
    real_ollama_url: str, dead_url: str, tmp_path: Path, down: str
) -> None:
    llm_url, embedder_url = (dead_url, real_ollama_url) if down == "llm" else (real_ollama_url, dead_url)
    memory = Memory.from_config(_config(tmp_path, llm_url, embedder_url))
    try:
        with pytest.raises(Mem0Error) as info:
            memory.add(CONVERSATION, user_id=USER)
    finally:
        memory.vector_store.client.close()
    assert isinstance(info.value, LLMError if down == "llm" else EmbeddingError), type(info.value)
    routed = routing_error(info.value)
    assert routed is not None and any("start Ollama" in fix for fix in routed.fixes), routed
    assert dead_url.rsplit(":", 1)[1] in str(info.value)  # names the host that is down


@pytest.mark.parametrize("down", ["llm", "embedder"])
async def test_ollama_down_is_one_exception_type_for_async_memory_on_a_real_ollama(
    real_ollama_url: str, dead_url: str, tmp_path: Path, down: str
) -> None:
    llm_url, embedder_url = (dead_url, real_ollama_url) if down == "llm" else (real_ollama_url, dead_url)
    memory = AsyncMemory.from_config(_config(tmp_path, llm_url, embedder_url))
    try:
        with pytest.raises(Mem0Error) as info:
            await memory.add(CONVERSATION, user_id=USER)
    finally:
        memory.vector_store.client.close()
    assert isinstance(info.value, LLMError if down == "llm" else EmbeddingError), type(info.value)
    assert routing_error(info.value) is not None


def _health(*args: str) -> Any:
    return CliRunner().invoke(main, [*args, "health", "--json"])


def test_health_on_a_real_ollama_with_the_configured_model_present(real_ollama_url: str, tmp_path: Path) -> None:
    flags = _health("--ollama-url", real_ollama_url, "--model", MODEL, "--embedder-model", MODEL)
    assert flags.exit_code == 0, flags.output
    report = json.loads(flags.output)
    assert report["ok"] is True and report["models"][MODEL]["present_on"]
    assert report["hosts"][0]["context_windows"][MODEL] == 8192  # asked the real server (/api/show)
    path = tmp_path / "mem0.json"
    path.write_text(json.dumps(_config(tmp_path, real_ollama_url, real_ollama_url)))
    from_file = _health("--config", str(path))
    assert from_file.exit_code == 0, from_file.output
    assert json.loads(from_file.output)["embedder"]["models"][MODEL]["routes"] == ["embedding"]


def test_health_on_a_real_ollama_names_a_missing_configured_model(real_ollama_url: str, tmp_path: Path) -> None:
    path = tmp_path / "mem0.json"
    path.write_text(json.dumps(_config(tmp_path, real_ollama_url, real_ollama_url, embedder_model="nomic-embed-text")))
    result = _health("--config", str(path))
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["ok"] is False and report["llm"]["ok"] is True
    assert report["embedder"]["missing_models"] == ["nomic-embed-text"]
    assert any("run `ollama pull nomic-embed-text`" in e for e in report["embedder"]["errors"])
    text = CliRunner().invoke(main, ["--ollama-url", real_ollama_url, "--model", "qwen2.5:0.5b", "health"])
    assert text.exit_code == 1 and "run `ollama pull qwen2.5:0.5b`" in text.output and "NOT healthy" in text.output
