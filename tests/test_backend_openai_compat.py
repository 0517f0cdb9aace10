"""The OpenAI-compatible local tier over real HTTP: the real ``openai`` client and the router against
fake servers that answer the way vLLM (``max_model_len`` in ``/v1/models``), llama.cpp's
llama-server (``GET /props``) and llama-cpp-python (``json_object`` + schema only) do."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT, generate_additive_extraction_prompt

from mem0_routed import ConfigError, Router, RouterConfig, RoutingError
from mem0_routed.backends import KINDS, OpenAICompatibleBackend
from mem0_routed.backends._openai_compat import normalize_base_url
from mem0_routed.testing import FakeOpenAIServer
from mem0_routed.testing._base import Fault, Reply

MODELS = {"qwen": (4096, None), "emb": (512, 64)}
SECRET = "vllm-SECRETkey-0123456789abcdef"


def compat_server(flavor: str = "vllm", **kw: Any) -> FakeOpenAIServer:
    """``vllm``: ``max_model_len`` in ``/v1/models``; ``llamacpp``: llama-server's ``/props``;
    ``openai``: a server that reports no window (LM Studio, LocalAI)."""
    kw.setdefault("models", MODELS)
    return FakeOpenAIServer(flavor=flavor, api_key=kw.pop("api_key", None), **kw)  # type: ignore[arg-type]


class LlamaCppPythonServer(FakeOpenAIServer):
    """llama-cpp-python 0.3 as ``tests/test_llama_server.py`` records it: OpenAI's ``json_schema``
    form is a 500 ("Input should be 'text' or 'json_object'"); ``json_object`` + ``schema`` works."""

    def __init__(self) -> None:
        super().__init__(flavor="llamacpp", api_key=None, models=MODELS)

    def _route(self, method: str, path: str, body: Any, headers: dict[str, str], fault: Fault | None) -> Reply:
        rf = body.get("response_format") if isinstance(body, dict) else None
        if isinstance(rf, dict) and rf.get("type") == "json_schema":
            return Reply(500, {"error": {"message": "1 validation error for CreateChatCompletionRequest\n"
                                                    "response_format.type\n  Input should be 'text' or 'json_object'",
                                         "type": "internal_server_error", "param": None, "code": None}})
        return super()._route(method, path, body, headers, fault)


pytestmark = pytest.mark.usefixtures("fresh", "no_backoff")  # env vars cleared, a fresh process, no retry waits


@pytest.fixture(scope="module")
def vllm() -> Iterator[FakeOpenAIServer]:
    with compat_server("vllm") as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_vllm(request: pytest.FixtureRequest) -> None:
    if "vllm" in request.fixturenames:
        server = request.getfixturevalue("vllm")
        server.reset()
        server.start()


def compat_router(*servers: FakeOpenAIServer, **cfg: Any) -> Router:
    values: dict[str, Any] = {
        "openai_compatible_urls": [s.base_url for s in servers], "local_backend": "openai_compatible",
        "llm_model": "qwen", "embedder_model": "emb", "ledger": "memory",
        "ollama_base_url": "http://127.0.0.1:9", **cfg}
    return Router(RouterConfig.from_mapping(values))


def extraction_messages(text: str = "My name is Alice. I live in Paris and I love hiking.") -> list[dict[str, Any]]:
    user = generate_additive_extraction_prompt(existing_memories=[], new_messages=[{"role": "user", "content": text}])
    return [{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, {"role": "user", "content": user}]


def chats(server: FakeOpenAIServer) -> list[dict[str, Any]]:
    return server.requests_to("/v1/chat/completions")


# --- config ------------------------------------------------------------------------------------------


def test_keys_as_mem0_and_the_servers_name_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_COMPATIBLE_URLS", "http://gpu-a:8000/v1, http://gpu-b:8000/v1")
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", SECRET)
    cfg = RouterConfig.from_mapping({"local_backend": "openai_compatible"})
    assert cfg.openai_compatible_urls == ["http://gpu-a:8000/v1", "http://gpu-b:8000/v1"]
    assert SECRET not in repr(cfg) and SECRET not in json.dumps(cfg.safe_dict())
    assert cfg.safe_dict()["openai_compatible_api_key"] == "set"
    monkeypatch.delenv("OPENAI_COMPATIBLE_URLS")
    monkeypatch.setenv("VLLM_BASE_URL", "http://vllm:8000/v1")  # only the documented env var is read
    assert RouterConfig.from_mapping({}).openai_compatible_urls == []
    assert RouterConfig.from_mapping({"vllm_base_url": "http://vllm:8000/v1"}).openai_compatible_urls \
        == ["http://vllm:8000/v1"]
    assert RouterConfig.from_mapping({"lmstudio_base_url": "http://localhost:1234/v1"}).openai_compatible_urls \
        == ["http://localhost:1234/v1"]


def test_bad_values_name_the_key_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"openai_compatible_urls.*'gpu-a:8000' is not an http\(s\) URL.*vLLM"):
        RouterConfig.from_mapping({"openai_compatible_urls": "gpu-a:8000"})
    with pytest.raises(ConfigError, match=r"'vllm' is not a local backend; allowed: .*'openai_compatible'"):
        RouterConfig.from_mapping({"local_backend": "vllm"})
    with pytest.raises(ConfigError, match="credentials"):
        RouterConfig.from_mapping({"openai_compatible_urls": ["http://user:pw@gpu:8000/v1"]})


def test_the_kind_is_a_local_table_entry_after_ollama() -> None:
    spec = KINDS["openai_compatible"]
    assert spec.is_local and spec.auto_rank is not None and spec.auto_rank > KINDS["ollama"].auto_rank  # type: ignore[operator]
    assert spec.create(RouterConfig.from_mapping({})) == []  # no URLs: auto never picks it
    assert normalize_base_url("http://h:8000") == "http://h:8000/v1" == normalize_base_url("http://h:8000/v1/")


# --- calls -------------------------------------------------------------------------------------------


def test_chat_and_embeddings_are_local_and_free(vllm: FakeOpenAIServer, openai_server: FakeOpenAIServer,
                                                openai_key: str) -> None:
    """With OpenAI configured too, the compatible server is the local tier: $0, counted local."""
    router = compat_router(vllm, openai_base_url=openai_server.base_url, openai_api_key=openai_key)
    out = router.chat([{"role": "user", "content": "hi there, how are you?"}])
    assert (out.backend, out.is_local, out.model, out.cost_usd) == ("openai_compatible", True, "qwen", 0.0)
    assert out.host == vllm.base_url and out.text
    assert asyncio.run(router.achat([{"role": "user", "content": "and async?"}])).is_local
    vectors = router.embed(["alpha", "beta"])
    assert len(vectors) == 2 and len(vectors[0]) == 64 and vllm.requests_to("/v1/embeddings")[0]["model"] == "emb"
    assert openai_server.requests_to("/v1/chat/completions") == []
    metrics = router.get_metrics()
    assert metrics["local_queries"] >= 2 and metrics["external_queries"] == 0 and metrics["total_cost"] == 0 and metrics["embeddings_local"] == 1


def test_a_secret_stays_on_the_compatible_server(vllm: FakeOpenAIServer, openai_server: FakeOpenAIServer,
                                                 openai_key: str) -> None:
    """Keep-local rules treat it as local: a prompt with a key in it may go there, never to OpenAI."""
    router = compat_router(vllm, openai_base_url=openai_server.base_url, openai_api_key=openai_key,
                           local_threshold=0)
    out = router.chat([{"role": "user", "content": "my AWS key is AKIAIOSFODNN7EXAMPLE, keep it " + "x " * 600}])
    assert out.is_local and out.backend == "openai_compatible"
    assert openai_server.requests_to("/v1/chat/completions") == []


def test_the_window_comes_from_vllm_and_a_prompt_too_long_is_never_sent(vllm: FakeOpenAIServer) -> None:
    router = compat_router(vllm)
    backend = OpenAICompatibleBackend(vllm.url)
    assert backend.context_window("qwen") == 4096 and backend.has_model("qwen") and not backend.has_model("nope")
    with pytest.raises(RoutingError) as info:
        router.chat([{"role": "user", "content": "word " * 6000}])
    assert chats(vllm) == []  # refused before sending
    assert info.value.attempts[0].kind == "ContextOverflow"
    assert any("--max-model-len" in fix and "4096-token window" in fix for fix in info.value.fixes), info.value.fixes


def test_llama_server_props_and_a_configured_window() -> None:
    with compat_server("llamacpp", n_ctx=1024) as server:
        assert OpenAICompatibleBackend(server.base_url).context_window("qwen") == 1024
    with compat_server("openai") as server:
        assert OpenAICompatibleBackend(server.base_url).context_window("qwen") is None
        assert OpenAICompatibleBackend(server.base_url, context_window=2048).context_window("qwen") == 2048
        router = compat_router(server, openai_compatible_context_window=2048)
        with pytest.raises(RoutingError, match="2048-token window"):
            router.chat([{"role": "user", "content": "word " * 3000}])
        assert chats(server) == []


def test_the_server_refusing_a_long_prompt_is_a_context_overflow(vllm: FakeOpenAIServer) -> None:
    """A window the router could not learn: the server's own 400 becomes ContextOverflow, not a retry."""
    with compat_server("openai") as server:
        router = compat_router(server)
        with pytest.raises(RoutingError) as info:
            router.chat([{"role": "user", "content": "word " * 6000}])
        assert [a.kind for a in info.value.attempts] == ["ContextOverflow"] and len(chats(server)) == 1


