"""RouterConfig: env vars, precedence, and an error naming key, value and what is allowed."""

from __future__ import annotations

import logging

import pytest

from mem0_routed import ConfigError, RouterConfig
from mem0_routed._config import DEFAULT_MODELS, is_external_model_name

ENV_VARS = ["OLLAMA_URL", "OPENAI_API_KEY", "LLM_LOCAL_THRESHOLD", "LLM_ROUTING_ENABLED", "MEM0_LLM_MODEL",
            "MEM0_EMBEDDER_MODEL", "MEM0_ROUTED_LEDGER", "MEM0_ROUTED_MONTHLY_BUDGET_USD"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_seed_route_table() -> None:
    cfg = RouterConfig.from_mapping()
    assert cfg.ollama_base_url == "http://localhost:11434"
    assert cfg.models == DEFAULT_MODELS
    assert cfg.models["embedding"] == "nomic-embed-text:latest"
    assert cfg.models["code"] == "deepseek-coder:6.7b"
    assert {cfg.models[k] for k in ("simple", "summarization", "extraction")} == {"mistral:7b"}
    assert cfg.models["medium"] == cfg.models["complex"] == "codellama:13b"
    assert cfg.fallback_model == "gpt-4o-mini"
    assert cfg.local_threshold == 95 and cfg.routing_enabled is True and cfg.monthly_budget_usd is None
    assert cfg.max_external_share == pytest.approx(0.05)


def test_env_vars_fill_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_URL", "http://a:11434, http://b:11435")
    monkeypatch.setenv("LLM_LOCAL_THRESHOLD", "90")
    monkeypatch.setenv("LLM_ROUTING_ENABLED", "false")
    monkeypatch.setenv("MEM0_LLM_MODEL", "qwen2.5:0.5b")
    monkeypatch.setenv("MEM0_EMBEDDER_MODEL", "mxbai-embed-large")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-envkey-123456")
    cfg = RouterConfig.from_mapping()
    assert cfg.ollama_urls == ["http://a:11434", "http://b:11435"]
    assert cfg.local_threshold == 90 and cfg.routing_enabled is False
    assert cfg.models["simple"] == cfg.models["extraction"] == cfg.models["summarization"] == "qwen2.5:0.5b"
    assert cfg.models["code"] == "deepseek-coder:6.7b"  # only the general routes change
    assert cfg.models["embedding"] == "mxbai-embed-large"
    assert cfg.openai_api_key is not None and cfg.openai_api_key.get_secret_value() == "sk-envkey-123456"


def test_explicit_keys_beat_env_vars_and_explicit_models_beat_mem0_llm_model(monkeypatch) -> None:
    monkeypatch.setenv("LLM_LOCAL_THRESHOLD", "90")
    monkeypatch.setenv("MEM0_LLM_MODEL", "qwen2.5:0.5b")
    cfg = RouterConfig.from_mapping({"local_threshold": 80, "models": {"extraction": "llama3.1:8b"}})
    assert cfg.local_threshold == 80
    assert cfg.models["extraction"] == "llama3.1:8b"
    assert cfg.models["simple"] == "qwen2.5:0.5b"


def test_list_of_urls_is_kept_and_trailing_slashes_dropped() -> None:
    cfg = RouterConfig.from_mapping(ollama_base_url=["http://h1:11434/", "https://h2", "http://[::1]:11434"])
    assert cfg.ollama_urls == ["http://h1:11434", "https://h2", "http://[::1]:11434"]


@pytest.mark.parametrize(
    ("values", "key", "fragments"),
    [
        ({"local_threshold": 150}, "local_threshold", ["150", "0 to 100", "LLM_LOCAL_THRESHOLD"]),
        ({"local_threshold": -1}, "local_threshold", ["-1", "0 to 100"]),
        ({"monthly_budget_usd": -5}, "monthly_budget_usd", ["-5", "negative", "0 or more"]),
        ({"models": {"fancy": "x:1b"}}, "models", ["'fancy'", "embedding, code, simple"]),
        ({"models": {"simple": ""}}, "models", ["empty model name", "simple"]),
        ({"models": {"simple": "   "}}, "models", ["empty model name"]),
        ({"ollama_base_url": "localhost:11434"}, "ollama_base_url", ["'localhost:11434'", "http://localhost:11434"]),
        ({"ollama_base_url": ["http://ok:1", "bad host"]}, "ollama_base_url", ["'bad host'"]),
        ({"ollama_base_url": []}, "ollama_base_url", ["at least one URL"]),
        ({"openai_base_url": "api.openai.com"}, "openai_base_url", ["'api.openai.com'", "https://"]),
        ({"fallback_model": ""}, "fallback_model", ["empty model name"]),
        ({"local_threshold": "lots"}, "local_threshold", ["'lots'", "valid number"]),
        ({"keep_local_call_kinds": ["mem0_everything"]}, "keep_local_call_kinds", ["'mem0_everything'", "mem0_extraction"]),
        ({"no_such_key": 1}, "no_such_key", ["unknown key 'no_such_key'", "ollama_base_url"]),
        ({"breaker_cooldown_s": 0}, "breaker_cooldown_s", ["greater than 0"]),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(values: dict, key: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        RouterConfig.from_mapping(values)
    assert info.value.key == key
    message = str(info.value)
    assert key in message
    for fragment in fragments:
        assert fragment in message
    assert "Traceback" not in message and "pydantic" not in message.lower()


def test_bad_env_value_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_LOCAL_THRESHOLD", "150")
    with pytest.raises(ConfigError, match="LLM_LOCAL_THRESHOLD"):
        RouterConfig.from_mapping()


def test_api_key_never_in_repr_dump_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-proj-SUPERSECRET-abcdef0123456789"
    caplog.set_level(logging.DEBUG)
    cfg = RouterConfig.from_mapping(openai_api_key=secret)
    assert secret not in repr(cfg) and secret not in str(cfg)
    assert secret not in str(cfg.safe_dict()) and cfg.safe_dict()["openai_api_key"] == "set"
    with pytest.raises(ConfigError) as info:
        RouterConfig.from_mapping(openai_api_key=secret, local_threshold=500)
    assert secret not in str(info.value)
    with pytest.raises(ConfigError) as info:
        RouterConfig.from_mapping(openai_api_key=12345678901234)
    assert "12345678901234" not in str(info.value) and "value hidden" in str(info.value)
    assert secret not in caplog.text


@pytest.mark.parametrize("name", ["gpt-5-mini", "gpt-4o-mini", "o3-mini", "o1", "chatgpt-4o-latest"])
def test_openai_names_are_recognised_as_external(name: str) -> None:
    assert is_external_model_name(name)


@pytest.mark.parametrize("name", ["mistral:7b", "qwen2.5:0.5b", "llama3.1", "phi3", "gpt-oss:20b"])
def test_local_names_are_not_external(name: str) -> None:
    assert not is_external_model_name(name)


@pytest.mark.parametrize("value", ["memory", "sqlite", "/tmp/ledger.sqlite3", "sqlite:///tmp/x.db", "redis://h:6379/0"])
def test_ledger_forms_are_accepted(value: str) -> None:
    assert RouterConfig.from_mapping(ledger=value).ledger == value


def test_unknown_ledger_scheme_is_rejected_without_echoing_a_password() -> None:
    with pytest.raises(ConfigError) as info:
        RouterConfig.from_mapping(ledger="postgres://admin:hunter2@db:5432/x")
    assert "hunter2" not in str(info.value) and "redis://" in str(info.value)


def test_default_ledger_is_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEM0_ROUTED_LEDGER", raising=False)
    assert RouterConfig.from_mapping().ledger == "sqlite"


# --- issue 11: NaN/inf, passwords in URLs, settings that make every local call fail ------------------


@pytest.mark.parametrize("key", ["monthly_budget_usd", "local_threshold", "read_timeout_s", "connect_timeout_s",
                                 "external_timeout_s", "breaker_cooldown_s", "share_window_days"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "NaN", "inf"])
def test_nan_and_inf_are_rejected_for_every_number(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        RouterConfig.from_mapping({key: value})
    assert info.value.key == key and "finite" in str(info.value)


@pytest.mark.parametrize("value", ["NaN", "nan", "inf", "-Infinity"])
def test_nan_budget_from_the_env_is_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MEM0_ROUTED_MONTHLY_BUDGET_USD", value)
    with pytest.raises(ConfigError, match="MEM0_ROUTED_MONTHLY_BUDGET_USD") as info:
        RouterConfig.from_mapping()
    assert "finite" in str(info.value)


@pytest.mark.parametrize(("values", "env"), [
    ({"ollama_base_url": "http://bob:hunter2@gpu:11434"}, {}),
    ({"ollama_base_url": ["http://ok:1", "bob:hunter2@gpu:11434"]}, {}),
    ({"openai_base_url": "https://bob:hunter2@proxy/v1"}, {}),
    ({"openai_base_url": "https://bob:hunter2@proxy:badport/v1"}, {}),
    ({}, {"OLLAMA_URL": "http://bob:hunter2@gpu:11434"}),
    ({"ledger": "postgres://bob:hunter2@db/x"}, {}),
])  # fmt: skip
def test_a_password_in_a_url_is_never_echoed(monkeypatch: pytest.MonkeyPatch, values: dict, env: dict) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        RouterConfig.from_mapping(values)
    assert "hunter2" not in str(info.value) and "***" in str(info.value)


def test_cli_ollama_url_with_a_password_is_masked() -> None:
    from click.testing import CliRunner

    from mem0_routed._cli import main

    result = CliRunner().invoke(main, ["--ollama-url", "http://bob:hunter2@gpu:11434", "explain", "hi"])
    assert result.exit_code != 0 and "hunter2" not in result.output and "hunter2" not in str(result.exception)


def test_backends_built_by_hand_never_show_a_password() -> None:
    from mem0_routed.backends._ollama import OllamaBackend
    from mem0_routed.backends._openai import OpenAIBackend

    ollama = OllamaBackend("http://bob:hunter2@127.0.0.1:9", connect_timeout_s=0.2)
    health = ollama.health(timeout_s=0.2)
    shown = [repr(ollama), ollama.name, str(health)]
    shown.append(repr(OpenAIBackend(None, base_url="https://bob:hunter2@proxy/v1")))
    assert not any("hunter2" in s for s in shown) and all("***" in s for s in shown)


@pytest.mark.parametrize(("values", "key", "fragments"), [
    ({"num_ctx_min": 8192, "num_ctx_max": 4096}, "num_ctx_max", ["8192", "4096", "raise num_ctx_max"]),
    ({"num_ctx_max": 2048, "default_max_tokens": 2000, "num_ctx_min": 1024}, "num_ctx_max",
     ["no room for a prompt", "at least 2256"]),
    ({"num_ctx_min": 0}, "num_ctx_min", ["0", "below 256"]),
    ({"num_ctx_max": 10}, "num_ctx_max", ["10", "below 256"]),
    ({"default_max_tokens": 0}, "default_max_tokens", ["1 or more"]),
    ({"embedding_dims": 0}, "embedding_dims", ["1 or more"]),
    ({"read_timeout_s": 0}, "read_timeout_s", ["greater than 0"]),
    ({"connect_timeout_s": -1}, "connect_timeout_s", ["greater than 0"]),
    ({"local_backend": "llamacpp"}, "local_backend", ["'llamacpp'", "'ollama'", "'embedded'"]),
    ({"compact_extraction": "sometimes"}, "compact_extraction", ["'sometimes'", "'auto'"]),
    ({"models": {"simple": "gpt-4o-mini"}}, "models", ["OpenAI model", "fallback_model"]),
    ({"llm_model": "gpt-4o"}, "models", ["OpenAI model", "MEM0_LLM_MODEL"]),
    ({"embedder_model": "text-embedding-3-small"}, "models", ["'embedding'", "OpenAI model"]),
    ({"fallback_context_window": 0}, "fallback_context_window", ["1 or more"]),
])  # fmt: skip
def test_settings_that_make_every_local_call_fail_are_rejected(values: dict, key: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        RouterConfig.from_mapping(values)
    assert info.value.key == key, str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_consistent_num_ctx_settings_are_accepted() -> None:
    cfg = RouterConfig.from_mapping(num_ctx_min=2048, num_ctx_max=8192, default_max_tokens=2000)
    assert (cfg.num_ctx_min, cfg.num_ctx_max) == (2048, 8192)


@pytest.mark.parametrize("build", ["direct", "from_mapping", "router", "mem0"])
def test_a_bad_regex_fails_when_the_config_is_built_naming_key_pattern_error_and_fix(build: str) -> None:
    from mem0.configs.base import MemoryConfig

    from mem0_routed import Router

    values = {"keep_local_patterns": [r"\bok\b", "acme-(secret"], "ledger": "memory"}
    with pytest.raises((ConfigError, ValueError)) as info:
        if build == "direct":
            RouterConfig(**values)
        elif build == "from_mapping":
            RouterConfig.from_mapping(values)
        elif build == "router":
            Router(values)
        else:  # mem0 checks the routed provider's keys when its config is built
            MemoryConfig(llm={"provider": "routed", "config": values})
    message = str(info.value)
    for fragment in ("keep_local_patterns", "'acme-(secret'", "missing ), unterminated subpattern", "re.escape"):
        assert fragment in message, message
    if build != "mem0":
        assert isinstance(info.value, ConfigError) and info.value.key == "keep_local_patterns"


@pytest.mark.parametrize(("env", "value"), [
    ("OLLAMA_URL", "gpu:11434"), ("OPENAI_API_KEY", "sk-with space"), ("LLM_LOCAL_THRESHOLD", "lots"),
    ("LLM_ROUTING_ENABLED", "maybe"), ("MEM0_ROUTED_MONTHLY_BUDGET_USD", "NaN"), ("MEM0_LLM_MODEL", "   "),
    ("MEM0_EMBEDDER_MODEL", "   "), ("MEM0_ROUTED_LOCAL_BACKEND", "llamacpp"), ("MEM0_ROUTED_LEDGER", "postgres://db"),
    ("MEM0_ROUTED_EMBEDDING_DIMS", "0"),
])  # fmt: skip
def test_every_documented_env_var_with_a_bad_value_is_named(monkeypatch: pytest.MonkeyPatch, env: str, value: str) -> None:
    from mem0_routed._config import ROUTER_ENV_VARS

    assert env in ROUTER_ENV_VARS.values()
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=env) as info:
        RouterConfig()
    assert info.value.key in ROUTER_ENV_VARS and ROUTER_ENV_VARS[info.value.key] == env
