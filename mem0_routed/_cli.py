"""``mem0-routed``: explain a decision, check health, read the ledger, project costs.

Output fits an 80-column terminal; ``--json`` gives machine-readable output for every command.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ._config import RouterConfig
from ._errors import Mem0RoutedError
from ._types import QueryType


def _sections(ctx: click.Context) -> list[tuple[str, dict[str, Any]]]:
    """The router configurations the options describe: ``[("router", keys)]``, or one per routed
    section (``llm``, ``embedder``) of a mem0 config given with ``--config``. Options beat the file,
    which beats env vars, as for a router built from a mem0 config dict."""
    obj = dict(ctx.obj or {})
    path = obj.pop("config_file", None)
    flags = {k: v for k, v in obj.items() if v is not None}
    sections = config_sections(path) if path else [("router", {})]
    out = []
    for name, keys in sections:
        merged = {**keys, **flags}
        if name == "llm":
            merged.pop("embedder_model", None)
        elif name == "embedder":
            merged.pop("llm_model", None)
        out.append((name, merged))
    return out


def config_sections(path: str) -> list[tuple[str, dict[str, Any]]]:
    """Read ``--config FILE``: JSON of router keys, or a mem0 config whose ``llm``/``embedder`` use
    provider "routed" (then each section is translated the way the mem0 provider classes do it)."""
    from pathlib import Path

    from ._errors import ConfigError
    from ._mem0 import MEM0_LLM_KEYS, _embedder_router_options, _llm_router_options

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--config {path!r}: cannot read JSON ({exc}); give a file of router keys or a "
                          "mem0 config", key="config") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path!r}: the JSON must be an object, not {type(data).__name__}", key="config")
    if "llm" not in data and "embedder" not in data:
        return [("router", data)]
    out: list[tuple[str, dict[str, Any]]] = []
    for name in ("llm", "embedder"):
        section = data.get(name)
        if not isinstance(section, dict) or section.get("provider") != "routed":
            continue
        cfg = dict(section.get("config") or {})
        if name == "llm":
            options = {k: v for k, v in cfg.items() if k not in MEM0_LLM_KEYS}
            out.append((name, _llm_router_options(cfg.get("model"), cfg.get("api_key"), options)))
        else:
            out.append((name, _embedder_router_options(cfg)))
    if not out:
        raise ConfigError(f"--config {path!r}: neither 'llm' nor 'embedder' uses provider 'routed'", key="config")
    return out


def _router(ctx: click.Context) -> Any:
    """One router for explain/stats/project: the llm section's keys plus the embedder's model."""
    from ._router import Router

    sections = dict(_sections(ctx))
    keys = sections.get("llm") or sections.get("router") or {}
    if "embedder" in sections:
        keys = {**keys, **{k: v for k, v in sections["embedder"].items() if k == "embedder_model"}}
    try:
        return Router(RouterConfig.from_mapping(keys))
    except Mem0RoutedError as exc:
        raise click.ClickException(str(exc)) from None


def _from_ledger(router: Any, read: Any) -> Any:
    """Read the ledger; a broken one (corrupt file, Redis down) is one line naming it and the fix."""
    from ._config import mask_url

    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - any store error becomes one line, never a traceback
        if isinstance(exc, Mem0RoutedError):
            raise click.ClickException(str(exc)) from None
        url = getattr(router.runtime.opened_ledger(), "url", None) or mask_url(str(router.config.ledger or "sqlite"))
        detail = (str(exc).splitlines() or [type(exc).__name__])[0][:200].rstrip(". ")
        if url.lower().startswith(("redis://", "rediss://")):
            fix = "start Redis or correct the URL (--ledger or MEM0_ROUTED_LEDGER)"
        else:
            fix = "move the damaged file aside (a new, empty ledger is started) or restore it from a backup"
        raise click.ClickException(
            f"cannot read the usage ledger {url}: {type(exc).__name__}: {detail}. Fix: {fix}"
        ) from None


def _table(rows: list[tuple[str, str]], width: int = 26) -> None:
    for key, value in rows:
        click.echo(f"  {key:<{width}} {value}")


class _Group(click.Group):
    """Every error mem0-routed raises on purpose is shown as one message, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Mem0RoutedError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="JSON file: router keys, or a mem0 config whose llm/embedder use provider 'routed'.")
