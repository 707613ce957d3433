"""Every bound of a run: steps, time, output, sizes, nesting, rates, storage."""

from __future__ import annotations

import pytest

from bramble.warble import Limits, ManualClock, SqliteStore, parse, run
from bramble.warble.errors import WarbleLimitError


def limit_error(result):
    assert result.error is not None, result.output
    assert result.error.kind == "limit", str(result.error)
    return str(result.error)


def test_infinite_loop_stopped_by_steps(warble):
    result = warble("WHILE(1){}", limits=Limits(max_steps=5_000))
    assert limit_error(result) == "line 1, column 1: too many steps (limit 5,000)"
    assert result.steps == 5_001


def test_infinite_loop_stopped_by_time(warble):
    clock = ManualClock(tick=0.001)  # every reading of the clock takes a millisecond
    result = warble("i=0 FOR(;;){i++}", clock=clock, limits=Limits(wall_time=2.0))
    assert limit_error(result).endswith("time limit reached (2 s)")
    assert result.steps < 2_100


def test_real_clock_stops_a_loop_in_time():
    result = run("WHILE(1){x++}", limits=Limits(wall_time=0.3, max_steps=10**9))
    assert "time limit reached (0.3 s)" in limit_error(result)
    assert 0.3 <= result.seconds < 1.0


def test_sleep_counts_towards_the_time_and_never_oversleeps(warble, clock):
    limits = Limits(wall_time=1.0)
    result = warble("FOR(i=0;i<100;i++){SLEEP(300)}", limits=limits)
    assert limit_error(result) == ("line 1, column 20: SLEEP(300) would pass the time limit (1 s)")
    assert clock.slept == pytest.approx(0.9)  # three sleeps fit, the fourth is refused
    clock2 = ManualClock()
    huge = warble("SLEEP(1000000000)", clock=clock2)
    assert "would pass the time limit" in limit_error(huge)
    assert clock2.slept == 0
    assert "must not be negative" in str(warble("SLEEP(-1)").error)


def test_huge_output_is_stopped_by_bytes_and_by_lines(warble):
    by_bytes = warble('WHILE(1){PRINT("0123456789")}', limits=Limits(max_output_bytes=1_000))
    assert limit_error(by_bytes).endswith("too much output (limit 1,000 bytes)")
    assert len(by_bytes.output.encode()) <= 1_000
    assert len(by_bytes.lines) == 90  # 11 bytes each
    by_lines = warble("WHILE(1){PRINT(1)}", limits=Limits(max_output_lines=50))
    assert limit_error(by_lines).endswith("too much output (limit 50 lines)")
    assert len(by_lines.lines) == 50


def test_default_output_bound_holds(warble):
    result = warble('s="x" FOR(i=0;i<13;i++){s=s+s} WHILE(1){PRINT(s)}')
    assert "too much output" in limit_error(result)
    assert len(result.output.encode()) <= Limits().max_output_bytes


def test_strings_cannot_grow_past_their_limit(warble):
    result = warble('s="ab" WHILE(1){s=s+s}', limits=Limits(max_string_chars=1_000))
    assert "string too long (1,024 characters, limit 1,000)" in limit_error(result)


def test_long_source_is_refused_before_parsing():
    source = "x=1 " * 3_000
    with pytest.raises(WarbleLimitError) as caught:
        parse(source)
    assert str(caught.value) == (
        "line 1, column 10001: the Warble is too long (12,000 characters, limit 10,000)"
    )
    assert parse(source, Limits(max_source_chars=20_000)).body


@pytest.mark.parametrize(
    "source",
    [
        "PRINT(" + "(" * 60 + "1" + ")" * 60 + ")",
        "x=" + "- " * 60 + "1",
        "x=2" + "²" * 60,
        "PRINT(" + "SQRT(" * 60 + "1" + ")" * 61,
        "WHILE(1){" * 60 + "}" * 60,
        "IF(1){}" + "ELSE IF(1){}" * 60,
    ],
)
def test_deep_nesting_is_a_limit_error_not_a_crash(warble, source):
    result = warble(source)
    assert "nested too deeply (limit 50 levels)" in limit_error(result)


def test_nesting_within_the_limit_runs(warble):
    result = warble("PRINT(" + "(" * 45 + "1" + ")" * 45 + ")")
    assert result.output == "1\n"


def test_very_long_sums_are_not_nesting(warble):
    result = warble("PRINT(" + "+".join(["1"] * 2_000) + ")")
    assert result.output == "2000\n"


def test_nesting_limit_beyond_python_recursion_is_still_a_warble_error():
    deep = "x=" + "(" * 3_000 + "1" + ")" * 3_000
    result = run(deep, limits=Limits(max_nesting=10_000))
    assert result.error is not None
    assert result.error.kind == "limit"
    assert "nested too deeply" in str(result.error)


def test_lights_are_rate_limited_per_run(warble, effects):
    result = warble("WHILE(1){LIGHTS(0,1,2,3)}", limits=Limits(max_lights=30))
    assert "too many LIGHTS calls (limit 30 per run)" in limit_error(result)
    assert len(effects.events) == 30


def test_sounds_are_limited_per_run(warble, effects):
    result = warble('WHILE(1){PLAYSOUND("https://example.org/a.mp3")}')
    assert "too many PLAYSOUND calls (limit 3 per run)" in limit_error(result)
    assert len(effects.events) == 3


def test_saved_keys_are_bounded_per_user(warble, store):
    limits = Limits(max_saved_keys=3)
    result = warble('FOR(i=0;i<10;i++){SAVE("k" + i, i)}', limits=limits, user="ann")
    assert "SAVE: you already keep 3 values (limit 3)" in limit_error(result)
    assert sorted(store.snapshot("ann")) == ["k0", "k1", "k2"]
    assert warble('SAVE("k1", 42)', limits=limits, user="ann").error is None  # overwrite is fine
    assert warble('SAVE("k9", 1)', limits=limits, user="bob").error is None  # per user


def test_saved_values_and_keys_are_bounded_in_size(warble):
    limits = Limits(max_value_bytes=100, max_key_chars=8)
    too_big = warble('s="0123456789" s=s+s+s+s+s+s+s+s+s+s SAVE("k", s)', limits=limits)
    assert "SAVE: value too large (102 bytes, limit 100)" in limit_error(too_big)
    long_key = warble('SAVE("abcdefghi", 1)', limits=limits)
    assert "SAVE name must be 1 to 8 characters" in limit_error(long_key)
    assert "LOAD name must be 1 to 8" in limit_error(warble('x=LOAD("")', limits=limits))
    precise = warble('SETPRECISION(1000) SAVE("pi", ACOS(-1))', limits=limits)
    assert "SAVE: value too large" in limit_error(precise)


def test_sqlite_store_enforces_keys_too(tmp_path):
    store = SqliteStore(tmp_path / "w.sqlite3")
    limits = Limits(max_saved_keys=2)
    result = run('SAVE("a",1) SAVE("b",2) SAVE("c",3)', limits=limits, store=store, user="u")
    assert "SAVE: you already keep 2 values (limit 2)" in limit_error(result)
    assert sorted(store.snapshot("u")) == ["a", "b"]
    store.close()


def test_limits_reject_nonsense():
    with pytest.raises(ValueError, match="max_steps must be positive"):
        Limits(max_steps=0)
    with pytest.raises(ValueError, match="sound_hosts"):
        Limits(sound_hosts=["example.org"])  # type: ignore[arg-type]
    assert Limits.from_json(Limits().to_json()) == Limits()
    with pytest.raises(ValueError, match="unknown limits: bogus"):
        Limits.from_json({"bogus": 1})
