"""The Pi boot ROM simulator without a network: frames, DHCP and TFTP state machines."""

from __future__ import annotations

import hashlib
import io
import struct

import pytest

from bramble.sim import dhcp
from bramble.sim.pirom import (
    OP_ACK,
    OP_DATA,
    OP_ERROR,
    OP_OACK,
    ROM_ORDER,
    BootOutcome,
    DhcpRound,
    RomConfig,
    StepResult,
    TftpTransfer,
    build_rrq,
    steps_for_files,
)

MAC = "b8:27:eb:b3:46:90"
SERIAL = "4db34690"
SERVER = "10.42.0.1"
# Option 43 exactly as dnsmasq sends it for pxe-service=0,"Raspberry Pi Boot" (boot-net.adoc).
DNSMASQ_OPTION_43 = bytes(
    [6, 1, 3, 10, 4, 0, 80, 88, 69, 9, 20, 0, 0, 17, *b"Raspberry Pi Boot", 255]
)


def config(**kwargs: object) -> RomConfig:
    return RomConfig(interface="eth0", mac=MAC, serial=SERIAL, **kwargs)  # type: ignore[arg-type]


def offer_frame(
    *,
    xid: int = dhcp.ROM_XID,
    mac: str = MAC,
    option_43: bytes | None = DNSMASQ_OPTION_43,
    yiaddr: str = "10.42.1.1",
    siaddr: str = SERVER,
    message_type: int = dhcp.DHCPOFFER,
    extra: list[tuple[int, bytes]] | None = None,
) -> bytes:
    options = [
        (dhcp.OPT_MESSAGE_TYPE, bytes([message_type])),
        (dhcp.OPT_SERVER_ID, dhcp.ip_bytes(SERVER)),
        (dhcp.OPT_SUBNET_MASK, dhcp.ip_bytes("255.255.0.0")),
        (dhcp.OPT_VENDOR_CLASS, b"PXEClient"),
    ]
    if option_43 is not None:
        options.append((dhcp.OPT_VENDOR_SPECIFIC, option_43))
    options += extra or []
    payload = dhcp.build_bootp(
        op=dhcp.BOOTREPLY,
        xid=xid,
        chaddr=dhcp.mac_bytes(mac),
        yiaddr=dhcp.ip_bytes(yiaddr),
        siaddr=dhcp.ip_bytes(siaddr),
        options=options,
    )
    return dhcp.build_udp_frame(
        src_mac=bytes.fromhex("020000000001"),
        dst_mac=dhcp.mac_bytes(mac),
        src_ip=dhcp.ip_bytes(SERVER),
        dst_ip=dhcp.ip_bytes(yiaddr),
        src_port=67,
        dst_port=68,
        payload=payload,
        ttl=64,
        with_udp_checksum=True,
    )


# -- frames ------------------------------------------------------------------------------------


def test_discover_is_the_roms_320_bytes_with_its_options_in_order():
    payload = dhcp.build_discover(MAC, SERIAL)
    assert len(payload) == dhcp.ROM_BOOTP_LENGTH == 320
    message = dhcp.parse_dhcp(payload)
    assert message.op == dhcp.BOOTREQUEST
    assert message.xid == 0x26F30339
    assert message.flags == 0  # no broadcast bit (boot-net.adoc: Flags [none])
    assert message.chaddr == MAC
    assert message.message_type == dhcp.DHCPDISCOVER
    assert list(message.options) == [53, 55, 93, 94, 97, 60]
    assert message.options[55] == bytes([43, 60, 67, 128, 129, 130, 131, 132, 133, 134, 135, 66])
    assert message.options[93] == b"\x00\x00"
    assert message.options[94] == b"\x01\x02\x01"
    assert message.options[60] == b"PXEClient:Arch:00000:UNDI:002001"
    assert dhcp.DHCPREQUEST not in {message.message_type}


