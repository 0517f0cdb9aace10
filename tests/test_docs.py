"""The documentation site: `mkdocs build --strict` passes and documents every public name and config key.

The API reference is generated from ``__all__`` and the configuration table from ``RouterConfig`` at
build time (docs/hooks/reference.py); these tests build the real site, as CI does, and read its HTML.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings_handlers") is None:
    if os.environ.get("CI"):
        raise RuntimeError("the docs extra is not installed: pip install -e '.[docs]' (scripts/setup.sh does)")
    pytest.skip("the docs extra is not installed: pip install -e '.[docs]'", allow_module_level=True)


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(config.parent), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=config.parent, check=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = _build(REPO / "mkdocs.yml", out)
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stderr[-4000:]}"
    return out


def _anchors(page: Path) -> set[str]:
    return set(re.findall(r'id="([\w.]+)"', page.read_text(encoding="utf-8")))


@pytest.mark.parametrize("module", ["mem0_routed", "mem0_routed.testing"])
def test_every_public_name_has_an_entry_in_the_api_reference(site: Path, module: str) -> None:
    """A name added to ``__all__`` is in the next build, as a rendered object with its own anchor."""
    mod = importlib.import_module(module)
    pages = (["api", "exceptions"] if module == "mem0_routed" else ["testing"])
    anchors = set().union(*(_anchors(site / "reference" / page / "index.html") for page in pages))
    missing = [name for name in mod.__all__ if f"{module}.{name}" not in anchors]
    assert not missing, f"{module}.__all__ names missing from the API reference: {missing}"


def _own_docstring(obj: Any) -> str:
    """The object's own docstring: not a base class's, nor the signature a dataclass makes up."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__") or ""
        return "" if dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}(") else doc
    return obj.__doc__ or ""


@pytest.mark.parametrize("module", ["mem0_routed", "mem0_routed.testing"])
def test_every_public_class_and_function_has_a_docstring(module: str) -> None:
    """The reference shows what the docstring says: a public class or function without one would be
    a bare signature there."""
    mod = importlib.import_module(module)
    objects = {name: getattr(mod, name) for name in mod.__all__}
    bare = [name for name, obj in objects.items()
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not _own_docstring(obj).strip()]
    assert not bare, f"public names of {module} without a docstring: {bare}"


def _config_rows(site: Path) -> dict[str, list[str]]:
    """key -> env vars, read from the built configuration page's table."""
    page = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    text = page.split('class="config-keys"', 1)[1].split("</table>", 1)[0]
    rows: dict[str, list[str]] = {}
    for row in re.findall(r"<tr>(.*?)</tr>", text, re.DOTALL):
        key = re.match(r"\s*<td><code>(\w+)</code>", row)
        if key:
            env = re.search(r'class="env-vars">(.*?)</span>', row, re.DOTALL)
            rows[key.group(1)] = re.findall(r"<code>([^<]+)</code>", env.group(1)) if env else []
    return rows


def test_the_configuration_page_lists_every_key_and_each_env_var_it_names_is_read(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``RouterConfig`` key is on the page, and every env var the page names for a key really
    sets that key: an unusable value in it either fails naming that key, or changes the key's value."""
    from mem0_routed import ConfigError, RouterConfig

    rows = _config_rows(site)
    assert sorted(rows) == sorted(RouterConfig.model_fields)
    assert "OLLAMA_URL" in rows["ollama_base_url"] and "OPENAI_API_KEY" in rows["openai_api_key"]
    every_env = {e for names in rows.values() for e in names}
    for name in every_env:
        monkeypatch.delenv(name, raising=False)
    baseline = RouterConfig.from_mapping()
    for key, names in rows.items():
        for env in names:
            with monkeypatch.context() as m:
                m.setenv(env, "not valid: \u2205")
                try:
                    value = getattr(RouterConfig.from_mapping(), key)
                except ConfigError as exc:
                    # today a key read through an alias is named by the alias (OLLAMA_URL): either names it
                    named = (exc.key or "").lower()
                    assert named in (key, env.lower()), f"{env} set an unusable value, but the error names {exc.key!r}"
                else:
                    assert value != getattr(baseline, key), f"the docs say {env} sets {key}, but it is not read"


def test_broken_docstrings_fail_the_strict_build(tmp_path: Path) -> None:
    """``--strict`` is what keeps the docstrings honest: a public function whose docstring refers to a
    name that does not exist, or one that documents a parameter it does not have, stops the build (so
    it stops CI), and the message names each problem. Built from a copy of the repo with two public
    functions added (one build for both: strict mode reports every warning, then aborts)."""
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(REPO / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("*.png", "__pycache__"))
    shutil.copytree(REPO / "mem0_routed", tmp_path / "mem0_routed", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        (tmp_path / name).symlink_to(REPO / name)
    init = tmp_path / "mem0_routed" / "__init__.py"
    init.write_text(init.read_text(encoding="utf-8") + '''

def docs_probe_ref(x: int) -> int:
    """See [the missing one][mem0_routed.Nope]."""
    return x


def docs_probe_args(x: int) -> int:
    """Probe.

    Args:
        y: not a parameter of this function.
    """
    return x


__all__ = [*__all__, "docs_probe_ref", "docs_probe_args"]
''', encoding="utf-8")
    built = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert built.returncode != 0
    for message in ("mem0_routed.Nope", "Parameter 'y' does not appear in the function signature"):
        assert message in built.stderr, built.stderr[-4000:]

def test_the_quick_start_on_the_home_page_runs(tmp_path: Path) -> None:
    """The home page's Python quick start runs as written (only the Qdrant path moved to a temp dir),
    with the real mem0 and the real ollama client against the fake Ollama server over HTTP."""
    from mem0_routed.testing import FakeOllamaServer

    text = (REPO / "docs" / "index.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert snippet is not None, "docs/index.md has no ```python quick start"
    code = snippet.group(1).replace("/tmp/qdrant", str(tmp_path / "qdrant"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEM0_", "OPENAI_", "OLLAMA_", "LLM_"))}
    with FakeOllamaServer() as ollama:
        env.update(OLLAMA_URL=ollama.url, MEM0_DIR=str(tmp_path / "mem0"), HOME=str(tmp_path),
                   XDG_DATA_HOME=str(tmp_path / "data"), MEM0_TELEMETRY="False",
                   PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
        ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                             env=env, cwd=tmp_path, check=False)
        chats = list(ollama.num_ctx_log)
    assert ran.returncode == 0, ran.stderr[-4000:]
    assert chats, "the quick start never reached the (fake) Ollama server"
    assert "Paris" in ran.stdout, f"the search did not find the memory the quick start added:\n{ran.stdout}"
