"""Figure 2: what ``provider: routed`` costs mem0 in wall time, next to mem0's own ``ollama`` provider.

Both variants run the same fixed ``Memory.add`` + ``Memory.search`` workload against one zero-latency
``FakeOllamaServer`` with embedded Qdrant in a temp dir; only the llm/embedder provider differs. The
variants alternate round by round (the machine is shared and noisy), each round starting from a new
``Memory`` and fresh routers (like a new process), and the figure is the median of per-round ratios.

The ratio is about time. The memory counts show the correctness difference: mem0's ollama LLM sends
no ``num_ctx``, so Ollama (and the fake) cut the ~8.5k-token extraction prompt to 2048 tokens.

Run from the repo root: ``python -m benchmarks.bench_mem0_overhead [--quick] [--profile]``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

os.environ["MEM0_TELEMETRY"] = "False"

from benchmarks._common import machine_info, print_rows, row

TARGET_RATIO = 1.03
LLM_MODEL = "mistral:7b"
EMBED_MODEL = "nomic-embed-text:latest"
DIMS = 768
#: Five small conversations (added with infer=True) and five searches: the fixed workload.
CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "Hi, I'm Priya. I moved to Lisbon last month and I work as a nurse."},
     {"role": "assistant", "content": "Welcome, Priya! How are you finding Lisbon?"}],
    [{"role": "user", "content": "I'm vegetarian and allergic to peanuts. Can you suggest a dinner?"},
     {"role": "assistant", "content": "Try a chickpea curry with rice; it has no peanuts."}],
    [{"role": "user", "content": "My dog Biscuit is a beagle. He turns 3 in May."},
     {"role": "assistant", "content": "Happy early birthday to Biscuit!"}],
    [{"role": "user", "content": "I'm planning a trip to Japan in October with my sister Ana."},
     {"role": "assistant", "content": "Kyoto is lovely in October; book the ryokan early."}],
    [{"role": "user", "content": "I play the cello in a community orchestra on Thursdays."},
     {"role": "assistant", "content": "That sounds wonderful."}],
]  # fmt: skip
QUERIES = ["Where does Priya live?", "What can't the user eat?", "What is the dog's name?",
           "Who is travelling to Japan?", "Which instrument does the user play?"]  # fmt: skip
_ENV_TO_CLEAR = (
    "OLLAMA_URL",
    "OPENAI_API_KEY",
    "MEM0_LLM_MODEL",
    "MEM0_EMBEDDER_MODEL",
    "LLM_LOCAL_THRESHOLD",
)




def ensure_registered() -> bool:
    """``import mem0_routed`` should register "routed"; if it does not (yet), register explicitly.

    Returns whether the import alone registered it (reported, so a missing hook is visible)."""
    import mem0_routed  # noqa: F401
    from mem0_routed import _registration

    on_import = _registration.is_registered()
    _registration.register()
    return on_import


# The default ledger kind (SQLite, one row per call). One file for the whole run: a path per round
# would make a new router config, hence new routers, every round (not the steady state measured).
_LEDGER_PATH = os.path.join(tempfile.gettempdir(), f"mem0-routed-bench-{os.getpid()}.sqlite3")
LEDGER = f"sqlite:///{_LEDGER_PATH}"


@atexit.register
def _remove_ledger() -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.remove(_LEDGER_PATH + suffix)


def memory_config(provider: str, url: str, path: str, tag: str, **routed_embedder: Any) -> dict[str, Any]:
    """mem0 config for ``provider`` ("routed" or "ollama") on ``url``; extra keys go to a routed embedder."""
    llm: dict[str, Any] = {"model": LLM_MODEL, "ollama_base_url": url}
    emb: dict[str, Any] = {"model": EMBED_MODEL, "ollama_base_url": url, "embedding_dims": DIMS}
    if provider == "routed":
        for cfg in (llm, emb):
            # the default ledger kind (SQLite, one row per call), in the run's temp dir
            cfg.update(local_backend="ollama", ledger=LEDGER)
        emb.update(routed_embedder)
    return {
        "llm": {"provider": provider, "config": llm},
        "embedder": {"provider": provider, "config": emb},
        "vector_store": {"provider": "qdrant",
                         "config": {"path": path, "embedding_model_dims": DIMS, "collection_name": f"bench_{tag}"}},
        "history_db_path": os.path.join(path, "history.db"),
    }  # fmt: skip


@contextlib.contextmanager
def fresh_memory(
    provider: str, url: str, tag: str, *, reset: bool = True, **routed_embedder: Any
) -> Iterator[Any]:
    """A new Memory on a new Qdrant dir. ``reset``: routers, breakers and caches start empty, as in
    a new process. ``memory._bench_build_s`` holds how long ``Memory.from_config`` took."""
    from mem0 import Memory

    from mem0_routed._router import reset_routers

    if reset:
        reset_routers()
    path = tempfile.mkdtemp(prefix=f"bench-mem0-{tag}-")
    t0 = time.perf_counter()
    memory = Memory.from_config(memory_config(provider, url, path, tag, **routed_embedder))
    memory._bench_build_s = time.perf_counter() - t0
    try:
        yield memory
    finally:
        with contextlib.suppress(Exception):
            memory.vector_store.client.close()
        shutil.rmtree(path, ignore_errors=True)


def workload(memory: Any, user: str, tag: str = "") -> tuple[float, int]:
    """Seconds for the fixed adds + searches, and how many memories the adds stored. ``tag`` makes
    the texts of a round unique, so no round profits from another round's embedding cache."""
    stored = 0
    t0 = time.perf_counter()
    for conv in CONVERSATIONS:
        msgs = [{**m, "content": f"{m['content']} {tag}".rstrip()} for m in conv]
        out = memory.add(msgs, user_id=user)
        stored += len(out.get("results", []))
    for q in QUERIES:
        memory.search(f"{q} {tag}".rstrip(), filters={"user_id": user}, top_k=3)
    return time.perf_counter() - t0, stored