def test_mem0_extraction_asks_for_its_schema(vllm: FakeOpenAIServer) -> None:
    out = compat_router(vllm).chat(extraction_messages())
    sent = chats(vllm)[-1]["response_format"]
    assert sent["type"] == "json_schema" and "memory" in sent["json_schema"]["schema"]["properties"]
    assert isinstance(json.loads(out.text)["memory"], list)


def test_guided_json_when_configured(vllm: FakeOpenAIServer) -> None:
    compat_router(vllm, openai_compatible_structured_output="guided_json").chat(extraction_messages())
    body = chats(vllm)[-1]
    assert "response_format" not in body and "memory" in body["guided_json"]["properties"]


def test_auto_falls_back_to_json_object_for_llama_cpp_python() -> None:
    """llama-cpp-python refuses ``json_schema``: asked once more with ``json_object`` + schema,
    and with that from then on."""
    with LlamaCppPythonServer() as server:
        router = compat_router(server)
        for _ in range(2):
            assert json.loads(router.chat(extraction_messages()).text)["memory"] is not None
        kinds = [c["response_format"]["type"] for c in chats(server)]
        assert kinds == ["json_schema", "json_object", "json_object"]
        assert "memory" in chats(server)[-1]["response_format"]["schema"]["properties"]


def test_a_silently_cut_prompt_is_detected_from_usage() -> None:
    with compat_server("openai", overflow="truncate", models={**MODELS, "qwen": (512, None)}) as server:
        with pytest.raises(RoutingError) as info:
            compat_router(server).chat([{"role": "user", "content": "please summarise: " + "word " * 1500}])
        assert [a.kind for a in info.value.attempts] == ["truncated"]  # once: a fixed window cannot grow
        assert any("--max-model-len" in f for f in info.value.fixes)


