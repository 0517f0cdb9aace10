"""Query classification: what kind of work a call is, how hard, and how big.

It runs on every call, so it is pure CPU, precompiled, and bounded: free text is scanned for
signals in at most ``_SCAN_CHARS`` characters from each end, and mem0's ~34k-char system prompts
are recognised by counting distinctive markers (never by an exact compare or a hash, since mem0
rewords its prompts between releases). That analysis is memoised per system-prompt string; the
memo only saves time, the answer is the same without it.

Seed table: simple < 500 words (1-3); summarization 500-2000 words (2-4); extraction (2); code (3);
medium 2k-4k tokens or complexity 4-6; complex > 4k tokens or complexity > 6.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from ._errors import InvalidInput
from ._signals import (
    _BPUNCT,
    _CODE_ASK,
    _CODE_LINE_RE,
    _CODE_LINE_STARTS,
    _EXTRACT,
    _INLINE_CODE_RE,
    _POWER_RE,
    _PUNCT,
    _REASONING_TRIGGERS,
    _REASONING_WORDS,
    _SUMMARY,
    _fires,
)
from ._types import CallKind, Classification, QueryType

__all__ = ["check_encodable", "check_params", "classify_messages", "classify_query", "classify_text",
           "estimate_tokens"]

_SCAN_CHARS = 3000  # signals are looked for in the first and last 3000 chars of the ask
_MSG_OVERHEAD = 4  # chat-template tokens per message
_IMAGE_TOKENS = 768  # what one image costs a local vision model (llava: 576, gpt-4o tile: 765)
_SIMPLE_WORDS, _SUMMARY_WORDS = 500, 2000
_MEDIUM_TOKENS, _COMPLEX_TOKENS = 2000, 4000
_JSON_FORMATS = frozenset({"json_object", "json_schema"})
#: Roles both backends accept (OpenAI's "developer"/"function" too); anything else fails in a client.
_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})


def estimate_tokens(text: str) -> int:
    """About what a BPE tokenizer (o200k, cl100k, llama3, qwen) counts, a little on the high side.

    ASCII prose is ~4 chars/token; quotes mark JSON and code, which tokenize denser. Non-ASCII
    letters cost more than one byte each (Cyrillic ~0.5 token/char, CJK ~1), so each extra UTF-8
    byte adds 0.3 token. Within ~15% of o200k on mem0's prompts, code and JSON.
    """
    if type(text) is not str:
        _check_text(text)
    n = len(text)
    if not n:
        return 0
    extra = 0 if text.isascii() else len(text.encode("utf-8", "surrogatepass")) - n
    return (10 * (n + text.count('"')) + 12 * extra) // 40 + 1


def classify_query(text: str, context_length: int | None = None) -> tuple[QueryType, int]:
    """The seed's API: ``(query_type, complexity)``."""
    c = classify_text(text, context_length)
    return c.query_type, c.complexity


def classify_text(text: str, context_length: int | None = None) -> Classification:
    """Classify one free-form text; ``context_length`` (tokens) replaces the estimate when given."""
    _check_text(text)
    if context_length is None:
        tokens = estimate_tokens(text)
    elif type(context_length) is int and context_length >= 0:
        tokens = context_length
    else:
        raise InvalidInput(
            f"context_length must be a non-negative int (a token count) or None, got {context_length!r}"
        )
    qtype, complexity, reasons = _decide(text, tokens, False)
    return Classification(qtype, complexity, tokens, reasons=reasons)


