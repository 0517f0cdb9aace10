"""A fake Ollama server on 127.0.0.1 that speaks Ollama's HTTP API (the parts mem0 and the
official ``ollama`` client use), with Ollama's quirks: silent prompt truncation to ``num_ctx``,
model reloads when ``num_ctx`` changes, and Ollama's own error bodies.

    with FakeOllamaServer() as server:
        client = ollama.Client(host=server.url)
        server.set_fault("error500", model="mistral:7b", times=2)

``stream: true`` chat requests get Ollama's NDJSON chunks (one per ~4-character token, the counts
and timings in the last). Two fault modes of its own besides the shared ones:
``"repeat_loop"`` -- the answer repeats its last item (or sentence) until ``num_predict``, like a
small model stuck in a loop; ``"trickle"`` -- the answer arrives one byte every ``delay_s``.
``token_delay_s`` paces streamed tokens; ``stream_log`` records (chunks sent, whether the client
hung up early) per streamed answer.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

from . import _fakemodel as fm
from ._base import Fault, Reply
from ._sse import StreamingServer

__all__ = ["DEFAULT_OLLAMA_MODELS", "OLLAMA_FAULT_MODES", "FakeOllamaServer", "ModelSpec"]

#: Fault modes only the fake Ollama has (on top of ``FAULT_MODES``).
OLLAMA_FAULT_MODES = ("repeat_loop",)  # "trickle" is the base's; streamed bodies trickle too
#: Tokens a looping answer runs to when the request sets no ``num_predict`` (Ollama's would be -1).
LOOP_TOKENS = 2000

OLLAMA_VERSION = "0.6.5"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model the fake serves. ``embedding_dims`` set means it is an embedding model."""

    context_length: int = 8192
    embedding_dims: int | None = None
    family: str = "llama"
    capabilities: tuple[str, ...] = field(default=())

    @property
    def caps(self) -> list[str]:
        if self.capabilities:
            return list(self.capabilities)
        return ["embedding"] if self.embedding_dims else ["completion", "tools"]


#: The seed's route table models plus its embedder, with their real context windows.
DEFAULT_OLLAMA_MODELS: dict[str, ModelSpec] = {
    "mistral:7b": ModelSpec(context_length=32768),
    "deepseek-coder:6.7b": ModelSpec(context_length=16384),
    "codellama:13b": ModelSpec(context_length=16384),
    "nomic-embed-text:latest": ModelSpec(context_length=2048, embedding_dims=768, family="nomic-bert"),
}


def _norm(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


def _err(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"error": message}, headers)


