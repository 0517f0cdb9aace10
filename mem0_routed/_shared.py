"""Process-wide state: backends, breakers and context plans shared per host, and every usage record.

mem0 builds one router for its LLM and one for its embedder (and the reranker a third); sharing
these per host means the routers agree on a host's health and its ``num_ctx``, and "the process's
metrics" cover every call.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._breaker import BreakerBoard
from ._context import ContextPlanner
from ._usage import UsageRecord
from .backends._base import Backend

if TYPE_CHECKING:
    from ._config import RouterConfig
    from ._router import Router

SHARED_LOCK = threading.RLock()
BREAKERS = BreakerBoard()
_BACKENDS: dict[str, Backend] = {}
_PLANNERS: dict[str, ContextPlanner] = {}
#: Every record of this process, whichever router made it.
PROCESS_RECORDS: deque[UsageRecord] = deque(maxlen=100_000)
ROUTERS: weakref.WeakSet[Router] = weakref.WeakSet()
#: Instrumentation hooks every router runs after each usage record (e.g. ``PrometheusHook``), so
#: the routers mem0 builds from its config are covered too.
HOOKS: list[Callable[[UsageRecord], None]] = []
#: The local tier chosen per set of Ollama URLs: decided once per process, because the LLM's and
#: the embedder's routers must agree and embeddings must never switch model mid-process.
LOCAL_KINDS: dict[str, str] = {}


def add_hook(hook: Callable[[UsageRecord], None]) -> None:
    """Run ``hook(record)`` after every routed call in this process (all routers, mem0's included)."""
    with SHARED_LOCK:
        if hook not in HOOKS:
            HOOKS.append(hook)


def remove_hook(hook: Callable[[UsageRecord], None]) -> None:
    """Stop calling a hook given to ``add_hook``; one never added is ignored."""
    with SHARED_LOCK:
        if hook in HOOKS:
            HOOKS.remove(hook)


def shared_backend(key: str, factory: Callable[[], Backend]) -> Backend:
    with SHARED_LOCK:
        backend = _BACKENDS.get(key)
        if backend is None:
            backend = _BACKENDS[key] = factory()
        return backend


def make_backends(cfg: RouterConfig, kind: str) -> list[Backend]:
    """The process's backends of one kind for this configuration (created once, then shared)."""
    if kind == "ollama":
        from .backends._ollama import OllamaBackend

        timeouts = f"{cfg.connect_timeout_s}/{cfg.read_timeout_s}"

        def host(url: str) -> Callable[[], Backend]:
            return lambda: OllamaBackend(url, connect_timeout_s=cfg.connect_timeout_s,
                                         read_timeout_s=cfg.read_timeout_s)

        return [shared_backend(f"ollama@{url}#{timeouts}", host(url)) for url in cfg.ollama_urls]
    if kind == "openai":
        if cfg.openai_api_key is None:
            return []
        from .backends._openai import OpenAIBackend

        # keyed by a hash of the key: two keys, two clients; the key itself is never a dict key
        tag = hashlib.sha256(cfg.openai_api_key.get_secret_value().encode()).hexdigest()[:12]
        return [shared_backend(
            f"openai@{cfg.openai_base_url}#{tag}/{cfg.connect_timeout_s}/{cfg.external_timeout_s}",
            lambda: OpenAIBackend(cfg.openai_api_key, base_url=cfg.openai_base_url,
                                  connect_timeout_s=cfg.connect_timeout_s, read_timeout_s=cfg.external_timeout_s))]
    if kind == "embedded":
        if importlib.util.find_spec("llama_cpp") is None:
            return []
        from .backends._embedded import EmbeddedBackend

        models = dict(cfg.embedded_models) or None
        return [shared_backend(f"embedded#{sorted((models or {}).items())}", lambda: EmbeddedBackend(models))]
    return []


def planner_for(key: str, cfg: RouterConfig) -> ContextPlanner:
    """One ``num_ctx`` plan per host set and bounds, shared by the routers that use them."""
    key = f"{key}#{cfg.num_ctx_min}/{cfg.num_ctx_max}"
    with SHARED_LOCK:
        planner = _PLANNERS.get(key)
        if planner is None:
            planner = _PLANNERS[key] = ContextPlanner(minimum=cfg.num_ctx_min, maximum=cfg.num_ctx_max)
        return planner


def cache_stats() -> dict[str, Any]:
    """Embedding cache hits and misses summed over this process's routers (the metrics add the rate)."""
    hits = misses = size = 0
    for router in list(ROUTERS):
        st = router.embeddings.cache_stats()
        hits, misses, size = hits + st["hits"], misses + st["misses"], size + st["size"]
    return {"hits": hits, "misses": misses, "size": size}


def reset_shared() -> None:
    with SHARED_LOCK:
        for backend in _BACKENDS.values():
            try:
                backend.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        _BACKENDS.clear()
        _PLANNERS.clear()
        LOCAL_KINDS.clear()
        PROCESS_RECORDS.clear()
    BREAKERS.clear()