def classify_messages(
    messages: Sequence[Mapping[str, Any]], response_format: Mapping[str, Any] | None = None
) -> Classification:
    """Classify a chat call as mem0 sends it to ``generate_response``.

    mem0's own calls are recognised and sized by what varies in them; ``estimated_tokens`` is
    still the whole prompt, since the context window must hold all of it.
    """
    wants_json = _wants_json(response_format)
    if not isinstance(messages, (list, tuple)):
        raise InvalidInput(
            f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}"
        )
    if not messages:
        raise InvalidInput("messages is empty; pass at least one {'role': 'user', 'content': ...} dict")
    texts: list[str] = []
    images = 0
    last_user = -1
    sys_info: _SystemInfo | None = None
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise InvalidInput(f"messages[{i}] must be a dict with 'role' and 'content', got {type(m).__name__}")
        if "role" not in m or "content" not in m:
            raise InvalidInput(
                f"messages[{i}] must have 'role' and 'content' keys, got keys {sorted(map(str, m))}"
            )
        role, content = m["role"], m["content"]
        if not isinstance(role, str) or role not in _ROLES:
            raise InvalidInput(f"messages[{i}]['role'] must be one of {', '.join(sorted(_ROLES))}, "
                               f"got {role!r:.40}")
        if isinstance(content, str):
            check_encodable(content, f"messages[{i}]['content']")
            texts.append(content)
        elif content is None:
            texts.append("")
        elif isinstance(content, list):
            parts, n_img = _content_parts(content, i)
            texts.append(parts)
            images += n_img
        else:
            raise InvalidInput(
                f"messages[{i}]['content'] must be a str, a list of content parts or None, "
                f"got {type(content).__name__}"
            )
        if role == "user":
            last_user = i
        elif role == "system" and i == 0:
            sys_info = _system_info(content) if isinstance(content, str) else None

    sys_tokens = sys_info.tokens if sys_info is not None else 0
    variable = sum(map(estimate_tokens, texts[1:] if sys_info is not None else texts))
    variable += _MSG_OVERHEAD * len(texts) + _IMAGE_TOKENS * images
    total = sys_tokens + variable
    ask = texts[last_user] if last_user >= 0 else texts[-1]

    if sys_info is not None and not images:
        kind = _mem0_kind(sys_info, ask, wants_json, len(texts))
        if kind is not None:
            return _mem0_classification(kind, total, variable, wants_json)

    qtype, complexity, reasons = _decide(ask, total, wants_json)
    if qtype in (QueryType.SIMPLE, QueryType.MEDIUM) and any(
        "```" in t for j, t in enumerate(texts) if j != last_user and messages[j]["role"] != "system"
    ):
        qtype, complexity = QueryType.CODE, max(3, complexity)
        reasons = (*reasons, "code earlier in conversation")
    if images:
        reasons = (f"{images} image(s)", *reasons)
        return Classification(
            qtype, complexity, total, CallKind.MEM0_VISION, variable, reasons, wants_json, True
        )
    return Classification(qtype, complexity, total, CallKind.QUERY, None, reasons, wants_json)


# --- validation and message plumbing ---------------------------------------------------------


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise InvalidInput(
            f"text must be a str, got {type(text).__name__}; decode bytes or str() the value first"
        )
    check_encodable(text, "text")


def check_encodable(text: str, where: str) -> None:
    """Raise ``InvalidInput`` for text no backend can send: a lone surrogate (e.g. from bytes decoded
    with ``surrogateescape``) fails UTF-8 encoding inside the HTTP client, where it would look like
    a broken server and trip the breaker for every caller."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{where} has a character UTF-8 cannot encode ({text[exc.start]!r} at index {exc.start}, a lone "
            "surrogate); clean the text first, e.g. text.encode('utf-8', 'replace').decode('utf-8')"
        ) from None


def check_params(temperature: object, top_p: object, max_tokens: object) -> None:
    """Sampling settings a backend would reject: the caller's error, raised before any call."""
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0
        ):
            raise InvalidInput(f"{name} must be a finite number >= 0 or None, got {value!r}")
    if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
        raise InvalidInput(f"max_tokens must be an int >= 1 or None, got {max_tokens!r}")


def _wants_json(response_format: object) -> bool:
    if response_format is None:
        return False
    if not isinstance(response_format, Mapping):
        raise InvalidInput(
            "response_format must be a dict like {'type': 'json_object'} or None, "
            f"got {type(response_format).__name__}"
        )
    return response_format.get("type") in _JSON_FORMATS


def _content_parts(content: list[Any], index: int) -> tuple[str, int]:
    """Text of an OpenAI-style content list, and how many images it carries."""
    texts: list[str] = []
    images = 0
    for j, part in enumerate(content):
        if isinstance(part, str):
            check_encodable(part, f"messages[{index}]['content'][{j}]")
            texts.append(part)
            continue
        if not isinstance(part, Mapping):
            raise InvalidInput(
                f"messages[{index}]['content'][{j}] must be a dict or str, got {type(part).__name__}"
            )
        ptype = part.get("type")
        if ptype in ("image_url", "input_image", "image") or "image_url" in part:
            images += 1
        elif isinstance(part.get("text"), str):
            check_encodable(part["text"], f"messages[{index}]['content'][{j}]['text']")
            texts.append(part["text"])
        elif ptype == "text":
            raise InvalidInput(
                f"messages[{index}]['content'][{j}]['text'] must be a str, got {type(part.get('text')).__name__}"
            )
    return "\n".join(texts), images


