"""Health report: which hosts answer, which models are pulled, whether OpenAI is usable — and what
to do about each problem. Used by ``Router.health_check`` and ``mem0-routed health``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backends._base import normalize_model_name

if TYPE_CHECKING:
    from ._router import Router


def collect_health(router: Router) -> dict[str, Any]:
    cfg = router.config
    kind = router.local_kind()
    policy = router.policy(kind)
    wanted = sorted(set(policy.config.models.values()))
    problems: list[str] = []
    hosts: list[dict[str, Any]] = []
    present: set[str] = set()
    local_ok = False
    for backend in router._backends_of(kind):
        h = backend.health(timeout_s=cfg.connect_timeout_s)
        names = {normalize_model_name(m) for m in h.models} if kind == "ollama" else set(h.models)
        windows: dict[str, int] = dict(h.context_windows)
        if h.reachable:
            local_ok = True
            present |= names
            for model in wanted:
                key = normalize_model_name(model) if kind == "ollama" else model
                if key in names and model not in windows:
                    try:
                        win = backend.context_window(model)
                    except Exception:  # noqa: BLE001 - a health report never raises
                        win = None
                    if win:
                        windows[model] = win
        else:
            problems.append(f"server down: {backend.name} ({h.error}); start Ollama (`ollama serve`) "
                            f"or fix OLLAMA_URL" if kind == "ollama" else f"{backend.name}: {h.error}")
        hosts.append({"name": backend.name, "reachable": h.reachable, "error": h.error, "models": sorted(h.models),
                      "context_windows": windows, "breaker": router.breaker(backend).state})
    missing = []
    if local_ok:
        for model in wanted:
            key = normalize_model_name(model) if kind == "ollama" else model
            if key not in present:
                missing.append(model)
                problems.append(f"model not pulled: {model}; run `ollama pull {model}`" if kind == "ollama"
                                else f"embedded model missing: {model}")
    openai_ok = False
    openai_error = None
    if cfg.openai_api_key is None:
        openai_error = "OpenAI not configured: set OPENAI_API_KEY"
        problems.append(openai_error + " (only needed for the external fallback)")
    else:
        for backend in router._backends_of("openai"):
            h = backend.health(timeout_s=cfg.connect_timeout_s)
            openai_ok, openai_error = h.reachable, h.error
            if not h.reachable:
                problems.append(f"OpenAI unreachable: {h.error}")
    return {
        "ollama": local_ok if kind == "ollama" else False,
        "local": local_ok,
        "local_backend": kind,
        "openai": openai_ok,
        "openai_configured": cfg.openai_api_key is not None,
        "openai_error": openai_error,
        "ollama_models": sorted(present),
        "required_models": wanted,
        "missing_models": missing,
        "hosts": hosts,
        "problems": problems,
        "routing_enabled": cfg.routing_enabled,
        "local_threshold": cfg.local_threshold,
    }
