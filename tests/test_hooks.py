"""Process-wide instrumentation hooks reach every router, mem0's included; a failing hook never
fails a call."""

from __future__ import annotations

import pytest

import mem0_routed
from mem0_routed import Router, RouterConfig

pytestmark = pytest.mark.usefixtures("fresh")


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


def test_exporter_env_var_bad_values_warn_never_raise(monkeypatch, caplog) -> None:
    import socket

    from mem0_routed import _prometheus

    monkeypatch.setattr(_prometheus, "_exporter", None)
    monkeypatch.setattr(_prometheus, "start_exporter", lambda *a, **k: pytest.fail("must not start"))
    for bad in ("abc", "0", "70000"):
        monkeypatch.setenv("MEM0_ROUTED_PROMETHEUS_PORT", bad)
        _prometheus.start_from_env()
        assert f"MEM0_ROUTED_PROMETHEUS_PORT={bad!r} is not a TCP port" in caplog.text
    monkeypatch.undo()
    monkeypatch.setattr(_prometheus, "_exporter", None)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("MEM0_ROUTED_PROMETHEUS_PORT", str(busy.getsockname()[1]))
        monkeypatch.setenv("MEM0_ROUTED_PROMETHEUS_ADDR", "127.0.0.1")
        _prometheus.start_from_env()  # the port is taken: a warning, the program goes on
    assert "Prometheus exporter not started" in caplog.text
    assert _prometheus._exporter is None


def test_scrape_time_gauges(ollama_server) -> None:
    import gc

    from prometheus_client import CollectorRegistry, generate_latest

    gc.collect()  # routers of earlier tests (a weak set) would report their own "memory" ledgers
    registry = CollectorRegistry()
    hook = mem0_routed.PrometheusHook(registry=registry)
    mem0_routed.add_hook(hook)
    try:
        router = Router(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, local_backend="ollama",
                                                  local_threshold=80, monthly_budget_usd=2.5))
        router.chat([{"role": "user", "content": "hello"}])
        router.embed(["x"])
        router.embed(["x"])
    finally:
        mem0_routed.remove_hook(hook)
    text = generate_latest(registry).decode()
    assert 'mem0_routed_local_share_ratio{ledger="memory"} 1.0' in text
    assert 'mem0_routed_local_share_target_ratio{ledger="memory"} 0.8' in text
    assert 'mem0_routed_month_budget_usd{ledger="memory"} 2.5' in text
    assert 'mem0_routed_num_ctx_tokens{model="mistral:7b"}' in text
    assert "mem0_routed_embedding_cache_hits_total 1.0" in text
    assert f'mem0_routed_breaker_state{{backend="ollama@{ollama_server.url}"}} 0.0' in text



def test_testing_reset_puts_the_process_back_to_a_fresh_state(ollama_server, monkeypatch) -> None:
    from mem0_routed._process import LOCAL_KINDS, PROCESS_RECORDS
    from mem0_routed._speed import SPEEDS, Speed
    from mem0_routed.testing import reset

    monkeypatch.setenv("OLLAMA_URL", ollama_server.url)
    seen: list[object] = []
    mem0_routed.add_hook(seen.append)
    singleton = mem0_routed.get_router()
    router = Router(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, local_backend="auto",
                                              breaker_failures=1))
    router.chat([{"role": "user", "content": "hi"}])
    backend = router.runtime.backends("ollama")[0]
    assert router.ledger is not None
    router.runtime.breaker(backend).failure("down")
    SPEEDS.set(ollama_server.url, "m", Speed(100.0, 10.0))
    assert seen and PROCESS_RECORDS and LOCAL_KINDS and router.get_metrics()["breakers"]
    assert backend._client is not None  # the sync HTTP client is open

    reset()

    assert backend._client is None  # closed
    assert router.runtime.opened_ledger() is None  # the router was closed (its ledger reopens on its next call)
    assert not PROCESS_RECORDS and not LOCAL_KINDS and SPEEDS.get(ollama_server.url, "m") == Speed()
    assert mem0_routed.get_router() is not singleton
    fresh_router = Router(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, local_backend="ollama"))
    assert fresh_router.get_metrics()["breakers"] == {} and fresh_router.get_metrics()["total_queries"] == 0
    assert fresh_router.runtime.backends("ollama")[0] is not backend  # a new client
    fresh_router.chat([{"role": "user", "content": "hi"}])
    assert len(seen) == 1  # the hook is gone
