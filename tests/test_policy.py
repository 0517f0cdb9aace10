"""Routing policy edges: the threshold exactly met, a spent budget, force_local, keep-local rules."""

from __future__ import annotations

import pytest

from mem0_routed import CallKind, Classification, QueryType, RouterConfig
from mem0_routed._policy import Policy
from mem0_routed._records import ShareCounts

KEY = "sk-test-policy-0000000000"


def cls(qt: QueryType, complexity: int = 5, tokens: int = 100, kind: CallKind = CallKind.QUERY) -> Classification:
    return Classification(query_type=qt, complexity=complexity, estimated_tokens=tokens, call_kind=kind,
                          reasons=("test",))


def policy(**cfg) -> Policy:
    cfg.setdefault("openai_api_key", KEY)
    return Policy(RouterConfig.from_mapping(cfg), cost_fn=lambda model, tin, tout: (tin * 0.15 + tout * 0.6) / 1e6)


@pytest.mark.parametrize("qt", [QueryType.SIMPLE, QueryType.SUMMARIZATION, QueryType.EXTRACTION, QueryType.MEDIUM,
                                QueryType.CODE])
def test_non_complex_types_go_to_their_local_model(qt: QueryType) -> None:
    p = policy()
    d = p.decide(cls(qt), counts=ShareCounts(0, 0, 0))
    assert d.is_local and d.backend == "ollama"
    assert d.model == p.config.models[qt.value]
    assert d.estimated_cost == 0.0
    assert d.chain[-1].backend == "openai" and d.external_fallback  # a local failure may still fall back


def test_embeddings_never_leave_or_switch_model() -> None:
    d = policy().decide(cls(QueryType.EMBEDDING))
    assert [c.model for c in d.chain] == ["nomic-embed-text:latest"]
    assert not d.external_fallback and d.external_blocked_by == "embeddings never switch model"


def test_complex_goes_external_when_share_after_the_call_stays_within_limit() -> None:
    # 1 external in 99 calls: after this call 2/100 = 2 % <= 5 %
    d = policy().decide(cls(QueryType.COMPLEX, 8), counts=ShareCounts(99, 98, 1))
    assert not d.is_local and d.backend == "openai" and d.model == "gpt-4o-mini"
    assert d.estimated_cost > 0
    assert [c.backend for c in d.chain] == ["openai", "ollama", "ollama"]
    assert any("≤" in r for r in d.reasons)


def test_threshold_exactly_met_allows_external() -> None:
    # after this call: 5 external of 100 = exactly 5 % -> allowed (share stays at the threshold)
    d = policy().decide(cls(QueryType.COMPLEX, 8), counts=ShareCounts(99, 95, 4))
    assert not d.is_local


def test_one_past_the_threshold_keeps_complex_local_with_reason() -> None:
    # after this call: 6 external of 100 = 6 % > 5 %
    d = policy().decide(cls(QueryType.COMPLEX, 8), counts=ShareCounts(99, 94, 5))
    assert d.is_local and d.model == "codellama:13b"
    assert any("6.0% > 5.0%" in r for r in d.reasons)
    assert d.external_fallback  # availability first: still allowed as a fallback


def test_first_ever_complex_call_is_kept_local_by_the_default_threshold() -> None:
    # an empty ledger: 1/1 = 100 % external would break a 95 % target
    d = policy().decide(cls(QueryType.COMPLEX, 9), counts=ShareCounts(0, 0, 0))
    assert d.is_local


def test_threshold_zero_allows_external_for_complex_always() -> None:
    d = policy(local_threshold=0).decide(cls(QueryType.COMPLEX, 9), counts=ShareCounts(0, 0, 0))
    assert not d.is_local


def test_spent_budget_blocks_external_but_never_local() -> None:
    p = policy(monthly_budget_usd=1.0, local_threshold=0)
    d = p.decide(cls(QueryType.COMPLEX, 9), counts=ShareCounts(0, 0, 0), spent_usd=1.0)
    assert d.is_local and not d.external_fallback
    assert "budget" in (d.external_blocked_by or "") and "$1.00" in (d.external_blocked_by or "")
    simple = p.decide(cls(QueryType.SIMPLE), spent_usd=5.0)
    assert simple.is_local and simple.model == "mistral:7b"


