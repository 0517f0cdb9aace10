"""Property-based tests (hypothesis): whatever a caller passes — config dicts, env vars, message
lists — the answer is a result or one of the package's documented exceptions (``ConfigError``,
``InvalidInput``, ``RoutingError``: all ``Mem0RoutedError``), never another exception, a hang, a
tripped breaker, or a secret in the message.

Examples are bounded and the slow (HTTP) properties run fewer of them, so the file stays quick;
``HYPOTHESIS_PROFILE=thorough`` runs many more.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import stamina
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mem0_routed import ConfigError, InvalidInput, Mem0RoutedError, Router, RouterConfig, classify_messages
from mem0_routed._config import ROUTER_ENV_VARS, mask_url, mask_urls
from mem0_routed._ledger import MemoryLedger
from mem0_routed._privacy import KeepLocalRules
from mem0_routed.testing import reset

# A generous per-example deadline: no example may hang (a slow, shared CI machine must not flake).
_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("quick", max_examples=60, deadline=timedelta(seconds=10), suppress_health_check=_QUIET)
settings.register_profile("thorough", max_examples=1000, deadline=timedelta(seconds=10),
                          suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))

SECRET = "Zk9SECRETpw"  # planted where only a secret may sit: an API key or a URL password
KEY = f"sk-proj-{SECRET}abcdefghijklmnop"

# --- strategies ------------------------------------------------------------------------------------

_any_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["nan", "inf", "-1", "0", "1e309", "", " ", "true", "auto", "memory", "sqlite"]),
)  # fmt: skip
_urls = st.one_of(
    st.sampled_from(["http://localhost:11434", "https://h:1/v1", "http://[::1]:11434", "localhost:11434"]),
    st.builds(lambda user, host: f"http://{user}:{SECRET}@{host}", st.text("abc", max_size=3),
              st.sampled_from(["gpu", "h:11434", "h:bad", "[::1]:1", ""])),
    st.builds(lambda host: f"{SECRET}@{host}", st.sampled_from(["gpu:11434", "h"])),
    st.builds(lambda s: f"redis://:{SECRET}@{s}", st.sampled_from(["r:6379/0", "r:x"])),
)  # fmt: skip
_values = st.one_of(_any_scalar, _urls, st.lists(st.one_of(_any_scalar, _urls), max_size=3),
                    st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=10), _any_scalar), max_size=3))
_keys = st.one_of(st.sampled_from(sorted(RouterConfig.model_fields)), st.text(max_size=12))
_config_dicts = st.dictionaries(_keys, _values, max_size=6)

ENV_NAMES = sorted(ROUTER_ENV_VARS.values())  # the only env vars RouterConfig reads
_env_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=16)
_env_values = st.one_of(_env_text, _urls, st.sampled_from(["NaN", "inf", "-5", "0", "[]", "{}", "[\"(\"]", "1e400"]))
_envs = st.dictionaries(st.sampled_from(ENV_NAMES), _env_values, max_size=4)

_texts = st.one_of(
    st.text(max_size=80),  # any code point, lone surrogates included
    st.sampled_from([f"my key {KEY}", f"password={SECRET}", "hello", "\ud800", "a\u200bb", "\x00", ""]),
)
_parts = st.lists(st.one_of(
    _texts,
    st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(_texts, st.none(), st.integers())}),
    st.fixed_dictionaries({"type": st.sampled_from(["image_url", "weird"]), "image_url": st.just({"url": "x"})}),
    st.integers(),
), max_size=3)  # fmt: skip
_messages = st.lists(
    st.one_of(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "developer"]),
                               "content": st.one_of(_texts, st.none(), _parts)}),
        st.fixed_dictionaries({"role": st.one_of(st.text(max_size=8), st.integers(), st.none()),
                               "content": st.one_of(_texts, st.integers(), st.floats(), st.binary(max_size=4))}),
        # the role is echoed in errors (it names the caller's mistake); secrets are planted in text only
        st.builds(lambda d, role: {**d, **({"role": role} if role is not None else {})},
                  st.dictionaries(st.sampled_from(["content", "name"]), _texts, max_size=2),
                  st.one_of(st.none(), st.text(max_size=6))),
        st.one_of(st.none(), st.text(max_size=5), st.integers()),
    ),
    max_size=4,
)  # fmt: skip


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    names = set(ENV_NAMES) | {"OPENAI_API_KEY"}
    saved = {n: os.environ.get(n) for n in names}
    try:
        for n in names:
            os.environ.pop(n, None)
        os.environ.update(values)
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def _no_secret(exc: BaseException) -> None:
    text = f"{exc}\n{exc!r}"
    assert SECRET not in text, text


# --- config dicts and env vars ----------------------------------------------------------------------


@given(_config_dicts)
def test_any_config_dict_gives_a_config_or_a_config_error(values: dict[str, Any]) -> None:
    with _env({"MEM0_ROUTED_LEDGER": "memory"}):
        try:
            cfg = RouterConfig.from_mapping(values)
        except ConfigError as exc:
            _no_secret(exc)
            assert exc.key is not None
            return
    for shown in (repr(cfg), str(cfg.safe_dict())):
        assert SECRET not in shown
    if cfg.monthly_budget_usd is not None:
        assert math.isfinite(cfg.monthly_budget_usd) and cfg.monthly_budget_usd >= 0
    assert cfg.num_ctx_max is None or cfg.num_ctx_max >= cfg.num_ctx_min >= 256


@given(_config_dicts.map(lambda d: {**d, "openai_api_key": KEY}))
def test_the_api_key_is_never_in_a_config_error(values: dict[str, Any]) -> None:
    with _env({"MEM0_ROUTED_LEDGER": "memory"}):
        try:
            cfg = RouterConfig.from_mapping(values)
        except ConfigError as exc:
            _no_secret(exc)
            return
    assert SECRET not in repr(cfg) and SECRET not in str(cfg.safe_dict())


@given(_envs)
def test_any_env_gives_a_config_or_a_config_error(env: dict[str, str]) -> None:
    with _env({"MEM0_ROUTED_LEDGER": "memory", **env}):
        try:
            cfg = RouterConfig.from_mapping()
        except ConfigError as exc:
            _no_secret(exc)
            return
    assert SECRET not in repr(cfg)
    if cfg.monthly_budget_usd is not None:
        assert math.isfinite(cfg.monthly_budget_usd)


@given(st.text(max_size=40), st.text(st.characters(blacklist_characters="@/ \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0"
                                                    "\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
                                                    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"),
                                     min_size=1, max_size=12))
def test_a_url_password_is_never_shown(host: str, password: str) -> None:
    url = f"https://me:{password}@{host}"
    assert f":{password}@" not in mask_url(url) and f":{password}@" not in mask_urls(f"error at {url} here")


# --- message lists ----------------------------------------------------------------------------------


@given(_messages)
def test_classify_any_messages_gives_a_classification_or_invalid_input(messages: list[Any]) -> None:
    try:
        cls = classify_messages(messages)
    except InvalidInput as exc:
        assert isinstance(exc, ValueError)
        _no_secret(exc)
        return
    assert cls.estimated_tokens >= 0 and 1 <= cls.complexity <= 10


@given(st.text(max_size=300))
def test_keep_local_check_never_raises_and_never_echoes(text: str) -> None:
    verdict = KeepLocalRules().check(text + f" {KEY}", "query")
    assert verdict.keep_local and SECRET not in verdict.checked


@pytest.fixture(scope="module")
def _router_env(_ollama_server_module, _openai_server_module) -> Iterator[tuple[Router, Any, Any]]:
    reset()
    cfg = RouterConfig.from_mapping(ollama_base_url=_ollama_server_module.url, ledger="memory",
                                    local_backend="ollama", openai_base_url=_openai_server_module.base_url,
                                    openai_api_key="sk-test-key-for-fake-server", max_retries=0,
                                    breaker_failures=2)
    router = Router(cfg, ledger=MemoryLedger())
    with stamina.set_testing(True, attempts=1):
        yield router, _ollama_server_module, _openai_server_module
    reset()


@settings(max_examples=40)
@given(_messages)
def test_any_messages_to_the_router_never_trip_the_breaker_or_leak(_router_env, messages: list[Any]) -> None:
    router, ollama, openai = _router_env
    try:
        out = router.chat(messages)
    except Mem0RoutedError as exc:
        _no_secret(exc)
    else:
        assert out.is_local  # the local model is up: nothing needed to go out
    host = router.runtime.backends("ollama")[0]
    assert router.runtime.breaker(host).state == "closed"
    for body in openai.requests_to("/v1/chat/completions"):
        assert SECRET not in str(body)


_SECRETS = [KEY, f"password={SECRET}", "AKIAABCDEFGHIJKLMNOP", "call 415 555 0199", "jane@example.com",
            f"Authorization: Bearer {SECRET}0123456789"]
_INVISIBLE = st.sampled_from(["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\ufe0f"])


@given(st.sampled_from(_SECRETS), st.lists(st.tuples(st.integers(0, 60), _INVISIBLE), max_size=4),
       st.text(max_size=40), st.text(max_size=40))
def test_invisible_characters_never_hide_a_secret(secret: str, inserts: list[tuple[int, str]],
                                                  before: str, after: str) -> None:
    for pos, ch in sorted(inserts, reverse=True):
        pos = min(pos, len(secret))
        secret = secret[:pos] + ch + secret[pos:]
    verdict = KeepLocalRules().check(f"{before} {secret} {after}", "query")
    assert verdict.keep_local, (before, secret, after)


@given(st.text(max_size=200), st.one_of(st.none(), st.sampled_from(["simple", "complex", "code", "bogus"])))
def test_route_query_gives_a_decision_or_a_documented_error(_router_env, text: str, qt: str | None) -> None:
    router, _, _ = _router_env
    try:
        decision = router.route_query(text, qt)
    except InvalidInput as exc:
        assert qt == "bogus" or "surrogate" in str(exc)
        _no_secret(exc)
        return
    assert decision.chain and (decision.is_local or decision.external_fallback)
