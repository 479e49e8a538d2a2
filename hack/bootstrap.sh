# Sourced by the other scripts: a virtual environment with the project and its test and docs
# extras, installed from the project's own files, the control-plane binaries and helm (built once, cached).
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
  "$VENV/bin/python" -m pip install --quiet -e '.[test,docs]'
  touch "$stamp"
fi
echo "[bootstrap] python environment ready in $((SECONDS - _started))s ($VENV)" >&2

_started=$SECONDS
KUBEBUILDER_ASSETS_DIR="$("$VENV/bin/python" -m servicelink.testing.assets)"
export PATH="$VENV/bin:$PATH"
echo "[bootstrap] control-plane binaries ready in $((SECONDS - _started))s ($KUBEBUILDER_ASSETS_DIR)" >&2

# helm for the chart's tests and hack/manifests.sh: one on PATH if its version fits, else built
# once from its Go module into the cache, like the control plane.
_started=$SECONDS
HELM="$("$VENV/bin/python" -m servicelink.testing.assets --helm | tail -n 1)"
export HELM
echo "[bootstrap] helm ready in $((SECONDS - _started))s ($HELM)" >&2

# Argo Rollouts' own CRD for its integration tests, from its Go module (the file is never committed).
_started=$SECONDS
_argo_crd="$("$VENV/bin/python" -m servicelink.testing.assets --argo-rollouts-crd | tail -n 1)"
echo "[bootstrap] Argo Rollouts' CRD ready in $((SECONDS - _started))s ($_argo_crd)" >&2

# What a one-node cluster needs, made ready as root on Linux: the Debian packages (containerd,
# runc, the CNI plugins, conntrack, iptables, nftables, docker.io, debootstrap), the node binaries
# (built once into the cache) and the operator's and gallery's images (hack/image.sh, saved for containerd).
# Elsewhere nothing is installed, and the node tests say what is missing.
IMAGES_DIR="${SERVICELINK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servicelink}/image/saved"
prepare_node() {
  if [ "$(uname -s)" != Linux ] || [ "$(id -u)" != 0 ]; then
    echo "[bootstrap] not root on Linux: no node (the node tests will say so)" >&2
    return 0
  fi
  install_node_packages
  local started=$SECONDS
  "$VENV/bin/python" -m servicelink.testing.assets --node >/dev/null
  echo "[bootstrap] node binaries ready in $((SECONDS - started))s" >&2
  started=$SECONDS
  bash "$ROOT/hack/image.sh" --save "$IMAGES_DIR"
  echo "[bootstrap] images ready in $((SECONDS - started))s ($IMAGES_DIR)" >&2
}

install_node_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v nft >/dev/null || missing+=(nftables) # kube-proxy's nftables mode
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ ${#missing[@]} -gt 0 ] || return 0
  if ! command -v apt-get >/dev/null; then
    echo "[bootstrap] a node needs: ${missing[*]}; install them" >&2
    return 0
  fi
  local started=$SECONDS
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  echo "[bootstrap] installed ${missing[*]} in $((SECONDS - started))s" >&2
}
