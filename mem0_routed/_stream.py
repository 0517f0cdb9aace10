"""Watching a streamed answer: stop a model that loops, stop as soon as the JSON object is complete,
and keep what was good before a loop.

Why: a small model can repeat one memory item (or one phrase, or blank lines) until its token cap.
Reading the whole loop costs minutes and ends in invalid JSON; stopping at the first repeat costs a
few seconds, and the distinct items written before it are often exactly the facts mem0 wanted.
"""

from __future__ import annotations

import json
from typing import Any, Literal

__all__ = ["StreamGuard", "salvage_extraction", "find_loop"]

Stop = Literal["loop", "complete"]

#: A unit repeated this many times in a row at the end of the answer is a loop...
MIN_REPEATS = 3
#: ...once the repeated stretch is at least this many characters (short echoes are normal text).
MIN_LOOP_CHARS = 160
#: Longest repeated unit looked for (a memory item or a sentence).
MAX_UNIT_CHARS = 400
#: The tail is re-checked every this many new characters (a check costs ~0.1 ms).
CHECK_EVERY = 24


def find_loop(text: str) -> int | None:
    """Where a verbatim repetition at the end of ``text`` starts, or None if there is none.

    A loop is a unit of 1..``MAX_UNIT_CHARS`` characters repeated at least ``MIN_REPEATS`` times
    in a row covering at least ``MIN_LOOP_CHARS`` characters (e.g. 160 newlines, or one sentence
    three times)."""
    n = len(text)
    for unit in range(1, min(MAX_UNIT_CHARS, n // MIN_REPEATS) + 1):
        reps = max(MIN_REPEATS, -(-MIN_LOOP_CHARS // unit))
        span = unit * reps
        if span > n:
            continue
        tail = text[n - unit:]
        if text[n - span:] == tail * reps:
            start = n - span
            while start - unit >= 0 and text[start - unit:start] == tail:
                start -= unit
            return start
    return None


class StreamGuard:
    """Fed the answer chunk by chunk; ``feed`` returns ``"loop"`` or ``"complete"`` when the
    caller should stop reading, else None.

    ``json_object``: the answer must be one JSON object, so it is complete when its outer brace
    closes. ``items_key``: the object's list of items (mem0's ``"memory"``); an item whose
    ``text`` repeats an earlier one is a loop.
    """

    def __init__(self, *, json_object: bool = False, items_key: str | None = None) -> None:
        self.json_object = json_object
        self.items_key = items_key
        self.parts: list[str] = []
        self.size = 0
        self.stopped: Stop | None = None
        self.reason = ""
        self._checked = 0
        # JSON scanning state
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._started = False
        self._item_start: int | None = None
        self._buffer = ""
        self._seen: set[str] = set()
        self.items = 0

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def feed(self, chunk: str) -> Stop | None:
        if self.stopped or not chunk:
            return self.stopped
        self.parts.append(chunk)
        self.size += len(chunk)
        if self.json_object:
            verdict = self._scan(chunk)
            if verdict:
                return self._stop(verdict[0], verdict[1])
        if self.size - self._checked >= CHECK_EVERY:
            self._checked = self.size
            tail = "".join(self.parts)[-(MAX_UNIT_CHARS * MIN_REPEATS + MIN_LOOP_CHARS):]
            if find_loop(tail) is not None:
                return self._stop("loop", "a repeated phrase")
        return None

    def _stop(self, kind: Stop, reason: str) -> Stop:
        self.stopped, self.reason = kind, reason
        return kind

    def _scan(self, chunk: str) -> tuple[Stop, str] | None:
        """Track JSON nesting (strings and escapes aware); items sit at depth 2 (``{"k": [ {``)."""
        base = len(self._buffer)
        self._buffer += chunk
        for i, ch in enumerate(chunk, start=base):
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == '"':
                    self._in_string = False
                continue
            if ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
                self._started = True
                if ch == "{" and self._depth == 3 and self.items_key is not None:
                    self._item_start = i
            elif ch in "}]":
                self._depth -= 1
                if ch == "}" and self._depth == 2 and self._item_start is not None:
                    repeated = self._item(self._buffer[self._item_start:i + 1])
                    self._item_start = None
                    if repeated:
                        return "loop", f"memory item {self.items} repeats an earlier one"
                if self._started and self._depth <= 0:
                    return "complete", "json object complete"
        if self._item_start is None and len(self._buffer) > 4096:  # keep the scan buffer small
            self._buffer = ""
        return None

    def _item(self, raw: str) -> bool:
        """Count one finished item; True when its text was seen before."""
        try:
            item = json.loads(raw, strict=False)
        except ValueError:
            return False
        text = item.get("text") if isinstance(item, dict) else None
        if not isinstance(text, str):
            return False
        key = " ".join(text.lower().split())
        if key in self._seen:
            return True
        self._seen.add(key)
        self.items += 1
        return False


def salvage_extraction(text: str, key: str = "memory") -> dict[str, Any] | None:
    """The complete, distinct items at the start of a cut or looping extraction answer, as
    ``{key: [...]}``; None when not even the start of the list can be read.

    Items are read one by one up to the first that is incomplete, unreadable, or repeats an
    earlier item's text: what follows a repeat is the loop, not new facts."""
    at = text.find(f'"{key}"')
    if at < 0:
        return None
    at = text.find("[", at)
    if at < 0:
        return None
    decoder = json.JSONDecoder(strict=False)
    items: list[Any] = []
    seen: set[str] = set()
    pos = at + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] != "{":
            break
        try:
            item, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        item_text = item.get("text") if isinstance(item, dict) else None
        norm = " ".join(item_text.lower().split()) if isinstance(item_text, str) else None
        if norm is not None and norm in seen:
            break
        if norm is not None:
            seen.add(norm)
        items.append(item)
    return {key: items}
