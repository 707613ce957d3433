"""A Raspberry Pi 3B+ network boot ROM, simulated faithfully enough to prove a head's config.

What the ROM (and the ``bootcode.bin``/``start.elf`` it loads) does, and where that is written:

1. DHCP (raspberrypi/documentation ``computers/raspberry-pi/boot-net.adoc``): a broadcast
   DHCPDISCOVER with option 60 ``PXEClient:Arch:00000:UNDI:002001``, 93 = 0, 94 = 1.2.1 and
   97 (see ``bramble.sim.dhcp`` for the exact frame); five tries, five seconds apart, then the
   Pi "drops into a low-power state". It never sends DHCPREQUEST: it takes the OFFER and goes
   ("DHCP request/reply/ack sequence not correctly implemented"), so two Pis can use one
   address unless the server has static reservations. It needs option 43 to contain
   "Raspberry Pi Boot" (the three trailing spaces the 3B needed are "Fixed in Raspberry Pi 3
   Model B+"). Without such an OFFER it keeps resending DISCOVERs and then stops
   (raspberrypi/firmware issue 764: "dnsmasq is replying ... but the Pi ignores it and sends
   another, for a total of 5 requests").
2. The fast-reply quirk: an OFFER that comes back too soon is not taken. Issue 764: offers
   for static addresses came instantly and were ignored, while a pool address (dnsmasq pings
   it first, so the OFFER is late) was accepted. Issue 934 (ghollingworth): "If we receive a
   DHCP _and_ the TFTP response within 2 seconds the device will get locked into a massive
   loop. To get around this add dhcp-reply-delay=2"; issue 859 (same author): the delay
   "will stop the Pi from getting stuck in a timeout loop". Issue 862 reports
   ``dhcp-reply-delay=1`` stable, and PiServer ships ``dhcp-reply-delay=1`` (piserver issue
   125 logs "reply delay: 1"). Modelled as ``offer_quirk_window``: an OFFER arriving less
   than that many seconds after its DISCOVER is missed, and the ROM waits out its 5 s timeout
   and sends the next DISCOVER. The default, 0.5 s, is below the smallest delay reported to
   work (1 s) and above what an instant reply takes; 0 turns the quirk off.
3. TFTP (boot-net.adoc; RFC 1350): the ROM asks the server from the OFFER (siaddr, or option
   66 when given) for ``bootcode.bin`` and ``bootsig.bin`` (absent is fine), plain RRQs in
   octet mode, 512-byte blocks in lock-step, each ACKed. With no server in the OFFER it asks
   0.0.0.0 and gets nothing (issue 764).
4. ``bootcode.bin`` then does DHCP again (firmware issue 1124: the second stage "Sending DHCP
   request / Waiting for dhcp_reply" after the ROM hands over; issue 1078 "re-sending the
   DHCP request / reply"), so a Pi sends two DISCOVER rounds per boot
   (``second_stage_dhcp``).
5. ``bootcode.bin`` probes ``<serial>/start.elf`` (RRQ with ``tsize 0``; on the answer it
   aborts with an error, "checking whether a file exists" in boot-net.adoc, "Early
   terminate" in dnsmasq's logs in firmware issue 1605). If it exists, "any other files to be
   read will be pre-pended with the serial_number"; if not, files come from the TFTP root
   (boot-net.adoc), where bramble keeps only ``bootcode.bin``: no ``start.elf`` there, and the
   Pi stops (firmware issue 987: "file .../xxxxxxxx/start.elf not found" and nothing more).
6. The order of the later reads is the one in the server logs of firmware issues 1012
   (3B+: bootcode.bin, bootsig.bin, <serial>/start.elf, autoboot.txt, config.txt,
   recovery.elf), 935 and 1362 (start.elf, fixup.dat, recovery.elf, config.txt, dt-blob.bin,
   recovery.elf, config.txt, bootcfg.txt, ..., cmdline.txt, ...) and 859 (cmdline.txt,
   kernel8.img, the dtb, config.txt again): ``start.elf`` is read twice (probe, then whole)
   and ``config.txt`` four times. From ``bootcode.bin`` on, RRQs carry ``tsize 0`` (the 3B+
   trace in firmware issue 1041).

Not modelled (not documented well enough to copy): the ROM's TFTP retransmission timer and
count (``tftp_timeout``/``tftp_retries`` are our assumptions), the overlays ``config.txt``
may name, and the kernel's own DHCP. A transfer that times out stops the boot.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

from bramble.labnet import enter_netns
from bramble.sim import dhcp
from bramble.sim.dhcp import DhcpMessage, FrameError

TFTP_PORT = 69
TFTP_BLOCK = 512
OP_RRQ, OP_DATA, OP_ACK, OP_ERROR, OP_OACK = 1, 3, 4, 5, 6
#: The first local port the ROM uses for TFTP (boot-net.adoc trace: 49152, then upwards).
ROM_FIRST_PORT = 49152
#: A Pi's boot files are a few MB; refuse to take in more than this from one transfer.
MAX_TRANSFER_BYTES = 256 * 1024 * 1024

SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_CSUMNOTREADY = 1 << 3
_AUXDATA = struct.Struct("IIIHHHH")


@dataclass(frozen=True)
class TftpStep:
    """One file the Pi asks for.

    ``names``: tried in order until one exists (``kernel8.img`` then ``kernel7.img``).
    ``phase``: ``rom`` (from the TFTP root, no options), ``bootcode`` or ``start`` (prefixed
    with ``<serial>/`` once the serial folder was found, with ``tsize``).
    ``probe``: only check that the file exists (abort after the first answer).
    ``required``: the Pi stops when none of the names exists.
    """

    names: tuple[str, ...]
    phase: str = "start"
    required: bool = False
    probe: bool = False

    @property
    def name(self) -> str:
        return self.names[0]


def _step(
    *names: str, phase: str = "start", required: bool = False, probe: bool = False
) -> TftpStep:
    return TftpStep(names=names, phase=phase, required=required, probe=probe)


#: The Pi 3B+ read order (module doc, item 6), for a 64-bit kernel (kernel8.img).
ROM_ORDER: tuple[TftpStep, ...] = (
    _step("bootcode.bin", phase="rom", required=True),
    _step("bootsig.bin", phase="rom"),
    _step("start.elf", phase="bootcode", required=True, probe=True),  # <serial>/ probe
    _step("autoboot.txt", phase="bootcode"),
    _step("config.txt", phase="bootcode"),
    _step("recovery.elf", phase="bootcode"),
    _step("start.elf", phase="bootcode", required=True),
    _step("fixup.dat", phase="bootcode", required=True),
    _step("recovery.elf"),
    _step("config.txt"),
    _step("dt-blob.bin"),
    _step("recovery.elf"),
    _step("config.txt"),
    _step("bootcfg.txt"),
    _step("cmdline.txt"),
    _step("kernel8.img", "kernel7.img", required=True),
    _step("bcm2710-rpi-3-b-plus.dtb", required=True),
    _step("config.txt"),
)


def steps_for_files(files: Sequence[str]) -> tuple[TftpStep, ...]:
    """The ROM's own start (bootcode.bin, bootsig.bin, the serial probe), then ``files``.

    Each listed file is required: the simulator fails when one is missing.
    """
    head = ROM_ORDER[:3]
    return head + tuple(_step(name, required=True) for name in files)


@dataclass(frozen=True)
class RomConfig:
    """How one simulated Pi behaves. Defaults are the ROM's (module doc)."""

    interface: str
    mac: str
    serial: str
    dhcp_tries: int = 5
    dhcp_interval: float = 5.0
    offer_quirk_window: float = 0.5
    second_stage_dhcp: bool = True
    tftp_timeout: float = 1.0
    tftp_retries: int = 5
    steps: tuple[TftpStep, ...] = ROM_ORDER
    configure_address: bool = True
    save_dir: Path | None = None
    xid: int = dhcp.ROM_XID

    def __post_init__(self) -> None:
        dhcp.mac_bytes(self.mac)  # raises ValueError naming the bad MAC
        object.__setattr__(self, "serial", dhcp.normal_serial(self.serial))
        if self.dhcp_tries < 1 or self.dhcp_interval <= 0:
            raise ValueError("dhcp_tries must be at least 1 and dhcp_interval positive")
        if self.tftp_retries < 0 or self.tftp_timeout <= 0:
            raise ValueError("tftp_retries must be >= 0 and tftp_timeout positive")


