"""Warble numbers: mpmath binary floating point at the run's precision.

Every number is an mpmath ``mpf`` of one per-thread context whose precision SETPRECISION sets
(default 15 significant digits, the 53 bits of a double). Results are checked here: real,
finite, and within the run's magnitude bound. mpmath ships no type information, so this
module is the one place that touches it untyped.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, Protocol, cast

import mpmath  # type: ignore[import-untyped]

DEFAULT_DIGITS = 15
_LOG2_10 = math.log2(10)
_FAST_INT_DIGITS = 1000  # integers of up to this many digits print via int (str limit: 4300)
_FAST_INT_BITS = 3300
_TRIG_MAX_BITS = 3322  # 2**3322 > 1e1000: larger trig arguments need pi to too many digits


class Mpf(Protocol):
    """The part of mpmath's ``mpf`` that Warble uses."""

    _mpf_: tuple[int, int, int, int]

    def __add__(self, other: Mpf, /) -> Mpf: ...
    def __sub__(self, other: Mpf, /) -> Mpf: ...
    def __mul__(self, other: Mpf, /) -> Mpf: ...
    def __truediv__(self, other: Mpf, /) -> Mpf: ...
    def __neg__(self) -> Mpf: ...
    def __pos__(self) -> Mpf: ...
    def __abs__(self) -> Mpf: ...
    def __lt__(self, other: Mpf, /) -> bool: ...
    def __le__(self, other: Mpf, /) -> bool: ...
    def __gt__(self, other: Mpf, /) -> bool: ...
    def __ge__(self, other: Mpf, /) -> bool: ...
    def __int__(self) -> int: ...
    def __float__(self) -> float: ...


class NumberError(ValueError):
    """A number problem (domain, size); the interpreter adds the position."""


class LimitExceeded(NumberError):
    """A number crossed one of the run's bounds."""


_local = threading.local()


_LITERAL_CACHE_SIZE = 4096


def _thread_context() -> Any:
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        ctx = mpmath.MPContext()  # a few milliseconds: made once per thread, reused
        _local.ctx = ctx
        _local.literals = {}
    return ctx


