"""A real bramble-server on 127.0.0.1 in a background thread, for the browser and CLI tests
(and bench/dashboard.py), and the headless Chromium that opens its page.

The nodes file comes from an inventory of the repository (load_cluster): every harvested Pi,
plus synthetic MACs for slots not harvested when ``fill`` is set. Calls go through urllib, as
the CLI and the browser's fetch do: nothing but loopback is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bramble.model import load_cluster
from bramble.model.cli import synthetic_entries
from bramble.services.config import ServerConfig, ServerSecrets
from bramble.services.server.main import Running, start

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1200",
]
WAIT = 15.0
KEY = "k" * 40
AGENT = "agent-token-dash-0123456789"
ADMIN = "admin-token-dash-9876543210"


def nodes_from_inventory(name: str, fill: bool = False) -> list[dict[str, Any]]:
    """The Pis of ``inventory/<name>`` as nodes.json entries (harvested ones, or all)."""
    cluster = load_cluster(ROOT / "inventory" / name)
    size = cluster.model.banks.size
    fake = {
        (e.bank, e.slot): e.mac for e in synthetic_entries(name, cluster.model.banks.count, size)
    }
    nodes = []
    for pi in cluster.pis:
        mac = pi.mac or (fake[(pi.bank, pi.slot)] if fill else None)
        if mac:
            nodes.append(
                {"name": pi.name, "bank": pi.bank, "slot": pi.slot, "mac": mac, "ip": pi.ip}
            )
    return nodes


def _secret(path: Path, text: str) -> str:
    path.write_text(text + "\n", encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(tmp: Path, nodes: list[dict[str, Any]], public_read: bool = True) -> ServerConfig:
    """Loopback only; the beacon goes to 127.0.0.1 port 9 (discard)."""
    (tmp / "nodes.json").write_text(json.dumps(nodes), encoding="utf-8")
    return ServerConfig.model_validate(
        {
            "server": {
                "cluster": "dash",
                "listen": "127.0.0.1",
                "port": free_port(),
                "advertise": "127.0.0.1",
            },
            "beacon": {"interval": 5.0, "port": 9, "broadcast": "127.0.0.1"},
            "auth": {
                "cluster_key_file": _secret(tmp / "cluster.key", KEY),
                "agent_token_file": _secret(tmp / "agent.token", AGENT),
                "admin_token_file": _secret(tmp / "admin.token", ADMIN),
            },
            "store": {"sqlite": str(tmp / "server.db")},
            "model": {"nodes_file": str(tmp / "nodes.json")},
            "health": {"interval": 3600.0},
            "telemetry": {"batch_seconds": 0.05},
            "api": {"public_read": public_read},
            "warble": {"anonymous": True},
            "dispatch": {"timeout": 5.0},
        }
    )


@dataclass
class Live:
    """A server running in its own thread and event loop."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    running: Running

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.running.port}"

    def run(self, coroutine: Any) -> Any:
        """Run a coroutine on the server's loop, from the test's thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def call(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def register(self, mac: str, port: int = 9) -> None:
        status, answer = self.call(
            "POST",
            "/api/v1/register",
            AGENT,
            {
                "mac": mac,
                "ip": "127.0.0.1",
                "hostname": "pi",
                "agent_version": "0.1.0",
                "agent_port": port,
            },
        )
        assert status == 200, answer

    def telemetry(self, mac: str, cpu: float = 5.0, temp: float = 45.0, mem: float = 20.0) -> None:
        sample = {
            "ts": time.time(),
            "cpu_percent": cpu,
            "mem_used_percent": mem,
            "mem_available_bytes": 500_000_000,
            "disk_used_percent": 30.0,
            "temp_c": temp,
        }
        status, answer = self.call(
            "POST", "/api/v1/telemetry", AGENT, {"mac": mac, "samples": [sample]}
        )
        assert status == 200, answer


def serve(config_: ServerConfig) -> Iterator[Live]:
    """Start the server, yield it, always stop it and its thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="bramble-live", daemon=True)
    thread.start()
    secrets = ServerSecrets(cluster_key=KEY.encode(), agent_token=AGENT, admin_token=ADMIN)
    try:
        started: Future[Running] = asyncio.run_coroutine_threadsafe(start(config_, secrets), loop)
        running = started.result(30)
        live = Live(loop, thread, running)
        try:
            yield live
        finally:
            live.run(running.stop())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def fake_agent(output: str) -> tuple[web.AppRunner, int]:
    """An agent on a loopback port that runs every job by answering ``output``."""

    async def jobs(request: web.Request) -> web.Response:
        return web.json_response({"state": "done", "output": output, "error": None})

    app = web.Application()
    app.router.add_post("/jobs", jobs)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, int(port)


def have_chromium() -> bool:
    """Debian's chromium and chromium-driver are installed."""
    return bool(shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER))


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium through chromedriver (selenium); its profile is removed afterwards."""
    from selenium import webdriver  # noqa: PLC0415 - optional: only the browser tests need it
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    profile = tempfile.mkdtemp(prefix="brt-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            driver.set_page_load_timeout(30)
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: Any, condition: Any, what: str, seconds: float = WAIT) -> Any:
    """Poll ``condition(driver)`` every 0.1 s until it is true (TimeoutException naming it)."""
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415 - optional dep

    return WebDriverWait(driver, seconds, poll_frequency=0.1).until(condition, what)


def open_page(driver: Any, live: Live) -> None:
    """The dashboard with an empty sessionStorage (no token), once its stream is live."""
    driver.get(live.url + "/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(live.url + "/")
    wait_for(driver, lambda d: d.find_element("id", "live").text == "live", "the stream is live")
