"""Metrics over ledger records, and what a month would cost at the current local/external mix.

"Queries" are LLM calls (mem0's extraction, reranking, ... and free-form queries). Embedding calls
are counted apart (``embeddings_*``) and left out of the local share: they are many, nearly always
local, and counting them would make the >=95 % local target look met when the LLM calls are not.
Their cost still counts in ``total_cost`` (money is money).

Only *served* calls count in the share: a call that failed (outcome ``error``) or was refused
(``blocked``) was neither answered locally nor externally, and counting it as local made a run with
failed adds report "100 % local, on target". Failures are reported on their own (``failed_queries``,
``errors``, ``error_rate``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import ConfigError
from ._records import EMBEDDING, FAILED_OUTCOMES, UNSERVED, UsageRecord
from ._types import QueryMetrics

__all__ = ["compute_metrics", "percentile", "project_cost", "query_metrics"]

#: An answer was served but marked degraded (e.g. the valid items before a repetition loop).
DEGRADED: str = "degraded"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of already sorted values; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _latency(values: list[float]) -> dict[str, float]:
    values.sort()
    return {
        "calls": len(values),
        "latency_p50_s": percentile(values, 50),
        "latency_p95_s": percentile(values, 95),
    }


def compute_metrics(
    records: Sequence[UsageRecord],
    *,
    local_threshold: float,
    embedding_cache: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``query_metrics(...).to_dict()``: the seed's metrics dict and the extra keys."""
    return query_metrics(records, local_threshold=local_threshold, embedding_cache=embedding_cache).to_dict()


def query_metrics(
    records: Sequence[UsageRecord],
    *,
    local_threshold: float,
    embedding_cache: Mapping[str, Any] | None = None,
) -> QueryMetrics:
    """The seed's metrics (``QueryMetrics.to_dict`` keys) plus failures, latency, escalations, tokens.

    ``total_queries``/``local_queries``/``external_queries`` (and so the shares and ``on_target``)
    count served LLM calls; ``calls`` counts every LLM call, ``failed_queries`` the ones that got
    no answer. Latency percentiles are over served calls. ``local_threshold`` is a percentage (95.0). ``embedding_cache`` is the cache's stats with
    ``hits`` and ``misses``; its hit rate (percent) is added as ``embedding_cache_hit_rate``.
    """
    if not 0.0 <= local_threshold <= 100.0:
        raise ConfigError(
            f"local_threshold={local_threshold!r} must be a percentage between 0 and 100 (e.g. 95.0)",
            key="local_threshold",
        )
    queries = [r for r in records if r.call_kind != EMBEDDING]
    served = [r for r in queries if r.outcome not in UNSERVED]
    embeddings = [r for r in records if r.call_kind == EMBEDDING]
    embedded = [r for r in embeddings if r.outcome not in FAILED_OUTCOMES]
    local = sum(1 for r in served if r.is_local)
    by_model: dict[str, list[float]] = defaultdict(list)
    escalations: Counter[str] = Counter()
    for r in records:
        if r.outcome not in UNSERVED:  # a failure's model is the one that did *not* answer
            by_model[r.model].append(r.latency_s)
        escalations.update(r.escalations)
    query_latencies = sorted(r.latency_s for r in served)
    failed = sum(1 for r in queries if r.outcome in FAILED_OUTCOMES)
    extra: dict[str, Any] = {
        "calls": len(queries),
        "failed_queries": failed,
        "error_rate": round(100.0 * failed / len(queries), 2) if queries else 0.0,
        "embeddings_total": len(embeddings),
        "embeddings_local": sum(1 for r in embedded if r.is_local),
        "embeddings_external": sum(1 for r in embedded if not r.is_local),
        "embeddings_failed": len(embeddings) - len(embedded),
        "tokens_in": sum(r.tokens_in for r in records),
        "tokens_out": sum(r.tokens_out for r in records),
        "latency_p50_s": percentile(query_latencies, 50),
        "latency_p95_s": percentile(query_latencies, 95),
        "latency_by_model": {m: _latency(v) for m, v in sorted(by_model.items())},
        "escalations_by_reason": dict(escalations.most_common()),
        "escalated_calls": sum(1 for r in records if r.escalations),
        "degraded": sum(1 for r in records if r.outcome == DEGRADED),
        "fallbacks": sum(1 for r in records if r.fallback),
        "errors": sum(1 for r in records if r.outcome == "error"),
        "blocked": sum(1 for r in records if r.outcome == "blocked"),
        "skipped": sum(1 for r in records if r.outcome == "skipped"),
        "by_outcome": dict(Counter(r.outcome for r in records).most_common()),
        "by_call_kind": dict(Counter(r.call_kind for r in records).most_common()),
        "by_model": dict(Counter(r.model for r in records).most_common()),
    }
    if embedding_cache is not None:
        hits, misses = int(embedding_cache.get("hits", 0)), int(embedding_cache.get("misses", 0))
        extra["embedding_cache"] = dict(embedding_cache)
        extra["embedding_cache_hit_rate"] = round(100.0 * hits / (hits + misses), 2) if hits + misses else 0.0
    return QueryMetrics(
        total_queries=len(served),
        local_queries=local,
        external_queries=len(served) - local,
        total_cost=sum(r.cost_usd for r in records),
        local_threshold=local_threshold,
        extra=extra,
    )


