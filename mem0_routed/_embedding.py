"""Embeddings: always local, one model for the life of the store, cached, checked for size.

Vectors of another model or size break or silently poison mem0's vector store, so failover goes
only to another host serving the *same* model, never to another model or to OpenAI.
"""

from __future__ import annotations

import time
from functools import partial

from ._classify import check_encodable
from ._drivers import call_with_retries, note_failure, require_model
from ._errors import (
    BackendError,
    BackendTimeout,
    EmbeddingDimensionMismatch,
    InvalidInput,
    RoutingError,
)
from ._records import UsageRecord
from ._runtime import Runtime
from ._types import Attempt, Candidate, QueryType
from .backends._base import Backend
from .backends._deadline import deadline_scope
from .backends._kinds import kind_spec

_DEADLINE_FIX = "raise deadline_s, or make the embedding host faster (a smaller batch, a warm model: keep_alive)"

__all__ = ["embed", "embedding_model", "probe_dims"]


def embedding_model(rt: Runtime) -> str:
    """The one embedding model of this router's local tier."""
    return rt.policy(rt.local_kind()).local_model(QueryType.EMBEDDING)


def _check_texts(texts: list[str]) -> None:
    if isinstance(texts, str) or not isinstance(texts, list):
        raise InvalidInput(f"texts must be a list of str, not {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidInput(f"texts[{i}] must be a str, not {type(t).__name__}")
        check_encodable(t, f"texts[{i}]")  # the caller's error: never a backend failure


def embed(rt: Runtime, texts: list[str], *, model: str | None = None, dims: int | None = None) -> list[list[float]]:
    """Vectors for ``texts`` with the one embedding model, from the cache or the local tier;
    the first vector's size is checked against ``dims`` (default ``embedding_dims``)."""
    _check_texts(texts)
    if not texts:
        return []
    model = model or embedding_model(rt)
    dims = dims or rt.config.embedding_dims
    out: list[list[float] | None] = [rt.embedding_cache.get((model, t)) for t in texts]
    missing = [i for i, v in enumerate(out) if v is None]
    if missing:
        vectors = _fetch(rt, model, [texts[i] for i in missing])
        _check_dims(rt, model, vectors, dims)
        for i, vec in zip(missing, vectors):
            out[i] = vec
            rt.embedding_cache.put((model, texts[i]), vec)
    return out  # type: ignore[return-value]


#: What ``probe_dims`` embeds: any text gives a vector of the model's size.
PROBE_TEXT = "size probe"


def probe_dims(rt: Runtime, model: str | None = None) -> int:
    """The size of the vectors ``model`` (default: the embedding route's) returns, asked once
    (then cached), without checking it against ``embedding_dims``: this is how to learn it."""
    model = model or embedding_model(rt)
    vec = rt.embedding_cache.get((model, PROBE_TEXT))
    if vec is None:
        vec = _fetch(rt, model, [PROBE_TEXT])[0]
        rt.embedding_cache.put((model, PROBE_TEXT), vec)
    return len(vec)


def _check_dims(rt: Runtime, model: str, vectors: list[list[float]], dims: int | None) -> None:
    if not dims or not vectors or (model, dims) in rt.checked_dims:
        return
    got = len(vectors[0])
    if got != dims:
        raise EmbeddingDimensionMismatch(
            f"embedding model {model!r} returns {got}-dimensional vectors but embedding_dims is {dims}; "
            f"set embedding_dims: {got} for the embedder and embedding_model_dims: {got} for the vector "
            f"store (a store created with {dims} dims must be recreated)")
    rt.checked_dims.add((model, dims))


def _fetch(rt: Runtime, model: str, texts: list[str]) -> list[list[float]]:
    kind = rt.local_kind()
    cand = Candidate(kind, model, True)
    attempts: list[Attempt] = []
    started = time.perf_counter()
    limit = rt.config.deadline_s
    deadline = time.monotonic() + limit  # one deadline for the whole embed: retries and hosts
    backends = rt.backends_for(cand)
    for backend in backends:
        if time.monotonic() >= deadline:
            attempts.append(Attempt(backend.name, model, f"not tried: the call's deadline_s ({limit:g}s) "
                                    "had passed", kind="timeout", fix=_DEADLINE_FIX))
            continue
        breaker = rt.breaker(backend)
        token = breaker.allow()
        if not token:
            attempts.append(Attempt(backend.name, model, "circuit open", fix=breaker.last_fix, kind="skipped"))
            continue
        ticket = rt.begin(backend, model)
        try:
            with deadline_scope(deadline):  # the model list look-up stays within deadline_s too
                require_model(backend, model)
            vectors = call_with_retries(partial(_embed_once, rt, backend, model, texts, deadline),
                                        rt.config.max_retries, deadline=deadline)
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
            rt.end(backend, ticket)
        breaker.success()
        rt.record(UsageRecord(ts=time.time(), call_kind="embedding", query_type="embedding", model=model,
                              backend=backend.kind, is_local=True, latency_s=time.perf_counter() - started,
                              host=backend.name, tokens_in=sum(len(t) for t in texts) // 4))
        return vectors
    if not backends:
        attempts.append(Attempt(kind, model, "no local backend configured", fix=kind_spec(kind).missing))
    rt.record(UsageRecord(ts=time.time(), call_kind="embedding", query_type="embedding", model=model,
                          backend=kind, is_local=True, outcome="error",
                          latency_s=time.perf_counter() - started,
                          error="; ".join(a.error for a in attempts)[:500]))
    within = f" within deadline_s={limit:g}s" if time.monotonic() >= deadline else ""
    raise RoutingError(f"could not embed {len(texts)} text(s) with {model!r}{within}", attempts,
                       blocked_by="embeddings never switch model or leave this machine")


def _embed_once(rt: Runtime, backend: Backend, model: str, texts: list[str], deadline: float) -> list[list[float]]:
    """One attempt; its timeout is what is left of the deadline, never more than read_timeout_s."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise BackendTimeout(f"the call's deadline_s ({rt.config.deadline_s:g}s) passed before "
                             "this attempt", fix=_DEADLINE_FIX)
    return backend.embed(model, texts, timeout_s=min(left, rt.config.read_timeout_s))
