"""The one reader of ledger URLs: ``RouterConfig`` validates with it, ``open_ledger`` opens with it,
so a URL the config accepts always opens and both reject a bad one with the same sentence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .._errors import ConfigError
from .._urls import mask_url
from ._base import Ledger
from ._memory import MemoryLedger
from ._sqlite import SQLiteLedger

__all__ = ["ACCEPTED", "LedgerURL", "open_ledger", "parse_ledger_url"]

ACCEPTED = (
    "'sqlite' (the default file), 'memory://', 'sqlite:///abs/path', 'sqlite://relative/path', "
    "a plain file path, 'redis://host:6379/0' or 'rediss://...' (TLS)"
)
_MEMORY = ("memory", "memory://", ":memory:")


@dataclass(frozen=True, slots=True)
class LedgerURL:
    """Which store a URL names. ``target``: the file path (``None`` = the default file) for
    SQLite, the full URL (password included, never shown) for Redis, ``None`` for memory."""

    kind: Literal["memory", "sqlite", "redis"]
    target: str | None = None

    def __repr__(self) -> str:  # a Redis password never shows
        return f"LedgerURL({self.kind!r}, {None if self.target is None else mask_url(self.target)!r})"


def parse_ledger_url(url: str) -> LedgerURL:
    """Read a ledger URL (see ``ACCEPTED``); a bad one raises ``ConfigError`` (key ``"ledger"``)
    naming the value, its password masked, and every accepted form."""
    if not isinstance(url, str):
        raise ConfigError(f"a ledger URL is a string, got {type(url).__name__}: write it as str(...); "
                          f"accepted: {ACCEPTED}", key="ledger")
    raw = url.strip()
    if not raw:
        raise ConfigError(f"ledger URL {url!r} names no store; accepted: {ACCEPTED}", key="ledger")
    low = raw.lower()
    if low == "sqlite":
        return LedgerURL("sqlite")
    if low in _MEMORY:
        return LedgerURL("memory")
    if low.startswith(("redis://", "rediss://")):
        return LedgerURL("redis", raw)
    if low.startswith("sqlite://"):
        rest = raw[len("sqlite://") :]  # "/abs/path" or "relative/path"
        if rest.startswith("//"):  # SQLAlchemy's four-slash absolute form
            rest = "/" + rest.lstrip("/")
        return LedgerURL("sqlite", rest or None)
    if "://" not in raw:
        return LedgerURL("sqlite", raw)
    raise ConfigError(f"unsupported ledger URL {mask_url(raw)!r}; accepted: {ACCEPTED}", key="ledger")


def open_ledger(url: str | None = None, **options: object) -> Ledger:
    """Open the store ``url`` names (``None``: the default SQLite file); ``options`` go to the
    store's constructor (e.g. ``reservation_ttl_s``, or ``prefix`` for Redis)."""
    where = LedgerURL("sqlite") if url is None else parse_ledger_url(url)
    if where.kind == "memory":
        return MemoryLedger(**options)  # type: ignore[arg-type]
    if where.kind == "redis":
        from ._redis import RedisLedger  # its module is small, but Redis users are few: load on use

        assert where.target is not None
        return RedisLedger(where.target, **options)  # type: ignore[arg-type]
    if where.target is None:
        return SQLiteLedger(**options)  # type: ignore[arg-type]
    return SQLiteLedger(where.target, **options)  # type: ignore[arg-type]
