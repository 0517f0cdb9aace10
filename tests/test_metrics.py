"""compute_metrics / project_cost: arithmetic checked against the records, not typed-in totals."""

from __future__ import annotations

import random

import pytest

from mem0_routed import ConfigError, UsageRecord
from mem0_routed._metrics import compute_metrics, percentile, project_cost
from mem0_routed._prices import external_cost


def rec(*, local: bool = True, kind: str = "query", model: str | None = None, **kw: object) -> UsageRecord:
    return UsageRecord(
        ts=kw.pop("ts", 1.0), call_kind=kind, query_type="simple",  # type: ignore[arg-type]
        model=model or ("llama3.2:3b" if local else "gpt-4o-mini"),
        backend="ollama" if local else "openai", is_local=local, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_no_records_is_all_local_and_on_target() -> None:
    m = compute_metrics([], local_threshold=95.0)
    assert m["total_queries"] == 0
    assert m["local_percentage"] == 100.0
    assert m["external_percentage"] == 0.0
    assert m["on_target"] is True
    assert m["avg_cost_per_query"] == 0.0
    assert m["latency_p50_s"] == 0.0


def test_shares_costs_and_target() -> None:
    rng = random.Random(7)
    records = [rec(local=rng.random() < 0.9, cost_usd=rng.random() / 100) for _ in range(200)]
    local = sum(r.is_local for r in records)
    m = compute_metrics(records, local_threshold=95.0)
    assert m["total_queries"] == 200
    assert m["local_queries"] == local
    assert m["external_queries"] == 200 - local
    assert m["local_percentage"] == pytest.approx(100 * local / 200, abs=0.01)
    assert m["local_percentage"] + m["external_percentage"] == pytest.approx(100.0)
    assert m["total_cost"] == pytest.approx(sum(r.cost_usd for r in records), abs=1e-6)
    assert m["avg_cost_per_query"] == pytest.approx(m["total_cost"] / 200, abs=1e-8)
    assert m["on_target"] is (100 * local / 200 >= 95.0)
    assert compute_metrics(records, local_threshold=100 * local / 200)["on_target"] is True
    assert compute_metrics(records, local_threshold=100 * local / 200 + 0.5)["on_target"] is False


def test_embeddings_are_counted_apart_from_the_query_share() -> None:
    records = [rec(), rec(local=False, cost_usd=0.01)] + [rec(kind="embedding", model="nomic-embed-text")] * 8
    records.append(rec(kind="embedding", local=False, model="text-embedding-3-small", cost_usd=0.002))
    m = compute_metrics(records, local_threshold=95.0)
    assert (m["total_queries"], m["local_queries"], m["external_queries"]) == (2, 1, 1)
    assert m["local_percentage"] == 50.0
    assert (m["embeddings_total"], m["embeddings_local"], m["embeddings_external"]) == (9, 8, 1)
    assert m["total_cost"] == pytest.approx(0.012)
    assert m["by_call_kind"] == {"embedding": 9, "query": 2}


def test_latency_percentiles_per_model() -> None:
    fast = [0.1 * i for i in range(1, 21)]
    slow = [1.0 + i for i in range(10)]
    records = [rec(model="a", latency_s=v) for v in fast] + [rec(model="b", latency_s=v) for v in slow]
    random.Random(1).shuffle(records)
    m = compute_metrics(records, local_threshold=95.0)
    a, b = m["latency_by_model"]["a"], m["latency_by_model"]["b"]
    assert a["calls"] == 20 and b["calls"] == 10
    assert a["latency_p50_s"] == pytest.approx(percentile(sorted(fast), 50))
    assert b["latency_p95_s"] == pytest.approx(percentile(sorted(slow), 95))
    assert min(fast) <= a["latency_p50_s"] <= a["latency_p95_s"] <= max(fast)
    assert m["latency_p95_s"] == pytest.approx(percentile(sorted(fast + slow), 95))


def test_percentile_interpolates() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 3.0], 50) == pytest.approx(2.0)
    assert percentile([0.0, 10.0, 20.0, 30.0, 40.0], 95) == pytest.approx(38.0)


