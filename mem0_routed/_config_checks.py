"""Checks across ``RouterConfig`` keys: settings each valid alone that together would make calls fail
or leak. Apart from the model so ``_config`` stays the list of keys and their own checks."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ._urls import is_private_host, mask_url

__all__ = ["MIN_CTX", "check_private_tier", "check_together", "is_external_model_name"]

# Names that are OpenAI's, not a local model's: mem0's llm_reranker injects model="gpt-5-mini".
# gpt-oss is an open-weight model that Ollama serves, so it is local (vLLM names it openai/gpt-oss-20b).
_EXTERNAL_MODEL_RE = re.compile(r"^(gpt-(?!oss)|o\d|chatgpt-|text-|davinci|openai/(?!gpt-oss))", re.IGNORECASE)
MIN_CTX = 256  # tokens: no useful prompt fits in less


def is_external_model_name(name: str) -> bool:
    """True for names like ``gpt-5-mini`` that can never be an Ollama model."""
    return bool(_EXTERNAL_MODEL_RE.match(name))


def check_together(*, num_ctx_min: int, num_ctx_max: int | None, default_max_tokens: int,
                   models: Mapping[str, str]) -> None:
    """Settings that are each valid but together make every local call fail."""
    top = num_ctx_max
    if top is not None and top < num_ctx_min:
        raise ValueError(f"num_ctx_max {top} is below num_ctx_min {num_ctx_min}; "
                         f"raise num_ctx_max or lower num_ctx_min to at most {top}")
    if top is not None and top < default_max_tokens + MIN_CTX:
        raise ValueError(f"num_ctx_max {top} leaves no room for a prompt next to default_max_tokens "
                         f"{default_max_tokens}; raise num_ctx_max to at least "
                         f"{default_max_tokens + MIN_CTX} or lower default_max_tokens")
    for route, model in models.items():
        if is_external_model_name(model):  # Ollama never has it: every call of the route would fail
            raise ValueError(f"models[{route!r}] = {model!r} is an OpenAI model, but routes name local "
                             "(Ollama) models (MEM0_LLM_MODEL/llm_model fill the general routes); give e.g. "
                             "'mistral:7b' and set fallback_model for OpenAI")


def check_private_tier(urls: list[str], *, allow_public: bool) -> None:
    """This tier counts as local: keep-local calls (secrets, personal data) may go there and its
    calls cost $0 in the share and the budget. A hosted API on the internet must not pass for it."""
    public = [u for u in urls if not is_private_host(u)]
    if public and not allow_public:
        raise ValueError(
            f"openai_compatible_urls: {mask_url(public[0])!r} is not on a private network (loopback, 10/8, "
            "172.16/12, 192.168/16, fc00::/7, or a name like 'gpu-0', '*.internal', '*.local', '*.lan', '*.svc'), "
            "but this tier counts as local: calls the keep-local rules hold back (secrets, personal data) would "
            "go there, at $0 in the share and the budget. If the server is yours, set "
            "openai_compatible_allow_public_hosts: true; a hosted API belongs in openai_base_url (external)")
