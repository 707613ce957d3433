"""Shared helpers for the Warble tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bramble.warble import Limits, ManualClock, MemoryStore, RecordingEffects, RunResult, run


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def effects() -> RecordingEffects:
    return RecordingEffects()


@pytest.fixture
def warble(
    clock: ManualClock, store: MemoryStore, effects: RecordingEffects
) -> Callable[..., RunResult]:
    """Run a Warble in process with a manual clock, an in-memory store, recorded effects."""

    def run_it(source: str, **kwargs: Any) -> RunResult:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("store", store)
        kwargs.setdefault("effects", effects)
        kwargs.setdefault("limits", Limits())
        return run(source, **kwargs)

    return run_it
