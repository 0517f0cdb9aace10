"""Plain value types shared by every module: what a call is, and what was decided about it.

They live apart from the logic so that classification, policy, execution and the ledger can all
speak of the same things without importing one another.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

#: A key of ``mem0_routed.backends.KINDS`` ("ollama", "openai", "embedded", ...).
BackendKind = str


class QueryType(str, enum.Enum):
    """The kind of work a call asks for; it picks the local model from the route table."""

    EMBEDDING = "embedding"
    CODE = "code"
    SIMPLE = "simple"
    SUMMARIZATION = "summarization"
    EXTRACTION = "extraction"
    MEDIUM = "medium"
    COMPLEX = "complex"

    def __str__(self) -> str:  # "extraction", not "QueryType.EXTRACTION", in tables and logs
        return self.value


class CallKind(str, enum.Enum):
    """Who is calling: mem0's own fixed call sites, or a free-form query.

    mem0's calls are recognised so they are sized by what varies in them (the conversation),
    not by mem0's fixed ~8k-token system prompt, and so keep-local rules can name them.
    """

    MEM0_EXTRACTION = "mem0_extraction"
    MEM0_PROCEDURAL = "mem0_procedural"
    MEM0_RERANKER = "mem0_reranker"
    MEM0_VISION = "mem0_vision"
    QUERY = "query"
    EMBEDDING = "embedding"

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~1.2 µs more per call
class Classification:
    """What the classifier saw in one call (treat it as read-only).

    ``estimated_tokens`` is the whole prompt (what must fit a context window);
    ``variable_tokens`` is the part that varies between calls of this kind (what sizes the work).
    """

    query_type: QueryType
    complexity: int
    estimated_tokens: int
    call_kind: CallKind = CallKind.QUERY
    variable_tokens: int | None = None
    reasons: tuple[str, ...] = ()
    wants_json: bool = False
    has_images: bool = False


@dataclass(frozen=True, slots=True)
class Candidate:
    """One place a call may be sent: a backend kind and a model, in the order they are tried."""

    backend: BackendKind
    model: str
    is_local: bool


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """The router's choice for one call, with the reasons a person can read.

    ``chain`` is the ordered list of candidates tried at execution time (first = ``model``);
    ``external_fallback`` says whether a local failure may end at the external model.
    """

    model: str
    backend: BackendKind
    is_local: bool
    query_type: QueryType
    complexity: int
    estimated_tokens: int
    estimated_cost: float
    reasons: tuple[str, ...]
    call_kind: CallKind = CallKind.QUERY
    chain: tuple[Candidate, ...] = ()
    external_fallback: bool = False
    external_blocked_by: str | None = None

    @property
    def reasoning(self) -> str:
        """The reasons joined into one line, as the seed's ``reasoning`` field was."""
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "backend": self.backend,
            "is_local": self.is_local,
            "query_type": self.query_type.value,
            "call_kind": self.call_kind.value,
            "complexity": self.complexity,
            "estimated_tokens": self.estimated_tokens,
            "estimated_cost": self.estimated_cost,
            "reasoning": self.reasoning,
            "reasons": list(self.reasons),
            "chain": [f"{c.backend}:{c.model}" for c in self.chain],
            "external_fallback": self.external_fallback,
            "external_blocked_by": self.external_blocked_by,
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one candidate, kept so a failure can say everything that was tried."""

    backend: str
    model: str
    error: str
    fix: str | None = None
    kind: str = "error"
    #: Whether the try went to a local backend (None: no backend was reached, e.g. blocked).
    is_local: bool | None = None


@dataclass(slots=True)
class QueryMetrics:
    """Seed-compatible metrics snapshot (see ``Router.get_metrics`` for the full dict)."""

    total_queries: int = 0
    local_queries: int = 0
    external_queries: int = 0
    total_cost: float = 0.0
    local_threshold: float = 95.0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def local_percentage(self) -> float:
        return 100.0 * self.local_queries / self.total_queries if self.total_queries else 100.0

    @property
    def external_percentage(self) -> float:
        return 100.0 * self.external_queries / self.total_queries if self.total_queries else 0.0

    @property
    def avg_cost_per_query(self) -> float:
        return self.total_cost / self.total_queries if self.total_queries else 0.0

    @property
    def on_target(self) -> bool:
        return self.local_percentage >= self.local_threshold

    def to_dict(self) -> dict[str, object]:
        return {
            "total_queries": self.total_queries,
            "local_queries": self.local_queries,
            "local_percentage": round(self.local_percentage, 2),
            "external_queries": self.external_queries,
            "external_percentage": round(self.external_percentage, 2),
            "total_cost": round(self.total_cost, 6),
            "avg_cost_per_query": round(self.avg_cost_per_query, 8),
            "local_threshold": self.local_threshold,
            "on_target": self.on_target,
            **self.extra,
        }
