"""Keep-local rules: what they catch, what they must not catch, and that they never echo secrets."""

from __future__ import annotations

import random

import pytest

from mem0_routed import CallKind, ConfigError
from mem0_routed._privacy import KeepLocalRules, KeepLocalVerdict, luhn_ok

# Built at run time so no scanner flags this file, and so each is unique to the test run.
_rng = random.Random(42)
_alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _tok(n: int, alphabet: str = _alnum) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _with_luhn(body: str) -> str:
    """Append the check digit that makes ``body`` pass Luhn (independent of the code under test)."""
    for d in "0123456789":
        digits = [int(c) for c in body + d][::-1]
        total = sum(x if i % 2 == 0 else (x * 2 - 9 if x > 4 else x * 2) for i, x in enumerate(digits))
        if total % 10 == 0:
            return body + d
    raise AssertionError("unreachable")


CARD = _with_luhn("4" + _tok(14, "0123456789"))
CARD_BAD = CARD[:-1] + str((int(CARD[-1]) + 1) % 10)

POSITIVES = {
    "secret:openai_key": [f"key sk-proj-{_tok(40)} here", f"OPENAI_API_KEY sk-{_tok(48)}"],
    "secret:aws_access_key": [f"aws AKIA{_tok(16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567')} x"],
    "secret:github_token": [f"ghp_{_tok(36)}", f"token: github_pat_{_tok(30)}"],
    "secret:slack_token": [f"xoxb-{_tok(12, '0123456789')}-{_tok(24)}"],
    "secret:google_api_key": [f"AIza{_tok(35)}"],
    "secret:stripe_key": [f"sk_live_{_tok(24)}", f"rk_live_{_tok(24)}"],
    "secret:private_key": ["-----BEGIN RSA PRIVATE KEY-----\nMIIEow", "-----BEGIN OPENSSH PRIVATE KEY-----",
                           "-----BEGIN PGP PRIVATE KEY BLOCK-----"],
    "secret:url_password": [f"postgres://admin:{_tok(10)}@db.internal:5432/app", f"redis://:{_tok(12)}@cache:6379"],
    "secret:jwt": [f"Bearer eyJ{_tok(20)}.eyJ{_tok(40)}.{_tok(43)}"],
    "secret:api_key_assignment": [f"api_key={_tok(20)}", f"CLIENT_SECRET: {_tok(16)}",
                                  f"OPENAI_API_KEY={_tok(24)}", f"aws_secret_access_key = {_tok(30)}"],
    "secret:password": [f'"password": "{_tok(12)}"', "password=hunter2", "DB_PASSWORD=s3cr", "pwd=abcd1234",
                        "mysql -u root --pass=Tr0ub4dor", "login --password hunter2", '{"pwd": "x9y8z7"}', "passwd: qwerty12"],
    "secret:aws_secret_key": [f"key A1b{_tok(16)}/{_tok(8)}+{_tok(11)} done", f"A1b{_tok(37)}",
                              f"AWS_SECRET=A1b{_tok(37)}"],
    "secret:bearer_token": [f"Authorization: Bearer {_tok(30)}", f"authorization: basic {_tok(12)}",
                            f"-H 'Bearer {_tok(8, 'abcdef')}3{_tok(20)}'"],
    "pii:email": ["write to jane.doe+news@mail.example.co.uk please", "jörg@bücher.de", "x@münchen.xn--p1ai"],
    "pii:phone": ["call +44 20 7946 0958 today", "+4915112345678", "(555) 123-4567", "555-123-4567",
                  "office 555.123.4567.", "call 415 555 0199 now", "4155550199",
                  "dial 1-415-555-0199", "or 1 (415) 555-0199"],
    "pii:payment_card": [CARD, " ".join(CARD[i : i + 4] for i in range(0, 16, 4)), f"card: {CARD}."],
}  # fmt: skip

