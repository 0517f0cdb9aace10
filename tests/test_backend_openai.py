"""OpenAIBackend over real HTTP (the official client against the fake OpenAI)."""

from __future__ import annotations

import asyncio
import json
import logging
import traceback

import pytest
from pydantic import SecretStr

from mem0_routed._errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ModelNotFound,
    RateLimited,
    ServerError,
)
from mem0_routed.backends import Backend, ChatRequest, OpenAIBackend
from mem0_routed.backends._openai import scrub_secrets
from mem0_routed.testing import FakeOpenAIServer

MODEL = "gpt-4o-mini"
WRONG_KEY = "sk-proj-WRONGwrongWRONG0123456789abcd"


@pytest.fixture
def backend(openai_server: FakeOpenAIServer, openai_key: str) -> OpenAIBackend:
    b = OpenAIBackend(openai_key, base_url=openai_server.base_url, read_timeout_s=10.0)
    yield b
    b.close()


def req(content: str = "hello there", **kw: object) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[{"role": "user", "content": content}], **kw)  # type: ignore[arg-type]


def everything_said(err: BaseException) -> str:
    """Every text a log or a traceback could show for ``err``."""
    return "\n".join(
        [str(err), repr(err), str(getattr(err, "fix", "")), "".join(traceback.format_exception(err))]
    )


def assert_no_key(text: str, *keys: str) -> None:
    for key in keys:
        assert key not in text
        assert key[-8:] not in text  # not even the tail OpenAI echoes
    assert "sk-***" in text or "sk-" not in text


# --- identity ---------------------------------------------------------------------------------------


def test_identity(backend: OpenAIBackend, openai_server: FakeOpenAIServer, openai_key: str) -> None:
    assert backend.kind == "openai" and backend.is_local is False
    assert backend.name == f"openai@{openai_server.base_url}"
    assert OpenAIBackend("sk-x" * 5).name == "openai"
    assert isinstance(backend, Backend)
    for text in (repr(backend), str(vars(backend)), repr(OpenAIBackend(SecretStr(openai_key)))):
        assert openai_key not in text


def test_bad_constructor_values_are_named() -> None:
    with pytest.raises(ValueError, match="'api.openai.com'"):
        OpenAIBackend("sk-abc", base_url="api.openai.com")
    with pytest.raises(TypeError, match="api_key must be"):
        OpenAIBackend(123)  # type: ignore[arg-type]


# --- chat -------------------------------------------------------------------------------------------


def test_chat_sends_params_and_reads_usage(backend: OpenAIBackend, openai_server: FakeOpenAIServer) -> None:
    content = "Describe the plan in JSON"
    result = backend.chat(
        req(content, temperature=0.2, top_p=0.5, max_tokens=200, json_mode=True, num_ctx=999)
    )
    sent = openai_server.requests_to("/v1/chat/completions")[-1]
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["temperature"] == 0.2 and sent["top_p"] == 0.5 and sent["max_completion_tokens"] == 200
    assert "num_ctx" not in json.dumps(sent)  # remote backends ignore it
    assert json.loads(result.text)["model"] == MODEL
    assert result.tokens_in == len(content) // 4 and result.tokens_out and result.tokens_out >= 1
    assert (
        result.backend == "openai" and result.done_reason == "stop" and result.host == openai_server.base_url
    )


def test_json_schema_response_format(backend: OpenAIBackend, openai_server: FakeOpenAIServer) -> None:
    schema = {
        "title": "Memory List",
        "type": "object",
        "properties": {"memory": {"type": "array"}, "ok": {"type": "boolean"}},
    }
    result = backend.chat(req("extract", json_schema=schema))
    rf = openai_server.requests_to("/v1/chat/completions")[-1]["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["schema"] == schema
    assert rf["json_schema"]["name"] == "Memory_List"
    assert json.loads(result.text) == {"memory": [], "ok": True}


def test_tools_and_tool_choice_pass_through(backend: OpenAIBackend, openai_server: FakeOpenAIServer) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "add_memory",
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
        },
    }
    result = backend.chat(req("remember this", tools=[tool], tool_choice="required"))
    sent = openai_server.requests_to("/v1/chat/completions")[-1]
    assert sent["tools"] == [tool] and sent["tool_choice"] == "required"
    assert result.done_reason == "tool_calls"
    assert result.tool_calls and result.tool_calls[0]["name"] == "add_memory"
    assert result.tool_calls[0]["arguments"] == {"text": "ok"}


def test_answer_faults_come_back_as_results(backend: OpenAIBackend, openai_server: FakeOpenAIServer) -> None:
    openai_server.set_fault("invalid_json", times=1)
    with pytest.raises(ValueError):
        json.loads(backend.chat(req("json please", json_mode=True)).text)
    openai_server.set_fault("empty", times=1)
    assert backend.chat(req()).text == ""
    openai_server.set_fault("truncate_output", times=1)
    assert backend.chat(req()).done_reason == "length"


# --- keys and errors --------------------------------------------------------------------------------


