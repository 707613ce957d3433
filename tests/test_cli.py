"""bramble-model: check, pis and synthetic-macs."""

from __future__ import annotations

import pytest

from bramble.model import load_cluster, read_mac_file
from bramble.model.cli import main, synthetic_entries
from cluster_helpers import INVENTORIES, mac_of


@pytest.mark.parametrize(("name", "pis"), [("lab", 8), ("desk", 4), ("bigpi", 1050)])
def test_check_of_a_valid_model_exits_0(capsys, name, pis):
    assert main(["check", str(INVENTORIES / name)]) == 0
    out = capsys.readouterr().out
    assert f"cluster {name} is valid" in out
    assert f"{pis} Pis" in out


def test_check_with_problems_exits_1_and_prints_each(capsys, model_dir, base_model):
    base_model["power"]["budget"] = 3
    folder = model_dir(
        base_model,
        macs=[
            {"bank": 1, "slot": 1, "mac": mac_of(1, 1)},
            {"bank": 1, "slot": 2, "mac": mac_of(1, 1)},
        ],
    )
    assert main(["check", str(folder)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3
    assert all(line.startswith("error: ") for line in err)
    assert any(f"MAC {mac_of(1, 1)} is claimed" in line for line in err)


def test_check_of_a_schema_error_exits_2(capsys, model_dir, base_model):
    base_model["banks"]["colour"] = "red"
    folder = model_dir(base_model)
    assert main(["check", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {folder / 'cluster.yml'}: 1 problem in the cluster model:")
    assert "banks.colour: unknown key 'colour'" in err


def test_check_of_a_missing_model_exits_2(capsys, tmp_path):
    assert main(["check", str(tmp_path)]) == 2
    assert "file not found" in capsys.readouterr().err


def test_the_installed_command_runs(ansible_run, model_dir, base_model):
    base_model["power"]["groups"].pop()
    result = ansible_run("bramble-model", "check", model_dir(base_model))
    assert result.returncode == 1
    assert "bank 2 is in no power group" in result.stderr
    assert "Traceback" not in result.stderr


def test_pis_lists_every_pi(capsys):
    assert main(["pis", str(INVENTORIES / "lab")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8
    assert lines[6].split("\t") == ["pi-02-03", "2", "3", "10.42.2.3", "-", "-"]


def test_synthetic_macs_fill_every_slot_consistently(capsys, model_dir):
    folder = model_dir()
    assert main(["synthetic-macs", str(folder)]) == 0
    assert f"{folder / 'macs.yml'}: 8 entries" in capsys.readouterr().out
    cluster = load_cluster(folder)
    assert cluster.problems == ()
    assert all(pi.state == "harvested" for pi in cluster.pis)
    assert len({pi.mac for pi in cluster.pis}) == 8


def test_synthetic_macs_refuses_to_overwrite_without_force(capsys, model_dir):
    folder = model_dir(macs=[{"bank": 1, "slot": 1, "mac": mac_of(1, 1)}])
    before = (folder / "macs.yml").read_text(encoding="utf-8")
    assert main(["synthetic-macs", str(folder)]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert (folder / "macs.yml").read_text(encoding="utf-8") == before
    assert main(["synthetic-macs", "--force", str(folder)]) == 0
    assert len(read_mac_file(folder / "macs.yml")) == 8


def test_synthetic_macs_are_deterministic(capsys, model_dir):
    folder = model_dir()
    main(["synthetic-macs", str(folder)])
    first = (folder / "macs.yml").read_text(encoding="utf-8")
    assert main(["synthetic-macs", "--force", str(folder)]) == 0
    assert "(unchanged)" in capsys.readouterr().out
    assert (folder / "macs.yml").read_text(encoding="utf-8") == first


def test_synthetic_entries_are_pi3bplus_consistent_and_unique_at_bigpi_scale():
    entries = synthetic_entries("bigpi", 50, 21)
    assert [(e.bank, e.slot) for e in entries] == [
        (b, s) for b in range(1, 51) for s in range(1, 22)
    ]
    macs = [str(e.mac) for e in entries]
    assert len(set(macs)) == 1050
    assert len({e.serial for e in entries}) == 1050
    for entry in entries:
        assert str(entry.mac).startswith("b8:27:eb:")
        assert str(entry.serial).endswith(str(entry.mac)[9:].replace(":", ""))


def test_shipped_bigpi_mac_file_is_the_synthetic_one():
    shipped = read_mac_file(INVENTORIES / "bigpi" / "macs.yml")
    assert shipped == synthetic_entries("bigpi", 50, 21)
