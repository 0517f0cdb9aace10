"""Local answers from OpenAI-compatible servers are streamed through the router's guard, over real
HTTP with the real ``openai`` client: a loop is cut (the server sees the client hang up) and keeps
its complete items, a complete JSON object ends the read, the deadline holds against a trickle,
usage is read from the last chunk (or counted by us when a server sends none), and speeds are
learned from the chunk times. The last test runs a real llama-cpp-python server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import run_bounded
from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT, generate_additive_extraction_prompt

from mem0_routed import Router, RouterConfig, RoutingError
from mem0_routed._ledger import MemoryLedger
from mem0_routed._request_shape import estimate_messages
from mem0_routed._speed import SPEEDS
from mem0_routed._stream import StreamGuard
from mem0_routed.backends import OpenAICompatibleBackend
from mem0_routed.backends._base import ChatRequest
from mem0_routed.testing import FakeOpenAIServer
from mem0_routed.testing import _fakemodel as fm
from mem0_routed.testing._base import Fault, Reply

MODELS = {"qwen": (8192, None), "emb": (512, 64)}
CHAT = "/v1/chat/completions"
ITEMS = ["My name is Alice.", "I live in Paris and I love hiking."]


pytestmark = pytest.mark.usefixtures("fresh", "no_backoff")  # env vars cleared, a fresh process, no retry waits


@pytest.fixture(params=["vllm", "llamacpp"])
def server(request: pytest.FixtureRequest) -> Iterator[FakeOpenAIServer]:
    """vLLM sends usage in a last chunk of its own when asked; llama-server on its finish chunk."""
    with FakeOpenAIServer(flavor=request.param, api_key=None, models=MODELS) as fake:
        yield fake


def compat_router(server: FakeOpenAIServer, ledger: MemoryLedger | None = None, **cfg: Any) -> Router:
    values: dict[str, Any] = {
        "openai_compatible_urls": [server.base_url], "local_backend": "openai_compatible",
        "llm_model": "qwen", "embedder_model": "emb", "ledger": ledger or "memory",
        "ollama_base_url": "http://127.0.0.1:9", **cfg}
    if ledger is not None:
        values.pop("ledger")
        return Router(RouterConfig.from_mapping(values), ledger=ledger)
    return Router(RouterConfig.from_mapping(values))


def extraction(text: str = "My name is Alice. I live in Paris and I love hiking.") -> list[dict[str, Any]]:
    user = generate_additive_extraction_prompt(existing_memories=[], new_messages=[{"role": "user", "content": text}])
    return [{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, {"role": "user", "content": user}]


def chats(server: FakeOpenAIServer) -> list[dict[str, Any]]:
    return server.requests_to(CHAT)


def stream_log(server: FakeOpenAIServer, n: int = 1) -> list[tuple[int, bool]]:
    """The fake's log of streamed answers, once its handler noticed the client hung up (or finished)."""
    for _ in range(500):
        if len(server.stream_log) >= n:
            break
        time.sleep(0.01)
    return list(server.stream_log)


def memory_texts(text: str) -> list[str]:
    return [m["text"] for m in json.loads(text)["memory"]]


# --- streamed and read to the end ------------------------------------------------------------------