def test_client_guid_is_the_serial_little_endian_four_times():
    guid = dhcp.rom_client_guid(SERIAL)
    assert len(guid) == 17
    # dnsmasq logs it as 00:90:46:b3:4d:90:46:b3:4d... for serial 4db34690
    assert guid.hex() == "00" + "9046b34d" * 4


def test_discover_frame_has_valid_ip_header_and_no_udp_checksum_like_the_rom():
    frame = dhcp.build_rom_discover_frame(MAC, SERIAL)
    assert frame[:6] == b"\xff" * 6
    assert frame[6:12] == dhcp.mac_bytes(MAC)
    ip_header = frame[14:34]
    assert dhcp.internet_checksum(ip_header) == 0
    ttl, ident, flags = ip_header[8], struct.unpack("!H", ip_header[4:6])[0], ip_header[6]
    assert (ttl, ident, flags) == (128, 0, 0)
    datagram = dhcp.parse_udp_frame(frame)
    assert datagram is not None
    assert (dhcp.ip_text(datagram.src_ip), dhcp.ip_text(datagram.dst_ip)) == (
        dhcp.UNSET_ADDRESS,
        "255.255.255.255",
    )
    assert (datagram.src_port, datagram.dst_port) == (68, 67)
    assert datagram.udp_checksum_ok is None  # sent without one
    assert dhcp.parse_dhcp(datagram.payload).message_type == dhcp.DHCPDISCOVER


def test_udp_checksum_is_computed_and_checked():
    frame = offer_frame()
    datagram = dhcp.parse_udp_frame(frame)
    assert datagram is not None
    assert datagram.udp_checksum_ok is True
    corrupted = bytearray(frame)
    corrupted[-1] ^= 0xFF
    with pytest.raises(dhcp.FrameError, match="UDP checksum"):
        dhcp.parse_udp_frame(bytes(corrupted))
    # the kernel may hand over veth frames before filling the checksum in
    assert dhcp.parse_udp_frame(bytes(corrupted), verify_udp_checksum=False) is not None


def test_bad_ip_header_checksum_and_truncation_are_errors():
    frame = bytearray(offer_frame())
    frame[22] ^= 0x01  # TTL
    with pytest.raises(dhcp.FrameError, match="IPv4 header checksum"):
        dhcp.parse_udp_frame(bytes(frame))
    with pytest.raises(dhcp.FrameError):
        dhcp.parse_udp_frame(offer_frame()[:30])
    with pytest.raises(dhcp.FrameError):
        dhcp.parse_dhcp(b"\x02" * 100)


def test_non_ip_frames_are_ignored():
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"\x00" * 28
    assert dhcp.parse_udp_frame(arp) is None


def test_offer_parsing_finds_pi_boot_string_and_tftp_server():
    datagram = dhcp.parse_udp_frame(offer_frame())
    assert datagram is not None
    message = dhcp.parse_dhcp(datagram.payload)
    assert message.message_type == dhcp.DHCPOFFER
    assert message.has_pi_boot
    assert message.yiaddr == "10.42.1.1"
    assert message.subnet_mask == "255.255.0.0"
    assert message.tftp_server == SERVER  # siaddr
    with_66 = dhcp.parse_udp_frame(offer_frame(extra=[(66, b"10.42.0.9")]))
    assert with_66 is not None
    assert dhcp.parse_dhcp(with_66.payload).tftp_server == "10.42.0.9"
    nothing = dhcp.parse_udp_frame(offer_frame(siaddr=dhcp.UNSET_ADDRESS))
    assert nothing is not None
    assert dhcp.parse_dhcp(nothing.payload).tftp_server is None


def test_truncated_option_is_an_error():
    payload = dhcp.build_bootp(op=2, xid=1, chaddr=b"\x01" * 6, options=[(43, b"abc")])
    cut = payload[: payload.index(b"+\x03abc") + 3]
    with pytest.raises(dhcp.FrameError, match="option 43"):
        dhcp.parse_dhcp(cut)


@pytest.mark.parametrize(
    ("mask", "length"), [("255.255.0.0", 16), ("255.255.255.0", 24), ("255.255.255.252", 30)]
)
def test_prefix_length(mask, length):
    assert dhcp.prefix_length(mask) == length


