"""The Warble functions: names, how many arguments they take, whether they give a value."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Signature:
    min_args: int
    max_args: int
    gives_value: bool
    usage: str
    summary: str


SIGNATURES: dict[str, Signature] = {
    "PRINT": Signature(0, 16, False, "PRINT(a, ...)", "print the values, separated by spaces"),
    "SIN": Signature(1, 1, True, "SIN(x)", "sine, x in radians (|x| < 1e1000)"),
    "COS": Signature(1, 1, True, "COS(x)", "cosine, x in radians (|x| < 1e1000)"),
    "TAN": Signature(1, 1, True, "TAN(x)", "tangent, x in radians (|x| < 1e1000)"),
    "ASIN": Signature(1, 1, True, "ASIN(x)", "arc sine, -1 <= x <= 1"),
    "ACOS": Signature(1, 1, True, "ACOS(x)", "arc cosine, -1 <= x <= 1"),
    "ATAN": Signature(1, 1, True, "ATAN(x)", "arc tangent"),
    "ATAN2": Signature(2, 2, True, "ATAN2(y, x)", "angle of the point (x, y)"),
    "SQRT": Signature(1, 1, True, "SQRT(x)", "square root, x >= 0"),
    "EXP": Signature(1, 1, True, "EXP(x)", "e to the power x"),
    "LOG": Signature(1, 2, True, "LOG(x[, base])", "natural logarithm, or to the given base"),
    "ABS": Signature(1, 1, True, "ABS(x)", "absolute value"),
    "ROUND": Signature(
        1, 2, True, "ROUND(x[, n])", "x rounded to n decimals (default 0), halves away from 0"
    ),
    "FLOOR": Signature(1, 1, True, "FLOOR(x)", "largest whole number <= x"),
    "CEIL": Signature(1, 1, True, "CEIL(x)", "smallest whole number >= x"),
    "POW": Signature(2, 2, True, "POW(x, y)", "x to the power y"),
    "MOD": Signature(2, 2, True, "MOD(x, y)", "remainder of x / y, with the sign of y"),
    "MIN": Signature(1, 16, True, "MIN(a, ...)", "smallest of the numbers"),
    "MAX": Signature(1, 16, True, "MAX(a, ...)", "largest of the numbers"),
    "SETPRECISION": Signature(
        1, 1, False, "SETPRECISION(n)", "from now on, work to n significant digits"
    ),
    "SAVE": Signature(2, 2, False, "SAVE(name, value)", "keep a value under a name, per user"),
    "LOAD": Signature(1, 1, True, "LOAD(name)", "a value kept with SAVE, or 0"),
    "LIGHTS": Signature(4, 4, False, "LIGHTS(i, r, g, b)", "set light i to colour r, g, b"),
    "SLEEP": Signature(1, 1, False, "SLEEP(ms)", "wait ms milliseconds (counts as run time)"),
    "PLAYSOUND": Signature(1, 1, False, "PLAYSOUND(url)", "play a sound from an allowed host"),
}
