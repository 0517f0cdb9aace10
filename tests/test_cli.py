"""The CLI, driven through click's runner against the fake Ollama server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mem0_routed._cli import main
from mem0_routed.testing import FakeOllamaServer


@pytest.fixture(autouse=True)
def _env(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEM0_ROUTED_LOCAL_BACKEND", "ollama")


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


def test_health_exits_nonzero_naming_a_missing_model_and_a_down_host(ollama_server) -> None:
    ok = CliRunner().invoke(main, ["--ollama-url", ollama_server.url, "health"])
    assert ok.exit_code == 0, ok.output
    assert "missing models: none" in ok.output and "healthy" in ok.output
    ollama_server.remove_model("mistral:7b")  # the general routes' model: every mem0 call needs it
    missing = CliRunner().invoke(main, ["--ollama-url", ollama_server.url, "health"])
    assert missing.exit_code == 1, missing.output
    assert "missing models: mistral:7b" in missing.output and "run `ollama pull mistral:7b`" in missing.output
    assert "simple, summarization, extraction" in missing.output  # which routes need it
    ollama_server.set_fault("refused")
    down = CliRunner().invoke(main, ["--ollama-url", ollama_server.url, "health", "--json"])
    assert down.exit_code == 1
    report = json.loads(down.output)
    assert report["ok"] is False and report["ollama"] is False
    assert any("server down" in e and "ollama serve" in e for e in report["errors"])


def test_a_missing_seed_default_stand_in_is_a_warning_not_a_failure(ollama_server, tmp_path) -> None:
    ollama_server.remove_model("codellama:13b")  # medium/complex default, never set by the user
    result = CliRunner().invoke(main, ["--ollama-url", ollama_server.url, "health", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["missing_models"] == ["codellama:13b"] and report["errors"] == []
    assert any("optional: run `ollama pull codellama:13b`" in w and "medium, complex" in w for w in report["warnings"])
    set_by_user = CliRunner().invoke(main, ["--config", _write_models(tmp_path, ollama_server, {"medium": "phi3:mini"}),
                                            "health"])
    assert set_by_user.exit_code == 1, set_by_user.output  # a medium model the user chose is required
    assert "run `ollama pull phi3:mini`" in set_by_user.output


def _write_models(tmp_path, server, models: dict[str, str]) -> str:
    path = tmp_path / "router.json"
    path.write_text(json.dumps({"models": models, "ollama_base_url": server.url}))
    return str(path)


def test_health_checks_the_models_the_user_configured(ollama_server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: llm_model and the embedder model are the user's, not the seed's defaults."""
    ollama_server.add_model("qwen2.5-coder:0.5b")
    url = ["--ollama-url", ollama_server.url]
    mine = CliRunner().invoke(main, [*url, "--model", "qwen2.5-coder:0.5b", "--embedder-model", "all-minilm",
                                     "health", "--json"])
    assert mine.exit_code == 1, mine.output
    report = json.loads(mine.output)
    assert report["missing_models"] == ["all-minilm"]
    assert report["models"]["all-minilm"]["routes"] == ["embedding"]
    assert report["models"]["qwen2.5-coder:0.5b"]["present_on"] and "mistral:7b" not in report["models"]
    assert any("ollama pull all-minilm" in e for e in report["errors"])
    env_ok = CliRunner().invoke(main, [*url, "--model", "qwen2.5-coder:0.5b", "health"])
    assert env_ok.exit_code == 0, env_ok.output
    monkeypatch.setenv("MEM0_LLM_MODEL", "phi3:mini")  # env vars are configuration too, as for a router
    env = CliRunner().invoke(main, [*url, "health", "--json"])
    assert env.exit_code == 1, env.output
    assert json.loads(env.output)["missing_models"] == ["phi3:mini"]


