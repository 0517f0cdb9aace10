"""What an external call costs, from genai-prices' price table (never hand-kept numbers).

genai-prices takes ~200 ms to import, so it is imported on first use and each model's unit prices
are cached after that (one lookup per model per process; later calls are two multiplications).
Tiered prices (e.g. above 200k prompt tokens) are not modelled: the first tier is used.

Unknown model: ``external_cost`` charges it at a stand-in model's price (``STAND_IN_MODEL``, from
the same table) and logs one warning per model. Not 0: a $0 call never counts towards the budget,
so an endpoint serving a model the table lacks could spend without limit; and not a refusal, which
would turn a price-table gap into an outage. ``price_known`` is the flag for callers that must know
(the cost projection raises instead), and ``register_price`` sets the real price.
Local calls (Ollama, in-process) cost 0.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from ._errors import ConfigError
from .backends._kinds import is_local_kind

__all__ = [
    "UnitPrices",
    "call_cost",
    "estimate_tokens_out_default",
    "external_cost",
    "price_known",
    "register_price",
    "unit_prices",
]  # fmt: skip

log = logging.getLogger("mem0_routed.prices")

_PER_MTOK = 1_000_000

# Typical answer sizes by call kind (tokens), for estimating a call's cost before it is made.
# mem0's reranker asks for a score (and sets max_tokens=100); extraction answers a short JSON list.
_TOKENS_OUT_BY_KIND = {
    "mem0_extraction": 400,
    "mem0_procedural": 600,
    "mem0_reranker": 20,
    "mem0_vision": 300,
    "query": 300,
    "embedding": 0,
}
_TOKENS_OUT_FALLBACK = 300
#: Whose price an unknown external model is charged at (a full-size model: rather over than under).
STAND_IN_MODEL = "gpt-4o"


@dataclass(frozen=True, slots=True)
class UnitPrices:
    """US dollars per token (input, output) for one model at one provider."""

    input_per_token: float
    output_per_token: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return tokens_in * self.input_per_token + tokens_out * self.output_per_token


_lock = threading.Lock()
_cache: dict[tuple[str, str], UnitPrices | None] = {}
_overrides: dict[tuple[str, str], UnitPrices] = {}
_warned: set[tuple[str, str]] = set()


def register_price(
    model: str, *, input_per_mtok: float, output_per_mtok: float, provider: str = "openai"
) -> None:
    """Set a model's price (USD per million tokens) when genai-prices does not know it, or differs."""
    for name, value in (("input_per_mtok", input_per_mtok), ("output_per_mtok", output_per_mtok)):
        if not value >= 0:
            raise ConfigError(
                f"{name}={value!r} for {model!r} must be 0 or more US dollars per million tokens"
            )
    with _lock:
        _overrides[(provider, model)] = UnitPrices(input_per_mtok / _PER_MTOK, output_per_mtok / _PER_MTOK)


def unit_prices(model: str, provider: str = "openai") -> UnitPrices | None:
    """The model's per-token prices, or ``None`` when neither genai-prices nor ``register_price`` knows it."""
    key = (provider, model)
    with _lock:
        if key in _overrides:
            return _overrides[key]
        if key in _cache:
            return _cache[key]
    found = _lookup(model, provider)
    with _lock:
        _cache[key] = found
    return found


def _lookup(model: str, provider: str) -> UnitPrices | None:
    from genai_prices import Usage, calc_price

    try:
        inp = calc_price(Usage(input_tokens=_PER_MTOK), model, provider_id=provider).total_price
        out = calc_price(Usage(output_tokens=_PER_MTOK), model, provider_id=provider).total_price
    except LookupError:
        return None
    return UnitPrices(float(inp) / _PER_MTOK, float(out) / _PER_MTOK)


def price_known(model: str, provider: str = "openai") -> bool:
    return unit_prices(model, provider) is not None


def external_cost(model: str, tokens_in: int, tokens_out: int, provider: str = "openai") -> float:
    """US dollars for one call; at ``STAND_IN_MODEL``'s price (one warning per model) when unknown."""
    if is_local_kind(provider):
        return 0.0
    if tokens_in < 0 or tokens_out < 0:
        raise ValueError(
            f"token counts must be 0 or more, got tokens_in={tokens_in}, tokens_out={tokens_out}"
        )
    prices = unit_prices(model, provider)
    if prices is None:
        prices = unit_prices(STAND_IN_MODEL, "openai")
        assert prices is not None, f"genai-prices lost {STAND_IN_MODEL}"
        with _lock:
            first = (provider, model) not in _warned
            _warned.add((provider, model))
        if first:
            log.warning(
                "no price known for %s model %r; its calls are charged at %s's price ($%.2f in, $%.2f out "
                "per million tokens) so the budget still holds. Fix: use a model genai-prices knows, or "
                "call mem0_routed._prices.register_price(%r, input_per_mtok=..., output_per_mtok=...)",
                provider, model, STAND_IN_MODEL, prices.input_per_token * _PER_MTOK,
                prices.output_per_token * _PER_MTOK, model,
            )  # fmt: skip
    return prices.cost(tokens_in, tokens_out)


def call_cost(backend: str, model: str, tokens_in: int, tokens_out: int) -> float:
    """Cost of a finished call by backend kind: local backends are free, others priced by provider."""
    return 0.0 if is_local_kind(backend) else external_cost(model, tokens_in, tokens_out, backend)


def estimate_tokens_out_default(call_kind: str = "query", max_tokens: int | None = None) -> int:
    """Expected answer tokens before a call is made (to price a reservation), capped by ``max_tokens``.

    The real count settles the reservation afterwards, so this only has to be a fair guess.
    """
    typical = _TOKENS_OUT_BY_KIND.get(str(call_kind), _TOKENS_OUT_FALLBACK)
    return min(typical, max_tokens) if max_tokens is not None and max_tokens >= 0 else typical


def _reset_for_tests() -> None:
    with _lock:
        _cache.clear()
        _overrides.clear()
        _warned.clear()
