"""Execution through the real ollama/openai clients against the protocol test servers:
fallback chain, retries, breakers, context windows, validation cascade, errors the caller sees."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from conftest import make_router
from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT, generate_additive_extraction_prompt

from mem0_routed import BudgetExceeded, RoutingError
from mem0_routed._num_ctx import ContextPlanner
from mem0_routed._request_shape import compact_extraction_need
from mem0_routed._speed import SPEEDS, Speed
from mem0_routed.testing import FakeOllamaServer, ModelSpec

#: The window mem0's compact extraction prompt is given (4,096 while the prompt stays under ~1.6k tokens).
COMPACT_WINDOW = ContextPlanner().plan("m", compact_extraction_need(), None)


pytestmark = pytest.mark.usefixtures("fresh", "no_backoff")


def extraction_messages(text: str = "My name is Alice. I live in Paris and I love hiking.") -> list[dict]:
    user = generate_additive_extraction_prompt(existing_memories=[], new_messages=[{"role": "user", "content": text}])
    return [{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, {"role": "user", "content": user}]


def chats(server) -> list[dict]:
    return server.requests_to("/api/chat")


# --- the happy path -------------------------------------------------------------------------------


def test_simple_query_goes_local_with_num_ctx_set(ollama_server) -> None:
    router = make_router(ollama_server)
    out = router.chat([{"role": "user", "content": "hi there, how are you?"}])
    assert out.is_local and out.backend == "ollama" and out.model == "mistral:7b" and out.text
    sent = chats(ollama_server)[-1]
    assert sent["options"]["num_ctx"] >= 4096


def fast_host(server, model: str = "mistral:7b") -> None:
    """Tell the router the host reads and writes fast (as a measurement would): full prompt fits the budget."""
    SPEEDS.set(f"ollama@{server.url}", model, Speed(prefill_tps=5000.0, gen_tps=100.0))


def test_mem0_extraction_gets_schema_and_a_window_that_fits(ollama_server) -> None:
    router = make_router(ollama_server)
    fast_host(ollama_server)
    out = router.chat(extraction_messages(), response_format={"type": "json_object"}, max_tokens=2000)
    facts = json.loads(out.text)["memory"]
    assert [f["text"] for f in facts] == ["My name is Alice.", "I live in Paris and I love hiking."]
    sent = chats(ollama_server)[-1]
    assert isinstance(sent["format"], dict) and "memory" in sent["format"]["properties"]
    assert sent["options"]["num_ctx"] == 16384  # ~8.5k-token prompt + 2000 answer, a coarse step


@pytest.mark.parametrize(("fast", "window"), [(True, 16384), (False, COMPACT_WINDOW)])
def test_num_ctx_is_stable_across_a_mixed_workload(ollama_server, fast: bool, window: int) -> None:
    router = make_router(ollama_server)
    if fast:
        fast_host(ollama_server)
    for i in range(6):
        router.chat(extraction_messages(f"I have {i} cats. My sister lives in Rome."),
                    response_format={"type": "json_object"}, max_tokens=2000)
        router.chat([{"role": "user", "content": f"what is {i} plus {i}?"}], max_tokens=100)
    sizes = {r["options"]["num_ctx"] for r in chats(ollama_server) if r["model"] == "mistral:7b"}
    assert sizes == {window}  # the short calls reuse the window instead of reloading the model
    assert router.get_metrics()["num_ctx_changes"].get("mistral:7b", 0) == 0


# --- fallback chain -------------------------------------------------------------------------------


def test_dead_local_falls_back_to_openai_and_records_it(ollama_server, openai_server, openai_key) -> None:
    router = make_router(ollama_server, openai_server, openai_key)
    ollama_server.set_fault("refused")
    out = router.chat(extraction_messages(), response_format={"type": "json_object"})
    assert not out.is_local and out.backend == "openai" and out.model == "gpt-4o-mini"
    assert json.loads(out.text)["memory"]
    assert out.cost_usd > 0 and any("failed" in e for e in out.escalations)
    metrics = router.get_metrics()
    assert metrics["external_queries"] == 1 and metrics["fallbacks"] == 1


def test_breaker_opens_and_later_calls_skip_the_dead_host(ollama_server, openai_server, openai_key) -> None:
    router = make_router(ollama_server, openai_server, openai_key, breaker_failures=2, breaker_cooldown_s=60)
    ollama_server.set_fault("error500")
    for _ in range(6):
        assert router.chat([{"role": "user", "content": "hello"}]).backend == "openai"
    hits = len(chats(ollama_server))
    for _ in range(10):
        router.chat([{"role": "user", "content": "hello again"}])
    assert len(chats(ollama_server)) == hits  # breaker open: no more calls to the failing host
    assert "open" in router.get_metrics()["breakers"].values()


def test_hanging_local_costs_one_timeout_per_cooldown(ollama_server, openai_server, openai_key) -> None:
    router = make_router(ollama_server, openai_server, openai_key, read_timeout_s=0.3, breaker_failures=1,
                         breaker_cooldown_s=300)
    ollama_server.set_fault("hang", paths=["/api/chat"])
    outs = [router.chat([{"role": "user", "content": f"question {i}"}]) for i in range(8)]
    assert all(o.backend == "openai" for o in outs)
    assert len(chats(ollama_server)) == 1  # one timeout paid, then the breaker skips the host


def test_half_open_probe_recovers_the_host(ollama_server, openai_server, openai_key, breaker_clock) -> None:
    router = make_router(ollama_server, openai_server, openai_key, breaker_failures=1, breaker_cooldown_s=30)
    ollama_server.set_fault("error500", times=3)
    assert router.chat([{"role": "user", "content": "hi"}]).backend == "openai"
    assert router.chat([{"role": "user", "content": "hi"}]).backend == "openai"  # open: Ollama skipped
    breaker_clock.advance(31)
    assert router.chat([{"role": "user", "content": "hi"}]).backend == "ollama"


def test_transient_500_is_retried_on_the_same_host(ollama_server) -> None:
    router = make_router(ollama_server)
    ollama_server.set_fault("error500", times=1, paths=["/api/chat"])
    out = router.chat([{"role": "user", "content": "hi"}])
    assert out.is_local and out.model == "mistral:7b"
    assert len(chats(ollama_server)) == 2


def test_429_with_retry_after_is_retried(ollama_server) -> None:
    router = make_router(ollama_server)
    ollama_server.set_fault("error429", times=1, retry_after=0.01, paths=["/api/chat"])
    assert router.chat([{"role": "user", "content": "hi"}]).model == "mistral:7b"


def test_model_not_pulled_uses_a_stand_in_and_names_the_pull(ollama_server) -> None:
    router = make_router(ollama_server)
    ollama_server.remove_model("mistral:7b")
    out = router.chat([{"role": "user", "content": "hello"}])
    assert out.is_local and out.model == "codellama:13b"
    assert any(a.fix == "run `ollama pull mistral:7b`" for a in out.attempts)


def test_every_candidate_failing_lists_attempts_and_fixes(ollama_server) -> None:
    router = make_router(ollama_server)
    ollama_server.set_fault("refused")
    with pytest.raises(RoutingError) as info:
        router.chat([{"role": "user", "content": "hello"}])
    msg = str(info.value)
    assert "mistral:7b" in msg and "start Ollama" in msg and "set OPENAI_API_KEY" in msg
    assert len(info.value.attempts) >= 1 and info.value.blocked_by


def test_bad_openai_key_is_not_retried_and_not_leaked(ollama_server, openai_server) -> None:
    bad = "sk-wrong-key-0123456789abcdef"
    router = make_router(ollama_server, openai_server, bad)
    ollama_server.set_fault("refused")
    with pytest.raises(RoutingError) as info:
        router.chat([{"role": "user", "content": "hello"}])
    assert len(openai_server.requests_to("/v1/chat/completions")) == 1
    assert "valid key" in str(info.value) and bad not in str(info.value) and bad[3:-4] not in str(info.value)
    assert router.runtime.breaker(router.runtime.backends("openai")[0]).state == "closed"


def test_force_local_never_calls_openai(ollama_server, openai_server, openai_key) -> None:
    router = make_router(ollama_server, openai_server, openai_key)
    ollama_server.set_fault("refused")
    with pytest.raises(RoutingError) as info:
        router.chat([{"role": "user", "content": "hello"}], force_local=True)
    assert info.value.blocked_by == "force_local"
    assert openai_server.requests_to("/v1/chat/completions") == []


def test_spent_budget_blocks_the_fallback_with_a_clear_error(ollama_server, openai_server, openai_key) -> None:
    router = make_router(ollama_server, openai_server, openai_key, monthly_budget_usd=0)
    ollama_server.set_fault("refused")
    with pytest.raises(RoutingError) as info:
        router.chat([{"role": "user", "content": "hello"}])
    assert "budget" in str(info.value)
    assert openai_server.requests_to("/v1/chat/completions") == []


def test_budget_reservation_refusal_raises_budget_exceeded(ollama_server, openai_server, openai_key) -> None:
    router = make_router(ollama_server, openai_server, openai_key, monthly_budget_usd=0.0000001)
    ollama_server.set_fault("refused")
    with pytest.raises(BudgetExceeded):
        router.chat([{"role": "user", "content": "hello " * 500}])
    assert openai_server.requests_to("/v1/chat/completions") == []


# --- validation cascade ---------------------------------------------------------------------------


def test_invalid_json_is_retried_locally_then_escalated_nothing_lost(ollama_server) -> None:
    router = make_router(ollama_server)
    ollama_server.set_fault("invalid_json", model="mistral:7b")
    out = router.chat(extraction_messages(), response_format={"type": "json_object"}, max_tokens=2000)
    assert out.is_local and out.model != "mistral:7b"
    assert len(json.loads(out.text)["memory"]) == 2
    assert sum("invalid json" in e for e in out.escalations) == 2  # one local retry, then the stand-in
    rec = router.get_metrics()
    assert rec["escalations_by_reason"]


def test_one_bad_answer_then_a_good_one_stays_on_the_same_model(ollama_server) -> None:
    router = make_router(ollama_server)
    ollama_server.set_fault("invalid_json", model="mistral:7b", times=1)
    out = router.chat(extraction_messages(), response_format={"type": "json_object"}, max_tokens=2000)
    assert out.model == "mistral:7b" and len(json.loads(out.text)["memory"]) == 2


def test_empty_answer_escalates(ollama_server) -> None:
    router = make_router(ollama_server)
    ollama_server.set_fault("empty", model="mistral:7b")
    out = router.chat([{"role": "user", "content": "hello"}])
    assert out.text and out.model != "mistral:7b"


# --- context windows ------------------------------------------------------------------------------


def test_prompt_too_big_for_the_first_model_moves_to_one_whose_window_fits() -> None:
    models = {"mistral:7b": ModelSpec(context_length=4096), "codellama:13b": ModelSpec(context_length=16384),
              "deepseek-coder:6.7b": ModelSpec(context_length=16384)}
    with FakeOllamaServer(models=models) as server:
        router = make_router(server, compact_extraction="never")
        out = router.chat(extraction_messages(), response_format={"type": "json_object"}, max_tokens=2000)
        assert out.model == "codellama:13b" and json.loads(out.text)["memory"]
        assert any("window" in a.error for a in out.attempts)
        assert all(r["model"] != "mistral:7b" for r in server.requests_to("/api/chat"))


def test_small_window_uses_the_compact_extraction_prompt() -> None:
    models = {"mistral:7b": ModelSpec(context_length=8192), "codellama:13b": ModelSpec(context_length=8192)}
    with FakeOllamaServer(models=models) as server:
        router = make_router(server)
        out = router.chat(extraction_messages(), response_format={"type": "json_object"}, max_tokens=2000)
        assert out.compact_prompt and out.model == "mistral:7b"
        assert len(json.loads(out.text)["memory"]) == 2
        sent = server.requests_to("/api/chat")[-1]
        assert len(sent["messages"][0]["content"]) < len(ADDITIVE_EXTRACTION_PROMPT) / 4


def test_nothing_fits_and_no_external_is_a_clear_error() -> None:
    models = {name: ModelSpec(context_length=2048) for name in ("mistral:7b", "codellama:13b")}
    with FakeOllamaServer(models=models) as server:
        router = make_router(server)
        with pytest.raises(RoutingError, match="window"):
            router.chat([{"role": "user", "content": "word " * 12000}], max_tokens=100)


# --- several hosts ---------------------------------------------------------------------------------


def test_load_spreads_over_hosts_and_skips_a_dead_one() -> None:
    with FakeOllamaServer() as a, FakeOllamaServer() as b:
        router = make_router([a.url, b.url])
        for i in range(10):
            router.chat([{"role": "user", "content": f"hi {i}"}])
        assert len(chats(a)) >= 3 and len(chats(b)) >= 3
        a.set_fault("refused")
        before = len(chats(b))
        for i in range(6):
            assert router.chat([{"role": "user", "content": f"again {i}"}]).host == b.url
        assert len(chats(b)) == before + 6


def test_embeddings_fail_over_to_another_host_with_the_same_model() -> None:
    with FakeOllamaServer() as a, FakeOllamaServer() as b:
        router = make_router([a.url, b.url])
        a.set_fault("refused")
        vecs = router.embed(["alpha beta", "gamma"])
        assert len(vecs) == 2 and len(vecs[0]) == 768
        assert all(r["model"] == "nomic-embed-text:latest" for r in b.requests_to("/api/embed"))


# --- embeddings -----------------------------------------------------------------------------------


def test_embedding_cache_serves_repeats(ollama_server) -> None:
    router = make_router(ollama_server)
    first = router.embed(["one text", "two text"])
    again = router.embed(["two text", "one text", "three"])
    assert again[0] == first[1] and again[1] == first[0]
    embeds = ollama_server.requests_to("/api/embed")
    assert len(embeds) == 2 and embeds[-1]["input"] == ["three"]
    assert router.get_metrics()["embedding_cache"]["hits"] == 2


def test_embedding_dims_mismatch_is_a_clear_error(ollama_server) -> None:
    from mem0_routed import EmbeddingDimensionMismatch

    router = make_router(ollama_server, embedding_dims=512)
    with pytest.raises(EmbeddingDimensionMismatch, match="768.*512|512.*768"):
        router.embed(["hello"])


def test_embeddings_never_go_external(ollama_server, openai_server, openai_key) -> None:
    router = make_router(ollama_server, openai_server, openai_key)
    ollama_server.set_fault("refused")
    with pytest.raises(RoutingError, match="never switch model"):
        router.embed(["hello"])
    assert openai_server.requests_to("/v1/embeddings") == []


# --- seed API, async, threads ---------------------------------------------------------------------


def test_execute_query_async_returns_the_seed_fields(ollama_server) -> None:
    router = make_router(ollama_server)
    result = asyncio.run(router.execute_query("what's the capital of France?"))
    for key in ("response", "model", "backend", "is_local", "cost", "latency_s", "query_type", "escalations"):
        assert key in result
    assert result["is_local"] and result["cost"] == 0
    again = asyncio.run(router.execute_query("and of Italy?", force_local=True))
    assert again["backend"] == "ollama"


def test_execute_query_falls_back_async_too(ollama_server, openai_server, openai_key) -> None:
    router = make_router(ollama_server, openai_server, openai_key)
    ollama_server.set_fault("refused")
    result = asyncio.run(router.execute_query("hello"))
    assert result["backend"] == "openai" and result["cost"] > 0


def test_health_tells_down_missing_and_unconfigured_apart(ollama_server) -> None:
    router = make_router(ollama_server)
    ollama_server.remove_model("codellama:13b")
    report = asyncio.run(router.health_check())
    assert report["ollama"] is True and report["openai"] is False
    assert report["missing_models"] == ["codellama:13b"]
    assert any("ollama pull codellama:13b" in p for p in report["problems"])
    assert any("OpenAI not configured" in p for p in report["problems"])
    ollama_server.set_fault("refused")
    down = make_router(ollama_server).health()
    assert down["ollama"] is False and any("server down" in p for p in down["problems"])


def test_concurrent_threads_share_one_router(ollama_server) -> None:
    router = make_router(ollama_server)
    errors: list[BaseException] = []
    results: list[str] = []

    def work(i: int) -> None:
        try:
            results.append(router.chat([{"role": "user", "content": f"thread {i} says hi"}]).text)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(results) == 16
    assert router.get_metrics()["total_queries"] == 16


@pytest.mark.parametrize(("fast", "window"), [(True, 16384), (False, COMPACT_WINDOW)])
def test_a_mem0_router_sizes_the_extraction_model_for_mem0_from_the_first_call(ollama_server, fast: bool,
                                                                               window: int) -> None:
    router = make_router(ollama_server)
    router.serves_mem0 = True
    if fast:
        fast_host(ollama_server)
    router.chat([{"role": "user", "content": "score this: Query: a\n\nDocument: b"}], max_tokens=100)
    router.chat(extraction_messages(), response_format={"type": "json_object"}, max_tokens=2000)
    sizes = [r["options"]["num_ctx"] for r in chats(ollama_server) if r["model"] == "mistral:7b"]
    assert sizes == [window, window]  # no reload when the extraction call comes second
    # unmeasured: the compact prompt (and its small window); fast: mem0's full prompt
    assert router.get_metrics()["extraction_prompt"] == {"mistral:7b": "full" if fast else "compact"}


def test_a_plain_router_keeps_small_windows_for_small_calls(ollama_server) -> None:
    router = make_router(ollama_server)
    router.chat([{"role": "user", "content": "hello"}], max_tokens=100)
    assert chats(ollama_server)[-1]["options"]["num_ctx"] == 4096


def test_an_answer_is_always_bounded_even_when_the_caller_gives_no_max_tokens(ollama_server) -> None:
    router = make_router(ollama_server, default_max_tokens=321)
    router.chat([{"role": "user", "content": "tell me a story"}])
    assert ollama_server.requests_to("/api/chat")[-1]["options"]["num_predict"] == 321
    router.chat([{"role": "user", "content": "tell me a story"}], max_tokens=50)
    assert ollama_server.requests_to("/api/chat")[-1]["options"]["num_predict"] == 50