def run(quick: bool = False, profile: bool = False) -> list[dict]:
    """Interleaved rounds routed/ollama (order alternating), median per-round ratio."""
    from mem0_routed.testing import FakeOllamaServer

    for name in _ENV_TO_CLEAR:
        os.environ.pop(name, None)
    on_import = ensure_registered()
    rounds = 4 if quick else 9
    times: dict[str, list[float]] = {"routed": [], "ollama": []}
    cold: dict[str, list[float]] = {"routed": [], "ollama": []}
    stored: dict[str, list[int]] = {"routed": [], "ollama": []}
    requests: dict[str, list[int]] = {"routed": [], "ollama": []}
    truncated: dict[str, list[str]] = {"routed": [], "ollama": []}
    with FakeOllamaServer() as server:
        for tag in ("routed", "ollama"):  # warm-up round each (imports, clients, first Qdrant use)
            with fresh_memory(tag, server.url, f"warm_{tag}") as m:
                workload(m, "warm", "warm")
        for i in range(rounds):
            order = ("routed", "ollama") if i % 2 == 0 else ("ollama", "routed")
            for provider in order:  # steady state: a long-lived process (routers kept), new texts
                with fresh_memory(provider, server.url, f"{provider}_{i}", reset=False) as m:
                    server.reset()
                    secs, n = workload(m, f"u{i}", f"(round {i})")
                times[provider].append(secs)
                stored[provider].append(n)
                requests[provider].append(len(server.requests))
                truncated[provider].append(_truncated(server))
        for i in range(rounds):  # after the steady rounds: a cold round resets the routers
            order = ("routed", "ollama") if i % 2 == 0 else ("ollama", "routed")
            for provider in order:  # cold: a new process's first Memory, from_config included
                with fresh_memory(provider, server.url, f"{provider}_cold_{i}", reset=True) as m:
                    secs, _ = workload(m, f"c{i}", f"(cold {i})")
                    cold[provider].append(m._bench_build_s + secs)
        prof_note = _profile(server.url) if profile else ""
    cold_ratios = [r / o for r, o in zip(cold["routed"], cold["ollama"])]
    cold_ratio = statistics.median(cold_ratios)
    ratios = [r / o for r, o in zip(times["routed"], times["ollama"])]
    ratio = statistics.median(ratios)
    med_r, med_o = statistics.median(times["routed"]), statistics.median(times["ollama"])
    calls = len(CONVERSATIONS) + len(QUERIES)
    reg = "" if on_import else "; NOTE: `import mem0_routed` did not register 'routed', register() was called"
    return [
        row(
            "mem0 overhead: routed / ollama wall time",
            round(ratio, 3),
            "x",
            f"<= {TARGET_RATIO}",
            ratio <= TARGET_RATIO,
            f"steady state (routers live, new texts each round); median of {rounds} interleaved rounds of "
            f"{len(CONVERSATIONS)} adds + {len(QUERIES)} searches; per-round {[round(r, 2) for r in ratios]}"
            f"{reg}{prof_note}",
        ),
        row(
            "mem0 overhead, cold: routed / ollama incl. Memory.from_config",
            round(cold_ratio, 3),
            "x",
            f"<= {TARGET_RATIO}",
            cold_ratio <= TARGET_RATIO,
            f"fresh routers each round (a new process); routed {statistics.median(cold['routed']) * 1e3:.0f} ms, "
            f"ollama {statistics.median(cold['ollama']) * 1e3:.0f} ms; per-round {[round(r, 2) for r in cold_ratios]}",
        ),
        row(
            "mem0 workload wall time, routed",
            round(med_r * 1000, 1),
            "ms",
            None,
            None,
            f"{med_r * 1000 / calls:.1f} ms per add/search; {statistics.median(requests['routed']):.0f} HTTP requests",
        ),
        row(
            "mem0 workload wall time, mem0 ollama",
            round(med_o * 1000, 1),
            "ms",
            None,
            None,
            f"{med_o * 1000 / calls:.1f} ms per add/search; {statistics.median(requests['ollama']):.0f} HTTP requests",
        ),
        row(
            "memories stored, routed",
            statistics.median(stored["routed"]),
            "memories",
            None,
            None,
            f"from {len(CONVERSATIONS)} conversations; chat prompts cut by the server: {truncated['routed'][-1]}",
        ),
        row(
            "memories stored, mem0 ollama",
            statistics.median(stored["ollama"]),
            "memories",
            None,
            None,
            f"chat prompts cut by the server: {truncated['ollama'][-1]} (no num_ctx: 2048-token window; the fake "
            "keeps the prompt's end, where the new messages are, so its facts survive the cut)",
        ),
    ]


