# Copyright: bramble contributors
# Apache License 2.0 (see LICENSE)
"""bramble_progress: per-bank progress instead of a wall of per-host lines."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from ansible.plugins.callback.default import CallbackModule as DefaultCallback

DOCUMENTATION = r"""
name: bramble_progress
type: stdout
short_description: per-bank progress of site.yml and bank.yml, then the cluster report
description:
  - One line per task (hosts ok, changed, failed, skipped, and banks done) instead of one per
    host; failures and unreachable hosts are printed in full as the default callback does.
  - Per-bank stages are read from task results only, nothing else is queried.
  - C(powered) comes from C(bank_power) results with state on or cycle (banks in
    C(failed_banks) are not powered).
  - C(DHCP seen) comes from C(mac_harvest) (Pis in C(new), C(unchanged) and C(moved)) and from
    C(bank_power) with C(wait_for=dhcp_seen) (Pis with outcome C(booted)).
  - C(booted) comes from C(bank_power) waits (outcome C(booted)), C(registered) from
    C(bank_power) with C(wait_for=agent_registered). A bank's size is the number of hosts in
    its C(bankNN) group.
  - The per-bank table is printed at the end of each play that touched a bank; the messages of
    C(debug) tasks tagged C(cluster_report), C(bank_report) or C(lab_report) are printed at
    the end, as the cluster report, before the recap.
  - With -v or more, the default callback's output is used unchanged.
extends_documentation_fragment:
  - default_callback
requirements:
  - set as the stdout callback (ANSIBLE_STDOUT_CALLBACK=bramble_progress or ansible.cfg)
