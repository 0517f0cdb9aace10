"""mkdocs hook: the generated parts of the docs, filled in at build time so they cannot drift.

A page marks each part with an HTML comment on a line of its own:

* ``<!-- api:mem0_routed -->``: one mkdocstrings block per name of ``mem0_routed.__all__`` except the
  exceptions, grouped as classes, functions and other names;
* ``<!-- api:exceptions -->``: the exception classes of ``mem0_routed.__all__``, as a tree, then one
  block each, base classes first;
* ``<!-- api:mem0_routed.testing -->``: every name of ``mem0_routed.testing.__all__``;
* ``<!-- cli -->``: click's help of every console script in pyproject.toml (mkdocs-click);
* ``<!-- config-keys -->``: every ``RouterConfig`` field with its type, default and the env vars
  it reads (asked from the model's own env source, not written by hand), then the default routes.

A new public name or config key is in the next build with no edit here.
"""

from __future__ import annotations

import html
import importlib
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any

_MARKER = re.compile(r"^<!-- (api:[\w.]+|config-keys|cli) -->$", re.MULTILINE)
_REPO: Path | None = None


def on_config(config: Any) -> Any:
    """Document the checkout being built: put its root (where mkdocs.yml is) first on sys.path."""
    global _REPO
    _REPO = Path(config.config_file_path).resolve().parent
    if str(_REPO) in sys.path:
        sys.path.remove(str(_REPO))
    sys.path.insert(0, str(_REPO))  # before the current directory and any installed copy
    os.environ.setdefault("MEM0_TELEMETRY", "False")  # mem0 reads it at import; no network from a docs build
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return _MARKER.sub(lambda m: _render(m.group(1)), markdown)


def _render(marker: str) -> str:
    if marker == "config-keys":
        return _config_table()
    if marker == "cli":
        return _cli()
    if marker == "api:exceptions":
        return _exceptions()
    module = importlib.import_module(marker.removeprefix("api:"))
    names = [n for n in _public(module) if not _is_exception(getattr(module, n))]
    return _grouped(module.__name__, module, names)


def _public(module: Any) -> list[str]:
    """``__all__``, or for a module without one its names that do not start with "_"."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_") and not inspect.ismodule(v)]
    return list(names)


def _cli() -> str:
    """One mkdocs-click block per ``[project.scripts]`` entry, so a moved command moves the page too."""
    text = ((_REPO or Path.cwd()) / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib

        scripts = tomllib.loads(text)["project"]["scripts"]
    except ImportError:  # Python 3.10: the one table we need, read by hand
        section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
        scripts = dict(re.findall(r'^([\w.-]+)\s*=\s*"([^"]+)"', section, re.MULTILINE))
    blocks = []
    for prog, target in scripts.items():
        module, _, command = target.partition(":")
        blocks.append(f"::: mkdocs-click\n    :module: {module}\n    :command: {command}\n"
                      f"    :prog_name: {prog}\n    :depth: 1\n    :list_subcommands: true\n    :style: plain\n")
    return "\n".join(blocks)


def _is_exception(obj: Any) -> bool:
    return inspect.isclass(obj) and issubclass(obj, BaseException)


def _block(path: str, inherited: bool = False) -> str:
    """One object, a level below the page's group headings."""
    extra = "      inherited_members: true\n" if inherited else ""
    return f"::: {path}\n    options:\n      heading_level: 3\n{extra}"


def _private_base(obj: Any, public: list[str]) -> bool:
    """A class whose members come partly from a base the reader cannot look up (not exported)."""
    return inspect.isclass(obj) and any(
        base.__module__.startswith("mem0_routed") and base.__name__ not in public for base in obj.__mro__[1:])


def _grouped(modname: str, module: Any, names: list[str]) -> str:
    groups: dict[str, list[str]] = {"Classes": [], "Functions": [], "Constants and types": []}
    for name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj):
            groups["Classes"].append(name)
        elif callable(obj) and not hasattr(obj, "__origin__"):
            groups["Functions"].append(name)
        else:
            groups["Constants and types"].append(name)
    out = []
    for title, members in groups.items():
        if members:
            out.append(f"## {title}\n")
            out.extend(_block(f"{modname}.{name}", _private_base(getattr(module, name), _public(module)))
                       for name in sorted(members, key=str.lower))
    return "\n".join(out)


def _exceptions() -> str:
    import mem0_routed

    classes = {getattr(mem0_routed, n): n for n in _public(mem0_routed) if _is_exception(getattr(mem0_routed, n))}
    children: dict[Any, list[Any]] = {None: []}
    for cls in classes:
        parent = next((base for base in cls.__mro__[1:] if base in classes), None)
        children.setdefault(parent, []).append(cls)
    tree: list[str] = []
    order: list[str] = []

    def visit(cls: Any, depth: int) -> None:
        name = classes[cls]
        order.append(name)
        tree.append(f"{'    ' * depth}- [`{name}`][mem0_routed.{name}]")
        for sub in sorted(children.get(cls, []), key=lambda c: classes[c]):
            visit(sub, depth + 1)

    for root in sorted(children[None], key=lambda c: classes[c]):
        visit(root, 0)
    blocks = "\n".join(_block(f"mem0_routed.{name}") for name in order)
    return "\n".join(tree) + "\n\n## Classes\n\n" + blocks


