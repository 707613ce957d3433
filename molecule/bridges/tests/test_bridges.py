"""The bridges role in a systemd container: bramble-bridge and bramble-sound run, configured
from the model, and the bridge reaches the simulated boards (prepare.yml) with the secrets the
role compiled into their firmware."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

API = "http://127.0.0.1:8472/api/v1"
SECRETS = "/etc/bramble/bridge-secrets"
FIRMWARE = "/var/lib/bramble/firmware"
BUTTONS_SECRET = "molecule-buttons-secret-0123456789"  # noqa: S105 (inventory/group_vars)


def _api(host, path: str, body: dict[str, Any] | None = None, token: bool = True):
    """(status, JSON answer) of one call to bramble-bridge, made inside the container."""
    args = ["curl", "-sS", "--max-time", "10", "-o", "/root/answer", "-w", "%{http_code}"]
    if token:
        secret = host.file(f"{SECRETS}/api-token").content_string.strip()
        args += ["-H", f"Authorization: Bearer {secret}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    status = int(host.check_output(shlex.join([*args, f"{API}/{path}"])))
    return status, json.loads(host.file("/root/answer").content_string or "{}")


@pytest.mark.parametrize("unit", ["bramble-bridge", "bramble-sound"])
def test_services_are_enabled_and_active_as_their_own_user(host, unit):
    service = host.service(unit)
    assert service.is_enabled
    assert service.is_running
    assert host.check_output(f"systemctl show -p User --value {unit}") == "bramble-bridge"


def test_bridge_listens_on_loopback_and_sound_for_the_bridge(host):
    listening = {
        line.split()[3] for line in host.check_output("ss -ltnH").splitlines() if line.strip()
    }
    assert "127.0.0.1:8472" in listening
    assert "0.0.0.0:8471" in listening


def test_health_answers_without_a_token(host):
    assert _api(host, "health", token=False) == (200, {"ok": True})


def test_everything_else_needs_the_token(host):
    status, answer = _api(host, "power", token=False)
    assert status == 401, answer


def test_bridge_config_comes_from_the_model(host):
    toml = host.file("/etc/bramble/bridge.toml")
    assert toml.user == "root"
    assert toml.group == "bramble-bridge"
    assert toml.mode == 0o640
    text = toml.content_string
    assert 'url = "http://10.43.0.5:80"' in text
    assert 'url = "http://10.43.0.6:80"' in text
    assert 'pixel_type = "GRBW"' in text
    assert "pixels = 12" in text
    assert 'url = "http://10.43.0.7:8471"' in text
    assert 'sound_allow = ["http://10.43.0.1/sounds/"]' in text


def test_secrets_are_private_and_the_vault_one_is_used(host):
    for name in ("api-token", "sound-token", "board-buttons", "board-lights"):
        secret = host.file(f"{SECRETS}/{name}")
        assert (secret.user, secret.group, secret.mode) == ("root", "bramble-bridge", 0o640)
        assert len(secret.content_string.strip()) >= 16, name
    assert host.file(f"{SECRETS}/board-buttons").content_string == BUTTONS_SECRET + "\n"
    assert host.file(f"{SECRETS}/board-lights").content_string.strip() != BUTTONS_SECRET
    assert host.file(SECRETS).mode == 0o750


def test_each_board_gets_its_own_firmware_settings(host):
    settings = {
        board: host.file(f"{FIRMWARE}/{board}/bramble_settings.h")
        for board in ("buttons", "lights")
    }
    for board, header in settings.items():
        assert header.mode == 0o600
        assert host.file(f"{FIRMWARE}/{board}/{board}.ino").is_file
        assert host.file(f"{FIRMWARE}/{board}/bramble_http.h").is_file
    buttons = settings["buttons"].content_string
    lights = settings["lights"].content_string
    assert "#define BRAMBLE_MAC { 0x02, 0x62, 0x72, 0x2b, 0x00, 0x05 }" in buttons
    assert "#define BRAMBLE_MAC { 0x02, 0x62, 0x72, 0x2b, 0x00, 0x06 }" in lights
    assert "#define BRAMBLE_IP 10, 43, 0, 5" in buttons
    assert f'#define BRAMBLE_SECRET "{BUTTONS_SECRET}"' in buttons
    lights_secret = host.file(f"{SECRETS}/board-lights").content_string.strip()
    assert f'#define BRAMBLE_SECRET "{lights_secret}"' in lights
    assert "#define BRAMBLE_PIXELS 12" in lights
    assert "#define BRAMBLE_PIXEL_TYPE NEO_GRBW" in lights


def test_the_bridge_reaches_the_buttons_board(host):
    status, state = _api(host, "power")
    assert status == 200, state
    assert (state["board"], state["power"], state["reset"]) == ("buttons", "idle", "idle")


def test_the_bridge_drives_the_light(host):
    status, state = _api(host, "lights/fill", {"r": 0, "g": 40, "b": 0, "w": 10})
    assert status == 200, state
    assert (state["pixels"], state["type"], state["animation"]) == (12, "GRBW", "off")
    status, answer = _api(host, "lights/pixels", {"pixels": [{"index": 12, "r": 1}]})
    assert status == 400, answer
    assert "index" in answer["error"]


def test_the_bridge_reaches_bramble_sound_with_the_shared_token(host):
    status, state = _api(host, "sound")
    assert status == 200, state
    assert state["playing"] is None
    assert 0 <= state["volume"] <= 100
