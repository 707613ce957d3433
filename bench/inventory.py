"""Inventory scaling: the 1,050-Pi reference cluster against a 105-Pi cut of it, in one run.

Figures (each at 1,050 Pis, at the 105-Pi baseline, and their ratio; goal: ratio <= 12):

- ``ansible-inventory -i <inventory> --list``: wall clock and CPU time, median of
  ``--repeat`` runs, and the size of what it prints;
- ``ansible-playbook -f 20`` of a no-op play over all hosts (connection local, one
  ``ansible.builtin.debug`` task per host): wall clock and CPU time, median of ``--repeat``
  runs;
- the plugin's own work, in-process: ``bramble.model.load_cluster`` (reading and checking
  the model) and the plugin's populate step into a fresh ``InventoryData``; CPU time, best
  of 10 timeit repeats.

The baseline is built in a temporary folder: bigpi's cluster.yml cut to 5 banks (power
groups and switch mappings trimmed to those banks), its macs.yml written by
``bramble-model synthetic-macs`` and checked by ``bramble-model check``.

A missed goal is reported, not an error: the exit status is non-zero only when a step fails.
Results and how to read them: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from ansible.release import __version__ as ANSIBLE_VERSION

from bramble.model import Cluster, load_cluster

ROOT = Path(__file__).resolve().parent.parent
LARGE_INVENTORY = ROOT / "inventory" / "bigpi"
BASELINE_BANKS = 5
GOAL_RATIO = 12.0
FORKS = 20
TIMEIT_REPEATS = 10

PLAYBOOK = """\
- name: No-op over every host
  hosts: all
  gather_facts: false
  connection: local
  tasks:
    - name: Print the host name
      ansible.builtin.debug:
        msg: "{{ inventory_hostname }}"
"""


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


@dataclass
class Size:
    """One of the two inventories measured."""

    label: str
    inventory: Path
    pis: int = 0
    hosts: int = 0


@dataclass
class Figure:
    """One measured quantity at both sizes."""

    name: str
    unit: str
    large: float
    baseline: float
    method: str
    goal: bool = True  # False: shown for explanation, the ratio goal does not apply
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.large / self.baseline if self.baseline else float("inf")

    @property
    def goal_met(self) -> bool | None:
        return self.ratio <= GOAL_RATIO if self.goal else None


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def tool(name: str) -> str:
    """The venv's copy of a command (beside this Python) if there is one, else the PATH's."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"{name} not found beside {sys.executable} nor on PATH; run `make venv`")
    return found


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def run(argv: Sequence[str], timeout: float, out: Path) -> tuple[float, float]:
    """Run a command from the repository root with stdout into ``out``.

    Returns wall seconds and CPU seconds (user + system of the command and every process
    it waited for, such as ansible-playbook's forks): on a busy machine wall clock includes
    waiting for a CPU, CPU time does not.

    Output goes to a file, not a pipe kept in memory: ``--list`` on the big inventory prints
    more than a gigabyte.
    """
    err = out.with_suffix(".stderr")
    with out.open("wb") as stdout, err.open("wb") as stderr:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        try:
            code = subprocess.run(
                argv,
                check=False,
                cwd=ROOT,
                env=environment(),
                stdout=stdout,
                stderr=stderr,
                timeout=timeout,
            ).returncode
        except subprocess.TimeoutExpired:
            raise BenchError(f"{' '.join(argv)}: no result after {timeout:.0f} s") from None
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if code != 0:
        message = err.read_text(errors="replace").strip()[-2000:]
        raise BenchError(f"{' '.join(argv)} exited {code}: {message}")
    return elapsed, cpu


def scaled_model(data: dict[str, Any], banks: int) -> dict[str, Any]:
    """The cluster model ``data`` cut to its first ``banks`` banks, otherwise unchanged."""
    model = copy.deepcopy(data)
    model["banks"]["count"] = banks
    groups = []
    for group in model["power"]["groups"]:
        kept = [bank for bank in group["banks"] if bank <= banks]
        if kept:
            groups.append({**group, "banks": kept})
    model["power"]["groups"] = groups
    switches = []
    for switch in model.get("switches", []):
        mappings = [m for m in switch.get("banks", []) if m["bank"] <= banks]
        if mappings:
            switches.append({**switch, "banks": mappings})
    model["switches"] = switches
    return model


def build_baseline(workdir: Path, timeout: float) -> Path:
    """Write the 105-Pi inventory into ``workdir`` and check both inventories with bramble-model."""
    source = yaml.safe_load((LARGE_INVENTORY / "cluster.yml").read_text(encoding="utf-8"))
    inventory = workdir / "baseline"
    inventory.mkdir()
    header = (
        f"# bench/inventory.py: {LARGE_INVENTORY.name}'s cluster.yml cut to "
        f"{BASELINE_BANKS} banks\n"
    )
    text = header + yaml.safe_dump(scaled_model(source, BASELINE_BANKS), sort_keys=False)
    (inventory / "cluster.yml").write_text(text, encoding="utf-8")
    model = tool("bramble-model")
    out = workdir / "bramble-model.out"
    run([model, "synthetic-macs", str(inventory)], timeout, out)
    for checked in (LARGE_INVENTORY, inventory):
        run([model, "check", str(checked)], timeout, out)
        log(out.read_text(encoding="utf-8").strip())
    return inventory


