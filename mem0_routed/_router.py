"""The router: the one object users and the mem0 glue hold.

``Router`` is a facade: it checks the caller's arguments and hands the work to its ``Runtime``
(``_runtime``: backends, breakers, context plans, ledger, records), which execution, embeddings,
health and warm-up receive. Backends, breakers and context plans are shared process-wide per host,
so two routers that talk to one Ollama agree about its health.

Sync and async: every method that does I/O has a sync form and an async twin whose name adds an
``a`` in front (``chat``/``achat``, ``query``/``aquery``, ``embed``/``aembed``, ``health``/``ahealth``,
``warmup``/``awarmup``, ``embedding_dims``/``aembedding_dims``). The seed's async names stay, as
aliases: ``await router.execute_query(...)`` is ``aquery``, ``await router.health_check()`` is
``ahealth``. Every argument is named in the signature, so a misspelt keyword raises ``TypeError``
on both paths.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from ._classify import classify_text
from ._config import RouterConfig
from ._drivers import run_async, run_sync
from ._embedding import embed, probe_dims
from ._errors import InvalidInput, Mem0RoutedError
from ._execute import execute_chat
from ._health import collect_health
from ._job import ChatJob, ChatOutcome
from ._ledger import Ledger
from ._metrics import query_metrics
from ._process import BREAKERS, PROCESS_RECORDS, SHARED_LOCK, reset_shared
from ._records import UsageRecord
from ._runtime import Runtime, process_cache_stats
from ._speed import SPEEDS
from ._spread import LOADS
from ._types import QueryMetrics, QueryType, RoutingDecision
from ._warmup import warmup
from .backends._base import Backend

#: Which calls ``get_metrics`` counts: this router's, every router's in the process, or the ledger's
#: (its share window, across processes and hosts when the ledger is shared).
MetricsScope = Literal["router", "process", "ledger"]
_SCOPES = ("router", "process", "ledger")


class Router:
    """Local-first router. Build it from a ``RouterConfig`` or a mem0-style dict (env vars fill the rest).

    See the module docstring for the sync/async naming scheme and the seed's aliases."""

    def __init__(
        self,
        config: RouterConfig | Mapping[str, Any] | None = None,
        *,
        backends: Sequence[Backend] | None = None,
        ledger: Ledger | None = None,
        hooks: Sequence[Callable[[UsageRecord], None]] = (),
    ) -> None:
        self.config = config if isinstance(config, RouterConfig) else RouterConfig.from_mapping(config or {})
        #: Execution state, for the package's own modules (``_execute``, ``_health``, the CLI, ...);
        #: not a stable API.
        self.runtime = Runtime(self.config, backends=backends, ledger=ledger, hooks=hooks)

    def __repr__(self) -> str:
        return f"Router(ollama={self.config.ollama_urls}, openai={'set' if self.config.openai_api_key else 'unset'})"

    @property
    def hooks(self) -> list[Callable[[UsageRecord], None]]:
        """This router's instrumentation hooks (``add_hook`` adds one to every router)."""
        return self.runtime.hooks

    @property
    def serves_mem0(self) -> bool:
        """Set by mem0's provider classes: size the extraction model for mem0's prompt from the first call."""
        return self.runtime.serves_mem0

    @serves_mem0.setter
    def serves_mem0(self, value: bool) -> None:
        self.runtime.serves_mem0 = value

    @property
    def ledger(self) -> Ledger:
        """The usage ledger (opened on first use from ``config.ledger``)."""
        return self.runtime.ledger

    # --- decisions ---------------------------------------------------------------------------------
    def classify_query(self, text: str, context_length: int | None = None) -> tuple[QueryType, int]:
        """The seed's ``(query type, complexity 1-10)`` of ``text``."""
        cls = classify_text(text, context_length)
        return cls.query_type, cls.complexity

    def route_query(self, text: str, query_type: QueryType | str | None = None, *,
                    force_local: bool = False) -> RoutingDecision:
        """Decide where ``text`` would go, with reasons, without calling any model."""
        decision, _ = self.runtime.decide(classify_text(text), text, query_type=query_type,
                                          force_local=force_local, probe=False)
        return decision

    # --- chat --------------------------------------------------------------------------------------
    def chat(self, messages: list[dict[str, Any]], *, response_format: Mapping[str, Any] | None = None,
             tools: list[dict[str, Any]] | None = None, tool_choice: str | None = None,
             temperature: float | None = None, max_tokens: int | None = None, top_p: float | None = None,
             force_local: bool = False, query_type: QueryType | str | None = None) -> ChatOutcome:
        """Route one chat call and return a validated answer, or raise ``RoutingError``."""
        job = self.runtime.prepare(messages, response_format=response_format, tools=tools, tool_choice=tool_choice,
                                   temperature=temperature, max_tokens=max_tokens, top_p=top_p,
                                   force_local=force_local, query_type=query_type)
        return run_sync(execute_chat(self.runtime, job))

    async def achat(self, messages: list[dict[str, Any]], *, response_format: Mapping[str, Any] | None = None,
                    tools: list[dict[str, Any]] | None = None, tool_choice: str | None = None,
                    temperature: float | None = None, max_tokens: int | None = None, top_p: float | None = None,
                    force_local: bool = False, query_type: QueryType | str | None = None) -> ChatOutcome:
        """``chat`` for asyncio: the backend calls run on the event loop, the rest in a worker thread."""
        def prepare() -> ChatJob:  # one worker-thread hop for the local tier's probe and the decision
            self.runtime.local_kind()
            return self.runtime.prepare(messages, response_format=response_format, tools=tools,
                                        tool_choice=tool_choice, temperature=temperature, max_tokens=max_tokens,
                                        top_p=top_p, force_local=force_local, query_type=query_type)

        job = await asyncio.to_thread(prepare)
        return await run_async(execute_chat(self.runtime, job))

    def query(self, text: str, force_local: bool = False, query_type: QueryType | str | None = None, *,
              response_format: Mapping[str, Any] | None = None, temperature: float | None = None,
              max_tokens: int | None = None, top_p: float | None = None) -> dict[str, Any]:
        """Route and run one prompt; the seed's dict: response, model, backend, cost, escalations, ..."""
        return self.chat(_prompt(text), response_format=response_format, temperature=temperature,
                         max_tokens=max_tokens, top_p=top_p, force_local=force_local,
                         query_type=query_type).to_dict()

    async def aquery(self, text: str, force_local: bool = False, query_type: QueryType | str | None = None, *,
                     response_format: Mapping[str, Any] | None = None, temperature: float | None = None,
                     max_tokens: int | None = None, top_p: float | None = None) -> dict[str, Any]:
        """``query`` for asyncio (the seed's ``execute_query``)."""
        out = await self.achat(_prompt(text), response_format=response_format, temperature=temperature,
                               max_tokens=max_tokens, top_p=top_p, force_local=force_local, query_type=query_type)
        return out.to_dict()

    #: The seed's name: ``await router.execute_query(text)``.
    execute_query = aquery

    # --- embeddings ----------------------------------------------------------------------------------
    def embed(self, texts: list[str], *, model: str | None = None, dims: int | None = None) -> list[list[float]]:
        """Embed with the one embedding model (never switched); cached; fails over across hosts only.
        The first vector's size is checked against ``dims`` (default ``embedding_dims``)."""
        return embed(self.runtime, texts, model=model, dims=dims)

    async def aembed(self, texts: list[str], *, model: str | None = None,
                     dims: int | None = None) -> list[list[float]]:
        return await asyncio.to_thread(embed, self.runtime, texts, model=model, dims=dims)

    def embedding_dims(self, *, model: str | None = None) -> int:
        """The size of the vectors the embedding model returns, asked once (the vector store's
        ``embedding_model_dims`` must match it). Not checked against ``embedding_dims``."""
        return probe_dims(self.runtime, model)

    async def aembedding_dims(self, *, model: str | None = None) -> int:
        return await asyncio.to_thread(probe_dims, self.runtime, model)

    # --- warm models -------------------------------------------------------------------------------
    def warmup(self, *, model: str | None = None, embedding_model: str | None = None) -> dict[str, Any]:
        """Load the chat model with the ``num_ctx`` its calls will use and prime Ollama's prompt
        cache with the extraction system prompt that will be sent; load the embedding model too.
        Measures the host's speed first when it is unknown (that decides full vs compact)."""
        return warmup(self.runtime, model=model, embedding_model=embedding_model)

    async def awarmup(self, *, model: str | None = None, embedding_model: str | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(warmup, self.runtime, model=model, embedding_model=embedding_model)

    # --- metrics and health --------------------------------------------------------------------------
    def metrics(self, scope: MetricsScope = "router") -> QueryMetrics:
        """The metrics as a ``QueryMetrics`` (the seed's fields as attributes, the rest in ``extra``).

        ``scope``: ``"router"`` counts this router's calls only (an idle router reports none);
        ``"process"`` every router's in this process (mem0 builds one for its LLM and one for its
        embedder); ``"ledger"`` the ledger's share window (``share_window_days``), which a shared
        ledger fills from every process. Each is scored against this router's ``local_threshold``."""
        rt = self.runtime
        cache: dict[str, Any] | None
        if scope == "router":
            records, cache = list(rt.records), rt.embedding_cache.stats()
        elif scope == "process":
            records, cache = list(PROCESS_RECORDS), process_cache_stats()
        elif scope == "ledger":  # the cache's counts live in the process; the ledger has none
            records, cache = rt.ledger.records(since=rt.share_since()), None
        else:
            raise InvalidInput(f"scope must be one of {', '.join(map(repr, _SCOPES))}, not {scope!r:.40}")
        out = query_metrics(records, local_threshold=self.config.local_threshold, embedding_cache=cache)
        out.extra.update(num_ctx=rt.planner.snapshot(), num_ctx_changes=dict(rt.planner.changes),
                         extraction_prompt=dict(rt.planner.choices), breakers=BREAKERS.snapshot(), scope=scope)
        return out

    def get_metrics(self, scope: MetricsScope = "router") -> dict[str, Any]:
        """The seed's metrics dict plus latency, escalations, fallbacks, errors and cache hit rate;
        ``scope`` as in ``metrics`` (default: this router's calls only)."""
        return self.metrics(scope).to_dict()

    def health(self) -> dict[str, Any]:
        """Tells "server down", "model not pulled" and "OpenAI not configured" apart, with fixes."""
        return collect_health(self.runtime)

    async def ahealth(self) -> dict[str, Any]:
        return await asyncio.to_thread(collect_health, self.runtime)

    #: The seed's name: ``await router.health_check()``.
    health_check = ahealth

    def close(self) -> None:
        """Close the ledger; the router stays usable (the ledger is reopened on the next call)."""
        self.runtime.close_ledger()


def _prompt(text: str) -> list[dict[str, Any]]:
    if not isinstance(text, str):
        raise InvalidInput(f"text must be a str, not {type(text).__name__}")
    return [{"role": "user", "content": text}]


class Mem0LLMRouter(Router):
    """The seed design's name for the router; identical to :class:`Router`."""


_DEFAULT: Router | None = None
_BY_CONFIG: dict[str, Router] = {}


def get_router() -> Router:
    """The process-wide router, configured from env vars on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        with SHARED_LOCK:
            if _DEFAULT is None:
                _DEFAULT = Router(RouterConfig.from_mapping())
    return _DEFAULT


def router_for(config: RouterConfig) -> Router:
    """One cached router per distinct configuration (the key's hash, never the key, is compared)."""
    data = config.model_dump(mode="json")
    if config.openai_api_key is not None:
        data["openai_api_key"] = hashlib.sha256(config.openai_api_key.get_secret_value().encode()).hexdigest()
    import json

    key = json.dumps(data, sort_keys=True)
    with SHARED_LOCK:
        router = _BY_CONFIG.get(key)
        if router is None:
            router = _BY_CONFIG[key] = Router(config)
        return router


def reset_routers() -> None:
    """Forget cached routers, shared backends, breakers, context plans and process records (tests)."""
    global _DEFAULT
    with SHARED_LOCK:
        _BY_CONFIG.clear()
        _DEFAULT = None
    reset_shared()
    SPEEDS.clear()
    LOADS.clear()


__all__ = ["Mem0LLMRouter", "Mem0RoutedError", "Router", "get_router", "reset_routers", "router_for"]
