"""The "routed" provider is registered with mem0 once, safely, and leaves every other provider alone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from mem0.configs.base import MemoryConfig
from mem0.configs.embeddings.base import BaseEmbedderConfig
from mem0.embeddings.configs import EmbedderConfig
from mem0.llms.configs import LlmConfig
from mem0.utils import factory as mem0_factory
from mem0.utils.factory import EmbedderFactory, LlmFactory
from pydantic import ValidationError

from mem0_routed import RegistrationError, _registration, register
from mem0_routed._mem0 import RoutedEmbedder, RoutedLLM, RoutedLlmConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _registered() -> None:
    register()


def _patch_state() -> tuple[Any, ...]:
    """Everything register() changes, by identity, to prove a second call changes nothing."""
    return (
        LlmConfig.__pydantic_decorators__.field_validators["validate_config"].func,
        EmbedderConfig.__pydantic_decorators__.field_validators["validate_config"].func,
        EmbedderFactory.__dict__["create"].__func__,
        LlmFactory.provider_to_class["routed"],
        EmbedderFactory.provider_to_class["routed"],
    )


def test_routed_accepted_by_memory_config() -> None:
    cfg = MemoryConfig(
        llm={"provider": "routed", "config": {}}, embedder={"provider": "routed", "config": {}}
    )
    assert (cfg.llm.provider, cfg.embedder.provider) == ("routed", "routed")
    assert LlmConfig(provider="routed", config={"model": "mistral:7b"}).config == {"model": "mistral:7b"}
    assert EmbedderConfig(provider="routed", config={"embedding_dims": 768}).config == {"embedding_dims": 768}


def test_register_is_idempotent() -> None:
    before = _patch_state()
    register()
    _registration._registered = False  # force the full path again: the marks must stop a double patch
    register()
    assert _patch_state() == before
    assert _registration.is_registered()
    # the wrapper wraps mem0's function, never our own wrapper
    wrapper = LlmConfig.__pydantic_decorators__.field_validators["validate_config"].func
    original = wrapper.__mem0_routed_original__
    assert getattr(original, "__mem0_routed_original__", None) is None
    assert getattr(EmbedderFactory.create.__mem0_routed_original__, "__mem0_routed_original__", None) is None


def test_register_from_many_threads() -> None:
    _registration._registered = False
    before = _patch_state()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            register()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert _patch_state() == before
    MemoryConfig(llm={"provider": "routed", "config": {}}, embedder={"provider": "routed", "config": {}})


@pytest.mark.parametrize("provider", ["ollama", "openai", "anthropic"])
def test_other_llm_providers_still_validate(provider: str) -> None:
    cfg = MemoryConfig(llm={"provider": provider, "config": {"model": "m"}})
    assert cfg.llm.provider == provider


@pytest.mark.parametrize("provider", ["ollama", "openai", "huggingface"])
def test_other_embedders_still_validate(provider: str) -> None:
    assert MemoryConfig(embedder={"provider": provider, "config": {}}).embedder.provider == provider


def test_unknown_names_still_rejected_with_mem0s_message() -> None:
    with pytest.raises(ValidationError, match="Unsupported LLM provider: nope"):
        MemoryConfig(llm={"provider": "nope", "config": {}})
    with pytest.raises(ValidationError, match="Unsupported embedding provider: nope"):
        MemoryConfig(embedder={"provider": "nope", "config": {}})
    with pytest.raises(ValueError, match="Unsupported Embedder provider: nope"):
        EmbedderFactory.create("nope", {}, None)


def test_other_embedders_still_get_base_embedder_config(mocker: Any) -> None:
    seen: list[Any] = []

    class Probe:
        def __init__(self, config: Any) -> None:
            seen.append(config)

    load = mocker.patch.object(mem0_factory, "load_class", return_value=Probe)
    EmbedderFactory.create("ollama", {"model": "nomic-embed-text", "ollama_base_url": "http://h:1"}, None)
    load.assert_called_once_with("mem0.embeddings.ollama.OllamaEmbedding")
    assert isinstance(seen[0], BaseEmbedderConfig)
    assert seen[0].ollama_base_url == "http://h:1"
    with pytest.raises(TypeError):  # mem0's own behaviour for unknown keys, unchanged
        EmbedderFactory.create("ollama", {"local_threshold": 90}, None)


def test_factories_build_routed_classes() -> None:
    llm = LlmFactory.create("routed", {"model": "mistral:7b", "temperature": 0.3})
    assert isinstance(llm, RoutedLLM) and isinstance(llm.config, RoutedLlmConfig)
    assert llm.config.temperature == 0.3
    emb = EmbedderFactory.create("routed", {"model": "all-minilm:latest", "local_threshold": 90}, None)
    assert isinstance(emb, RoutedEmbedder) and emb.model == "all-minilm:latest"


def test_bad_routed_key_fails_at_config_time_naming_it() -> None:
    with pytest.raises(ValidationError, match="unknown key 'no_such_key'"):
        MemoryConfig(llm={"provider": "routed", "config": {"no_such_key": 1}})
    with pytest.raises(ValidationError, match="local_threshold"):
        MemoryConfig(embedder={"provider": "routed", "config": {"local_threshold": 250}})


def test_config_with_a_key_never_echoes_it(mocker: Any) -> None:
    secret = "sk-test-do-not-echo-123"
    cfg = MemoryConfig(llm={"provider": "routed", "config": {"api_key": secret, "local_threshold": 250}})
    # deferred: mem0 builds the provider, and the ConfigError carries no input
    from mem0_routed import ConfigError

    with pytest.raises(ConfigError) as info:
        LlmFactory.create(cfg.llm.provider, cfg.llm.config)
    assert "local_threshold" in str(info.value) and secret not in str(info.value)


def test_self_check_failure_names_mem0_version(mocker: Any) -> None:
    _registration._registered = False
    mocker.patch.dict(LlmFactory.provider_to_class, {"routed": ("somewhere.Else", RoutedLlmConfig)})
    mocker.patch.object(LlmFactory, "register_provider")  # simulate a mem0 whose factory ignores us
    mocker.patch("importlib.metadata.version", return_value="9.9.9")
    with pytest.raises(RegistrationError) as info:
        register()
    message = str(info.value)
    assert "mem0ai 9.9.9" in message and "mem0ai>=2.2,<3" in message and "LlmFactory" in message
    assert not _registration.is_registered()


def test_changed_mem0_internals_raise_registration_error(mocker: Any) -> None:
    _registration._registered = False
    mocker.patch.dict(LlmConfig.__pydantic_decorators__.field_validators, clear=True)
    mocker.patch("importlib.metadata.version", return_value="3.0.0")
    with pytest.raises(RegistrationError, match=r"mem0ai 3\.0\.0.*mem0ai>=2\.2,<3"):
        register()


def test_memory_config_subclass_is_rebuilt() -> None:
    class MyConfig(MemoryConfig):
        pass

    _registration._registered = False
    register()
    assert MyConfig(llm={"provider": "routed", "config": {}}).llm.provider == "routed"


def test_a_fresh_process_rejects_routed_until_registered_then_builds_a_memory(tmp_path: Path) -> None:
    """One clean interpreter, autoload hook off: mem0 alone rejects "routed" (the reason for the rule
    "import mem0_routed before Memory.from_config" then), and after ``register()`` builds it."""
    script = textwrap.dedent(
        f"""
        from mem0.configs.base import MemoryConfig
        try:
            MemoryConfig(llm={{"provider": "routed", "config": {{}}}})
        except Exception as exc:
            print("REJECTED:", str(exc).replace("\\n", " "))
        else:
            raise SystemExit("accepted before registration")
        import mem0_routed._registration as reg
        reg.register()
        from mem0 import Memory
        from mem0_routed._mem0 import RoutedEmbedder, RoutedLLM
        m = Memory.from_config({{
            "llm": {{"provider": "routed", "config": {{"model": "mistral:7b"}}}},
            "embedder": {{"provider": "routed", "config": {{"embedding_dims": 8}}}},
            "vector_store": {{"provider": "qdrant", "config": {{
                "path": {str(tmp_path / "q")!r}, "embedding_model_dims": 8, "collection_name": "t"}}}},
            "history_db_path": {str(tmp_path / "h.db")!r},
        }})
        assert isinstance(m.llm, RoutedLLM) and isinstance(m.embedding_model, RoutedEmbedder)
        m.vector_store.client.close()
        print("OK")
        """
    )
    env = {
        **os.environ,
        "MEM0_TELEMETRY": "False",
        "MEM0_DIR": str(tmp_path),
        "MEM0_ROUTED_AUTOLOAD": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True, timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("REJECTED:") and "Unsupported LLM provider: routed" in lines[0], lines
    assert lines[-1] == "OK"


@pytest.mark.parametrize(
    ("version", "warned"), [("2.2.1", False), ("2.10.0", False), ("2.1.9", True), ("3.0.0", True)]
)
def test_untested_mem0_version_is_warned_about(
    mocker: Any, caplog: pytest.LogCaptureFixture, version: str, warned: bool
) -> None:
    _registration._registered = False
    mocker.patch("importlib.metadata.version", return_value=version)
    with caplog.at_level("WARNING", logger="mem0_routed"):
        register()
    assert any("untested" in r.getMessage() and version in r.getMessage() for r in caplog.records) is warned