@dataclass
class StepResult:
    """What one step took: a DHCP round, the address, or one TFTP request."""

    step: str
    phase: str
    kind: str  # dhcp | address | read | probe
    started: float  # seconds since power-on
    seconds: float
    ok: bool
    found: bool | None = None
    bytes: int = 0
    sha256: str | None = None
    retransmits: int = 0
    detail: str | None = None


@dataclass
class BootOutcome:
    """The result of one simulated power-on."""

    mac: str
    serial: str
    booted: bool = False
    failure: str | None = None
    address: str | None = None
    tftp_server: str | None = None
    dhcp_discovers: int = 0
    offers_missed: int = 0  # OFFERs lost to the fast-reply quirk
    offers_refused: int = 0  # OFFERs without "Raspberry Pi Boot" in option 43
    offer_delays: list[float] = field(default_factory=list)  # s from DISCOVER to each OFFER
    seconds: float = 0.0
    bytes: int = 0
    serial_folder: bool | None = None
    steps: list[StepResult] = field(default_factory=list)

    def files(self) -> dict[str, str]:
        """Path -> sha256 of every whole file read (the last read wins)."""
        return {s.step: s.sha256 for s in self.steps if s.kind == "read" and s.sha256}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BootOutcome:
        data = json.loads(text)
        steps = [StepResult(**s) for s in data.pop("steps")]
        return cls(**data, steps=steps)


