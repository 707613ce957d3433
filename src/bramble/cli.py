"""``bramble``: the cluster's command line.

``status``, ``bank N``, ``power GROUP on|off|cycle``, ``events``, ``job cancel ID`` and
``warble submit|results`` ask bramble-server (see docs/cli.md); ``warble run`` runs a Warble
on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bramble import cli_ops
from bramble.cli_client import Client, CliError, settings
from bramble.warble.effects import RecordingEffects
from bramble.warble.interpreter import run
from bramble.warble.isolated import run_isolated
from bramble.warble.limits import Limits
from bramble.warble.result import RunResult
from bramble.warble.store import SqliteStore, default_store_path

EPILOG = """\
Server and token: --server/--token-file, else BRAMBLE_SERVER and BRAMBLE_TOKEN or
BRAMBLE_TOKEN_FILE, else the config file (~/.config/bramble/cli.toml: server, token_file),
else http://127.0.0.1:8470 without a token. The token is never printed.
Exit status: 0 success, 1 the server refused or failed (the message says why), 2 usage.
"""


def _connection() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", metavar="URL", help="bramble-server's URL")
    common.add_argument("--token-file", metavar="FILE", help="file holding the admin token")
    common.add_argument("--config", metavar="FILE", help="config file (TOML)")
    common.add_argument("--json", action="store_true", help="print the server's JSON")
    return common


def _server_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    status = commands.add_parser(
        "status", parents=[common], help="cluster totals and one line per bank"
    )
    status.set_defaults(run=cli_ops.status)
    bank = commands.add_parser("bank", parents=[common], help="every slot of one bank")
    bank.add_argument("number", type=int, help="the bank number (1 is the first)")
    bank.set_defaults(run=cli_ops.bank)
    power = commands.add_parser(
        "power",
        parents=[common],
        help="switch a power group (admin token)",
        description="Ask the server to switch power group GROUP through the power controllers "
        "(server.toml [power]: bank_power's drivers, power budget and read-back); the request "
        "is recorded as an event. HTTP 409 over the budget (nothing switched), 502/504 when a "
        "controller fails (named), 501 when the server has power switching off (use "
        "playbooks/bank.yml).",
    )
    power.add_argument("group", type=int, help="power group id (cluster.yml power.groups)")
    power.add_argument("action", choices=["on", "off", "cycle"])
    power.add_argument(
        "--timeout",
        type=float,
        default=150.0,
        help="seconds to wait for the answer (150; the server gives up after its "
        "power.request_timeout, 120 by default)",
    )
    power.set_defaults(run=cli_ops.power)
    events = commands.add_parser(
        "events", parents=[common], help="recent events, then follow new ones live"
    )
    events.add_argument("--limit", type=int, default=20, help="recent events first (20)")
    events.add_argument(
        "--no-follow", dest="follow", action="store_false", help="print the recent ones and exit"
    )
    events.add_argument("--count", type=int, default=0, help="stop after N new events")
    events.set_defaults(run=cli_ops.events)
    job = commands.add_parser("job", help="Warble jobs (admin token)")
    job_commands = job.add_subparsers(dest="job_command", required=True, metavar="ACTION")
    cancel = job_commands.add_parser(
        "cancel",
        parents=[common],
        help="cancel a job or Warble no node has yet",
        description="Cancel a job or Warble that is queued or waiting for an idle node: it is "
        "never sent to a Pi. One already handed to an agent (agents cannot stop a job) or "
        "finished is refused (HTTP 409).",
    )
    cancel.add_argument("id", type=int, help="the job's (the Warble's) id")
    cancel.set_defaults(run=cli_ops.job_cancel)


def _warble_server_commands(warble_commands: Any, common: argparse.ArgumentParser) -> None:
    submit = warble_commands.add_parser(
        "submit", parents=[common], help="send a Warble to the cluster and wait for its result"
    )
    submit.add_argument("file", help="file holding the Warble, or - for standard input")
    submit.add_argument("--user", default=os.environ.get("USER") or "operator")
    submit.add_argument("--no-wait", dest="wait", action="store_false", help="just queue it")
    submit.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (120)")
    submit.set_defaults(run=cli_ops.warble_submit)
    results = warble_commands.add_parser(
        "results", parents=[common], help="newest Warbles, one Warble, or the leaderboard"
    )
    results.add_argument("id", type=int, nargs="?", help="one Warble's id")
    results.add_argument("--limit", type=int, default=20)
    results.add_argument("--leaderboard", action="store_true", help="the pi-digits leaderboard")
    results.set_defaults(run=cli_ops.warble_results)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bramble",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _connection()
    _server_commands(commands, common)
    warble = commands.add_parser("warble", help="the Warble language", description="Warbles")
    warble_commands = warble.add_subparsers(dest="warble_command", required=True, metavar="ACTION")
    _warble_server_commands(warble_commands, common)
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
    try:
        client = Client(settings(args.server, args.token_file, args.config))
        code: int = args.run(client, args, sys.stdout)
    except CliError as exc:
        print(f"bramble: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