def test_no_key_fails_without_any_request(openai_server: FakeOpenAIServer) -> None:
    b = OpenAIBackend(None, base_url=openai_server.base_url)
    for call in (lambda: b.chat(req()), lambda: b.embed("text-embedding-3-small", ["x"])):
        with pytest.raises(AuthenticationError) as info:
            call()
        assert info.value.fix == "set OPENAI_API_KEY" and not info.value.transient
    assert openai_server.requests == []
    h = b.health()
    assert h.configured is False and h.reachable is False
    assert h.error == "OpenAI not configured: set OPENAI_API_KEY"
    assert OpenAIBackend("   ").configured is False


async def test_no_key_fails_async_too() -> None:
    with pytest.raises(AuthenticationError):
        await OpenAIBackend(None).achat(req())


def test_wrong_key_is_scrubbed_everywhere(
    openai_server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    b = OpenAIBackend(WRONG_KEY, base_url=openai_server.base_url)
    with pytest.raises(AuthenticationError) as info:
        b.chat(req())
    err = info.value
    assert err.fix == "set OPENAI_API_KEY to a valid key" and not err.transient and not err.trips_breaker
    assert "Incorrect API key" in str(err) and "HTTP 401" in str(err)
    assert err.__cause__ is None and err.__context__ is None
    assert_no_key(everything_said(err), WRONG_KEY)
    assert_no_key(caplog.text, WRONG_KEY)
    h = b.health()
    assert not h.reachable and h.configured
    assert_no_key(h.error or "", WRONG_KEY)


def test_error401_fault_with_good_key_is_scrubbed(
    backend: OpenAIBackend, openai_server: FakeOpenAIServer, openai_key: str
) -> None:
    openai_server.set_fault("error401")
    with pytest.raises(AuthenticationError) as info:
        backend.chat(req())
    assert_no_key(everything_said(info.value), openai_key)


def test_scrub_secrets() -> None:
    text = "Incorrect API key provided: sk-abc***xyz; also sk-proj-AAAA1111 and mysecretvalue"
    out = scrub_secrets(text, "mysecretvalue")
    assert out == "Incorrect API key provided: sk-***; also sk-*** and ***"


@pytest.mark.parametrize(
    ("mode", "cls", "transient"),
    [
        ("error500", ServerError, True),
        ("error429", RateLimited, True),
        ("model_missing", ModelNotFound, False),
    ],
)
def test_http_faults_map_to_error_classes(
    backend: OpenAIBackend,
    openai_server: FakeOpenAIServer,
    openai_key: str,
    mode: str,
    cls: type,
    transient: bool,
) -> None:
    openai_server.set_fault(mode, retry_after=3)  # type: ignore[arg-type]
    with pytest.raises(cls) as info:
        backend.chat(req())
    err = info.value
    assert err.transient is transient and err.backend == backend.name and err.model == MODEL
    assert MODEL in str(err)
    assert_no_key(everything_said(err), openai_key)
    if mode == "error429":
        assert err.retry_after == 3.0


def test_unknown_model_and_bad_request(backend: OpenAIBackend, openai_server: FakeOpenAIServer) -> None:
    with pytest.raises(ModelNotFound, match="gpt-9"):
        backend.chat(ChatRequest(model="gpt-9", messages=[{"role": "user", "content": "x"}]))
    openai_server.models["short"] = (10, None)
    with pytest.raises(BadRequest, match="maximum context length") as info:
        backend.chat(ChatRequest(model="short", messages=[{"role": "user", "content": "x" * 400}]))
    assert not info.value.transient


def test_refused_is_backend_unavailable(backend: OpenAIBackend, openai_server: FakeOpenAIServer) -> None:
    openai_server.set_fault("refused")
    with pytest.raises(BackendUnavailable) as info:
        backend.chat(req())
    assert info.value.transient and info.value.fix
    down = backend.health(timeout_s=1.0)
    assert not down.reachable and down.configured


def test_hang_is_backend_timeout(openai_server: FakeOpenAIServer, openai_key: str) -> None:
    b = OpenAIBackend(openai_key, base_url=openai_server.base_url, read_timeout_s=0.3)
    openai_server.set_fault("hang")
    with pytest.raises(BackendTimeout) as info:
        b.chat(req())
    assert info.value.transient
    openai_server.release()


def test_per_request_timeout_overrides_the_default(openai_key: str) -> None:
    # The hang ends by itself after 3 s: only the 0.3 s override (not the 60 s default) can time out.
    with FakeOpenAIServer(api_key=openai_key, hang_limit_s=3.0) as server:
        b = OpenAIBackend(openai_key, base_url=server.base_url, read_timeout_s=60.0)
        server.set_fault("hang", times=1)
        with pytest.raises(BackendTimeout):
            b.chat(req(timeout_s=0.3))
        b.close()


def test_every_error_is_a_backend_error(backend: OpenAIBackend, openai_server: FakeOpenAIServer) -> None:
    openai_server.set_fault("error500")
    with pytest.raises(BackendError):
        backend.embed("text-embedding-3-small", ["x"])


# --- embeddings, model facts, health ----------------------------------------------------------------


def test_embed_returns_floats_in_order(backend: OpenAIBackend, openai_server: FakeOpenAIServer) -> None:
    vectors = backend.embed("text-embedding-3-small", ["Alice likes pizza", "Alice pizza", "tax return"])
    sent = openai_server.requests_to("/v1/embeddings")[-1]
    assert sent["encoding_format"] == "float" and len(sent["input"]) == 3
    assert [len(v) for v in vectors] == [1536] * 3
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # unit vectors
    assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2])
    assert backend.embed("text-embedding-3-small", []) == []


