"""deploy/: the compose file is valid (``docker-compose config``, Debian package), its pieces fit together,
and every piece that can run outside a container does: ``promtool`` checks the Prometheus config, the
server patch applies, the server's env produces a routed config. No container is started here (this
machine has no container runtime); README's deploy section says what was and was not run.
Missing ``docker-compose``/``promtool`` skips, and fails under ``CI``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mem0_routed import RouterConfig, mem0_config_from_env
from mem0_routed._envconfig import ENV_VARS

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
REQUIRED = {"POSTGRES_PASSWORD": "test-password", "JWT_SECRET": "test-jwt-secret-0123456789"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is missing: apt-get install {'prometheus' if name == 'promtool' else name}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRED and k not in ENV_VARS}
    return subprocess.run(check=False, args=[_tool("docker-compose"), "-f", str(COMPOSE), "config"], capture_output=True,
                          text=True, timeout=120, env={**clean, **env}, cwd=REPO)  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    proc = _compose_config(**REQUIRED)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)  # type: ignore[no-any-return]


def test_compose_has_the_seed_deployment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"mem0", "ollama", "ollama-pull", "redis", "postgres", "prometheus", "grafana"} <= set(services)
    env = services["mem0"]["environment"]
    assert set(ENV_VARS) <= set(env)  # the seed's names, all of them
    assert env["MEM0_LLM_PROVIDER"] == env["MEM0_EMBEDDER_PROVIDER"] == "routed"
    assert env["OLLAMA_URL"] == "http://ollama:11434"
    assert env["MEM0_ROUTED_LEDGER"] == "redis://redis:6379/0"
    assert env["JWT_SECRET"] == REQUIRED["JWT_SECRET"]
    build = services["mem0"]["build"]
    assert (Path(build["context"]) / build["dockerfile"]).is_file()


def test_compose_refuses_to_start_without_its_secrets() -> None:
    proc = _compose_config()
    assert proc.returncode != 0 and "set POSTGRES_PASSWORD in deploy/.env" in proc.stderr


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    binds = [v for s in compose["services"].values() for v in s.get("volumes", []) if isinstance(v, str)]
    binds += [f"{v['source']}:{v['target']}" for s in compose["services"].values()
              for v in s.get("volumes", []) if isinstance(v, dict) and v.get("type") == "bind"]  # fmt: skip
    host_paths = [b.split(":", 1)[0] for b in binds if b.startswith("/")]
    assert host_paths, binds
    for path in host_paths:
        assert Path(path).exists(), path


def test_prometheus_scrapes_the_exporter_port(compose: dict[str, Any]) -> None:
    config = DEPLOY / "prometheus" / "prometheus.yml"
    proc = subprocess.run(check=False, args=[_tool("promtool"), "check", "config", str(config)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    targets = yaml.safe_load(config.read_text())["scrape_configs"][0]["static_configs"][0]["targets"]
    port = compose["services"]["mem0"]["environment"]["MEM0_ROUTED_PROMETHEUS_PORT"]
    assert targets == [f"mem0:{port}"]


def test_grafana_provisioning_fits_the_dashboard(compose: dict[str, Any]) -> None:
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/mem0-routed.yml").read_text())
    dashboard = json.loads((DEPLOY / "grafana/dashboards/mem0-routed.json").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]} == {uid}
    mounts = " ".join(v if isinstance(v, str) else f"{v['source']}:{v['target']}"
                      for v in compose["services"]["grafana"]["volumes"])  # fmt: skip
    assert f":{provider['providers'][0]['options']['path']}" in mounts


def test_server_patch_applies_once_and_refuses_a_changed_server(tmp_path: Path) -> None:
    script = DEPLOY / "mem0-server" / "patch_server.py"
    main = tmp_path / "main.py"
    main.write_text("DEFAULT_CONFIG = {}\nset_session_factory(SessionLocal)\ninitialize_state(DEFAULT_CONFIG)\n")
    for _ in range(2):  # idempotent
        proc = subprocess.run(check=False, args=[sys.executable, str(script), str(main)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    assert main.read_text().count("mem0_config_from_env(DEFAULT_CONFIG)") == 1
    main.write_text("initialize_state(build_config())\n")
    proc = subprocess.run(check=False, args=[sys.executable, str(script), str(main)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "found it 0 times" in proc.stderr and str(main) in proc.stderr


def test_the_servers_env_gives_a_routed_config(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: str(v) for k, v in compose["services"]["mem0"]["environment"].items() if v is not None}
    config = mem0_config_from_env({"vector_store": {"provider": "pgvector", "config": {}}}, env=env)
    assert config["llm"]["provider"] == config["embedder"]["provider"] == "routed"
    assert config["vector_store"]["config"]["embedding_model_dims"] == 768
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    router = RouterConfig.from_mapping({})
    assert router.ledger == "redis://redis:6379/0" and router.local_threshold == 95.0
    assert router.ollama_urls == ["http://ollama:11434"] and router.openai_api_key is None
