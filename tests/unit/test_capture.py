"""capture.classify: which frames a node must never send, on its link and on the host's other interfaces."""

from __future__ import annotations

import ipaddress

import pytest

from servicelink.testing.capture import classify

LINK = "sl-host"
SUBNET = ipaddress.IPv4Network("198.18.0.0/30")
WATCHED = [ipaddress.IPv4Network(net) for net in ("198.18.0.0/15", "10.96.0.0/12", "10.244.0.0/16")]
MACS = bytes(12)


def ipv4(source: str, destination: str, *, protocol: int = 6, port: int = 443) -> bytes:
    """An Ethernet frame holding an IPv4 header (no options) and the first bytes of a TCP/UDP header."""
    header = bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, protocol, 0, 0])
    header += ipaddress.IPv4Address(source).packed + ipaddress.IPv4Address(destination).packed
    return MACS + b"\x08\x00" + header + (40000).to_bytes(2, "big") + port.to_bytes(2, "big")


def arp(target: str) -> bytes:
    body = bytes(8) + bytes(6) + ipaddress.IPv4Address("198.18.0.2").packed + bytes(6)
    return MACS + b"\x08\x06" + body + ipaddress.IPv4Address(target).packed


def flagged(frame: bytes, interface: str = LINK, *, outgoing: bool = False) -> str | None:
    return classify(frame, interface=interface, outgoing=outgoing, link=LINK, link_subnet=SUBNET, watched=WATCHED)


def test_the_nodes_calls_and_answers_within_the_link_subnet_pass() -> None:
    assert flagged(ipv4("198.18.0.2", "198.18.0.1")) is None
    assert flagged(arp("198.18.0.1")) is None


def test_what_the_host_sends_over_the_link_is_not_the_nodes() -> None:
    assert flagged(ipv4("198.18.0.1", "10.96.0.1"), outgoing=True) is None


def test_a_frame_from_the_node_for_any_other_address_is_flagged_with_where_it_went() -> None:
    assert flagged(ipv4("10.244.0.5", "10.96.84.131", port=3001)) == "sl-host: 10.96.84.131:3001/tcp"
    assert flagged(ipv4("198.18.0.2", "192.0.2.1", protocol=17, port=53)) == "sl-host: 192.0.2.1:53/udp"
    assert flagged(ipv4("198.18.0.2", "8.8.8.8", protocol=1)) == "sl-host: 8.8.8.8/icmp"
    assert flagged(arp("198.18.0.9")) == "sl-host: ARP for 198.18.0.9"


def test_anything_but_ipv4_and_arp_on_the_link_is_flagged() -> None:
    assert flagged(MACS + b"\x86\xdd" + bytes(40)) == "sl-host: ethertype 0x86dd"


@pytest.mark.parametrize("address", ["10.96.0.1", "10.244.0.7", "198.18.0.2", "198.19.255.1"])
def test_the_clusters_ranges_on_another_interface_are_flagged_either_way(address: str) -> None:
    assert flagged(ipv4("192.0.2.2", address), "eth0") == f"eth0: 192.0.2.2 -> {address}:443/tcp"
    assert flagged(ipv4(address, "192.0.2.1"), "eth0", outgoing=True) == f"eth0: {address} -> 192.0.2.1:443/tcp"


def test_other_traffic_on_other_interfaces_and_loopback_pass() -> None:
    assert flagged(ipv4("192.0.2.2", "192.0.2.1"), "eth0") is None
    assert flagged(ipv4("127.0.0.1", "10.96.0.1"), "lo") is None
    assert flagged(b"short", "eth0") is None
