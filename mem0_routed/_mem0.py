"""The mem0 provider classes: ``RoutedLLM``, ``RoutedEmbedder`` and ``RoutedLlmConfig``.

mem0 builds these itself once :func:`mem0_routed.register` has taught it the name ``"routed"``
(see ``_registration.py``); a user changes only ``"provider": "routed"`` in their mem0 config::

    import mem0_routed  # registers "routed"; must come before Memory.from_config
    from mem0 import Memory

    memory = Memory.from_config({
        "llm": {"provider": "routed", "config": {"model": "mistral:7b"}},
        "embedder": {"provider": "routed", "config": {"embedding_dims": 768}},
        "vector_store": {"provider": "qdrant", "config": {"embedding_model_dims": 768}},
    })

Every key mem0's own configs know keeps its meaning; every other key is a ``RouterConfig`` key
(e.g. ``ollama_base_url``, ``openai_api_key``, ``local_threshold``). Nothing here touches the
network: the router is made on the first call and owns retries, fallback, caching and checks.

Errors: mem0 wraps an exception from the LLM in its own ``LLMError`` during ``add`` but lets an
embedder's exception through untouched, so "Ollama down" used to reach a mem0 user as two unrelated
types. Here a failed routed call raises ``RoutedLLMError`` (a ``RoutingError`` *and* mem0's
``LLMError``) or ``RoutedEmbeddingError`` (a ``RoutingError`` *and* mem0's ``EmbeddingError``): one
``except mem0.exceptions.MemoryError`` (mem0's base class) catches every provider failure, with the
routing details one ``mem0_routed.routing_error(exc)`` away.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from mem0.configs.embeddings.base import BaseEmbedderConfig
from mem0.configs.llms.base import BaseLlmConfig
from mem0.embeddings.base import EmbeddingBase
from mem0.exceptions import EmbeddingError, LLMError
from mem0.llms.base import LLMBase

from ._config import RouterConfig, is_external_model_name
from ._errors import BudgetExceeded, ConfigError, RoutingError
from ._types import QueryType

if TYPE_CHECKING:
    from ._router import Router

__all__ = ["RoutedBudgetExceeded", "RoutedEmbedder", "RoutedEmbeddingError", "RoutedLLM", "RoutedLLMError", "RoutedLlmConfig",
           "check_embedder_config", "check_llm_config"]

logger = logging.getLogger("mem0_routed")

#: Keys of mem0's ``BaseLlmConfig``; everything else in a routed LLM config goes to ``RouterConfig``.
MEM0_LLM_KEYS = (
    "model",
    "temperature",
    "api_key",
    "max_tokens",
    "top_p",
    "top_k",
    "enable_vision",
    "vision_details",
    "reasoning_effort",
    "http_client_proxies",
    "is_reasoning_model",
)


def _router_for(config: RouterConfig) -> Router:
    """Imported late: a config check or a mem0 config build needs no HTTP clients."""
    from ._router import router_for

    return router_for(config)


# --- errors mem0 users catch ------------------------------------------------------------------------


def _mem0_fields(err: RoutingError, error_code: str) -> None:
    """Fill mem0's ``MemoryError`` attributes (its ``__init__`` is not on our MRO path)."""
    err.message = str(err)  # type: ignore[attr-defined]
    err.error_code = error_code  # type: ignore[attr-defined]
    err.details = {"attempts": [f"{a.backend} {a.model}: {a.error}" for a in err.attempts],  # type: ignore[attr-defined]
                   "blocked_by": err.blocked_by}
    err.suggestion = "; ".join(err.fixes) or None  # type: ignore[attr-defined]
    err.debug_info = {}  # type: ignore[attr-defined]


class RoutedLLMError(RoutingError, LLMError):
    """A routed LLM call failed: a ``RoutingError`` and mem0's ``LLMError`` (``suggestion`` = fixes)."""

    def __init__(self, error: RoutingError) -> None:
        RoutingError.__init__(self, str(error.args[0]).split("\n")[0] if error.args else "",
                              error.attempts, blocked_by=error.blocked_by)
        _mem0_fields(self, "LLM_001")


class RoutedBudgetExceeded(RoutedLLMError, BudgetExceeded):
    """A routed LLM call needed the external model but the budget is spent: ``except BudgetExceeded``
    and ``except mem0.exceptions.MemoryError`` both catch it."""


def _llm_error(exc: RoutingError) -> RoutedLLMError:
    return RoutedBudgetExceeded(exc) if isinstance(exc, BudgetExceeded) else RoutedLLMError(exc)


class RoutedEmbeddingError(RoutingError, EmbeddingError):
    """A routed embedding failed: a ``RoutingError`` and mem0's ``EmbeddingError``."""

    def __init__(self, error: RoutingError) -> None:
        RoutingError.__init__(self, str(error.args[0]).split("\n")[0] if error.args else "",
                              error.attempts, blocked_by=error.blocked_by)
        _mem0_fields(self, "EMBED_001")


