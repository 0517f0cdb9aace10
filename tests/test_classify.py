"""Behaviour of the query classifier: the seed table, what length does not show, mem0's own calls."""

from __future__ import annotations

import importlib.util
import os
import random
from pathlib import Path

import pytest
from mem0.configs.prompts import (
    ADDITIVE_EXTRACTION_PROMPT,
    AGENT_CONTEXT_SUFFIX,
    PROCEDURAL_MEMORY_SYSTEM_PROMPT,
    generate_additive_extraction_prompt,
)
from mem0.reranker.llm_reranker import LLMReranker

from mem0_routed import (
    CallKind,
    Classification,
    QueryType,
    _classify,
    classify_messages,
    classify_query,
    classify_text,
    estimate_tokens,
)

# Neutral vocabulary: no word here is a code, reasoning, summary or extraction signal.
_VOCAB = (
    "the",
    "river",
    "garden",
    "morning",
    "walked",
    "quiet",
    "house",
    "friend",
    "coffee",
    "table",
    "window",
    "city",
    "bread",
    "market",
    "green",
    "yesterday",
    "small",
    "family",
    "music",
    "evening",
    "letter",
    "road",
    "blue",
    "bicycle",
    "weekend",
    "train",
    "village",
    "old",
    "bright",
)


def prose(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = [rng.choice(_VOCAB) for _ in range(n_words)]
    return " ".join(w + ("." if i % 12 == 11 else "") for i, w in enumerate(words))


def extraction_messages(
    *, memories: int = 1, agent: bool = False, system: str | None = None, user: str | None = None
) -> list[dict[str, str]]:
    existing = [
        {"id": str(i), "text": f"User enjoys hiking trip number {i} with friends"} for i in range(memories)
    ]
    if user is None:
        user = generate_additive_extraction_prompt(
            existing_memories=existing,
            new_messages="user: I moved to Berlin last week and started at a bakery.\nassistant: Congrats!",
            last_k_messages=[{"role": "user", "content": "hello"}],
            current_date="2025-01-02",
        )
    if system is None:
        system = ADDITIVE_EXTRACTION_PROMPT + (AGENT_CONTEXT_SUFFIX if agent else "")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


JSON = {"type": "json_object"}


# --- estimate_tokens ------------------------------------------------------------------------------


def test_estimate_tokens_empty_and_growth() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("a") >= 1
    assert estimate_tokens(prose(200)) < estimate_tokens(prose(400))


def test_estimate_tokens_prose_is_about_four_chars_per_token() -> None:
    text = prose(1000)
    assert len(text) / 5 <= estimate_tokens(text) <= len(text) / 3


def test_estimate_tokens_counts_dense_scripts_and_json_higher() -> None:
    english = "I went to the market and bought fresh fruit, then cooked dinner at home."
    chinese = "我今天去了超市买了很多水果，然后回家做了晚饭。"
    per_char_en = estimate_tokens(english * 20) / len(english * 20)
    per_char_zh = estimate_tokens(chinese * 20) / len(chinese * 20)
    assert per_char_zh > 2 * per_char_en
    as_json = '{"id": "1", "text": "a"}' * 50
    plain = "id 1 text a and so on here" * 50
    assert estimate_tokens(as_json) / len(as_json) > estimate_tokens(plain) / len(plain)


def test_estimate_tokens_close_to_a_real_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    tiktoken = pytest.importorskip("tiktoken")
    spec = importlib.util.find_spec("litellm")  # litellm (a bench extra) ships cached encodings
    if spec is not None and spec.origin and "TIKTOKEN_CACHE_DIR" not in os.environ:
        cache = Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    try:
        enc = tiktoken.get_encoding("o200k_base")
    except Exception:  # noqa: BLE001 (no cached encoding and no internet)
        pytest.skip("o200k_base encoding not available offline")
    samples = [
        ADDITIVE_EXTRACTION_PROMPT,
        PROCEDURAL_MEMORY_SYSTEM_PROMPT,
        extraction_messages(memories=10)[1]["content"],
        "def add(a, b):\n    return a + b\n\nclass Foo:\n    pass\n" * 30,
        "Я живу в Москве и работаю программистом. По выходным я люблю гулять в парке. " * 20,
    ]
    for s in samples:
        real = len(enc.encode(s))
        # short-line code tokenizes densest (~3 chars/token): the estimate is lowest there
        assert 0.7 * real <= estimate_tokens(s) <= 1.6 * real, s[:40]


def test_estimate_tokens_rejects_non_str() -> None:
    with pytest.raises(TypeError, match="bytes"):
        estimate_tokens(b"abc")  # type: ignore[arg-type]


# --- the seed table ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "hi, how are you?",
        "what's the capital of France?",
        "What do I like to eat?",
        "Where did I go on vacation last summer?",
        "What is my plan for tomorrow?",
    ],
)
def test_chit_chat_and_lookups_are_simple(text: str) -> None:
    c = classify_text(text)
    assert c.query_type is QueryType.SIMPLE
    assert 1 <= c.complexity <= 3
    assert c.call_kind is CallKind.QUERY


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "David has three sisters. Each of them has one brother. How many brothers does David have?",
            "logic",
        ),
        ("prove there are infinitely many primes", "proof"),
        ("what is the integral of x^2 e^x", "maths"),
        (
            "Plan a step-by-step migration of our database to a new cluster, with milestones for each phase",
            "plan",
        ),
        (
            "Compare and contrast event sourcing with CRUD, including the trade-offs for a small team",
            "contrast",
        ),
    ],
)
def test_short_hard_questions_are_complex(text: str, reason: str) -> None:
    c = classify_text(text)
    assert c.query_type is QueryType.COMPLEX
    assert c.complexity > 6
    assert any(reason in r for r in c.reasons), c.reasons


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("```python\nprint('hi')\n```", "code fence"),
        (
            'Traceback (most recent call last):\n  File "app.py", line 3, in <module>\nKeyError: 1',
            "stack trace",
        ),
        (
            'Exception in thread "main" java.lang.NullPointerException\n    at com.foo.Bar.baz(Bar.java:12)',
            "stack trace",
        ),
        (
            "why does this fail?\n    at com.foo.Bar.baz(Bar.java:12)\n    at com.foo.Main.main(Main.java:3)",
            "stack trace",
        ),
        ("def add(a, b):\n    return a + b", "code keywords"),
        ("import numpy as np\nx = np.zeros(3)", "code keywords"),
        ("#include <stdio.h>\nint main() { return 0; }", "code keywords"),
        ("const total = items.reduce((a, b) => a + b, 0);", "code keywords"),
        ("why is SELECT name FROM users WHERE id = 1 slow?", "code keywords"),
        ("write a python function that reverses a list", "asks for code"),
        ("can you fix the bug in my script", "asks for code"),
    ],
)
def test_code_is_recognised(text: str, reason: str) -> None:
    c = classify_text(text)
    assert c.query_type is QueryType.CODE
    assert 3 <= c.complexity <= 6
    assert reason in c.reasons


