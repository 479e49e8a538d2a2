#!/usr/bin/env bash
# Build the operator's image from the Dockerfile, and the gallery's app image, as the tags that
# manifests/ and examples/gallery name; then, if asked, tag them for your registry and push them, or
# load them into a local cluster. Uses a running Docker daemon if there is one; otherwise, as root on
# Linux, installs Debian's docker.io, starts a private dockerd for the build and stops it after. With
# no registry to pull the Dockerfile's base from, it makes that base from Debian with debootstrap.
#
#   hack/image.sh                            build both images
#   hack/image.sh --registry REGISTRY[/PATH] also tag them REGISTRY[/PATH]/servicelink:VERSION and .../gallery-app:VERSION
#   hack/image.sh --push                     push the tags (needs --registry)
#   hack/image.sh --load kind[:CLUSTER]      kind load docker-image (CLUSTER defaults to kind's own, "kind")
#   hack/image.sh --load k3d[:CLUSTER]       k3d image import (CLUSTER defaults to "k3s-default")
#   hack/image.sh --load minikube[:PROFILE]  minikube image load (PROFILE defaults to "minikube")
#   hack/image.sh --save DIR                 docker save each into DIR/<name>.tar (for `ctr images import`)
#   hack/image.sh --dry-run ...              print the docker, kind, k3d or minikube commands; run nothing
#
# VERSION is the tag manifests/deployment.yaml installs. --push, --load and --save act on the
# registry's tags when --registry is given, on the ghcr.io/servicelink tags otherwise.
# Caches (dockerd's data, the base rootfs) live in ${SERVICELINK_CACHE:-~/.cache/servicelink}/image.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SERVICELINK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servicelink}/image"
image_of() { awk '$1 == "image:" {gsub(/"/, "", $2); print $2; exit}' "$1"; }
OPERATOR_IMAGE=$(image_of "$ROOT/manifests/deployment.yaml")
APP_IMAGE=$(image_of "$ROOT/examples/gallery/deployments.yaml")
die() { echo "hack/image.sh: $*" >&2; exit 2; }
value() { [[ -n ${2:-} && ${2:-} != --* ]] || die "$1 needs a value (see the top of hack/image.sh)"; }

REGISTRY="" PUSH="" LOAD="" SAVE_DIR="" DRY_RUN=""
while (($#)); do
  case $1 in
    --registry) value "$@"; REGISTRY=${2%/}; shift 2 ;;
    --push) PUSH=1; shift ;;
    --load) value "$@"; LOAD=$2; shift 2 ;;
    --save) value "$@"; SAVE_DIR=$(realpath -m "$2"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) sed -n '2,/^# Caches/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see the top of hack/image.sh)" ;;
  esac
done
[[ -z $PUSH || -n $REGISTRY ]] || die "--push needs --registry: ghcr.io/servicelink is the project's, not yours"
# host[:port] alone, or with a path whose last part carries no tag; never a digest.
[[ $REGISTRY != *@* && $REGISTRY != *[[:space:]]* && ($REGISTRY != */* || ${REGISTRY##*/} != *:*) ]] \
  || die "--registry takes REGISTRY[/PATH], without a tag or a digest: not '$REGISTRY'"
# The tags pushed, loaded and saved: the registry's, or the ones manifests/ and the gallery install.
if [[ -n $REGISTRY ]]; then
  TAGS=("$REGISTRY/${OPERATOR_IMAGE##*/}" "$REGISTRY/${APP_IMAGE##*/}")
else
  TAGS=("$OPERATOR_IMAGE" "$APP_IMAGE")
fi
LOAD_TOOL=${LOAD%%:*} LOAD_CLUSTER=""
[[ $LOAD != *:* ]] || LOAD_CLUSTER=${LOAD#*:}
case $LOAD_TOOL in
  "" | kind | k3d | minikube) ;;
  *) die "--load takes kind[:CLUSTER], k3d[:CLUSTER] or minikube[:PROFILE], not '$LOAD'" ;;
