"""The nfs_root role's NFS-Ganesha configuration, served for real inside network namespaces.

The role renders ganesha.conf for the lab model (render-only mode); NFS-Ganesha and rpcbind
run with it in a server namespace, inside their own mount namespace with a private tmpfs /run
and /var/lib/nfs (so no host daemon or state is touched). Two client namespaces hang off the
server on veth pairs: a Pi of the lab model (inside the cluster network) and an outsider. The
libnfs tools (nfs-ls, nfs-cat, nfs-cp) speak NFSv3 (rpcbind, MOUNT, NFS) and NFSv4 to it.

Needs root and the Debian packages nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import netaddr
import pytest

from bramble.model import load_cluster
from cluster_helpers import INVENTORIES
from integration.nfs_server import ganesha, render_ganesha

pytestmark = pytest.mark.integration

TOOLS = {
    "ganesha.nfsd": "nfs-ganesha nfs-ganesha-vfs",
    "rpcbind": "rpcbind",
    "rpcinfo": "rpcbind",
    "nfs-ls": "libnfs-utils",
    "nfs-cat": "libnfs-utils",
    "nfs-cp": "libnfs-utils",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
}
MODEL = INVENTORIES / "lab"
#: The outsider's link: TEST-NET-2, never the cluster network of the lab.
OUTSIDE_SERVER, OUTSIDE_CLIENT = "198.51.100.1", "198.51.100.2"
CLIENT_TIMEOUT = 30


@dataclass
class Server:
    """What the tests need to reach the running server."""

    client_ns: str
    outside_ns: str
    server_ns: str
    head: str
    root: Path
    shared: Path
    blob: bytes
    log: Path

    def url(self, path: str, version: int, server: str | None = None, **query: str) -> str:
        options = "&".join(f"{key}={value}" for key, value in {"version": version, **query}.items())
        return f"nfs://{server or self.head}{path}?{options}"

    def client(self, namespace: str, *argv: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["ip", "netns", "exec", namespace, *argv],
            capture_output=True,
            timeout=CLIENT_TIMEOUT,
            check=False,
        )


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=10)


def _delete(namespaces: list[str]) -> None:
    for namespace in namespaces:
        with contextlib.suppress(Exception):
            _ip("netns", "del", namespace)


def _fake_root(root: Path) -> bytes:
    """A small Pi root: a few files, one only root may read, one binary."""
    (root / "etc").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "etc" / "os-release").write_text('ID=debian\nVERSION_ID="12"\n', encoding="utf-8")
    (root / "etc" / "hostname").write_text("bramble-pi\n", encoding="utf-8")
    shadow = root / "etc" / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\n", encoding="utf-8")
    shadow.chmod(0o600)
    blob = secrets.token_bytes(300_000)
    (root / "bin" / "blob").write_bytes(blob)
    return blob


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces and NFS-Ganesha need root")
    missing = sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})
    assert not missing, f"install the Debian packages: apt-get install {' '.join(missing)}"

    cluster = load_cluster(MODEL)
    network = netaddr.IPNetwork(cluster.summary()["network"])
    head = cluster.summary()["head_address"]
    pi = cluster.pis[0]
    assert pi.ip is not None
    assert netaddr.IPAddress(OUTSIDE_CLIENT) not in network

    tmp = tmp_path_factory.mktemp("nfs_root")
    root, shared = tmp / "root", tmp / "shared"
    blob = _fake_root(root)
    config = render_ganesha(tmp, MODEL, root, nfs_root_shared_path=str(shared))
    log = tmp / "ganesha.log"

    prefix = f"brt-{secrets.token_hex(3)}-nfs"
    server_ns, client_ns, outside_ns = f"{prefix}-srv", f"{prefix}-pi", f"{prefix}-out"
    namespaces: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.callback(_delete, namespaces)
        for namespace in (server_ns, client_ns, outside_ns):
            _ip("netns", "add", namespace)
            namespaces.append(namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
        # Both veth ends are created inside the namespaces: nothing appears on the host.
        _ip(
            "-n",
            server_ns,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "eth0",
            "netns",
            client_ns,
        )
        _ip(
            "-n",
            server_ns,
            "link",
            "add",
            "eth1",
            "type",
            "veth",
            "peer",
            "eth0",
            "netns",
            outside_ns,
        )
        prefixlen = network.prefixlen
        _ip("-n", server_ns, "addr", "add", f"{head}/{prefixlen}", "dev", "eth0")
        _ip("-n", server_ns, "addr", "add", f"{OUTSIDE_SERVER}/24", "dev", "eth1")
        _ip("-n", client_ns, "addr", "add", f"{pi.ip}/{prefixlen}", "dev", "eth0")
        _ip("-n", outside_ns, "addr", "add", f"{OUTSIDE_CLIENT}/24", "dev", "eth0")
        for namespace, link in ((server_ns, "eth0"), (server_ns, "eth1"), (client_ns, "eth0")):
            _ip("-n", namespace, "link", "set", link, "up")
        _ip("-n", outside_ns, "link", "set", "eth0", "up")

        stack.enter_context(ganesha(server_ns, config, log, head))
        yield Server(client_ns, outside_ns, server_ns, head, root, shared, blob, log)


VERSIONS = [pytest.param(3, id="nfsv3"), pytest.param(4, id="nfsv4")]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_pi_reads_the_root_byte_exact(server: Server, version: int) -> None:
    listing = server.client(server.client_ns, "nfs-ls", server.url(f"{server.root}/etc", version))
    assert listing.returncode == 0, listing.stderr
    assert {line.split()[-1] for line in listing.stdout.decode().splitlines()} == {
        "hostname",
        "os-release",
        "shadow",
    }
    blob = server.client(
        server.client_ns, "nfs-cat", server.url(f"{server.root}/bin/blob", version)
    )
    assert blob.returncode == 0, blob.stderr
    assert blob.stdout == server.blob
    hostname = server.client(
        server.client_ns, "nfs-cat", server.url(f"{server.root}/etc/hostname", version)
    )
    assert hostname.stdout == b"bramble-pi\n"


@pytest.mark.parametrize("version", VERSIONS)
def test_root_on_a_pi_reads_root_only_files_other_users_do_not(
    server: Server, version: int
) -> None:
    # no_root_squash: a Pi boots as root and must read files such as /etc/shadow
    shadow = f"{server.root}/etc/shadow"
    as_root = server.client(server.client_ns, "nfs-cat", server.url(shadow, version))
    assert as_root.returncode == 0, as_root.stderr
    assert as_root.stdout == (server.root / "etc" / "shadow").read_bytes()
    as_user = server.client(
        server.client_ns, "nfs-cat", server.url(shadow, version, uid="1000", gid="1000")
    )
    assert as_user.returncode != 0
    assert b"root:" not in as_user.stdout


@pytest.mark.parametrize("version", VERSIONS)
def test_a_write_to_the_root_is_refused(server: Server, version: int, tmp_path: Path) -> None:
    local = tmp_path / "evil"
    local.write_text("overwritten\n", encoding="utf-8")
    for target in ("etc/new-file", "etc/hostname"):
        result = server.client(
            server.client_ns, "nfs-cp", str(local), server.url(f"{server.root}/{target}", version)
        )
        assert result.returncode != 0, target
        assert b"ROFS" in result.stderr, result.stderr
    assert not (server.root / "etc" / "new-file").exists()
    assert (server.root / "etc" / "hostname").read_text(encoding="utf-8") == "bramble-pi\n"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_client_outside_the_cluster_network_is_refused(server: Server, version: int) -> None:
    # The outsider reaches the server (rpcbind answers it): the refusal is the export's.
    reachable = server.client(server.outside_ns, "rpcinfo", "-p", OUTSIDE_SERVER)
    assert reachable.returncode == 0, reachable.stderr
    assert b"100003" in reachable.stdout
    url = server.url(f"{server.root}/bin/blob", version, server=OUTSIDE_SERVER)
    result = server.client(server.outside_ns, "nfs-cat", url)
    assert result.returncode != 0
    assert result.stdout == b""
    expected = b"MNT3ERR_ACCES" if version == 3 else b"NFS4ERR_NOENT"
    assert expected in result.stderr, result.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_the_writable_share_takes_writes_root_squashed(
    server: Server, version: int, tmp_path: Path
) -> None:
    local = tmp_path / "note"
    local.write_text(f"written over NFSv{version}\n", encoding="utf-8")
    target = server.shared / f"note-v{version}"
    result = server.client(server.client_ns, "nfs-cp", str(local), server.url(str(target), version))
    assert result.returncode == 0, result.stderr
    assert target.read_text(encoding="utf-8") == f"written over NFSv{version}\n"
    assert target.stat().st_uid != 0, "root on a Pi must not own files on the shared share"
