"""The fake servers themselves: API shapes, Ollama's silent truncation, the fake model, fault modes."""

from __future__ import annotations

import base64
import json
import math
import struct
import threading

import httpx
import pytest
from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT, generate_additive_extraction_prompt
from mem0.memory.utils import parse_messages

from mem0_routed.testing import (
    DEFAULT_TEST_KEY,
    FakeOllamaServer,
    FakeOpenAIServer,
    ModelSpec,
    embed_text,
    mask_key,
)
from mem0_routed.testing._fakemodel import extract_facts, truncate_prompt

TIMEOUT = httpx.Timeout(10.0)


def post(server: FakeOllamaServer | FakeOpenAIServer, path: str, body: dict, **kw: object) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=TIMEOUT, **kw)  # type: ignore[arg-type]


def chat(server: FakeOllamaServer, content: str, **extra: object) -> httpx.Response:
    body = {
        "model": "mistral:7b",
        "stream": False,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }
    return post(server, "/api/chat", body)


def extraction_messages(conversation: list[dict[str, str]]) -> list[dict[str, str]]:
    """Exactly what mem0 2.2.1 sends for ``Memory.add(conversation)``."""
    user_prompt = generate_additive_extraction_prompt(new_messages=parse_messages(conversation))
    return [
        {"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT},
        {"role": "user", "content": user_prompt},
    ]


def wait_until_logged(server: FakeOllamaServer, path: str) -> None:
    """Bounded wait for the server to have received a request (threads start at their own pace)."""
    done = threading.Event()
    for _ in range(200):
        if server.requests_to(path) or done.wait(0.05):
            return
    raise AssertionError(f"no request to {path} reached the server")


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    )


# --- Ollama API shapes ------------------------------------------------------------------------------


def test_tags_show_version_have_ollamas_shapes(ollama_server: FakeOllamaServer) -> None:
    tags = httpx.get(ollama_server.url + "/api/tags", timeout=TIMEOUT).json()
    names = {m["name"] for m in tags["models"]}
    assert names == set(ollama_server.models)
    assert all(m["model"] == m["name"] and "details" in m for m in tags["models"])
    assert "version" in httpx.get(ollama_server.url + "/api/version", timeout=TIMEOUT).json()
    show = post(ollama_server, "/api/show", {"model": "nomic-embed-text"}).json()
    arch = show["model_info"]["general.architecture"]
    assert arch == "nomic-bert"
    assert show["model_info"][f"{arch}.context_length"] == 2048
    assert "embedding" in show["capabilities"]


def test_unknown_model_answers_like_ollama(ollama_server: FakeOllamaServer) -> None:
    for path in ("/api/chat", "/api/show", "/api/embed"):
        r = post(ollama_server, path, {"model": "llama9", "messages": [], "input": "x"})
        assert r.status_code == 404
        assert r.json() == {"error": 'model "llama9" not found, try pulling it first'}


def test_chat_response_fields_and_json_format(ollama_server: FakeOllamaServer) -> None:
    r = chat(ollama_server, "Tell me about the weather in Paris", format="json")
    body = r.json()
    assert r.status_code == 200 and body["done"] is True and body["done_reason"] == "stop"
    assert json.loads(body["message"]["content"])["model"] == "mistral:7b"
    assert body["prompt_eval_count"] == len("Tell me about the weather in Paris") // 4
    assert body["eval_count"] >= 1 and isinstance(body["total_duration"], int)


def test_chat_honours_json_schema_format(ollama_server: FakeOllamaServer) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"}}}
    content = chat(ollama_server, "weather?", format=schema).json()["message"]["content"]
    assert set(json.loads(content)) == {"city", "temp"}


def test_plain_text_answer_names_model_and_is_deterministic(ollama_server: FakeOllamaServer) -> None:
    a = chat(ollama_server, "Summarise our trip").json()["message"]["content"]
    b = chat(ollama_server, "Summarise our trip").json()["message"]["content"]
    assert a == b and a.startswith("mistral:7b") and "trip" in a


def test_num_predict_cuts_output_with_done_reason_length(ollama_server: FakeOllamaServer) -> None:
    long_q = "word " * 200
    body = chat(ollama_server, long_q, options={"num_predict": 3}).json()
    assert body["done_reason"] == "length"
    assert len(body["message"]["content"]) <= 3 * 4


