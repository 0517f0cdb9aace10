"""Hostile tests of the tiers merged together: the OpenAI-compatible local tier, the backend table,
load spreading, the Router facade over its runtime, the ledger package, the documented env vars.

Each test is an attack on one promise (README "Guarantees"); the fake servers are real HTTP servers
spoken to by the real ``openai`` client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mem0_routed import ConfigError, Router, RouterConfig, RoutingError
from mem0_routed import _urls
from mem0_routed.backends import OpenAICompatibleBackend
from mem0_routed.testing import FakeOpenAIServer

MODELS = {"qwen": (4096, None), "emb": (512, 64)}
QSECRET = "QSECRETkey0123456789"


@pytest.fixture(autouse=True)
def _fresh(fresh: None, no_backoff: None) -> None:
    """Every test: no router env var from the shell, a fresh process state, no retry waits."""


@pytest.fixture(scope="module")
def _vllm_module() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(flavor="vllm", api_key=None, models=MODELS) as server:  # type: ignore[arg-type]
        yield server


@pytest.fixture
def vllm(_vllm_module: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    _vllm_module.reset()
    _vllm_module.start()
    yield _vllm_module
    _vllm_module.reset()


def compat_router(*urls: str, **cfg: Any) -> Router:
    values: dict[str, Any] = {"openai_compatible_urls": list(urls), "local_backend": "openai_compatible",
                              "llm_model": "qwen", "embedder_model": "emb", "ledger": "memory",
                              "ollama_base_url": "http://127.0.0.1:9", **cfg}
    return Router(RouterConfig.from_mapping(values))


def sent_out(server: FakeOpenAIServer) -> int:
    return len(server.requests_to("/v1/chat/completions"))


# --- keep-local and secrets -----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["openai_compatible_urls", "ollama_base_url", "openai_base_url"])
@pytest.mark.parametrize("tail", [f"?api_key={QSECRET}", f"#{QSECRET}"])
def test_a_key_in_a_url_query_is_refused_and_never_shown(key: str, tail: str) -> None:
    """Attack: ``http://gpu:8000/v1?api_key=…`` (how some proxies take keys). Before: accepted, and
    the key sat in the backend's name, so in every error, health entry, breaker and metrics label."""
    url = "http://127.0.0.1:8000/v1" + tail
    with pytest.raises(ConfigError, match="query string or fragment") as info:
        RouterConfig.from_mapping({key: [url] if key == "openai_compatible_urls" else url})
    assert QSECRET not in str(info.value)
    with pytest.raises(ValueError, match="query string") as direct:
        OpenAICompatibleBackend(url)
    assert QSECRET not in str(direct.value)


@pytest.mark.parametrize("url", ["https://api.together.xyz/v1", "http://8.8.8.8:8000/v1",
                                 "http://[2001:4860:4860::8888]:8000/v1", "http://vllm.example.com:8000",
                                 "http://[::ffff:8.8.8.8]:8000", "http://134744072:8000", "http://0x08080808:8000",
                                 "http://localhost.attacker.example:8000"])
def test_a_public_host_is_not_a_local_tier_unless_the_user_says_so(url: str) -> None:
    """Attack: a hosted OpenAI-compatible API (Together, Groq, a public IP, also written as one number
    or in hex, which the resolver reads as 8.8.8.8) as the "local" tier.
    Before: accepted, so secrets and personal data the keep-local rules hold back were sent to it,
    and its calls counted local at $0 in the share and the budget."""
    with pytest.raises(ConfigError, match="not on a private network.*openai_compatible_allow_public_hosts"):
        RouterConfig.from_mapping({"openai_compatible_urls": [url]})
    cfg = RouterConfig.from_mapping({"openai_compatible_urls": [url], "openai_compatible_allow_public_hosts": True})
    assert cfg.openai_compatible_urls == [url]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:8000/v1", "http://[::1]:8000",
                                 "http://10.0.0.7:8000", "http://192.168.1.20:8000", "http://172.20.0.3:8000",
                                 "http://100.101.1.2:8000", "http://gpu-0:8000/v1", "http://vllm.internal:8000",
                                 "http://vllm.default.svc.cluster.local:8000", "http://box.local:1234"])
def test_private_hosts_stay_a_local_tier(url: str) -> None:
    assert _urls.is_private_host(url)
    assert RouterConfig.from_mapping({"openai_compatible_urls": [url]}).openai_compatible_urls == [url]


AWS = "AKIAIOSFODNN7EXAMPLE"
PASSWORD = "correct-horse-battery"
TOOL = {"type": "function", "function": {"name": "deploy", "description": f"deploys with key {AWS}",
                                         "parameters": {"type": "object", "properties": {}}}}


