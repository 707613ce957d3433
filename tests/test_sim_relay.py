"""The HTTP relay board simulator, spoken to with a plain HTTP client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from bramble.sim.power import Outlets
from bramble.sim.relay import RelayBoardSim

TOKEN = "s3cret-token"  # noqa: S105 - the simulator's test secret


@pytest.fixture
def board() -> Iterator[RelayBoardSim]:
    with RelayBoardSim(Outlets(4, on=[3]), TOKEN) as sim:
        yield sim


def call(
    sim: RelayBoardSim, method: str, path: str, body: Any = None, token: str = TOKEN
) -> tuple[int, Any, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{sim.port}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=2) as answer:
            return answer.status, json.loads(answer.read()), answer.headers.get("Connection", "")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers.get("Connection", "")


def test_reads_and_switches_relays(board: RelayBoardSim) -> None:
    assert call(board, "GET", "/relays")[1] == {
        "relays": {"1": "off", "2": "off", "3": "on", "4": "off"}
    }
    status, answer, connection = call(board, "PUT", "/relay/2", {"state": "on"})
    assert (status, answer) == (200, {"relay": 2, "state": "on"})
    assert connection == "close"  # one request per connection, like the sketch
    assert board.outlets.get(2) is True
    assert call(board, "GET", "/relay/2")[1] == {"relay": 2, "state": "on"}


def test_refuses_wrong_token_and_bad_requests(board: RelayBoardSim) -> None:
    assert call(board, "GET", "/relays", token="wrong")[:2]  # noqa: S106 == (401, {"error": "unauthorized"})
    assert call(board, "PUT", "/relay/1", {"state": "on"}, token="")[0] == 401
    assert board.outlets.get(1) is False
    assert call(board, "PUT", "/relay/9", {"state": "on"})[0] == 404
    assert call(board, "PUT", "/relay/1", {"state": "sideways"})[0] == 400
    assert call(board, "PUT", "/relay/1", {"state": "on", "pad": "x" * 400})[0] == 400


def test_stuck_relay_reads_back_unchanged(board: RelayBoardSim) -> None:
    board.faults.stuck.add(1)
    assert call(board, "PUT", "/relay/1", {"state": "on"})[1] == {"relay": 1, "state": "off"}


def test_refuse_auth_and_hang_faults(board: RelayBoardSim) -> None:
    board.faults.refuse_auth = True
    assert call(board, "GET", "/relays")[0] == 401
    board.faults.refuse_auth = False
    board.faults.hang = True
    with pytest.raises(TimeoutError):
        call(board, "GET", "/relays")
