#!/usr/bin/env bash
# Create or refresh .venv with Python 3.10 and the pinned stack (constraints.txt).
# Idempotent: when constraints.txt and setup.py are unchanged since the last install and the
# package imports, it returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LLM4MSR_VENV:-.venv}"

find_python310() {
  local c
  for c in "${PYTHON310:-}" python3.10 \
           "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10.*/bin/python3.10 \
           /usr/local/bin/python3.10 /usr/bin/python3.10; do
    [ -n "$c" ] || continue
    # A pyenv shim can exist and still fail, so run it rather than just testing the path.
    if "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1; then
      echo "$c"; return 0
    fi
  done
  return 1
}

stamp() { cat constraints.txt setup.py scripts/setup_env.sh | sha256sum | cut -d' ' -f1; }

if [ -x "$VENV/bin/python" ] && [ -f "$VENV/.llm4msr-install-stamp" ] \
   && [ "$(cat "$VENV/.llm4msr-install-stamp")" = "$(stamp)" ] \
   && "$VENV/bin/python" -c 'import llm4msr_tf' >/dev/null 2>&1; then
  echo "setup: $VENV is up to date"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! PY="$(find_python310)"; then
    echo "setup: error: Python 3.10 not found (TFX 1.16 needs Python < 3.11)." >&2
    echo "setup: fix: install it (e.g. 'pyenv install 3.10.13', or 'apt-get install python3.10 python3.10-venv')," >&2
    echo "setup:      or point PYTHON310=/path/to/python3.10 at one." >&2
    exit 1
  fi
  echo "setup: creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi

echo "setup: installing the pinned stack into $VENV (first time: several minutes, torch is large)"
"$VENV/bin/python" -m pip install -q --upgrade "pip==24.3.1"
# bench: torch-rechub, the peer library the benchmarks (and their tests) compare against.
"$VENV/bin/python" -m pip install -c constraints.txt -e ".[dev,bench]"
stamp > "$VENV/.llm4msr-install-stamp"
"$VENV/bin/python" -c 'import llm4msr_tf, tensorflow as tf; import tf_keras; print("setup: ok: tensorflow", tf.__version__, "with tf.keras =", tf.keras.__name__, tf_keras.__version__)'
