"""Faults against real processes: the router's promises hold when its servers and ledgers misbehave.

The fake Ollama and OpenAI servers run in their own processes (``python -m mem0_routed.testing``), so
they can be SIGKILLed or frozen with SIGSTOP mid-run; Redis is a real ``redis-server``; the SQLite
ledger is a real file that gets deleted or overwritten. After each fault:

- nothing hangs past its bound (each call runs under a watchdog thread; the bound is the router's
  own timeouts and breakers, with a wide margin: this checks "finishes", not speed),
- no usage record is lost silently (it is in the ledger, or held and logged at ERROR),
- no overspend of ``monthly_budget_usd``, no breach of the local-share threshold,
- no keep-local text reaches the OpenAI server (which logs every request it receives).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mem0_routed import BudgetExceeded, Router, RoutingError
from mem0_routed.testing import DEFAULT_TEST_KEY

ROOT = Path(__file__).resolve().parent.parent
START_S = 30.0  # a server process prints its URL within this (imports take ~2 s on a busy machine)
BOUND_S = 20.0  # no call may take longer: every timeout below is 0.3-2 s, retries off, breakers at 1
FAST = {
    "connect_timeout_s": 0.5, "read_timeout_s": 1.0, "external_timeout_s": 2.0, "max_retries": 0,
    "breaker_failures": 1, "breaker_cooldown_s": 60.0, "local_backend": "ollama",
}  # fmt: skip
SECRETS = ("sk-proj-Zq8vX2mN4pL6rT0wY3uI5oE7aS9dF1gH", "alice.private@example.com")
SIMPLE = "what's the capital of France?"
COMPLEX = "prove step by step that there are infinitely many primes, then analyse the proof"

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP/SIGKILL"),
              pytest.mark.usefixtures("fresh")]  # breakers are process-wide: each test starts closed


# --- server processes ----------------------------------------------------------------------------


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    url: str
    log: Path

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def admin(self, action: str, **body: Any) -> None:
        req = urllib.request.Request(f"{self.url}/_admin/{action}", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [r for r in map(json.loads, lines) if path is None or r["path"] == path]

    def received_text(self) -> str:
        return self.log.read_text(encoding="utf-8") if self.log.exists() else ""

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@contextlib.contextmanager
def server_process(kind: str, log: Path) -> Iterator[ServerProcess]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-m", "mem0_routed.testing", kind, "--log", str(log)]
    if kind == "openai":
        args += ["--api-key", DEFAULT_TEST_KEY]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], START_S)
        assert ready and proc.stdout is not None, f"fake {kind} server did not start within {START_S}s"
        url = proc.stdout.readline().strip()
        assert url.startswith("http://"), f"fake {kind} server printed {url!r}"
        yield ServerProcess(proc, url, log)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """One Ollama and one OpenAI server process for the module (tests that kill one start their own)."""
    tmp = tmp_path_factory.mktemp("servers")
    with server_process("ollama", tmp / "ollama.jsonl") as ollama, \
            server_process("openai", tmp / "openai.jsonl") as openai:  # fmt: skip
        yield ollama, openai


@pytest.fixture
def ollama(servers: tuple[ServerProcess, ServerProcess]) -> Iterator[ServerProcess]:
    server = servers[0]
    server.admin("reset")
    yield server
    server.thaw()
    server.admin("reset")


@pytest.fixture
def openai(servers: tuple[ServerProcess, ServerProcess]) -> Iterator[ServerProcess]:
    server = servers[1]
    server.admin("reset")
    yield server
    server.thaw()
    server.admin("reset")


def fault_router(ollama_url: str, openai: ServerProcess | None, ledger: str, **extra: Any) -> Router:
    cfg: dict[str, Any] = {**FAST, "ollama_base_url": ollama_url, "ledger": ledger, **extra}
    if openai is not None:
        cfg.update(openai_api_key=DEFAULT_TEST_KEY, openai_base_url=openai.base_url)
    return Router(cfg)


def bounded(fn: Callable[[], Any], bound: float = BOUND_S) -> Any:
    """``fn()`` in a watchdog thread: its result or exception, or a failure if it outlives ``bound``."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(bound)
    assert not t.is_alive(), f"call still running after {bound}s: something hangs past its bound"
    if "error" in box:
        raise box["error"]
    return box["value"]


def ask(router: Router, text: str) -> dict[str, Any] | Exception:
    """One routed call under the watchdog; routing failures come back as values."""
    try:
        return bounded(lambda: router.query(text))  # type: ignore[no-any-return]
    except RoutingError as exc:
        return exc


def dead_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed


# --- backend faults ------------------------------------------------------------------------------