RECAP = re.compile(r"^\S+\s+: ok=1\s+changed=0\s+unreachable=0\s+failed=0\s", re.MULTILINE)


def timed_runs(
    name: str,
    argv_of: Callable[[Size], list[str]],
    sizes: Sequence[Size],
    workdir: Path,
    args: argparse.Namespace,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, int]]:
    """Wall seconds of ``--repeat`` runs per size, interleaved so that drift hits both alike;
    their CPU seconds, and the size of what each size's command printed."""
    samples: dict[str, list[float]] = {size.label: [] for size in sizes}
    cpu_samples: dict[str, list[float]] = {size.label: [] for size in sizes}
    printed: dict[str, int] = {}
    out = workdir / f"{name}.out"
    run(argv_of(sizes[-1]), args.timeout, out)  # warm-up: byte-compiled caches, page cache
    for index in range(args.repeat):
        for size in sizes:
            seconds, cpu = run(argv_of(size), args.timeout, out)
            samples[size.label].append(seconds)
            cpu_samples[size.label].append(cpu)
            printed[size.label] = out.stat().st_size
            if name == "play":
                ok = len(RECAP.findall(out.read_text(encoding="utf-8", errors="replace")))
                if ok != size.hosts:
                    raise BenchError(
                        f"the no-op play on {size.inventory} ran on {ok} hosts of {size.hosts}"
                    )
            out.unlink()
            log(
                f"{name} {size.label} run {index + 1}/{args.repeat}: {seconds:.2f} s "
                f"({cpu:.2f} s CPU), load {os.getloadavg()[0]:.1f}"
            )
    return samples, cpu_samples, printed


def subprocess_figures(
    workdir: Path, large: Size, baseline: Size, args: argparse.Namespace
) -> list[Figure]:
    """ansible-inventory --list and the no-op play, as a user runs them."""
    sizes = (large, baseline)
    inventory_cmd = tool("ansible-inventory")
    samples, cpu_samples, printed = timed_runs(
        "inventory",
        lambda s: [inventory_cmd, "-i", str(s.inventory), "--list"],
        sizes,
        workdir,
        args,
    )
    playbook = workdir / "noop.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    playbook_cmd = tool("ansible-playbook")
    play_samples, play_cpu, _ = timed_runs(
        "play",
        lambda s: [playbook_cmd, "-i", str(s.inventory), "-f", str(FORKS), str(playbook)],
        sizes,
        workdir,
        args,
    )
    method = f"wall clock, median of {args.repeat} runs"
    cpu_method = f"CPU time (user + system), median of {args.repeat} runs"
    return [
        Figure(
            "ansible-inventory --list",
            "s",
            statistics.median(samples[large.label]),
            statistics.median(samples[baseline.label]),
            method,
            samples=samples,
        ),
        Figure(
            "ansible-inventory --list, CPU",
            "s",
            statistics.median(cpu_samples[large.label]),
            statistics.median(cpu_samples[baseline.label]),
            cpu_method,
            samples=cpu_samples,
        ),
        Figure(
            "ansible-inventory --list output",
            "MB",
            printed[large.label] / 1e6,
            printed[baseline.label] / 1e6,
            "bytes printed",
            goal=False,
        ),
        Figure(
            f"no-op play, -f {FORKS}",
            "s",
            statistics.median(play_samples[large.label]),
            statistics.median(play_samples[baseline.label]),
            method,
            samples=play_samples,
        ),
        Figure(
            f"no-op play, -f {FORKS}, CPU",
            "s",
            statistics.median(play_cpu[large.label]),
            statistics.median(play_cpu[baseline.label]),
            cpu_method,
            samples=play_cpu,
        ),
    ]


def best_of(func: Callable[[], object]) -> tuple[float, list[float]]:
    """Best CPU seconds per call over TIMEIT_REPEATS timeit repeats, and every repeat's figure.

    Timed with this process's CPU clock: on a shared machine, waiting for a CPU is not work.
    """
    timer = timeit.Timer(func, timer=time.process_time)
    number, _ = timer.autorange()
    per_call = [total / number for total in timer.repeat(TIMEIT_REPEATS, number)]
    return min(per_call), per_call


