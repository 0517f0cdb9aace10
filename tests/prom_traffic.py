"""A process that makes routed calls against the fake servers forever, for tests/test_prometheus_real.py.

It never mentions Prometheus: the exporter comes from ``MEM0_ROUTED_PROMETHEUS_PORT`` alone. Each round
has a plain local call, embeddings (a cache hit and a miss), a call whose local answers are all invalid
JSON (escalation, then fallback to the fake OpenAI, which costs money against the budget), and a call
to a router whose only Ollama is down (an error; its breaker opens).
"""

from __future__ import annotations

import socket
import sys
import time

import mem0_routed  # noqa: F401  registration also starts the exporter (env var)
from mem0_routed import Router, RouterConfig, RoutingError
from mem0_routed.testing import DEFAULT_TEST_KEY, FakeOllamaServer, FakeOpenAIServer


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    with FakeOllamaServer() as ollama, FakeOpenAIServer(api_key=DEFAULT_TEST_KEY) as openai:
        common = {"local_backend": "ollama", "ledger": "memory", "max_retries": 0}
        main_router = Router(RouterConfig.from_mapping(
            ollama_base_url=ollama.url, openai_api_key=DEFAULT_TEST_KEY, openai_base_url=openai.base_url,
            monthly_budget_usd=5.0, local_threshold=90, **common))  # fmt: skip
        dead = Router(RouterConfig.from_mapping(
            ollama_base_url=f"http://127.0.0.1:{_closed_port()}", breaker_failures=1, connect_timeout_s=0.5,
            **common))  # fmt: skip
        round_ = 0
        while True:
            main_router.chat([{"role": "user", "content": f"hello there, round {round_}"}])
            main_router.embed(["the same text every round", f"a new text {round_}"])
            ollama.set_fault("invalid_json", times=20, paths=["/api/chat"])
            try:
                main_router.chat([{"role": "user", "content": "Give me JSON with a key 'a'."}],
                                 response_format={"type": "json_object"})
            finally:
                ollama.clear_faults()
            try:
                dead.chat([{"role": "user", "content": "nobody home"}])
            except RoutingError:
                pass
            if round_ == 0:
                print("ready", flush=True)
            round_ += 1
            time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
