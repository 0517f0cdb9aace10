"""Streamed local answers through the router and the real ollama client, against the fake Ollama:
loops stop early and keep their good items (degraded), a retry after a degenerate answer is a
different request, cut answers are flagged, keep_alive is sent."""

from __future__ import annotations

import json
import time

import pytest
from conftest import make_router
from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT, generate_additive_extraction_prompt

from mem0_routed import Router, RoutingError
from mem0_routed._ledger import MemoryLedger

pytestmark = pytest.mark.usefixtures("fresh", "no_backoff")


def router_and_ledger(server, **cfg) -> tuple[Router, MemoryLedger]:
    ledger = MemoryLedger()
    return make_router(server, ledger=ledger, **cfg), ledger


def extraction(text: str = "My name is Priya. I live in Lisbon. I work as a nurse.") -> list[dict]:
    user = generate_additive_extraction_prompt(existing_memories=[], new_messages=[{"role": "user", "content": text}])
    return [{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, {"role": "user", "content": user}]


def chats(server) -> list[dict]:
    return server.requests_to("/api/chat")


def stream_log(server) -> list[tuple[int, bool]]:
    """The fake's log of streamed answers, once its handler noticed the client hung up (or finished)."""
    for _ in range(500):
        if server.stream_log:
            break
        time.sleep(0.01)
    return list(server.stream_log)


def test_local_answers_are_streamed_and_read_to_the_end(ollama_server) -> None:
    router, _ = router_and_ledger(ollama_server)
    out = router.chat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    assert [m["text"] for m in json.loads(out.text)["memory"]] == [
        "My name is Priya.", "I live in Lisbon.", "I work as a nurse."]
    assert chats(ollama_server)[-1]["stream"] is True
    assert [hung_up for _, hung_up in stream_log(ollama_server)] == [False]  # read to the end
    assert out.degraded is None and out.tokens_out > 0


def test_a_looping_extraction_stops_early_keeps_its_items_and_is_marked_degraded(ollama_server) -> None:
    router, ledger = router_and_ledger(ollama_server)
    ollama_server.token_delay_s = 0.002  # the loop would run to 2,000 tokens; the client hangs up first
    ollama_server.set_fault("repeat_loop", times=1, paths=["/api/chat"])
    out = router.chat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    assert [m["text"] for m in json.loads(out.text)["memory"]] == [
        "My name is Priya.", "I live in Lisbon.", "I work as a nurse."]
    assert out.degraded == "repetition loop: kept 3 items"
    assert len(chats(ollama_server)) == 1  # the kept items are the answer: no second call
    sent, hung_up = stream_log(ollama_server)[0]
    assert hung_up and sent < 200  # of 2,000 tokens
    assert out.tokens_out < 200
    record = ledger.records()[-1]
    assert record.outcome == "degraded" and record.is_local
    assert out.to_dict()["degraded"] == "repetition loop: kept 3 items"


def test_a_loop_with_nothing_to_keep_is_retried_with_a_different_request(ollama_server) -> None:
    router, _ = router_and_ledger(ollama_server)
    ollama_server.set_fault("repeat_loop", times=1, paths=["/api/chat"])
    out = router.chat([{"role": "user", "content": "tell me about tea"}], max_tokens=400, temperature=0.1)
    first, second = chats(ollama_server)
    assert first != second  # never the identical request again
    assert "repeat_penalty" not in first["options"] and second["options"]["repeat_penalty"] > 1.1
    assert second["options"]["temperature"] > first["options"]["temperature"]
    assert out.degraded is None and any("repetition loop" in e for e in out.escalations)


def test_invalid_json_is_retried_with_a_changed_request_and_the_compact_prompt(ollama_server) -> None:
    router, _ = router_and_ledger(ollama_server, compact_extraction="never")
    ollama_server.set_fault("invalid_json", times=1, paths=["/api/chat"])
    router.chat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    first, second = chats(ollama_server)
    assert first["options"] != second["options"] and second["options"]["repeat_penalty"] > 1.1
    # compact_extraction: never keeps mem0's prompt; with auto the retry would switch to compact
    assert second["messages"][0]["content"] == ADDITIVE_EXTRACTION_PROMPT


def test_a_retry_after_a_degenerate_full_prompt_answer_switches_to_the_compact_prompt(ollama_server) -> None:
    from mem0_routed._speed import SPEEDS, Speed

    router, _ = router_and_ledger(ollama_server)
    SPEEDS.set(f"ollama@{ollama_server.url}", "mistral:7b", Speed(prefill_tps=5000.0, gen_tps=100.0))
    ollama_server.set_fault("invalid_json", times=1, paths=["/api/chat"])
    out = router.chat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    first, second = chats(ollama_server)
    assert first["messages"][0]["content"] == ADDITIVE_EXTRACTION_PROMPT  # measured fast: full prompt
    assert second["messages"][0]["content"] != ADDITIVE_EXTRACTION_PROMPT and out.compact_prompt


def test_an_answer_cut_at_max_tokens_is_flagged_not_a_plain_success(ollama_server) -> None:
    router, ledger = router_and_ledger(ollama_server)
    out = router.chat([{"role": "user", "content": "write a long story about a lighthouse keeper " * 3}],
                      max_tokens=5)
    assert out.text and out.degraded == "answer cut at max_tokens"
    assert ledger.records()[-1].outcome == "degraded"


def test_a_cut_extraction_keeps_its_complete_items(ollama_server) -> None:
    router, _ = router_and_ledger(ollama_server)
    ollama_server.set_fault("truncate_output", times=1, paths=["/api/chat"])
    out = router.chat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    kept = json.loads(out.text)["memory"]
    assert 1 <= len(kept) < 3 and out.degraded.startswith("answer cut at max_tokens: kept")


def test_a_loop_on_every_try_fails_with_the_reason(ollama_server) -> None:
    router, _ = router_and_ledger(ollama_server)
    ollama_server.set_fault("repeat_loop", paths=["/api/chat"])
    with pytest.raises(RoutingError) as err:
        router.chat([{"role": "user", "content": "tell me about tea"}], max_tokens=400)
    sent = chats(ollama_server)
    assert [r["model"] for r in sent] == ["mistral:7b", "mistral:7b", "codellama:13b", "codellama:13b"]
    assert sent[0] != sent[1] and sent[2] != sent[3]  # each model: a first try and a changed retry
    assert all("repetition loop" in a.error for a in err.value.attempts)


def test_keep_alive_is_sent_on_chat_and_embed_calls(ollama_server) -> None:
    router, _ = router_and_ledger(ollama_server, keep_alive="45m")
    router.chat([{"role": "user", "content": "hello"}], max_tokens=20)
    router.embed(["hello"])
    assert ollama_server.keep_alive_log == ["45m", "45m"]


def test_keep_alive_default_covers_a_working_session(ollama_server) -> None:
    router, _ = router_and_ledger(ollama_server)
    router.chat([{"role": "user", "content": "hello"}], max_tokens=20)
    assert ollama_server.keep_alive_log == ["1h"]


def test_bounded_extraction_schema_is_sent(ollama_server) -> None:
    router, _ = router_and_ledger(ollama_server)
    router.chat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    memory = chats(ollama_server)[-1]["format"]["properties"]["memory"]
    assert memory["maxItems"] >= 10 and memory["items"]["properties"]["text"]["maxLength"] >= 200


async def test_the_async_path_streams_and_stops_loops_too(ollama_server) -> None:
    router, _ = router_and_ledger(ollama_server)
    ollama_server.token_delay_s = 0.002
    ollama_server.set_fault("repeat_loop", times=1, paths=["/api/chat"])
    out = await router.achat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    assert out.degraded == "repetition loop: kept 3 items"
    assert stream_log(ollama_server)[0][1]  # the client hung up early