def in_process_figures(large: Size, baseline: Size) -> list[Figure]:
    """The plugin's two steps, timed in this process: loading the model, populating Ansible.

    ``load_cluster`` is what the plugin's parse costs on its first call in a process (the
    plugin may cache the loaded model after that); the populate step is the rest of it.
    """
    os.environ.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
    # Imported here, not on top: ansible.constants reads ANSIBLE_CONFIG when first imported.
    from ansible.inventory.data import InventoryData  # noqa: PLC0415
    from ansible.parsing.dataloader import DataLoader  # noqa: PLC0415
    from ansible.plugins.loader import inventory_loader  # noqa: PLC0415

    plugin = inventory_loader.get("bramble")
    if plugin is None:
        raise BenchError("ansible found no 'bramble' inventory plugin; check ansible.cfg")

    def populate(cluster: Cluster) -> Any:
        plugin.inventory = InventoryData()
        plugin._populate(cluster)
        return plugin.inventory

    results: dict[str, dict[str, tuple[float, list[float]]]] = {}
    for size in (large, baseline):
        cluster = load_cluster(size.inventory)
        if cluster.problems:
            raise BenchError(f"{size.inventory}: {'; '.join(cluster.problems)}")
        size.pis = len(cluster.pis)
        parsed = InventoryData()
        plugin.parse(parsed, DataLoader(), str(size.inventory / "cluster.yml"), cache=False)
        size.hosts = len(parsed.hosts)
        if len(populate(cluster).hosts) != size.hosts:
            raise BenchError(f"{size.inventory}: populate and parse give different hosts")
        results[size.label] = {
            "load": best_of(partial(load_cluster, size.inventory)),
            "populate": best_of(partial(populate, cluster)),
        }
        log(f"in-process {size.label}: {size.pis} Pis, {size.hosts} hosts")
    method = f"in-process CPU time, best of {TIMEIT_REPEATS} timeit repeats"
    names = {"load": "load_cluster()", "populate": "plugin populate step"}
    return [
        Figure(
            title,
            "ms",
            results[large.label][key][0] * 1e3,
            results[baseline.label][key][0] * 1e3,
            method,
            samples={
                label: [value * 1e3 for value in by_key[key][1]]
                for label, by_key in results.items()
            },
        )
        for key, title in names.items()
    ]


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.machine()
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else platform.machine()


def revision() -> str:
    """The commit measured, ``-dirty`` when the working tree differs from it."""
    try:
        found = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return found.stdout.strip()


def machine() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "ansible_core": ANSIBLE_VERSION,
        "system": f"{platform.system()} {platform.release()}",
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "revision": revision(),
    }


def report(figures: Sequence[Figure], large: Size, baseline: Size) -> str:
    head_large = f"{large.pis:,} Pis"
    head_base = f"{baseline.pis:,} Pis"
    lines = [
        f"{'figure':<34} {head_large:>12} {head_base:>12} {'ratio':>7}  "
        f"goal (ratio <= {GOAL_RATIO:g})",
    ]
    for fig in figures:
        verdict = {True: "met", False: "MISSED", None: "-"}[fig.goal_met]
        lines.append(
            f"{fig.name:<34} {fig.large:>9.2f} {fig.unit:<2} {fig.baseline:>9.2f} {fig.unit:<2}"
            f" {fig.ratio:>7.1f}  {verdict}"
        )
    lines.append(
        f"hosts: {large.hosts:,} against {baseline.hosts:,} "
        f"(head and sound Pi besides the Pis), ratio {large.hosts / baseline.hosts:.2f}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per size of each command (median taken)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds allowed for one command run"
    )
    parser.add_argument(
        "--skip-subprocess",
        action="store_true",
        help="only the in-process figures (seconds instead of many minutes)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    info = machine()
    try:
        with tempfile.TemporaryDirectory(prefix="bramble-bench-") as tmp:
            workdir = Path(tmp)
            large = Size(f"{LARGE_INVENTORY.name}", LARGE_INVENTORY)
            baseline = Size("baseline", build_baseline(workdir, args.timeout))
            figures = in_process_figures(large, baseline)
            if not args.skip_subprocess:
                figures = subprocess_figures(workdir, large, baseline, args) + figures
    except (BenchError, OSError, yaml.YAMLError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    info["load_average_end"] = [round(load, 2) for load in os.getloadavg()]
    if args.json:
        result = {
            "machine": info,
            "repeat": args.repeat,
            "goal_ratio": GOAL_RATIO,
            "sizes": {
                s.label: {"inventory": str(s.inventory), "pis": s.pis, "hosts": s.hosts}
                for s in (large, baseline)
            },
            "figures": [
                {**asdict(f), "ratio": round(f.ratio, 3), "goal_met": f.goal_met} for f in figures
            ],
        }
        print(json.dumps(result, indent=2))
    else:
        print(
            f"machine: {info['nproc']} CPU(s) {info['cpu']}, Python {info['python']}, "
            f"ansible-core {info['ansible_core']}, {info['system']}; revision {info['revision']}; "
            f"1-min load average {info['load_average'][0]} at start, "
            f"{info['load_average_end'][0]} at end"
        )
        print(report(figures, large, baseline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
