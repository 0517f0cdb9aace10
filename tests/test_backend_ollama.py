"""OllamaBackend over real HTTP (the official client against the fake Ollama)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import pytest

from mem0_routed._errors import (
    AuthenticationError,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ModelNotFound,
    RateLimited,
    ServerError,
)
from mem0_routed.backends import Backend, ChatRequest, OllamaBackend
from mem0_routed.testing import FakeOllamaServer

MODEL = "mistral:7b"
EMBED = "nomic-embed-text"


@pytest.fixture
def backend(ollama_server: FakeOllamaServer) -> OllamaBackend:
    b = OllamaBackend(ollama_server.url, read_timeout_s=10.0)
    yield b
    b.close()


def req(content: str = "hello there", **kw: object) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[{"role": "user", "content": content}], **kw)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- identity ---------------------------------------------------------------------------------------


def test_identity_and_protocol(backend: OllamaBackend, ollama_server: FakeOllamaServer) -> None:
    assert backend.name == f"ollama@{ollama_server.url}"
    assert backend.kind == "ollama" and backend.is_local is True
    assert isinstance(backend, Backend)
    assert ollama_server.url in repr(backend)


def test_bad_constructor_values_are_named() -> None:
    with pytest.raises(ValueError, match="'localhost:11434'"):
        OllamaBackend("localhost:11434")
    with pytest.raises(ValueError, match="read_timeout_s"):
        OllamaBackend("http://localhost:11434", read_timeout_s=0)


def test_importing_backends_loads_no_client_library() -> None:
    # mem0 itself imports httpx (and qdrant_client); what matters is what mem0_routed adds on top
    code = (
        "import sys, mem0; before = set(sys.modules);"
        "import mem0_routed, mem0_routed.backends, mem0_routed.testing;"
        "print([m for m in ('ollama', 'openai', 'httpx') if m in sys.modules and m not in before])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# --- chat -------------------------------------------------------------------------------------------


def test_chat_sends_options_format_and_keep_alive(ollama_server: FakeOllamaServer) -> None:
    b = OllamaBackend(ollama_server.url, keep_alive="10m")
    b.chat(req("give json", num_ctx=8192, temperature=0.1, top_p=0.9, max_tokens=50, json_mode=True))
    sent = ollama_server.requests_to("/api/chat")[-1]
    assert sent["options"] == {"num_ctx": 8192, "temperature": 0.1, "top_p": 0.9, "num_predict": 50}
    assert sent["format"] == "json" and sent["keep_alive"] == "10m" and sent["stream"] is False
    assert sent["messages"] == [{"role": "user", "content": "give json"}]
    b.close()


def test_chat_sends_only_options_that_are_set(
    backend: OllamaBackend, ollama_server: FakeOllamaServer
) -> None:
    backend.chat(req())
    sent = ollama_server.requests_to("/api/chat")[-1]
    assert "options" not in sent and "format" not in sent and "keep_alive" not in sent


def test_json_schema_wins_over_json_mode(backend: OllamaBackend, ollama_server: FakeOllamaServer) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    result = backend.chat(req("who?", json_schema=schema, json_mode=True))
    assert ollama_server.requests_to("/api/chat")[-1]["format"] == schema
    assert set(json.loads(result.text)) == {"name"}


def test_chat_result_carries_counts_and_host(backend: OllamaBackend, ollama_server: FakeOllamaServer) -> None:
    content = "Please summarise the meeting notes from Tuesday"
    result = backend.chat(req(content, num_ctx=4096))
    assert result.backend == "ollama" and result.model == MODEL and result.host == ollama_server.url
    assert result.tokens_in == len(content) // 4
    assert result.tokens_out is not None and result.tokens_out >= 1
    assert result.done_reason == "stop" and result.latency_s >= 0.0
    assert "meeting" in result.text


def test_tools_are_passed_through(backend: OllamaBackend, ollama_server: FakeOllamaServer) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "d",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    backend.chat(req(tools=[tool]))
    assert ollama_server.requests_to("/api/chat")[-1]["tools"][0]["function"]["name"] == "lookup"


def test_image_parts_become_ollama_images(backend: OllamaBackend, ollama_server: FakeOllamaServer) -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
    ]
    backend.chat(ChatRequest(model=MODEL, messages=[{"role": "user", "content": content}]))
    sent = ollama_server.requests_to("/api/chat")[-1]["messages"][0]
    assert sent["content"] == "what is this?" and sent["images"] == ["QUJD"]
    url_image = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(BadRequest, match="base64"):
        backend.chat(ChatRequest(model=MODEL, messages=[{"role": "user", "content": url_image}]))


def test_num_ctx_is_what_ollama_uses(backend: OllamaBackend, ollama_server: FakeOllamaServer) -> None:
    backend.chat(req(num_ctx=16384))
    backend.chat(req(num_ctx=16384))
    backend.chat(req(num_ctx=8192))
    assert ollama_server.num_ctx_log == [(MODEL, 16384), (MODEL, 16384), (MODEL, 8192)]
    assert ollama_server.reloads[MODEL] == 1


# --- errors -----------------------------------------------------------------------------------------


def test_refused_is_backend_unavailable(backend: OllamaBackend, ollama_server: FakeOllamaServer) -> None:
    ollama_server.set_fault("refused")
    with pytest.raises(BackendUnavailable) as info:
        backend.chat(req())
    err = info.value
    assert err.transient and err.backend == backend.name and err.model == MODEL
    assert "ollama serve" in (err.fix or "") and ollama_server.url in str(err) and MODEL in str(err)
    ollama_server.clear_faults()
    assert backend.chat(req()).text  # the same backend recovers once Ollama is back


def test_nothing_listening_is_backend_unavailable() -> None:
    b = OllamaBackend(f"http://127.0.0.1:{free_port()}", connect_timeout_s=1.0)
    with pytest.raises(BackendUnavailable, match="not reachable"):
        b.embed(EMBED, ["x"])


def test_hang_with_short_read_timeout_is_backend_timeout(ollama_server: FakeOllamaServer) -> None:
    b = OllamaBackend(ollama_server.url, read_timeout_s=0.3)
    ollama_server.set_fault("hang")
    with pytest.raises(BackendTimeout) as info:
        b.chat(req())
    assert info.value.transient and ollama_server.url in str(info.value)
    ollama_server.release()


def test_per_request_timeout_overrides_the_default() -> None:
    # The hang ends by itself after 3 s: only the 0.3 s override (not the 60 s default) can time out.
    with FakeOllamaServer(hang_limit_s=3.0) as server:
        b = OllamaBackend(server.url, read_timeout_s=60.0)
        server.set_fault("hang", times=1)
        with pytest.raises(BackendTimeout):
            b.chat(req(timeout_s=0.3))
        server.set_fault("hang", times=1)
        assert b.chat(req()).text  # without the override the held request is answered
        server.set_fault("hang", times=1)
        with pytest.raises(BackendTimeout):
            b.embed(EMBED, ["x"], timeout_s=0.3)
        b.close()


@pytest.mark.parametrize(
    ("mode", "cls", "transient"),
    [
        ("error500", ServerError, True),
        ("error429", RateLimited, True),
        ("error401", AuthenticationError, False),
        ("model_missing", ModelNotFound, False),
    ],
)
def test_http_faults_map_to_error_classes(
    backend: OllamaBackend, ollama_server: FakeOllamaServer, mode: str, cls: type, transient: bool
) -> None:
    ollama_server.set_fault(mode, model=MODEL, retry_after=4)  # type: ignore[arg-type]
    with pytest.raises(cls) as info:
        backend.chat(req())
    err = info.value
    assert err.transient is transient and err.model == MODEL and ollama_server.url in str(err)
    if mode == "error429":
        assert err.retry_after == 4.0
    if mode == "model_missing":
        assert err.fix == f"run `ollama pull {MODEL}`"


def test_unknown_model_says_which_pull(backend: OllamaBackend) -> None:
    with pytest.raises(ModelNotFound) as info:
        backend.chat(ChatRequest(model="llama9:1b", messages=[{"role": "user", "content": "x"}]))
    assert info.value.fix == "run `ollama pull llama9:1b`" and "llama9:1b" in str(info.value)


@pytest.mark.parametrize("mode", ["invalid_json", "empty", "truncate_output"])
def test_answer_faults_come_back_as_results(
    backend: OllamaBackend, ollama_server: FakeOllamaServer, mode: str
) -> None:
    """Validation is the router's job: the backend returns what the model said."""
    ollama_server.set_fault(mode)  # type: ignore[arg-type]
    result = backend.chat(req("answer in json", json_mode=True))
    if mode == "empty":
        assert result.text == ""
    else:
        with pytest.raises(ValueError):
            json.loads(result.text)
    assert result.done_reason == ("length" if mode == "truncate_output" else "stop")


