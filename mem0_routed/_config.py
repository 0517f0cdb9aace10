"""The router's configuration: one pydantic model filled from a mem0 ``config`` dict, env vars, or both.

Precedence, highest first: keys given explicitly (mem0 config dict / keyword arguments), the env
vars named below, the defaults. Every bad value raises ``ConfigError`` naming the key, the value
and what is allowed; the OpenAI key is a ``SecretStr`` and never appears in a repr, error or log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from ._config_checks import MIN_CTX, check_private_tier, check_together, is_external_model_name
from ._config_env import DocumentedEnvSource, env_names
from ._config_errors import friendly_error, settings_error
from ._ledger._url import parse_ledger_url
from ._types import CallKind, QueryType
from ._urls import (
    check_url,
    check_url_list,
    has_credentials,
    mask_url,
    mask_urls,
    masked,
)

__all__ = [
    "DEFAULT_EMBEDDING_MODEL", "DEFAULT_FALLBACK_MODEL", "DEFAULT_MODELS", "DEFAULT_OLLAMA_URL", "GENERAL_ROUTES",
    "ROUTER_ENV_VARS", "RouterConfig", "has_credentials", "is_external_model_name", "mask_url", "mask_urls",
]

DEFAULT_OLLAMA_URL = "http://localhost:11434"
DEFAULT_EMBEDDING_MODEL = "nomic-embed-text:latest"
DEFAULT_FALLBACK_MODEL = "gpt-4o-mini"

#: The seed's route table: query type -> local model.
DEFAULT_MODELS: dict[str, str] = {
    QueryType.EMBEDDING.value: DEFAULT_EMBEDDING_MODEL,
    QueryType.CODE.value: "deepseek-coder:6.7b",
    QueryType.SIMPLE.value: "mistral:7b",
    QueryType.SUMMARIZATION.value: "mistral:7b",
    QueryType.EXTRACTION.value: "mistral:7b",
    QueryType.MEDIUM.value: "codellama:13b",
    QueryType.COMPLEX.value: "codellama:13b",
}

#: Routes that ``MEM0_LLM_MODEL`` (the "general" local model) replaces.
GENERAL_ROUTES = (QueryType.SIMPLE.value, QueryType.SUMMARIZATION.value, QueryType.EXTRACTION.value)

_ROUTE_NAMES = tuple(q.value for q in QueryType)
_CALL_KINDS = tuple(c.value for c in CallKind)


class RouterConfig(BaseSettings):
    """Everything the router needs. A bad value raises ``ConfigError`` at construction.

    Only the keys whose field names an env var (``validation_alias``) read the environment; see
    ``_config_env``."""

    model_config = SettingsConfigDict(
        extra="forbid",
        populate_by_name=True,
        validate_default=True,
        hide_input_in_errors=True,
        env_ignore_empty=True,
        allow_inf_nan=False,  # NaN compares false with everything: a NaN budget would be no cap at all
    )

    ollama_base_url: str | list[str] = Field(
        default=DEFAULT_OLLAMA_URL, validation_alias=AliasChoices("OLLAMA_URL")
    )
    models: dict[str, str] = Field(default_factory=dict)
    fallback_model: str = DEFAULT_FALLBACK_MODEL
    fallback_context_window: int | None = None  # tokens; None: known for OpenAI's models, else 128k
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY")
    )
    openai_base_url: str | None = None
    local_threshold: float = Field(
        default=95.0, validation_alias=AliasChoices("LLM_LOCAL_THRESHOLD")
    )
    routing_enabled: bool = Field(
        default=True, validation_alias=AliasChoices("LLM_ROUTING_ENABLED")
    )
    monthly_budget_usd: float | None = Field(
        default=None, validation_alias=AliasChoices("MEM0_ROUTED_MONTHLY_BUDGET_USD")
    )
    llm_model: str | None = Field(default=None, validation_alias=AliasChoices("MEM0_LLM_MODEL"))
    embedder_model: str | None = Field(
        default=None, validation_alias=AliasChoices("MEM0_EMBEDDER_MODEL")
    )

    # --- execution -------------------------------------------------------------------------------
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 300.0
    external_timeout_s: float = 60.0
    max_retries: int = 2
    breaker_failures: int = 3
    breaker_cooldown_s: float = 30.0
    default_max_tokens: int = 1024  # answer cap when the caller gives none (small models may never stop)
    num_ctx_min: int = 4096
    num_ctx_max: int | None = None
    compact_extraction: Literal["auto", "always", "never"] = "auto"
    skip_small_talk: bool = True  # mem0 extraction of greetings only: answer {"memory": []} without a model
    local_backend: str = Field(  # "auto" or a local kind of backends.KINDS
        default="auto", validation_alias=AliasChoices("MEM0_ROUTED_LOCAL_BACKEND")
    )
    embedded_models: dict[str, str] = Field(default_factory=dict)
    # --- OpenAI-compatible local servers: vLLM, SGLang, llama-server, LM Studio (backends/_openai_compat.py) ---
    openai_compatible_urls: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias=AliasChoices(
        "OPENAI_COMPATIBLE_URLS", "openai_compatible_urls", "vllm_base_url", "lmstudio_base_url"))
    openai_compatible_api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices(
        "OPENAI_COMPATIBLE_API_KEY", "openai_compatible_api_key"))
    openai_compatible_context_window: int | None = None  # tokens, for servers that do not report one
    openai_compatible_structured_output: Literal["auto", "json_schema", "json_object", "guided_json", "none"] = "auto"
    openai_compatible_allow_public_hosts: bool = False  # a server outside private networks may be this tier
    # --- deadlines, speed, warm models (see _speed.py) ----------------------------------------------
    deadline_s: float = 180.0  # one deadline per call: every retry and fallback included
    call_deadline_margin: float = 3.0  # a local call may take this many times its predicted time
    call_deadline_floor_s: float = 15.0
    call_deadline_ceiling_s: float = 120.0
    extraction_latency_budget_s: float = 30.0  # mem0's full extraction prompt only if predicted within
    keep_alive: str | float = "1h"  # Ollama keeps the models loaded this long after a call

    @field_validator("deadline_s", "call_deadline_margin", "call_deadline_floor_s", "call_deadline_ceiling_s",
                     "extraction_latency_budget_s")
    @classmethod
    def _check_deadline(cls, v: float) -> float:
        if not v > 0 or v == float("inf"):
            raise ValueError(f"{v} must be a finite number greater than 0")
        return v

    @field_validator("max_retries")
    @classmethod
    def _check_retries(cls, v: int) -> int:
        if v > 10:
            raise ValueError(f"{v} is too many; allowed: 0 to 10 (deadline_s bounds the time anyway)")
        return v

    @field_validator("keep_alive")
    @classmethod
    def _check_keep_alive(cls, v: str | float) -> str | float:
        if isinstance(v, str) and not re.match(r"^-?\d+(\.\d+)?(ms|s|m|h)?$", v.strip()):
            raise ValueError(f"{v!r} is not a duration; e.g. '30m', '1h', '3600' (seconds), '-1' (for ever), '0'")
        if isinstance(v, float) and v != v:
            raise ValueError("NaN is not a duration; e.g. '1h'")
        if isinstance(v, str) and v.strip().lstrip("-").replace(".", "", 1).isdigit():
            return float(v)  # Ollama reads a bare number as seconds, a string only with a unit
        return v.strip() if isinstance(v, str) else v

    # --- ledger, privacy ---------------------------------------------------------------------------
    ledger: str = Field(default="sqlite", validation_alias=AliasChoices("MEM0_ROUTED_LEDGER"))
    share_window_days: float = 30.0
    keep_local_secrets: bool = True
    keep_local_pii: bool = True
    keep_local_patterns: list[str] = Field(default_factory=list)
    keep_local_call_kinds: list[str] = Field(default_factory=list)
    log_prompts: bool = False
    embedding_dims: int | None = Field(
        default=None, validation_alias=AliasChoices("MEM0_ROUTED_EMBEDDING_DIMS")
    )
    embedding_cache_size: int = 4096

    # --- validators --------------------------------------------------------------------------------
    @field_validator("ollama_base_url", mode="before")
    @classmethod
    def _split_urls(cls, v: Any) -> Any:
        if isinstance(v, str) and "," in v:  # OLLAMA_URL="http://a:11434,http://b:11434"
            return [part.strip() for part in v.split(",") if part.strip()]
        return v

    @field_validator("ollama_base_url")
    @classmethod
    def _check_urls(cls, v: str | list[str]) -> str | list[str]:
        urls = [v] if isinstance(v, str) else v
        if not urls:
            raise ValueError("needs at least one URL, e.g. 'http://localhost:11434'")
        for url in urls:
            check_url(url, f"; write it with a scheme, e.g. 'http://{mask_url(url)}'")
        return [u.rstrip("/") for u in v] if isinstance(v, list) else v.rstrip("/")

    @field_validator("openai_compatible_urls", mode="before")
    @classmethod
    def _check_compat_urls(cls, v: Any) -> Any:
        return check_url_list(v, "e.g. 'http://localhost:8000/v1' (vLLM), 'http://localhost:8080/v1' (llama-server)")

    @field_validator("local_backend")
    @classmethod
    def _check_local_backend(cls, v: str) -> str:
        from .backends._kinds import local_kinds

        allowed = ["auto", *local_kinds()]
        if v not in allowed:
            raise ValueError(f"{v!r} is not a local backend; allowed: {', '.join(map(repr, allowed))}")
        return v

    @field_validator("openai_base_url")
    @classmethod
    def _check_openai_url(cls, v: str | None) -> str | None:
        if v is not None:
            check_url(v, ", e.g. 'https://api.openai.com/v1'")
        return v

    @field_validator("models")
    @classmethod
    def _check_models(cls, v: dict[str, str]) -> dict[str, str]:
        for key, model in v.items():
            if key not in _ROUTE_NAMES:
                raise ValueError(f"unknown route type {key!r}; allowed: {', '.join(_ROUTE_NAMES)}")
            if not isinstance(model, str) or not model.strip():
                raise ValueError(f"models[{key!r}] is an empty model name; give an Ollama model such as 'mistral:7b'")
        return v

    @field_validator("fallback_model", "llm_model", "embedder_model")
    @classmethod
    def _check_name(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("is an empty model name")
        return v

    @field_validator(
        "local_threshold", "monthly_budget_usd", "share_window_days", "connect_timeout_s", "read_timeout_s",
        "external_timeout_s", "breaker_cooldown_s", "max_retries", "breaker_failures", "default_max_tokens",
        "num_ctx_min", "num_ctx_max", "fallback_context_window", "embedding_dims", "embedding_cache_size",
        "openai_compatible_context_window",
        mode="before",
    )
    @classmethod
    def _not_a_bool(cls, v: Any) -> Any:
        """``true`` is no number: pydantic reads it as 1, so ``local_threshold: true`` meant a 1 %
        threshold (99 % of calls allowed out) and ``monthly_budget_usd: true`` a $1 cap."""
        if isinstance(v, bool):
            raise ValueError(f"{v} is a yes/no value, not a number; give a number (or leave the key out)")
        return v

    @field_validator("openai_api_key", "openai_compatible_api_key")
    @classmethod
    def _check_key(cls, v: SecretStr | None) -> SecretStr | None:
        """A blank key is no key; a key with a space, line break, control or non-ASCII character
        inside cannot go in an HTTP header, and the HTTP library's DEBUG log and error then print
        the whole header, key included. Never echoes the key."""
        if v is None:
            return None
        raw = v.get_secret_value().strip()
        if not raw:
            return None
        bad = next((i for i, ch in enumerate(raw) if not "!" <= ch <= "~"), None)
        if bad is not None:
            raise ValueError(f"has a space, line break, control or non-ASCII character at position {bad} "
                             "(a copy-paste error?); copy the key again")
        return SecretStr(raw)

    @field_validator("local_threshold")
    @classmethod
    def _check_threshold(cls, v: float) -> float:
        if not 0 <= v <= 100:
            raise ValueError(f"{v} is not a percentage; allowed: 0 to 100 (default 95)")
        return v

    @field_validator("monthly_budget_usd")
    @classmethod
    def _check_budget(cls, v: float | None) -> float | None:
        if v is not None and v < 0:
            raise ValueError(f"{v} is negative; allowed: 0 or more US dollars, or unset for no cap")
        return v

    @field_validator("ledger")
    @classmethod
    def _check_ledger(cls, v: str) -> str:

        parse_ledger_url(v)  # ConfigError is a ValueError: pydantic reports its sentence
        return v.strip()

    @field_validator("keep_local_patterns")
    @classmethod
    def _check_patterns(cls, v: list[str]) -> list[str]:
        """Compiled now, so a typo fails at start-up rather than on the first call it would check."""
        for i, pattern in enumerate(v):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {i} {pattern!r} is not a valid regular expression ({exc}); fix the "
                                 "regex, or escape literal text with re.escape() (e.g. '\\.' for a dot)") from None
        return v

    @field_validator("keep_local_call_kinds")
    @classmethod
    def _check_kinds(cls, v: list[str]) -> list[str]:
        for kind in v:
            if kind not in _CALL_KINDS:
                raise ValueError(f"unknown call kind {kind!r}; allowed: {', '.join(_CALL_KINDS)}")
        return v

    @field_validator(
        "connect_timeout_s", "read_timeout_s", "external_timeout_s", "breaker_cooldown_s", "share_window_days"
    )
    @classmethod
    def _check_positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError(f"{v} must be greater than 0")
        return v

    @field_validator("max_retries", "breaker_failures", "embedding_cache_size")
    @classmethod
    def _check_count(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"{v} must be 0 or more")
        return v

    @field_validator("default_max_tokens", "embedding_dims", "fallback_context_window",
                     "openai_compatible_context_window")
    @classmethod
    def _check_size(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"{v} must be 1 or more (a size in tokens or dimensions)")
        return v

    @field_validator("num_ctx_min", "num_ctx_max")
    @classmethod
    def _check_ctx(cls, v: int | None) -> int | None:
        if v is not None and v < MIN_CTX:
            raise ValueError(f"{v} is below {MIN_CTX} tokens, too small for any prompt; the default is "
                             "4096 for num_ctx_min and the model's window for num_ctx_max")
        return v

    @model_validator(mode="after")
    def _check_private_tier(self) -> RouterConfig:
        check_private_tier(self.openai_compatible_urls, allow_public=self.openai_compatible_allow_public_hosts)
        return self

    @model_validator(mode="after")
    def _fill_routes(self) -> RouterConfig:
        # Explicit `models` entries win over MEM0_*_MODEL, which win over the seed's defaults.
        routes = dict(DEFAULT_MODELS)
        if self.llm_model:
            for key in GENERAL_ROUTES:
                routes[key] = self.llm_model
        if self.embedder_model:
            routes[QueryType.EMBEDDING.value] = self.embedder_model
        routes.update(self.models)
        self.models = routes
        check_together(num_ctx_min=self.num_ctx_min, num_ctx_max=self.num_ctx_max,
                       default_max_tokens=self.default_max_tokens, models=self.models)
        return self

    # --- helpers -----------------------------------------------------------------------------------
    @property
    def ollama_urls(self) -> list[str]:
        return [self.ollama_base_url] if isinstance(self.ollama_base_url, str) else list(self.ollama_base_url)

    @property
    def max_external_share(self) -> float:
        """The largest external fraction the threshold allows (0.05 for the default 95)."""
        return (100.0 - self.local_threshold) / 100.0

    def model_for(self, query_type: QueryType | str) -> str:
        return self.models[str(query_type)]

    def safe_dict(self) -> dict[str, Any]:
        """A dict for display: the key reported as set or not, never its value; URLs without passwords."""
        data = self.model_dump()
        data["openai_api_key"] = "set" if self.openai_api_key else None
        data["openai_compatible_api_key"] = "set" if self.openai_compatible_api_key else None
        return {key: masked(value) for key, value in data.items()}

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, masked(value)  # any "user:password@" in any value, not only the URL keys

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise friendly_error(exc, type(self).model_fields, ROUTER_ENV_VARS) from None
        except SettingsError as exc:
            raise settings_error(exc, ROUTER_ENV_VARS) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit keys, then the documented env vars; no ``.env`` file, no secrets directory."""
        return init_settings, DocumentedEnvSource(settings_cls)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None, /, **overrides: Any) -> RouterConfig:
        """Build from a mem0-style dict plus env vars (``overrides`` win over ``values``)."""
        return cls(**{**(values or {}), **overrides})


#: ``{key: env var}``: the only env vars ``RouterConfig`` reads (README, "Every config key").
ROUTER_ENV_VARS: dict[str, str] = env_names(RouterConfig.model_fields)