# --- config translation ------------------------------------------------------------------------------


def _llm_router_options(model: Any, api_key: str | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """mem0's ``model``/``api_key`` -> router keys; explicit router keys win."""
    out = dict(options)
    if isinstance(model, str) and model.strip():
        if is_external_model_name(model):
            # mem0's llm_reranker injects model="gpt-5-mini"; routing picks the model, not mem0.
            logger.debug("mem0-routed: ignoring external model name %r; the router picks the model", model)
        else:
            out.setdefault("llm_model", model)
    elif model is not None and not isinstance(model, str):
        raise ConfigError(
            f"model: {type(model).__name__} is not a model name; give a string such as 'mistral:7b'",
            key="model",
        )
    if api_key:
        out.setdefault(_api_key_field(out), api_key)
    return out


#: mem0's own providers for these servers: ``vllm`` and ``lmstudio`` (their ``api_key`` is the server's).
_MEM0_SERVER_URL_KEYS = ("vllm_base_url", "lmstudio_base_url")


def _api_key_field(options: Mapping[str, Any]) -> str:
    """Where mem0's ``api_key`` goes. Next to mem0's ``vllm_base_url``/``lmstudio_base_url`` (a
    config moved from mem0's ``vllm`` or ``lmstudio`` provider) it is that server's key: read as the
    OpenAI key, it went to api.openai.com in every fallback's Authorization header."""
    return "openai_compatible_api_key" if any(options.get(k) for k in _MEM0_SERVER_URL_KEYS) else "openai_api_key"


def _embedder_router_options(options: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(options)
    model = out.pop("model", None)
    if model is not None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(
                f"model: {model!r} is not an embedding model name; e.g. 'nomic-embed-text:latest'",
                key="model",
            )
        out.setdefault("embedder_model", model)
    api_key = out.pop("api_key", None)
    if api_key:
        out.setdefault(_api_key_field(out), api_key)
    return out


def check_llm_config(config: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` for a bad routed LLM config; called by mem0's config validation."""
    options = {k: v for k, v in config.items() if k not in MEM0_LLM_KEYS}
    RouterConfig.from_mapping(_llm_router_options(config.get("model"), config.get("api_key"), options))


def check_embedder_config(config: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` for a bad routed embedder config; called by mem0's config validation."""
    RouterConfig.from_mapping(_embedder_router_options(config))


# --- LLM -----------------------------------------------------------------------------------------------


class RoutedLlmConfig(BaseLlmConfig):
    """mem0's LLM config plus every ``RouterConfig`` key.

    ``model``: a local (Ollama) name sets the general local model; an OpenAI name such as mem0's
    injected ``gpt-5-mini`` is ignored, because the router decides where a call goes.
    ``api_key``: the OpenAI key for the rare external fallback; kept only as a secret.
    """

    def __init__(
        self,
        model: str | dict[str, Any] | None = None,
        temperature: float = 0.1,
        api_key: str | None = None,
        max_tokens: int = 2000,
        top_p: float = 0.1,
        top_k: int = 1,
        enable_vision: bool = False,
        vision_details: str | None = "auto",
        reasoning_effort: str | None = None,
        http_client_proxies: dict[str, Any] | str | None = None,
        is_reasoning_model: bool | None = None,
        **router_options: Any,
    ) -> None:
        super().__init__(
            model=model,
            temperature=temperature,
            api_key=None,  # lives in router_config as a SecretStr, never in plain text here
            max_tokens=max_tokens,
            top_p=top_p,
            top_k=top_k,
            enable_vision=enable_vision,
            vision_details=vision_details,
            reasoning_effort=reasoning_effort,
            http_client_proxies=http_client_proxies,
            is_reasoning_model=is_reasoning_model,
        )
        self.router_config = RouterConfig.from_mapping(_llm_router_options(model, api_key, router_options))

    def __repr__(self) -> str:
        return (
            f"RoutedLlmConfig(model={self.model!r}, temperature={self.temperature}, "
            f"max_tokens={self.max_tokens}, top_p={self.top_p}, router={self.router_config.safe_dict()!r})"
        )


class RoutedLLM(LLMBase):
    """mem0's LLM interface in front of the local-first router.

    Serves every call mem0 makes (extraction, procedural memory, vision descriptions, the
    llm_reranker's scoring); AsyncMemory runs these in threads, which the router allows.
    """

    def __init__(self, config: RoutedLlmConfig | BaseLlmConfig | Mapping[str, Any] | None = None) -> None:
        if config is None:
            config = RoutedLlmConfig()
        elif isinstance(config, Mapping):
            config = RoutedLlmConfig(**config)
        elif not isinstance(config, RoutedLlmConfig):
            config = RoutedLlmConfig(**{k: getattr(config, k) for k in MEM0_LLM_KEYS if hasattr(config, k)})
        super().__init__(config)
        self.config: RoutedLlmConfig = config
        self._router: Router | None = None

    @property
    def router(self) -> Router:
        """The process-wide router for this config, made on first use (no network before)."""
        if self._router is None:
            router = _router_for(self.config.router_config)
            router.serves_mem0 = True  # size the extraction model for mem0's prompt from the first call
            self._router = router
        return self._router

    def generate_response(
        self,
        messages: list[dict[str, Any]],
        response_format: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str = "auto",
        **kwargs: Any,
    ) -> str | dict[str, Any]:
        """Route one chat call. With ``tools``, returns ``{"content", "tool_calls"}`` like mem0's providers."""
        params: dict[str, Any] = {
            "temperature": kwargs.pop("temperature", self.config.temperature),
            "max_tokens": kwargs.pop("max_tokens", self.config.max_tokens),
            "top_p": kwargs.pop("top_p", self.config.top_p),
        }
        force_local = bool(kwargs.pop("force_local", False))
        if kwargs:
            logger.debug("mem0-routed: ignoring unsupported generate_response arguments %s", sorted(kwargs))
        try:
            outcome = self.router.chat(
                messages,
                response_format=response_format,
                tools=tools,
                tool_choice=tool_choice if tools else None,
                force_local=force_local,
                **params,
            )
        except RoutedLLMError:
            raise
        except RoutingError as exc:
            raise _llm_error(exc) from exc
        if tools:
            calls = [
                {"name": call.get("name"), "arguments": call.get("arguments", {})}
                for call in outcome.tool_calls or []
            ]
            return {"content": outcome.text, "tool_calls": calls}
        return outcome.text


# --- embedder --------------------------------------------------------------------------------------


class RoutedEmbedder(EmbeddingBase):
    """mem0's embedder interface in front of the router's embedding path.

    The model is fixed per config (``model``, else env ``MEM0_EMBEDDER_MODEL``, else
    ``nomic-embed-text:latest``): vectors of different models must never share a collection, so
    failover only moves to another Ollama host serving the same model. Unlike mem0's ollama
    embedder, nothing is listed or pulled at construction.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | BaseEmbedderConfig | None = None,
        *,
        vector_config: Any = None,
    ) -> None:
        options = _embedder_options(config)
        self.router_config = RouterConfig.from_mapping(_embedder_router_options(options))
        self.model = self.router_config.model_for(QueryType.EMBEDDING)
        store_dims = getattr(vector_config, "embedding_model_dims", None)
        dims = self.router_config.embedding_dims
        if dims is not None and isinstance(store_dims, int) and dims != store_dims:
            raise ConfigError(
                f"embedder embedding_dims={dims} but vector_store embedding_model_dims={store_dims} "
                "(qdrant's default is 1536 when unset); set both to the size your embedding model "
                f"({self.model}) returns, e.g. 768 for nomic-embed-text",
                key="embedding_dims",
            )
        # Without embedding_dims, the store's size is what every vector must have.
        self.dims: int | None = (
            dims if dims is not None else (store_dims if isinstance(store_dims, int) else None)
        )
        base = BaseEmbedderConfig(
            model=self.model,
            embedding_dims=self.dims,
            ollama_base_url=self.router_config.ollama_urls[0],
        )
        super().__init__(base)
        self._router: Router | None = None

    @property
    def router(self) -> Router:
        """The process-wide router for this config, made on first use (no network before)."""
        if self._router is None:
            self._router = _router_for(self.router_config)
        return self._router

    def embed(
        self, text: str, memory_action: Literal["add", "search", "update"] | None = None
    ) -> list[float]:
        """One vector; ``memory_action`` does not change the vector for local models. The router
        picks the model of its local tier (this config's model on Ollama, the packaged one embedded)."""
        try:
            return self.router.embed([text], dims=self.dims)[0]
        except RoutingError as exc:
            raise _embedding_error(exc) from exc

    def embed_batch(self, texts: list[str], memory_action: str = "add") -> list[list[float]]:
        """Many vectors in one batched call (the router caches by model and text)."""
        if not texts:
            return []
        try:
            return self.router.embed(list(texts), dims=self.dims)
        except RoutingError as exc:
            raise _embedding_error(exc) from exc


def _embedding_error(exc: RoutingError) -> RoutedEmbeddingError:
    return exc if isinstance(exc, RoutedEmbeddingError) else RoutedEmbeddingError(exc)


def _embedder_options(config: Mapping[str, Any] | BaseEmbedderConfig | None) -> dict[str, Any]:
    """The routed embedder's keys from a dict, or from a BaseEmbedderConfig mem0 built itself."""
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    if isinstance(config, BaseEmbedderConfig):
        out: dict[str, Any] = {}
        for key in ("model", "embedding_dims", "ollama_base_url", "api_key", "openai_base_url"):
            value = getattr(config, key, None)
            if value is not None:
                out[key] = value
        return out
    raise ConfigError(
        f"embedder config: {type(config).__name__} is not a dict; give a dict such as "
        "{'model': 'nomic-embed-text:latest'}",
        key="config",
    )
