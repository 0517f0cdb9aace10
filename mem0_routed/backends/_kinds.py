"""The table of backend kinds: ``{kind: BackendKindSpec}``, and the process's shared instances.

Why a table: the router asks it how to build a kind's backends from a ``RouterConfig`` and what
to tell the user when there are none, and asks the backends themselves everything else (see
``Backend``), so it never tests ``kind``. Adding a kind is one module with a ``from_config``
function plus one ``register_kind`` entry here. The modules are imported on first use, so the
table costs nothing at ``import mem0_routed``.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from ._base import Backend

if TYPE_CHECKING:
    from .._config import RouterConfig

__all__ = ["KINDS", "BackendKindSpec", "close_shared", "kind_spec", "local_kinds", "register_kind", "shared_backend"]


@dataclass(frozen=True, slots=True)
class BackendKindSpec:
    """One kind of backend.

    ``factory`` is ``function(config) -> list[Backend]``, or ``"module:function"`` naming it
    (relative to this package, or absolute; imported on first use): the process's backends of this kind for ``config``
    (an empty list when the config leaves the kind out). ``missing`` is the fix shown when that
    list is empty. ``auto_rank`` orders the local kinds ``local_backend: auto`` tries (lowest
    first; ``None``: never chosen automatically). ``routes``, when set, names
    ``function(config) -> dict[str, str]``: the route table this tier imposes (a tier that only
    has its own models).
    """

    kind: str
    is_local: bool
    factory: str | Callable[[RouterConfig], list[Backend]]
    missing: str
    auto_rank: int | None = None
    routes: str | Callable[[RouterConfig], Mapping[str, str]] | None = None

    def create(self, config: RouterConfig) -> list[Backend]:
        built: list[Backend] = _load(self.factory)(config)
        for backend in built:
            if backend.kind != self.kind or backend.is_local != self.is_local:
                raise ConfigError(f"the {self.kind!r} factory built {backend.name!r} of kind {backend.kind!r} "
                                  f"(is_local={backend.is_local}); it must build {self.kind!r} backends "
                                  f"(is_local={self.is_local})")
        return built

    def route_table(self, config: RouterConfig) -> dict[str, str] | None:
        return None if self.routes is None else dict(_load(self.routes)(config))


KINDS: dict[str, BackendKindSpec] = {}


def register_kind(spec: BackendKindSpec) -> None:
    """Add (or replace) a kind in the table."""
    KINDS[spec.kind] = spec


def kind_spec(kind: str) -> BackendKindSpec:
    try:
        return KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown backend kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}") from None


def local_kinds(*, auto: bool = False) -> list[str]:
    """The local kinds, in ``auto`` order; with ``auto=True`` only those ``auto`` may pick."""
    specs = [s for s in KINDS.values() if s.is_local and (s.auto_rank is not None or not auto)]
    return [s.kind for s in sorted(specs, key=lambda s: (s.auto_rank is None, s.auto_rank or 0, s.kind))]


def is_local_kind(kind: str) -> bool:
    spec = KINDS.get(kind)
    return spec is not None and spec.is_local


def of_kind(backends: Iterable[Backend], kind: str) -> list[Backend]:
    return [b for b in backends if b.kind == kind]


def _load(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(ref):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module, __package__), attr)  # type: ignore[no-any-return]


# --- the process's instances: one per host and settings, shared by every router ---------------------

_LOCK = threading.RLock()
_SHARED: dict[str, Backend] = {}


def shared_backend(key: str, factory: Callable[[], Backend]) -> Backend:
    """The backend registered under ``key``, built by ``factory`` on first use (one client pool,
    one breaker name per host and settings, whichever router asks)."""
    with _LOCK:
        backend = _SHARED.get(key)
        if backend is None:
            backend = _SHARED[key] = factory()
        return backend


def shared_backends() -> Mapping[str, Backend]:
    with _LOCK:
        return dict(_SHARED)


def close_shared() -> None:
    """Close and forget every shared backend (tests, and ``mem0_routed.testing.reset``)."""
    with _LOCK:
        backends = list(_SHARED.values())
        _SHARED.clear()
    for backend in backends:
        try:
            backend.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


register_kind(BackendKindSpec("ollama", is_local=True, factory="._ollama:from_config", auto_rank=0,
                              missing="start Ollama (`ollama serve`) or set OLLAMA_URL"))
# after Ollama: it has no backends (so auto skips it) unless openai_compatible_urls are set, and a user
# who sets them and runs Ollama too says which one with local_backend
register_kind(BackendKindSpec("openai_compatible", is_local=True, factory="._openai_compat:from_config", auto_rank=5,
                              routes="._openai_compat:routes",
                              missing="set openai_compatible_urls (env OPENAI_COMPATIBLE_URLS) to the server's "
                                      "URL, e.g. http://localhost:8000/v1 for vLLM"))
register_kind(BackendKindSpec("embedded", is_local=True, factory="._embedded:from_config", auto_rank=10,
                              missing="pip install 'mem0-routed[embedded]'", routes="._embedded:routes"))
register_kind(BackendKindSpec("openai", is_local=False, factory="._openai:from_config",
                              missing="set OPENAI_API_KEY"))