def test_prefix_length_rejects_holes():
    with pytest.raises(ValueError, match="contiguous"):
        dhcp.prefix_length("255.0.255.0")


def test_config_normalises_serial_and_rejects_bad_mac():
    assert config().serial == SERIAL
    assert RomConfig(interface="eth0", mac=MAC, serial="000000004DB34690").serial == SERIAL
    with pytest.raises(ValueError, match="not a MAC"):
        RomConfig(interface="eth0", mac="b8:27:eb", serial=SERIAL)
    with pytest.raises(ValueError, match="not a Pi serial"):
        RomConfig(interface="eth0", mac=MAC, serial="xyz")


# -- DHCP state machine ------------------------------------------------------------------------


def test_dhcp_sends_five_discovers_five_seconds_apart_then_stops():
    state = DhcpRound(config())
    sent = []
    now = 0.0
    for _ in range(20):  # bounded
        frame, wake = state.poll(now)
        if frame is not None:
            sent.append(now)
        if state.done:
            break
        now = wake
    assert sent == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert state.failure is not None
    assert "5 DISCOVERs" in state.failure
    assert "no OFFER at all" in state.failure
    assert state.offer is None


def test_dhcp_takes_an_offer_with_pi_boot_after_the_quirk_window():
    state = DhcpRound(config(offer_quirk_window=0.5))
    state.poll(100.0)
    state.on_frame(offer_frame(), 101.0)
    assert state.offer is not None
    assert state.offer.yiaddr == "10.42.1.1"
    assert state.done


def test_dhcp_misses_an_instant_offer_like_the_rom_and_keeps_trying():
    state = DhcpRound(config(offer_quirk_window=0.5, dhcp_tries=2))
    state.poll(0.0)
    state.on_frame(offer_frame(), 0.002)  # dnsmasq without dhcp-reply-delay
    assert state.offer is None
    assert state.missed == 1
    frame, _ = state.poll(5.0)
    assert frame is not None  # second DISCOVER
    state.on_frame(offer_frame(), 5.001)
    state.poll(10.0)
    assert state.failure is not None
    assert "fast-reply" in state.failure
    assert "2 DISCOVERs" in state.failure


def test_quirk_window_zero_takes_instant_offers():
    state = DhcpRound(config(offer_quirk_window=0.0))
    state.poll(0.0)
    state.on_frame(offer_frame(), 0.001)
    assert state.offer is not None


def test_dhcp_refuses_an_offer_without_option_43():
    state = DhcpRound(config(dhcp_tries=1))
    state.poll(0.0)
    state.on_frame(offer_frame(option_43=None), 1.0)
    state.on_frame(offer_frame(option_43=b"\x06\x01\x03\xff"), 1.1)
    assert state.offer is None
    assert state.refused == 2
    state.poll(5.0)
    assert state.failure is not None
    assert "Raspberry Pi Boot" in state.failure


def test_dhcp_accepts_the_3b_string_with_trailing_spaces():
    state = DhcpRound(config())
    state.poll(0.0)
    state.on_frame(offer_frame(option_43=b"Raspberry Pi Boot   "), 1.0)
    assert state.offer is not None


@pytest.mark.parametrize(
    "frame",
    [
        offer_frame(xid=0x12345678),
        offer_frame(mac="b8:27:eb:00:00:01"),
        offer_frame(message_type=dhcp.DHCPACK),
        offer_frame(yiaddr=dhcp.UNSET_ADDRESS),
    ],
    ids=["other xid", "other Pi", "not an offer", "proxy only"],
)
def test_dhcp_ignores_replies_not_meant_or_not_usable(frame):
    state = DhcpRound(config())
    state.poll(0.0)
    state.on_frame(frame, 1.0)
    state.on_frame(b"garbage", 1.0)
    assert state.offer is None


# -- TFTP state machine ------------------------------------------------------------------------

PEER = (SERVER, 40000)


