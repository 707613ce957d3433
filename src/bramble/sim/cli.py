"""``bramble-sim``: run a power-controller simulator from the command line (lab and manual tests).

    bramble-sim relay --outlets 4 --token-file /run/bramble/relay1.token --port 8081
    bramble-sim synaccess --outlets 5 --user admin --password-file pw --port 2323
    bramble-sim snmp --port 1161 --pdu-outlets 8 --pdu-oid 1.3.6.1.4.1.318.1.1.12.3.3.1.1.4 \
        --poe-ports 24 --fdb b8:27:eb:00:01:01=1 --fdb b8:27:eb:00:01:02=2
    bramble-sim uhubctl --state hubs.json -l 1-1 -p 2 -a off     # behaves like uhubctl

Servers listen on 127.0.0.1 unless ``--host`` names another local (lab namespace) address,
print ``listening on HOST:PORT`` once bound, and run until interrupted. Secrets are read from
files, never from the command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bramble.sim.power import Outlets, ThreadedSim, uhubctl_main


def _secret(path: str | None, default: str) -> str:
    if not path:
        return default
    return Path(path).read_text(encoding="utf-8").strip()


def _on(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()] if text else []


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bramble-sim", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="device", required=True)

    def server(name: str, help_text: str, port: int) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--host", default="127.0.0.1", help="local address to listen on")
        p.add_argument("--port", type=int, default=port, help="port (0: any free port)")
        p.add_argument("--on", default="", help="outlets on at start, e.g. 1,3")
        return p

    relay = server("relay", "Arduino-style HTTP relay board", 0)
    relay.add_argument("--outlets", type=int, default=4)
    relay.add_argument("--token-file", help="file holding the bearer token (default: 'lab')")

    syn = server("synaccess", "Synaccess netBooter telnet PDU", 0)
    syn.add_argument("--outlets", type=int, default=5)
    syn.add_argument("--user", default="admin")
    syn.add_argument("--password-file", help="file holding the password (default: 'admin')")

    snmp = server("snmp", "SNMP agent: PDU outlets, PoE ports, MAC table", 0)
    snmp.add_argument("--community-file", help="file holding the write community ('private')")
    snmp.add_argument("--read-community", default="public")
    snmp.add_argument("--pdu-outlets", type=int, default=0)
    snmp.add_argument("--pdu-oid", default="1.3.6.1.4.1.318.1.1.12.3.3.1.1.4")
    snmp.add_argument("--on-value", type=int, default=1)
    snmp.add_argument("--off-value", type=int, default=2)
    snmp.add_argument("--poe-ports", type=int, default=0)
    snmp.add_argument("--fdb", action="append", default=[], help="MAC=PORT, repeatable")

    hub = sub.add_parser("uhubctl", help="behave like the uhubctl command on a JSON hub state")
    hub.add_argument("--state", required=True, help="JSON state file (see bramble.sim.power)")
    return parser


def build(args: argparse.Namespace) -> ThreadedSim:
    """The simulator the parsed arguments describe (not started)."""
    from bramble.sim.relay import RelayBoardSim  # noqa: PLC0415 - aiohttp only when used
    from bramble.sim.synaccess import SynaccessSim  # noqa: PLC0415

    if args.device == "relay":
        outlets = Outlets(args.outlets, on=_on(args.on))
        return RelayBoardSim(outlets, _secret(args.token_file, "lab"), args.host, args.port)
    if args.device == "synaccess":
        outlets = Outlets(args.outlets, on=_on(args.on))
        password = _secret(args.password_file, "admin")
        return SynaccessSim(outlets, args.user, password, args.host, args.port)
    from bramble.sim.snmpagent import SnmpSim  # noqa: PLC0415 - pysnmp only when used

    sim = SnmpSim(
        args.read_community, _secret(args.community_file, "private"), args.host, args.port
    )
    if args.pdu_outlets:
        sim.add_pdu_outlets(
            Outlets(args.pdu_outlets, on=_on(args.on)),
            args.pdu_oid,
            on_value=args.on_value,
            off_value=args.off_value,
        )
    if args.poe_ports:
        sim.add_poe_ports(Outlets(args.poe_ports, on=_on(args.on)))
    table = {}
    for item in args.fdb:
        mac, _, port = item.partition("=")
        table[mac] = int(port)
    if table:
        sim.set_fdb(table)
    return sim


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if argv[:1] == ["uhubctl"]:
        # everything but --state is uhubctl's own (-l, -p, -a ...)
        args, forwarded = parser.parse_known_args(argv)
        code, output = uhubctl_main([a for a in forwarded if a != "--"], Path(args.state))
        (sys.stdout if code == 0 else sys.stderr).write(output)
        return code
    args = parser.parse_args(argv)
    sim = build(args)
    sim.start()
    try:
        sim.wait_forever(lambda: print(f"listening on {sim.host}:{sim.port}", flush=True))
    finally:
        sim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
