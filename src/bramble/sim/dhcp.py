"""DHCP, IPv4, UDP and Ethernet frames as the Raspberry Pi 3B+ boot ROM sends and reads them.

Pure functions over bytes; no sockets. Facts about the ROM's DHCPDISCOVER come from the
packet trace in raspberrypi/documentation ``computers/raspberry-pi/boot-net.adoc``
("DHCP Request / Reply") and from raspberrypi/firmware issue 764:

- sent from 0.0.0.0:68 to 255.255.255.255:67, IP TTL 128, IP id 0, no DF flag, no UDP
  checksum ("[no cksum]"), BOOTP flags 0 (no broadcast bit), BOOTP length 320;
- the transaction id is the constant 0x26f30339 on every Pi (both traces, and dnsmasq logs
  it as 653460281 in issue 764 and raspberrypi/piserver issue 125);
- options in this order: 53 DISCOVER; 55 asking for 43, 60, 67, 128-135, 66; 93 (client
  architecture) = 0; 94 (client NDI) = 1.2.1; 97 (client GUID) = type 0 + 16 bytes; 60 =
  ``PXEClient:Arch:00000:UNDI:002001``; 255.

Option 97: boot-net.adoc says the 3B had a constant GUID (16 x 0x44) and that on the 3B+ "the
value is set to the 32-bit serial number". Issue 764 shows a GUID starting ``00:f5`` from a
Pi whose MAC ends in ``f5`` (issue 941, same reporter), i.e. the serial's low byte first: we
send the serial as 4 little-endian bytes, repeated 4 times (the Pi 4 bootloader docs describe
the older format the same way: "the serial number repeated 4 times").
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

#: Option 60 the ROM sends (boot-net.adoc).
ROM_VENDOR_CLASS = b"PXEClient:Arch:00000:UNDI:002001"
#: The ROM's constant transaction id (boot-net.adoc trace; firmware issue 764).
ROM_XID = 0x26F30339
#: Option 55 as the ROM sends it: 43, 60, 67, 128..135, 66.
ROM_PARAMETER_REQUEST = bytes([43, 60, 67, *range(128, 136), 66])
#: What option 43 must contain for the ROM to boot from an OFFER.
PI_BOOT_STRING = b"Raspberry Pi Boot"

BOOTREQUEST = 1
BOOTREPLY = 2
DHCP_MAGIC = b"\x63\x82\x53\x63"
DHCPDISCOVER = 1
DHCPOFFER = 2
DHCPREQUEST = 3
DHCPACK = 5
DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68
ETH_P_IP = 0x0800
IPPROTO_UDP = 17
BROADCAST_MAC = b"\xff" * 6
#: The unset address in BOOTP fields (compared with, never bound to).
UNSET_ADDRESS = "0.0.0.0"  # noqa: S104
#: Size of the BOOTP fixed header (op .. file), before the magic cookie.
_BOOTP_FIXED = 236
#: The ROM's DHCP messages are 320 bytes of BOOTP (boot-net.adoc: "length 320").
ROM_BOOTP_LENGTH = 320

OPT_PAD = 0
OPT_SUBNET_MASK = 1
OPT_VENDOR_SPECIFIC = 43
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMETER_REQUEST = 55
OPT_VENDOR_CLASS = 60
OPT_TFTP_SERVER = 66
OPT_CLIENT_ARCH = 93
OPT_CLIENT_NDI = 94
OPT_CLIENT_GUID = 97
OPT_END = 255

_HEX12 = re.compile(r"^[0-9a-f]{12}$")
_SERIAL = re.compile(r"^[0-9a-f]{8}$")


class FrameError(ValueError):
    """A frame or DHCP message that cannot be parsed (truncated, bad checksum, ...)."""


def mac_bytes(mac: str) -> bytes:
    """``b8:27:eb:01:02:03`` (or with dashes, or bare hex) as 6 bytes."""
    digits = re.sub(r"[:\-.]", "", mac.strip().lower())
    if not _HEX12.match(digits):
        raise ValueError(f"{mac!r} is not a MAC address (expected six hex octets)")
    return bytes.fromhex(digits)


def mac_text(raw: bytes) -> str:
    """6 bytes as ``b8:27:eb:01:02:03``."""
    return ":".join(f"{b:02x}" for b in raw[:6])


def normal_serial(serial: str) -> str:
    """A Pi serial as the 8 lower-case hex digits that name its TFTP folder."""
    value = serial.strip().lower().removeprefix("0x")
    if len(value) == 16 and value.startswith("00000000"):  # /proc/cpuinfo prints 16 digits
        value = value[8:]
    if not _SERIAL.match(value):
        raise ValueError(f"{serial!r} is not a Pi serial (expected 8 hex digits, e.g. 4db34690)")
    return value


def ip_bytes(address: str) -> bytes:
    """Dotted quad as 4 bytes (ValueError if it is not one)."""
    parts = address.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise ValueError(f"{address!r} is not an IPv4 address")
    return bytes(int(p) for p in parts)


def ip_text(raw: bytes) -> str:
    return ".".join(str(b) for b in raw[:4])


def internet_checksum(data: bytes) -> int:
    """RFC 1071 ones' complement sum, as used by the IPv4 header and UDP."""
    if len(data) % 2:
        data += b"\x00"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_checksum(src_ip: bytes, dst_ip: bytes, segment: bytes) -> int:
    """UDP checksum over the IPv4 pseudo-header and the segment (checksum field zeroed).

    A computed 0 is sent as 0xFFFF (RFC 768), since 0 means "no checksum".
    """
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, IPPROTO_UDP, len(segment))
    value = internet_checksum(pseudo + segment)
    return value or 0xFFFF


