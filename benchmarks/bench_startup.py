"""What the zero-code ``.pth`` hook costs: at interpreter start, and on ``import mem0``.

Two throw-away venvs see the same packages (this env's site-packages): one has the mem0-routed wheel
installed (so its ``mem0_routed_autoload.pth`` runs at start), the other has nothing of ours.
Interleaved rounds of fresh processes, medians of their CPU time (user + system; wall time on
a shared machine mostly measures the neighbours):

* ``python -c pass`` with the hook vs without: the difference is the hook's start-up cost (target
  <= 1 ms), cross-checked with ``python -X importtime`` (the ``_mem0_routed_autoload`` line);
* ``import mem0`` with the hook (it registers "routed", so it imports mem0_routed too) vs with
  ``MEM0_ROUTED_AUTOLOAD=0``: the ratio says what activation adds to a mem0 program's import.

Run from the repo root: ``python -m benchmarks.bench_startup [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._common import machine_info, print_rows, row
from tests import venvs

TARGET_START_MS = 1.0
TARGET_IMPORT_RATIO = 1.10  # import mem0_routed adds ~40 ms to mem0's ~1 s (figure 5)


def _time(python: Path, args: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) of one fresh process: less disturbed by a busy machine than wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([str(python), *args], check=True, capture_output=True, env=env, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _importtime_us(python: Path, env: dict[str, str]) -> tuple[int, int]:
    """(self, cumulative) µs of ``_mem0_routed_autoload`` in ``-X importtime`` at start-up."""
    proc = subprocess.run([str(python), "-X", "importtime", "-c", "pass"], capture_output=True, text=True,
                          env=env, check=True, timeout=300)  # fmt: skip
    for line in proc.stderr.splitlines():
        if line.rstrip().endswith("_mem0_routed_autoload"):
            self_us, cum_us, _ = line.removeprefix("import time:").split("|", 2)
            return int(self_us), int(cum_us)
    raise RuntimeError("_mem0_routed_autoload not imported at start-up: is the .pth installed?")


def run(quick: bool = False) -> list[dict[str, Any]]:
    rounds = 20 if quick else 100
    import_rounds = 3 if quick else 9
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        root = Path(tmp)
        wheel = venvs.build_wheel(root / "dist")
        hooked = venvs.make_venv(root / "hooked")
        venvs.pip_install(hooked, str(wheel))
        plain = venvs.make_venv(root / "plain")
        env = venvs.clean_env(MEM0_DIR=str(root / "mem0"))
        off = {**env, "MEM0_ROUTED_AUTOLOAD": "0"}
        for python in (hooked, plain):  # warm bytecode and page caches
            _time(python, ["-c", "import mem0"], env)
        with_hook: list[float] = []
        without: list[float] = []
        for i in range(rounds):  # alternate which goes first
            for python, out in ((hooked, with_hook), (plain, without))[:: 1 if i % 2 else -1]:
                out.append(_time(python, ["-c", "pass"], env))
        start_ms = (statistics.median(with_hook) - statistics.median(without)) * 1e3
        it = [_importtime_us(hooked, env) for _ in range(5 if quick else 15)]
        self_us = statistics.median(s for s, _ in it)
        cum_us = statistics.median(c for _, c in it)
        imp_on: list[float] = []
        imp_off: list[float] = []
        for i in range(import_rounds):
            for e, out in ((env, imp_on), (off, imp_off))[:: 1 if i % 2 else -1]:
                out.append(_time(hooked, ["-c", "import mem0"], e))
        ratio = statistics.median(imp_on) / statistics.median(imp_off)
    return [
        row("interpreter start: python -c pass, with hook - without", round(start_ms, 2), "ms",
            f"<= {TARGET_START_MS:g}", start_ms <= TARGET_START_MS,
            f"CPU time, medians of {rounds} interleaved runs: {statistics.median(with_hook) * 1e3:.1f} vs "
            f"{statistics.median(without) * 1e3:.1f} ms"),
        row("-X importtime: _mem0_routed_autoload (self / cumulative)", f"{self_us:.0f} / {cum_us:.0f}", "µs",
            None, None, f"median of {len(it)} runs; nothing of mem0 or mem0_routed imported"),
        row("import mem0 with hook (registers 'routed') / with MEM0_ROUTED_AUTOLOAD=0", round(ratio, 3), "×",
            f"<= {TARGET_IMPORT_RATIO:g}", ratio <= TARGET_IMPORT_RATIO,
            f"CPU time, medians of {import_rounds}: {statistics.median(imp_on) * 1e3:.0f} vs "
            f"{statistics.median(imp_off) * 1e3:.0f} ms; the difference is import mem0_routed"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    args = ap.parse_args(argv)
    os.environ.setdefault("MEM0_TELEMETRY", "False")
    rows = run(quick=args.quick)
    print_rows(f"Start-up cost of the autoload hook ({machine_info()})", rows)
    return 1 if any(r["ok"] is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
