"""Simulators that stand in for hardware the tests and the lab cannot have.

``bramble.sim.pirom`` is the Raspberry Pi 3B+ network boot ROM (DHCP over a raw socket, then
TFTP in 512-byte lock-step); ``bramble.sim.dhcp`` builds and parses the frames it sends and
receives; both use the standard library only, so a bank of simulated Pis starts quickly.
``bramble.sim.bootserver`` runs the real dnsmasq they boot from (config from the dhcp_tftp
role, a TFTP tree of fake boot files) inside a ``bramble.labnet`` lab network.
"""
