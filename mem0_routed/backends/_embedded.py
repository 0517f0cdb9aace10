"""In-process models: GGUF chat through llama-cpp-python, embeddings through sentence-transformers.

Why: mem0-routed then works with no Ollama at all (a laptop, CI), and tests meet a real model.
Models load lazily, once per process (a module-level cache keyed by path and load options), and each
loaded model has its own lock: one llama.cpp context must never run two generations at once, while
loading one model never blocks calls to another. ``llama_cpp``, ``torch`` and
``sentence_transformers`` are imported only inside the calls that need them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import BackendError, BackendTimeout, BadRequest, ContextOverflow, ModelNotFound
from .._packaged_models import (
    EMBEDDED_INSTALL,
    PACKAGED_MODELS,
    packaged_model_path,
    packaged_weights,
    verify_sha256,
)
from .._types import BackendKind
from . import _embedded_llama as engine
from ._base import ChatRequest, ChatResult, Health, Problem
from ._kinds import shared_backend

if TYPE_CHECKING:
    from .._config import RouterConfig
    from ._base import Backend

__all__ = ["EmbeddedBackend"]

_EXTRA_HINT = f"the embedded backend needs its extra: {EMBEDDED_INSTALL}"
_ST_HINT = "pip install 'mem0-routed[embedded]' (sentence-transformers; torch==2.13.0 for the CPU wheel)"


@dataclass(slots=True)
class _Slot:
    """One loaded model and the lock that serialises its use (and its loading)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    obj: Any = None
    formatter: Any = None


_slots: dict[tuple[Any, ...], _Slot] = {}
_slots_lock = threading.Lock()  # guards the dict only; never held while loading or generating


