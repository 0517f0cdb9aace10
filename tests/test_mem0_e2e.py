"""The real mem0 ``Memory``/``AsyncMemory`` with provider "routed", against fake Ollama/OpenAI servers.

The servers come from tests/conftest.py (``ollama_server``, ``openai_server``); a second Ollama is
started where one host must be down while embeddings still have one. Every wait is bounded by the router's own timeouts, set short here; nothing asserts on time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("MEM0_TELEMETRY", "False")  # before mem0 is imported by this module

import mem0.memory.main as mem0_main
import mem0.memory.telemetry as mem0_telemetry
import pytest
from mem0 import AsyncMemory, Memory
from mem0.exceptions import LLMError

from mem0_routed import register
from mem0_routed.testing import DEFAULT_TEST_KEY, FakeOllamaServer, FakeOpenAIServer, reset

DIMS = 768  # nomic-embed-text on the fake Ollama
USER = "alice"
CONVERSATION = [
    {"role": "user", "content": "My name is Alice and I live in Lisbon. I work as a marine biologist."},
    {"role": "assistant", "content": "Nice to meet you, Alice!"},
    {"role": "user", "content": "I am allergic to peanuts."},
]
FACTS = ("Lisbon", "marine biologist", "peanuts")
# Short router timeouts: a failure must surface quickly, never hang a test.
FAST = {"connect_timeout_s": 2.0, "read_timeout_s": 30.0, "external_timeout_s": 30.0, "max_retries": 1}
# "Ollama down" means no local model at all: no switch to the in-process (llama.cpp) backend.
OLLAMA_ONLY = {"local_backend": "ollama"}


@pytest.fixture(autouse=True)
def _clean_env(fresh: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("MEM0_TELEMETRY", "False")
    monkeypatch.setenv("MEM0_DIR", str(tmp_path / "mem0"))
    monkeypatch.setattr(mem0_main, "MEM0_TELEMETRY", False)
    monkeypatch.setattr(mem0_telemetry, "MEM0_TELEMETRY", False)
    register()
    yield


def _config(tmp_path: Path, llm: dict[str, Any], embedder: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "llm": {"provider": "routed", "config": {**FAST, **llm}},
        "embedder": {"provider": "routed", "config": {**FAST, "embedding_dims": DIMS, **embedder}},
        "vector_store": {
            "provider": "qdrant",
            "config": {
                "path": str(tmp_path / "qdrant"),
                "embedding_model_dims": DIMS,
                "collection_name": "e2e",
            },
        },
        "history_db_path": str(tmp_path / "history.db"),
        **extra,
    }


@pytest.fixture
def make_memory(tmp_path: Path) -> Iterator[Any]:
    """Build Memory/AsyncMemory from a config; close the embedded Qdrant client at teardown."""
    made: list[Any] = []

    def make(config: dict[str, Any], cls: type = Memory) -> Any:
        memory = cls.from_config(config)
        made.append(memory)
        return memory

    yield make
    for memory in made:
        memory.vector_store.client.close()


def _stored(memory: Memory) -> list[str]:
    return [item["memory"] for item in memory.get_all(filters={"user_id": USER})["results"]]


def _chat_bodies(server: FakeOllamaServer, model: str | None = None) -> list[dict[str, Any]]:
    bodies = server.requests_to("/api/chat")
    return [b for b in bodies if model is None or b.get("model") == model]


def _has_all_facts(texts: list[str]) -> bool:
    joined = " ".join(texts)
    return all(fact in joined for fact in FACTS)


def test_add_and_search_despite_long_extraction_prompt(
    make_memory: Any, tmp_path: Path, ollama_server: FakeOllamaServer
) -> None:
    memory = make_memory(
        _config(tmp_path, {"ollama_base_url": ollama_server.url}, {"ollama_base_url": ollama_server.url})
    )
    result = memory.add(CONVERSATION, user_id=USER)
    assert result["results"], "the extraction answer was lost"
    stored = _stored(memory)
    assert _has_all_facts(stored), stored
    # mem0's ~8k-token prompt only fits because the router asked for a bigger context than 2048
    chats = _chat_bodies(ollama_server)
    assert chats and all((b.get("options") or {}).get("num_ctx", 0) > 2048 for b in chats)
    found = memory.search("Where does Alice live?", filters={"user_id": USER}, top_k=3)["results"]
    assert any("Lisbon" in hit["memory"] for hit in found), found
    metrics = memory.llm.router.get_metrics()
    assert metrics["external_queries"] == 0 and metrics["local_queries"] >= 1


def test_local_invalid_json_is_recovered(
    make_memory: Any, tmp_path: Path, ollama_server: FakeOllamaServer, openai_server: FakeOpenAIServer
) -> None:
    ollama_server.set_fault("invalid_json", model="mistral:7b", times=1, paths=["/api/chat"])
    llm = {
        "ollama_base_url": ollama_server.url,
        "openai_api_key": DEFAULT_TEST_KEY,
        "openai_base_url": openai_server.base_url,
    }
    memory = make_memory(_config(tmp_path, llm, {"ollama_base_url": ollama_server.url}))
    memory.add(CONVERSATION, user_id=USER)
    stored = _stored(memory)
    assert _has_all_facts(stored), stored
    assert len(_chat_bodies(ollama_server)) + len(openai_server.requests_to("/v1/chat/completions")) >= 2


def test_ollama_down_falls_back_to_openai(
    make_memory: Any, tmp_path: Path, ollama_server: FakeOllamaServer, openai_server: FakeOpenAIServer
) -> None:
    with FakeOllamaServer() as chat_host:
        chat_host.set_fault("refused")  # the LLM's Ollama is down; embeddings still have a host
        llm = {
            "ollama_base_url": chat_host.url,
            "openai_api_key": DEFAULT_TEST_KEY,
            "openai_base_url": openai_server.base_url,
            **OLLAMA_ONLY,
        }
        memory = make_memory(_config(tmp_path, llm, {"ollama_base_url": ollama_server.url}))
        memory.add(CONVERSATION, user_id=USER)
    stored = _stored(memory)
    assert _has_all_facts(stored), stored
    assert openai_server.requests_to("/v1/chat/completions"), "the fallback was not used"
    assert memory.llm.router.get_metrics()["external_queries"] >= 1


def test_ollama_down_without_key_raises_a_clear_error(
    make_memory: Any, tmp_path: Path, ollama_server: FakeOllamaServer
) -> None:
    with FakeOllamaServer() as chat_host:
        chat_host.set_fault("refused")
        llm = {"ollama_base_url": chat_host.url, **OLLAMA_ONLY}
        memory = make_memory(_config(tmp_path, llm, {"ollama_base_url": ollama_server.url}))
        with pytest.raises(LLMError) as info:
            memory.add(CONVERSATION, user_id=USER)
    message = str(info.value)
    assert "ollama" in message.lower()
    assert "OPENAI_API_KEY" in message or "openai_api_key" in message, message  # names the fix
    assert _stored(memory) == []


def test_llm_reranker_calls_go_local(
    make_memory: Any, tmp_path: Path, ollama_server: FakeOllamaServer, openai_server: FakeOpenAIServer
) -> None:
    llm = {
        "ollama_base_url": ollama_server.url,
        "openai_api_key": DEFAULT_TEST_KEY,
        "openai_base_url": openai_server.base_url,
    }
    reranker = {
        "provider": "llm_reranker",
        "config": {"llm": {"provider": "routed", "config": {**FAST, **llm}}},
    }
    memory = make_memory(_config(tmp_path, llm, {"ollama_base_url": ollama_server.url}, reranker=reranker))
    memory.add(CONVERSATION, user_id=USER)
    before = len(_chat_bodies(ollama_server))
    hits = memory.search("Where does Alice live?", filters={"user_id": USER}, top_k=3, rerank=True)["results"]
    assert hits
    scoring = [
        b
        for b in _chat_bodies(ollama_server)[before:]
        if "relevance" in str(b.get("messages", [{}])[0]).lower()
    ]
    assert len(scoring) == len(hits)  # one local call per candidate document
    assert all(b["model"] != "gpt-5-mini" for b in scoring)
    assert openai_server.requests_to("/v1/chat/completions") == []
    metrics = memory.reranker.llm.router.get_metrics()
    assert metrics["by_call_kind"].get("mem0_reranker", 0) >= len(hits)
    assert metrics["external_queries"] == 0


def test_procedural_memory(make_memory: Any, tmp_path: Path, ollama_server: FakeOllamaServer) -> None:
    memory = make_memory(
        _config(tmp_path, {"ollama_base_url": ollama_server.url}, {"ollama_base_url": ollama_server.url})
    )
    steps = [
        {"role": "user", "content": "Open the browser and search for flights to Lisbon."},
        {"role": "assistant", "content": "I opened the browser and found three flights to Lisbon."},
    ]
    result = memory.add(steps, agent_id="travel-agent", memory_type="procedural_memory")
    assert result["results"] and result["results"][0]["memory"].strip()
    stored = memory.get_all(filters={"agent_id": "travel-agent"})["results"]
    assert len(stored) == 1 and stored[0]["metadata"]["memory_type"] == "procedural_memory"


async def test_async_memory_add_and_search(
    make_memory: Any, tmp_path: Path, ollama_server: FakeOllamaServer
) -> None:
    config = _config(tmp_path, {"ollama_base_url": ollama_server.url}, {"ollama_base_url": ollama_server.url})
    memory = make_memory(config, AsyncMemory)
    await memory.add(CONVERSATION, user_id=USER)
    stored = [m["memory"] for m in (await memory.get_all(filters={"user_id": USER}))["results"]]
    assert _has_all_facts(stored), stored
    found = (await memory.search("Who is allergic to peanuts?", filters={"user_id": USER}, top_k=3))[
        "results"
    ]
    assert any("peanuts" in hit["memory"] for hit in found), found


def test_vision_message_is_described_then_stored(
    make_memory: Any, tmp_path: Path, ollama_server: FakeOllamaServer
) -> None:
    llm = {"ollama_base_url": ollama_server.url, "enable_vision": True}
    memory = make_memory(_config(tmp_path, llm, {"ollama_base_url": ollama_server.url}))
    pixel = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    image_message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "Look at my cat."},
            {"type": "image_url", "image_url": {"url": pixel}},
        ],
    }
    memory.add([image_message, {"role": "user", "content": "My cat is called Miso."}], user_id=USER)
    chats = _chat_bodies(ollama_server)
    vision_calls = [b for b in chats if any(m.get("images") for m in b.get("messages", []))]
    assert vision_calls, "the image never reached the local model"
    assert any("Miso" in text for text in _stored(memory))


# --- one exception type for mem0 users, whichever provider fails -------------------------------------


def _down_configs(tmp_path: Path, up: FakeOllamaServer, down: FakeOllamaServer) -> dict[str, dict[str, Any]]:
    """"everything down" (the embedder fails first) and "chat host down" (mem0 wraps the LLM's error)."""
    return {
        "all": _config(tmp_path, {"ollama_base_url": down.url, **OLLAMA_ONLY},
                       {"ollama_base_url": down.url, **OLLAMA_ONLY}),
        "llm": _config(tmp_path, {"ollama_base_url": down.url, **OLLAMA_ONLY},
                       {"ollama_base_url": up.url, **OLLAMA_ONLY}),
    }


def _assert_one_type(exc: BaseException, provider: str) -> None:
    from mem0.exceptions import EmbeddingError
    from mem0.exceptions import MemoryError as Mem0Error

    from mem0_routed import routing_error

    assert isinstance(exc, Mem0Error), type(exc)
    assert isinstance(exc, LLMError if provider == "llm" else EmbeddingError), type(exc)
    routed = routing_error(exc)
    assert routed is not None and routed.attempts
    assert any("start Ollama" in fix for fix in routed.fixes), routed.fixes


def test_ollama_down_is_one_exception_type_for_memory(
    make_memory: Any, tmp_path: Path, ollama_server: FakeOllamaServer
) -> None:
    from mem0.exceptions import MemoryError as Mem0Error

    with FakeOllamaServer() as down:
        down.set_fault("refused")
        for provider, config in _down_configs(tmp_path, ollama_server, down).items():
            reset()
            memory = make_memory(config)
            with pytest.raises(Mem0Error) as info:
                memory.add(CONVERSATION, user_id=USER)
            _assert_one_type(info.value, provider)
            if provider == "all":
                with pytest.raises(Mem0Error) as info:
                    memory.search("Where does Alice live?", filters={"user_id": USER})
                _assert_one_type(info.value, "embedder")
            memory.vector_store.client.close()  # the next config reuses the Qdrant path


async def test_ollama_down_is_one_exception_type_for_async_memory(
    make_memory: Any, tmp_path: Path, ollama_server: FakeOllamaServer
) -> None:
    from mem0.exceptions import MemoryError as Mem0Error

    with FakeOllamaServer() as down:
        down.set_fault("refused")
        for provider, config in _down_configs(tmp_path, ollama_server, down).items():
            reset()
            memory = make_memory(config, AsyncMemory)
            with pytest.raises(Mem0Error) as info:
                await memory.add(CONVERSATION, user_id=USER)
            _assert_one_type(info.value, provider)
            if provider == "all":
                with pytest.raises(Mem0Error) as info:
                    await memory.search("Where does Alice live?", filters={"user_id": USER})
                _assert_one_type(info.value, "embedder")
            memory.vector_store.client.close()


def test_fix_hint_names_the_configured_model_and_its_real_failure(
    make_memory: Any, tmp_path: Path, ollama_server: FakeOllamaServer
) -> None:
    """The issue's case: the user's model answers invalid JSON; the seed's medium model (a stand-in
    the user never configured) is not pulled. The fix is about the user's model, not a pull."""
    from mem0_routed import routing_error

    ollama_server.add_model("qwen2.5-coder:0.5b")
    ollama_server.remove_model("codellama:13b")
    ollama_server.set_fault("invalid_json", model="qwen2.5-coder:0.5b", paths=["/api/chat"])
    llm = {"ollama_base_url": ollama_server.url, "model": "qwen2.5-coder:0.5b", **OLLAMA_ONLY}
    memory = make_memory(_config(tmp_path, llm, {"ollama_base_url": ollama_server.url}))
    with pytest.raises(LLMError) as info:
        memory.add(CONVERSATION, user_id=USER)
    routed = routing_error(info.value)
    assert routed is not None
    message = str(info.value)
    assert routed.fixes[0].startswith("qwen2.5-coder:0.5b answered but its answer was rejected"), routed.fixes
    assert "ollama pull qwen2.5-coder:0.5b" not in message  # it is present
    assert "To fix: ollama pull codellama:13b" not in message
    assert any(f.startswith("optional: run `ollama pull codellama:13b`") for f in routed.fixes)
    assert "set OPENAI_API_KEY" in message  # why the external fallback was not used


_QUIET_SCRIPT = r'''
import logging, sys
import mem0_routed
from mem0 import Memory
from mem0.exceptions import MemoryError as Mem0Error
if sys.argv[2] == "info":
    logging.basicConfig(level=logging.WARNING, format="%(name)s|%(message)s")
    logging.getLogger("mem0_routed").setLevel(logging.INFO)
down = {"ollama_base_url": sys.argv[1], "local_backend": "ollama", "max_retries": 2, "ledger": "memory"}
memory = Memory.from_config({
    "llm": {"provider": "routed", "config": down},
    "embedder": {"provider": "routed", "config": {**down, "embedding_dims": 768}},
    "vector_store": {"provider": "qdrant", "config": {"path": sys.argv[3], "embedding_model_dims": 768}},
    "history_db_path": sys.argv[3] + "/history.db",
})
try:
    memory.add([{"role": "user", "content": "I live in Lisbon."}], user_id="alice")
except Mem0Error as exc:
    print("caught", type(exc).__name__)
import stamina  # a retry outside the router keeps stamina's own logging
for attempt in stamina.retry_context(on=ValueError, attempts=2, wait_initial=0.01, wait_max=0.01):
    with attempt:
        if attempt.num == 1:
            raise ValueError("outside")
'''


@pytest.mark.parametrize("logging_setup", ["none", "info"])
def test_dependency_log_lines_go_through_the_package_logger(tmp_path: Path, logging_setup: str) -> None:
    """Ollama down, no logging configured: no bare `stamina.retry_scheduled` lines from the router."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once the socket is closed
    env = {**os.environ, "MEM0_TELEMETRY": "False", "MEM0_DIR": str(tmp_path / "mem0")}
    out = subprocess.run([sys.executable, "-c", _QUIET_SCRIPT, dead, logging_setup, str(tmp_path / "q")],
                         capture_output=True, text=True, timeout=240, env=env, check=True)
    assert "caught RoutedEmbeddingError" in out.stdout, out.stdout + out.stderr
    retry_lines = [line for line in out.stderr.splitlines() if "stamina.retry_scheduled" in line]
    assert len(retry_lines) == 1, out.stderr  # only the retry outside the router
    if logging_setup == "info":
        assert "stamina|stamina.retry_scheduled" in retry_lines[0]
        ours = [line for line in out.stderr.splitlines() if line.startswith("mem0_routed|mem0-routed: retry")]
        assert len(ours) >= 2 and "not reachable" in ours[0], out.stderr  # max_retries=2, with the cause
