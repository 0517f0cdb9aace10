"""Execution against a real Ollama 0.5.4 with SmolLM2-135M (marker ``realollama``): mem0 add + search
through the router, a stable num_ctx and keep_alive on every request, a real repetition loop
stopped early, the deadline path, warm-up."""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mem0_routed import Router, RouterConfig, RoutingError
from mem0_routed._num_ctx import ContextPlanner
from mem0_routed._request_shape import compact_extraction_need
from mem0_routed._stream import StreamGuard
from mem0_routed.backends._base import ChatRequest
from mem0_routed.backends._ollama import OllamaBackend

#: The window mem0's compact extraction prompt is given (4,096 while the prompt stays under ~1.6k tokens).
COMPACT_WINDOW = ContextPlanner().plan("m", compact_extraction_need(), None)

pytestmark = [pytest.mark.realollama, pytest.mark.usefixtures("fresh")]
MODEL = "smollm2:135m"


def loaded(url: str) -> dict[str, Any]:
    """/api/ps: the models Ollama holds in memory, by name."""
    with urllib.request.urlopen(f"{url}/api/ps", timeout=10) as resp:
        return {m["name"]: m for m in json.load(resp)["models"]}


def expires_in(entry: dict[str, Any]) -> timedelta:
    """How long Ollama will keep the model (``expires_at`` has nanoseconds and a Z: trimmed for 3.10)."""
    stamp = re.sub(r"\.\d+", "", entry["expires_at"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp) - datetime.now(timezone.utc)


def router_config(url: str, **extra: Any) -> dict[str, Any]:
    return {"ollama_base_url": url, "ledger": "memory", "local_backend": "ollama", **extra}


def test_mem0_add_and_search_through_the_router(real_ollama_url: str, tmp_path: Path, mocker) -> None:  # type: ignore[no-untyped-def]
    os.environ.setdefault("MEM0_TELEMETRY", "False")
    from mem0 import Memory

    import mem0_routed  # noqa: F401 - registers "routed"

    sent = mocker.spy(OllamaBackend, "_chat_kwargs")
    memory = Memory.from_config({
        "llm": {"provider": "routed", "config": {**router_config(real_ollama_url), "model": MODEL}},
        "embedder": {"provider": "routed", "config": {**router_config(real_ollama_url), "model": MODEL,
                                                      "embedding_dims": 576}},
        "vector_store": {"provider": "qdrant", "config": {"path": str(tmp_path / "q"), "embedding_model_dims": 576}},
        "history_db_path": str(tmp_path / "history.db"),  # not the user's ~/.mem0 history
    })
    try:
        for text in ("Hi, I'm Priya. I moved to Lisbon last month and I work as a nurse.",
                     "I'm vegetarian and allergic to peanuts."):
            memory.add([{"role": "user", "content": text}], user_id="priya")
        stored = memory.get_all(filters={"user_id": "priya"})["results"]
        assert stored, "nothing was stored"
        found = memory.search("Where does Priya live?", filters={"user_id": "priya"}, top_k=5)["results"]
        assert {r["id"] for r in found} <= {r["id"] for r in stored} and found
        requests = [call for call in sent.spy_return_list if call["model"] == MODEL]
        assert len(requests) >= 2
        assert len({r["options"]["num_ctx"] for r in requests}) == 1  # one window: no reload between adds
        assert all(r["keep_alive"] == "1h" for r in requests)
        router = memory.llm.router
        assert router.get_metrics()["num_ctx_changes"].get(MODEL, 0) == 0
        assert router.runtime.planner.choices[MODEL] == "compact"  # the full prompt does not fit an 8k window
        assert expires_in(loaded(real_ollama_url)[MODEL]) > timedelta(minutes=50)  # keep_alive 1h, not 5 min
    finally:
        memory.vector_store.client.close()


def test_a_real_repetition_loop_is_stopped_early(real_ollama_url: str) -> None:
    """SmolLM2 loops on this prompt without a repeat penalty ("red, blue, red, blue, ..." until the
    token cap, measured); the guard ends the stream at the loop."""
    backend = OllamaBackend(real_ollama_url, keep_alive="10m")
    prompt = "Continue the list: red, blue, red, blue, red, blue, red, blue, red, blue, red, blue,"
    result = backend.chat(ChatRequest(model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=400,
                                      temperature=0.0, repeat_penalty=1.0, num_ctx=4096, stream_guard=StreamGuard))
    backend.close()
    assert result.stopped == "loop" and result.done_reason is None
    assert result.tokens_out is not None and result.tokens_out < 200  # of the 400 it would have written


def test_the_deadline_path_on_a_real_model(real_ollama_url: str) -> None:
    from mem0_routed._compact_prompt import COMPACT_EXTRACTION_PROMPT

    router = Router(RouterConfig.from_mapping(router_config(real_ollama_url, llm_model=MODEL, deadline_s=1.0)))
    long_prompt = f"[{time.time()}] Summarise this:\n" + COMPACT_EXTRACTION_PROMPT * 6  # seconds of prefill on 2 cores
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(_call(router, long_prompt)), daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the 1 s deadline did not end the call"
    err = box[0]
    assert isinstance(err, RoutingError)
    timeout = next(a for a in err.attempts if a.kind == "timeout")
    assert "deadline_s (1s)" in timeout.error and "-token prompt" in timeout.error and timeout.fix
    # our own deadline is no verdict on the host: the next call is served
    ok = Router(RouterConfig.from_mapping(router_config(real_ollama_url, llm_model=MODEL)))
    assert ok.chat([{"role": "user", "content": "Say hi."}], max_tokens=8).is_local


def _call(router: Router, prompt: str) -> Any:
    try:
        return router.chat([{"role": "user", "content": prompt}], max_tokens=50)
    except RoutingError as exc:
        return exc


def test_warmup_on_the_real_ollama(real_ollama_url: str, mocker) -> None:  # type: ignore[no-untyped-def]
    from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT, generate_additive_extraction_prompt

    sent = mocker.spy(OllamaBackend, "_chat_kwargs")
    router = Router(RouterConfig.from_mapping(router_config(real_ollama_url, llm_model=MODEL,
                                                            embedder_model=MODEL)))
    router.serves_mem0 = True
    report = router.warmup()
    assert report["ok"], report
    host = report["hosts"][0]
    assert host["prompt"] == "compact" and host["num_ctx"] == COMPACT_WINDOW and "tokens/s" in host["speed"]
    assert "seconds" in report["embedding"]
    assert expires_in(loaded(real_ollama_url)[MODEL]) > timedelta(minutes=50)
    user = generate_additive_extraction_prompt(existing_memories=[], new_messages=[
        {"role": "user", "content": "I'm Priya and I live in Lisbon."}])
    out = router.chat([{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, {"role": "user", "content": user}],
                      response_format={"type": "json_object"}, max_tokens=300)
    assert out.compact_prompt
    prime, call = sent.spy_return_list[-2], sent.spy_return_list[-1]
    assert call["options"]["num_ctx"] == prime["options"]["num_ctx"] == COMPACT_WINDOW
    assert call["messages"][:5] == prime["messages"][:5]  # the call starts with the primed prefix
