"""The Synaccess telnet PDU simulator, spoken to over a raw socket like a terminal would."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from bramble.sim.power import Outlets
from bramble.sim.synaccess import SynaccessSim

IAC, WILL = 255, 251


@pytest.fixture
def pdu() -> Iterator[SynaccessSim]:
    with SynaccessSim(Outlets(5, on=[4]), "admin", "pw1", busy_s=0.2) as sim:
        yield sim


class Term:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=3)
        self.seen = b""

    def until(self, marker: bytes) -> bytes:
        deadline = time.monotonic() + 3
        while marker not in self.seen:
            assert time.monotonic() < deadline, self.seen
            data = self.sock.recv(4096)
            if not data:
                break
            self.seen += data
        text, _, self.seen = self.seen.partition(marker)
        return text + marker

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")

    def login(self, user: str = "admin", password: str = "pw1") -> bytes:  # noqa: S107
        banner = self.until(b"User ID: ")
        self.send(user)
        self.until(b"Password: ")
        self.send(password)
        return banner


def test_login_pshow_pset(pdu: SynaccessSim) -> None:
    term = Term(pdu.port)
    banner = term.login()
    assert banner.startswith(bytes([IAC, WILL, 1, IAC, WILL, 3]))
    assert b"Synaccess Inc. Telnet Session" in banner
    term.until(b">")
    term.send("pshow")
    table = term.until(b"\r\n>").decode()
    assert "pshow" in table  # echoed
    assert "   4 |    Outlet4 |   ON |" in table
    assert "   1 |    Outlet1 |   OFF|" in table
    term.send("pset 1 1")
    term.until(b"\r\n>")
    assert pdu.outlets.get(1) is True
    term.send("pset 9 1")
    assert b"Invalid outlet" in term.until(b"\r\n>")
    term.send("reboot now")
    assert b"Invalid command" in term.until(b"\r\n>")
    term.send("logout")
    term.until(b"Logged out.")


def test_password_is_not_echoed_and_wrong_login_closes(pdu: SynaccessSim) -> None:
    term = Term(pdu.port)
    term.login(password="nope")  # noqa: S106
    rest = term.until(b"Login Failed.")
    assert b"nope" not in rest
    assert term.sock.recv(100) in (b"\r\n", b"")


def test_input_while_busy_is_dropped(pdu: SynaccessSim) -> None:
    term = Term(pdu.port)
    term.login()
    term.until(b">")
    term.send("pset 2 1")
    time.sleep(0.05)  # the unit is busy for 0.2 s after switching
    term.send("pset 3 1")
    term.until(b"\r\n>")
    time.sleep(0.3)
    term.send("pshow")
    table = term.until(b"\r\n>").decode()
    assert "   3 |    Outlet3 |   OFF|" in table
    assert pdu.commands == ["pset 2 1", "pshow"]


def test_refuse_auth_and_hang_faults(pdu: SynaccessSim) -> None:
    pdu.faults.refuse_auth = True
    term = Term(pdu.port)
    term.login()
    term.until(b"Login Failed.")
    pdu.faults.refuse_auth = False
    pdu.faults.hang = True
    term = Term(pdu.port)
    term.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        term.until(b"User ID: ")