def test_budget_not_yet_spent_allows_external() -> None:
    d = policy(monthly_budget_usd=1.0, local_threshold=0).decide(cls(QueryType.COMPLEX, 9), spent_usd=0.99)
    assert not d.is_local


@pytest.mark.parametrize(
    ("kwargs", "cfg", "why"),
    [
        ({"force_local": True}, {}, "force_local"),
        ({}, {"routing_enabled": False}, "routing disabled"),
        ({"keep_local_rule": "pii:email"}, {}, "keep-local rule pii:email"),
        ({}, {"openai_api_key": None}, "OPENAI_API_KEY"),
    ],
)
def test_pins_to_local_and_says_why(kwargs: dict, cfg: dict, why: str) -> None:
    d = policy(local_threshold=0, **cfg).decide(cls(QueryType.COMPLEX, 9), counts=ShareCounts(0, 0, 0), **kwargs)
    assert d.is_local
    assert all(c.is_local for c in d.chain)
    assert not d.external_fallback and why in (d.external_blocked_by or "")
    assert any(why in r for r in d.reasons)


def test_local_chain_has_distinct_stand_ins() -> None:
    d = policy().decide(cls(QueryType.CODE))
    models = [c.model for c in d.chain if c.is_local]
    assert models[0] == "deepseek-coder:6.7b"
    assert len(models) == len(set(models)) and "mistral:7b" in models


def test_caller_type_overrides_classification_and_is_recorded() -> None:
    d = policy().decide(cls(QueryType.SIMPLE), query_type=QueryType.CODE)
    assert d.query_type is QueryType.CODE and d.model == "deepseek-coder:6.7b"
    assert any("set by caller" in r for r in d.reasons)


def test_decision_dict_has_seed_fields() -> None:
    d = policy().decide(cls(QueryType.SIMPLE))
    data = d.to_dict()
    for key in ("model", "backend", "is_local", "query_type", "complexity", "estimated_tokens", "estimated_cost",
                "reasoning"):
        assert key in data
    assert data["reasoning"] == d.reasoning and "test" in d.reasoning


# --- never send what the external model cannot hold (issue 11, defect 10) ---------------------------


@pytest.mark.parametrize(("model", "window"), [("gpt-4o-mini", 128_000), ("gpt-4.1-mini", 1_047_576),
                                               ("gpt-3.5-turbo", 16_385), ("some-proxy-model", 128_000)])
def test_a_prompt_past_the_external_window_is_never_sent(model: str, window: int) -> None:
    p = policy(fallback_model=model, local_threshold=0)
    fits = int((window - 1024) / 1.25) - 10  # the estimate gets the local windows' 25 % margin
    ok = p.decide(cls(QueryType.COMPLEX, 9, tokens=fits), counts=ShareCounts(0, 0, 0), max_tokens=1024)
    assert not ok.is_local and ok.external_fallback
    too_big = p.decide(cls(QueryType.COMPLEX, 9, tokens=fits + 20), counts=ShareCounts(0, 0, 0), max_tokens=1024)
    assert too_big.is_local and not too_big.external_fallback
    assert all(c.is_local for c in too_big.chain)
    assert f"{model}'s {window}-token window" in str(too_big.external_blocked_by)
    for qt in (QueryType.SIMPLE, QueryType.EXTRACTION):  # not even as a fallback
        assert p.decide(cls(qt, tokens=fits + 20), max_tokens=1024).chain[-1].is_local


def test_fallback_context_window_overrides_the_table() -> None:
    p = policy(fallback_context_window=10_000)
    assert p.decide(cls(QueryType.SIMPLE, tokens=7_500), max_tokens=1024).external_fallback is False
    assert p.decide(cls(QueryType.SIMPLE, tokens=6_000), max_tokens=1024).external_fallback is True