def _literal_cache() -> dict[tuple[str, int], Any]:
    _thread_context()
    return cast(dict[tuple[str, int], Any], _local.literals)


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
        self._mpf_type: Any = self._ctx.mpf
        self.zero: Mpf = self._ctx.mpf(0)
        self.one: Mpf = self._ctx.mpf(1)
        self._literals = _literal_cache()
        self._functions = self._function_table()
        self._small_ints = 10**DEFAULT_DIGITS

    # precision

    @property
    def prec(self) -> int:
        return cast(int, self._ctx.prec)

    def set_digits(self, digits: int) -> None:
        if not 1 <= digits <= self.max_precision:
            raise LimitExceeded(f"precision must be 1 to {self.max_precision} digits, not {digits}")
        self._ctx.dps = digits
        self.digits = digits
        self._small_ints = 10**digits if digits <= _FAST_INT_DIGITS else 0

    # making numbers

    def is_number(self, value: object) -> bool:
        return isinstance(value, self._mpf_type)

    def literal(self, text: str) -> Mpf:
        """A numeric literal, converted once per precision (cached for the thread)."""
        key = (text, self._ctx.prec)
        value = self._literals.get(key)
        if value is None:
            if len(self._literals) >= _LITERAL_CACHE_SIZE:
                self._literals.clear()
            value = self._ctx.mpf(text)
            self._literals[key] = value
        return self.check(value)

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
        # mpmath keeps mantissas odd, so a negative exponent means a fraction.
        _sign, man, exp, _bc = value._mpf_
        return not man or exp >= 0

    def to_int(self, value: Mpf) -> int:
        """The integer part (exact for whole numbers)."""
        sign, man, exp, _bc = value._mpf_
        whole = man << exp if exp >= 0 else man >> -exp
        return -whole if sign else whole

    def truth(self, flag: bool) -> Mpf:
        return self.one if flag else self.zero

    # printing and storing

    def format(self, value: Mpf) -> str:
        """Up to the run's digits, trailing zeros dropped: 3.142, 0, 2, 1e+20, -2.5e-7."""
        _sign, man, exp, bc = value._mpf_
        if not man or (exp >= 0 and exp + bc <= _FAST_INT_BITS):
            whole = int(value)  # the same digits nstr gives, without its cost
            if -self._small_ints < whole < self._small_ints:
                return str(whole)
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
        if not value._mpf_[1] or (decimals >= 0 and self.is_whole(value)):
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
        # Estimate the size of the result (in bits) before computing it.
        _sign, man, exp, _bc = base._mpf_
        power = float(exponent)  # +-inf when huge
        log2_base = math.log2(man) + exp
        bits = log2_base * power if log2_base else 0.0
        if bits > self.max_bits:
            raise LimitExceeded(f"number too large (limit 1e{self.max_exponent})")
        if bits < -self.max_bits:
            return self.zero
        return self.check(ctx.power(base, exponent))

    def call(self, name: str, args: list[Mpf]) -> Mpf:
        """A math function by its Warble name (arguments already counted by the parser)."""
        function = self._functions.get(name)
        if function is None:  # pragma: no cover - the parser knows the names
            raise NumberError(f"no such math function {name}")
        return function(args)

    def _function_table(self) -> dict[str, Callable[[list[Mpf]], Mpf]]:
        ctx = self._ctx
        return {
            "SIN": lambda a: self._trig(ctx.sin, a[0]),
            "COS": lambda a: self._trig(ctx.cos, a[0]),
            "TAN": lambda a: self._trig(ctx.tan, a[0]),
            "ASIN": lambda a: self._arc(ctx.asin, a[0]),
            "ACOS": lambda a: self._arc(ctx.acos, a[0]),
            "ATAN": lambda a: self.check(ctx.atan(a[0])),
            "ATAN2": self._atan2,
            "SQRT": self._sqrt,
            "EXP": self._exp,
            "LOG": self._log,
            "ABS": lambda a: abs(a[0]),
            "FLOOR": lambda a: self.check(ctx.floor(a[0])),
            "CEIL": lambda a: self.check(ctx.ceil(a[0])),
            "POW": lambda a: self.pow(a[0], a[1]),
            "MOD": self._mod,
            "MIN": lambda a: min(a, key=_SortKey),
            "MAX": lambda a: max(a, key=_SortKey),
        }

    def _trig(self, function: Callable[[Mpf], Any], x: Mpf) -> Mpf:
        if x._mpf_[1] and x._mpf_[2] + x._mpf_[3] > _TRIG_MAX_BITS:
            raise NumberError("argument too large (limit 1e1000)")
        return self.check(function(x))

    def _arc(self, function: Callable[[Mpf], Any], x: Mpf) -> Mpf:
        if abs(x) > self.one:
            raise NumberError("argument must be between -1 and 1")
        return self.check(function(x))

    def _atan2(self, args: list[Mpf]) -> Mpf:
        y, x = args
        if not x._mpf_[1] and not y._mpf_[1]:
            raise NumberError("ATAN2(0, 0) has no angle")
        return self.check(self._ctx.atan2(y, x))

    def _sqrt(self, args: list[Mpf]) -> Mpf:
        if args[0] < self.zero:
            raise NumberError("square root of a negative number")
        return self.check(self._ctx.sqrt(args[0]))

    def _exp(self, args: list[Mpf]) -> Mpf:
        x = args[0]
        limit = math.ceil(self.max_bits * math.log(2))
        if x > self.from_int(limit):
            raise LimitExceeded(f"number too large (limit 1e{self.max_exponent})")
        if x < self.from_int(-limit):
            return self.zero
        return self.check(self._ctx.exp(x))

    def _log(self, args: list[Mpf]) -> Mpf:
        x = args[0]
        if x <= self.zero:
            raise NumberError("logarithm of a number <= 0")
        if len(args) == 1:
            return self.check(self._ctx.ln(x))
        base = args[1]
        if base <= self.zero or not base - self.one:
            raise NumberError("logarithm base must be > 0 and not 1")
        return self.check(self._ctx.log(x, base))

    def _mod(self, args: list[Mpf]) -> Mpf:
        x, y = args
        if not y._mpf_[1]:
            raise NumberError("MOD by zero")
        return self.check(x - y * self._ctx.floor(x / y))


class _SortKey:
    """Orders Mpf values for min/max without telling mypy they are ``SupportsRichComparison``."""

    __slots__ = ("value",)

    def __init__(self, value: Mpf) -> None:
        self.value = value

    def __lt__(self, other: _SortKey) -> bool:
        return self.value < other.value