# --- mem0 call recognition ---------------------------------------------------------------------

# Each marker is a phrase a rewording is unlikely to drop all of at once; a call is mem0's when
# enough of them are present, so an edited, reordered or extended prompt is still recognised.
_EXTRACTION_MARKERS = (
    "memory extractor", "## new messages", "## existing memories", "## recently extracted memories",
    "linked_memory_ids", '"memory"', "attributed_to", "deduplication",
)  # fmt: skip
_PROCEDURAL_MARKERS = (
    "memory summarization system", "execution history", "agent action", "action result",
    "task objective", "progress status", "verbatim", "numbered step",
)  # fmt: skip
_RERANKER_MARKERS = (
    "relevance scoring", "how relevant", "0.0 to 1.0", "numerical score", "query and a document", "relevan",
)  # fmt: skip
_EXTRACTION_USER_MARKERS = ("## New Messages", "## Existing Memories", "## Last k Messages", "# Output")
_GATE = ("memor", "relevan", "score", "summar", "extract")


class _SystemInfo(NamedTuple):
    tokens: int
    extraction: int  # markers matched per mem0 call kind
    procedural: int
    reranker: int


@lru_cache(maxsize=32)
def _system_info(system: str) -> _SystemInfo:
    """Marker counts and size of one system prompt; memoised because mem0 reuses one string."""
    tokens = estimate_tokens(system)
    head = system[:4000].lower()
    if not any(g in head for g in _GATE):  # cheap reject of most non-mem0 prompts
        return _SystemInfo(tokens, 0, 0, 0)
    # mem0's markers sit in the first 8k chars (inputs) and the last 4k (output format).
    low = (system if len(system) <= 12000 else system[:8000] + "\n" + system[-4000:]).lower()
    extraction = sum(m in low for m in _EXTRACTION_MARKERS)
    if extraction >= 3:  # the kinds exclude one another: skip the other marker scans
        return _SystemInfo(tokens, extraction, 0, 0)
    procedural = sum(m in low for m in _PROCEDURAL_MARKERS)
    return _SystemInfo(tokens, extraction, procedural, sum(m in low for m in _RERANKER_MARKERS))


def _mem0_kind(info: _SystemInfo, ask: str, wants_json: bool, n_messages: int) -> CallKind | None:
    if info.extraction >= 3:
        user_hits = sum(m in ask for m in _EXTRACTION_USER_MARKERS)
        if info.extraction + user_hits + wants_json >= 7:
            return CallKind.MEM0_EXTRACTION
    if info.procedural >= 3:
        closing = "procedural memory" in ask[-200:].lower()
        if info.procedural + 2 * closing >= 5:
            return CallKind.MEM0_PROCEDURAL
    if info.reranker >= 2 and n_messages == 2 and ask.startswith("Query:") and "\n\nDocument:" in ask:
        return CallKind.MEM0_RERANKER
    return None


def _mem0_classification(kind: CallKind, total: int, variable: int, wants_json: bool) -> Classification:
    sized = f"sized by {variable} varying tokens"
    if kind is CallKind.MEM0_RERANKER:
        c = 1 if variable < 1000 else 2
        return Classification(
            QueryType.SIMPLE, c, total, kind, variable, ("mem0 reranker call", sized), wants_json
        )
    qtype, label = (
        (QueryType.EXTRACTION, "mem0 extraction call")
        if kind is CallKind.MEM0_EXTRACTION
        else (QueryType.SUMMARIZATION, "mem0 procedural memory call")
    )
    return Classification(qtype, _sized(2, variable), total, kind, variable, (label, sized), wants_json)


def _sized(base: int, tokens: int) -> int:
    """Complexity of fixed-format work: ``base``, one step up per doubling past 1k tokens."""
    for limit in (1000, 2000, 4000, 8000, 16000):
        if tokens < limit:
            return base
        base += 1
    return min(base, 10)


def _bounded(text: str) -> str:
    return text if len(text) <= 2 * _SCAN_CHARS else text[:_SCAN_CHARS] + "\n" + text[-_SCAN_CHARS:]