esac
[[ $LOAD != *: ]] || die "--load $LOAD: name the cluster after the colon, or leave the colon out"
# Fail before a two-minute build, not after it.
[[ -z $LOAD_TOOL || -n $DRY_RUN ]] || command -v "$LOAD_TOOL" >/dev/null || die "--load $LOAD needs $LOAD_TOOL on the PATH"

say() { echo "[image] $*" >&2; }
show() { local line; line=$(printf '%q ' "$@"); echo "${line% }"; }
# run COMMAND...: runs it, or with --dry-run prints it as you would type it from the repository's top folder.
run() { if [[ -n $DRY_RUN ]]; then show "$@"; else "$@"; fi; }
build() { # build DOCKERFILE CONTEXT TAG...: paths relative to the repository's top folder
  local file=$1 context=$2 tag t=$SECONDS args
  shift 2
  args=(docker build --network host -f "$file")
  for tag in "$@"; do args+=(-t "$tag"); done
  args+=("$context")
  if [[ -n $DRY_RUN ]]; then show "${args[@]}"; return; fi
  (cd "$ROOT" && "${args[@]}" -q >/dev/null 2>"$CACHE/build.log") || { tail -40 "$CACHE/build.log" >&2; exit 1; }
  say "built $* in $((SECONDS - t))s: $(docker image inspect "$1" --format '{{.Size}}' | numfmt --to=si)B"
}
load_images() { # each tool's own default cluster unless one is named
  local tag
  case $LOAD_TOOL in
    kind) run kind load docker-image ${LOAD_CLUSTER:+--name "$LOAD_CLUSTER"} "${TAGS[@]}" ;;
    k3d) run k3d image import ${LOAD_CLUSTER:+--cluster "$LOAD_CLUSTER"} "${TAGS[@]}" ;;
    # One image a call: older minikube releases' image load takes one.
    minikube) for tag in "${TAGS[@]}"; do run minikube ${LOAD_CLUSTER:+--profile "$LOAD_CLUSTER"} image load "$tag"; done ;;
  esac
}
deliver() { # what comes after the build: push, load, save
  local tag
  if [[ -n $PUSH ]]; then
    for tag in "${TAGS[@]}"; do run docker push "$tag"; done
    [[ -n $DRY_RUN ]] || say "pushed ${TAGS[*]}"
  fi
  if [[ -n $LOAD ]]; then
    load_images
    [[ -n $DRY_RUN ]] || say "loaded ${TAGS[*]} into $LOAD"
  fi
  if [[ -n $SAVE_DIR ]]; then
    run mkdir -p "$SAVE_DIR"
    run docker save -o "$SAVE_DIR/servicelink.tar" "${TAGS[0]}"
    run docker save -o "$SAVE_DIR/gallery-app.tar" "${TAGS[1]}"
    [[ -n $DRY_RUN ]] || say "saved both images to $SAVE_DIR"
  fi
}
# Each image gets the tag manifests/ names (the tests' harness imports those) and the registry's.
operator_tags=("$OPERATOR_IMAGE") app_tags=("$APP_IMAGE")
[[ -z $REGISTRY ]] || operator_tags+=("${TAGS[0]}") app_tags+=("${TAGS[1]}")

if [[ -n $DRY_RUN ]]; then
  build Dockerfile . "${operator_tags[@]}"
  build examples/gallery/app/Dockerfile examples/gallery/app "${app_tags[@]}"
  deliver
  exit 0
fi

export DOCKER_BUILDKIT=0 # Debian's docker.io has no buildx plugin: the classic builder builds this Dockerfile
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

build Dockerfile . "${operator_tags[@]}"
build examples/gallery/app/Dockerfile examples/gallery/app "${app_tags[@]}"
deliver
say "done in $((SECONDS - started))s"