def test_escalations_fallbacks_errors_tokens_and_cache() -> None:
    records = [
        rec(escalations=["invalid json"], tokens_in=100, tokens_out=10),
        rec(
            local=False, escalations=["invalid json", "timeout"], fallback=True, tokens_in=200, tokens_out=20
        ),
        rec(outcome="error", error="boom"),
        rec(outcome="blocked"),
    ]
    m = compute_metrics(records, local_threshold=95.0, embedding_cache={"hits": 3, "misses": 1, "size": 4})
    assert m["escalations_by_reason"] == {"invalid json": 2, "timeout": 1}
    assert m["escalated_calls"] == 2
    assert (m["fallbacks"], m["errors"], m["blocked"]) == (1, 1, 1)
    assert (m["tokens_in"], m["tokens_out"]) == (300, 30)
    assert m["embedding_cache_hit_rate"] == 75.0
    assert m["embedding_cache"]["size"] == 4
    assert "embedding_cache_hit_rate" not in compute_metrics(records, local_threshold=95.0)


def test_failed_calls_are_errors_not_local_successes() -> None:
    """2 of 5 mem0 adds failed: the share counts the 3 served calls, the failures are reported."""
    records = [rec(kind="mem0_extraction", latency_s=2.0) for _ in range(3)]
    records += [rec(kind="mem0_extraction", outcome="error", error="timed out", latency_s=300.0,
                    escalations=["local mistral:7b failed"]) for _ in range(2)]  # fmt: skip
    records += [rec(kind="embedding", model="nomic-embed-text")] * 4 + [rec(kind="embedding", outcome="error")]
    m = compute_metrics(records, local_threshold=95.0)
    assert (m["calls"], m["total_queries"], m["local_queries"], m["failed_queries"]) == (5, 3, 3, 2)
    assert m["error_rate"] == 40.0 and m["errors"] == 3  # two LLM calls and one embedding
    assert (m["embeddings_total"], m["embeddings_local"], m["embeddings_failed"]) == (5, 4, 1)
    assert m["local_percentage"] == 100.0 and m["on_target"] is True  # of what was served
    assert m["latency_p95_s"] == 2.0  # the timeouts' 300 s belong to no model that answered
    assert m["by_outcome"] == {"ok": 7, "error": 3}


def test_a_failure_never_raises_the_local_share() -> None:
    records = [rec(), rec(local=False)] + [rec(outcome="error")] * 8 + [rec(outcome="blocked")]
    m = compute_metrics(records, local_threshold=95.0)
    assert (m["total_queries"], m["local_percentage"], m["on_target"]) == (2, 50.0, False)
    assert (m["failed_queries"], m["blocked"]) == (9, 1)


def test_degraded_calls_are_served_and_counted() -> None:
    records = [rec(outcome="degraded"), rec()]  # type: ignore[arg-type]
    m = compute_metrics(records, local_threshold=95.0)
    assert (m["total_queries"], m["local_queries"], m["degraded"], m["failed_queries"]) == (2, 2, 1, 0)


def test_project_cost_ignores_failed_calls_in_the_mix() -> None:
    records = [rec(tokens_in=1000, tokens_out=100)] * 9 + [rec(local=False, tokens_in=1000, tokens_out=100)]
    records += [rec(outcome="error")] * 10
    assert project_cost(1000, records)["local_percentage"] == 90.0


def test_threshold_must_be_a_percentage() -> None:
    with pytest.raises(ConfigError, match="local_threshold=950"):
        compute_metrics([], local_threshold=950)


def test_project_cost_with_defaults_uses_real_prices() -> None:
    p = project_cost(3000, None, default_tokens_in=1500, default_tokens_out=300)
    per_query = external_cost("gpt-4o-mini", 1500, 300)
    assert per_query > 0
    assert p["external_cost_per_query"] == pytest.approx(per_query)
    assert p["monthly_cost_all_external"] == pytest.approx(3000 * per_query)
    assert p["monthly_cost_at_current_mix"] == pytest.approx(3000 * 0.05 * per_query)
    assert p["monthly_savings"] == pytest.approx(
        p["monthly_cost_all_external"] - p["monthly_cost_at_current_mix"]
    )
    assert p["savings_percentage"] == pytest.approx(95.0)
    assert (p["mix_source"], p["tokens_source"]) == ("assumed", "default")