def test_embedding_a_chat_model_is_bad_request(backend: OllamaBackend) -> None:
    with pytest.raises(BadRequest, match="does not support embeddings") as info:
        backend.embed(MODEL, ["x"])
    assert not info.value.transient


# --- embeddings -------------------------------------------------------------------------------------


def test_embed_is_one_call_with_a_list(backend: OllamaBackend, ollama_server: FakeOllamaServer) -> None:
    vectors = backend.embed(EMBED, ["Alice likes pizza", "pizza for Alice", "quarterly tax report"])
    assert len(ollama_server.requests_to("/api/embed")) == 1
    assert ollama_server.requests_to("/api/embed")[0]["input"] == [
        "Alice likes pizza",
        "pizza for Alice",
        "quarterly tax report",
    ]
    assert [len(v) for v in vectors] == [768, 768, 768]
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # unit vectors
    assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2])
    assert backend.embed(EMBED, ["Alice likes pizza"]) == vectors[:1]


def test_embed_nothing_makes_no_call(backend: OllamaBackend, ollama_server: FakeOllamaServer) -> None:
    assert backend.embed(EMBED, []) == []
    assert ollama_server.requests == []


# --- model facts ------------------------------------------------------------------------------------


def test_context_window_reads_show_once(backend: OllamaBackend, ollama_server: FakeOllamaServer) -> None:
    assert backend.context_window(MODEL) == 32768
    assert backend.context_window(MODEL) == 32768
    assert backend.context_window("nomic-embed-text") == 2048
    assert backend.context_window("nomic-embed-text:latest") == 2048
    assert len(ollama_server.requests_to("/api/show")) == 2


