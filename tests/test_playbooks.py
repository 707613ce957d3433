"""playbooks/model.yml (validate + report, what site.yml starts and ends with) on real
inventories, and the roles' argument specs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cluster_helpers import ROOT

ROLES = sorted(path for path in (ROOT / "roles").iterdir() if (path / "tasks").is_dir())


def _recap(output: str) -> dict[str, int]:
    match = re.search(r"^localhost\s+:\s+(.*)$", output, re.MULTILINE)
    assert match, output
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def _site(run, *args: str | Path):
    return run("ansible-playbook", "playbooks/model.yml", *args)


@pytest.fixture(scope="module")
def lab_report(ansible_run, tmp_path_factory):
    """playbooks/model.yml on the lab, rendered into a fresh folder: (folder, first run)."""
    folder = tmp_path_factory.mktemp("lab") / "report"
    return folder, _site(ansible_run, "-e", f"cluster_report_dir={folder}")


@pytest.mark.slow
def test_site_on_the_lab_passes_and_renders_the_report(lab_report):
    folder, result = lab_report
    assert result.returncode == 0, result.stdout + result.stderr
    recap = _recap(result.stdout)
    assert recap["failed"] == 0
    assert recap["changed"] > 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "dnsmasq-reservations.conf",
        "hosts",
        "report.txt",
    ]
    hosts = (folder / "hosts").read_text(encoding="utf-8")
    assert "10.42.0.1 lab-head.lab.internal lab-head\n" in hosts
    assert "10.42.2.3 pi-02-03.lab.internal pi-02-03\n" in hosts
    report = (folder / "report.txt").read_text(encoding="utf-8")
    bank02 = r"^bank02\s+power02\s+pdu1:1\s+0/4\s+10\.42\.2\.1-10\.42\.2\.4\s+sw1:9-12$"
    assert re.search(bank02, report, re.MULTILINE), report
    # the lab has no harvested Pi: no reservation yet
    assert "dhcp-host=" not in (folder / "dnsmasq-reservations.conf").read_text(encoding="utf-8")
    assert "Cluster lab is valid" in result.stdout


@pytest.mark.slow
def test_second_run_changes_nothing(ansible_run, lab_report):
    folder, first = lab_report
    assert first.returncode == 0
    second = _site(ansible_run, "-e", f"cluster_report_dir={folder}")
    assert second.returncode == 0, second.stdout + second.stderr
    assert _recap(second.stdout)["changed"] == 0


@pytest.mark.slow
def test_check_diff_shows_the_files_and_writes_nothing(ansible_run, tmp_path):
    folder = tmp_path / "report"
    result = _site(ansible_run, "--check", "--diff", "-e", f"cluster_report_dir={folder}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _recap(result.stdout)["changed"] > 0
    assert "+10.42.2.3 pi-02-03.lab.internal pi-02-03" in result.stdout
    assert not folder.exists()


@pytest.mark.slow
def test_check_after_a_run_reports_no_change(ansible_run, lab_report):
    folder, first = lab_report
    assert first.returncode == 0
    result = _site(ansible_run, "--check", "--diff", "-e", f"cluster_report_dir={folder}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _recap(result.stdout)["changed"] == 0


@pytest.mark.slow
def test_harvested_pis_get_dhcp_reservations(ansible_run, copy_inventory, tmp_path):
    inventory = copy_inventory("lab")
    filled = ansible_run("bramble-model", "synthetic-macs", inventory)
    assert filled.returncode == 0, filled.stderr
    folder = tmp_path / "report"
    result = _site(
        ansible_run,
        "-i",
        inventory,
        "-e",
        f"cluster_report_dir={folder}",
        "-e",
        "validate_inventory_allow_unharvested=false",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [
        line
        for line in (folder / "dnsmasq-reservations.conf").read_text(encoding="utf-8").splitlines()
        if line.startswith("dhcp-host=")
    ]
    assert len(lines) == 8
    assert re.fullmatch(r"dhcp-host=b8:27:eb:[0-9a-f:]{8},pi-02-03,10\.42\.2\.3", lines[6])


@pytest.mark.slow
def test_site_stops_on_model_problems_before_the_report(ansible_run, copy_inventory, tmp_path):
    inventory = copy_inventory("lab")
    (inventory / "macs.yml").write_text(
        "macs:\n"
        '  - {bank: 1, slot: 1, mac: "b8:27:eb:00:00:01"}\n'
        '  - {bank: 1, slot: 2, mac: "b8:27:eb:00:00:01"}\n'
        '  - {bank: 3, slot: 1, mac: "b8:27:eb:00:00:02"}\n',
        encoding="utf-8",
    )
    cluster = inventory / "cluster.yml"
    cluster.write_text(
        cluster.read_text(encoding="utf-8").replace("budget: 8", "budget: 3"), encoding="utf-8"
    )
    folder = tmp_path / "report"
    result = _site(ansible_run, "-i", inventory, "-e", f"cluster_report_dir={folder}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "The cluster model has 4 problem(s)" in output
    assert "MAC b8:27:eb:00:00:01 is claimed by bank 1 slot 1 and bank 1 slot 2" in output
    assert "macs[2] (bank 3 slot 1): beyond the model" in output
    assert "power group 1 (power01) powers 4 Pis at once, over the power budget of 3" in output
    assert "power group 2 (power02) powers 4 Pis at once, over the power budget of 3" in output
    assert str(inventory / "macs.yml") in output
    assert "PLAY [Render the cluster report]" not in result.stdout
    assert not folder.exists()


@pytest.mark.slow
def test_unharvested_pis_refused_when_not_allowed(ansible_run, tmp_path):
    folder = tmp_path / "report"
    result = _site(
        ansible_run,
        "-e",
        f"cluster_report_dir={folder}",
        "-e",
        "validate_inventory_allow_unharvested=false",
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "8 Pi(s) have no harvested MAC" in output
    assert str(ROOT / "inventory" / "lab" / "macs.yml") in output
    for bank in (1, 2):
        for slot in range(1, 5):
            assert f"pi-0{bank}-0{slot}" in output
    assert not folder.exists()


def _defaults(role: Path) -> dict:
    path = role / "defaults" / "main.yml"
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _options(role: Path) -> dict:
    spec_file = role / "meta" / "argument_specs.yml"
    assert spec_file.is_file(), f"role {role.name} has no meta/argument_specs.yml"
    specs = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    return specs["argument_specs"]["main"].get("options") or {}


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_argument_specs_match_defaults(role):
    # Ansible does not apply the defaults of an argument spec; defaults/main.yml does, so the
    # spec must list exactly the variables of the defaults file.
    assert sorted(_options(role)) == sorted(_defaults(role))


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_argument_spec_defaults_equal_the_defaults_file(role):
    defaults = _defaults(role)
    for name, option in _options(role).items():
        if "default" in option and name in defaults:
            assert option["default"] == defaults[name], f"{role.name}: {name}"


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_public_variables_carry_the_role_name(role):
    defaults = _defaults(role)
    assert all(name.startswith(f"{role.name}_") for name in defaults), sorted(defaults)


def test_there_are_roles_to_check():
    assert {"validate_inventory", "cluster_report"} <= {role.name for role in ROLES}
