"""The free-text signals the classifier looks for: reasoning, maths, code, summarize/extract asks.

Tables, not logic: each signal fires on a whole word, or — only when one of its gate words is in the
text — on a phrase or a pattern. Kept apart from ``_classify`` so the rules can be read (and tuned)
in one place.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# --- free-text signals -------------------------------------------------------------------------
# A signal fires on a whole word of ``words``, or — when one of ``gate`` (and, if given, one of
# ``gate2``) is among the text's words — on a phrase of ``check`` or a match of its pattern. The
# word-set test is a C-level set intersection, so the proximity regexes run only on texts that
# contain their words, never scanning every text.


class _Signal(NamedTuple):
    name: str  # each name counts once however many entries fire
    weight: int  # added to complexity
    reason: str
    words: frozenset[str] = frozenset()
    gate: frozenset[str] = frozenset()
    gate2: frozenset[str] = frozenset()
    check: tuple[str, ...] | re.Pattern[str] = ()


def _sig(name: str, weight: int, reason: str, words: str = "", gate: str = "", gate2: str = "",
         check: tuple[str, ...] | str = ()) -> _Signal:  # fmt: skip
    """Build a signal from space-separated word lists; a str ``check`` is a regex."""
    pattern = re.compile(check) if isinstance(check, str) else check
    words_, gate_, gate2_ = (frozenset(w.split()) for w in (words, gate, gate2))
    return _Signal(name, weight, reason, words_, gate_, gate2_, pattern)


_HOW = r"\bhow (?:many|much|long|far|old)\b"
_REASONING = (
    _sig("proof", 6, "reasoning: proof", "prove proves proving proof proofs disprove theorem lemma corollary",
         "show induction contradiction", check=("show that", "by induction", "by contradiction")),
    _sig("maths", 6, "reasoning: maths", "integral integrals integrate integration derivative derivatives "
         "differentiate antiderivative eigenvalue eigenvalues eigenvector eigenvectors determinant logarithm "
         "polynomial modulo", "solve limit expected differential",
         check=("solve for", "limit of", "expected value", "differential equation")),
    _sig("logic", 6, "reasoning: logic puzzle", "riddle riddles puzzle puzzles brainteaser",
         "teaser trick logic", check=("brain teaser", "trick question", "logic problem")),
    _sig("logic", 6, "reasoning: logic puzzle", gate="each", gate2="many much old",
         check=r"each of (?:them|whom|these|those)\b[^?]{0,200}" + _HOW),
    _sig("wordproblem", 4, "reasoning: word problem", gate="if", gate2="many much long far old",
         check=r"\bif\b[^?]{10,200}" + _HOW),
    _sig("plan", 6, "multi-step plan", "multi-step multistep", "plan roadmap strategy playbook",
         "step steps step-by-step phase phases stage stages milestone milestones timeline",
         r"(?:plan|roadmap|strategy|playbook)\b[^?]{0,120}\b(?:steps?|phases?|stages?|milestones?|timeline)\b"
         r"|step[- ]by[- ]step (?:plan|guide|strategy|roadmap)"),
    _sig("contrast", 5, "analysis: compare and contrast", gate="contrast", check=("compare and contrast",)),
    _sig("design", 5, "system design", gate="design architect",
         gate2="system systems architecture service services platform pipeline",
         check=r"(?:design|architect)\b[^.?!]{0,40}\b(?:systems?|architecture|services?|platform|pipeline)\b"),
    _sig("tradeoff", 4, "analysis: trade-offs", "trade-off trade-offs tradeoff tradeoffs", "pros",
         check=("pros and cons",)),
    _sig("steps", 3, "step-by-step reasoning", "step-by-step", "step think",
         check=("step by step", "think carefully", "think through")),
    _sig("algo", 3, "algorithmic", "algorithm algorithms np-hard np-complete big-o", "complexity dynamic",
         check=("time complexity", "space complexity", "dynamic programming")),
    _sig("analyse", 2, "analysis", "analyze analyse evaluate critique assess"),
    _sig("why", 1, "asks why/how", gate="why how",
         check=("why does", "why do", "why is", "why are", "why did", "how does")),
)  # fmt: skip
_SUMMARY = _sig(
    "summary",
    0,
    "asks to summarize",
    "summarize summarise summarization tldr recap condense",
    "sum tl key summary",
    check=("sum up", "tl;dr", "key points", "summary of"),
)
_EXTRACT = _sig(
    "extract",
    0,
    "asks to extract",
    "extract extraction",
    "json",
    check=r"\b(?:as|in|into|return|output) json\b|\blist (?:all|every)\b[^.?!]{0,80}\bjson",
)
_LANGS = "python javascript typescript java rust golang c++ c# ruby php kotlin swift bash sql"
_CODE_ASK = _sig(
    "code", 0, "asks for code",
    gate="write implement fix debug refactor optimize optimise port generate code",
    gate2="function script class method program code regex query test tests snippet bug endpoint " + _LANGS,
    check=r"\b(?:write|implement|fix|debug|refactor|optimi[sz]e|port|generate|code)\b[^.?!\n]{0,60}"
    r"\b(?:function|script|class|method|program|code|regex|query|tests?|snippet|bug|endpoint|"
    + "|".join(map(re.escape, _LANGS.split())) + ")",
)  # fmt: skip

_REASONING_TRIGGERS = tuple((sig, sig.words | sig.gate) for sig in _REASONING)
_REASONING_WORDS = frozenset().union(*(t for _, t in _REASONING_TRIGGERS))
_PUNCT_CHARS = '!"$%&()*,./:;<=>?@[\\]^`{|}~'  # become spaces; - ' # + _ stay inside words
_PUNCT = str.maketrans(dict.fromkeys(_PUNCT_CHARS, " "))
_BPUNCT = bytes.maketrans(_PUNCT_CHARS.encode(), b" " * len(_PUNCT_CHARS))
_POWER_RE = re.compile(r"[a-z0-9)]\s?\^\s?[-(\d]|[a-z]\^[a-z]")
_CODE_LINE_STARTS = (
    "def ", "class ", "import ", "from ", "#include", "function", "async ", "export ", "const ", "let ",
    "var ", "public ", "private ", "fn ", "func ", "package ", "at ", 'File "', "SELECT ", "INSERT ",
    "CREATE TABLE", "UPDATE ",
)  # fmt: skip
_CODE_LINE_RE = re.compile(
    r"(?P<trace>at [\w$.<>]+\([\w$.]*(?::\d+)?\)|File \"[^\"\n]+\", line \d+)"
    r"|(?P<kw>(?:def \w+\s*\(|class \w+\s*[:(]|import [\w.]+\s*(?:$|as |,|;)|from [\w.]+ import "
    r"|#include\s*[<\"]"
    r"|(?:export )?(?:async )?function\b\s*\w*\s*\(|(?:const|let|var) \w+\s*=|public (?:static |class )"
    r"|fn \w+\s*\(|func \w+\s*\(|package [\w.]+;?$|SELECT\s|INSERT INTO|CREATE TABLE|UPDATE \w+ SET))"
)
_INLINE_CODE_RE = re.compile(r"def \w+\(|SELECT\s+[\w*.,\s]{1,200}?\s+FROM\s+\w")


def _fires(sig: _Signal, ws: set[str], low: str) -> bool:
    if not sig.words.isdisjoint(ws):
        return True
    if sig.gate.isdisjoint(ws) or (sig.gate2 and sig.gate2.isdisjoint(ws)):
        return False
    check = sig.check
    if isinstance(check, tuple):
        for phrase in check:  # a loop, not any(): no generator on the hot path
            if phrase in low:
                return True
        return False
    return check.search(low) is not None
