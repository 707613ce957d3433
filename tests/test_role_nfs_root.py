"""The nfs_root role, rendered on localhost from cluster models (no packages, no services).

Render-only mode (nfs_root_manage_service=false, nfs_root_config_dir=<tmp>) writes the
configuration a server would read; tests/integration/test_nfs_root.py serves it for real.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cluster_helpers import BIN, INVENTORIES, ROOT, ansible_env, fleet_model

pytestmark = pytest.mark.slow

PLAYBOOK = """\
---
- name: Render nfs_root
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  roles:
    - role: nfs_root

- name: Read what the role published for the firewall role
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Write the firewall rules
      ansible.builtin.copy:
        content: "{{ hostvars['localhost'].nfs_root_firewall_rules | to_nice_json }}"
        dest: "{{ firewall_out }}"
        mode: "0644"
"""


def _recap(output: str) -> dict[str, int]:
    match = re.search(r"^localhost\s+:\s+(.*)$", output, re.MULTILINE)
    assert match, output
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def _fake_root(folder: Path) -> Path:
    (folder / "etc").mkdir(parents=True)
    (folder / "etc" / "os-release").write_text('ID=debian\nVERSION_ID="12"\n', encoding="utf-8")
    return folder


class Render:
    """Runs the role in render-only mode into one scratch folder."""

    def __init__(self, run: Callable[..., Any], tmp_path: Path) -> None:
        self.run_tool = run
        self.tmp = tmp_path
        self.etc = tmp_path / "etc"
        self.root = _fake_root(tmp_path / "root")
        self.firewall_file = tmp_path / "firewall-rules.json"
        self.playbook = tmp_path / "nfs_root.yml"
        self.playbook.write_text(PLAYBOOK, encoding="utf-8")

    def __call__(self, inventory: Path, *args: str, **extra: Any) -> Any:
        return self.run_tool(*self.argv(inventory, *args, **extra), timeout=120)

    def argv(self, inventory: Path, *args: str, **extra: Any) -> list[str | Path]:
        variables = {
            "nfs_root_manage_service": False,
            "nfs_root_config_dir": str(self.etc),
            "nfs_root_export_path": str(self.root),
            "nfs_root_server": "ganesha",
            "firewall_out": str(self.firewall_file),
            **extra,
        }
        return [
            "ansible-playbook",
            "-i",
            inventory,
            self.playbook,
            "-e",
            json.dumps(variables),
            *args,
        ]

    @property
    def firewall_rules(self) -> list[dict[str, Any]]:
        return list(json.loads(self.firewall_file.read_text(encoding="utf-8")))

    @property
    def ganesha(self) -> str:
        return (self.etc / "ganesha" / "ganesha.conf").read_text(encoding="utf-8")


@pytest.fixture
def render(ansible_run: Callable[..., Any], tmp_path: Path) -> Render:
    return Render(ansible_run, tmp_path)


def _block(config: str, name: str, index: int = 0) -> str:
    """The text of the index-th top-level ``NAME { ... }`` block of a ganesha.conf."""
    blocks = re.findall(rf"^{name} \{{\n(.*?)^\}}", config, re.MULTILINE | re.DOTALL)
    return str(blocks[index])


def _param(block: str, name: str) -> str:
    match = re.search(rf"^\s*{name} = (.*);$", block, re.MULTILINE)
    assert match, f"{name} not in\n{block}"
    return match.group(1)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        pytest.param((4, 25), {"threads": 25, "connections": 1024}, id="100-pis"),
        pytest.param((50, 21), {"threads": 256, "connections": 2164}, id="1050-pis-capped"),
    ],
)
def test_ganesha_config_follows_the_model(render, model_dir, base_model, shape, expected):
    banks, size = shape
    threads, connections = expected["threads"], expected["connections"]
    result = render(model_dir(fleet_model(base_model, banks, size)))
    assert result.returncode == 0, result.stdout + result.stderr
    config = render.ganesha
    core = _block(config, "NFS_CORE_PARAM")
    assert _param(core, "RPC_Ioq_ThrdMax") == str(threads)
    assert _param(core, "RPC_Max_Connections") == str(connections)
    assert _param(core, "Protocols") == "3, 4"
    assert _param(core, "MNT_Port") == "20048"
    assert _param(core, "Enable_NLM") == "false"
    export = _block(config, "EXPORT")
    assert _param(export, "Path") == f'"{render.root}"'
    # v3 and v4 mount the same path
    assert _param(export, "Pseudo") == f'"{render.root}"'
    assert _param(export, "Access_Type") == "None"
    client = export.split("CLIENT {", 1)[1]
    assert _param(client, "Clients") == "10.42.0.0/16"
    assert _param(client, "Access_Type") == "RO"
    assert _param(client, "Squash") == "No_Root_Squash"
    assert config.count("EXPORT {") == 1, "no writable share unless nfs_root_shared_path is set"
    assert f"{threads} threads for {banks * size} Pis" in result.stdout
    opened = {(rule["proto"], rule["port"]) for rule in render.firewall_rules}
    assert opened == {("tcp", 111), ("udp", 111), ("tcp", 20048), ("udp", 20048), ("tcp", 2049)}
    assert all(rule["sources"] == ["10.42.0.0/16"] for rule in render.firewall_rules)
    assert all(rule["interface"] == "eth1" for rule in render.firewall_rules)


def test_writable_share_only_when_configured(render, model_dir):
    shared = render.tmp / "shared"
    result = render(model_dir(), nfs_root_shared_path=str(shared))
    assert result.returncode == 0, result.stdout + result.stderr
    config = render.ganesha
    assert config.count("EXPORT {") == 2
    root_client = _block(config, "EXPORT", 0).split("CLIENT {", 1)[1]
    shared_export = _block(config, "EXPORT", 1)
    shared_client = shared_export.split("CLIENT {", 1)[1]
    assert _param(root_client, "Access_Type") == "RO"
    assert _param(shared_export, "Path") == f'"{shared}"'
    assert _param(shared_client, "Access_Type") == "RW"
    assert _param(shared_client, "Squash") == "Root_Squash"
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert f"{render.root} read-only and {shared} read-write" in result.stdout


def test_kernel_server_config(render, model_dir, base_model):
    shared = render.tmp / "shared"
    inventory = model_dir(fleet_model(base_model, 4, 25))
    result = render(
        inventory,
        nfs_root_server="kernel",
        nfs_root_shared_path=str(shared),
        nfs_root_clients=["10.42.0.0/16", "10.99.0.0/24"],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    exports = (render.etc / "exports.d" / "bramble.exports").read_text(encoding="utf-8")
    lines = [line for line in exports.splitlines() if line and not line.startswith("#")]
    assert lines == [
        f"{render.root} 10.42.0.0/16(ro,no_root_squash,no_subtree_check)"
        " 10.99.0.0/24(ro,no_root_squash,no_subtree_check)",
        f"{shared} 10.42.0.0/16(rw,root_squash,no_subtree_check,sync)"
        " 10.99.0.0/24(rw,root_squash,no_subtree_check,sync)",
    ]
    nfs_conf = (render.etc / "nfs.conf.d" / "bramble.conf").read_text(encoding="utf-8")
    assert re.search(r"^\[nfsd\]\n(#.*\n)*threads = 25$", nfs_conf, re.MULTILINE), nfs_conf
    assert "\nvers3 = y\nvers4 = y\n" in nfs_conf
    assert "\n[mountd]\n" in nfs_conf
    assert "\nport = 20048\n" in nfs_conf
    assert not (render.etc / "ganesha").exists()
    assert "with the kernel NFS server" in result.stdout


def test_v4_only_drops_mount_and_rpcbind(render, model_dir):
    result = render(model_dir(), nfs_root_versions=[4], nfs_root_server="kernel")
    assert result.returncode == 0, result.stdout + result.stderr
    nfs_conf = (render.etc / "nfs.conf.d" / "bramble.conf").read_text(encoding="utf-8")
    assert "\nvers3 = n\nvers4 = y\n" in nfs_conf
    # NFSv4 needs neither rpcbind nor MOUNT: the firewall opens NFS only
    assert render.firewall_rules == [
        {
            "proto": "tcp",
            "port": 2049,
            "comment": "NFS",
            "interface": "eth1",
            "sources": ["10.42.0.0/16"],
        },
    ]


def test_check_mode_writes_nothing_and_second_run_changes_nothing(render, model_dir):
    inventory = model_dir()
    check = render(inventory, "--check", "--diff")
    assert check.returncode == 0, check.stdout + check.stderr
    assert _recap(check.stdout)["changed"] > 0
    assert "+    Protocols = 3, 4;" in check.stdout
    assert not render.etc.exists()

    first = render(inventory)
    assert first.returncode == 0, first.stdout + first.stderr
    assert _recap(first.stdout)["changed"] > 0
    before = render.ganesha
    mtime = os.stat(render.etc / "ganesha" / "ganesha.conf").st_mtime_ns

    second = render(inventory)
    assert second.returncode == 0, second.stdout + second.stderr
    assert _recap(second.stdout)["changed"] == 0
    again = render(inventory, "--check", "--diff")
    assert _recap(again.stdout)["changed"] == 0
    assert render.ganesha == before
    assert os.stat(render.etc / "ganesha" / "ganesha.conf").st_mtime_ns == mtime


def test_missing_root_names_the_pi_image_role(render, model_dir):
    missing = render.tmp / "not-built"
    result = render(model_dir(), nfs_root_export_path=str(missing))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{missing} is not a root file system yet" in output
    assert "pi_image role" in output
    assert not render.etc.exists()
    assert not missing.exists(), "the role must not create an empty root to export"


def test_unknown_server_is_refused_by_the_argument_spec(render, model_dir):
    result = render(model_dir(), nfs_root_server="nfsd")
    assert result.returncode != 0
    assert "nfs_root_server must be one of: auto, kernel, ganesha, got: nfsd" in result.stdout
    assert not render.etc.exists()


def test_bad_input_is_listed_before_any_change(render, model_dir):
    result = render(
        model_dir(),
        nfs_root_clients=["10.42.0.0/16", "everyone"],
        nfs_root_versions=[2, 3],
        nfs_root_shared_path=str(render.root),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "nfs_root_clients must list networks in CIDR form or addresses (not: everyone)" in output
    assert "nfs_root_versions must list 3 and/or 4 (is 2, 3)" in output
    assert "absolute path other than nfs_root_export_path" in output
    assert not render.etc.exists()


def test_auto_picks_ganesha_without_kernel_nfs(render):
    if Path("/proc/fs/nfsd").is_dir() and not Path("/.dockerenv").exists():
        pytest.skip("this host has a kernel NFS server: auto would pick it")
    result = render(INVENTORIES / "desk", nfs_root_server="auto")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "with NFS-Ganesha (nfs_root_server=auto, the " in result.stdout
    assert "Rendered (not serving)" in result.stdout
    # at least 8 threads, also for the 4 Pis of a desk cluster
    assert "8 threads for 4 Pis" in result.stdout
    assert (render.etc / "ganesha" / "ganesha.conf").is_file()


def test_a_root_on_overlayfs_is_refused(render, model_dir):
    """A container's overlay root has no NFS file handles: the role says so instead of serving
    an export that fails at the first mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting an overlay (in a private mount namespace) needs root")
    layers = {name: render.tmp / name for name in ("lower", "upper", "work", "merged")}
    for folder in layers.values():
        folder.mkdir()
    _fake_root(layers["lower"] / "root")
    export = layers["merged"] / "root"
    tool, *args = render.argv(model_dir(), nfs_root_export_path=str(export))
    mount = (
        'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3,nfs_export=off" "$4"'
        ' && shift 4 && exec "$@"'
    )
    result = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            mount,
            "overlay",
            *(str(layers[name]) for name in ("lower", "upper", "work", "merged")),
            str(BIN / str(tool)),
            *(str(arg) for arg in args),
        ],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"{export} is on overlayfs without nfs_export=on" in output
    assert not render.etc.exists()
