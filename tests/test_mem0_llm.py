"""RoutedLLM / RoutedLlmConfig against a fake router: what mem0 gives is what the router gets."""

from __future__ import annotations

import logging
import socket
from types import SimpleNamespace
from typing import Any

import pytest
from mem0.configs.llms.base import BaseLlmConfig
from mem0.utils.factory import LlmFactory

from mem0_routed import ConfigError, _mem0, register
from mem0_routed._mem0 import RoutedLLM, RoutedLlmConfig

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]


@pytest.fixture(autouse=True)
def _registered() -> None:
    register()


@pytest.fixture
def router(mocker: Any) -> Any:
    """A stand-in Router; ``_router_for`` hands it out and records the config it was asked for."""
    fake = mocker.Mock(name="Router")
    fake.chat.return_value = SimpleNamespace(text="answer", tool_calls=None, is_local=True)
    mocker.patch.object(_mem0, "_router_for", return_value=fake)
    return fake


def test_config_params_reach_the_router(router: Any) -> None:
    llm = RoutedLLM({"temperature": 0.7, "max_tokens": 321, "top_p": 0.9})
    assert llm.generate_response(MESSAGES) == "answer"
    router.chat.assert_called_once()
    args, kwargs = router.chat.call_args
    assert args[0] == MESSAGES
    assert (kwargs["temperature"], kwargs["max_tokens"], kwargs["top_p"]) == (0.7, 321, 0.9)
    assert kwargs["tools"] is None and kwargs["tool_choice"] is None and kwargs["response_format"] is None


def test_call_kwargs_override_config(router: Any) -> None:
    llm = RoutedLLM({"temperature": 0.7, "max_tokens": 321})
    fmt = {"type": "json_object"}
    llm.generate_response(MESSAGES, response_format=fmt, temperature=0.0, max_tokens=50)
    kwargs = router.chat.call_args.kwargs
    assert (kwargs["temperature"], kwargs["max_tokens"], kwargs["top_p"]) == (0.0, 50, 0.1)
    assert kwargs["response_format"] == fmt


def test_tools_return_mem0s_dict_shape(router: Any) -> None:
    calls = [{"name": "add_memory", "arguments": {"data": "likes tea"}}]
    router.chat.return_value = SimpleNamespace(text="", tool_calls=calls, is_local=True)
    tools = [{"type": "function", "function": {"name": "add_memory", "parameters": {"type": "object"}}}]
    out = RoutedLLM().generate_response(MESSAGES, tools=tools, tool_choice="required")
    assert out == {"content": "", "tool_calls": calls}
    assert router.chat.call_args.kwargs["tools"] == tools
    assert router.chat.call_args.kwargs["tool_choice"] == "required"


def test_tools_without_calls_give_an_empty_list(router: Any) -> None:
    out = RoutedLLM().generate_response(MESSAGES, tools=[{"type": "function", "function": {"name": "f"}}])
    assert out == {"content": "answer", "tool_calls": []}


def test_vision_content_lists_pass_through_unchanged(router: Any) -> None:
    vision = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "describe"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    RoutedLLM({"enable_vision": True}).generate_response(vision)
    assert router.chat.call_args.args[0] == vision


def test_local_model_name_sets_the_general_model(router: Any) -> None:
    llm = RoutedLLM({"model": "qwen2.5:3b"})
    assert llm.config.router_config.llm_model == "qwen2.5:3b"
    assert llm.config.router_config.model_for("extraction") == "qwen2.5:3b"
    llm.generate_response(MESSAGES)
    llm.generate_response(MESSAGES)
    # one router for the LLM's config, made on first use and kept
    _mem0._router_for.assert_called_once_with(llm.config.router_config)  # type: ignore[attr-defined]


def test_external_model_name_is_ignored(caplog: pytest.LogCaptureFixture, monkeypatch: Any) -> None:
    monkeypatch.delenv("MEM0_LLM_MODEL", raising=False)
    with caplog.at_level(logging.DEBUG, logger="mem0_routed"):
        cfg = RoutedLlmConfig(model="gpt-5-mini")
    assert cfg.router_config.llm_model is None
    assert "gpt-5-mini" not in cfg.router_config.models.values()
    assert any("gpt-5-mini" in r.getMessage() for r in caplog.records)


