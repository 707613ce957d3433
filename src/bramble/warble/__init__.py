"""Warble: the cluster's tiny language, safe to run for strangers.

``run`` parses and runs a Warble in this process within ``Limits``; ``run_isolated`` does the
same in a child process with memory and CPU limits and a hard timeout (what agents use);
``extract_warbles`` finds ``#pi{ ... }`` in the text of a post. See docs/warble.md.
"""

from bramble.warble.effects import Effects, LightEvent, RecordingEffects, SoundEvent
from bramble.warble.errors import (
    WarbleError,
    WarbleInternalError,
    WarbleLimitError,
    WarbleRuntimeError,
    WarbleSyntaxError,
)
from bramble.warble.interpreter import run
from bramble.warble.isolated import run_isolated
from bramble.warble.limits import Clock, Limits, ManualClock, SystemClock
from bramble.warble.parser import parse
from bramble.warble.result import RunResult
from bramble.warble.scanner import FoundWarble, extract_warbles
from bramble.warble.store import MemoryStore, SqliteStore, Store, StoreFullError

__all__ = [
    "Clock",
    "Effects",
    "FoundWarble",
    "LightEvent",
    "Limits",
    "ManualClock",
    "MemoryStore",
    "RecordingEffects",
    "RunResult",
    "SoundEvent",
    "SqliteStore",
    "Store",
    "StoreFullError",
    "SystemClock",
    "WarbleError",
    "WarbleInternalError",
    "WarbleLimitError",
    "WarbleRuntimeError",
    "WarbleSyntaxError",
    "extract_warbles",
    "parse",
    "run",
    "run_isolated",
]