@pytest.mark.parametrize("where", ["user", "system", "tool", "schema"])
def test_the_compat_tier_down_a_secret_never_goes_to_openai(openai_server: FakeOpenAIServer, openai_key: str,
                                                            where: str) -> None:
    """Attack: the compatible server refuses connections, OpenAI is configured and the share is wide
    open: the external fallback must not take a prompt with a secret in it, wherever it sits."""
    router = compat_router("http://127.0.0.1:9/v1", openai_base_url=openai_server.base_url,
                           openai_api_key=openai_key, local_threshold=0)
    messages = [{"role": "system", "content": f"ops bot; key {AWS}" if where == "system" else "ops bot"},
                {"role": "user", "content": f"deploy with {AWS} please" if where == "user" else "deploy please"}]
    schema = {"type": "json_schema", "json_schema": {"name": "r", "schema": {
        "type": "object", "description": f"use {AWS}", "properties": {"ok": {"type": "boolean"}}}}}
    with pytest.raises(RoutingError):
        router.chat(messages, tools=[TOOL] if where == "tool" else None,
                    response_format=schema if where == "schema" else None)
    assert sent_out(openai_server) == 0
    out = router.chat([{"role": "user", "content": "what is the capital of France?"}])  # harmless: may go out
    assert not out.is_local and sent_out(openai_server) == 1


# --- a typo never sends calls out ---------------------------------------------------------------------


def test_local_backend_without_its_servers_never_goes_external_silently(
        openai_server: FakeOpenAIServer, openai_key: str) -> None:
    """Attack: ``local_backend: openai_compatible`` with the URLs missing (``OPENAI_COMPATIBLE_URL``,
    a typo, is not read). Before: every call found no local backend and was answered by OpenAI as a
    fallback (not bound by the share), successfully and silently."""
    router = Router(RouterConfig.from_mapping({
        "local_backend": "openai_compatible", "ledger": "memory", "llm_model": "qwen",
        "openai_api_key": openai_key, "openai_base_url": openai_server.base_url}))
    with pytest.raises(ConfigError, match="local_backend is 'openai_compatible' but no openai_compatible backend.*"
                                          "openai_compatible_urls"):
        router.chat([{"role": "user", "content": "hello, what is 2+2?"}])
    assert sent_out(openai_server) == 0


# --- load spreading ----------------------------------------------------------------------------------


