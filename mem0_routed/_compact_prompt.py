"""A short system prompt for mem0's extraction call, for local models with small windows.

mem0's ``ADDITIVE_EXTRACTION_PROMPT`` is ~7.6k tokens: it does not fit an 8k-window model together
with a conversation, and a CPU spends most of a call reading it. The compact prompt keeps the same
output contract (``{"memory": [{"id", "text", "attributed_to", "linked_memory_ids"?}]}``) in a few
hundred tokens, and mem0's own user prompt (New Messages, Existing Memories, dates, custom
instructions) is kept unchanged, so ids for linking and dates still reach the model.

``MEM0_EXTRACTION_SCHEMA`` is the same contract as a JSON Schema, for Ollama's ``format`` and for
llama.cpp grammars, so a local model cannot answer in another shape.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "COMPACT_AGENT_SUFFIX",
    "COMPACT_EXTRACTION_PROMPT",
    "MEM0_EXTRACTION_SCHEMA",
    "compact_extraction_messages",
    "is_mem0_extraction_prompt",
]

COMPACT_EXTRACTION_PROMPT = """\
You are a memory extractor. Read a conversation and write down every fact worth remembering \
about the user. Answer with JSON only.

Input sections:
- "## New Messages": the conversation (user and assistant turns). Extract ONLY from this section.
- "## Existing Memories": memories already stored, as [{"id": ..., "text": ...}]. Do not repeat \
them. If a new memory is about the same thing, put that id in its "linked_memory_ids".
- "## Summary", "## Last k Messages", "## Recently Extracted Memories": background to resolve \
names and pronouns. Do not extract from them.
- "## Observation Date": the day of the conversation. Turn "yesterday", "last week", "next month" \
into dates relative to it.
- "## Custom Instructions" (if present): follow them first.

Rules:
- One memory per distinct fact: name, age, place, job, family, pets, health, allergies, likes, \
dislikes, habits, plans, events, opinions.
- Also keep specific advice, recommendations or plans the assistant gave ("User was recommended ...").
- Each "text" is one short, self-contained sentence that starts with "User" and names things \
explicitly (no "he", "it", "that").
- Skip greetings, thanks, small talk and generic replies.
- "attributed_to" is "user" for facts the user stated, "assistant" for information from the assistant.
- "id" values are "0", "1", "2", ... in order.
- If nothing is worth remembering, answer {"memory": []}.

Output format:
{"memory": [{"id": "0", "text": "User ...", "attributed_to": "user"}, \
{"id": "1", "text": "User was recommended ...", "attributed_to": "assistant", \
"linked_memory_ids": ["<id from Existing Memories>"]}]}
"""

COMPACT_AGENT_SUFFIX = """
The main entity is an AI agent: write facts from the agent's view ("Agent was informed that ...", \
"Agent recommended ..."). "attributed_to" still says who stated the fact.
"""

MEM0_EXTRACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "memory": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "text": {"type": "string"},
                    "attributed_to": {"type": "string", "enum": ["user", "assistant"]},
                    "linked_memory_ids": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["id", "text"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["memory"],
    "additionalProperties": False,
}

# Lines of mem0's extraction system prompt that stay stable across releases; two must match so a
# user's own system prompt that merely mentions one is not mistaken for mem0's.
_MEM0_MARKERS = ("You are a Memory Extractor", "# OUTPUT FORMAT", '"memory"', "## New Messages")
_MEM0_AGENT_MARKER = "## Entity Context"


def is_mem0_extraction_prompt(text: str) -> bool:
    """Whether ``text`` is mem0's (full) additive extraction system prompt."""
    return sum(marker in text for marker in _MEM0_MARKERS) >= 2 and len(text) > 2000


def compact_extraction_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """mem0's extraction messages with its system prompt replaced by ``COMPACT_EXTRACTION_PROMPT``.

    The first system message is replaced (call this for extraction calls only; the router knows
    them, see ``is_mem0_extraction_prompt``). Every other message (mem0's user prompt with its sections) is kept as it is. mem0's
    agent-scoped variant keeps a short agent note. Without a system message the compact one is put
    first. The input list and its dicts are not changed.
    """
    out: list[dict[str, Any]] = []
    replaced = False
    for message in messages:
        content = message.get("content")
        if not replaced and message.get("role") == "system" and isinstance(content, str):
            prompt = COMPACT_EXTRACTION_PROMPT
            if _MEM0_AGENT_MARKER in content:
                prompt += COMPACT_AGENT_SUFFIX
            out.append({**message, "content": prompt})
            replaced = True
            continue
        out.append(dict(message))
    if not replaced:
        out.insert(0, {"role": "system", "content": COMPACT_EXTRACTION_PROMPT})
    return out
