"""Deadlines: one per call across retries and fallbacks (``deadline_s``), one per local try from the
measured speed, and servers that trickle bytes cannot keep a call alive past them."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
import stamina
from conftest import make_router, run_bounded

from mem0_routed import ConfigError, Router, RouterConfig, RoutingError
from mem0_routed._ledger import MemoryLedger
from mem0_routed._speed import SPEEDS, Speed
from mem0_routed._types import Candidate

pytestmark = pytest.mark.usefixtures("fresh", "no_backoff")


def test_a_server_trickling_bytes_cannot_outlive_the_call_deadline(ollama_server) -> None:
    # 1 byte every 0.2 s: every read is quick, the whole answer would take minutes
    ollama_server.set_fault("trickle", delay_s=0.2, paths=["/api/chat"])
    router = make_router(ollama_server, deadline_s=1.5, read_timeout_s=3)
    err = run_bounded(lambda: router.chat([{"role": "user", "content": "hello"}], max_tokens=50))
    assert isinstance(err, RoutingError)
    timeouts = [a for a in err.attempts if a.kind == "timeout"]
    assert timeouts and "deadline" in timeouts[0].error
    assert "warmup" in (timeouts[0].fix or "")


async def test_the_async_path_holds_the_deadline_against_a_trickle(ollama_server) -> None:
    ollama_server.set_fault("trickle", delay_s=0.2, paths=["/api/chat"])
    router = make_router(ollama_server, deadline_s=1.5, read_timeout_s=3)
    with pytest.raises(RoutingError) as err:
        await router.achat([{"role": "user", "content": "hello"}], max_tokens=50)
    assert any(a.kind == "timeout" for a in err.value.attempts)


def test_one_deadline_spans_the_fallbacks(ollama_server, openai_server, openai_key) -> None:
    ollama_server.set_fault("hang", paths=["/api/chat"])
    router = make_router(ollama_server, openai_server, openai_key, deadline_s=1.0)
    err = run_bounded(lambda: router.chat([{"role": "user", "content": "hello"}], max_tokens=50))
    assert isinstance(err, RoutingError)
    assert openai_server.requests_to("/v1/chat/completions") == []  # no time was left for it
    assert any("not tried: the call's deadline_s (1s) had passed" in a.error for a in err.attempts)


def test_a_local_try_gets_a_deadline_from_the_measured_speed(ollama_server) -> None:
    url = f"ollama@{ollama_server.url}"
    for model in ("mistral:7b", "codellama:13b"):
        SPEEDS.set(url, model, Speed(prefill_tps=2000.0, gen_tps=200.0))
    ollama_server.set_fault("slow", delay_s=3.0, paths=["/api/chat"])
    router = make_router(ollama_server, call_deadline_floor_s=0.3, call_deadline_margin=2.0)
    err = run_bounded(lambda: router.chat([{"role": "user", "content": "hello there"}], max_tokens=20))
    assert isinstance(err, RoutingError)
    first = err.attempts[0]
    assert first.kind == "timeout"
    # how long, for how much work, at what speed
    assert "within its 0.3s deadline" in first.error
    assert "-token prompt and up to 20 answer tokens" in first.error
    assert "~2000 tokens/s reading, ~200 tokens/s writing" in first.error


def test_a_busy_host_gets_time_for_the_calls_queued_before_this_one(ollama_server) -> None:
    """Ollama answers its queue in turn: a try behind nine calls is slow, not broken. Its deadline
    grows with the calls in flight, so the host's breaker stays closed and nothing escalates."""
    from mem0_routed._spread import LOADS

    url = f"ollama@{ollama_server.url}"
    SPEEDS.set(url, "mistral:7b", Speed(prefill_tps=2000.0, gen_tps=200.0))  # ~0.1 s for 20 tokens
    ollama_server.set_fault("slow", delay_s=0.8, paths=["/api/chat"])
    router = make_router(ollama_server, call_deadline_floor_s=0.2, call_deadline_margin=2.0, breaker_failures=1)
    queued = [LOADS.begin(url, "mistral:7b") for _ in range(9)]
    try:
        out = router.chat([{"role": "user", "content": "hello there"}], max_tokens=20)
    finally:
        for ticket in queued:
            LOADS.end(ticket)
    assert out.is_local and out.model == "mistral:7b" and not out.escalations
    assert router.get_metrics()["breakers"].get(url, "closed") == "closed"


def test_without_a_measurement_a_local_try_may_take_the_ceiling(ollama_server) -> None:
    ollama_server.set_fault("slow", delay_s=0.5, times=1, paths=["/api/chat"])
    router = make_router(ollama_server, call_deadline_floor_s=0.1)
    out = router.chat([{"role": "user", "content": "hello there"}], max_tokens=20)
    assert out.is_local and not out.escalations  # unmeasured: the 120 s ceiling, not the floor