def _truncated(server: Any) -> str:
    """ "k/n": how many /api/chat prompts did not fit the window the request asked for (Ollama cuts them)."""
    from mem0_routed.testing import _fakemodel as fm

    bodies = server.requests_to("/api/chat")
    cut = sum(
        fm.estimate_tokens(fm.prompt_text(b.get("messages") or []))
        > ((b.get("options") or {}).get("num_ctx") or fm.DEFAULT_NUM_CTX)
        for b in bodies
    )
    return f"{cut}/{len(bodies)}"


def _profile(url: str) -> str:
    """cProfile one routed workload; prints the top functions by cumulative time."""
    import cProfile
    import pstats

    with fresh_memory("routed", url, "profile", reset=False) as m:
        prof = cProfile.Profile()
        prof.enable()
        workload(m, "p", "(profile)")
        prof.disable()
    print("\n--- cProfile, one routed workload (cumulative) ---", file=sys.stderr)
    pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
    return "; profile printed to stderr"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 rounds instead of 9")
    ap.add_argument("--profile", action="store_true", help="also cProfile one routed workload")
    args = ap.parse_args(argv)
    rows = run(quick=args.quick, profile=args.profile)
    print_rows(f"mem0 overhead ({machine_info()})", rows)
    return 1 if any(r["ok"] is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
