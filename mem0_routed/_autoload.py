"""Zero-code activation: register the ``"routed"`` provider the moment a program imports mem0.

mem0 has no plugin entry point, so an app we do not own (mem0's REST server, a framework that builds
mem0 from a config file) would reject ``"provider": "routed"``. The wheel therefore ships
``mem0_routed_autoload.pth`` and this file a second time, as the top-level module
``_mem0_routed_autoload`` (the way setuptools ships ``_distutils_hack``). At interpreter start the
``.pth`` line calls :func:`install`, which only puts a small finder in front of ``sys.meta_path``:
nothing of mem0 or mem0_routed is imported, and programs that never import mem0 pay a string
comparison per import.

When the program first imports ``mem0``, the finder wraps mem0's loader once: after mem0's package
has run (so ``MemoryConfig`` and the factories exist), ``import mem0_routed`` registers the provider.
The finder then removes itself. A failure is a warning, never an error: an unrelated program must not
break because a plugin could not patch mem0.

Opt out with ``MEM0_ROUTED_AUTOLOAD=0`` (also ``false``/``no``/``off``). It imports only ``os`` and
``sys`` (already loaded at start): even ``typing`` would cost ~15 ms there, and ``__future__``
0.2 ms, hence the quoted annotations.
"""

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType
    from typing import Any

__all__ = ["ENV_VAR", "TRIGGER", "enabled", "install", "installed", "uninstall"]

#: Set to 0/false/no/off to keep the ``.pth`` hook from doing anything.
ENV_VAR = "MEM0_ROUTED_AUTOLOAD"
#: The module whose first import triggers registration: mem0's package (it imports its configs).
TRIGGER = "mem0"
_OFF = frozenset({"0", "false", "no", "off"})


def enabled() -> bool:
    """False when the user opted out with ``MEM0_ROUTED_AUTOLOAD``."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF


class _Loader:
    """Wraps mem0's loader for one import: run mem0, then register. Everything else is delegated."""

    def __init__(self, loader: "Any") -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> "Any":
        return getattr(self._loader, name)

    def create_module(self, spec: "Any") -> "ModuleType | None":
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: "ModuleType") -> None:
        # mem0 must see its own loader (importlib.resources, reloads), not this wrapper
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        uninstall()
        _register()


class _Finder:
    """A ``sys.meta_path`` finder that only ever answers for :data:`TRIGGER`."""

    def find_spec(
        self, fullname: str, path: "Sequence[str] | None" = None, target: "ModuleType | None" = None
    ) -> "Any":
        if fullname != TRIGGER:
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None  # mem0 is not installed: the normal ModuleNotFoundError follows
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader)
        return spec

    def __repr__(self) -> str:
        return "<mem0-routed autoload finder>"


_FINDER = _Finder()


def install() -> None:
    """Put the finder first in ``sys.meta_path`` (idempotent). Called by the ``.pth`` file."""
    if not enabled() or installed():
        return
    if TRIGGER in sys.modules:  # mem0 came first (install() called late): register now
        _register()
        return
    sys.meta_path.insert(0, _FINDER)


def installed() -> bool:
    """Whether the finder is waiting for mem0's import."""
    return any(type(f).__name__ == "_Finder" and repr(f) == repr(_FINDER) for f in sys.meta_path)


def uninstall() -> None:
    """Remove the finder (every copy: the package's module and the top-level one may both exist)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not (type(f).__name__ == "_Finder" and repr(f) == repr(_FINDER))]


def _register() -> None:
    if "mem0_routed" in sys.modules:
        return  # being imported (it imports mem0 itself) or imported: it registers on its own
    try:
        import mem0_routed  # noqa: F401  registers the provider at import
    except Exception as exc:  # noqa: BLE001 - a plugin must never break an unrelated program
        import warnings

        message = (
            f"mem0-routed: could not register provider 'routed' with mem0 automatically "
            f"({type(exc).__name__}: {exc}). Configs using provider 'routed' will be rejected; "
            f"'import mem0_routed' shows the full error. Set {ENV_VAR}=0 to turn this hook off."
        )
        try:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        except Warning:  # -W error turns warnings into exceptions: still never fail mem0's import
            sys.stderr.write(f"RuntimeWarning: {message}\n")
