"""RoutedEmbedder against a fake router: one model per config, batched calls, dims checked early."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from mem0.configs.embeddings.base import BaseEmbedderConfig
from mem0.configs.vector_stores.qdrant import QdrantConfig
from mem0.utils.factory import EmbedderFactory

from mem0_routed import ConfigError, _mem0, register
from mem0_routed._config import DEFAULT_EMBEDDING_MODEL
from mem0_routed._mem0 import RoutedEmbedder


@pytest.fixture(autouse=True)
def _registered() -> None:
    register()


@pytest.fixture
def router(mocker: Any) -> Any:
    fake = mocker.Mock(name="Router")
    fake.embed.side_effect = lambda texts, model=None, dims=None: [[float(len(t)), 1.0] for t in texts]
    mocker.patch.object(_mem0, "_router_for", return_value=fake)
    return fake


def test_default_model_and_env_override(monkeypatch: Any) -> None:
    monkeypatch.delenv("MEM0_EMBEDDER_MODEL", raising=False)
    assert RoutedEmbedder({}).model == DEFAULT_EMBEDDING_MODEL
    monkeypatch.setenv("MEM0_EMBEDDER_MODEL", "mxbai-embed-large:latest")
    assert RoutedEmbedder({}).model == "mxbai-embed-large:latest"
    assert RoutedEmbedder({"model": "all-minilm:latest"}).model == "all-minilm:latest"  # config wins


def test_embed_calls_router_with_dims_and_the_model_in_its_config(router: Any) -> None:
    emb = RoutedEmbedder({"model": "all-minilm:latest", "embedding_dims": 2})
    assert emb.embed("hello", "search") == [5.0, 1.0]
    # the router picks the model of its local tier: this config's model on Ollama
    router.embed.assert_called_once_with(["hello"], dims=2)
    assert emb.router_config.models["embedding"] == "all-minilm:latest"


def test_embed_batch_is_one_router_call(router: Any) -> None:
    emb = RoutedEmbedder({"embedding_dims": 2})
    out = emb.embed_batch(["a", "bcd", "ef"], "add")
    assert out == [[1.0, 1.0], [3.0, 1.0], [2.0, 1.0]]
    assert router.embed.call_count == 1
    assert router.embed.call_args.args[0] == ["a", "bcd", "ef"]
    assert emb.embed_batch([], "add") == [] and router.embed.call_count == 1


def test_router_keys_and_urls_are_accepted() -> None:
    emb = RoutedEmbedder(
        {"ollama_base_url": ["http://127.0.0.1:1", "http://127.0.0.1:2"], "embedding_cache_size": 10}
    )
    assert emb.router_config.ollama_urls == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert emb.router_config.embedding_cache_size == 10
    assert emb.config.ollama_base_url == "http://127.0.0.1:1"  # what mem0 code may read


def test_bad_key_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="unknown key 'embeding_dims'"):
        RoutedEmbedder({"embeding_dims": 768})
    with pytest.raises(ConfigError, match="ollama_base_url"):
        RoutedEmbedder({"ollama_base_url": "localhost:11434"})
    with pytest.raises(ConfigError, match="model"):
        RoutedEmbedder({"model": ""})


def test_dims_must_match_the_vector_store() -> None:
    store = QdrantConfig(path="/tmp/unused-qdrant", embedding_model_dims=1536)
    with pytest.raises(ConfigError, match=r"embedding_dims=768.*embedding_model_dims=1536") as info:
        EmbedderFactory.create("routed", {"embedding_dims": 768}, store)
    assert info.value.key == "embedding_dims"


def test_store_dims_are_expected_when_embedder_gives_none(router: Any) -> None:
    store = QdrantConfig(path="/tmp/unused-qdrant", embedding_model_dims=768)
    emb = EmbedderFactory.create("routed", {}, store)
    emb.embed("x", "add")
    assert router.embed.call_args.kwargs["dims"] == 768


def test_built_from_base_embedder_config(router: Any) -> None:
    emb = RoutedEmbedder(
        BaseEmbedderConfig(model="all-minilm", embedding_dims=2, ollama_base_url="http://h:3")
    )
    assert (emb.model, emb.dims, emb.router_config.ollama_urls) == ("all-minilm", 2, ["http://h:3"])


def test_no_network_at_construction(mocker: Any) -> None:
    connect = mocker.patch.object(socket.socket, "connect", side_effect=AssertionError("network used"))
    router_for = mocker.patch.object(_mem0, "_router_for")
    emb = EmbedderFactory.create("routed", {"ollama_base_url": "http://10.255.255.1:11434"}, None)
    assert isinstance(emb, RoutedEmbedder)
    connect.assert_not_called()
    router_for.assert_not_called()


def test_routing_errors_are_mem0_embedding_errors(router: Any) -> None:
    """mem0 lets an embedder's exception through: it must be one a mem0 user already catches."""
    from mem0.exceptions import EmbeddingError
    from mem0.exceptions import MemoryError as Mem0Error

    from mem0_routed import EmbeddingDimensionMismatch, RoutedEmbeddingError, RoutingError
    from mem0_routed._types import Attempt

    original = RoutingError("could not embed 1 text(s)", [Attempt("ollama@h", "nomic", "refused", fix="start Ollama")],
                            blocked_by="embeddings never switch model or leave this machine")
    router.embed.side_effect = original
    emb = RoutedEmbedder({})
    for call in (lambda: emb.embed("hi"), lambda: emb.embed_batch(["a", "b"])):
        with pytest.raises(Mem0Error) as info:
            call()
        err = info.value
        assert isinstance(err, RoutedEmbeddingError) and isinstance(err, EmbeddingError)
        assert isinstance(err, RoutingError) and err.__cause__ is original
        assert str(err) == str(original) and err.suggestion == "start Ollama" and err.error_code == "EMBED_001"
    router.embed.side_effect = EmbeddingDimensionMismatch("768 vs 512")  # a config error stays what it is
    with pytest.raises(EmbeddingDimensionMismatch):
        emb.embed("hi")
