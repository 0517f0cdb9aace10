"""Score mem0 extraction answers against the labelled set in ``benchmarks/extraction_set.json``.

Why a keyword scorer: small models phrase a fact many ways ("User lives in Lisbon", "Lives in
Lisboa", "Priya moved to Lisbon"), in English or in the conversation's language, so each expected
fact lists alternatives of required keywords instead of one sentence to compare against.

Matching rules (text and keywords are both normalised: accents removed, case folded, every run of
non-alphanumerics a single space):

* a keyword matches at the start of a word, so ``"vegetari"`` finds "vegetarian", "végétarien" and
  "Vegetarier"; a keyword ending in ``$`` must match a whole word (``"sam$"`` is not "same");
* an alternative (a list of keywords) matches a memory when all its keywords match that memory; a
  fact is found when any of its alternatives matches one extracted memory;
* a *stale* fact (the old value of a correction) counts when a memory matches it and none of its
  ``unless`` keywords ("moved", the new city, ...);
* a memory that matches no expected fact is *supported* when at least half of its content words
  (stop words and the usual "User likes ..." phrasing left out) occur in the conversation, compared
  on their first five letters; otherwise it is *invented* (a worked example copied, a hallucination).
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SET_PATH = Path(__file__).with_name("extraction_set.json")

#: Words that carry no fact: phrasing of memories ("User likes ..."), articles and auxiliaries in
#: the languages of the set. A memory made only of these is invented (it says nothing).
GENERIC = frozenset(
    """
    user users user's assistant agent the a an and or of to in on at for with from by as is are was were be been
    has have had do does did not no nor but so that this these those it its their they them he she his her him
    i me my we our you your also very really currently now still just some any all one who which what when where
    likes like liked loves love enjoys enjoy prefers prefer preferred wants want wanted needs need lives live
    living works work working named name called calls recommended recommend suggested suggest advised mentioned
    said says told asked stated informed would will can could should about into than then there here
    le la les un une des du de et est en au aux pour avec sur que qui ne pas je tu il elle nous vous ils
    el lo los las y es del con por para que se su sus mi
    der die das ein eine und ist mit von zu im den dem des auf nicht ich er sie es
    il lo gli e di da che
    o os as um uma do da dos das no na em que
    """.split()  # noqa: SIM905 (a word list reads better as text)
)

_WORD = re.compile(r"[a-z0-9]+")


@functools.lru_cache(maxsize=4096)
def normalize(text: str) -> str:
    """Accents removed, case folded, non-alphanumerics collapsed to single spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return " ".join(_WORD.findall(bare))


@functools.lru_cache(maxsize=1024)
def _pattern(keyword: str) -> re.Pattern[str]:
    whole = keyword.endswith("$")
    key = normalize(keyword.rstrip("$"))
    if not key:
        raise ValueError(f"keyword {keyword!r} is empty once normalised; use letters or digits")
    return re.compile(r"(?<![a-z0-9])" + re.escape(key) + (r"(?![a-z0-9])" if whole else ""))


def keyword_in(keyword: str, text: str) -> bool:
    """Does ``keyword`` occur at a word start of ``text`` (whole word if it ends in ``$``)?"""
    return _pattern(keyword).search(normalize(text)) is not None


def alternative_in(keywords: Sequence[str], text: str) -> bool:
    """All keywords of one alternative occur in ``text``."""
    return bool(keywords) and all(keyword_in(k, text) for k in keywords)


@dataclass(frozen=True, slots=True)
class Fact:
    fact: str  # the fact as a sentence, for people
    any: tuple[tuple[str, ...], ...]  # alternatives, each a tuple of required keywords
    unless: tuple[str, ...] = ()  # stale facts only: keywords that show the correction was understood

    def matches(self, text: str) -> bool:
        return any(alternative_in(alt, text) for alt in self.any) and not any(keyword_in(k, text) for k in self.unless)


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    lang: str
    tags: tuple[str, ...]
    messages: tuple[Mapping[str, str], ...]
    facts: tuple[Fact, ...]
    stale: tuple[Fact, ...] = ()

    @property
    def greeting_only(self) -> bool:
        return "greeting" in self.tags

    def as_messages(self) -> list[dict[str, str]]:
        return [dict(m) for m in self.messages]


def _fact(raw: Mapping[str, Any], where: str) -> Fact:
    alts = raw.get("any")
    if not isinstance(alts, list) or not alts or not all(isinstance(a, list) and a for a in alts):
        raise ValueError(f"{where}: 'any' must be a non-empty list of non-empty keyword lists, got {alts!r}")
    for keyword in (k for a in alts for k in a):
        _pattern(keyword)  # raises on an empty keyword
    return Fact(str(raw.get("fact", "")), tuple(tuple(a) for a in alts), tuple(raw.get("unless", ())))


