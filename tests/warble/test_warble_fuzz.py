"""Fuzzing: whatever the text, a run ends in a result or a Warble error, never anything else."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bramble.warble import Limits, ManualClock, MemoryStore, RecordingEffects, extract_warbles, run
from bramble.warble.errors import WarbleError

FUZZ_LIMITS = Limits(
    max_steps=3_000,
    wall_time=2.0,
    max_precision=200,
    max_exponent=2_000,
    max_output_lines=200,
    max_string_chars=2_000,
    max_saved_keys=5,
    max_value_bytes=2_000,
)
FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,  # leave no .hypothesis folder in the work tree
    suppress_health_check=[HealthCheck.too_slow],
)
POSITIONED = re.compile(r"line \d+, column \d+: .+")


def check(source: str, *, allow_syntax: bool = True) -> None:
    clock = ManualClock(tick=0.0001)
    result = run(
        source,
        limits=FUZZ_LIMITS,
        clock=clock,
        store=MemoryStore(),
        effects=RecordingEffects(),
    )
    error = result.error
    if error is None:
        assert len(result.output.encode()) <= FUZZ_LIMITS.max_output_bytes
        return
    assert isinstance(error, WarbleError)
    assert error.kind != "internal", f"{error} for {source!r}"
    if not allow_syntax:
        assert error.kind != "syntax", f"{error} for {source!r}"
    text = str(error)
    assert "Traceback" not in text
    if error.line is not None:
        assert POSITIONED.fullmatch(text)
        assert 1 <= error.line <= source.count("\n") + 1


CHARS = st.sampled_from(
    [
        *"abxyzABXYZ_0123456789.;,=+-*/<>!&|(){}#\"' \n\t",
        *"²³\u201c\u201d\u2018\u2019\u2212\u00d7\u00a0é\x00",
    ]
)


@FUZZ
@given(st.text(CHARS, max_size=120))
def test_random_text(source):
    check(source)


@FUZZ
@given(st.text(max_size=80))
def test_random_unicode(source):
    check(source)


TOKENS = st.sampled_from(
    [
        "#pi", "{", "}", "(", ")", ";", ",", "=", "+=", "-=", "*=", "/=", "++", "--",
        "+", "-", "*", "/", "<", "<=", ">", ">=", "==", "!=", "&&", "||", "!", "²", "³",
        "x", "y", "i", "0", "1", "2", "0.5", "16.0", "99999", '"s"', "\u201ct\u201d",
        "WHILE", "FOR", "IF", "ELSE", "PRINT", "SIN", "COS", "TAN", "ASIN", "ACOS", "ATAN",
        "ATAN2", "SQRT", "EXP", "LOG", "ABS", "ROUND", "FLOOR", "CEIL", "POW", "MOD", "MIN",
        "MAX", "SETPRECISION", "SAVE", "LOAD", "LIGHTS", "SLEEP", "PLAYSOUND", "__import__",
        "os", ".", "system",
    ]
)  # fmt: skip


@FUZZ
@given(st.lists(TOKENS, max_size=40), st.sampled_from(["", " ", "\n"]))
def test_random_token_sequences(tokens, separator):
    check(separator.join(tokens))


# Programs generated from the grammar: they must parse, and run without internal errors.

NAMES = st.sampled_from(["x", "y", "i", "k", "s"])
NUMBERS = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(str),
    st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False).map(str),
)
STRINGS = st.sampled_from(['"a"', '"pi "', "\u201cq\u201d", "''"])
UNARY_FUNCTIONS = st.sampled_from(
    ["SIN", "COS", "TAN", "ASIN", "ACOS", "ATAN", "SQRT", "EXP", "LOG", "ABS", "FLOOR", "CEIL",
     "ROUND", "LOAD"]
)  # fmt: skip
BINARY_FUNCTIONS = st.sampled_from(["POW", "ATAN2", "MOD", "MIN", "MAX", "ROUND", "LOG"])


def expressions() -> st.SearchStrategy[str]:
    leaves = st.one_of(NUMBERS, NAMES, STRINGS)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(
                inner, st.sampled_from(["+", "-", "*", "/", "<", "==", "!=", "&&", "||"]), inner
            ).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda e: f"-({e})"),
            inner.map(lambda e: f"!({e})"),
            inner.map(lambda e: f"({e})²"),
            st.tuples(UNARY_FUNCTIONS, inner).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(BINARY_FUNCTIONS, inner, inner).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        )

    return st.recursive(leaves, extend, max_leaves=5)


def statements() -> st.SearchStrategy[str]:
    expr = expressions()
    simple = st.one_of(
        st.tuples(NAMES, st.sampled_from(["=", "+=", "-=", "*=", "/="]), expr).map(
            lambda t: f"{t[0]} {t[1]} {t[2]}"
        ),
        st.tuples(NAMES, st.sampled_from(["++", "--"])).map(lambda t: t[0] + t[1]),
        expr.map(lambda e: f"PRINT({e})"),
        st.tuples(st.sampled_from(['"a"', '"b"']), expr).map(lambda t: f"SAVE({t[0]}, {t[1]})"),
        st.tuples(expr, expr).map(lambda t: f"LIGHTS(MOD({t[0]}, 24), 1, 2, {t[1]})"),
        expr.map(lambda e: f"SLEEP({e})"),
        st.integers(min_value=1, max_value=300).map(lambda d: f"SETPRECISION({d})"),
        st.just('PLAYSOUND("http://example.org/a.mp3")'),
    )

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        block = st.lists(inner, max_size=3).map(lambda body: "{" + " ".join(body) + "}")
        return st.one_of(
            st.tuples(expr, block).map(lambda t: f"WHILE({t[0]}){t[1]}"),
            st.tuples(simple, expr, simple, block).map(
                lambda t: f"FOR({t[0]};{t[1]};{t[2]}){t[3]}"
            ),
            st.tuples(expr, block, block).map(lambda t: f"IF({t[0]}){t[1]} ELSE {t[2]}"),
        )

    return st.recursive(simple, extend, max_leaves=5)


@FUZZ
@given(st.lists(statements(), max_size=4), st.sampled_from(["", ";", "\n"]), st.booleans())
def test_generated_programs_parse_and_run(body, separator, wrapped):
    source = separator.join(body)
    check(f"#pi{{{source}}}" if wrapped else source, allow_syntax=False)


@FUZZ
@given(st.text(st.sampled_from(list("#pPiI{}\"'\u201c\u201d/\nx ")), max_size=200))
def test_scanner_on_random_text(text):
    found = extract_warbles(text)
    assert len(found) <= 10
    previous_end = 0
    for warble in found:
        assert text[warble.start : warble.end] == warble.source
        assert warble.start >= previous_end
        assert warble.source[:3].lower() == "#pi"
        if warble.complete:
            assert warble.source.endswith("}")
        previous_end = warble.end
