"""A hostile tester's breaks, each kept as a test: what was marked keep-local must never reach the
external endpoint, whichever field of the request carries it; the budget is a hard cap.

Every test drives the real router against the fake Ollama (failing, so the call would fall back
out) and the fake OpenAI over HTTP, and reads what the OpenAI server received.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import stamina
from conftest import make_router

from mem0_routed import Router, RouterConfig, RoutingError
from mem0_routed._ledger import MemoryLedger

SECRET = "hunter2XyZ"  # a password a careless user pastes
PW = f"password={SECRET}"
KEY = "sk-proj-" + "Ab3dEfGh1jKlMnOpQrStUvWx"  # built in two parts so no scanner flags this file


pytestmark = pytest.mark.usefixtures("fresh")


@pytest.fixture(autouse=True)
def _one_attempt() -> Iterator[None]:
    with stamina.set_testing(True, attempts=1):
        yield


def attack_router(ollama, openai, key, **cfg) -> Router:
    """Local and external, no retries: every request an attack causes is one the servers log."""
    return make_router(ollama, openai, key, **{"max_retries": 0, **cfg})


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
    "tool description": {"messages": [{"role": "user", "content": "call the tool"}], "tools": [_tool(f"use {PW}")]},
    "tool default": {"messages": [{"role": "user", "content": "call the tool"}], "tools": [_tool(default=KEY)]},
    "json schema": {"messages": [{"role": "user", "content": "answer in json"}], "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "description": PW}}}},
    # image parts were skipped whole: their URL (and any field beside it) went out unread
    "image url password": {"messages": [{"role": "user", "content": _image(f"https://bob:{SECRET}@img.example/a.png")}]},
    "image url api key": {"messages": [{"role": "user", "content": _image(f"https://img.example/a.png?api_key={SECRET}abc")}]},
    "image part field": {"messages": [{"role": "user", "content": _image("https://img.example/a.png", text=PW)}]},
    # deeper than 8 levels was not read at all
    "nested 10 deep": {"messages": [{"role": "user", "content": "hi", "metadata": [[[[[[[[[[PW]]]]]]]]]]}]},
    # the receiving model reads escapes decoded
    "percent-encoded": {"messages": [{"role": "user", "content": f"GET /login?password%3D{SECRET}"}]},
    "html entity": {"messages": [{"role": "user", "content": f"password&#61;{SECRET}"}]},
    "combining mark": {"messages": [{"role": "user", "content": f"pa\u0301ssword={SECRET}"}]},
}


@pytest.mark.parametrize("case", sorted(LEAKS))
def test_a_secret_anywhere_in_the_request_never_reaches_the_external_model(
    case, ollama_server, openai_server, openai_key
) -> None:
    kw = dict(LEAKS[case])
    messages = kw.pop("messages")
    ollama_server.set_fault("error500")  # the local model fails: the call would fall back out
    router = attack_router(ollama_server, openai_server, openai_key)
    with pytest.raises(RoutingError) as err:
        router.chat(messages, **kw)
    assert "keep-local rule" in str(err.value.blocked_by)
    out = sent_out(openai_server)
    assert SECRET not in out and KEY not in out and "4111111111111111" not in out


def test_harmless_tools_images_and_schemas_still_fall_back(ollama_server, openai_server, openai_key) -> None:
    """The wider scan must not keep ordinary calls local (a data: URL's bytes are not read)."""
    ollama_server.set_fault("error500")
    router = attack_router(ollama_server, openai_server, openai_key)
    pixel = "data:image/png;base64," + "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    for kw in ({"tools": [_tool()]}, {"response_format": {"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "object", "properties": {"n": {"type": "integer", "maximum": 2147483647}}}}}}):
        assert router.chat([{"role": "user", "content": "call the tool, answer in json"}], **kw).backend == "openai"
    assert router.chat([{"role": "user", "content": _image(pixel)}]).backend == "openai"
    assert router.chat([{"role": "user", "content": _image("https://img.example/cat.png?size=200")}]).backend == "openai"


