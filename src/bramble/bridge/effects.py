"""Warble's LIGHTS and PLAYSOUND through bramble-bridge: an implementation of
bramble.warble.effects.Effects that calls the bridge's REST API (synchronously, as the
interpreter calls effects). A failing bridge never fails the Warble: the error is logged."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger("bramble.bridge.effects")


class BridgeEffects:
    def __init__(self, base_url: str, token: str, timeout: float = 3.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.failures: list[str] = []

    def light(self, index: int, red: int, green: int, blue: int) -> None:
        pixel = {"index": index, "r": red, "g": green, "b": blue}
        self._post("lights/pixels", {"pixels": [pixel]})

    def sound(self, url: str) -> None:
        self._post("sound/play", {"url": url})

    def _post(self, path: str, body: dict[str, Any]) -> None:
        request = urllib.request.Request(  # noqa: S310 (the bridge's own http(s) URL)
            f"{self.base_url}/api/v1/{path}",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                response.read(65536)
        except urllib.error.HTTPError as exc:
            self._failed(path, f"{exc.code} {exc.read(512).decode('utf-8', 'replace')}")
        except (OSError, ValueError) as exc:
            self._failed(path, str(exc))

    def _failed(self, path: str, reason: str) -> None:
        self.failures.append(f"{path}: {reason}")
        log.warning("bridge %s failed: %s", path, reason)
