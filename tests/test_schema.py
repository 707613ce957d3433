"""Schema errors of cluster.yml and macs.yml: one ModelError naming file, line and dotted key."""

from __future__ import annotations

import re

import pytest

from bramble.model import ModelError, load_cluster
from cluster_helpers import line_containing


def _error(folder) -> str:
    with pytest.raises(ModelError) as caught:
        load_cluster(folder)
    message = str(caught.value)
    assert "Traceback" not in message
    assert "errors.pydantic.dev" not in message  # pydantic's own wording is not shown
    return message


def test_the_base_model_is_valid(model_dir):
    cluster = load_cluster(model_dir())
    assert cluster.problems == ()
    assert len(cluster.pis) == 8


def test_unknown_key_lists_the_allowed_keys(model_dir, base_model):
    base_model["banks"]["sizee"] = 4
    folder = model_dir(base_model)
    line = line_containing(folder / "cluster.yml", "sizee:")
    message = _error(folder)
    assert (
        f"{folder / 'cluster.yml'}:{line}: banks.sizee: unknown key 'sizee' "
        "(allowed here: count, size, model)"
    ) in message


def test_unknown_key_in_a_list_entry(model_dir, base_model):
    base_model["power"]["groups"][1]["outlets"] = 2
    folder = model_dir(base_model)
    message = _error(folder)
    assert f"{folder / 'cluster.yml'}:" in message
    assert "power.groups[1].outlets: unknown key 'outlets'" in message
    assert "allowed here: id, controller, outlet, banks" in message


def test_unknown_key_with_a_mapping_value_points_at_the_key(model_dir, base_model):
    base_model["bankz"] = {"count": 1}
    folder = model_dir(base_model)
    line = line_containing(folder / "cluster.yml", "bankz:")
    message = _error(folder)
    assert f"cluster.yml:{line}: bankz: unknown key 'bankz'" in message
    assert "allowed here: plugin, cluster, network, head, banks" in message


def test_wrong_type(model_dir, base_model):
    base_model["banks"]["count"] = "2"
    folder = model_dir(base_model)
    line = line_containing(folder / "cluster.yml", "count:")
    message = _error(folder)
    assert f"{folder / 'cluster.yml'}:{line}: banks.count:" in message
    assert "valid integer (got '2')" in message


def test_a_list_where_a_mapping_is_expected_points_at_the_key(model_dir, base_model):
    base_model["banks"] = [2, 4]
    folder = model_dir(base_model)
    line = line_containing(folder / "cluster.yml", "banks:")
    message = _error(folder)
    assert f"cluster.yml:{line}: banks: expected a mapping of keys, got list" in message


def test_missing_required_key_points_at_its_parent(model_dir, base_model):
    del base_model["banks"]["size"]
    folder = model_dir(base_model)
    line = line_containing(folder / "cluster.yml", "banks:")
    message = _error(folder)
    # the line of `banks:` or the first line inside it
    assert any(
        f"{folder / 'cluster.yml'}:{number}: banks.size: required key is missing" in message
        for number in (line, line + 1)
    ), message


def test_missing_nested_required_key(model_dir, base_model):
    del base_model["head"]["interfaces"]["cluster"]
    folder = model_dir(base_model)
    message = _error(folder)
    assert "head.interfaces.cluster: required key is missing" in message


def test_bad_enum_lists_the_choices(model_dir, base_model):
    base_model["banks"]["model"] = "pi2"
    folder = model_dir(base_model)
    line = line_containing(folder / "cluster.yml", "model: pi2")
    message = _error(folder)
    assert f"{folder / 'cluster.yml'}:{line}: banks.model:" in message
    assert "'pi3b', 'pi3bplus', 'pi4' or 'pi5' (got 'pi2')" in message


def test_value_out_of_range(model_dir, base_model):
    base_model["banks"]["size"] = 300
    folder = model_dir(base_model)
    message = _error(folder)
    assert "banks.size:" in message
    assert "less than or equal to 254" in message


@pytest.mark.parametrize(
    ("cidr", "reason"),
    [
        ("10.42.0.1/16", "has host bits set: the network is 10.42.0.0/16"),
        ("10.42.0.0", "has no prefix length"),
        ("10.42.0.0/33", "is not an IPv4 network"),
        ("fd00::/64", "is not an IPv4 network"),
    ],
)
def test_bad_cidr(model_dir, base_model, cidr, reason):
    base_model["network"]["cidr"] = cidr
    folder = model_dir(base_model)
    line = line_containing(folder / "cluster.yml", "cidr:")
    message = _error(folder)
    assert f"{folder / 'cluster.yml'}:{line}: network.cidr: " in message
    assert reason in message


