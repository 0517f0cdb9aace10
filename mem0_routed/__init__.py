"""mem0-routed: a local-first LLM and embedding router for mem0.

``import mem0_routed`` registers the provider ``"routed"`` with mem0 for both ``llm`` and
``embedder``; import it before ``Memory.from_config``. Everything public is re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._classify import classify_messages, classify_query, classify_text, estimate_tokens
from ._config import RouterConfig
from ._envconfig import mem0_config_from_env
from ._errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BudgetExceeded,
    ConfigError,
    ContextOverflow,
    EmbeddingDimensionMismatch,
    InvalidInput,
    Mem0RoutedError,
    MissingExtra,
    ModelNotFound,
    RegistrationError,
    RoutingError,
    routing_error,
)
from ._job import ChatOutcome
from ._ledger import Ledger, MemoryLedger, open_ledger
from ._mem0 import RoutedEmbeddingError, RoutedLLMError
from ._process import add_hook, remove_hook
from ._prometheus import PrometheusHook
from ._records import UsageRecord
from ._registration import is_registered, register
from ._router import Mem0LLMRouter, MetricsScope, Router, get_router, router_for
from ._types import CallKind, Classification, QueryMetrics, QueryType, RoutingDecision


def route_query(text: str, query_type: QueryType | str | None = None, *, force_local: bool = False) -> RoutingDecision:
    """Decide where ``text`` would go with the process-wide router (no model is called)."""
    return get_router().route_query(text, query_type, force_local=force_local)


async def execute_query(text: str, force_local: bool = False, query_type: QueryType | str | None = None, *,
                        response_format: Mapping[str, Any] | None = None, temperature: float | None = None,
                        max_tokens: int | None = None, top_p: float | None = None) -> dict[str, Any]:
    """Route and run ``text`` with the process-wide router (``Router.aquery``)."""
    return await get_router().aquery(text, force_local, query_type, response_format=response_format,
                                     temperature=temperature, max_tokens=max_tokens, top_p=top_p)


def get_metrics(scope: MetricsScope = "process") -> dict[str, Any]:
    """Metrics of every routed call in this process (mem0's LLM and embedder routers included),
    scored against the process-wide router's ``local_threshold``. ``scope="ledger"`` reads the
    ledger's share window instead; ``"router"`` counts the process-wide router's own calls only."""
    return get_router().get_metrics(scope)


async def health_check() -> dict[str, Any]:
    """Health of the process-wide router's backends (``Router.ahealth``)."""
    return await get_router().ahealth()


def embedding_dims(config: Mapping[str, Any] | None = None) -> int:
    """The size of the vectors the routed embedder built from ``config`` returns (mem0's embedder
    ``config`` dict: ``model`` and the router keys), asked from the model once. Give it to the vector
    store as ``embedding_model_dims`` (and to the embedder as ``embedding_dims``)."""
    from ._mem0 import RoutedEmbedder

    options = {k: v for k, v in (config or {}).items() if k != "embedding_dims"}
    return RoutedEmbedder(options).router.embedding_dims()


__all__ = [
    "AuthenticationError",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "BudgetExceeded",
    "CallKind",
    "ChatOutcome",
    "Classification",
    "ConfigError",
    "ContextOverflow",
    "EmbeddingDimensionMismatch",
    "InvalidInput",
    "Ledger",
    "Mem0LLMRouter",
    "Mem0RoutedError",
    "MemoryLedger",
    "MetricsScope",
    "PrometheusHook",
    "MissingExtra",
    "ModelNotFound",
    "QueryMetrics",
    "QueryType",
    "RegistrationError",
    "Router",
    "RouterConfig",
    "RoutingDecision",
    "RoutedEmbeddingError",
    "RoutedLLMError",
    "RoutingError",
    "UsageRecord",
    "add_hook",
    "classify_messages",
    "classify_query",
    "classify_text",
    "estimate_tokens",
    "embedding_dims",
    "execute_query",
    "get_metrics",
    "get_router",
    "mem0_config_from_env",
    "open_ledger",
    "health_check",
    "is_registered",
    "register",
    "remove_hook",
    "route_query",
    "router_for",
    "routing_error",
]

__version__ = "0.1.0"

# mem0 has no plugin entry point: teach it the provider "routed" now, so that a
# Memory.from_config that follows this import accepts it. Idempotent and self-checked.
register()