def project_cost(
    queries_per_month: int,
    records: Sequence[UsageRecord] | None = None,
    *,
    external_model: str = "gpt-4o-mini",
    default_tokens_in: int = 1500,
    default_tokens_out: int = 300,
    assume_local_percentage: float = 95.0,
    provider: str = "openai",
) -> dict[str, Any]:
    """Monthly cost at the observed local/external mix vs sending every query to ``external_model``.

    Tokens per query are the observed averages over served calls that report tokens (else the
    defaults); the mix is the observed one over served calls (else ``assume_local_percentage``). Prices are real
    (genai-prices); an unknown ``external_model`` raises ``ConfigError`` rather than projecting $0.
    """
    from ._prices import external_cost, price_known

    if queries_per_month < 0:
        raise ConfigError(f"queries_per_month={queries_per_month!r} must be 0 or more")
    if not price_known(external_model, provider):
        raise ConfigError(
            f"no price known for {provider} model {external_model!r}; pick a model genai-prices knows "
            "(e.g. 'gpt-4o-mini') or call mem0_routed._prices.register_price() first",
            key="external_model",
        )
    queries = [r for r in records or () if r.call_kind != EMBEDDING and r.outcome not in UNSERVED]
    sized = [r for r in queries if r.tokens_in or r.tokens_out]
    if sized:
        tokens_in = sum(r.tokens_in for r in sized) / len(sized)
        tokens_out = sum(r.tokens_out for r in sized) / len(sized)
    else:
        tokens_in, tokens_out = float(default_tokens_in), float(default_tokens_out)
    if queries:
        local_pct = 100.0 * sum(1 for r in queries if r.is_local) / len(queries)
    else:
        local_pct = assume_local_percentage
    per_query = external_cost(external_model, round(tokens_in), round(tokens_out), provider)
    all_external = queries_per_month * per_query
    at_mix = queries_per_month * (100.0 - local_pct) / 100.0 * per_query
    return {
        "queries_per_month": queries_per_month,
        "external_model": external_model,
        "local_percentage": round(local_pct, 2),
        "mix_source": "observed" if queries else "assumed",
        "tokens_in_per_query": round(tokens_in, 1),
        "tokens_out_per_query": round(tokens_out, 1),
        "tokens_source": "observed" if sized else "default",
        "external_cost_per_query": per_query,
        "monthly_cost_at_current_mix": at_mix,
        "monthly_cost_all_external": all_external,
        "monthly_savings": all_external - at_mix,
        "savings_percentage": round(100.0 * (all_external - at_mix) / all_external, 2)
        if all_external
        else 0.0,
    }
