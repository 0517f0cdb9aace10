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
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ._errors import ConfigError
from ._types import CallKind, QueryType

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
_URL_RE = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[^\s/:@\[\]]+)(:\d{1,5})?(/[^\s]*)?$")  # [::1] too
# Names that are OpenAI's, not a local model's: mem0's llm_reranker injects model="gpt-5-mini".
# gpt-oss is an open-weight model that Ollama serves, so it is local (vLLM names it openai/gpt-oss-20b).
_EXTERNAL_MODEL_RE = re.compile(r"^(gpt-(?!oss)|o\d|chatgpt-|text-|davinci|openai/(?!gpt-oss))", re.IGNORECASE)


def _mask_token(token: str) -> str:
    """One whitespace-free URL: everything up to its last "@" is user-info. A path holding an "@"
    is over-masked, which is harmless for display; a password holding "/" or "@" is still hidden."""
    scheme, sep, rest = token.partition("://")
    if not sep:
        scheme, rest = "", token
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return token
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:***" if colon and "/" not in user else "***"  # a lone "token@" is itself the secret
    return f"{scheme}{sep}{shown}@{host}"


def mask_url(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host``: URLs are shown, passwords never.

    Works on malformed URLs too (no scheme, bad port), since those are the ones echoed in errors."""
    return url if "@" not in url else re.sub(r"\S*@\S*", lambda m: _mask_token(m.group(0)), url)


def mask_urls(text: str) -> str:
    """Every ``scheme://user:password@`` in a message masked (error texts, log lines); e-mail
    addresses outside URLs are left alone."""
    return text if "@" not in text else re.sub(r"\S*://\S*@\S*", lambda m: _mask_token(m.group(0)), text)


def has_credentials(value: Any) -> bool:
    """Whether a config value (or anything inside it) is a URL with a user or password in it."""
    if isinstance(value, str):
        return "://" in value and "@" in value.split("://", 1)[1].split("/", 1)[0]
    if isinstance(value, Mapping):
        return any(has_credentials(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_credentials(v) for v in value)
    return False


_MIN_CTX = 256  # tokens: no useful prompt fits in less


def _no_credentials(url: str) -> None:
    if has_credentials(url) or ("://" not in url and "@" in url):
        raise ValueError(f"{mask_url(url)!r} has credentials in it (user:password@), which would show in "
                         "logs and errors; remove them (a proxy in front of Ollama can add them) and pass the "
                         "OpenAI key as openai_api_key or OPENAI_API_KEY")


def is_external_model_name(name: str) -> bool:
    """True for names like ``gpt-5-mini`` that can never be an Ollama model."""
    return bool(_EXTERNAL_MODEL_RE.match(name))


class RouterConfig(BaseSettings):
    """Everything the router needs. Build it with :meth:`from_mapping` to get friendly errors."""

    model_config = SettingsConfigDict(
        env_prefix="MEM0_ROUTED_",
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
        "openai_compatible_urls", "OPENAI_COMPATIBLE_URLS", "vllm_base_url", "lmstudio_base_url"))
    openai_compatible_api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices(
        "openai_compatible_api_key", "OPENAI_COMPATIBLE_API_KEY"))
    openai_compatible_context_window: int | None = None  # tokens, for servers that do not report one
    openai_compatible_structured_output: Literal["auto", "json_schema", "json_object", "guided_json", "none"] = "auto"
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
    embedding_dims: int | None = None
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
            _no_credentials(url)
            if not _URL_RE.match(url):
                raise ValueError(
                    f"{mask_url(url)!r} is not an http(s) URL; write it with a scheme, e.g. 'http://{mask_url(url)}'")
        return [u.rstrip("/") for u in v] if isinstance(v, list) else v.rstrip("/")

    @field_validator("openai_compatible_urls", mode="before")
    @classmethod
    def _check_compat_urls(cls, v: Any) -> Any:
        urls = [u.strip() for u in v.split(",") if u.strip()] if isinstance(v, str) else v
        if isinstance(urls, list):
            for url in urls:
                if isinstance(url, str):
                    _no_credentials(url)
                    if not _URL_RE.match(url):
                        raise ValueError(f"{mask_url(url)!r} is not an http(s) URL; e.g. 'http://localhost:8000/v1' "
                                         "(vLLM), 'http://localhost:8080/v1' (llama-server)")
        return urls

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
            _no_credentials(v)
            if not _URL_RE.match(v):
                raise ValueError(f"{mask_url(v)!r} is not an http(s) URL, e.g. 'https://api.openai.com/v1'")
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
        "openai_compatible_context_window", mode="before",
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
        low = v.strip().lower()
        if low in ("memory", "memory://", ":memory:", "sqlite") or low.startswith(("sqlite://", "redis://", "rediss://")):
            return v.strip()
        if "://" in low or not low:
            raise ValueError(f"{mask_url(v)!r} is not a ledger; allowed: 'memory', 'sqlite', a file path, "
                             "'sqlite:///path', 'redis://host:6379/0'")
        return v.strip()

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
        if v is not None and v < _MIN_CTX:
            raise ValueError(f"{v} is below {_MIN_CTX} tokens, too small for any prompt; the default is "
                             "4096 for num_ctx_min and the model's window for num_ctx_max")
        return v

    def _check_together(self) -> RouterConfig:
        """Settings that are each valid but together make every local call fail."""
        top = self.num_ctx_max
        if top is not None and top < self.num_ctx_min:
            raise ValueError(f"num_ctx_max {top} is below num_ctx_min {self.num_ctx_min}; "
                             f"raise num_ctx_max or lower num_ctx_min to at most {top}")
        if top is not None and top < self.default_max_tokens + _MIN_CTX:
            raise ValueError(f"num_ctx_max {top} leaves no room for a prompt next to default_max_tokens "
                             f"{self.default_max_tokens}; raise num_ctx_max to at least "
                             f"{self.default_max_tokens + _MIN_CTX} or lower default_max_tokens")
        for route, model in self.models.items():
            if is_external_model_name(model):  # Ollama never has it: every call of the route would fail
                raise ValueError(f"models[{route!r}] = {model!r} is an OpenAI model, but routes name local "
                                 "(Ollama) models (MEM0_LLM_MODEL/llm_model fill the general routes); give e.g. "
                                 "'mistral:7b' and set fallback_model for OpenAI")
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
        return self._check_together()

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
        return {key: _masked(value) for key, value in data.items()}

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, _masked(value)  # any "user:password@" in any value, not only the URL keys

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None, /, **overrides: Any) -> RouterConfig:
        """Build from a mem0-style dict plus env vars, turning pydantic's errors into ``ConfigError``."""
        from pydantic_settings import SettingsError

        data = {**(values or {}), **overrides}
        try:
            return cls(**data)
        except ValidationError as exc:
            raise _friendly(exc) from None
        except SettingsError as exc:  # an env var for a list/dict key that is not JSON
            found = re.search(r'field "(\w+)"', str(exc))
            key = found.group(1) if found else None
            env = _ENV_NAMES.get(key or "", f"MEM0_ROUTED_{(key or '?').upper()}")
            raise ConfigError(f"invalid mem0-routed configuration:\n  {key} (env {env}) is not valid JSON; "
                              "give a JSON list or object, e.g. '[\"a\"]' or '{\"simple\": \"mistral:7b\"}'",
                              key=key) from None


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    return value


_ENV_NAMES = {
    "ollama_base_url": "OLLAMA_URL",
    "openai_api_key": "OPENAI_API_KEY",
    "local_threshold": "LLM_LOCAL_THRESHOLD",
    "routing_enabled": "LLM_ROUTING_ENABLED",
    "llm_model": "MEM0_LLM_MODEL",
    "embedder_model": "MEM0_EMBEDDER_MODEL",
    "monthly_budget_usd": "MEM0_ROUTED_MONTHLY_BUDGET_USD",
    "ledger": "MEM0_ROUTED_LEDGER",
    "local_backend": "MEM0_ROUTED_LOCAL_BACKEND",
    "openai_compatible_urls": "OPENAI_COMPATIBLE_URLS",
    "openai_compatible_api_key": "OPENAI_COMPATIBLE_API_KEY",
}
_SECRET_KEYS = {"openai_api_key", "OPENAI_API_KEY", "openai_compatible_api_key", "OPENAI_COMPATIBLE_API_KEY"}


def _friendly(exc: ValidationError) -> ConfigError:
    """One readable sentence per problem: key (and env var), value, what is allowed."""
    lines = []
    first_key = None
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err.get("loc", ()) if not str(p).startswith(("function-", "str", "list["))]
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        named = msg.split(" ", 1)[0].split("[", 1)[0]  # a check across keys names its key first
        key = loc[0] if loc else named if named in RouterConfig.model_fields else "?"
        first_key = first_key or key
        if err.get("type") == "extra_forbidden":
            known = ", ".join(sorted(RouterConfig.model_fields))
            lines.append(f"unknown key {key!r} for the routed provider; known keys: {known}")
            continue
        env = _ENV_NAMES.get(key)
        where = f"{key} (env {env})" if env else key
        if key in _SECRET_KEYS:
            lines.append(f"{where}: {msg} (value hidden)")
        elif not loc:
            lines.append(msg)
        elif err.get("type", "").endswith(("_parsing", "_type", "literal_error", "finite_number")) and "input" in err:
            lines.append(f"{where}: {_masked(err['input'])!r} is invalid: {msg}")  # a URL's password never
        else:
            lines.append(f"{where}: {msg}")
    # a credentialed URL given for any key (not only the URL keys) is masked wherever it is echoed:
    # over-masks an e-mail address, which is harmless in an error; never shows a "user:password@"
    return ConfigError("invalid mem0-routed configuration:\n  " + "\n  ".join(map(mask_url, lines)), key=first_key)
