"""What must hold when parts break: windows never unset, probes never stuck, a broken ledger never
fails a local call, secrets never shown, keep-local rules end to end, per-router settings honoured."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
import stamina
from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT, generate_additive_extraction_prompt

from mem0_routed import ConfigError, Router, RouterConfig, RoutingError
from mem0_routed._ledger import MemoryLedger
from mem0_routed._router import reset_routers
from mem0_routed.testing import FakeOllamaServer, ModelSpec


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch):
    for name in ("OLLAMA_URL", "OPENAI_API_KEY", "LLM_LOCAL_THRESHOLD", "MEM0_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    reset_routers()
    with stamina.set_testing(True, attempts=3, cap=True):
        yield
    reset_routers()


def make_router(ollama, openai=None, key=None, *, ledger=None, **cfg) -> Router:
    values = {"ollama_base_url": ollama.url, "ledger": "memory", "local_backend": "ollama", **cfg}
    if openai is not None:
        values.update(openai_base_url=openai.base_url, openai_api_key=key)
    return Router(RouterConfig.from_mapping(values), ledger=ledger or MemoryLedger())


def extraction(text: str = "My name is Alice. I live in Paris.") -> list[dict]:
    user = generate_additive_extraction_prompt(existing_memories=[], new_messages=[{"role": "user", "content": text}])
    return [{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, {"role": "user", "content": user}]


# --- num_ctx is always set --------------------------------------------------------------------------


def test_every_ollama_chat_carries_num_ctx_even_with_a_low_num_ctx_max(ollama_server) -> None:
    router = make_router(ollama_server, num_ctx_max=8192)
    router.serves_mem0 = True
    router.chat([{"role": "user", "content": "hi"}], max_tokens=100)
    out = router.chat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    assert out.compact_prompt and len(json.loads(out.text)["memory"]) == 2
    sizes = [r["options"].get("num_ctx") for r in ollama_server.requests_to("/api/chat")]
    assert sizes and all(s is not None and s <= 8192 for s in sizes)


# --- breakers are never left stuck --------------------------------------------------------------------


def test_a_cancelled_half_open_probe_does_not_lock_the_host_out(ollama_server) -> None:
    router = make_router(ollama_server, breaker_failures=1, breaker_cooldown_s=0.05, read_timeout_s=5)
    ollama_server.set_fault("error500", paths=["/api/chat"])
    with pytest.raises(RoutingError):
        router.chat([{"role": "user", "content": "hi"}])
    ollama_server.clear_faults()
    ollama_server.set_fault("hang", paths=["/api/chat"])
    time.sleep(0.1)

    async def cancelled_probe() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(router.achat([{"role": "user", "content": "probe"}]), timeout=0.5)

    asyncio.run(cancelled_probe())
    ollama_server.release()
    ollama_server.clear_faults()
    time.sleep(0.1)
    assert router.chat([{"role": "user", "content": "back?"}]).model == "mistral:7b"


def test_an_unexpected_embedder_error_is_a_routing_error_and_the_host_recovers(ollama_server, mocker) -> None:
    router = make_router(ollama_server, breaker_failures=1, breaker_cooldown_s=0.05)
    host = router._backends_of("ollama")[0]
    mocker.patch.object(host, "embed", side_effect=OSError("disk on fire"))
    with pytest.raises(RoutingError, match="OSError"):
        router.embed(["hello"])
    mocker.stopall()
    time.sleep(0.1)
    assert len(router.embed(["hello"])[0]) == 768


# --- a broken ledger ------------------------------------------------------------------------------------


class BrokenLedger(MemoryLedger):
    def spent_usd(self, since=None):  # type: ignore[override]
        raise ConnectionError("redis down")

    def counts(self, since=None):  # type: ignore[override]
        raise ConnectionError("redis down")

    def reserve_external(self, *a, **k):  # type: ignore[override]
        raise ConnectionError("redis down")

    def record(self, *a, **k):  # type: ignore[override]
        raise ConnectionError("redis down")


def test_a_broken_ledger_never_fails_a_local_call(ollama_server, openai_server, openai_key, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="mem0_routed")
    router = make_router(ollama_server, openai_server, openai_key, ledger=BrokenLedger(),
                         monthly_budget_usd=5, local_threshold=0)
    out = router.chat([{"role": "user", "content": "prove there are infinitely many primes"}])
    assert out.is_local  # complex, but the budget cannot be checked: nothing goes out
    assert any("ledger unavailable" in r for r in out.decision.reasons)
    ollama_server.set_fault("refused")
    with pytest.raises(RoutingError, match="ledger unavailable"):
        router.chat([{"role": "user", "content": "hello"}])
    assert openai_server.requests_to("/v1/chat/completions") == []
    assert "ledger" in caplog.text


def test_a_closed_router_reopens_its_ledger(ollama_server) -> None:
    router = Router(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, ledger="memory",
                                              local_backend="ollama"))
    router.chat([{"role": "user", "content": "one"}])
    router.close()
    router.chat([{"role": "user", "content": "two"}])
    assert router.ledger.counts().total == 1  # a fresh ledger, no error


# --- secrets --------------------------------------------------------------------------------------------


def test_redis_password_never_shown(caplog) -> None:
    from mem0.configs.base import MemoryConfig
    from pydantic import ValidationError

    import mem0_routed  # noqa: F401  registers "routed"

    url = "redis://:s3cretpw@redis.internal:6379/0"
    cfg = RouterConfig.from_mapping(ledger=url)
    assert "s3cretpw" not in repr(cfg) and "s3cretpw" not in str(cfg.safe_dict())
    assert "redis.internal" in repr(cfg)
    with pytest.raises(ConfigError) as info:
        RouterConfig.from_mapping(ledger=url, local_threshold=150)
    assert "s3cretpw" not in str(info.value)
    # mem0 validates its config with pydantic, which echoes the input in its errors
    try:
        MemoryConfig(llm={"provider": "routed", "config": {"ledger": url, "local_threshold": 150}})
    except (ValidationError, ConfigError) as exc:
        assert "s3cretpw" not in str(exc)


def test_generic_env_names_do_not_configure_the_router(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER", "/tmp/elsewhere.db")
    monkeypatch.setenv("LOCAL_THRESHOLD", "50")
    monkeypatch.setenv("MAX_RETRIES", "9")
    cfg = RouterConfig.from_mapping()
    assert cfg.local_threshold == 95 and cfg.max_retries == 2 and cfg.ledger == "memory"  # conftest's env


# --- keep-local rules end to end ------------------------------------------------------------------------


def test_pii_keeps_a_call_local_even_when_local_fails(ollama_server, openai_server, openai_key) -> None:
    router = make_router(ollama_server, openai_server, openai_key)
    ollama_server.set_fault("refused")
    with pytest.raises(RoutingError) as info:
        router.chat([{"role": "user", "content": "mail me at jane.doe@example.com please"}])
    assert "keep-local rule pii:email" in str(info.value)
    assert openai_server.requests_to("/v1/chat/completions") == []
    out = router.chat([{"role": "user", "content": "what is the capital of Peru?"}])
    assert out.backend == "openai"
    rec = [r for r in router.ledger.records() if not r.is_local][-1]
    assert rec.external_check and "none matched" in rec.external_check
    assert "Peru" not in json.dumps(rec.to_dict())  # no prompt unless log_prompts


def test_keep_local_call_kind_never_sends_mem0_extraction_out(ollama_server, openai_server, openai_key) -> None:
    router = make_router(ollama_server, openai_server, openai_key, keep_local_call_kinds=["mem0_extraction"])
    ollama_server.set_fault("refused")
    with pytest.raises(RoutingError, match="call_kind:mem0_extraction"):
        router.chat(extraction(), response_format={"type": "json_object"})
    assert openai_server.requests_to("/v1/chat/completions") == []


# --- per-router settings --------------------------------------------------------------------------------


def test_a_router_with_other_breaker_settings_gets_its_own_breaker(ollama_server) -> None:
    first = Router(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, ledger="memory",
                                             local_backend="ollama"))
    second = Router(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, ledger="memory",
                                              local_backend="ollama", breaker_failures=7, num_ctx_min=8192))
    first.embed(["warm up"])
    host = second._backends_of("ollama")[0]
    assert second.breaker(host).failures == 7 and first.breaker(host).failures == 3
    second.chat([{"role": "user", "content": "hi"}], max_tokens=10)
    assert ollama_server.requests_to("/api/chat")[-1]["options"]["num_ctx"] == 8192


def test_auto_local_backend_picks_ollama_when_it_answers(ollama_server) -> None:
    router = Router(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, ledger="memory"))
    assert router.local_kind() == "ollama"
    assert router.chat([{"role": "user", "content": "hi"}]).backend == "ollama"


def test_auto_local_backend_without_ollama_or_extra_stays_on_ollama_and_says_so(ollama_server, mocker) -> None:
    import importlib.util

    real = importlib.util.find_spec
    mocker.patch("importlib.util.find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    ollama_server.set_fault("refused")
    router = Router(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, ledger="memory"))
    with pytest.raises(RoutingError, match="start Ollama"):
        router.chat([{"role": "user", "content": "hi"}])
    assert router.local_kind() == "ollama"


def test_small_window_model_with_no_compact_and_no_external_is_refused_not_truncated() -> None:
    with FakeOllamaServer(models={"mistral:7b": ModelSpec(context_length=4096),
                                  "codellama:13b": ModelSpec(context_length=4096)}) as server:
        router = make_router(server, compact_extraction="never")
        with pytest.raises(RoutingError, match="window"):
            router.chat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
        assert server.requests_to("/api/chat") == []