def test_nested_escapes_are_decoded_a_fixed_number_of_times() -> None:
    """"%25" repeated decodes one layer per pass: the scan must stay two passes, never recurse."""
    from mem0_routed._privacy import KeepLocalRules

    rules = KeepLocalRules()
    assert rules.check(f"login?password%253D{SECRET}").rule == "secret:password"
    assert not rules.check("%25" * 100_000 + "3D").keep_local


# --- the budget is a hard cap ------------------------------------------------------------------------


class LongWindedServer:
    """An OpenAI-compatible endpoint whose every answer runs to ``max_completion_tokens`` (with honest
    usage), optionally naming another model than the one asked for, as proxies and liars do."""

    def __init__(self, reply_model: str | None = None, delay_s: float = 0.05) -> None:
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.calls = 0
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    owner.calls += 1
                time.sleep(delay_s)  # calls overlap, as they do against a real model
                n = body.get("max_completion_tokens") or 1000
                prompt = len(json.dumps(body["messages"])) // 4
                data = json.dumps({
                    "id": "x", "object": "chat.completion", "created": 1, "model": reply_model or body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": " word" * n},
                                 "finish_reason": "length"}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _spend(ollama, budget: float, *, threads: int, calls: int, reply_model: str | None = None,
           max_tokens: int | None = None) -> tuple[float, int]:
    """Run ``threads`` x ``calls`` chats that all fall back out; (spent this month, calls sent)."""
    from concurrent.futures import ThreadPoolExecutor

    from mem0_routed._records import utc_month_start

    server = LongWindedServer(reply_model)
    try:
        ollama.set_fault("error500")
        router = Router(RouterConfig.from_mapping({
            "ollama_base_url": ollama.url, "ledger": "memory", "local_backend": "ollama", "max_retries": 0,
            "breaker_failures": 10**6, "openai_base_url": server.base_url, "openai_api_key": "sk-test-" + "0" * 20,
            "monthly_budget_usd": budget}), ledger=MemoryLedger())

        def worker(_: int) -> None:
            for _ in range(calls):
                try:
                    router.chat([{"role": "user", "content": "tell me a story about a cat"}], max_tokens=max_tokens)
                except RoutingError:
                    pass

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(worker, range(threads)))
        return router.ledger.spent_usd(since=utc_month_start()), server.calls
    finally:
        server.close()


@pytest.mark.parametrize("max_tokens", [None, 2000])
def test_concurrent_calls_with_answers_at_max_tokens_never_overspend(ollama_server, max_tokens) -> None:
    """Reservations claimed a typical answer (300 tokens): 16 threads whose answers ran to
    ``max_tokens`` spent 3.4x (13x with max_tokens=4000) a $0.002 budget."""
    spent, sent = _spend(ollama_server, 0.002, threads=16, calls=4, max_tokens=max_tokens)
    assert spent <= 0.002
    assert sent >= 1  # the cap is met by calls, not by refusing everything


def test_a_server_naming_a_cheaper_model_is_billed_at_the_model_asked_for(ollama_server) -> None:
    """A proxy answering "babbage-002" for gpt-4o-mini got 16+ calls through a budget meant for ~12."""
    honest, sent_honest = _spend(ollama_server, 0.01, threads=1, calls=30)
    cheap, sent_cheap = _spend(ollama_server, 0.01, threads=1, calls=30, reply_model="babbage-002")
    assert sent_cheap == sent_honest and cheap >= honest


# --- careless config ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["local_threshold", "monthly_budget_usd", "max_retries", "default_max_tokens"])
def test_a_yes_no_value_for_a_number_is_refused(key) -> None:
    """``local_threshold: true`` was read as 1 %: 99 % of complex calls allowed out."""
    from mem0_routed import ConfigError

    with pytest.raises(ConfigError, match=key):
        RouterConfig.from_mapping({key: True, "ledger": "memory"})


# --- log_prompts never stores what must stay local ---------------------------------------------------


