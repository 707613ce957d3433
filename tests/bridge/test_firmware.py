"""The sketches in firmware/: the protocol constants agree with bramble.bridge.protocol, the
role's settings header is unique per board, and both sketches compile with avr-g++ for an
Arduino Mega against Debian's Arduino AVR core (the Ethernet and NeoPixel libraries are not
packaged in Debian: tests/bridge/stubs declares their API; the check compiles, it does not link).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest

from bramble.bridge import protocol as p

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
TEMPLATE = ROOT / "roles/bridges/templates/firmware/bramble_settings.h.j2"
AVR = Path("/usr/share/arduino/hardware/arduino/avr")
LAB = {"netmask": "255.255.0.0", "head_address": "10.42.0.1"}
BOARDS = [
    {
        "name": "buttons",
        "kind": "buttons",
        "address": "10.42.0.30",
        "mac": "02:62:72:00:00:01",
        "secret": "s3cret-buttons-0123456789",
    },
    {
        "name": "lights",
        "kind": "lights",
        "address": "10.42.0.31",
        "mac": "02:62:72:00:00:02",
        "pixels": 24,
        "pixel_type": "GRBW",
        "secret": "s3cret-lights-0123456789",
    },
]


def defines(text: str) -> dict[str, str]:
    return dict(re.findall(r"^#define (BRAMBLE_\w+) (.+)$", text, flags=re.M))


def render(board: dict[str, Any]) -> str:
    env = jinja2.Environment(  # noqa: S701 (a C header, not HTML)
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    env.filters["comment"] = lambda text, style: f"// {text}"
    env.filters["bool"] = bool
    env.filters["regex_replace"] = lambda value, pattern, repl: re.sub(pattern, repl, value)
    return env.from_string(TEMPLATE.read_text()).render(
        ansible_managed="Ansible managed",
        bramble_cluster=LAB,
        _bridges_board=board,
        bridges_board_port=80,
        bridges_serial_baud=115200,
        bridges_buttons_pins={"power": 22, "reset": 23, "power_sense": 24, "reset_sense": 25},
        bridges_buttons_sense=True,
        bridges_lights_pin=6,
        bridges_lights_brightness=64,
    )


def test_firmware_constants_match_the_bridge() -> None:
    http = defines((FIRMWARE / "common/bramble_http.h").read_text())
    buttons = defines((FIRMWARE / "buttons/buttons.ino").read_text())
    lights = defines((FIRMWARE / "lights/lights.ino").read_text())
    assert int(http["BRAMBLE_MAX_LINE"]) == p.MAX_LINE
    assert int(http["BRAMBLE_MAX_HEADERS"]) == p.MAX_HEADERS
    assert int(http["BRAMBLE_READ_TIMEOUT_MS"]) == p.READ_TIMEOUT_MS
    assert int(http["BRAMBLE_AUTH_FAIL_DELAY_MS"]) == p.AUTH_FAIL_DELAY_MS
    assert int(buttons["BRAMBLE_MIN_PRESS_MS"]) == p.MIN_PRESS_MS
    assert int(buttons["BRAMBLE_MAX_PRESS_MS"]) == p.MAX_PRESS_MS
    assert int(buttons["BRAMBLE_HOLD_MS"]) == p.HOLD_MS
    assert int(buttons["BRAMBLE_STUCK_CHECK_MS"]) == p.STUCK_CHECK_MS
    assert int(lights["BRAMBLE_MAX_PIXELS_PER_REQUEST"]) == p.MAX_PIXELS_PER_REQUEST
    assert int(lights["BRAMBLE_FLASH_CYCLES"]) == p.FLASH_CYCLES
    assert int(lights["BRAMBLE_FLASH_STEP_MS"]) == p.FLASH_STEP_MS
    names = re.search(
        r"ANIMATION_NAMES\[\] = \{(.*)\};", (FIRMWARE / "lights/lights.ino").read_text()
    )
    assert names is not None
    assert tuple(re.findall(r'"(\w+)"', names.group(1))) == p.ANIMATIONS
    assert f'"{p.SECRET_HEADER}:"' in (FIRMWARE / "common/bramble_http.h").read_text()


def test_settings_are_unique_per_board() -> None:
    rendered = [defines(render(board)) for board in BOARDS]
    for key in ("BRAMBLE_MAC", "BRAMBLE_IP", "BRAMBLE_SECRET", "BRAMBLE_BOARD_NAME"):
        assert rendered[0][key] != rendered[1][key], key
    assert rendered[0]["BRAMBLE_MAC"] == "{ 0x02, 0x62, 0x72, 0x00, 0x00, 0x01 }"
    assert rendered[1]["BRAMBLE_IP"] == "10, 42, 0, 31"
    assert rendered[1]["BRAMBLE_PIXEL_TYPE"] == "NEO_GRBW"
    assert rendered[1]["BRAMBLE_PIXEL_WHITE"] == "1"
    assert rendered[0]["BRAMBLE_GATEWAY"] == "10, 42, 0, 1"


@pytest.mark.parametrize("board", BOARDS, ids=lambda b: b["name"])
def test_sketch_compiles_for_an_arduino_mega(tmp_path: Path, board: dict[str, Any]) -> None:
    if shutil.which("avr-g++") is None or not (AVR / "cores/arduino/Arduino.h").exists():
        pytest.fail("avr-g++ or the Arduino core is missing: apt gcc-avr avr-libc arduino-core-avr")
    sketch = tmp_path / board["kind"]
    sketch.mkdir()
    shutil.copy(FIRMWARE / board["kind"] / f"{board['kind']}.ino", sketch)
    shutil.copy(FIRMWARE / "common/bramble_http.h", sketch)
    (sketch / "bramble_settings.h").write_text(render(board))
    command = [
        "avr-g++",
        "-c",
        "-x",
        "c++",
        "-std=gnu++11",
        "-Os",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-mmcu=atmega2560",
        "-DF_CPU=16000000L",
        "-DARDUINO=10819",
        "-DARDUINO_AVR_MEGA2560",
        "-DARDUINO_ARCH_AVR",
        "-include",
        "Arduino.h",
        f"-I{AVR}/cores/arduino",
        f"-I{AVR}/variants/mega",
        f"-I{AVR}/libraries/SPI/src",
        f"-I{Path(__file__).parent}/stubs",
        f"-I{sketch}",
        str(sketch / f"{board['kind']}.ino"),
        "-o",
        str(tmp_path / "sketch.o"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "sketch.o").stat().st_size > 1000
