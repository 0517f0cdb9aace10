"""File descriptors stay flat however the router is called (issue 11, defect 2).

Each new thread that touched the SQLite ledger kept its connection until ``close()``, and each event
loop left an async HTTP client behind: ``asyncio.run(router.execute_query(...))`` grew 7 -> 410 fds in
100 calls, and at ``ulimit -n 256`` usage records were lost. The 10,000-call figures are in
``benchmarks/bench_fds.py``; here each pattern runs a few hundred calls against real HTTP servers
and a real SQLite file, and every call must leave its record.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the patterns live with the benchmark
from benchmarks.bench_fds import PATTERNS, environment, open_fds
from mem0_routed._ledger._sqlite import POOL_MAX

try:
    from tests.test_ledger import _open_files
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    from test_ledger import _open_files  # type: ignore[no-redef,import-not-found]

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")

WARMUP = 60  # each pattern reaches its peak concurrency (SQLite reuses the fd of a closed connection)
CALLS = 150
SLACK = 2
#: A ledger connection holds the database and its -wal; all share one -shm; +1 the rescue connection.
LEDGER_FDS_MAX = 2 * (POOL_MAX + 1) + 1


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_fds_flat_and_every_record_kept(pattern: str) -> None:
    with environment() as env:
        run = PATTERNS[pattern]
        ledger = env.tmp / "ledger.sqlite3"
        calls, warmup = CALLS, WARMUP
        run(env, warmup, 0)
        warm = open_fds() - _open_files(ledger)
        run(env, calls, warmup)
        middle = open_fds() - _open_files(ledger)
        run(env, calls, warmup + calls)
        end, on_ledger = open_fds() - _open_files(ledger), _open_files(ledger)
        records = env.router.ledger.records()
    # sockets, pipes and the rest do not grow; the ledger's own files are capped by its pool
    assert end <= warm + SLACK, f"{pattern}: fds other than the ledger's {warm} -> {middle} -> {end}"
    assert on_ledger <= LEDGER_FDS_MAX
    assert len(records) == warmup + 2 * calls
    assert any(not r.is_local for r in records) and any(r.is_local for r in records)  # both backends used


def test_fds_flat_with_mem0_memory_in_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real mem0 ``Memory`` (qdrant on disk, routed LLM and embedder) used from new threads."""
    import mem0.memory.main as mem0_main
    import mem0.memory.telemetry as mem0_telemetry
    from mem0 import Memory

    monkeypatch.setattr(mem0_main, "MEM0_TELEMETRY", False)
    monkeypatch.setattr(mem0_telemetry, "MEM0_TELEMETRY", False)
    monkeypatch.setenv("MEM0_DIR", str(tmp_path / "mem0"))

    from mem0_routed import register
    from mem0_routed.testing import FakeOllamaServer, reset

    register()
    reset()
    ledger = tmp_path / "ledger.sqlite3"
    routed = {"ledger": str(ledger), "local_backend": "ollama", "read_timeout_s": 30.0}
    with FakeOllamaServer() as ollama:
        memory = Memory.from_config({
            "llm": {"provider": "routed", "config": {**routed, "ollama_base_url": ollama.url}},
            "embedder": {"provider": "routed", "config": {**routed, "ollama_base_url": ollama.url,
                                                          "embedding_dims": 768}},
            "vector_store": {"provider": "qdrant", "config": {"path": str(tmp_path / "q"),
                                                              "embedding_model_dims": 768}},
            "history_db_path": str(tmp_path / "history.db"),
        })  # fmt: skip
        errors: list[BaseException] = []

        def add(i: int) -> None:
            try:
                memory.add([{"role": "user", "content": f"I like fruit number {i}."}], user_id=f"u{i % 3}")
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        def batch(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                t = threading.Thread(target=add, args=(i,))
                t.start()
                t.join(timeout=60)

        batch(0, 10)
        warm = open_fds() - _open_files(ledger)
        batch(10, 70)
        end, on_ledger = open_fds() - _open_files(ledger), _open_files(ledger)
        memory.vector_store.client.close()
        reset()
    assert not errors, errors[:1]
    assert end <= warm + SLACK, f"fds {warm} -> {end}"
    assert on_ledger <= LEDGER_FDS_MAX
    from mem0_routed._ledger import SQLiteLedger

    check = SQLiteLedger(ledger)
    try:
        llm_calls = [r for r in check.records() if r.call_kind != "embedding"]
        assert len(llm_calls) == 70  # one extraction call per add, each recorded
    finally:
        check.close()




def test_no_record_lost_under_ulimit_256() -> None:
    """The reported symptom: with ``ulimit -n 256``, records were lost after ~125 ``asyncio.run`` calls
    ("Too many open files"). 400 calls in a process limited to 256 descriptors must keep all 400."""
    import subprocess

    code = """
import asyncio, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
from benchmarks.bench_fds import environment
with environment() as env:
    for i in range(400):
        asyncio.run(env.router.execute_query(env.text(i)))
    print(len(env.router.ledger.records()))
"""
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=600,
                         cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root)})  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "400"
    assert "Too many open files" not in run.stderr and "could not write" not in run.stderr
