"""Embeddings: always local, one model for the life of the store, cached, checked for size.

Vectors of another model or size break or silently poison mem0's vector store, so failover goes
only to another host serving the *same* model, never to another model or to OpenAI.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from functools import partial
from typing import TYPE_CHECKING, Any

from ._classify import check_encodable
from ._errors import (
    BackendError,
    BackendTimeout,
    EmbeddingDimensionMismatch,
    InvalidInput,
    ModelNotFound,
    RoutingError,
)
from ._execute import call_with_retries, note_failure
from ._types import Attempt, Candidate, QueryType
from ._usage import UsageRecord

if TYPE_CHECKING:
    from ._router import Router
from .backends._base import Backend
from .backends._kinds import kind_spec

_DEADLINE_FIX = "raise deadline_s, or make the embedding host faster (a smaller batch, a warm model: keep_alive)"


class EmbeddingCache:
    """A bounded LRU keyed by (model, text); counts hits and misses for the metrics."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str]) -> list[float] | None:
        with self._lock:
            vec = self._data.get(key)
            if vec is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return vec

    def put(self, key: tuple[str, str], vec: list[float]) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = vec
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def stats(self) -> dict[str, Any]:
        """Counts only: the metrics sum them over the process's routers and derive the hit rate."""
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "size": len(self._data)}


class EmbeddingService:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.cache = EmbeddingCache(router.config.embedding_cache_size)
        self._checked: set[tuple[str, int]] = set()

    def cache_stats(self) -> dict[str, Any]:
        return self.cache.stats()

    def model(self) -> str:
        return self.router.policy(self.router.local_kind()).local_model(QueryType.EMBEDDING)

    def embed(self, texts: list[str], *, model: str | None = None, dims: int | None = None) -> list[list[float]]:
        if isinstance(texts, str) or not isinstance(texts, list):
            raise InvalidInput(f"texts must be a list of str, not {type(texts).__name__}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInput(f"texts[{i}] must be a str, not {type(t).__name__}")
            check_encodable(t, f"texts[{i}]")  # the caller's error: never a backend failure
        if not texts:
            return []
        model = model or self.model()
        dims = dims or self.router.config.embedding_dims
        out: list[list[float] | None] = [self.cache.get((model, t)) for t in texts]
        missing = [i for i, v in enumerate(out) if v is None]
        if missing:
            vectors = self._fetch(model, [texts[i] for i in missing])
            self._check_dims(model, vectors, dims)
            for i, vec in zip(missing, vectors):
                out[i] = vec
                self.cache.put((model, texts[i]), vec)
        return out  # type: ignore[return-value]

    def _check_dims(self, model: str, vectors: list[list[float]], dims: int | None) -> None:
        if not dims or not vectors or (model, dims) in self._checked:
            return
        got = len(vectors[0])
        if got != dims:
            raise EmbeddingDimensionMismatch(
                f"embedding model {model!r} returns {got}-dimensional vectors but embedding_dims is {dims}; "
                f"set embedding_dims: {got} for the embedder and embedding_model_dims: {got} for the vector "
                f"store (a store created with {dims} dims must be recreated)")
        self._checked.add((model, dims))

    def _fetch(self, model: str, texts: list[str]) -> list[list[float]]:
        router = self.router
        kind = router.local_kind()
        cand = Candidate(kind, model, True, "embedding")
        attempts: list[Attempt] = []
        started = time.perf_counter()
        limit = router.config.deadline_s
        deadline = time.monotonic() + limit  # one deadline for the whole embed: retries and hosts
        backends = router.backends_for(cand)
        for backend in backends:
            if time.monotonic() >= deadline:
                attempts.append(Attempt(backend.name, model, f"not tried: the call's deadline_s ({limit:g}s) "
                                        "had passed", kind="timeout", fix=_DEADLINE_FIX))
                continue
            breaker = router.breaker(backend)
            token = breaker.allow()
            if not token:
                attempts.append(Attempt(backend.name, model, "circuit open", fix=breaker.last_fix, kind="skipped"))
                continue
            ticket = router.begin(backend, model)
            try:
                if backend.has_model(model) is False:
                    raise ModelNotFound(f"model {model!r} not found on {backend.name}", backend=backend.name,
                                        model=model, fix=backend.fix("model_missing", model))
                vectors = call_with_retries(partial(self._embed_once, backend, model, texts, deadline),
                                            router.config.max_retries, deadline=deadline)
                ticket.ok = True
            except Exception as exc:  # noqa: BLE001 - a client bug must not escape as a traceback nor stick a probe
                err = exc if isinstance(exc, BackendError) else BackendError(
                    f"unexpected {type(exc).__name__}: {exc}", backend=backend.name, model=model)
                if isinstance(err, BackendTimeout) and time.monotonic() >= deadline:
                    breaker.release(token)  # our own deadline ran out: no verdict on the host
                    attempts.append(Attempt(backend.name, model, f"stopped at the call's deadline_s ({limit:g}s): "
                                            f"{err}", kind="timeout", fix=_DEADLINE_FIX))
                    continue
                note_failure(breaker, err, attempts, backend, cand, token=token)
                continue
            except BaseException:  # cancelled (KeyboardInterrupt, ...): a probe must not stay set for good
                breaker.release(token)
                raise
            finally:
                router.end(backend, ticket)
            breaker.success()
            router.record(UsageRecord(ts=time.time(), call_kind="embedding", query_type="embedding", model=model,
                                      backend=backend.kind, is_local=True, latency_s=time.perf_counter() - started,
                                      host=backend.name, tokens_in=sum(len(t) for t in texts) // 4))
            return vectors
        if not backends:
            attempts.append(Attempt(kind, model, "no local backend configured", fix=kind_spec(kind).missing))
        router.record(UsageRecord(ts=time.time(), call_kind="embedding", query_type="embedding", model=model,
                                  backend=kind, is_local=True, outcome="error",
                                  latency_s=time.perf_counter() - started,
                                  error="; ".join(a.error for a in attempts)[:500]))
        within = f" within deadline_s={limit:g}s" if time.monotonic() >= deadline else ""
        raise RoutingError(f"could not embed {len(texts)} text(s) with {model!r}{within}", attempts,
                           blocked_by="embeddings never switch model or leave this machine")

    def _embed_once(self, backend: Backend, model: str, texts: list[str], deadline: float) -> list[list[float]]:
        return backend.embed(model, texts, timeout_s=self._left(deadline))

    def _left(self, deadline: float) -> float:
        """One attempt's timeout: what is left of the deadline, never more than read_timeout_s."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise BackendTimeout(f"the call's deadline_s ({self.router.config.deadline_s:g}s) passed before "
                                 "this attempt", fix=_DEADLINE_FIX)
        return min(left, self.router.config.read_timeout_s)
