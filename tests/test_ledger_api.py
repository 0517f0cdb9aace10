"""The ledger's public face (issue 12): ``Ledger``, ``MemoryLedger`` and ``open_ledger`` from the
package root, one URL reader shared by ``RouterConfig`` and ``open_ledger``, and a clear error when
``Router(ledger=...)`` gets something that is not a ledger."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest

import mem0_routed
from mem0_routed import ConfigError, Ledger, MemoryLedger, Router, RouterConfig, open_ledger
from mem0_routed._ledger import SQLiteLedger
from mem0_routed._ledger._redis import RedisLedger
from mem0_routed._ledger._url import parse_ledger_url
from mem0_routed._records import Refusal, Reservation, ShareCounts, UsageRecord

# --- public names -----------------------------------------------------------------------------------


def test_ledger_names_are_public_and_work_together() -> None:
    assert {"Ledger", "MemoryLedger", "open_ledger"} <= set(mem0_routed.__all__)
    ledger = open_ledger("memory://")
    assert isinstance(ledger, MemoryLedger) and isinstance(ledger, Ledger)
    router = Router({"ledger": "memory"}, ledger=ledger)
    assert router.ledger is ledger
    # the annotation users see names the public protocol, not a private module's
    assert typing.get_type_hints(Router.__init__)["ledger"] == Ledger | None


# --- one URL reader -----------------------------------------------------------------------------------

GOOD = [
    "memory", "memory://", ":memory:", "MEMORY", " memory ", "sqlite", "sqlite://", "sqlite:///{tmp}/abs.db",
    "sqlite:////{tmp}/four.db", "sqlite://rel/r.db", "plain.db", "{tmp}/plain.db", "redis://127.0.0.1:1/0",
    "rediss://:s3cretpw@127.0.0.1:1/2",
]  # fmt: skip
BAD = ["postgres://admin:hunter2secret@db.example/x", "", "   ", "http://host/x", "file:///tmp/x.db", "mysql://h"]
KINDS = {MemoryLedger: "memory", SQLiteLedger: "sqlite", RedisLedger: "redis"}


@pytest.mark.parametrize("form", GOOD)
def test_config_and_open_ledger_agree_on_every_form(form: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("mem0_routed._ledger._sqlite.default_ledger_path", lambda: tmp_path / "default.db")
    url = form.format(tmp=tmp_path)
    kept = RouterConfig.from_mapping(ledger=url).ledger  # accepted by the config ...
    assert parse_ledger_url(kept) == parse_ledger_url(url)
    ledger = open_ledger(kept)  # ... opens the store the parser names
    try:
        assert KINDS[type(ledger)] == parse_ledger_url(url).kind
        if isinstance(ledger, SQLiteLedger):
            target = parse_ledger_url(url).target
            assert ledger.path.resolve() == (tmp_path / (target or "default.db")).resolve()
        if isinstance(ledger, RedisLedger):
            assert "s3cretpw" not in ledger.url and "s3cretpw" not in repr(parse_ledger_url(url))
    finally:
        ledger.close()


@pytest.mark.parametrize("bad", BAD)
def test_config_and_open_ledger_reject_the_same_urls_with_the_same_sentence(bad: str) -> None:
    with pytest.raises(ConfigError) as opened:
        open_ledger(bad)
    with pytest.raises(ConfigError) as configured:
        RouterConfig.from_mapping(ledger=bad)
    sentence = str(opened.value)
    assert sentence in str(configured.value)  # the config adds only which key (and env var) it was
    assert opened.value.key == configured.value.key == "ledger"
    assert "hunter2secret" not in sentence + str(configured.value)
    assert "memory://" in sentence and "redis://" in sentence and "sqlite:///" in sentence


def test_open_ledger_names_a_path_object_as_the_mistake(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"got \w*Path: write it as str\(\.\.\.\)"):
        open_ledger(tmp_path / "x.db")  # type: ignore[arg-type]


# --- Router(ledger=...) -----------------------------------------------------------------------------


class _DuckLedger:
    """A user's own store: no base class, only the protocol's members."""

    url = "duck://"

    def record(self, record: UsageRecord, *, reservation: Reservation | None = None) -> None: ...

    def reserve_external(self, amount_usd: float, **kw: Any) -> Reservation | Refusal:
        return Refusal("budget", "never")

    def release(self, reservation: Reservation) -> None: ...

    def counts(self, since: float | None = None) -> ShareCounts:
        return ShareCounts(0, 0, 0)

    def spent_usd(self, since: float | None = None) -> float:
        return 0.0

    def records(self, since: float | None = None, limit: int | None = None) -> list[UsageRecord]:
        return []

    def close(self) -> None: ...


def test_router_takes_any_object_implementing_ledger() -> None:
    duck = _DuckLedger()
    assert Router({"ledger": "memory"}, ledger=duck).ledger is duck


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        ("memory://", ["str", "Router({'ledger': 'memory://'})", "open_ledger('memory://')"]),
        (Path("/tmp/l.db"), ["PosixPath", "open_ledger('/tmp/l.db')"]),
        ("redis://:hunter2@h:6379/0", ["open_ledger('redis://:***@h:6379/0')"]),
        (object(), ["got object", "lacks url, record, reserve_external", "open_ledger(url), MemoryLedger()"]),
        ({"url": "memory://"}, ["got dict", "lacks url, record"]),
    ],
)
def test_router_refuses_a_wrong_ledger_object_saying_what_to_pass(wrong: object, says: list[str]) -> None:
    with pytest.raises(TypeError) as info:
        Router({"ledger": "memory"}, ledger=wrong)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("ledger must be a mem0_routed.Ledger")
    for part in says:
        assert part in message
    assert "hunter2" not in message