@atexit.register
def _free_models() -> None:
    """Free loaded models before the interpreter tears down llama_cpp's module globals (after
    which Llama.__del__ prints "'NoneType' object is not callable" tracebacks at exit)."""
    with _slots_lock:
        slots = list(_slots.values())
    for slot in slots:
        obj, slot.obj = slot.obj, None
        close = getattr(obj, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()


def _slot(key: tuple[Any, ...]) -> _Slot:
    with _slots_lock:
        slot = _slots.get(key)
        if slot is None:
            slot = _slots[key] = _Slot()
        return slot


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    path: str | None  # None: a packaged model, resolved (and checked) when first used
    packaged: bool


class EmbeddedBackend:
    """The ``Backend`` for in-process models.

    ``models`` maps a model name to a GGUF file (chat) or a sentence-transformers directory
    (embeddings); it is added to the packaged models (``"smollm2:135m"``, ``"all-minilm:l6-v2"``),
    overriding a packaged name it repeats. ``n_ctx`` caps the context window (default: the model's
    trained window from its GGUF metadata). ``n_threads`` defaults to llama.cpp's choice.
    """

    kind: BackendKind = "embedded"
    is_local: bool = True
    plans_context: bool = False  # the loaded context is fixed; a prompt too long raises ContextOverflow

    def __init__(
        self,
        models: Mapping[str, str] | None = None,
        *,
        n_threads: int | None = None,
        n_ctx: int | None = None,
    ) -> None:
        if n_ctx is not None and n_ctx < 64:
            raise ValueError(f"n_ctx={n_ctx!r} is too small; pass None (the model's window) or >= 64")
        if n_threads is not None and n_threads < 1:
            raise ValueError(f"n_threads={n_threads!r} must be >= 1 (or None for llama.cpp's default)")
        self.name = "embedded"
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self._specs: dict[str, _Spec] = {n: _Spec(n, None, True) for n in PACKAGED_MODELS}
        for model_name, path in (models or {}).items():
            self._specs[model_name] = _Spec(model_name, os.fspath(path), False)
        self._windows: dict[str, int] = {}

    # --- model resolution and loading ----------------------------------------------------------

    def _resolve(self, model: str) -> Path:
        spec = self._specs.get(model)
        if spec is None:
            raise ModelNotFound(
                f"embedded backend has no model {model!r}; it has: {', '.join(sorted(self._specs))}",
                backend=self.name, model=model,
                fix="pass models={name: '/path/to/model.gguf'} to EmbeddedBackend (embedded_models)")
        if spec.packaged:
            path = packaged_model_path(model)
            weights, sha = packaged_weights(model)
            verify_sha256(weights, sha, model=model)  # once per file per process
            return path
        assert spec.path is not None
        path = Path(spec.path).expanduser()
        if not path.exists():
            raise ModelNotFound(
                f"model file for {model!r} does not exist: {str(path)!r}", backend=self.name, model=model
            )
        return path

    def _llama(self, model: str, path: Path, *, embedding: bool = False) -> _Slot:
        """The slot of a loaded ``llama_cpp.Llama`` (loads it under the slot's own lock)."""
        key = ("llama", str(path.resolve()), embedding, self.n_ctx, self.n_threads)
        slot = _slot(key)
        if slot.obj is None:
            with slot.lock:
                if slot.obj is None:
                    llama_cpp = engine.import_llama_cpp(model)
                    try:
                        slot.obj = llama_cpp.Llama(
                            model_path=str(path),
                            n_ctx=self.n_ctx or 0,  # 0 = the trained window from GGUF metadata
                            n_threads=self.n_threads,
                            n_threads_batch=self.n_threads,
                            embedding=embedding,
                            # mean pooling: one vector per text even for chat models without a pooling type
                            **({"pooling_type": llama_cpp.LLAMA_POOLING_TYPE_MEAN} if embedding else {}),
                            verbose=False)
                    except (ValueError, RuntimeError, OSError) as exc:
                        raise BadRequest(
                            f"llama.cpp could not load {str(path)!r} for {model!r}: {exc}",
                            backend=self.name, model=model,
                            fix="check that the file is a GGUF model llama-cpp-python supports") from exc
                    if not embedding:
                        slot.formatter = engine.formatter_for(llama_cpp, slot.obj)
        return slot

    # --- chat ----------------------------------------------------------------------------------

    def chat(self, request: ChatRequest) -> ChatResult:
        """One chat completion; JSON schema / JSON mode are enforced by a llama.cpp grammar."""
        start = time.monotonic()
        deadline = start + request.timeout_s if request.timeout_s else None
        if request.deadline is not None:
            deadline = request.deadline if deadline is None else min(deadline, request.deadline)
        path = self._resolve(request.model)
        if path.is_dir():
            raise BadRequest(
                f"{request.model!r} is an embedding model (a sentence-transformers directory), not a chat model",
                backend=self.name, model=request.model)
        if request.tools:
            raise BadRequest("the embedded backend does not support tool calls", backend=self.name,
                             model=request.model)
        slot = self._llama(request.model, path)
        if not slot.lock.acquire(timeout=engine.remaining(deadline)):
            raise BackendTimeout(
                f"{request.model!r} stayed busy for {request.timeout_s}s (one generation at a time per model)",
                backend=self.name, model=request.model)
        try:
            llm = slot.obj
            window = self._windows[request.model] = engine.window(llm)
            limit = min(window, request.num_ctx) if request.num_ctx else window
            prompt_tokens = engine.count_prompt_tokens(llm, slot.formatter, request.messages)
            max_tokens = request.max_tokens if request.max_tokens is not None else limit - prompt_tokens
            if prompt_tokens + max(max_tokens, 1) > limit:
                raise ContextOverflow(
                    f"prompt of {prompt_tokens} tokens + max_tokens {request.max_tokens} = "
                    f"{prompt_tokens + max(max_tokens, 1)} tokens > context window {limit} of {request.model!r}",
                    backend=self.name, model=request.model,
                    fix="shorten the prompt (compact extraction prompt), lower max_tokens, or use a larger model")
            kwargs: dict[str, Any] = {"max_tokens": max_tokens}
            if request.repeat_penalty is not None:
                kwargs["repeat_penalty"] = request.repeat_penalty
            if request.temperature is not None:
                kwargs["temperature"] = request.temperature
            if request.top_p is not None:
                kwargs["top_p"] = request.top_p
            if request.json_schema is not None:
                kwargs["grammar"] = engine.grammar(request.json_schema, request.model)
            elif request.json_mode:
                kwargs["response_format"] = {"type": "json_object"}
            guard = request.stream_guard() if request.stream_guard is not None else None
            try:
                text, finish, timing = engine.generate(llm, request.messages, kwargs, deadline, guard)
            except engine.Deadline:
                raise BackendTimeout(
                    f"generation with {request.model!r} ran past timeout_s={request.timeout_s}",
                    backend=self.name, model=request.model) from None
            except ValueError as exc:
                if "context window" in str(exc):
                    raise ContextOverflow(str(exc), backend=self.name, model=request.model) from exc
                raise BadRequest(str(exc), backend=self.name, model=request.model) from exc
            except RuntimeError as exc:
                raise BackendError(f"llama.cpp failed: {exc}", backend=self.name, model=request.model) from exc
            tokens_out = len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0
        finally:
            slot.lock.release()
        return ChatResult(
            text=text,
            model=request.model,
            backend="embedded",
            host="in-process",
            tokens_in=prompt_tokens,
            tokens_out=tokens_out,
            done_reason=finish,
            latency_s=time.monotonic() - start,
            stopped=guard.stopped if guard is not None and finish is None else None,
            prompt_eval_s=timing[0],
            eval_s=timing[1])

    async def achat(self, request: ChatRequest) -> ChatResult:
        """``chat`` in a worker thread, so the event loop keeps running during a generation."""
        return await asyncio.to_thread(self.chat, request)

    # --- embeddings ----------------------------------------------------------------------------

    def embed(self, model: str, texts: list[str], *, timeout_s: float | None = None) -> list[list[float]]:
        """Normalised vectors, one per text, in one batch."""
        if not texts:
            return []
        deadline = time.monotonic() + timeout_s if timeout_s else None
        path = self._resolve(model)
        if path.is_dir():
            slot = self._sentence_transformer(model, path)
        else:  # a GGUF model as an embedder (when sentence-transformers is not installed)
            slot = self._llama(model, path, embedding=True)
        if not slot.lock.acquire(timeout=engine.remaining(deadline)):
            raise BackendTimeout(f"embedding model {model!r} stayed busy for {timeout_s}s",
                                 backend=self.name, model=model)
        try:
            if path.is_dir():
                vectors = slot.obj.encode(
                    list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=False)
                return [[float(x) for x in row] for row in vectors.tolist()]
            return [list(map(float, v)) for v in slot.obj.embed(list(texts), normalize=True)]
        except (ValueError, RuntimeError) as exc:
            raise BadRequest(f"embedding with {model!r} failed: {exc}", backend=self.name, model=model) from exc
        finally:
            slot.lock.release()

    def _sentence_transformer(self, model: str, path: Path) -> _Slot:
        slot = _slot(("st", str(path.resolve())))
        if slot.obj is None:
            with slot.lock:
                if slot.obj is None:
                    try:
                        from sentence_transformers import SentenceTransformer
                    except ImportError as exc:
                        raise ModelNotFound(
                            f"embedding model {model!r} needs sentence-transformers and torch: {exc}",
                            backend=self.name, model=model,
                            fix=_ST_HINT) from exc
                    if self.n_threads:
                        import torch

                        torch.set_num_threads(self.n_threads)
                    # A local directory and local_files_only: a hub is never contacted.
                    slot.obj = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        return slot

    # --- facts ---------------------------------------------------------------------------------

    def context_window(self, model: str) -> int | None:
        """The window calls to ``model`` get: the loaded context, else the GGUF metadata (capped by n_ctx)."""
        if model in self._windows:
            return self._windows[model]
        entry = PACKAGED_MODELS.get(model)
        spec = self._specs.get(model)
        if spec is None:
            return None
        if spec.packaged and entry is not None:
            if entry.context_window is None:
                return None
            window = entry.context_window
        else:
            try:
                path = self._resolve(model)
            except ModelNotFound:
                return None
            if path.is_dir():
                return None
            window = engine.window(self._llama(model, path).obj)
        window = min(window, self.n_ctx) if self.n_ctx else window
        self._windows[model] = window
        return window

    def has_model(self, model: str) -> bool | None:
        """True when ``model`` is configured and its files are on disk (not checksummed here)."""
        spec = self._specs.get(model)
        if spec is None:
            return False
        try:
            path = packaged_model_path(model) if spec.packaged else Path(spec.path or "")
        except ModelNotFound:
            return False
        return path.exists()

    def health(self, *, timeout_s: float | None = None) -> Health:
        """Reachable when llama-cpp-python imports and a chat model's file is on disk."""
        start = time.monotonic()
        problems: list[str] = []
        try:
            import llama_cpp  # noqa: F401
            have_llama = True
        except (ImportError, OSError) as exc:
            have_llama = False
            problems.append(f"llama-cpp-python is not importable ({exc}); {_EXTRA_HINT}")
        models: list[str] = []
        chat_ok = False
        for name, spec in self._specs.items():
            try:
                path = packaged_model_path(name) if spec.packaged else Path(spec.path or "")
            except ModelNotFound as exc:
                problems.append(f"{name}: {exc} ({exc.fix})")
                continue
            if not path.exists():
                problems.append(f"{name}: file {str(path)!r} does not exist")
                continue
            models.append(name)
            chat_ok = chat_ok or not path.is_dir()
        if not chat_ok:
            problems.append(f"no chat model file found; {_EXTRA_HINT}")
        return Health(
            name=self.name,
            kind="embedded",
            reachable=have_llama and chat_ok,
            models=models,
            error="; ".join(problems) or None,
            latency_s=time.monotonic() - start,
            context_windows=dict(self._windows))

    def model_key(self, model: str) -> str:
        return model

    def truncated(self, request: ChatRequest, result: ChatResult, estimated_tokens: int) -> bool:
        return False  # prompts are counted with the model's tokenizer before generating

    def fix(self, problem: Problem, model: str | None = None) -> str | None:
        if problem == "model_missing":
            return f"give the GGUF path of {model!r} in embedded_models"
        if problem == "context_overflow":
            return None
        return _EXTRA_HINT

    def close(self) -> None:
        """Nothing to close: loaded models are shared by the process (see the module cache)."""


#: The packaged models the embedded tier routes to unless ``embedded_models`` names others.
EMBEDDED_CHAT_MODEL = "smollm2:135m"
EMBEDDED_EMBEDDING_MODEL = "all-minilm:l6-v2"


def from_config(config: RouterConfig) -> list[Backend]:
    """The in-process backend (none without llama-cpp-python), shared per set of model files."""
    if importlib.util.find_spec("llama_cpp") is None:
        return []
    models = dict(config.embedded_models) or None
    return [shared_backend(f"embedded#{sorted((models or {}).items())}", lambda: EmbeddedBackend(models))]


def routes(config: RouterConfig) -> dict[str, str]:
    """The embedded tier has only its own models: every route goes to them, except routes the
    user set to a model named in ``embedded_models``."""
    from .._types import QueryType

    table = {q.value: EMBEDDED_CHAT_MODEL for q in QueryType}
    table[QueryType.EMBEDDING.value] = EMBEDDED_EMBEDDING_MODEL
    table.update({k: v for k, v in config.models.items() if config.embedded_models.get(v)})
    return table
