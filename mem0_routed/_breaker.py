"""A small circuit breaker per backend (and per Ollama host).

After ``failures`` consecutive failures it opens: calls skip the backend at once (no connect, no
timeout). After ``cooldown_s`` exactly one caller gets to probe; the others keep skipping until the
probe ends. So a hanging host costs at most one timeout per cool-down window, not one per call.

Hand-written (≈60 lines) because pybreaker is sync-only and purgatory async-only, and the router
needs one breaker shared by threads and event loops; it holds its lock only for bookkeeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half-open"]
#: What ``allow`` hands a caller; the caller passes it back to ``release``.
Token = Literal["closed", "probe", False]


class CircuitBreaker:
    """``clock`` (seconds, monotonic; default ``time.monotonic``) times the cool-down."""

    def __init__(self, name: str, *, failures: int = 3, cooldown_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.failures = max(1, failures)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False
        self.times_opened = 0
        self.last_error: str | None = None
        self.last_fix: str | None = None

    @property
    def state(self) -> State:
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half-open"
        return "open"

    def allow(self) -> Token:
        """May a call go through now? ``"closed"`` or, in half-open state for the first asker only,
        ``"probe"`` (truthy both); ``False`` otherwise. A probe must end in ``success``,
        ``failure`` or ``release``."""
        with self._lock:
            state = self._state_locked()
            if state == "closed":
                return "closed"
            if state == "half-open" and not self._probing:
                self._probing = True
                return "probe"
            return False

    def success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._opened_at = None
            self._probing = False

    def failure(self, error: str = "", fix: str | None = None) -> None:
        with self._lock:
            self.last_error = error or self.last_error
            self.last_fix = fix or self.last_fix
            self._consecutive += 1
            if self._probing or self._consecutive >= self.failures:
                if self._opened_at is None:
                    self.times_opened += 1
                self._opened_at = self._clock()
            self._probing = False

    def release(self, token: Token) -> None:
        """The call ended neither in success nor in a failure that counts (e.g. a bad answer).

        Only the probe's own release clears the probe: a call admitted while the breaker was
        closed that ended after it opened used to clear it too, so a second probe ran at once."""
        if token != "probe":
            return
        with self._lock:
            self._probing = False

    def retry_in(self) -> float:
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))


@dataclass(slots=True)
class Admission:
    """What ``allow()`` gave one call. Once a probe has had its verdict the token becomes
    ``"closed"``, so no later release (a retry cancelled minutes on) can clear a newer probe."""

    token: Token

    def settle(self) -> Token:
        """The token to give the verdict with; later ones are ``"closed"``."""
        token, self.token = self.token, "closed"
        return token


class BreakerBoard:
    """Process-wide breakers keyed by backend name, so routers that share a host share its breaker.

    ``clock`` (seconds, monotonic) times every breaker of the board, read at each use: tests swap
    in a fake clock and step it past a cool-down instead of sleeping."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        # keyed by settings too: a router configured with other thresholds gets its own breaker
        # for the host instead of silently inheriting the first router's
        self._breakers: dict[tuple[str, int, float], CircuitBreaker] = {}

    def get(self, name: str, *, failures: int, cooldown_s: float) -> CircuitBreaker:
        key = (name, failures, cooldown_s)
        with self._lock:
            br = self._breakers.get(key)
            if br is None:
                br = self._breakers[key] = CircuitBreaker(name, failures=failures, cooldown_s=cooldown_s,
                                                          clock=self._now)
            return br

    def _now(self) -> float:
        return self.clock()

    def snapshot(self) -> dict[str, State]:
        """State per host; with several settings for one host, the least healthy state is shown."""
        with self._lock:
            items = list(self._breakers.values())
        rank = {"closed": 0, "half-open": 1, "open": 2}
        out: dict[str, State] = {}
        for br in items:
            state = br.state
            if rank[state] >= rank[out.get(br.name, "closed")]:
                out[br.name] = state
        return out

    def clear(self) -> None:
        with self._lock:
            self._breakers.clear()
