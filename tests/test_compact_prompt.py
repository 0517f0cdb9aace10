"""The compact extraction prompt, checked against mem0's real prompt builders (not copies)."""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest
from mem0.configs.prompts import (
    ADDITIVE_EXTRACTION_PROMPT,
    AGENT_CONTEXT_SUFFIX,
    generate_additive_extraction_prompt,
)
from mem0.memory.utils import parse_messages

from mem0_routed import estimate_tokens
from mem0_routed._compact_prompt import (
    COMPACT_AGENT_SUFFIX,
    COMPACT_EXTRACTION_PROMPT,
    MEM0_EXTRACTION_SCHEMA,
    compact_examples,
    compact_extraction_messages,
)

CONVERSATION = [
    {"role": "user", "content": "I'm Lena, I moved to Oslo and I'm allergic to shellfish."},
    {"role": "assistant", "content": "Welcome to Oslo! Try the Mathallen food hall."},
]


def mem0_extraction_messages(*, agent: bool = False, custom: str | None = "Only keep food facts.") -> list[dict]:
    """What ``Memory.add`` sends, built with mem0's own builder and every optional section filled."""
    user_prompt = generate_additive_extraction_prompt(
        summary="Lena is a new user.",
        recently_extracted_memories=[{"id": "0", "text": "User's name is Lena"}],
        existing_memories=[{"id": "3f1c-uuid", "text": "User likes fish soup"}],
        new_messages=parse_messages(CONVERSATION),
        last_k_messages=[{"role": "user", "content": "Hello again"}],
        current_date="2025-06-02",
        timestamp="2025-06-01",
        custom_instructions=custom,
    )
    system = ADDITIVE_EXTRACTION_PROMPT + (AGENT_CONTEXT_SUFFIX if agent else "")
    return [{"role": "system", "content": system}, {"role": "user", "content": user_prompt}]


def headings(text: str) -> list[str]:
    return re.findall(r"^#+ .+$", text, flags=re.MULTILINE)


def test_keeps_mem0_user_prompt_with_every_section() -> None:
    original = mem0_extraction_messages()
    compact = compact_extraction_messages(original)

    assert compact[-1] == original[-1]  # mem0's user prompt, unchanged
    user_prompt = original[-1]["content"]
    sections = headings(user_prompt)
    # the builder's sections, including the optional ones this test filled in
    for expected in ("## Summary", "## Last k Messages", "## Recently Extracted Memories", "## Existing Memories",
                     "## New Messages", "## Observation Date", "## Current Date", "## Custom Instructions"):
        assert expected in sections
    for needle in ("3f1c-uuid", "allergic to shellfish", "2025-06-01", "2025-06-02", "Only keep food facts."):
        assert needle in compact[-1]["content"]


def test_drops_the_big_system_prompt() -> None:
    compact = compact_extraction_messages(mem0_extraction_messages())

    systems = [m for m in compact if m["role"] == "system"]
    assert systems == [{"role": "system", "content": COMPACT_EXTRACTION_PROMPT}]
    assert not any(ADDITIVE_EXTRACTION_PROMPT.strip()[:200] in str(m["content"]) for m in compact)
    from mem0_routed import classify_messages

    assert classify_messages([m for m in compact if m["role"] == "system"]).call_kind.value == "query"


def test_total_tokens_far_below_original() -> None:
    original = mem0_extraction_messages()
    compact = compact_extraction_messages(original)

    before = sum(estimate_tokens(m["content"]) for m in original)
    after = sum(estimate_tokens(m["content"]) for m in compact)
    assert before > 7000  # mem0's prompt really is that big (guards against a changed builder)
    assert after < before / 8
    assert estimate_tokens(COMPACT_EXTRACTION_PROMPT) < 400


