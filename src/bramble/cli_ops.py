"""The operator commands of ``bramble`` (status, bank, power, events, job cancel,
warble submit/results):
each asks the server and prints a table for people, or the server's JSON with ``--json``."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from bramble.cli_client import Client, CliError

BAR = 20
SPINNER = "|/-\\"
NUMBER = re.compile(r"-?\d+(\.\d+)?(%|°C)?|\d+/\d+")


def bar(part: int, whole: int, width: int = BAR) -> str:
    """A text progress bar: ``█████░░░░░``."""
    filled = round(width * part / whole) if whole else 0
    return "█" * filled + "░" * (width - filled)


def _num(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}" if isinstance(value, float) else f"{value}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        out = []
        for cell, width in zip(cells, widths, strict=True):
            text = str(cell)
            numeric = NUMBER.fullmatch(text) is not None
            out.append(text.rjust(width) if numeric else text.ljust(width))
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def _emit(args: argparse.Namespace, data: Any, text: Callable[[], str], out: TextIO) -> None:
    if args.json:
        json.dump(data, out, indent=1, sort_keys=True)
        out.write("\n")
    else:
        out.write(text() + "\n")


def status(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    snap = client.get("/api/v1/cluster")
    data = {k: snap[k] for k in ("cluster", "time", "banks", "slots", "totals", "bank_summary")}

    def text() -> str:
        t = snap["totals"]
        head = (
            f"cluster {snap['cluster']}: {t['up']}/{t['slots']} up  {bar(t['up'], t['slots'])}\n"
            f"  down {t['down']}, booting {t['booting']}, off {t['off']}, "
            f"unharvested {t['unharvested']}, untrusted {t['untrusted']}; "
            f"CPU avg {_num(t['cpu_percent_avg'], '%')}, hottest {_num(t['temp_c_max'], '°C')}"
        )
        rows = [
            [
                f"{r['bank']:02d}",
                f"{r['up']}/{r['slots']}",
                bar(r["up"], r["slots"], 12),
                str(r["down"]),
                str(r["booting"]),
                str(r["off"]),
                str(r["unharvested"]),
                _num(r["cpu_percent_avg"], "%"),
                _num(r["temp_c_max"], "°C"),
            ]
            for r in snap["bank_summary"]
        ]
        headers = ["bank", "up", "", "down", "booting", "off", "unharv.", "CPU avg", "temp max"]
        return head + "\n\n" + table(headers, rows)

    _emit(args, data, text, out)
    return 0


def bank(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    snap = client.get("/api/v1/cluster")
    cells = sorted((c for c in snap["cells"] if c["bank"] == args.number), key=lambda c: c["slot"])
    if not cells:
        raise CliError(f"bank {args.number} is not in the cluster model (banks 1-{snap['banks']})")
    summary = next(r for r in snap["bank_summary"] if r["bank"] == args.number)

    def text() -> str:
        rows = [
            [
                str(c["slot"]),
                c.get("name") or "-",
                c["state"],
                c.get("ip") or "-",
                c.get("mac") or "-",
                _num(c.get("cpu"), "%"),
                _num(c.get("mem"), "%"),
                _num(c.get("temp"), "°C"),
            ]
            for c in cells
        ]
        head = (
            f"bank {args.number:02d}: {summary['up']}/{summary['slots']} up  "
            f"{bar(summary['up'], summary['slots'])}"
        )
        headers = ["slot", "name", "state", "ip", "mac", "CPU", "mem", "temp"]
        return head + "\n\n" + table(headers, rows)

    _emit(args, {"bank": args.number, "summary": summary, "slots": cells}, text, out)
    return 0


def power(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    client.timeout = args.timeout  # switching (a cycle, switches first) takes longer than a read
    answer = client.post("/api/v1/power", {"group": args.group, "action": args.action})

    def text() -> str:
        banks = ", ".join(str(b) for b in answer["banks"]) or "none"
        return f"power group {args.group} {args.action}: {answer['message']} (banks {banks})"

    _emit(args, answer, text, out)
    return 0


def job_cancel(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    job = client.post(f"/api/v1/jobs/{args.id}/cancel", {})
    _emit(args, job, lambda: f"job {job['id']} of {job['user']}: {job['state']}", out)
    return 0


def _event_line(event: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["ts"]))
    return f"{when}  {event['kind']:<11} {event['message']}"


def events(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    recent = client.get(f"/api/v1/events?limit={args.limit}")["events"]
    for event in reversed(recent):
        out.write((json.dumps(event) if args.json else _event_line(event)) + "\n")
    out.flush()
    if not args.follow:
        return 0
    seen = 0
    for kind, data in client.stream("/api/v1/stream"):
        if kind != "log":
            continue
        out.write((json.dumps(data) if args.json else _event_line(data)) + "\n")
        out.flush()
        seen += 1
        if args.count and seen >= args.count:
            break
    return 0


def _warble_text(w: dict[str, Any]) -> str:
    head = f"Warble {w['id']} by {w['user']}: {w['state']}"
    if w.get("node"):
        head += f" on {w['node']}"
    if w.get("digits"):
        head += f", {w['digits']} digits of pi"
    parts = [head]
    if w.get("output"):
        parts.append(w["output"].rstrip("\n"))
    if w.get("error"):
        parts.append(f"error: {w['error']}")
    return "\n".join(parts)


def _read_source(name: str) -> str:
    try:
        data = sys.stdin.buffer.read(1 << 20) if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror}") from None
    return data.decode("utf-8-sig", errors="replace")


def warble_submit(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    job = client.post("/api/v1/warbles", {"user": args.user, "source": _read_source(args.file)})
    if not args.wait:
        _emit(args, job, lambda: f"Warble {job['id']} {job['state']}", out)
        return 0
    deadline = time.monotonic() + args.timeout
    show = sys.stderr.isatty() and not args.json
    for turn in range(100_000):
        found = client.get(f"/api/v1/warbles/{job['id']}")
        if found["state"] not in ("queued", "waiting", "running"):
            break
        if time.monotonic() > deadline:
            raise CliError(f"Warble {job['id']} is still {found['state']} after {args.timeout} s")
        if show:
            sys.stderr.write(f"\r{SPINNER[turn % 4]} Warble {job['id']} {found['state']}   ")
            sys.stderr.flush()
        time.sleep(0.5)
    if show:
        sys.stderr.write("\r" + " " * 40 + "\r")
    _emit(args, found, lambda: _warble_text(found), out)
    return 0 if found["state"] == "done" else 1


def warble_results(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.id is not None:
        one = client.get(f"/api/v1/warbles/{args.id}")
        _emit(args, one, lambda: _warble_text(one), out)
        return 0
    if args.leaderboard:
        board = client.get(f"/api/v1/leaderboard?limit={args.limit}")

        def leaders() -> str:
            rows = [
                [str(r["rank"]), r["user"], str(r["digits"]), str(r["warble"])]
                for r in board["leaderboard"]
            ]
            return table(["#", "user", "digits", "Warble"], rows)

        _emit(args, board, leaders, out)
        return 0
    found = client.get(f"/api/v1/warbles?limit={args.limit}")["warbles"]

    def text() -> str:
        rows = [
            [
                str(w["id"]),
                w["user"],
                w["state"],
                w.get("node") or "-",
                _num(w.get("digits")),
                (w.get("output") or w.get("error") or "").strip().splitlines()[0][:50]
                if (w.get("output") or w.get("error") or "").strip()
                else "",
            ]
            for w in found
        ]
        return table(["id", "user", "state", "node", "digits", "first line"], rows)

    _emit(args, {"warbles": found}, text, out)
    return 0