def test_a_host_that_answers_garbage_fast_does_not_take_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: one of two servers answers instantly with an empty answer (a broken chat template, a
    crashed model behind a live HTTP server). Its answers arrive, so its breaker stays closed; before,
    they were also measured as its latency, so it looked the fastest host and got the first two
    tries of every call, each rejected, before the call moved on. Now a rejected answer puts it
    behind the hosts that answered well (for ``stale_s``; then it is tried again)."""
    from mem0_routed._spread import LOADS

    monkeypatch.setattr(LOADS, "_stale_s", 3600.0)  # no re-measuring during the test, however slow the machine
    with FakeOpenAIServer(flavor="vllm", api_key=None, models=MODELS) as broken, \
            FakeOpenAIServer(flavor="vllm", api_key=None, models=MODELS) as good:  # type: ignore[arg-type]
        broken.set_fault("empty", paths=("/v1/chat/completions",))
        good.set_fault("slow", delay_s=0.2, paths=("/v1/chat/completions",))
        router = compat_router(broken.base_url, good.base_url)
        calls = 8
        for i in range(calls):
            out = router.chat([{"role": "user", "content": f"question number {i}: what is {i} + {i}?"}])
            assert out.is_local and out.host == good.base_url
        assert sent_out(good) == calls
        assert sent_out(broken) <= 4, sent_out(broken)  # before: 2 per call (16)


def test_auto_is_not_locked_out_of_a_server_that_was_still_starting(
        monkeypatch: pytest.MonkeyPatch, vllm: FakeOpenAIServer, openai_server: FakeOpenAIServer,
        openai_key: str) -> None:
    """Attack: ``local_backend: auto`` with ``openai_compatible_urls`` set, and the app starts before
    vLLM has loaded its model (minutes). Before: the first call found no local tier answering and
    chose Ollama *for the life of the process*, so every later call, with vLLM up, went to OpenAI as
    a fallback (not bound by the share). Now a choice is only kept once some tier answered."""
    from dataclasses import replace

    from mem0_routed.backends import KINDS

    monkeypatch.setitem(KINDS, "embedded", replace(KINDS["embedded"], factory=lambda cfg: []))  # not installed
    vllm.set_fault("refused")
    router = compat_router(vllm.base_url, local_backend="auto", openai_base_url=openai_server.base_url,
                           openai_api_key=openai_key)
    first = router.chat([{"role": "user", "content": "what is the capital of France?"}])
    assert not first.is_local  # nothing local answered: the fallback took it
    vllm.clear_faults()  # the server is up now
    later = [router.chat([{"role": "user", "content": f"what is {i} + {i}?"}]) for i in range(3)]
    assert all(out.is_local and out.backend == "openai_compatible" for out in later), [o.backend for o in later]
    assert sent_out(openai_server) == 1


# --- budget ------------------------------------------------------------------------------------------


def test_a_ledger_that_answers_nonsense_to_a_reservation_opens_no_budget(
        openai_server: FakeOpenAIServer, openai_key: str, caplog: pytest.LogCaptureFixture) -> None:
    """Attack: ``Router(ledger=...)`` with a custom ledger (it passes the protocol check) whose
    ``reserve_external`` returns None, a stub's default. Before: None read as "nothing to reserve",
    so the call went out past a $0.00001 budget. Now anything but a Reservation or a Refusal is a
    refusal, logged at ERROR."""
    from mem0_routed import BudgetExceeded, MemoryLedger

    class StubLedger(MemoryLedger):
        def reserve_external(self, *args: Any, **kwargs: Any) -> Any:
            return None

    router = Router(RouterConfig.from_mapping({
        "ollama_base_url": "http://127.0.0.1:9", "local_backend": "ollama", "openai_api_key": openai_key,
        "openai_base_url": openai_server.base_url, "monthly_budget_usd": 0.00001, "local_threshold": 0}),
        ledger=StubLedger())
    with pytest.raises(BudgetExceeded, match="reserve_external returned NoneType"):
        router.chat([{"role": "user", "content": "compare Paxos and Raft in depth, with their failure modes"}])
    assert sent_out(openai_server) == 0
    assert any(r.levelname == "ERROR" and "StubLedger" in r.getMessage() for r in caplog.records)


def test_mem0s_vllm_api_key_is_the_servers_key_never_sent_to_openai(
        openai_server: FakeOpenAIServer, openai_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: a config moved from mem0's ``vllm`` provider to ``routed`` keeps mem0's keys,
    ``vllm_base_url`` and ``api_key`` (mem0's vLLM key). Before: the router took ``vllm_base_url``
    for the compatible tier but ``api_key`` for the OpenAI key, so the vLLM key went to
    api.openai.com in the Authorization header of every fallback, and vLLM got no key (401)."""
    from mem0.utils.factory import LlmFactory

    vllm_key = "vllm-SECRETkey-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", openai_key)
    with FakeOpenAIServer(flavor="vllm", api_key=vllm_key, models=MODELS) as server:  # type: ignore[arg-type]
        llm = LlmFactory.create("routed", {"model": "qwen", "vllm_base_url": server.base_url, "api_key": vllm_key,
                                           "local_backend": "openai_compatible",
                                           "openai_base_url": openai_server.base_url, "ledger": "memory"})
        cfg = llm.router.config
        assert cfg.openai_compatible_api_key is not None and cfg.openai_compatible_api_key.get_secret_value() == vllm_key
        assert cfg.openai_api_key is not None and cfg.openai_api_key.get_secret_value() == openai_key
        answer = llm.generate_response([{"role": "user", "content": "hello there, what is 2+2?"}])
        assert answer and sent_out(server) == 1
    assert sent_out(openai_server) == 0


# --- one caller's bad request is that caller's problem ------------------------------------------------


def test_one_callers_bad_schema_does_not_change_structured_output_for_everyone() -> None:
    """Attack: one caller sends a ``json_schema`` the server refuses (vLLM/FastAPI: 400 with
    ``loc: [body, response_format, json_schema, ...]``). The backend is shared by the process, and
    ``auto`` then switched it to ``json_object`` *for good*: every later mem0 extraction on that
    server, anyone's, is asked without its schema being enforced (vLLM's ``json_object`` ignores it)."""
    from mem0_routed.testing._base import Fault, Reply

    class StrictSchemas(FakeOpenAIServer):
        def _route(self, method: str, path: str, body: Any, headers: dict[str, str], fault: Fault | None) -> Reply:
            rf = body.get("response_format") if isinstance(body, dict) else None
            if isinstance(rf, dict) and rf.get("type") == "json_schema" and "not-a-type" in str(rf):
                return Reply(400, {"detail": [{"loc": ["body", "response_format", "json_schema", "schema"],
                                               "msg": "invalid JSON schema", "type": "value_error"}]})
            return super()._route(method, path, body, headers, fault)

    with StrictSchemas(flavor="vllm", api_key=None, models=MODELS) as server:  # type: ignore[arg-type]
        router = compat_router(server.base_url)
        bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "not-a-type"}}}
        try:
            router.chat([{"role": "user", "content": "give me json"}], response_format=bad)
        except RoutingError:
            pass
        backend = router.runtime.backends("openai_compatible")[0]
        assert getattr(backend, "structured_output") == "auto"


