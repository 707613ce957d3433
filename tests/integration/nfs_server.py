"""NFS-Ganesha with the nfs_root role's config, run for real inside a test's network namespace.

One place for what the NFS tests and the boot test share: render ganesha.conf with the role
(render-only mode) and start rpcbind + NFS-Ganesha in a namespace, inside their own mount
namespace with a private tmpfs /run and /var/lib/nfs (no host daemon or state is touched), and
stop both again by PID, also on failure.

Needs root and the Debian packages nfs-ganesha nfs-ganesha-vfs rpcbind.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bramble.labnet import stop_process
from cluster_helpers import run_tool

START_TIMEOUT = 20.0

PLAYBOOK = """\
---
- name: Render nfs_root for an integration test
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  roles:
    - role: nfs_root
"""


def render_ganesha(tmp: Path, inventory: Path, export: Path, **variables: Any) -> Path:
    """ganesha.conf from the nfs_root role for ``inventory``, exporting ``export``."""
    playbook = tmp / "render-nfs.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    settings = {
        "nfs_root_manage_service": False,
        "nfs_root_server": "ganesha",
        "nfs_root_config_dir": str(tmp / "etc"),
        "nfs_root_export_path": str(export),
        **variables,
    }
    result = run_tool(
        "ansible-playbook", "-i", inventory, playbook, "-e", json.dumps(settings), timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp / "etc" / "ganesha" / "ganesha.conf"


def wait_for(what: str, ready: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    """Poll ``ready`` every 0.1 s; fail the test naming ``what`` (and the log's end) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    details = log.read_text(encoding="utf-8", errors="replace")[-3000:] if log else ""
    pytest.fail(f"{what} did not come up within {timeout:.0f} s\n{details}")


@contextlib.contextmanager
def ganesha(namespace: str, config: Path, log: Path, address: str) -> Iterator[None]:
    """rpcbind and NFS-Ganesha serving ``config`` in ``namespace``, registered at ``address``."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # rpcbind first, in its own mount namespace with a private /run and /var/lib/nfs.
        private = (
            "mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib/nfs"
            " && mkdir -p /run/rpcbind /run/ganesha && exec rpcbind -f"
        )
        rpcbind = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "unshare", "--mount", "--propagation", "private",
             "sh", "-c", private],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        processes.append(rpcbind)
        socket = Path(f"/proc/{rpcbind.pid}/root/run/rpcbind.sock")
        wait_for("rpcbind", lambda: rpcbind.poll() is None and socket.exists(), START_TIMEOUT)

        # NFS-Ganesha joins rpcbind's network and mount namespaces (nsenter execs: same PID).
        with log.open("wb") as output:
            server = subprocess.Popen(
                ["nsenter", f"--target={rpcbind.pid}", "--mount", "--net", "ganesha.nfsd",
                 "-F", "-L", str(log), "-p", "/run/ganesha/ganesha.pid", "-f", str(config)],
                stdout=output,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        processes.append(server)

        def registered() -> bool:
            assert server.poll() is None, log.read_text(encoding="utf-8", errors="replace")
            probe = subprocess.run(
                ["ip", "netns", "exec", namespace, "rpcinfo", "-p", address],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            services = {line.split()[0] for line in probe.stdout.splitlines()[1:] if line}
            return {"100003", "100005"} <= services

        wait_for("NFS-Ganesha", registered, START_TIMEOUT, log)
        yield
    finally:
        for process in reversed(processes):
            with contextlib.suppress(Exception):
                stop_process(process, timeout=10)
