"""Teach mem0 2.2.x the provider name ``"routed"`` for both its LLM and its embedder.

mem0 has no plugin hook (no entry points; provider names are checked against hard-coded lists),
so :func:`register` patches the few places that check them, touching as little as possible:

* the ``validate_config`` field validators of ``LlmConfig`` and ``EmbedderConfig``: wrapped so that
  "routed" is accepted (and its config checked early) while every other name goes to mem0's own
  function; pydantic builds schemas from ``__pydantic_decorators__``, not the class attribute, so the
  wrapper goes there and ``LlmConfig``, ``EmbedderConfig``, ``MemoryConfig`` (and their subclasses)
  are rebuilt;
* ``LlmFactory.register_provider("routed", ...)`` — mem0's public method;
* ``EmbedderFactory.create``: wrapped, because the original builds ``BaseEmbedderConfig(**config)``,
  which rejects the router's keys. Other providers go to the original, which stays reachable as
  ``EmbedderFactory.create.__mem0_routed_original__``.

Every patch is marked, so calling :func:`register` again (or from many threads) changes nothing.
A self-check then builds a routed ``MemoryConfig``; if mem0 changed, :class:`RegistrationError` says
which mem0 version is installed and which versions are supported.

When the package is installed, its ``.pth`` hook (``_autoload.py``) calls :func:`register` as soon as
the program imports mem0, so an unmodified mem0 program accepts "routed". With the hook turned off
(``MEM0_ROUTED_AUTOLOAD=0``) or from a source checkout on ``PYTHONPATH``: **import mem0_routed before
calling** ``Memory.from_config``; mem0 validates the provider name inside ``from_config``.
A pydantic model of your own with a field typed ``LlmConfig``/``MemoryConfig`` that was defined
before the import keeps the old schema until you call its ``model_rebuild(force=True)``.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ._config import has_credentials
from ._errors import RegistrationError

__all__ = ["PROVIDER", "SUPPORTED_MEM0", "is_registered", "register"]

logger = logging.getLogger("mem0_routed")

PROVIDER = "routed"
SUPPORTED_MEM0 = "mem0ai>=2.2,<3"
_LLM_CLASS_PATH = "mem0_routed._mem0.RoutedLLM"
_EMBEDDER_CLASS_PATH = "mem0_routed._mem0.RoutedEmbedder"
_MARK = "__mem0_routed_original__"
_SECRET_KEYS = frozenset({"api_key", "openai_api_key"})

_lock = threading.Lock()
_registered = False
# Set while the self-check runs: it proves the name is accepted, independent of the user's env vars.
_skip_config_check: contextvars.ContextVar[bool] = contextvars.ContextVar("mem0_routed_skip", default=False)


def is_registered() -> bool:
    """True once :func:`register` has completed (its self-check passed) in this process."""
    return _registered


def register() -> None:
    """Register the "routed" LLM and embedder providers with mem0. Idempotent and thread-safe.

    Raises :class:`RegistrationError` when mem0's internals are not what this version expects.
    """
    global _registered
    if _registered:
        return
    with _lock:
        if _registered:
            return
        try:
            _patch_validators()
            _patch_factories()
        except RegistrationError:
            raise
        except Exception as exc:  # an attribute mem0/pydantic no longer has, a changed signature...
            raise _registration_error(f"{type(exc).__name__}: {exc}") from exc
        _self_check()
        _registered = True
        version = _mem0_version()
        if not _supported(version):
            logger.warning(
                "mem0-routed: mem0ai %s is untested (supported: %s); registration checked OK",
                version,
                SUPPORTED_MEM0,
            )
        logger.debug("mem0-routed: provider %r registered with mem0ai %s", PROVIDER, version)
    # Metrics without code: MEM0_ROUTED_PROMETHEUS_PORT starts an exporter in the process that uses mem0.
    from ._prometheus import start_from_env

    start_from_env()


# --- validators -------------------------------------------------------------------------------------


def _patch_validators() -> None:
    from mem0.configs.base import MemoryConfig
    from mem0.embeddings.configs import EmbedderConfig
    from mem0.llms.configs import LlmConfig

    from . import _mem0

    _wrap_validator(LlmConfig, _mem0.check_llm_config)
    _wrap_validator(EmbedderConfig, _mem0.check_embedder_config)
    for model in (LlmConfig, EmbedderConfig, MemoryConfig):
        for i, cls in enumerate(_with_subclasses(model)):
            try:
                cls.model_rebuild(force=True)
            except Exception:
                if i == 0:  # mem0's own class must rebuild; a user's subclass is their business
                    raise
                logger.warning("mem0-routed: could not rebuild %s; call its model_rebuild(force=True)", cls)


def _wrap_validator(model: type[Any], check: Callable[[dict[str, Any]], None]) -> None:
    """Put our function in front of mem0's ``validate_config`` for ``model`` and its subclasses."""
    decorators = model.__pydantic_decorators__.field_validators
    original = decorators["validate_config"].func
    original = getattr(original, _MARK, original)
    original_impl = getattr(original, "__func__", original)

    def validate_config(v: Any, info: Any) -> Any:
        if info.data.get("provider") == PROVIDER:
            # pydantic echoes the whole input dict in its error; a config holding a key or a URL
            # with a password is checked when mem0 builds the provider, where ConfigError carries
            # no input.
            if not _skip_config_check.get() and not _SECRET_KEYS.intersection(v or {}) and not has_credentials(v):
                check(dict(v or {}))
            return v
        return original(v, info)

    setattr(validate_config, _MARK, original)
    for cls in _with_subclasses(model):
        dec = cls.__pydantic_decorators__.field_validators.get("validate_config")
        if dec is None or getattr(dec.func, _MARK, None) is not None:
            continue  # already ours
        if getattr(dec.func, "__func__", dec.func) is not original_impl:
            continue  # a subclass overriding the validator keeps its own
        dec.func = validate_config