def test_clear_text_credentials_are_refused_without_echoing_them(model_dir, base_model):
    base_model["controllers"][0]["credentials"] = "hunter2"
    folder = model_dir(base_model)
    line = line_containing(folder / "cluster.yml", "credentials:")
    message = _error(folder)
    assert f"{folder / 'cluster.yml'}:{line}: controllers[0].credentials: " in message
    assert "vault_" in message
    assert "hunter2" not in message


def test_clear_text_vpn_psk_is_refused_without_echoing_it(model_dir, base_model):
    base_model["vpn"] = {
        "remote_subnets": ["10.0.0.0/24"],
        "tunnels": [{"name": "cloud1", "remote": "192.0.2.1", "psk": "Sup3rSecret"}],
    }
    folder = model_dir(base_model)
    message = _error(folder)
    assert "vpn.tunnels[0].psk: must name an Ansible Vault variable" in message
    assert "Sup3rSecret" not in message


def test_a_numeric_clear_text_secret_is_not_echoed(model_dir, base_model):
    # A PIN or an SNMP community typed as a bare number must not end up in logs either.
    base_model["controllers"][0]["credentials"] = 271828
    folder = model_dir(base_model)
    message = _error(folder)
    assert "controllers[0].credentials" in message
    assert "vault_" in message
    assert "271828" not in message


DUPLICATE_KEY = (
    "plugin: bramble\ncluster: {name: test}\nhead: {interfaces: {cluster: eth1}}\n"
    "banks:\n  count: 2\n  size: 4\n  count: 3\n"
)


def test_duplicate_yaml_key(model_dir):
    folder = model_dir(text=DUPLICATE_KEY)
    message = _error(folder)
    assert message.startswith(f"{folder / 'cluster.yml'}:7: ")
    assert "'count' is given twice" in message


def test_duplicate_yaml_key_names_the_dotted_key(model_dir):
    # docs/cluster-model.md: schema problems, "a key given twice" included, are listed as
    # `file:line: dotted.key: what is wrong`
    folder = model_dir(text=DUPLICATE_KEY)
    assert f"{folder / 'cluster.yml'}:7: banks.count: " in _error(folder)


def test_invalid_yaml(model_dir):
    folder = model_dir(text="plugin: bramble\nbanks: {count: 2, size: 4\nhead: x\n")
    message = _error(folder)
    assert re.match(rf"{re.escape(str(folder / 'cluster.yml'))}:[23]: not valid YAML: ", message)


def test_yaml_that_is_not_a_mapping(model_dir):
    folder = model_dir(text="- plugin: bramble\n")
    message = _error(folder)
    assert str(folder / "cluster.yml") in message
    assert "expected a mapping of keys, got list" in message


def test_missing_cluster_yml(tmp_path):
    message = _error(tmp_path)
    assert f"{tmp_path / 'cluster.yml'}: file not found" in message


def test_empty_cluster_yml_names_every_required_key(model_dir):
    folder = model_dir(text="")
    message = _error(folder)
    for key in ("plugin", "cluster", "head", "banks", "power", "controllers"):
        assert f"{folder / 'cluster.yml'}: {key}: required key is missing" in message


def test_every_schema_error_is_reported_at_once(model_dir, base_model):
    base_model["banks"]["colour"] = "red"
    base_model["network"]["cidr"] = "10.42.0.1/16"
    base_model["controllers"][0]["driver"] = "telnet"
    folder = model_dir(base_model)
    message = _error(folder)
    assert message.startswith(f"{folder / 'cluster.yml'}: 3 problems in the cluster model:")
    assert "banks.colour" in message
    assert "network.cidr" in message
    assert "controllers[0].driver" in message
    # listed in file order
    assert message.index("network.cidr") < message.index("banks.colour")


def test_mac_file_schema_error_names_macs_yml(model_dir):
    folder = model_dir(
        macs='---\nmacs:\n  - {bank: 1, slot: 1, mac: "b8:27:eb:00:01:01", colour: red}\n'
    )
    message = _error(folder)
    assert f"{folder / 'macs.yml'}:3: macs[0].colour: unknown key 'colour'" in message
    assert "allowed here: bank, slot, mac, serial" in message


def test_mac_file_missing_slot(model_dir):
    folder = model_dir(macs='macs:\n  - {bank: 1, mac: "b8:27:eb:00:01:01"}\n')
    message = _error(folder)
    assert f"{folder / 'macs.yml'}:2: macs[0].slot: required key is missing" in message