def test_log_prompts_withholds_a_prompt_a_keep_local_rule_matches(ollama_server, openai_server, openai_key) -> None:
    """With ``log_prompts`` the user's ``password=...`` went into the ledger in clear, and a Redis
    ledger may live on another host: the secret left the machine that way instead."""
    router = attack_router(ollama_server, openai_server, openai_key, log_prompts=True)
    router.chat([{"role": "user", "content": f"remember my {PW} for the VPN"}])
    router.chat([{"role": "user", "content": "hello there"}])
    secret, plain = router.ledger.records()
    assert SECRET not in json.dumps(secret.to_dict())
    assert secret.prompt == secret.response == "[withheld: keep-local rule secret:password]"
    assert plain.prompt == "hello there" and plain.response  # ordinary prompts are still logged


def test_log_prompts_withholds_a_keep_local_call_kind(ollama_server, openai_server, openai_key) -> None:
    router = attack_router(ollama_server, openai_server, openai_key, log_prompts=True,
                         keep_local_call_kinds=["mem0_procedural"])
    from mem0.configs.prompts import PROCEDURAL_MEMORY_SYSTEM_PROMPT

    router.chat([{"role": "system", "content": PROCEDURAL_MEMORY_SYSTEM_PROMPT},
                 {"role": "user", "content": "I opened the staging console"}])
    (rec,) = router.ledger.records()
    assert rec.call_kind == "mem0_procedural" and "staging" not in (rec.prompt or "")