def test_project_cost_uses_observed_mix_and_tokens() -> None:
    records = [rec(tokens_in=1000, tokens_out=100)] * 8 + [
        rec(local=False, tokens_in=3000, tokens_out=500)
    ] * 2
    records += [rec(kind="embedding", tokens_in=50_000)] * 5  # not queries: ignored
    avg_in, avg_out = (8 * 1000 + 2 * 3000) / 10, (8 * 100 + 2 * 500) / 10
    p = project_cost(10_000, records)
    per_query = external_cost("gpt-4o-mini", round(avg_in), round(avg_out))
    assert p["tokens_in_per_query"] == avg_in and p["tokens_out_per_query"] == avg_out
    assert p["local_percentage"] == 80.0
    assert p["monthly_cost_at_current_mix"] == pytest.approx(10_000 * 0.2 * per_query)
    assert p["monthly_cost_all_external"] == pytest.approx(10_000 * per_query)
    assert (p["mix_source"], p["tokens_source"]) == ("observed", "observed")


def test_project_cost_refuses_unknown_model_and_negative_volume() -> None:
    with pytest.raises(ConfigError, match="not-a-real-model"):
        project_cost(100, None, external_model="not-a-real-model")
    with pytest.raises(ConfigError, match="queries_per_month"):
        project_cost(-1, None)
    assert project_cost(0, None)["monthly_cost_all_external"] == 0.0


# --- Prometheus hook ----------------------------------------------------------------------------


def test_prometheus_hook_counts_records() -> None:
    from prometheus_client import CollectorRegistry

    from mem0_routed import PrometheusHook

    registry = CollectorRegistry()
    hook = PrometheusHook(registry=registry, namespace="t")
    records = [
        rec(tokens_in=100, tokens_out=10, latency_s=0.2),
        rec(tokens_in=50, tokens_out=5, latency_s=0.4, escalations=["invalid json"]),
        rec(local=False, cost_usd=0.002, tokens_in=1000, tokens_out=200, latency_s=1.5, outcome="escalated",
            escalations=["invalid json", "timeout"]),
    ]  # fmt: skip
    for r in records:
        hook(r)
    get = registry.get_sample_value
    local = {
        "backend": "ollama",
        "model": "llama3.2:3b",
        "is_local": "true",
        "call_kind": "query",
        "outcome": "ok",
    }
    assert get("t_calls_total", local) == 2
    assert get("t_calls_total", {**local, "backend": "openai", "model": "gpt-4o-mini", "is_local": "false",
                                 "outcome": "escalated"}) == 1  # fmt: skip
    assert get("t_cost_usd_total") == pytest.approx(0.002)
    assert get("t_tokens_total", {"direction": "in"}) == 1150
    assert get("t_tokens_total", {"direction": "out"}) == 215
    assert get("t_escalations_total", {"reason": "invalid json"}) == 2
    assert get("t_escalations_total", {"reason": "timeout"}) == 1
    lat = {"backend": "ollama", "model": "llama3.2:3b"}
    assert get("t_latency_seconds_count", lat) == 2
    assert get("t_latency_seconds_sum", lat) == pytest.approx(0.6)


def test_prometheus_hook_twice_on_one_registry_shares_collectors() -> None:
    from prometheus_client import CollectorRegistry

    from mem0_routed import PrometheusHook

    registry = CollectorRegistry()
    PrometheusHook(registry=registry)(rec())
    PrometheusHook(registry=registry)(rec())
    labels = {
        "backend": "ollama",
        "model": "llama3.2:3b",
        "is_local": "true",
        "call_kind": "query",
        "outcome": "ok",
    }
    assert registry.get_sample_value("mem0_routed_calls_total", labels) == 2


def test_prometheus_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mem0_routed import PrometheusHook

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install 'mem0-routed\[prometheus\]'"):
        PrometheusHook()


def test_importing_metrics_modules_loads_no_optional_dependency() -> None:
    import subprocess
    import sys

    code = (
        "import sys, mem0_routed._metrics, mem0_routed._prometheus, mem0_routed._ledger, "
        "mem0_routed._ledger._redis, mem0_routed._privacy, mem0_routed._prices; "
        "print(sorted(m for m in ('redis', 'prometheus_client', 'genai_prices', 'platformdirs') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