@click.option("--ollama-url", "ollama_base_url", help="Ollama URL(s), comma-separated (env OLLAMA_URL).")
@click.option("--model", "llm_model", help="Local model of the general routes, as mem0's llm 'model' (env MEM0_LLM_MODEL).")
@click.option("--embedder-model", "embedder_model", help="Embedding model, as mem0's embedder 'model' (env MEM0_EMBEDDER_MODEL).")
@click.option("--ledger", help="Ledger: 'memory', a SQLite path, or redis://… (env MEM0_ROUTED_LEDGER).")
@click.option("--threshold", "local_threshold", type=float, help="Local share target in percent (env LLM_LOCAL_THRESHOLD).")
@click.version_option(package_name="mem0-routed")
@click.pass_context
def main(ctx: click.Context, config_file: str | None, ollama_base_url: str | None, llm_model: str | None,
         embedder_model: str | None, ledger: str | None, local_threshold: float | None) -> None:
    """Local-first LLM router for mem0."""
    ctx.obj = {"config_file": config_file, "ollama_base_url": ollama_base_url, "llm_model": llm_model,
               "embedder_model": embedder_model, "ledger": ledger, "local_threshold": local_threshold}


@main.command()
@click.argument("texts", nargs=-1, required=True)
@click.option("--type", "query_type", type=click.Choice([q.value for q in QueryType]), help="Force a query type.")
@click.option("--force-local", is_flag=True, help="Pin to local, as execute_query(force_local=True).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def explain(ctx: click.Context, texts: tuple[str, ...], query_type: str | None, force_local: bool, as_json: bool) -> None:
    """Show where each TEXT would be routed and why, without calling any model."""
    router = _router(ctx)
    results = []
    for text in texts:
        decision = router.route_query(text, query_type, force_local=force_local)
        results.append({"text": text, **decision.to_dict()})
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for r in results:
        preview = r["text"] if len(r["text"]) <= 60 else r["text"][:57] + "..."
        click.echo(click.style(preview, bold=True))
        _table([
            ("route", f"{r['backend']}:{r['model']} ({'local' if r['is_local'] else 'external'})"),
            ("type / complexity", f"{r['query_type']} / {r['complexity']}"),
            ("estimated tokens", str(r["estimated_tokens"])),
            ("estimated cost", f"${r['estimated_cost']:.6f}"),
            ("fallback chain", " -> ".join(r["chain"])),
            ("external fallback", "allowed" if r["external_fallback"] else f"no: {r['external_blocked_by']}"),
        ])
        for reason in r["reasons"]:
            click.echo(f"    - {reason}")
        click.echo()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def health(ctx: click.Context, as_json: bool) -> None:
    """Every configured model on every host, OpenAI; exits 1 when a call would fail (a host down,
    a model missing, OpenAI configured but unusable), with the fix for each problem."""
    from ._health import collect_health
    from ._router import Router

    reports = {}
    for name, keys in _sections(ctx):
        router = Router(RouterConfig.from_mapping(keys))
        routes = None
        if name == "embedder":
            routes = [QueryType.EMBEDDING.value]
        elif name == "llm":
            routes = [q.value for q in QueryType if q is not QueryType.EMBEDDING]
        reports[name] = collect_health(router.runtime, routes=routes)
    ok = all(r["ok"] for r in reports.values())
    if as_json:
        single = reports.get("router")
        click.echo(json.dumps(single if single is not None else {"ok": ok, **reports}, indent=2))
    else:
        for name, report in reports.items():
            _print_health(name, report)
        click.echo(click.style("healthy" if ok else "NOT healthy", fg="green" if ok else "red", bold=True))
    if not ok:
        sys.exit(1)


def _print_health(name: str, report: dict[str, Any]) -> None:
    click.echo(f"{'' if name == 'router' else name + ': '}local backend {report['local_backend']}")
    for host in report["hosts"]:
        state = "up" if host["reachable"] else f"DOWN ({host['error']})"
        click.echo(f"  {host['name']}: {state}, breaker {host['breaker']}")
        for model, window in sorted(host["context_windows"].items()):
            click.echo(f"      {model}: context window {window}")
    for model, info in report["models"].items():
        where = ", ".join(info["present_on"]) or ("MISSING" if info["required"] else "missing (optional)")
        click.echo(f"  model {model} ({', '.join(info['routes'])}; {info['origin']}): {where}")
    click.echo(f"  missing models: {', '.join(report['missing_models']) or 'none'}")
    click.echo(f"  openai: {'ok' if report['openai'] else report['openai_error'] or 'unreachable'}")
    for error in report["errors"]:
        click.echo(click.style(f"  ! {error}", fg="red"))
    for warning in report["warnings"]:
        click.echo(click.style(f"  ~ {warning}", fg="yellow"))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Metrics over the ledger's window: share of served calls, errors, escalations, cost, latency.

    The embedding cache lives in the process that embeds and is not written to the ledger (a hit
    costs microseconds, a ledger write more), so this command cannot show it: read
    ``router.get_metrics()["embedding_cache"]`` in that process."""
    router = _router(ctx)
    metrics = _from_ledger(router, lambda: router.get_metrics(scope="ledger"))
    if as_json:
        click.echo(json.dumps(metrics, indent=2, default=str))
        return
    m = metrics
    _table([
        ("LLM calls", f"{m['calls']} ({m['total_queries']} served, {m['failed_queries']} failed, "
                      f"error rate {m['error_rate']}%)"),
        ("served locally", f"{m['local_queries']} ({m['local_percentage']}%)"),
        ("served externally", f"{m['external_queries']} ({m['external_percentage']}%)"),
        ("on target", f"{m['on_target']} (threshold {m['local_threshold']}% of served calls)"),
        ("errors / blocked", f"{m['errors']} / {m['blocked']} (embeddings failed: {m['embeddings_failed']})"),
        ("escalated / degraded", f"{m['escalated_calls']} / {m['degraded']} (fallbacks {m['fallbacks']})"),
        ("embedding calls", f"{m['embeddings_total']} to a model (cache hits: per process, not in the ledger)"),
        ("total cost", f"${m['total_cost']:.6f} (${m['avg_cost_per_query']:.8f} per served call)"),
        ("latency p50 / p95", f"{m['latency_p50_s']:.3f} s / {m['latency_p95_s']:.3f} s"),
    ])
    for section in ("latency_by_model", "escalations_by_reason", "by_outcome"):
        value = metrics.get(section)
        if value:
            click.echo(f"{section}:")
            if isinstance(value, dict):
                _table([(str(k), json.dumps(v, default=str)) for k, v in value.items()], width=30)


@main.command()
@click.option("--queries", type=click.IntRange(min=0), default=3000, show_default=True,
              help="Queries per month to project.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def project(ctx: click.Context, queries: int, as_json: bool) -> None:
    """Monthly cost at the ledger's current local/external mix vs all-external."""
    from ._metrics import project_cost

    router = _router(ctx)
    records = _from_ledger(router, lambda: router.ledger.records(since=router.runtime.share_since()))
    result = project_cost(queries, records, external_model=router.config.fallback_model)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    _table([(str(k), str(v)) for k, v in result.items()])


@main.command()
@click.option("--html", "html_path", type=click.Path(dir_okay=False, writable=True), required=True,
              help="Write the report to this file (one self-contained page, no network).")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="How many days of the ledger to show.")
