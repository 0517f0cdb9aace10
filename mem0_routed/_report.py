"""``mem0-routed report --html FILE``: one self-contained HTML page from the ledger, for people who would
rather look than read.

Charts are inline SVG drawn here (no JavaScript library, no font or script from the network: the page
works offline and from an e-mail attachment). A few lines of inline script only count, after layout,
the marks each chart drew (``data-drawn``), so a headless browser can check the page really renders.
Everything shown comes from usage records: never a prompt, never a key; text is HTML-escaped.
"""

from __future__ import annotations

import html
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timezone

from ._metrics import compute_metrics, percentile
from ._records import UNSERVED, UsageRecord, counts_in_share, utc_month_start

__all__ = ["render_html"]

W, H = 560, 220
ML, MR, MT, MB = 56, 16, 28, 34  # margins: room for axis labels
LOCAL, EXTERNAL, LIMIT, ACCENT = "#2f855a", "#c05621", "#718096", "#2b6cb0"


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _day(ts: float, hourly: bool) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%m-%d %H:00" if hourly else "%Y-%m-%d")


def _frame(title: str, body: str, *, y_max: float, y_fmt: str, x_left: str = "", x_right: str = "") -> str:
    ticks = []
    for i in range(5):
        value = y_max * i / 4
        y = MT + (H - MT - MB) * (1 - i / 4)
        ticks.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end">{_esc(y_fmt.format(value))}</text>')
    return (f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
            f'aria-label="{_esc(title)}"><text x="{ML}" y="16" class="title">{_esc(title)}</text>{"".join(ticks)}'
            f'<text x="{ML}" y="{H - 8}">{_esc(x_left)}</text>'
            f'<text x="{W - MR}" y="{H - 8}" text-anchor="end">{_esc(x_right)}</text>{body}</svg>')  # fmt: skip


def _empty(title: str, why: str) -> str:
    return (f'<svg class="chart empty" viewBox="0 0 {W} 80" width="{W}" height="80"><text x="{ML}" y="16" '
            f'class="title">{_esc(title)}</text><text x="{ML}" y="50">{_esc(why)}</text></svg>')


