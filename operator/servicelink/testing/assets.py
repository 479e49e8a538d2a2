"""Find or build the control-plane, node and Helm binaries, and find Argo Rollouts' CRD (does I/O).

The control plane is etcd, kube-apiserver, kube-controller-manager and kubectl;
a node adds kubelet, kube-proxy, kube-scheduler, crictl, CoreDNS and a pause
binary; the chart's tests add ``helm``. Order of preference:
``KUBEBUILDER_ASSETS`` (the envtest convention), ``SERVICELINK_NODE_ASSETS`` or
a ``helm`` on PATH whose version fits, then a complete cache folder keyed by
version, then a build from the official Go modules through the Go module proxy
into that cache. Nothing is downloaded from release pages and nothing lands in
the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.5"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
CRICTL_VERSION = "v1.34.0"
COREDNS_VERSION = "v1.14.7"
NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler", "crictl", "coredns", "pause")
COMPLETE_MARKER = ".complete"
HELM_VERSION = "v3.22.0"
# A helm on PATH is used from this version on, below 4: 3.18 moved values.schema.json checks to the
# validator (jsonschema/v6) whose messages the chart's tests read, and Helm 4 changed the CLI.
HELM_MINIMUM = (3, 18)
# Argo Rollouts, for its published Rollout CRD: the integration tests install it, no Argo controller runs.
ARGO_ROLLOUTS_VERSION = "v1.8.3"
ARGO_ROLLOUTS_MODULE = "github.com/argoproj/argo-rollouts"

_KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kubectl")
_NODE_KUBE_COMMANDS = ("kubelet", "kube-proxy", "kube-scheduler")
# CoreDNS with only the plugins cluster DNS needs: the full build pulls in every cloud SDK.
_COREDNS_MAIN = """package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"ready", "health", "errors", "cache", "kubernetes", "forward"}
}