def test_a_local_answer_is_streamed_with_usage_from_the_last_chunk(server: FakeOpenAIServer) -> None:
    server.token_delay_s = 0.001
    out = compat_router(server).chat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    assert memory_texts(out.text) == ITEMS and out.degraded is None and out.is_local
    sent = chats(server)[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert [hung_up for _, hung_up in stream_log(server)] == [False]  # read to the end
    assert out.tokens_out == fm.estimate_tokens(out.text)  # the server's own count, from its usage
    speed = SPEEDS.get(f"openai_compatible@{server.base_url}", "qwen")
    assert speed.prefill_tps and speed.gen_tps  # learned from the chunk times, as for Ollama


LONG = [{"role": "user", "content": "please summarise: " + "word " * 1500}]


def test_a_cut_prompt_is_still_detected_from_usage_in_the_stream(server: FakeOpenAIServer) -> None:
    """The server kept only the end of the prompt and says so only in the usage of its last chunk."""
    server.overflow = "truncate"
    server.models["qwen"] = (512, None)
    backend = OpenAICompatibleBackend(server.base_url)
    req = ChatRequest(model="qwen", messages=LONG, max_tokens=50, stream_guard=StreamGuard)
    result = backend.chat(req)
    assert chats(server)[-1]["stream"] is True and result.stopped is None and result.tokens_in < 512
    assert backend.truncated(req, result, estimate_messages(LONG))


def test_no_usage_in_the_stream_is_counted_by_us_and_never_read_as_a_cut_prompt(server: FakeOpenAIServer) -> None:
    """llama-cpp-python sends no usage in a stream: the counts are ours, the answer stands."""
    server.set_fault("omit_usage", paths=[CHAT])
    out = compat_router(server).chat(LONG, max_tokens=200)
    assert out.degraded is None and not out.escalations and len(chats(server)) == 1
    assert out.tokens_in >= 1500 and out.tokens_out >= 1
    backend = OpenAICompatibleBackend(server.base_url)
    req = ChatRequest(model="qwen", messages=LONG, max_tokens=50, stream_guard=StreamGuard)
    result = backend.chat(req)
    assert chats(server)[-1]["stream"] is True and not backend.truncated(req, result, estimate_messages(LONG))


# --- stopped early ------------------------------------------------------------------------------------


def test_a_looping_extraction_is_cut_keeps_its_items_and_is_marked_degraded(server: FakeOpenAIServer) -> None:
    ledger = MemoryLedger()
    server.token_delay_s = 0.002  # the loop would run to 2,000 tokens; the client hangs up first
    server.set_fault("repeat_loop", times=1, paths=[CHAT])
    out = compat_router(server, ledger).chat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    assert memory_texts(out.text) == ITEMS
    assert out.degraded == "repetition loop: kept 2 items"
    assert len(chats(server)) == 1  # the kept items are the answer: no second call
    sent, hung_up = stream_log(server)[0]
    assert hung_up and sent < 200  # of 2,000 tokens
    assert out.tokens_out < 200
    record = ledger.records()[-1]
    assert record.outcome == "degraded" and record.is_local


async def test_the_async_path_cuts_a_loop_too(server: FakeOpenAIServer) -> None:
    server.token_delay_s = 0.002
    server.set_fault("repeat_loop", times=1, paths=[CHAT])
    out = await compat_router(server).achat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    assert out.degraded == "repetition loop: kept 2 items" and memory_texts(out.text) == ITEMS
    sent, hung_up = stream_log(server)[0]
    assert hung_up and sent < 200


def test_a_loop_with_nothing_to_keep_is_retried_with_a_different_request(server: FakeOpenAIServer) -> None:
    server.token_delay_s = 0.002
    server.set_fault("repeat_loop", times=1, paths=[CHAT])
    out = compat_router(server).chat([{"role": "user", "content": "tell me about tea"}], max_tokens=400,
                                     temperature=0.1)
    first, second = chats(server)
    assert sorted(hung_up for _, hung_up in stream_log(server, 2)) == [False, True]  # the loop was cut
    assert "frequency_penalty" not in first and second["frequency_penalty"] > 0
    assert second["temperature"] > first["temperature"]
    assert out.degraded is None and any("repetition loop" in e for e in out.escalations)


def test_a_complete_json_object_ends_the_read(server: FakeOpenAIServer) -> None:
    """After the object closes, newlines up to max_tokens (what a JSON grammar allows) are not read."""
    server.token_delay_s = 0.001
    server.set_fault("trailing_whitespace", times=1, paths=[CHAT])
    out = compat_router(server).chat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    assert memory_texts(out.text) == ITEMS and out.degraded is None and not out.escalations
    sent, hung_up = stream_log(server)[0]
    assert hung_up and sent < 100  # the answer is ~40 chunks; the padding ~1,960 more


async def test_the_async_path_ends_at_a_complete_object(server: FakeOpenAIServer) -> None:
    server.token_delay_s = 0.001
    server.set_fault("trailing_whitespace", times=1, paths=[CHAT])
    out = await compat_router(server).achat(extraction(), response_format={"type": "json_object"}, max_tokens=2000)
    assert memory_texts(out.text) == ITEMS and out.degraded is None
    assert stream_log(server)[0][1]


# --- deadlines and refusals ---------------------------------------------------------------------------


def request(deadline_s: float) -> ChatRequest:
    return ChatRequest(model="qwen", messages=[{"role": "user", "content": "hello"}], max_tokens=50,
                       deadline=time.monotonic() + deadline_s, stream_guard=StreamGuard)


def test_the_deadline_holds_against_a_trickling_stream(server: FakeOpenAIServer) -> None:
    # 1 byte every 0.2 s: every read is quick, the whole stream (~3 kB) would take ~10 minutes
    server.set_fault("trickle", delay_s=0.2, paths=[CHAT])
    backend = OpenAICompatibleBackend(server.base_url, read_timeout_s=3)
    err = run_bounded(lambda: backend.chat(request(1.0)))
    assert type(err).__name__ == "BackendTimeout", err
    router = compat_router(server, deadline_s=1.5, read_timeout_s=3)
    err = run_bounded(lambda: router.chat([{"role": "user", "content": "hello"}], max_tokens=50))
    assert isinstance(err, RoutingError)
    assert any(a.kind == "timeout" and "deadline" in a.error for a in err.attempts), err.attempts
    assert all(hung_up for _, hung_up in stream_log(server, 2))


async def test_the_async_path_holds_the_deadline_against_a_trickle(server: FakeOpenAIServer) -> None:
    server.set_fault("trickle", delay_s=0.2, paths=[CHAT])
    backend = OpenAICompatibleBackend(server.base_url, read_timeout_s=3)
    with pytest.raises(Exception) as info:
        await asyncio.wait_for(backend.achat(request(1.0)), 30)
    assert type(info.value).__name__ == "BackendTimeout"


class NoStreamOptions(FakeOpenAIServer):
    """A strict server (FastAPI with extra fields forbidden) that refuses ``stream_options``."""

    def _route(self, method: str, path: str, body: Any, headers: dict[str, str], fault: Fault | None) -> Reply:
        if isinstance(body, dict) and "stream_options" in body:
            return Reply(422, {"detail": [{"type": "extra_forbidden", "loc": ["body", "stream_options"],
                                           "msg": "Extra inputs are not permitted"}]})
        return super()._route(method, path, body, headers, fault)


def test_a_server_refusing_stream_options_is_asked_without_them() -> None:
    with NoStreamOptions(flavor="vllm", api_key=None, models=MODELS) as server:
        router = compat_router(server)
        for _ in range(2):
            assert memory_texts(router.chat(extraction(), response_format={"type": "json_object"}).text) == ITEMS
        assert ["stream_options" in c for c in chats(server)] == [True, False, False]
        assert all(c["stream"] is True for c in chats(server))


class CutStreams(FakeOpenAIServer):
    """Every stream ends without a ``finish_reason``: after ``words`` (a server killed mid-answer), or
    before any chunk (llama-cpp-python 0.3 with a prompt over its window: its unstreamed answer is
    the 400 that says so)."""

    words: tuple[str, ...] = ()

    def _route(self, method: str, path: str, body: Any, headers: dict[str, str], fault: Fault | None) -> Reply:
        if isinstance(body, dict) and body.get("stream") is True:
            events = [b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1,
                                              "model": "qwen", "choices": [{"index": 0, "delta": {"content": w},
                                                                            "finish_reason": None}]}).encode()
                      + b"\n\n" for w in self.words]
            return Reply(200, iter(events), {"Content-Type": "text/event-stream"})
        return super()._route(method, path, body, headers, fault)


