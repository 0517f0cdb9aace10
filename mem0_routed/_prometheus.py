"""Prometheus metrics (optional extra ``[prometheus]``): a usage hook plus a collector read at scrape time.

In the style of stamina's instrumentation: the router calls each hook with every ``UsageRecord``;
:class:`PrometheusHook` counts them. What is state rather than events (the local share and the
month's spend from the ledger, breaker states, ``num_ctx``, the embedding cache) is read when
Prometheus scrapes, by a collector registered with the hook, so it is never stale.

Switch it on without code: ``MEM0_ROUTED_PROMETHEUS_PORT=9464`` (and optionally
``MEM0_ROUTED_PROMETHEUS_ADDR``, default ``0.0.0.0``) starts an exporter when mem0-routed is
registered, i.e. when the program imports mem0 (autoload) or mem0_routed. ``prometheus_client`` is
imported only then. Collectors are shared per (registry, namespace): creating the hook twice does not
raise "Duplicated timeseries". Names follow Prometheus conventions (base units, ``_total``, ``_ratio``).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError, MissingExtra
from ._records import UsageRecord

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["BREAKER_STATES", "LATENCY_BUCKETS_S", "PORT_ENV", "PrometheusHook", "start_exporter", "start_from_env"]

logger = logging.getLogger("mem0_routed")

# Local models answer in 0.05 s (embeddings) to minutes (7B on CPU); OpenAI in ~0.3-10 s.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
#: ``breaker_state`` values.
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}
PORT_ENV = "MEM0_ROUTED_PROMETHEUS_PORT"
ADDR_ENV = "MEM0_ROUTED_PROMETHEUS_ADDR"

_lock = threading.Lock()
_collectors: weakref.WeakKeyDictionary[Any, dict[str, dict[str, Any]]] = weakref.WeakKeyDictionary()
_exporter: tuple[str, int] | None = None


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
    made = {
        "calls": pc.Counter(
            "calls", "Routed calls by where they ran and how they ended",
            ["backend", "model", "is_local", "call_kind", "outcome"], **kw,
        ),
        "cost": pc.Counter("cost_usd", "US dollars spent on external calls", **kw),
        "tokens": pc.Counter("tokens", "Tokens sent (in) and received (out)", ["direction"], **kw),
        "escalations": pc.Counter("escalations", "Escalations by reason", ["reason"], **kw),
        "fallbacks": pc.Counter(
            "fallbacks", "Calls answered by another model or backend than the first choice",
            ["backend", "model"], **kw,
        ),
        "latency": pc.Histogram(
            "latency_seconds", "Call latency", ["backend", "model"], buckets=LATENCY_BUCKETS_S, **kw
        ),
    }  # fmt: skip
    registry.register(_StateCollector(ns))
    return made


class _StateCollector:
    """Gauges read from the process's routers at scrape time."""

    def __init__(self, namespace: str) -> None:
        from prometheus_client import core

        self._core = core
        self._ns = namespace

    def describe(self) -> list[Any]:
        return []  # unchecked collector: its series depend on the routers alive at scrape time

    def collect(self) -> Iterator[Any]:
        from ._config import mask_url
        from ._process import BREAKERS
        from ._records import utc_month_start
        from ._runtime import RUNTIMES, process_cache_stats

        core, ns = self._core, self._ns
        share = core.GaugeMetricFamily(f"{ns}_local_share_ratio",
                                       "Local share of LLM calls over the ledger's window (1 before any)",
                                       labels=["ledger"])
        target = core.GaugeMetricFamily(f"{ns}_local_share_target_ratio",
                                        "The local share the threshold asks for (local_threshold / 100)",
                                        labels=["ledger"])
        spent = core.GaugeMetricFamily(f"{ns}_month_spend_usd", "External spend this calendar month (UTC)",
                                       labels=["ledger"])
        budget = core.GaugeMetricFamily(f"{ns}_month_budget_usd", "monthly_budget_usd, when set",
                                        labels=["ledger"])  # fmt: skip
        rows: dict[str, dict[str, Any]] = {}
        ctx: dict[str, int] = {}
        for rt in list(RUNTIMES):
            cfg = rt.config
            label = mask_url(cfg.ledger)
            for model, value in rt.planner.snapshot().items():
                ctx[model] = max(value, ctx.get(model, 0))
            ledger = rt.opened_ledger()
            if ledger is None:
                continue  # not used yet: a scrape must not open (create) a ledger
            try:  # a broken ledger (Redis down) leaves these out; the scrape still succeeds
                counts = ledger.counts(since=rt.share_since())
                spend = ledger.spent_usd(since=utc_month_start())
            except Exception as exc:  # noqa: BLE001
                logger.debug("mem0-routed: ledger %s unreadable for metrics: %s", label, exc)
                continue
            row = rows.setdefault(label, {"total": -1, "spend": 0.0, "budget": None})
            row["spend"] = max(row["spend"], spend)
            if cfg.monthly_budget_usd is not None:
                row["budget"] = max(row["budget"] or 0.0, cfg.monthly_budget_usd)
            # The LLM's and the embedder's routers may each hold a "memory" ledger: the share and
            # the target come from the one that saw the most LLM calls.
            if counts.total > row["total"]:
                row.update(total=counts.total, ratio=counts.local / counts.total if counts.total else 1.0,
                           goal=cfg.local_threshold / 100.0)
        for label, row in rows.items():
            share.add_metric([label], row["ratio"])
            target.add_metric([label], row["goal"])
            spent.add_metric([label], row["spend"])
            if row["budget"] is not None:
                budget.add_metric([label], row["budget"])
        yield from (share, target, spent, budget)
        breaker = core.GaugeMetricFamily(f"{ns}_breaker_state",
                                         "Circuit breaker per backend host: 0 closed, 1 half-open, 2 open",
                                         labels=["backend"])  # fmt: skip
        for name, state in sorted(BREAKERS.snapshot().items()):
            kind, at, url = name.partition("@")  # "ollama@http://user:pass@host": no password in a label
            breaker.add_metric([f"{kind}{at}{mask_url(url)}" if at else name], BREAKER_STATES[state])
        yield breaker
        num_ctx = core.GaugeMetricFamily(f"{ns}_num_ctx_tokens", "Ollama num_ctx in use per model",
                                         labels=["model"])
        for model, value in sorted(ctx.items()):
            num_ctx.add_metric([model], value)
        yield num_ctx
        stats = process_cache_stats()
        yield core.CounterMetricFamily(f"{ns}_embedding_cache_hits", "Embedding cache hits", value=stats["hits"])
        yield core.CounterMetricFamily(f"{ns}_embedding_cache_misses", "Embedding cache misses",
                                       value=stats["misses"])
        yield core.GaugeMetricFamily(f"{ns}_embedding_cache_entries", "Embeddings held in the caches",
                                     value=stats["size"])



