"""Every bound on a Warble run, in one place, and the clock a run measures time with."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Limits:
    """Bounds for one run. The defaults are what the cluster and ``bramble warble run`` use.

    A run that crosses any of them stops with a ``limit`` error naming the bound.
    """

    max_source_chars: int = 10_000
    """Longest accepted program text, ``#pi{`` wrapper included."""
    max_nesting: int = 50
    """Deepest nesting of blocks, parentheses, calls and unary operators."""
    max_steps: int = 1_000_000
    """Statements executed plus loop tests made."""
    wall_time: float = 10.0
    """Seconds a run may take, SLEEP included."""
    max_output_bytes: int = 65_536
    """UTF-8 bytes of output, newlines included."""
    max_output_lines: int = 2_000
    """Lines of output (one per PRINT)."""
    max_string_chars: int = 10_000
    """Longest string a run may build."""
    max_precision: int = 10_000
    """Highest SETPRECISION, in significant decimal digits."""
    max_exponent: int = 100_000
    """Numbers stay below 10**max_exponent in size; smaller than 10**-max_exponent become 0."""
    max_saved_keys: int = 100
    """Keys one user may keep with SAVE."""
    max_key_chars: int = 64
    """Longest SAVE/LOAD key."""
    max_value_bytes: int = 16_384
    """Largest saved value, encoded (a 10,000-digit number fits)."""
    light_count: int = 24
    """Lights on the bridge: LIGHTS takes an index 0 .. light_count - 1."""
    max_lights: int = 1_000
    """LIGHTS calls per run."""
    max_sounds: int = 3
    """PLAYSOUND calls per run."""
    sound_hosts: tuple[str, ...] = ("example.org",)
    """Hosts PLAYSOUND may fetch from (http/https). ``.example.org`` also allows subdomains."""
    memory_bytes: int = 512 * 1024 * 1024
    """Address space of the isolated child process (RLIMIT_AS)."""
    kill_grace: float = 2.0
    """Seconds past wall_time before the isolated child is killed."""
    start_timeout: float = 15.0
    """Seconds the isolated child may take to start (Python and mpmath on a slow Pi)."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "sound_hosts":
                if not isinstance(value, tuple) or not all(isinstance(h, str) for h in value):
                    raise ValueError("sound_hosts must be a tuple of host names")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{field.name} must be a number, got {value!r}")
            elif value <= 0:
                raise ValueError(f"{field.name} must be positive, got {value!r}")

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["sound_hosts"] = list(self.sound_hosts)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Limits:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown limits: {', '.join(sorted(unknown))}")
        values = dict(data)
        if "sound_hosts" in values:
            values["sound_hosts"] = tuple(values["sound_hosts"])
        return cls(**values)


class Clock(Protocol):
    """Where a run reads the time and how it waits (injectable for tests and benchmarks)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``time.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that only moves when told to (``advance``) or when a run sleeps.

    ``tick`` seconds pass on every reading, so a loop that never sleeps still runs out of time.
    """

    def __init__(self, start: float = 0.0, tick: float = 0.0) -> None:
        self.now = start
        self.tick = tick
        self.slept = 0.0

    def monotonic(self) -> float:
        self.now += self.tick
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds
