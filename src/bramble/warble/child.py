"""``python -m bramble.warble.child``: run one Warble under resource limits.

Reads one JSON request on standard input (source, user, limits, the user's saved values),
limits its own memory, CPU time, file size and open files, runs the Warble and writes JSON
lines on standard output as things happen: ``{"out": line}``, ``{"light": [i, r, g, b]}``,
``{"sound": url}``, ``{"save": [key, value]}``, and last ``{"result": {...}}``; before
all of them ``{"ready": true}`` once it has started. The parent
(``bramble.warble.isolated``) applies saves and effects and kills this process on overrun.
"""

from __future__ import annotations

import json
import math
import resource
import sys
from typing import Any, TextIO

from bramble.warble.interpreter import run
from bramble.warble.limits import Limits
from bramble.warble.store import MemoryStore

_START_CPU_SECONDS = 2  # CPU time already spent starting up, allowed on top of the run's


def limit_resources(limits: Limits) -> None:
    """Bound this process: address space, CPU seconds, no files written, few files open."""
    cpu = math.ceil(limits.wall_time + limits.kill_grace) + _START_CPU_SECONDS
    settings = (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_FSIZE, 0),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NOFILE, 32),
    )
    for which, wanted in settings:
        _soft, hard = resource.getrlimit(which)
        value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(which, (value, value))


class _Channel:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def send(self, message: dict[str, Any]) -> None:
        self.stream.write(json.dumps(message, ensure_ascii=True) + "\n")
        self.stream.flush()


class _ChildStore(MemoryStore):
    """The user's values as the parent sent them; every SAVE is also reported to the parent."""

    def __init__(self, user: str, values: dict[str, str], channel: _Channel) -> None:
        super().__init__({user: values})
        self.channel = channel

    def save(self, user: str, key: str, value: str, *, max_keys: int) -> None:
        super().save(user, key, value, max_keys=max_keys)
        self.channel.send({"save": [key, value]})


class _ChildEffects:
    def __init__(self, channel: _Channel) -> None:
        self.channel = channel

    def light(self, index: int, red: int, green: int, blue: int) -> None:
        self.channel.send({"light": [index, red, green, blue]})

    def sound(self, url: str) -> None:
        self.channel.send({"sound": url})


def main() -> int:
    request = json.loads(sys.stdin.read())
    limits = Limits.from_json(request["limits"])
    user = str(request["user"])
    saved = {str(k): str(v) for k, v in dict(request.get("saved", {})).items()}
    limit_resources(limits)
    channel = _Channel(sys.stdout)
    channel.send({"ready": True})  # the parent's clock for this run starts now
    result = run(
        str(request["source"]),
        limits=limits,
        user=user,
        store=_ChildStore(user, saved, channel),
        effects=_ChildEffects(channel),
        on_output=lambda line: channel.send({"out": line}),
    )
    summary = result.to_json()
    summary["lines"] = []  # already sent one by one
    channel.send({"result": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