# --- health, errors, failover -----------------------------------------------------------------------


def test_health_names_a_missing_model_and_the_server(vllm: FakeOpenAIServer) -> None:
    report = compat_router(vllm, llm_model="llama-3-8b").health()
    assert report["local_backend"] == "openai_compatible" and report["local"]
    assert report["hosts"][0]["context_windows"]["qwen"] == 4096
    missing = [e for e in report["errors"] if "llama-3-8b" in e]
    assert missing and "vllm serve llama-3-8b" in missing[0], report["errors"]
    vllm.set_fault("refused")
    report = compat_router(vllm).health()
    assert not report["ok"] and "start the OpenAI-compatible server" in " ".join(report["errors"])


def test_a_wrong_key_is_never_echoed_and_names_the_key_to_set() -> None:
    with compat_server("vllm", api_key=SECRET) as server:
        wrong = "vllm-WRONGkey-9876543210fedcba"
        with pytest.raises(RoutingError) as info:
            compat_router(server, openai_compatible_api_key=wrong).chat([{"role": "user", "content": "hi"}])
        said = f"{info.value}\n{info.value.fixes}\n{info.value.attempts}"
        assert wrong not in said and wrong[-8:] not in said
        assert any("openai_compatible_api_key" in f for f in info.value.fixes)
        assert compat_router(server, openai_compatible_api_key=SECRET).chat([{"role": "user", "content": "hi"}]).text


