"""The schema of cluster.yml and macs.yml (documented field by field in docs/cluster-model.md).

Structure and types are checked here; relations between entries (duplicates, ranges, power
budget) are checked in bramble.model.checks so that every problem can be reported at once.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import netaddr
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, model_validator

from bramble.model.net import normalize_mac


def _name(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,31}", value) or value.endswith("-"):
        raise ValueError(
            f"{value!r} is not a usable name: lower-case letters, digits and '-', starting "
            "with a letter, at most 32 characters"
        )
    return value


def _domain(value: str) -> str:
    label = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
    if len(value) > 253 or not re.fullmatch(rf"{label}(\.{label})*", value):
        raise ValueError(f"{value!r} is not a DNS domain (lower case, e.g. lab.internal)")
    return value


def _ipv4(value: str) -> str:
    try:
        return str(netaddr.IPAddress(value, 4, flags=netaddr.INET_PTON))
    except (netaddr.AddrFormatError, ValueError):
        raise ValueError(f"{value!r} is not an IPv4 address (e.g. 10.42.0.1)") from None


def _host(value: str) -> str:
    try:
        return _ipv4(value)
    except ValueError:
        pass
    label = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    if len(value) > 253 or not re.fullmatch(rf"{label}(\.{label})*", value):
        raise ValueError(f"{value!r} is neither an IPv4 address nor a host name")
    return value


def _cidr(value: str) -> str:
    try:
        net = netaddr.IPNetwork(value, version=4, expand_partial=False)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ValueError(f"{value!r} is not an IPv4 network (e.g. 10.42.0.0/16)") from None
    if "/" not in value:
        raise ValueError(f"{value!r} has no prefix length: write it as {net.cidr}")
    if net.ip != net.network:
        raise ValueError(f"{value!r} has host bits set: the network is {net.cidr}")
    return str(net.cidr)


def _vault_ref(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"vault_[a-z0-9_]+", value):
        raise ValueError(
            "must name an Ansible Vault variable such as vault_pdu01_password; the secret "
            "itself never goes in cluster.yml"
        )
    return value


def _ifname(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,15}", value):
        raise ValueError(f"{value!r} is not a Linux interface name (at most 15 characters)")
    return value


def _outlet(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1024:
        return value
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9._:/-]{1,64}", value):
        return value
    raise ValueError(
        f"{value!r} is not an outlet: a number from 1 (as the controller counts them) or a "
        "name such as 'all'"
    )


def _mac(value: str) -> str:
    return normalize_mac(value)


Name = Annotated[str, AfterValidator(_name)]
Domain = Annotated[str, AfterValidator(_domain)]
IPv4 = Annotated[str, AfterValidator(_ipv4)]
Host = Annotated[str, AfterValidator(_host)]
CIDR = Annotated[str, AfterValidator(_cidr)]
VaultRef = Annotated[str, PlainValidator(_vault_ref)]
IfName = Annotated[str, AfterValidator(_ifname)]
Mac = Annotated[str, AfterValidator(_mac)]
Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=1)]
Outlet = Annotated[int | str, PlainValidator(_outlet)]

PiModel = Literal["pi3b", "pi3bplus", "pi4", "pi5"]
Driver = Literal["http_relay", "synaccess", "snmp_pdu", "poe_snmp", "uhubctl", "command"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ClusterInfo(_Strict):
    name: Name
    domain: Domain | None = None

    @property
    def fqdn_domain(self) -> str:
        return self.domain or f"{self.name}.internal"


class Network(_Strict):
    cidr: CIDR = "10.42.0.0/16"
    bank_stride: Annotated[int, Field(ge=2, le=65536)] = 256


class HeadInterfaces(_Strict):
    cluster: IfName
    admin: IfName | None = None


class Head(_Strict):
    name: Name | None = None
    address: IPv4 | None = None
    admin_address: Host | None = None
    interfaces: HeadInterfaces


class Banks(_Strict):
    count: Annotated[int, Field(ge=1, le=999)]
    size: Annotated[int, Field(ge=1, le=254)]
    model: PiModel = "pi3bplus"


class Controller(_Strict):
    name: Name
    driver: Driver
    address: Host | None = None
    port: Port | None = None
    outlets: Annotated[int, Field(ge=1, le=1024)] | None = None
    credentials: VaultRef | None = None
    options: dict[str, str | int | bool] = Field(default_factory=dict)


class PowerGroup(_Strict):
    id: Annotated[int, Field(ge=1, le=999)]
    controller: Name
    outlet: Outlet
    banks: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]


class Power(_Strict):
    budget: Count
    groups: Annotated[list[PowerGroup], Field(min_length=1)]


class SwitchPower(_Strict):
    controller: Name
    outlet: Outlet


class SwitchBank(_Strict):
    bank: Count
    first_port: Annotated[int, Field(ge=1, le=4096)] | None = None
    ports: list[Annotated[int, Field(ge=1, le=4096)]] | None = None

    @model_validator(mode="after")
    def _one_port_rule(self) -> SwitchBank:
        if (self.first_port is None) == (self.ports is None):
            raise ValueError(
                "give either first_port (slot s on port first_port + s - 1) or ports "
                "(one port per slot, in slot order), not both or neither"
            )
        return self


class Switch(_Strict):
    name: Name
    address: Host | None = None
    credentials: VaultRef | None = None
    power: SwitchPower | None = None
    banks: list[SwitchBank] = Field(default_factory=list)


class Board(_Strict):
    name: Name
    kind: Literal["buttons", "lights"]
    address: IPv4
    mac: Mac | None = None
    pixels: Annotated[int, Field(ge=1, le=1024)] = 24
    pixel_type: Literal["RGB", "GRB", "RGBW", "GRBW"] = "GRB"
    credentials: VaultRef | None = None


class SoundPi(_Strict):
    name: Name = "sound"
    address: IPv4


class Bridges(_Strict):
    boards: list[Board] = Field(default_factory=list)
    sound: SoundPi | None = None


class Tunnel(_Strict):
    name: Name
    remote: Host
    psk: VaultRef


class Vpn(_Strict):
    profile: Literal["modern", "legacy"] = "modern"
    local_address: Host | None = None
    local_subnets: list[CIDR] = Field(default_factory=list)
    remote_subnets: Annotated[list[CIDR], Field(min_length=1)]
    tunnels: Annotated[list[Tunnel], Field(min_length=1, max_length=4)]


class ClusterModel(_Strict):
    """The whole of cluster.yml."""

    plugin: Literal["bramble"]
    cluster: ClusterInfo
    network: Network = Field(default_factory=Network)
    head: Head
    banks: Banks
    power: Power
    controllers: Annotated[list[Controller], Field(min_length=1)]
    switches: list[Switch] = Field(default_factory=list)
    bridges: Bridges | None = None
    vpn: Vpn | None = None

    @property
    def head_name(self) -> str:
        """The head's inventory name: as given, else ``<cluster>-head``."""
        return self.head.name or f"{self.cluster.name}-head"

    @property
    def head_address(self) -> str:
        """The head's cluster-side address: as given, else the first host of the network."""
        if self.head.address:
            return self.head.address
        return str(netaddr.IPNetwork(self.network.cidr).network + 1)


class MacEntry(_Strict):
    """One harvested Pi. mac and serial are checked in bramble.model.checks, per entry."""

    bank: Count
    slot: Count
    mac: str | int
    serial: str | int | None = None


class MacFile(_Strict):
    """The whole of macs.yml."""

    macs: list[MacEntry] = Field(default_factory=list)
