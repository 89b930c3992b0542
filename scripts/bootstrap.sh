#!/usr/bin/env bash
# Installs everything `make run` and `make test` need on a fresh machine, and nothing
# twice: uv, the system servers (Redis, PostgreSQL, Chromium for browser tests, wrk for
# benchmarks, tesseract for OCR), the CPU torch wheel, and the locked Python environment.
#   scripts/bootstrap.sh            runtime needs (make run)
#   scripts/bootstrap.sh --test     plus what the tests use (PostgreSQL, Chromium)
#   scripts/bootstrap.sh --bench    plus the load generator
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0; want_bench=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --bench) want_test=1; want_bench=1 ;;
  esac
done

log() { printf '\033[1;34m[bootstrap]\033[0m %s\n' "$*" >&2; }

# --- uv -------------------------------------------------------------------------------
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
  log "installing uv from PyPI"
  python3 -m pip install --user --quiet "uv>=0.9,<0.14"
fi

# --- system packages (Debian) ---------------------------------------------------------
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# OCR of evidence screenshots and scanned PDFs (the worker; ADR 0110).
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr tesseract-ocr-eng)
if [ "$want_test" = 1 ]; then
  [ -x /usr/lib/postgresql/15/bin/postgres ] || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 \
    || missing+=(postgresql)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  # The load balancer in front of the replicas of tests/system/test_replicas.py.
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
fi
[ "$want_bench" = 1 ] && { command -v wrk >/dev/null 2>&1 || missing+=(wrk); }
if [ "${#missing[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "installing system packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
    log "installing system packages with sudo: ${missing[*]}"
    sudo apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "please install: ${missing[*]} (FaultMaven looks for them on PATH)"
  fi
fi
# Debian starts no server on install in containers, and we run our own on our own ports.

# --- CPU torch ------------------------------------------------------------------------
torch_whl="torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
mkdir -p .wheels
if [ ! -f ".wheels/$torch_whl" ]; then
  if [ -f "/opt/wheels/$torch_whl" ]; then
    ln "/opt/wheels/$torch_whl" ".wheels/$torch_whl" 2>/dev/null || cp "/opt/wheels/$torch_whl" .wheels/
  else
    log "downloading the CPU build of torch 2.13.0"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      --index-url "${FM_TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" \
      -d .wheels "torch==2.13.0+cpu"
  fi
fi

# --- Python environment ---------------------------------------------------------------
export UV_COMPILE_BYTECODE=1 UV_PYTHON_DOWNLOADS=never
uv sync --frozen --all-packages --quiet
# The Chroma server (`chroma run`) in an environment of its own: the services' venv has
# the thin HTTP client, which installs the same `chromadb` module (ADR 0156).
UV_PROJECT_ENVIRONMENT="$PWD/.cache/chroma-server" \
  uv sync --frozen --quiet --project faultmaven-deploy/chroma-server

# --- The embedding model, exported once to ONNX (the runtime needs no torch) ----------
# Kept while current (keyed by the model and a checksum of its packaged files); the dev
# environment has the `torch` extra that the export needs. devstack and the tests point
# FM_EMBEDDING_ONNX_DIR here.
if ! uv run --frozen --no-sync fm-embedding-export --out .cache/models >/dev/null; then
  log "ERROR: the ONNX export of the embedding model failed (fm-embedding-export)"
  exit 1
fi

# --- Web dashboard (fm-dashboard, served by the gateway at /) -------------------------
# Built when dist/ is missing or older than any of its sources; needs Node.js 20.19+.
dash=fm-dashboard
dash_stale() {
  [ ! -f "$dash/dist/index.html" ] && return 0
  [ -n "$(find "$dash/src" "$dash/public" "$dash/index.html" "$dash/package.json" \
      "$dash/package-lock.json" "$dash/vite.config.ts" "$dash/tsconfig.json" \
      -newer "$dash/dist/index.html" -print -quit 2>/dev/null)" ]
}
if dash_stale; then
  if ! command -v npm >/dev/null 2>&1 || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a===20&&b>=19)?0:1)' 2>/dev/null; then
    log "ERROR: the dashboard needs Node.js 20.19+ with npm to build (found: $(node --version 2>/dev/null || echo none)); install it from https://nodejs.org or your distribution"
    exit 1
  fi
  mkdir -p .cache
  (
    # One build at a time when several runs start together on one checkout.
    command -v flock >/dev/null 2>&1 && { exec 9>.cache/fm-dashboard-build.lock; flock 9; }
    dash_stale || exit 0
    log "building the dashboard ($dash/dist)"
    dash_log="$(mktemp)"
    if [ ! -f "$dash/node_modules/.package-lock.json" ] \
        || [ "$dash/package-lock.json" -nt "$dash/node_modules/.package-lock.json" ]; then
      (cd "$dash" && npm ci --no-audit --no-fund --loglevel=error) >"$dash_log" 2>&1 \
        || { cat "$dash_log" >&2; log "ERROR: npm ci failed in $dash"; exit 1; }
    fi
    (cd "$dash" && npm run build --silent) >"$dash_log" 2>&1 \
      || { cat "$dash_log" >&2; log "ERROR: the dashboard build failed (npm run build in $dash)"; exit 1; }
    rm -f "$dash_log"
  )
fi
