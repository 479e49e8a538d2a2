"""Watch every frame on the host's interfaces for what a node must never send (does I/O).

One ``AF_PACKET`` socket, read by a thread while the capture runs, sees the
frames of every interface in this process's network namespace, the ones made
later included. Two kinds of frame are counted, by where they went:

- on the node's link, a frame from the node for anything but the link's subnet;
- on any other interface but loopback, an IPv4 packet to or from the watched
  ranges (the cluster's, and the link's): the node's traffic on its way off the machine.

Root on Linux only, like the node.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections import Counter
from collections.abc import Sequence
from types import TracebackType

_ETH_P_ALL = 0x0003
_PACKET_OUTGOING = 4  # a frame this host sent, as opposed to one it received
_IPV4, _ARP, _VLAN = 0x0800, 0x0806, 0x8100
_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 132: "sctp"}


def describe_ipv4(packet: bytes) -> tuple[str, str, str]:
    """Return an IPv4 packet's source, destination and ``address:port/protocol`` of the destination."""
    source = str(ipaddress.IPv4Address(packet[12:16]))
    destination = str(ipaddress.IPv4Address(packet[16:20]))
    protocol = _PROTOCOLS.get(packet[9], str(packet[9]))
    header = (packet[0] & 0x0F) * 4
    if protocol in ("tcp", "udp", "sctp") and len(packet) >= header + 4:
        port = int.from_bytes(packet[header + 2 : header + 4], "big")
        return source, destination, f"{destination}:{port}/{protocol}"
    return source, destination, f"{destination}/{protocol}"


def classify(
    frame: bytes,
    *,
    interface: str,
    outgoing: bool,
    link: str,
    link_subnet: ipaddress.IPv4Network,
    watched: Sequence[ipaddress.IPv4Network],
) -> str | None:
    """Say where a frame went if it is one a node must never send, else ``None``."""
    if interface == "lo" or len(frame) < 14:
        return None
    ethertype, offset = int.from_bytes(frame[12:14], "big"), 14
    if ethertype == _VLAN and len(frame) >= 18:
        ethertype, offset = int.from_bytes(frame[16:18], "big"), 18
    payload = frame[offset:]
    if interface == link:
        if outgoing:
            return None
        if ethertype == _IPV4 and len(payload) >= 20:
            _, destination, where = describe_ipv4(payload)
            return None if ipaddress.IPv4Address(destination) in link_subnet else f"{link}: {where}"
        if ethertype == _ARP and len(payload) >= 28:
            target = ipaddress.IPv4Address(payload[24:28])
            return None if target in link_subnet else f"{link}: ARP for {target}"
        return f"{link}: ethertype 0x{ethertype:04x}"
    if ethertype == _IPV4 and len(payload) >= 20:
        source, destination, where = describe_ipv4(payload)
        if any(ipaddress.IPv4Address(address) in net for address in (source, destination) for net in watched):
            return f"{interface}: {source} -> {where}"
    return None


class Capture:
    """Count the frames ``classify`` flags, by where they went, from ``__enter__`` to ``__exit__``.

    On other interfaces it watches ``watched`` and the /15 around ``link_subnet`` (198.18.0.0/15).
    """

    def __init__(self, *, link: str, link_subnet: str, watched: Sequence[str]) -> None:
        self.link = link
        self.link_subnet = ipaddress.IPv4Network(link_subnet)
        self.watched = [self.link_subnet.supernet(new_prefix=15), *(ipaddress.IPv4Network(net) for net in watched)]
        self.crossed: Counter[str] = Counter()
        self.frames_on_link = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Capture:
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        self._socket.settimeout(0.2)
        self._thread = threading.Thread(target=self._read, name="capture", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._socket is not None:
            self._socket.close()

    def snapshot(self) -> tuple[int, Counter[str]]:
        """The frames seen on the link so far, and the flagged ones by where they went."""
        with self._lock:
            return self.frames_on_link, Counter(self.crossed)

    def summary(self) -> str:
        """One line for a test's output: the frames seen on the link and the flagged ones."""
        frames, crossed = self.snapshot()
        return f"{frames} frames on {self.link}, {sum(crossed.values())} flagged: {dict(crossed)}"

    def _read(self) -> None:
        assert self._socket is not None
        while not self._stop.is_set():
            with contextlib.suppress(OSError):  # a timeout, or an interface gone mid-read
                frame, (interface, _, kind, *_) = self._socket.recvfrom(256)
                flagged = classify(
                    frame,
                    interface=interface,
                    outgoing=kind == _PACKET_OUTGOING,
                    link=self.link,
                    link_subnet=self.link_subnet,
                    watched=self.watched,
                )
                with self._lock:
                    self.frames_on_link += interface == self.link
                    if flagged:
                        self.crossed[flagged] += 1
