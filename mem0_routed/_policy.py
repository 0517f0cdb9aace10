"""Routing policy: from a classification to a ``RoutingDecision`` — no I/O, no model calls.

The rules, in order: embeddings and code stay local; simple, summarization, extraction and medium
go to their local model; complex goes external only while the external share *after* this call
stays within ``100 - local_threshold`` percent. ``force_local``, ``routing_enabled=False``, a
keep-local rule, a missing key, a spent budget or a prompt too big for the external model's window
pin the call to local and say why. A spent budget never blocks a local call.
"""

from __future__ import annotations

from collections.abc import Callable

from ._config import RouterConfig
from ._num_ctx import needed_tokens
from ._records import ShareCounts
from ._types import BackendKind, CallKind, Candidate, Classification, QueryType, RoutingDecision

#: Which other local routes can stand in when a route's model fails (order = preference).
_STAND_INS: dict[QueryType, tuple[QueryType, ...]] = {
    QueryType.CODE: (QueryType.MEDIUM, QueryType.SIMPLE),
    QueryType.SIMPLE: (QueryType.MEDIUM,),
    QueryType.SUMMARIZATION: (QueryType.MEDIUM, QueryType.SIMPLE),
    QueryType.EXTRACTION: (QueryType.SIMPLE, QueryType.MEDIUM),
    QueryType.MEDIUM: (QueryType.SIMPLE, QueryType.COMPLEX),
    QueryType.COMPLEX: (QueryType.MEDIUM, QueryType.SIMPLE),
}

CostFn = Callable[[str, int, int], float]

#: Context windows of OpenAI's models (prefix -> tokens), most specific first; others get 128k.
_EXTERNAL_WINDOWS = (
    ("gpt-4.1", 1_047_576), ("gpt-5", 400_000), ("o1-mini", 128_000), ("o1", 200_000), ("o3", 200_000),
    ("o4", 200_000), ("gpt-4o", 128_000), ("gpt-4-turbo", 128_000), ("gpt-3.5", 16_385), ("gpt-4", 8_192),
)  # fmt: skip
DEFAULT_EXTERNAL_WINDOW = 128_000


def external_window(config: RouterConfig) -> int:
    """The fallback model's context window: ``fallback_context_window``, else the known table."""
    if config.fallback_context_window is not None:
        return config.fallback_context_window
    name = config.fallback_model.lower().removeprefix("openai/")
    return next((w for prefix, w in _EXTERNAL_WINDOWS if name.startswith(prefix)), DEFAULT_EXTERNAL_WINDOW)


