"""``mem0-routed``: explain a decision, check health, read the ledger, project costs.

Output fits an 80-column terminal; ``--json`` gives machine-readable output for every command.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from ._config import RouterConfig
from ._errors import Mem0RoutedError
from ._types import QueryType


def _router(ctx: click.Context) -> Any:
    from ._router import Router

    try:
        overrides = {k: v for k, v in (ctx.obj or {}).items() if v is not None}
        return Router(RouterConfig.from_mapping(overrides))
    except Mem0RoutedError as exc:
        raise click.ClickException(str(exc)) from None


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
@click.option("--ollama-url", "ollama_base_url", help="Ollama URL(s), comma-separated (env OLLAMA_URL).")
@click.option("--ledger", help="Ledger: 'memory', a SQLite path, or redis://… (env MEM0_ROUTED_LEDGER).")
@click.option("--threshold", "local_threshold", type=float, help="Local share target in percent (env LLM_LOCAL_THRESHOLD).")
@click.version_option(package_name="mem0-routed")
@click.pass_context
def main(ctx: click.Context, ollama_base_url: str | None, ledger: str | None, local_threshold: float | None) -> None:
    """Local-first LLM router for mem0."""
    ctx.obj = {"ollama_base_url": ollama_base_url, "ledger": ledger, "local_threshold": local_threshold}


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
    """Hosts, models present/missing, context windows, OpenAI configured."""
    router = _router(ctx)
    report = asyncio.run(router.health_check())
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"local backend: {report['local_backend']}")
        for host in report["hosts"]:
            state = "up" if host["reachable"] else f"DOWN ({host['error']})"
            click.echo(f"  {host['name']}: {state}, breaker {host['breaker']}")
            for model, window in sorted(host["context_windows"].items()):
                click.echo(f"      {model}: context window {window}")
        click.echo(f"required models: {', '.join(report['required_models'])}")
        click.echo(f"missing models:  {', '.join(report['missing_models']) or 'none'}")
        click.echo(f"openai: {'ok' if report['openai'] else report['openai_error'] or 'unreachable'}")
        for problem in report["problems"]:
            click.echo(click.style(f"  ! {problem}", fg="yellow"))
    if not report["local"]:
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Metrics over the ledger's window: share, cost, latency, escalations."""
    router = _router(ctx)
    metrics = router.get_metrics(source="ledger")
    if as_json:
        click.echo(json.dumps(metrics, indent=2, default=str))
        return
    keys = ["total_queries", "local_queries", "local_percentage", "external_queries", "external_percentage",
            "total_cost", "avg_cost_per_query", "on_target"]
    _table([(k, str(metrics.get(k))) for k in keys])
    for section in ("latency_by_model", "escalations_by_reason", "embedding_cache"):
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
    records = router.ledger.records(since=router._share_since())
    result = project_cost(queries, records, external_model=router.config.fallback_model)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    _table([(str(k), str(v)) for k, v in result.items()])


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
