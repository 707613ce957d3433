"""Shared fixtures: cluster models written to tmp_path, and Ansible run as a subprocess."""

from __future__ import annotations

import copy
import itertools
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster_helpers import BASE_MODEL, INVENTORIES, run_tool


@pytest.fixture
def base_model() -> dict[str, Any]:
    """A fresh copy of BASE_MODEL, to modify before passing it to ``model_dir``."""
    return copy.deepcopy(BASE_MODEL)


ModelDir = Callable[..., Path]


@pytest.fixture
def model_dir(tmp_path: Path) -> ModelDir:
    """Write an inventory folder (cluster.yml, optionally macs.yml) and return its path.

    ``model`` is a dict (default BASE_MODEL) or ``text`` the literal cluster.yml; ``macs`` is a
    list of entry dicts or the literal text of macs.yml (no macs.yml when None).
    """
    numbers = itertools.count(1)

    def make(
        model: dict[str, Any] | None = None,
        macs: list[dict[str, Any]] | str | None = None,
        *,
        text: str | None = None,
    ) -> Path:
        folder = tmp_path / f"model{next(numbers)}"
        folder.mkdir()
        if text is None:
            text = "---\n" + yaml.safe_dump(
                copy.deepcopy(BASE_MODEL) if model is None else model, sort_keys=False
            )
        (folder / "cluster.yml").write_text(text, encoding="utf-8")
        if macs is not None:
            if not isinstance(macs, str):
                macs = yaml.safe_dump({"macs": macs}, sort_keys=False)
            (folder / "macs.yml").write_text(macs, encoding="utf-8")
        return folder

    return make


@pytest.fixture
def copy_inventory(tmp_path: Path) -> Callable[[str], Path]:
    """Copy a shipped inventory (``lab``, ``desk``, ``bigpi``) into tmp_path, to break it."""

    def copy_it(name: str) -> Path:
        target = tmp_path / "inventory" / name
        shutil.copytree(INVENTORIES / name, target)
        return target

    return copy_it


@pytest.fixture(scope="session")
def ansible_run() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a tool of .venv/bin from the repository: ``ansible_run("ansible-playbook", ...)``."""
    return run_tool


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``long`` (minutes each: the lab end to end, the QEMU node, the lab's VPN) go
    first, each into its xdist group (``long`` unless the mark names another,
    ``pytest.mark.long(group="...")``). Under ``pytest -n 2 --dist loadgroup`` (tests/run-all)
    the tests of one group run one after the other on one worker from the start, while the other
    worker takes the next group and then the rest, instead of two heavy tests meeting at the end."""
    long = [item for item in items if item.get_closest_marker("long")]
    for item in long:
        mark = item.get_closest_marker("long")
        group = mark.kwargs.get("group", "long") if mark else "long"
        item.add_marker(pytest.mark.xdist_group(group))
    items[:] = long + [item for item in items if not item.get_closest_marker("long")]
