"""The one error type a Warble run can end with: short, positioned, never a traceback."""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["syntax", "runtime", "limit", "internal"]


class WarbleError(Exception):
    """A problem with a Warble, reported to its author as ``line L, column C: message``.

    ``line`` and ``column`` count from 1 in the text that was submitted (the ``#pi{`` wrapper
    included); they are ``None`` only when no position applies (e.g. a run killed from outside).
    """

    kind: ErrorKind = "runtime"

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        if self.line is None or self.column is None:
            return self.message
        return f"line {self.line}, column {self.column}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "message": self.message,
            "line": self.line,
            "column": self.column,
        }

    @staticmethod
    def from_json(data: dict[str, object]) -> WarbleError:
        kind = data.get("kind")
        cls: type[WarbleError] = _KINDS.get(str(kind), WarbleInternalError)
        line = data.get("line")
        column = data.get("column")
        return cls(
            str(data.get("message", "")),
            line if isinstance(line, int) else None,
            column if isinstance(column, int) else None,
        )


class WarbleSyntaxError(WarbleError):
    """The text is not a Warble: found before anything runs."""

    kind: ErrorKind = "syntax"


class WarbleRuntimeError(WarbleError):
    """The Warble is well formed but something went wrong while it ran (e.g. division by 0)."""

    kind: ErrorKind = "runtime"


class WarbleLimitError(WarbleRuntimeError):
    """The run hit one of its bounds: steps, time, output, precision, memory."""

    kind: ErrorKind = "limit"


class WarbleInternalError(WarbleError):
    """A defect in bramble itself; the message names no internals beyond the exception type."""

    kind: ErrorKind = "internal"


_KINDS: dict[str, type[WarbleError]] = {
    "syntax": WarbleSyntaxError,
    "runtime": WarbleRuntimeError,
    "limit": WarbleLimitError,
    "internal": WarbleInternalError,
}
