#!/usr/bin/python
# Copyright: bramble contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module bank_power: power banks, power groups or slots of a bramble cluster."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.bramble_power import PlanError, Request, Runner, summary

DOCUMENTATION = r"""
module: bank_power
short_description: Power banks of a bramble cluster on, off, or cycle them, within the power budget
description:
  - Switches the power groups (or, where the hardware allows, single slots) that feed the named
    banks, through the controller drivers C(http_relay), C(synaccess), C(snmp_pdu), C(poe_snmp),
    C(uhubctl) and C(command) (docs/power.md describes each protocol and its options).
  - Keeps the power budget of the cluster model (refuses, switching nothing, when the request
    would put more Pis on at once than C(power.budget)), powers the network switches of the
    banks before the banks, and waits O(settle) seconds between groups.
  - Optionally waits until the Pis show up (DHCP seen by dnsmasq, or agent registered with the
    cluster server) and power-cycles only the stragglers, at most O(retries) times.
  - A controller that cannot be reached fails the banks behind it, naming it; the other banks
    of the same request are still switched.
  - Runs on the host that can reach the controllers (usually the head, or localhost in the lab).
version_added: "0.1.0"
author: bramble contributors
options:
  model:
    description: The validated cluster model, C(bramble_model) from the bramble inventory.
    type: dict
    required: true
  state:
    description: C(on), C(off), or C(cycle) (off, O(cycle_delay) seconds, on).
    type: str
    choices: [on, off, cycle]
    default: on
  banks:
    description: Banks to power (their whole power groups unless O(slots) is given).
    type: list
    elements: int
    default: []
  groups:
    description: Power group ids to power.
    type: list
    elements: int
    default: []
  slots:
    description:
      - Only these slots of the O(banks); only for controllers that switch each Pi
        (C(poe_snmp), C(uhubctl), a C(command) whose templates use C({slot})).
    type: list
    elements: int
    default: []
  pis:
    description: C(bramble_pis) (names and MACs of the Pis); needed by O(wait_for).
    type: list
    elements: dict
    default: []
  credentials:
    description:
      - "Secrets by the vault variable names the model's C(credentials) fields give, for
        example C({vault_pdu1_password: '{{ vault_pdu1_password }}'}). Never logged."
    type: dict
    default: {}
  switches:
    description: Power the network switches of the banks first (never switched off here).
    type: bool
    default: true
  settle:
    description: Seconds to wait after powering switches and between power groups.
    type: float
    default: 5.0
  cycle_delay:
    description: Seconds a cycled outlet stays off.
    type: float
    default: 3.0
  budget_count:
    description:
      - C(cluster) reads every other power group's state and counts its Pis that are on (an
        unreadable controller counts as on); C(request) counts only this request.
    type: str
    choices: [cluster, request]
    default: cluster
  wait_for:
    description: After powering on, wait for the Pis C(dhcp_seen) or C(agent_registered).
    type: str
    choices: [none, dhcp_seen, agent_registered]
    default: none
  expected:
    description: How many Pis must show up (default every harvested Pi switched on).
    type: int
  timeout:
    description: Seconds to wait for the Pis each round.
    type: float
    default: 300.0
  poll:
    description: Seconds between looks at the DHCP log or the server.
    type: float
    default: 2.0
  retries:
    description: Rounds of power-cycling the stragglers (per slot where possible, else their group).
    type: int
    default: 0
  dhcp_log:
    description: dnsmasq log file (C(log-facility), with C(log-dhcp)) for C(dhcp_seen).
    type: path
  dhcp_leases:
    description: dnsmasq lease file for C(dhcp_seen) (new or renewed leases count).
    type: path
  server_url:
    description: The cluster server for C(agent_registered), e.g. C(http://10.42.0.1:8470).
    type: str
  server_token:
    description: The server's admin token (from Vault). Never logged.
    type: str
  controller_timeout:
    description: Seconds to wait for a controller's answer.
    type: float
    default: 5.0
  fail_on_missing:
    description: Fail when fewer than O(expected) Pis showed up after the retries.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Reads the controllers and reports what it would switch; switches nothing.
  diff_mode:
    support: none
notes:
  - Requires pysnmp 7 on the host running it for C(snmp_pdu) and C(poe_snmp).
seealso:
  - name: bramble power controllers
    description: docs/power.md in the bramble repository.
    link: https://github.com/bramble/bramble/blob/main/docs/power.md
"""

EXAMPLES = r"""
- name: Power bank 7 on and wait until its Pis asked for an address
  bank_power:
    model: "{{ bramble_model }}"
    pis: "{{ bramble_pis }}"
    banks: [7]
    state: on
    credentials: "{{ dict(_names | zip(query('vars', *_names))) }}"
    wait_for: dhcp_seen
    dhcp_log: /var/log/bramble/dnsmasq.log
    timeout: 120
    retries: 2
  vars:
    _names: "{{ bramble_model.controllers | selectattr('credentials')
      | map(attribute='credentials') | unique }}"

- name: Power-cycle slots 3 and 5 of bank 2 (PoE switch)
  bank_power:
    model: "{{ bramble_model }}"
    banks: [2]
    slots: [3, 5]
    state: cycle
    credentials:
      vault_sw1_community: "{{ vault_sw1_community }}"

- name: Power everything off
  bank_power:
    model: "{{ bramble_model }}"
    groups: "{{ bramble_model.power.groups | map(attribute='id') }}"
    state: off
    credentials: "{{ bramble_power_secrets }}"
"""

