"""The state of one run and the Warble functions that act on it."""

from __future__ import annotations

from collections.abc import Callable

from bramble.warble.effects import Effects, check_sound_url
from bramble.warble.errors import WarbleInternalError, WarbleLimitError, WarbleRuntimeError
from bramble.warble.limits import Clock, Limits
from bramble.warble.nodes import Node
from bramble.warble.numbers import LimitExceeded, Mpf, NumberError, Numbers
from bramble.warble.store import Store, StoreFullError

Value = Mpf | str

MATH_FUNCTIONS = frozenset(
    {
        "SIN",
        "COS",
        "TAN",
        "ASIN",
        "ACOS",
        "ATAN",
        "ATAN2",
        "SQRT",
        "EXP",
        "LOG",
        "ABS",
        "FLOOR",
        "CEIL",
        "POW",
        "MOD",
        "MIN",
        "MAX",
    }
)


class Runtime:
    """Variables, output, counters and services (clock, store, effects) of one run."""

    def __init__(
        self,
        limits: Limits,
        *,
        user: str,
        store: Store,
        effects: Effects,
        clock: Clock,
        on_output: Callable[[str], None] | None = None,
    ) -> None:
        self.limits = limits
        self.user = user
        self.store = store
        self.effects = effects
        self.clock = clock
        self.on_output = on_output
        self.nums = Numbers(limits.max_exponent, limits.max_precision)
        self.vars: dict[str, Value] = {}
        self.lines: list[str] = []
        self.output_bytes = 0
        self.steps = 0
        self.lights = 0
        self.sounds = 0
        self.started = clock.monotonic()
        self.deadline = self.started + limits.wall_time
        self._functions: dict[str, Callable[[list[Value], Node], Value | None]] = {
            "PRINT": self._print,
            "ROUND": self._round,
            "SETPRECISION": self._setprecision,
            "SAVE": self._save,
            "LOAD": self._load,
            "LIGHTS": self._lights,
            "SLEEP": self._sleep,
            "PLAYSOUND": self._playsound,
        }

    # bounds

    def step(self, node: Node) -> None:
        """Count one step (a statement or a loop test) and check steps and time."""
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise WarbleLimitError(
                f"too many steps (limit {self.limits.max_steps:,})", node.line, node.column
            )
        if self.clock.monotonic() > self.deadline:
            raise self.time_error(node)

    def time_error(self, node: Node) -> WarbleLimitError:
        return WarbleLimitError(
            f"time limit reached ({self.limits.wall_time:g} s)", node.line, node.column
        )

    def elapsed(self) -> float:
        return self.clock.monotonic() - self.started

    # values

    def show(self, value: Value) -> str:
        return value if isinstance(value, str) else self.nums.format(value)

    def number(self, value: Value, node: Node, what: str) -> Mpf:
        if isinstance(value, str):
            raise WarbleRuntimeError(f"{what} must be a number, not a string", *_pos(node))
        return value

    def string(self, value: Value, node: Node, what: str) -> str:
        if not isinstance(value, str):
            raise WarbleRuntimeError(f"{what} must be a string, not a number", *_pos(node))
        return value

    def whole(self, value: Value, node: Node, what: str, low: int, high: int) -> int:
        number = self.number(value, node, what)
        if not self.nums.is_whole(number) or not low <= self.nums.to_int(number) <= high:
            raise WarbleRuntimeError(
                f"{what} must be a whole number from {low} to {high}, not "
                f"{self.nums.format(number)}",
                *_pos(node),
            )
        return self.nums.to_int(number)

    def concat(self, text: str, node: Node) -> str:
        if len(text) > self.limits.max_string_chars:
            raise WarbleLimitError(
                f"string too long ({len(text):,} characters, limit "
                f"{self.limits.max_string_chars:,})",
                *_pos(node),
            )
        return text

    # functions

    def call(self, name: str, args: list[Value], node: Node) -> Value | None:
        """Run a function; number problems become positioned errors; time is checked after."""
        try:
            if name in MATH_FUNCTIONS:
                numbers = [
                    self.number(arg, node, f"{name} argument {i}") for i, arg in enumerate(args, 1)
                ]
                result: Value | None = self.nums.call(name, numbers)
            else:
                result = self._functions[name](args, node)
        except LimitExceeded as exc:
            raise WarbleLimitError(f"{name}: {exc}", *_pos(node)) from None
        except NumberError as exc:
            raise WarbleRuntimeError(f"{name}: {exc}", *_pos(node)) from None
        if self.clock.monotonic() > self.deadline:
            raise self.time_error(node)
        return result

    def call_value(self, name: str, args: list[Value], node: Node) -> Value:
        result = self.call(name, args, node)
        if result is None:  # the parser lets only value-giving functions into expressions
            raise WarbleInternalError(f"{name} gave no value", *_pos(node))
        return result

    def emit(self, text: str, node: Node) -> None:
        size = len(text.encode("utf-8", "surrogatepass")) + 1
        limits = self.limits
        if len(self.lines) >= limits.max_output_lines:
            raise WarbleLimitError(
                f"too much output (limit {limits.max_output_lines:,} lines)", *_pos(node)
            )
        if self.output_bytes + size > limits.max_output_bytes:
            raise WarbleLimitError(
                f"too much output (limit {limits.max_output_bytes:,} bytes)", *_pos(node)
            )
        self.output_bytes += size
        self.lines.append(text)
        if self.on_output is not None:
            self.on_output(text)

    def _print(self, args: list[Value], node: Node) -> None:
        self.emit(" ".join(self.show(arg) for arg in args), node)

    def _round(self, args: list[Value], node: Node) -> Value:
        value = self.number(args[0], node, "ROUND value")
        decimals = 0
        if len(args) > 1:
            limit = self.limits.max_precision
            decimals = self.whole(args[1], node, "ROUND decimals", -limit, limit)
        return self.nums.round(value, decimals)

    def _setprecision(self, args: list[Value], node: Node) -> None:
        limit = self.limits.max_precision
        number = self.number(args[0], node, "SETPRECISION digits")
        if self.nums.is_whole(number) and self.nums.to_int(number) > limit:
            raise WarbleLimitError(
                f"SETPRECISION: at most {limit:,} digits, not {self.nums.format(number)}",
                *_pos(node),
            )
        self.nums.set_digits(self.whole(number, node, "SETPRECISION digits", 1, limit))

    def _key(self, value: Value, node: Node, name: str) -> str:
        key = self.string(value, node, f"{name} name")
        if not 1 <= len(key) <= self.limits.max_key_chars:
            raise WarbleLimitError(
                f"{name} name must be 1 to {self.limits.max_key_chars} characters",
                *_pos(node),
            )
        return key

    def _save(self, args: list[Value], node: Node) -> None:
        key = self._key(args[0], node, "SAVE")
        value = args[1]
        encoded = "s:" + value if isinstance(value, str) else "n:" + self.nums.encode(value)
        size = len(encoded.encode("utf-8", "surrogatepass"))
        if size > self.limits.max_value_bytes:
            raise WarbleLimitError(
                f"SAVE: value too large ({size:,} bytes, limit {self.limits.max_value_bytes:,})",
                *_pos(node),
            )
        try:
            self.store.save(self.user, key, encoded, max_keys=self.limits.max_saved_keys)
        except StoreFullError as exc:
            raise WarbleLimitError(f"SAVE: {exc}", *_pos(node)) from None
        except Exception:
            raise WarbleRuntimeError("SAVE: the store is not available", *_pos(node)) from None

    def _load(self, args: list[Value], node: Node) -> Value:
        key = self._key(args[0], node, "LOAD")
        try:
            encoded = self.store.load(self.user, key)
        except Exception:
            raise WarbleRuntimeError("LOAD: the store is not available", *_pos(node)) from None
        if encoded is None:
            return self.nums.zero
        if encoded.startswith("s:"):
            return encoded[2:]
        try:
            if not encoded.startswith("n:"):
                raise ValueError(encoded[:2])
            return self.nums.decode(encoded[2:])
        except LimitExceeded:
            raise
        except ValueError:
            raise WarbleRuntimeError(
                f"LOAD: the value kept under {key!r} is unreadable", *_pos(node)
            ) from None

    def _lights(self, args: list[Value], node: Node) -> None:
        index = self.whole(args[0], node, "LIGHTS index", 0, self.limits.light_count - 1)
        colours = []
        for name, arg in zip(("red", "green", "blue"), args[1:], strict=True):
            number = self.number(arg, node, f"LIGHTS {name}")
            if not self.nums.is_whole(number):
                number = self.nums.round(number, 0)
            colours.append(self.whole(number, node, f"LIGHTS {name}", 0, 255))
        self.lights += 1
        if self.lights > self.limits.max_lights:
            raise WarbleLimitError(
                f"too many LIGHTS calls (limit {self.limits.max_lights:,} per run)", *_pos(node)
            )
        try:
            self.effects.light(index, colours[0], colours[1], colours[2])
        except Exception:
            raise WarbleRuntimeError("LIGHTS: the lights did not answer", *_pos(node)) from None

    def _sleep(self, args: list[Value], node: Node) -> None:
        millis = self.number(args[0], node, "SLEEP milliseconds")
        if millis < self.nums.zero:
            raise WarbleRuntimeError("SLEEP milliseconds must not be negative", *_pos(node))
        seconds = float(millis) / 1000.0
        remaining = self.deadline - self.clock.monotonic()
        if seconds > remaining:
            raise WarbleLimitError(
                f"SLEEP({self.nums.format(millis)}) would pass the time limit "
                f"({self.limits.wall_time:g} s)",
                *_pos(node),
            )
        self.clock.sleep(seconds)

    def _playsound(self, args: list[Value], node: Node) -> None:
        url = self.string(args[0], node, "PLAYSOUND url")
        try:
            check_sound_url(url, self.limits.sound_hosts)
        except ValueError as exc:
            raise WarbleRuntimeError(f"PLAYSOUND: {exc}", *_pos(node)) from None
        self.sounds += 1
        if self.sounds > self.limits.max_sounds:
            raise WarbleLimitError(
                f"too many PLAYSOUND calls (limit {self.limits.max_sounds} per run)", *_pos(node)
            )
        try:
            self.effects.sound(url)
        except Exception:
            raise WarbleRuntimeError(
                "PLAYSOUND: the sound player did not answer", *_pos(node)
            ) from None


def _pos(node: Node) -> tuple[int, int]:
    return node.line, node.column