@pytest.mark.parametrize(
    "text",
    [
        "I bought a waterproof jacket",
        "She was in the class of 2020.",
        "Let me know when you arrive",
        "I want to write a letter to my mom",
        "from the start it rained",
        "select a nice restaurant from the list",
    ],
)
def test_ordinary_sentences_are_not_code_or_reasoning(text: str) -> None:
    assert classify_text(text).query_type is QueryType.SIMPLE


def test_summarization_by_length_and_by_request() -> None:
    long = classify_text(prose(1000))
    assert long.query_type is QueryType.SUMMARIZATION
    assert 2 <= long.complexity <= 4
    assert "500-2000 words" in long.reasons
    asked = classify_text("Please summarize our chat. " + prose(40))
    assert asked.query_type is QueryType.SUMMARIZATION
    assert "asks to summarize" in asked.reasons
    assert classify_text("tl;dr of the meeting notes please").query_type is QueryType.SUMMARIZATION


def test_summarization_complexity_grows_with_length() -> None:
    assert classify_text(prose(600)).complexity < classify_text(prose(1900)).complexity


def test_extraction_request_at_any_length() -> None:
    for text in ["Extract all the names from this note: Alice met Bob.",
                 "List all the dates mentioned as JSON: " + prose(50),
                 "extract the people: " + prose(3000)]:  # fmt: skip
        c = classify_text(text)
        assert c.query_type is QueryType.EXTRACTION, text[:40]
        assert "asks to extract" in c.reasons


def test_medium_and_complex_by_tokens() -> None:
    medium = classify_text("hello there", context_length=3000)
    assert medium.query_type is QueryType.MEDIUM
    assert 4 <= medium.complexity <= 6
    assert medium.estimated_tokens == 3000
    big = classify_text("hello there", context_length=9000)
    assert big.query_type is QueryType.COMPLEX
    assert big.complexity > 6
    assert any("4k tokens" in r for r in big.reasons)
    assert classify_text(prose(5000)).query_type is QueryType.COMPLEX


def test_signals_found_at_either_end_of_a_long_text() -> None:
    body = prose(1200)
    assert classify_text("Prove the claim below.\n" + body).query_type is QueryType.COMPLEX
    assert classify_text(body + "\nNow prove the claim above.").query_type is QueryType.COMPLEX


def test_every_classification_has_readable_reasons() -> None:
    texts = ["hi", prose(700), "```x```", "prove it", "hello " * 5000, "summarize this", ""]
    for t in texts:
        c = classify_text(t)
        assert c.reasons and all(isinstance(r, str) and r for r in c.reasons), t[:20]