RETURN = r"""
actions:
  description: What was (or in check mode would be) switched, in order.
  returned: always
  type: list
  elements: dict
  sample: [{controller: pdu1, outlet: 5, group: null, switch: sw1, action: "on", pis: [],
            reason: switch before its banks}]
pis:
  description: One entry per Pi targeted, with C(outcome) C(booted), C(missing),
    C(unharvested) (no MAC to recognise it by), C(already_on), C(switched), C(would_switch)
    or C(controller_failed), and C(cycles), the straggler cycles it got.
  returned: always
  type: list
  elements: dict
  sample: [{name: pi-07-03, bank: 7, slot: 3, mac: "b8:27:eb:00:07:03", outcome: booted, cycles: 1}]
booted:
  description: Pis that showed up (null without wait_for).
  returned: always
  type: int
expected:
  description: Pis that had to show up (null without wait_for).
  returned: always
  type: int
cycles:
  description: Straggler rounds used (at most retries).
  returned: always
  type: int
pis_on:
  description: Pis on at once after the request, as counted for the budget (null for off).
  returned: always
  type: int
failed_controllers:
  description: Controller name -> what went wrong.
  returned: always
  type: dict
failed_banks:
  description: Banks behind a failed controller.
  returned: always
  type: list
  elements: int
summary:
  description: "One line, e.g. C(20/21 booted; 2 straggler cycle(s); missing: pi-07-03)."
  returned: always
  type: str
"""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "model": {"type": "dict", "required": True},
            "state": {"type": "str", "choices": ["on", "off", "cycle"], "default": "on"},
            "banks": {"type": "list", "elements": "int", "default": []},
            "groups": {"type": "list", "elements": "int", "default": []},
            "slots": {"type": "list", "elements": "int", "default": []},
            "pis": {"type": "list", "elements": "dict", "default": []},
            "credentials": {"type": "dict", "default": {}, "no_log": True},
            "switches": {"type": "bool", "default": True},
            "settle": {"type": "float", "default": 5.0},
            "cycle_delay": {"type": "float", "default": 3.0},
            "budget_count": {
                "type": "str",
                "choices": ["cluster", "request"],
                "default": "cluster",
            },
            "wait_for": {
                "type": "str",
                "choices": ["none", "dhcp_seen", "agent_registered"],
                "default": "none",
            },
            "expected": {"type": "int"},
            "timeout": {"type": "float", "default": 300.0},
            "poll": {"type": "float", "default": 2.0},
            "retries": {"type": "int", "default": 0},
            "dhcp_log": {"type": "path"},
            "dhcp_leases": {"type": "path"},
            "server_url": {"type": "str"},
            "server_token": {"type": "str", "no_log": True},
            "controller_timeout": {"type": "float", "default": 5.0},
            "fail_on_missing": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["retries"] < 0 or p["retries"] > 10:
        module.fail_json(msg="retries must be between 0 and 10 (each round cycles the stragglers)")
    secrets = {str(k): str(v) for k, v in (p["credentials"] or {}).items() if v is not None}
    for value in secrets.values():
        module.no_log_values.add(value)
    request = Request(
        model=p["model"],
        state=p["state"],
        banks=p["banks"],
        groups=p["groups"],
        slots=p["slots"],
        pis=p["pis"],
        credentials=secrets,
        switches=p["switches"],
        settle=p["settle"],
        cycle_delay=p["cycle_delay"],
        budget_count=p["budget_count"],
        wait_for=p["wait_for"],
        expected=p["expected"],
        timeout=p["timeout"],
        poll=p["poll"],
        retries=p["retries"],
        dhcp_log=p["dhcp_log"],
        dhcp_leases=p["dhcp_leases"],
        server_url=p["server_url"],
        server_token=p["server_token"],
        controller_timeout=p["controller_timeout"],
    )
    runner = Runner(request, check_mode=module.check_mode)
    try:
        out = runner.run()
    except PlanError as exc:
        module.fail_json(msg=str(exc), **runner.out.as_dict())
    for warning in out.warnings:
        module.warn(warning)
    result = out.as_dict()
    result["summary"] = summary(out)
    if out.failed:
        module.fail_json(
            msg="power failed for bank(s) "
            + ", ".join(str(b) for b in out.failed_banks)
            + ": "
            + "; ".join(out.failed.values()),
            **result,
        )
    if (
        p["fail_on_missing"]
        and out.booted is not None
        and out.expected is not None
        and out.booted < out.expected
    ):
        module.fail_json(msg=f"only {result['summary']}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
