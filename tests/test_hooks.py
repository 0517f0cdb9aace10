"""Process-wide instrumentation hooks reach every router, mem0's included; a failing hook never
fails a call."""

from __future__ import annotations

import pytest

import mem0_routed
from mem0_routed import Router, RouterConfig
from mem0_routed._router import reset_routers


@pytest.fixture(autouse=True)
def _fresh():
    reset_routers()
    yield
    reset_routers()


def test_add_hook_sees_every_router_and_remove_hook_stops_it(ollama_server) -> None:
    seen = []
    mem0_routed.add_hook(seen.append)
    mem0_routed.add_hook(seen.append)  # idempotent
    try:
        a = Router(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, local_backend="ollama"))
        b = Router(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, local_backend="ollama",
                                             max_retries=0))
        a.chat([{"role": "user", "content": "one"}])
        b.embed(["two"])
        assert [r.call_kind for r in seen] == ["query", "embedding"]
    finally:
        mem0_routed.remove_hook(seen.append)
    a.chat([{"role": "user", "content": "three"}])
    assert len(seen) == 2


def test_prometheus_hook_counts_routed_calls(ollama_server) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    hook = mem0_routed.PrometheusHook(registry=registry)
    mem0_routed.add_hook(hook)
    try:
        router = Router(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, local_backend="ollama"))
        router.chat([{"role": "user", "content": "hello"}])
        router.chat([{"role": "user", "content": "hello again"}])
    finally:
        mem0_routed.remove_hook(hook)
    total = sum(s.value for m in registry.collect() for s in m.samples
                if s.name.endswith("calls_total") and s.labels.get("model") == "mistral:7b")
    assert total == 2


def test_a_failing_hook_is_logged_not_raised(ollama_server, caplog) -> None:
    def broken(record):
        raise RuntimeError("exporter down")

    mem0_routed.add_hook(broken)
    try:
        router = Router(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, local_backend="ollama"))
        assert router.chat([{"role": "user", "content": "hi"}]).text
    finally:
        mem0_routed.remove_hook(broken)
    assert "exporter down" in caplog.text