# ---------------------------------------------------------------------------------------------
# DHCP state machine (pure: frames in, frames out, times passed in)


@dataclass(frozen=True)
class OfferSeen:
    """An OFFER addressed to this Pi and what the ROM made of it."""

    elapsed: float  # seconds after the DISCOVER it answers
    accepted: bool
    reason: str | None  # why it was not taken


class DhcpRound:
    """One round of DISCOVERs (the ROM's, or bootcode.bin's), as a pure state machine.

    Call ``poll(now)`` for the frame to send (or None) and when to call again; feed every
    received frame to ``on_frame(frame, now)``. ``offer`` is set once an OFFER is taken,
    ``failure`` once the tries are used up.
    """

    def __init__(self, config: RomConfig) -> None:
        self.config = config
        self.discovers = 0
        self.sent_at = 0.0
        self.offer: DhcpMessage | None = None
        self.failure: str | None = None
        self.seen: list[OfferSeen] = []
        self._frame = dhcp.build_rom_discover_frame(config.mac, config.serial, xid=config.xid)
        self._mac = dhcp.mac_bytes(config.mac)

    @property
    def done(self) -> bool:
        return self.offer is not None or self.failure is not None

    def poll(self, now: float) -> tuple[bytes | None, float]:
        """(frame to send now or None, time of the next call)."""
        if self.done:
            return None, float("inf")
        due = self.sent_at + self.config.dhcp_interval
        if self.discovers and now < due:
            return None, due
        if self.discovers >= self.config.dhcp_tries:
            self.failure = self._failure_text()
            return None, float("inf")
        self.discovers += 1
        self.sent_at = now
        return self._frame, now + self.config.dhcp_interval

    def on_frame(self, frame: bytes, now: float, *, verify_udp_checksum: bool = True) -> None:
        """Look at one received frame; takes the first acceptable OFFER for this Pi."""
        if self.done or not self.discovers:
            return
        try:
            datagram = dhcp.parse_udp_frame(frame, verify_udp_checksum=verify_udp_checksum)
        except FrameError:
            return
        if datagram is None or datagram.dst_port != dhcp.DHCP_CLIENT_PORT:
            return
        try:
            message = dhcp.parse_dhcp(datagram.payload)
        except FrameError:
            return
        if (
            message.op != dhcp.BOOTREPLY
            or message.xid != self.config.xid
            or dhcp.mac_bytes(message.chaddr) != self._mac
            or message.message_type != dhcp.DHCPOFFER
        ):
            return
        elapsed = now - self.sent_at
        reason = self.judge(message, elapsed)
        self.seen.append(OfferSeen(elapsed=elapsed, accepted=reason is None, reason=reason))
        if reason is None:
            self.offer = message

    def judge(self, message: DhcpMessage, elapsed: float) -> str | None:
        """None when the ROM takes this OFFER, else why not."""
        if elapsed < self.config.offer_quirk_window:
            return (
                f"OFFER came {elapsed * 1000:.0f} ms after the DISCOVER, inside the ROM's "
                f"fast-reply window of {self.config.offer_quirk_window:g} s (dhcp-reply-delay)"
            )
        if not message.has_pi_boot:
            return 'OFFER has no option 43 with "Raspberry Pi Boot" (pxe-service)'
        if message.yiaddr == dhcp.UNSET_ADDRESS:
            return "OFFER carries no address (proxy DHCP only)"
        return None

    @property
    def missed(self) -> int:
        return sum(1 for s in self.seen if s.reason and "fast-reply" in s.reason)

    @property
    def refused(self) -> int:
        return sum(1 for s in self.seen if s.reason and "option 43" in s.reason)

    def _failure_text(self) -> str:
        parts = [
            f"no usable DHCPOFFER after {self.discovers} DISCOVERs "
            f"{self.config.dhcp_interval:g} s apart; the Pi stops (low-power state)"
        ]
        if not self.seen:
            parts.append("no OFFER at all (no reservation for this MAC, or no DHCP server)")
        else:
            reasons = sorted({s.reason for s in self.seen if s.reason})
            parts.append(f"{len(self.seen)} OFFER(s) ignored: " + "; ".join(reasons))
        return ": ".join(parts)


