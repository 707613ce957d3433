"""bramble.wheelhouse: rebuilt only when its inputs change, one reproducible tarball."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from bramble import wheelhouse
from bramble.wheelhouse import Target, build


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src" / "bramble").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'bramble'\n", encoding="utf-8")
    (root / "src" / "bramble" / "__init__.py").write_text("", encoding="utf-8")
    (root / "requirements").mkdir()
    (root / "requirements" / "run.txt").write_text("aiohttp==3.14.5\n", encoding="utf-8")
    return root


@pytest.fixture
def fills(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Stand in for pip (no network): each fill writes two fake wheels."""
    calls: list[Path] = []

    def fake_fill(folder: Path, project: Path, constraints: Path, target: Target) -> None:
        calls.append(folder)
        for name in ("bramble-0.1.0-py3-none-any.whl", f"psutil-7-{target.arch}.whl"):
            (folder / name).write_bytes(b"wheel " + name.encode())

    monkeypatch.setattr(wheelhouse, "fill", fake_fill)
    return calls


def test_rebuilt_only_when_the_sources_or_target_change(tmp_path, project, fills):
    dest = tmp_path / "wh"
    constraints = project / "requirements" / "run.txt"
    arm = Target("aarch64", "3.11")
    first = build(dest, project, constraints, arm)
    assert first["changed"]
    assert first["wheels"] == ["bramble-0.1.0-py3-none-any.whl", "psutil-7-aarch64.whl"]
    assert not build(dest, project, constraints, arm)["changed"]
    assert len(fills) == 1
    # a source file edited: a new hash, built again
    (project / "src" / "bramble" / "__init__.py").write_text("x = 1\n", encoding="utf-8")
    second = build(dest, project, constraints, arm)
    assert second["changed"]
    assert second["hash"] != first["hash"]
    # bytecode caches do not count
    (project / "src" / "bramble" / "__pycache__").mkdir()
    (project / "src" / "bramble" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert not build(dest, project, constraints, arm)["changed"]
    # another architecture: another wheelhouse
    assert build(dest, project, constraints, Target("x86_64", "3.11"))["changed"]
    assert sorted(p.name for p in dest.glob("*.whl"))[-1] == "psutil-7-x86_64.whl"
    assert not list(tmp_path.glob(".wh*"))


def test_dry_run_reports_without_building(tmp_path, project, fills):
    dest = tmp_path / "wh"
    result = build(
        dest, project, project / "requirements" / "run.txt", Target("aarch64", "3.11"), dry_run=True
    )
    assert result["changed"]
    assert not dest.exists()
    assert fills == []


def test_the_tarball_is_reproducible_and_holds_the_stamp(tmp_path, project, fills):
    constraints = project / "requirements" / "run.txt"
    one = build(tmp_path / "a", project, constraints, Target("aarch64", "3.11"))
    two = build(tmp_path / "b", project, constraints, Target("aarch64", "3.11"))
    assert Path(one["tar"]).read_bytes() == Path(two["tar"]).read_bytes()
    with tarfile.open(one["tar"]) as tar:
        names = tar.getnames()
        stamp = json.load(tar.extractfile(wheelhouse.STAMP))  # type: ignore[arg-type]
    assert wheelhouse.STAMP in names
    assert stamp["hash"] == one["hash"]
    assert stamp["arch"] == "aarch64"


def test_main_prints_json_and_names_a_missing_project(tmp_path, project, fills, capsys):
    code = wheelhouse.main(
        ["--dest", str(tmp_path / "wh"), "--arch", "aarch64", "--project", str(project)]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["changed"] is True
    assert wheelhouse.main(["--dest", str(tmp_path / "x"), "--project", str(tmp_path)]) == 2
    assert "holds no pyproject.toml" in capsys.readouterr().err
