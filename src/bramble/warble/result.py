"""What a run gives back, in process or from the isolated child."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bramble.warble.errors import WarbleError


@dataclass
class RunResult:
    lines: list[str] = field(default_factory=list)
    """One entry per PRINT, without newlines."""
    error: WarbleError | None = None
    """Why the run stopped early (``None`` if it ran to its end)."""
    steps: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def output(self) -> str:
        """The output as printed: each line ends with a newline."""
        return "".join(line + "\n" for line in self.lines)

    def reply(self) -> str:
        """Output, then the error if any: the text to answer a post with."""
        if self.error is None:
            return self.output
        return self.output + f"error: {self.error}\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": list(self.lines),
            "error": None if self.error is None else self.error.to_json(),
            "steps": self.steps,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        error = data.get("error")
        return cls(
            lines=[str(line) for line in data.get("lines", [])],
            error=None if error is None else WarbleError.from_json(error),
            steps=int(data.get("steps", 0)),
            seconds=float(data.get("seconds", 0.0)),
        )
