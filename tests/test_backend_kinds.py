"""The backend table: every kind is built from the table, a new kind is one module plus one entry,
and nothing outside ``backends/`` tests which kind a backend is."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import mem0_routed
import mem0_routed.testing
from mem0_routed import Router, RouterConfig
from mem0_routed.backends import (
    KINDS,
    Backend,
    BackendKindSpec,
    ChatRequest,
    ChatResult,
    Health,
    register_kind,
)
from mem0_routed.backends._kinds import kind_spec, local_kinds
from mem0_routed.testing import FakeOllamaServer

PACKAGE = Path(mem0_routed.__file__).parent


class EchoBackend:
    """A whole new local kind in a few lines: the router learns everything from the instance."""

    kind = "echo"
    is_local = True
    plans_context = False

    def __init__(self, name: str = "echo@test") -> None:
        self.name = name
        self.calls: list[ChatRequest] = []

    def chat(self, request: ChatRequest) -> ChatResult:
        self.calls.append(request)
        return ChatResult(text=f"echo: {request.messages[-1]['content']}", model=request.model, backend=self.kind,
                          host=self.name, tokens_in=5, tokens_out=3)

    async def achat(self, request: ChatRequest) -> ChatResult:
        return self.chat(request)

    def embed(self, model: str, texts: list[str], *, timeout_s: float | None = None) -> list[list[float]]:
        return [[float(len(t)), 1.0] for t in texts]

    def health(self, *, timeout_s: float | None = None) -> Health:
        return Health(self.name, self.kind, reachable=True, models=["echo-1"])

    def context_window(self, model: str) -> int | None:
        return None

    def has_model(self, model: str) -> bool | None:
        return model == "echo-1"

    def model_key(self, model: str) -> str:
        return model

    def truncated(self, request: ChatRequest, result: ChatResult, estimated_tokens: int) -> bool:
        return False

    def fix(self, problem: str, model: str | None = None) -> str | None:
        return f"echo fix for {problem} {model or ''}".strip()

    def close(self) -> None:
        pass


@pytest.fixture
def echo_kind() -> Iterator[EchoBackend]:
    backend = EchoBackend()
    register_kind(BackendKindSpec("echo", is_local=True, factory=lambda cfg: [backend], missing="run echo",
                                  auto_rank=-1, routes=lambda cfg: {q: "echo-1" for q in cfg.models}))
    mem0_routed.testing.reset()
    try:
        yield backend
    finally:
        KINDS.pop("echo", None)
        mem0_routed.testing.reset()


def test_every_kind_in_the_table_builds_backends_of_its_kind() -> None:
    with FakeOllamaServer() as server:
        cfg = RouterConfig(ollama_url=server.url, openai_api_key="sk-test-kinds")
        for kind, spec in KINDS.items():
            built = spec.create(cfg)
            assert all(isinstance(b, Backend) and b.kind == kind and b.is_local == spec.is_local for b in built)
        assert [b.name for b in kind_spec("ollama").create(cfg)] == [f"ollama@{server.url}"]
        assert kind_spec("openai").create(cfg.model_copy(update={"openai_api_key": None})) == []
        assert kind_spec("ollama").create(cfg) == kind_spec("ollama").create(cfg)  # shared, not rebuilt


def test_an_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(mem0_routed.ConfigError, match=r"unknown backend kind 'vllm'.*known kinds: .*ollama"):
        kind_spec("vllm")


def test_a_factory_that_builds_the_wrong_kind_is_refused() -> None:
    spec = BackendKindSpec("other", is_local=True, factory=lambda cfg: [EchoBackend()], missing="x")
    with pytest.raises(mem0_routed.ConfigError, match="must build 'other' backends"):
        spec.create(RouterConfig())


def test_a_new_kind_is_one_table_entry(echo_kind: EchoBackend) -> None:
    """Registered with the first ``auto`` rank, the new kind serves calls, routes and health."""
    assert local_kinds(auto=True)[0] == "echo"
    router = Router(RouterConfig(ollama_url="http://127.0.0.1:1", routing_enabled=True))
    out = router.chat([{"role": "user", "content": "hello there"}])
    assert out.backend == "echo" and out.is_local and out.text == "echo: hello there"
    assert echo_kind.calls[-1].model == "echo-1" and echo_kind.calls[-1].num_ctx is None  # plans_context=False
    assert router.embed(["abc"]) == [[3.0, 1.0]]
    report = router.health()
    assert report["local_backend"] == "echo" and report["local"] and report["ok"], report["errors"]
    assert router.get_metrics()["local_queries"] >= 1


def test_missing_backends_use_the_kind_s_own_fix(echo_kind: EchoBackend) -> None:
    """With the only ``auto`` kind configured out, the error gives that kind's own fix."""
    saved = dict(KINDS)
    try:
        register_kind(replace(KINDS["echo"], factory=lambda cfg: []))
        for other in ("ollama", "embedded"):
            register_kind(replace(KINDS[other], auto_rank=None))
        router = Router(RouterConfig(ollama_url="http://127.0.0.1:1", openai_api_key=None))
        with pytest.raises(mem0_routed.RoutingError) as info:
            router.chat([{"role": "user", "content": "hi"}])
        assert "no backend configured" in str(info.value) and "run echo" in str(info.value)
    finally:
        KINDS.clear()
        KINDS.update(saved)


_KIND_NAMES = {"ollama", "openai", "embedded"}


def _kind_tests(tree: ast.AST) -> Iterator[str]:
    """Comparisons of something named ``kind``/``backend`` with a kind's name."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        names = {s.value for s in sides if isinstance(s, ast.Constant) and isinstance(s.value, str)}
        subjects = {ast.unparse(s) for s in sides if not isinstance(s, ast.Constant)}
        if names & _KIND_NAMES and any(s.endswith(("kind", "backend")) for s in subjects):
            yield f"line {node.lineno}: {ast.unparse(node)}"


def test_no_kind_tests_outside_backends() -> None:
    """Adding a kind must not mean editing the router: only ``backends/`` may know kinds by name."""
    found: dict[str, Any] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("backends", "testing"):
            continue
        hits = list(_kind_tests(ast.parse(path.read_text(encoding="utf-8"))))
        if hits:
            found[str(rel)] = hits
    assert not found, json.dumps(found, indent=1)
    # and the scan does find one when there is one
    assert list(_kind_tests(ast.parse('if backend.kind == "ollama": pass')))
