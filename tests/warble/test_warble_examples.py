"""Every example published in the Warble issue, with its exact output."""

from __future__ import annotations

import pytest

from bramble.warble import LightEvent, SoundEvent

COUNT_0_TO_9 = "".join(f"{i}\n" for i in range(10))


@pytest.mark.parametrize(
    ("source", "output"),
    [
        ('#pi{PRINT("hello cluster")}', "hello cluster\n"),
        ("#pi{PRINT(2*ROUND(ACOS(0.0),3))}", "3.142\n"),
        ("#pi{x=0PRINT(x)}", "0\n"),
        ("#pi{i=0;WHILE(i<10){PRINT(i);i++}}", COUNT_0_TO_9),
        ("#pi{FOR(i=0;i<10;i++){PRINT(i)}}", COUNT_0_TO_9),
        ('#pi{SAVE("pi",1)}', ""),
        ("#pi{LIGHTS(0,255,0,0)}", ""),
        ("#pi{LIGHTS(23,0,255,0)}", ""),
        ("#pi{LIGHTS(0,0,255,0);SLEEP(20);LIGHTS(0,0,255,0)}", ""),
        (
            "#pi{FOR(i=0;i<24;i++){LIGHTS(i,0,255,0)}SLEEP(20);"
            "FOR(i=0;i<24;i++){LIGHTS(i,0,0,255)}}",
            "",
        ),
        ('#pi{PLAYSOUND("http://example.org/tardis.mp3");}', ""),
    ],
)
def test_published_example_prints_exactly(warble, source, output):
    result = warble(source)
    assert result.error is None
    assert result.output == output


def test_typographic_quotes_as_posts_render_them(warble):
    assert warble("#pi{PRINT(\u201chello cluster\u201d)}").output == "hello cluster\n"


def test_save_then_load_counts_up_per_user(warble, store):
    assert warble('#pi{SAVE("pi",1)}', user="ann").output == ""
    bump = '#pi{x=LOAD("pi");x++;SAVE("pi",x);PRINT(x)}'
    assert warble(bump, user="ann").output == "2\n"
    assert warble(bump, user="ann").output == "3\n"
    assert warble(bump, user="bob").output == "1\n"  # bob has no "pi" yet: LOAD gives 0


def test_lights_examples_reach_the_lights(warble, effects, clock):
    warble("#pi{LIGHTS(0,255,0,0)}")
    warble("#pi{LIGHTS(23,0,255,0)}")
    assert effects.events == [LightEvent(0, 255, 0, 0), LightEvent(23, 0, 255, 0)]
    assert effects.described() == ["light 0 -> (255,0,0)", "light 23 -> (0,255,0)"]
    effects.events.clear()
    warble("#pi{LIGHTS(0,0,255,0);SLEEP(20);LIGHTS(0,0,255,0)}")
    assert effects.events == [LightEvent(0, 0, 255, 0)] * 2
    assert clock.slept == pytest.approx(0.020)  # SLEEP counts milliseconds


def test_light_chase_sets_all_24_twice(warble, effects, clock):
    warble(
        "#pi{FOR(i=0;i<24;i++){LIGHTS(i,0,255,0)}SLEEP(20);FOR(i=0;i<24;i++){LIGHTS(i,0,0,255)}}"
    )
    green = [LightEvent(i, 0, 255, 0) for i in range(24)]
    blue = [LightEvent(i, 0, 0, 255) for i in range(24)]
    assert effects.events == green + blue
    assert clock.slept == pytest.approx(0.020)


def test_playsound_example_plays_from_allowed_host(warble, effects):
    warble('#pi{PLAYSOUND("http://example.org/tardis.mp3");}')
    assert effects.events == [SoundEvent("http://example.org/tardis.mp3")]
    assert effects.described() == ["sound http://example.org/tardis.mp3"]


def test_published_bbp_line_is_a_syntax_error_at_the_brace(warble):
    source = "#pi{x=1/16.0²*(4.0/(8*k+1)-2.0/(8*k+4)-1.0/(8*k+5)-1.0/(8*k+6)}"
    result = warble(source)
    assert result.error is not None
    assert result.error.kind == "syntax"
    assert (result.error.line, result.error.column) == (1, source.index("}") + 1)
    assert str(result.error) == (
        "line 1, column 63: missing ')' to close the '(' at line 1, column 15; found '}'"
    )
    assert source[14] == "("  # column 15 is the parenthesis left open


def test_balanced_bbp_line_runs_and_prints_nothing(warble):
    result = warble("#pi{x=1/16.0²*(4.0/(8*k+1)-2.0/(8*k+4)-1.0/(8*k+5)-1.0/(8*k+6))}")
    assert result.error is None
    assert result.output == ""
