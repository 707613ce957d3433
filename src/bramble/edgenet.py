"""Routed test networks for the edge roles (vpn, firewall): hosts and gateways in namespaces.

``LabNet`` (bramble.labnet) is a switch with hosts on it; the edge tests need routers instead:
namespaces joined point to point by veth pairs, with IP forwarding on in the gateways and
routes only to the networks of the test (never a default route). Cleanup is LabNet's: every
namespace (and so every veth) and every started process is removed on ``close()``.
"""

from __future__ import annotations

from collections.abc import Iterable

from bramble.labnet import LabNet, ip

#: One end of a veth pair: (namespace, interface, address/prefix).
Endpoint = tuple[str, str, str]


class EdgeNet(LabNet):
    """Named namespaces joined by veths; ``add_host`` makes one, ``link`` joins two."""

    def __enter__(self) -> EdgeNet:
        self.create()
        return self

    def create(self) -> None:
        """Nothing up front: there is no bridge namespace here."""
        self._created = True

    def add_host(self, name: str, *, forward: bool = False) -> str:
        """A namespace ``<prefix>-<name>`` with loopback up; a router when ``forward``."""
        netns = f"{self.prefix}-{name}"
        self._add_netns(netns)
        ip("-n", netns, "link", "set", "lo", "up")
        if forward:
            self.run(netns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], check=True)
        return netns

    def link(self, a: Endpoint, b: Endpoint) -> None:
        """A veth pair between ``(netns, interface, address/prefix)`` ``a`` and ``b``."""
        ip("-n", a[0], "link", "add", a[1], "type", "veth", "peer", "name", b[1], "netns", b[0])
        for netns, interface, address in (a, b):
            ip("-n", netns, "addr", "add", address, "dev", interface)
            ip("-n", netns, "link", "set", interface, "up")

    def add_address_to(self, netns: str, interface: str, address: str) -> None:
        """A further address (CIDR) on ``interface`` in ``netns``."""
        ip("-n", netns, "addr", "add", address, "dev", interface)

    def route(self, netns: str, network: str, via: str) -> None:
        """A route to one test network (a default route is refused: nothing leaves the test)."""
        if network in ("default", "0.0.0.0/0"):
            raise ValueError("edge test networks never get a default route")
        ip("-n", netns, "route", "add", network, "via", via)

    def wire(
        self, links: Iterable[tuple[Endpoint, Endpoint]], routes: Iterable[tuple[str, str, str]]
    ) -> None:
        """The veth ``links``, then the ``routes`` given as (netns, network, via)."""
        for a, b in links:
            self.link(a, b)
        for netns, network, via in routes:
            self.route(netns, network, via)
