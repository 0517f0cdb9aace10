"""Warm-up: the chat model is loaded with the num_ctx its calls will use and the prompt cache is
primed with the extraction system prompt that will be sent; the choice rests on a measurement."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT, generate_additive_extraction_prompt

from mem0_routed import Router, RouterConfig
from mem0_routed._cli import main
from mem0_routed._compact_prompt import COMPACT_EXTRACTION_PROMPT
from mem0_routed._ledger import MemoryLedger
from mem0_routed._num_ctx import ContextPlanner
from mem0_routed._request_shape import compact_extraction_need
from mem0_routed._speed import SPEEDS, Speed

#: The window mem0's compact extraction prompt is given (4,096 while the prompt stays under ~1.6k tokens).
COMPACT_WINDOW = ContextPlanner().plan("m", compact_extraction_need(), None)


pytestmark = pytest.mark.usefixtures("fresh")


def mem0_router(server, **cfg) -> Router:
    router = Router(RouterConfig.from_mapping({"ollama_base_url": server.url, "ledger": "memory",
                                               "local_backend": "ollama", **cfg}), ledger=MemoryLedger())
    router.serves_mem0 = True
    return router


def extraction() -> list[dict]:
    user = generate_additive_extraction_prompt(existing_memories=[], new_messages=[
        {"role": "user", "content": "I'm Priya and I live in Lisbon."}])
    return [{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, {"role": "user", "content": user}]


def test_warmup_on_a_slow_host_primes_the_compact_prompt_with_the_calls_num_ctx(ollama_server) -> None:
    SPEEDS.set(f"ollama@{ollama_server.url}", "mistral:7b", Speed(prefill_tps=40.0, gen_tps=10.0))
    router = mem0_router(ollama_server)
    report = router.warmup()
    assert report["ok"] and report["hosts"][0]["prompt"] == "compact"
    prime = ollama_server.requests_to("/api/chat")[-1]
    assert prime["messages"][0]["content"].startswith(COMPACT_EXTRACTION_PROMPT)
    assert prime["options"]["num_predict"] == 1 and prime["keep_alive"] == "1h"
    assert ollama_server.requests_to("/api/embed")[-1]["model"] == "nomic-embed-text:latest"
    router.chat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    call = ollama_server.requests_to("/api/chat")[-1]
    assert call["options"]["num_ctx"] == prime["options"]["num_ctx"] == COMPACT_WINDOW < 16384  # small, no reload
    n = len(prime["messages"]) - 1
    assert call["messages"][:n] == prime["messages"][:n]  # the cached prefix is what the call starts with
    assert ollama_server.reloads["mistral:7b"] == 0


def test_warmup_measures_first_and_a_fast_host_gets_the_full_prompt(ollama_server) -> None:
    router = mem0_router(ollama_server)
    report = router.warmup()
    host = report["hosts"][0]
    assert "probe_s" in host and host["prompt"] == "full" and host["num_ctx"] == 16384
    reloads = ollama_server.reloads["mistral:7b"]
    router.chat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    call = ollama_server.requests_to("/api/chat")[-1]
    assert call["messages"][0]["content"] == ADDITIVE_EXTRACTION_PROMPT and call["options"]["num_ctx"] == 16384
    assert ollama_server.reloads["mistral:7b"] == reloads  # the calls after warm-up never reload
    assert router.get_metrics()["num_ctx_changes"].get("mistral:7b", 0) == 0


async def test_async_warmup(ollama_server) -> None:
    router = mem0_router(ollama_server, compact_extraction="always")
    report = await router.awarmup()
    assert report["ok"] and report["hosts"][0]["prompt"] == "compact"


def test_cli_warmup(ollama_server) -> None:
    result = CliRunner().invoke(main, ["--ollama-url", ollama_server.url, "warmup", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["hosts"][0]["num_ctx"] and report["embedding"]["model"] == "nomic-embed-text:latest"


def test_cli_warmup_of_a_missing_model_exits_non_zero_with_the_fix(ollama_server) -> None:
    result = CliRunner().invoke(main, ["--ollama-url", ollama_server.url, "warmup", "--model", "qwen9:1b"])
    assert result.exit_code == 1
    assert "ollama pull qwen9:1b" in result.output