func main() { coremain.Run() }
"""
# The pod sandbox's process: waits for SIGTERM and reaps the zombies it inherits.
_PAUSE_MAIN = """package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for received := range signals {
		if received != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
"""
_STAGING_REQUIRE = re.compile(r"^\s*(k8s\.io/[\w.\-/]+)\s+v0\.0\.0\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Assets:
    """A folder holding the four control-plane binaries."""

    directory: Path

    def path(self, name: str) -> str:
        """Return the absolute path of binary ``name`` (one of ``BINARIES``)."""
        return str(self.directory / name)


def default_cache_root() -> Path:
    """Return the cache root: ``$SERVICELINK_CACHE`` or ``~/.cache/servicelink``."""
    override = os.environ.get("SERVICELINK_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "servicelink"


def cache_dir(root: Path | None = None) -> Path:
    """Return the versioned folder the built control-plane binaries live in."""
    base = root if root is not None else default_cache_root()
    return base / "control-plane" / f"{KUBERNETES_VERSION}-etcd{ETCD_VERSION}"


def node_cache_dir(root: Path | None = None) -> Path:
    """Return the versioned folder the built node binaries live in."""
    base = root if root is not None else default_cache_root()
    return base / "node" / f"{KUBERNETES_VERSION}-crictl{CRICTL_VERSION}-coredns{COREDNS_VERSION}"


def helm_cache_dir(root: Path | None = None) -> Path:
    """Return the versioned folder the built ``helm`` lives in."""
    base = root if root is not None else default_cache_root()
    return base / "helm" / HELM_VERSION


def _holds_all(directory: Path, names: tuple[str, ...] = BINARIES) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in names)


def _find(variable: str, directory: Path, names: tuple[str, ...]) -> Assets | None:
    """Return ``$variable``'s folder, else ``directory`` once complete, else None; raise if ``$variable`` lacks one."""
    given = os.environ.get(variable)
    if given:
        missing = [n for n in names if not os.access(Path(given) / n, os.X_OK)]
        if missing:
            raise RuntimeError(
                f"{variable}={given} lacks {', '.join(missing)}; point it at a folder with all of " + ", ".join(names)
            )
        return Assets(Path(given))
    if (directory / COMPLETE_MARKER).exists() and _holds_all(directory, names):
        return Assets(directory)
    return None


def find_assets() -> Assets | None:
    """Return the control-plane binaries if ``KUBEBUILDER_ASSETS`` or the cache holds them all, else None.

    Raises ``RuntimeError`` naming the folder when ``KUBEBUILDER_ASSETS`` is set but lacks a binary.
    """
    return _find("KUBEBUILDER_ASSETS", cache_dir(), BINARIES)


def ensure_assets(*, log: bool = True) -> Assets:
    """Return the binaries, building them into the cache when none are found.

    Raises like ``find_assets``, and ``subprocess.CalledProcessError`` when a build fails.
    """
    found = find_assets()
    if found is not None:
        return found
    directory = cache_dir()
    build_assets(directory, log=log)
    return Assets(directory)


def _say(message: str, *, log: bool, what: str = "control-plane build") -> None:
    if log:
        print(f"[{what}] {message}", file=sys.stderr, flush=True)


def _go(args: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(["go", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CGO_ENABLED="0",
        GOTOOLCHAIN="local",
        GOFLAGS="-mod=mod -buildvcs=false",
        GOWORK="off",
        # Shared by the control-plane and node builds: both compile most of k8s.io.
        GOCACHE=str(default_cache_root() / "gocache"),
    )
    return env


def _staging_replaces(kubernetes_gomod: str) -> list[str]:
    """Map each ``k8s.io/<staging> v0.0.0`` require to its published ``v0.<minor>.<patch>``."""
    published = "v0." + KUBERNETES_VERSION.removeprefix("v1.")
    modules = sorted(set(_STAGING_REQUIRE.findall(kubernetes_gomod)))
    return [f"replace {module} => {module} {published}" for module in modules]


def _version_ldflags() -> str:
    major, minor, _ = KUBERNETES_VERSION.removeprefix("v").split(".")
    values = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{name}={value}" for name, value in values.items()]
    return " ".join(flags)


def _build_kubernetes(
    work: Path, out: Path, env: dict[str, str], *, commands: tuple[str, ...] = _KUBE_COMMANDS, log: bool
) -> None:
    module = work / "kubernetes"
    module.mkdir(parents=True, exist_ok=True)
    _say(f"resolving k8s.io/kubernetes@{KUBERNETES_VERSION}", log=log)
    info = json.loads(_go(["mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"], cwd=module, env=env))
    replaces = _staging_replaces(Path(info["GoMod"]).read_text())
    (module / "go.mod").write_text(
        "module servicelink.local/control-plane\n\ngo 1.24.0\n\n"
        f"require k8s.io/kubernetes {KUBERNETES_VERSION}\n\n" + "\n".join(replaces) + "\n"
    )
    packages = [f"k8s.io/kubernetes/cmd/{name}" for name in commands]
    _say(f"fetching modules for {', '.join(commands)} ({len(replaces)} staging replaces)", log=log)
    # The version on every path: a bare path would upgrade k8s.io/kubernetes to the latest.
    _go(["get", "-tool", *(f"{p}@{KUBERNETES_VERSION}" for p in packages)], cwd=module, env=env)
    for name, package in zip(commands, packages, strict=True):
        started = time.monotonic()
        _say(f"building {name}", log=log)
        _go(
            ["build", "-trimpath", "-ldflags", _version_ldflags(), "-o", str(out / name), package],
            cwd=module,
            env=env,
        )
        _say(f"built {name} in {time.monotonic() - started:.0f}s", log=log)


def _build_etcd(work: Path, out: Path, env: dict[str, str], *, log: bool) -> None:
    module = work / "etcd"
    module.mkdir(parents=True, exist_ok=True)
    (module / "go.mod").write_text(
        f"module servicelink.local/etcd\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n"
    )
    started = time.monotonic()
    _say(f"building etcd {ETCD_VERSION}", log=log)
    _go(["get", "-tool", f"go.etcd.io/etcd/server/v3@{ETCD_VERSION}"], cwd=module, env=env)
    _go(
        ["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "etcd"), "go.etcd.io/etcd/server/v3"],
        cwd=module,
        env=env,
    )
    _say(f"built etcd in {time.monotonic() - started:.0f}s", log=log)


def _build(
    directory: Path,
    *,
    variable: str,
    names: tuple[str, ...],
    steps: Callable[[Path, dict[str, str]], None],
    log: bool,
) -> None:
    """Run the build ``steps`` into ``directory`` and mark it complete.

    Builds in a sibling work folder and only then writes the marker, so an
    interrupted build is redone rather than trusted.
    """
    if shutil.which("go") is None:
        raise RuntimeError(
            f"no {', '.join(names)}: set {variable} to a folder holding them all, "
            "or install Go so they can be built from the official modules"
        )
    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / COMPLETE_MARKER).unlink(missing_ok=True)
    work = directory.parent / f"{directory.name}.work"
    _say(f"building {', '.join(names)} into {directory}", log=log)
    try:
        steps(work, _go_env())
    except subprocess.CalledProcessError as error:
        _say(f"failed: {' '.join(error.cmd)}\n{error.stderr}", log=log)
        raise
    (directory / COMPLETE_MARKER).write_text(f"{directory.name}\n")
    shutil.rmtree(work, ignore_errors=True)
    _say(f"done in {time.monotonic() - started:.0f}s", log=log)


def build_assets(directory: Path, *, log: bool = True) -> None:
    """Build the control plane's binaries (Kubernetes and etcd) into ``directory``."""

    def steps(work: Path, env: dict[str, str]) -> None:
        if not os.access(directory / "etcd", os.X_OK):
            _build_etcd(work, directory, env, log=log)
        _build_kubernetes(work, directory, env, log=log)

    _build(directory, variable="KUBEBUILDER_ASSETS", names=BINARIES, steps=steps, log=log)


def find_node_assets() -> Assets | None:
    """Return the node binaries if ``SERVICELINK_NODE_ASSETS`` or the cache holds them all, else None.

    Raises ``RuntimeError`` naming the folder when ``SERVICELINK_NODE_ASSETS`` is set but lacks a binary.
    """
    return _find("SERVICELINK_NODE_ASSETS", node_cache_dir(), NODE_BINARIES)


def ensure_node_assets(*, log: bool = True) -> Assets:
    """Return the node binaries, building them into the cache when none are found; raises like ``ensure_assets``."""
    found = find_node_assets()
    if found is not None:
        return found
    directory = node_cache_dir()

    def steps(work: Path, env: dict[str, str]) -> None:
        _build_small(work / "pause", directory / "pause", env, main_go=_PAUSE_MAIN, log=log)
        crictl = f"sigs.k8s.io/cri-tools/cmd/crictl@{CRICTL_VERSION}"
        _build_small(work / "crictl", directory / "crictl", env, package=crictl, log=log)
        coredns = (f"github.com/coredns/coredns@{COREDNS_VERSION}",)
        _build_small(work / "coredns", directory / "coredns", env, main_go=_COREDNS_MAIN, requires=coredns, log=log)
        if not _holds_all(directory, _NODE_KUBE_COMMANDS):
            _build_kubernetes(work, directory, env, commands=_NODE_KUBE_COMMANDS, log=log)

    _build(directory, variable="SERVICELINK_NODE_ASSETS", names=NODE_BINARIES, steps=steps, log=log)
    return Assets(directory)


def _build_small(
    module: Path,
    out: Path,
    env: dict[str, str],
    *,
    main_go: str = "",
    requires: tuple[str, ...] = (),
    package: str = "",
    log: bool,
) -> None:
    """Build one small Go program: our own ``main_go`` with ``requires``, or a published ``package@version``."""
    if os.access(out, os.X_OK):
        return
    started = time.monotonic()
    module.mkdir(parents=True, exist_ok=True)
    (module / "go.mod").write_text(f"module servicelink.local/{out.name}\n\ngo 1.24.0\n")
    if main_go:
        (module / "main.go").write_text(main_go)
    for requirement in requires:
        _go(["get", requirement], cwd=module, env=env)
    if requires:
        _go(["mod", "tidy"], cwd=module, env=env)
    if package:
        _go(["get", package], cwd=module, env=env)
    target = package.partition("@")[0] or "."
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), target], cwd=module, env=env)
    _say(f"built {out.name} in {time.monotonic() - started:.0f}s", log=log)


