"""Zero-code activation: with mem0-routed installed, an unmodified mem0 program accepts provider "routed".

Every test runs a fresh interpreter in a throw-away venv where the package is really installed (a
wheel built from this checkout, or ``pip install -e``), because the ``.pth`` hook only runs from a
real site-packages. The programs never mention mem0_routed; they talk to the fake Ollama server of
this test process over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from mem0_routed.testing import FakeOllamaServer

try:
    from tests import venvs
except ImportError:  # run from inside tests/
    import venvs  # type: ignore[no-redef]

FINDER = "<mem0-routed autoload finder>"


def _need(what: str, exc: BaseException) -> None:
    message = f"{what}: {exc}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def wheel_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv's python with the wheel of this checkout installed."""
    root = tmp_path_factory.mktemp("autoload-wheel")
    try:
        wheel = venvs.build_wheel(root / "dist")
    except RuntimeError as exc:  # no hatchling and no index to fetch it from
        _need("could not build the wheel", exc)
    python = venvs.make_venv(root / "venv")
    venvs.pip_install(python, str(wheel))
    return python


def _run(python: Path, code: str, cwd: Path, *flags: str, **env: str) -> subprocess.CompletedProcess[str]:
    assert "mem0_routed" not in code and "mem0-routed" not in code  # the point: an unmodified program
    return subprocess.run(
        [str(python), *flags, "-c", textwrap.dedent(code)],
        check=False, capture_output=True, text=True, timeout=300, cwd=cwd,
        env=venvs.clean_env(MEM0_DIR=str(cwd / "mem0"), **env),
    )  # fmt: skip


def _config(url: str, tmp: Path) -> dict[str, object]:
    fast = {"ollama_base_url": url, "local_backend": "ollama", "read_timeout_s": 30.0, "max_retries": 1}
    return {
        "llm": {"provider": "routed", "config": fast},
        "embedder": {"provider": "routed", "config": {**fast, "embedding_dims": 768}},
        "vector_store": {"provider": "qdrant", "config": {
            "path": str(tmp / "qdrant"), "embedding_model_dims": 768, "collection_name": "auto"}},
        "history_db_path": str(tmp / "history.db"),
    }  # fmt: skip


_MEMORY = """
import json
from mem0 import Memory
m = Memory.from_config(json.loads({config!r}))
added = m.add([{{"role": "user", "content": "My name is Alice and I live in Lisbon."}}], user_id="alice")
found = m.search("Where does Alice live?", filters={{"user_id": "alice"}}, top_k=3)
print(json.dumps({{"llm": type(m.llm).__module__, "embedder": type(m.embedding_model).__module__,
                  "added": len(added["results"]), "found": [h["memory"] for h in found["results"]]}}))
m.vector_store.client.close()
"""

_ASYNC_MEMORY = """
import asyncio, json
from mem0 import AsyncMemory

async def main():
    m = AsyncMemory.from_config(json.loads({config!r}))
    added = await m.add([{{"role": "user", "content": "My name is Alice and I live in Lisbon."}}], user_id="alice")
    found = await m.search("Where does Alice live?", filters={{"user_id": "alice"}}, top_k=3)
    print(json.dumps({{"llm": type(m.llm).__module__, "added": len(added["results"]),
                      "found": [h["memory"] for h in found["results"]]}}))
    m.vector_store.client.close()

asyncio.run(main())
"""


def _last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_unmodified_program_builds_a_routed_memory(
    wheel_python: Path, ollama_server: FakeOllamaServer, tmp_path: Path
) -> None:
    code = _MEMORY.format(config=json.dumps(_config(ollama_server.url, tmp_path)))
    out = _last_json(_run(wheel_python, code, tmp_path))
    assert out["llm"] == out["embedder"] == "mem0_routed._mem0"
    assert out["added"] and any("Lisbon" in m for m in out["found"]), out  # type: ignore[attr-defined]
    assert ollama_server.requests_to("/api/chat") and ollama_server.requests_to("/api/embed")