def test_reranker_prompt_scores_word_overlap(ollama_server: FakeOllamaServer) -> None:
    hit = chat(ollama_server, "Query: Alice pizza\n\nDocument: Alice loves pizza").json()["message"][
        "content"
    ]
    miss = chat(ollama_server, "Query: Alice pizza\n\nDocument: Bob plays tennis").json()["message"][
        "content"
    ]
    assert float(hit) > float(miss)
    assert float(miss) == 0.0


# --- extraction and silent truncation ---------------------------------------------------------------


def test_extraction_returns_one_fact_per_user_sentence(ollama_server: FakeOllamaServer) -> None:
    conversation = [
        {"role": "user", "content": "I live in Berlin. I am allergic to peanuts!"},
        {"role": "assistant", "content": "Noted, thanks."},
        {"role": "user", "content": "My sister is called Ana."},
    ]
    body = post(
        ollama_server,
        "/api/chat",
        {
            "model": "mistral:7b",
            "stream": False,
            "format": "json",
            "messages": extraction_messages(conversation),
            "options": {"num_ctx": 16384},
        },
    ).json()
    facts = json.loads(body["message"]["content"])["memory"]
    assert [f["text"] for f in facts] == [
        "I live in Berlin.",
        "I am allergic to peanuts!",
        "My sister is called Ana.",
    ]
    assert all(f["attributed_to"] == "user" for f in facts)


def test_extraction_accepts_json_list_new_messages_section() -> None:
    prompt = "## New Messages\n" + json.dumps([{"role": "user", "content": "I like tea. I hate rain."}])
    assert [f["text"] for f in extract_facts(prompt)] == ["I like tea.", "I hate rain."]


def test_long_prompt_with_small_num_ctx_is_silently_truncated(ollama_server: FakeOllamaServer) -> None:
    sentences = [f"Fact number {i} is that I own {i} red bicycles." for i in range(120)]
    conversation = [{"role": "user", "content": " ".join(sentences)}]
    messages = extraction_messages(conversation)
    total_tokens = sum(len(m["content"]) for m in messages) // 4

    small = post(
        ollama_server,
        "/api/chat",
        {
            "model": "mistral:7b",
            "stream": False,
            "format": "json",
            "messages": messages,
            "options": {"num_ctx": 1024},
        },
    )
    assert small.status_code == 200
    body = small.json()
    assert body["done_reason"] == "stop"
    assert json.loads(body["message"]["content"]) == {"memory": []}
    assert body["prompt_eval_count"] <= 1024 < total_tokens

    big = post(
        ollama_server,
        "/api/chat",
        {
            "model": "mistral:7b",
            "stream": False,
            "format": "json",
            "messages": messages,
            "options": {"num_ctx": 32768},
        },
    ).json()
    assert len(json.loads(big["message"]["content"])["memory"]) == len(sentences)
    assert big["prompt_eval_count"] == len("\n".join(m["content"] for m in messages)) // 4


def test_default_window_is_2048_and_capped_at_model_context(ollama_server: FakeOllamaServer) -> None:
    text = "x" * (3000 * 4)
    assert chat(ollama_server, text).json()["prompt_eval_count"] == 2048
    ollama_server.models["tiny:latest"] = ModelSpec(context_length=512)
    body = post(
        ollama_server,
        "/api/chat",
        {
            "model": "tiny",
            "stream": False,
            "messages": [{"role": "user", "content": text}],
            "options": {"num_ctx": 100000},
        },
    ).json()
    assert body["prompt_eval_count"] == 512
    assert ("tiny:latest", 512) in ollama_server.num_ctx_log


def test_truncate_prompt_keeps_the_end() -> None:
    kept, tokens, cut = truncate_prompt("a" * 100 + "END", 10)
    assert cut and kept.endswith("END") and len(kept) == 40 and tokens == 10


def test_num_ctx_changes_count_as_reloads(ollama_server: FakeOllamaServer) -> None:
    for ctx in (4096, 4096, 8192, 8192, 4096):
        chat(ollama_server, "hi", options={"num_ctx": ctx})
    assert ollama_server.reloads["mistral:7b"] == 2
    assert [c for _, c in ollama_server.num_ctx_log] == [4096, 4096, 8192, 8192, 4096]
    ps = httpx.get(ollama_server.url + "/api/ps", timeout=TIMEOUT).json()
    assert {m["name"]: m["context_length"] for m in ps["models"]} == {"mistral:7b": 4096}


