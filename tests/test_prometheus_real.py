"""The Grafana dashboard works against a real Prometheus: every panel's query returns data.

A real ``prometheus`` (Debian package; started here on a free port with a scrape config written here)
scrapes a process that makes routed calls against the fake servers (tests/prom_traffic.py) and turned
its exporter on with ``MEM0_ROUTED_PROMETHEUS_PORT`` only. Each PromQL query of
deploy/grafana/dashboards/mem0-routed.json is then asked through Prometheus's HTTP API.
Without the ``prometheus`` binary the test skips, and fails under ``CI``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "mem0-routed.json"
WAIT_S = 90.0  # an upper bound on waiting for scrapes; nothing asserts on time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p["targets"]]


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The exporter port of a running process that makes routed calls."""
    port = _free_port()
    env = {**os.environ, "MEM0_ROUTED_PROMETHEUS_PORT": str(port), "MEM0_TELEMETRY": "False",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    log = tmp_path_factory.mktemp("traffic") / "stderr.log"
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "prom_traffic.py")], env=env,
                            stdout=subprocess.PIPE, stderr=log.open("w"), text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", (line, log.read_text()[-3000:])
        yield port
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def prometheus(traffic: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        message = "the prometheus binary is missing: apt-get install prometheus (scripts/setup.sh does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("prometheus")
    (root / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: mem0-routed\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{traffic}']\n"
    )
    port = _free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
        stdout=subprocess.DEVNULL, stderr=(root / "prometheus.log").open("w"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"prometheus did not start: {(root / 'prometheus.log').read_text()[-3000:]}")
                time.sleep(0.2)
        yield url
    finally:
        _stop(proc)


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    body = _get(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def _has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


def test_the_target_is_scraped(prometheus: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not _has_data(_query(prometheus, 'up{job="mem0-routed"} == 1')):
        assert time.monotonic() < deadline, _get(f"{prometheus}/api/v1/targets")
        time.sleep(0.5)


def test_every_dashboard_panel_returns_data(prometheus: str) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 13
    pending = dict.fromkeys(queries)
    deadline = time.monotonic() + WAIT_S
    while pending and time.monotonic() < deadline:
        for title, expr in list(pending):
            if _has_data(_query(prometheus, expr)):
                pending.pop((title, expr))
        time.sleep(1.0)
    assert not pending, f"panels without data after {WAIT_S:.0f} s: {list(pending)}"


def test_values_mean_what_the_panels_say(prometheus: str) -> None:
    def one(expr: str) -> float:
        result = _query(prometheus, expr)
        assert result, expr
        return float(result[0]["value"][1])

    assert one("max(mem0_routed_local_share_target_ratio)") == pytest.approx(0.9)
    assert one("max(mem0_routed_month_budget_usd)") == 5.0
    assert 0 < one("max(mem0_routed_month_spend_usd)") < 5.0
    assert 0 < one("max(mem0_routed_local_share_ratio)") < 1
    states = {r["metric"]["backend"]: float(r["value"][1]) for r in _query(prometheus, "mem0_routed_breaker_state")}
    assert 2.0 in states.values() and 0.0 in states.values(), states  # the dead host open, the live one closed
    reasons = {r["metric"]["reason"] for r in _query(prometheus, "mem0_routed_escalations_total")}
    assert any("invalid json" in reason for reason in reasons), reasons
    # no secret in any series: the test key is configured in the traffic process
    from mem0_routed.testing import DEFAULT_TEST_KEY

    with urllib.request.urlopen(f"{prometheus}/federate?match[]=%7B__name__%3D~%22mem0_routed.*%22%7D") as resp:
        assert DEFAULT_TEST_KEY not in resp.read().decode()


def test_dashboard_is_provisioning_ready() -> None:
    """What Grafana needs to load it from a file: a uid, unique panel ids, a datasource on each target."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "mem0-routed" and "id" not in dashboard  # a file dashboard carries no db id
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and len({p["title"] for p in dashboard["panels"]}) == len(ids)
    for panel in dashboard["panels"]:
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "prometheus"} and target["expr"]
    names = {n for _, expr in dashboard_queries() for n in __import__("re").findall(r"mem0_routed_\w+", expr)}
    assert {"mem0_routed_local_share_ratio", "mem0_routed_month_budget_usd", "mem0_routed_breaker_state",
            "mem0_routed_num_ctx_tokens", "mem0_routed_fallbacks_total"} <= names  # fmt: skip
