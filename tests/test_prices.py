"""Prices come from genai-prices (compared against it, not against numbers typed here)."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
from pytest_mock import MockerFixture

from mem0_routed import ConfigError, _prices
from mem0_routed._prices import (
    call_cost,
    estimate_tokens_out_default,
    external_cost,
    price_known,
    register_price,
    unit_prices,
)


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    _prices._reset_for_tests()
    yield
    _prices._reset_for_tests()


@pytest.mark.parametrize(("tokens_in", "tokens_out"), [(1500, 300), (1, 0), (0, 1), (123_456, 7_890)])
def test_cost_matches_genai_prices(tokens_in: int, tokens_out: int) -> None:
    from genai_prices import Usage, calc_price

    expected = calc_price(
        Usage(input_tokens=tokens_in, output_tokens=tokens_out), "gpt-4o-mini", provider_id="openai"
    ).total_price
    assert external_cost("gpt-4o-mini", tokens_in, tokens_out) == pytest.approx(float(expected), rel=1e-9)


def test_output_tokens_cost_more_than_input_for_gpt_4o_mini() -> None:
    prices = unit_prices("gpt-4o-mini")
    assert prices is not None
    assert prices.output_per_token > prices.input_per_token > 0


def test_unit_prices_are_looked_up_once_per_model(mocker: MockerFixture) -> None:
    import genai_prices

    spy = mocker.spy(genai_prices, "calc_price")
    first = external_cost("gpt-4o-mini", 100, 10)
    calls_after_first = spy.call_count
    assert calls_after_first > 0
    for _ in range(5):
        assert external_cost("gpt-4o-mini", 100, 10) == first
    assert spy.call_count == calls_after_first


def test_unknown_model_is_charged_at_the_stand_in_price_warns_once_and_is_flagged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Never $0: a $0 call does not count towards the budget, so an endpoint serving a model the
    price table lacks could spend without limit."""
    from mem0_routed._prices import STAND_IN_MODEL

    with caplog.at_level(logging.WARNING, logger="mem0_routed.prices"):
        assert external_cost("no-such-model-x1", 1000, 1000) == external_cost(STAND_IN_MODEL, 1000, 1000) > 0
        assert external_cost("no-such-model-x1", 5, 5) > 0
        assert external_cost("no-such-model-x1", 0, 0) == 0.0
    warnings = [r for r in caplog.records if "no-such-model-x1" in r.getMessage()]
    assert len(warnings) == 1
    assert "register_price" in warnings[0].getMessage()
    assert not price_known("no-such-model-x1")
    assert price_known("gpt-4o-mini")


def test_register_price_fills_gaps_and_overrides() -> None:
    register_price("my-model", input_per_mtok=2.0, output_per_mtok=8.0)
    assert price_known("my-model")
    assert external_cost("my-model", 1_000_000, 500_000) == pytest.approx(2.0 + 4.0)
    with pytest.raises(ConfigError, match="input_per_mtok"):
        register_price("my-model", input_per_mtok=-1.0, output_per_mtok=1.0)


def test_local_calls_are_free() -> None:
    assert external_cost("llama3.2:3b", 10_000, 10_000, provider="ollama") == 0.0
    assert call_cost("ollama", "gpt-4o-mini", 10_000, 10_000) == 0.0
    assert call_cost("embedded", "smollm2", 10_000, 10_000) == 0.0
    assert call_cost("openai", "gpt-4o-mini", 1000, 100) == external_cost("gpt-4o-mini", 1000, 100) > 0


def test_negative_tokens_are_refused() -> None:
    with pytest.raises(ValueError, match="tokens_in=-1"):
        external_cost("gpt-4o-mini", -1, 0)


def test_estimate_tokens_out_default_is_capped_by_max_tokens() -> None:
    typical = estimate_tokens_out_default("query")
    assert typical > 0
    assert estimate_tokens_out_default("query", max_tokens=typical - 1) == typical - 1
    assert estimate_tokens_out_default("query", max_tokens=typical * 10) == typical
    assert estimate_tokens_out_default("mem0_reranker") < estimate_tokens_out_default("mem0_extraction")
    assert estimate_tokens_out_default("embedding") == 0
    assert estimate_tokens_out_default("something-new") > 0


def test_import_does_not_load_genai_prices() -> None:
    code = "import sys, mem0_routed._prices; print('genai_prices' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"
