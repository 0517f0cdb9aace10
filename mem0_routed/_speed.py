"""Learned model speeds: how fast each host reads a prompt and writes an answer, per model.

Why: on a CPU, reading mem0's ~8k-token extraction prompt takes minutes while a ~500-token compact
prompt takes seconds, and a fixed read timeout is either far too short for a cold model or far too
long for a loop. Ollama reports ``prompt_eval_count``/``prompt_eval_duration``/``eval_*`` with every
answer (llama.cpp gives the same through its timings); from them the router predicts each call's
time, gives the call a deadline that fits, and picks the prompt that meets the latency budget.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["SPEEDS", "Speed", "SpeedBook", "call_deadline_s", "describe"]

#: Weight of a new measurement in the running average (recent load on a shared machine matters).
ALPHA = 0.3
#: Measurements of fewer tokens than this say more about overheads than about speed.
MIN_PREFILL_TOKENS = 16
MIN_EVAL_TOKENS = 8
#: A prompt read this much faster than the known speed came from Ollama's prefix cache.
CACHE_HIT_FACTOR = 2.5


@dataclass(slots=True)
class Speed:
    """Tokens per second read (prefill) and written (generation), and the last model load time."""

    prefill_tps: float | None = None
    gen_tps: float | None = None
    load_s: float | None = None
    samples: int = 0

    def predict(self, prompt_tokens: int, answer_tokens: int) -> float | None:
        """Seconds for a call (model already loaded), or None until both speeds are known."""
        if not self.prefill_tps or not self.gen_tps:
            return None
        return prompt_tokens / self.prefill_tps + answer_tokens / self.gen_tps


def _mix(old: float | None, new: float) -> float:
    return new if old is None else (1 - ALPHA) * old + ALPHA * new


class SpeedBook:
    """Speeds per ``(host, model)``, shared by every router in the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._speeds: dict[tuple[str, str], Speed] = {}

    def observe(self, host: str, model: str, *, prompt_tokens: int | None, prompt_s: float | None,
                answer_tokens: int | None, answer_s: float | None, load_s: float | None = None) -> None:
        """Fold one answer's server timings in.

        Ollama counts the tokens it took from its prefix cache in ``prompt_eval_count`` but not in
        the duration (measured on 0.5.4: 1,222 tokens in 11.2 s cold, "in 0.15 s" cached), so a
        reading far faster than the known speed is a cache hit and is left out: the speed kept is
        the cold one, which is what a new prompt, a reload, or the prompt choice must plan for."""
        with self._lock:
            speed = self._speeds.setdefault((host, model), Speed())
            if prompt_tokens and prompt_s and prompt_tokens >= MIN_PREFILL_TOKENS:
                tps = prompt_tokens / prompt_s
                if speed.prefill_tps is None or tps <= CACHE_HIT_FACTOR * speed.prefill_tps:
                    speed.prefill_tps = _mix(speed.prefill_tps, tps)
            if answer_tokens and answer_s and answer_tokens >= MIN_EVAL_TOKENS:
                speed.gen_tps = _mix(speed.gen_tps, answer_tokens / answer_s)
            if load_s is not None and load_s > 0.05:  # a real load, not a warm model's bookkeeping
                speed.load_s = load_s
            speed.samples += 1

    def get(self, host: str, model: str) -> Speed:
        with self._lock:
            found = self._speeds.get((host, model))
            return Speed(found.prefill_tps, found.gen_tps, found.load_s, found.samples) if found else Speed()

    def set(self, host: str, model: str, speed: Speed) -> None:
        """Seed a speed (a benchmark, a test, or a value kept from an earlier run)."""
        with self._lock:
            self._speeds[(host, model)] = speed

    def snapshot(self) -> dict[str, dict[str, float | None]]:
        with self._lock:
            return {f"{model}@{host}": {"prefill_tps": s.prefill_tps, "gen_tps": s.gen_tps, "load_s": s.load_s}
                    for (host, model), s in self._speeds.items()}

    def clear(self) -> None:
        with self._lock:
            self._speeds.clear()


#: The process's speed book (speeds belong to the host, not to one router).
SPEEDS = SpeedBook()


def call_deadline_s(predicted_s: float | None, *, margin: float, floor_s: float, ceiling_s: float,
                    load_s: float | None = None) -> float:
    """Seconds one local call may take: the prediction times ``margin`` plus a possible reload,
    kept between ``floor_s`` and ``ceiling_s``; the ceiling until anything is measured."""
    if predicted_s is None:
        return ceiling_s
    return min(ceiling_s, max(floor_s, predicted_s * margin + (load_s or 0.0)))


def describe(speed: Speed) -> str:
    """'~180 tokens/s reading, ~25 tokens/s writing' (or 'not measured yet')."""
    if not speed.prefill_tps or not speed.gen_tps:
        return "speed not measured yet"
    return f"~{speed.prefill_tps:.0f} tokens/s reading, ~{speed.gen_tps:.0f} tokens/s writing"
