"""What a keep-local check reads: every string a request would send, from every message and role,
plus its tool definitions and JSON schema, minus mem0's own fixed prompts, normalised so that
invisible characters, full-width digits, combining marks, percent-escapes and HTML entities do not
hide a secret from the detectors in ``_privacy``.
"""

from __future__ import annotations

import functools
import html
import re
import sys
import unicodedata
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["normalise", "scan_text"]


@functools.cache
def _format_chars() -> re.Pattern[str]:
    """Zero-width and other invisible format characters (Unicode Cf, variation selectors, the
    combining grapheme joiner): text that reads the same with or without them."""
    chars = [chr(c) for c in range(0x10000) if unicodedata.category(chr(c)) == "Cf"]
    chars += ["\u034f", "\u115f", "\u1160", "\u3164", "\uffa0"]
    ranges = r"\ufe00-\ufe0f\U000e0000-\U000e0fff\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    return re.compile("[" + "".join(map(re.escape, chars)) + ranges + "]")


@functools.cache
def _marks() -> re.Pattern[str]:
    """Combining marks (Unicode Mn): ``pa\u0301ssword`` must read as ``password``."""
    return re.compile("[" + "".join(re.escape(chr(c)) for c in range(0x300, 0x10000)
                                    if unicodedata.category(chr(c)) == "Mn") + "]")


_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z]{2,8});")


def _plain(text: str) -> str:
    """NFKC (full-width and styled letters/digits to plain ones) without invisible characters; when
    combining marks remain or were composed (``pa\u0301ssword``), a copy without them is appended,
    the NFKC text kept as well so a user's pattern such as ``Müller`` still matches."""
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKC", _format_chars().sub("", text))
    bare = unicodedata.normalize("NFC", _marks().sub("", unicodedata.normalize("NFD", text)))
    return text if bare == text else f"{text}\n{bare}"


def normalise(text: str) -> str:
    """The text as a detector should read it: plain (see ``_plain``) and, when it holds
    percent-escapes (``password%3D...`` in a pasted URL) or HTML entities (``&#61;``), with its
    decoded forms appended, since the receiving model reads them decoded. Two levels deep
    (``%253D`` too) and no more, so "%25%25%25..." costs two passes, not one per layer."""
    found = [_plain(text)]
    for _ in range(2):
        last = found[-1]
        if "%" in last and _PERCENT.search(last):
            last = urllib.parse.unquote(last)
        if "&" in last and _ENTITY.search(last):
            last = html.unescape(last)
        if last == found[-1]:
            break
        found.append(_plain(last))
    return found[0] if len(found) == 1 else "\n".join(found)


@functools.cache
def _known_prompts(reranker: type | None) -> tuple[frozenset[str], tuple[str, ...]]:
    """mem0's own fixed prompts (exact module constants), longest first. Cutting them out before
    the scan saves scanning ~34k known characters per call (~1.3 ms); nothing that merely resembles
    them is cut, so a prompt that imitates mem0 is scanned like any other text."""
    found: set[str] = set()
    try:
        from mem0.configs import prompts

        found.update(v for v in vars(prompts).values() if isinstance(v, str) and len(v) >= 200)
    except Exception:  # noqa: BLE001, S110 - mem0 missing or reorganised: scan everything
        pass
    text = getattr(reranker, "_SYSTEM_PROMPT", None)
    if isinstance(text, str) and len(text) >= 200:
        found.add(text)
    return frozenset(found), tuple(sorted(found, key=len, reverse=True))


def _without_known(text: str) -> str:
    if len(text) < 200:
        return text
    # the reranker's prompt only once mem0 has imported it: importing mem0.reranker pulls in torch
    module = sys.modules.get("mem0.reranker.llm_reranker")
    exact, ordered = _known_prompts(getattr(module, "LLMReranker", None))
    if text in exact:  # mem0 passes its constant itself: the hash is cached on the string
        return ""
    for known in ordered:
        if known in text:
            text = text.replace(known, "\n")  # a separator: the text around it must not join up
    return text


#: an image's bytes: ``data:<type>[;param...];base64,<payload>`` with a payload of base64 characters only
_BASE64_DATA_URL = re.compile(r"data:[^,]*;base64,([A-Za-z0-9+/=\s]*)\Z")


def _readable(item: str) -> str:
    """``item`` without the payload of a base64 ``data:`` URL (an image's bytes, not text). Any other
    string starting with ``data:`` (prose, a ``data:text/plain,...`` URL) is read whole: cutting every
    such string at its first comma let "data: notes, my password is ..." go out unscanned."""
    if item.startswith("data:"):
        found = _BASE64_DATA_URL.match(item)
        if found is not None:
            return item[: found.start(1)]
    return item


def _strings(value: Any, out: list[str]) -> None:
    """Every string a request would send inside ``value``: content parts, tool-call arguments, tool
    schemas, dict keys, at any depth (numbers are not read: a schema's 2147483647 is no phone).
    An image part's fields are read too (its URL may carry ``user:password@`` or ``?api_key=``);
    only the payload of a base64 ``data:`` URL (the image's bytes) is left out."""
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(_readable(item))
        elif isinstance(item, (Mapping, list, tuple)):
            if id(item) in seen:  # a structure that contains itself: each part is read once
                continue
            seen.add(id(item))
            parts = [x for kv in item.items() for x in kv] if isinstance(item, Mapping) else list(item)
            stack.extend(reversed(parts))  # read in order: first part first


def scan_text(messages: Sequence[Mapping[str, Any]], *extra: Any) -> str:
    """All text a call would send, from every message and every role, minus mem0's own prompts;
    ``extra`` are the other parts of the request that go out with it (tool definitions, the
    response format's JSON schema)."""
    parts: list[str] = []
    for m in messages:
        found: list[str] = []
        for key, value in m.items():
            if key != "role":
                _strings(value, found)
        parts.extend(_without_known(t) for t in found)
    for value in extra:
        if value is not None:
            _strings(value, parts)
    return "\n".join(parts)