def rom_client_guid(serial: str) -> bytes:
    """Option 97 of a 3B+: type 0, then the serial (little-endian) four times (module doc)."""
    return b"\x00" + struct.pack("<I", int(normal_serial(serial), 16)) * 4


def _option(code: int, value: bytes) -> bytes:
    if len(value) > 255:
        raise ValueError(f"DHCP option {code} is {len(value)} bytes; at most 255 fit")
    return bytes([code, len(value)]) + value


def build_bootp(
    *,
    op: int,
    xid: int,
    chaddr: bytes,
    options: list[tuple[int, bytes]],
    yiaddr: bytes = b"\x00" * 4,
    siaddr: bytes = b"\x00" * 4,
    ciaddr: bytes = b"\x00" * 4,
    giaddr: bytes = b"\x00" * 4,
    secs: int = 0,
    flags: int = 0,
    hops: int = 0,
    minimum_length: int = 0,
) -> bytes:
    """A BOOTP/DHCP message: fixed header, magic cookie, options in order, END, zero pad."""
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        op,
        1,  # htype: Ethernet
        6,  # hlen
        hops,
        xid,
        secs,
        flags,
        ciaddr,
        yiaddr,
        siaddr,
        giaddr,
        chaddr.ljust(16, b"\x00"),
        b"",
        b"",
    )
    body = header + DHCP_MAGIC + b"".join(_option(c, v) for c, v in options) + bytes([OPT_END])
    return body.ljust(minimum_length, b"\x00")


def build_discover(mac: str, serial: str, *, xid: int = ROM_XID, secs: int = 0) -> bytes:
    """The 3B+ ROM's DHCPDISCOVER (BOOTP payload, 320 bytes), option for option."""
    return build_bootp(
        op=BOOTREQUEST,
        xid=xid,
        chaddr=mac_bytes(mac),
        secs=secs,
        options=[
            (OPT_MESSAGE_TYPE, bytes([DHCPDISCOVER])),
            (OPT_PARAMETER_REQUEST, ROM_PARAMETER_REQUEST),
            (OPT_CLIENT_ARCH, b"\x00\x00"),
            (OPT_CLIENT_NDI, b"\x01\x02\x01"),
            (OPT_CLIENT_GUID, rom_client_guid(serial)),
            (OPT_VENDOR_CLASS, ROM_VENDOR_CLASS),
        ],
        minimum_length=ROM_BOOTP_LENGTH,
    )