def data(block: int, payload: bytes) -> bytes:
    return struct.pack("!HH", OP_DATA, block) + payload


def test_rrq_is_octet_mode_with_optional_tsize():
    assert build_rrq("bootcode.bin", tsize=False) == b"\x00\x01bootcode.bin\x00octet\x00"
    assert build_rrq("a/start.elf", tsize=True).endswith(b"octet\x00tsize\x000\x00")


def test_tftp_lock_step_read_acks_every_block_and_hashes_the_file():
    content = bytes(range(256)) * 5  # 1280 bytes: blocks of 512, 512, 256
    sink = io.BytesIO()
    transfer = TftpTransfer("bootcode.bin", SERVER, tsize=False, sink=sink)
    [(rrq, destination)] = transfer.start()
    assert destination == (SERVER, 69)
    assert rrq.startswith(b"\x00\x01bootcode.bin\x00")
    acks = []
    for number, offset in enumerate(range(0, len(content), 512), start=1):
        sends, progressed = transfer.on_datagram(data(number, content[offset : offset + 512]), PEER)
        assert progressed
        [(ack, to)] = sends
        assert to == PEER
        acks.append(struct.unpack("!HH", ack))
    assert acks == [(OP_ACK, 1), (OP_ACK, 2), (OP_ACK, 3)]
    assert transfer.done
    assert transfer.found is True
    assert transfer.error is None
    assert sink.getvalue() == content
    assert transfer.sha256 == hashlib.sha256(content).hexdigest()


def test_tftp_file_of_whole_blocks_ends_with_an_empty_block():
    transfer = TftpTransfer("x", SERVER, tsize=False)
    transfer.start()
    transfer.on_datagram(data(1, b"a" * 512), PEER)
    assert not transfer.done
    transfer.on_datagram(data(2, b""), PEER)
    assert transfer.done
    assert transfer.size == 512


def test_tftp_duplicate_block_is_acked_again_and_not_counted():
    transfer = TftpTransfer("x", SERVER, tsize=False)
    transfer.start()
    transfer.on_datagram(data(1, b"a" * 512), PEER)
    sends, progressed = transfer.on_datagram(data(1, b"a" * 512), PEER)
    assert not progressed
    assert sends == [(struct.pack("!HH", OP_ACK, 1), PEER)]
    assert transfer.size == 512


def test_tftp_packets_from_another_transfer_id_get_error_5():
    transfer = TftpTransfer("x", SERVER, tsize=False)
    transfer.start()
    transfer.on_datagram(data(1, b"a" * 512), PEER)
    sends, progressed = transfer.on_datagram(data(1, b"b" * 512), (SERVER, 40001))
    assert not progressed
    [(packet, to)] = sends
    assert to == (SERVER, 40001)
    assert struct.unpack("!HH", packet[:4]) == (OP_ERROR, 5)
    assert transfer.on_datagram(data(2, b"c"), ("10.9.9.9", 40000)) == ([], False)
    assert transfer.size == 512


def test_tftp_not_found_is_not_an_error():
    transfer = TftpTransfer("bootsig.bin", SERVER, tsize=False)
    transfer.start()
    transfer.on_datagram(struct.pack("!HH", OP_ERROR, 1) + b"file not found\x00", PEER)
    assert transfer.done
    assert transfer.found is False
    assert transfer.error is None


def test_tftp_other_errors_fail_the_transfer():
    transfer = TftpTransfer("x", SERVER, tsize=False)
    transfer.start()
    transfer.on_datagram(struct.pack("!HH", OP_ERROR, 2) + b"Access violation\x00", PEER)
    assert transfer.error is not None
    assert "Access violation" in transfer.error


def test_tftp_oack_with_tsize_is_acked_with_block_zero_and_checked():
    transfer = TftpTransfer("s/start.elf", SERVER, tsize=True)
    transfer.start()
    sends, _ = transfer.on_datagram(struct.pack("!H", OP_OACK) + b"tsize\x00600\x00", PEER)
    assert sends == [(struct.pack("!HH", OP_ACK, 0), PEER)]
    assert transfer.tsize == 600
    transfer.on_datagram(data(1, b"a" * 512), PEER)
    transfer.on_datagram(data(2, b"a" * 80), PEER)  # 592, not 600
    assert transfer.error is not None
    assert "tsize 600" in transfer.error


