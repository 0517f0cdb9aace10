"""Throw-away virtualenvs with mem0-routed really installed (wheel or editable), for tests and benchmarks
of what happens at interpreter start: the ``.pth`` hook only runs in a real site-packages.

The venv sees the running interpreter's packages (mem0, pydantic, ...) through one path line in a
``zz_*.pth`` file; path lines do not run the ``.pth`` files of that directory, so the only
mem0-routed in the venv is the one installed here. The shared development venv is never touched.
"""

from __future__ import annotations

import importlib.util
import os
import site
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


def build_wheel(out: Path) -> Path:
    """``pip wheel`` of this checkout (hatchling from this env if present, else pip's isolated build)."""
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.insert(4, "--no-build-isolation")
    _run(cmd)
    (wheel,) = out.glob("mem0_routed-*.whl")
    return wheel


def make_venv(where: Path, *, with_deps: bool = True) -> Path:
    """A venv (no pip) at ``where``; returns its python. ``with_deps``: see this env's packages."""
    _run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(where)])
    python = where / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    if with_deps:
        deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
        (purelib / "zz_mem0_routed_test_deps.pth").write_text("\n".join(deps) + "\n")
    return python


def pip_install(python: Path, *args: str) -> None:
    """Install into the venv of ``python`` with this env's pip (``pip --python``)."""
    cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", *args]
    if "-e" in args and importlib.util.find_spec("hatchling") is not None and importlib.util.find_spec("editables"):
        cmd.append("--no-build-isolation")
    _run(cmd)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a fresh interpreter: no PYTHONPATH (it would shadow the installed copy)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEM0_ROUTED_AUTOLOAD")}
    env.update({"MEM0_TELEMETRY": "False", "MEM0_ROUTED_LEDGER": "memory"})
    env.update(extra)
    return env