def _with_subclasses(cls: type[Any]) -> Iterator[type[Any]]:
    """``cls`` then every subclass, parents before children."""
    seen: set[type[Any]] = set()
    queue = [cls]
    while queue:
        current = queue.pop(0)
        if current in seen:
            continue
        seen.add(current)
        yield current
        queue.extend(current.__subclasses__())


# --- factories --------------------------------------------------------------------------------------


def _patch_factories() -> None:
    from mem0.utils.factory import EmbedderFactory, LlmFactory

    from ._mem0 import RoutedLlmConfig

    LlmFactory.register_provider(PROVIDER, _LLM_CLASS_PATH, RoutedLlmConfig)
    EmbedderFactory.provider_to_class[PROVIDER] = _EMBEDDER_CLASS_PATH
    if getattr(EmbedderFactory.create, _MARK, None) is not None:
        return
    original = EmbedderFactory.create  # bound to EmbedderFactory

    def create(cls: type[Any], provider_name: str, config: Any, vector_config: Any = None) -> Any:
        if provider_name == PROVIDER:
            from ._mem0 import RoutedEmbedder

            return RoutedEmbedder(config, vector_config=vector_config)
        return original.__func__(cls, provider_name, config, vector_config)

    setattr(create, _MARK, original)
    create.__doc__ = original.__doc__
    EmbedderFactory.create = classmethod(create)


# --- self-check -------------------------------------------------------------------------------------


def _self_check() -> None:
    from mem0.configs.base import MemoryConfig
    from mem0.utils.factory import EmbedderFactory, LlmFactory

    token = _skip_config_check.set(True)
    try:
        cfg = MemoryConfig(
            llm={"provider": PROVIDER, "config": {}}, embedder={"provider": PROVIDER, "config": {}}
        )
    except Exception as exc:
        raise _registration_error(f"MemoryConfig still rejects provider {PROVIDER!r}: {exc}") from exc
    finally:
        _skip_config_check.reset(token)
    problems = []
    if cfg.llm.provider != PROVIDER or cfg.embedder.provider != PROVIDER:
        problems.append("MemoryConfig did not keep the provider name")
    if LlmFactory.provider_to_class.get(PROVIDER, ("",))[0] != _LLM_CLASS_PATH:
        problems.append("LlmFactory does not map it")
    if EmbedderFactory.provider_to_class.get(PROVIDER) != _EMBEDDER_CLASS_PATH:
        problems.append("EmbedderFactory does not map it")
    if getattr(EmbedderFactory.create, _MARK, None) is None:
        problems.append("EmbedderFactory.create is not wrapped")
    if problems:
        raise _registration_error("; ".join(problems))


def _mem0_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mem0ai")
    except PackageNotFoundError:
        return "unknown (mem0ai not installed as a distribution)"


def _supported(version: str) -> bool:
    """mem0ai>=2.2,<3, read from the leading numbers (enough for mem0's plain version strings)."""
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return False
    return major == 2 and minor >= 2


def _registration_error(detail: str) -> RegistrationError:
    return RegistrationError(
        f"could not register the {PROVIDER!r} provider with the installed mem0ai {_mem0_version()}: "
        f"{detail}. mem0-routed supports {SUPPORTED_MEM0}; install one with: pip install '{SUPPORTED_MEM0}'"
    )