def test_report_on_an_unreachable_redis_is_one_line_without_the_password() -> None:
    """``stats`` and ``project`` had been fixed; ``report`` still printed a raw traceback."""
    import socket

    from click.testing import CliRunner

    from mem0_routed._cli import main

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(main, ["--ledger", f"redis://:s3cr3tpw@127.0.0.1:{port}/0", "report", "--html",
                                       "/dev/null"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "s3cr3tpw" not in result.output
    assert "cannot read the usage ledger" in result.output and "start Redis" in result.output


@pytest.mark.parametrize("text", ["Herr Müller", "Herr Mu\u0308ller", "HERR MÜLLER"])
def test_a_users_pattern_with_accents_still_matches_after_normalising(text) -> None:
    """Reading ``pa\u0301ssword`` as ``password`` must not make ``(?i)Müller`` miss."""
    from mem0_routed._privacy import KeepLocalRules

    assert KeepLocalRules(patterns=["(?i)Müller"]).check(text).rule == "pattern:0"


# --- the API key never shows ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["sk-Zqxjwk\nVyplMnb0", "sk-Zqxjwk Vyplmnb0", "sk-ZqxjwkVyplmnb0\u201d", "sk-Zq\x00xjwkVyplmnb0"])
def test_a_key_with_a_line_break_or_odd_character_is_refused_without_echoing_it(key) -> None:
    """Accepted before: httpcore then logged "Illegal header value b'Bearer sk-...'" at DEBUG, the
    whole key in it."""
    from mem0_routed import ConfigError

    with pytest.raises(ConfigError, match="openai_api_key") as err:
        RouterConfig.from_mapping({"openai_api_key": key, "ledger": "memory"})
    assert "Zqxjwk" not in str(err.value) and "Vypl" not in str(err.value)


def test_a_blank_key_is_no_key() -> None:
    assert RouterConfig.from_mapping({"openai_api_key": "   ", "ledger": "memory"}).openai_api_key is None


def test_a_half_masked_echo_of_a_key_of_any_shape_is_scrubbed(ollama_server, openai_server) -> None:
    """OpenAI-compatible servers echo a wrong key half-masked ("ZQXJWK**********4821"); only
    sk-/rk-/pk- keys were scrubbed, so a proxy's key showed its first 6 and last 4 characters in
    the error, the ledger and the health output."""
    key = "ZQXJWKVYPL" + "MNBH4821"  # not the server's key: it answers 401 echoing this one
    ollama_server.set_fault("error500")
    router = attack_router(ollama_server, openai_server, key)
    with pytest.raises(RoutingError) as err:
        router.chat([{"role": "user", "content": "hi"}])
    shown = str(err.value) + json.dumps([r.to_dict() for r in router.ledger.records()])
    shown += json.dumps(router.health(), default=str)
    assert "401" in shown
    assert "ZQXJ" not in shown and "4821" not in shown


# --- the caller's bad input is the caller's error --------------------------------------------------


@pytest.mark.parametrize("where", ["tool", "schema", "image url", "name"])
def test_a_lone_surrogate_outside_the_content_is_the_callers_error(where, ollama_server, openai_server,
                                                                     openai_key) -> None:
    """Only message content was checked: a surrogate in a tool, the schema or an image URL came back
    as a RoutingError listing every backend as failed ("the request has text UTF-8 cannot encode")."""
    from mem0_routed import InvalidInput

    bad = "x\ud800"
    messages: list[dict] = [{"role": "user", "content": "hi, answer in json"}]
    kw: dict = {}
    if where == "tool":
        kw["tools"] = [_tool(description=bad)]
    elif where == "schema":
        kw["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"description": bad}}}
    elif where == "image url":
        messages = [{"role": "user", "content": _image(f"https://img.example/{bad}.png")}]
    else:
        messages[0]["name"] = bad
    router = attack_router(ollama_server, openai_server, openai_key)
    with pytest.raises(InvalidInput, match="surrogate"):
        router.chat(messages, **kw)
    assert not ollama_server.requests_to("/api/chat") and not openai_server.requests_to("/v1/chat/completions")


def test_a_reservation_outlives_the_longest_external_call(ollama_server, openai_server, openai_key,
                                                          monkeypatch) -> None:
    """Claims expired after 15 minutes whatever ``external_timeout_s`` allowed: with a 20-minute
    timeout, a second call could take the money a slow first call still held."""
    import mem0_routed._ledger._memory as ledger_module

    router = attack_router(ollama_server, openai_server, openai_key, external_timeout_s=1200, deadline_s=1500,
                         monthly_budget_usd=0.004)
    router.close()  # the router opens its own ledger from the config, as it does for users
    job = router.runtime.prepare([{"role": "user", "content": "hi"}], max_tokens=4000)
    assert router.runtime.worst_cost(job) < 0.004 < 2 * router.runtime.worst_cost(job)  # the budget holds one such call
    first = router.runtime.reserve_external(job, primary=False)
    assert first is not None and not hasattr(first, "reason")

    class Clock:  # 16 minutes later, the first call still running (its timeout is 20)
        @staticmethod
        def time() -> float:
            import time

            return time.time() + 16 * 60

    monkeypatch.setattr(ledger_module, "time", Clock)
    second = router.runtime.reserve_external(job, primary=False)
    assert getattr(second, "reason", None) == "budget"


# --- the real mem0 Memory: a careless user's sentence ------------------------------------------------


def test_mem0_add_of_my_password_is_never_sent_out(ollama_server, openai_server, openai_key, tmp_path,
                                                   monkeypatch) -> None:
    """"My wifi password is hunter2XyZ" in prose matched no rule (only ``password=``/``password:``):
    with the local model down, the real mem0 ``add`` sent it to OpenAI. A local model also writes
    such facts back as prose ("User's wifi password is ..."), which later calls send as memories."""
    monkeypatch.setenv("MEM0_DIR", str(tmp_path / "mem0"))
    from mem0 import Memory

    import mem0_routed  # noqa: F401 - registers "routed"

    router = {"ollama_base_url": ollama_server.url, "ledger": "memory", "local_backend": "ollama"}
    memory = Memory.from_config({
        "llm": {"provider": "routed", "config": {**router, "openai_base_url": openai_server.base_url,
                                                  "openai_api_key": openai_key, "max_retries": 0}},
        "embedder": {"provider": "routed", "config": {**router, "model": "nomic-embed-text:latest",
                                                       "embedding_dims": 768}},
        "vector_store": {"provider": "qdrant", "config": {"path": str(tmp_path / "q"), "embedding_model_dims": 768}},
    })
    try:
        ollama_server.set_fault("error500", paths=["/api/chat"])
        with pytest.raises(Exception):  # noqa: B017 - mem0 wraps the RoutingError in its LLMError
            memory.add([{"role": "user", "content": f"Remember: my wifi password is {SECRET}"}], user_id="u")
        assert SECRET not in sent_out(openai_server)
        assert not openai_server.requests_to("/v1/chat/completions")
    finally:
        memory.vector_store.client.close()


# --- no usage record is lost silently ----------------------------------------------------------------

_EXIT_CHILD = """
import sqlite3, sys
import stamina
stamina.set_testing(True, attempts=1)
from mem0_routed import Router, RouterConfig
from mem0_routed._ledger import SQLiteLedger
from mem0_routed.testing import FakeOllamaServer
path, release = sys.argv[1], sys.argv[2] == "release"
with FakeOllamaServer() as ollama:
    router = Router(RouterConfig.from_mapping({"ollama_base_url": ollama.url, "local_backend": "ollama"}),
                    ledger=SQLiteLedger(path, busy_timeout_s=0.2))
    router.chat([{"role": "user", "content": "hi"}])
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another process holds the file: the next write fails
    router.chat([{"role": "user", "content": "hi again"}])
    if release:
        lock.execute("COMMIT")
"""


@pytest.mark.parametrize("release", [True, False])
def test_a_record_held_after_a_failed_write_is_written_or_reported_at_exit(tmp_path, release) -> None:
    """The failed write said "held in memory and retried on the next write"; when no call came
    after it, the process exited and the record was gone without another word."""
    import os
    import subprocess
    import sys

    from mem0_routed._ledger import SQLiteLedger

    path = tmp_path / "ledger.db"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    child = subprocess.run([sys.executable, "-c", _EXIT_CHILD, str(path), "release" if release else "hold"],
                           capture_output=True, text=True, timeout=120, env=env, check=False)
    assert child.returncode == 0, child.stderr
    assert "held in memory" in child.stderr
    written = SQLiteLedger(path).records()
    if release:
        assert len(written) == 2
    else:
        assert len(written) == 1 and "exits with 1 usage record(s) never written" in child.stderr


def test_an_image_that_is_not_base64_never_opens_the_breaker(ollama_server, openai_server, openai_key) -> None:
    """Against a real Ollama (SmolLM2) two calls with ``data:image/png;base64,!!!`` failed inside the
    ollama client ("sent an unreadable answer"), opened the breaker and sent every later call,
    however ordinary, to OpenAI. The fake Ollama shows the same through the same client."""
    from mem0_routed import InvalidInput

    router = attack_router(ollama_server, openai_server, openai_key, breaker_failures=2)
    for _ in range(3):
        with pytest.raises(InvalidInput, match=r"messages\[0\]\['content'\]\[1\].*base64"):
            router.chat([{"role": "user", "content": _image("data:image/png;base64,!!!notbase64")}])
    assert router.chat([{"role": "user", "content": "say hi"}]).backend == "ollama"
    assert not openai_server.requests_to("/v1/chat/completions")
    pixel = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    assert router.chat([{"role": "user", "content": _image(pixel)}]).backend == "ollama"


@pytest.mark.realollama
def test_a_bad_image_against_a_real_ollama_is_the_callers_error(real_ollama_url) -> None:
    from mem0_routed import InvalidInput
    from mem0_routed._process import BREAKERS

    model = "smollm2:135m"
    router = Router(RouterConfig.from_mapping({
        "ollama_base_url": real_ollama_url, "ledger": "memory", "local_backend": "ollama", "llm_model": model,
        "models": {k: model for k in ("code", "medium", "complex")}, "breaker_failures": 1,
        "default_max_tokens": 8}), ledger=MemoryLedger())
    for _ in range(2):
        with pytest.raises(InvalidInput):
            router.chat([{"role": "user", "content": _image("data:image/png;base64,!!!")}])
    assert all(state == "closed" for state in BREAKERS.snapshot().values())
    assert router.chat([{"role": "user", "content": "say hi"}]).backend == "ollama"


@pytest.mark.parametrize("message", [
    {"role": "assistant", "content": "", "tool_calls": "oops"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "1", "type": "function"}]},
    {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {}}]},
    {"role": "user", "content": "hi", "images": [5]},
], ids=["tool_calls str", "tool call without function", "image without url", "images not str"])
def test_a_message_of_the_wrong_shape_is_the_callers_error(message, ollama_server, openai_server, openai_key) -> None:
    """``tool_calls="oops"`` broke the ollama client: two calls opened the breaker for everyone.
    Images without a URL went past Ollama's refusal to OpenAI."""
    from mem0_routed import InvalidInput
    from mem0_routed._process import BREAKERS

    router = attack_router(ollama_server, openai_server, openai_key, breaker_failures=2)
    for _ in range(2):
        with pytest.raises(InvalidInput):
            router.chat([{"role": "user", "content": "hi"}, message])
    assert all(state == "closed" for state in BREAKERS.snapshot().values())
    assert not openai_server.requests_to("/v1/chat/completions")


