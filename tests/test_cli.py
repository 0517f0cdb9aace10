"""The CLI, driven through click's runner against the fake Ollama server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mem0_routed._cli import main
from mem0_routed._router import reset_routers


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch):
    for name in ("OPENAI_API_KEY", "LLM_LOCAL_THRESHOLD", "OLLAMA_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEM0_ROUTED_LOCAL_BACKEND", "ollama")
    reset_routers()
    yield
    reset_routers()


def test_explain_prints_the_decision_and_reasons_without_calling_a_model(ollama_server) -> None:
    result = CliRunner().invoke(main, ["--ollama-url", ollama_server.url, "explain", "hi there",
                                       "def f(x):\n    return x  # why does this fail?"])
    assert result.exit_code == 0, result.output
    assert "ollama:mistral:7b (local)" in result.output
    assert "deepseek-coder:6.7b" in result.output and "code" in result.output
    assert "external fallback" in result.output and "OPENAI_API_KEY" in result.output
    assert ollama_server.requests_to("/api/chat") == []


def test_explain_json_and_forced_type() -> None:
    result = CliRunner().invoke(main, ["explain", "--json", "--type", "complex", "hello"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data[0]["query_type"] == "complex" and data[0]["is_local"] is True
    assert any("set by caller" in r for r in data[0]["reasons"])


def test_bad_option_value_is_a_clear_message_not_a_traceback() -> None:
    result = CliRunner().invoke(main, ["--threshold", "150", "explain", "hello"])
    assert result.exit_code != 0
    assert "local_threshold" in result.output and "0 to 100" in result.output
    assert "Traceback" not in result.output


def test_health_reports_missing_models_and_exits_nonzero_when_down(ollama_server) -> None:
    ollama_server.remove_model("codellama:13b")
    ok = CliRunner().invoke(main, ["--ollama-url", ollama_server.url, "health"])
    assert ok.exit_code == 0, ok.output
    assert "missing models:  codellama:13b" in ok.output and "ollama pull codellama:13b" in ok.output
    ollama_server.set_fault("refused")
    down = CliRunner().invoke(main, ["--ollama-url", ollama_server.url, "health", "--json"])
    assert down.exit_code == 1
    assert json.loads(down.output)["ollama"] is False


def test_stats_and_project_read_the_ledger(tmp_path) -> None:
    import time

    from mem0_routed._ledger import SQLiteLedger
    from mem0_routed._usage import UsageRecord

    path = tmp_path / "ledger.sqlite3"
    ledger = SQLiteLedger(str(path))
    now = time.time()
    for i in range(19):
        ledger.record(UsageRecord(ts=now, call_kind="query", query_type="simple", model="mistral:7b",
                                  backend="ollama", is_local=True, latency_s=0.1))
    ledger.record(UsageRecord(ts=now, call_kind="query", query_type="complex", model="gpt-4o-mini",
                              backend="openai", is_local=False, tokens_in=1000, tokens_out=200, cost_usd=0.00027))
    ledger.close()
    stats = CliRunner().invoke(main, ["--ledger", str(path), "stats", "--json"])
    assert stats.exit_code == 0, stats.output
    data = json.loads(stats.output)
    assert data["total_queries"] == 20 and data["local_percentage"] == 95.0 and data["on_target"] is True
    proj = CliRunner().invoke(main, ["--ledger", str(path), "project", "--queries", "3000", "--json"])
    assert proj.exit_code == 0, proj.output
    p = json.loads(proj.output)
    assert p["queries_per_month"] == 3000 and p["local_percentage"] == 95.0
    # observed tokens (1000 in / 200 out) priced at gpt-4o-mini's real rates
    assert p["tokens_in_per_query"] == 1000 and p["tokens_out_per_query"] == 200
    assert p["monthly_cost_all_external"] == pytest.approx(3000 * p["external_cost_per_query"], rel=1e-6)
    assert p["monthly_cost_at_current_mix"] == pytest.approx(150 * p["external_cost_per_query"], rel=1e-6)
    table = CliRunner().invoke(main, ["--ledger", str(path), "stats"])
    assert "local_percentage" in table.output and "95.0" in table.output