def test_two_servers_one_killed_mid_call_no_call_lost() -> None:
    """A server dies while it holds a call: that call and every later one are answered by the other,
    and the dead server's breaker opens."""
    with compat_server("vllm") as a, compat_server("vllm") as b:
        router = compat_router(a, b, breaker_failures=2)
        a.set_fault("hang", paths=["/v1/chat/completions"])
        results: list[Any] = []

        def call(i: int) -> None:
            try:
                results.append(router.chat([{"role": "user", "content": f"question {i}?"}]))
            except Exception as exc:  # noqa: BLE001 - a lost call is what the test looks for
                results.append(exc)

        threads = []
        for i in range(8):  # one call after the other, until the doomed server holds one
            threads.append(threading.Thread(target=call, args=(i,)))
            threads[-1].start()
            while threads[-1].is_alive() and not chats(a):
                threads[-1].join(0.01)
            if chats(a):
                break
        assert chats(a), "server a never got a call"
        a.stop()  # killed with a call in flight
        for t in threads:
            t.join(timeout=30)
        for i in range(6):
            call(100 + i)
        lost = [r for r in results if isinstance(r, Exception)]
        assert not lost, lost
        assert all(r.host == b.base_url for r in results)
        hosts = {h["name"]: h for h in router.health()["hosts"]}
        assert hosts[f"openai_compatible@{a.base_url}"]["breaker"] == "open"
        assert hosts[f"openai_compatible@{b.base_url}"]["breaker"] == "closed"


def test_unreachable_server_fix_names_it() -> None:
    backend = OpenAICompatibleBackend("http://127.0.0.1:9/v1", connect_timeout_s=0.5)
    health = backend.health(timeout_s=1.0)
    assert not health.reachable and "start the OpenAI-compatible server at http://127.0.0.1:9/v1" in (health.error or "")
    assert backend.has_model("qwen") is None


def test_routes_left_at_ollama_defaults_go_to_llm_model(vllm: FakeOpenAIServer) -> None:
    """A vLLM deployment has no ``codellama:13b``: the routes nobody set use ``llm_model``; set ones stay."""
    router = compat_router(vllm, models={"code": "emb"})
    out = router.chat([{"role": "user", "content": "Compare and analyse, step by step, the trade-offs of "
                                                   "three database designs for a large multi-tenant system."}])
    assert out.model == "qwen" and out.decision.query_type.value in ("medium", "complex")
    report = router.health()
    assert report["ok"] and report["missing_models"] == [], report["errors"]
    assert sorted(report["required_models"]) == ["emb", "qwen"] and "code" in report["models"]["emb"]["routes"]


def test_chat_and_embedding_models_on_separate_servers() -> None:
    """vLLM serves one model per process: the chat model on one URL, the embedder on another."""
    with compat_server("vllm", models={"qwen": (4096, None)}) as chat, \
            compat_server("vllm", models={"emb": (512, 64)}) as embed:
        router = compat_router(chat, embed)
        for i in range(4):
            out = router.chat([{"role": "user", "content": f"question {i}?"}])
            assert out.host == chat.base_url and out.is_local
        assert len(router.embed([f"text {i}" for i in range(3)])[0]) == 64
        assert embed.requests_to("/v1/chat/completions") == [] and chat.requests_to("/v1/embeddings") == []
        report = router.health()
        assert report["ok"], report["errors"]
        assert all(h["breaker"] == "closed" for h in report["hosts"])


def test_vllm_s_name_of_an_open_weight_model_is_a_local_model() -> None:
    """vLLM serves gpt-oss as ``openai/gpt-oss-20b``: a local model, not OpenAI's (mem0's ``model`` too)."""
    from mem0_routed._mem0 import _llm_router_options

    cfg = RouterConfig.from_mapping({"local_backend": "openai_compatible", "llm_model": "openai/gpt-oss-20b"})
    assert cfg.models["extraction"] == "openai/gpt-oss-20b"
    assert _llm_router_options("openai/gpt-oss-20b", None, {})["llm_model"] == "openai/gpt-oss-20b"
    with pytest.raises(ConfigError, match="is an OpenAI model"):
        RouterConfig.from_mapping({"models": {"simple": "openai/gpt-4o"}})


def test_auto_takes_the_compatible_servers_when_ollama_does_not_answer(vllm: FakeOpenAIServer) -> None:
    """``local_backend: auto`` tries Ollama first (its rank), then the configured compatible servers."""
    router = compat_router(vllm, local_backend="auto", ollama_base_url="http://127.0.0.1:7")
    out = router.chat([{"role": "user", "content": "hi there"}])
    assert out.backend == "openai_compatible" and out.is_local
    report = router.health()
    assert report["local_backend"] == "openai_compatible"
    assert any("ollama down" in w and "openai_compatible" in w for w in report["warnings"]), report["warnings"]