def test_a_replica_that_refuses_our_key_does_not_get_a_turn_at_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: one of two vLLM replicas was started with another ``--api-key``. Its 401 comes back
    at once and (rightly) never trips its breaker, and a failure is never measured as latency, so it
    stayed "unmeasured" and took its turn first at every other call: a wasted request and a failed
    attempt each time, for ever. Now a refusal that its breaker does not count puts it behind the
    hosts that answered (for ``stale_s``), like a garbage answer."""
    from mem0_routed._spread import LOADS

    monkeypatch.setattr(LOADS, "_stale_s", 3600.0)
    key = "vllm-KEY-0123456789abcdef"
    with FakeOpenAIServer(flavor="vllm", api_key="another-key-0123456789", models=MODELS) as wrong, \
            FakeOpenAIServer(flavor="vllm", api_key=key, models=MODELS) as right:  # type: ignore[arg-type]
        router = compat_router(wrong.base_url, right.base_url, openai_compatible_api_key=key)
        calls = 8
        for i in range(calls):
            assert router.chat([{"role": "user", "content": f"question {i}: what is {i} + 1?"}]).host == right.base_url
        assert sent_out(right) == calls
        assert wrong.auth_failures <= 3, wrong.auth_failures  # before: 8 refused requests in 8 calls


def test_the_servers_key_is_never_shown_even_when_the_server_echoes_it(caplog: pytest.LogCaptureFixture) -> None:
    """Attack: a proxy in front of vLLM that puts the ``Authorization`` header it got in its error
    bodies (500 JSON, 400 FastAPI ``detail``, a 502 HTML page, a 401 on ``/v1/models``). The key
    must not reach an error, an attempt, health, metrics, a repr or a log line (DEBUG included)."""
    import json
    import logging

    from mem0_routed.testing._base import Fault, Reply

    key = "vllm-SECRETkey-0123456789abcdef"

    class Echo(FakeOpenAIServer):
        mode = "500"

        def _route(self, method: str, path: str, body: Any, headers: dict[str, str], fault: Fault | None) -> Reply:
            auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
            if self.mode == "500":
                return Reply(500, {"error": {"message": f"upstream failed for {auth}", "type": "server_error"}})
            if self.mode == "400":
                return Reply(400, {"detail": [{"msg": f"bad header {auth}", "loc": ["header"]}]})
            if self.mode == "models401" and path == "/v1/models":
                return Reply(401, {"error": f"key {auth} refused"})
            return Reply(502, f"<html>proxy error {auth}</html>".encode())

    caplog.set_level(logging.DEBUG)
    with Echo(flavor="vllm", api_key=key, models=MODELS) as server:  # type: ignore[arg-type]
        for mode in ("500", "400", "models401", "html"):
            server.mode = mode
            router = compat_router(server.base_url, openai_compatible_api_key=key)
            shown: list[str] = []
            for call in (lambda: router.chat([{"role": "user", "content": "hi"}]), lambda: router.embed(["x"])):
                with pytest.raises(RoutingError) as info:
                    call()
                shown += [str(info.value), repr(info.value.attempts), str(info.value.fixes)]
            shown += [json.dumps(router.health(), default=str), json.dumps(router.get_metrics("process"), default=str),
                      repr(router), repr(router.runtime.backends("openai_compatible"))]
            assert key not in "\n".join(shown), mode
    assert key not in caplog.text


@pytest.mark.parametrize("models_body", [{"object": "list", "data": None}, {"data": "qwen"},
                                         {"data": [{"id": 5}, "junk", {"id": "qwen"}]}])
def test_a_server_with_a_broken_model_list_fails_alone(models_body: dict[str, Any]) -> None:
    """Attack: one of two servers answers ``GET /v1/models`` with ``"data": null`` (a proxy, a
    half-started server) or junk entries. Before: a bare ``TypeError``/``AttributeError`` escaped
    from ``chat`` and ``health`` for every caller, instead of the call moving to the other server."""
    from mem0_routed.testing._base import Fault, Reply

    class BrokenList(FakeOpenAIServer):
        def _route(self, method: str, path: str, body: Any, headers: dict[str, str], fault: Fault | None) -> Reply:
            if path == "/v1/models":
                return Reply(200, models_body)
            return super()._route(method, path, body, headers, fault)

    with BrokenList(flavor="vllm", api_key=None, models=MODELS) as broken, \
            FakeOpenAIServer(flavor="vllm", api_key=None, models=MODELS) as good:  # type: ignore[arg-type]
        router = compat_router(broken.base_url, good.base_url)
        for i in range(4):
            assert router.chat([{"role": "user", "content": f"what is {i} + 2?"}]).is_local
        hosts = {h["name"]: h for h in router.health()["hosts"]}
        assert hosts[f"openai_compatible@{good.base_url}"]["reachable"]
        if models_body["data"] != [{"id": 5}, "junk", {"id": "qwen"}]:
            assert not hosts[f"openai_compatible@{broken.base_url}"]["reachable"]
            assert "without a list of models" in hosts[f"openai_compatible@{broken.base_url}"]["error"]


def test_a_validation_error_echoing_the_prompt_keeps_the_secret_out_of_log_and_ledger(
        caplog: pytest.LogCaptureFixture) -> None:
    """Attack: vLLM and llama-cpp-python answer a refused request with FastAPI's 422, whose
    ``detail[].input`` echoes the refused value: here the message, with a secret in it. Before, the
    detail was put whole in the error, so the secret reached the log (INFO), the RoutingError and
    the ledger's ``error`` field (a Redis on another host, with ``log_prompts`` off)."""
    import logging

    from mem0_routed.testing._base import Fault, Reply

    class Refusing(FakeOpenAIServer):
        def _route(self, method: str, path: str, body: Any, headers: dict[str, str], fault: Fault | None) -> Reply:
            if path == "/v1/chat/completions":
                return Reply(422, {"detail": [{"type": "string_too_long", "loc": ["body"], "msg": "too long",
                                               "input": body["messages"][0]["content"], "ctx": {"max_length": 10}}]})
            return super()._route(method, path, body, headers, fault)

    caplog.set_level(logging.DEBUG, logger="mem0_routed")
    with Refusing(flavor="vllm", api_key=None, models=MODELS) as server:  # type: ignore[arg-type]
        router = compat_router(server.base_url)
        with pytest.raises(RoutingError) as info:
            router.chat([{"role": "user", "content": f"{PASSWORD} is my password, call +44 20 7946 0958"}])
    assert "string_too_long" in str(info.value) and "too long" in str(info.value)  # where and why stay
    errors = [r.error or "" for r in router.runtime.ledger.records()]
    assert any("string_too_long" in e for e in errors)
    for private in (PASSWORD[:8], "7946"):
        assert private not in str(info.value) and not any(private in e for e in errors)
        assert private not in caplog.text