# --- configuration ----------------------------------------------------------------------------------

def _env_names(cls: Any) -> dict[str, list[str]]:
    """The env var names the model reads per field, asked from its own env sources: each name that
    pydantic-settings could use is offered alone to the source's ``get_field_value``, and kept only if
    the source takes it (a source that reads only some names, as a subclass may, is described right)."""
    from pydantic_settings import (
        DotEnvSettingsSource,
        EnvSettingsSource,
        InitSettingsSource,
        SecretsSettingsSource,
    )

    sources = cls.settings_customise_sources(
        cls,
        init_settings=InitSettingsSource(cls, init_kwargs={}),
        env_settings=EnvSettingsSource(cls),
        dotenv_settings=DotEnvSettingsSource(cls),
        file_secret_settings=SecretsSettingsSource(cls),
    )
    env_sources = [s for s in sources if isinstance(s, EnvSettingsSource)
                   and not isinstance(s, DotEnvSettingsSource)]  # a .env file is not the environment
    out: dict[str, list[str]] = {}
    for name, field in cls.model_fields.items():
        names: list[str] = []
        for source in env_sources:
            for _key, env_name, _complex in source._extract_field_info(field, name):
                shown = env_name if source.case_sensitive else env_name.upper()
                if shown not in names and _reads(source, field, name, env_name):
                    names.append(shown)
        out[name] = names
    return out


def _reads(source: Any, field: Any, name: str, env_name: str) -> bool:
    saved = source.env_vars
    try:
        source.env_vars = {env_name: "probe"}
        value = source.get_field_value(field, name)[0]
    finally:
        source.env_vars = saved
    return value is not None


def _type_name(annotation: Any) -> str:
    text = annotation.__name__ if isinstance(annotation, type) else repr(annotation)
    return re.sub(r"\b(?:[a-z_][\w]*\.)+(?=[A-Za-z_])", "", text)  # typing.Literal -> Literal


def _default(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        return _code(repr(field.default_factory()))
    if field.default is PydanticUndefined:
        return "required"
    return "unset" if field.default is None else _code(repr(field.default))


def _readme_meanings() -> dict[str, str]:
    """The meaning column of README's "Every config key" table, for keys without a description."""
    readme = (_REPO or Path.cwd()) / "README.md"
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8")
    start = text.find("### Every config key")
    if start < 0:
        return {}
    out: dict[str, str] = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("#"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) >= 2 and not set(cells[0]) <= set("-: "):
            for key in re.findall(r"`(\w+)`", cells[0]):
                out.setdefault(key, cells[-1])
    return out


def _cell(text: str) -> str:
    return re.sub(r"(?<!\\)\|", r"\|", text).replace("\n", " ")


def _code(text: str) -> str:
    """Inline code in a table cell: in backticks a pipe cannot be escaped, in HTML it can."""
    return "<code>" + html.escape(text).replace("|", "&#124;") + "</code>"


def _config_table() -> str:
    from mem0_routed import RouterConfig

    env = _env_names(RouterConfig)
    meanings = _readme_meanings()
    rows = ["| key and type | default | meaning |", "|---|---|---|"]
    for name, field in RouterConfig.model_fields.items():
        meaning = _cell(field.description or meanings.get(name, ""))
        codes = ", ".join(_code(e) for e in env[name]) or "none (set it in the config)"
        meaning += f'{"<br>" if meaning else ""}<span class="env-vars">env: {codes}</span>'
        rows.append(f"| `{name}`<br>{_code(_type_name(field.annotation))} | {_default(field)} | {meaning} |")
    table = '<div class="config-keys" markdown>\n\n' + "\n".join(rows) + "\n\n</div>\n"
    return table + _route_table()


def _route_table() -> str:
    """The default local model of each route (``models`` fills in from it), when the config has one."""
    config_module = sys.modules[importlib.import_module("mem0_routed").RouterConfig.__module__]
    routes = getattr(config_module, "DEFAULT_MODELS", None)
    if not isinstance(routes, dict) or not routes:
        return ""
    rows = ["| route | default local model |", "|---|---|"]
    rows += [f"| `{route}` | `{model}` |" for route, model in routes.items()]
    return ("\n## Default routes\n\n`models` starts from this table; `llm_model` replaces the general "
            "routes' model and `embedder_model` the embedding one.\n\n" + "\n".join(rows) + "\n")