@click.option("--budget", type=click.FloatRange(min=0), default=None,
              help="Monthly budget in USD to draw (default: env MEM0_ROUTED_MONTHLY_BUDGET_USD).")
@click.pass_context
def report(ctx: click.Context, html_path: str, days: float, budget: float | None) -> None:
    """One HTML page from the ledger: local share vs threshold, spend vs budget, calls, latency, errors."""
    import time
    from pathlib import Path

    from ._config import mask_url
    from ._records import utc_month_start
    from ._report import render_html

    router = _router(ctx)
    now = time.time()
    records = _from_ledger(router, lambda: router.ledger.records(since=now - days * 86400))
    month = _from_ledger(router, lambda: router.ledger.records(since=utc_month_start()))
    page = render_html(records, month, local_threshold=router.config.local_threshold,
                       monthly_budget_usd=budget if budget is not None else router.config.monthly_budget_usd,
                       source=mask_url(router.config.ledger), now=now)
    Path(html_path).write_text(page, encoding="utf-8")
    click.echo(f"wrote {html_path}: {len(records)} calls over {days:g} days")


@main.command()
@click.option("--model", help="Chat model to warm (default: the extraction route's model).")
@click.option("--embedder-model", help="Embedding model to warm (default: the embedding route's model).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def warmup(ctx: click.Context, model: str | None, embedder_model: str | None, as_json: bool) -> None:
    """Load the models with the num_ctx their calls will use and prime the prompt cache."""
    router = _router(ctx)
    router.serves_mem0 = True  # size and prime for mem0's extraction call
    report = router.warmup(model=model, embedding_model=embedder_model)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        click.echo(f"local backend: {report['local_backend']}, model {report['model']}")
        for host in report["hosts"]:
            if "error" in host:
                click.echo(click.style(f"  ! {host['host']}: {host['error']}", fg="yellow"))
                continue
            click.echo(f"  {host['host']}: {host['prompt']} extraction prompt, num_ctx {host['num_ctx']}, "
                       f"primed in {host['prime_s']}s, keep_alive {host['keep_alive']} ({host['speed']})")
        emb = report["embedding"]
        click.echo(f"  embedding {emb['model']}: " + (f"loaded in {emb['seconds']}s" if "seconds" in emb
                                                       else f"not warmed ({emb['error']})"))
    if not report["ok"]:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
