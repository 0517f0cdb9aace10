"""``mem0-routed report --html``: a self-contained page from the ledger whose charts a real browser draws.

The page is rendered by headless Chromium (Debian ``chromium``); its inline script counts, after
layout, the marks each chart drew. Without Chromium the browser tests skip, and fail under ``CI``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from mem0_routed import UsageRecord
from mem0_routed._cli import main
from mem0_routed._ledger import SQLiteLedger
from mem0_routed._records import utc_month_start
from mem0_routed._report import render_html

SECRET = "sk-report-never-shown-123456"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def sample_records(now: float, days: int = 20, seed: int = 7) -> list[UsageRecord]:
    """A plausible month: mostly local, some escalations to OpenAI (with cost), a few errors."""
    rng = random.Random(seed)
    out = []
    start = max(now - days * 86400, utc_month_start() + 60)
    ts = start
    while ts < now - 60:
        ts += rng.uniform(600, 5400)
        kind = rng.choice(["mem0_extraction", "mem0_extraction", "query", "embedding", "embedding"])
        if kind == "embedding":
            out.append(UsageRecord(ts=ts, call_kind=kind, query_type="embedding", model="nomic-embed-text:latest",
                                   backend="ollama", is_local=True, latency_s=rng.uniform(0.02, 0.1)))
            continue
        roll = rng.random()
        if roll < 0.06:
            out.append(UsageRecord(ts=ts, call_kind=kind, query_type="extraction", model="gpt-4o-mini",
                                   backend="openai", is_local=False, tokens_in=2400, tokens_out=300,
                                   cost_usd=0.00054, latency_s=rng.uniform(0.8, 3.0), outcome="escalated",
                                   escalations=["invalid json from mistral:7b"], fallback=True))
        elif roll < 0.08:
            out.append(UsageRecord(ts=ts, call_kind=kind, query_type="code", model="deepseek-coder:6.7b",
                                   backend="ollama", is_local=True, latency_s=30.0, outcome="error",
                                   escalations=["timeout"], error="read timeout after 30 s <script>x</script>"))
        else:
            model = rng.choice(["mistral:7b", "mistral:7b", "codellama:13b", "deepseek-coder:6.7b"])
            out.append(UsageRecord(ts=ts, call_kind=kind, query_type="simple", model=model, backend="ollama",
                                   is_local=True, tokens_in=900, tokens_out=120, latency_s=rng.uniform(0.5, 6.0)))
    return out  # fmt: skip


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    path = tmp_path / "ledger.sqlite3"
    ledger = SQLiteLedger(path)
    for record in sample_records(time.time()):
        ledger.record(record)
    ledger.close()
    return f"sqlite:///{path}"


def _cli_report(ledger_url: str, out: Path, *extra: str) -> str:
    result = CliRunner().invoke(main, ["--ledger", ledger_url, "--threshold", "95", "report", "--html", str(out),
                                       "--budget", "0.05", *extra],
                                env={"OPENAI_API_KEY": SECRET})  # fmt: skip
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


class _Audit(HTMLParser):
    """Every URL-bearing attribute and every chart of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.charts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action")]
        if tag == "svg" and "chart" in (a.get("class") or "").split():
            self.charts.append(a)


def test_page_is_self_contained_and_safe(ledger_url: str, tmp_path: Path) -> None:
    page = _cli_report(ledger_url, tmp_path / "report.html")
    audit = _Audit()
    audit.feed(page)
    assert audit.urls == []  # nothing fetched: no script, style, font or image from anywhere
    assert not re.search(r"https?://", page)
    assert len(audit.charts) == 6
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page  # escaped
    assert SECRET not in page
    assert "threshold 95 %" in page and "budget $0.05" in page
    for name in ("mistral:7b", "gpt-4o-mini", "deepseek-coder:6.7b", "invalid json from mistral:7b"):
        assert name in page


def test_empty_ledger_still_renders(tmp_path: Path) -> None:
    page = render_html([], local_threshold=95.0)
    assert "no LLM calls in this window" in page and "No errors in this window." in page


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        message = "chromium is missing: apt-get install chromium (scripts/setup.sh does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


def _browser(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], check=False,
                          capture_output=True, text=True, timeout=180)  # fmt: skip


def test_chromium_draws_every_chart(ledger_url: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    _cli_report(ledger_url, out)
    proc = _browser(["--dump-dom", out.as_uri()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    audit = _Audit()
    audit.feed(proc.stdout)
    assert 'data-rendered="yes"' in proc.stdout, "the page's script did not run to the end"
    assert len(audit.charts) == 6
    drawn = {c.get("aria-label"): int(c.get("data-drawn") or 0) for c in audit.charts}
    assert all(n > 0 for n in drawn.values()), drawn
    # the share chart: a point per day plus the threshold line; the spend chart: spend plus budget
    assert drawn["Local share (LLM calls) vs threshold"] >= 10
    assert drawn["Spend this month vs budget"] >= 3


def test_chromium_screenshot(ledger_url: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    _cli_report(ledger_url, out)
    shot = tmp_path / "report.png"
    proc = _browser([f"--screenshot={shot}", "--window-size=1200,1000", "--hide-scrollbars", out.as_uri()], tmp_path)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-3000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a page with charts, not a blank one
    if os.environ.get("MEM0_ROUTED_SCREENSHOT"):  # refresh the README's picture
        Path(os.environ["MEM0_ROUTED_SCREENSHOT"]).write_bytes(data)