# ---------------------------------------------------------------------------------------------
# TFTP client state machine (pure)

Send = tuple[bytes, tuple[str, int]]


def build_rrq(path: str, *, tsize: bool) -> bytes:
    """An RFC 1350 read request in octet mode, with ``tsize 0`` (RFC 2349) when asked."""
    packet = struct.pack("!H", OP_RRQ) + path.encode("ascii") + b"\x00octet\x00"
    if tsize:
        packet += b"tsize\x000\x00"
    return packet


def build_ack(block: int) -> bytes:
    return struct.pack("!HH", OP_ACK, block & 0xFFFF)


def build_error(code: int, message: str) -> bytes:
    return struct.pack("!HH", OP_ERROR, code) + message.encode("ascii") + b"\x00"


def parse_oack(payload: bytes) -> dict[str, str]:
    """Options of an OACK (without its opcode): ``{"tsize": "52456"}``."""
    fields = payload.split(b"\x00")
    options: dict[str, str] = {}
    for key, value in zip(fields[0::2], fields[1::2], strict=False):
        if key:
            options[key.decode("ascii", "replace").lower()] = value.decode("ascii", "replace")
    return options


class TftpTransfer:
    """One read request, RFC 1350 lock-step with 512-byte blocks, as a pure state machine.

    ``start()`` gives the RRQ; ``on_datagram(data, source)`` and ``on_timeout()`` return the
    packets to send. ``done`` is set when the file is complete, not found, failed or (for a
    probe) known to exist; ``found``/``error`` say which.
    """

    def __init__(
        self,
        path: str,
        server: str,
        *,
        tsize: bool,
        probe: bool = False,
        retries: int = 5,
        sink: BinaryIO | None = None,
        max_bytes: int = MAX_TRANSFER_BYTES,
    ) -> None:
        self.path = path
        self.server = server
        self.tsize_requested = tsize
        self.probe = probe
        self.retries = retries
        self.sink = sink
        self.max_bytes = max_bytes
        self.peer: tuple[str, int] | None = None
        self.block = 0  # last block received in order (mod 65536)
        self.size = 0
        self.tsize: int | None = None
        self.retransmits = 0
        self.done = False
        self.found: bool | None = None
        self.error: str | None = None
        self._hash = hashlib.sha256()
        self._last: Send | None = None
        self._tries_left = retries

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def start(self) -> list[Send]:
        self._last = (build_rrq(self.path, tsize=self.tsize_requested), (self.server, TFTP_PORT))
        return [self._last]

    def on_timeout(self) -> list[Send]:
        """The per-packet timer ran out: send the last packet again, or give up."""
        if self.done or self._last is None:
            return []
        if self._tries_left <= 0:
            waited = (
                "no answer to the read request"
                if self.peer is None
                else (f"no block {(self.block + 1) & 0xFFFF} after {self.size} bytes")
            )
            self._finish(error=f"TFTP timeout reading {self.path}: {waited}")
            return []
        self._tries_left -= 1
        self.retransmits += 1
        return [self._last]

    def on_datagram(self, data: bytes, source: tuple[str, int]) -> tuple[list[Send], bool]:
        """(packets to send, whether this datagram moved the transfer on)."""
        if self.done or source[0] != self.server or len(data) < 4:
            return [], False
        if self.peer is None:
            self.peer = source
        elif source != self.peer:  # RFC 1350: another TID gets an error, the transfer goes on
            return [(build_error(5, "Unknown transfer ID"), source)], False
        (opcode,) = struct.unpack_from("!H", data)
        if opcode == OP_ERROR:
            return self._on_error(data)
        if opcode == OP_OACK:
            return self._on_oack(data)
        if opcode == OP_DATA:
            return self._on_data(data)
        return [], False

    def _on_error(self, data: bytes) -> tuple[list[Send], bool]:
        (code,) = struct.unpack_from("!H", data, 2)
        text = data[4:].split(b"\x00", 1)[0].decode("ascii", "replace")
        if code == 1 or "not found" in text.lower():
            self._finish(found=False)
        else:
            self._finish(error=f"TFTP error {code} reading {self.path}: {text}")
        return [], True

    def _on_oack(self, data: bytes) -> tuple[list[Send], bool]:
        if self.block != 0:
            return [], False
        options = parse_oack(data[2:])
        if options.get("tsize", "").isdigit():
            self.tsize = int(options["tsize"])
        if self.probe:
            return self._end_probe()
        return self._send(build_ack(0)), True

    def _on_data(self, data: bytes) -> tuple[list[Send], bool]:
        (number,) = struct.unpack_from("!H", data, 2)
        if number == self.block and self.size:  # a duplicate: ACK it again
            return self._send(build_ack(number)), False
        if number != (self.block + 1) & 0xFFFF:
            return [], False
        if self.probe:
            return self._end_probe()
        chunk = data[4:]
        if len(chunk) > TFTP_BLOCK:
            self._finish(error=f"TFTP block of {len(chunk)} bytes from the server")
            return [], True
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self._finish(error=f"{self.path} is larger than {self.max_bytes} bytes")
            return [], True
        self._hash.update(chunk)
        if self.sink is not None:
            self.sink.write(chunk)
        self.block = number
        sends = self._send(build_ack(number))
        if len(chunk) < TFTP_BLOCK:
            if self.tsize is not None and self.tsize != self.size:
                self._finish(error=f"{self.path}: tsize {self.tsize} but {self.size} bytes")
            else:
                self._finish(found=True)
        return sends, True

    def _send(self, packet: bytes) -> list[Send]:
        peer = self._peer()
        self._last = (packet, peer)
        self._tries_left = self.retries
        return [self._last]

    def _end_probe(self) -> tuple[list[Send], bool]:
        self._finish(found=True)
        return [(build_error(0, "Early terminate"), self._peer())], True

    def _peer(self) -> tuple[str, int]:
        if self.peer is None:
            raise RuntimeError("TFTP answer before the server's transfer id is known")
        return self.peer

    def _finish(self, *, found: bool | None = None, error: str | None = None) -> None:
        self.done = True
        self.found = found
        self.error = error


