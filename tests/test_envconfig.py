"""The seed's deployment is configured by env vars only: ``mem0_config_from_env`` turns them into a mem0
config for servers that build theirs in code (mem0's REST server passes ``DEFAULT_CONFIG``)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import mem0.memory.main as mem0_main
import mem0.memory.telemetry as mem0_telemetry
import pytest
from mem0 import Memory

import mem0_routed
from mem0_routed import ConfigError, mem0_config_from_env
from mem0_routed._mem0 import RoutedEmbedder, RoutedLLM
from mem0_routed.testing import FakeOllamaServer, reset

SECRET = "sk-env-only-do-not-copy-0123456789"


def _server_default_config(tmp_path: Path) -> dict[str, Any]:
    """The shape of mem0's server/main.py DEFAULT_CONFIG (qdrant on disk instead of pgvector)."""
    return {
        "version": "v1.1",
        "vector_store": {"provider": "qdrant", "config": {
            "path": str(tmp_path / "qdrant"), "collection_name": "memories"}},
        "llm": {"provider": "openai", "config": {"api_key": None, "temperature": 0.2, "model": "gpt-5-mini"}},
        "embedder": {"provider": "openai", "config": {"api_key": None, "model": "text-embedding-3-small"}},
        "history_db_path": str(tmp_path / "history.db"),
    }  # fmt: skip


def _seed_env(url: str) -> dict[str, str]:
    return {
        "MEM0_LLM_PROVIDER": "routed",
        "MEM0_LLM_MODEL": "mistral:7b",
        "MEM0_EMBEDDER_PROVIDER": "routed",
        "MEM0_EMBEDDER_MODEL": "nomic-embed-text:latest",
        "OLLAMA_URL": url,
        "LLM_LOCAL_THRESHOLD": "97",
        "OPENAI_API_KEY": SECRET,
    }


def test_seed_env_selects_routed_and_sizes_the_vector_store(tmp_path: Path) -> None:
    base = _server_default_config(tmp_path)
    before = copy.deepcopy(base)
    config = mem0_config_from_env(base, env=_seed_env("http://ollama:11434"))
    assert base == before  # the caller's dict is not changed
    assert config["llm"] == {"provider": "routed", "config": {"model": "mistral:7b"}}
    assert config["embedder"] == {
        "provider": "routed", "config": {"model": "nomic-embed-text:latest", "embedding_dims": 768}}  # fmt: skip
    assert config["vector_store"]["config"]["embedding_model_dims"] == 768
    assert config["history_db_path"] == base["history_db_path"] and config["version"] == "v1.1"
    # servers echo their config (GET /configure): the key stays in the environment only
    assert SECRET not in json.dumps(config)


def test_unset_provider_vars_leave_the_base_alone(tmp_path: Path) -> None:
    base = _server_default_config(tmp_path)
    assert mem0_config_from_env(base, env={"OLLAMA_URL": "http://x:1"}) == base
    assert mem0_config_from_env(env={}) == {}


def test_mem0s_own_ollama_provider_gets_the_url(tmp_path: Path) -> None:
    env = {"MEM0_LLM_PROVIDER": "ollama", "MEM0_LLM_MODEL": "qwen2.5:7b", "OLLAMA_URL": "http://o:11434",
           "MEM0_EMBEDDER_PROVIDER": "ollama"}  # fmt: skip
    config = mem0_config_from_env({}, env=env)
    assert config["llm"] == {"provider": "ollama", "config": {"model": "qwen2.5:7b", "ollama_base_url": "http://o:11434"}}
    assert config["embedder"]["config"] == {"embedding_dims": 768, "ollama_base_url": "http://o:11434"}


