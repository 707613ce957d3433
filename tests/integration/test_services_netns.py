"""bramble-server and bramble-agent as real processes on a lab bridge in network namespaces.

The server runs in the head namespace (10.42.0.1/16), one agent in each of three Pi
namespaces (two Pis of the model, one MAC the model does not know). The agents find the
server only through its broadcast beacon. Everything talks over the bridge; the test reaches
the API from inside the head namespace (``in_netns``). Intervals are shortened (beacon and
telemetry every 0.5 s). The namespaces and processes are removed by ``LabNet``.
"""

from __future__ import annotations

import itertools
import json
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bramble.labnet import LabNet, Node, in_netns
from bramble.services.agent.http import MAX_BODY_BYTES
from bramble.services.beacon import make_beacon

from .conftest import HEAD_IP, missing_requirements

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

KEY = "cluster-key-" + "k" * 40
AGENT_TOKEN = "agent-token-0123456789abcdef"  # noqa: S105 - test secret
ADMIN_TOKEN = "admin-token-0123456789abcdef"  # noqa: S105 - test secret
BROADCAST = "10.42.255.255"
INTERVAL = 0.5
#: (MAC, address, name, bank, slot); the last MAC is not in the model.
PIS = (
    ("b8:27:eb:34:46:90", "10.42.1.1", "bank01-pi01", 1, 1),
    ("b8:27:eb:2b:3c:4d", "10.42.1.2", "bank01-pi02", 1, 2),
    ("b8:27:eb:99:88:77", "10.42.1.3", None, None, None),
)


