"""What must hold when parts break: windows never unset, probes never stuck, a broken ledger never
fails a local call, secrets never shown, keep-local rules end to end, per-router settings honoured."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from conftest import make_router
from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT, generate_additive_extraction_prompt

from mem0_routed import ConfigError, Router, RouterConfig, RoutingError
from mem0_routed._ledger import MemoryLedger
from mem0_routed.testing import FakeOllamaServer, ModelSpec

pytestmark = pytest.mark.usefixtures("fresh", "no_backoff")


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


def test_a_cancelled_half_open_probe_does_not_lock_the_host_out(ollama_server, breaker_clock) -> None:
    router = make_router(ollama_server, breaker_failures=1, breaker_cooldown_s=30, read_timeout_s=5)
    ollama_server.set_fault("error500", paths=["/api/chat"])
    with pytest.raises(RoutingError):
        router.chat([{"role": "user", "content": "hi"}])
    ollama_server.clear_faults()
    ollama_server.set_fault("hang", paths=["/api/chat"])
    breaker_clock.advance(31)

    async def cancelled_probe() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(router.achat([{"role": "user", "content": "probe"}]), timeout=0.5)

    asyncio.run(cancelled_probe())
    ollama_server.release()
    ollama_server.clear_faults()
    breaker_clock.advance(31)
    assert router.chat([{"role": "user", "content": "back?"}]).model == "mistral:7b"


def test_an_unexpected_embedder_error_is_a_routing_error_and_the_host_recovers(
    ollama_server, mocker, breaker_clock
) -> None:
    router = make_router(ollama_server, breaker_failures=1, breaker_cooldown_s=30)
    host = router.runtime.backends("ollama")[0]
    mocker.patch.object(host, "embed", side_effect=OSError("disk on fire"))
    with pytest.raises(RoutingError, match="OSError"):
        router.embed(["hello"])
    mocker.stopall()
    with pytest.raises(RoutingError):  # open: the host is skipped until the cool-down is over
        router.embed(["hello"])
    breaker_clock.advance(31)
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
    host = second.runtime.backends("ollama")[0]
    assert second.runtime.breaker(host).failures == 7 and first.runtime.breaker(host).failures == 3
    second.chat([{"role": "user", "content": "hi"}], max_tokens=10)
    assert ollama_server.requests_to("/api/chat")[-1]["options"]["num_ctx"] == 8192


def test_auto_local_backend_picks_ollama_when_it_answers(ollama_server) -> None:
    router = Router(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, ledger="memory"))
    assert router.runtime.local_kind() == "ollama"
    assert router.chat([{"role": "user", "content": "hi"}]).backend == "ollama"


def test_auto_local_backend_without_ollama_or_extra_stays_on_ollama_and_says_so(ollama_server, mocker) -> None:
    import importlib.util

    real = importlib.util.find_spec
    mocker.patch("importlib.util.find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    ollama_server.set_fault("refused")
    router = Router(RouterConfig.from_mapping(ollama_base_url=ollama_server.url, ledger="memory"))
    with pytest.raises(RoutingError, match="start Ollama"):
        router.chat([{"role": "user", "content": "hi"}])
    assert router.runtime.local_kind() == "ollama"


def test_small_window_model_with_no_compact_and_no_external_is_refused_not_truncated() -> None:
    with FakeOllamaServer(models={"mistral:7b": ModelSpec(context_length=4096),
                                  "codellama:13b": ModelSpec(context_length=4096)}) as server:
        router = make_router(server, compact_extraction="never")
        with pytest.raises(RoutingError, match="window"):
            router.chat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
        assert server.requests_to("/api/chat") == []


# --- every message of every call is checked (issue 11, defect 1) ------------------------------------


def _aws_pair() -> str:
    import random

    rng = random.Random(7)
    upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    key_id = "AKIA" + "".join(rng.choice(upper) for _ in range(16))
    secret = "Q7x" + "".join(rng.choice(b64) for _ in range(35)) + "/9"
    return f"aws_access_key_id={key_id} and the secret {secret}"


def test_procedural_memory_with_secrets_in_a_system_message_never_leaves(
    ollama_server, openai_server, openai_key, tmp_path, monkeypatch
) -> None:
    """The issue's case: the real mem0 Memory, procedural memory, secrets in a system message,
    the local model failing: mem0's call must fail locally, never reach OpenAI."""
    import mem0.memory.main as mem0_main
    import mem0.memory.telemetry as mem0_telemetry
    from mem0 import Memory
    from mem0.exceptions import LLMError

    import mem0_routed  # noqa: F401  registers "routed"

    monkeypatch.setenv("MEM0_DIR", str(tmp_path / "mem0"))
    monkeypatch.setattr(mem0_main, "MEM0_TELEMETRY", False)
    monkeypatch.setattr(mem0_telemetry, "MEM0_TELEMETRY", False)
    router_keys = {"ollama_base_url": ollama_server.url, "ledger": "memory", "local_backend": "ollama",
                   "max_retries": 0}
    memory = Memory.from_config({
        "llm": {"provider": "routed", "config": {**router_keys, "openai_base_url": openai_server.base_url,
                                                 "openai_api_key": openai_key}},
        "embedder": {"provider": "routed", "config": {**router_keys, "embedding_dims": 768}},
        "vector_store": {"provider": "qdrant", "config": {"path": str(tmp_path / "q"), "embedding_model_dims": 768}},
        "history_db_path": str(tmp_path / "history.db"),
    })  # fmt: skip
    try:
        ollama_server.set_fault("error500", paths=["/api/chat"])
        steps = [
            {"role": "system", "content": f"Deploy notes: password=hunter2, {_aws_pair()}"},
            {"role": "user", "content": "Deploy the app to production."},
            {"role": "assistant", "content": "Deployed with the credentials above."},
        ]
        with pytest.raises((RoutingError, LLMError)):
            memory.add(steps, agent_id="deployer", memory_type="procedural_memory")
        assert openai_server.requests_to("/v1/chat/completions") == []
        assert ollama_server.requests_to("/api/chat")  # it was tried locally
    finally:
        memory.vector_store.client.close()


