"""Load spreading that uses what it measures: each host's calls in flight and its observed latency.

Round-robin sends a quarter of the calls to a host that is five times slower than the three others,
and those calls are the slow tail (p95). Here every host of the process carries two numbers, shared
by every router (mem0's LLM and embedder routers agree on who is busy and who is slow):

* **in flight**: calls sent and not yet answered, all models together (a host busy embedding is busy);
* **latency**: an exponentially weighted mean (EWMA) of observed seconds per call, **kept per model**.

Why per model and not per token: a call's time is prefill (prompt tokens, fast) plus decoding (answer
tokens, 10-100x slower each), and the answer's length is unknown when the host is chosen, so "seconds
per token" mixes two rates and misleads as much as it helps. Per model keeps the embedder's 20 ms
calls apart from the chat model's 2 s calls; calls of one model still vary in size, but every host
sees the same mix (the router spreads them), so the comparison between hosts stays fair.

Order (see :meth:`LoadTracker.order`): hosts with a closed breaker first; then those whose last answer
for the model was not garbage (within ``stale_s``; see :meth:`LoadTracker.reject`); then by expected wait,
``(in_flight + 1) x latency``. Hosts within ``tolerance`` (x1.5, +25 ms) of the best wait count as
equally good and take turns (two equal hosts both get calls, whatever the jitter of their measurements); the others
follow, least wait first. A host never measured, or whose last measurement is older than ``stale_s``
with nothing in flight, is taken at the best latency of the others (optimistic): it gets a call and
is measured (again), and that fresh measurement replaces the stale one instead of being blended into
it. A call still in flight counts as a measurement of at least its age (same model), so a host that
stalls (or was never measured and is slow) loses its turn before its first answer arrives. So a host slow once (a model load, a busy moment) is re-tried within ``stale_s`` and is back to its
full share after one good call, while a slow host costs at most about one call per ``stale_s`` when
the others have room. A failed call never makes a host look faster (its breaker handles failures).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["LOADS", "LoadTicket", "LoadTracker"]

T = TypeVar("T")

#: Weight of a new measurement in the moving latency: ~the last 5 calls count.
ALPHA = 0.3
#: Seconds after which a host's latency is re-measured (one call) rather than trusted.
STALE_S = 10.0
#: Expected waits within this factor of the best, plus ``SLACK_S``, are "as good as the best" and
#: share calls: jitter between equal hosts (a few ms on a busy machine) must not starve one of them.
TOLERANCE = 1.5
SLACK_S = 0.025


@dataclass(slots=True)
class LoadTicket:
    """One call in flight on ``host``: set ``ok = True`` once its answer arrived, then ``end`` it."""

    host: str
    model: str | None
    started: float
    number: int = 0
    ok: bool = False
    ended: bool = False


@dataclass(slots=True)
class _Host:
    in_flight: int = 0
    started: dict[int, tuple[str | None, float]] = field(default_factory=dict)  # ticket -> (model, begin)
    latency: dict[str, float] = field(default_factory=dict)  # model -> EWMA seconds per call
    seen: dict[str, float] = field(default_factory=dict)  # model -> clock of the last measurement
    failed: dict[str, float] = field(default_factory=dict)  # model -> clock of its last rejected answer


class LoadTracker:
    """Thread-safe per-host load: calls in flight and per-model latency. ``clock`` is injectable
    (tests move it by hand); the lock is never held across a network call."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, alpha: float = ALPHA,
                 stale_s: float = STALE_S, tolerance: float = TOLERANCE, slack_s: float = SLACK_S) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        if stale_s <= 0 or tolerance < 1.0 or slack_s < 0:
            raise ValueError(f"need stale_s > 0, tolerance >= 1 and slack_s >= 0, got {stale_s!r}, {tolerance!r}, "
                             f"{slack_s!r}")
        self._clock, self._alpha, self._stale_s = clock, alpha, stale_s
        self._tolerance, self._slack_s = tolerance, slack_s
        self._lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}
        self._numbers = itertools.count(1)

    def begin(self, host: str, model: str | None = None) -> LoadTicket:
        ticket = LoadTicket(host, model, self._clock(), next(self._numbers))
        with self._lock:
            state = self._hosts.setdefault(host, _Host())
            state.in_flight += 1
            state.started[ticket.number] = (model, ticket.started)
        return ticket

    def end(self, ticket: LoadTicket) -> None:
        """The call is over: one fewer in flight, and its latency measured (once per ticket)."""
        now = self._clock()
        with self._lock:
            if ticket.ended:
                return
            ticket.ended = True
            state = self._hosts.setdefault(ticket.host, _Host())
            state.in_flight = max(0, state.in_flight - 1)
            state.started.pop(ticket.number, None)
            if ticket.model is None:
                return
            if ticket.ok:
                state.failed.pop(ticket.model, None)
            seconds = max(0.0, now - ticket.started)
            old = state.latency.get(ticket.model)
            stale = old is None or now - state.seen.get(ticket.model, now) > self._stale_s
            if not ticket.ok:  # a quick "connection refused" must not pass for a fast host
                if old is None:
                    return
                seconds = max(seconds, old)
            state.latency[ticket.model] = seconds if stale or old is None else old + self._alpha * (seconds - old)
            state.seen[ticket.model] = now

    def reject(self, host: str, model: str) -> None:
        """``host`` answered a call of ``model`` with something unusable (empty, a loop, bad JSON)
        or an error its breaker does not count (a 401 from a replica with another key): it goes
        behind the hosts whose last answer was good, until ``stale_s`` has passed or it answers
        well. Fast garbage must not pass for a fast host; errors that trip the breaker are its business."""
        now = self._clock()
        with self._lock:
            self._hosts.setdefault(host, _Host()).failed[model] = now

    def in_flight(self, host: str) -> int:
        with self._lock:
            state = self._hosts.get(host)
            return state.in_flight if state else 0

    def latency(self, host: str, model: str) -> float | None:
        """The moving latency of ``model`` on ``host`` in seconds, or None if never measured."""
        with self._lock:
            state = self._hosts.get(host)
            return state.latency.get(model) if state else None

    def order(self, items: Sequence[T], *, name: Callable[[T], str], model: str | None,
              healthy: Callable[[T], bool], turn: int = 0) -> list[T]:
        """``items`` (hosts) best first: healthy ones first, then by expected wait; ``turn`` rotates
        the hosts that are equally good, so they take turns."""
        now = self._clock()
        with self._lock:
            loads: list[tuple[int, float | None, float]] = []
            failed: list[int] = []
            for item in items:
                state = self._hosts.get(name(item)) or _Host()
                est = state.latency.get(model) if model is not None else None
                fresh = est is not None and (now - state.seen.get(model or "", now) <= self._stale_s
                                             or state.in_flight > 0)
                oldest = max((now - t for m, t in state.started.values() if m == model), default=0.0)
                loads.append((state.in_flight, est if fresh else None, oldest))
                when = state.failed.get(model or "")
                failed.append(int(when is not None and now - when <= self._stale_s))
        known = [est for _, est, _ in loads if est is not None]
        optimistic = min(known) if known else 0.0
        # a call of this model in flight for 1 s says the host takes at least 1 s, before it answers
        waits = [(n + 1) * max(optimistic if est is None else est, oldest) for n, est, oldest in loads]
        groups = [0 if healthy(item) else 1 for item in items]
        best = {g: min(w for w, gg in zip(waits, groups, strict=True) if gg == g) for g in set(groups)}
        count = len(items)

        def key(i: int) -> tuple[int, int, int, float, int, int]:
            g, w = groups[i], waits[i]
            near = w <= best[g] * self._tolerance + self._slack_s
            return (g, failed[i], 0 if near else 1, 0.0 if near else w, loads[i][0], (i - turn) % count)

        return [items[i] for i in sorted(range(count), key=key)]

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Per host: calls in flight and the latency per model (ms), for metrics and benchmarks."""
        with self._lock:
            return {h: {"in_flight": s.in_flight, "latency_ms": {m: round(v * 1000, 2) for m, v in s.latency.items()}}
                    for h, s in self._hosts.items()}

    def clear(self) -> None:
        with self._lock:
            self._hosts.clear()


#: The process's tracker: every router's hosts, keyed by backend name.
LOADS = LoadTracker()