# --- embeddings ---------------------------------------------------------------------------------------


def test_embeddings_are_deterministic_normalised_and_similar_for_shared_words(
    ollama_server: FakeOllamaServer,
) -> None:
    texts = ["Alice likes pizza", "What pizza does Alice like?", "The stock market fell sharply"]
    r = post(ollama_server, "/api/embed", {"model": "nomic-embed-text", "input": texts}).json()
    a, b, c = r["embeddings"]
    assert len(a) == 768
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-9)
    assert cosine(a, b) > 0.8
    assert cosine(a, c) < 0.2
    single = post(ollama_server, "/api/embed", {"model": "nomic-embed-text", "input": texts[0]}).json()
    assert single["embeddings"] == [a]
    assert embed_text(texts[0], 768) == a


def test_embed_rejects_chat_only_model(ollama_server: FakeOllamaServer) -> None:
    r = post(ollama_server, "/api/embed", {"model": "mistral:7b", "input": "x"})
    assert r.status_code == 400 and "does not support embeddings" in r.json()["error"]


def test_empty_text_embeds_to_a_unit_vector() -> None:
    v = embed_text("", 8)
    assert math.isclose(sum(x * x for x in v), 1.0)


# --- faults -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "status", "needle"),
    [("error500", 500, "terminated"), ("error401", 401, "unauthorized"), ("model_missing", 404, "not found")],
)
def test_error_faults(ollama_server: FakeOllamaServer, mode: str, status: int, needle: str) -> None:
    ollama_server.set_fault(mode)  # type: ignore[arg-type]
    r = chat(ollama_server, "hi")
    assert r.status_code == status and needle in r.json()["error"]


def test_error429_sends_retry_after(ollama_server: FakeOllamaServer) -> None:
    ollama_server.set_fault("error429", retry_after=7)
    r = chat(ollama_server, "hi")
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"


def test_fault_per_model_and_for_n_requests(ollama_server: FakeOllamaServer) -> None:
    ollama_server.set_fault("error500", model="mistral", times=2)  # "mistral" is not mistral:7b
    assert chat(ollama_server, "hi").status_code == 200
    ollama_server.set_fault("error500", model="mistral:7b", times=2)
    assert [chat(ollama_server, "hi").status_code for _ in range(3)] == [500, 500, 200]


def test_model_missing_hides_model_from_tags(ollama_server: FakeOllamaServer) -> None:
    ollama_server.set_fault("model_missing", model="mistral:7b")
    names = {m["name"] for m in httpx.get(ollama_server.url + "/api/tags", timeout=TIMEOUT).json()["models"]}
    assert "mistral:7b" not in names and "codellama:13b" in names


@pytest.mark.parametrize("mode", ["invalid_json", "empty", "truncate_output"])
def test_answer_faults(ollama_server: FakeOllamaServer, mode: str) -> None:
    ollama_server.set_fault(mode, times=1)  # type: ignore[arg-type]
    body = chat(ollama_server, "Describe this in json please", format="json").json()
    content = body["message"]["content"]
    if mode == "empty":
        assert content == ""
    else:
        with pytest.raises(ValueError):
            json.loads(content)
    assert body["done_reason"] == ("length" if mode == "truncate_output" else "stop")
    json.loads(chat(ollama_server, "again in json", format="json").json()["message"]["content"])


def test_slow_fault_still_answers(ollama_server: FakeOllamaServer) -> None:
    ollama_server.set_fault("slow", delay_s=0.2, times=1)
    assert chat(ollama_server, "hi").status_code == 200


def test_refused_then_cleared(ollama_server: FakeOllamaServer) -> None:
    url = ollama_server.url
    ollama_server.set_fault("refused")
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/api/tags", timeout=TIMEOUT)
    ollama_server.clear_faults()
    assert ollama_server.url == url
    assert httpx.get(url + "/api/tags", timeout=TIMEOUT).status_code == 200


