"""Warble numbers: mpmath binary floating point at the run's precision.

Every number is an mpmath ``mpf`` of one per-thread context whose precision SETPRECISION sets
(default 15 significant digits, the 53 bits of a double). Results are checked here: real,
finite, and within the run's magnitude bound. mpmath ships no type information, so this
module is the one place that touches it untyped.
"""

from __future__ import annotations

import math
import threading
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, Protocol, cast

import mpmath  # type: ignore[import-untyped]

DEFAULT_DIGITS = 15
_LOG2_10 = math.log2(10)
_TRIG_MAX_BITS = 3322  # 2**3322 > 1e1000: larger trig arguments need pi to too many digits


class Mpf(Protocol):
    """The part of mpmath's ``mpf`` that Warble uses."""

    _mpf_: tuple[int, int, int, int]

    def __add__(self, other: Mpf, /) -> Mpf: ...
    def __sub__(self, other: Mpf, /) -> Mpf: ...
    def __mul__(self, other: Mpf, /) -> Mpf: ...
    def __truediv__(self, other: Mpf, /) -> Mpf: ...
    def __neg__(self) -> Mpf: ...
    def __abs__(self) -> Mpf: ...
    def __lt__(self, other: Mpf, /) -> bool: ...
    def __le__(self, other: Mpf, /) -> bool: ...
    def __gt__(self, other: Mpf, /) -> bool: ...
    def __ge__(self, other: Mpf, /) -> bool: ...
    def __int__(self) -> int: ...


class NumberError(ValueError):
    """A number problem (domain, size); the interpreter adds the position."""


class LimitExceeded(NumberError):
    """A number crossed one of the run's bounds."""


_local = threading.local()


def _thread_context() -> Any:
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        ctx = mpmath.MPContext()
        _local.ctx = ctx
    return ctx


