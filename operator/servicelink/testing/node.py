"""A one-node Kubernetes on this machine, for tests and the demo, and as ``hack/cluster.sh up|down`` (does I/O).

On top of the local control plane (etcd, kube-apiserver, kube-controller-manager
with the node-lifecycle and root-CA publisher controllers) it runs containerd,
the kubelet, kube-scheduler, kube-proxy (nftables mode), the CNI bridge and
CoreDNS, so pods run, resolve Service names and reach ClusterIPs and the API
server. Images are imported into containerd from tarballs; nothing is pulled.

All of it runs in a network namespace of its own, whose one link to the host is
a veth pair on a /30 of the benchmarking range 198.18.0.0/15. Inside there is
no default route: a packet for anything but that /30, the pod range and a
Service that kube-proxy knows is refused inside, never sent off the machine. The
host's firewall, routes and network sysctls are never touched; the host reaches
the API server at ``NODE_ADDRESS`` over the link.

One node per machine: the link's names and the kubelet's cgroups are global.
Every process is detached and recorded by PID under the state folder, so
``down`` works from any process, after any component was killed, any number
of times, and leaves the host as ``up`` found it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from servicelink.testing.assets import Assets, ensure_assets, ensure_node_assets, find_assets, find_node_assets
from servicelink.testing.controlplane import run_kubectl, start_control_plane

NODE_NAME = "servicelink-node"
POD_CIDR = "10.244.0.0/24"
DNS_IP = "10.96.0.10"  # in the control plane's service range, 10.96.0.0/16
PAUSE_IMAGE = "localhost/servicelink/pause:1"
COREDNS_IMAGE = "localhost/servicelink/coredns:1"
# The node's one link to the host: the host's end, the node's end, their addresses and subnet.
HOST_LINK, NODE_LINK, SERVICES_LINK = "sl-host", "sl-node", "sl-services"
SERVICE_RANGE = "10.96.0.0/16"  # the control plane's --service-cluster-ip-range
HOST_ADDRESS, NODE_ADDRESS = "198.18.0.1", "198.18.0.2"
LINK_SUBNET = "198.18.0.0/30"
# Where the cluster's addresses live: the Service range and the pod range, routed only inside.
CLUSTER_RANGES = ("10.96.0.0/12", "10.244.0.0/16")
_COMPONENTS = ("containerd", "kubelet", "kube-scheduler", "kube-proxy")
_CONTROL_PLANE = ("kube-controller-manager", "kube-apiserver", "etcd")
# The kubelet always sets these (no opt-out), and no namespace holds them: saved and restored.
# The net.* ones that the kubelet, kube-proxy and the CNI plugins set are the node namespace's own.
_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)


class NodeError(RuntimeError):
    """The node cannot start here; the message says why and what to do."""


def default_state_dir() -> Path:
    """Return the node's one state folder: ``$SERVICELINK_NODE_DIR`` or ``/tmp/servicelink-node``."""
    return Path(os.environ.get("SERVICELINK_NODE_DIR") or "/tmp/servicelink-node")


@dataclass(frozen=True)
class Node:
    """A running one-node cluster: ``kubeconfig`` holds an admin identity."""

    state: Path
    kubeconfig: Path
    node_ip: str
    kubectl_path: str

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the node; with ``check``, raise with its stderr on failure."""
        done = run_kubectl(self.kubectl_path, self.kubeconfig, args, input=input)
        if check and done.returncode != 0:
            raise NodeError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done


def missing_prerequisites() -> list[str]:
    """Say what this machine lacks to run a node; an empty list means it can."""
    if platform.system() != "Linux":
        return [f"Linux (this is {platform.system()})"]
    missing = [] if os.geteuid() == 0 else ["root (the kubelet and containerd manage mounts, cgroups and iptables)"]
    for binary in ("containerd", "ctr", "runc", "iptables", "conntrack", "ip", "mount", "nsenter", "unshare"):
        if shutil.which(binary) is None:
            missing.append(f"the {binary} command")
    if shutil.which("nft") is None:
        missing.append("the nft command (Debian: nftables), for kube-proxy's nftables mode")
    for plugin in ("bridge", "host-local", "loopback", "portmap"):
        if not os.access(f"/usr/lib/cni/{plugin}", os.X_OK):
            missing.append(f"the CNI plugin /usr/lib/cni/{plugin} (Debian: containernetworking-plugins)")
    return missing


def _pid(state: Path, name: str) -> int | None:
    """Return the recorded PID of component ``name`` if that process still runs."""
    for pid_file in (state / "run" / f"{name}.pid", state / "cp" / "logs" / f"{name}.pid"):
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int(pid_file.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 0)
                return pid
    return None


def running_components(state: Path | None = None) -> list[str]:
    """Name the node's components whose recorded process still runs."""
    folder = state or default_state_dir()
    return [name for name in (*_COMPONENTS, *_CONTROL_PLANE) if _pid(folder, name) is not None]