def test_external_answers_that_are_rejected_are_still_charged(ollama_server) -> None:
    """An external answer that failed the contract check (invalid JSON here) was billed by the
    provider but recorded at $0 and its reservation released: 30 calls went out, ~$0.009 of
    output, against a $0.003 budget, and the ledger said $0 spent."""
    from mem0_routed._prices import external_cost
    from mem0_routed._records import utc_month_start

    server = LongWindedServer()  # " word word ...": never valid JSON
    try:
        ollama_server.set_fault("error500")
        router = Router(RouterConfig.from_mapping({
            "ollama_base_url": ollama_server.url, "ledger": "memory", "local_backend": "ollama", "max_retries": 0,
            "breaker_failures": 10**6, "openai_base_url": server.base_url, "openai_api_key": "sk-test-" + "0" * 20,
            "monthly_budget_usd": 0.003}), ledger=MemoryLedger())
        for _ in range(30):
            with pytest.raises(RoutingError):
                router.chat([{"role": "user", "content": "list my facts as json"}],
                            response_format={"type": "json_object"}, max_tokens=500)
        spent = router.ledger.spent_usd(since=utc_month_start())
        billed = server.calls * external_cost("gpt-4o-mini", 0, 500)  # the answers alone
        assert server.calls >= 1 and billed <= 0.003 and billed <= spent <= 0.003
    finally:
        server.close()