# ---------------------------------------------------------------------------------------------
# Sockets and the boot sequence


class RawDhcpSocket:
    """An AF_PACKET socket on the Pi's interface: the ROM has no IP stack to speak of yet."""

    def __init__(self, interface: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(dhcp.ETH_P_IP))
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            self.sock.bind((interface, dhcp.ETH_P_IP))
        except OSError:
            self.sock.close()
            raise

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def receive(self, timeout: float) -> tuple[bytes, bool] | None:
        """(frame, checksum_ready) of the next incoming frame, or None after ``timeout``."""
        self.sock.settimeout(max(timeout, 0.0))
        try:
            data, ancillary, _flags, address = self.sock.recvmsg(65535, socket.CMSG_SPACE(64))
        except TimeoutError:
            return None
        if address[2] == socket.PACKET_OUTGOING:
            return b"", True
        ready = True
        for level, kind, value in ancillary:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(value) >= _AUXDATA.size:
                ready = not _AUXDATA.unpack_from(value)[0] & TP_STATUS_CSUMNOTREADY
        return data, ready

    def close(self) -> None:
        self.sock.close()


Clock = Callable[[], float]


def run_dhcp_round(
    config: RomConfig, raw: RawDhcpSocket, clock: Clock = time.monotonic
) -> DhcpRound:
    """DISCOVERs until an OFFER is taken or the tries are used up (bounded by them)."""
    state = DhcpRound(config)
    while not state.done:
        frame, wake = state.poll(clock())
        if frame is not None:
            raw.send(frame)
        while not state.done and clock() < wake:
            received = raw.receive(wake - clock())
            if received is None:
                break
            data, checksum_ready = received
            if data:
                state.on_frame(data, clock(), verify_udp_checksum=checksum_ready)
    return state