# --- breakers ----------------------------------------------------------------------------------------


def test_one_huge_prompt_timing_out_does_not_open_a_healthy_hosts_breaker(ollama_server: Any) -> None:
    """Attack: one caller sends a prompt that fits the window but, at the host's measured speed,
    needs longer than ``call_deadline_ceiling_s``. Its try is cut at the ceiling, as it must be;
    before, that timeout also counted against the host, so one such request (``breaker_failures:
    1`` here; three with the default) opened a healthy host's breaker for everyone."""
    from mem0_routed._speed import SPEEDS

    router = Router(RouterConfig.from_mapping({
        "ollama_base_url": ollama_server.url, "local_backend": "ollama", "ledger": "memory", "breaker_failures": 1,
        "call_deadline_floor_s": 0.3, "call_deadline_ceiling_s": 0.5, "max_retries": 0}))
    backend = router.runtime.backends("ollama")[0]
    # measured: 1,000 tokens/s reading, 100 writing; ~3,000 prompt tokens then take ~3 s > the 0.5 s ceiling
    SPEEDS.observe(backend.name, "mistral:7b", prompt_tokens=1000, prompt_s=1.0, answer_tokens=100, answer_s=1.0)
    ollama_server.set_fault("slow", delay_s=1.0, paths=("/api/chat",), times=1)
    out = router.chat([{"role": "user", "content": "summarise: " + "word " * 3000}], query_type="simple",
                      max_tokens=5)
    assert [(a.kind, a.model) for a in out.attempts][:1] == [("timeout", "mistral:7b")]
    # the chain's next local model, on the same host: before, its breaker was open and it was skipped
    assert out.is_local and out.model != "mistral:7b", out.attempts
    assert router.runtime.breaker(backend).state == "closed"
    assert router.chat([{"role": "user", "content": "and now a short one?"}], query_type="simple").is_local