class Numbers:
    """One run's arithmetic: precision, literals, checks, functions and printing.

    Uses a context private to the thread (mpmath's global ``mp`` is never touched), reset to
    the default precision when a run starts; runs on one thread must not interleave.
    """

    def __init__(self, max_exponent: int, max_precision: int) -> None:
        self._ctx = _thread_context()
        self._ctx.prec = 53
        self.digits = DEFAULT_DIGITS
        self.max_precision = max_precision
        self.max_bits = math.ceil(max_exponent * _LOG2_10)
        self.max_exponent = max_exponent
        self._mpf_type: type = self._ctx.mpf
        self.zero: Mpf = self._ctx.mpf(0)
        self.one: Mpf = self._ctx.mpf(1)
        self._literals: dict[str, tuple[int, Mpf]] = {}

    # precision

    @property
    def prec(self) -> int:
        return cast(int, self._ctx.prec)

    def set_digits(self, digits: int) -> None:
        if not 1 <= digits <= self.max_precision:
            raise LimitExceeded(
                f"precision must be 1 to {self.max_precision} digits, not {digits}"
            )
        self._ctx.dps = digits
        self.digits = digits

    # making numbers

    def is_number(self, value: object) -> bool:
        return isinstance(value, self._mpf_type)

    def literal(self, text: str) -> Mpf:
        """A numeric literal, converted once per precision."""
        prec = self._ctx.prec
        cached = self._literals.get(text)
        if cached is not None and cached[0] == prec:
            return cached[1]
        value = self.check(self._ctx.mpf(text))
        self._literals[text] = (prec, value)
        return value

    def from_int(self, value: int) -> Mpf:
        return cast(Mpf, self._ctx.mpf(value))

    def check(self, value: Any) -> Mpf:
        """``value`` if it is a real, finite number of allowed size; tiny numbers become 0."""
        if not isinstance(value, self._mpf_type):
            raise NumberError("the result is not a real number")
        _sign, man, exp, bc = value._mpf_
        if not man:
            if exp:
                raise NumberError("the result is not a finite number")
            return cast(Mpf, value)
        size = exp + bc
        if size > self.max_bits:
            raise LimitExceeded(f"number too large (limit 1e{self.max_exponent})")
        if size < -self.max_bits:
            return self.zero
        return cast(Mpf, value)

    def is_whole(self, value: Mpf) -> bool:
        return bool(self._ctx.isint(value))

    def to_int(self, value: Mpf) -> int:
        return int(value)

    def truth(self, flag: bool) -> Mpf:
        return self.one if flag else self.zero

    # printing and storing

    def format(self, value: Mpf) -> str:
        """Up to the run's digits, trailing zeros dropped: 3.142, 0, 2, 1e+20, -2.5e-7."""
        text = cast(str, self._ctx.nstr(value, self.digits))
        mantissa, sep, exponent = text.partition("e")
        if mantissa.endswith(".0"):
            mantissa = mantissa[:-2]
        return mantissa + sep + exponent

    def encode(self, value: Mpf) -> str:
        """Exact, compact text for the store: sign, hex mantissa, binary exponent."""
        sign, man, exp, _bc = value._mpf_
        return f"{'-' if sign else ''}{man:x}p{exp}"

    def decode(self, text: str) -> Mpf:
        mantissa, _, exponent = text.partition("p")
        negative = mantissa.startswith("-")
        man = int(mantissa.lstrip("-"), 16)
        exp = int(exponent)
        value = self._ctx.make_mpf(mpmath.libmp.from_man_exp(-man if negative else man, exp))
        return self.check(+value)  # unary + rounds to the current precision

    # arithmetic that needs care

    def divide(self, a: Mpf, b: Mpf) -> Mpf:
        if not b._mpf_[1]:
            raise NumberError("division by zero")
        return self.check(a / b)

    def round(self, value: Mpf, decimals: int) -> Mpf:
        """Round the value as printed (current digits) to ``decimals``, halves away from 0.

        Rounding the printed digits, not the binary value, makes ROUND(1.0005, 3) give 1.001
        as on paper, although 1.0005 is stored a hair below.
        """
        if abs(decimals) > self.max_precision:
            raise LimitExceeded(f"ROUND takes at most {self.max_precision} decimals")
        if not value._mpf_[1]:
            return value
        text = cast(
            str, self._ctx.nstr(value, self.digits, strip_zeros=False, min_fixed=0, max_fixed=0)
        )
        exact = Decimal(text)
        fraction_digits = -cast(int, exact.as_tuple().exponent)
        if fraction_digits <= decimals:
            return value  # already has no more decimals than asked for
        with localcontext() as dec:
            dec.prec = self.digits + abs(decimals) + 5
            rounded = exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
        return self.check(self._ctx.mpf(str(rounded)))

    def pow(self, base: Mpf, exponent: Mpf) -> Mpf:
        ctx = self._ctx
        if not base._mpf_[1]:
            if exponent < self.zero:
                raise NumberError("0 to a negative power")
            return self.one if not exponent._mpf_[1] else self.zero
        if base < self.zero and not ctx.isint(exponent):
            raise NumberError("a negative number to a fractional power has no real value")
        # Estimate the size of the result before computing it.
        with ctx.workprec(53):
            bits = ctx.log(abs(base), 2) * exponent
        if bits > self.max_bits:
            raise LimitExceeded(f"number too large (limit 1e{self.max_exponent})")
        if bits < -self.max_bits:
            return self.zero
        return self.check(ctx.power(base, exponent))

    def call(self, name: str, args: list[Mpf]) -> Mpf:
        """A math function by its Warble name (arguments already counted by the parser)."""
        ctx = self._ctx
        x = args[0]
        if name in ("SIN", "COS", "TAN"):
            if x._mpf_[1] and x._mpf_[2] + x._mpf_[3] > _TRIG_MAX_BITS:
                raise NumberError("argument too large (limit 1e1000)")
            return self.check(getattr(ctx, name.lower())(x))
        if name in ("ASIN", "ACOS"):
            if abs(x) > self.one:
                raise NumberError("argument must be between -1 and 1")
            return self.check(getattr(ctx, name.lower())(x))
        if name == "ATAN":
            return self.check(ctx.atan(x))
        if name == "ATAN2":
            if not x._mpf_[1] and not args[1]._mpf_[1]:
                raise NumberError("ATAN2(0, 0) has no angle")
            return self.check(ctx.atan2(x, args[1]))
        if name == "SQRT":
            if x < self.zero:
                raise NumberError("square root of a negative number")
            return self.check(ctx.sqrt(x))
        if name == "EXP":
            limit = self.max_bits * math.log(2)
            if x > self.from_int(math.ceil(limit)):
                raise LimitExceeded(f"number too large (limit 1e{self.max_exponent})")
            if x < self.from_int(-math.ceil(limit)):
                return self.zero
            return self.check(ctx.exp(x))
        if name == "LOG":
            if x <= self.zero:
                raise NumberError("logarithm of a number <= 0")
            if len(args) == 1:
                return self.check(ctx.ln(x))
            base = args[1]
            if base <= self.zero or base == self.one:
                raise NumberError("logarithm base must be > 0 and not 1")
            return self.check(ctx.log(x, base))
        if name == "ABS":
            return abs(x)
        if name == "FLOOR":
            return self.check(ctx.floor(x))
        if name == "CEIL":
            return self.check(ctx.ceil(x))
        if name == "POW":
            return self.pow(x, args[1])
        if name == "MOD":
            y = args[1]
            if not y._mpf_[1]:
                raise NumberError("MOD by zero")
            quotient = ctx.floor(x / y)
            return self.check(x - y * quotient)
        if name == "MIN":
            return min(args, key=_SortKey)
        if name == "MAX":
            return max(args, key=_SortKey)
        raise NumberError(f"no such math function {name}")  # pragma: no cover - parser checks


class _SortKey:
    """Orders Mpf values for min/max without telling mypy they are ``SupportsRichComparison``."""

    __slots__ = ("value",)

    def __init__(self, value: Mpf) -> None:
        self.value = value

    def __lt__(self, other: _SortKey) -> bool:
        return self.value < other.value
