"""A short system prompt for mem0's extraction call, for local models with small windows.

mem0's ``ADDITIVE_EXTRACTION_PROMPT`` is ~7.6k tokens: it does not fit an 8k-window model together
with a conversation, and a CPU spends most of a call reading it. The compact prompt keeps the same
output contract (``{"memory": [{"id", "text", "attributed_to", "linked_memory_ids"?}]}``) in a few
hundred tokens plus two short worked example turns (small models copy format placeholders without
them), and mem0's own user prompt (New Messages, Existing Memories, dates, custom
instructions) is kept unchanged, so ids for linking and dates still reach the model.

``MEM0_EXTRACTION_SCHEMA`` is the same contract as a JSON Schema, for Ollama's ``format`` and for
llama.cpp grammars, so a local model cannot answer in another shape. ``small_talk_only`` tells when
the new messages are only greetings, whose right answer is ``{"memory": []}`` without a model.
Quality is measured on a labelled set by ``benchmarks/bench_extraction_quality.py``.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "COMPACT_AGENT_SUFFIX",
    "COMPACT_EXTRACTION_PROMPT",
    "MEM0_EXTRACTION_SCHEMA",
    "compact_examples",
    "compact_extraction_messages",
    "small_talk_only",
]

COMPACT_EXTRACTION_PROMPT = """\
You list the facts about the user found in the "## New Messages" section, as JSON.
Each fact is one short sentence that starts with "User" and uses the words of the messages. \
Advice from the assistant becomes "User was recommended ...". Greetings are not facts; with no facts \
answer {"memory": []}.
Facts already in "## Existing Memories" are skipped; a new fact related to one lists its id in \
"linked_memory_ids". Dates are resolved against "## Observation Date"."""

# Two worked turns (facts; nothing) shown before the real one. Measured on SmolLM2-135M
# (benchmarks/bench_compact_extraction.py): without them a small model copies the format's
# placeholders or an inline example instead of reading the conversation.
_EXAMPLES: tuple[tuple[str, list[dict[str, str]]], ...] = (
    (
        "user: My name is Tom and I play the guitar.\nassistant: Nice! Try learning some blues songs.\n",
        [
            {"id": "0", "text": "User's name is Tom", "attributed_to": "user"},
            {"id": "1", "text": "User plays the guitar", "attributed_to": "user"},
            {"id": "2", "text": "User was recommended to learn blues songs on the guitar",
             "attributed_to": "assistant"},
        ],
    ),
    ("user: Good morning!\nassistant: Good morning! How can I help?\n", []),
)

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

#: mem0 appends AGENT_CONTEXT_SUFFIX (this heading) to the extraction prompt for agent-only scopes.
_MEM0_AGENT_MARKER = "## Entity Context"


@functools.lru_cache(maxsize=1)
def compact_examples() -> tuple[dict[str, str], ...]:
    """The worked turns as messages, built with mem0's own user-prompt builder (so they look
    exactly like the real turn that follows)."""
    from mem0.configs.prompts import generate_additive_extraction_prompt

    turns: list[dict[str, str]] = []
    for day, (conversation, memories) in enumerate(_EXAMPLES, start=10):
        user = generate_additive_extraction_prompt(
            existing_memories=[], new_messages=conversation, last_k_messages=[], current_date=f"2025-01-{day}"
        )
        turns.append({"role": "user", "content": user})
        turns.append({"role": "assistant", "content": json.dumps({"memory": memories})})
    return tuple(turns)


def compact_extraction_messages(
    messages: list[dict[str, Any]], *, examples: bool = True
) -> list[dict[str, Any]]:
    """mem0's extraction messages with its system prompt replaced by ``COMPACT_EXTRACTION_PROMPT``.

    The first system message is replaced (call this for extraction calls only; the router knows
    them: ``classify_messages`` recognises them), followed by the worked example turns unless
    ``examples=False``. Every other message (mem0's user prompt with its sections) is kept as it
    is. mem0's agent-scoped variant keeps a short agent note. Without a system message the compact
    one is put first. The input list and its dicts are not changed.
    """
    prompt = COMPACT_EXTRACTION_PROMPT
    rest: list[dict[str, Any]] = []
    replaced = False
    for message in messages:
        content = message.get("content")
        if not replaced and message.get("role") == "system" and isinstance(content, str):
            if _MEM0_AGENT_MARKER in content:
                prompt += COMPACT_AGENT_SUFFIX
            replaced = True
            continue
        rest.append(dict(message))
    head: list[dict[str, Any]] = [{"role": "system", "content": prompt}]
    if examples:
        head.extend(dict(m) for m in compact_examples())
    return head + rest


# Greetings, thanks, goodbyes and "how are you" in the languages users most often write, accents
# removed. A conversation made only of these words holds no fact to remember.
_SMALL_TALK_WORDS = frozenset(
    """
    hi hello hey hiya howdy yo there good morning afternoon evening night day thanks thank you thx ty cheers
    bye goodbye see later soon take care how are is it going doing fine great well ok okay alright i m am im
    me too and a an nice lovely have your welcome re youre can could help may assist today what s for all
    that anything else nothing no yes yep sure asking pleasure glad again the to do
    bonjour bonsoir salut coucou merci beaucoup au revoir a bientot comment ca va vas allez vous tu et tres
    bien oui non de rien bonne journee soiree avec plaisir je suis moi aussi
    hola que tal buenos buenas dias tardes noches gracias muchas adios hasta luego pronto como estas esta
    muy todo en puedo ayudarte ayudarle nada y usted si
    hallo guten morgen tag abend danke schon sehr tschuss auf wiedersehen bis bald wie geht es dir ihnen gut
    mir nichts weiter kann ich helfen ja nein
    ciao buongiorno buonasera grazie arrivederci stai bene
    ola bom dia boa tarde noite obrigado obrigada tchau ate tudo bem
    """.split()  # noqa: SIM905 (a word list reads better as text)
)
_NEW_MESSAGES = re.compile(r"^## New Messages\n(.*?)(?=^## |\Z)", re.MULTILINE | re.DOTALL)
_ROLE_PREFIX = re.compile(r"^(?:user|assistant|system): ", re.MULTILINE)


def _words(text: str) -> list[str]:
    bare = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.findall(r"[a-z0-9]+", bare.casefold())


def small_talk_only(messages: Sequence[Mapping[str, Any]]) -> bool:
    """True when mem0's extraction messages hold nothing but greetings, thanks and goodbyes in
    "## New Messages", so the right answer is ``{"memory": []}`` without asking a model.

    Why: a small model given "Hello!" invents memories (it copies a worked example or the greeting
    itself); no prompt wording stopped SmolLM2-135M from doing so (benchmarks/bench_extraction_quality.py).
    Conservative: any word outside the greeting vocabulary, custom instructions, or a prompt that is
    not mem0's gives False.
    """
    user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), None)
    if not isinstance(user, str) or "## Custom Instructions" in user:
        return False
    section = _NEW_MESSAGES.search(user)
    if section is None:
        return False
    words = _words(_new_message_text(section.group(1)))
    return bool(words) and all(w in _SMALL_TALK_WORDS for w in words)


def _new_message_text(section: str) -> str:
    """The words of "## New Messages": mem0's ``add`` writes ``role: text`` lines; a caller of
    mem0's prompt builder may hand it the message list, which it writes as JSON."""
    try:
        listed = json.loads(section)
    except ValueError:
        return _ROLE_PREFIX.sub("", section)
    if isinstance(listed, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in listed):
        return "\n".join(m["content"] for m in listed)
    return section  # any other JSON: its keys are words outside the vocabulary, so never small talk