@pytest.mark.parametrize("where", ["system", "user"])
def test_a_chat_imitating_mem0_markers_is_checked_whole(ollama_server, openai_server, openai_key, where) -> None:
    from mem0.configs.prompts import PROCEDURAL_MEMORY_SYSTEM_PROMPT

    router = make_router(ollama_server, openai_server, openai_key, max_retries=0)
    ollama_server.set_fault("refused")
    imitation = PROCEDURAL_MEMORY_SYSTEM_PROMPT.replace("verbatim", "word for word") + "\nAdmin pwd=Tr0ub4dor&3"
    messages = [
        {"role": "system", "content": imitation if where == "system" else PROCEDURAL_MEMORY_SYSTEM_PROMPT},
        {"role": "user", "content": "Log in." if where == "system" else "Log in with pwd=Tr0ub4dor&3"},
        {"role": "user", "content": "Create procedural memory of the above conversation."},
    ]
    with pytest.raises(RoutingError, match="keep-local rule secret:password") as info:
        router.chat(messages)
    assert info.value.blocked_by and "Tr0ub4dor" not in str(info.value)
    assert openai_server.requests_to("/v1/chat/completions") == []


def test_mem0_s_own_prompt_alone_still_goes_out_as_a_fallback(ollama_server, openai_server, openai_key) -> None:
    """Cutting mem0's constants keeps its own calls eligible for the fallback (no false positive)."""
    from mem0.configs.prompts import PROCEDURAL_MEMORY_SYSTEM_PROMPT

    router = make_router(ollama_server, openai_server, openai_key, max_retries=0)
    ollama_server.set_fault("refused")
    out = router.chat([
        {"role": "system", "content": PROCEDURAL_MEMORY_SYSTEM_PROMPT},
        {"role": "user", "content": "Open the browser and search for flights."},
        {"role": "user", "content": "Create procedural memory of the above conversation."},
    ])  # fmt: skip
    assert out.backend == "openai" and str(out.decision.call_kind) == "mem0_procedural"


# --- the caller's bad input is the caller's error (defect 4) ----------------------------------------


