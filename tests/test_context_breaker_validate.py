"""Units: num_ctx planning, truncation detection, the circuit breaker, answer contracts."""

from __future__ import annotations

import json
import threading

import pytest
from conftest import FakeClock, make_router

from mem0_routed import CallKind
from mem0_routed._breaker import CircuitBreaker
from mem0_routed._num_ctx import ContextPlanner, looks_truncated, needed_tokens
from mem0_routed._validate import ContractViolation, check_answer, check_extraction

# --- context planning -------------------------------------------------------------------------------


def test_plan_grows_in_coarse_steps_and_never_shrinks() -> None:
    p = ContextPlanner(minimum=4096)
    assert p.plan("m", 3000, 32768) == 4096
    assert p.plan("m", 12_600, 32768) == 16384
    assert p.plan("m", 100, 32768) == 16384  # a short call reuses the big window: no reload
    assert p.plan("m", 16384, 32768) == 16384
    assert p.changes == {"m": 1}
    assert p.plan("other", 100, None) == 4096  # per model


def test_plan_is_capped_by_the_model_window_and_refuses_what_cannot_fit() -> None:
    p = ContextPlanner(minimum=4096)
    assert p.plan("m", 9000, 12000) == 12000
    assert p.plan("m", 12001, 12000) is None
    assert ContextPlanner(minimum=4096, maximum=8192).plan("m", 9000, 32768) is None


def test_grow_doubles_within_the_window() -> None:
    p = ContextPlanner(minimum=4096)
    p.plan("m", 1000, 16384)
    assert p.grow("m", 16384) == 8192
    assert p.grow("m", 16384) == 16384
    assert p.grow("m", 16384) is None


def test_needed_tokens_adds_margin_and_answer() -> None:
    assert needed_tokens(8000, 2000) == 12000
    assert needed_tokens(1000, None) > 1000 + 1000


@pytest.mark.parametrize(
    ("count", "estimate", "num_ctx", "truncated"),
    [
        (8400, 8500, 16384, False),
        (2048, 8500, 16384, True),  # kept far fewer tokens than sent
        (16384, 15000, 16384, True),  # the prompt filled the whole window
        (None, 8500, 16384, False),  # unknown: cannot tell
        (10, 40, 4096, False),  # tiny prompts: estimates are too rough
    ],
)
def test_truncation_detection(count, estimate, num_ctx, truncated) -> None:
    assert looks_truncated(prompt_eval_count=count, estimated_tokens=estimate, num_ctx=num_ctx) is truncated


# --- breaker -------------------------------------------------------------------------------------------


def test_breaker_opens_after_consecutive_failures_and_probes_once_after_cooldown() -> None:
    clock = FakeClock(0.0)
    br = CircuitBreaker("x", failures=3, cooldown_s=10, clock=clock)
    for _ in range(2):
        assert br.allow()
        br.failure("refused", fix="start Ollama")
    assert br.state == "closed"
    br.failure("refused")
    assert br.state == "open" and not br.allow() and br.last_fix == "start Ollama"
    clock.t = 10.0
    assert br.state == "half-open"
    assert br.allow() == "probe" and br.allow() is False  # one probe only
    br.failure("still down")
    assert br.state == "open" and br.times_opened == 1  # a failed probe keeps it open, not a new opening
    clock.t = 20.0
    assert br.allow()
    br.success()
    assert br.state == "closed" and br.allow()


def test_success_resets_the_failure_count() -> None:
    br = CircuitBreaker("x", failures=2, cooldown_s=10, clock=FakeClock(0.0))
    br.failure()
    br.success()
    br.failure()
    assert br.state == "closed"