def test_frozen_ollama_secrets_stay_local_the_rest_falls_back(
    ollama: ServerProcess, openai: ServerProcess, tmp_path: Path
) -> None:
    router = fault_router(ollama.url, openai, str(tmp_path / "l.sqlite3"))
    assert isinstance(ask(router, SIMPLE), dict)
    ollama.freeze()  # accepts connections (the kernel's backlog), never answers
    outcomes = [ask(router, f"remember this for me: {secret}") for secret in SECRETS]
    plain = ask(router, SIMPLE)
    ollama.thaw()
    assert all(isinstance(o, RoutingError) for o in outcomes)  # kept local, and local was down
    assert isinstance(plain, dict) and not plain["is_local"]  # the rest may fall back
    sent = openai.received_text()
    assert "France" in sent and not any(secret in sent for secret in SECRETS)
    assert len(router.ledger.records()) == 4  # the failures are recorded too


def test_killed_ollama_mid_run_every_call_answered_and_recorded(openai: ServerProcess, tmp_path: Path) -> None:
    with server_process("ollama", tmp_path / "own-ollama.jsonl") as own:
        router = fault_router(own.url, openai, str(tmp_path / "l.sqlite3"))
        answers = [ask(router, SIMPLE) for _ in range(4)]
        own.kill()
        answers += [ask(router, SIMPLE) for _ in range(8)]
    assert all(isinstance(a, dict) for a in answers)
    assert [a["is_local"] for a in answers[:4]] == [True] * 4  # type: ignore[index]
    assert not any(a["is_local"] for a in answers[4:])  # type: ignore[index]
    records = router.ledger.records()
    assert len(records) == 12
    external = [r for r in records if not r.is_local]
    assert len(external) == 8 and all(r.cost_usd > 0 for r in external)
    assert router.ledger.spent_usd() == pytest.approx(sum(r.cost_usd for r in external))


def test_killed_openai_mid_run_falls_back_local_and_releases_its_reservations(
    ollama: ServerProcess, tmp_path: Path
) -> None:
    with server_process("openai", tmp_path / "own-openai.jsonl") as own:
        router = fault_router(ollama.url, own, str(tmp_path / "l.sqlite3"), local_threshold=0,
                             monthly_budget_usd=1.0)  # fmt: skip
        answers = [ask(router, COMPLEX) for _ in range(3)]
        own.kill()
        answers += [ask(router, COMPLEX) for _ in range(3)]
    assert [a["is_local"] for a in answers] == [False] * 3 + [True] * 3  # type: ignore[index]
    records = router.ledger.records()
    assert len(records) == 6
    spent = sum(r.cost_usd for r in records[:3])
    assert spent > 0 and router.ledger.spent_usd() == pytest.approx(spent)
    assert router.ledger.counts().total == 6  # no reservation left open by the failed sends


