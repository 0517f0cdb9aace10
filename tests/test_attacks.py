"""A hostile tester's breaks, each kept as a test: what was marked keep-local must never reach the
external endpoint, whichever field of the request carries it; the budget is a hard cap.

Every test drives the real router against the fake Ollama (failing, so the call would fall back
out) and the fake OpenAI over HTTP, and reads what the OpenAI server received.
"""

from __future__ import annotations

import json

import pytest
import stamina

from mem0_routed import Router, RouterConfig, RoutingError
from mem0_routed._ledger import MemoryLedger
from mem0_routed._router import reset_routers

SECRET = "hunter2XyZ"  # a password a careless user pastes
PW = f"password={SECRET}"
KEY = "sk-proj-" + "Ab3dEfGh1jKlMnOpQrStUvWx"  # built in two parts so no scanner flags this file


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch):
    for name in ("OLLAMA_URL", "OPENAI_API_KEY", "LLM_LOCAL_THRESHOLD", "MEM0_ROUTED_MONTHLY_BUDGET_USD"):
        monkeypatch.delenv(name, raising=False)
    reset_routers()
    with stamina.set_testing(True, attempts=1):
        yield
    reset_routers()


def make_router(ollama, openai, key, **cfg) -> Router:
    values = {"ollama_base_url": ollama.url, "ledger": "memory", "local_backend": "ollama", "max_retries": 0,
              "openai_base_url": openai.base_url, "openai_api_key": key, **cfg}
    return Router(RouterConfig.from_mapping(values), ledger=MemoryLedger())


def sent_out(openai) -> str:
    return json.dumps(openai.requests_to("/v1/chat/completions"))


def _tool(description: str = "log in", default: str | None = None) -> dict:
    props = {"user": {"type": "string", **({"default": default} if default else {})}}
    return {"type": "function", "function": {"name": "login", "description": description,
                                             "parameters": {"type": "object", "properties": props}}}


def _image(url: str, **extra: str) -> list[dict]:
    return [{"type": "text", "text": "what is in the picture?"},
            {"type": "image_url", "image_url": {"url": url}, **extra}]


LEAKS = {
    # tool definitions and the JSON schema go out with the messages, and were never scanned
    "tool description": dict(messages=[{"role": "user", "content": "call the tool"}], tools=[_tool(f"use {PW}")]),
    "tool default": dict(messages=[{"role": "user", "content": "call the tool"}], tools=[_tool(default=KEY)]),
    "json schema": dict(messages=[{"role": "user", "content": "answer in json"}], response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "description": PW}}}),
    # image parts were skipped whole: their URL (and any field beside it) went out unread
    "image url password": dict(messages=[{"role": "user", "content": _image(f"https://bob:{SECRET}@img.example/a.png")}]),
    "image url api key": dict(messages=[{"role": "user", "content": _image(f"https://img.example/a.png?api_key={SECRET}abc")}]),
    "image part field": dict(messages=[{"role": "user", "content": _image("https://img.example/a.png", text=PW)}]),
    # deeper than 8 levels was not read at all
    "nested 10 deep": dict(messages=[{"role": "user", "content": "hi", "metadata": [[[[[[[[[[PW]]]]]]]]]]}]),
    # the receiving model reads escapes decoded
    "percent-encoded": dict(messages=[{"role": "user", "content": f"GET /login?password%3D{SECRET}"}]),
    "html entity": dict(messages=[{"role": "user", "content": f"password&#61;{SECRET}"}]),
    "combining mark": dict(messages=[{"role": "user", "content": f"pa\u0301ssword={SECRET}"}]),
}


@pytest.mark.parametrize("case", sorted(LEAKS))
def test_a_secret_anywhere_in_the_request_never_reaches_the_external_model(
    case, ollama_server, openai_server, openai_key
) -> None:
    kw = dict(LEAKS[case])
    messages = kw.pop("messages")
    ollama_server.set_fault("error500")  # the local model fails: the call would fall back out
    router = make_router(ollama_server, openai_server, openai_key)
    with pytest.raises(RoutingError) as err:
        router.chat(messages, **kw)
    assert "keep-local rule" in str(err.value.blocked_by)
    out = sent_out(openai_server)
    assert SECRET not in out and KEY not in out and "4111111111111111" not in out


def test_harmless_tools_images_and_schemas_still_fall_back(ollama_server, openai_server, openai_key) -> None:
    """The wider scan must not keep ordinary calls local (a data: URL's bytes are not read)."""
    ollama_server.set_fault("error500")
    router = make_router(ollama_server, openai_server, openai_key)
    pixel = "data:image/png;base64," + "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    for kw in (dict(tools=[_tool()]), dict(response_format={"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "object", "properties": {"n": {"type": "integer", "maximum": 2147483647}}}}})):
        assert router.chat([{"role": "user", "content": "call the tool, answer in json"}], **kw).backend == "openai"
    assert router.chat([{"role": "user", "content": _image(pixel)}]).backend == "openai"
    assert router.chat([{"role": "user", "content": _image("https://img.example/cat.png?size=200")}]).backend == "openai"


def test_nested_escapes_are_decoded_a_fixed_number_of_times() -> None:
    """"%25" repeated decodes one layer per pass: the scan must stay two passes, never recurse."""
    from mem0_routed._privacy import KeepLocalRules

    rules = KeepLocalRules()
    assert rules.check(f"login?password%253D{SECRET}").rule == "secret:password"
    assert not rules.check("%25" * 100_000 + "3D").keep_local
