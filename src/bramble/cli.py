"""``bramble``: the cluster's command line. For now: ``bramble warble run FILE|-``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bramble.warble.effects import RecordingEffects
from bramble.warble.interpreter import run
from bramble.warble.isolated import run_isolated
from bramble.warble.limits import Limits
from bramble.warble.result import RunResult
from bramble.warble.store import SqliteStore, default_store_path


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bramble", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    warble = commands.add_parser("warble", help="the Warble language", description="Warbles")
    warble_commands = warble.add_subparsers(dest="warble_command", required=True, metavar="ACTION")
    run_parser = warble_commands.add_parser(
        "run",
        help="run a Warble here, with the cluster's limits",
        description=(
            "Run a Warble (#pi{...} or bare) on this machine with the limits the cluster uses, "
            "in a resource-limited child process. Its output goes to standard output; what "
            "LIGHTS and PLAYSOUND would do goes to standard error; SAVE/LOAD use a local "
            "SQLite file. Exit status 0 if it ran to its end, 1 on an error."
        ),
    )
    run_parser.add_argument("file", help="file holding the Warble, or - for standard input")
    run_parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help=f"SQLite file for SAVE/LOAD (default {default_store_path()})",
    )
    run_parser.add_argument(
        "--user",
        default=None,
        help="whose SAVE/LOAD values to use (default: $USER, else 'local')",
    )
    run_parser.add_argument(
        "--sound-host",
        action="append",
        default=None,
        metavar="HOST",
        help="allow PLAYSOUND from this host (repeatable; replaces the default allow-list)",
    )
    run_parser.add_argument(
        "--in-process",
        action="store_true",
        help="run in this process (same Warble limits, but no memory limit or hard kill)",
    )
    return parser


def _read_source(name: str, limits: Limits) -> str:
    """The Warble's text; at most a little more than the limit is read (the run reports it)."""
    budget = limits.max_source_chars * 4 + 4
    if name == "-":
        data = sys.stdin.buffer.read(budget)
    else:
        with Path(name).open("rb") as handle:
            data = handle.read(budget)
    return data.decode("utf-8-sig", errors="strict")


def _show(line: str) -> None:
    print(line, flush=True)


def _show_effect(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def warble_run(args: argparse.Namespace) -> int:
    limits = Limits()
    if args.sound_host:
        limits = Limits(sound_hosts=tuple(args.sound_host))
    try:
        source = _read_source(args.file, limits)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except UnicodeDecodeError:
        print(f"error: {args.file} is not UTF-8 text", file=sys.stderr)
        return 1
    user = args.user or os.environ.get("USER") or "local"
    try:
        store = SqliteStore(args.store or default_store_path())
    except Exception as exc:
        print(f"error: cannot open the store: {exc}", file=sys.stderr)
        return 1
    effects = RecordingEffects(echo=_show_effect)
    try:
        runner = run if args.in_process else run_isolated
        result: RunResult = runner(
            source, limits=limits, user=user, store=store, effects=effects, on_output=_show
        )
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        store.close()
    if result.error is not None:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "warble" and args.warble_command == "run":
        return warble_run(args)
    return 2  # pragma: no cover - argparse requires a known command


if __name__ == "__main__":
    sys.exit(main())
