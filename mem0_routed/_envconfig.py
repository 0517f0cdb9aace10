"""A mem0 config from the seed deployment's environment variables, for servers that build theirs in code.

mem0's REST server (``server/main.py``) builds one ``DEFAULT_CONFIG`` dict in code and passes it to
``Memory.from_config``; the deployment this router came from chose providers with env vars instead.
:func:`mem0_config_from_env` bridges the two: give it the server's dict, get it back with the ``llm``
and ``embedder`` sections the env vars ask for::

    initialize_state(mem0_routed.mem0_config_from_env(DEFAULT_CONFIG))

Env vars (the seed's names): ``MEM0_LLM_PROVIDER`` (``routed``, ``ollama``, ``openai``, ...),
``MEM0_LLM_MODEL``, ``MEM0_EMBEDDER_PROVIDER``, ``MEM0_EMBEDDER_MODEL``, ``OLLAMA_URL``,
``LLM_LOCAL_THRESHOLD``, ``OPENAI_API_KEY``; plus ``MEM0_ROUTED_EMBEDDING_DIMS`` when the embedding
model is not one whose size is known here. A provider env var that is unset leaves that section of
``base`` alone.

The OpenAI key is never copied into the dict for ``routed`` (the router reads ``OPENAI_API_KEY``
itself): servers echo their config (``GET /configure``) and would show it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

from ._config import DEFAULT_EMBEDDING_MODEL, DEFAULT_OLLAMA_URL, RouterConfig
from ._errors import ConfigError

__all__ = ["EMBEDDING_DIMS", "ENV_VARS", "mem0_config_from_env"]

ENV_VARS = (
    "MEM0_LLM_PROVIDER",
    "MEM0_LLM_MODEL",
    "MEM0_EMBEDDER_PROVIDER",
    "MEM0_EMBEDDER_MODEL",
    "OLLAMA_URL",
    "LLM_LOCAL_THRESHOLD",
    "OPENAI_API_KEY",
)

#: Vector sizes of common Ollama embedding models (the tag is ignored), so the vector store matches.
EMBEDDING_DIMS = {
    "nomic-embed-text": 768,
    "mxbai-embed-large": 1024,
    "all-minilm": 384,
    "snowflake-arctic-embed": 1024,
    "bge-m3": 1024,
    "bge-large": 1024,
    "granite-embedding": 384,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
}
_ROUTED = "routed"


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _dims(env: Mapping[str, str], model: str) -> int | None:
    raw = _get(env, "MEM0_ROUTED_EMBEDDING_DIMS")
    if raw is not None:
        try:
            dims = int(raw)
        except ValueError:
            dims = 0
        if dims <= 0:
            raise ConfigError(f"MEM0_ROUTED_EMBEDDING_DIMS={raw!r} is not a positive integer; e.g. 768",
                              key="embedding_dims")
        return dims
    return EMBEDDING_DIMS.get(model.split(":", 1)[0].rsplit("/", 1)[-1])


def _llm(env: Mapping[str, str], provider: str) -> dict[str, Any]:
    model = _get(env, "MEM0_LLM_MODEL")
    if provider == _ROUTED:
        config: dict[str, Any] = {}  # the router reads OLLAMA_URL, LLM_LOCAL_THRESHOLD, OPENAI_API_KEY
        if model:
            config["model"] = model
        return {"provider": provider, "config": config}
    config = {"model": model} if model else {}
    if provider == "ollama":
        config["ollama_base_url"] = _first_ollama_url(env)
    return {"provider": provider, "config": config}


def _first_ollama_url(env: Mapping[str, str]) -> str:
    """mem0's own ollama providers take one URL; ``OLLAMA_URL`` may list several for the router."""
    return (_get(env, "OLLAMA_URL") or DEFAULT_OLLAMA_URL).split(",")[0].strip()


def _embedder(env: Mapping[str, str], provider: str) -> tuple[dict[str, Any], int | None]:
    model = _get(env, "MEM0_EMBEDDER_MODEL")
    effective = model or (DEFAULT_EMBEDDING_MODEL if provider in (_ROUTED, "ollama") else "")
    dims = _dims(env, effective) if effective else None
    config: dict[str, Any] = {"model": model} if model else {}
    if dims:
        config["embedding_dims"] = dims
    if provider == "ollama":
        config["ollama_base_url"] = _first_ollama_url(env)
    return {"provider": provider, "config": config}, dims


def mem0_config_from_env(
    base: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``base`` (deep-copied, never changed) with ``llm``/``embedder`` chosen by the seed's env vars.

    With ``routed`` the router settings are checked now, so a bad ``LLM_LOCAL_THRESHOLD`` or
    ``OLLAMA_URL`` fails at start-up as a ``ConfigError`` naming the env var. When the embedding
    size is known, the vector store's ``embedding_model_dims`` is set to match (mem0's default of
    1536 would fail on the first insert with a 768-d model).
    """
    env = os.environ if env is None else env
    config: dict[str, Any] = copy.deepcopy(dict(base or {}))
    llm_provider = _get(env, "MEM0_LLM_PROVIDER")
    emb_provider = _get(env, "MEM0_EMBEDDER_PROVIDER")
    if llm_provider:
        config["llm"] = _merged(config.get("llm"), _llm(env, llm_provider.lower()))
    if emb_provider:
        embedder, dims = _embedder(env, emb_provider.lower())
        config["embedder"] = _merged(config.get("embedder"), embedder)
        store = config.get("vector_store")
        if dims and isinstance(store, dict):
            store_config = store.setdefault("config", {})
            if isinstance(store_config, dict):
                store_config["embedding_model_dims"] = dims
    if _ROUTED in {(llm_provider or "").lower(), (emb_provider or "").lower()}:
        _check_router_env(env)
    return config


def _merged(base: Any, section: dict[str, Any]) -> dict[str, Any]:
    """The env's section; when it names the provider ``base`` already has (not ``routed``, whose keys
    differ), ``base``'s other settings (temperature, api_key, ...) are kept under the env's values."""
    if (isinstance(base, dict) and section["provider"] != _ROUTED and base.get("provider") == section["provider"]
            and isinstance(base.get("config"), dict)):
        return {"provider": section["provider"], "config": {**base["config"], **section["config"]}}
    return section


def _check_router_env(env: Mapping[str, str]) -> None:
    """Validate the router's env vars now (``RouterConfig`` reads ``os.environ``; mirror ``env``)."""
    values: dict[str, Any] = {}
    for name, key in (("OLLAMA_URL", "ollama_base_url"), ("LLM_LOCAL_THRESHOLD", "local_threshold")):
        value = _get(env, name)
        if value is not None:
            values[key] = value
    RouterConfig.from_mapping(values)
