"""The template filters of plugins/filter/bramble.py, called directly and through Ansible."""

from __future__ import annotations

import importlib.util
import json

import pytest
from ansible.errors import AnsibleFilterError

from cluster_helpers import ROOT


def _load_filters():
    spec = importlib.util.spec_from_file_location(
        "bramble_filter_plugin", ROOT / "plugins" / "filter" / "bramble.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


FILTERS = _load_filters()

PI = {"name": "pi-07-03", "mac": "B8-27-EB-12-34-56", "ip": "10.42.7.3", "bank": 7, "slot": 3}


def test_the_documented_filters_exist():
    assert set(FILTERS) == {
        "bramble_slot_ip",
        "bramble_mac",
        "bramble_serial",
        "bramble_serial_suffix",
        "bramble_dhcp_host",
    }


def test_slot_ip():
    assert FILTERS["bramble_slot_ip"]("10.42.0.0/16", 7, 3) == "10.42.7.3"
    assert FILTERS["bramble_slot_ip"]("192.168.3.0/24", 1, 1, 16) == "192.168.3.17"


def test_slot_ip_accepts_numbers_given_as_strings():
    # values read from extra vars or templated arrive as strings
    assert FILTERS["bramble_slot_ip"]("10.42.0.0/16", "7", "3", "256") == "10.42.7.3"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("10.42.0.0/24", 7, 3), "outside 10.42.0.0/24"),
        (("10.42.0.0/16", "seven", 3), "seven"),
        (("10.42.0.0/16", 0, 3), "count from 1"),
        (("10.42.0.0/16", 7, None), "None"),
    ],
)
def test_slot_ip_errors_are_filter_errors(args, message):
    with pytest.raises(AnsibleFilterError, match="bramble_slot_ip") as caught:
        FILTERS["bramble_slot_ip"](*args)
    assert message in str(caught.value)


def test_slot_ip_with_a_malformed_network_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match="bramble_slot_ip"):
        FILTERS["bramble_slot_ip"]("10.42.0.0/33", 7, 3)


def test_mac():
    assert FILTERS["bramble_mac"]("B827.EB12.3456") == "b8:27:eb:12:34:56"


@pytest.mark.parametrize("value", ["b8:27:eb:12:34", 12, None])
def test_mac_errors_are_filter_errors(value):
    with pytest.raises(AnsibleFilterError, match="bramble_mac"):
        FILTERS["bramble_mac"](value)


def test_serial():
    assert FILTERS["bramble_serial"]("000000004DB34690") == "4db34690"
    assert FILTERS["bramble_serial"]("0x4db34690") == "4db34690"


@pytest.mark.parametrize("value", ["4db3469", 12345678])
def test_serial_errors_are_filter_errors(value):
    with pytest.raises(AnsibleFilterError, match="bramble_serial"):
        FILTERS["bramble_serial"](value)


def test_serial_suffix():
    assert FILTERS["bramble_serial_suffix"]("b8:27:eb:b3:46:90") == "b34690"
    assert FILTERS["bramble_serial_suffix"]("b8:27:eb:b3:46:90", "pi3b") == "b34690"
    assert FILTERS["bramble_serial_suffix"]("b8:27:eb:b3:46:90", "pi4") is None
    assert FILTERS["bramble_serial_suffix"]("dc:a6:32:b3:46:90") is None


def test_serial_suffix_of_no_mac_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match="bramble_serial_suffix"):
        FILTERS["bramble_serial_suffix"](None)


def test_dhcp_host():
    assert FILTERS["bramble_dhcp_host"](PI) == "dhcp-host=b8:27:eb:12:34:56,pi-07-03,10.42.7.3"


def test_dhcp_host_of_an_unharvested_pi_names_it():
    with pytest.raises(AnsibleFilterError, match="bramble_dhcp_host: pi-07-03 has no harvested"):
        FILTERS["bramble_dhcp_host"]({**PI, "mac": None})


@pytest.mark.parametrize(
    "pi",
    [
        {**PI, "name": "Pi_07"},
        {**PI, "mac": "b8:27:eb:12:34"},
        {**PI, "ip": "10.42.7.300"},
        {"name": "pi-07-03", "mac": "b8:27:eb:12:34:56"},  # no ip
        "pi-07-03",  # a name instead of the Pi's dict
    ],
    ids=["bad-name", "bad-mac", "bad-ip", "no-ip", "not-a-dict"],
)
def test_dhcp_host_errors_are_filter_errors(pi):
    with pytest.raises(AnsibleFilterError, match="bramble_dhcp_host"):
        FILTERS["bramble_dhcp_host"](pi)


def test_filter_renders_in_an_ansible_template(ansible_run):
    template = (
        "{{ '10.42.0.0/16' | bramble_slot_ip(7, 3) }} {{ 'B8-27-EB-12-34-56' | bramble_mac }}"
    )
    result = ansible_run(
        "ansible", "localhost", "-m", "ansible.builtin.debug", "-a", json.dumps({"msg": template})
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"msg": "10.42.7.3 b8:27:eb:12:34:56"' in result.stdout


def test_filter_error_in_a_template_fails_the_task_with_the_reason(ansible_run):
    result = ansible_run(
        "ansible",
        "localhost",
        "-m",
        "ansible.builtin.debug",
        "-a",
        "msg={{ '10.42.0.0/24' | bramble_slot_ip(7, 3) }}",
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "bramble_slot_ip: bank 7 slot 3 would be 10.42.7.3, outside 10.42.0.0/24" in output
    assert "Traceback" not in output
