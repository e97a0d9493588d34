#!/usr/bin/env bash
# Create a virtualenv with the pinned neural-tangents 0.6.5 stack.
#
# Usage: scripts/nt_env.sh [VENV_DIR]      (default: <repo>/.venv-nt)
#
# neural-tangents is archived and only works with old JAX, so it lives in its own
# environment, used only for benchmarks and for regenerating stored reference values
# (scripts/make_nt_reference.py, benchmarks/nt_timing.py).  Tests never need it.
# Idempotent: if the venv already imports the pinned versions, nothing is done.
# Note: "tensorflow-cpu<2.17" is no lighter on Linux x86-64 (2.16 pulls in the full
# tensorflow wheel anyway), so plain tensorflow is pinned.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo/.venv-nt}"
python="${NT_PYTHON:-python3.11}"

check() {
    "$venv/bin/python" - <<'PY' 2>/dev/null
import jax, neural_tangents as nt, numpy as np
assert nt.__version__ == "0.6.5" and jax.__version__ == "0.4.25", (nt.__version__, jax.__version__)
_, _, k = nt.stax.serial(nt.stax.Dense(8), nt.stax.Relu(), nt.stax.Dense(1))
print("ntk ok:", float(k(np.ones((1, 3)), None, "ntk")[0, 0]))
PY
}

if [ -x "$venv/bin/python" ] && check; then
    echo "nt_env: $venv already works"
    exit 0
fi

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --upgrade pip
"$venv/bin/python" -m pip install \
    neural-tangents==0.6.5 jax==0.4.25 jaxlib==0.4.25 tf2jax==0.3.6 \
    "numpy<2" "scipy<1.14" "tensorflow<2.17"
check
echo "nt_env: created $venv"