NEGATIVES = [
    "In 2024 we had 1234567 users and 42 servers.",
    "order id 12345678901234 shipped on 2024-01-15",
    CARD_BAD,
    "version 1.2.3 released; see https://example.com/docs?a=1@2",
    "sk-short and sk-is-a-prefix",
    "the password is long and the api key rotates monthly",
    "call 5551234567",
    "score +1, x = +100, temperature +3.5 degrees, utc+01:00",
    "192.168.100.200 and 10.0.0.1",
    "ssn-like 123-45-6789 and zip 94107-1234",
    "the github repo and the slack channel",
    "                    deeply indented text",
    "-------------------------------------------------",
    "I like hiking; my favourite number is 7 and I was born in 1990.",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it",  # a hex digest is not an AWS secret
    "unix time 1700000000 and 1234567890",
    "the mountain pass: Stelvio; I passed: yes; pass the salt",
    "PWD=/home/alice/projects and $PWD",
    "the bearer of bad news, a bearer bond",
    "authorization was granted by the board",
    "100 200 3000 items in stock",
    "set --password-file /etc/x and --pass -",
    "ids 10000000001 and 1 100 555 0199",
    "email me at the office; @channel see you",
]


@pytest.mark.parametrize(("rule", "text"), [(r, t) for r, ts in POSITIVES.items() for t in ts])
def test_detects_and_never_echoes_the_match(rule: str, text: str) -> None:
    verdict = KeepLocalRules().check(text, "query")
    assert verdict.keep_local is True
    assert verdict.rule == rule
    assert verdict.checked == f"secrets,pii: matched {rule}"
    secretish = max(text.split(), key=len)
    for shown in (verdict.rule, verdict.checked, repr(verdict)):
        assert secretish not in shown


@pytest.mark.parametrize("text", NEGATIVES)
def test_ordinary_text_stays_eligible(text: str) -> None:
    verdict = KeepLocalRules().check(text, "query")
    assert verdict == KeepLocalVerdict(False, None, "secrets,pii: none matched")


def test_mem0_own_prompts_do_not_trigger_any_rule() -> None:
    from mem0.configs import prompts

    texts = [v for v in vars(prompts).values() if isinstance(v, str) and len(v) > 200]
    assert texts
    rules = KeepLocalRules()
    assert [rules.check(t, "mem0_extraction").rule for t in texts] == [None] * len(texts)


def test_luhn_on_generated_numbers() -> None:
    for _ in range(50):
        good = _with_luhn(_tok(15, "0123456789"))
        assert luhn_ok(good)
        assert not luhn_ok(good[:-1] + str((int(good[-1]) + 1) % 10))


def test_secret_and_pii_switches() -> None:
    email, key = "a.b@example.org", f"sk-{_tok(30)}"
    assert KeepLocalRules(detect_pii=False).check(email, "query").keep_local is False
    assert KeepLocalRules(detect_pii=False).check(key, "query").rule == "secret:openai_key"
    assert KeepLocalRules(detect_secrets=False).check(key, "query").keep_local is False
    off = KeepLocalRules(detect_secrets=False, detect_pii=False)
    assert off.check(key + " " + email, "query") == KeepLocalVerdict(False, None, "no rules: none matched")


def test_user_patterns_are_named_by_index() -> None:
    rules = KeepLocalRules(patterns=[r"(?i)project\s+falcon", r"\bACME-\d{3,}\b"])
    assert rules.check("about Project  FALCON", "query").rule == "pattern:0"
    assert rules.check("ticket ACME-1234 is open", "query").rule == "pattern:1"
    assert rules.check("ticket ACME-12", "query").keep_local is False
    assert rules.check("nothing here", "query").checked == "secrets,pii,2 patterns: none matched"
    assert "falcon" not in repr(rules).lower()  # user patterns may be sensitive themselves


def test_invalid_pattern_names_the_pattern_and_the_error() -> None:
    with pytest.raises(ConfigError) as info:
        KeepLocalRules(patterns=["fine", "(unclosed"])
    msg = str(info.value)
    assert "keep_local_patterns[1]" in msg and "'(unclosed'" in msg
    assert "missing )" in msg
    assert info.value.key == "keep_local_patterns"