def parse_set(data: Mapping[str, Any]) -> list[Conversation]:
    """The conversations of a labelled set; raises ``ValueError`` naming the bad entry."""
    out: list[Conversation] = []
    seen: set[str] = set()
    for i, raw in enumerate(data.get("conversations", ())):
        cid = str(raw.get("id", f"#{i}"))
        if cid in seen:
            raise ValueError(f"conversation id {cid!r} appears twice; ids must be unique")
        seen.add(cid)
        messages = raw.get("messages")
        if not messages or any(m.get("role") not in ("user", "assistant") or not m.get("content") for m in messages):
            raise ValueError(f"conversation {cid!r}: messages must be non-empty user/assistant turns with content")
        conv = Conversation(
            id=cid, lang=str(raw.get("lang", "en")), tags=tuple(raw.get("tags", ())), messages=tuple(messages),
            facts=tuple(_fact(f, f"{cid} fact {j}") for j, f in enumerate(raw.get("facts", ()))),
            stale=tuple(_fact(f, f"{cid} stale {j}") for j, f in enumerate(raw.get("stale", ()))),
        )
        if conv.greeting_only and conv.facts:
            raise ValueError(f"conversation {cid!r} is tagged 'greeting' but expects facts; greetings expect none")
        out.append(conv)
    return out


@functools.lru_cache(maxsize=4)
def _load(path: str) -> tuple[Conversation, ...]:
    return tuple(parse_set(json.loads(Path(path).read_text(encoding="utf-8"))))


def load_set(path: str | Path = SET_PATH) -> list[Conversation]:
    """The labelled set (``benchmarks/extraction_set.json`` by default)."""
    return list(_load(str(path)))


def _content_words(text: str) -> list[str]:
    return [w for w in normalize(text).split() if w not in GENERIC and len(w) >= 2]


def _word_match(a: str, b: str) -> bool:
    if a == b:
        return True
    n = min(len(a), len(b), 5)
    return n >= 4 and a[:n] == b[:n]


def supported(memory: str, conversation_text: str) -> bool:
    """At least half of the memory's content words occur in the conversation (first five letters)."""
    words = _content_words(memory)
    if not words:
        return False
    source = set(normalize(conversation_text).split())
    hits = sum(any(_word_match(w, s) for s in source) for w in words)
    return 2 * hits >= len(words)


@dataclass(slots=True)
class ConversationScore:
    id: str
    expected: int
    found: int
    memories: int
    invented: int
    stale: int
    greeting_only: bool
    missed: list[str] = field(default_factory=list)
    invented_texts: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.found / self.expected if self.expected else None


def score_conversation(conv: Conversation, memories: Iterable[str]) -> ConversationScore:
    """Which expected facts the extracted memory texts hold, and which memories are invented."""
    texts = [m for m in memories if m and m.strip()]
    found = [f for f in conv.facts if any(f.matches(t) for t in texts)]
    conversation_text = "\n".join(m["content"] for m in conv.messages)
    invented = [t for t in texts
                if not any(f.matches(t) for f in conv.facts) and not supported(t, conversation_text)]
    return ConversationScore(
        id=conv.id, expected=len(conv.facts), found=len(found), memories=len(texts), invented=len(invented),
        stale=sum(any(s.matches(t) for t in texts) for s in conv.stale), greeting_only=conv.greeting_only,
        missed=[f.fact for f in conv.facts if f not in found], invented_texts=invented,
    )


@dataclass(slots=True)
class Summary:
    conversations: int
    expected: int
    found: int
    recall: float  # found / expected over the whole set
    mean_recall: float  # mean of per-conversation recall (conversations that expect facts)
    memories: int
    invented: int
    stale: int
    greeting_memories: int  # memories extracted from greetings-only conversations (target 0)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def summarize(scores: Sequence[ConversationScore]) -> Summary:
    """Totals over scored conversations (recall 0 when nothing was expected)."""
    expected = sum(s.expected for s in scores)
    found = sum(s.found for s in scores)
    recalls = [r for s in scores if (r := s.recall) is not None]
    return Summary(
        conversations=len(scores), expected=expected, found=found,
        recall=found / expected if expected else 0.0,
        mean_recall=sum(recalls) / len(recalls) if recalls else 0.0,
        memories=sum(s.memories for s in scores), invented=sum(s.invented for s in scores),
        stale=sum(s.stale for s in scores),
        greeting_memories=sum(s.memories for s in scores if s.greeting_only),
    )


def memory_texts(answer: str) -> list[str] | None:
    """The ``text`` of each memory in an extraction answer, parsed as mem0 parses it; None if mem0
    would get nothing from it (invalid JSON, wrong shape)."""
    from mem0.memory.utils import extract_json, remove_code_blocks

    try:
        data = json.loads(remove_code_blocks(answer), strict=False)
    except ValueError:
        try:
            data = json.loads(extract_json(answer), strict=False)
        except ValueError:
            return None
    items = data.get("memory") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    return [str(item["text"]) for item in items if isinstance(item, dict) and isinstance(item.get("text"), str)]
