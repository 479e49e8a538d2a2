# Sourced by the other scripts: a virtual environment with the project and its test extras,
# installed from the project's own files, and the control-plane binaries (built once, cached).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${SERVICELINK_VENV:-$ROOT/.venv}"

_started=$SECONDS
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e '.[test]'
  touch "$stamp"
fi
echo "[bootstrap] python environment ready in $((SECONDS - _started))s ($VENV)" >&2

_started=$SECONDS
KUBEBUILDER_ASSETS_DIR="$("$VENV/bin/python" -m servicelink.testing.assets)"
export PATH="$VENV/bin:$PATH"
echo "[bootstrap] control-plane binaries ready in $((SECONDS - _started))s ($KUBEBUILDER_ASSETS_DIR)" >&2