def test_a_rejected_external_answer_keeps_its_claim_until_the_record_is_written(ollama_server) -> None:
    """The claim of an external answer that came back and was rejected was released before the call's
    record charged it: in between, other threads saw that money as free. Held until the record now."""
    events: list[str] = []

    class Spy(MemoryLedger):
        def record(self, rec, reservation=None):  # type: ignore[no-untyped-def]
            events.append(f"record ${rec.cost_usd:.6f}")
            super().record(rec, reservation=reservation)

        def release(self, reservation):  # type: ignore[no-untyped-def]
            events.append("release")
            super().release(reservation)

    server = LongWindedServer()  # never valid JSON
    try:
        ollama_server.set_fault("error500")
        router = Router(RouterConfig.from_mapping({
            "ollama_base_url": ollama_server.url, "ledger": "memory", "local_backend": "ollama", "max_retries": 0,
            "openai_base_url": server.base_url, "openai_api_key": "sk-test-" + "0" * 20,
            "monthly_budget_usd": 1.0}), ledger=Spy())
        with pytest.raises(RoutingError):
            router.chat([{"role": "user", "content": "list my facts as json"}],
                        response_format={"type": "json_object"}, max_tokens=500)
        assert server.calls >= 1
        assert "release" in events and events[0].startswith("record ") and events[0] != "record $0.000000", events
    finally:
        server.close()


@pytest.mark.parametrize("content", [
    "data: notes, my password is hunter22XyZ and nothing else",
    "data:text/plain,password=hunter22XyZ",
    [{"type": "image_url", "image_url": {"url": "data:text/plain,password=hunter22XyZ"}}],
])
def test_a_data_prefix_does_not_hide_a_secret(ollama_server, openai_server, openai_key, content) -> None:
    """Every string starting with ``data:`` was cut at its first comma before the scan (meant for an
    image's base64 bytes): the secret after the comma went to OpenAI once the local model failed."""
    ollama_server.set_fault("error500")
    router = attack_router(ollama_server, openai_server, openai_key)
    with pytest.raises(RoutingError):
        router.chat([{"role": "user", "content": content}])
    assert "hunter22XyZ" not in sent_out(openai_server)


