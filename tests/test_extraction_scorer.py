"""The extraction scorer and the labelled set it reads (benchmarks/extraction_*)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from benchmarks.extraction_score import (
    SET_PATH,
    keyword_in,
    load_set,
    memory_texts,
    normalize,
    parse_set,
    score_conversation,
    summarize,
    supported,
)

SET = {c.id: c for c in load_set()}


def test_normalize_folds_case_accents_and_punctuation() -> None:
    assert normalize("Végétarienne, à Zürich!") == "vegetarienne a zurich"
    assert normalize("red-eye  flights") == "red eye flights"
    assert normalize("Straße") == "strasse"


@pytest.mark.parametrize(
    ("keyword", "text", "expected"),
    [
        ("vegetari", "User is Végétarien", True),  # word start, accents folded
        ("vegetari", "Er ist Vegetarier", True),
        ("lisbon", "lives in LISBON.", True),
        ("bon", "lives in Lisbon", False),  # not at a word start
        ("sam$", "the same as before", False),  # $: whole word only
        ("sam$", "User's wife is Sam", True),
        ("35$", "User is 350 km away", False),
        ("red eye", "avoids red-eye flights", True),  # keywords are normalised too
        ("flat white", "likes flat whites", True),
    ],
)
def test_keyword_matching(keyword: str, text: str, expected: bool) -> None:
    assert keyword_in(keyword, text) is expected


def test_gold_answers_score_perfectly() -> None:
    """The reference sentence of every fact matches its own keywords; nothing invented or stale."""
    for conv in SET.values():
        score = score_conversation(conv, [f.fact for f in conv.facts])
        assert (score.found, score.invented, score.stale) == (len(conv.facts), 0, 0), conv.id


def test_empty_answer_finds_nothing() -> None:
    scores = [score_conversation(c, []) for c in SET.values()]
    total = summarize(scores)
    assert total.found == 0 and total.recall == 0.0 and total.memories == 0
    assert total.expected == sum(len(c.facts) for c in SET.values())


def test_a_fact_must_be_in_one_memory_with_all_keywords() -> None:
    pets = SET["pets"]
    assert score_conversation(pets, ["User has a dog"]).found == 0
    score = score_conversation(pets, ["User has a beagle named Biscuit", "User has a cat named Miso"])
    assert score.found == 3 and score.missed == []
    partial = score_conversation(pets, ["User has a dog named Biscuit"])
    assert partial.found == 1 and partial.recall == pytest.approx(1 / 3)
    assert "Biscuit is a beagle" in partial.missed


def test_copied_example_is_invented_but_a_true_extra_is_not() -> None:
    diet = SET["diet"]
    score = score_conversation(diet, [
        "User is vegetarian",
        "User was recommended a chickpea curry with rice",  # true, from the assistant: not expected, supported
        "User plays the guitar",  # the compact prompt's worked example: invented
        "User's name is Tom",
    ])
    assert score.found == 1
    assert score.invented == 2
    assert score.invented_texts == ["User plays the guitar", "User's name is Tom"]


def test_support_uses_the_conversation_words() -> None:
    text = "Ich bin allergisch gegen Katzen und spiele jeden Dienstag Tennis."
    assert supported("User is allergic to Katzen", text)
    assert not supported("User likes skiing in Norway", text)
    assert not supported("User likes it", text)  # says nothing: only generic words


def test_stale_fact_counts_unless_the_correction_shows() -> None:
    lyon = SET["moved-lyon"]
    stale = score_conversation(lyon, ["User lives in Paris", "User works at a bakery"])
    assert stale.stale == 1 and stale.found == 1
    good = score_conversation(lyon, ["User moved from Paris to Lyon", "User works at a bakery"])
    assert good.stale == 0 and good.found == 2
    assert score_conversation(SET["fr-move"], ["User lives in Marseille"]).stale == 1


def test_greeting_memories_are_counted() -> None:
    scores = [score_conversation(SET["hello"], ["User said hello"]),
              score_conversation(SET["bonjour"], []),
              score_conversation(SET["diet"], ["User is vegetarian"])]
    total = summarize(scores)
    assert total.greeting_memories == 1
    assert total.memories == 2
    assert total.recall == pytest.approx(1 / 2)  # greetings expect nothing and do not dilute recall
    assert total.mean_recall == pytest.approx(1 / 2)


def test_the_set_covers_what_the_issue_asks() -> None:
    convs = list(SET.values())
    tags = Counter(t for c in convs for t in c.tags)
    langs = {c.lang for c in convs}
    assert len(convs) >= 30
    assert tags["greeting"] >= 5 and all(not c.facts for c in convs if c.greeting_only)
    assert tags["correction"] >= 4 and all(c.stale or c.id == "job-change" for c in convs if "correction" in c.tags)
    assert tags["preferences"] >= 4 and tags["code"] >= 3
    assert {"fr", "es", "de"} <= langs and tags["non-english"] >= 8
    assert sum(len(c.facts) >= 3 for c in convs) >= 15  # several facts per conversation
    assert all(c.facts for c in convs if not c.greeting_only)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"conversations": [{"id": "a", "messages": [{"role": "user", "content": "hi"}]}] * 2}, "appears twice"),
        ({"conversations": [{"id": "g", "tags": ["greeting"], "messages": [{"role": "user", "content": "hi"}],
                             "facts": [{"fact": "x", "any": [["x"]]}]}]}, "greeting"),
        ({"conversations": [{"id": "k", "messages": [{"role": "user", "content": "hi"}],
                             "facts": [{"fact": "x", "any": [["--"]]}]}]}, "'--'"),
        ({"conversations": [{"id": "e", "messages": [{"role": "user", "content": "hi"}],
                             "facts": [{"fact": "x", "any": []}]}]}, "non-empty"),
        ({"conversations": [{"id": "r", "messages": [{"role": "system", "content": "hi"}]}]}, "user/assistant"),
    ],
)
def test_bad_sets_are_rejected_with_the_entry_named(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_set(data)


def test_set_file_is_the_one_loaded() -> None:
    raw = json.loads(SET_PATH.read_text(encoding="utf-8"))
    assert [c["id"] for c in raw["conversations"]] == list(SET)


@pytest.mark.parametrize(
    ("answer", "texts"),
    [
        ('{"memory": [{"id": "0", "text": "User is vegan"}]}', ["User is vegan"]),
        ('```json\n{"memory": []}\n```', []),
        ('Sure! {"memory": [{"id": "0", "text": "A"}]} Done.', ["A"]),
        ('{"memory": [{"id": "0", "text": "A"},', None),  # truncated: mem0 gets nothing
        ('[{"id": "0", "text": "A"}]', None),  # a top-level list
        ('{"memory": [{"id": "0"}]}', []),  # items without text are dropped
    ],
)
def test_memory_texts_parses_like_mem0(answer: str, texts: list[str] | None) -> None:
    assert memory_texts(answer) == texts


def test_benchmark_end_to_end_against_the_fake_ollama(tmp_path) -> None:
    """The benchmark's plumbing over real HTTP: a prompt that does not fit is never sent, small
    talk under compact+skip costs no call, answers are parsed and scored per prompt."""
    from benchmarks import bench_extraction_quality as bench
    from mem0_routed.testing import FakeOllamaServer
    from mem0_routed.testing._ollama_server import ModelSpec

    out = tmp_path / "run.json"
    with FakeOllamaServer(models={"small:1b": ModelSpec(context_length=8192)}) as ollama:
        assert bench.main(["--ollama", ollama.url, "--model", "small:1b", "--only", "hello,diet",
                           "--json", str(out)]) == 0
        chats = [body for path, body in ollama.requests if path == "/api/chat"]
    data = json.loads(out.read_text(encoding="utf-8"))
    rows = {(r["id"], r["prompt"]): r for r in data["rows"]}
    assert not rows[("diet", "full")]["fits"] and "does not fit" in rows[("diet", "full")]["note"]
    assert rows[("hello", "compact+skip")]["note"] == "small talk: no model call"
    assert len(chats) == 2  # compact for diet and hello; full never sent, compact+skip reuses or skips
    assert all(c["messages"][0]["content"].startswith("You list the facts") for c in chats)
    assert all(c["format"]["required"] == ["memory"] for c in chats)
    summary = data["summary"]
    assert summary["full"]["fits"] == 0 and summary["compact"]["fits"] == 2
    assert summary["compact+skip"]["greeting_memories"] == 0
    assert summary["compact"]["expected"] == 2


def test_benchmark_sample_spreads_over_the_kinds() -> None:
    from benchmarks.bench_extraction_quality import sample

    convs = load_set()
    picked = sample(convs, 12)
    assert len({c.id for c in picked}) == 12
    tags = {t for c in picked for t in c.tags}
    assert {"facts", "greeting", "non-english", "code", "correction"} <= tags
    assert sample(convs, None) == convs and sample(convs, 100) == convs
