"""Log lines of dependencies go through the package logger ``mem0_routed``.

stamina logs every retry it schedules as a bare ``stamina.retry_scheduled`` warning on its own
logger; with no logging configured, Python prints that bare line on stderr (its last-resort
handler), so a user saw a stream of them while Ollama was down. Inside the router's own retries
(:func:`router_retries`), a filter on the ``stamina`` logger turns each record into one readable
INFO line on ``mem0_routed`` and drops the original. stamina's other instrumentation (Prometheus,
structlog when installed) and retries outside the router are left as they are.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

__all__ = ["router_retries"]

log = logging.getLogger("mem0_routed")
_IN_ROUTER: contextvars.ContextVar[bool] = contextvars.ContextVar("mem0_routed_retries", default=False)


class _StaminaFilter(logging.Filter):
    """Re-emit stamina's records from the router's retries on ``mem0_routed``; pass the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _IN_ROUTER.get():
            return True
        data = record.__dict__
        cause = str(data.get("stamina.caused_by", ""))[:300]
        log.info("mem0-routed: retry %s in %ss after %s", data.get("stamina.retry_num", "?"),
                 data.get("stamina.wait_for", "?"), cause)
        return False


_FILTER = _StaminaFilter()
_stamina_logger = logging.getLogger("stamina")
if not any(isinstance(f, _StaminaFilter) for f in _stamina_logger.filters):  # once per process
    _stamina_logger.addFilter(_FILTER)


@contextlib.contextmanager
def router_retries() -> Iterator[None]:
    """Mark the retries inside this block as the router's (works in threads and asyncio tasks)."""
    token = _IN_ROUTER.set(True)
    try:
        yield
    finally:
        _IN_ROUTER.reset(token)
