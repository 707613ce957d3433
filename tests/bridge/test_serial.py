"""SerialTransport (pyserial) against the board simulator on the other end of a pseudo-terminal,
speaking the firmware's serial protocol: the bridge's requests, the board's answers, its
failures."""

from __future__ import annotations

import asyncio
import os
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bramble.bridge.boards import Board, BoardConfig, BoardError, SerialTransport, transport_for
from bramble.sim import boards as sim

from .conftest import BUTTONS_SECRET, LIGHTS_SECRET, Loop


@dataclass
class SerialLab:
    loop: Loop
    simulator: sim.Board
    board: Board
    transport: SerialTransport

    def call(self, method: str, path: str, **params: int | str) -> dict[str, object]:
        return self.loop.run(self.board.call(method, path, **params))


@pytest.fixture
def serial_lab(request: pytest.FixtureRequest) -> Iterator[SerialLab]:
    """A board simulator on a pty's master side; the bridge's Board on its slave device."""
    kind, secret = request.param if hasattr(request, "param") else ("buttons", BUTTONS_SECRET)
    master, slave = os.openpty()
    tty.setraw(slave)  # a real USB serial line does not echo; pyserial sets raw mode too
    loop = Loop()
    simulator: sim.Board = (
        sim.ButtonsBoard("buttons", BUTTONS_SECRET)
        if kind == "buttons"
        else sim.LightsBoard("lights", LIGHTS_SECRET, pixels=8, pixel_type="RGB")
    )
    task = asyncio.run_coroutine_threadsafe(simulator.serve_serial(master), loop.loop)
    config = BoardConfig(
        name=kind,
        kind=kind,
        url=f"serial://{os.ttyname(slave)}?baud=115200&settle=0",
        secret=secret,
        pixels=8,
        pixel_type="RGB",
        timeout=1.0,
    )
    transport = transport_for(config)
    assert isinstance(transport, SerialTransport)
    try:
        yield SerialLab(loop, simulator, Board(config, transport), transport)
    finally:
        transport.close()
        loop.loop.call_soon_threadsafe(task.cancel)
        loop.run(simulator.stop())
        loop.close()
        os.close(slave)
        os.close(master)


def test_state_press_and_stuck_report_over_serial(serial_lab: SerialLab) -> None:
    assert serial_lab.call("GET", "/state")["power"] == "idle"
    pressed = serial_lab.call("POST", "/press", button="reset", ms=50)
    assert pressed == {"button": "reset", "ms": 50, "state": "pressed"}
    assert serial_lab.call("GET", "/state")["reset"] == "pressed"
    assert serial_lab.simulator.requests[-1] == "GET /state?"
    assert ("reset", 50) in serial_lab.simulator.log  # type: ignore[attr-defined]
    serial_lab.simulator.jam("power")  # type: ignore[attr-defined]
    serial_lab.call("POST", "/press", button="power", ms=50)
    time.sleep(0.3)
    assert serial_lab.call("GET", "/state")["power"] == "stuck"
    with pytest.raises(BoardError) as refused:
        serial_lab.call("POST", "/press", button="power", ms=50)
    assert refused.value.status == 503


def test_the_port_stays_open_between_requests(serial_lab: SerialLab) -> None:
    # Every opening of a Mega's USB serial port resets the board: open once, not per request.
    for _ in range(5):
        serial_lab.call("GET", "/state")
    assert serial_lab.transport.opened == 1


def test_the_boards_refusals_come_through(serial_lab: SerialLab) -> None:
    with pytest.raises(BoardError) as bad:
        serial_lab.call("POST", "/press", button="power", ms=5000)
    assert bad.value.status == 502
    assert "ms must be 50..2000" in str(bad.value)
    assert serial_lab.call("POST", "/press", button="power", ms=60)["state"] == "pressed"


@pytest.mark.parametrize("serial_lab", [("lights", "not-the-lights-secret")], indirect=True)
def test_a_wrong_secret_is_reported_as_such(serial_lab: SerialLab) -> None:
    with pytest.raises(BoardError) as refused:
        serial_lab.call("GET", "/state")
    assert refused.value.status == 502
    assert "refused the bridge's secret" in str(refused.value)
    assert serial_lab.simulator.requests == ["GET /state?"]


@pytest.mark.parametrize("serial_lab", [("lights", LIGHTS_SECRET)], indirect=True)
def test_pixels_over_serial(serial_lab: SerialLab) -> None:
    params: dict[str, int | str] = {"from": 2, "data": "ff000000ff00"}
    state = serial_lab.call("POST", "/pixels", **params)
    assert state["animation"] == "off"
    lights = serial_lab.simulator
    assert isinstance(lights, sim.LightsBoard)
    assert lights.pixels[2:4] == [(255, 0, 0, 0), (0, 255, 0, 0)]


def test_a_silent_board_times_out_and_the_port_is_reopened(serial_lab: SerialLab) -> None:
    assert serial_lab.call("GET", "/state")["power"] == "idle"
    serial_lab.simulator.fail = "timeout"
    started = time.monotonic()
    with pytest.raises(BoardError) as silent:
        serial_lab.call("GET", "/state")
    assert silent.value.status == 504
    assert "did not answer within 1 s" in str(silent.value)
    assert time.monotonic() - started < 3
    serial_lab.simulator.fail = None  # the board comes back (what it swallowed meanwhile is lost)
    time.sleep(0.2)
    assert serial_lab.call("GET", "/state")["power"] == "idle"
    assert serial_lab.transport.opened == 2


def _config(url: str) -> BoardConfig:
    return BoardConfig(name="buttons", kind="buttons", url=url, secret=BUTTONS_SECRET)


def test_serial_urls_carry_baud_and_settle() -> None:
    default = transport_for(_config("serial:///dev/ttyACM0"))
    assert isinstance(default, SerialTransport)
    assert (default.device, default.baud, default.settle) == ("/dev/ttyACM0", 115200, 2.0)
    given = transport_for(_config("serial:///dev/ttyUSB1?baud=9600&settle=0.5"))
    assert isinstance(given, SerialTransport)
    assert (given.device, given.baud, given.settle) == ("/dev/ttyUSB1", 9600, 0.5)


@pytest.mark.parametrize(
    "url", ["serial:///dev/ttyACM0?baud=fast", "serial:///dev/ttyACM0?parity=E", "serial://"]
)
def test_bad_serial_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="serial:///dev/DEVICE"):
        transport_for(_config(url))
