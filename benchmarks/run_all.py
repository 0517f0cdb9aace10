"""Run every benchmark and print one table of figures, with the date and the machine they came from.

    python -m benchmarks.run_all                # the default suite (several minutes on 2 cores)
    python -m benchmarks.run_all --quick        # fewer rounds and calls (bench_fds: 500 calls per pattern)
    python -m benchmarks.run_all --with-model   # also the in-process real-model extraction benchmarks (slow)
    python -m benchmarks.run_all --with-real-ollama http://127.0.0.1:11500   # also mem0 on a real Ollama

Default run: fake servers and CPU timings only (classify, mem0 overhead, context, import, privacy,
embedding cache, concurrency, start-up, failover, fds). ``--with-model`` adds bench_compact_extraction
and bench_extraction_quality on SmolLM2 in-process; ``--with-real-ollama URL`` adds bench_real_ollama
and bench_extraction_quality on that server (``bash scripts/real_ollama.sh setup`` then ``serve PORT``).

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
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import machine_info, print_table, row, run_module_json, write_json

os.environ["MEM0_TELEMETRY"] = "False"

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
#: Time cap of one real-model benchmark (SmolLM2 on the CPU: ~2 min per call on a busy 2-core machine).
MODEL_TIMEOUT_S = 1800
#: bench_fds calls per calling pattern (after its 100 warm-up calls): the README's 10,000, or --quick.
FDS_CALLS, FDS_CALLS_QUICK = 10_000, 500


def gpu_line() -> str:
    """ "no GPU" unless an NVIDIA device or tool is visible (the figures are CPU-only either way)."""
    if shutil.which("nvidia-smi") or glob.glob("/dev/nvidia[0-9]*"):
        return "NVIDIA GPU visible (unused: every model here is a fake server or CPU llama.cpp)"
    return "no GPU"


# --- adapters for the benchmarks other engineers own -----------------------------------------------


def classify_rows(quick: bool) -> list[dict[str, Any]]:
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


def compact_rows(quick: bool, with_model: bool = False) -> list[dict[str, Any]]:
    """``bench_compact_extraction`` (a real in-process model) in a subprocess with a time cap.

    Opt-in: on 2 shared cores one compact call took ~120 s, far beyond the suite's few minutes."""
    name = "compact vs full extraction prompt (real model)"
    if not with_model:
        return [row(name, None, "", None, None, "skipped (~2 min per call on this CPU); add --with-model, or run "
                    "python -m benchmarks.bench_compact_extraction")]  # fmt: skip
    data = run_module_json("bench_compact_extraction", [], MODEL_TIMEOUT_S)
    if data is None:
        return [row(name, None, "", None, None, f"did not finish within {MODEL_TIMEOUT_S} s; run it alone")]
    rows = []
    for which, s in data["summary"].items():
        rows.append(row(f"extraction on {data['model']}, {which} prompt: key facts found",
                        f"{s['facts_found']}/{s['facts_expected']}", "facts", None, None,
                        f"fits the window {s['fits']}; valid JSON {s['valid_json']}; "
                        f"mean {s['mean_seconds']} s per call; max_tokens {data['max_tokens']}"))  # fmt: skip
    return rows


def privacy_rows(quick: bool) -> list[dict[str, Any]]:
    """``bench_privacy``: our keep-local detectors vs detect-secrets and phonenumbers (its JSON figures)."""
    from benchmarks import bench_privacy

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "privacy.json")
        with contextlib.redirect_stdout(io.StringIO()):
            bench_privacy.main(["--n", "100" if quick else "300", "--json", out])
        figures = json.loads(Path(out).read_text(encoding="utf-8"))
    ours = figures.pop("mem0-routed detectors")
    t_mem0 = figures.pop("mem0 extraction call, scan_text + check (us)")
    rows = [
        row("keep-local detectors: positives found (secrets, phones, personal data)",
            f"{ours['found']}/{ours['positives']}", "", "all", ours["found"] == ours["positives"],
            "a miss sends a secret out"),
        row("keep-local detectors: false positives on harmless text", f"{ours['false_positives']}/{ours['negatives']}",
            "", "0", ours["false_positives"] == 0, "incl. mem0's own extraction and procedural prompts"),
        row("keep-local detectors: short message (median)", round(ours["short_us"], 1), "µs", None, None,
            f"2.5k chars: {ours['prose_us']:.0f} µs"),
        row("keep-local check of mem0's extraction call (constants cut)", round(t_mem0, 1), "µs", "<= 100",
            t_mem0 <= 100.0, "scan_text + KeepLocalRules.check, median"),
    ]  # fmt: skip
    for name, f in figures.items():  # the libraries that are installed (the ``bench`` extra)
        rows.append(row(f"{name}: positives found (its kinds) / false positives",
                        f"{f['found']}/{f['positives']} / {f['false_positives']}", "", None, None,
                        f"short {f['short_us']:.0f} µs; 2.5k chars {f['prose_us'] / ours['prose_us']:.0f}x ours"))  # fmt: skip
    return rows