def _say(message: str) -> None:
    print(f"[node] {message}", file=sys.stderr, flush=True)


def _wait(what: str, check: Callable[[], object], *, timeout: float, state: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.3)
    raise NodeError(f"timed out after {timeout:.0f}s waiting for {what}; logs in {state / 'logs'}")


# --- the network namespace ------------------------------------------------------------------------


def _netns(state: Path) -> Path:
    """The node's network namespace, kept by a bind mount on this file of the state folder."""
    return state / "netns"


def _inside(state: Path) -> list[str]:
    """The command prefix that runs a program in the node's network namespace, and in no other of its own.

    ``nsenter --net`` switches that namespace only: ``ip netns exec`` would also
    remount ``/sys`` in a new mount namespace, hiding the cgroups the kubelet uses.
    """
    return ["nsenter", f"--net={_netns(state)}", "--"]


def _has_netns(state: Path) -> bool:
    return os.path.ismount(_netns(state))


def _link_exists(name: str) -> bool:
    return _run_quietly("ip", "link", "show", name).returncode == 0


def _run_checked(*args: str) -> None:
    done = _run_quietly(*args)
    if done.returncode != 0:
        raise NodeError(f"{' '.join(args)} failed: {done.stderr.strip()}")


def _make_network(state: Path) -> None:
    """Make the node's namespace and its one link to the host; inside, nothing routes off the link's /30.

    IPv6 is off on both ends of the link, so neither sends router solicitations
    or multicast reports across it; the host's own settings are left alone.
    """
    netns = _netns(state)
    netns.touch()
    _run_checked("unshare", f"--net={netns}", "true")
    inside = _inside(state)
    # Made inside with its peer moved out to this process's namespace: the host gets only its end.
    _run_checked(*inside, "ip", "link", "add", NODE_LINK, "type", "veth", "peer", "name", HOST_LINK,
                 "netns", str(os.getpid()))  # fmt: skip
    _run_quietly("sysctl", "-w", f"net.ipv6.conf.{HOST_LINK}.disable_ipv6=1")
    _run_quietly(*inside, "sysctl", "-w", f"net.ipv6.conf.{NODE_LINK}.disable_ipv6=1")
    _run_checked("ip", "address", "add", f"{HOST_ADDRESS}/30", "dev", HOST_LINK)
    _run_checked("ip", "link", "set", HOST_LINK, "up")
    _run_checked(*inside, "ip", "link", "set", "lo", "up")
    _run_checked(*inside, "ip", "address", "add", f"{NODE_ADDRESS}/30", "dev", NODE_LINK)
    _run_checked(*inside, "ip", "link", "set", NODE_LINK, "up")
    # The Service range leads to a bridge with no ports (a dead end, like a dummy link, which this
    # kernel may lack), so that a packet for a port that no Service serves reaches kube-proxy's
    # reject rule in the forward hook. With no route at all it would be dropped before that hook,
    # its sender answered at most once a second, and calls would time out.
    _run_checked(*inside, "ip", "link", "add", SERVICES_LINK, "type", "bridge")
    _run_checked(*inside, "ip", "link", "set", SERVICES_LINK, "up")
    _run_checked(*inside, "ip", "route", "add", SERVICE_RANGE, "dev", SERVICES_LINK)


def _processes_inside(state: Path) -> list[int]:
    """The processes whose network namespace is the node's."""
    if not _has_netns(state):
        return []
    node = os.stat(_netns(state))
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                mine = os.stat(entry / "ns" / "net")
                if (mine.st_dev, mine.st_ino) == (node.st_dev, node.st_ino):
                    found.append(int(entry.name))
    return found


