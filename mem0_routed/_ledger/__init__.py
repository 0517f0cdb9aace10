"""The usage ledger: every routed call's record, and atomic claims on the external budget and share.

``_base``: the ``Ledger`` protocol, the reservation rule and the backlog every store shares;
``_memory``, ``_sqlite`` (+ ``_sqlite_file``), ``_redis``: the stores; ``_url``: the one reader of
ledger URLs (used by ``RouterConfig`` and ``open_ledger``). The record types are in ``_records``.
The stores import ``_base`` directly, never this ``__init__``: no module here waits on another
half-imported one (the old ``_ledger``/``_ledger_sqlite`` pair did).
"""

from __future__ import annotations

from ._base import RESERVATION_TTL_S, Ledger, check_ledger
from ._memory import MemoryLedger
from ._sqlite import SQLiteLedger, default_ledger_path
from ._url import LedgerURL, open_ledger, parse_ledger_url

__all__ = [
    "RESERVATION_TTL_S",
    "Ledger",
    "LedgerURL",
    "MemoryLedger",
    "SQLiteLedger",
    "check_ledger",
    "default_ledger_path",
    "open_ledger",
    "parse_ledger_url",
]
