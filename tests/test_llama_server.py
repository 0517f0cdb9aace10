"""What a real llama-cpp-python OpenAI-compatible server (0.3.x, ``python -m llama_cpp.server``) offers,
recorded as assertions: the facts an OpenAI-compatible backend can rely on, and the ones it must not.

One server per session (SmolLM2-135M, ``n_ctx`` 256: see ``tests/llama_server.py``); calls ask for few
tokens, because a 2-core CI machine decodes slowly. Where llama.cpp's own ``llama-server`` (C++) or
vLLM differ, the fakes in ``mem0_routed.testing`` (``FakeOpenAIServer(flavor=...)``) stand in.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest
from llama_server import MODEL, N_CTX, LlamaServer, llama_server_or_skip

pytestmark = pytest.mark.llamaserver

ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["zebra", "okapi"]}},
                 "required": ["answer"], "additionalProperties": False}


def client(server: LlamaServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=280)


def ask(server: LlamaServer, text: str, **kw: object) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], **kw}
    return httpx.post(server.base_url + "/chat/completions", json=body, timeout=280)


# --- discovery: models, context window, health ----------------------------------------------------


def test_models_list_has_the_alias_and_no_context_window(real_llama_server: LlamaServer) -> None:
    body = httpx.get(real_llama_server.base_url + "/models", timeout=30).json()
    assert body == {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "me", "permissions": []}]}
    for path in ("/props", "/v1/props", "/health", f"/v1/models/{MODEL}"):  # llama-server's and OpenAI's
        assert httpx.get(real_llama_server.url + path, timeout=30).status_code == 404, path


def test_an_unknown_model_name_is_answered_by_the_loaded_model(real_llama_server: LlamaServer) -> None:
    """No ``model_not_found``: only ``/v1/models`` can tell a missing model (the answer even echoes the name)."""
    out = client(real_llama_server).chat.completions.create(
        model="no-such-model:7b", messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
    assert out.model == "no-such-model:7b" and out.choices[0].finish_reason == "length"


# --- usage, windows -------------------------------------------------------------------------------


def test_usage_prompt_tokens_counts_the_templated_prompt(real_llama_server: LlamaServer) -> None:
    text = "Alice lives in Paris and works as a nurse at the city hospital."
    counted = httpx.post(real_llama_server.url + "/extras/tokenize/count", json={"input": text},
                         timeout=30).json()["count"]
    out = client(real_llama_server).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=1)
    assert out.usage is not None
    # the chat template's role markers (and a default system prompt) come on top of the text
    assert counted < out.usage.prompt_tokens <= counted + 40
    assert out.usage.completion_tokens == 1 and out.usage.total_tokens == out.usage.prompt_tokens + 1


def test_a_prompt_over_n_ctx_is_refused_with_openais_error(real_llama_server: LlamaServer) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client(real_llama_server).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "word " * 400}], max_tokens=5)
    assert err.value.status_code == 400 and err.value.code == "context_length_exceeded"
    body = err.value.body
    assert isinstance(body, dict) and body["param"] == "messages" and body["type"] == "invalid_request_error"
    assert body["message"].startswith(f"This model's maximum context length is {N_CTX} tokens. However, "
                                      "you requested ")
    assert "in the messages, 5 in the completion" in body["message"]


def test_prompt_plus_max_tokens_over_n_ctx_cuts_the_answer_silently(real_llama_server: LlamaServer) -> None:
    out = client(real_llama_server).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "word " * 220}], max_tokens=200)
    assert out.usage is not None and out.usage.prompt_tokens < N_CTX
    assert out.usage.prompt_tokens + out.usage.completion_tokens <= N_CTX  # cut to the window, no error
    assert out.usage.completion_tokens < 200


# --- structured output ------------------------------------------------------------------------------


def test_json_object_with_a_schema_is_obeyed(real_llama_server: LlamaServer) -> None:
    """llama-cpp-python's form: ``{"type": "json_object", "schema": ...}`` (a grammar built from the schema)."""
    resp = ask(real_llama_server, "Pick an animal.", max_tokens=24,
               response_format={"type": "json_object", "schema": ANSWER_SCHEMA})
    assert resp.status_code == 200, resp.text
    text = resp.json()["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(text), ANSWER_SCHEMA)


def test_openais_json_schema_form_is_a_500_not_a_400(real_llama_server: LlamaServer) -> None:
    """OpenAI's ``{"type": "json_schema", "json_schema": {...}}`` fails validation, reported as a 500."""
    resp = ask(real_llama_server, "Pick an animal.", max_tokens=4,
               response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": ANSWER_SCHEMA}})
    assert resp.status_code == 500
    error = resp.json()["error"]
    assert error["type"] == "internal_server_error" and error["code"] is None
    assert "Input should be 'text' or 'json_object'" in error["message"]


def test_vllms_guided_json_field_is_not_known() -> None:
    """``guided_json`` (vLLM) is dropped without an error: the request model has no such field."""
    from llama_cpp.server.types import CreateChatCompletionRequest

    fields = CreateChatCompletionRequest.model_fields
    assert "guided_json" not in fields and "response_format" in fields and "grammar" in fields


# --- embeddings and auth ----------------------------------------------------------------------------


def test_embeddings_of_smollm2_are_one_vector_per_token(real_llama_embedding_server: LlamaServer) -> None:
    """SmolLM2's GGUF has no pooling: each input gives a list of 576-d token vectors, not one vector;
    ``encoding_format`` is ignored (floats come back)."""
    resp = httpx.post(real_llama_embedding_server.base_url + "/embeddings",
                      json={"model": MODEL, "input": ["hello world", "a second text"], "encoding_format": "base64"},
                      timeout=280)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "list" and body["model"] == MODEL and len(body["data"]) == 2
    first = body["data"][0]
    assert first["object"] == "embedding" and first["index"] == 0
    vectors = first["embedding"]
    assert isinstance(vectors, list) and all(isinstance(v, list) and len(v) == 576 for v in vectors)
    assert body["usage"]["prompt_tokens"] == sum(len(d["embedding"]) for d in body["data"])


def test_embeddings_need_the_embedding_flag(real_llama_server: LlamaServer) -> None:
    resp = httpx.post(real_llama_server.base_url + "/embeddings", json={"model": MODEL, "input": "hi"}, timeout=60)
    assert resp.status_code == 500
    assert "embedding" in resp.json()["error"]["message"].lower()


def test_a_wrong_api_key_is_a_401_in_fastapis_shape_not_openais() -> None:
    with llama_server_or_skip(api_key="sk-local-0123456789") as server:
        for key in (None, "sk-wrong"):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            resp = httpx.get(server.base_url + "/models", headers=headers, timeout=30)
            assert resp.status_code == 401 and resp.json() == {"detail": "Invalid API key"}
        ok = httpx.get(server.base_url + "/models", headers={"Authorization": "Bearer sk-local-0123456789"},
                       timeout=30)
        assert ok.status_code == 200