def line_chart(title: str, series: Sequence[tuple[str, Sequence[tuple[float, float]], str, bool]], *,
               y_max: float, y_fmt: str, x_range: tuple[float, float], x_labels: tuple[str, str]) -> str:
    """Lines over time; each series is (name, [(ts, value)], colour, dashed)."""
    x0, x1 = x_range
    span = (x1 - x0) or 1.0
    y_max = y_max or 1.0

    def xy(ts: float, v: float) -> tuple[float, float]:
        return (ML + (W - ML - MR) * (ts - x0) / span, MT + (H - MT - MB) * (1 - min(v, y_max) / y_max))

    parts, legend = [], []
    for i, (name, points, colour, dashed) in enumerate(series):
        coords = [xy(ts, v) for ts, v in points]
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        parts.append(f'<polyline class="mark" fill="none" stroke="{colour}" stroke-width="2"{dash} '
                     f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in coords)}"/>')
        if not dashed:
            parts.extend(f'<circle class="mark" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in coords)
        x = W - MR - 115 * (len(series) - i)  # legend on the title's line, left to right
        legend.append(f'<rect x="{x + 14}" y="7" width="10" height="10" fill="{colour}"/>'
                      f'<text x="{x + 28}" y="16">{_esc(name)}</text>')
    return _frame(title, "".join(parts + legend), y_max=y_max, y_fmt=y_fmt, x_left=x_labels[0], x_right=x_labels[1])


def bar_chart(title: str, bars: Sequence[tuple[str, Sequence[tuple[float, str]]]], *, fmt: str,
              legend: Sequence[tuple[str, str]] = ()) -> str:
    """Horizontal bars; each row is (label, [(value, colour), ...]) drawn side by side."""
    if not bars:
        return _empty(title, "no data in this window")
    top = max((v for _, vals in bars for v, _ in vals), default=0.0) or 1.0
    per = max(len(vals) for _, vals in bars)
    row_h = 8 * per + 10
    height = MT + row_h * len(bars) + 12
    left, right = 190, W - 70
    parts = [f'<text x="8" y="16" class="title">{_esc(title)}</text>']
    for k, (name, colour) in enumerate(reversed(legend)):
        parts.append(f'<text x="{W - 8 - 70 * k}" y="16" text-anchor="end" style="fill: {colour}">{_esc(name)}</text>')
    for i, (label, vals) in enumerate(bars):
        y = MT + i * row_h
        parts.append(f'<text x="{left - 6}" y="{y + 4 * per + 4}" text-anchor="end">{_esc(label[:30])}</text>')
        for j, (value, colour) in enumerate(vals):
            width = max((right - left) * value / top, 1.0 if value else 0.0)
            parts.append(f'<rect class="mark" x="{left}" y="{y + 8 * j}" width="{width:.1f}" height="7" fill="{colour}"/>'
                         f'<text x="{left + width + 4:.1f}" y="{y + 8 * j + 7}">{_esc(fmt.format(value))}</text>')
    return (f'<svg class="chart" viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" '
            f'aria-label="{_esc(title)}">{"".join(parts)}</svg>')


def _share_chart(queries: Sequence[UsageRecord], threshold: float) -> str:
    title = "Local share (LLM calls) vs threshold"
    if not queries:
        return _empty(title, "no LLM calls in this window")
    first, last = queries[0].ts, queries[-1].ts
    hourly = last - first <= 2 * 86400
    size = 3600 if hourly else 86400
    buckets: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for r in queries:
        b = buckets[int(r.ts // size)]
        b[0] += r.is_local
        b[1] += 1
    points = [((k + 0.5) * size, local / total) for k, (local, total) in sorted(buckets.items())]
    x_range = (min(p[0] for p in points) - size / 2, max(p[0] for p in points) + size / 2)
    goal = threshold / 100.0
    return line_chart(title, [("local share", points, LOCAL, False),
                              (f"threshold {threshold:g} %", [(x_range[0], goal), (x_range[1], goal)], LIMIT, True)],
                      y_max=1.0, y_fmt="{:.0%}", x_range=x_range,
                      x_labels=(_day(x_range[0], hourly), _day(x_range[1], hourly)))  # fmt: skip


def _spend_chart(month: Sequence[UsageRecord], budget: float | None, now: float) -> str:
    start = utc_month_start(datetime.fromtimestamp(now, timezone.utc))
    total, points = 0.0, [(start, 0.0)]
    for r in month:
        if r.cost_usd:
            total += r.cost_usd
            points.append((r.ts, total))
    points.append((now, total))
    series = [("spent", points, EXTERNAL, False)]
    if budget is not None:
        series.append((f"budget ${budget:g}", [(start, budget), (now, budget)], LIMIT, True))
    top = max(total, budget or 0.0) * 1.1 or 0.01
    return line_chart("Spend this month vs budget", series, y_max=top, y_fmt="${:.2f}" if top >= 1 else "${:.4f}",
                      x_range=(start, now), x_labels=(_day(start, False), "now"))  # fmt: skip


def render_html(records: Sequence[UsageRecord], month_records: Sequence[UsageRecord] | None = None, *,
                local_threshold: float = 95.0, monthly_budget_usd: float | None = None,
                source: str = "", now: float | None = None) -> str:
    """The page for ``records`` (the window shown) and ``month_records`` (this month, for the spend)."""
    now = time.time() if now is None else now
    records = sorted(records, key=lambda r: r.ts)
    month = sorted(month_records if month_records is not None else records, key=lambda r: r.ts)
    metrics = compute_metrics(records, local_threshold=local_threshold)
    queries = [r for r in records if counts_in_share(r)]  # served LLM calls: failures are neither
    by_model: dict[str, list[UsageRecord]] = defaultdict(list)
    for r in records:
        if r.outcome not in UNSERVED:  # a failure's model is the one that did *not* answer
            by_model[r.model].append(r)
    models = sorted(by_model, key=lambda m: -len(by_model[m]))[:12]
    calls = [(m, [(float(sum(r.is_local for r in by_model[m])), LOCAL),
                  (float(sum(not r.is_local for r in by_model[m])), EXTERNAL)]) for m in models]
    latency = []
    for m in models:
        values = sorted(r.latency_s for r in by_model[m])
        latency.append((m, [(percentile(values, 50), ACCENT), (percentile(values, 95), EXTERNAL)]))
    escalations = Counter(reason for r in records for reason in r.escalations).most_common(10)
    errors = Counter(r.model for r in records if r.outcome == "error").most_common(10)
    recent = [r for r in records if r.outcome == "error"][-10:]
    spent = sum(r.cost_usd for r in month)
    cards = [
        ("calls (LLM / embedding)", f"{metrics['total_queries']} / {metrics['embeddings_total']}"),
        ("local share", f"{metrics['local_percentage']:.1f} % (threshold {local_threshold:g} %)"),
        ("on target", "yes" if metrics["on_target"] else "NO"),
        ("spent this month", f"${spent:.4f}" + (f" of ${monthly_budget_usd:g}" if monthly_budget_usd is not None else "")),
        ("escalated / fallbacks / errors", f"{metrics['escalated_calls']} / {metrics['fallbacks']} / {metrics['errors']}"),
    ]  # fmt: skip
    charts = [
        _share_chart(queries, local_threshold),
        _spend_chart(month, monthly_budget_usd, now),
        bar_chart("Calls per model", calls, fmt="{:.0f}", legend=[("local", LOCAL), ("external", EXTERNAL)]),
        bar_chart("Latency per model (s)", latency, fmt="{:.2f}s", legend=[("p50", ACCENT), ("p95", EXTERNAL)]),
        bar_chart("Escalations by reason", [(k, [(float(v), EXTERNAL)]) for k, v in escalations], fmt="{:.0f}"),
        bar_chart("Errors by model", [(k, [(float(v), EXTERNAL)]) for k, v in errors], fmt="{:.0f}"),
    ]
    rows = "".join(f"<tr><td>{_esc(_day(r.ts, True))}</td><td>{_esc(r.model)}</td><td>{_esc(r.backend)}</td>"
                   f"<td>{_esc((r.error or '')[:160])}</td></tr>" for r in reversed(recent))  # fmt: skip
    span = f"{_day(records[0].ts, False)} to {_day(records[-1].ts, False)}" if records else "no calls"
    return _PAGE.format(
        span=_esc(span), source=_esc(source),
        generated=_esc(datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        cards="".join(f'<div class="card"><div class="k">{_esc(k)}</div><div class="v">{_esc(v)}</div></div>'
                      for k, v in cards),
        charts="".join(f'<figure>{c}</figure>' for c in charts),
        errors=f"<table><tr><th>time</th><th>model</th><th>backend</th><th>error</th></tr>{rows}</table>"
        if rows else "<p>No errors in this window.</p>",
    )  # fmt: skip


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mem0-routed report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1a202c; background: #fff; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} .sub {{ color: #4a5568; margin-bottom: 16px; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 16px; }}
.card {{ border: 1px solid #e2e8f0; border-radius: 6px; padding: 8px 12px; min-width: 150px; }}
.k {{ color: #4a5568; font-size: 12px; }} .v {{ font-size: 18px; font-weight: 600; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 16px; }} figure {{ margin: 0; }}
svg text {{ font-size: 11px; fill: #2d3748; }} svg .title {{ font-size: 13px; font-weight: 600; }}
svg .grid {{ stroke: #edf2f7; }}
table {{ border-collapse: collapse; margin-top: 8px; }} td, th {{ border: 1px solid #e2e8f0; padding: 4px 8px;
text-align: left; font-size: 12px; }}
</style></head>
<body>
<h1>mem0-routed report</h1>
<div class="sub">{span} &middot; ledger {source} &middot; generated {generated}</div>
<div class="cards">{cards}</div>
<div class="charts">{charts}</div>
<h2>Latest errors</h2>
{errors}
<script>
// Count, after layout, what each chart drew: a headless browser test reads data-drawn.
for (const svg of document.querySelectorAll("svg.chart")) {{
  let drawn = 0;
  for (const el of svg.querySelectorAll(".mark")) {{
    const box = el.getBBox();
    if (box.width > 0 || box.height > 0) drawn += 1;
  }}
  svg.setAttribute("data-drawn", String(drawn));
}}
document.body.setAttribute("data-rendered", "yes");
</script>
</body></html>
"""