def test_reranker_style_creation_goes_through_the_factory(router: Any) -> None:
    # what mem0's llm_reranker does: setdefault model/temperature/max_tokens, then LlmFactory.create
    llm = LlmFactory.create(
        "routed",
        {
            "ollama_base_url": "http://127.0.0.1:9",
            "model": "gpt-5-mini",
            "temperature": 0.0,
            "max_tokens": 100,
        },
    )
    assert isinstance(llm, RoutedLLM)
    assert llm.config.router_config.llm_model is None
    llm.generate_response([{"role": "user", "content": "Query: a\nDocument: b"}])
    assert router.chat.call_args.kwargs["max_tokens"] == 100


def test_api_key_becomes_the_secret_openai_key() -> None:
    cfg = RoutedLlmConfig(api_key="sk-unit-secret-42")
    assert cfg.router_config.openai_api_key is not None
    assert cfg.router_config.openai_api_key.get_secret_value() == "sk-unit-secret-42"
    assert cfg.api_key is None
    assert "sk-unit-secret-42" not in repr(cfg) and "sk-unit-secret-42" not in str(vars(cfg).get("api_key"))


def test_explicit_router_key_wins_over_model() -> None:
    cfg = RoutedLlmConfig(model="mistral:7b", llm_model="llama3.2:3b")
    assert cfg.router_config.llm_model == "llama3.2:3b"


def test_bad_key_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="unknown key 'temprature'") as info:
        RoutedLlmConfig(temprature=0.3)
    assert info.value.key == "temprature"
    with pytest.raises(ConfigError, match="local_threshold"):
        LlmFactory.create("routed", {"local_threshold": 101})
    with pytest.raises(ConfigError, match="model"):
        RoutedLlmConfig(model={"name": "x"})


def test_base_config_is_converted(router: Any) -> None:
    llm = RoutedLLM(BaseLlmConfig(model="phi3:mini", temperature=0.2, max_tokens=77))
    assert isinstance(llm.config, RoutedLlmConfig)
    assert llm.config.router_config.llm_model == "phi3:mini"
    llm.generate_response(MESSAGES)
    assert router.chat.call_args.kwargs["max_tokens"] == 77


def test_no_network_at_construction(mocker: Any) -> None:
    connect = mocker.patch.object(socket.socket, "connect", side_effect=AssertionError("network used"))
    router_for = mocker.patch.object(_mem0, "_router_for")
    llm = LlmFactory.create("routed", {"model": "mistral:7b", "ollama_base_url": "http://10.255.255.1:11434"})
    assert isinstance(llm, RoutedLLM)
    connect.assert_not_called()
    router_for.assert_not_called()


def test_router_errors_reach_mem0_as_its_llm_error_with_the_routing_details(router: Any) -> None:
    from mem0.exceptions import LLMError
    from mem0.exceptions import MemoryError as Mem0Error

    from mem0_routed import RoutedLLMError, RoutingError, routing_error
    from mem0_routed._types import Attempt

    original = RoutingError("every candidate failed", [Attempt("ollama@h", "qwen", "refused", fix="start Ollama")])
    router.chat.side_effect = original
    with pytest.raises(RoutingError, match="every candidate failed") as info:
        RoutedLLM().generate_response(MESSAGES)
    err = info.value
    assert isinstance(err, RoutedLLMError) and isinstance(err, LLMError) and isinstance(err, Mem0Error)
    assert str(err) == str(original) and err.attempts == original.attempts
    assert err.suggestion == "start Ollama" and err.error_code == "LLM_001"  # mem0's own fields
    assert err.__cause__ is original and routing_error(err) is err
    wrapped = LLMError(f"LLM extraction failed: {err}")  # what mem0's add does with it
    wrapped.__cause__ = err
    assert routing_error(wrapped) is err


def test_a_spent_budget_stays_a_budget_exceeded_for_mem0_users(router: Any) -> None:
    """The wrapper turned BudgetExceeded into a plain RoutedLLMError: `except BudgetExceeded` missed it."""
    from mem0.exceptions import LLMError

    from mem0_routed import BudgetExceeded

    router.chat.side_effect = BudgetExceeded("no candidate could serve the call", [], blocked_by="budget spent")
    with pytest.raises(BudgetExceeded) as info:
        RoutedLLM().generate_response(MESSAGES)
    assert isinstance(info.value, LLMError) and info.value.blocked_by == "budget spent"
