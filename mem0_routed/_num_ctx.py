"""Context-window sizing for Ollama: big enough, never silently truncated, and stable.

Ollama truncates prompts longer than ``num_ctx`` without an error (default 2k-4k tokens), and every
change of ``num_ctx`` reloads the model and drops its prompt-prefix cache, the thing that makes
mem0's fixed ~8k-token system prompt cheap from the second call on. So per model ``num_ctx`` only
grows, in coarse power-of-two steps, and is capped by the model's real window.
"""

from __future__ import annotations

import threading

#: Token estimates are chars/4; real tokenizers can need ~25 % more on JSON, code or non-English text.
ESTIMATE_MARGIN = 1.25
#: Room for the answer when the caller gives no max_tokens.
DEFAULT_ANSWER_TOKENS = 1024


def needed_tokens(prompt_tokens: int, max_tokens: int | None) -> int:
    """Window a call needs: the prompt with a safety margin plus the answer."""
    return int(prompt_tokens * ESTIMATE_MARGIN) + (max_tokens or DEFAULT_ANSWER_TOKENS)


class ContextPlanner:
    """Remembers the ``num_ctx`` used per model and hands out values that never shrink."""

    def __init__(self, *, minimum: int = 4096, maximum: int | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self._lock = threading.Lock()
        self._current: dict[str, int] = {}
        self.changes: dict[str, int] = {}
        #: mem0's extraction prompt per model ("full" or "compact"), chosen once: the window is
        #: sized for it, so a later change would reload the model.
        self.choices: dict[str, str] = {}

    def choose(self, model: str, choice: str) -> str:
        """Keep the first choice made for ``model`` and return the one in force."""
        with self._lock:
            return self.choices.setdefault(model, choice)

    def plan(self, model: str, needed: int, window: int | None) -> int | None:
        """The ``num_ctx`` for a call needing ``needed`` tokens, or None if the window is too small.

        ``window`` is the model's real context length (None = unknown: trust ``maximum`` if set).
        """
        cap = min(x for x in (window, self.maximum) if x) if (window or self.maximum) else None
        if cap is not None and needed > cap:
            return None
        with self._lock:
            current = self._current.get(model, 0)
            if needed <= current:
                return current
            step = max(self.minimum, current or self.minimum)
            while step < needed:
                step *= 2
            if cap is not None:
                step = min(step, cap)
            if current:
                self.changes[model] = self.changes.get(model, 0) + 1
            self._current[model] = step
            return step

    def grow(self, model: str, window: int | None) -> int | None:
        """After a detected truncation: double the model's ``num_ctx`` if its window allows."""
        with self._lock:
            current = self._current.get(model, self.minimum)
        return self.plan(model, current + 1, window)

    def current(self, model: str) -> int | None:
        with self._lock:
            return self._current.get(model)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._current)


def looks_truncated(*, prompt_eval_count: int | None, estimated_tokens: int, num_ctx: int | None) -> bool:
    """Did Ollama cut the prompt? Its ``prompt_eval_count`` counts the tokens it kept (cached
    ones included since Ollama 0.2), so far fewer than estimated, or a prompt that fills the
    whole window, means the start of the prompt was dropped."""
    if not prompt_eval_count or estimated_tokens < 256:
        return False
    if prompt_eval_count < estimated_tokens / 2.5:
        return True
    return num_ctx is not None and prompt_eval_count >= num_ctx - 8
