"""URLs in settings: checked as http(s), shown without passwords.

Users paste ``http://user:password@host`` into configs; every place that echoes a URL (errors, logs,
reprs, metrics labels, the CLI) goes through :func:`mask_url` so the password never shows.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "URL_RE", "check_no_credentials", "check_url", "check_url_list", "has_credentials", "is_private_host",
    "mask_url", "mask_urls", "masked",
]

URL_RE = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[^\s/:@\[\]]+)(:\d{1,5})?(/[^\s]*)?$")  # [::1] too


def _mask_token(token: str) -> str:
    """One whitespace-free URL: everything up to its last "@" is user-info. A path holding an "@"
    is over-masked, which is harmless for display; a password holding "/" or "@" is still hidden."""
    scheme, sep, rest = token.partition("://")
    if not sep:
        scheme, rest = "", token
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return token
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:***" if colon and "/" not in user else "***"  # a lone "token@" is itself the secret
    return f"{scheme}{sep}{shown}@{host}"


def mask_url(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host``: URLs are shown, passwords never.

    Works on malformed URLs too (no scheme, bad port), since those are the ones echoed in errors."""
    return url if "@" not in url else re.sub(r"\S*@\S*", lambda m: _mask_token(m.group(0)), url)


def mask_urls(text: str) -> str:
    """Every ``scheme://user:password@`` in a message masked (error texts, log lines); e-mail
    addresses outside URLs are left alone."""
    return text if "@" not in text else re.sub(r"\S*://\S*@\S*", lambda m: _mask_token(m.group(0)), text)


def has_credentials(value: Any) -> bool:
    """Whether a config value (or anything inside it) is a URL with a user or password in it."""
    if isinstance(value, str):
        return "://" in value and "@" in value.split("://", 1)[1].split("/", 1)[0]
    if isinstance(value, Mapping):
        return any(has_credentials(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_credentials(v) for v in value)
    return False


def check_no_credentials(url: str) -> None:
    """Refuse a URL with ``user:password@``: it would show in logs and errors. A query string or
    fragment too (``?api_key=…``): a base URL takes none, and it would sit in every backend name,
    breaker, metrics label and error; the message never shows what follows the ``?``."""
    if "?" in url or "#" in url:
        shown = mask_url(re.split(r"[?#]", url, maxsplit=1)[0])
        raise ValueError(f"{shown!r} has a query string or fragment ('?…' or '#…', not shown), which would show "
                         "in logs, errors and metrics; a base URL takes none: remove it, and pass a key as "
                         "openai_compatible_api_key / openai_api_key")
    if has_credentials(url) or ("://" not in url and "@" in url):
        raise ValueError(f"{mask_url(url)!r} has credentials in it (user:password@), which would show in "
                         "logs and errors; remove them (a proxy in front of Ollama can add them) and pass the "
                         "OpenAI key as openai_api_key or OPENAI_API_KEY")


#: Host names that only resolve inside a network: single labels (``gpu-0``) and these suffixes.
_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".intranet", ".corp", ".private",
                     ".svc", ".cluster.local")


def is_private_host(url: str) -> bool:
    """Whether ``url``'s host is on this machine or a private network: loopback, RFC 1918,
    link-local, IPv6 ULA, ``localhost``, a single-label name (``gpu-0``, a Docker/Kubernetes
    service) or an internal suffix (``.internal``, ``.local``, ``.lan``, ``.svc``...). No DNS look-up:
    a public name is public whatever it resolves to today."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:  # what the resolver reads as an address: "134744072", "0x08080808", "8.8.2056" are 8.8.8.8
            ip = ipaddress.ip_address(socket.inet_aton(host))
        except OSError:
            return host == "localhost" or "." not in host or host.endswith(_PRIVATE_SUFFIXES)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global  # loopback, RFC 1918, link-local, ULA, 100.64/10 (Tailscale, carrier NAT)


def masked(value: Any) -> Any:
    """``value`` with every URL password masked, inside lists and dicts too (for reprs and errors)."""
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, (list, tuple)):
        return [masked(v) for v in value]
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    return value


def check_url(url: str, hint: str) -> None:
    """``url`` is an http(s) URL without credentials; else a ``ValueError`` that ends with ``hint``."""
    check_no_credentials(url)
    if not URL_RE.match(url):
        raise ValueError(f"{mask_url(url)!r} is not an http(s) URL{hint}")


def check_url_list(value: Any, example: str) -> Any:
    """A comma-separated string or a list of http(s) URLs without credentials, as a list;
    anything else is left for pydantic to refuse with its own message."""
    urls = [u.strip() for u in value.split(",") if u.strip()] if isinstance(value, str) else value
    if isinstance(urls, list):
        for url in urls:
            if isinstance(url, str):
                check_url(url, f"; {example}")
    return urls
