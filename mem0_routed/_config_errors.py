"""pydantic's validation errors as one ``ConfigError``: one sentence per problem, naming the key
(and its env var), the value and what is allowed, never a secret or a URL password."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from pydantic import ValidationError
from pydantic_settings import SettingsError

from ._errors import ConfigError
from ._urls import mask_url, masked

__all__ = ["friendly_error", "settings_error"]

_SECRET_KEYS = {"openai_api_key", "OPENAI_API_KEY", "openai_compatible_api_key", "OPENAI_COMPATIBLE_API_KEY"}


def friendly_error(exc: ValidationError, known: Collection[str], env: Mapping[str, str]) -> ConfigError:
    """``known``: the config's keys; ``env``: ``{key: env var}`` for the keys that read one."""
    lines = []
    first_key = None
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err.get("loc", ()) if not str(p).startswith(("function-", "str", "list["))]
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        named = msg.split(" ", 1)[0].split("[", 1)[0]  # a check across keys names its key first
        key = loc[0] if loc else named if named in known else "?"
        first_key = first_key or key
        if err.get("type") == "extra_forbidden":
            lines.append(f"unknown key {key!r} for the routed provider; known keys: {', '.join(sorted(known))}")
            continue
        where = f"{key} (env {env[key]})" if key in env else key
        if key in _SECRET_KEYS:
            lines.append(f"{where}: {msg} (value hidden)")
        elif not loc:
            lines.append(msg)
        elif err.get("type", "").endswith(("_parsing", "_type", "literal_error", "finite_number")) and "input" in err:
            lines.append(f"{where}: {masked(err['input'])!r} is invalid: {msg}")  # a URL's password never
        else:
            lines.append(f"{where}: {msg}")
    # a credentialed URL given for any key (not only the URL keys) is masked wherever it is echoed:
    # over-masks an e-mail address, which is harmless in an error; never shows a "user:password@"
    return ConfigError("invalid mem0-routed configuration:\n  " + "\n  ".join(map(mask_url, lines)), key=first_key)


def settings_error(exc: SettingsError, env: Mapping[str, str]) -> ConfigError:
    """An env var for a list/dict key that is not JSON (pydantic-settings parses it before validation)."""
    found = re.search(r'field "(\w+)"', str(exc))
    key = found.group(1) if found else None
    name = env.get(key or "", "?")
    return ConfigError(f"invalid mem0-routed configuration:\n  {key} (env {name}) is not valid JSON; "
                       "give a JSON list or object, e.g. '[\"a\"]' or '{\"simple\": \"mistral:7b\"}'", key=key)