def test_unknown_embedding_model_needs_dims(tmp_path: Path) -> None:
    env = {"MEM0_EMBEDDER_PROVIDER": "routed", "MEM0_EMBEDDER_MODEL": "my-embedder:1"}
    config = mem0_config_from_env(_server_default_config(tmp_path), env=env)
    assert "embedding_dims" not in config["embedder"]["config"]
    config = mem0_config_from_env(_server_default_config(tmp_path), env={**env, "MEM0_ROUTED_EMBEDDING_DIMS": "384"})
    assert config["embedder"]["config"]["embedding_dims"] == 384
    assert config["vector_store"]["config"]["embedding_model_dims"] == 384
    with pytest.raises(ConfigError, match="MEM0_ROUTED_EMBEDDING_DIMS='many'"):
        mem0_config_from_env({}, env={**env, "MEM0_ROUTED_EMBEDDING_DIMS": "many"})


@pytest.mark.parametrize(("name", "value", "named"), [
    ("LLM_LOCAL_THRESHOLD", "150", "LLM_LOCAL_THRESHOLD"),
    ("OLLAMA_URL", "ollama:11434", "OLLAMA_URL"),
])  # fmt: skip
def test_bad_router_env_fails_at_start_naming_the_var(name: str, value: str, named: str) -> None:
    env = {"MEM0_LLM_PROVIDER": "routed", name: value}
    with pytest.raises(ConfigError, match=named) as info:
        mem0_config_from_env({}, env=env)
    assert value in str(info.value)