def test_a_stream_ended_before_its_first_word_is_asked_again_unstreamed() -> None:
    with CutStreams(flavor="vllm", api_key=None, models={"qwen": (512, None)}) as server:
        backend = OpenAICompatibleBackend(server.base_url, context_window=100_000)
        with pytest.raises(Exception) as info:
            backend.chat(ChatRequest(model="qwen", messages=LONG, max_tokens=50, stream_guard=StreamGuard))
        assert type(info.value).__name__ == "ContextOverflow"  # the server's own reason, not "empty answer"
        assert [c.get("stream") for c in chats(server)] == [True, None]
        with pytest.raises(Exception) as info:
            asyncio.run(backend.achat(ChatRequest(model="qwen", messages=LONG, max_tokens=50, stream_guard=StreamGuard)))
        assert type(info.value).__name__ == "ContextOverflow"
        assert [c.get("stream") for c in chats(server)] == [True, None, True, None]


def test_a_stream_cut_mid_answer_is_an_unreachable_server_not_an_answer() -> None:
    with CutStreams(flavor="vllm", api_key=None, models=MODELS) as server:
        server.words = ("The ans", "wer is")
        backend = OpenAICompatibleBackend(server.base_url)
        with pytest.raises(Exception) as info:
            backend.chat(request(30.0))
        assert type(info.value).__name__ == "BackendUnavailable" and "before the answer was complete" in str(info.value)