def test_health_reads_a_mem0_config_file_section_by_section(ollama_server, tmp_path) -> None:
    with FakeOllamaServer() as other:
        other.remove_model("nomic-embed-text:latest")
        config = {
            "llm": {"provider": "routed", "config": {"model": "qwen2.5-coder:0.5b", "ollama_base_url": ollama_server.url,
                                                     "temperature": 0.1}},
            "embedder": {"provider": "routed", "config": {"model": "nomic-embed-text:latest",
                                                          "ollama_base_url": other.url, "embedding_dims": 768}},
            "vector_store": {"provider": "qdrant", "config": {"path": str(tmp_path / "q")}},
        }
        path = tmp_path / "mem0.json"
        path.write_text(json.dumps(config))
        result = CliRunner().invoke(main, ["--config", str(path), "health", "--json"])
        assert result.exit_code == 1, result.output
        report = json.loads(result.output)
        # the llm section needs qwen on its host; the embedder section needs its model on *its* host
        assert report["llm"]["missing_models"] == ["qwen2.5-coder:0.5b"]
        assert "nomic-embed-text:latest" not in report["llm"]["models"]
        assert report["embedder"]["missing_models"] == ["nomic-embed-text:latest"]
        assert report["embedder"]["hosts"][0]["name"].endswith(other.url)
        ollama_server.add_model("qwen2.5-coder:0.5b")
        other.add_model("nomic-embed-text:latest")
        healthy = CliRunner().invoke(main, ["--config", str(path), "health"])
        assert healthy.exit_code == 0, healthy.output
        assert "qwen2.5-coder:0.5b (simple, summarization, extraction; llm_model)" in healthy.output


def test_health_checks_every_host(ollama_server) -> None:
    with FakeOllamaServer() as second:
        second.remove_model("mistral:7b")
        urls = f"{ollama_server.url},{second.url}"
        partial = CliRunner().invoke(main, ["--ollama-url", urls, "health", "--json"])
        assert partial.exit_code == 0, partial.output  # another host serves it: a warning, not an error
        report = json.loads(partial.output)
        assert any("mistral:7b is missing on" in w and second.url in w for w in report["warnings"])
        second.set_fault("refused")
        one_down = CliRunner().invoke(main, ["--ollama-url", urls, "health"])
        assert one_down.exit_code == 1 and "server down" in one_down.output


def test_config_file_errors_are_messages(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = CliRunner().invoke(main, ["--config", str(bad), "health"])
    assert result.exit_code != 0 and "cannot read JSON" in result.output and "Traceback" not in result.output
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"num_ctx": 8192}))
    result = CliRunner().invoke(main, ["--config", str(unknown), "health"])
    assert result.exit_code != 0 and "unknown key 'num_ctx'" in result.output


def test_stats_and_project_read_the_ledger(tmp_path) -> None:
    import time

    from mem0_routed import UsageRecord
    from mem0_routed._ledger import SQLiteLedger

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
    assert "served locally" in table.output and "19 (95.0%)" in table.output


def test_stats_shows_failures_escalations_and_degraded_calls(tmp_path) -> None:
    """The issue's run: 2 of 5 adds failed. stats said 100 % local and showed no errors."""
    import time

    from mem0_routed import UsageRecord
    from mem0_routed._ledger import SQLiteLedger

    path = tmp_path / "ledger.sqlite3"
    ledger = SQLiteLedger(str(path))
    now = time.time()

    def add(**kw: object) -> None:
        ledger.record(UsageRecord(ts=now, call_kind="mem0_extraction", query_type="extraction", model="qwen",
                                  backend="ollama", is_local=True, latency_s=3.0, **kw))  # type: ignore[arg-type]

    add()
    add(outcome="degraded", escalations=["repetition loop"])
    add(outcome="escalated", escalations=["invalid json from qwen"])
    add(outcome="error", error="ollama qwen: timed out", escalations=["local qwen failed"])
    add(outcome="error", error="ollama qwen: timed out", escalations=["local qwen failed"])
    ledger.close()
    data = json.loads(CliRunner().invoke(main, ["--ledger", str(path), "stats", "--json"]).output)
    assert (data["calls"], data["total_queries"], data["failed_queries"], data["errors"]) == (5, 3, 2, 2)
    assert (data["degraded"], data["escalated_calls"]) == (1, 4)
    assert "embedding_cache" not in data  # the ledger has no cache counts; zeros would be a lie
    table = CliRunner().invoke(main, ["--ledger", str(path), "stats"]).output
    assert "5 (3 served, 2 failed, error rate 40.0%)" in table
    assert "errors / blocked" in table and "2 / 0" in table
    assert "escalated / degraded" in table and "4 / 1" in table
    assert "cache hits: per process, not in the ledger" in table


def test_health_says_ollama_is_down_when_auto_falls_back_to_the_embedded_backend(monkeypatch) -> None:
    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("MEM0_ROUTED_LOCAL_BACKEND", "auto")
    result = CliRunner().invoke(main, ["--ollama-url", "http://127.0.0.1:1", "health", "--json"])
    report = json.loads(result.output)
    if report["local_backend"] != "embedded":
        pytest.fail(f"the packaged embedded models are missing: {report['hosts']}")
    assert result.exit_code == 0, result.output  # calls are served, in-process
    assert any("ollama down at ollama@http://127.0.0.1:1" in w and "embedded" in w for w in report["warnings"])