def test_tftp_probe_aborts_with_early_terminate_once_the_file_exists():
    transfer = TftpTransfer(f"{SERIAL}/start.elf", SERVER, tsize=True, probe=True)
    transfer.start()
    sends, _ = transfer.on_datagram(struct.pack("!H", OP_OACK) + b"tsize\x002952960\x00", PEER)
    [(packet, to)] = sends
    assert to == PEER
    assert packet == struct.pack("!HH", OP_ERROR, 0) + b"Early terminate\x00"
    assert transfer.found is True
    assert transfer.tsize == 2952960
    assert transfer.size == 0


def test_tftp_timeout_retransmits_then_fails():
    transfer = TftpTransfer("bootcode.bin", SERVER, tsize=False, retries=2)
    [first] = transfer.start()
    assert transfer.on_timeout() == [first]
    assert transfer.on_timeout() == [first]
    assert transfer.on_timeout() == []
    assert transfer.done
    assert transfer.error is not None
    assert "TFTP timeout reading bootcode.bin" in transfer.error
    assert transfer.retransmits == 2


def test_tftp_timeout_mid_file_resends_the_last_ack():
    transfer = TftpTransfer("x", SERVER, tsize=False, retries=1)
    transfer.start()
    transfer.on_datagram(data(1, b"a" * 512), PEER)
    assert transfer.on_timeout() == [(struct.pack("!HH", OP_ACK, 1), PEER)]
    transfer.on_timeout()
    assert transfer.error is not None
    assert "no block 2 after 512 bytes" in transfer.error


def test_tftp_refuses_oversized_files():
    transfer = TftpTransfer("x", SERVER, tsize=False, max_bytes=1000)
    transfer.start()
    transfer.on_datagram(data(1, b"a" * 512), PEER)
    transfer.on_datagram(data(2, b"a" * 512), PEER)
    assert transfer.error is not None
    assert "larger than" in transfer.error


# -- boot order and outcome -------------------------------------------------------------------


def test_rom_order_starts_like_the_rom_and_repeats_reads():
    names = [step.name for step in ROM_ORDER]
    assert names[:3] == ["bootcode.bin", "bootsig.bin", "start.elf"]
    assert ROM_ORDER[0].phase == ROM_ORDER[1].phase == "rom"
    assert ROM_ORDER[2].probe
    assert ROM_ORDER[2].phase == "bootcode"
    assert not ROM_ORDER[1].required  # bootsig.bin absent is fine
    assert names.count("start.elf") == 2
    assert names.count("config.txt") == 4
    assert names.index("fixup.dat") == names.index("start.elf", 3) + 1
    kernel = next(step for step in ROM_ORDER if "kernel8.img" in step.names)
    assert kernel.names == ("kernel8.img", "kernel7.img")
    assert kernel.required
    assert "bcm2710-rpi-3-b-plus.dtb" in names


def test_steps_for_files_keeps_the_rom_start():
    steps = steps_for_files(["start.elf", "kernel8.img"])
    assert [s.name for s in steps] == [
        "bootcode.bin",
        "bootsig.bin",
        "start.elf",
        "start.elf",
        "kernel8.img",
    ]
    assert all(s.required for s in steps[3:])


def test_outcome_round_trips_through_json():
    outcome = BootOutcome(mac=MAC, serial=SERIAL, booted=True, address="10.42.1.1")
    outcome.steps.append(
        StepResult(
            step="bootcode.bin",
            phase="rom",
            kind="read",
            started=0.1,
            seconds=0.2,
            ok=True,
            found=True,
            bytes=10,
            sha256="ab",
        )
    )
    again = BootOutcome.from_json(outcome.to_json())
    assert again == outcome
    assert again.files() == {"bootcode.bin": "ab"}