def test_hang_is_held_until_released(ollama_server: FakeOllamaServer) -> None:
    ollama_server.set_fault("hang", times=1)
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(chat(ollama_server, "hi").status_code))
    t.start()
    wait_until_logged(ollama_server, "/api/chat")
    t.join(0.2)
    assert t.is_alive() and not result  # held: only release() or stop() can end it
    ollama_server.release()
    t.join(10)
    assert result == [200]


def test_hang_never_blocks_stop() -> None:
    server = FakeOllamaServer().start()
    server.set_fault("hang")
    errors: list[BaseException] = []

    def call() -> None:
        try:
            chat(server, "hi")
        except httpx.HTTPError as exc:
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    wait_until_logged(server, "/api/chat")
    server.stop()
    t.join(10)
    assert not t.is_alive()
    assert errors and isinstance(errors[0], httpx.RemoteProtocolError)


def test_set_fault_validates_arguments(ollama_server: FakeOllamaServer) -> None:
    with pytest.raises(ValueError, match="unknown fault mode 'explode'"):
        ollama_server.set_fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="server-wide"):
        ollama_server.set_fault("refused", model="mistral:7b")
    with pytest.raises(ValueError, match="times must be"):
        ollama_server.set_fault("error500", times=0)


def test_request_log_and_reset(ollama_server: FakeOllamaServer) -> None:
    chat(ollama_server, "hi", options={"num_ctx": 4096})
    ollama_server.set_fault("error500")
    ollama_server.add_model("extra", ModelSpec())
    assert ollama_server.requests_to("/api/chat")[0]["options"] == {"num_ctx": 4096}
    ollama_server.reset()
    assert ollama_server.requests == [] and ollama_server.num_ctx_log == []
    assert "extra:latest" not in ollama_server.models
    assert chat(ollama_server, "hi").status_code == 200


# --- OpenAI -------------------------------------------------------------------------------------------


def oai(server: FakeOpenAIServer, path: str, body: dict | None, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if body is None:
        return httpx.get(server.base_url + path, headers=headers, timeout=TIMEOUT)
    return httpx.post(server.base_url + path, json=body, headers=headers, timeout=TIMEOUT)


def test_openai_rejects_missing_and_wrong_keys(openai_server: FakeOpenAIServer, openai_key: str) -> None:
    assert oai(openai_server, "/models", None, None).status_code == 401
    wrong = "sk-wrong-abcdefghijklmnop1234"
    err = oai(openai_server, "/models", None, wrong).json()["error"]
    assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error"
    assert mask_key(wrong) in err["message"] and wrong not in err["message"]
    assert oai(openai_server, "/models", None, openai_key).json()["object"] == "list"
    assert openai_server.auth_failures == 2


def test_openai_chat_usage_and_json_modes(openai_server: FakeOpenAIServer, openai_key: str) -> None:
    msgs = [{"role": "user", "content": "Reply in JSON: what is 2+2?"}]
    r = oai(
        openai_server,
        "/chat/completions",
        {"model": "gpt-4o-mini", "messages": msgs, "response_format": {"type": "json_object"}},
        openai_key,
    )
    body = r.json()
    json.loads(body["choices"][0]["message"]["content"])
    assert body["usage"]["prompt_tokens"] == len(msgs[0]["content"]) // 4
    no_json_word = [{"role": "user", "content": "hello"}]
    r = oai(
        openai_server,
        "/chat/completions",
        {"model": "gpt-4o-mini", "messages": no_json_word, "response_format": {"type": "json_object"}},
        openai_key,
    )
    assert r.status_code == 400 and "json" in r.json()["error"]["message"]
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    r = oai(
        openai_server,
        "/chat/completions",
        {"model": "gpt-4o-mini", "messages": no_json_word, "response_format": rf},
        openai_key,
    )
    assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"answer": 0}


def test_openai_refuses_over_long_prompt(openai_server: FakeOpenAIServer, openai_key: str) -> None:
    openai_server.models["small-model"] = (100, None)
    r = oai(
        openai_server,
        "/chat/completions",
        {"model": "small-model", "messages": [{"role": "user", "content": "x" * 1000}]},
        openai_key,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_openai_embeddings_float_and_base64(openai_server: FakeOpenAIServer, openai_key: str) -> None:
    body = {"model": "text-embedding-3-small", "input": ["red apple", "green apple"], "dimensions": 64}
    floats = oai(openai_server, "/embeddings", body, openai_key).json()["data"]
    b64 = oai(openai_server, "/embeddings", {**body, "encoding_format": "base64"}, openai_key).json()["data"]
    decoded = list(struct.unpack("<64f", base64.b64decode(b64[1]["embedding"])))
    assert [d["index"] for d in floats] == [0, 1]
    assert all(
        math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7) for x, y in zip(decoded, floats[1]["embedding"])
    )


