"""One telemetry sample and where samples come from.

``SystemSampler`` reads this machine with psutil (CPU, memory, the root file system) and the
SoC temperature from ``/sys/class/thermal/thermal_zone*/temp`` or, on a Pi where that is
missing, ``vcgencmd measure_temp`` (argument list, no shell, time-bounded). ``FakeCpuSampler``
is for tests only: it reports the CPU percentage written in a file, so a test can make a node
look busy or idle.
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil

VCGENCMD_TIMEOUT = 2.0
_VCGENCMD_TEMP = re.compile(r"temp=(-?\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Sample:
    """What the agent posts every interval (docs/services-protocol.md, telemetry)."""

    ts: float
    cpu_percent: float
    mem_used_percent: float
    mem_available_bytes: int
    disk_used_percent: float
    temp_c: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Sampler(Protocol):
    """Anything that can take a sample now."""

    def sample(self) -> Sample: ...


def read_thermal_zones(pattern: str = "/sys/class/thermal/thermal_zone*/temp") -> float | None:
    """The highest thermal zone reading in °C (the files hold millidegrees), or None."""
    readings = []
    for path in sorted(glob.glob(pattern)):
        try:
            readings.append(int(Path(path).read_text(encoding="ascii").strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    return max(readings) if readings else None


def read_vcgencmd(command: str | None = None, timeout: float = VCGENCMD_TIMEOUT) -> float | None:
    """``vcgencmd measure_temp`` in °C, or None when absent, failing, slow or unreadable."""
    command = command or shutil.which("vcgencmd")
    if not command:
        return None
    try:
        result = subprocess.run(
            [command, "measure_temp"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VCGENCMD_TEMP.search(result.stdout)
    if result.returncode or not match:
        return None
    return float(match.group(1))


class SystemSampler:
    """Samples this machine. CPU is the average since the previous sample (never blocks)."""

    def __init__(
        self,
        disk_path: str = "/",
        thermal_pattern: str = "/sys/class/thermal/thermal_zone*/temp",
        vcgencmd: str | None = None,
    ) -> None:
        self.disk_path = disk_path
        self.thermal_pattern = thermal_pattern
        self.vcgencmd = vcgencmd
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    def temperature(self) -> float | None:
        reading = read_thermal_zones(self.thermal_pattern)
        return reading if reading is not None else read_vcgencmd(self.vcgencmd)

    def sample(self) -> Sample:
        memory = psutil.virtual_memory()
        return Sample(
            ts=time.time(),
            cpu_percent=float(psutil.cpu_percent(interval=None)),
            mem_used_percent=float(memory.percent),
            mem_available_bytes=int(memory.available),
            disk_used_percent=float(psutil.disk_usage(self.disk_path).percent),
            temp_c=self.temperature(),
        )


class FakeCpuSampler:
    """TEST ONLY: a real sample whose CPU is the number in ``path`` (0 when unreadable).

    Enabled with ``bramble-agent --test-cpu-file PATH``; never use it on a real cluster.
    """

    def __init__(self, path: Path, inner: Sampler) -> None:
        self.path = path
        self.inner = inner

    def sample(self) -> Sample:
        real = self.inner.sample()
        try:
            cpu = min(100.0, max(0.0, float(self.path.read_text(encoding="utf-8").strip())))
        except (OSError, ValueError):
            cpu = 0.0
        return Sample(
            ts=real.ts,
            cpu_percent=cpu,
            mem_used_percent=real.mem_used_percent,
            mem_available_bytes=real.mem_available_bytes,
            disk_used_percent=real.disk_used_percent,
            temp_c=real.temp_c,
        )
