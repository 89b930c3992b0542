#!/bin/sh
# Used by faultmaven-deploy/Dockerfile (the `models` stage): when `uv export "$@"` needs
# the CPU torch wheel that uv.lock pins as a file in .wheels/ (README "CPU torch") and the
# wheel is not there, download it from FM_TORCH_INDEX_URL (the PyTorch CPU index or a
# mirror). Never CUDA.
set -eu
wheel=$(uv export --frozen --no-dev --no-hashes "$@" \
          | sed -n 's|^\./\.wheels/\(torch-[^ ]*\.whl\).*|\1|p')
if [ -n "$wheel" ] && [ ! -f ".wheels/$wheel" ]; then
  pip download --no-cache-dir --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --index-url "${FM_TORCH_INDEX_URL:?}" -d .wheels "torch==$(echo "$wheel" | cut -d- -f2)"
fi