class PrometheusHook:
    """Call with each ``UsageRecord``. Counters ``calls_total``, ``cost_usd_total``, ``tokens_total``,
    ``escalations_total``, ``fallbacks_total``, the ``latency_seconds`` histogram, and (read at scrape)
    ``local_share_ratio``, ``local_share_target_ratio``, ``month_spend_usd``, ``month_budget_usd``,
    ``breaker_state``, ``num_ctx_tokens``, ``embedding_cache_{hits,misses}_total``, all under ``namespace``."""

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
        if record.fallback:
            m["fallbacks"].labels(record.backend, record.model).inc()
        m["latency"].labels(record.backend, record.model).observe(max(record.latency_s, 0.0))


def start_exporter(port: int, addr: str = "0.0.0.0") -> PrometheusHook:
    """Serve ``/metrics`` on ``addr:port`` (a thread) and count every routed call in this process.

    Idempotent per process: a second call returns a hook without starting a second server.
    """
    global _exporter
    from ._process import add_hook

    hook = PrometheusHook()
    add_hook(hook)
    with _lock:
        if _exporter is None:
            _import_prometheus().start_http_server(port, addr=addr)
            _exporter = (addr, port)
            logger.info("mem0-routed: Prometheus metrics on http://%s:%d/metrics", addr, port)
    return hook


def start_from_env() -> None:
    """Start the exporter when ``MEM0_ROUTED_PROMETHEUS_PORT`` is set. Never raises: a busy port or a
    missing ``prometheus_client`` is a warning, the program goes on without metrics."""
    raw = os.environ.get(PORT_ENV, "").strip()
    if not raw or _exporter is not None:
        return
    try:
        port = int(raw)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        logger.warning("mem0-routed: %s=%r is not a TCP port (1-65535); no metrics exporter", PORT_ENV, raw)
        return
    try:
        start_exporter(port, os.environ.get(ADDR_ENV, "").strip() or "0.0.0.0")
    except (OSError, MissingExtra, ConfigError) as exc:
        logger.warning("mem0-routed: Prometheus exporter not started on port %d: %s", port, exc)
