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
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import BackendError, BackendTimeout, BadRequest, ContextOverflow, ModelNotFound
from .._models import EMBEDDED_INSTALL, PACKAGED_MODELS, packaged_model_path, packaged_weights, verify_sha256
from .._types import BackendKind
from ._base import ChatRequest, ChatResult, Health

__all__ = ["EmbeddedBackend"]

_EXTRA_HINT = f"the embedded backend needs its extra: {EMBEDDED_INSTALL}"
_ST_HINT = "pip install 'mem0-routed[embedded]' (sentence-transformers; torch==2.13.0 for the CPU wheel)"
# Tokens added by a chat template around each message when the template cannot be rendered here.
_PER_MESSAGE_OVERHEAD = 8


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


class _Deadline(Exception):
    """A generation ran past ``timeout_s``."""


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
                    llama_cpp = _import_llama_cpp(model)
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
                        slot.formatter = _formatter_for(llama_cpp, slot.obj)
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
        if not slot.lock.acquire(timeout=_remaining(deadline)):
            raise BackendTimeout(
                f"{request.model!r} stayed busy for {request.timeout_s}s (one generation at a time per model)",
                backend=self.name, model=request.model)
        try:
            llm = slot.obj
            window = self._windows[request.model] = _window(llm)
            limit = min(window, request.num_ctx) if request.num_ctx else window
            prompt_tokens = _count_prompt_tokens(llm, slot.formatter, request.messages)
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
                kwargs["grammar"] = _grammar(request.json_schema, request.model)
            elif request.json_mode:
                kwargs["response_format"] = {"type": "json_object"}
            guard = request.stream_guard() if request.stream_guard is not None else None
            try:
                text, finish, timing = _generate(llm, request.messages, kwargs, deadline, guard)
            except _Deadline:
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
        if not slot.lock.acquire(timeout=_remaining(deadline)):
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

    async def aembed(self, model: str, texts: list[str], *, timeout_s: float | None = None) -> list[list[float]]:
        return await asyncio.to_thread(self.embed, model, texts, timeout_s=timeout_s)

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
            window = _window(self._llama(model, path).obj)
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

    def close(self) -> None:
        """Nothing to close: loaded models are shared by the process (see the module cache)."""


# --- helpers ------------------------------------------------------------------------------------


def _import_llama_cpp(model: str) -> Any:
    try:
        import llama_cpp
    except (ImportError, OSError) as exc:
        raise ModelNotFound(f"{model!r} needs llama-cpp-python, which is not importable: {exc}",
            backend="embedded", model=model, fix=EMBEDDED_INSTALL) from exc
    return llama_cpp


def _formatter_for(llama_cpp: Any, llm: Any) -> Any:
    """The model's own chat template as a formatter, so prompt tokens are counted exactly."""
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    from llama_cpp import llama_chat_format

    def token_text(token_id: int) -> str:
        return llm._model.token_get_text(token_id) if token_id != -1 else ""

    return llama_chat_format.Jinja2ChatFormatter(
        template=template, eos_token=token_text(llm.token_eos()), bos_token=token_text(llm.token_bos())
    )


def _count_prompt_tokens(llm: Any, formatter: Any, messages: list[dict[str, Any]]) -> int:
    """Tokens of the prompt as the model will see it, counted with the model's own tokenizer."""
    if formatter is not None:
        from jinja2 import TemplateError

        try:
            prompt = formatter(messages=messages).prompt
        except (TemplateError, ValueError, TypeError):
            prompt = None  # a template that rejects these messages: fall back to an upper estimate
        if prompt is not None:
            return len(llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
    total = 0
    for message in messages:
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        total += len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) + _PER_MESSAGE_OVERHEAD
    return total + _PER_MESSAGE_OVERHEAD


def _grammar(schema: dict[str, Any], model: str) -> Any:
    """A llama.cpp grammar for ``schema``; an unsupported schema is an error, never plain JSON."""
    from llama_cpp import LlamaGrammar  # type: ignore[attr-defined]

    try:
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception as exc:  # llama.cpp's converter raises several types
        raise BadRequest(
            f"llama.cpp cannot turn this JSON schema into a grammar: {exc}", backend="embedded", model=model
        ) from exc


def _generate(llm: Any, messages: list[dict[str, Any]], kwargs: dict[str, Any], deadline: float | None,
              guard: Any = None) -> tuple[str, str | None, tuple[float | None, float | None]]:
    """Stream the completion so a deadline or the stream guard (a loop, a complete JSON object)
    can stop it between tokens; returns the text, the finish reason, and the seconds to the first
    token (prefill) and from it to the last (generation), which the router learns speeds from.

    llama-cpp-python 0.3.x has no other way to cancel a generation: an exception raised in a
    logits processor is swallowed by its ctypes callback. Closing the stream stops the loop.
    """
    t0 = time.monotonic()
    first = last = None
    stream = llm.create_chat_completion(messages=messages, stream=True, **kwargs)
    parts: list[str] = []
    finish: str | None = None
    try:
        for chunk in stream:
            choice = chunk["choices"][0]
            content = choice.get("delta", {}).get("content") or ""
            parts.append(content)
            finish = choice.get("finish_reason") or finish
            if content:
                last = time.monotonic()
                first = first or last
            if deadline is not None and finish is None and time.monotonic() > deadline:
                raise _Deadline
            if guard is not None and finish is None and guard.feed(content) is not None:
                break
    finally:
        stream.close()
    timing = (None if first is None else first - t0, None if first is None or last is None else last - first)
    return "".join(parts), finish, timing


def _window(llm: Any) -> int:
    """The usable window: the loaded context, never more than the model was trained for."""
    trained = int(llm._model.n_ctx_train())
    return min(llm.n_ctx(), trained) if trained > 0 else int(llm.n_ctx())


def _remaining(deadline: float | None) -> float:
    """Seconds left for ``Lock.acquire`` (-1 = wait forever when no timeout was asked)."""
    if deadline is None:
        return -1
    return max(deadline - time.monotonic(), 0.0)