def test_agent_scoped_prompt_keeps_an_agent_note() -> None:
    agent = compact_extraction_messages(mem0_extraction_messages(agent=True))
    user = compact_extraction_messages(mem0_extraction_messages(agent=False))

    assert agent[0]["content"] == COMPACT_EXTRACTION_PROMPT + COMPACT_AGENT_SUFFIX
    assert user[0]["content"] == COMPACT_EXTRACTION_PROMPT


def test_does_not_change_its_input() -> None:
    original = mem0_extraction_messages()
    snapshot = copy.deepcopy(original)
    compact = compact_extraction_messages(original)
    compact[-1]["content"] = "changed"

    assert original == snapshot


def test_without_system_message_puts_the_compact_one_first() -> None:
    only_user = mem0_extraction_messages()[1:]
    compact = compact_extraction_messages(only_user, examples=False)

    assert compact == [{"role": "system", "content": COMPACT_EXTRACTION_PROMPT}, only_user[0]]


def test_examples_are_mem0_shaped_turns_with_valid_answers() -> None:
    turns = compact_examples()
    compact = compact_extraction_messages(mem0_extraction_messages())

    assert [m["role"] for m in turns] == ["user", "assistant"] * (len(turns) // 2)
    assert compact[1:-1] == list(turns)
    answers = [json.loads(m["content"]) for m in turns if m["role"] == "assistant"]
    for answer in answers:
        jsonschema.validate(answer, MEM0_EXTRACTION_SCHEMA)
    assert {"memory": []} in answers  # the model is shown that nothing is a valid answer
    for m in turns:
        if m["role"] == "user":
            assert "## New Messages" in m["content"]
            assert "Lena" not in m["content"]
    assert compact_extraction_messages(mem0_extraction_messages(), examples=False)[1:] == mem0_extraction_messages()[1:]


@pytest.mark.parametrize(
    "answer",
    [
        {"memory": []},
        {"memory": [{"id": "0", "text": "User lives in Oslo"}]},
        {"memory": [{"id": "0", "text": "User lives in Oslo", "attributed_to": "user", "linked_memory_ids": ["a"]},
                    {"id": "1", "text": "User was recommended Mathallen", "attributed_to": "assistant"}]},
    ],
)
def test_schema_accepts_mem0_answers(answer: dict) -> None:
    jsonschema.validate(answer, MEM0_EXTRACTION_SCHEMA)


@pytest.mark.parametrize(
    "answer",
    [
        {},  # no "memory"
        [],  # a top-level list (mem0 silently drops it)
        {"memory": ["User lives in Oslo"]},  # strings instead of objects (raises inside mem0)
        {"memory": [{"id": "0"}]},  # no text
        {"memory": [{"id": "0", "text": ["a", "b"]}]},  # text as a list (raises inside mem0)
        {"memory": [{"id": 0, "text": "x"}]},  # id not a string
        {"memory": [{"id": "0", "text": "x", "attributed_to": "system"}]},
        {"memory": [{"id": "0", "text": "x", "linked_memory_ids": "a"}]},
    ],
)
def test_schema_rejects_what_mem0_cannot_use(answer: object) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(answer, MEM0_EXTRACTION_SCHEMA)


def _mem0_prompt(conversation: list[dict], custom: str | None = None) -> list[dict]:
    user = generate_additive_extraction_prompt(
        existing_memories=[], new_messages=parse_messages(conversation),
        last_k_messages=[{"role": "user", "content": "I live in Oslo"}],  # older context is not new
        current_date="2025-06-02", custom_instructions=custom)
    return [{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, {"role": "user", "content": user}]


def test_small_talk_only_on_the_labelled_set() -> None:
    """Every greetings-only conversation of the set is small talk; no conversation with facts is."""
    from benchmarks.extraction_score import load_set
    from mem0_routed._compact_prompt import small_talk_only

    for conv in load_set():
        assert small_talk_only(_mem0_prompt(conv.as_messages())) is conv.greeting_only, conv.id


@pytest.mark.parametrize(
    ("conversation", "expected"),
    [
        ([{"role": "user", "content": "Hey, good evening! How's it going?"}], True),
        ([{"role": "user", "content": "Ciao, grazie mille!"}, {"role": "assistant", "content": "Ciao!"}], False),
        ([{"role": "user", "content": "Ciao, grazie!"}, {"role": "assistant", "content": "Arrivederci!"}], True),
        ([{"role": "user", "content": "Olá, tudo bem?"}], True),
        ([{"role": "user", "content": "Hello! I'm Tom and I live in Oslo."}], False),
        ([{"role": "user", "content": "Thanks!"}, {"role": "assistant", "content": "Remember your dentist at 5."}], False),
        ([{"role": "user", "content": "I am 35"}], False),
        ([{"role": "user", "content": "!!!"}], False),  # no words at all: let the model decide
    ],
)
def test_small_talk_only_needs_every_word_to_be_small_talk(conversation: list[dict], expected: bool) -> None:
    from mem0_routed._compact_prompt import small_talk_only

    assert small_talk_only(_mem0_prompt(conversation)) is expected


def test_small_talk_only_is_conservative_outside_mem0_prompts() -> None:
    from mem0_routed._compact_prompt import small_talk_only

    hello = [{"role": "user", "content": "Hello!"}]
    assert small_talk_only(_mem0_prompt(hello))
    assert not small_talk_only(_mem0_prompt(hello, custom="Also remember greetings."))
    assert not small_talk_only(hello)  # not mem0's extraction prompt
    assert not small_talk_only([])


# --- wired into the router: greetings-only extraction asks no model ---------------------------------


def _router_for(server, **cfg):  # type: ignore[no-untyped-def]
    from mem0_routed import Router, RouterConfig
    from mem0_routed._ledger import MemoryLedger

    values = {"ollama_base_url": server.url, "ledger": "memory", "local_backend": "ollama", **cfg}
    return Router(RouterConfig.from_mapping(values), ledger=MemoryLedger())


def _extraction(text: str) -> list[dict[str, str]]:
    from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT, generate_additive_extraction_prompt

    user = generate_additive_extraction_prompt(existing_memories=[], new_messages=[{"role": "user", "content": text}])
    return [{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, {"role": "user", "content": user}]


def test_greetings_only_extraction_is_answered_without_a_model(ollama_server) -> None:  # type: ignore[no-untyped-def]
    router = _router_for(ollama_server)
    out = router.chat(_extraction("Hello! Thanks, bye!"), response_format={"type": "json_object"})
    assert json.loads(out.text) == {"memory": []}
    assert out.is_local and out.backend == "router"
    assert ollama_server.requests_to("/api/chat") == []
    (rec,) = router.ledger.records()
    assert rec.backend == "router" and rec.outcome == "skipped" and not rec.fallback
    counts = router.ledger.counts()
    assert (counts.total, counts.local) == (0, 0)  # no model answered: not in the share
    metrics = router.get_metrics(scope="ledger")
    assert metrics["total_queries"] == 0 and metrics["skipped"] == 1 and metrics["failed_queries"] == 0


def test_a_greeting_with_a_fact_still_asks_the_model(ollama_server) -> None:  # type: ignore[no-untyped-def]
    router = _router_for(ollama_server)
    router.chat(_extraction("Hi! I'm Bob and I live in Oslo."), response_format={"type": "json_object"})
    assert len(ollama_server.requests_to("/api/chat")) == 1


def test_skip_small_talk_off_asks_the_model(ollama_server) -> None:  # type: ignore[no-untyped-def]
    router = _router_for(ollama_server, skip_small_talk=False)
    router.chat(_extraction("Hello! Thanks, bye!"), response_format={"type": "json_object"})
    assert len(ollama_server.requests_to("/api/chat")) == 1


def test_new_messages_given_as_a_list_are_read_as_their_contents() -> None:
    from mem0_routed._compact_prompt import small_talk_only

    assert small_talk_only(_extraction("Good morning!"))
    assert not small_talk_only(_extraction("Good morning! My cat is called Tom."))