def ip_command(*args: str) -> None:
    """Run ``ip`` (inside the current network namespace); raise with its message on failure."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode:
        raise OSError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def flush_address(interface: str) -> None:
    """Power-on: the Pi has no address yet."""
    ip_command("-4", "addr", "flush", "dev", interface)
    ip_command("link", "set", interface, "up")


def configure_address(interface: str, address: str, prefix: int) -> None:
    """Put the offered address on the interface (never a route beyond the link)."""
    ip_command("-4", "addr", "flush", "dev", interface)
    ip_command("addr", "add", f"{address}/{prefix}", "dev", interface)


class PortAllocator:
    """Local TFTP ports from 49152 upwards, as the ROM picks them."""

    def __init__(self) -> None:
        self.next = ROM_FIRST_PORT

    def bind(self, sock: socket.socket, address: str) -> None:
        for _ in range(64):
            port, self.next = self.next, self.next + 1 if self.next < 65535 else ROM_FIRST_PORT
            try:
                sock.bind((address, port))
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        sock.bind((address, 0))


def run_transfer(
    transfer: TftpTransfer, local_address: str, timeout: float, ports: PortAllocator
) -> None:
    """Drive one transfer over a UDP socket until it is done (bounded by its retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ports.bind(sock, local_address)
        for packet, destination in transfer.start():
            sock.sendto(packet, destination)
        deadline = time.monotonic() + timeout
        while not transfer.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                sends = transfer.on_timeout()
                deadline = time.monotonic() + timeout
            else:
                sock.settimeout(remaining)
                try:
                    data, source = sock.recvfrom(4 + TFTP_BLOCK + 64)
                except TimeoutError:
                    continue
                except ConnectionRefusedError:  # ICMP port unreachable from the server
                    continue
                sends, progressed = transfer.on_datagram(data, source)
                if progressed:
                    deadline = time.monotonic() + timeout
            for packet, destination in sends:
                sock.sendto(packet, destination)


class PiRom:
    """One simulated Pi: ``boot()`` powers it on and returns the outcome."""

    def __init__(self, config: RomConfig) -> None:
        self.config = config
        self.ports = PortAllocator()
        self._t0 = 0.0

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def boot(self) -> BootOutcome:
        config = self.config
        self._t0 = time.monotonic()
        outcome = BootOutcome(mac=config.mac, serial=config.serial)
        try:
            self._boot(outcome)
        finally:
            outcome.seconds = round(self._now(), 6)
            outcome.bytes = sum(s.bytes for s in outcome.steps)
        return outcome

    def _dhcp(self, outcome: BootOutcome, phase: str) -> DhcpMessage | None:
        started = self._now()
        raw = RawDhcpSocket(self.config.interface)
        try:
            state = run_dhcp_round(self.config, raw)
        finally:
            raw.close()
        outcome.dhcp_discovers += state.discovers
        outcome.offers_missed += state.missed
        outcome.offers_refused += state.refused
        outcome.offer_delays += [round(s.elapsed, 4) for s in state.seen]
        offer = state.offer
        detail = state.failure or (
            f"{offer.yiaddr} from {offer.server_id} after {state.discovers} DISCOVER(s)"
            if offer
            else None
        )
        outcome.steps.append(
            StepResult(
                step="DHCPDISCOVER",
                phase=phase,
                kind="dhcp",
                started=round(started, 6),
                seconds=round(self._now() - started, 6),
                ok=offer is not None,
                detail=detail,
            )
        )
        if offer is None:
            outcome.failure = f"{phase}: {state.failure}"
        return offer

    def _address(self, outcome: BootOutcome, offer: DhcpMessage, phase: str) -> bool:
        started = self._now()
        mask = offer.subnet_mask or "255.255.255.0"
        prefix = dhcp.prefix_length(mask)
        if self.config.configure_address and outcome.address != offer.yiaddr:
            configure_address(self.config.interface, offer.yiaddr, prefix)
        outcome.address = offer.yiaddr
        outcome.tftp_server = offer.tftp_server
        outcome.steps.append(
            StepResult(
                step=f"{offer.yiaddr}/{prefix}",
                phase=phase,
                kind="address",
                started=round(started, 6),
                seconds=round(self._now() - started, 6),
                ok=True,
            )
        )
        if outcome.tftp_server is None:
            outcome.failure = (
                "the OFFER names no TFTP server (siaddr 0.0.0.0, no option 66): the ROM asks "
                "0.0.0.0 for bootcode.bin and gets nothing"
            )
            return False
        return True

    def _boot(self, outcome: BootOutcome) -> None:
        config = self.config
        if config.configure_address:
            flush_address(config.interface)
        offer = self._dhcp(outcome, "rom")
        if offer is None or not self._address(outcome, offer, "rom"):
            return
        prefix: str | None = None
        second_dhcp_done = not config.second_stage_dhcp
        for step in config.steps:
            if step.phase != "rom" and not second_dhcp_done:
                second_dhcp_done = True
                offer = self._dhcp(outcome, "bootcode")
                if offer is None or not self._address(outcome, offer, "bootcode"):
                    return
            if step.phase == "rom":
                directory, tsize = "", False
            elif prefix is None:  # the serial probe decides where everything else comes from
                directory, tsize = f"{config.serial}/", True
            else:
                directory, tsize = prefix, True
            if not self._tftp_step(outcome, step, directory, tsize):
                return
            if step.phase != "rom" and prefix is None:
                found = outcome.steps[-1].found
                outcome.serial_folder = bool(found)
                prefix = directory if found else ""
        outcome.booted = True

    def _tftp_step(self, outcome: BootOutcome, step: TftpStep, directory: str, tsize: bool) -> bool:
        if outcome.tftp_server is None or outcome.address is None:
            raise RuntimeError("TFTP before DHCP gave an address and a server")
        for index, name in enumerate(step.names):
            path = directory + name
            started = self._now()
            with self._sink(path, step.probe) as sink:
                transfer = TftpTransfer(
                    path,
                    outcome.tftp_server,
                    tsize=tsize,
                    probe=step.probe,
                    retries=self.config.tftp_retries,
                    sink=sink,
                )
                run_transfer(transfer, outcome.address, self.config.tftp_timeout, self.ports)
            whole = transfer.found and not step.probe
            outcome.steps.append(
                StepResult(
                    step=path,
                    phase=step.phase,
                    kind="probe" if step.probe else "read",
                    started=round(started, 6),
                    seconds=round(self._now() - started, 6),
                    ok=transfer.error is None,
                    found=transfer.found,
                    bytes=transfer.size,
                    sha256=transfer.sha256 if whole else None,
                    retransmits=transfer.retransmits,
                    detail=transfer.error or (f"tsize {transfer.tsize}" if step.probe else None),
                )
            )
            if transfer.error is not None:
                outcome.failure = transfer.error
                return False
            if transfer.found:
                return True
            serial_probe = step.probe and directory == f"{self.config.serial}/"
            if serial_probe and index == len(step.names) - 1:
                return True  # no serial folder: the Pi goes on from the TFTP root
        if step.required:
            where = f"{directory}{'|'.join(step.names)}"
            outcome.failure = f"{where} not found on {outcome.tftp_server}: the Pi stops here"
            if step.name == "start.elf" and directory == "":
                outcome.failure += (
                    f" (no {self.config.serial}/start.elf either: is the serial folder "
                    "missing or misnamed?)"
                )
            return False
        return True

    @contextlib.contextmanager
    def _sink(self, path: str, probe: bool) -> Iterator[BinaryIO | None]:
        if self.config.save_dir is None or probe:
            yield None
            return
        target = self.config.save_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as handle:
            yield handle


def boot(config: RomConfig) -> BootOutcome:
    """Power one simulated Pi on; see the module doc for what it does."""
    return PiRom(config).boot()


def cli_argv(interface: str, mac: str, serial: str, *extra: str) -> list[str]:
    """The command line that runs this simulator as a child (in a Pi's namespace), JSON out."""
    return [
        sys.executable,
        "-m",
        "bramble.sim.pirom",
        "--interface",
        interface,
        "--mac",
        mac,
        "--serial",
        serial,
        "--json",
        *extra,
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bramble.sim.pirom",
        description="Power on one simulated Raspberry Pi 3B+ network boot ROM.",
    )
    parser.add_argument("--interface", required=True, help="the Pi's network interface")
    parser.add_argument("--mac", required=True, help="the Pi's MAC (b8:27:eb:...)")
    parser.add_argument("--serial", required=True, help="the Pi's serial (8 hex digits)")
    parser.add_argument("--netns", help="enter this network namespace first")
    parser.add_argument("--dhcp-tries", type=int, default=5)
    parser.add_argument("--dhcp-interval", type=float, default=5.0, help="seconds")
    parser.add_argument(
        "--offer-quirk-window",
        type=float,
        default=0.5,
        help="OFFERs faster than this many seconds are missed (0: off)",
    )
    parser.add_argument("--no-second-stage-dhcp", action="store_true")
    parser.add_argument("--tftp-timeout", type=float, default=1.0, help="seconds per packet")
    parser.add_argument("--tftp-retries", type=int, default=5)
    parser.add_argument("--files", help="comma-separated files to read after the serial probe")
    parser.add_argument("--save-dir", type=Path, help="write the files read under this folder")
    parser.add_argument(
        "--wait-for-power",
        action="store_true",
        help='print "ready", then start when a line arrives on stdin',
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: exit 0 when the Pi booted, 1 when it failed like a Pi, 2 on bad arguments."""
    args = _parser().parse_args(argv)
    try:
        config = RomConfig(
            interface=args.interface,
            mac=args.mac,
            serial=args.serial,
            dhcp_tries=args.dhcp_tries,
            dhcp_interval=args.dhcp_interval,
            offer_quirk_window=args.offer_quirk_window,
            second_stage_dhcp=not args.no_second_stage_dhcp,
            tftp_timeout=args.tftp_timeout,
            tftp_retries=args.tftp_retries,
            steps=steps_for_files(args.files.split(",")) if args.files else ROM_ORDER,
            save_dir=args.save_dir,
        )
    except ValueError as exc:
        print(f"pirom: {exc}", file=sys.stderr)
        return 2
    if args.netns:
        enter_netns(args.netns)
    if args.wait_for_power:
        print("ready", flush=True)
        sys.stdin.readline()
    outcome = boot(config)
    if args.json:
        print(outcome.to_json(), flush=True)
    else:
        for step in outcome.steps:
            found = "" if step.found is None else (" found" if step.found else " not found")
            print(
                f"{step.started:8.3f}s {step.seconds:7.3f}s {step.kind:7} {step.step}{found} "
                f"{step.bytes} B{' ' + step.detail if step.detail else ''}"
            )
    status = "booted" if outcome.booted else f"FAILED: {outcome.failure}"
    print(
        f"pirom {config.mac} serial {config.serial}: {status} in {outcome.seconds:.2f} s, "
        f"{outcome.bytes} bytes",
        file=sys.stderr,
    )
    return 0 if outcome.booted else 1


if __name__ == "__main__":
    sys.exit(main())
