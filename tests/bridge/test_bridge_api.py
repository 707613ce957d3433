"""bramble-bridge against the board simulators and a real bramble-sound (mpg123 into a file)."""

from __future__ import annotations

import time

import pytest

from bramble.bridge.effects import BridgeEffects
from bramble.bridge.web import RateLimiter

from .conftest import TOKEN, BridgeLab, call


def wait_for(check, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_health_needs_no_token_but_everything_else_does(bridge_lab: BridgeLab) -> None:
    assert bridge_lab.api("health", token=None).body == {"ok": True}
    for path in ("power", "lights", "sound"):
        answer = bridge_lab.api(path, token=None)
        assert answer.status == 401, path
        assert bridge_lab.api(path, token="wrong-token-0123456789").status  # noqa: S106 == 401
    answer = bridge_lab.api("power", {"action": "press", "confirm": True}, token=None)
    assert answer.status == 401
    assert bridge_lab.buttons.log == []


def test_power_press_reset_hold_release(bridge_lab: BridgeLab) -> None:
    answer = bridge_lab.api("power", {"action": "press", "ms": 100, "confirm": True})
    assert answer.status == 200, answer.body
    assert answer.body == {"button": "power", "ms": 100, "state": "pressed"}
    assert bridge_lab.api("power").body["power"] == "pressed"
    assert wait_for(lambda: bridge_lab.api("power").body["power"] == "idle")
    assert bridge_lab.api("power", {"action": "reset", "confirm": True}).body["ms"] == 250
    busy = bridge_lab.api("power", {"action": "reset", "confirm": True})
    assert busy.status == 409
    assert "already pressed" in busy.body["error"]
    hold = bridge_lab.api("power", {"action": "hold", "confirm": True})
    assert hold.body == {"button": "power", "ms": 6000, "state": "pressed"}
    released = bridge_lab.api("power", {"action": "release"})
    assert released.body["power"] == "idle"
    assert bridge_lab.buttons.log == [("power", 100), ("reset", 250), ("power", 6000)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "press", "ms": 2001, "confirm": True}, "ms must be an integer 50..2000"),
        ({"action": "press", "ms": 10, "confirm": True}, "ms must be an integer 50..2000"),
        ({"action": "press", "ms": "500", "confirm": True}, "ms must be an integer"),
        ({"action": "press", "ms": 500}, "confirm"),
        ({"action": "hold", "confirm": True, "ms": 9000}, "leave out ms"),
        ({"action": "explode", "confirm": True}, "action must be one of"),
        ({"action": "press", "confirm": True, "extra": 1}, "unknown field(s) extra"),
    ],
)
def test_bad_power_requests_reach_no_board(bridge_lab: BridgeLab, body, message) -> None:
    answer = bridge_lab.api("power", body)
    assert answer.status == 400
    assert message in answer.body["error"]
    assert bridge_lab.buttons.requests == []


def test_stuck_solenoid_is_reported(bridge_lab: BridgeLab) -> None:
    bridge_lab.buttons.jam("reset")
    assert bridge_lab.api("power", {"action": "reset", "ms": 50, "confirm": True}).status == 200
    assert wait_for(lambda: bridge_lab.api("power").body["reset"] == "stuck")
    answer = bridge_lab.api("power", {"action": "reset", "ms": 50, "confirm": True})
    assert answer.status == 503
    assert "stuck" in answer.body["error"]
    assert bridge_lab.api("power", {"action": "press", "confirm": True}).status == 200


def test_silent_dropping_and_wrongly_keyed_boards(bridge_lab: BridgeLab) -> None:
    bridge_lab.buttons.fail = "timeout"
    started = time.monotonic()
    answer = bridge_lab.api("power")
    assert answer.status == 504
    assert "did not answer within 1.5 s" in answer.body["error"]
    assert time.monotonic() - started < 5
    bridge_lab.buttons.fail = "drop"
    assert bridge_lab.api("power").status == 502
    bridge_lab.buttons.fail = None
    bridge_lab.lights.secret = "another-secret-0123456789"  # noqa: S105
    answer = bridge_lab.api("lights")
    assert answer.status == 502
    assert "refused the bridge's secret" in answer.body["error"]