def _remove_network(state: Path) -> None:
    """Delete the link (both ends go together) and let the namespace go with its mount and last process."""
    netns = _netns(state)
    if _has_netns(state):
        if _link_exists(HOST_LINK):
            _run_quietly("ip", "link", "delete", HOST_LINK)
        if _run_quietly("umount", str(netns)).returncode != 0:
            _run_quietly("umount", "-l", str(netns))
    netns.unlink(missing_ok=True)


def host_network_state() -> dict[str, str]:
    """What a node must leave as it found it: the host's firewall, routes, links and the sysctls it may touch.

    Counters and the dated comments of ``iptables-save`` are dropped; a command
    that is missing reads as its error, the same before and after.
    """
    commands = {
        "iptables-save": ["iptables-save"],
        "ip6tables-save": ["ip6tables-save"],
        "nft list ruleset": ["nft", "list", "ruleset"],
        "ip route": ["ip", "route"],
        "ip -6 route": ["ip", "-6", "route"],
        "ip -br link": ["ip", "-br", "link"],
        "sysctl": [
            "sysctl", "net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet", "net.ipv4.conf.all.forwarding",
            "net.ipv6.conf.all.forwarding", *_SYSCTLS,
        ],
    }  # fmt: skip
    state = {}
    for name, command in commands.items():
        try:
            done = _run_quietly(*command)
            text = done.stdout + done.stderr
        except FileNotFoundError as error:
            text = str(error)
        if name.endswith("-save"):
            text = re.sub(r"\[\d+:\d+\]", "", "\n".join(line for line in text.splitlines() if not line.startswith("#")))
        state[name] = text
    return state


# --- images ---------------------------------------------------------------------------------------


def write_binary_image(binary: Path, ref: str, out: Path) -> None:
    """Write an OCI image-layout tarball holding one static ``binary`` as ``/<name>``, its entrypoint.

    ``ctr images import`` takes it as it is: the pause and CoreDNS images need no base.
    """
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w") as layer:
        info = layer.gettarinfo(str(binary), arcname=binary.name)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        with binary.open("rb") as content:
            layer.addfile(info, content)
    layer_bytes = layer_buffer.getvalue()

    def blob(data: bytes) -> tuple[str, int]:
        return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)

    layer_digest, layer_size = blob(layer_bytes)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": [f"/{binary.name}"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
    ).encode()
    config_digest, config_size = blob(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}
            ],
        }
    ).encode()
    manifest_digest, manifest_size = blob(manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref},
            }
        ],
    }
    with tarfile.open(out, "w") as image:
        for name, data in (
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", json.dumps(index).encode()),
            (f"blobs/sha256/{config_digest[7:]}", config),
            (f"blobs/sha256/{manifest_digest[7:]}", manifest),
            (f"blobs/sha256/{layer_digest[7:]}", layer_bytes),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            image.addfile(info, io.BytesIO(data))


# --- configuration --------------------------------------------------------------------------------


def _write_configs(state: Path, ip: str, kubeconfig: Path) -> None:
    sock = state / "run" / "containerd.sock"
    (state / "etc" / "containerd.toml").write_text(
        f"""version = 2
root = "{state / "containerd" / "root"}"
state = "{state / "containerd" / "state"}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Without CAP_SYS_RESOURCE runc cannot give the sandbox its oom_score_adj of -998, and every
  # sandbox fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{state / "run" / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{state / "cni" / "net.d"}"
"""
    )
    (state / "cni" / "net.d" / "10-servicelink.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": "servicelink",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": "cni0",
                        "isGateway": True,
                        "ipMasq": True,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": POD_CIDR}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": str(state / "cni" / "ipam"),
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            },
            indent=2,
        )
    )
    # Pods resolve cluster names only: CoreDNS forwards nothing off this machine.
    (state / "etc" / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    (state / "etc" / "kubelet.yaml").write_text(
        f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://{sock}
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
protectKernelDefaults: false
oomScoreAdj: 0
enforceNodeAllocatable: []
authentication:
  anonymous: {{enabled: true}}
  webhook: {{enabled: false}}
authorization: {{mode: AlwaysAllow}}
address: {ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
clusterDomain: cluster.local
clusterDNS: [{DNS_IP}]
resolvConf: {state / "etc" / "resolv.conf"}
podLogsDir: {state / "pod-logs"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: "1Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}}
hairpinMode: hairpin-veth
"""
    )
    # nftables mode rejects a packet for a ClusterIP port that no Service serves, where iptables
    # mode lets it follow the routes (kubernetes/kubernetes#22952): refused at once, as in a cluster.
    (state / "etc" / "kube-proxy.yaml").write_text(
        f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
hostnameOverride: {NODE_NAME}
mode: nftables
clusterCIDR: 10.244.0.0/16
oomScoreAdj: 0
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"""
    )


def _coredns_objects() -> str:
    """CoreDNS on the pod network, reading Services through its own ServiceAccount."""
    corefile = (
        ".:53 {\n    errors\n    health :8080\n    ready :8181\n"
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n        pods insecure\n"
        "        fallthrough in-addr.arpa ip6.arpa\n    }\n    cache 30\n}\n"
    )
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": "kube-system"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": corefile},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {
                "serviceAccountName": "coredns",
                "dnsPolicy": "Default",
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "coredns",
                        "image": COREDNS_IMAGE,
                        "imagePullPolicy": "Never",
                        "args": ["-conf", "/etc/coredns/Corefile"],
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 1},
                    }
                ],
                "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {
                "selector": {"k8s-app": "kube-dns"},
                "clusterIP": DNS_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})


