"""Shared plumbing of the power-controller simulators: outlets, faults, and a fake uhubctl.

``Outlets`` is the state every simulated controller switches: numbered outlets (or PoE ports,
or USB hub ports), each on or off, with callbacks so the lab can start a group's simulated Pis
when its outlet turns on and stop them when it turns off. ``Faults`` is what a test asks a
simulator to get wrong, the way real controllers do: stop answering (timeout), refuse the
login, or leave a relay stuck where it was.

``uhubctl_main`` behaves like the uhubctl command line (same options, same status lines),
keeping the hub state in a JSON file, so tests put a ``uhubctl`` script on PATH that calls
``bramble-sim uhubctl``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

#: Called with (outlet, on) after an outlet changed state.
OutletCallback = Callable[[int, bool], None]


@dataclass
class Faults:
    """Failures a simulator shows on request (tests flip these while it runs)."""

    #: Accept connections but never answer (the client times out).
    hang: bool = False
    #: Refuse every login / token / community, even a right one.
    refuse_auth: bool = False
    #: Outlets whose relay sticks: a switch request is acknowledged, nothing changes.
    stuck: set[int] = field(default_factory=set)


class Outlets:
    """Numbered outlets 1..count, each on or off; thread-safe; callbacks on every change."""

    def __init__(self, count: int, *, on: Iterable[int] = (), faults: Faults | None = None) -> None:
        if count < 1:
            raise ValueError("a controller has at least one outlet")
        self.count = count
        self.faults = faults or Faults()
        self._on = dict.fromkeys(range(1, count + 1), False)
        for n in on:
            self._check(n)
            self._on[n] = True
        self._callbacks: list[OutletCallback] = []
        self._lock = threading.Lock()
        #: Every accepted switch request as (outlet, on), in order, stuck ones included.
        self.requests: list[tuple[int, bool]] = []

    def _check(self, outlet: int) -> None:
        if not 1 <= outlet <= self.count:
            raise KeyError(f"outlet {outlet} does not exist (1..{self.count})")

    def subscribe(self, callback: OutletCallback) -> None:
        """Call ``callback(outlet, on)`` after every change of state."""
        self._callbacks.append(callback)

    def get(self, outlet: int) -> bool:
        self._check(outlet)
        with self._lock:
            return self._on[outlet]

    def snapshot(self) -> dict[int, bool]:
        with self._lock:
            return dict(self._on)

    def set(self, outlet: int, on: bool) -> bool:
        """Switch an outlet; returns the state it is in afterwards (unchanged when stuck)."""
        self._check(outlet)
        with self._lock:
            self.requests.append((outlet, on))
            if outlet in self.faults.stuck or self._on[outlet] == on:
                return self._on[outlet]
            self._on[outlet] = on
        for callback in list(self._callbacks):
            callback(outlet, on)
        return on


# --- fake uhubctl -------------------------------------------------------------------------

_USAGE = "Run with -h to get usage info."


def _parse_ports(text: str, count: int) -> list[int]:
    ports: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not match:
            raise ValueError(part)
        first = int(match.group(1))
        last = int(match.group(2) or first)
        ports.update(range(first, last + 1))
    return sorted(p for p in ports if 1 <= p <= count)


def _status(location: str, hub: dict[str, object], ports: list[int], title: str) -> list[str]:
    count = int(str(hub["ports"]))
    state = hub["on"]
    if not isinstance(state, dict):
        raise TypeError("hub state 'on' must be a mapping")
    lines = [
        f"{title} status for hub {location} [1d6b:0002 bramble-sim, USB 2.10, {count} ports, ppps]"
    ]
    for port in ports:
        if state.get(str(port), True):
            lines.append(f"  Port {port}: 0100 power")
        else:
            lines.append(f"  Port {port}: 0000 off")
    return lines


def uhubctl_main(argv: list[str], state_file: Path) -> tuple[int, str]:  # noqa: PLR0911, PLR0912
    """Run like ``uhubctl ARGV`` on the hubs described in ``state_file``; (exit code, output).

    ``state_file`` is JSON: ``{"hubs": {"1-1": {"ports": 4, "on": {"1": true, ...}}},
    "fail": false}``; ``"fail": true`` makes every call fail as a hub that stopped answering.
    Supported: ``-l LOCATION``, ``-p PORTS`` (``2``, ``1,3``, ``1-4``), ``-a on|off|cycle|0|1|2``,
    ``-d SECONDS`` (accepted), ``-r N`` (accepted), ``-N``/``-e`` (ignored).
    """
    data = json.loads(state_file.read_text(encoding="utf-8"))
    hubs: dict[str, dict[str, object]] = data["hubs"]
    location = action = ports_arg = None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-l", "--location", "-p", "--ports", "-a", "--action", "-d", "-r", "-w"):
            if not args:
                return 1, f"option requires an argument -- '{arg}'\n{_USAGE}\n"
            value = args.pop(0)
            if arg in ("-l", "--location"):
                location = value
            elif arg in ("-p", "--ports"):
                ports_arg = value
            elif arg in ("-a", "--action"):
                action = value
        elif arg in ("-N", "-e", "--nodesc", "--exact"):
            continue
        else:
            return 1, f"invalid option -- '{arg}'\n{_USAGE}\n"
    if data.get("fail"):
        return 1, "Can't open hub: Input/output error\n"
    selected = [location] if location else sorted(hubs)
    if location is not None and location not in hubs:
        return 1, f"No compatible devices detected at location {location}!\n{_USAGE}\n"
    actions = {"on": [True], "1": [True], "off": [False], "0": [False]}
    actions.update({"cycle": [False, True], "2": [False, True], "toggle": [], "3": []})
    if action is not None and action not in actions:
        return 1, f"Invalid action: {action}\n{_USAGE}\n"
    out: list[str] = []
    for loc in selected:
        hub = hubs[loc]
        count = int(str(hub["ports"]))
        try:
            ports = _parse_ports(ports_arg, count) if ports_arg else list(range(1, count + 1))
        except ValueError:
            return 1, f"Invalid ports: {ports_arg}\n{_USAGE}\n"
        out += _status(loc, hub, ports, "Current")
        state = hub["on"]
        if not isinstance(state, dict):
            raise TypeError("hub state 'on' must be a mapping")
        steps = actions[action] if action is not None else []
        if action in ("toggle", "3"):
            steps = [not state.get(str(ports[0]), True)] if ports else []
        for on in steps:
            for port in ports:
                state[str(port)] = on
            out.append(f"Sent power {'on' if on else 'off'} request")
            out += _status(loc, hub, ports, "New")
    if action is not None:
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, state_file)
    return 0, "\n".join(out) + "\n"


def write_uhubctl_state(state_file: Path, hubs: dict[str, int], *, on: bool = False) -> None:
    """Create a fake uhubctl state: ``{location: number of ports}``, every port ``on``."""
    data = {
        "hubs": {
            loc: {"ports": count, "on": {str(p): on for p in range(1, count + 1)}}
            for loc, count in hubs.items()
        },
        "fail": False,
    }
    state_file.write_text(json.dumps(data), encoding="utf-8")


# --- running a simulator in a background thread -----------------------------------------


class ThreadedSim:
    """Base of the network simulators: an asyncio server in a thread of its own.

    Subclasses implement ``_serve()`` (start listening on ``self.host``, return the bound port)
    and ``_shutdown()``. ``start()`` returns once the port is bound; ``close()`` stops the
    server and joins the thread (also as a context manager, so tests always clean up).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    async def _serve(self) -> int:
        raise NotImplementedError

    async def _shutdown(self) -> None:
        raise NotImplementedError

    def start(self, timeout: float = 10.0) -> int:
        """Start serving in a background thread; the bound port."""
        ready = threading.Event()
        errors: list[BaseException] = []

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            try:
                self.port = await self._serve()
            except BaseException as exc:  # reported to start()'s caller
                errors.append(exc)
                ready.set()
                return
            ready.set()
            await self._stopped.wait()
            await self._shutdown()

        def run() -> None:
            # asyncio.run cancels what is still pending (hung sessions) before it returns
            asyncio.run(main())

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"{type(self).__name__} did not start within {timeout} s")
        if errors:
            self._thread.join(timeout)
            raise errors[0]
        return self.port

    def close(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread (idempotent)."""
        loop, stopped, thread = self._loop, self._stopped, self._thread
        if loop is None or stopped is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_forever(self, ready: Callable[[], None] | None = None) -> None:
        """Block until SIGINT or SIGTERM (the command line; the caller closes).

        ``ready`` is called once the signal handler is in place (e.g. to print the port).
        """
        stop = threading.Event()

        def handler(signum: int, frame: object) -> None:
            stop.set()

        previous = signal.signal(signal.SIGTERM, handler)
        if ready is not None:
            ready()
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
