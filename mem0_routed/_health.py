"""Health report: which hosts answer, whether every model the configuration routes to is there on
every host, whether OpenAI is usable — and what to do about each problem.

Used by ``Router.health`` and ``mem0-routed health``. It checks the router's own route table
(your ``llm_model``/``models``/``embedder_model``, env vars included, over the seed defaults), so the
report is about the models your calls will use, not a built-in list.

``errors`` are what makes calls fail: a host down, OpenAI configured but unusable, or a *required*
model missing on every host. Required: every model you set, and the models of the general and
embedding routes (every mem0 call uses those). ``warnings`` only narrow the choice: a model missing
on some hosts, a seed-default model of the code/medium/complex routes you never set (those calls
fall to a stand-in; pulling it is optional), no OpenAI key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._config import DEFAULT_MODELS, GENERAL_ROUTES
from ._runtime import Runtime
from ._types import QueryType
from .backends._kinds import kind_spec, local_kinds

if TYPE_CHECKING:
    from ._config import RouterConfig
    from .backends._base import Backend

__all__ = ["collect_health", "route_models"]

#: Routes whose model every mem0 call depends on (extraction, procedural, reranker; embeddings).
_CORE_ROUTES = frozenset({*GENERAL_ROUTES, QueryType.EMBEDDING.value})


def _origin(cfg: RouterConfig, route: str, model: str) -> str:
    """Where a route's model came from: a key the user set, or the seed's table."""
    if route in GENERAL_ROUTES and cfg.llm_model == model:
        return "llm_model"
    if route == QueryType.EMBEDDING.value and cfg.embedder_model == model:
        return "embedder_model"
    if DEFAULT_MODELS.get(route) == model:
        return "default"
    return "models"


def route_models(cfg: RouterConfig, models: dict[str, str], routes: Iterable[str] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """model -> {"routes": [...], "origin": which of "llm_model", "embedder_model", "models" set it
    (comma-separated), else "default"; "required": you set it or a general/embedding route uses it}."""
    wanted = set(routes) if routes is not None else None
    out: dict[str, dict[str, Any]] = {}
    for route, model in models.items():
        if wanted is not None and route not in wanted:
            continue
        entry = out.setdefault(model, {"routes": [], "origins": set()})
        entry["routes"].append(route)
        entry["origins"].add(_origin(cfg, route, model))
    for model, entry in out.items():
        origins = sorted(entry.pop("origins") - {"default"})  # one route set it on purpose: it is yours
        entry["origin"] = ", ".join(origins) or "default"
        entry["required"] = bool(origins) or bool(_CORE_ROUTES & set(entry["routes"]))
    return dict(sorted(out.items()))


def _missing_fix(backend: Backend | None, kind: str, model: str, info: dict[str, Any]) -> str:
    routes = ", ".join(info["routes"])
    fix = (backend.fix("model_missing", model) if backend is not None else None) or kind_spec(kind).missing
    hint = fix if info["required"] else f"optional: {fix}"
    if info["origin"] == "default":
        first = info["routes"][0]
        hint += (f", or route {'them' if len(info['routes']) > 1 else 'it'} to a model you have "
                 f"(models: {{\"{first}\": ...}}; --model sets simple/summarization/extraction)")
    return f"model missing: {model} (routes {routes}; {info['origin']}); {hint}"


def collect_health(rt: Runtime, *, routes: Iterable[str] | None = None) -> dict[str, Any]:
    """Ask every host of the local tier for its models and compare with the route table.

    ``routes`` limits the check to some route types (the CLI checks a mem0 embedder section for
    the embedding route only). Never raises: a failing host is part of the report.
    """
    cfg = rt.config
    kind = rt.local_kind()
    policy = rt.policy(kind)
    required = route_models(cfg, policy.config.models, routes)
    errors: list[str] = []
    warnings: list[str] = []
    hosts: list[dict[str, Any]] = []
    present_on: dict[str, list[str]] = {m: [] for m in required}
    up: list[str] = []
    backends = rt.backends(kind)
    for backend in backends:
        h = backend.health(timeout_s=cfg.connect_timeout_s)
        names = {backend.model_key(m) for m in h.models}
        windows: dict[str, int] = dict(h.context_windows)
        missing_here: list[str] = []
        if h.reachable:
            up.append(backend.name)
            for model in required:
                if backend.model_key(model) not in names:
                    missing_here.append(model)
                    continue
                present_on[model].append(backend.name)
                if model not in windows:
                    try:
                        win = backend.context_window(model)
                    except Exception:  # noqa: BLE001 - a health report never raises
                        win = None
                    if win:
                        windows[model] = win
        else:
            errors.append(f"server down: {backend.name} ({h.error}); {backend.fix('unreachable') or 'start it'}")
        hosts.append({"name": backend.name, "reachable": h.reachable, "error": h.error, "models": sorted(h.models),
                      "missing_models": missing_here, "context_windows": windows,
                      "breaker": rt.breaker(backend).state, "_backend": backend})
    if cfg.local_backend == "auto":  # a tier auto tries first was asked for, and did not answer
        for other in local_kinds(auto=True):
            if other == kind:
                break
            for backend in rt.backends(other):
                h = backend.health(timeout_s=cfg.connect_timeout_s)
                if not h.reachable:
                    warnings.append(f"{other} down at {backend.name} ({h.error}); local calls use the {kind} backend "
                                    f"(local_backend: auto); {backend.fix('unreachable') or 'start it'} to use "
                                    "its models")
    missing: list[str] = []
    if up:
        for model, info in required.items():
            if not present_on[model]:
                missing.append(model)
                first = next((h["_backend"] for h in hosts if h["reachable"]), None)
                (errors if info["required"] else warnings).append(_missing_fix(first, kind, model, info))
            elif len(present_on[model]) < len(up):
                lacking = [h for h in hosts if h["reachable"] and model in h["missing_models"]]
                fix = lacking[0]["_backend"].fix("model_missing", model) or "add it"
                warnings.append(f"{model} is missing on {', '.join(h['name'] for h in lacking)} (calls for it use "
                                f"{', '.join(present_on[model])}); {fix} there")
    openai_ok, openai_error = False, None
    if cfg.openai_api_key is None:
        openai_error = "OpenAI not configured: set OPENAI_API_KEY"
        warnings.append(openai_error + " (only needed for the external fallback)")
    else:
        for backend in rt.backends("openai"):
            h = backend.health(timeout_s=cfg.connect_timeout_s)
            openai_ok, openai_error = h.reachable, h.error
            if not h.reachable:
                errors.append(f"OpenAI unreachable: {h.error}")
    local_models = sorted({e["_backend"].model_key(m) for e in hosts for m in e["models"]})
    for entry in hosts:
        del entry["_backend"]
    return {
        "ok": not errors,
        "ollama": {kind: bool(up)}.get("ollama", False),  # kept for 0.x callers: "local" says it for any tier
        "local": bool(up),
        "local_backend": kind,
        "openai": openai_ok,
        "openai_configured": cfg.openai_api_key is not None,
        "openai_error": openai_error,
        "local_models": local_models,
        "ollama_models": local_models,  # kept for 0.x callers
        "required_models": list(required),
        "models": {m: {**info, "present_on": present_on[m]} for m, info in required.items()},
        "missing_models": missing,
        "hosts": hosts,
        "errors": errors,
        "warnings": warnings,
        "problems": errors + warnings,
        "routing_enabled": cfg.routing_enabled,
        "local_threshold": cfg.local_threshold,
    }