def test_context_window_of_missing_model_raises(backend: OllamaBackend) -> None:
    with pytest.raises(ModelNotFound):
        backend.context_window("nope:1b")


def test_has_model_uses_a_cached_list(backend: OllamaBackend, ollama_server: FakeOllamaServer) -> None:
    assert backend.has_model("nomic-embed-text") is True  # "name" means "name:latest"
    assert backend.has_model(MODEL) is True
    assert backend.has_model("llama9") is False
    assert len(ollama_server.requests_to("/api/tags")) == 1


def test_has_model_refreshes_after_ttl_and_is_unknown_when_down(ollama_server: FakeOllamaServer) -> None:
    b = OllamaBackend(ollama_server.url, models_ttl_s=0.0)
    assert b.has_model(MODEL) is True
    ollama_server.remove_model(MODEL)
    assert b.has_model(MODEL) is False
    ollama_server.set_fault("refused")
    assert b.has_model(MODEL) is None


def test_health(backend: OllamaBackend, ollama_server: FakeOllamaServer) -> None:
    backend.context_window(MODEL)
    h = backend.health()
    assert h.reachable and h.error is None and h.kind == "ollama" and h.name == backend.name
    assert set(h.models) == set(ollama_server.models)
    assert h.context_windows == {MODEL: 32768}
    ollama_server.set_fault("refused")
    down = backend.health(timeout_s=1.0)
    assert not down.reachable and down.models == []
    assert "ollama serve" in (down.error or "") and ollama_server.url in (down.error or "")