@pytest.mark.parametrize(("mode", "status"), [("error500", 500), ("error429", 429), ("model_missing", 404)])
def test_openai_error_faults(
    openai_server: FakeOpenAIServer, openai_key: str, mode: str, status: int
) -> None:
    openai_server.set_fault(mode, times=1)  # type: ignore[arg-type]
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    r = oai(openai_server, "/chat/completions", body, openai_key)
    assert r.status_code == status
    assert oai(openai_server, "/chat/completions", body, openai_key).status_code == 200


def test_openai_server_repr_hides_key(openai_key: str) -> None:
    server = FakeOpenAIServer(api_key=openai_key)
    assert openai_key not in repr(server)


# --- OpenAI-compatible local servers: vLLM and llama.cpp's llama-server ---------------------------------


SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
          "required": ["city"]}
LOCAL_MODELS = {"qwen2.5:7b": (4096, None), "bge-m3": (8192, 1024)}


def local(flavor: str, **kw: object) -> FakeOpenAIServer:
    return FakeOpenAIServer(api_key=None, flavor=flavor, models=dict(LOCAL_MODELS), **kw)  # type: ignore[arg-type]


def ask(server: FakeOpenAIServer, content: str, **kw: object) -> httpx.Response:
    body = {"model": "qwen2.5:7b", "messages": [{"role": "user", "content": content}], **kw}
    return httpx.post(server.base_url + "/chat/completions", json=body, timeout=TIMEOUT)


def test_vllm_lists_max_model_len_and_needs_no_key() -> None:
    import openai

    with local("vllm") as server:
        models = openai.OpenAI(base_url=server.base_url, api_key="EMPTY").models.list()
        entry = next(m for m in models.data if m.id == "qwen2.5:7b")
        assert entry.owned_by == "vllm" and entry.model_extra is not None
        assert entry.model_extra["max_model_len"] == 4096
        assert httpx.get(server.base_url + "/models", timeout=TIMEOUT).status_code == 200  # no key at all
        assert httpx.get(server.url + "/props", timeout=TIMEOUT).status_code == 404
        missing = ask(server, "hi", model="llama3:70b")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFoundError"


def test_vllm_guided_decoding_by_response_format_and_guided_json() -> None:
    with local("vllm") as server, local("llamacpp") as other:
        rf = {"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}}
        for reply in (ask(server, "Where?", response_format=rf), ask(server, "Where?", guided_json=SCHEMA),
                      ask(server, "Where?", guided_json=json.dumps(SCHEMA))):
            assert json.loads(reply.json()["choices"][0]["message"]["content"]) == {"city": "Paris"}
        ignored = ask(other, "Where?", guided_json=SCHEMA).json()["choices"][0]["message"]["content"]
        assert "city" not in ignored  # llama-server does not read vLLM's field


def test_vllm_refuses_a_prompt_or_an_answer_that_does_not_fit() -> None:
    import openai

    with local("vllm") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="qwen2.5:7b", messages=[{"role": "user", "content": "x" * 20000}])
        assert err.value.body == {  # type: ignore[comparison-overlap]
            "message": "This model's maximum context length is 4096 tokens. However, your request has 5000 input "
                       "tokens. Please reduce the length of the input messages.",
            "type": "BadRequestError", "param": None, "code": 400}
        too_much = ask(server, "x" * 16000, max_tokens=200)  # 4000 + 200 > 4096
        assert too_much.status_code == 400 and too_much.json()["error"]["message"].startswith(
            "'max_tokens' or 'max_completion_tokens' is too large: 200. This model's maximum context length is "
            "4096 tokens and your request has 4000 input tokens (200 > 4096 - 4000).")
        fits = ask(server, "x" * 16000, max_tokens=50).json()
        assert fits["usage"]["prompt_tokens"] == 4000


