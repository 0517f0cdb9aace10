"""Keep-local rules: text that looks like a secret or personal data never leaves the machine,
whatever the policy would have chosen.

The check runs only before an external send, and its summary (``checked``) is stored with every
external record, so "what left this machine, and what was it checked for" has an answer.
Verdicts name the rule that matched, never the matched text. Detectors are precompiled and each
is gated by a cheap substring test, so a 2k-character prompt is checked in tens of microseconds.

Every message of a call is checked, whatever its role: a caller's system prompt may carry a secret
as well as a user message. Only mem0's own fixed prompts (exact constants, never "looks like mem0")
are cut out first, since they are known text and make up most of a mem0 call. Non-ASCII text is
NFKC-normalised and stripped of zero-width/format characters first, so "sk\u200b-..." or
full-width digits do not slip past a detector.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from ._errors import ConfigError
from ._scan import normalise, scan_text
from ._types import CallKind

__all__ = ["KeepLocalRules", "KeepLocalVerdict", "luhn_ok", "normalise", "scan_text"]


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


def _after(chars: str) -> Callable[[re.Match[str]], bool]:
    """Validator: the match starts a token (the character before it is none of ``chars``)."""

    def ok(m: re.Match[str]) -> bool:
        return m.start() == 0 or m.string[m.start() - 1] not in chars

    return ok


_WORD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
_TOKEN = _WORD + "-"
_starts_token = _after(_TOKEN)


def _card_ok(m: re.Match[str]) -> bool:
    digits = m.group(0).replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _intl_phone_ok(m: re.Match[str]) -> bool:
    return _after(_WORD + "+")(m) and 8 <= sum(c.isdigit() for c in m.group(0)) <= 15


def _us_phone_ok(m: re.Match[str]) -> bool:
    """"(555) 123-4567" and "555.123.4567" look like phones whatever the digits; a bare or
    space-separated 10-digit number must also be a valid NANP number (area and exchange 2-9xx),
    so timestamps (1...) and ids such as 5551234567 are not taken for phones."""
    text = m.group(0)
    if "(" in text or "-" in text or "." in text:
        return True
    digits = [c for c in text if c.isdigit()][-10:]  # a leading country code 1 is not part of it
    return digits[0] not in "01" and digits[3] not in "01"


def _stripe_ok(m: re.Match[str]) -> bool:
    i = m.start()
    return m.string[max(i - 2, 0) : i] in ("sk", "rk") and (i < 3 or m.string[i - 3] not in _TOKEN)


def _email_ok(m: re.Match[str]) -> bool:  # a local part before the "@"
    return m.start() > 0 and (m.string[m.start() - 1].isalnum() or m.string[m.start() - 1] in "._%+-")


def _aws_secret_ok(m: re.Match[str]) -> bool:
    """Exactly 40 base64 characters with upper, lower and digits: AWS's secret access key shape
    (a hex digest is all lower-case or all digits, a longer base64 blob is not 40 long)."""
    t = m.group(0)
    return len(t) == 40 and any(c.isupper() for c in t) and any(c.islower() for c in t) and any(
        c.isdigit() for c in t)


@dataclass(frozen=True, slots=True)
class _Detector:
    """One rule. Every regex starts with a literal (``gate``) so ``re`` can skip ahead fast; what a
    leading look-behind would check is done by ``validate`` on the few candidates instead."""

    rule: str
    regex: re.Pattern[str]
    gate: bytes = b""  # must occur in the text (the lower-cased text if ``lowered``); ASCII
    lowered: bool = False
    validate: Callable[[re.Match[str]], bool] | None = None
    runs: str = ""  # "digits"/"tokens": search only inside those runs (found once per text)

    def found(self, text: str, runs: dict[str, list[tuple[int, int]]]) -> bool:
        """Search ``text`` (already lower-cased for ``lowered`` rules), in the runs if asked."""
        spans = runs[self.runs] if self.runs else ((0, len(text)),)
        for start, end in spans:  # endpos one past the run so trailing look-aheads see the next char
            for m in self.regex.finditer(text, start, min(end + 1, len(text))):
                if self.validate is None or self.validate(m):
                    return True
        return False


def _d(rule: str, pattern: str, gate: str, validate: Callable[[re.Match[str]], bool] | None = None,
       lowered: bool = False) -> _Detector:  # fmt: skip
    return _Detector(rule, re.compile(pattern), gate.encode("ascii"), lowered, validate)


_ALNUM = _WORD.replace("_", "")


@functools.cache
def _builtin() -> tuple[tuple[_Detector, ...], tuple[_Detector, ...]]:
    """(secret detectors, PII detectors), compiled on first use so importing this module is free."""
    _ASSIGNED = r"[\"']?\s*[:=]\s*[\"']?[^\s\"',;]{8,}"  # `= "value"`, `: value` (8+ characters)
    _SHORT = r"[\"']?\s*[:=]\s*[\"']?[^\s\"',;]{4,}"  # passwords are often short: 4+ characters
    # "pass"/"pwd" are common words: only `pass=x`, `"pwd": "x"`; never a path ($PWD, /home/...)
    _EQ_ONLY = r"(?:\s*=|[\"']\s*:)\s*[\"']?(?![/$~])[^\s\"',;]{4,}"
    after_alnum = _after(_ALNUM)  # DB_PASSWORD= and OPENAI_API_KEY= count; compass= does not
    secrets = (
        _d("secret:private_key", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----", "-----BEGIN "),
        _d("secret:openai_key", r"sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}", "sk-", _starts_token),
        _d("secret:aws_access_key", r"AKIA[A-Z0-9]{16}(?![A-Z0-9])", "AKIA", _after(_WORD)),
        _d("secret:aws_access_key", r"ASIA[A-Z0-9]{16}(?![A-Z0-9])", "ASIA", _after(_WORD)),
        _d("secret:github_token", r"gh[pousr]_[A-Za-z0-9]{36,}", "gh", _starts_token),
        _d("secret:github_token", r"github_pat_[A-Za-z0-9_]{22,}", "github_pat_", _starts_token),
        _d("secret:slack_token", r"xox[abposr]-[A-Za-z0-9-]{10,}", "xox", _starts_token),
        _d("secret:google_api_key", r"AIza[0-9A-Za-z_-]{35}", "AIza"),
        _d("secret:stripe_key", r"_live_[0-9A-Za-z]{16,}", "_live_", _stripe_ok),
        _d("secret:jwt", r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}", "eyJ"),
        _d("secret:url_password", r"://[^\s/:@]*:[^\s/@]+@[^\s/@]", "://"),
        _d("secret:bearer_token", r"authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token|apikey)\s+"
           r"[a-z0-9._~+/=-]{8,}", "authorization", lowered=True),
        _d("secret:bearer_token", r"bearer\s+(?=[a-z0-9._~+/=-]*\d)[a-z0-9._~+/=-]{16,}", "bearer", after_alnum,
           lowered=True),
        _Detector("secret:aws_secret_key", re.compile(r"[A-Za-z0-9/+]{40,}"), validate=_aws_secret_ok,
                  runs="tokens"),
        _d("secret:password", r"(?:passw(?:or)?d|passphrase|passcode)" + _SHORT, "pass", after_alnum, True),
        _d("secret:password", r"pass" + _EQ_ONLY, "pass", after_alnum, True),
        # prose: "my password is hunter2" (what a user tells a memory, and what a model writes back
        # into one); the value must hold a digit or a symbol, so "the password is long" is prose
        _d("secret:password", r"(?:passw(?:or)?d|passphrase|passcode)\s+(?:is|was)\s+[\"'`]?"
           r"(?=[^\s\"'`]*[0-9!#$%&*+/=?@^_~-])[^\s\"'`,;]{4,}", "pass", after_alnum, True),
        _d("secret:password", r"pwd" + _EQ_ONLY, "pwd", after_alnum, True),
        _d("secret:password", r"--pass(?:word)?(?:\s+|=)[\"']?(?!-)[^\s\"']{4,}", "--pass", lowered=True),
        *(
            _d("secret:api_key_assignment", kw + _ASSIGNED, gate, after_alnum, lowered=True)
            for kw, gate in (
                (r"api[_-]?key", "api"), (r"secret[_-]?(?:access[_-]?)?key", "secret"),
                (r"client[_-]?secret", "client"), (r"access[_-]?token", "access"), (r"auth[_-]?token", "auth"),
                (r"private[_-]?key", "private"),
            )
        ),
    )  # fmt: skip
    pii = (
        _d("pii:email", r"@(?:[^\W_]|-)+(?:\.(?:[^\W_]|-)+)*\.(?:[^\W\d_]{2,}|xn--[a-z0-9-]+)", "@", _email_ok),
        # +CC then 7-14 more digits with optional separators: "+44 20 7946 0958", "+4915112345678"
        _d("pii:phone", r"\+[1-9](?:[ .-]?\(?\d\)?){6,14}(?!\d)", "+", _intl_phone_ok),
        # US numbers: "(555) 123-4567", "555.123.4567", "1-415-555-0199", "415 555 0199", "4155550199"
        _Detector("pii:phone", re.compile(r"(?<![\w.+-])(?:1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-]?)\d{3}[ .-]?\d{4}(?![\w-])"),
                  validate=_us_phone_ok, runs="digits"),
        _Detector("pii:payment_card", re.compile(r"(?<![\d-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\d-])"),
                  validate=_card_ok, runs="digits"),
    )  # fmt: skip
    return secrets, pii


# Candidate spans for the digit detectors: card numbers and US phones are 10+ characters of digits
# and " ().-" holding 10+ digits. Mapping those characters to "0" lets a plain substring find (far
# faster than a regex scan) jump straight to such runs; prose with years and short ids has none.
# Non-ASCII characters become "?" (one byte each), so offsets still match the text.
_RUN_MIN = 10  # "4155550199"
_TO_ZERO = bytes.maketrans(b"123456789 ().-", b"0" * 14)
_NEEDLE = b"0" * _RUN_MIN
_ZEROS = re.compile(b"0*")
# The same trick for 40-character base64 tokens (AWS secret keys): their characters become "a".
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+"
_TO_A = bytes.maketrans(_B64, b"a" * len(_B64))
_TOKEN_NEEDLE = b"a" * 40
_AS = re.compile(b"a*")


def _digit_runs(raw: bytes) -> list[tuple[int, int]]:
    """Spans of ``raw`` (the text as ASCII, "?" for other characters) that may hold a number."""
    # doubled separators (indentation, "----" rules, "...") never occur inside a number: break runs there
    flat = raw.replace(b"  ", b"__").replace(b"--", b"__").replace(b"..", b"__").translate(_TO_ZERO)
    runs: list[tuple[int, int]] = []
    i = flat.find(_NEEDLE)
    while i != -1:
        end = _ZEROS.match(flat, i).end()  # type: ignore[union-attr]
        seg = raw[i:end]
        if len(seg) - len(seg.translate(None, b"0123456789")) >= 10:
            runs.append((i, end))
        i = flat.find(_NEEDLE, end)
    return runs


def _token_runs(raw: bytes) -> list[tuple[int, int]]:
    """Spans of exactly 40 base64 characters (longer runs are blobs, not keys)."""
    flat = raw.translate(_TO_A)
    runs: list[tuple[int, int]] = []
    i = flat.find(_TOKEN_NEEDLE)
    while i != -1:
        end = _AS.match(flat, i).end()  # type: ignore[union-attr]
        # not the tail of a longer identifier ("-", "_" before it), not base64 padded data ("=" after it)
        if end - i == 40 and raw[i - 1 : i] not in (b"-", b"_") and raw[end : end + 1] != b"=":
            runs.append((i, end))
        i = flat.find(_TOKEN_NEEDLE, end)
    return runs


# --- what is checked ---------------------------------------------------------------------------


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
        secrets, pii = _builtin()
        self._detectors = (secrets if detect_secrets else ()) + (pii if detect_pii else ())
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

    def _first_match(self, text: str, call_kind: str) -> str | None:
        if call_kind in self.call_kinds:
            return f"call_kind:{call_kind}"
        text = normalise(text)
        if self._detectors:
            # Gates are tested on bytes (one byte per character, so offsets match the text):
            # a bytes search is several times faster than one in a non-ASCII str.
            raw = text.encode("ascii", "replace")
            raw_lower = raw.lower()
            lowered: str | None = None
            runs = {"digits": _digit_runs(raw) if self.detect_pii else [],
                    "tokens": _token_runs(raw) if self.detect_secrets else []}
            for det in self._detectors:
                if det.gate and det.gate not in (raw_lower if det.lowered else raw):
                    continue
                if det.lowered and lowered is None:
                    lowered = text.lower()
                if det.found(lowered if det.lowered else text, runs):  # type: ignore[arg-type]
                    return det.rule
        for i, pattern in enumerate(self._patterns):
            if pattern.search(text):
                return f"pattern:{i}"
        return None
