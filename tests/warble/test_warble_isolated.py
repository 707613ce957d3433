"""Runs in a resource-limited child process, as agents do them."""

from __future__ import annotations

import time

import pytest

from bramble.warble import (
    LightEvent,
    Limits,
    MemoryStore,
    RecordingEffects,
    SoundEvent,
    SqliteStore,
    run,
    run_isolated,
)


def test_isolated_run_gives_the_same_result_as_in_process():
    source = "#pi{PRINT(2*ROUND(ACOS(0.0),3)) FOR(i=0;i<3;i++){PRINT(i)}}"
    result = run_isolated(source)
    assert result.error is None
    assert result.output == "3.142\n0\n1\n2\n"
    assert result.steps == run(source).steps == 12  # 4 statements, 1 start, 4 tests, 3 steps


def test_isolated_saves_reach_the_store_and_effects_the_bridges(tmp_path):
    store = SqliteStore(tmp_path / "w.sqlite3")
    effects = RecordingEffects()
    streamed: list[str] = []
    assert run_isolated('#pi{SAVE("pi",1)}', store=store, user="ann").error is None
    result = run_isolated(
        '#pi{x=LOAD("pi");x++;SAVE("pi",x);PRINT(x)'
        'LIGHTS(0,255,0,0) PLAYSOUND("http://example.org/tardis.mp3")}',
        store=store,
        effects=effects,
        user="ann",
        on_output=streamed.append,
    )
    assert result.error is None
    assert result.output == "2\n"
    assert streamed == ["2"]
    assert store.load("ann", "pi") == "n:1p1"
    assert effects.events == [
        LightEvent(0, 255, 0, 0),
        SoundEvent("http://example.org/tardis.mp3"),
    ]
    store.close()


def test_isolated_errors_keep_their_position_and_partial_output():
    result = run_isolated("PRINT(1)\nPRINT(1/0)")
    assert result.output == "1\n"
    assert str(result.error) == "line 2, column 8: division by zero"
    syntax = run_isolated("#pi{x=1/16.0²*(4.0/(8*k+1)-2.0/(8*k+4)-1.0/(8*k+5)-1.0/(8*k+6)}")
    assert syntax.error is not None
    assert syntax.error.kind == "syntax"
    assert (syntax.error.line, syntax.error.column) == (1, 63)


def test_runaway_child_is_killed():
    """One huge computation that no step check can interrupt: the hard timeout ends it."""
    limits = Limits(wall_time=0.5, kill_grace=0.5, max_precision=2_000_000)  # start-up excluded
    started = time.monotonic()
    result = run_isolated("PRINT(1) SETPRECISION(2000000) PRINT(EXP(1.5))", limits=limits)
    elapsed = time.monotonic() - started
    assert result.error is not None
    assert result.error.kind == "limit"
    assert str(result.error) == "time limit reached (0.5 s); the run was stopped"
    assert result.output == "1\n"  # what it printed before is kept
    assert elapsed < 10.0  # about 1 s plus start-up; EXP alone would take minutes


def test_memory_limit_stops_a_greedy_run():
    limits = Limits(max_string_chars=10**12, memory_bytes=128 * 1024 * 1024, max_steps=10**9)
    result = run_isolated('s="ab" WHILE(1){s=s+s}', limits=limits)
    assert result.error is not None
    assert result.error.kind == "limit"
    assert "out of memory" in str(result.error)


def test_soft_limits_hold_in_the_child():
    result = run_isolated("WHILE(1){}", limits=Limits(max_steps=10_000))
    assert str(result.error) == "line 1, column 1: too many steps (limit 10,000)"
    too_long = run_isolated("x=1 " * 3000)
    assert too_long.error is not None
    assert "too long" in str(too_long.error)


def test_store_full_in_the_parent_stops_the_child():
    store = MemoryStore({"ann": {"a": "n:1p0"}})

    class Crowded(MemoryStore):
        def snapshot(self, user):
            return {}  # the child believes there is room; the real store disagrees

        def save(self, user, key, value, *, max_keys):
            store.save(user, key, value, max_keys=max_keys)

    result = run_isolated(
        'SAVE("b", 2)', store=Crowded(), user="ann", limits=Limits(max_saved_keys=1)
    )
    assert result.error is not None
    assert "SAVE: you already keep 1 values (limit 1)" in str(result.error)


@pytest.mark.parametrize("failing", ["light", "sound"])
def test_failing_bridge_stops_the_run(failing):
    class Broken(RecordingEffects):
        def light(self, index, red, green, blue):
            if failing == "light":
                raise ConnectionError("bridge down")

        def sound(self, url):
            if failing == "sound":
                raise ConnectionError("bridge down")

    result = run_isolated(
        'LIGHTS(1,2,3,4) PLAYSOUND("http://example.org/x") PRINT(1)', effects=Broken()
    )
    assert result.error is not None
    assert "did not answer" in str(result.error)
