"""Keep-local rules: text that looks like a secret or personal data never leaves the machine,
whatever the policy would have chosen.

The check runs only before an external send, and its summary (``checked``) is stored with every
external record, so "what left this machine, and what was it checked for" has an answer.
Verdicts name the rule that matched, never the matched text. Detectors are precompiled and each
is gated by a cheap substring test, so a 2k-character prompt is checked in tens of microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigError
from ._types import CallKind

__all__ = ["KeepLocalRules", "KeepLocalVerdict", "luhn_ok", "messages_text"]


@dataclass(frozen=True, slots=True)
class KeepLocalVerdict:
    """``keep_local`` with the ``rule`` that forced it (e.g. ``"pii:email"``), and what was checked."""

    keep_local: bool
    rule: str | None
    checked: str


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies (cuts false positives on long ids)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(match: str) -> bool:
    digits = re.sub(r"[ -]", "", match)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _phone_ok(match: str) -> bool:
    return 8 <= sum(c.isdigit() for c in match) <= 15


@dataclass(frozen=True, slots=True)
class _Detector:
    rule: str
    regex: re.Pattern[str]
    gate: tuple[str, ...] = ()  # at least one must occur in the text (lower-cased if ``lower_gate``)
    lower_gate: bool = False
    validate: Callable[[str], bool] | None = None
    in_digit_runs: bool = False  # search only inside runs of digits/separators (found once per text)

    def found(self, text: str, lowered: str, runs: list[tuple[int, int]]) -> bool:
        if self.gate:
            hay = lowered if self.lower_gate else text
            for g in self.gate:
                if g in hay:
                    break
            else:
                return False
        if self.lower_gate:  # the regex is written lower-case and searched in the lowered text
            text = lowered
        spans = runs if self.in_digit_runs else ((0, len(text)),)
        for start, end in spans:  # endpos one past the run so trailing look-aheads see the next char
            for m in self.regex.finditer(text, start, min(end + 1, len(text))):
                if self.validate is None or self.validate(m.group(0)):
                    return True
        return False


_NB = r"(?<![A-Za-z0-9_-])"  # token boundary for key prefixes
_SECRETS = (
    _Detector("secret:private_key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
              ("-----BEGIN",)),
    _Detector("secret:openai_key", re.compile(_NB + r"sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}"),
              ("sk-",)),
    _Detector("secret:aws_access_key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
              ("AKIA", "ASIA")),
    _Detector("secret:github_token",
              re.compile(_NB + r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
              ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    _Detector("secret:slack_token", re.compile(_NB + r"xox[abposr]-[A-Za-z0-9-]{10,}"), ("xox",)),
    _Detector("secret:google_api_key", re.compile(r"AIza[0-9A-Za-z_-]{35}"), ("AIza",)),
    _Detector("secret:stripe_key", re.compile(_NB + r"(?:sk|rk)_live_[0-9A-Za-z]{16,}"), ("_live_",)),
    _Detector("secret:jwt", re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
              ("eyJ",)),
    _Detector("secret:url_password", re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:[^\s/@]+@[^\s/@]"),
              ("://",)),
    _Detector(
        "secret:api_key_assignment",
        re.compile(
            r"(?<![a-z0-9])(?:api[_-]?key|apikey|secret[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret"
            r"|private[_-]?key|password|passwd)[\"']?\s*[:=]\s*[\"']?[^\s\"',;]{8,}"
        ),
        ("key", "token", "secret", "pass"), lower_gate=True,
    ),
)  # fmt: skip
_PII = (
    _Detector("pii:email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
              ("@",)),
    # +CC then 7-14 more digits with optional separators: "+44 20 7946 0958", "+4915112345678"
    _Detector("pii:phone", re.compile(r"(?<![\w+])\+[1-9](?:[ .-]?\(?\d\)?){6,14}(?!\d)"), ("+",),
              validate=_phone_ok),
    # US numbers need separators so plain ids and years never match: "(555) 123-4567", "555.123.4567"
    _Detector("pii:phone", re.compile(r"(?<![\w.-])(?:\(\d{3}\) ?|\d{3}[.-])\d{3}[.-]\d{4}(?![\w-])"),
              in_digit_runs=True),
    _Detector("pii:payment_card", re.compile(r"(?<![\d-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\d-])"),
              validate=_card_ok, in_digit_runs=True),
)  # fmt: skip
# Candidate spans for the digit detectors: one fast scan instead of one slow scan per detector.
_DIGIT_RUN = re.compile(r"[(\d][\d ().-]{8,}\d")

_CALL_KIND_VALUES = tuple(k.value for k in CallKind)


class KeepLocalRules:
    """Built-in secret and PII detectors, the user's regexes, and call kinds that always stay local.

    ``patterns[i]`` matching reports rule ``"pattern:i"`` (0-based, as in the list).
    """

    def __init__(
        self,
        detect_secrets: bool = True,
        detect_pii: bool = True,
        patterns: Sequence[str] = (),
        call_kinds: Collection[str] = (),
    ) -> None:
        if isinstance(patterns, str):
            patterns = (patterns,)
        compiled: list[re.Pattern[str]] = []
        for i, pattern in enumerate(patterns):
            try:
                compiled.append(re.compile(pattern))
            except (re.error, TypeError) as exc:
                raise ConfigError(
                    f"keep_local_patterns[{i}] = {pattern!r} is not a valid regular expression: {exc}. "
                    "Fix the regex, or wrap literal text in re.escape().",
                    key="keep_local_patterns",
                ) from exc
        kinds = {k.value if isinstance(k, CallKind) else str(k) for k in call_kinds}
        unknown = sorted(kinds - set(_CALL_KIND_VALUES))
        if unknown:
            raise ConfigError(
                f"keep_local_call_kinds has unknown call kind(s) {unknown}; allowed: {', '.join(_CALL_KIND_VALUES)}",
                key="keep_local_call_kinds",
            )
        self.detect_secrets, self.detect_pii = detect_secrets, detect_pii
        self.patterns = tuple(patterns)
        self.call_kinds = frozenset(kinds)
        self._detectors = (_SECRETS if detect_secrets else ()) + (_PII if detect_pii else ())
        self._patterns = tuple(compiled)
        parts = [name for on, name in ((detect_secrets, "secrets"), (detect_pii, "pii")) if on]
        if compiled:
            parts.append(f"{len(compiled)} pattern{'s' if len(compiled) != 1 else ''}")
        if kinds:
            parts.append("call_kinds=" + "|".join(sorted(kinds)))
        self.summary = ",".join(parts) or "no rules"

    def __repr__(self) -> str:  # the patterns may themselves be sensitive: count them only
        return f"KeepLocalRules({self.summary})"

    def check(self, text: str, call_kind: str = "query") -> KeepLocalVerdict:
        """Which rule, if any, keeps this call local. Never echoes what matched."""
        rule = self._first_match(text, str(call_kind.value if isinstance(call_kind, CallKind) else call_kind))
        if rule is None:
            return KeepLocalVerdict(False, None, f"{self.summary}: none matched")
        return KeepLocalVerdict(True, rule, f"{self.summary}: matched {rule}")

    def check_messages(self, messages: Iterable[Mapping[str, Any]], call_kind: str = "query") -> KeepLocalVerdict:
        """``check`` over the text of chat messages (string contents and text parts)."""
        return self.check(messages_text(messages), call_kind)

    def _first_match(self, text: str, call_kind: str) -> str | None:
        if call_kind in self.call_kinds:
            return f"call_kind:{call_kind}"
        if self._detectors:
            lowered = text.lower()
            # US phones have 10 digits and cards 13+: most prose has fewer, and counting is cheap.
            if self.detect_pii and sum(map(text.count, "0123456789")) >= 10:
                runs = [m.span() for m in _DIGIT_RUN.finditer(text)]
            else:
                runs = []
            for det in self._detectors:
                if det.found(text, lowered, runs):
                    return det.rule
        for i, pattern in enumerate(self._patterns):
            if pattern.search(text):
                return f"pattern:{i}"
        return None


def messages_text(messages: Iterable[Mapping[str, Any]]) -> str:
    """All text in OpenAI-style messages, joined by newlines (image parts are skipped)."""
    out: list[str] = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.extend(p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return "\n".join(out)
