"""Answer contracts: check a model's answer before handing it to mem0.

mem0 stores nothing, silently, when the extraction answer is not the JSON it expects, so every
local answer is checked against the contract of its call; a failure escalates instead of losing
the user's facts. The answer returned is what mem0 parses best: re-serialised JSON for JSON calls.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._types import CallKind

_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)


class ContractViolation(ValueError):
    """The answer breaks its call's contract; the message is the escalation reason."""


def _loads_lenient(text: str) -> Any:
    """Parse JSON the way mem0 does (fences, <think> blocks, prose around one object)."""
    text = _THINK_RE.sub("", text).strip()
    m = _FENCE_RE.match(text)
    if m:
        text = m.group(1)
    try:
        return json.loads(text, strict=False)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start != -1 and end > start:
            try:
                return json.loads(text[start : end + 1], strict=False)
            except json.JSONDecodeError:
                pass
    raise ContractViolation("invalid json")


def check_answer(text: str, *, call_kind: CallKind, wants_json: bool, has_tool_calls: bool = False) -> str:
    """Return the answer to hand back, or raise ``ContractViolation`` naming what is wrong."""
    if has_tool_calls:
        return text or ""
    if not text or not text.strip():
        raise ContractViolation("empty answer")
    if call_kind is CallKind.MEM0_EXTRACTION:
        data = _loads_lenient(text)
        return json.dumps(check_extraction(data), ensure_ascii=False)
    if wants_json:
        data = _loads_lenient(text)
        if not isinstance(data, (dict, list)):
            raise ContractViolation("json is not an object")
        return json.dumps(data, ensure_ascii=False)
    if call_kind is CallKind.MEM0_RERANKER and not re.search(r"\d", text):
        raise ContractViolation("no score in reranker answer")
    return text


def check_extraction(data: Any) -> dict[str, Any]:
    """mem0's extraction contract: ``{"memory": [{"id": str, "text": non-empty str, ...}]}``."""
    if isinstance(data, list):  # a bare list of items: mem0 would drop it; wrap it instead
        data = {"memory": data}
    if not isinstance(data, dict) or "memory" not in data:
        raise ContractViolation("no 'memory' key")
    items = data["memory"]
    if not isinstance(items, list):
        raise ContractViolation("'memory' is not a list")
    clean = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ContractViolation(f"memory item {i} is not an object")
        text = item.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ContractViolation(f"memory item {i} has no text")
        fixed = dict(item)
        fixed["id"] = str(item.get("id", i))
        links = fixed.get("linked_memory_ids")
        if links is not None and not isinstance(links, list):
            fixed["linked_memory_ids"] = [str(links)]
        clean.append(fixed)
    return {**data, "memory": clean}
