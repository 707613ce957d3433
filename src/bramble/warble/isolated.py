"""Run a Warble in a child process with memory and CPU limits and a hard timeout.

The child (``python -m bramble.warble.child``) gets only the Warble, the limits and a copy of
the user's saved values; it touches no file. Its output, saves and effects stream back as
JSON lines and are applied here as they arrive (so lights keep their timing). A child that
has not started within ``start_timeout`` seconds, or that outlives ``wall_time + kill_grace``
seconds once started, is killed.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bramble
from bramble.warble.effects import Effects, RecordingEffects, check_sound_url
from bramble.warble.errors import (
    WarbleError,
    WarbleInternalError,
    WarbleLimitError,
    WarbleRuntimeError,
)
from bramble.warble.interpreter import run
from bramble.warble.limits import Limits
from bramble.warble.result import RunResult
from bramble.warble.store import MemoryStore, Store, StoreFullError

_STDERR_KEPT = 4096


class _ChildFailed(Exception):
    def __init__(self, error: WarbleError) -> None:
        super().__init__(str(error))
        self.error = error


def _child_env() -> dict[str, str]:
    """A clean environment: the child sees no secrets of ours, only where bramble lives."""
    package_root = Path(bramble.__file__).resolve().parent.parent
    return {
        "PATH": os.defpath,
        "PYTHONPATH": str(package_root),
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LC_ALL": "C.UTF-8",
    }


def run_isolated(
    source: str,
    *,
    limits: Limits | None = None,
    user: str = "local",
    store: Store | None = None,
    effects: Effects | None = None,
    on_output: Callable[[str], None] | None = None,
    python: str | None = None,
) -> RunResult:
    """Like ``run``, in a resource-limited child process killed on overrun."""
    limits = limits or Limits()
    store = store if store is not None else MemoryStore()
    effects = effects if effects is not None else RecordingEffects()
    if len(source) > limits.max_source_chars:
        return run(source, limits=limits)  # fails at once, before running anything
    request = {
        "source": source,
        "user": user,
        "limits": limits.to_json(),
        "saved": store.snapshot(user),
    }
    session = _Session(limits, user, store, effects, on_output)
    with tempfile.TemporaryFile() as stdin:
        stdin.write(json.dumps(request).encode())
        stdin.seek(0)
        started = time.monotonic()
        proc = subprocess.Popen(
            [python or sys.executable, "-s", "-B", "-m", "bramble.warble.child"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_child_env(),
            cwd="/",
            start_new_session=True,
        )
    try:
        return session.follow(proc, started + limits.start_timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


class _Session:
    def __init__(
        self,
        limits: Limits,
        user: str,
        store: Store,
        effects: Effects,
        on_output: Callable[[str], None] | None,
    ) -> None:
        self.limits = limits
        self.user = user
        self.store = store
        self.effects = effects
        self.on_output = on_output
        self.lines: list[str] = []
        self.result: RunResult | None = None
        self.ready = False
        self.deadline = 0.0
        self.stderr = b""
        # Output is bounded in the child; this bounds what we accept from it regardless.
        self.max_bytes = (
            4 * limits.max_output_bytes
            + 2 * limits.max_saved_keys * limits.max_value_bytes
            + 64 * (limits.max_lights + limits.max_sounds)
            + 1_000_000
        )

    def follow(self, proc: subprocess.Popen[bytes], start_deadline: float) -> RunResult:
        if proc.stdout is None or proc.stderr is None:  # pragma: no cover - PIPE given
            raise RuntimeError("child pipes missing")
        selector = selectors.DefaultSelector()
        out_fd = proc.stdout.fileno()
        selector.register(out_fd, selectors.EVENT_READ)
        selector.register(proc.stderr.fileno(), selectors.EVENT_READ)
        pending = b""
        received = 0
        self.deadline = start_deadline
        try:
            while selector.get_map():
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    proc.kill()
                    return self._finish(self._overrun())
                for key, _ in selector.select(remaining):
                    data = os.read(key.fd, 65536)
                    if not data:
                        selector.unregister(key.fd)
                        continue
                    if key.fd != out_fd:
                        self.stderr = (self.stderr + data)[-_STDERR_KEPT:]
                        continue
                    received += len(data)
                    if received > self.max_bytes:
                        proc.kill()
                        return self._finish(
                            WarbleLimitError("too much output; the run was stopped")
                        )
                    pending += data
                    *complete, pending = pending.split(b"\n")
                    for line in complete:
                        self._handle(line)
        except _ChildFailed as failed:
            proc.kill()
            return self._finish(failed.error)
        finally:
            selector.close()
        try:
            proc.wait(timeout=max(0.1, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
        if self.result is not None:
            self.result.lines = self.lines
            return self.result
        return self._finish(self._death_reason(proc.wait()))

    def _overrun(self) -> WarbleError:
        if not self.ready:
            return WarbleInternalError(
                f"the run did not start within {self.limits.start_timeout:g} s"
            )
        return WarbleLimitError(
            f"time limit reached ({self.limits.wall_time:g} s); the run was stopped"
        )

    def _death_reason(self, returncode: int) -> WarbleError:
        if returncode == -24:  # SIGXCPU: RLIMIT_CPU reached
            return WarbleLimitError(f"CPU time limit reached ({self.limits.wall_time:g} s)")
        if b"MemoryError" in self.stderr:
            return WarbleLimitError("out of memory")
        return WarbleInternalError(f"the run ended unexpectedly (exit status {returncode})")

    def _finish(self, error: WarbleError) -> RunResult:
        return RunResult(lines=self.lines, error=error)

    def _handle(self, raw: bytes) -> None:
        try:
            message: Any = json.loads(raw)
            if not isinstance(message, dict) or len(message) != 1:
                raise ValueError("not a one-key object")
            ((kind, body),) = message.items()
            if kind == "ready" and body is True and not self.ready:
                self.ready = True
                self.deadline = time.monotonic() + self.limits.wall_time + self.limits.kill_grace
            elif kind == "out" and isinstance(body, str):
                self.lines.append(body)
                if self.on_output is not None:
                    self.on_output(body)
            elif kind == "light" and _valid_light(body, self.limits.light_count):
                self._effect(lambda: self.effects.light(*body), "LIGHTS: the lights did not answer")
            elif kind == "sound" and isinstance(body, str):
                check_sound_url(body, self.limits.sound_hosts)
                self._effect(
                    lambda: self.effects.sound(body), "PLAYSOUND: the sound player did not answer"
                )
            elif kind == "save" and _valid_save(body):
                self._save(body[0], body[1])
            elif kind == "result" and isinstance(body, dict):
                self.result = RunResult.from_json(body)
            else:
                raise ValueError(f"unexpected message {kind!r}")
        except _ChildFailed:
            raise
        except Exception:
            raise _ChildFailed(
                WarbleInternalError("the run sent a message that makes no sense")
            ) from None

    def _effect(self, action: Callable[[], None], failure: str) -> None:
        try:
            action()
        except Exception:
            raise _ChildFailed(WarbleRuntimeError(failure)) from None

    def _save(self, key: str, value: str) -> None:
        try:
            self.store.save(self.user, key, value, max_keys=self.limits.max_saved_keys)
        except StoreFullError as exc:
            raise _ChildFailed(WarbleLimitError(f"SAVE: {exc}")) from None
        except Exception:
            raise _ChildFailed(WarbleRuntimeError("SAVE: the store is not available")) from None


def _valid_light(body: object, count: int) -> bool:
    if not isinstance(body, list) or len(body) != 4:
        return False
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in body):
        return False
    index, *colours = body
    return 0 <= index < count and all(0 <= c <= 255 for c in colours)


def _valid_save(body: object) -> bool:
    return (
        isinstance(body, list)
        and len(body) == 2
        and isinstance(body[0], str)
        and isinstance(body[1], str)
    )