def test_context_window_known_values(backend: OpenAIBackend) -> None:
    assert backend.context_window("gpt-4o-mini") == 128000
    assert backend.context_window("gpt-4o-mini-2024-07-18") == 128000
    assert backend.context_window("some-local-thing") is None
    assert backend.has_model(MODEL) is None


def test_health_lists_models(backend: OpenAIBackend, openai_server: FakeOpenAIServer) -> None:
    h = backend.health()
    assert h.reachable and h.configured and h.error is None
    assert set(h.models) == set(openai_server.models)


async def test_achat(backend: OpenAIBackend) -> None:
    result = await backend.achat(req("async hello"))
    assert "async hello" in result.text


def test_async_works_from_two_event_loops(backend: OpenAIBackend) -> None:
    async def once() -> str:
        return (await backend.achat(req("loop test"))).text

    assert asyncio.run(once()) == asyncio.run(once())


async def test_async_errors_are_translated(
    backend: OpenAIBackend, openai_server: FakeOpenAIServer, openai_key: str
) -> None:
    openai_server.set_fault("error429", retry_after=5, times=1)
    with pytest.raises(RateLimited) as info:
        await backend.achat(req())
    assert info.value.retry_after == 5.0
    openai_server.set_fault("error401", times=1)
    with pytest.raises(AuthenticationError) as auth:
        await backend.achat(req())
    assert_no_key(everything_said(auth.value), openai_key)


# --- usage the server reports (the cost, so the budget, is computed from it) -------------------------


@pytest.mark.parametrize("fault", ["omit_usage", "negative_usage", "zero_usage", "absurd_usage"])
def test_unusable_usage_is_replaced_by_our_own_count(
    backend: OpenAIBackend, openai_server: FakeOpenAIServer, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An OpenAI-compatible server that omits ``usage`` (or sends nonsense) was billed at $0, so no
    budget held: every count must be a plausible, positive number of tokens."""
    prompt = "please summarise the following paragraph about the history of the printing press " * 5
    honest = backend.chat(req(prompt, max_tokens=200))
    openai_server.set_fault(fault, times=2)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="mem0_routed"):
        result = backend.chat(req(prompt, max_tokens=200))
        backend.chat(req(prompt, max_tokens=200))
    assert result.text == honest.text
    assert result.tokens_in is not None and result.tokens_out is not None
    assert honest.tokens_in is not None and honest.tokens_out is not None
    # our count is close to the server's honest one (both ~4 chars per token), never 0 or absurd
    assert honest.tokens_in * 0.8 <= result.tokens_in <= honest.tokens_in * 1.5 + 10
    assert 1 <= result.tokens_out <= 200
    warned = [r for r in caplog.records if "no usable token usage" in r.getMessage()]
    assert len(warned) == 1  # once per backend, not once per call


def test_plausible_usage_is_kept(backend: OpenAIBackend, openai_server: FakeOpenAIServer) -> None:
    result = backend.chat(req("hello there, how are you today?"))
    sent = openai_server.requests_to("/v1/chat/completions")[-1]
    from mem0_routed.testing import estimate_tokens

    assert sent and result.tokens_in == estimate_tokens("hello there, how are you today?")


async def test_async_missing_usage_is_counted(backend: OpenAIBackend, openai_server: FakeOpenAIServer) -> None:
    openai_server.set_fault("omit_usage", times=1)
    result = await backend.achat(req("count me in, please, even without usage"))
    assert result.tokens_in and result.tokens_in > 0 and result.tokens_out and result.tokens_out > 0


def test_each_loops_client_is_closed_when_asyncio_run_ends(backend: OpenAIBackend) -> None:
    """``asyncio.run`` per call used to leave one AsyncOpenAI (and its sockets) behind per loop."""
    seen: list[object] = []

    async def once() -> None:
        await backend.achat(req("loop test"))
        client = backend._async(MODEL)
        seen.append(client)
        assert not client.is_closed()

    for _ in range(5):
        asyncio.run(once())
    assert len(backend._aclients) == 0
    assert len({id(c) for c in seen}) == 5 and all(c.is_closed() for c in seen)  # type: ignore[attr-defined]


def test_client_of_a_loop_closed_by_hand_is_dropped(backend: OpenAIBackend) -> None:
    """A loop closed without ``asyncio.run`` (no async-generator shutdown): its client is forgotten
    at the next look-up instead of being kept for the backend's life."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(backend.achat(req("by hand")))
    finally:
        loop.close()

    async def once() -> int:
        await backend.achat(req("next loop"))
        return len(backend._aclients)

    assert asyncio.run(once()) == 1  # only the running loop's
    assert len(backend._aclients) == 0