def _code_reason(text: str, scan: str, low: str, ws: set[str]) -> str | None:
    """Cheap substring checks on the whole text; line-start checks and regexes on the scan only."""
    if "```" in text:
        return "code fence"
    if "Traceback (most recent call last)" in text or "Exception in thread" in text:
        return "stack trace"
    for line in scan.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(_CODE_LINE_STARTS):
            m = _CODE_LINE_RE.match(stripped)
            if m is not None:
                return "stack trace" if m.lastgroup == "trace" else "code keywords"
    if ("def " in scan or "FROM" in scan) and _INLINE_CODE_RE.search(scan):
        return "code keywords"
    return _CODE_ASK.reason if _fires(_CODE_ASK, ws, low) else None


def _words(text: str) -> int:
    words = text.count(" ") + text.count("\n") + 1 if text else 0
    # Scripts without spaces between words (CJK, Thai): fall back to the token estimate.
    return words if words * 8 >= len(text) else max(words, estimate_tokens(text) * 3 // 4)


def _decide(text: str, tokens: int, wants_json: bool) -> tuple[QueryType, int, tuple[str, ...]]:
    """The seed table plus what length does not show: reasoning, code and explicit asks."""
    scan = _bounded(text)
    low = scan.lower()
    # bytes.translate is a plain table lookup; str.translate consults a dict per distinct char
    ws = set((low.encode().translate(_BPUNCT).decode() if low.isascii() else low.translate(_PUNCT)).split())
    words = _words(text)
    bonus = 0
    signals: list[str] = []
    seen: set[str] = set()
    for sig, triggers in _REASONING_TRIGGERS if not _REASONING_WORDS.isdisjoint(ws) else ():
        if not triggers.isdisjoint(ws) and sig.name not in seen and _fires(sig, ws, low):
            seen.add(sig.name)
            bonus += sig.weight
            signals.append(sig.reason)
    if "maths" not in seen and (
        ("^" in low and _POWER_RE.search(low)) or (not low.isascii() and any(c in low for c in "∫∑∏∂√"))
    ):
        bonus += 6
        signals.append("reasoning: maths")
    if low.count("?") >= 3:
        bonus += 2
        signals.append("several questions")

    if tokens > _COMPLEX_TOKENS:
        base, size = min(10, 7 + (tokens - _COMPLEX_TOKENS) // 8000), ">4k tokens"
    elif _SIMPLE_WORDS <= words < _SUMMARY_WORDS:
        base, size = 2 + (words - _SIMPLE_WORDS) * 3 // (_SUMMARY_WORDS - _SIMPLE_WORDS), "500-2000 words"
    elif tokens >= _MEDIUM_TOKENS or words >= _SUMMARY_WORDS:
        base, size = min(6, 4 + max(0, tokens - _MEDIUM_TOKENS) * 3 // _MEDIUM_TOKENS), "2k-4k tokens"
    else:
        base, size = 1 + (words >= 30) + (words >= 150), f"short ({words} words)"
    complexity = min(10, base + bonus)
    huge = tokens > _COMPLEX_TOKENS

    code = _code_reason(text, scan, low, ws)
    if code is not None:
        complexity = min(10, max(3, base + 1 + bonus // 2))  # reasoning words are common in code asks
        if complexity <= 6 and not huge:
            return QueryType.CODE, complexity, (code, *signals)
        return QueryType.COMPLEX, complexity, (size, code, *signals) if huge else (code, *signals)
    if 1 + bonus <= 6 and (_fires(_EXTRACT, ws, low) or (wants_json and "extract" in low)):
        return QueryType.EXTRACTION, _sized(2, tokens), ("asks to extract", *signals)
    if complexity > 6 or huge:
        return QueryType.COMPLEX, complexity, (size, *signals) if huge else tuple(signals)
    if _fires(_SUMMARY, ws, low):
        return QueryType.SUMMARIZATION, min(4, max(2, complexity)), ("asks to summarize", *signals)
    if size == "500-2000 words":
        qtype = QueryType.SUMMARIZATION if complexity <= 4 else QueryType.MEDIUM
        return qtype, complexity, (size, *signals)
    if complexity >= 4 or size == "2k-4k tokens":
        return (
            QueryType.MEDIUM,
            max(4, complexity),
            (*signals, size) if not size.startswith("short") else tuple(signals),
        )
    return QueryType.SIMPLE, complexity, (size, *signals)
