"""The execution state of one router: its backends, breakers, context planner, in-flight counts,
ledger, keep-local rules, records and prompt choices.

``Router`` is the user's facade; this object is what execution (``_execute``), embeddings
(``_embedding``), health (``_health``) and warm-up (``_warmup``) are handed, so none of them needs
the facade and none reaches into another's private names. Thread-safe (mem0's ``AsyncMemory``
calls from worker threads): shared state sits behind short locks never held across a network call.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from ._breaker import CircuitBreaker
from ._classify import check_encodable, check_params, classify_messages
from ._config import RouterConfig, mask_url, mask_urls
from ._embedding_cache import EmbeddingCache
from ._errors import ConfigError, InvalidInput
from ._inputs import check_images, check_response_format, check_tools
from ._job import ChatJob, ChatOutcome, chat_record, failure_record, rejected_external_answers
from ._ledger import Ledger, check_ledger
from ._policy import Policy
from ._process import BREAKERS, HOOKS, LOCAL_KINDS, PROCESS_RECORDS, SHARED_LOCK, make_backends, planner_for
from ._records import Refusal, Reservation, ShareCounts, UsageRecord, utc_month_start
from ._request_shape import compact_extraction_need, mem0_extraction_need, message_text, predict_prompt_choice
from ._scan import scan_text
from ._speed import SPEEDS, describe
from ._spread import LOADS, LoadTicket
from ._types import Attempt, BackendKind, Candidate, Classification, QueryType, RoutingDecision
from .backends._base import Backend
from .backends._kinds import kind_spec, local_kinds, of_kind

__all__ = ["RUNTIMES", "Runtime", "process_cache_stats"]

log = logging.getLogger("mem0_routed")

#: Every live runtime in the process (the process's metrics and the Prometheus collector read them).
RUNTIMES: weakref.WeakSet[Runtime] = weakref.WeakSet()
#: Records one runtime keeps of its own calls (the metrics' ``scope="router"``).
OWN_RECORDS = 100_000


class Runtime:
    """Execution state of one router (see the module docstring)."""

    def __init__(self, config: RouterConfig, *, backends: Sequence[Backend] | None = None,
                 ledger: Ledger | None = None, hooks: Sequence[Callable[[UsageRecord], None]] = ()) -> None:
        self.config = config
        self._explicit = list(backends) if backends is not None else None
        self._ledger = check_ledger(ledger)
        self.hooks = list(hooks)
        self._lock = threading.Lock()
        self._local_kind: BackendKind | None = None
        self._policies: dict[str, Policy] = {}
        self._rr = itertools.count()
        self._rules: Any = None
        self._backend_lists: dict[str, list[Backend]] = {}
        #: Set by the mem0 provider classes: size for mem0's calls before they arrive.
        self.serves_mem0 = False
        self.embedding_cache = EmbeddingCache(config.embedding_cache_size)
        #: (model, dims) pairs whose vector size was checked once.
        self.checked_dims: set[tuple[str, int]] = set()
        #: This router's own records (the process's are in ``PROCESS_RECORDS``).
        self.records: deque[UsageRecord] = deque(maxlen=OWN_RECORDS)
        # what this router's hosts are known by in the process-wide state (its own, if explicit)
        self._hosts_key = ",".join(config.ollama_urls) if self._explicit is None else f"explicit-{id(self)}"
        self.planner = planner_for(self._hosts_key, config)
        RUNTIMES.add(self)

    # --- backends ----------------------------------------------------------------------------------
    def backends(self, kind: str) -> list[Backend]:
        """Every backend of ``kind`` this router may use (the explicit ones, or the shared ones)."""
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
        found = self.backends(cand.backend)
        if len(found) < 2:
            return found
        return LOADS.order(found, name=lambda b: b.name, model=cand.model, turn=next(self._rr),
                           healthy=lambda b: self.breaker(b).state == "closed")

    def begin(self, backend: Backend, model: str | None = None) -> LoadTicket:
        """A call goes to ``backend``: set ``ticket.ok`` when it answered, then ``end`` it."""
        return LOADS.begin(backend.name, model)

    def end(self, backend: Backend, ticket: LoadTicket) -> None:
        LOADS.end(ticket)

    def rejected(self, backend: Backend, model: str) -> None:
        """``backend`` answered ``model``'s call with garbage: the others go first for a while."""
        LOADS.reject(backend.name, model)

    def breaker(self, backend: Backend) -> CircuitBreaker:
        return BREAKERS.get(backend.name, failures=self.config.breaker_failures,
                            cooldown_s=self.config.breaker_cooldown_s)

    def local_kind(self, *, probe: bool = True) -> BackendKind:
        """Which local tier serves this process: decided once per set of local servers (so the LLM's
        and the embedder's routers agree), because embeddings never switch model."""
        if self._local_kind is not None:
            return self._local_kind
        setting = self.config.local_backend
        if setting != "auto":
            if self._explicit is None and not self.backends(setting):
                # every local call would find no backend and fall back to OpenAI, silently
                raise ConfigError(f"local_backend is {setting!r} but no {setting} backend is configured, so every "
                                  f"call would go external; {kind_spec(setting).missing}, or set local_backend: auto")
            self._local_kind = setting
            return setting
        # every local server the config names: two configs that differ only in their
        # OpenAI-compatible URLs may well get different tiers
        key = f"{self._hosts_key}|{','.join(self.config.openai_compatible_urls)}"
        known = LOCAL_KINDS.get(key)
        if known is None and not probe:
            return local_kinds(auto=True)[0]
        if known is None:
            probed = self._probe_local_kind()  # network: never under the process-wide lock
            if probed is None:  # nothing answers (a server still starting): choose again on the next call
                return local_kinds(auto=True)[0]
            with SHARED_LOCK:
                known = LOCAL_KINDS.setdefault(key, probed)  # the first prober's answer wins
        self._local_kind = known
        return known

    def _probe_local_kind(self) -> BackendKind | None:
        """The first local kind, in the table's ``auto`` order, with a backend that answers; None
        when none does (kept for the process, a guess would lock out a server still starting)."""
        order = local_kinds(auto=True)
        if self._explicit is not None:
            kinds = {b.kind for b in self._explicit if b.is_local}
            return next((k for k in order if k in kinds), order[0])
        silent: list[tuple[str, str]] = []  # (kind, name) of each backend that did not answer
        for kind in order:
            for backend in self.backends(kind):
                if backend.health(timeout_s=self.config.connect_timeout_s).reachable:
                    if any(k != kind for k, _ in silent):
                        log.warning("mem0-routed: no answer from %s; local calls use the %s backend for this "
                                    "process (set local_backend to choose one for good)",
                                    ", ".join(n for _, n in silent), kind)
                    return kind
                silent.append((kind, backend.name))
        return None

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

    def opened_ledger(self) -> Ledger | None:
        """The ledger if something opened it already (a metrics scrape must not create one)."""
        return self._ledger

    def close_ledger(self) -> None:
        with self._lock:
            ledger, self._ledger = self._ledger, None
        if ledger is not None:
            ledger.close()

    def reservation_ttl_s(self) -> float:
        """How long an external call's claim on the budget lives: at least as long as the call can
        take with its retries (each retry may wait out a short Retry-After), within ``deadline_s``.
        A claim that expired mid-call let another call take the same money. At most a day, so a
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

    def share_since(self) -> float:
        """Start of the window the local share is counted over (``share_window_days``)."""
        return time.time() - self.config.share_window_days * 86400

    def ledger_call(self, what: str, fn: Callable[[], Any]) -> tuple[Any, str | None]:
        """Run a ledger read or release; a broken ledger (Redis down, SQLite locked) must never fail
        a call that can stay local, so its error comes back as a reason instead of a traceback."""
        try:
            return fn(), None
        except Exception as exc:  # noqa: BLE001
            log.warning("mem0-routed: ledger %s unavailable for %s: %s", mask_url(self.config.ledger), what,
                        mask_urls(str(exc).splitlines()[0][:200]) if str(exc) else type(exc).__name__)
            return None, f"ledger unavailable ({type(exc).__name__})"

    # --- decisions ---------------------------------------------------------------------------------
    def decide(self, cls: Classification, text: str, *, query_type: QueryType | str | None = None,
               force_local: bool = False, max_tokens: int | None = None,
               probe: bool = True) -> tuple[RoutingDecision, str | None]:
        """The decision for one call, and the keep-local check that allowed an external send."""
        policy = self.policy(self.local_kind(probe=probe))
        try:
            qt = QueryType(query_type) if query_type is not None else cls.query_type
        except ValueError:
            raise InvalidInput(f"query_type must be one of {', '.join(q.value for q in QueryType)} or None, "
                               f"got {query_type!r:.40}") from None
        spent, ledger_error = None, None
        if self.config.monthly_budget_usd is not None:
            spent, ledger_error = self.ledger_call(
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
            counts, share_error = self.ledger_call(
                "the local share", lambda: self.ledger.counts(since=self.share_since()))
            if share_error:  # cannot tell the share: the complex call stays local, fallback still allowed
                counts = ShareCounts(total=0, local=0, external=0)
        decision = policy.decide(cls, query_type=qt, force_local=force_local, keep_local_rule=rule,
                                 counts=counts, spent_usd=spent, max_tokens=max_tokens, ledger_error=ledger_error)
        return decision, checked

    def prepare(self, messages: list[dict[str, Any]], *, response_format: Mapping[str, Any] | None = None,
                tools: list[dict[str, Any]] | None = None, tool_choice: str | None = None,
                temperature: float | None = None, max_tokens: int | None = None, top_p: float | None = None,
                force_local: bool = False, query_type: QueryType | str | None = None) -> ChatJob:
        """Check the caller's inputs, classify and decide: the ``ChatJob`` execution runs."""
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
        decision, checked = self.decide(cls, text, query_type=query_type, force_local=force_local,
                                        max_tokens=max_tokens)
        schema = None
        if fmt and fmt.get("type") == "json_schema":
            schema = fmt["json_schema"].get("schema")
        return ChatJob(messages=messages, cls=cls, decision=decision, temperature=temperature, top_p=top_p,
                       max_tokens=max_tokens, json_schema=schema, tools=tools, tool_choice=tool_choice,
                       external_check=checked, primary_external=not decision.is_local)

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

    # --- money and records -------------------------------------------------------------------------
    def reserve_external(self, job: ChatJob, *, primary: bool) -> Reservation | Refusal | None:
        """Claim an external call in the ledger, atomically. None when there is nothing to claim: no
        budget is set and a fallback is not bound by the share (availability comes first)."""
        cfg = self.config
        if cfg.monthly_budget_usd is None and not primary:
            return None
        cost = self.worst_cost(job)
        got, error = self.ledger_call("a reservation", lambda: self.ledger.reserve_external(
            cost, budget_usd=cfg.monthly_budget_usd, budget_since=utc_month_start(),
            max_external_share=cfg.max_external_share if primary else None, share_since=self.share_since()))
        if error:  # the budget and the share cannot be checked, so nothing is sent out
            return Refusal("share", f"{error}: external calls need the ledger's budget and share checks")
        if not isinstance(got, (Reservation, Refusal)):  # a custom ledger's bug must not open the budget
            log.error("mem0-routed: ledger %s returned %s from reserve_external, not a Reservation or a Refusal; "
                      "external calls are refused until it is fixed", type(self.ledger).__name__, type(got).__name__)
            return Refusal("budget", f"the ledger's reserve_external returned {type(got).__name__}, not a "
                                     "Reservation or a Refusal: external calls need the budget and share checks")
        return got

    def worst_cost(self, job: ChatJob) -> float:
        """What the call can cost at most: its prompt with the estimate's margin and an answer as
        long as ``max_tokens`` allows (reserving a typical answer let 16 threads spend 13x a budget).
        The prompt counts what the provider reads besides the messages: tool definitions, the JSON
        schema, and each image at the most it can be billed (``_billing.prompt_tokens_max``)."""
        from ._num_ctx import ESTIMATE_MARGIN
        from ._prices import external_cost
        from .backends._billing import prompt_tokens_max

        sent = max(job.cls.estimated_tokens, prompt_tokens_max(job.messages, job.tools, job.json_schema))
        tokens_in = int(sent * ESTIMATE_MARGIN) + 4 * len(job.messages)
        tokens_out = job.max_tokens if job.max_tokens is not None else self.config.default_max_tokens
        return external_cost(self.config.fallback_model, tokens_in, tokens_out)

    def rejected_external_cost(self, job: ChatJob, attempts: Sequence[Attempt]) -> float:
        """What external answers that were then rejected (invalid JSON, cut, a truncated prompt)
        cost: the provider bills them all the same. Their token counts are not kept, so each is
        charged at the call's worst case (see ``worst_cost``): over, never under."""
        answered = rejected_external_answers(attempts)
        return answered * self.worst_cost(job) if answered else 0.0

    def release(self, reservation: Reservation) -> None:
        """Give back an unused reservation; a broken ledger is logged (the claim expires anyway)."""
        self.ledger_call("a release", lambda: self.ledger.release(reservation))

    def record_chat(self, job: ChatJob, outcome: ChatOutcome, *, reservation: Reservation | None,
                    skipped: bool = False) -> None:
        if not outcome.is_local:
            from ._prices import call_cost

            # the price of what was asked for, or of what the server says answered if that is
            # dearer: a server naming a cheaper model must not stretch the budget
            outcome.cost_usd = max(call_cost(outcome.backend, name, outcome.tokens_in, outcome.tokens_out)
                                   for name in {outcome.model, self.config.fallback_model})
        outcome.cost_usd += self.rejected_external_cost(job, outcome.attempts)
        rec = chat_record(job, outcome, skipped=skipped)
        if self.config.log_prompts:
            rec.prompt, rec.response = self._loggable(job, message_text(job.messages, skip_system=True), outcome.text)
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
        self.record(failure_record(job, attempts, escalations, latency, outcome=outcome,
                                   cost_usd=self.rejected_external_cost(job, attempts)))

    def record(self, rec: UsageRecord, *, reservation: Reservation | None = None) -> None:
        """Append to the ledger and the process log, then run hooks. A failing ledger or hook is
        logged, never turned into a failed call: the answer is already in hand."""
        PROCESS_RECORDS.append(rec)
        self.records.append(rec)
        try:
            self.ledger.record(rec, reservation=reservation)
        except Exception as exc:  # noqa: BLE001
            log.error("mem0-routed: could not write the usage ledger (%s): %s", mask_url(self.config.ledger),
                      mask_urls(str(exc)))
        for hook in (*self.hooks, *HOOKS):
            try:
                hook(rec)
            except Exception as exc:  # noqa: BLE001
                log.warning("mem0-routed: instrumentation hook %r failed: %s", hook, exc)


def process_cache_stats() -> dict[str, Any]:
    """Embedding cache hits and misses summed over this process's routers (the metrics add the rate)."""
    hits = misses = size = 0
    for rt in list(RUNTIMES):
        st = rt.embedding_cache.stats()
        hits, misses, size = hits + st["hits"], misses + st["misses"], size + st["size"]
    return {"hits": hits, "misses": misses, "size": size}