class FakeOllamaServer(StreamingServer):
    """Fake Ollama. ``models`` maps names (``"mistral"`` means ``"mistral:latest"``) to specs.

    Besides ``requests`` it records ``num_ctx_log`` (model, effective num_ctx) per chat/embed and
    ``reloads`` (per model, how often a change of num_ctx made Ollama reload it).
    """

    EXTRA_FAULT_MODES = OLLAMA_FAULT_MODES

    def __init__(self, models: dict[str, ModelSpec] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        src = DEFAULT_OLLAMA_MODELS if models is None else models
        self.models: dict[str, ModelSpec] = {_norm(k): v for k, v in src.items()}
        self._initial_models = dict(self.models)
        self.num_ctx_log: list[tuple[str, int]] = []
        self.reloads: Counter[str] = Counter()
        self._loaded: dict[str, int] = {}
        self._state_lock = threading.Lock()
        self.keep_alive_log: list[Any] = []

    def _reset_state(self) -> None:
        self.models = dict(self._initial_models)
        with self._state_lock:
            self.num_ctx_log.clear()
            self.reloads.clear()
            self._loaded.clear()
            self.keep_alive_log.clear()
        self._reset_streams()

    @staticmethod
    def _norm(model: str) -> str:
        return _norm(model)

    def add_model(self, name: str, spec: ModelSpec | None = None) -> None:
        """Make a model available at runtime (as if pulled)."""
        self.models[_norm(name)] = spec or ModelSpec()

    def remove_model(self, name: str) -> None:
        self.models.pop(_norm(name), None)

    # --- routing ---------------------------------------------------------------------------------

    def _route(
        self, method: str, path: str, body: Any, headers: dict[str, str], fault: Fault | None
    ) -> Reply:
        return self._route_inner(method, path, body, headers, fault)

    def _route_inner(
        self, method: str, path: str, body: Any, headers: dict[str, str], fault: Fault | None
    ) -> Reply:
        if isinstance(body, dict) and path in ("/api/chat", "/api/embed"):
            with self._state_lock:
                self.keep_alive_log.append(body.get("keep_alive"))
        if fault is not None:
            early = self._fault_reply(fault, body)
            if early is not None:
                return early
        if method == "GET" and path in ("/", "/api/version", "/api/tags", "/api/ps"):
            if path == "/":
                return Reply(200, b"Ollama is running")
            if path == "/api/version":
                return Reply(200, {"version": OLLAMA_VERSION})
            return self._tags() if path == "/api/tags" else self._ps()
        if method != "POST" or path not in ("/api/show", "/api/chat", "/api/embed", "/api/pull"):
            return Reply(404, b"404 page not found")
        if not isinstance(body, dict):
            return _err(400, "invalid request body: expected a JSON object")
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
            return _err(400, "model is required")
        model = _norm(name)
        spec = self.models.get(model)
        if spec is None or (fault is not None and fault.mode == "model_missing"):
            if path == "/api/pull":
                return _err(500, "pull model manifest: file does not exist")
            return _err(404, f"model {json.dumps(name)} not found, try pulling it first")
        if path == "/api/show":
            return self._show(model, spec)
        if path == "/api/pull":
            return Reply(200, {"status": "success"})
        if path == "/api/embed":
            return self._embed(model, spec, body)
        return self._chat(model, spec, body, fault)

    def _fault_reply(self, fault: Fault, body: Any) -> Reply | None:
        if fault.mode == "error500":
            return _err(500, "llama runner process has terminated: exit status 2")
        if fault.mode == "error429":
            hdrs = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
            return _err(429, "too many requests", hdrs)
        if fault.mode == "error401":
            return _err(401, "unauthorized")
        return None

    # --- endpoints -------------------------------------------------------------------------------

    def _details(self, spec: ModelSpec) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": spec.family,
            "families": [spec.family],
            "parameter_size": "137M" if spec.embedding_dims else "7.2B",
            "quantization_level": "F16" if spec.embedding_dims else "Q4_0",
        }

    def _tags(self) -> Reply:
        now = datetime.now(timezone.utc).isoformat()
        with self._lock:  # a "model_missing" fault hides the model from the list too
            missing = {f.model for f in self._faults if f.mode == "model_missing"}
        models = [
            {
                "name": name,
                "model": name,
                "modified_at": now,
                "size": 274302450 if spec.embedding_dims else 4113301824,
                "digest": _digest(name),
                "details": self._details(spec),
            }
            for name, spec in sorted(self.models.items())
            if None not in missing and name not in missing
        ]
        return Reply(200, {"models": models})

    def _ps(self) -> Reply:
        with self._state_lock:
            loaded = dict(self._loaded)
        models = [
            {
                "name": name,
                "model": name,
                "size": 4113301824,
                "digest": _digest(name),
                "details": self._details(self.models[name]),
                "expires_at": "2100-01-01T00:00:00Z",
                "size_vram": 0,
                "context_length": ctx,
            }
            for name, ctx in sorted(loaded.items())
            if name in self.models
        ]
        return Reply(200, {"models": models})

    def _show(self, model: str, spec: ModelSpec) -> Reply:
        arch = spec.family
        info: dict[str, Any] = {
            "general.architecture": arch,
            "general.parameter_count": 137_000_000 if spec.embedding_dims else 7_241_732_096,
            f"{arch}.context_length": spec.context_length,
            f"{arch}.embedding_length": spec.embedding_dims or 4096,
        }
        return Reply(
            200,
            {
                "modelfile": f"FROM {model}\n",
                "parameters": 'stop "[INST]"',
                "template": "{{ .Prompt }}",
                "details": self._details(spec),
                "model_info": info,
                "capabilities": spec.caps,
                "modified_at": datetime.now(timezone.utc).isoformat(),
            },
        )

    def _load(self, model: str, spec: ModelSpec, options: dict[str, Any]) -> int:
        """Effective window (num_ctx or 2048, capped at the model's), counting reloads like Ollama."""
        asked = options.get("num_ctx")
        num_ctx = int(asked) if isinstance(asked, (int, float)) and asked > 0 else fm.DEFAULT_NUM_CTX
        num_ctx = min(num_ctx, spec.context_length)
        with self._state_lock:
            self.num_ctx_log.append((model, num_ctx))
            if model in self._loaded and self._loaded[model] != num_ctx:
                self.reloads[model] += 1
            self._loaded[model] = num_ctx
        return num_ctx

    def _embed(self, model: str, spec: ModelSpec, body: dict[str, Any]) -> Reply:
        if not spec.embedding_dims:
            return _err(400, f"{json.dumps(model)} does not support embeddings")
        raw = body.get("input", "")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return _err(400, "invalid input type: expected a string or a list of strings")
        options = body.get("options") or {}
        num_ctx = self._load(model, spec, options)
        dims = body.get("dimensions") or spec.embedding_dims
        t0 = time.perf_counter_ns()
        vectors = [fm.embed_text(fm.truncate_prompt(t, num_ctx)[0], int(dims)) for t in texts]
        return Reply(
            200,
            {
                "model": model,
                "embeddings": vectors,
                "total_duration": time.perf_counter_ns() - t0,
                "load_duration": 0,
                "prompt_eval_count": sum(min(fm.estimate_tokens(t), num_ctx) for t in texts),
            },
        )

    def _chat(self, model: str, spec: ModelSpec, body: dict[str, Any], fault: Fault | None) -> Reply:
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return _err(400, "invalid message format: expected a list of objects")
        if spec.embedding_dims and "completion" not in spec.caps:
            return _err(400, f"{json.dumps(model)} does not support chat")
        options = body.get("options") or {}
        num_ctx = self._load(model, spec, options)
        t0 = time.perf_counter_ns()
        kept, prompt_tokens, _ = fm.truncate_prompt(fm.prompt_text(messages), num_ctx)
        fmt = body.get("format")
        schema = fmt if isinstance(fmt, dict) else None
        answer = fm.fake_answer(messages, kept, model=model, json_format=fmt == "json", schema=schema)
        done_reason = "stop"
        num_predict = options.get("num_predict")
        if isinstance(num_predict, int) and num_predict > 0 and fm.estimate_tokens(answer) > num_predict:
            answer, done_reason = answer[: num_predict * fm.CHARS_PER_TOKEN], "length"
        if fault is not None:
            if fault.mode == "invalid_json":
                answer = (
                    '{"memory": [{"id": "0", "text": broken' if fmt or "json" in kept.lower() else "{oops"
                )
            elif fault.mode == "empty":
                answer = ""
            elif fault.mode == "truncate_output":
                answer, done_reason = answer[: max(1, len(answer) // 2)], "length"
            elif cast(str, fault.mode) == "repeat_loop":
                limit = num_predict if isinstance(num_predict, int) and num_predict > 0 else LOOP_TOKENS
                answer, done_reason = _looping(answer, limit * fm.CHARS_PER_TOKEN), "length"
        elapsed = time.perf_counter_ns() - t0
        final = {
            "model": model,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "message": {"role": "assistant", "content": answer},
            "done_reason": done_reason,
            "done": True,
            "total_duration": elapsed,
            "load_duration": 0,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": elapsed // 2 or 1,
            "eval_count": max(1, fm.estimate_tokens(answer)),
            "eval_duration": elapsed // 2 or 1,
        }
        if body.get("stream") is True:
            return Reply(200, self._stream(final), {"Content-Type": "application/x-ndjson"})
        return Reply(200, final)

    def _stream(self, final: dict[str, Any]) -> Iterator[bytes]:
        """Ollama's streamed answer: one chunk per token, then the counts (``stream_log`` records
        how many chunks went out and whether the client hung up first)."""
        answer: str = final["message"]["content"]
        step = fm.CHARS_PER_TOKEN
        sent = 0
        finished = False
        try:
            for i in range(0, len(answer), step):
                if self.token_delay_s and self._stopping.wait(self.token_delay_s):
                    return
                chunk = {"model": final["model"], "created_at": final["created_at"],
                         "message": {"role": "assistant", "content": answer[i:i + step]}, "done": False}
                sent += 1
                yield json.dumps(chunk).encode() + b"\n"
            last = dict(final, message={"role": "assistant", "content": ""})
            yield json.dumps(last).encode() + b"\n"
            finished = True
        finally:
            self._streamed(sent, not finished)


def _looping(answer: str, chars: int) -> str:
    """``answer`` with its last memory item (or its last sentence) repeated up to ``chars``."""
    try:
        data = json.loads(answer)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("memory"), list):
        items = data["memory"] or [{"id": "0", "text": "User said hello", "attributed_to": "user"}]
        head = json.dumps({"memory": items})[:-2]  # without the closing "]}"
        unit = ", " + json.dumps(items[-1])
        return (head + unit * (chars // len(unit) + 1))[:chars]
    unit = " " + (answer.strip() or "and so on.")
    return (answer + unit * (chars // len(unit) + 1))[:chars]


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()
