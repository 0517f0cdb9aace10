"""Figure 5: what ``import mem0_routed`` adds on top of ``import mem0``, in a fresh interpreter.

Each run is a new ``python`` process that imports mem0 first, then times ``import mem0_routed``
with ``perf_counter`` (the plugin's own cost, registration included once it runs at import).
Median of 7 runs (3 with ``--quick``). ``import litellm`` (with ``LITELLM_LOCAL_MODEL_COST_MAP=True``,
so it reads no network) is timed once alone, for the side-by-side; it has no target.

Run from the repo root: ``python -m benchmarks.bench_import [--quick] [--profile]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from typing import Any

from benchmarks._common import machine_info, print_rows, row

TARGET_MS = 100.0
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PLUGIN = """
import json, os, time
t0 = time.perf_counter()
import mem0
t1 = time.perf_counter()
import mem0_routed
t2 = time.perf_counter()
from mem0_routed import _registration
print(json.dumps({"mem0": t1 - t0, "plugin": t2 - t1, "registered": _registration.is_registered()}))
"""
_ALONE = """
import json, time
t0 = time.perf_counter()
import {module}
print(json.dumps({{"alone": time.perf_counter() - t0}}))
"""




def _python(code: str, *flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # MEM0_ROUTED_AUTOLOAD=0: with the package installed, its .pth hook would import mem0_routed inside
    # "import mem0" (benchmarks/bench_startup.py measures that case)
    full_env = {**os.environ, "MEM0_TELEMETRY": "False", "PYTHONDONTWRITEBYTECODE": "0",
                "MEM0_ROUTED_AUTOLOAD": "0", **(env or {})}
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, cwd=_ROOT,
                          env=full_env, timeout=300, check=True)  # fmt: skip


def _last_json(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


def top_imports(n: int = 12) -> list[tuple[int, str]]:
    """The modules ``import mem0_routed`` loads after mem0, by cumulative µs (``-X importtime``)."""
    proc = _python(
        "import mem0\nimport sys\nprint('--mark--', file=sys.stderr, flush=True)\nimport mem0_routed",
        "-X",
        "importtime",
    )
    found: list[tuple[int, str]] = []
    for line in proc.stderr.split("--mark--", 1)[-1].splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cum, name = line.removeprefix("import time:").split("|", 2)
        found.append((int(cum), name.strip()))
    return sorted(found, reverse=True)[:n]


def run(quick: bool = False, profile: bool = False) -> list[dict]:
    runs = 3 if quick else 7
    _python("import mem0, mem0_routed")  # warm the bytecode cache and the OS page cache
    results = [_last_json(_python(_PLUGIN).stdout) for _ in range(runs)]
    plugin_ms = statistics.median(r["plugin"] for r in results) * 1e3
    mem0_ms = statistics.median(r["mem0"] for r in results) * 1e3
    registered = all(r["registered"] for r in results)
    note = (f"median of {runs} fresh processes: {[round(r['plugin'] * 1e3, 1) for r in results]} ms; "
            f"'routed' registered at import: {registered}")  # fmt: skip
    rows = [
        row(
            "import mem0_routed on top of import mem0",
            round(plugin_ms, 1),
            "ms",
            f"<= {TARGET_MS:.0f}",
            plugin_ms <= TARGET_MS,
            note,
        ),
        row("import mem0 (for scale)", round(mem0_ms, 1), "ms", None, None, f"median of {runs}"),
    ]
    if profile or plugin_ms > TARGET_MS:
        top = top_imports()
        rows[0]["note"] += "; slowest imports (cumulative µs): " + ", ".join(f"{m} {us}" for us, m in top[:6])
    if importlib.util.find_spec("litellm") is not None:
        env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        if not quick:
            _python("import litellm", env=env)  # warm the caches once, as for ours
        secs = _last_json(_python(_ALONE.format(module="litellm"), env=env).stdout)["alone"]
        rows.append(
            row(
                "import litellm (alone, for comparison)",
                round(secs * 1e3, 1),
                "ms",
                None,
                None,
                "one fresh process, LITELLM_LOCAL_MODEL_COST_MAP=True",
            )
        )
    else:
        rows.append(
            row("import litellm (alone, for comparison)", None, "ms", None, None, "litellm not installed")
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 runs instead of 7")
    ap.add_argument("--profile", action="store_true", help="list the slowest imports (-X importtime)")
    args = ap.parse_args(argv)
    rows = run(quick=args.quick, profile=args.profile)
    print_rows(f"Import time ({machine_info()})", rows)
    return 1 if any(r["ok"] is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