def test_call_kinds_force_local_first_and_are_validated() -> None:
    rules = KeepLocalRules(call_kinds=["mem0_extraction", CallKind.MEM0_VISION])
    v = rules.check("plain words", "mem0_extraction")
    assert v == KeepLocalVerdict(
        True, "call_kind:mem0_extraction",
        "secrets,pii,call_kinds=mem0_extraction|mem0_vision: matched call_kind:mem0_extraction",
    )  # fmt: skip
    assert rules.check("plain words", CallKind.MEM0_VISION).rule == "call_kind:mem0_vision"  # type: ignore[arg-type]
    assert rules.check("plain words", "query").keep_local is False
    with pytest.raises(ConfigError, match="mem0_extractoin"):
        KeepLocalRules(call_kinds=["mem0_extractoin"])


def test_non_ascii_text_keeps_offsets_right() -> None:
    text = "Zürich café — ☕ " * 20 + f" card {CARD} ünd mail jörg@example.de"
    assert KeepLocalRules().check(text, "query").rule == "pii:email"
    assert KeepLocalRules().check(text.replace("jörg@example.de", ""), "query").rule == "pii:payment_card"


# --- normalisation: invisible characters and look-alike digits (issue 11, defect 7) -----------------


@pytest.mark.parametrize("zw", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u034f", "\ufe0f"])
def test_secrets_with_invisible_characters_inside_are_found(zw: str) -> None:
    key = f"sk-proj-{_tok(40)}"
    rules = KeepLocalRules()
    assert rules.check(key[:3] + zw + key[3:], "query").rule == "secret:openai_key"
    assert rules.check(f"pass{zw}word=hunter2", "query").rule == "secret:password"
    assert rules.check(f"jane{zw}@example.com", "query").rule == "pii:email"


def test_full_width_and_styled_characters_are_normalised() -> None:
    rules = KeepLocalRules()
    full = "".join(chr(ord(c) + 0xFEE0) for c in "4155550199")  # full-width digits
    assert rules.check(f"call {full}", "query").rule == "pii:phone"
    assert rules.check("ＡＫＩＡ" + "ABCDEFGHIJKLMNOP", "query").rule == "secret:aws_access_key"


def test_scan_text_covers_every_role_and_field_and_cuts_only_mem0_constants() -> None:
    from mem0.configs.prompts import ADDITIVE_EXTRACTION_PROMPT, PROCEDURAL_MEMORY_SYSTEM_PROMPT

    from mem0_routed._privacy import scan_text

    rules = KeepLocalRules()
    secret = "password=hunter2"
    cases = [
        [{"role": "system", "content": f"{PROCEDURAL_MEMORY_SYSTEM_PROMPT}\n{secret}"}],
        [{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, {"role": "user", "content": secret}],
        [{"role": "developer", "content": [{"type": "text", "text": secret}]}],
        [{"role": "assistant", "content": None, "tool_calls": [{"function": {"arguments": f'{{"{secret}"}}'}}]}],
        [{"role": "system", "content": PROCEDURAL_MEMORY_SYSTEM_PROMPT[:-50] + "\n" + secret}],  # an edited copy
    ]
    for messages in cases:
        assert rules.check(scan_text(messages), "mem0_procedural").rule == "secret:password", messages
    only_mem0 = [{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, {"role": "user", "content": "hi"}]
    assert scan_text(only_mem0).strip() == "hi"
    # cutting a constant never joins the text around it into a match
    joined = scan_text([{"role": "user", "content": f"pass{PROCEDURAL_MEMORY_SYSTEM_PROMPT}word=hunter2"}])
    assert "password" not in joined


def test_scanning_never_imports_mem0_s_reranker_module() -> None:
    """mem0.reranker imports sentence-transformers and torch (seconds): the first scan must not."""
    import subprocess
    import sys

    code = ("import sys, mem0_routed; from mem0_routed._privacy import scan_text; "
            "scan_text([{'role': 'system', 'content': 'x' * 500}]); print('mem0.reranker' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_the_reranker_s_own_prompt_is_cut_once_mem0_uses_it() -> None:
    from mem0.reranker.llm_reranker import LLMReranker

    from mem0_routed._privacy import scan_text

    prompt = LLMReranker._SYSTEM_PROMPT
    assert scan_text([{"role": "system", "content": prompt}, {"role": "user", "content": "Query: a"}]).strip() == (
        "Query: a")
