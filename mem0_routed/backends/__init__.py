"""Backends: one interface (``Backend``) over every place a model runs.

``OllamaBackend``, ``OpenAIBackend`` and ``EmbeddedBackend`` are imported on first use (module
``__getattr__``), so importing this package loads no client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Backend, ChatRequest, ChatResult, Health, normalize_model_name

if TYPE_CHECKING:
    from ._embedded import EmbeddedBackend
    from ._ollama import OllamaBackend
    from ._openai import OpenAIBackend

__all__ = [
    "Backend",
    "ChatRequest",
    "ChatResult",
    "EmbeddedBackend",
    "Health",
    "OllamaBackend",
    "OpenAIBackend",
    "normalize_model_name",
]

_LAZY = {"OllamaBackend": "._ollama", "OpenAIBackend": "._openai", "EmbeddedBackend": "._embedded"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
