"""Small timing and reporting helpers shared by the benchmarks.

Timings use ``time.perf_counter_ns`` around batches of calls (one call is too short to time alone
on a noisy 2-core machine), and report medians and p95 over batches, never a single best run.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def timeit_us(fn: Callable[[], object], n: int = 2000, *, batch: int = 10, warmup: int = 50) -> list[float]:
    """Per-call times in µs: ``n`` calls, timed in batches of ``batch`` (each value is a batch mean)."""
    if n < 1 or batch < 1:
        raise ValueError(f"n and batch must be >= 1, got n={n!r}, batch={batch!r}")
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    out: list[float] = []
    for _ in range(max(1, n // batch)):
        t0 = clock()
        for _ in range(batch):
            fn()
        out.append((clock() - t0) / batch / 1000.0)
    return out


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def p95(xs: Sequence[float]) -> float:
    """95th percentile (nearest rank): what one call in twenty is slower than."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, -(-95 * len(s) // 100) - 1))]


def machine_info() -> str:
    """One line saying when and on what the figures were measured."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        load = f"load {os.getloadavg()[0]:.2f}"
    except OSError:
        load = "load n/a"
    return (
        f"{now}; {platform.machine()} {platform.processor() or platform.system()}; "
        f"{os.cpu_count()} cores; {load}; Python {sys.version.split()[0]}"
    )


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain text table: left-aligned first column, right-aligned figures."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    print(f"\n{title}")
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        print(line(r))


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:.1f}" if abs(c) >= 10 else f"{c:.2f}"
    return "" if c is None else str(c)


def row(
    figure: str, value: Any, unit: str, target: Any = None, ok: bool | None = None, note: str = ""
) -> dict[str, Any]:
    """One result row in the suite's common shape."""
    return {"figure": figure, "value": value, "unit": unit, "target": target, "ok": ok, "note": note}


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    """The rows as a table; a missed target reads MISSED."""
    status = {True: "ok", False: "MISSED", None: ""}
    print_table(
        title,
        ["figure", "value", "unit", "target", "", "note"],
        [[r["figure"], r["value"], r["unit"], r["target"], status[r["ok"]], r["note"]] for r in rows],
    )


def run_module_json(module: str, args: Sequence[str], timeout_s: float) -> dict[str, Any] | None:
    """Run ``python -m benchmarks.<module> ARGS --json TMP`` in a child process; its JSON, or None on timeout.

    For the benchmarks that load a real model or patch a backend: a child process keeps their memory,
    threads and patches out of the suite, and a time cap keeps one stuck model from stalling it."""
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, f"{module}.json")
        cmd = [sys.executable, "-m", f"benchmarks.{module}", *args, "--json", out]
        try:
            proc = subprocess.run(
                cmd, cwd=root, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            return None
        if not os.path.exists(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"{module} exited {proc.returncode} without figures: {tail[0]}")
        data: dict[str, Any] = json.loads(Path(out).read_text(encoding="utf-8"))
        return data


def bench_main(argv: list[str] | None, *, doc: str | None, title: str, quick_help: str,
               measure: Callable[[bool], Any], rows_of: Callable[[Any], list[dict[str, Any]]]) -> int:
    """The command line every benchmark shares: ``--quick``, ``--json PATH``; exit 1 when a row
    misses its target."""
    import argparse

    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--json", metavar="PATH", help="also write the raw figures here")
    args = ap.parse_args(argv)
    data = measure(args.quick)
    rows = rows_of(data)
    print_rows(f"{title} ({machine_info()})", rows)
    if args.json:
        write_json(args.json, {"figures": data, "rows": rows})
    return 1 if any(r["ok"] is False for r in rows) else 0