def fds_rows(quick: bool) -> list[dict[str, Any]]:
    """``bench_fds``: open fds and ledger records over many calls, per calling pattern (fake servers)."""
    from benchmarks import bench_fds

    calls = FDS_CALLS_QUICK if quick else FDS_CALLS
    rows = []
    for pattern in bench_fds.PATTERNS:
        r = bench_fds.measure(pattern, calls)
        rows.append(row(f"open fds after {bench_fds.WARMUP} warm-up calls -> after {r['calls']:,}: {pattern}",
                        f"{r['fds_after_warmup']} -> {r['fds_after']}", "fds", "growth <= 2",
                        r["fds_after"] <= r["fds_after_warmup"] + 2, ""))  # fmt: skip
        rows.append(row(f"ledger records / calls made: {pattern}", f"{r['records']:,}/{r['calls']:,}", "",
                        "all", r["records"] == r["calls"], f"{r['external_records']} external"))  # fmt: skip
    return rows


def real_ollama_rows(quick: bool, url: str | None = None) -> list[dict[str, Any]]:
    """``bench_real_ollama``: mem0 ``Memory.add`` through "routed" on a real Ollama, in a subprocess."""
    name = "mem0 Memory.add on a real Ollama (bench_real_ollama)"
    if not url:
        return [row(name, None, "", None, None, "skipped: add --with-real-ollama URL (bash scripts/real_ollama.sh "
                    "setup, then serve PORT), or run python -m benchmarks.bench_real_ollama --url URL")]  # fmt: skip
    data = run_module_json("bench_real_ollama", ["--url", url], MODEL_TIMEOUT_S)
    if data is None:
        return [row(name, None, "", None, None, f"did not finish within {MODEL_TIMEOUT_S} s; run it alone")]
    units = {"(s)": "s"}
    rows = []
    for t in data["targets"]:
        unit = next((u for k, u in units.items() if t["figure"].endswith(k)), "")
        rows.append(row(f"real Ollama, {data['model']}: {t['figure']}", t["value"], unit,
                        None if t["target"] == "-" else t["target"], None if t["target"] == "-" else t["ok"],
                        f"embedder {data['embedder']}"))  # fmt: skip
    d = data["degenerate"]
    rows.append(row(f"real Ollama, {data['model']}: looping answer stopped after", d["tokens_before_stop"], "tokens",
                    None, None, f"{d['seconds']} s; unguarded {d['max_tokens']} tokens ~{d['unguarded_estimate_s']} s; "
                    f"normal extraction call {data['normal_extraction_s']} s"))  # fmt: skip
    return rows


def extraction_quality_rows(
    quick: bool, with_model: bool = False, url: str | None = None
) -> list[dict[str, Any]]:
    """``bench_extraction_quality``: mem0's full prompt vs the compact one on the labelled set (real models).

    In-process SmolLM2 with --with-model (12 conversations, 6 with --quick: ~7 min / ~4 min), the
    whole set on a real Ollama with --with-real-ollama (~2.5 min)."""
    name = "extraction quality, full vs compact prompt (bench_extraction_quality)"
    runs: list[tuple[str, list[str]]] = []
    if with_model:
        runs.append(("in-process", ["--sample", "6" if quick else "12"]))
    if url:
        runs.append(("real Ollama", ["--ollama", url]))
    if not runs:
        return [row(name, None, "", None, None, "skipped (minutes of model time); add --with-model and/or "
                    "--with-real-ollama URL, or run python -m benchmarks.bench_extraction_quality --markdown")]  # fmt: skip
    rows = []
    for where, args in runs:
        data = run_module_json("bench_extraction_quality", args, MODEL_TIMEOUT_S)
        if data is None:
            rows.append(
                row(f"{name}, {where}", None, "", None, None, f"did not finish within {MODEL_TIMEOUT_S} s")
            )
            continue
        summary = data["summary"]
        for prompt, s in summary.items():
            label = f"extraction quality, {data['model']} {where}, {prompt}"
            if not s["fits"]:
                rows.append(row(f"{label}: facts found", None, "", None, None,
                                f"fits 0/{s['conversations']}: the prompt does not fit the model's window"))  # fmt: skip
                continue
            rows.append(row(f"{label}: facts found", f"{s['found']}/{s['expected']}", "facts", None, None,
                            f"fits {s['fits']}/{s['conversations']}; valid JSON {s['valid_json']}; invented "
                            f"{s['invented']}; stale {s['stale']}; {s['mean_seconds']} s/call"))  # fmt: skip
            if prompt == "compact+skip":
                rows.append(row(f"{label}: memories from greetings-only conversations", s["greeting_memories"], "",
                                "0", s["greeting_memories"] == 0, ""))  # fmt: skip
        full, compact = summary.get("full", {}), summary.get("compact", {})
        if full.get("recall_where_all_fit") is not None and compact.get("recall_where_all_fit") is not None:
            gap = 100 * (full["recall_where_all_fit"] - compact["recall_where_all_fit"])
            rows.append(row(f"extraction quality, {data['model']} {where}: full - compact recall where both fit",
                            round(gap, 1), "points", "<= 5", gap <= 5, f"facts {full['facts_where_all_fit']} vs "
                            f"{compact['facts_where_all_fit']}"))  # fmt: skip
        else:
            rows.append(row(f"extraction quality, {data['model']} {where}: full - compact recall where both fit",
                            None, "", "<= 5", None, "no conversation where both prompts fit the window"))  # fmt: skip
    return rows