def build_udp_frame(
    *,
    src_mac: bytes,
    dst_mac: bytes,
    src_ip: bytes,
    dst_ip: bytes,
    src_port: int,
    dst_port: int,
    payload: bytes,
    ttl: int = 128,
    ident: int = 0,
    dont_fragment: bool = False,
    with_udp_checksum: bool = False,
) -> bytes:
    """Ethernet II + IPv4 (no options, correct header checksum) + UDP + payload.

    The ROM sends no UDP checksum (boot-net.adoc: "[no cksum]"); ``with_udp_checksum``
    computes one instead.
    """
    udp_length = 8 + len(payload)
    udp = struct.pack("!HHHH", src_port, dst_port, udp_length, 0) + payload
    if with_udp_checksum:
        udp = udp[:6] + struct.pack("!H", udp_checksum(src_ip, dst_ip, udp)) + udp[8:]
    flags_fragment = 0x4000 if dont_fragment else 0
    ip_header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + udp_length,
        ident,
        flags_fragment,
        ttl,
        IPPROTO_UDP,
        0,
        src_ip,
        dst_ip,
    )
    ip_header = ip_header[:10] + struct.pack("!H", internet_checksum(ip_header)) + ip_header[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + ip_header + udp


def build_rom_discover_frame(mac: str, serial: str, *, xid: int = ROM_XID) -> bytes:
    """The whole Ethernet frame of the ROM's DHCPDISCOVER, ready for an AF_PACKET socket."""
    return build_udp_frame(
        src_mac=mac_bytes(mac),
        dst_mac=BROADCAST_MAC,
        src_ip=b"\x00" * 4,
        dst_ip=b"\xff" * 4,
        src_port=DHCP_CLIENT_PORT,
        dst_port=DHCP_SERVER_PORT,
        payload=build_discover(mac, serial, xid=xid),
    )


@dataclass(frozen=True)
class UdpDatagram:
    """A UDP datagram taken out of an Ethernet frame."""

    src_mac: bytes
    dst_mac: bytes
    src_ip: bytes
    dst_ip: bytes
    src_port: int
    dst_port: int
    payload: bytes
    udp_checksum_ok: bool | None  # None: no checksum sent, or not verified


def parse_udp_frame(frame: bytes, *, verify_udp_checksum: bool = True) -> UdpDatagram | None:
    """The UDP datagram in an Ethernet/IPv4 frame; None for frames that are not IPv4/UDP.

    Raises FrameError for a truncated frame, a bad IPv4 header checksum, a fragment, or (with
    ``verify_udp_checksum``) a wrong UDP checksum. Pass ``verify_udp_checksum=False`` for
    frames whose checksum the kernel has not filled in yet (TP_STATUS_CSUMNOTREADY on veth).
    """
    if len(frame) < 14:
        raise FrameError(f"frame of {len(frame)} bytes is shorter than an Ethernet header")
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype != ETH_P_IP:
        return None
    ip = frame[14:]
    if len(ip) < 20:
        raise FrameError("truncated IPv4 header")
    version_ihl = ip[0]
    if version_ihl >> 4 != 4:
        raise FrameError(f"IP version {version_ihl >> 4} in an IPv4 frame")
    ihl = (version_ihl & 0x0F) * 4
    total_length, flags_fragment = struct.unpack_from("!H2xH", ip, 2)
    if ihl < 20 or len(ip) < ihl or total_length < ihl or len(ip) < total_length:
        raise FrameError("IPv4 lengths do not fit the frame")
    if internet_checksum(ip[:ihl]) != 0:
        raise FrameError("bad IPv4 header checksum")
    if ip[9] != IPPROTO_UDP:
        return None
    if flags_fragment & 0x3FFF:
        raise FrameError("IPv4 fragment (the ROM does not reassemble)")
    udp = ip[ihl:total_length]
    if len(udp) < 8:
        raise FrameError("truncated UDP header")
    src_port, dst_port, udp_length, checksum = struct.unpack_from("!HHHH", udp)
    if udp_length < 8 or udp_length > len(udp):
        raise FrameError("UDP length does not fit the IPv4 packet")
    udp = udp[:udp_length]
    src_ip, dst_ip = ip[12:16], ip[16:20]
    checksum_ok: bool | None = None
    if checksum and verify_udp_checksum:
        zeroed = udp[:6] + b"\x00\x00" + udp[8:]
        checksum_ok = udp_checksum(src_ip, dst_ip, zeroed) == checksum
        if not checksum_ok:
            raise FrameError("bad UDP checksum")
    return UdpDatagram(
        src_mac=frame[6:12],
        dst_mac=frame[0:6],
        src_ip=src_ip,
        dst_ip=dst_ip,
        src_port=src_port,
        dst_port=dst_port,
        payload=udp[8:],
        udp_checksum_ok=checksum_ok,
    )


@dataclass(frozen=True)
class DhcpMessage:
    """A parsed BOOTP/DHCP message (options concatenated per RFC 3396)."""

    op: int
    xid: int
    secs: int
    flags: int
    ciaddr: str
    yiaddr: str
    siaddr: str
    giaddr: str
    chaddr: str
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def message_type(self) -> int | None:
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value else None

    @property
    def vendor_specific(self) -> bytes:
        """Option 43 (the PXE options dnsmasq encodes, or a raw string), empty if absent."""
        return self.options.get(OPT_VENDOR_SPECIFIC, b"")

    @property
    def has_pi_boot(self) -> bool:
        """Option 43 contains "Raspberry Pi Boot", which the ROM requires."""
        return PI_BOOT_STRING in self.vendor_specific

    @property
    def subnet_mask(self) -> str | None:
        value = self.options.get(OPT_SUBNET_MASK)
        return ip_text(value) if value and len(value) == 4 else None

    @property
    def server_id(self) -> str | None:
        value = self.options.get(OPT_SERVER_ID)
        return ip_text(value) if value and len(value) == 4 else None

    @property
    def tftp_server(self) -> str | None:
        """Option 66 if it is a dotted quad, else siaddr; None when both are empty."""
        raw = self.options.get(OPT_TFTP_SERVER, b"").rstrip(b"\x00").decode("ascii", "replace")
        try:
            ip_bytes(raw)
        except ValueError:
            raw = ""
        if raw and raw != UNSET_ADDRESS:
            return raw
        return None if self.siaddr == UNSET_ADDRESS else self.siaddr


def parse_dhcp(payload: bytes) -> DhcpMessage:
    """Parse a BOOTP/DHCP message; FrameError when it is truncated or has no magic cookie."""
    if len(payload) < _BOOTP_FIXED + 4:
        raise FrameError(f"BOOTP message of {len(payload)} bytes is too short")
    (op, _htype, hlen, _hops, xid, secs, flags) = struct.unpack_from("!BBBBIHH", payload)
    ciaddr, yiaddr, siaddr, giaddr = (payload[12 + 4 * i : 16 + 4 * i] for i in range(4))
    chaddr = payload[28 : 28 + min(hlen, 16)]
    if payload[_BOOTP_FIXED : _BOOTP_FIXED + 4] != DHCP_MAGIC:
        raise FrameError("no DHCP magic cookie")
    options: dict[int, bytes] = {}
    index = _BOOTP_FIXED + 4
    while index < len(payload):
        code = payload[index]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            index += 1
            continue
        if index + 1 >= len(payload):
            raise FrameError(f"DHCP option {code} is truncated")
        length = payload[index + 1]
        value = payload[index + 2 : index + 2 + length]
        if len(value) != length:
            raise FrameError(f"DHCP option {code} is truncated")
        options[code] = options.get(code, b"") + value
        index += 2 + length
    return DhcpMessage(
        op=op,
        xid=xid,
        secs=secs,
        flags=flags,
        ciaddr=ip_text(ciaddr),
        yiaddr=ip_text(yiaddr),
        siaddr=ip_text(siaddr),
        giaddr=ip_text(giaddr),
        chaddr=mac_text(chaddr),
        options=options,
    )


def prefix_length(netmask: str) -> int:
    """``255.255.0.0`` -> 16; ValueError for a mask that is not contiguous."""
    value = int.from_bytes(ip_bytes(netmask), "big")
    length = bin(value).count("1")
    if value != ((0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF):
        raise ValueError(f"{netmask} is not a contiguous netmask")
    return length