# --- up -------------------------------------------------------------------------------------------


def _start(state: Path, name: str, args: Sequence[str]) -> None:
    """Start component ``name`` detached, in the node's network namespace, and record its PID."""
    log = (state / "logs" / f"{name}.log").open("ab")
    process = subprocess.Popen(
        [*_inside(state), *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    log.close()
    (state / "run" / f"{name}.pid").write_text(f"{process.pid}\n")


def _check_can_start(state: Path) -> None:
    missing = missing_prerequisites()
    if missing:
        raise NodeError("cannot run a node on this machine: it needs " + "; ".join(missing))
    running = running_components(state)
    if running:
        raise NodeError(
            f"a node is already running here ({', '.join(running)}; state in {state}): "
            "use it, or stop it first with `hack/cluster.sh down`"
        )
    if _link_exists(HOST_LINK) and not _has_netns(state):
        raise NodeError(
            f"another node runs on this machine (the host has its link {HOST_LINK}), and there is one node per "
            "machine: use it, or stop it first with `hack/cluster.sh down`"
        )


def _ctr(state: Path, *args: str) -> str:
    done = subprocess.run(
        ["ctr", "-a", str(state / "run" / "containerd.sock"), "-n", "k8s.io", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def up(*, images: Iterable[Path] = (), state: Path | None = None) -> Node:
    """Start the node and return it once it is Ready and CoreDNS answers.

    ``images`` are tarballs (``docker save`` or OCI layout) imported into
    containerd before any pod starts. Raises ``NodeError`` naming what is
    missing, the port taken or the cluster already running, and stops whatever
    it started when a later step fails.
    """
    folder = state or default_state_dir()
    _check_can_start(folder)
    started = time.monotonic()
    control = ensure_assets()
    binaries = ensure_node_assets()
    down(state=folder, quiet=True)  # whatever a killed run left behind
    for sub in ("etc", "run", "logs", "cni/net.d", "cni/ipam", "images", "containerd", "kubelet", "pod-logs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    try:
        return _bring_up(folder, control, binaries, images, started)
    except BaseException:
        down(state=folder, quiet=True)
        raise


def _bring_up(state: Path, control: Assets, binaries: Assets, images: Iterable[Path], started: float) -> Node:
    ip = NODE_ADDRESS
    kubeconfig = state / "kubeconfig"
    saved = subprocess.run(["sysctl", *_SYSCTLS], capture_output=True, text=True, check=True).stdout
    (state / "run" / "sysctl.saved").write_text(saved)
    _make_network(state)
    _write_configs(state, ip, kubeconfig)

    _start(state, "containerd", ["containerd", "--config", str(state / "etc" / "containerd.toml")])
    _wait("containerd", lambda: _ctr(state, "version"), timeout=30, state=state)
    write_binary_image(binaries.directory / "pause", PAUSE_IMAGE, state / "images" / "pause.tar")
    write_binary_image(binaries.directory / "coredns", COREDNS_IMAGE, state / "images" / "coredns.tar")
    for tarball in (state / "images" / "pause.tar", state / "images" / "coredns.tar", *images):
        _ctr(state, "images", "import", str(tarball))

    plane = start_control_plane(
        workdir=state / "cp",
        advertise_address=ip,
        command_prefix=_inside(state),
        extra_apiserver_args=["--kubelet-preferred-address-types=InternalIP,Hostname"],
        extra_controllers=(
            "node-lifecycle-controller",
            "root-ca-certificate-publisher-controller",
            "cronjob-controller",
            "job-controller",
        ),
        detached=True,
    )
    shutil.copy(plane.kubeconfig, kubeconfig)
    node = Node(state=state, kubeconfig=kubeconfig, node_ip=ip, kubectl_path=control.path("kubectl"))

    kubelet = binaries.path("kubelet")
    _start(
        state,
        "kubelet",
        [
            kubelet,
            f"--config={state / 'etc' / 'kubelet.yaml'}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={state / 'kubelet'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={ip}",
        ],
    )
    _start(
        state,
        "kube-scheduler",
        [
            binaries.path("kube-scheduler"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
        ],
    )
    _start(state, "kube-proxy", [binaries.path("kube-proxy"), f"--config={state / 'etc' / 'kube-proxy.yaml'}"])

    def ready_and_untainted() -> bool:
        got = json.loads(node.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in got["status"].get("conditions", []))
        return ready and not got["spec"].get("taints")

    _wait(f"node {NODE_NAME} Ready and untainted", ready_and_untainted, timeout=90, state=state)
    _wait("the default ServiceAccount", lambda: node.kubectl("get", "sa", "default"), timeout=30, state=state)
    node.kubectl("apply", "-f", "-", input=_coredns_objects())
    node.kubectl("-n", "kube-system", "wait", "--for=condition=Ready", "pod/coredns", "--timeout=90s")
    _say(f"node {NODE_NAME} ({ip}) Ready with CoreDNS in {time.monotonic() - started:.1f}s")
    return node


# --- down -----------------------------------------------------------------------------------------


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _stop(state: Path, name: str, *, grace: float = 10.0) -> None:
    pid = _pid(state, name)
    if pid is None:
        return
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _pid(state, name) is not None:
        time.sleep(0.1)
    if _pid(state, name) is not None:
        _signal_group(pid, signal.SIGKILL)
        time.sleep(0.2)


def _run_quietly(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True)


def _remove_pods(state: Path) -> None:
    """Stop and remove every pod sandbox, so the CNI plugins undo their veths, IPs and iptables rules."""
    binaries = find_node_assets()
    if binaries is None:
        return
    crictl = binaries.path("crictl")
    sock = f"unix://{state / 'run' / 'containerd.sock'}"
    started_here = False
    if _pid(state, "containerd") is None and (state / "containerd" / "state").exists() and _has_netns(state):
        # A killed containerd still owns sandboxes: bring it back just to remove them.
        _start(state, "containerd", ["containerd", "--config", str(state / "etc" / "containerd.toml")])
        started_here = True
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _run_quietly("ctr", "-a", sock[7:], "version").returncode != 0:
            time.sleep(0.3)
    if _pid(state, "containerd") is not None:
        _run_quietly(crictl, "--runtime-endpoint", sock, "--timeout", "30s", "rmp", "--force", "--all")
    if started_here:
        _stop(state, "containerd")


def _processes_naming(folder: Path) -> dict[int, bytes]:
    """The processes (not this one) whose command line names ``folder``, with that command line."""
    found: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if str(folder).encode() in cmdline:
                    found[int(entry.name)] = cmdline
    return found


def _mounts_under(folder: Path) -> list[str]:
    return [m for m in _run_quietly("findmnt", "-rn", "-o", "TARGET").stdout.split() if m.startswith(str(folder))]


def _kill_leftovers(state: Path) -> None:
    """SIGKILL every process that refers to the state folder (shims), lives in a pod cgroup or the node's netns."""
    pids = set(_processes_naming(state)) | set(_processes_inside(state))
    for procs in Path("/sys/fs/cgroup").glob("*/kubepods/**/cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in procs.read_text().split())
    pids.discard(os.getpid())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _unmount_under(folder: Path) -> None:
    for target in sorted(_mounts_under(folder), reverse=True):
        if _run_quietly("umount", target).returncode != 0:
            _run_quietly("umount", "-l", target)


def _remove_cgroups() -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for top in ("kubepods", "kubepods.slice"):
            root = hierarchy / top
            if root.is_dir():
                for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    with contextlib.suppress(OSError):
                        directory.rmdir()
                with contextlib.suppress(OSError):
                    root.rmdir()


def down(*, state: Path | None = None, quiet: bool = False) -> None:
    """Stop the node and undo what it did to the host; safe to run any number of times.

    Pods first (while the kubelet runs, so volumes and networks are torn down
    in order), then every component by its recorded PID, then whatever a killed
    component left: sandboxes, shims, the network namespace with its link (and
    with them every firewall rule, route and bridge made inside), mounts,
    cgroups, log links and sysctls.
    """
    folder = state or default_state_dir()
    if not folder.exists():
        return
    kubeconfig = folder / "kubeconfig"
    control = find_assets()
    if control and _pid(folder, "kube-apiserver") and _pid(folder, "kubelet") and kubeconfig.exists():
        _stop(folder, "kube-controller-manager")  # nothing recreates what is deleted next
        _stop(folder, "kube-scheduler")
        kubectl = control.path("kubectl")
        _run_quietly(
            kubectl, "--kubeconfig", str(kubeconfig), "delete", "pods", "--all", "-A",
            "--grace-period=1", "--timeout=60s",
        )  # fmt: skip
    for name in ("kube-scheduler", "kubelet"):
        _stop(folder, name)
    _remove_pods(folder)
    _stop(folder, "kube-proxy")
    _stop(folder, "containerd")
    for name in _CONTROL_PLANE:
        _stop(folder, name)
    _kill_leftovers(folder)
    _remove_network(folder)
    saved = folder / "run" / "sysctl.saved"
    if saved.exists():
        for line in saved.read_text().splitlines():
            key, _, value = line.partition(" = ")
            _run_quietly("sysctl", "-w", f"{key}={value}")
        saved.unlink()
    _unmount_under(folder)
    containers_log = Path("/var/log/containers")
    if containers_log.is_dir():
        for link in containers_log.iterdir():
            if link.is_symlink() and os.readlink(link).startswith(str(folder)):
                link.unlink()
        with contextlib.suppress(OSError):
            containers_log.rmdir()
    _remove_cgroups()
    with contextlib.suppress(OSError):
        for empty in sorted(Path("/run/containerd").rglob("*"), key=lambda p: -len(p.parts)):
            if empty.is_dir():
                with contextlib.suppress(OSError):
                    empty.rmdir()
        Path("/run/containerd").rmdir()
    # Keep the logs for a post-mortem; drop the images, pods' state and the control plane's data.
    for sub in ("containerd", "kubelet", "cni", "images", "run", "cp/etcd-data", "kubeconfig"):
        path = folder / sub
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if not quiet:
        _say(f"node stopped; logs kept in {folder / 'logs'} and {folder / 'cp' / 'logs'}")


def leftovers(state: Path | None = None) -> list[str]:
    """Say what of a node is still on this host; an empty list means ``down`` left it clean."""
    folder = state or default_state_dir()
    found = [f"process {name}" for name in running_components(folder)]
    found += [f"the link {name}" for name in (HOST_LINK, "cni0") if _link_exists(name)]
    if _has_netns(folder):
        found.append(f"the network namespace {_netns(folder)}")
    found += [f"process {pid} in the node's network namespace" for pid in _processes_inside(folder)]
    found += [f"mount {m}" for m in _mounts_under(folder)]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob("*/kubepods")]
    found += [f"process {pid}: {cmdline[:80]!r}" for pid, cmdline in _processes_naming(folder).items()]
    return found


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m servicelink.testing.node up [IMAGE.tar ...] | down | status``."""
    args = list(sys.argv[1:] if argv is None else argv)
    verb = args[0] if args else ""
    try:
        if verb == "up":
            node = up(images=[Path(a) for a in args[1:]])
            print(f"kubeconfig: {node.kubeconfig}\nexport KUBECONFIG={node.kubeconfig}")
            print(f"kubectl:    {node.kubectl_path}")
        elif verb == "down":
            down()
            left = leftovers()
            if left:
                sys.exit("[node] down left behind: " + "; ".join(left))
        elif verb == "status":
            running = running_components()
            print("running: " + ", ".join(running) if running else "not running")
        else:
            sys.exit("usage: python -m servicelink.testing.node up [IMAGE.tar ...] | down | status")
    except NodeError as error:
        sys.exit(f"[node] {error}")


if __name__ == "__main__":
    main()