def test_an_image_s_base64_bytes_are_not_scanned_but_its_header_is() -> None:
    from mem0_routed._privacy import scan_text

    text = scan_text([{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png;base64,aGVsbG8gd29ybGQ="}}]}])
    assert "data:image/png;base64," in text and "aGVsbG8" not in text


@pytest.mark.parametrize("kwargs", [
    {"response_format": "json_object"},
    {"response_format": {"type": "json_schema", "json_schema": "x"}},
    {"response_format": {"type": "json_schema", "json_schema": {"schema": "not a schema"}}},
    {"tools": "login"},
    {"tools": ["login"]},
])
def test_a_malformed_request_shape_is_invalid_input_before_any_backend(ollama_server, kwargs) -> None:
    """A string response_format or json_schema escaped as a bare ValueError/AttributeError."""
    from mem0_routed import InvalidInput

    router = Router(RouterConfig.from_mapping({"ollama_base_url": ollama_server.url, "ledger": "memory",
                                               "local_backend": "ollama"}), ledger=MemoryLedger())
    with pytest.raises(InvalidInput):
        router.chat([{"role": "user", "content": "hello"}], **kwargs)
    assert ollama_server.requests_to("/api/chat") == []


# --- what an external call costs is what the provider bills ------------------------------------------


def _reports_more_prompt(monkeypatch, openai, extra) -> None:
    """The fake OpenAI counts message text only; a real one also bills tools, the schema and images:
    ``extra(body)`` prompt tokens are added to the ``usage`` it reports."""
    original = openai._chat

    def chat(model, body, fault):
        reply = original(model, body, fault)
        usage = reply.payload.get("usage") if reply.status == 200 else None
        if usage:
            usage["prompt_tokens"] += extra(body)
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return reply

    monkeypatch.setattr(openai, "_chat", chat)


def _tools(n: int) -> list[dict]:
    props = {f"field_{j}": {"type": "string", "description": f"the {j}th field of the record, " * 6}
             for j in range(12)}
    return [{"type": "function", "function": {"name": f"tool_{i}", "description": "does one thing " * 20,
                                              "parameters": {"type": "object", "properties": props}}}
            for i in range(n)]


def _external_record(router):
    return next(r for r in router.ledger.records() if not r.is_local)


def test_a_prompt_with_60_tools_is_billed_at_what_the_provider_reports(ollama_server, openai_server, openai_key,
                                                                       monkeypatch) -> None:
    """Only message text was counted: a real ~26,000-token prompt with 60 tool definitions looked
    "implausible" next to that count and was billed as 7 tokens, so the budget could be overrun."""
    from mem0_routed._prices import call_cost

    tools = _tools(60)
    _reports_more_prompt(monkeypatch, openai_server, lambda body: len(json.dumps(body.get("tools") or [])) // 4)
    ollama_server.set_fault("error500")
    router = attack_router(ollama_server, openai_server, openai_key)
    out = router.chat([{"role": "user", "content": "which tool fits?"}], tools=tools)
    assert not out.is_local
    reported = json.loads(json.dumps(openai_server.requests_to("/v1/chat/completions")[-1]))
    assert len(json.dumps(reported["tools"])) // 4 > 20_000  # the tools really are ~26k tokens
    rec = _external_record(router)
    assert rec.tokens_in > 20_000
    assert rec.cost_usd >= call_cost("openai", router.config.fallback_model, rec.tokens_in, rec.tokens_out)


def test_an_image_is_billed_at_what_the_provider_reports(ollama_server, openai_server, openai_key,
                                                         monkeypatch) -> None:
    """Images were not in our count: a picture billed at ~25,000 tokens (gpt-4o-mini, detail high)
    was far above four times the text and replaced by the text's dozen tokens."""
    _reports_more_prompt(monkeypatch, openai_server, lambda body: 25_000)
    ollama_server.set_fault("error500")
    router = attack_router(ollama_server, openai_server, openai_key)
    router.chat([{"role": "user", "content": _image("https://img.example/a.png")}])
    assert _external_record(router).tokens_in > 25_000


def test_a_reply_without_usage_bills_an_image_at_its_maximum(ollama_server, openai_server, openai_key) -> None:
    from mem0_routed.backends._billing import IMAGE_TOKENS_MAX

    openai_server.set_fault("omit_usage")
    ollama_server.set_fault("error500")
    router = attack_router(ollama_server, openai_server, openai_key)
    router.chat([{"role": "user", "content": _image("https://img.example/a.png")}])
    assert _external_record(router).tokens_in >= IMAGE_TOKENS_MAX


@pytest.mark.parametrize("extra", ["tools", "schema"])
def test_the_reservation_counts_tools_and_schema(extra, ollama_server, openai_server, openai_key) -> None:
    """The claim was sized from the messages alone: a budget too small for the tool definitions or
    the schema let the call out. Now the claim does not fit and nothing is sent."""
    from mem0_routed import BudgetExceeded

    big = _tools(60)
    kw: dict = {"tools": big} if extra == "tools" else {"response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": big[0]["function"]["parameters"] | {
            "description": json.dumps(big)}}}}
    messages = [{"role": "user", "content": "which tool fits? answer in json"}]
    probe = attack_router(ollama_server, openai_server, openai_key)
    bare = probe.runtime.worst_cost(probe.runtime.prepare(messages))
    ollama_server.set_fault("error500")
    router = attack_router(ollama_server, openai_server, openai_key, monthly_budget_usd=bare * 1.5)
    with pytest.raises(BudgetExceeded):
        router.chat(messages, **kw)
    assert not openai_server.requests_to("/v1/chat/completions")


# --- a cancelled or timed-out external call is still paid for ---------------------------------------


async def test_a_call_cancelled_in_flight_is_recorded_at_its_worst_case(ollama_server, openai_server,
                                                                        openai_key) -> None:
    """The caller's cancel closed the chain at its ``yield``: the claim was given back and nothing
    was recorded, though the provider finishes and bills the request."""
    import asyncio

    ollama_server.set_fault("error500")
    openai_server.set_fault("hang")
    router = attack_router(ollama_server, openai_server, openai_key, monthly_budget_usd=5.0)
    messages = [{"role": "user", "content": "hi"}]
    try:
        task = asyncio.create_task(router.achat(messages))
        for _ in range(2000):
            if openai_server.requests_to("/v1/chat/completions"):
                break
            await asyncio.sleep(0.01)
        assert openai_server.requests_to("/v1/chat/completions")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        openai_server.release()
    job = router.runtime.prepare(messages)
    records = router.ledger.records()
    assert [r.outcome for r in records] == ["error"]
    assert "cancelled" in (records[0].error or "")
    assert records[0].cost_usd == pytest.approx(router.runtime.worst_cost(job)) and records[0].cost_usd > 0
    assert router.ledger.counts().external == 0  # no claim left open: the record charged it


def test_a_timed_out_external_call_is_recorded_at_its_worst_case(ollama_server, openai_server,
                                                                 openai_key) -> None:
    """A timeout after the request was sent was recorded at $0 and its claim given back."""
    ollama_server.set_fault("error500")
    openai_server.set_fault("hang")
    router = attack_router(ollama_server, openai_server, openai_key, monthly_budget_usd=5.0, external_timeout_s=0.3)
    messages = [{"role": "user", "content": "hi"}]
    try:
        with pytest.raises(RoutingError) as err:
            router.chat(messages)
    finally:
        openai_server.release()
    assert any(a.kind == "timeout" and a.backend.startswith("openai") for a in err.value.attempts)
    job = router.runtime.prepare(messages)
    [rec] = router.ledger.records()
    assert rec.cost_usd == pytest.approx(router.runtime.worst_cost(job)) and rec.cost_usd > 0