def test_lights_pixels_fill_brightness_animation(bridge_lab: BridgeLab) -> None:
    lights = bridge_lab.lights
    pixels = [{"index": i, "r": i, "g": 255 - i, "b": 7, "w": 1} for i in range(24)]
    pixels[3] = {"index": 3, "r": 9, "g": 9, "b": 9}
    answer = bridge_lab.api("lights/pixels", {"pixels": pixels})
    assert answer.status == 200, answer.body
    assert lights.pixels[0] == (0, 255, 7, 1)
    assert lights.pixels[3] == (9, 9, 9, 0)
    assert lights.pixels[23] == (23, 232, 7, 1)
    # 24 consecutive pixels fit one /pixels request (the firmware's line limit)
    assert [r.split("?")[0] for r in lights.requests] == ["POST /pixels"]
    lights.requests.clear()
    bridge_lab.api("lights/pixels", {"pixels": [{"index": 1, "r": 1}, {"index": 5, "b": 2}]})
    assert len(lights.requests) == 2
    assert bridge_lab.api("lights/fill", {"r": 10, "g": 20, "b": 30, "w": 40}).status == 200
    assert set(lights.pixels) == {(10, 20, 30, 40)}
    assert bridge_lab.api("lights/brightness", {"value": 200}).body["brightness"] == 200
    answer = bridge_lab.api("lights/animation", {"name": "rainbow"})
    assert answer.body["animation"] == "rainbow"
    assert bridge_lab.api("lights").body["animation"] == "rainbow"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("lights/pixels", {"pixels": [{"index": 24, "r": 1}]}, "index must be an integer 0..23"),
        ("lights/pixels", {"pixels": [{"index": -1, "r": 1}]}, "index must be an integer 0..23"),
        ("lights/pixels", {"pixels": [{"index": 0, "r": 256}]}, "r must be an integer 0..255"),
        ("lights/pixels", {"pixels": [{"index": 0, "g": -1}]}, "g must be an integer 0..255"),
        ("lights/pixels", {"pixels": []}, "list of 1..24 pixels"),
        ("lights/fill", {"r": 1.5}, "r must be an integer"),
        ("lights/fill", {"r": True}, "r must be an integer"),
        ("lights/brightness", {"value": 300}, "value must be an integer 0..255"),
        ("lights/animation", {"name": "disco"}, "name must be one of off, rainbow"),
        ("lights/cluster", {"state": "booting"}, "progress is required"),
        ("lights/cluster", {"state": "on-fire"}, "state must be one of"),
        ("lights/fill", {"r": 1, "board": "nope"}, "no lights board named 'nope'"),
    ],
)
def test_bad_light_requests_reach_no_board(bridge_lab: BridgeLab, path, body, message) -> None:
    answer = bridge_lab.api(path, body)
    assert answer.status in (400, 404), answer.body
    assert message in answer.body["error"]
    assert bridge_lab.lights.requests == []


def test_cluster_state_animations(bridge_lab: BridgeLab) -> None:
    answer = bridge_lab.api("lights/cluster", {"state": "booting", "progress": 40})
    assert (answer.body["animation"], answer.body["progress"]) == ("progress", 40)
    assert bridge_lab.api("lights/cluster", {"state": "degraded"}).body["animation"] == "pulse"
    assert bridge_lab.lights.show.color[:3] == (255, 128, 0)
    assert bridge_lab.api("lights/cluster", {"state": "warble"}).body["animation"] == "flash"
    # the flash ends by itself and the board returns to the cluster state
    assert wait_for(lambda: bridge_lab.api("lights").body["animation"] == "pulse", 5)


def test_sound_plays_allow_listed_url_through_mpg123(bridge_lab: BridgeLab) -> None:
    url = f"{bridge_lab.files_url}tone.mp3"
    assert bridge_lab.api("sound/volume", {"percent": 50}).body["volume"] == 50
    answer = bridge_lab.api("sound/play", {"url": url})
    assert answer.status == 200, answer.body
    assert answer.body["played"] == 1
    assert wait_for(lambda: bridge_lab.played.exists() and bridge_lab.played.stat().st_size > 1000)
    assert wait_for(lambda: bridge_lab.api("sound").body["playing"] is None)
    assert bridge_lab.api("sound/stop", {}).body["playing"] is None


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/tone.mp3",
        "file:///etc/passwd",
        "{files}../secret.mp3",
        "{files}tone.mp3 extra",
    ],
)
def test_sound_allow_list_refusals(bridge_lab: BridgeLab, url: str) -> None:
    answer = bridge_lab.api("sound/play", {"url": url.format(files=bridge_lab.files_url)})
    assert answer.status == 403
    assert "allow-list" in answer.body["error"]
    assert bridge_lab.player.played == 0


def test_sound_player_refuses_without_its_token(bridge_lab: BridgeLab) -> None:
    answer = call(f"{bridge_lab.sound_url}/play", {"url": f"{bridge_lab.files_url}tone.mp3"})
    assert answer.status == 401
    assert bridge_lab.player.played == 0


def test_oversized_and_malformed_bodies(bridge_lab: BridgeLab) -> None:
    big = b'{"pixels": [' + b'{"index": 0, "r": 1},' * 400 + b'{"index": 0}]}'
    answer = bridge_lab.api("lights/pixels", raw=big)
    assert answer.status == 413
    assert bridge_lab.api("lights/fill", raw=b"{not json").status == 400
    assert bridge_lab.api("lights/fill", [1, 2]).status == 400
    assert bridge_lab.lights.requests == []


def test_rate_limit(bridge_lab: BridgeLab) -> None:
    # the lab allows bursts of 40 and one request a second after that
    statuses = [bridge_lab.api("health", token=None).status for _ in range(50)]
    assert statuses[:30] == [200] * 30
    assert 429 in statuses[40:]
    answer = bridge_lab.api("health", token=None)
    assert answer.status == 429
    assert int(answer.headers["Retry-After"]) >= 1


def test_rate_limiter_buckets() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(1.0)
    assert limiter.take("b") == 0.0  # per client
    now[0] = 1.0
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_warble_effects_reach_the_light_and_the_sound(bridge_lab: BridgeLab) -> None:
    effects = BridgeEffects(bridge_lab.url, TOKEN)
    effects.light(5, 1, 2, 3)
    effects.sound(f"{bridge_lab.files_url}tone.mp3")
    assert bridge_lab.lights.pixels[5] == (1, 2, 3, 0)
    assert bridge_lab.player.played == 1
    effects.light(99, 1, 2, 3)
    assert len(effects.failures) == 1
    assert "index must be an integer 0..23" in effects.failures[0]