def test_llama_server_props_window_and_any_model_name() -> None:
    with local("llamacpp", n_ctx=2048) as server:
        props = httpx.get(server.url + "/props", timeout=TIMEOUT).json()
        assert props["default_generation_settings"]["n_ctx"] == 2048  # the server's window ...
        entry = httpx.get(server.base_url + "/models", timeout=TIMEOUT).json()["data"][0]
        assert entry["owned_by"] == "llamacpp" and entry["meta"]["n_ctx_train"] == 4096  # ... not the model's
        reply = ask(server, "hi", model="anything-at-all")
        assert reply.status_code == 200 and reply.json()["model"] == "anything-at-all"


def test_llama_server_refuses_a_prompt_over_n_ctx_and_cuts_a_long_answer() -> None:
    with local("llamacpp", n_ctx=256) as server:
        refused = ask(server, "x" * 1024)  # 256 tokens: llama-server needs one free cell to decode
        assert refused.status_code == 400
        assert refused.json()["error"] == {
            "code": 400, "message": "request (256 tokens) exceeds the available context size (256 tokens), try "
                                    "increasing it",
            "type": "exceed_context_size_error", "n_prompt_tokens": 256, "n_ctx": 256}
        cut = ask(server, "Reply in json. " + "x" * 900, max_tokens=500).json()
        assert cut["choices"][0]["finish_reason"] == "length"
        assert cut["usage"]["prompt_tokens"] + cut["usage"]["completion_tokens"] <= 256


def test_llama_server_structured_output_forms() -> None:
    with local("llamacpp") as server:
        for kw in ({"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}},
                   {"response_format": {"type": "json_object", "schema": SCHEMA}}, {"json_schema": SCHEMA}):
            content = ask(server, "Where?", **kw).json()["choices"][0]["message"]["content"]
            assert json.loads(content) == {"city": "Paris"}, kw
        plain = ask(server, "Where?", response_format={"type": "json_object"}).json()  # no "json" word needed
        assert isinstance(json.loads(plain["choices"][0]["message"]["content"]), dict)


@pytest.mark.parametrize("flavor", ["openai", "vllm", "llamacpp"])
def test_truncating_servers_report_the_kept_prompt_in_usage(flavor: str) -> None:
    kw = {"n_ctx": 512} if flavor == "llamacpp" else {}
    models = {"qwen2.5:7b": (512, None)}
    with FakeOpenAIServer(api_key=None if flavor != "openai" else DEFAULT_TEST_KEY, flavor=flavor,  # type: ignore[arg-type]
                          models=models, overflow="truncate", **kw) as server:
        reply = httpx.post(server.base_url + "/chat/completions", headers={"Authorization": f"Bearer {DEFAULT_TEST_KEY}"},
                           json={"model": "qwen2.5:7b", "max_tokens": 12,
                                 "messages": [{"role": "user", "content": "x" * 8000}]}, timeout=TIMEOUT)
        assert reply.status_code == 200
        assert reply.json()["usage"]["prompt_tokens"] == 500  # 2000 sent, the last 512 - 12 kept


@pytest.mark.parametrize(("flavor", "body"), [("vllm", {"error": "Unauthorized"}),
                                              ("llamacpp", {"error": {"code": 401, "message": "Invalid API Key",
                                                                      "type": "authentication_error"}})])
def test_local_servers_started_with_a_key_refuse_others(flavor: str, body: dict) -> None:
    with FakeOpenAIServer(api_key="sk-local-1", flavor=flavor, models=dict(LOCAL_MODELS)) as server:  # type: ignore[arg-type]
        for headers in ({}, {"Authorization": "Bearer sk-other"}):
            reply = httpx.get(server.base_url + "/models", headers=headers, timeout=TIMEOUT)
            assert reply.status_code == 401 and reply.json() == body
        ok = httpx.get(server.base_url + "/models", headers={"Authorization": "Bearer sk-local-1"}, timeout=TIMEOUT)
        assert ok.status_code == 200


def test_bad_flavor_settings_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="flavor must be one of"):
        FakeOpenAIServer(flavor="sglang")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_ctx"):
        FakeOpenAIServer(flavor="vllm", n_ctx=2048)
    with pytest.raises(ValueError, match="overflow"):
        FakeOpenAIServer(overflow="drop")  # type: ignore[arg-type]
