"""The exception hierarchy. Callers catch ``Mem0RoutedError``; everything raised on purpose is one.

Backend errors are normalised here (httpx's, ollama's and openai's own exceptions never leak past a
backend), so the router can decide retry / breaker / fallback from the class alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._types import Attempt


class Mem0RoutedError(Exception):
    """Base class of every error mem0-routed raises on purpose."""


class ConfigError(Mem0RoutedError, ValueError):
    """A configuration value is wrong; the message names the key, the value and what is allowed."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class MissingExtra(Mem0RoutedError, ImportError):
    """An optional part was asked for but its extra is not installed; the message names the pip line."""


class RegistrationError(Mem0RoutedError, RuntimeError):
    """mem0's internals changed so the "routed" provider could not be registered."""


# --- backend errors -----------------------------------------------------------------------------


class BackendError(Mem0RoutedError):
    """A backend call failed. ``transient`` errors are retried; ``trips_breaker`` ones count
    towards opening the backend's circuit breaker. ``fix`` tells the user what to do."""

    transient: bool = False
    trips_breaker: bool = True
    fix: str | None = None

    def __init__(self, message: str, *, backend: str = "", model: str = "", fix: str | None = None) -> None:
        super().__init__(message)
        self.backend = backend
        self.model = model
        if fix is not None:
            self.fix = fix


class BackendUnavailable(BackendError):
    """Connection refused / DNS / reset: the server is not there."""

    transient = True


class BackendTimeout(BackendError):
    """Connect or read timed out: the server may be hanging or overloaded."""

    transient = True


class ServerError(BackendError):
    """5xx from the server."""

    transient = True


class RateLimited(BackendError):
    """429; ``retry_after`` (seconds) when the server said so."""

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class AuthenticationError(BackendError):
    """401/403: a bad or missing API key. Never retried."""

    trips_breaker = False


class ModelNotFound(BackendError):
    """The server answers but does not have the model (``ollama pull`` needed)."""

    trips_breaker = False


class ContextOverflow(BackendError):
    """The prompt does not fit the model's context window, or the server truncated it."""

    trips_breaker = False


class InvalidAnswer(BackendError):
    """The model answered, but not what the call's contract asks (bad JSON, empty, wrong shape)."""

    trips_breaker = False


class BadRequest(BackendError):
    """4xx other than auth/404/429: the request itself is wrong; retrying will not help."""

    trips_breaker = False


class CircuitOpen(BackendError):
    """Skipped without calling: the backend's breaker is open after repeated failures."""

    trips_breaker = False


# --- routing errors -----------------------------------------------------------------------------


class RoutingError(Mem0RoutedError, RuntimeError):
    """Every candidate failed. ``attempts`` lists each (backend, model, error); ``fixes`` says what
    to do, the fix for the route's own model (the one you configured) first, and the message ends
    with them, so the user reads "start Ollama" or "qwen2.5:0.5b gave invalid JSON: ...", not a stack.

    A hint fits its failure: a model that answered badly gets advice about that model, never an
    ``ollama pull`` (it is present); a missing *stand-in* model is marked optional."""

    def __init__(self, message: str, attempts: Sequence[Attempt] = (), *, blocked_by: str | None = None):
        self.attempts = tuple(attempts)
        self.blocked_by = blocked_by
        self.fixes = fixes_for(self.attempts)
        lines = [message]
        for a in self.attempts:
            lines.append(f"  - {a.backend} {a.model}: {a.error}")
        if blocked_by:
            lines.append(f"  external fallback not used: {blocked_by}")
        if self.fixes:
            lines.append("To fix: " + "; ".join(self.fixes))
        super().__init__("\n".join(lines))


#: Attempt kinds where the model was there and answered (so pulling it cannot help).
_ANSWERED = {"invalid": "its answer was rejected", "truncated": "the prompt was cut to fit its context window",
             "InvalidAnswer": "its answer was rejected", "ContextOverflow": "the prompt does not fit its window"}


def _hint(a: Attempt) -> str | None:
    """What to do about one failed attempt; None when the attempt needs no action of its own."""
    if a.kind in _ANSWERED:
        what = _ANSWERED[a.kind]
        if a.kind in ("truncated", "ContextOverflow") and a.fix:  # the backend's own (e.g. the server's window flag)
            return f"{a.model}: {what} ({a.error}); {a.fix}"
        if a.kind in ("truncated", "ContextOverflow"):
            return (f"{a.model}: {what} ({a.error}); raise num_ctx_max, set compact_extraction: always, "
                    "or use a model with a larger window")
        return (f"{a.model} answered but {what} ({a.error.removeprefix('answer rejected: ')}); use a larger "
                "or instruction-tuned model for this route (llm_model / models), or compact_extraction: always")
    if a.kind == "timeout" and not a.fix:
        return (f"{a.model} on {a.backend} timed out ({a.error}); raise read_timeout_s, use a smaller model, "
                "or check the host's load")
    return a.fix


def fixes_for(attempts: Sequence[Attempt]) -> list[str]:
    """The hints of ``attempts``, deduplicated: the route's own model first, stand-ins after."""
    primary = next((a.model for a in attempts if a.kind != "blocked"), None)
    first: list[str] = []
    later: list[str] = []
    seen: set[tuple[str, str]] = set()
    for a in attempts:
        hint = _hint(a)
        if not hint or (a.model, a.kind) in seen:  # a retry of the same failure needs no second hint
            continue
        seen.add((a.model, a.kind))
        if a.model != primary and a.kind == "ModelNotFound":
            hint = f"optional: {hint} (adds {a.model} as a local stand-in)"
        bucket = first if a.model == primary else later
        if hint not in first and hint not in later:
            bucket.append(hint)
    return first + later


class BudgetExceeded(RoutingError):
    """An external call was needed but ``monthly_budget_usd`` is spent."""


class EmbeddingDimensionMismatch(Mem0RoutedError, ValueError):
    """The embedding model returned vectors of another size than ``embedding_dims``."""


def routing_error(exc: BaseException | None) -> RoutingError | None:
    """The ``RoutingError`` in ``exc`` or its causes, or None.

    mem0 wraps an extraction failure in its own ``LLMError`` (``raise LLMError(...) from e``) but
    lets an embedder's error through; this finds the routing details (``attempts``, ``fixes``) in
    either case: ``except mem0.exceptions.MemoryError as e: routing_error(e).fixes``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, RoutingError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class InvalidInput(Mem0RoutedError, ValueError, TypeError):
    """The caller's input cannot be sent as it is (a lone surrogate, a non-str content, NaN ...).

    Raised before any backend is touched: it is the caller's error, so it never counts as a backend
    failure, never trips a breaker and is never retried. A ``ValueError`` (and a ``TypeError``, for
    code that caught the type errors raised before it existed)."""
