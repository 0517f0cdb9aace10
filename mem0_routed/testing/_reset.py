"""``reset()``: the process back to the state right after ``import mem0_routed``, between tests."""

from __future__ import annotations

__all__ = ["reset"]


def reset() -> None:
    """Close and forget every router's ledger, the shared backends (and their HTTP clients), and
    forget breakers, ``num_ctx`` plans, process records, hooks, local-tier decisions, measured
    speeds and the routers ``get_router()`` / mem0's provider classes cached.

    Routers built before stay usable (they reopen what they need) but no longer count in the
    process's metrics. The "routed" registration with mem0 and price overrides are kept.
    """
    from .._process import HOOKS, SHARED_LOCK
    from .._router import reset_routers
    from .._runtime import RUNTIMES

    with SHARED_LOCK:
        runtimes = list(RUNTIMES)
        RUNTIMES.clear()
        HOOKS.clear()
    for runtime in runtimes:
        runtime.close_ledger()
    reset_routers()  # backends closed; breakers, plans, records, local kinds, speeds, cached routers