def test_server_style_startup_with_env_only(
    tmp_path: Path, ollama_server: FakeOllamaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What mem0's server does at start, with the helper in front: a real Memory, add and search."""
    for name, value in _seed_env(ollama_server.url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_API_KEY")  # no external fallback here: every call must stay local
    monkeypatch.setenv("MEM0_ROUTED_LOCAL_BACKEND", "ollama")
    monkeypatch.setenv("MEM0_DIR", str(tmp_path / "mem0"))
    monkeypatch.setattr(mem0_main, "MEM0_TELEMETRY", False)
    monkeypatch.setattr(mem0_telemetry, "MEM0_TELEMETRY", False)
    mem0_routed.register()
    reset()
    memory = Memory.from_config(mem0_config_from_env(_server_default_config(tmp_path)))
    try:
        assert isinstance(memory.llm, RoutedLLM) and isinstance(memory.embedding_model, RoutedEmbedder)
        assert memory.llm.router.config.local_threshold == 97.0
        assert memory.add([{"role": "user", "content": "I'm Bob and I live in Oslo."}], user_id="bob")["results"]
        found = memory.search("Where does Bob live?", filters={"user_id": "bob"}, top_k=3)["results"]
        assert any("Oslo" in hit["memory"] for hit in found), found
        assert {b["model"] for b in ollama_server.requests_to("/api/chat")} == {"mistral:7b"}
    finally:
        memory.vector_store.client.close()
        reset()


def test_same_provider_keeps_the_bases_other_settings(tmp_path: Path) -> None:
    base = _server_default_config(tmp_path)
    config = mem0_config_from_env(base, env={"MEM0_LLM_PROVIDER": "openai", "MEM0_LLM_MODEL": "gpt-4.1-mini"})
    assert config["llm"] == {"provider": "openai", "config": {"api_key": None, "temperature": 0.2, "model": "gpt-4.1-mini"}}
    routed = mem0_config_from_env(base, env={"MEM0_LLM_PROVIDER": "routed"})
    assert routed["llm"] == {"provider": "routed", "config": {}}  # OpenAI's keys mean nothing to the router


def test_several_ollama_urls_give_mem0_s_own_providers_the_first() -> None:
    """OLLAMA_URL may list several hosts for the router; mem0's ollama LLM took the list unsplit."""
    from mem0_routed import mem0_config_from_env

    env = {"MEM0_LLM_PROVIDER": "ollama", "MEM0_EMBEDDER_PROVIDER": "ollama",
           "OLLAMA_URL": "http://a:11434, http://b:11434"}
    config = mem0_config_from_env({}, env=env)
    assert config["llm"]["config"]["ollama_base_url"] == "http://a:11434"
    assert config["embedder"]["config"]["ollama_base_url"] == "http://a:11434"


# --- the env vars the code reads are the ones the README documents -------------------------------------

_ENV_NAME = re.compile(r"(?:MEM0|LLM|OLLAMA|OPENAI)_[A-Z0-9_]+")
#: Backticked names in the README that look like env vars but are Python constants.
_NOT_ENV_VARS = {"MEM0_EXTRACTION_SCHEMA"}
_README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_config_table_env_vars() -> set[str]:
    """The env var column of README's "Every config key" table."""
    section = _README.read_text().split("### Every config key", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row[2])}


def _router_config_reads(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Env vars that change ``RouterConfig`` (or make it refuse to build), found by setting each candidate."""
    from mem0_routed import RouterConfig

    candidates = {f"MEM0_ROUTED_{key.upper()}" for key in RouterConfig.model_fields}
    candidates |= {key.upper() for key in RouterConfig.model_fields} | _readme_config_table_env_vars()
    for name in candidates:
        monkeypatch.delenv(name, raising=False)
    baseline = RouterConfig().model_dump()
    read = set()
    for name in sorted(candidates):
        monkeypatch.setenv(name, "[1")  # valid for a free-text key, invalid for every other type
        try:
            changed = RouterConfig().model_dump() != baseline
        except ConfigError as exc:
            changed = True
            assert name in str(exc), f"the error for a bad {name} does not name it: {exc}"
        monkeypatch.delenv(name)
        if changed:
            read.add(name)
    return read


def _package_env_reads() -> set[str]:
    """Env var names the package's modules look up (``os.environ.get``, ``env.get``, ``_get(env, ...)``),
    as string literals or module constants (``PORT_ENV = "..."``)."""
    import ast

    package = Path(mem0_routed.__file__).parent
    found: set[str] = set()
    for path in package.rglob("*.py"):
        if "testing" in path.relative_to(package).parts:
            continue
        tree = ast.parse(path.read_text())
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                     for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            lookup = (isinstance(func, ast.Attribute) and func.attr in ("get", "getenv")
                      and ast.unparse(func.value) in ("os.environ", "environ", "env", "os")) or (
                isinstance(func, ast.Name) and func.id in ("_get", "getenv"))
            for arg in node.args if lookup else ():
                value = arg.value if isinstance(arg, ast.Constant) else constants.get(getattr(arg, "id", ""))
                if isinstance(value, str) and _ENV_NAME.fullmatch(value):
                    found.add(value)
    return found


@pytest.fixture(scope="module")
def router_config_reads() -> set[str]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _router_config_reads(monkeypatch)


def test_router_config_reads_exactly_the_env_vars_its_readme_table_documents(router_config_reads: set[str]) -> None:
    from mem0_routed._config import ROUTER_ENV_VARS

    documented = _readme_config_table_env_vars()
    assert {"OLLAMA_URL", "OPENAI_API_KEY", "LLM_LOCAL_THRESHOLD", "LLM_ROUTING_ENABLED", "MEM0_LLM_MODEL",
            "MEM0_EMBEDDER_MODEL", "MEM0_ROUTED_LEDGER", "MEM0_ROUTED_MONTHLY_BUDGET_USD"} <= documented
    assert router_config_reads == documented == set(ROUTER_ENV_VARS.values())


def test_every_env_var_the_package_reads_is_in_the_readme_and_back(router_config_reads: set[str]) -> None:
    readme = set(re.findall(r"`(" + _ENV_NAME.pattern + ")", _README.read_text())) - _NOT_ENV_VARS
    code = router_config_reads | _package_env_reads()
    assert {"MEM0_ROUTED_AUTOLOAD", "MEM0_ROUTED_PROMETHEUS_PORT", "MEM0_LLM_PROVIDER"} <= code  # the scan works
    assert code == readme, f"read but undocumented: {sorted(code - readme)}; documented but not read: {sorted(readme - code)}"


def test_an_undocumented_per_key_env_var_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from mem0_routed import RouterConfig

    monkeypatch.setenv("MEM0_ROUTED_DEADLINE_S", "1")
    monkeypatch.setenv("MEM0_ROUTED_KEEP_LOCAL_PATTERNS", '["("]')
    cfg = RouterConfig()
    assert cfg.deadline_s == 180.0 and cfg.keep_local_patterns == []
