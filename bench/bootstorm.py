"""Boot storm: a bank of simulated Pi 3B+ ROMs powered at once against a real dnsmasq.

Figure: boots completed out of a bank (42) over --reps power-ons, and the time per bank,
with dnsmasq configured by the dhcp_tftp role (dhcp-reply-delay, tftp-max sized from the
power budget). Baseline, measured in the same run: the same role config with dnsmasq's
defaults for those two settings (no reply delay, tftp-max 50), once with the ROM's fast-reply
quirk modelled and once without it (load alone). Also: the largest burst (42, 84, 126, 168)
that boots 100%, and a bank's time against the line-rate floor of the same veth link.

Every Pi is ``python -m bramble.sim.pirom`` in its own network namespace (``ip netns
exec``), started beforehand and powered on together through its stdin. Needs root, dnsmasq
and curl; everything it creates lives in ``brt-*`` namespaces and is removed at the end.

    sudo .venv/bin/python bench/bootstorm.py            # 20 repetitions, real file sizes
    sudo .venv/bin/python bench/bootstorm.py --reps 3 --bursts 42,84 --sizes small
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bramble.labnet import LabNet, Node
from bramble.sim import bootserver
from bramble.sim.bootserver import Dnsmasq, ModelPi, Reservation
from bramble.sim.pirom import BootOutcome, cli_argv

REPO = Path(__file__).resolve().parent.parent
BANK_SIZE = 42


@dataclass
class StormResult:
    """One power-on of a group of Pis."""

    pis: int
    booted: int
    seconds: float
    failures: list[str] = field(default_factory=list)
    retransmits: int = 0
    offer_delays: list[float] = field(default_factory=list)


def storm(
    lab: LabNet,
    nodes: list[Node],
    reservations: list[Reservation],
    *,
    quirk_window: float,
    timeout: float = 900.0,
) -> StormResult:
    """Start one simulator per Pi, wait until all are ready, power them on together."""
    processes = []
    for node, pi in zip(nodes, reservations, strict=True):
        argv = cli_argv(
            node.interface,
            pi.mac,
            pi.serial,
            "--offer-quirk-window",
            str(quirk_window),
            "--wait-for-power",
        )
        processes.append(
            lab.popen(
                node.netns,
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
    try:
        for process in processes:  # each prints "ready" once it is waiting for power
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("a simulated Pi did not start")
        start = time.monotonic()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("\n")
            process.stdin.flush()
        outcomes = []
        for process in processes:
            out, _ = process.communicate(timeout=timeout)
            outcomes.append(BootOutcome.from_json(out.strip().splitlines()[-1]))
        seconds = time.monotonic() - start
    finally:
        for process in processes:
            lab.stop(process)
    return StormResult(
        pis=len(nodes),
        booted=sum(o.booted for o in outcomes),
        seconds=seconds,
        failures=[_failure_kind(o.failure) for o in outcomes if not o.booted and o.failure],
        retransmits=sum(s.retransmits for o in outcomes for s in o.steps),
        offer_delays=[d for o in outcomes for d in o.offer_delays],
    )


def _failure_kind(text: str) -> str:
    """A failure without the Pi-specific parts (serials, addresses, times), for counting."""
    text = re.sub(r"\b[0-9a-f]{8}/", "<serial>/", text)
    text = re.sub(r"\b\d+\.\d+\.\d+\.\d+\b", "<ip>", text)
    text = re.sub(r"\b\d+ ms\b", "<n> ms", text)
    return re.sub(r"\b\d+ bytes\b", "<n> bytes", text)[:400]


def line_rate(
    lab: LabNet, nodes: list[Node], reservations: list[Reservation], head: str
) -> dict[str, float]:
    """TFTP over the same veth link with curl (C, 512-byte blocks, no options).

    One stream, and one stream from each Pi of a bank at once (the link's aggregate at
    512-byte lock-step on this machine).
    """
    for node, pi in zip(nodes, reservations, strict=True):
        prefix = 16
        subprocess.run(
            ["ip", "-n", node.netns, "addr", "replace", f"{pi.ip}/{prefix}", "dev", node.interface],
            check=True,
            capture_output=True,
        )

    def fetch(node: Node, pi: Reservation) -> subprocess.Popen[Any]:
        return lab.popen(
            node.netns,
            [
                "curl",
                "--silent",
                "--show-error",
                "--tftp-no-options",
                "--output",
                "/dev/null",
                "--write-out",
                "%{size_download}\n",
                f"tftp://{head}/{pi.serial}/kernel8.img",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )

    start = time.monotonic()
    one = fetch(nodes[0], reservations[0])
    size = int((one.communicate(timeout=300)[0] or "0").strip() or 0)
    single = size / (time.monotonic() - start)
    start = time.monotonic()
    many = [fetch(n, p) for n, p in zip(nodes, reservations, strict=True)]
    total = sum(int((p.communicate(timeout=600)[0] or "0").strip() or 0) for p in many)
    aggregate = total / (time.monotonic() - start)
    return {"single_bps": single, "aggregate_bps": aggregate, "file_bytes": float(size)}


def run_config(
    lab: LabNet,
    *,
    head: Node,
    conf: Path,
    log: Path,
    groups: list[tuple[str, int, int, float]],
    nodes: list[Node],
    reservations: list[Reservation],
) -> dict[str, list[StormResult]]:
    """Start dnsmasq with ``conf``; for each (label, size, reps, quirk) power on ``size`` Pis."""
    results: dict[str, list[StormResult]] = {}
    with Dnsmasq(lab, head, conf, log):
        for label, size, reps, quirk in groups:
            for rep in range(reps):
                result = storm(lab, nodes[:size], reservations[:size], quirk_window=quirk)
                results.setdefault(label, []).append(result)
                print(
                    f"  {label} #{rep + 1}: {result.booted}/{result.pis} booted in "
                    f"{result.seconds:.1f} s, {result.retransmits} TFTP retransmits"
                    + (f"; {Counter(result.failures).most_common(2)}" if result.failures else ""),
                    flush=True,
                )
    return results


def summary(label: str, results: list[StormResult]) -> dict[str, Any]:
    booted = sum(r.booted for r in results)
    total = sum(r.pis for r in results)
    times = [r.seconds for r in results]
    failures = Counter(f for r in results for f in r.failures)
    delays = [d for r in results for d in r.offer_delays]
    return {
        "label": label,
        "runs": len(results),
        "booted": booted,
        "total": total,
        "worst_run": min(r.booted for r in results),
        "median_s": statistics.median(times),
        "max_s": max(times),
        "offer_delay_median_s": statistics.median(delays) if delays else None,
        "failures": failures.most_common(3),
    }


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=20, help="power-ons of one bank per config")
    parser.add_argument("--bank", type=int, default=BANK_SIZE)
    parser.add_argument("--bursts", default="42,84,126,168", help="group sizes to try")
    parser.add_argument("--burst-reps", type=int, default=1)
    parser.add_argument("--quirk-reps", type=int, default=2, help="baseline runs with the quirk")
    parser.add_argument("--quirk-window", type=float, default=0.5)
    parser.add_argument("--sizes", choices=["real", "small"], default="real")
    parser.add_argument("--power-budget", type=int, default=168)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    return parser.parse_args(argv)


def _prepare(
    args: argparse.Namespace, work: Path, count: int
) -> tuple[list[Reservation], Path, Path]:
    """Inventory, boot files and the two dnsmasq configs, both rendered by the role."""
    sizes = bootserver.REAL_SIZES if args.sizes == "real" else bootserver.SMALL_SIZES
    model_pis = [
        ModelPi(bank=1 + i // BANK_SIZE, slot=1 + i % BANK_SIZE, serial=f"5a{i + 1:06x}")
        for i in range(count)
    ]
    reservations = bootserver.write_inventory(
        work / "inventory",
        model_pis,
        bank_count=-(-count // BANK_SIZE),
        bank_size=BANK_SIZE,
        power_budget=args.power_budget,
    )
    bootserver.make_boot_files(work / "boot", sizes)
    bootcode = bootserver._pattern(b"bc", sizes["bootcode.bin"])
    (work / "boot" / "bootcode.bin").write_bytes(bootcode)
    confs = []
    common = {"dhcp_tftp_boot_dir": str(work / "boot"), "dhcp_tftp_dns": False}
    # the baseline: the same role, with dnsmasq's own defaults for the two settings that matter
    defaults = {"dhcp_tftp_reply_delay": 0, "dhcp_tftp_max_transfers": 50}
    for name, extra in (("role", common), ("default", {**common, **defaults})):
        (work / name).mkdir()
        conf, _ = bootserver.role_conf(
            REPO, work / name, interface="eth0", extra_vars=extra, inventory=work / "inventory"
        )
        text = conf.read_text(encoding="utf-8")
        lines = [x for x in text.splitlines() if x.startswith(("tftp-max", "dhcp-reply"))]
        print(f"{name} config: {lines}", flush=True)
        confs.append(conf)
    return reservations, confs[0], confs[1]


def _measure(
    args: argparse.Namespace, work: Path, reservations: list[Reservation], confs: tuple[Path, Path]
) -> tuple[dict[str, list[StormResult]], dict[str, list[StormResult]], dict[str, float]]:
    bursts = [b for b in _bursts(args) if b != args.bank]
    with LabNet() as lab:
        head = lab.add_head("10.42.0.1/16")
        nodes = lab.add_pis([r.mac for r in reservations])
        print("role config (dhcp_tftp defaults):", flush=True)
        role = run_config(
            lab,
            head=head,
            conf=confs[0],
            log=work / "role.log",
            groups=[("bank", args.bank, args.reps, args.quirk_window)]
            + [(f"burst {b}", b, args.burst_reps, args.quirk_window) for b in bursts],
            nodes=nodes,
            reservations=reservations,
        )
        print("baseline (dnsmasq defaults: no reply delay, tftp-max 50):", flush=True)
        base = run_config(
            lab,
            head=head,
            conf=confs[1],
            log=work / "default.log",
            groups=[
                ("bank, ROM quirk", args.bank, args.quirk_reps, args.quirk_window),
                ("bank, no quirk", args.bank, args.reps, 0.0),
            ]
            + [(f"burst {b}", b, args.burst_reps, 0.0) for b in bursts],
            nodes=nodes,
            reservations=reservations,
        )
        with Dnsmasq(lab, head, confs[0], work / "line.log"):
            rate = line_rate(lab, nodes[: args.bank], reservations[: args.bank], "10.42.0.1")
    return role, base, rate


def _bursts(args: argparse.Namespace) -> list[int]:
    return sorted({int(b) for b in args.bursts.split(",") if b})


def _report(
    args: argparse.Namespace,
    role: dict[str, list[StormResult]],
    base: dict[str, list[StormResult]],
    rate: dict[str, float],
    per_pi: int,
) -> dict[str, Any]:
    bursts = _bursts(args)
    role_bank = summary("role", role["bank"])
    base_quirk = summary("default, ROM quirk", base["bank, ROM quirk"])
    base_plain = summary("default, no quirk", base["bank, no quirk"])

    def booted(results: dict[str, list[StormResult]], bank: str) -> dict[int, list[int]]:
        return {
            size: [r.booted for r in results[bank if size == args.bank else f"burst {size}"]]
            for size in bursts
        }

    def largest(by_size: dict[int, list[int]]) -> int:
        return max((s for s, runs in by_size.items() if all(b == s for b in runs)), default=0)

    bursts_role, bursts_default = booted(role, "bank"), booted(base, "bank, no quirk")
    bank_bytes = args.bank * per_pi
    floor = bank_bytes / rate["aggregate_bps"]
    print(f"\n== boot storm: banks of {args.bank}, {args.reps} power-ons per config")
    for item in (role_bank, base_quirk, base_plain):
        print(
            f"{item['label']:<20} booted {item['booted']}/{item['total']} "
            f"({100 * item['booted'] / item['total']:.1f}%), worst run "
            f"{item['worst_run']}/{args.bank}; bank time median {item['median_s']:.1f} s, "
            f"max {item['max_s']:.1f} s; OFFER after {item['offer_delay_median_s']} s (median)"
            + (f"; failures {item['failures']}" if item["failures"] else "")
        )
    quirk_ratio = (
        "inf" if not base_quirk["booted"] else f"{role_bank['booted'] / base_quirk['booted']:.2f}"
    )
    print(
        f"ratio role/baseline booted: {role_bank['booted']}/{base_quirk['booted']} with the "
        f"ROM quirk ({quirk_ratio}), {role_bank['booted']}/{base_plain['booted']} without it; "
        f"bank time ratio role/baseline {role_bank['median_s'] / base_plain['median_s']:.2f}"
    )
    print(
        f"largest burst with 100% boots: role {largest(bursts_role)}, default "
        f"{largest(bursts_default)} (tried {bursts}); booted per burst: role {bursts_role}, "
        f"default {bursts_default}"
    )
    print(
        f"line rate on the veth (curl, 512-byte TFTP): one stream "
        f"{rate['single_bps'] / 1e6:.1f} MB/s, {args.bank} streams "
        f"{rate['aggregate_bps'] / 1e6:.1f} MB/s; floor for a bank ({bank_bytes / 1e6:.0f} MB) "
        f"{floor:.1f} s; role bank median {role_bank['median_s']:.1f} s = "
        f"{role_bank['median_s'] / floor:.2f} x floor"
    )
    return {
        "pis_per_bank": args.bank,
        "bytes_per_pi": per_pi,
        "role": role_bank,
        "baseline_quirk": base_quirk,
        "baseline_no_quirk": base_plain,
        "bursts_role": bursts_role,
        "bursts_default": bursts_default,
        "largest_burst_role": largest(bursts_role),
        "largest_burst_default": largest(bursts_default),
        "line_rate": rate,
        "floor_s": floor,
    }


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    # Stop cleanly (namespaces and dnsmasq removed) on SIGTERM and SIGINT, even in background.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.geteuid() != 0 or not shutil.which("dnsmasq") or not shutil.which("curl"):
        print("bootstorm: needs root, dnsmasq (apt dnsmasq-base) and curl", file=sys.stderr)
        return 2
    count = max([args.bank, *_bursts(args)])
    sizes = bootserver.REAL_SIZES if args.sizes == "real" else bootserver.SMALL_SIZES
    per_pi = sum(sizes.values()) + 3 * sizes["config.txt"]  # config.txt is read four times
    work = Path(tempfile.mkdtemp(prefix="bramble-bootstorm-"))
    try:
        reservations, role_conf, base_conf = _prepare(args, work, count)
        print(
            f"bootstorm: {count} Pi namespaces, {per_pi / 1e6:.2f} MB of boot files per Pi, "
            f"{args.reps} repetitions of a bank of {args.bank}",
            flush=True,
        )
        role, base, rate = _measure(args, work, reservations, (role_conf, base_conf))
        figures = _report(args, role, base, rate, per_pi)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