def test_speeds_are_learned_from_ollamas_counts(ollama_server) -> None:
    router = make_router(ollama_server)
    router.chat([{"role": "user", "content": "tell me a long story about the sea " * 10}], max_tokens=200)
    speed = SPEEDS.get(f"ollama@{ollama_server.url}", "mistral:7b")
    assert speed.prefill_tps and speed.gen_tps


def test_a_prefix_cache_hit_does_not_pass_for_a_fast_host() -> None:
    from mem0_routed._speed import SpeedBook

    book = SpeedBook()
    book.observe("h", "m", prompt_tokens=1222, prompt_s=11.2, answer_tokens=20, answer_s=0.6)
    book.observe("h", "m", prompt_tokens=1222, prompt_s=0.15, answer_tokens=20, answer_s=0.6)  # cached
    assert round(book.get("h", "m").prefill_tps or 0) == 109


@pytest.mark.parametrize(("key", "value", "words"), [
    ("max_retries", 11, "0 to 10"),
    ("deadline_s", 0, "greater than 0"),
    ("call_deadline_ceiling_s", float("inf"), "finite"),
    ("keep_alive", "forever", "not a duration"),
])
def test_bad_deadline_settings_name_the_key_and_the_fix(key: str, value: Any, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        RouterConfig.from_mapping({key: value})
    assert key in str(err.value) and words in str(err.value)


def test_keep_alive_in_seconds_is_sent_as_a_number() -> None:
    assert RouterConfig.from_mapping({"keep_alive": "3600"}).keep_alive == 3600.0
    assert RouterConfig.from_mapping({"keep_alive": "30m"}).keep_alive == "30m"


class _TrickleHandler:
    """A server that answers any request with a valid OpenAI chat completion, one byte every 0.2 s."""

    @staticmethod
    def start() -> tuple[Any, str]:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "hello " * 20}}],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 20, "total_tokens": 25}}).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        threading.Event().wait(0.2)
                except OSError:
                    pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def test_a_trickling_external_endpoint_cannot_outlive_the_deadline(ollama_server, openai_key) -> None:
    server, url = _TrickleHandler.start()
    try:
        ollama_server.set_fault("refused")
        endpoint = SimpleNamespace(base_url=url)  # 1 byte every 0.2 s: the body would take ~2 minutes
        router = make_router(ollama_server, endpoint, openai_key, deadline_s=1.5, external_timeout_s=5)
        err = run_bounded(lambda: router.chat([{"role": "user", "content": "hello"}], max_tokens=20))
        assert isinstance(err, RoutingError)
        assert any(a.backend.startswith("openai") and a.kind == "timeout" for a in err.attempts), err.attempts
    finally:
        server.shutdown()


def test_a_trickling_embed_call_ends_within_its_timeout(ollama_server) -> None:
    from mem0_routed import BackendTimeout
    from mem0_routed.backends import OllamaBackend

    ollama_server.set_fault("trickle", delay_s=0.2, paths=["/api/embed"])
    backend = OllamaBackend(ollama_server.url, read_timeout_s=1.0)
    err = run_bounded(lambda: backend.embed("nomic-embed-text", ["hello"]))
    backend.close()
    assert isinstance(err, BackendTimeout)


def test_an_embedding_holds_deadline_s_across_hosts(ollama_server) -> None:
    from mem0_routed.testing import FakeOllamaServer

    # before: each host could hold an embed for read_timeout_s (60 s here), host after host
    ollama_server.set_fault("hang", paths=["/api/embed"])
    with FakeOllamaServer() as second:
        values = {"ollama_base_url": f"{ollama_server.url},{second.url}", "ledger": "memory",
                  "local_backend": "ollama", "deadline_s": 1.0, "read_timeout_s": 60, "breaker_failures": 1}
        router = Router(RouterConfig.from_mapping(values), ledger=MemoryLedger())
        err = run_bounded(lambda: router.embed(["hello"]))
        ollama_server.release()
        assert isinstance(err, RoutingError), err
        assert "within deadline_s=1s" in str(err)
        assert all(a.kind == "timeout" for a in err.attempts), err.attempts
        assert "stopped at the call's deadline_s (1s)" in err.attempts[0].error
        assert "not tried: the call's deadline_s (1s) had passed" in err.attempts[1].error
        assert "raise deadline_s" in str(err)
        assert second.requests_to("/api/embed") == []  # no time was left for the second host
        # our own deadline ran out: the hanging host is not blamed for it
        first = next(b for b in router.runtime.backends_for(Candidate("ollama", "nomic-embed-text", True))
                     if b.name.endswith(ollama_server.url))
        assert router.runtime.breaker(first).state == "closed"


