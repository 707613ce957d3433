"""``bramble-model``: check a cluster model, list its Pis, or fill a MAC file for rendering."""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

from bramble.model.cluster import load_cluster
from bramble.model.errors import ModelError
from bramble.model.macfile import write_mac_file
from bramble.model.schema import MacEntry


def synthetic_entries(cluster_name: str, bank_count: int, bank_size: int) -> list[MacEntry]:
    """A deterministic, Pi 3B+-consistent MAC and serial for every slot (for rendering tests).

    The serial is derived from a hash of cluster, bank and slot; the MAC carries its low three
    bytes behind b8:27:eb as on a real Pi 3B+.
    """
    entries = []
    used: set[str] = set()
    for bank in range(1, bank_count + 1):
        for slot in range(1, bank_size + 1):
            for attempt in range(64):  # a 24-bit suffix can collide; try the next hash
                seed = f"{cluster_name}/{bank}/{slot}/{attempt}".encode()
                serial = hashlib.sha256(seed).hexdigest()[:8]
                if serial[2:] not in used:
                    break
            used.add(serial[2:])
            mac = "b8:27:eb:" + ":".join(serial[i : i + 2] for i in (2, 4, 6))
            entries.append(MacEntry(bank=bank, slot=slot, mac=mac, serial=serial))
    return entries


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bramble-model", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate cluster.yml and macs.yml; exit 1 on problems")
    check.add_argument("inventory", type=Path, help="inventory folder or its cluster.yml")
    pis = sub.add_parser("pis", help="list every Pi: name, bank, slot, address, MAC, serial")
    pis.add_argument("inventory", type=Path)
    fake = sub.add_parser(
        "synthetic-macs",
        help="write a MAC file with made-up Pi 3B+ MACs for every slot (for rendering tests)",
    )
    fake.add_argument("inventory", type=Path)
    fake.add_argument("--force", action="store_true", help="replace existing entries")
    args = parser.parse_args(argv)
    try:
        cluster = load_cluster(args.inventory)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        for problem in cluster.problems:
            print(f"error: {problem}", file=sys.stderr)
        if cluster.problems:
            return 1
        harvested = sum(1 for pi in cluster.pis if pi.mac)
        print(
            f"{cluster.model_file}: cluster {cluster.model.cluster.name} is valid: "
            f"{cluster.model.banks.count} bank(s) of {cluster.model.banks.size}, "
            f"{len(cluster.pis)} Pis, {harvested} harvested"
        )
        return 0
    if args.command == "pis":
        for pi in cluster.pis:
            print(f"{pi.name}\t{pi.bank}\t{pi.slot}\t{pi.ip}\t{pi.mac or '-'}\t{pi.serial or '-'}")
        return 0
    if cluster.mac_entries and not args.force:
        print(
            f"error: {cluster.mac_file} already holds {len(cluster.mac_entries)} entries; "
            "pass --force to replace them",
            file=sys.stderr,
        )
        return 1
    banks = cluster.model.banks
    entries = synthetic_entries(cluster.model.cluster.name, banks.count, banks.size)
    changed = write_mac_file(cluster.mac_file, entries)
    print(f"{cluster.mac_file}: {len(entries)} entries{'' if changed else ' (unchanged)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
