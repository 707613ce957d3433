"""Number semantics: printing, rounding, precision, domains and sizes."""

from __future__ import annotations

import mpmath
import pytest
from warble_samples import BBP_PI

from bramble.warble import Limits, MemoryStore


@pytest.mark.parametrize(
    ("expression", "printed"),
    [
        ("0", "0"),
        ("2", "2"),
        ("-7", "-7"),
        ("2.0", "2"),
        ("2.50", "2.5"),
        ("0.1+0.2", "0.3"),
        ("1/3", "0.333333333333333"),
        ("2/3", "0.666666666666667"),
        ("123456.789", "123456.789"),
        ("999999999999999", "999999999999999"),
        ("1000000000000000", "1e+15"),
        ("POW(2,60)", "1.15292150460685e+18"),
        ("0.0001", "0.0001"),
        ("0.00001", "1e-5"),
        ("-1/8", "-0.125"),
        ("SQRT(2)", "1.4142135623731"),  # 1.41421356237310 with its zero dropped
        ("ACOS(-1)", "3.14159265358979"),
        ("EXP(1)", "2.71828182845905"),
        ("LOG(100, 10)", "2"),
        ("ABS(-3)", "3"),
        ("FLOOR(-2.5)", "-3"),
        ("CEIL(2.1)", "3"),
        ("POW(-2, 3)", "-8"),
        ("POW(4, 0.5)", "2"),
        ("POW(0, 0)", "1"),
        ("MOD(7, 3)", "1"),
        ("MOD(-1, 24)", "23"),
        ("MIN(3, 1, 2)", "1"),
        ("MAX(3, 1, 2)", "3"),
        ("ATAN2(1, 1)*4", "3.14159265358979"),
        ("SIN(0)", "0"),
        ("COS(0)", "1"),
        ("TAN(0)", "0"),
        ("ASIN(1)*2", "3.14159265358979"),
        ("ATAN(1)*4", "3.14159265358979"),
    ],
)
def test_numbers_print_like_a_calculator(warble, expression, printed):
    result = warble(f"PRINT({expression})")
    assert result.error is None
    assert result.output == printed + "\n"


@pytest.mark.parametrize(
    ("expression", "printed"),
    [
        ("ROUND(ACOS(0.0), 3)", "1.571"),
        ("ROUND(2.5)", "3"),
        ("ROUND(-2.5)", "-3"),
        ("ROUND(1.0005, 3)", "1.001"),  # rounds what is printed, not the binary value
        ("ROUND(2.675, 2)", "2.68"),
        ("ROUND(1234.5, -2)", "1200"),
        ("ROUND(0.1, 5)", "0.1"),
        ("ROUND(1/3, 4)", "0.3333"),
        ("ROUND(1/3, 2)*3", "0.99"),
        ("ROUND(0, 2)", "0"),
    ],
)
def test_round_gives_n_decimals_without_trailing_junk(warble, expression, printed):
    assert warble(f"PRINT({expression})").output == printed + "\n"


def test_setprecision_changes_arithmetic_and_printing(warble):
    result = warble(
        "PRINT(1/3) SETPRECISION(30) PRINT(1/3) PRINT(SQRT(2)) SETPRECISION(5) PRINT(1/3)"
    )
    assert result.output == (
        "0.333333333333333\n"
        "0.333333333333333333333333333333\n"
        "1.41421356237309504880168872421\n"
        "0.33333\n"
    )


def test_literals_follow_the_precision_in_force(warble):
    result = warble("x=0.1 SETPRECISION(40) PRINT(0.1*3) PRINT(x*3)")
    assert result.output.splitlines()[0] == "0.3"
    assert result.output.splitlines()[1].startswith("0.3000000000000000166")


def test_integers_print_exactly_up_to_the_precision(warble):
    result = warble("SETPRECISION(50) PRINT(POW(2, 100)) PRINT(POW(3, 40) + 1)")
    assert result.output == f"{2**100}\n{3**40 + 1}\n"


def test_bbp_warble_gives_at_least_100_correct_digits_of_pi(warble):
    result = warble(BBP_PI)
    assert result.error is None
    printed = result.output.strip()
    with mpmath.workdps(130):
        reference = mpmath.nstr(mpmath.pi, 125)
    correct = 0
    for ours, theirs in zip(printed, reference, strict=False):
        if ours != theirs:
            break
        correct += 1
    assert printed.startswith("3.")
    assert correct - 1 >= 101  # "3" and 100 decimals


