"""Backends: one interface (``Backend``) over every place a model runs, and the table of kinds.

``KINDS`` maps a kind name to its ``BackendKindSpec``; ``register_kind`` adds one (a module with
a ``from_config(config) -> list[Backend]`` function is all a new kind needs).

``OllamaBackend``, ``OpenAIBackend`` and ``EmbeddedBackend`` are imported on first use (module
``__getattr__``), so importing this package loads no client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Backend, ChatRequest, ChatResult, Health, Problem, normalize_model_name
from ._kinds import KINDS, BackendKindSpec, register_kind

if TYPE_CHECKING:
    from ._embedded import EmbeddedBackend
    from ._ollama import OllamaBackend
    from ._openai import OpenAIBackend
    from ._openai_compat import OpenAICompatibleBackend

__all__ = [
    "KINDS",
    "Backend",
    "BackendKindSpec",
    "ChatRequest",
    "ChatResult",
    "EmbeddedBackend",
    "Health",
    "OllamaBackend",
    "OpenAIBackend",
    "OpenAICompatibleBackend",
    "Problem",
    "normalize_model_name",
    "register_kind",
]

_LAZY = {"OllamaBackend": "._ollama", "OpenAIBackend": "._openai", "EmbeddedBackend": "._embedded",
         "OpenAICompatibleBackend": "._openai_compat"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
