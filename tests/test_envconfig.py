"""The seed's deployment is configured by env vars only: ``mem0_config_from_env`` turns them into a mem0
config for servers that build theirs in code (mem0's REST server passes ``DEFAULT_CONFIG``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import mem0.memory.main as mem0_main
import mem0.memory.telemetry as mem0_telemetry
import pytest
from mem0 import Memory

import mem0_routed
from mem0_routed import ConfigError, mem0_config_from_env
from mem0_routed._mem0 import RoutedEmbedder, RoutedLLM
from mem0_routed._router import reset_routers
from mem0_routed.testing import FakeOllamaServer

SECRET = "sk-env-only-do-not-copy-0123456789"


def _server_default_config(tmp_path: Path) -> dict[str, Any]:
    """The shape of mem0's server/main.py DEFAULT_CONFIG (qdrant on disk instead of pgvector)."""
    return {
        "version": "v1.1",
        "vector_store": {"provider": "qdrant", "config": {
            "path": str(tmp_path / "qdrant"), "collection_name": "memories"}},
        "llm": {"provider": "openai", "config": {"api_key": None, "temperature": 0.2, "model": "gpt-5-mini"}},
        "embedder": {"provider": "openai", "config": {"api_key": None, "model": "text-embedding-3-small"}},
        "history_db_path": str(tmp_path / "history.db"),
    }  # fmt: skip


def _seed_env(url: str) -> dict[str, str]:
    return {
        "MEM0_LLM_PROVIDER": "routed",
        "MEM0_LLM_MODEL": "mistral:7b",
        "MEM0_EMBEDDER_PROVIDER": "routed",
        "MEM0_EMBEDDER_MODEL": "nomic-embed-text:latest",
        "OLLAMA_URL": url,
        "LLM_LOCAL_THRESHOLD": "97",
        "OPENAI_API_KEY": SECRET,
    }


def test_seed_env_selects_routed_and_sizes_the_vector_store(tmp_path: Path) -> None:
    base = _server_default_config(tmp_path)
    before = copy.deepcopy(base)
    config = mem0_config_from_env(base, env=_seed_env("http://ollama:11434"))
    assert base == before  # the caller's dict is not changed
    assert config["llm"] == {"provider": "routed", "config": {"model": "mistral:7b"}}
    assert config["embedder"] == {
        "provider": "routed", "config": {"model": "nomic-embed-text:latest", "embedding_dims": 768}}  # fmt: skip
    assert config["vector_store"]["config"]["embedding_model_dims"] == 768
    assert config["history_db_path"] == base["history_db_path"] and config["version"] == "v1.1"
    # servers echo their config (GET /configure): the key stays in the environment only
    assert SECRET not in json.dumps(config)


def test_unset_provider_vars_leave_the_base_alone(tmp_path: Path) -> None:
    base = _server_default_config(tmp_path)
    assert mem0_config_from_env(base, env={"OLLAMA_URL": "http://x:1"}) == base
    assert mem0_config_from_env(env={}) == {}


def test_mem0s_own_ollama_provider_gets_the_url(tmp_path: Path) -> None:
    env = {"MEM0_LLM_PROVIDER": "ollama", "MEM0_LLM_MODEL": "qwen2.5:7b", "OLLAMA_URL": "http://o:11434",
           "MEM0_EMBEDDER_PROVIDER": "ollama"}  # fmt: skip
    config = mem0_config_from_env({}, env=env)
    assert config["llm"] == {"provider": "ollama", "config": {"model": "qwen2.5:7b", "ollama_base_url": "http://o:11434"}}
    assert config["embedder"]["config"] == {"embedding_dims": 768, "ollama_base_url": "http://o:11434"}