"""

BANK_GROUP = re.compile(r"^bank(\d+)$")
REPORT_TAGS = {"cluster_report", "bank_report", "lab_report"}
STAGES = ("powered", "dhcp_seen", "booted", "registered")


@dataclass
class Bank:
    """What the run has shown about one bank so far."""

    number: int
    size: int = 0
    powered: bool | None = None
    dhcp_seen: set[int] = field(default_factory=set)
    booted: set[int] = field(default_factory=set)
    registered: set[int] = field(default_factory=set)


@dataclass
class Task:
    """Counts of the task being run."""

    name: str
    started: float
    counts: dict[str, int] = field(default_factory=dict)
    banks: set[int] = field(default_factory=set)


def _slots(rows: Any, bank: int | None = None) -> dict[int, set[int]]:
    """Slots per bank from a list of result rows carrying ``bank`` and ``slot``."""
    found: dict[int, set[int]] = {}
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("slot") is not None:
            number = int(row.get("bank", bank or 0))
            found.setdefault(number, set()).add(int(row["slot"]))
    return found


class CallbackModule(DefaultCallback):  # type: ignore[misc]
    """Per-bank progress (see DOCUMENTATION)."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "bramble_progress"

    def __init__(self) -> None:
        super().__init__()
        self.banks: dict[int, Bank] = {}
        self.task: Task | None = None
        self.report: list[str] = []
        self.touched = False

    @property
    def quiet(self) -> bool:
        """Aggregate only at verbosity 0; -v and more get the default output."""
        return int(self._display.verbosity) == 0

    # -- helpers --

    def bank_of(self, host: Any) -> int | None:
        for group in host.get_groups():
            match = BANK_GROUP.match(group.name)
            if match:
                return int(match.group(1))
        return None

    def bank(self, number: int) -> Bank:
        return self.banks.setdefault(number, Bank(number))

    def finish_task(self) -> None:
        task, self.task = self.task, None
        if task is None or not self.quiet or not task.counts:
            return
        parts = [f"{n} {k}" for k, n in sorted(task.counts.items())]
        if task.banks:
            parts.append(f"{len(task.banks)} bank(s)")
        mark = "✗" if task.counts.get("failed") or task.counts.get("unreachable") else "✓"
        took = time.monotonic() - task.started
        self._display.display(f"{mark} {task.name}: {', '.join(parts)} ({took:.1f} s)")

    def count(self, result: Any, outcome: str) -> None:
        if self.task is None:
            return
        self.task.counts[outcome] = self.task.counts.get(outcome, 0) + 1
        number = self.bank_of(result._host)
        if number is not None:
            self.task.banks.add(number)

    def learn(self, result: Any) -> None:
        """Update the bank stages and the report from one result."""
        task, data = result._task, result._result
        action = str(task.action).rsplit(".", 1)[-1]
        args = task.args or {}
        if action == "bank_power":
            self._learn_power(args, data)
        elif action == "mac_harvest":
            for key in ("new", "unchanged", "moved"):
                for number, slots in _slots(data.get(key)).items():
                    self.bank(number).dhcp_seen |= slots
                    self.touched = True
        elif action == "debug" and REPORT_TAGS & set(task.tags or ()) and "msg" in data:
            message = data["msg"]
            lines = message if isinstance(message, list) else str(message).splitlines()
            self.report.extend(str(line) for line in lines)

    def _learn_power(self, args: dict[str, Any], data: dict[str, Any]) -> None:
        state, wait = str(args.get("state", "on")), str(args.get("wait_for", "none"))
        rows = data.get("pis") or []
        banks = {int(b) for b in args.get("banks") or [] if str(b).isdigit()}
        banks |= set(_slots(rows))
        failed = {int(b) for b in data.get("failed_banks") or []}
        if data.get("failed") or data.get("skipped"):
            return
        self.touched = True
        for number in banks:
            entry = self.bank(number)
            entry.powered = state != "off" and number not in failed
        booted = _slots([r for r in rows if isinstance(r, dict) and r.get("outcome") == "booted"])
        if wait == "none":
            return
        for number, slots in booted.items():
            entry = self.bank(number)
            entry.booted |= slots
            entry.dhcp_seen |= slots
            if wait == "agent_registered":
                entry.registered |= slots

    def bank_table(self) -> list[str]:
        lines = [
            f"{'bank':>4}  {'Pis':>3}  {'powered':<7}  {'DHCP seen':>9}  {'booted':>9}  "
            f"{'registered':>10}"
        ]
        for number in sorted(self.banks):
            b = self.banks[number]
            size = b.size or max([len(b.dhcp_seen), len(b.booted), 0])
            powered = {None: "-", True: "yes", False: "NO"}[b.powered]

            def part(seen: set[int], size: int = size) -> str:
                return f"{len(seen)}/{size}" if seen else "-"

            lines.append(
                f"{number:>4}  {size:>3}  {powered:<7}  {part(b.dhcp_seen):>9}  "
                f"{part(b.booted):>9}  {part(b.registered):>10}"
            )
        return lines

    # -- Ansible events --

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self.finish_task()
        manager = play.get_variable_manager()
        inventory = getattr(manager, "_inventory", None)
        if inventory is not None:
            for name, group in inventory.groups.items():
                match = BANK_GROUP.match(name)
                if match:
                    self.bank(int(match.group(1))).size = len(group.get_hosts())
        if self.quiet:
            name = play.get_name().strip()
            self._display.banner(f"PLAY [{name}]")
        else:
            super().v2_playbook_on_play_start(play)

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self.finish_task()
        self.task = Task(task.get_name().strip(), time.monotonic())
        if not self.quiet:
            super().v2_playbook_on_task_start(task, is_conditional)

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self.v2_playbook_on_task_start(task, False)

    def v2_runner_on_ok(self, result: Any) -> None:
        self.learn(result)
        changed = bool(result._result.get("changed"))
        self.count(result, "changed" if changed else "ok")
        if not self.quiet:
            super().v2_runner_on_ok(result)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self.count(result, "skipped")
        if not self.quiet:
            super().v2_runner_on_skipped(result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self.count(result, "ignored" if ignore_errors else "failed")
        super().v2_runner_on_failed(result, ignore_errors)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self.count(result, "unreachable")
        super().v2_runner_on_unreachable(result)

    def v2_runner_item_on_ok(self, result: Any) -> None:
        if not self.quiet:
            super().v2_runner_item_on_ok(result)

    def v2_runner_item_on_skipped(self, result: Any) -> None:
        if not self.quiet:
            super().v2_runner_item_on_skipped(result)

    def v2_runner_retry(self, result: Any) -> None:
        if not self.quiet:
            super().v2_runner_retry(result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self.finish_task()
        if self.touched:
            self._display.banner("BANKS")
            for line in self.bank_table():
                self._display.display(line)
        if self.report:
            self._display.banner("CLUSTER REPORT")
            for line in self.report:
                self._display.display(line)
        super().v2_playbook_on_stats(stats)