def test_precision_up_to_the_cap_and_not_beyond(warble):
    limits = Limits(max_precision=300)
    ok = warble("SETPRECISION(300) PRINT(ROUND(ACOS(-1), 280))", limits=limits)
    assert ok.error is None
    assert len(ok.output.strip()) == 282
    over = warble("SETPRECISION(301)", limits=limits)
    assert over.error is not None
    assert over.error.kind == "limit"
    assert str(over.error) == "line 1, column 1: SETPRECISION: at most 300 digits, not 301"
    assert warble("SETPRECISION(10001)").error.kind == "limit"  # default cap: 10,000
    assert warble("SETPRECISION(0)").error is not None
    assert warble("SETPRECISION(2.5)").error is not None


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("PRINT(1/0)", "line 1, column 8: division by zero"),
        ("x=0 x/=0", "line 1, column 5: division by zero"),
        ("PRINT(SQRT(-1))", "line 1, column 7: SQRT: square root of a negative number"),
        ("PRINT(LOG(0))", "line 1, column 7: LOG: logarithm of a number <= 0"),
        ("PRINT(LOG(8, 1))", "line 1, column 7: LOG: logarithm base must be > 0 and not 1"),
        ("PRINT(ACOS(2))", "line 1, column 7: ACOS: argument must be between -1 and 1"),
        ("PRINT(ASIN(-1.5))", "line 1, column 7: ASIN: argument must be between -1 and 1"),
        ("PRINT(POW(0, -1))", "line 1, column 7: POW: 0 to a negative power"),
        ("PRINT(POW(-8, 1/3))", "line 1, column 7: POW: a negative number to a fractional"),
        ("PRINT(MOD(1, 0))", "line 1, column 7: MOD: MOD by zero"),
        ("PRINT(ATAN2(0, 0))", "line 1, column 7: ATAN2: ATAN2(0, 0) has no angle"),
        ("PRINT(SIN(POW(10, 1001)))", "line 1, column 7: SIN: argument too large"),
        ('PRINT(SQRT("4"))', "line 1, column 7: SQRT argument 1 must be a number"),
        ('x="a" x++', "line 1, column 7: ++ needs a number, not a string"),
        ('PRINT("a" - 1)', "line 1, column 11: '-' needs numbers (only + joins strings)"),
        ('PRINT(-"a")', "line 1, column 7: unary - needs a number, not a string"),
        ('PRINT("a"²)', "line 1, column 10: ² needs a number, not a string"),
        ('IF("yes"){}', "line 1, column 1: a condition must be a number, not a string"),
        ('PRINT("a" < 1)', "line 1, column 11: cannot compare a string with a number using <"),
    ],
)
def test_runtime_errors_are_short_and_positioned(warble, source, message):
    result = warble(source)
    assert result.error is not None
    assert result.error.kind == "runtime"
    assert str(result.error).startswith(message)


@pytest.mark.parametrize(
    "source",
    [
        "x=2 WHILE(1){x=x*x}",
        "x=2 WHILE(1){x=x²}",
        "x=1 WHILE(1){x=x/0.0000001}",
        "PRINT(EXP(1000000))",
        "PRINT(POW(10, 100001))",
        "PRINT(POW(2, POW(10, 50)))",
    ],
)
def test_numbers_too_large_stop_the_run(warble, source):
    result = warble(source)
    assert result.error is not None
    assert result.error.kind == "limit"
    assert "number too large (limit 1e100000)" in str(result.error)


def test_numbers_too_small_become_zero(warble):
    assert warble("PRINT(EXP(-1000000)) PRINT(POW(10, -200000))").output == "0\n0\n"


def test_saved_numbers_keep_every_digit(warble, store: MemoryStore):
    warble('SETPRECISION(60) SAVE("third", 1/3) SAVE("word", "hi")', user="ann")
    again = warble('SETPRECISION(60) PRINT(LOAD("third")*3) PRINT(LOAD("word") + "!")', user="ann")
    assert again.output == "1\nhi!\n"
    low = warble('PRINT(LOAD("third"))', user="ann")
    assert low.output == "0.333333333333333\n"  # rounded to the precision in force