@pytest.mark.parametrize("bad", [
    [{"role": "user", "content": "hello \ud800 there"}],
    [{"role": "system", "content": "x\udfff"}, {"role": "user", "content": "hi"}],
    [{"role": "user", "content": [{"type": "text", "text": "a\ud83d"}]}],
    [{"role": "user", "content": 42}],
    [{"role": "user", "content": [{"type": "text", "text": None}]}],
])  # fmt: skip
def test_bad_input_is_the_callers_error_and_never_trips_the_breaker(ollama_server, openai_server, openai_key,
                                                                     bad) -> None:
    from mem0_routed import InvalidInput

    router = make_router(ollama_server, openai_server, openai_key, breaker_failures=2)
    for _ in range(2):
        with pytest.raises(InvalidInput, match=r"messages\[\d\]") as info:
            router.chat(bad)
        assert isinstance(info.value, ValueError) and "unreadable" not in str(info.value)
    with pytest.raises(InvalidInput):
        asyncio.run(router.achat(bad))
    assert ollama_server.requests_to("/api/chat") == [] and openai_server.requests_to("/v1/chat/completions") == []
    host = router.runtime.backends("ollama")[0]
    assert router.runtime.breaker(host).state == "closed"
    out = router.chat([{"role": "user", "content": "hello there"}])
    assert out.is_local and out.backend == "ollama"
    assert router.get_metrics()["breakers"].get(host.name, "closed") == "closed"


def test_bad_input_to_embed_and_execute_query_is_refused_before_any_backend(ollama_server) -> None:
    from mem0_routed import InvalidInput

    router = make_router(ollama_server)
    with pytest.raises(InvalidInput, match=r"texts\[1\]"):
        router.embed(["fine", "bad \ud800"])
    with pytest.raises(InvalidInput):
        asyncio.run(router.execute_query("bad \udc80"))
    with pytest.raises(InvalidInput, match="temperature"):
        router.chat([{"role": "user", "content": "hi"}], temperature=float("nan"))
    assert ollama_server.requests_to("/api/embed") == [] and ollama_server.requests_to("/api/chat") == []
    assert len(router.embed(["fine"])[0]) == 768


# --- never send what the external model cannot hold (defect 10) -------------------------------------


def test_a_prompt_larger_than_the_external_window_never_leaves(ollama_server, openai_server, openai_key) -> None:
    router = make_router(ollama_server, openai_server, openai_key, max_retries=0, local_threshold=0)
    huge = "please summarise this log line about the weather today. " * 12_000  # ~170k tokens
    ollama_server.set_fault("refused")
    with pytest.raises(RoutingError, match="128000-token window") as info:
        router.chat([{"role": "user", "content": huge}])
    assert "gpt-4o-mini" in str(info.value.blocked_by)
    assert openai_server.requests_to("/v1/chat/completions") == []
    decision = router.route_query(huge)
    assert decision.is_local and not decision.external_fallback
    small = router.chat([{"role": "user", "content": "what is the capital of Peru?"}])
    assert small.backend == "openai"  # a prompt that fits still may go out


def test_a_backend_given_unencodable_text_blames_the_request_not_the_server(ollama_server, openai_server,
                                                                            openai_key) -> None:
    """Defence in depth under the router's own check: the client-side encoding error is a BadRequest
    (never retried, never counted by the breaker), not "an unreadable answer" from the server."""
    from pydantic import SecretStr

    from mem0_routed._errors import BadRequest
    from mem0_routed.backends._base import ChatRequest
    from mem0_routed.backends._ollama import OllamaBackend
    from mem0_routed.backends._openai import OpenAIBackend

    request = ChatRequest(model="mistral:7b", messages=[{"role": "user", "content": "a\ud800"}])
    for backend in (OllamaBackend(ollama_server.url),
                    OpenAIBackend(SecretStr(openai_key), base_url=openai_server.base_url)):
        with pytest.raises(BadRequest) as info:
            backend.chat(request)
        assert not info.value.trips_breaker and not info.value.transient
        assert "unreadable" not in str(info.value)


@pytest.mark.realollama
def test_a_lone_surrogate_never_opens_a_real_ollama_breaker(real_ollama_url: str) -> None:
    """The issue's case on a real Ollama 0.5.4: two calls with "\\ud800" used to open the breaker for
    the whole process (and were reported as "an unreadable answer"); now they are the caller's error."""
    from mem0_routed import InvalidInput

    router = Router(RouterConfig(ollama_base_url=real_ollama_url, llm_model="smollm2:135m", ledger="memory",
                                 local_backend="ollama", breaker_failures=2))
    try:
        for _ in range(2):
            with pytest.raises(InvalidInput, match="surrogate"):
                router.chat([{"role": "user", "content": "hello \ud800"}], max_tokens=8)
        host = router.runtime.backends("ollama")[0]
        assert router.runtime.breaker(host).state == "closed"
        out = router.chat([{"role": "user", "content": "Say hello."}], max_tokens=8)
        assert out.is_local and out.backend == "ollama" and out.model == "smollm2:135m"
    finally:
        router.close()
