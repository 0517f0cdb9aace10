"""Prometheus metrics as a usage hook (optional extra ``[prometheus]``), in the style of stamina's
instrumentation: the router calls each hook with every ``UsageRecord``; this one counts them.

``prometheus_client`` is imported only when a hook is created, so it stays optional. Collectors are
shared per (registry, namespace): creating the hook twice does not raise "Duplicated timeseries".
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from ._errors import MissingExtra
from ._usage import UsageRecord

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["LATENCY_BUCKETS_S", "PrometheusHook"]

# Local models answer in 0.05 s (embeddings) to minutes (7B on CPU); OpenAI in ~0.3-10 s.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

_lock = threading.Lock()
_collectors: weakref.WeakKeyDictionary[Any, dict[str, dict[str, Any]]] = weakref.WeakKeyDictionary()


def _import_prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise MissingExtra(
            "PrometheusHook needs prometheus_client: pip install 'mem0-routed[prometheus]'"
        ) from exc
    return prometheus_client


def _make(pc: Any, registry: Any, ns: str) -> dict[str, Any]:
    kw = {"namespace": ns, "registry": registry}
    return {
        "calls": pc.Counter(
            "calls", "Routed calls by where they ran and how they ended",
            ["backend", "model", "is_local", "call_kind", "outcome"], **kw,
        ),
        "cost": pc.Counter("cost_usd", "US dollars spent on external calls", **kw),
        "tokens": pc.Counter("tokens", "Tokens sent (in) and received (out)", ["direction"], **kw),
        "escalations": pc.Counter("escalations", "Escalations by reason", ["reason"], **kw),
        "latency": pc.Histogram(
            "latency_seconds", "Call latency", ["backend", "model"], buckets=LATENCY_BUCKETS_S, **kw
        ),
    }  # fmt: skip


class PrometheusHook:
    """Call with each ``UsageRecord``: ``calls_total``, ``cost_usd_total``, ``tokens_total``,
    ``escalations_total`` and the ``latency_seconds`` histogram, all under ``namespace``."""

    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = "mem0_routed") -> None:
        pc = _import_prometheus()
        registry = registry if registry is not None else pc.REGISTRY
        with _lock:
            per_registry = _collectors.setdefault(registry, {})
            if namespace not in per_registry:
                per_registry[namespace] = _make(pc, registry, namespace)
            self._m = per_registry[namespace]
        self.registry, self.namespace = registry, namespace

    def __repr__(self) -> str:
        return f"PrometheusHook(namespace={self.namespace!r})"

    def __call__(self, record: UsageRecord) -> None:
        m = self._m
        m["calls"].labels(
            record.backend,
            record.model,
            "true" if record.is_local else "false",
            record.call_kind,
            record.outcome,
        ).inc()
        if record.cost_usd > 0:
            m["cost"].inc(record.cost_usd)
        if record.tokens_in > 0:
            m["tokens"].labels("in").inc(record.tokens_in)
        if record.tokens_out > 0:
            m["tokens"].labels("out").inc(record.tokens_out)
        for reason in record.escalations:
            m["escalations"].labels(reason).inc()
        m["latency"].labels(record.backend, record.model).observe(max(record.latency_s, 0.0))
