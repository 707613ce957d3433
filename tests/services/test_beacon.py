"""The signed beacon: what make_beacon builds and what BeaconVerifier accepts or refuses."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from bramble.services.beacon import MAX_DATAGRAM, Beacon, BeaconVerifier, make_beacon

KEY = b"c" * 32
NOW = 1_800_000_000.0


def verifier() -> BeaconVerifier:
    return BeaconVerifier(KEY, "lab", max_skew=30.0)


def forge(body: dict[str, object], key: bytes = KEY) -> bytes:
    text = json.dumps(body)
    sig = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"b": text, "sig": sig}).encode()


def good_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "v": 1,
        "cluster": "lab",
        "server": "10.42.0.1",
        "port": 8470,
        "ts": NOW,
        "nonce": "0123456789abcdef",
    }
    body.update(changes)
    return body


def test_a_fresh_beacon_is_accepted_with_its_contents() -> None:
    data = make_beacon(KEY, "lab", "10.42.0.1", 8470, now=NOW, nonce="0123456789abcdef")
    assert len(data) <= MAX_DATAGRAM
    outer = json.loads(data)
    assert json.loads(outer["b"])["v"] == 1
    check = verifier()
    assert check.verify(data, NOW + 1) == Beacon("lab", "10.42.0.1", 8470, NOW, "0123456789abcdef")
    assert check.accepted == 1


def test_each_beacon_has_a_new_nonce() -> None:
    check = verifier()
    for _ in range(5):
        assert check.verify(make_beacon(KEY, "lab", "10.42.0.1", 8470, now=NOW), NOW)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (forge(good_body(), key=b"x" * 32), "signature"),
        (json.dumps({"b": json.dumps(good_body()), "sig": "00" * 32}).encode(), "signature"),
        (json.dumps({"b": json.dumps(good_body())}).encode(), "malformed"),
        (b"\xff\xfe not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (b"x" * (MAX_DATAGRAM + 1), "size"),
        (forge(good_body(v=2)), "version"),
        (forge(good_body(cluster="other")), "cluster"),
        (forge(good_body(ts=NOW - 31)), "stale"),
        (forge(good_body(ts=NOW + 31)), "stale"),
        (forge(good_body(server="head.example")), "malformed"),
        (forge(good_body(port=0)), "malformed"),
        (forge(good_body(nonce="short")), "malformed"),
        (forge(good_body(ts=True)), "malformed"),
        (
            json.dumps({"b": "{", "sig": hmac.new(KEY, b"{", hashlib.sha256).hexdigest()}).encode(),
            "malformed",
        ),
        (
            json.dumps(
                {"b": json.dumps(good_body()), "sig": "é" * 64}, ensure_ascii=False
            ).encode(),
            "signature",
        ),
    ],
)
def test_bad_beacons_are_refused_and_counted(data: bytes, reason: str) -> None:
    check = verifier()
    assert check.verify(data, NOW) is None
    assert check.rejected == {reason: 1}
    assert check.accepted == 0


def test_a_replayed_beacon_is_refused_while_it_would_still_be_fresh() -> None:
    data = make_beacon(KEY, "lab", "10.42.0.1", 8470, now=NOW)
    check = verifier()
    assert check.verify(data, NOW) is not None
    assert check.verify(data, NOW + 10) is None
    assert check.verify(data, NOW + 29.9) is None
    assert check.rejected["replay"] == 2
    # once out of the window it is refused as stale, and its nonce is forgotten
    assert check.verify(data, NOW + 31) is None
    assert check.rejected["stale"] == 1
    assert check._seen == {}


def test_nonce_memory_is_bounded() -> None:
    check = BeaconVerifier(KEY, "lab", max_nonces=8)
    for i in range(50):
        assert check.verify(make_beacon(KEY, "lab", "10.42.0.1", 8470, now=NOW + i * 0.01), NOW)
    assert len(check._seen) == 8


def test_make_beacon_refuses_what_agents_would_refuse() -> None:
    with pytest.raises(ValueError, match="IPv4"):
        make_beacon(KEY, "lab", "::1", 8470)
    with pytest.raises(ValueError, match="port"):
        make_beacon(KEY, "lab", "10.42.0.1", 70000)