def test_classify_query_matches_classify_text() -> None:
    for t in ["hi", "prove that 2 is prime", prose(800)]:
        c = classify_text(t, 100)
        assert classify_query(t, 100) == (c.query_type, c.complexity)


@pytest.mark.parametrize("bad", [None, b"hi", 3, ["hi"]])
def test_text_must_be_str(bad: object) -> None:
    with pytest.raises(TypeError, match=type(bad).__name__):
        classify_text(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_context_length_must_be_non_negative_int(bad: object) -> None:
    with pytest.raises(ValueError, match="context_length"):
        classify_text("hi", bad)  # type: ignore[arg-type]


# --- mem0's own calls -----------------------------------------------------------------------------


@pytest.mark.parametrize("agent", [False, True])
def test_mem0_extraction_call(agent: bool) -> None:
    msgs = extraction_messages(agent=agent)
    c = classify_messages(msgs, JSON)
    assert c.call_kind is CallKind.MEM0_EXTRACTION
    assert c.query_type is QueryType.EXTRACTION
    assert c.wants_json
    system_tokens = estimate_tokens(msgs[0]["content"])
    user_tokens = estimate_tokens(msgs[1]["content"])
    assert c.estimated_tokens >= system_tokens + user_tokens  # the whole prompt
    assert c.variable_tokens is not None and user_tokens <= c.variable_tokens < system_tokens
    assert c.complexity == 2  # sized by the short conversation, not the ~8k-token system prompt
    assert c.reasons == ("mem0 extraction call", f"sized by {c.variable_tokens} varying tokens")


def test_mem0_extraction_complexity_follows_what_varies() -> None:
    small = classify_messages(extraction_messages(memories=1), JSON)
    big = classify_messages(extraction_messages(memories=400), JSON)
    assert big.call_kind is CallKind.MEM0_EXTRACTION
    assert big.variable_tokens is not None and small.variable_tokens is not None
    assert big.variable_tokens > 4 * small.variable_tokens
    assert big.complexity > small.complexity
    assert big.estimated_tokens - small.estimated_tokens == big.variable_tokens - small.variable_tokens


def _reworded_extraction_prompt() -> str:
    p = ADDITIVE_EXTRACTION_PROMPT
    role_start = p.index("You are a Memory Extractor")
    role_end = p.index("\n\n", role_start)
    p = p[:role_start] + "Your job is to pull durable facts out of chats for later recall." + p[role_end:]
    # swap the "## Summary" and "## Existing Memories" input sections
    s0, s1 = p.index("## Summary"), p.index("## Recently Extracted Memories")
    e0, e1 = p.index("## Existing Memories"), p.index("## Last k Messages")
    summary, existing = p[s0:s1], p[e0:e1]
    assert s1 < e0
    return p[:s0] + existing + p[s1:e0] + summary + p[e1:]


def test_edited_mem0_extraction_prompt_is_still_recognised() -> None:
    system = _reworded_extraction_prompt()
    assert "Memory Extractor" not in system and system != ADDITIVE_EXTRACTION_PROMPT
    user = extraction_messages()[1]["content"]
    sections = user.split("\n\n## ")
    reordered = "\n\n## ".join([sections[0], *reversed(sections[1:-1]), sections[-1]])
    for msgs in (extraction_messages(system=system), extraction_messages(system=system, user=reordered)):
        c = classify_messages(msgs, JSON)
        assert c.call_kind is CallKind.MEM0_EXTRACTION
    # a reworded prompt sent without json_object is still recognised from the prompts alone
    assert classify_messages(extraction_messages(system=system)).call_kind is CallKind.MEM0_EXTRACTION


@pytest.mark.parametrize(
    "msgs",
    [
        [{"role": "user", "content": 'How does memory work? Give me the "memory" facts as JSON.'}],
        [
            {"role": "system", "content": "You are a helpful assistant with a long-term memory of the user."},
            {"role": "user", "content": "What do you remember about my existing memories and new messages?"},
        ],
        [
            {
                "role": "system",
                "content": "You answer questions about memory chips: RAM, ROM and flash memory.",
            },
            {"role": "user", "content": "## New Messages\nWhich memory is fastest?"},
        ],
    ],
)
def test_ordinary_questions_about_memory_are_not_mem0_calls(msgs: list[dict[str, str]]) -> None:
    c = classify_messages(msgs, JSON)
    assert c.call_kind is CallKind.QUERY
    assert c.variable_tokens is None


def test_mem0_procedural_memory_call() -> None:
    msgs = [
        {"role": "system", "content": PROCEDURAL_MEMORY_SYSTEM_PROMPT},
        {"role": "user", "content": "Open https://example.com and list the blog posts."},
        {"role": "assistant", "content": "Opened the page; found 5 posts."},
        {"role": "user", "content": "Create procedural memory of the above conversation."},
    ]
    c = classify_messages(msgs)
    assert c.call_kind is CallKind.MEM0_PROCEDURAL
    assert c.query_type is QueryType.SUMMARIZATION
    assert not c.wants_json
    assert c.variable_tokens is not None and c.variable_tokens < estimate_tokens(
        PROCEDURAL_MEMORY_SYSTEM_PROMPT
    )
    assert c.reasons[0] == "mem0 procedural memory call"


def test_mem0_reranker_call() -> None:
    msgs = [
        {"role": "system", "content": LLMReranker._SYSTEM_PROMPT},
        {"role": "user", "content": "Query: what does the user drink?\n\nDocument: User likes green tea"},
    ]
    c = classify_messages(msgs)
    assert c.call_kind is CallKind.MEM0_RERANKER
    assert c.query_type is QueryType.SIMPLE
    assert c.complexity <= 2
    assert "mem0 reranker call" in c.reasons


def test_vision_call() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "auto"}}
    parts = [{"type": "text", "text": "Describe this image"}, image]
    c = classify_messages([{"role": "user", "content": parts}])
    assert c.has_images
    assert c.call_kind is CallKind.MEM0_VISION
    text_only = classify_messages([{"role": "user", "content": "Describe this image"}])
    assert c.estimated_tokens > text_only.estimated_tokens
    assert not text_only.has_images and text_only.call_kind is CallKind.QUERY


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [({"type": "json_object"}, True), ({"type": "json_schema", "json_schema": {}}, True),
     ({"type": "text"}, False), (None, False)],
)  # fmt: skip
def test_wants_json(fmt: dict[str, object] | None, expected: bool) -> None:
    assert classify_messages([{"role": "user", "content": "hi"}], fmt).wants_json is expected