def wait_until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check`` (bounded) until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@dataclass
class Services:
    """The lab: bridge, head with bramble-server, Pis with bramble-agent."""

    net: LabNet
    head: Node
    pis: list[Node]
    work: Path
    server: Any = None
    agents: list[Any] = field(default_factory=list)

    def start_server(self) -> None:
        log = (self.work / "server.log").open("a")
        self.server = self.net.popen(
            self.head.netns,
            [sys.executable, "-m", "bramble.services.server.main", "--config",
             str(self.work / "server.toml"), "--log-level", "DEBUG"],
            stdout=log, stderr=log,
        )  # fmt: skip
        wait_until("the server's API", lambda: self.api("GET", "/healthz")[0] == 200)

    def stop_server(self) -> None:
        assert self.net.stop(self.server, timeout=10) == 0

    def http(
        self, method: str, url: str, token: str | None, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        """One request from inside the head namespace; (status, JSON body)."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - lab URL
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with in_netns(self.head.netns):
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    return response.status, json.loads(response.read() or b"null")
            except urllib.error.HTTPError as error:
                text = error.read()
                return error.code, json.loads(text) if text.startswith(b"{") else text

    def api(self, method: str, path: str, body: Any = None, token: str | None = ADMIN_TOKEN,
            raw: bytes | None = None) -> tuple[int, Any]:  # fmt: skip
        return self.http(method, f"http://{HEAD_IP}:8470{path}", token, body, raw)

    def agent(self, index: int, path: str = "/health", **kwargs: Any) -> tuple[int, Any]:
        kwargs.setdefault("token", AGENT_TOKEN)
        method = "POST" if path == "/jobs" else "GET"
        return self.http(method, f"http://{PIS[index][1]}:8471{path}", **kwargs)

    def nodes(self) -> dict[str, Any]:
        status, body = self.api("GET", "/api/v1/nodes")
        assert status == 200, body
        return {n["mac"]: n for n in body["nodes"]}

    def set_cpu(self, index: int, percent: float) -> None:
        (self.work / f"cpu{index}").write_text(str(percent))

    def registered_events(self, since: float) -> set[str]:
        status, body = self.api("GET", "/api/v1/events?limit=500")
        assert status == 200, body
        return {
            e["mac"]
            for e in body["events"]
            if e["kind"] in ("registered", "untrusted") and e["ts"] > since
        }


def write_secret(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def write_configs(work: Path) -> None:
    auth = (
        f'cluster_key_file = "{write_secret(work / "cluster.key", KEY)}"\n'
        f'agent_token_file = "{write_secret(work / "agent.token", AGENT_TOKEN)}"\n'
    )
    model = [
        {"name": name, "bank": bank, "slot": slot, "mac": mac, "ip": ip}
        for mac, ip, name, bank, slot in PIS
        if name
    ]
    (work / "nodes.json").write_text(json.dumps(model))
    (work / "server.toml").write_text(
        f'[server]\ncluster = "lab"\nadvertise = "{HEAD_IP}"\n'
        f'[beacon]\ninterval = {INTERVAL}\nbroadcast = "{BROADCAST}"\n'
        f'[auth]\n{auth}admin_token_file = "{write_secret(work / "admin.token", ADMIN_TOKEN)}"\n'
        f'[store]\nsqlite = "{work / "server.db"}"\n'
        f'[model]\nnodes_file = "{work / "nodes.json"}"\n'
        "[health]\ninterval = 1.0\ntimeout = 1.0\n"
        f"[telemetry]\ninterval = {INTERVAL}\nbatch_seconds = 0.2\n"
        "[dispatch]\ncpu_threshold = 30.0\ntimeout = 20.0\n"
        "[limits]\nmax_body_bytes = 65536\n"
    )
    (work / "agent.toml").write_text(
        '[agent]\ncluster = "lab"\ninterface = "eth0"\n'
        f"[auth]\n{auth}"
        f"[telemetry]\ninterval = {INTERVAL}\nmax_backoff = 2.0\n"
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    work = tmp_path_factory.mktemp("services")
    write_configs(work)
    with LabNet() as net:
        head = net.add_head(f"{HEAD_IP}/16")
        pis = []
        for mac, ip, *_ in PIS:
            node = net.add_pi(mac)
            net.add_address(node, f"{ip}/16")
            pis.append(node)
        services = Services(net, head, pis, work)
        for index, node in enumerate(pis):
            services.set_cpu(index, 50.0)
            log = (work / f"agent{index}.log").open("a")
            services.agents.append(
                net.popen(
                    node.netns,
                    [
                        sys.executable,
                        "-m",
                        "bramble.services.agent.main",
                        "--config",
                        str(work / "agent.toml"),
                        "--test-cpu-file",
                        str(work / f"cpu{index}"),
                    ],
                    stdout=log,
                    stderr=log,
                )
            )
        services.start_server()
        yield services


def test_agents_hear_the_broadcast_beacon_and_register(lab: Services):
    nodes = wait_until("three registrations", lambda: len(lab.nodes()) == 3 and lab.nodes())
    for mac, ip, name, bank, slot in PIS:
        node = nodes[mac]
        assert (node["ip"], node["name"], node["bank"], node["slot"]) == (ip, name, bank, slot)
        assert node["trusted"] is (name is not None)  # the unknown MAC is flagged, not trusted
        assert node["agent_port"] == 8471
    wait_until("telemetry from every node",
               lambda: all(n["latest"] for n in lab.nodes().values()))  # fmt: skip
    status, health = lab.agent(0)
    assert status == 200
    assert health["registered"] is True
    assert health["server"] == f"http://{HEAD_IP}:8470"
    assert health["beacons"]["accepted"] >= 1


def test_forged_and_replayed_beacons_are_ignored(lab: Services):
    wait_until("registrations", lambda: len(lab.nodes()) == 3)
    listener = None
    with in_netns(lab.pis[0].netns):
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("", 47470))
        listener.settimeout(5)
        captured, _ = listener.recvfrom(1024)  # a real beacon, already accepted by the agents
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        forged = make_beacon(b"f" * 40, "lab", "10.42.0.99", 8470)  # the wrong key
        before = [lab.agent(i)[1]["beacons"]["rejected"] for i in range(3)]
        sender.sendto(forged, (BROADCAST, 47470))
        sender.sendto(captured, (BROADCAST, 47470))
        for index in range(3):
            rejected = wait_until(
                f"agent {index} to refuse both",
                lambda i=index: (
                    (r := lab.agent(i)[1]["beacons"]["rejected"]).get("replay", 0)
                    > before[i].get("replay", 0)
                    and r.get("signature", 0) > before[i].get("signature", 0)
                    and r
                ),
            )
            assert rejected
            assert lab.agent(index)[1]["server"] == f"http://{HEAD_IP}:8470"
    finally:
        listener.close()
        sender.close()


def test_agents_buffer_through_a_server_restart_and_back_fill_everything(lab: Services):
    wait_until("registrations", lambda: len(lab.nodes()) == 3)
    first = {mac: n["registered_at"] for mac, n in lab.nodes().items()}
    mac = PIS[1][0]
    lab.stop_server()
    stopped = time.time()
    wait_until("the agent to notice", lambda: lab.agent(1)[1]["failures_in_a_row"] >= 1)
    time.sleep(2.5)
    buffered = lab.agent(1)[1]["buffered"]
    assert buffered >= 4  # about 5 samples taken while the server was away
    # from before the start: an agent woken by the new server's first beacon may register
    # before start_server() has seen the API answer
    restarted = time.time()
    lab.start_server()
    # the registry survived: every node is known at once, with its first registration time
    assert {m: n["registered_at"] for m, n in lab.nodes().items()} == first
    wait_until("every agent to register again",
               lambda: lab.registered_events(restarted) == {p[0] for p in PIS}, 15)  # fmt: skip
    wait_until("the back-fill", lambda: lab.agent(1)[1]["buffered"] == 0)
    health = lab.agent(1)[1]

    def stored() -> list[float] | None:
        # the server writes in batches (every 0.2 s here): wait until the batch is in the store
        status, node = lab.api("GET", f"/api/v1/nodes/{mac}?history=1000")
        assert status == 200, node
        stamps = [s["ts"] for s in node["history"]]
        return stamps if len(stamps) >= health["accepted"] else None

    stamps = wait_until("the accepted samples in the store", stored, 10)
    assert stamps == sorted(stamps)
    assert health["dropped"] == 0
    # nothing lost: what the agent had accepted is stored (it may have sent one more since)
    assert health["accepted"] <= len(stamps) <= health["accepted"] + 2
    during = [t for t in stamps if stopped <= t <= restarted]
    assert len(during) >= 4  # the outage's samples reached the store after it
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) < 3 * INTERVAL, "a hole in the telemetry"


def run_job(lab: Services, source: str = '#pi{PRINT("hi")}') -> dict[str, Any]:
    status, job = lab.api("POST", "/api/v1/jobs", {"kind": "warble", "source": source,
                                                   "user": "ada"})  # fmt: skip
    assert status == 200, job
    return wait_until(
        f"job {job['id']}",
        lambda: (
            (j := lab.api("GET", f"/api/v1/jobs/{job['id']}")[1])["state"] in ("done", "failed")
            and j
        ),
        30,
    )


def test_dispatch_picks_only_nodes_under_the_cpu_threshold(lab: Services):
    busy, idle = PIS[0][0], PIS[1][0]
    lab.set_cpu(0, 90.0)
    lab.set_cpu(1, 5.0)
    lab.set_cpu(2, 0.0)  # idle but not in the model: never trusted with a job
    wait_until(
        "the new CPU figures",
        lambda: [lab.nodes()[m]["latest"]["cpu_percent"] for m, *_ in PIS] == [90.0, 5.0, 0.0],
    )
    for _ in range(3):
        job = run_job(lab)
        assert (job["state"], job["output"], job["node"]) == ("done", "hi\n", PIS[1][2]), job
    lab.set_cpu(1, 95.0)  # now every trusted node is busy
    wait_until("node 2 busy", lambda: lab.nodes()[idle]["latest"]["cpu_percent"] == 95.0)
    status, waiting = lab.api("POST", "/api/v1/jobs", {"kind": "warble",
                                                       "source": '#pi{PRINT("later")}',
                                                       "user": "ada"})  # fmt: skip
    assert status == 200
    time.sleep(2)
    assert lab.api("GET", f"/api/v1/jobs/{waiting['id']}")[1]["state"] in (
        "queued",
        "waiting",
        "running",
    )
    lab.set_cpu(0, 10.0)
    job = wait_until(
        "the waiting job",
        lambda: (j := lab.api("GET", f"/api/v1/jobs/{waiting['id']}")[1])["state"] == "done" and j,
    )
    assert job["node"] == PIS[0][2]
    assert lab.nodes()[busy]["latest"]["cpu_percent"] == 10.0


def test_unauthenticated_or_oversized_requests_are_refused(lab: Services):
    register = {"mac": "b8:27:eb:00:00:01", "ip": "10.42.1.9", "hostname": "x",
                "agent_version": "0", "agent_port": 8471}  # fmt: skip
    assert lab.api("POST", "/api/v1/register", register, token=None)[0] == 401
    assert lab.api("POST", "/api/v1/register", register, token="wrong-token-123456789")[0] == 401  # noqa: S106
    assert lab.api("GET", "/api/v1/nodes", token=AGENT_TOKEN)[0] == 403  # agents are not admins
    assert lab.api("POST", "/api/v1/jobs", {"kind": "warble", "source": "x", "user": "a"},
                   token=AGENT_TOKEN)[0] == 403  # fmt: skip
    huge = json.dumps({"mac": PIS[0][0], "samples": [], "pad": "x" * 70_000}).encode()
    assert lab.api("POST", "/api/v1/telemetry", token=AGENT_TOKEN, raw=huge)[0] == 413
    assert "b8:27:eb:00:00:01" not in lab.nodes()
    # the agents' own API: the server's token only, small bodies only, Warble jobs only
    assert lab.agent(0, token=None)[0] == 401
    assert lab.agent(0, token=ADMIN_TOKEN)[0] == 401
    job = {"id": 1, "kind": "warble", "source": "x" * (MAX_BODY_BYTES + 1), "user": "a"}
    assert lab.agent(0, "/jobs", body=job)[0] == 413
    assert lab.agent(0, "/jobs", body=job | {"source": "id", "kind": "shell"})[0] == 422
