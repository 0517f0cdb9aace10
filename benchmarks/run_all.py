"""Run every benchmark and print one table of figures, with the date and the machine they came from.

    python -m benchmarks.run_all               # the full suite (a few minutes on 2 cores)
    python -m benchmarks.run_all --quick       # fewer rounds and calls
    python -m benchmarks.run_all --with-model  # also the real-model extraction benchmark (slow)

Writes ``benchmarks/results.json`` (every row, the machine line, seconds per benchmark). A figure
that misses its target prints MISSED; a benchmark that crashes prints ERROR and the suite goes on.
Exit status 1 if anything missed or crashed. Each ``bench_*`` module also runs on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import machine_info, print_table, row, write_json

os.environ["MEM0_TELEMETRY"] = "False"

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
#: bench_compact_extraction runs SmolLM2 on the CPU: ~2 min per call on a busy 2-core machine.
COMPACT_TIMEOUT_S = 1800



def gpu_line() -> str:
    """ "no GPU" unless an NVIDIA device or tool is visible (the figures are CPU-only either way)."""
    if shutil.which("nvidia-smi") or glob.glob("/dev/nvidia[0-9]*"):
        return "NVIDIA GPU visible (unused: every model here is a fake server or CPU llama.cpp)"
    return "no GPU"


# --- adapters for the benchmarks other engineers own -----------------------------------------------


def classify_rows(quick: bool) -> list[dict]:
    """Figure 1 via ``bench_classify.main`` (its ``--json`` figures, its table captured)."""
    try:
        from benchmarks import bench_classify
    except ImportError as exc:  # HOOK: bench_classify not ready -> one clearly marked row
        return [
            row(
                "classifier vs LiteLLM (bench_classify)", None, "", None, None, f"HOOK: not importable: {exc}"
            )
        ]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "classify.json")
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            bench_classify.main(["--n", "600" if quick else "3000", "--json", out])
        figures = json.loads(Path(out).read_text(encoding="utf-8"))
    rows = []
    for name, c in figures["cases"].items():
        target = c.get("target_us")
        lit = c.get("litellm_median_us")
        note = f"p95 {c['ours_p95_us']:.1f} µs"
        if lit is not None:
            note += f"; LiteLLM ComplexityRouter {lit:.1f} µs (p95 {c['litellm_p95_us']:.1f}), {lit / c['ours_median_us']:.1f}x ours"
        rows.append(row(f"classify: {name}", round(c["ours_median_us"], 2), "µs",
                        f"<= {target:g}" if target is not None else None,
                        None if target is None else not c["missed"], note))  # fmt: skip
        if c.get("ratio_target") is not None and c.get("ratio") is not None:
            rows.append(row(f"classify: LiteLLM / ours, {name}", round(c["ratio"], 1), "x",
                            f">= {c['ratio_target']:g}", not c["ratio_missed"],
                            "same input, same run, medians"))  # fmt: skip
    return rows


def compact_rows(quick: bool, with_model: bool = False) -> list[dict]:
    """``bench_compact_extraction`` (a real in-process model) in a subprocess with a time cap.

    Opt-in: on 2 shared cores one compact call took ~120 s, far beyond the suite's few minutes."""
    if not with_model:
        return [
            row(
                "compact vs full extraction prompt (real model)",
                None,
                "",
                None,
                None,
                "skipped (~2 min per call on this CPU); add --with-model, or run "
                "python -m benchmarks.bench_compact_extraction",
            )
        ]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "compact.json")
        cmd = [sys.executable, "-m", "benchmarks.bench_compact_extraction", "--json", out]
        try:
            proc = subprocess.run(
                cmd, cwd=HERE.parent, capture_output=True, text=True, timeout=COMPACT_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            return [
                row(
                    "compact vs full extraction prompt (real model)",
                    None,
                    "",
                    None,
                    None,
                    f"did not finish within {COMPACT_TIMEOUT_S} s; run it alone",
                )
            ]
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"bench_compact_extraction exited {proc.returncode}: {tail[0]}")
        data = json.loads(Path(out).read_text(encoding="utf-8"))
    rows = []
    for which, s in data["summary"].items():
        rows.append(row(f"extraction on {data['model']}, {which} prompt: key facts found",
                        f"{s['facts_found']}/{s['facts_expected']}", "facts", None, None,
                        f"fits the window {s['fits']}; valid JSON {s['valid_json']}; "
                        f"mean {s['mean_seconds']} s per call; max_tokens {data['max_tokens']}"))  # fmt: skip
    return rows


def _ours(module: str) -> Callable[[bool], list[dict]]:
    def call(quick: bool) -> list[dict]:
        import importlib

        return importlib.import_module(f"benchmarks.{module}").run(quick=quick)

    return call


#: (figure number, name, runner). Order: cheap and noise-sensitive first, the long waits last.
BENCHMARKS: list[tuple[str, str, Callable[[bool], list[dict]]]] = [
    ("1", "classify", classify_rows),
    ("2", "mem0_overhead", _ours("bench_mem0_overhead")),
    ("4", "context", _ours("bench_context")),
    ("5", "import", _ours("bench_import")),
    ("6", "embedding_cache", _ours("bench_embedding_cache")),
    ("7", "concurrency", _ours("bench_concurrency")),
    ("3", "failover", _ours("bench_failover")),
    ("-", "compact_extraction", compact_rows),  # called with with_model in main()
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs; skips the real-model benchmark")
    ap.add_argument("--with-model", action="store_true", help="also run the real-model extraction benchmark")
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=[b[1] for b in BENCHMARKS],
                    help="run only these benchmarks")  # fmt: skip
    ap.add_argument("--json", default=str(RESULTS), metavar="PATH", help=f"results file (default {RESULTS})")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    header = f"{machine_info()}; {gpu_line()}"
    print(f"mem0-routed benchmarks{' (--quick)' if args.quick else ''}: {header}", flush=True)
    results: dict[str, Any] = {"machine": header, "quick": args.quick, "benchmarks": {}}
    table: list[list[Any]] = []
    for number, name, runner in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        print(f"  running {name} ...", file=sys.stderr, flush=True)
        try:
            rows = compact_rows(args.quick, args.with_model) if runner is compact_rows else runner(args.quick)
            error = None
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            error = f"{type(exc).__name__}: {exc}"
            rows = [row(f"{name} benchmark", None, "", None, False, f"ERROR: {error}")]
        secs = time.perf_counter() - t0
        results["benchmarks"][name] = {
            "figure": number,
            "seconds": round(secs, 1),
            "error": error,
            "rows": rows,
        }
        for r in rows:
            status = "ERROR" if error else {True: "ok", False: "MISSED", None: ""}[r["ok"]]
            table.append([f"[{number}] {r['figure']}", r["value"], r["unit"], r["target"], status, r["note"]])
    total = time.perf_counter() - started
    print_table(f"mem0-routed benchmarks — {header}",
                ["[#] figure", "value", "unit", "target", "", "note"], table)  # fmt: skip
    missed = [t[0] for t in table if t[4] in ("MISSED", "ERROR")]
    results["seconds"] = round(total, 1)
    results["missed"] = missed
    print(f"\n{len(table)} figures in {total:.0f} s; missed or failed: {len(missed)}"
          + ("".join(f"\n  MISSED: {m}" for m in missed)))  # fmt: skip
    write_json(args.json, results)
    print(f"written: {args.json}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