def test_unmodified_async_program(wheel_python: Path, ollama_server: FakeOllamaServer, tmp_path: Path) -> None:
    code = _ASYNC_MEMORY.format(config=json.dumps(_config(ollama_server.url, tmp_path)))
    out = _last_json(_run(wheel_python, code, tmp_path))
    assert out["llm"] == "mem0_routed._mem0"
    assert out["added"] and any("Lisbon" in m for m in out["found"]), out  # type: ignore[attr-defined]


_START_THEN_CONFIG = """
import json, sys
start = {"loaded": sorted(m for m in sys.modules if m.startswith("mem0")),  # and the plugin
         "finders": [repr(f) for f in sys.meta_path]}
from mem0.configs.base import MemoryConfig
try:
    cfg = MemoryConfig(llm={"provider": "routed", "config": {}}, embedder={"provider": "routed", "config": {}})
    result = cfg.llm.provider
except Exception as exc:
    result = f"{type(exc).__name__}: {exc}"
print(json.dumps({"start": start, "result": result, "finders": [repr(f) for f in sys.meta_path]}))
"""


def test_start_imports_nothing_and_the_finder_registers_routed_then_removes_itself(
    wheel_python: Path, tmp_path: Path
) -> None:
    out = _last_json(_run(wheel_python, _START_THEN_CONFIG, tmp_path))
    assert out["start"]["loaded"] == [] and FINDER in out["start"]["finders"]  # type: ignore[index]
    assert out["result"] == "routed"
    assert FINDER not in out["finders"]


def test_opt_out(wheel_python: Path, tmp_path: Path) -> None:
    out = _last_json(_run(wheel_python, _START_THEN_CONFIG, tmp_path, MEM0_ROUTED_AUTOLOAD="0"))
    assert FINDER not in out["start"]["finders"]  # type: ignore[index]
    assert "Unsupported LLM provider: routed" in str(out["result"])
    assert FINDER not in out["finders"]


@pytest.mark.parametrize(("value", "on"), [
    ("0", False), ("false", False), ("OFF", False), (" no ", False), ("1", True), ("yes", True), ("", True),
])  # fmt: skip
def test_opt_out_spellings(monkeypatch: pytest.MonkeyPatch, value: str, on: bool) -> None:
    """What the .pth hook reads at start (the opt-out itself runs in a fresh interpreter above)."""
    from mem0_routed import _autoload

    monkeypatch.setenv("MEM0_ROUTED_AUTOLOAD", value)
    assert _autoload.enabled() is on


def test_harmless_without_mem0(tmp_path_factory: pytest.TempPathFactory, wheel_python: Path, tmp_path: Path) -> None:
    """A venv with only mem0-routed (no mem0, no dependencies): unrelated programs run, silently."""
    root = tmp_path_factory.mktemp("autoload-bare")
    python = venvs.make_venv(root / "venv", with_deps=False)
    (wheel,) = (wheel_python.parents[2] / "dist").glob("*.whl")
    venvs.pip_install(python, str(wheel))
    proc = _run(python, "import json, sys; print(json.dumps({'ok': True, 'finders': [repr(f) for f in sys.meta_path]}))", tmp_path)
    assert _last_json(proc)["ok"] is True and proc.stderr == ""
    proc = _run(python, "import mem0", tmp_path)
    assert proc.returncode == 1 and "ModuleNotFoundError: No module named 'mem0'" in proc.stderr
    assert "Traceback" in proc.stderr and "autoload" not in proc.stderr  # the usual error, nothing of ours


@pytest.mark.parametrize("flags", [(), ("-W", "error")])
def test_an_unsupported_mem0_is_a_warning_not_a_crash(wheel_python: Path, tmp_path: Path, flags: tuple[str, ...]) -> None:
    """A 'mem0' without the internals we patch (a future release, or someone's own module); even with
    warnings turned into errors, mem0's import goes through."""
    fake = tmp_path / "fake"
    (fake / "mem0").mkdir(parents=True)
    (fake / "mem0" / "__init__.py").write_text("VERSION = 'not the real one'\n")
    proc = _run(wheel_python, "import mem0; print(mem0.VERSION)", tmp_path, *flags, PYTHONPATH=str(fake))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "not the real one"
    assert "RuntimeWarning" in proc.stderr and "could not register provider 'routed'" in proc.stderr
    assert "MEM0_ROUTED_AUTOLOAD=0" in proc.stderr


