"""Which env vars fill ``RouterConfig``: only the documented ones.

A key reads the environment only when its field names an env var (``validation_alias``); the
README's "Every config key" table lists exactly these (``tests/test_envconfig.py`` compares the
two). Other keys are set in the config dict only: an env var for every key used to be read
silently, so a stray ``MEM0_ROUTED_DEADLINE_S`` in a shell changed routing without a trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_settings import EnvSettingsSource

__all__ = ["DocumentedEnvSource", "env_names"]


def documented_env_var(field: FieldInfo) -> str | None:
    """The env var a field reads: the first name of its ``validation_alias``, or none."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        return first if isinstance(first, str) else None
    return alias if isinstance(alias, str) else None


def env_names(fields: Mapping[str, FieldInfo]) -> dict[str, str]:
    """``{key: env var}`` for the keys that read one."""
    return {key: name for key, field in fields.items() if (name := documented_env_var(field)) is not None}


class DocumentedEnvSource(EnvSettingsSource):
    """pydantic-settings' env source, reading one env var per key and only for keys that name one.

    pydantic-settings alone also reads the field's own name (``OLLAMA_BASE_URL``) and, for keys
    without an alias, ``env_prefix`` + the key. Parsing (lists, empty values ignored) stays its own."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = documented_env_var(field)
        if name is None:
            return None, field_name, False
        # under the key, not the env name: an error then reads "key (env NAME)", as for an explicit key
        return self.env_vars.get(name if self.case_sensitive else name.lower()), field_name, False