def test_half_open_allows_exactly_one_probe_across_threads() -> None:
    clock = FakeClock(0.0)
    br = CircuitBreaker("x", failures=1, cooldown_s=1, clock=clock)
    br.failure()
    clock.t = 5
    granted: list[bool] = []
    threads = [threading.Thread(target=lambda: granted.append(bool(br.allow()))) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert granted.count(True) == 1


def test_only_the_probe_clears_the_probe() -> None:
    clock = FakeClock(0.0)
    br = CircuitBreaker("x", failures=1, cooldown_s=1, clock=clock)
    admitted = br.allow()  # A: admitted while closed
    br.failure()
    clock.t = 5
    assert br.allow() == "probe"  # B
    br.release(admitted)  # A ends with an error that says nothing about the host
    assert br.allow() is False  # C must wait for B's verdict
    br.release("probe")  # B ends without a verdict
    assert br.allow() == "probe"


def test_a_board_times_its_breakers_with_its_clock_even_one_swapped_in_later() -> None:
    from mem0_routed._breaker import BreakerBoard

    board = BreakerBoard(clock=FakeClock(0.0))
    br = board.get("h", failures=1, cooldown_s=30)
    br.failure("down")
    assert br.state == "open" and br.retry_in() == 30
    board.clock = later = FakeClock(29.0)
    assert br.state == "open" and br.retry_in() == 1
    later.advance(1)
    assert br.state == "half-open" and br.allow() == "probe"


def _breaker_test_router(ollama_server, clock, **cfg):
    router = make_router(ollama_server, max_retries=0, breaker_failures=1, breaker_cooldown_s=10, **cfg)
    br = router.runtime.breaker(router.runtime.backends("ollama")[0])
    return router, br, clock


def _while_in_flight(ollama_server, call, during, *, answer: bool) -> BaseException | None:
    """Run ``call`` in a thread; once its /api/chat request is held by the server, run ``during``,
    then let the request be answered (``answer``) or wait until the call gives up on it."""
    box: list[BaseException | None] = [None]

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box[0] = exc

    ollama_server.set_fault("hang", paths=["/api/chat"], times=1)
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        for _ in range(2000):
            if ollama_server.requests_to("/api/chat"):
                break
            thread.join(0.01)
        assert ollama_server.requests_to("/api/chat")
        during()
        if not answer:
            thread.join(30)
    finally:
        ollama_server.release()
        thread.join(30)
    assert not thread.is_alive()
    return box[0]


@pytest.mark.parametrize("ending", ["model missing", "deadline passed"])
@pytest.mark.usefixtures("fresh")
def test_a_call_admitted_while_closed_does_not_clear_a_later_probe(ending, ollama_server, breaker_clock) -> None:
    """A is admitted while closed; the breaker opens and B becomes the probe; A then ends with an
    error that does not trip the breaker (or with our own deadline passed) and released the breaker,
    which cleared B's probe flag, so C became a second probe at once."""
    from mem0_routed import RoutingError

    router, br, clock = _breaker_test_router(ollama_server, breaker_clock,
                                             **({"deadline_s": 3.0} if ending != "model missing" else {}))

    def open_and_probe() -> None:
        br.failure("down")
        clock.advance(100)
        assert br.allow() == "probe"  # B
        if ending == "model missing":
            ollama_server.remove_model("mistral:7b")  # A's held request now ends in a 404

    err = _while_in_flight(ollama_server, lambda: router.chat([{"role": "user", "content": "hi there"}]),
                           open_and_probe, answer=ending == "model missing")
    assert br.allow() is False  # C: B's probe is still running (A's next candidate was skipped too)
    assert isinstance(err, RoutingError)
    kinds = [a.kind for a in err.attempts]
    assert ("ModelNotFound" if ending == "model missing" else "timeout") in kinds, err.attempts


@pytest.mark.usefixtures("fresh")
async def test_a_probe_cancelled_after_its_verdict_does_not_clear_a_newer_probe(ollama_server, breaker_clock) -> None:
    """A, the probe, gets an answer (the host is fine: closed), retries after a bad answer and is
    cancelled minutes later; meanwhile the breaker opened again and D probes. A's late release
    cleared D's probe flag, so C became a second probe."""
    import asyncio

    router, br, clock = _breaker_test_router(ollama_server, breaker_clock)
    br.failure("down")
    clock.advance(100)  # A will be the probe
    ollama_server.set_fault("invalid_json", paths=["/api/chat"], times=1)  # A's first answer is rejected
    ollama_server.set_fault("hang", paths=["/api/chat"], times=1)  # A's retry hangs
    task = asyncio.create_task(router.achat([{"role": "user", "content": "list three colours as json"}],
                                            response_format={"type": "json_object"}))
    try:
        for _ in range(2000):
            if len(ollama_server.requests_to("/api/chat")) >= 2:
                break
            await asyncio.sleep(0.01)
        assert len(ollama_server.requests_to("/api/chat")) == 2 and br.state == "closed"
        br.failure("down again")
        clock.advance(100)
        assert br.allow() == "probe"  # D
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        ollama_server.release()
    assert br.allow() is False  # C: D's probe is still running


# --- answer contracts ---------------------------------------------------------------------------------


def test_extraction_answer_is_normalised_and_reserialised() -> None:
    raw = '```json\n{"memory": [{"id": 0, "text": "User likes tea"}]}\n```'
    out = json.loads(check_answer(raw, call_kind=CallKind.MEM0_EXTRACTION, wants_json=True))
    assert out == {"memory": [{"id": "0", "text": "User likes tea"}]}


def test_extraction_accepts_prose_and_think_blocks_around_json() -> None:
    raw = '<think>hmm</think> Sure! {"memory": [{"id": "0", "text": "User is Bob"}]} hope that helps'
    assert json.loads(check_answer(raw, call_kind=CallKind.MEM0_EXTRACTION, wants_json=True))["memory"]


def test_a_bare_list_is_wrapped_instead_of_being_lost() -> None:
    assert check_extraction([{"id": "0", "text": "a fact"}]) == {"memory": [{"id": "0", "text": "a fact"}]}


def test_empty_memory_list_is_a_valid_answer() -> None:
    assert check_extraction({"memory": []}) == {"memory": []}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty answer"),
        ("   ", "empty answer"),
        ('{"memory": [{"id": "0", "text": "x"},]}', "invalid json"),
        ("{'memory': []}", "invalid json"),
        ('{"memory": [{"id": "0", "text": "trunc', "invalid json"),
        ('{"facts": []}', "no 'memory' key"),
        ('{"memory": "User likes tea"}', "not a list"),
        ('{"memory": ["User likes tea"]}', "not an object"),
        ('{"memory": [{"id": "0"}]}', "has no text"),
        ('{"memory": [{"id": "0", "text": ["a", "b"]}]}', "has no text"),
        ('{"memory": [{"id": "0", "text": "  "}]}', "has no text"),
    ],
)
def test_extraction_contract_violations_name_the_problem(raw: str, reason: str) -> None:
    with pytest.raises(ContractViolation, match=reason):
        check_answer(raw, call_kind=CallKind.MEM0_EXTRACTION, wants_json=True)


def test_plain_json_calls_get_reserialised_json() -> None:
    assert json.loads(check_answer('note: {"a": 1}', call_kind=CallKind.QUERY, wants_json=True)) == {"a": 1}
    with pytest.raises(ContractViolation):
        check_answer("no json here", call_kind=CallKind.QUERY, wants_json=True)


def test_reranker_answer_needs_a_score() -> None:
    assert check_answer("0.8", call_kind=CallKind.MEM0_RERANKER, wants_json=False) == "0.8"
    with pytest.raises(ContractViolation, match="score"):
        check_answer("relevant", call_kind=CallKind.MEM0_RERANKER, wants_json=False)


def test_plain_text_passes_unchanged_and_tool_calls_may_be_empty() -> None:
    assert check_answer("hello", call_kind=CallKind.QUERY, wants_json=False) == "hello"
    assert check_answer("", call_kind=CallKind.QUERY, wants_json=False, has_tool_calls=True) == ""