def test_unknown_embedding_model_needs_dims(tmp_path: Path) -> None:
    env = {"MEM0_EMBEDDER_PROVIDER": "routed", "MEM0_EMBEDDER_MODEL": "my-embedder:1"}
    config = mem0_config_from_env(_server_default_config(tmp_path), env=env)
    assert "embedding_dims" not in config["embedder"]["config"]
    config = mem0_config_from_env(_server_default_config(tmp_path), env={**env, "MEM0_ROUTED_EMBEDDING_DIMS": "384"})
    assert config["embedder"]["config"]["embedding_dims"] == 384
    assert config["vector_store"]["config"]["embedding_model_dims"] == 384
    with pytest.raises(ConfigError, match="MEM0_ROUTED_EMBEDDING_DIMS='many'"):
        mem0_config_from_env({}, env={**env, "MEM0_ROUTED_EMBEDDING_DIMS": "many"})


@pytest.mark.parametrize(("name", "value", "named"), [
    ("LLM_LOCAL_THRESHOLD", "150", "LLM_LOCAL_THRESHOLD"),
    ("OLLAMA_URL", "ollama:11434", "OLLAMA_URL"),
])  # fmt: skip
def test_bad_router_env_fails_at_start_naming_the_var(name: str, value: str, named: str) -> None:
    env = {"MEM0_LLM_PROVIDER": "routed", name: value}
    with pytest.raises(ConfigError, match=named) as info:
        mem0_config_from_env({}, env=env)
    assert value in str(info.value)


def test_server_style_startup_with_env_only(
    tmp_path: Path, ollama_server: FakeOllamaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What mem0's server does at start, with the helper in front: a real Memory, add and search."""
    for name, value in _seed_env(ollama_server.url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_API_KEY")  # no external fallback here: every call must stay local
    monkeypatch.setenv("MEM0_ROUTED_LOCAL_BACKEND", "ollama")
    monkeypatch.setenv("MEM0_DIR", str(tmp_path / "mem0"))
    monkeypatch.setattr(mem0_main, "MEM0_TELEMETRY", False)
    monkeypatch.setattr(mem0_telemetry, "MEM0_TELEMETRY", False)
    mem0_routed.register()
    reset_routers()
    memory = Memory.from_config(mem0_config_from_env(_server_default_config(tmp_path)))
    try:
        assert isinstance(memory.llm, RoutedLLM) and isinstance(memory.embedding_model, RoutedEmbedder)
        assert memory.llm.router.config.local_threshold == 97.0
        assert memory.add([{"role": "user", "content": "I'm Bob and I live in Oslo."}], user_id="bob")["results"]
        found = memory.search("Where does Bob live?", filters={"user_id": "bob"}, top_k=3)["results"]
        assert any("Oslo" in hit["memory"] for hit in found), found
        assert {b["model"] for b in ollama_server.requests_to("/api/chat")} == {"mistral:7b"}
    finally:
        memory.vector_store.client.close()
        reset_routers()


def test_same_provider_keeps_the_bases_other_settings(tmp_path: Path) -> None:
    base = _server_default_config(tmp_path)
    config = mem0_config_from_env(base, env={"MEM0_LLM_PROVIDER": "openai", "MEM0_LLM_MODEL": "gpt-4.1-mini"})
    assert config["llm"] == {"provider": "openai", "config": {"api_key": None, "temperature": 0.2, "model": "gpt-4.1-mini"}}
    routed = mem0_config_from_env(base, env={"MEM0_LLM_PROVIDER": "routed"})
    assert routed["llm"] == {"provider": "routed", "config": {}}  # OpenAI's keys mean nothing to the router


def test_several_ollama_urls_give_mem0_s_own_providers_the_first() -> None:
    """OLLAMA_URL may list several hosts for the router; mem0's ollama LLM took the list unsplit."""
    from mem0_routed import mem0_config_from_env

    env = {"MEM0_LLM_PROVIDER": "ollama", "MEM0_EMBEDDER_PROVIDER": "ollama",
           "OLLAMA_URL": "http://a:11434, http://b:11434"}
    config = mem0_config_from_env({}, env=env)
    assert config["llm"]["config"]["ollama_base_url"] == "http://a:11434"
    assert config["embedder"]["config"]["ollama_base_url"] == "http://a:11434"
