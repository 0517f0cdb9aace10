"""The router: classify, decide, execute, record. The one object users and the mem0 glue hold.

Thread-safe (mem0's ``AsyncMemory`` calls the LLM from worker threads): shared state sits behind
short locks that are never held across a network call. Backends, breakers and context plans are
shared process-wide per host, so two routers that talk to one Ollama agree about its health.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from ._breaker import CircuitBreaker
from ._classify import check_encodable, check_params, classify_messages, classify_text
from ._config import RouterConfig, mask_url, mask_urls
from ._embedding import EmbeddingService
from ._errors import InvalidInput, Mem0RoutedError
from ._execute import ChatJob, ChatOutcome, execute_chat, run_async, run_sync
from ._health import collect_health
from ._inputs import check_images, check_response_format, check_tools
from ._policy import Policy
from ._privacy import scan_text
from ._requests import compact_extraction_need, mem0_extraction_need, message_text
from ._shared import (
    BREAKERS,
    HOOKS,
    LOCAL_KINDS,
    PROCESS_RECORDS,
    ROUTERS,
    SHARED_LOCK,
    cache_stats,
    make_backends,
    planner_for,
    reset_shared,
)
from ._speed import SPEEDS, describe
from ._spread import LOADS, LoadTicket
from ._types import Attempt, BackendKind, Candidate, Classification, QueryType, RoutingDecision
from ._usage import Ledger, Refusal, Reservation, ShareCounts, UsageRecord, utc_month_start
from ._warmup import predict_prompt_choice, warmup
from .backends._base import Backend
from .backends._kinds import kind_spec, local_kinds, of_kind

log = logging.getLogger("mem0_routed")



class Router:
    """Local-first router. Build it from a ``RouterConfig`` or a mem0-style dict (env vars fill the rest)."""

    def __init__(
        self,
        config: RouterConfig | Mapping[str, Any] | None = None,
        *,
        backends: Sequence[Backend] | None = None,
        ledger: Ledger | None = None,
        hooks: Sequence[Callable[[UsageRecord], None]] = (),
    ) -> None:
        self.config = config if isinstance(config, RouterConfig) else RouterConfig.from_mapping(config or {})
        self._explicit = list(backends) if backends is not None else None
        self._ledger = ledger
        self.hooks = list(hooks)
        self._lock = threading.Lock()
        self._local_kind: BackendKind | None = None
        self._policies: dict[str, Policy] = {}
        self._rr = itertools.count()
        self._rules: Any = None
        self._backend_lists: dict[str, list[Backend]] = {}
        #: Set by the mem0 provider classes: size for mem0's calls before they arrive.
        self.serves_mem0 = False
        self.embeddings = EmbeddingService(self)
        ROUTERS.add(self)
        # what this router's hosts are known by in the process-wide state (its own, if explicit)
        self._hosts_key = ",".join(self.config.ollama_urls) if self._explicit is None else f"explicit-{id(self)}"
        self.planner = planner_for(self._hosts_key, self.config)

    def __repr__(self) -> str:
        return f"Router(ollama={self.config.ollama_urls}, openai={'set' if self.config.openai_api_key else 'unset'})"

    # --- backends ----------------------------------------------------------------------------------
    def _backends_of(self, kind: str) -> list[Backend]:
        found = self._backend_lists.get(kind)
        if found is None:
            if self._explicit is not None:
                found = of_kind(self._explicit, kind)
            else:
                found = make_backends(self.config, kind)
            for b in found:  # keep the models loaded between calls (Ollama's default is 5 minutes)
                if getattr(b, "keep_alive", False) is None:
                    b.keep_alive = self.config.keep_alive  # type: ignore[attr-defined]
            self._backend_lists[kind] = found
        return found

    def backends_for(self, cand: Candidate) -> list[Backend]:
        """Backends that may serve ``cand``: healthy hosts first, then the least expected wait
        (calls in flight x measured latency, shared by the process's routers; see ``_spread``)."""
        found = self._backends_of(cand.backend)
        if len(found) < 2:
            return found
        return LOADS.order(found, name=lambda b: b.name, model=cand.model, turn=next(self._rr),
                           healthy=lambda b: self.breaker(b).state == "closed")

    def begin(self, backend: Backend, model: str | None = None) -> LoadTicket:
        """A call goes to ``backend``: set ``ticket.ok`` when it answered, then :meth:`end` it."""
        return LOADS.begin(backend.name, model)

    def end(self, backend: Backend, ticket: LoadTicket) -> None:
        LOADS.end(ticket)

    def breaker(self, backend: Backend) -> CircuitBreaker:
        return BREAKERS.get(backend.name, failures=self.config.breaker_failures,
                            cooldown_s=self.config.breaker_cooldown_s)

    def local_kind(self, *, probe: bool = True) -> BackendKind:
        """Which local tier serves this process: decided once per set of Ollama URLs (so the LLM's
        and the embedder's routers agree), because embeddings never switch model."""
        if self._local_kind is not None:
            return self._local_kind
        setting = self.config.local_backend
        if setting != "auto":
            self._local_kind = setting
            return setting
        key = self._hosts_key
        known = LOCAL_KINDS.get(key)
        if known is None and not probe:
            return local_kinds(auto=True)[0]
        if known is None:
            probed = self._probe_local_kind()  # network: never under the process-wide lock
            with SHARED_LOCK:
                known = LOCAL_KINDS.setdefault(key, probed)  # the first prober's answer wins
        self._local_kind = known
        return known

    def _probe_local_kind(self) -> BackendKind:
        """The first local kind, in the table's ``auto`` order, with a backend that answers."""
        order = local_kinds(auto=True)
        if self._explicit is not None:
            kinds = {b.kind for b in self._explicit if b.is_local}
            return next((k for k in order if k in kinds), order[0])
        for kind in order:
            for backend in self._backends_of(kind):
                if backend.health(timeout_s=self.config.connect_timeout_s).reachable:
                    if kind != order[0]:
                        log.warning("mem0-routed: no %s host answered; local calls use the %s backend for this "
                                    "process", order[0], kind)
                    return kind
        return order[0]

    def policy(self, kind: BackendKind | None = None) -> Policy:
        kind = kind or self.local_kind(probe=False)
        pol = self._policies.get(kind)
        if pol is None:
            cfg = self.config
            routes = kind_spec(kind).route_table(cfg)  # a tier that has only its own models
            if routes is not None:
                cfg = cfg.model_copy(update={"models": routes})
            from ._prices import external_cost

            pol = self._policies[kind] = Policy(cfg, local_kind=kind, cost_fn=external_cost)
        return pol

    # --- ledger and rules --------------------------------------------------------------------------
    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            from ._ledger import open_ledger

            with self._lock:
                if self._ledger is None:
                    self._ledger = open_ledger(self.config.ledger, reservation_ttl_s=self.reservation_ttl_s())
        return self._ledger

    def reservation_ttl_s(self) -> float:
        """How long an external call's claim on the budget lives: at least as long as the call can
        take with its retries (each retry may wait out a short Retry-After), within ``deadline_s``. A claim that expired
        mid-call let another call take the same money: with ``external_timeout_s`` above the
        default 15 minutes, two calls went out against a budget for one. At most a day, so a
        crashed process does not hold budget for long."""
        from ._drivers import MAX_RETRY_AFTER_S
        from ._ledger import RESERVATION_TTL_S

        cfg = self.config
        tries = (cfg.external_timeout_s + MAX_RETRY_AFTER_S) * (cfg.max_retries + 1)
        longest = min(tries, cfg.deadline_s) + 60.0  # no call outlives deadline_s
        return float(min(max(RESERVATION_TTL_S, longest), 86400.0))

    @property
    def rules(self) -> Any:
        if self._rules is None:
            from ._privacy import KeepLocalRules

            cfg = self.config
            self._rules = KeepLocalRules(detect_secrets=cfg.keep_local_secrets, detect_pii=cfg.keep_local_pii,
                                         patterns=cfg.keep_local_patterns, call_kinds=cfg.keep_local_call_kinds)
        return self._rules

    def _share_since(self) -> float:
        return time.time() - self.config.share_window_days * 86400

    def _ledger_call(self, what: str, fn: Callable[[], Any]) -> tuple[Any, str | None]:
        """Run a ledger read or release; a broken ledger (Redis down, SQLite locked) must never fail
        a call that can stay local, so its error comes back as a reason instead of a traceback."""
        try:
            return fn(), None
        except Exception as exc:  # noqa: BLE001
            log.warning("mem0-routed: ledger %s unavailable for %s: %s", self._ledger_url(), what,
                        mask_urls(str(exc).splitlines()[0][:200]) if str(exc) else type(exc).__name__)
            return None, f"ledger unavailable ({type(exc).__name__})"

    def _ledger_url(self) -> str:
        return mask_url(self.config.ledger)

    # --- decisions ---------------------------------------------------------------------------------
    def classify_query(self, text: str, context_length: int | None = None) -> tuple[QueryType, int]:
        cls = classify_text(text, context_length)
        return cls.query_type, cls.complexity

    def route_query(self, text: str, query_type: QueryType | str | None = None, *,
                    force_local: bool = False) -> RoutingDecision:
        """Decide where ``text`` would go, with reasons, without calling any model."""
        cls = classify_text(text)
        decision, _ = self._decide(cls, text, query_type, force_local, None, probe=False)
        return decision

    def _decide(self, cls: Classification, text: str, query_type: QueryType | str | None, force_local: bool,
                max_tokens: int | None, *, probe: bool = True) -> tuple[RoutingDecision, str | None]:
        policy = self.policy(self.local_kind(probe=probe))
        try:
            qt = QueryType(query_type) if query_type is not None else cls.query_type
        except ValueError:
            raise InvalidInput(f"query_type must be one of {', '.join(q.value for q in QueryType)} or None, "
                               f"got {query_type!r:.40}") from None
        spent, ledger_error = None, None
        if self.config.monthly_budget_usd is not None:
            spent, ledger_error = self._ledger_call(
                "the budget", lambda: self.ledger.spent_usd(since=utc_month_start()))
        blocked = policy.external_blocked_by(qt, force_local=force_local, keep_local_rule=None,
                                             spent_usd=spent, ledger_error=ledger_error,
                                             prompt_tokens=cls.estimated_tokens, max_tokens=max_tokens)
        rule = checked = None
        if blocked is None:
            verdict = self.rules.check(text, str(cls.call_kind))
            checked = verdict.checked
            rule = verdict.rule if verdict.keep_local else None
        counts: ShareCounts | None = None
        if qt is QueryType.COMPLEX and blocked is None and rule is None:
            counts, share_error = self._ledger_call(
                "the local share", lambda: self.ledger.counts(since=self._share_since()))
            if share_error:  # cannot tell the share: the complex call stays local, fallback still allowed
                counts = ShareCounts(total=0, local=0, external=0)
        decision = policy.decide(cls, query_type=qt, force_local=force_local, keep_local_rule=rule,
                                 counts=counts, spent_usd=spent, max_tokens=max_tokens, ledger_error=ledger_error)
        return decision, checked

    # --- chat --------------------------------------------------------------------------------------
    def _job(self, messages: list[dict[str, Any]], response_format: Mapping[str, Any] | None,
             tools: list[dict[str, Any]] | None, tool_choice: str | None, temperature: float | None,
             max_tokens: int | None, top_p: float | None, force_local: bool,
             query_type: QueryType | str | None) -> ChatJob:
        check_params(temperature, top_p, max_tokens)  # the caller's errors, before any backend is touched
        if max_tokens is None:  # bound every answer: Ollama and llama.cpp default to "until the window ends"
            max_tokens = self.config.default_max_tokens
        fmt = check_response_format(response_format)
        check_tools(tools)
        cls = classify_messages(messages, fmt)
        # every message of every role, and the tool definitions and JSON schema that go out with
        # them; only mem0's exact prompt constants are left out
        text = scan_text(messages, tools, fmt)
        # a lone surrogate in a name, an image URL, a tool or the schema: the caller's error, not
        # one "unencodable request" per backend of the chain
        check_encodable(text, "a message field, tool definition or response_format")
        check_images(messages)
        decision, checked = self._decide(cls, text, query_type, force_local, max_tokens)
        schema = None
        if fmt and fmt.get("type") == "json_schema":
            schema = fmt["json_schema"].get("schema")
        return ChatJob(messages=messages, cls=cls, decision=decision, temperature=temperature, top_p=top_p,
                       max_tokens=max_tokens, json_schema=schema, tools=tools, tool_choice=tool_choice,
                       external_check=checked, primary_external=not decision.is_local)

    def chat(self, messages: list[dict[str, Any]], *, response_format: Mapping[str, Any] | None = None,
             tools: list[dict[str, Any]] | None = None, tool_choice: str | None = None,
             temperature: float | None = None, max_tokens: int | None = None, top_p: float | None = None,
             force_local: bool = False, query_type: QueryType | str | None = None) -> ChatOutcome:
        """Route one chat call and return a validated answer, or raise ``RoutingError``."""
        job = self._job(messages, response_format, tools, tool_choice, temperature, max_tokens, top_p,
                        force_local, query_type)
        return run_sync(execute_chat(self, job))

    async def achat(self, messages: list[dict[str, Any]], **kwargs: Any) -> ChatOutcome:
        await asyncio.to_thread(self.local_kind)
        job = await asyncio.to_thread(
            self._job, messages, kwargs.get("response_format"), kwargs.get("tools"), kwargs.get("tool_choice"),
            kwargs.get("temperature"), kwargs.get("max_tokens"), kwargs.get("top_p"),
            kwargs.get("force_local", False), kwargs.get("query_type"))
        return await run_async(execute_chat(self, job))

    async def execute_query(self, text: str, force_local: bool = False,
                            query_type: QueryType | str | None = None, **kwargs: Any) -> dict[str, Any]:
        """The seed's call: route and run one prompt; returns response, model, backend, cost, ..."""
        if not isinstance(text, str):
            raise InvalidInput(f"text must be a str, not {type(text).__name__}")
        out = await self.achat([{"role": "user", "content": text}], force_local=force_local,
                               query_type=query_type, **kwargs)
        return out.to_dict()

    def execute_query_sync(self, text: str, force_local: bool = False,
                           query_type: QueryType | str | None = None, **kwargs: Any) -> dict[str, Any]:
        if not isinstance(text, str):
            raise InvalidInput(f"text must be a str, not {type(text).__name__}")
        return self.chat([{"role": "user", "content": text}], force_local=force_local,
                         query_type=query_type, **kwargs).to_dict()

    # --- hooks used by the executor ------------------------------------------------------------------
    def num_ctx_floor(self, model: str, backend: Backend | None = None) -> int:
        """For a router that serves mem0, the model of the extraction route is sized for mem0's
        extraction prompt from its first call (the compact or the full one, whichever
        ``prompt_choice`` picked), so ``num_ctx`` never changes afterwards."""
        if self.serves_mem0 and model == self.policy().local_model(QueryType.EXTRACTION):
            if backend is not None and self.prompt_choice(backend, model) == "compact":
                return compact_extraction_need()
            return mem0_extraction_need()
        return 0

    def prompt_choice(self, backend: Backend, model: str) -> Literal["full", "compact"]:
        """mem0's full or compact extraction prompt for ``model``, chosen once per model and host
        set: full only when it fits and its predicted time (prefill of ~8k tokens at the measured
        speed) is within ``extraction_latency_budget_s``; compact while nothing is measured."""
        setting = self.config.compact_extraction
        if not backend.is_local or setting == "never":
            return "full"
        if setting == "always":
            return "compact"
        known = self.planner.choices.get(model)
        if known is None:
            known = self.planner.choose(model, predict_prompt_choice(self.config, backend, model))
            log.info("mem0-routed: mem0's %s extraction prompt for %s on %s (%s; budget %gs)", known, model,
                     backend.name, describe(SPEEDS.get(backend.name, model)), self.config.extraction_latency_budget_s)
        return "compact" if known == "compact" else "full"

    def reserve_external(self, job: ChatJob, *, primary: bool) -> Reservation | Refusal | None:
        """Claim an external call in the ledger, atomically. None when there is nothing to claim: no
        budget is set and a fallback is not bound by the share (availability comes first)."""
        cfg = self.config
        if cfg.monthly_budget_usd is None and not primary:
            return None
        cost = self.worst_cost(job)
        got, error = self._ledger_call("a reservation", lambda: self.ledger.reserve_external(
            cost, budget_usd=cfg.monthly_budget_usd, budget_since=utc_month_start(),
            max_external_share=cfg.max_external_share if primary else None, share_since=self._share_since()))
        if error:  # the budget and the share cannot be checked, so nothing is sent out
            return Refusal("share", f"{error}: external calls need the ledger's budget and share checks")
        return got  # type: ignore[no-any-return]

    def worst_cost(self, job: ChatJob) -> float:
        """What the call can cost at most: its prompt with the estimate's margin and an answer as
        long as ``max_tokens`` allows. Reserving a typical answer instead let 16 threads spend 13x a
        budget with answers at ``max_tokens``: each reservation was settled far above its claim.
        The prompt counts what the provider reads besides the messages: tool definitions, the JSON
        schema, and each image at the most it can be billed (``_billing.prompt_tokens_max``)."""
        from ._context import ESTIMATE_MARGIN
        from ._prices import external_cost
        from .backends._billing import prompt_tokens_max

        sent = max(job.cls.estimated_tokens, prompt_tokens_max(job.messages, job.tools, job.json_schema))
        tokens_in = int(sent * ESTIMATE_MARGIN) + 4 * len(job.messages)
        tokens_out = job.max_tokens if job.max_tokens is not None else self.config.default_max_tokens
        return external_cost(self.config.fallback_model, tokens_in, tokens_out)

    def rejected_external_cost(self, job: ChatJob, attempts: Sequence[Attempt]) -> float:
        """What external answers that were then rejected (invalid JSON, cut at ``max_tokens``, a
        truncated prompt) cost: the provider bills them all the same. They were recorded at $0, so
        30 invalid answers went out against a budget for 5. Their token counts are not kept, so
        each is charged at the call's worst case (see ``worst_cost``): over, never under."""
        from ._execute import rejected_external_answers

        answered = rejected_external_answers(list(attempts))
        return answered * self.worst_cost(job) if answered else 0.0

    def release(self, reservation: Reservation) -> None:
        """Give back an unused reservation; a broken ledger is logged (the claim expires anyway)."""
        self._ledger_call("a release", lambda: self.ledger.release(reservation))

    def record_chat(self, job: ChatJob, outcome: ChatOutcome, *, reservation: Reservation | None,
                    skipped: bool = False) -> None:
        if not outcome.is_local:
            from ._prices import call_cost

            # the price of what was asked for, or of what the server says answered if that is
            # dearer: a server naming a cheaper model must not stretch the budget
            outcome.cost_usd = max(call_cost(outcome.backend, name, outcome.tokens_in, outcome.tokens_out)
                                   for name in {outcome.model, self.config.fallback_model})
        outcome.cost_usd += self.rejected_external_cost(job, outcome.attempts)
        first = job.decision.chain[0] if job.decision.chain else None
        rec = UsageRecord(
            ts=time.time(), call_kind=str(job.cls.call_kind), query_type=str(job.decision.query_type),
            model=outcome.model, backend=outcome.backend, is_local=outcome.is_local,
            tokens_in=outcome.tokens_in, tokens_out=outcome.tokens_out, cost_usd=outcome.cost_usd,
            latency_s=outcome.latency_s,
            outcome="skipped" if skipped else "degraded" if outcome.degraded
            else "escalated" if outcome.escalations else "ok",
            escalations=list(outcome.escalations),
            fallback=not skipped and first is not None
            and (first.model, first.is_local) != (outcome.model, outcome.is_local),
            external_check=None if outcome.is_local else job.external_check, host=outcome.host,
            prompt=message_text(job.messages, skip_system=True) if self.config.log_prompts else None,
            response=outcome.text if self.config.log_prompts else None)
        if self.config.log_prompts:
            rec.prompt, rec.response = self._loggable(job, rec.prompt, rec.response)
        self.record(rec, reservation=reservation)

    def _loggable(self, job: ChatJob, prompt: str | None, response: str | None) -> tuple[str | None, str | None]:
        """What ``log_prompts`` may store: a call a keep-local rule matched is stored as the rule's
        name only, prompt and answer (which may echo it) alike. The ledger can be a Redis on
        another host, and a secret must not reach it any more than OpenAI."""
        text = scan_text(job.messages, job.tools)
        verdict = self.rules.check(f"{text}\n{response or ''}", str(job.cls.call_kind))
        if not verdict.keep_local:
            return prompt, response
        withheld = f"[withheld: keep-local rule {verdict.rule}]"
        return withheld, withheld

    def record_failure(self, job: ChatJob, attempts: list[Attempt], escalations: list[str], latency: float,
                       *, outcome: Literal["error", "blocked"] = "error") -> None:
        first = job.decision.chain[0] if job.decision.chain else None
        self.record(UsageRecord(
            ts=time.time(), call_kind=str(job.cls.call_kind), query_type=str(job.decision.query_type),
            model=first.model if first else "", backend=first.backend if first else "",
            is_local=first.is_local if first else True, latency_s=latency, outcome=outcome,
            cost_usd=self.rejected_external_cost(job, attempts),
            escalations=list(escalations), error="; ".join(f"{a.backend} {a.model}: {a.error}" for a in attempts)[:500]))

    def record(self, rec: UsageRecord, *, reservation: Reservation | None = None) -> None:
        """Append to the ledger and the process log, then run hooks. A failing ledger or hook is
        logged, never turned into a failed call: the answer is already in hand."""
        PROCESS_RECORDS.append(rec)
        try:
            self.ledger.record(rec, reservation=reservation)
        except Exception as exc:  # noqa: BLE001
            log.error("mem0-routed: could not write the usage ledger (%s): %s", self._ledger_url(), mask_urls(str(exc)))
        for hook in (*self.hooks, *HOOKS):
            try:
                hook(rec)
            except Exception as exc:  # noqa: BLE001
                log.warning("mem0-routed: instrumentation hook %r failed: %s", hook, exc)

    # --- embeddings ----------------------------------------------------------------------------------
    def embed(self, texts: list[str], *, model: str | None = None, dims: int | None = None) -> list[list[float]]:
        """Embed with the one embedding model (never switched); cached; fails over across hosts only."""
        return self.embeddings.embed(texts, model=model, dims=dims)

    async def aembed(self, texts: list[str], *, model: str | None = None,
                     dims: int | None = None) -> list[list[float]]:
        return await asyncio.to_thread(self.embed, texts, model=model, dims=dims)

    # --- warm models -------------------------------------------------------------------------------
    def warmup(self, *, model: str | None = None, embedding_model: str | None = None) -> dict[str, Any]:
        """Load the chat model with the ``num_ctx`` its calls will use and prime Ollama's prompt
        cache with the extraction system prompt that will be sent; load the embedding model too.
        Measures the host's speed first when it is unknown (that decides full vs compact)."""
        return warmup(self, model=model, embedding_model=embedding_model)

    async def awarmup(self, *, model: str | None = None, embedding_model: str | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(warmup, self, model=model, embedding_model=embedding_model)

    # --- metrics and health --------------------------------------------------------------------------
    def get_metrics(self, *, source: str = "process") -> dict[str, Any]:
        """The seed's metrics plus latency, escalations, fallbacks, errors and cache hit rate.
        ``source="process"`` covers this process; ``"ledger"`` the ledger's share window."""
        from ._metrics import compute_metrics

        if source == "process":
            records = list(PROCESS_RECORDS)
        elif source == "ledger":
            records = self.ledger.records(since=self._share_since())
        else:
            raise ValueError(f"source must be 'process' or 'ledger', not {source!r}")
        # the cache's counts live in this process only; the ledger has none to report
        metrics = compute_metrics(records, local_threshold=self.config.local_threshold,
                                  embedding_cache=cache_stats() if source == "process" else None)
        metrics["num_ctx"] = self.planner.snapshot()
        metrics["num_ctx_changes"] = dict(self.planner.changes)
        metrics["extraction_prompt"] = dict(self.planner.choices)
        metrics["breakers"] = BREAKERS.snapshot()
        metrics["source"] = source
        return metrics

    def health_check_sync(self) -> dict[str, Any]:
        return collect_health(self)

    async def health_check(self) -> dict[str, Any]:
        """Tells "server down", "model not pulled" and "OpenAI not configured" apart."""
        return await asyncio.to_thread(collect_health, self)

    def close(self) -> None:
        """Close the ledger; the router stays usable (the ledger is reopened on the next call)."""
        with self._lock:
            ledger, self._ledger = self._ledger, None
        if ledger is not None:
            ledger.close()


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


__all__ = ["Mem0LLMRouter", "Router", "get_router", "router_for", "reset_routers", "Mem0RoutedError"]