def test_a_retry_after_that_would_outlive_deadline_s_falls_back_instead(ollama_server, openai_server,
                                                                       openai_key) -> None:
    # Ollama says "429, retry in 4 s" with 2 s left: before, the router slept the 4 s and then had no
    # time left for OpenAI; now it does not schedule that retry and falls back at once
    ollama_server.set_fault("error429", retry_after=4.0, paths=["/api/chat"])
    router = make_router(ollama_server, openai_server, openai_key, deadline_s=2.0)
    with stamina.set_testing(False):  # real waits: test mode would sleep 0 s for any Retry-After
        out = run_bounded(lambda: router.chat([{"role": "user", "content": "hello"}], max_tokens=20))
    assert not isinstance(out, BaseException), out
    assert not out.is_local
    assert len(openai_server.requests_to("/v1/chat/completions")) == 1
    # one try per local model: no retry was scheduled to wait out the Retry-After
    assert len(ollama_server.requests_to("/api/chat")) == len(out.escalations) == 2, out.escalations


def test_no_retry_is_scheduled_to_end_past_the_deadline() -> None:
    import time

    from mem0_routed import BackendUnavailable
    from mem0_routed._drivers import retry_hook_until
    from mem0_routed._errors import RateLimited

    hook = retry_hook_until(time.monotonic() + 1.0)
    assert hook(RateLimited("429", retry_after=3.0)) is False  # would end 2 s past the deadline
    assert hook(RateLimited("429", retry_after=0.1)) == 0.1
    assert 0 < hook(BackendUnavailable("refused")) <= 2.05  # type: ignore[operator]
    assert retry_hook_until(None)(RateLimited("429", retry_after=3.0)) == 3.0  # no deadline: as before


async def test_the_async_path_does_not_sleep_a_retry_after_past_the_deadline(ollama_server, openai_server,
                                                                             openai_key) -> None:
    ollama_server.set_fault("error429", retry_after=4.0, paths=["/api/chat"])
    router = make_router(ollama_server, openai_server, openai_key, deadline_s=2.0)
    with stamina.set_testing(False):
        out = await router.achat([{"role": "user", "content": "hello"}], max_tokens=20)
    assert not out.is_local and len(ollama_server.requests_to("/api/chat")) == 2


class _LateChunkThenSilence:
    """An HTTP server that sends its headers, then one body chunk ``late_s`` later, then nothing
    (keeping the connection open): a read timeout fixed when the request started fires only a full
    timeout after that chunk."""

    def __init__(self, late_s: float) -> None:
        import socket

        self.late_s = late_s
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.conns: list[Any] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: Any) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            if not self.stop.wait(self.late_s):
                conn.sendall(b"5\r\n{\"mod\r\n")
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_server_silent_after_a_late_chunk_is_cut_at_the_deadline(use_async: bool) -> None:
    """The deadline was checked only when a chunk arrived, and the read timeout was fixed at the start
    to the time then left: one chunk just before the deadline, then silence, and the call lived one
    more full read timeout (5.5 s for a 3 s deadline). Here the deadline is 6 s and the chunk comes at
    5.5 s: the old code ended near 11.5 s, past the 9 s guard; the deadline ends it at 6 s."""
    import asyncio
    import time as _time

    from mem0_routed import BackendTimeout
    from mem0_routed.backends import ChatRequest, OllamaBackend

    server = _LateChunkThenSilence(late_s=5.5)
    backend = OllamaBackend(server.url, read_timeout_s=60.0)
    try:
        request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                              deadline=_time.monotonic() + 6.0)
        call = (lambda: asyncio.run(backend.achat(request))) if use_async else (lambda: backend.chat(request))
        err = run_bounded(call, limit_s=9.0)
        assert isinstance(err, BackendTimeout), err
    finally:
        backend.close()
        server.close()


def test_the_model_list_look_up_stays_within_deadline_s(ollama_server) -> None:
    """``/api/tags`` (is the model pulled?) hanging: before, it could hold an embed for
    ``connect_timeout_s + 5`` seconds (25 s here) whatever ``deadline_s`` said."""
    ollama_server.set_fault("hang", paths=["/api/tags"])
    values = {"ollama_base_url": ollama_server.url, "ledger": "memory", "local_backend": "ollama",
              "deadline_s": 1.0, "read_timeout_s": 60, "connect_timeout_s": 20}
    router = Router(RouterConfig.from_mapping(values), ledger=MemoryLedger())
    err = run_bounded(lambda: router.embed(["hello"]), limit_s=10.0)
    chat = run_bounded(lambda: router.chat([{"role": "user", "content": "hi"}], max_tokens=5), limit_s=10.0)
    ollama_server.release()
    assert isinstance(err, RoutingError) and "within deadline_s=1s" in str(err), err
    assert isinstance(chat, RoutingError), chat
    assert ollama_server.requests_to("/api/embed") == []  # the deadline passed while asking for the list
