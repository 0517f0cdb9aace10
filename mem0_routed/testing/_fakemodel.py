"""The deterministic "model" behind the fake servers: same prompt in, same answer out.

It behaves just enough like a real model for mem0's calls to be meaningful in tests: mem0's
extraction prompt yields one fact per sentence of each user message, the reranker prompt yields a
word-overlap score, embeddings share direction when texts share words. It also truncates a prompt
that does not fit the context window the way Ollama does (silently, keeping the end), which is the
failure the router must prevent.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DEFAULT_NUM_CTX",
    "embed_text",
    "estimate_tokens",
    "extract_facts",
    "fake_answer",
    "prompt_text",
    "schema_instance",
    "truncate_prompt",
]

#: Ollama's context window when a request does not set ``options.num_ctx``.
DEFAULT_NUM_CTX = 2048
#: Characters per token; the one estimate used everywhere in the fakes.
CHARS_PER_TOKEN = 4

_WORD_RE = re.compile(r"[a-z0-9]+")
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")
_RERANK_RE = re.compile(r"Query:\s*(?P<q>.*?)\n\nDocument:\s*(?P<d>.*)\Z", re.DOTALL)
_NEW_MESSAGES = "## New Messages\n"
_ROLE_LINE_RE = re.compile(r"^(user|assistant|system):\s?(.*)$")
# Words so common that sharing them says nothing about meaning (keeps unrelated texts apart).
_STOPWORDS = frozenset(
    "a an and are as at be but by do does did for from has have how i in is it its me my of on or our so "  # noqa: SIM905
    "that the their them they this to was we were what when where which who why will with you your".split()
)


def estimate_tokens(text: str) -> int:
    """The fakes' token count: ``len(text) // 4`` (one rule, so tests can predict truncation)."""
    return len(text) // CHARS_PER_TOKEN


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # OpenAI-style parts: keep the text ones
        parts = [p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"]
        return "\n".join(str(p) for p in parts)
    return str(content)


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """All message contents joined with newlines: what the fake "reads" and counts."""
    return "\n".join(_content_text(m.get("content")) for m in messages)


def truncate_prompt(text: str, num_ctx: int) -> tuple[str, int, bool]:
    """Keep only the last ``num_ctx`` tokens' worth of ``text`` (Ollama drops the start, silently).

    Returns (kept text, its token count, whether anything was cut).
    """
    if estimate_tokens(text) <= num_ctx:
        return text, estimate_tokens(text), False
    kept = text[-num_ctx * CHARS_PER_TOKEN :]
    return kept, estimate_tokens(kept), True


def _words(text: str) -> list[str]:
    out = []
    for w in _WORD_RE.findall(text.lower()):
        if w in _STOPWORDS:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]  # crude plural folding: "likes" ~ "like"
        out.append(w)
    return out


def embed_text(text: str, dims: int) -> list[float]:
    """Bag-of-words hashing: each word adds 1 to a hashed dimension; the vector is L2-normalised.

    Texts sharing words point the same way; unrelated texts are near-orthogonal. An empty text
    maps to a fixed unit vector so cosine similarity is always defined.
    """
    if dims < 1:
        raise ValueError(f"embedding dims must be >= 1, got {dims}")
    vec = [0.0] * dims
    for w in _words(text):
        h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
        vec[h % dims] += 1.0
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0.0:
        vec[0] = 1.0
        return vec
    return [v / norm for v in vec]


def _new_messages(section: str) -> list[tuple[str, str]]:
    """Parse mem0's "## New Messages" body: a JSON list of {role, content} or "role: text" lines."""
    body = section.strip()
    if body.startswith("["):
        try:
            items = json.JSONDecoder().raw_decode(body)[0]
        except ValueError:
            items = []
        return [
            (str(i.get("role", "")), _content_text(i.get("content"))) for i in items if isinstance(i, Mapping)
        ]
    out: list[tuple[str, str]] = []
    for line in body.splitlines():
        m = _ROLE_LINE_RE.match(line)
        if m:
            out.append((m.group(1), m.group(2)))
        elif out:  # continuation of a multi-line message
            out[-1] = (out[-1][0], out[-1][1] + "\n" + line)
    return out


def extract_facts(prompt: str) -> list[dict[str, str]]:
    """What a good model extracts from mem0's prompt: one fact per sentence of each user message
    in the last "## New Messages" section; none when that section is not in ``prompt``."""
    start = prompt.rfind(_NEW_MESSAGES)
    if start < 0:
        return []
    section = prompt[start + len(_NEW_MESSAGES) :]
    end = section.find("\n## ")
    if end >= 0:
        section = section[:end]
    section = section.split("\n# Output", 1)[0]
    facts: list[dict[str, str]] = []
    for role, content in _new_messages(section):
        if role != "user":
            continue
        for sentence in _SENTENCE_RE.split(content.strip()):
            sentence = sentence.strip()
            if sentence:
                facts.append({"id": str(len(facts)), "text": sentence, "attributed_to": "user"})
    return facts


def is_extraction(messages: Sequence[Mapping[str, Any]]) -> bool:
    """mem0's extraction call: a non-system message carrying the "## New Messages" section."""
    return any(
        m.get("role") != "system" and _NEW_MESSAGES in _content_text(m.get("content")) for m in messages
    )


def _last_user(messages: Sequence[Mapping[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return _content_text(m.get("content"))
    return _content_text(messages[-1].get("content")) if messages else ""


def rerank_score(query: str, document: str) -> float:
    """Share of the query's words found in the document, rounded to 0.1."""
    q, d = set(_words(query)), set(_words(document))
    return round(len(q & d) / len(q), 1) if q else 0.0


def schema_instance(schema: Mapping[str, Any], hint: str = "") -> Any:
    """A small value that satisfies a (simple) JSON Schema: required/declared properties filled by type."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return schema_instance(schema[key][0], hint)
    typ = schema.get("type", "object")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ == "object":
        props = schema.get("properties") or {}
        return {k: schema_instance(v, hint) for k, v in props.items() if isinstance(v, Mapping)}
    if typ == "array":
        return []
    if typ == "string":
        return hint or "ok"
    if typ in ("number", "integer"):
        return 0
    if typ == "boolean":
        return True
    return None


def _snippet(text: str, n: int = 16) -> str:
    return " ".join(text.split()[:n])


def fake_answer(
    messages: Sequence[Mapping[str, Any]],
    truncated_prompt: str,
    *,
    model: str,
    json_format: bool = False,
    schema: Mapping[str, Any] | None = None,
) -> str:
    """The model's answer, from the (possibly truncated) prompt.

    JSON is produced when a format is given or the prompt mentions JSON: mem0's extraction shape
    for its extraction call, else an object fitting ``schema`` or ``{"model", "answer"}``. mem0's
    reranker prompt gets a score such as ``"0.8"``; anything else a short text naming the model.
    """
    last = _last_user(messages)
    rerank = _RERANK_RE.search(last)
    if rerank and not json_format and schema is None:
        return str(rerank_score(rerank.group("q"), rerank.group("d")))
    wants_json = json_format or schema is not None or "json" in truncated_prompt.lower()
    if wants_json:
        if is_extraction(messages):
            return json.dumps({"memory": extract_facts(truncated_prompt)})
        if schema is not None:
            return json.dumps(schema_instance(schema, _snippet(last, 8)))
        return json.dumps({"model": model, "answer": _snippet(last)})
    return f"{model} says: {_snippet(last)}" if last.strip() else f"{model} says: (nothing asked)"