@pytest.fixture(scope="module")
def editable_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv with ``pip install -e`` of this checkout, the way scripts/setup.sh installs it."""
    root = tmp_path_factory.mktemp("autoload-editable")
    python = venvs.make_venv(root / "venv")
    try:
        venvs.pip_install(python, "-e", str(venvs.REPO))
    except RuntimeError as exc:
        _need("could not make an editable install", exc)
    yield python


def test_editable_install_activates_too(editable_python: Path, tmp_path: Path) -> None:
    out = _last_json(_run(editable_python, _START_THEN_CONFIG, tmp_path))
    assert out["start"]["loaded"] == [] and FINDER in out["start"]["finders"]  # type: ignore[index]
    assert out["result"] == "routed" and FINDER not in out["finders"]


# --- in-process: the finder itself ---------------------------------------------------------------------


def test_finder_answers_only_for_mem0_and_wraps_its_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mem0_routed import _autoload

    finder = _autoload._Finder()
    assert finder.find_spec("json") is None and finder.find_spec("mem0.configs") is None
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    spec = finder.find_spec("mem0")
    assert spec is not None and isinstance(spec.loader, _autoload._Loader)
    assert spec.loader.is_package("mem0")  # everything else is delegated to mem0's own loader


def test_install_is_idempotent_and_respects_the_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mem0_routed import _autoload

    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.delitem(sys.modules, "mem0")  # as at interpreter start (restored afterwards)
    monkeypatch.setenv("MEM0_ROUTED_AUTOLOAD", "off")
    _autoload.install()
    assert not _autoload.installed()
    monkeypatch.setenv("MEM0_ROUTED_AUTOLOAD", "1")
    _autoload.install()
    _autoload.install()
    assert [repr(f) for f in sys.meta_path].count(FINDER) == 1
    _autoload.uninstall()
    assert not _autoload.installed()


_REAL = """
import json
from mem0 import Memory
m = Memory.from_config(json.loads({config!r}))
added = m.add([{{"role": "user", "content": "My name is Alice and I live in Lisbon."}}], user_id="alice")
found = m.search("Where does Alice live?", filters={{"user_id": "alice"}}, top_k=3)
metrics = m.llm.router.get_metrics()
print(json.dumps({{"llm": type(m.llm).__module__, "added": len(added["results"]), "found": len(found["results"]),
                  "local": metrics["local_queries"], "external": metrics["external_queries"]}}))
m.vector_store.client.close()
"""


@pytest.mark.realollama
def test_unmodified_program_with_a_real_ollama(wheel_python: Path, real_ollama_url: str, tmp_path: Path) -> None:
    """The same zero-code program against a real Ollama and model (SmolLM2-135M, which also embeds)."""
    router = {"ollama_base_url": real_ollama_url, "local_backend": "ollama", "model": "smollm2:135m"}
    config = {
        "llm": {"provider": "routed", "config": router},
        "embedder": {"provider": "routed", "config": {**router, "embedding_dims": 576}},
        "vector_store": {"provider": "qdrant", "config": {
            "path": str(tmp_path / "qdrant"), "embedding_model_dims": 576, "collection_name": "real"}},
        "history_db_path": str(tmp_path / "history.db"),
    }  # fmt: skip
    out = _last_json(_run(wheel_python, _REAL.format(config=json.dumps(config)), tmp_path))
    assert out["llm"] == "mem0_routed._mem0"
    assert out["local"] == 1 and out["external"] == 0  # mem0's extraction call ran on the real model
    assert out["added"] >= out["found"] >= 0  # a small model may extract nothing; nothing crashed
