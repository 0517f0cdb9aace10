"""Process-wide state: backends, breakers and context plans shared per host, and every usage record.

mem0 builds one router for its LLM and one for its embedder (and the reranker a third); sharing
these per host means the routers agree on a host's health and its ``num_ctx``, and "the process's
metrics" cover every call.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._breaker import BreakerBoard
from ._num_ctx import ContextPlanner
from ._records import UsageRecord
from .backends._base import Backend
from .backends._kinds import close_shared, kind_spec

if TYPE_CHECKING:
    from ._config import RouterConfig

SHARED_LOCK = threading.RLock()
BREAKERS = BreakerBoard()
_PLANNERS: dict[str, ContextPlanner] = {}
#: Every record of this process, whichever router made it.
PROCESS_RECORDS: deque[UsageRecord] = deque(maxlen=100_000)
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


def make_backends(cfg: RouterConfig, kind: str) -> list[Backend]:
    """The process's backends of one kind for this configuration (created once, then shared)."""
    return kind_spec(kind).create(cfg)


def planner_for(key: str, cfg: RouterConfig) -> ContextPlanner:
    """One ``num_ctx`` plan per host set and bounds, shared by the routers that use them."""
    key = f"{key}#{cfg.num_ctx_min}/{cfg.num_ctx_max}"
    with SHARED_LOCK:
        planner = _PLANNERS.get(key)
        if planner is None:
            planner = _PLANNERS[key] = ContextPlanner(minimum=cfg.num_ctx_min, maximum=cfg.num_ctx_max)
        return planner


def reset_shared() -> None:
    with SHARED_LOCK:
        _PLANNERS.clear()
        LOCAL_KINDS.clear()
        PROCESS_RECORDS.clear()
    close_shared()
    BREAKERS.clear()