def test_share_threshold_holds_with_concurrency_and_a_frozen_openai(
    ollama: ServerProcess, openai: ServerProcess, tmp_path: Path
) -> None:
    """Complex calls go out first only while the external share stays within 100 - threshold."""
    router = fault_router(ollama.url, openai, str(tmp_path / "l.sqlite3"), local_threshold=80)
    results: list[Any] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for _ in range(n):
            r = ask(router, COMPLEX)
            with lock:
                results.append(r)

    def wave(n: int) -> None:
        threads = [threading.Thread(target=worker, args=(n,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(BOUND_S * n)

    wave(4)
    openai.freeze()  # external calls now time out and fall back to local
    wave(2)
    openai.thaw()
    assert len(results) == 36 and all(isinstance(r, dict) for r in results)
    records = [r for r in router.ledger.records() if r.call_kind != "embedding"]
    external = sum(not r.is_local for r in records)
    assert len(records) == 36 and 0 < external <= 0.2 * len(records)


def test_missing_usage_cannot_bypass_the_budget(openai: ServerProcess, tmp_path: Path) -> None:
    """An OpenAI-compatible server that omits ``usage``: 200 of 200 calls went out against a $0.002
    budget that allowed ~11, each recorded at $0."""
    openai.admin("fault", mode="omit_usage")
    before = len(openai.requests("/v1/chat/completions"))
    budget = 0.002
    router = fault_router(dead_url(), openai, str(tmp_path / "l.sqlite3"), monthly_budget_usd=budget)
    outcomes = [ask(router, SIMPLE + " " + "and tell me more about it. " * 20) for _ in range(200)]
    answered = [o for o in outcomes if isinstance(o, dict)]
    assert answered and all(not o["is_local"] and o["cost"] > 0 for o in answered)
    assert all(isinstance(o, BudgetExceeded) for o in outcomes if not isinstance(o, dict))
    sent = openai.requests("/v1/chat/completions")[before:]
    assert len(sent) == len(answered) < 200
    assert router.ledger.spent_usd() <= budget + 1e-9
    assert len(router.ledger.records()) == 200


@pytest.mark.parametrize("server", ["ollama", "openai"])
def test_trickling_server_is_cut_by_the_call_deadline(
    server: str, ollama: ServerProcess, openai: ServerProcess, tmp_path: Path
) -> None:
    """One byte every 0.3 s never trips a read timeout; only a per-call deadline bounds it."""
    from mem0_routed import RouterConfig

    if "deadline_s" not in RouterConfig.model_fields:
        pytest.skip("needs the per-call deadline (config key deadline_s, issue 11 defect 8)")
    target = ollama if server == "ollama" else openai
    target.admin("fault", mode="trickle", delay_s=0.3)
    ollama_url = ollama.url if server == "ollama" else dead_url()
    router = fault_router(ollama_url, openai, str(tmp_path / "l.sqlite3"), deadline_s=2.0)
    outcome = ask(router, SIMPLE)
    assert isinstance(outcome, (dict, RoutingError))
    assert len(router.ledger.records()) == 1


# --- ledger faults -------------------------------------------------------------------------------


def test_ledger_deleted_mid_run_the_next_process_sees_every_record(
    ollama: ServerProcess, openai: ServerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "l.sqlite3"
    router = fault_router(ollama.url, openai, str(path), local_threshold=50)
    for text in (SIMPLE, COMPLEX, SIMPLE):
        assert isinstance(ask(router, text), dict)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink()
    with caplog.at_level(logging.ERROR, logger="mem0_routed"):
        for text in (COMPLEX, SIMPLE, SIMPLE):
            assert isinstance(ask(router, text), dict)
    assert "was deleted while in use" in caplog.text
    spent = router.ledger.spent_usd()
    assert spent > 0
    code = ("import sys; from mem0_routed._ledger import SQLiteLedger; l = SQLiteLedger(sys.argv[1]); "
            "print(len(l.records()), l.spent_usd())")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout.split()  # fmt: skip
    assert int(out[0]) == 6 and float(out[1]) == pytest.approx(spent)


def test_ledger_corrupted_mid_run_no_external_spend_and_a_clear_cli_error(
    ollama: ServerProcess, openai: ServerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "l.sqlite3"
    router = fault_router(ollama.url, openai, str(path), monthly_budget_usd=1.0, local_threshold=0)
    assert isinstance(ask(router, SIMPLE), dict)
    router.close()  # the write-ahead log is folded into the file, so the damage below is what is read
    with open(path, "r+b") as f:
        f.write(b"this is not a database" * 300)
    before = len(openai.requests())
    with caplog.at_level(logging.WARNING, logger="mem0_routed"):
        outcome = ask(router, COMPLEX)  # would go out (threshold 0) if the budget could be checked
    assert isinstance(outcome, dict) and outcome["is_local"]
    assert len(openai.requests()) == before
    assert "could not write the usage ledger" in caplog.text  # the record is lost, but loudly
    for command in (["stats"], ["project", "--queries", "100"]):
        cli = cli_run(["--ledger", str(path), *command])
        assert cli.returncode != 0 and "Traceback" not in cli.stderr
        lines = cli.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and "aside" in lines[0], cli.stderr


def cli_run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mem0_routed._cli", *args], check=False, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip


# --- Redis faults --------------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_frozen_then_stopped_calls_stay_local_and_records_are_kept(
    ollama: ServerProcess, openai: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    from redis_server import redis_or_fail, redis_process

    with redis_or_fail():  # skips or fails clearly when there is no redis-server
        pass
    with redis_process() as (url, proc):
        fast = url + "?socket_timeout=0.3&socket_connect_timeout=0.3"
        router = fault_router(ollama.url, openai, fast, monthly_budget_usd=1.0, local_threshold=50)
        assert isinstance(ask(router, COMPLEX), dict)
        sent_before = len(openai.requests())
        os.kill(proc.pid, signal.SIGSTOP)
        with caplog.at_level(logging.ERROR, logger="mem0_routed"):
            frozen = [ask(router, text) for text in (COMPLEX, SIMPLE)]
        os.kill(proc.pid, signal.SIGCONT)
        assert all(isinstance(o, dict) and o["is_local"] for o in frozen)  # type: ignore[index]
        assert len(openai.requests()) == sent_before  # budget and share unknown: nothing went out
        assert "held in memory" in caplog.text
        assert isinstance(ask(router, SIMPLE), dict)
        assert len(router.ledger.records()) == 4  # the held records were written once Redis came back
        proc.terminate()
        proc.wait(timeout=10)
        assert isinstance(ask(router, SIMPLE), dict)  # Redis gone: still answered locally
        assert router.ledger.unwritten == 1  # type: ignore[attr-defined]
        router.ledger.close()
    cli = cli_run(["--ledger", url.replace("redis://", "redis://:s3cr3tpw@"), "stats"])
    assert cli.returncode != 0 and "Traceback" not in cli.stderr and "s3cr3tpw" not in cli.stderr
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1" in lines[0] and "start Redis" in lines[0], cli.stderr


def test_trickle_fault_keeps_a_read_timeout_from_firing(ollama: ServerProcess) -> None:
    """The trickle fault itself: each byte comes well within a 1 s read timeout, so only a deadline
    for the whole call can bound it."""
    ollama.admin("fault", mode="trickle", delay_s=0.05, paths=["/api/version"])
    with urllib.request.urlopen(f"{ollama.url}/api/version", timeout=1.0) as resp:
        body = json.loads(resp.read())
    assert "version" in body