# --- async ------------------------------------------------------------------------------------------


async def test_achat(backend: OllamaBackend, ollama_server: FakeOllamaServer) -> None:
    result = await backend.achat(req("hello async", num_ctx=4096, json_mode=True))
    assert json.loads(result.text)["model"] == MODEL
    assert ollama_server.requests_to("/api/chat")[-1]["options"] == {"num_ctx": 4096}


def test_async_works_from_two_event_loops(backend: OllamaBackend) -> None:
    async def once() -> str:
        return (await backend.achat(req("loop test"))).text

    first = asyncio.run(once())
    second = asyncio.run(once())
    assert first == second and "loop" in first


async def test_async_per_request_timeout() -> None:
    with FakeOllamaServer(hang_limit_s=3.0) as server:
        b = OllamaBackend(server.url, read_timeout_s=60.0)
        server.set_fault("hang", times=1)
        with pytest.raises(BackendTimeout):
            await b.achat(req(timeout_s=0.3))
        b.close()


async def test_async_errors_are_translated(backend: OllamaBackend, ollama_server: FakeOllamaServer) -> None:
    ollama_server.set_fault("error429", retry_after=2, times=1)
    with pytest.raises(RateLimited) as info:
        await backend.achat(req())
    assert info.value.retry_after == 2.0
    ollama_server.set_fault("refused")
    with pytest.raises(BackendUnavailable):
        await backend.achat(req())


def test_an_embed_call_sends_the_num_ctx_its_model_chats_with(ollama_server: FakeOllamaServer,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Ollama reloads a model (and drops its prompt cache) whenever a request's num_ctx differs, an
    embed call without one included; so embedding with a chat model reuses the chat's window."""
    from mem0_routed.testing import ModelSpec

    ollama_server.add_model("both:1b", ModelSpec(embedding_dims=64, capabilities=("completion", "embedding")))
    backend = OllamaBackend(ollama_server.url)
    backend.embed(EMBED, ["never chatted"])
    backend.chat(ChatRequest(model="both:1b", messages=[{"role": "user", "content": "hi"}], num_ctx=8192))
    backend.embed("both:1b", ["hello"])
    backend.close()
    first, last = ollama_server.requests_to("/api/embed")
    assert first.get("options") is None  # a pure embedding model: nothing to match
    assert last["options"] == {"num_ctx": 8192}
    assert ollama_server.reloads["both:latest"] == 0 and ollama_server.reloads["both:1b"] == 0
    assert "evicts the chat prompt from Ollama's cache" in caplog.text  # and the user hears why it is slow


def test_a_streamed_answer_is_stopped_by_its_guard(ollama_server: FakeOllamaServer) -> None:
    from mem0_routed._stream import StreamGuard

    ollama_server.set_fault("repeat_loop", paths=["/api/chat"])
    backend = OllamaBackend(ollama_server.url)
    result = backend.chat(req("tell me about tea", max_tokens=1000, stream_guard=StreamGuard))
    backend.close()
    assert result.stopped == "loop" and result.done_reason is None
    assert result.tokens_out is not None and result.tokens_out < 200


def test_an_error_building_the_request_blames_the_request_not_the_server(ollama_server, mocker) -> None:
    """The ollama client failing before anything was sent (it serialises the request itself) was
    reported as "Ollama sent an unreadable answer": a server fault that trips the breaker."""
    backend = OllamaBackend(ollama_server.url)
    import ollama

    mocker.patch.object(ollama.Client, "_request_raw", side_effect=TypeError("cannot serialise sk-secret-value"))
    with pytest.raises(BadRequest) as info:
        backend.chat(req("hello"))
    assert "unreadable" not in str(info.value) and "sk-secret-value" not in str(info.value)
    assert ollama_server.requests_to("/api/chat") == []
    backend.close()