def _ours(module: str) -> Callable[[bool], list[dict[str, Any]]]:
    def call(quick: bool) -> list[dict[str, Any]]:
        import importlib

        rows: list[dict[str, Any]] = importlib.import_module(f"benchmarks.{module}").run(quick=quick)
        return rows

    return call


#: (figure number, name, runner). Order: cheap and noise-sensitive first, the long waits last.
#: The real-model runners take the --with-model / --with-real-ollama options (see ``_call``).
BENCHMARKS: list[tuple[str, str, Callable[..., list[dict[str, Any]]]]] = [
    ("1", "classify", classify_rows),
    ("2", "mem0_overhead", _ours("bench_mem0_overhead")),
    ("4", "context", _ours("bench_context")),
    ("5", "import", _ours("bench_import")),
    ("8", "privacy", privacy_rows),
    ("6", "embedding_cache", _ours("bench_embedding_cache")),
    ("7", "concurrency", _ours("bench_concurrency")),
    ("9", "startup", _ours("bench_startup")),
    ("3", "failover", _ours("bench_failover")),
    ("13", "spread", _ours("bench_spread")),
    ("14", "compat_overhead", _ours("bench_compat_overhead")),
    ("15", "compat_stream", _ours("bench_compat_stream")),
    ("10", "fds", fds_rows),
    ("-", "compact_extraction", compact_rows),
    ("11", "extraction_quality", extraction_quality_rows),
    ("12", "real_ollama", real_ollama_rows),
]


def _call(runner: Callable[..., list[dict[str, Any]]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One runner with the options it takes."""
    if runner is compact_rows:
        return compact_rows(args.quick, args.with_model)
    if runner is extraction_quality_rows:
        return extraction_quality_rows(args.quick, args.with_model, args.with_real_ollama)
    if runner is real_ollama_rows:
        return real_ollama_rows(args.quick, args.with_real_ollama)
    return runner(args.quick)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"shorter runs (bench_fds: {FDS_CALLS_QUICK} calls per pattern instead of {FDS_CALLS:,})",
    )
    ap.add_argument(
        "--with-model",
        action="store_true",
        help="also the in-process real-model benchmarks: compact_extraction, extraction_quality "
        "(SmolLM2 on the CPU, ~10-20 min)",
    )
    ap.add_argument(
        "--with-real-ollama",
        metavar="URL",
        help="also real_ollama and extraction_quality against this Ollama (smollm2:135m and "
        "all-minilm pulled; bash scripts/real_ollama.sh serve PORT), ~5-10 min",
    )
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=[b[1] for b in BENCHMARKS],
                    help="run only these benchmarks")  # fmt: skip
    ap.add_argument("--json", default=str(RESULTS), metavar="PATH", help=f"results file (default {RESULTS})")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    header = f"{machine_info()}; {gpu_line()}"
    print(f"mem0-routed benchmarks{' (--quick)' if args.quick else ''}: {header}", flush=True)
    results: dict[str, Any] = {
        "machine": header,
        "quick": args.quick,
        "with_model": args.with_model,
        "with_real_ollama": bool(args.with_real_ollama),
        "benchmarks": {},
    }
    table: list[list[Any]] = []
    for number, name, runner in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        print(f"  running {name} ...", file=sys.stderr, flush=True)
        try:
            rows = _call(runner, args)
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
