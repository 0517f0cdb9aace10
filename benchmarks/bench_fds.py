"""Open file descriptors over many routed calls, in every calling pattern a user might pick.

    python -m benchmarks.bench_fds            # 10,000 calls per pattern (a few minutes on 2 cores)
    python -m benchmarks.bench_fds --calls 500

The SQLite ledger used to keep one connection per thread that ever wrote to it, and each backend
one async HTTP client per event loop: the README's ``asyncio.run(router.execute_query(...))`` grew
from 7 to 410 fds in 100 calls. Reported per pattern: fds after a warm-up, after all calls, and the
records the ledger holds (a record lost would show here). tests/test_fds.py runs the same patterns
with a few hundred calls.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("MEM0_TELEMETRY", "False")

SIMPLE = "what's the capital of France?"
COMPLEX = "prove step by step that there are infinitely many primes, then analyse the proof"
WARMUP = 100  # enough for each pattern to reach its peak concurrency (SQLite reuses a closed file's fd)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class Env:
    """A router on fake Ollama + OpenAI servers (in this process) with a SQLite ledger in ``tmp``."""

    router: Any
    ollama_url: str
    openai_url: str
    key: str
    tmp: Path

    def text(self, i: int) -> str:
        return COMPLEX if i % 4 == 0 else SIMPLE  # complex calls go out while the 50 % share allows


@contextmanager
def environment() -> Iterator[Env]:
    from mem0_routed import Router
    from mem0_routed._router import reset_routers
    from mem0_routed.testing import DEFAULT_TEST_KEY, FakeOllamaServer, FakeOpenAIServer

    with tempfile.TemporaryDirectory(prefix="mem0routed-fds-") as tmp, FakeOllamaServer() as ollama, \
            FakeOpenAIServer() as openai:  # fmt: skip
        reset_routers()
        router = Router({
            "ollama_base_url": ollama.url, "openai_api_key": DEFAULT_TEST_KEY, "openai_base_url": openai.base_url,
            "ledger": str(Path(tmp) / "ledger.sqlite3"), "local_threshold": 50, "local_backend": "ollama",
        })  # fmt: skip
        try:
            yield Env(router, ollama.url, openai.base_url, DEFAULT_TEST_KEY, Path(tmp))
        finally:
            router.close()
            reset_routers()


def _threads(env: Env, n: int, start: int) -> None:
    """A new thread per call (a thread-per-request server)."""
    for i in range(start, start + n):
        t = threading.Thread(target=env.router.query, args=(env.text(i),))
        t.start()
        t.join()


def _asyncio_run(env: Env, n: int, start: int) -> None:
    """The README's pattern: a new event loop per call."""
    for i in range(start, start + n):
        asyncio.run(env.router.execute_query(env.text(i)))


def _pool(env: Env, n: int, start: int) -> None:
    """Eight worker threads, created per batch (``with ThreadPoolExecutor`` inside a request)."""
    for lo in range(start, start + n, 50):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: env.router.query(env.text(i)), range(lo, min(lo + 50, start + n))))


def _gather(env: Env, n: int, start: int) -> None:
    """One long-lived loop, 16 concurrent calls at a time."""
    async def run() -> None:
        for lo in range(start, start + n, 16):
            await asyncio.gather(*(env.router.execute_query(env.text(i)) for i in range(lo, min(lo + 16, start + n))))

    asyncio.run(run())


PATTERNS: dict[str, Callable[[Env, int, int], None]] = {
    "new thread per call": _threads,
    "asyncio.run per call": _asyncio_run,
    "thread pool per batch": _pool,
    "asyncio.gather, one loop": _gather,
}


def measure(name: str, calls: int) -> dict[str, Any]:
    """fds after ``WARMUP`` calls and after ``calls`` more; records in the ledger vs calls made."""
    with environment() as env:
        run = PATTERNS[name]
        run(env, WARMUP, 0)
        before = open_fds()
        run(env, calls, WARMUP)
        after = open_fds()
        records = len(env.router.ledger.records())
        external = sum(not r.is_local for r in env.router.ledger.records())
    return {"pattern": name, "calls": calls + WARMUP, "fds_after_warmup": before, "fds_after": after,
            "records": records, "external_records": external}  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=10_000)
    p.add_argument("--pattern", choices=list(PATTERNS), action="append")
    args = p.parse_args(argv)
    rows = []
    for name in args.pattern or list(PATTERNS):
        r = measure(name, args.calls)
        rows.append(r)
        ok = r["fds_after"] <= r["fds_after_warmup"] + 2 and r["records"] == r["calls"]
        print(f"{name:<26} {r['calls']:>6} calls  fds {r['fds_after_warmup']:>3} -> {r['fds_after']:>3}  "
              f"records {r['records']:>6} ({r['external_records']} external)  {'ok' if ok else 'MISSED'}",
              flush=True)
    return rows


if __name__ == "__main__":
    main()
