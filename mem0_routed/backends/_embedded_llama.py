"""llama-cpp-python plumbing for the embedded backend: import, prompt counting, grammars, generation.

Kept apart from ``_embedded`` (model resolution, loading and the backend's calls).
"""

from __future__ import annotations

import json
import time
from typing import Any

from .._errors import BadRequest, ModelNotFound
from .._packaged_models import EMBEDDED_INSTALL

# Tokens added by a chat template around each message when the template cannot be rendered here.
_PER_MESSAGE_OVERHEAD = 8


class Deadline(Exception):
    """Raised inside a generation when the call's deadline has passed (the stream is then closed)."""


def import_llama_cpp(model: str) -> Any:
    try:
        import llama_cpp
    except (ImportError, OSError) as exc:
        raise ModelNotFound(f"{model!r} needs llama-cpp-python, which is not importable: {exc}",
            backend="embedded", model=model, fix=EMBEDDED_INSTALL) from exc
    return llama_cpp


def formatter_for(llama_cpp: Any, llm: Any) -> Any:
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


def count_prompt_tokens(llm: Any, formatter: Any, messages: list[dict[str, Any]]) -> int:
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


def grammar(schema: dict[str, Any], model: str) -> Any:
    """A llama.cpp grammar for ``schema``; an unsupported schema is an error, never plain JSON."""
    from llama_cpp import LlamaGrammar  # type: ignore[attr-defined]

    try:
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception as exc:  # llama.cpp's converter raises several types
        raise BadRequest(
            f"llama.cpp cannot turn this JSON schema into a grammar: {exc}", backend="embedded", model=model
        ) from exc


def generate(llm: Any, messages: list[dict[str, Any]], kwargs: dict[str, Any], deadline: float | None,
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
                raise Deadline
            if guard is not None and finish is None and guard.feed(content) is not None:
                break
    finally:
        stream.close()
    timing = (None if first is None else first - t0, None if first is None or last is None else last - first)
    return "".join(parts), finish, timing


def window(llm: Any) -> int:
    """The usable window: the loaded context, never more than the model was trained for."""
    trained = int(llm._model.n_ctx_train())
    return min(llm.n_ctx(), trained) if trained > 0 else int(llm.n_ctx())


def remaining(deadline: float | None) -> float:
    """Seconds left for ``Lock.acquire`` (-1 = wait forever when no timeout was asked)."""
    if deadline is None:
        return -1
    return max(deadline - time.monotonic(), 0.0)
