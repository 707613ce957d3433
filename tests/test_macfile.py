"""The MAC file (macs.yml): canonical text, round trip, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bramble.model import MacEntry, ModelError, dump_mac_file, read_mac_file, write_mac_file
from cluster_helpers import INVENTORIES


def _entries(*rows: tuple) -> list[MacEntry]:
    return [
        MacEntry(bank=row[0], slot=row[1], mac=row[2], serial=row[3] if len(row) > 3 else None)
        for row in rows
    ]


# The lab ships none: each lab harvests its own (git-ignored, removed by make lab-down).
@pytest.mark.parametrize("name", ["bigpi", "desk"])
def test_shipped_mac_files_are_in_canonical_form(name):
    path = INVENTORIES / name / "macs.yml"
    assert dump_mac_file(read_mac_file(path)) == path.read_text(encoding="utf-8")


def test_bigpi_mac_file_has_every_slot():
    entries = read_mac_file(INVENTORIES / "bigpi" / "macs.yml")
    assert [(e.bank, e.slot) for e in entries] == [
        (b, s) for b in range(1, 51) for s in range(1, 22)
    ]


def test_a_written_file_reads_back_to_the_same_entries_and_text(tmp_path):
    path = tmp_path / "macs.yml"
    entries = _entries(
        (1, 1, "b8:27:eb:4a:c2:19", "084ac219"),
        (1, 2, "b8:27:eb:9e:a0:21"),
        (2, 1, "dc:a6:32:01:02:03", "abcdef01"),
    )
    assert write_mac_file(path, entries) is True
    text = path.read_text(encoding="utf-8")
    assert read_mac_file(path) == entries
    assert dump_mac_file(read_mac_file(path)) == text


def test_written_values_are_normalised_quoted_and_sorted(tmp_path):
    path = tmp_path / "macs.yml"
    write_mac_file(
        path,
        _entries(
            (2, 1, "DC-A6-32-01-02-03"),
            (1, 10, "b827.eb4a.c219", "0x084AC219"),
            (1, 2, "B827EB9EA021", "00000000259ea021"),
        ),
    )
    body = path.read_text(encoding="utf-8").split("macs:\n", 1)[1]
    assert body == (
        '  - {bank: 1, slot: 2, mac: "b8:27:eb:9e:a0:21", serial: "259ea021"}\n'
        '  - {bank: 1, slot: 10, mac: "b8:27:eb:4a:c2:19", serial: "084ac219"}\n'
        '  - {bank: 2, slot: 1, mac: "dc:a6:32:01:02:03"}\n'
    )


def test_numeric_looking_serials_stay_strings(tmp_path):
    # an all-digit serial unquoted would be read back as a number
    path = tmp_path / "macs.yml"
    write_mac_file(path, _entries((1, 1, "b8:27:eb:12:34:56", "00123456")))
    (entry,) = read_mac_file(path)
    assert entry.serial == "00123456"


def test_unchanged_file_is_not_rewritten(tmp_path):
    path = tmp_path / "macs.yml"
    entries = _entries((1, 1, "b8:27:eb:4a:c2:19", "084ac219"))
    assert write_mac_file(path, entries) is True
    before = path.stat()
    # the same entries in another spelling are the same file
    assert write_mac_file(path, _entries((1, 1, "B8-27-EB-4A-C2-19", "0x084ac219"))) is False
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_changed_file_is_replaced_keeping_its_mode(tmp_path):
    path = tmp_path / "macs.yml"
    write_mac_file(path, _entries((1, 1, "b8:27:eb:4a:c2:19")))
    path.chmod(0o600)
    assert write_mac_file(path, _entries((1, 1, "b8:27:eb:4a:c2:1a"))) is True
    assert "b8:27:eb:4a:c2:1a" in path.read_text(encoding="utf-8")
    assert path.stat().st_mode & 0o777 == 0o600


def test_new_file_is_world_readable(tmp_path):
    path = tmp_path / "macs.yml"
    write_mac_file(path, [])
    assert path.stat().st_mode & 0o777 == 0o644


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "macs.yml"
    write_mac_file(path, _entries((1, 1, "b8:27:eb:4a:c2:19")))
    original = path.read_text(encoding="utf-8")

    def fail(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_mac_file(path, _entries((1, 1, "b8:27:eb:4a:c2:1a")))
    assert path.read_text(encoding="utf-8") == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["macs.yml"]


def test_the_file_is_replaced_in_one_step(tmp_path, monkeypatch):
    # a reader never sees a half-written macs.yml: the new text is complete before the rename
    path = tmp_path / "macs.yml"
    write_mac_file(path, _entries((1, 1, "b8:27:eb:4a:c2:19")))
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src).parent, Path(src).read_text(encoding="utf-8"), dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    entries = _entries((1, 1, "b8:27:eb:4a:c2:1a"), (1, 2, "b8:27:eb:4a:c2:1b"))
    write_mac_file(path, entries)
    assert len(seen) == 1
    folder, text, target = seen[0]
    assert folder == tmp_path  # same file system: the rename is atomic
    assert text == dump_mac_file(entries)
    assert str(target) == str(path)


def test_empty_entries_give_an_empty_list(tmp_path):
    path = tmp_path / "macs.yml"
    write_mac_file(path, [])
    assert path.read_text(encoding="utf-8").endswith("\nmacs: []\n")
    assert read_mac_file(path) == []


def test_empty_and_missing_files_mean_nothing_harvested(tmp_path):
    empty = tmp_path / "macs.yml"
    empty.write_text("", encoding="utf-8")
    assert read_mac_file(empty) == []
    assert read_mac_file(tmp_path / "absent.yml") == []


def test_comment_only_file_means_nothing_harvested(tmp_path):
    path = tmp_path / "macs.yml"
    path.write_text("# nothing yet\n---\n", encoding="utf-8")
    assert read_mac_file(path) == []


def test_a_broken_mac_file_is_a_model_error(tmp_path):
    path = tmp_path / "macs.yml"
    path.write_text("macs:\n  - {bank: 1, slot: 1, mac: 'b8:27:eb:00:00:01'\n", encoding="utf-8")
    with pytest.raises(ModelError, match=r"macs\.yml:\d+: not valid YAML"):
        read_mac_file(path)