# --- ordinary chat calls ----------------------------------------------------------------------------


def test_last_user_message_decides_the_kind_whole_conversation_the_size() -> None:
    history = [
        {"role": "user", "content": "prove there are infinitely many primes"},
        {"role": "assistant", "content": prose(300)},
        {"role": "user", "content": "thanks, that helps!"},
    ]
    c = classify_messages(history)
    assert c.query_type is QueryType.SIMPLE
    assert c.estimated_tokens > estimate_tokens("thanks, that helps!") + estimate_tokens(prose(300))
    long_history = [{"role": "assistant", "content": prose(4000)}, {"role": "user", "content": "ok"}]
    assert classify_messages(long_history).query_type is QueryType.COMPLEX


def test_generic_chat_matches_classify_text_for_one_message() -> None:
    for t in ["hi", "prove that 2 is prime", "write a python function to sort", "summarize: " + prose(80)]:
        c = classify_messages([{"role": "user", "content": t}])
        assert c.query_type is classify_text(t).query_type


def test_code_earlier_in_conversation_keeps_a_code_model() -> None:
    msgs = [
        {"role": "user", "content": "```python\ndef f(x):\n    return x * 2\n```"},
        {"role": "assistant", "content": "This doubles x."},
        {"role": "user", "content": "now make it faster"},
    ]
    c = classify_messages(msgs)
    assert c.query_type is QueryType.CODE
    assert "code earlier in conversation" in c.reasons


@pytest.mark.parametrize(
    ("messages", "exc", "match"),
    [
        ("hi", TypeError, "list"),
        ([], ValueError, "empty"),
        ([{"role": "user", "content": "a"}, "b"], TypeError, r"messages\[1\]"),
        ([{"role": "user", "content": "a"}, {"role": "user"}], ValueError, r"messages\[1\].*content"),
        ([{"role": "user", "content": 5}], TypeError, r"messages\[0\]\['content'\]"),
        ([{"role": None, "content": "a"}], TypeError, r"messages\[0\]\['role'\]"),
        ([{"role": "user", "content": [1]}], TypeError, r"messages\[0\]\['content'\]\[0\]"),
    ],
)
def test_bad_messages_name_the_bad_item(messages: object, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        classify_messages(messages)  # type: ignore[arg-type]


def test_bad_response_format() -> None:
    with pytest.raises(TypeError, match="response_format"):
        classify_messages([{"role": "user", "content": "hi"}], "json")  # type: ignore[arg-type]


def test_result_does_not_depend_on_the_cache() -> None:
    msgs = extraction_messages(agent=True)
    warm = classify_messages(msgs, JSON)
    _classify._system_info.cache_clear()
    cold = classify_messages(msgs, JSON)
    copied = [{"role": "system", "content": "".join(list(msgs[0]["content"]))}, msgs[1]]
    assert copied[0]["content"] is not msgs[0]["content"]
    assert warm == cold == classify_messages(copied, JSON)
    assert isinstance(warm, Classification)