def helm_version_fits(version: str) -> bool:
    """Return whether a ``helm version`` string such as ``v3.22.0`` is a 3.x at or past ``HELM_MINIMUM``."""
    found = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+].*)?", version.strip())
    if found is None:
        return False
    major, minor = int(found.group(1)), int(found.group(2))
    return major == HELM_MINIMUM[0] and minor >= HELM_MINIMUM[1]


def _helm_version(binary: str) -> str:
    done = subprocess.run(
        [binary, "version", "--template", "{{.Version}}"], capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def find_helm(*, log: bool = False) -> str | None:
    """Return the path of a ``helm`` that fits: the one on PATH if its version does, else the cached build.

    Returns None when neither is there; a helm on PATH of another version is passed over (and said so).
    """
    on_path = shutil.which("helm")
    if on_path:
        version = _helm_version(on_path)
        if helm_version_fits(version):
            return on_path
        _say(
            f"passing over {on_path} ({version or 'no version'}): the tests need 3.{HELM_MINIMUM[1]} to 3.x",
            log=log,
            what="helm",
        )
    binary = helm_cache_dir() / "helm"
    if (helm_cache_dir() / COMPLETE_MARKER).exists() and os.access(binary, os.X_OK):
        return str(binary)
    return None


def ensure_helm(*, log: bool = True) -> str:
    """Return the path of a fitting ``helm``, building ``HELM_VERSION`` into the cache when none is found.

    Raises ``RuntimeError`` without Go, and ``subprocess.CalledProcessError`` when the build fails.
    """
    found = find_helm(log=log)
    if found is not None:
        return found
    directory = helm_cache_dir()
    if shutil.which("go") is None:
        raise RuntimeError(
            f"no helm: put helm 3.{HELM_MINIMUM[1]} or later (3.x) on PATH, "
            f"or install Go so helm {HELM_VERSION} can be built from its module"
        )
    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / COMPLETE_MARKER).unlink(missing_ok=True)
    work = directory.parent / f"{directory.name}.work"
    work.mkdir(parents=True, exist_ok=True)
    env = _go_env()
    _say(f"building helm {HELM_VERSION} into {directory}", log=log, what="helm")
    try:
        (work / "go.mod").write_text("module servicelink.local/helm\n\ngo 1.24.0\n")
        _go(["get", "-tool", f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"], cwd=work, env=env)
        client_go = _go(["list", "-m", "-f", "{{.Version}}", "k8s.io/client-go"], cwd=work, env=env).strip()
        _go(
            [
                "build",
                "-trimpath",
                "-ldflags",
                _helm_ldflags(client_go),
                "-o",
                str(directory / "helm"),
                "helm.sh/helm/v3/cmd/helm",
            ],
            cwd=work,
            env=env,
        )
    except subprocess.CalledProcessError as error:
        _say(f"failed: {' '.join(error.cmd)}\n{error.stderr}", log=log, what="helm")
        raise
    (directory / COMPLETE_MARKER).write_text(f"{HELM_VERSION}\n")
    shutil.rmtree(work, ignore_errors=True)
    _say(f"built helm in {time.monotonic() - started:.0f}s", log=log, what="helm")
    return str(directory / "helm")


def argo_rollouts_crd(*, log: bool = True) -> Path:
    """Return the path of Argo Rollouts' own Rollout CRD, ``manifests/crds/rollout-crd.yaml`` of its module.

    ``go mod download`` finds the module at ``ARGO_ROLLOUTS_VERSION`` in the Go module cache, or fetches it
    through the Go module proxy (checked against the checksum database). The file stays there: it is a
    third party's, never copied into the repository. Raises ``RuntimeError`` without Go, and
    ``subprocess.CalledProcessError`` when the download fails.
    """
    if shutil.which("go") is None:
        raise RuntimeError(f"no Go: the Argo Rollouts CRD is read from the module {ARGO_ROLLOUTS_MODULE}")
    module = f"{ARGO_ROLLOUTS_MODULE}@{ARGO_ROLLOUTS_VERSION}"
    _say(f"finding {module}", log=log, what="argo rollouts")
    info = json.loads(_go(["mod", "download", "-json", module], cwd=Path.home(), env=_go_env()))
    return Path(info["Dir"]) / "manifests" / "crds" / "rollout-crd.yaml"


def _helm_ldflags(client_go: str) -> str:
    """Return the flags Helm's Makefile sets: its version, and the Kubernetes version of its client-go.

    Without them ``helm version`` says ``v3.22`` and ``helm template`` assumes Kubernetes 1.20.
    """
    minor = client_go.removeprefix("v").split(".")[1]
    flags = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"]
    flags.append("-X helm.sh/helm/v3/internal/version.gitTreeState=clean")
    for package in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {package}.k8sVersionMajor=1", f"-X {package}.k8sVersionMinor={minor}"]
    return " ".join(flags)


def main() -> None:
    """Ensure the control-plane binaries and print their folder.

    ``--node`` adds a line with the node binaries' folder, ``--helm`` a line with the path of ``helm``,
    ``--argo-rollouts-crd`` a line with the path of Argo Rollouts' CRD (fetched now, with the builds,
    so that the tests reach no registry).
    """
    started = time.monotonic()
    print(ensure_assets().directory)
    if "--node" in sys.argv[1:]:
        print(ensure_node_assets().directory)
    if "--helm" in sys.argv[1:]:
        print(ensure_helm())
    if "--argo-rollouts-crd" in sys.argv[1:]:
        print(argo_rollouts_crd(log=False))
    print(f"[control-plane build] binaries ready in {time.monotonic() - started:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
