#!/usr/bin/env bash
# Build the operator's image from the Dockerfile, and the gallery's app image, as the tags that
# manifests/ and examples/gallery name. Uses a running Docker daemon if there is one; otherwise, as
# root on Linux, installs Debian's docker.io, starts a private dockerd for the build and stops it after.
# With no registry to pull the Dockerfile's base from, it makes that base from Debian with debootstrap.
#
#   hack/image.sh                 build both images
#   hack/image.sh --save DIR      also `docker save` each into DIR/<name>.tar (for `ctr images import`)
#
# Caches (dockerd's data, the base rootfs) live in ${SERVICELINK_CACHE:-~/.cache/servicelink}/image.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SERVICELINK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servicelink}/image"
image_of() { awk '$1 == "image:" {gsub(/"/, "", $2); print $2; exit}' "$1"; }
OPERATOR_IMAGE=$(image_of "$ROOT/manifests/deployment.yaml")
APP_IMAGE=$(image_of "$ROOT/examples/gallery/deployments.yaml")
SAVE_DIR=""
[[ ${1:-} == --save ]] && SAVE_DIR=$(realpath -m "${2:?--save needs a folder}")
export DOCKER_BUILDKIT=0 # Debian's docker.io has no buildx plugin: the classic builder builds this Dockerfile
say() { echo "[image] $*" >&2; }
started=$SECONDS
# One build at a time on this machine: two runs (two checkouts' hack/test.sh) would share the cached
# dockerd's socket and data, and one stopping it kills the other's build.
mkdir -p "$CACHE"
exec 9>"$CACHE/image.lock"
flock 9

DOCKERD_PID=""
stop_dockerd() {
  [[ -n $DOCKERD_PID ]] || return 0
  kill "$DOCKERD_PID" 2>/dev/null || true
  wait "$DOCKERD_PID" 2>/dev/null || true
  # dockerd leaves its default network namespace bind-mounted under its exec root
  umount "$CACHE/docker/exec/netns/default" 2>/dev/null || true
  say "stopped the dockerd this script started"
}
trap stop_dockerd EXIT

start_dockerd() { # $1: storage driver; fails when the daemon does not answer within 30 s
  mkdir -p "$CACHE/docker"
  dockerd --iptables=false --ip6tables=false --ip-forward=false --bridge=none --storage-driver="$1" \
    --data-root="$CACHE/docker/data-$1" --exec-root="$CACHE/docker/exec" \
    --pidfile="$CACHE/docker/dockerd.pid" --host="unix://$CACHE/docker/docker.sock" \
    >>"$CACHE/docker/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  export DOCKER_HOST="unix://$CACHE/docker/docker.sock"
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$DOCKERD_PID" 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}

if docker info >/dev/null 2>&1; then
  say "using the running Docker daemon"
else
  if [[ $(uname -s) != Linux || $(id -u) != 0 ]]; then
    echo "hack/image.sh: no Docker daemon answers, and starting one needs root on Linux" >&2
    exit 1
  fi
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    say "installing Debian's docker.io and debootstrap"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io debootstrap >/dev/null
  fi
  if ! start_dockerd overlay2; then
    stop_dockerd
    say "overlay2 failed (see $CACHE/docker/dockerd.log); falling back to vfs"
    start_dockerd vfs || { echo "hack/image.sh: dockerd did not start; see $CACHE/docker/dockerd.log" >&2; exit 1; }
  fi
  say "started dockerd $(docker info --format '{{.ServerVersion}}, storage {{.Driver}}')"
fi

# The Dockerfile's base, made from Debian when the daemon has none and cannot pull one.
BASE=$(awk 'toupper($1) == "FROM" {print $2; exit}' "$ROOT/Dockerfile")
# A daemon of the user's may pull it; the private one has no registry to pull from.
if ! docker image inspect "$BASE" >/dev/null 2>&1 && { [[ -n $DOCKERD_PID ]] || ! docker pull -q "$BASE" >/dev/null 2>&1; }; then
  rootfs="$CACHE/rootfs-bookworm"
  if [[ ! -x $rootfs/usr/bin/python3.11 ]]; then
    say "making $BASE from Debian bookworm with debootstrap (about 2 minutes, once)"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
      bookworm "$rootfs" >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    # The builds' pip must trust the same certificate authorities as this machine does.
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
    chroot "$rootfs" update-ca-certificates >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  fi
  tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$BASE" >/dev/null
  say "tagged the Debian rootfs as $BASE"
fi

build() { # build TAG CONTEXT
  local t=$SECONDS
  docker build -q --network host -t "$1" "$2" >/dev/null 2>"$CACHE/build.log" || { tail -40 "$CACHE/build.log" >&2; exit 1; }
  say "built $1 in $((SECONDS - t))s: $(docker image inspect "$1" --format '{{.Size}}' | numfmt --to=si)B"
}
build "$OPERATOR_IMAGE" "$ROOT"
build "$APP_IMAGE" "$ROOT/examples/gallery/app"

if [[ -n $SAVE_DIR ]]; then
  mkdir -p "$SAVE_DIR"
  docker save -o "$SAVE_DIR/servicelink.tar" "$OPERATOR_IMAGE"
  docker save -o "$SAVE_DIR/gallery-app.tar" "$APP_IMAGE"
  say "saved both images to $SAVE_DIR"
fi
say "done in $((SECONDS - started))s"