class Policy:
    """Pure decision logic; the router feeds it the ledger's counts and spend."""

    def __init__(self, config: RouterConfig, *, local_kind: BackendKind = "ollama", cost_fn: CostFn | None = None):
        self.config = config
        self.local_kind: BackendKind = local_kind
        self._cost_fn = cost_fn

    def local_model(self, query_type: QueryType) -> str:
        return self.config.model_for(query_type)

    def local_chain(self, query_type: QueryType) -> list[Candidate]:
        """The route's model, then other distinct local models that can do the job."""
        kind = self.local_kind
        first = self.local_model(query_type)
        chain = [Candidate(kind, first, True)]
        if query_type is QueryType.EMBEDDING:
            return chain  # embeddings never switch model: another model's vectors poison the store
        seen = {first}
        for other in _STAND_INS.get(query_type, ()):
            model = self.local_model(other)
            if model not in seen:
                seen.add(model)
                chain.append(Candidate(kind, model, True))
        return chain

    def external_blocked_by(
        self, query_type: QueryType, *, force_local: bool, keep_local_rule: str | None, spent_usd: float | None,
        ledger_error: str | None = None, prompt_tokens: int = 0, max_tokens: int | None = None,
    ) -> str | None:
        """Why an external call is not allowed at all (not even as a fallback), or None.

        A prompt the external model cannot hold is never sent: it would fail there after the user's
        data had left the machine. The estimate gets the same margin as local windows."""
        cfg = self.config
        if query_type is QueryType.EMBEDDING:
            return "embeddings never switch model"
        if force_local:
            return "force_local"
        if not cfg.routing_enabled:
            return "routing disabled (LLM_ROUTING_ENABLED=false)"
        if keep_local_rule:
            return f"keep-local rule {keep_local_rule}"
        if ledger_error:  # budget and share cannot be checked: nothing goes out
            return ledger_error
        if cfg.openai_api_key is None:
            return "OpenAI not configured (set OPENAI_API_KEY)"
        if cfg.monthly_budget_usd is not None and spent_usd is not None and spent_usd >= cfg.monthly_budget_usd:
            return f"monthly budget ${cfg.monthly_budget_usd:.2f} spent (${spent_usd:.2f} this month)"
        need, window = needed_tokens(prompt_tokens, max_tokens), external_window(cfg)
        if prompt_tokens and need > window:
            return (f"prompt needs ~{need} tokens, more than {cfg.fallback_model}'s {window}-token window "
                    "(shorten the prompt or set fallback_context_window)")
        return None

    def estimate_cost(self, estimated_tokens: int, max_tokens: int | None = None,
                      call_kind: CallKind | str = CallKind.QUERY) -> float:
        """Price of sending the call out: its prompt plus a typical answer for its kind."""
        if self._cost_fn is None:
            return 0.0
        from ._prices import estimate_tokens_out_default

        tokens_out = estimate_tokens_out_default(str(call_kind), max_tokens)
        return self._cost_fn(self.config.fallback_model, estimated_tokens, tokens_out)

    def decide(
        self,
        cls: Classification,
        *,
        query_type: QueryType | None = None,
        force_local: bool = False,
        keep_local_rule: str | None = None,
        counts: ShareCounts | None = None,
        spent_usd: float | None = None,
        max_tokens: int | None = None,
        ledger_error: str | None = None,
    ) -> RoutingDecision:
        qt = QueryType(query_type) if query_type is not None else cls.query_type
        reasons = list(cls.reasons)
        if query_type is not None and qt is not cls.query_type:
            reasons.append(f"type set by caller: {qt}")
        chain = self.local_chain(qt)
        blocked = self.external_blocked_by(
            qt, force_local=force_local, keep_local_rule=keep_local_rule, spent_usd=spent_usd,
            ledger_error=ledger_error, prompt_tokens=cls.estimated_tokens, max_tokens=max_tokens,
        )
        external = Candidate("openai", self.config.fallback_model, False)
        primary_external = False
        if qt is QueryType.COMPLEX:
            if blocked:
                reasons.append(f"complex, kept local: {blocked}")
            else:
                ok, share_note = self._share_allows(counts)
                reasons.append(share_note)
                primary_external = ok
        elif qt is QueryType.EMBEDDING or qt is QueryType.CODE:
            reasons.append(f"{qt}: always local")
        if primary_external:
            chain = [external, *chain]
        elif blocked is None:
            chain = [*chain, external]  # availability first: a local failure may still end here
        first = chain[0]
        cost = self.estimate_cost(cls.estimated_tokens, max_tokens, cls.call_kind) if not first.is_local else 0.0
        return RoutingDecision(
            model=first.model,
            backend=first.backend,
            is_local=first.is_local,
            query_type=qt,
            complexity=cls.complexity,
            estimated_tokens=cls.estimated_tokens,
            estimated_cost=cost,
            reasons=tuple(reasons),
            call_kind=cls.call_kind,
            chain=tuple(chain),
            external_fallback=blocked is None,
            external_blocked_by=blocked,
        )

    def _share_allows(self, counts: ShareCounts | None) -> tuple[bool, str]:
        """External share after this call must stay within 100 - threshold percent."""
        limit = self.config.max_external_share
        total = counts.total if counts else 0
        external = counts.external if counts else 0
        after = (external + 1) / (total + 1)
        pct, lim = 100.0 * after, 100.0 * limit
        if after <= limit + 1e-12:
            return True, f"complex: external share after this call {pct:.1f}% ≤ {lim:.1f}% allowed"
        return False, f"complex, kept local: external share would be {pct:.1f}% > {lim:.1f}% allowed"