class EchoingKeyInStream(FakeOpenAIServer):
    """A proxy in front of the server that reports a key error as an event inside the stream."""

    def _route(self, method: str, path: str, body: Any, headers: dict[str, str], fault: Fault | None) -> Reply:
        if isinstance(body, dict) and body.get("stream") is True:
            event = {"error": {"message": f"upstream refused key {SECRET} (sk-live-abcdef123456)", "code": 401}}
            return Reply(200, iter([b"data: " + json.dumps(event).encode() + b"\n\n"]),
                         {"Content-Type": "text/event-stream"})
        return super()._route(method, path, body, headers, fault)


SECRET = "vllm-SECRETkey-0123456789abcdef"


async def test_a_key_echoed_inside_a_stream_never_reaches_the_error() -> None:
    with EchoingKeyInStream(flavor="vllm", api_key=SECRET, models=MODELS) as server:
        backend = OpenAICompatibleBackend(server.base_url, api_key=SECRET)
        for call in (lambda: asyncio.to_thread(backend.chat, request(30.0)), lambda: backend.achat(request(30.0))):
            with pytest.raises(Exception) as info:
                await call()
            text = f"{info.value} {info.value!r} {getattr(info.value, 'fix', '')}"
            assert "upstream refused key" in text and SECRET not in text and "abcdef123456" not in text
            assert info.value.__cause__ is None and info.value.__context__ is None


# --- a real llama-cpp-python server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> Iterator[Any]:
    from llama_server import llama_server_or_skip

    with llama_server_or_skip(n_ctx=4096) as started:
        yield started


@pytest.mark.llamaserver
def test_a_real_llama_cpp_python_server_streams_an_extraction_and_speeds_are_learned(real: Any) -> None:
    from llama_server import MODEL

    router = Router(RouterConfig.from_mapping({
        "local_backend": "openai_compatible", "openai_compatible_urls": [real.base_url],
        "openai_compatible_context_window": 4096, "ollama_base_url": "http://127.0.0.1:9", "ledger": "memory",
        "llm_model": MODEL, "embedder_model": MODEL, "models": {"code": MODEL, "medium": MODEL, "complex": MODEL}}))
    out = router.chat(extraction("My name is Priya. I work as a nurse in Lisbon."),
                      response_format={"type": "json_object"}, max_tokens=256, temperature=0.0)
    assert out.is_local and isinstance(json.loads(out.text)["memory"], list)
    speed = SPEEDS.get(f"openai_compatible@{real.base_url}", MODEL)
    # only a streamed answer has chunk times: the non-streamed path gives the router no speed
    assert speed.prefill_tps and speed.gen_tps, SPEEDS.snapshot()


class NoRepeatPenalty(OpenAICompatibleBackend):
    """llama-cpp-python's own ``repeat_penalty`` (default 1.1) switched off, as a model run bare."""

    def _chat_params(self, request: ChatRequest) -> dict[str, Any]:
        return {**super()._chat_params(request), "extra_body": {"repeat_penalty": 1.0}}


@pytest.mark.llamaserver
@pytest.mark.parametrize("prompt", ["Write the word hello 100 times, separated by spaces.",
                                    "Repeat after me, forever: I am a robot. I am a robot. I am a robot. I am a robot."])
def test_a_real_repetition_loop_on_llama_cpp_python_is_cut(real: Any, prompt: str) -> None:
    """SmolLM2 at temperature 0 without a repeat penalty loops on these prompts ("hello, hello, ...",
    "I am a robot. I am a robot. ..." until the token cap, measured); the guard closes the stream."""
    from llama_server import MODEL

    backend = NoRepeatPenalty(real.base_url, context_window=4096)
    try:
        result = backend.chat(ChatRequest(model=MODEL, messages=[{"role": "user", "content": prompt}],
                                          max_tokens=300, temperature=0.0, stream_guard=StreamGuard))
    finally:
        backend.close()
    assert result.stopped == "loop" and result.done_reason is None, result.text
    assert result.tokens_out is not None and result.tokens_out < 150  # of the 300 it would have written
