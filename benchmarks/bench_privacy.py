"""Keep-local detectors vs detect-secrets and phonenumbers: coverage on a labelled corpus, and speed.

Run from the repo root: ``python -m benchmarks.bench_privacy [--n 300] [--json out.json]``.
The libraries are timed only if importable (``pip install detect-secrets phonenumbers``, the ``bench``
extra). A false negative sends a secret out; a false positive only keeps a call local, so recall
on the positives matters most, then false positives on harmless text, then µs per message.

Targets (this machine): our detectors find every positive, flag no negative, and check mem0's
full extraction call in <= 100 µs (median) — mem0's constants are cut before the scan.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from typing import Any

from mem0.configs.prompts import (  # type: ignore[import-untyped]
    ADDITIVE_EXTRACTION_PROMPT,
    PROCEDURAL_MEMORY_SYSTEM_PROMPT,
    generate_additive_extraction_prompt,
)

from benchmarks._common import machine_info, median, print_table, timeit_us, write_json
from mem0_routed._privacy import KeepLocalRules, scan_text

_rng = random.Random(11)
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _tok(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


# (kind, text): kind "secret" or "phone" or "pii" (other personal data)
POSITIVES: list[tuple[str, str]] = [
    ("secret", f"my key is sk-proj-{_tok(48)}"),
    ("secret", f"aws_access_key_id = AKIA{_tok(16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567')}"),
    ("secret", f"aws_secret_access_key = {_tok(20)}/{_tok(9)}+{_tok(9)}"),
    ("secret", f"the secret is Zq9{_tok(30)}/{_tok(6)} keep it safe"),
    ("secret", "password=hunter2"),
    ("secret", "DB_PASSWORD=s3cr"),
    ("secret", "pwd=abcd1234"),
    ("secret", "mysql --pass=Tr0ub4dor"),
    ("secret", '{"password": "correct horse"}'),
    ("secret", f"Authorization: Bearer {_tok(32)}"),
    ("secret", f"curl -H 'Authorization: Basic {_tok(20)}=='"),
    ("secret", f"ghp_{_tok(36)}"),
    ("secret", f"xoxb-{_tok(12, '0123456789')}-{_tok(24)}"),
    ("secret", f"AIza{_tok(35)}"),
    ("secret", f"sk_live_{_tok(24)}"),
    ("secret", "-----BEGIN RSA PRIVATE KEY-----\nMIIEow"),
    ("secret", f"postgres://admin:{_tok(12)}@db.internal:5432/app"),
    ("secret", f"eyJ{_tok(20)}.eyJ{_tok(40)}.{_tok(43)}"),
    ("secret", f"api_key: {_tok(32)}"),
    ("secret", f"sk\u200b-proj-{_tok(40)}"),  # zero-width space inside
    ("secret", "pass\u200bword=hunter22"),
    ("phone", "call me at 415 555 0199"),
    ("phone", "4155550199"),
    ("phone", "(555) 123-4567"),
    ("phone", "555.123.4567"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "+4915112345678"),
    ("phone", "my cell: +1 (650) 253-0000"),
    ("phone", "".join(chr(ord(c) + 0xFEE0) for c in "4155550199")),  # full-width digits
    ("pii", "write to jane.doe@example.com"),
    ("pii", "jörg@bücher.de"),
    ("pii", "ivan@пример.рф"),
    ("pii", "card 4111 1111 1111 1111"),
    ("pii", "jane\u200b@example.org"),
]

NEGATIVES: list[str] = [
    "In 2024 we had 1234567 users and 42 servers.",
    "order id 12345678901234 shipped on 2024-01-15",
    "version 1.2.3 released; see https://example.com/docs?a=1@2",
    "the password is long and the api key rotates monthly",
    "call 5551234567",
    "score +1, x = +100, temperature +3.5 degrees, utc+01:00",
    "192.168.100.200 and 10.0.0.1",
    "ssn-like 123-45-6789 and zip 94107-1234",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it",
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "unix time 1700000000 and 1234567890",
    "the mountain pass: Stelvio; pass the salt",
    "PWD=/home/alice/projects and $PWD",
    "the bearer of bad news, a bearer bond",
    "authorization was granted by the board",
    "100 200 3000 items in stock",
    "def f(x):\n    return x ** 2  # why does this fail?",
    "SELECT id, name FROM users WHERE created_at > '2024-01-01'",
    "I like hiking; my favourite number is 7 and I was born in 1990.",
    "Traceback (most recent call last):\n  File \"app.py\", line 12, in <module>",
    "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "The meeting is at 10:30 in room 4B; bring the Q3 report.",
    "Ich wohne in München und arbeite bei der Bahn.",
    "東京に住んでいます。電話は持っていません。",
    PROCEDURAL_MEMORY_SYSTEM_PROMPT,
    ADDITIVE_EXTRACTION_PROMPT,
]


def _ours() -> Callable[[str], bool]:
    rules = KeepLocalRules()
    return lambda text: rules.check(text, "query").keep_local


def _detect_secrets(entropy: bool) -> Callable[[str], bool] | None:
    try:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import default_settings, transient_settings
    except ImportError:
        return None
    if entropy:
        def found(text: str) -> bool:
            with default_settings():
                return any(True for line in text.splitlines() for _ in scan_line(line))
        return found
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    names = [c.__name__ for c in get_mapping_from_secret_type_to_class().values() if "Entropy" not in c.__name__]
    config = {"plugins_used": [{"name": n} for n in names]}

    def found_no_entropy(text: str) -> bool:
        with transient_settings(config):
            return any(True for line in text.splitlines() for _ in scan_line(line))
    return found_no_entropy


def _phonenumbers() -> Callable[[str], bool] | None:
    try:
        import phonenumbers
    except ImportError:
        return None
    return lambda text: any(True for _ in phonenumbers.PhoneNumberMatcher(text, "US"))


def _coverage(fn: Callable[[str], bool], kinds: set[str]) -> tuple[int, int, int, int]:
    pos = [t for k, t in POSITIVES if k in kinds]
    return sum(map(fn, pos)), len(pos), sum(map(fn, NEGATIVES)), len(NEGATIVES)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300, help="calls per timing")
    ap.add_argument("--json", help="write figures here")
    args = ap.parse_args(argv)

    short = "Remind me to call the dentist tomorrow at 9."
    prose = " ".join(t for t in NEGATIVES[:20]) * 4  # ~2.5k chars of harmless text
    user = generate_additive_extraction_prompt(
        existing_memories=[], new_messages=[{"role": "user", "content": "I live in Paris, I love jazz."}])
    mem0_call = [{"role": "system", "content": ADDITIVE_EXTRACTION_PROMPT}, {"role": "user", "content": user}]

    candidates: list[tuple[str, Callable[[str], bool] | None, set[str]]] = [
        ("mem0-routed detectors", _ours(), {"secret", "phone", "pii"}),
        ("detect-secrets (default plugins)", _detect_secrets(True), {"secret"}),
        ("detect-secrets (no entropy plugins)", _detect_secrets(False), {"secret"}),
        ("phonenumbers (US, VALID)", _phonenumbers(), {"phone"}),
    ]
    rows: list[list[Any]] = []
    figures: dict[str, Any] = {}
    ours_prose = 0.0
    for name, fn, kinds in candidates:
        if fn is None:
            rows.append([name, "not installed", "", "", "", ""])
            continue
        found, total, fps, negs = _coverage(fn, kinds)
        ours_kinds = [_coverage(candidates[0][1], {k}) for k in sorted(kinds)]  # type: ignore[arg-type]
        n = max(20, args.n // (20 if "phonenumbers" in name or "detect" in name else 1))
        t_short = median(timeit_us(lambda: fn(short), n, batch=5, warmup=5))
        t_prose = median(timeit_us(lambda: fn(prose), max(10, n // 5), batch=2, warmup=2))
        if name.startswith("mem0-routed"):
            ours_prose = t_prose
        ours_found = sum(f for f, *_ in ours_kinds)
        rows.append([name, f"{found}/{total} (ours {ours_found}/{total})", f"{fps}/{negs}",
                     f"{t_short:.1f}", f"{t_prose:.0f}",
                     f"{t_prose / ours_prose:.0f}x" if ours_prose else "1x"])
        figures[name] = {"found": found, "positives": total, "false_positives": fps, "negatives": negs,
                         "short_us": t_short, "prose_us": t_prose}
    rules = KeepLocalRules()
    t_mem0 = median(timeit_us(lambda: rules.check(scan_text(mem0_call), "mem0_extraction"), args.n, batch=5))
    figures["mem0 extraction call, scan_text + check (us)"] = t_mem0
    print(f"# keep-local detectors ({machine_info()})")
    print_table("coverage and speed (median µs per message)",
                ["detector", "positives found (same kinds)", "false positives", "short µs", "2.5k-char µs",
                 "2.5k vs ours"], rows)
    ours = figures["mem0-routed detectors"]
    missed = ours["found"] < ours["positives"] or ours["false_positives"] > 0 or t_mem0 > 100.0
    print(f"mem0 extraction call (34k chars, constants cut): {t_mem0:.1f} µs (target <= 100)"
          f"{'  MISSED' if t_mem0 > 100.0 else ''}")
    if args.json:
        write_json(args.json, figures)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
