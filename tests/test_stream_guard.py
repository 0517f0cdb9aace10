"""The stream guard and the salvage of a looping extraction answer, on their own."""

from __future__ import annotations

import json

from mem0_routed._stream import StreamGuard, find_loop, salvage_extraction


def feed_all(guard: StreamGuard, text: str, step: int = 4) -> tuple[str | None, int]:
    """Feed ``text`` in token-sized chunks; the verdict and how many characters were read."""
    for i in range(0, len(text), step):
        verdict = guard.feed(text[i:i + step])
        if verdict:
            return verdict, i + step
    return None, len(text)


def looping_answer(repeats: int = 60) -> str:
    head = '{"memory": [{"id": "0", "text": "User is Priya"}, {"id": "1", "text": "User lives in Lisbon"}'
    return head + "".join(f', {{"id": "{i}", "text": "User lives in Lisbon"}}' for i in range(2, repeats)) + "]}"


def test_a_repeated_memory_item_stops_the_stream_at_its_first_repeat() -> None:
    answer = looping_answer()
    guard = StreamGuard(json_object=True, items_key="memory")
    verdict, read = feed_all(guard, answer)
    assert verdict == "loop"
    assert read < len(answer) / 10  # stopped at the first repeat, not at the token cap
    assert "repeats an earlier one" in guard.reason


def test_salvage_keeps_the_distinct_items_before_the_loop() -> None:
    guard = StreamGuard(json_object=True, items_key="memory")
    feed_all(guard, looping_answer())
    assert salvage_extraction(guard.text) == {"memory": [{"id": "0", "text": "User is Priya"},
                                                         {"id": "1", "text": "User lives in Lisbon"}]}


def test_salvage_of_a_cut_answer_drops_the_incomplete_item() -> None:
    cut = '{"memory": [{"id": "0", "text": "User likes tea"}, {"id": "1", "text": "User li'
    assert salvage_extraction(cut) == {"memory": [{"id": "0", "text": "User likes tea"}]}
    assert salvage_extraction('{"mem') is None


def test_a_complete_json_object_stops_the_stream_even_with_braces_in_strings() -> None:
    answer = '{"memory": [{"id": "0", "text": "User wrote \\"}\\" and {x}"}]}' + "\n" * 50
    guard = StreamGuard(json_object=True, items_key="memory")
    verdict, read = feed_all(guard, answer, step=3)
    assert verdict == "complete"
    assert json.loads(guard.text) == json.loads(answer)
    assert read <= len(answer) - 45


def test_a_repeated_sentence_or_blank_lines_are_a_loop_in_plain_text() -> None:
    guard = StreamGuard()
    assert feed_all(guard, "The cat sat on the mat. " * 40)[0] == "loop"
    guard = StreamGuard()
    assert feed_all(guard, "Done." + "\n" * 400)[0] == "loop"


def test_ordinary_text_and_json_are_not_loops() -> None:
    prose = ("Lisbon is the capital of Portugal. It sits on the Tagus river, has seven hills, yellow trams, "
             "and a long history of trade. Many people visit for its food, its music and its light. ") * 2
    assert find_loop(prose[:-1]) is None
    guard = StreamGuard(json_object=True, items_key="memory")
    answer = json.dumps({"memory": [{"id": str(i), "text": f"User fact number {i}"} for i in range(20)]})
    assert feed_all(guard, answer)[0] == "complete"
