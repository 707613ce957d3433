"""Leaderboard scores: how many correct digits of pi a Warble's output holds."""

from __future__ import annotations

import functools
import re

import mpmath  # type: ignore[import-untyped]

# "3." then digits, not part of a longer number (no digit, point or minus sign before it)
_PI_LIKE = re.compile(r"(?<![\d.\-])3\.(\d+)")


@functools.cache
def pi_decimals(digits: int) -> str:
    """The first ``digits - 1`` decimals of pi (computed once per size with mpmath)."""
    with mpmath.workprec(int(digits * 3.33) + 64):
        text = mpmath.nstr(+mpmath.pi, digits + 10, strip_zeros=False)
    return str(text)[2 : 2 + digits - 1]


def pi_digits(output: str, reference_digits: int = 10_000) -> int:
    """Correct digits of pi in the longest pi-like number of ``output`` (0 when none).

    A pi-like number is ``3.`` followed by digits; its score counts the ``3`` and every
    decimal up to the first one that differs from pi, at most ``reference_digits``. Digits
    split over several lines or numbers do not add up: only the best single number counts.
    """
    decimals = pi_decimals(reference_digits)
    best = 0
    for match in _PI_LIKE.finditer(output):
        given = match.group(1)
        if len(given) + 1 <= best:
            continue
        same = 0
        for mine, right in zip(given, decimals, strict=False):
            if mine != right:
                break
            same += 1
        best = max(best, 1 + same)
    return best
