"""SAVE/LOAD stores and the PLAYSOUND allow-list."""

from __future__ import annotations

import sqlite3

import pytest

from bramble.warble import MemoryStore, SqliteStore, StoreFullError, run
from bramble.warble.effects import check_sound_url, host_allowed
from bramble.warble.store import default_store_path


def test_sqlite_store_persists_per_user(tmp_path):
    path = tmp_path / "deep" / "warble.sqlite3"
    first = SqliteStore(path)
    assert run('SAVE("pi", 1)', store=first, user="ann").error is None
    first.close()
    second = SqliteStore(path)
    bump = 'x=LOAD("pi");x++;SAVE("pi",x);PRINT(x)'
    assert run(bump, store=second, user="ann").output == "2\n"
    assert run(bump, store=second, user="bob").output == "1\n"
    assert second.snapshot("ann") == {"pi": "n:1p1"}
    second.close()
    rows = sqlite3.connect(path).execute("SELECT user, key FROM warble_values").fetchall()
    assert sorted(rows) == [("ann", "pi"), ("bob", "pi")]


@pytest.mark.parametrize("factory", [MemoryStore, lambda: SqliteStore(":memory:")])
def test_store_protocol(factory):
    store = factory()
    assert store.load("u", "k") is None
    store.save("u", "k", "s:v", max_keys=1)
    store.save("u", "k", "s:w", max_keys=1)
    assert store.load("u", "k") == "s:w"
    with pytest.raises(StoreFullError):
        store.save("u", "other", "s:x", max_keys=1)
    assert store.snapshot("u") == {"k": "s:w"}
    assert store.snapshot("nobody") == {}


def test_unreadable_stored_value_is_a_warble_error():
    store = MemoryStore({"u": {"bad": "n:zz", "odd": "q:1"}})
    for key in ("bad", "odd"):
        result = run(f'PRINT(LOAD("{key}"))', store=store, user="u")
        assert str(result.error) == (
            f"line 1, column 7: LOAD: the value kept under '{key}' is unreadable"
        )


def test_store_failure_is_a_warble_error():
    class Broken(MemoryStore):
        def load(self, user, key):
            raise OSError("disk on fire")

        def save(self, user, key, value, *, max_keys):
            raise OSError("disk on fire")

    assert "LOAD: the store is not available" in str(run('x=LOAD("a")', store=Broken()).error)
    assert "SAVE: the store is not available" in str(run('SAVE("a",1)', store=Broken()).error)


def test_default_store_path_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store_path() == tmp_path / "bramble" / "warble.sqlite3"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_store_path() == tmp_path / ".local" / "share" / "bramble" / "warble.sqlite3"


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/tardis.mp3",
        "https://example.org/a/b.ogg?x=1",
        "HTTPS://EXAMPLE.ORG/x",
        "http://example.org:80/x",
        "https://example.org:443/x",
    ],
)
def test_allowed_sound_urls(url):
    assert check_sound_url(url, ("example.org",)) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.org/x", "only http:// and https://"),
        ("file:///etc/passwd", "only http:// and https://"),
        ("javascript:alert(1)", "only http:// and https://"),
        ("http://evil.example/x", "host evil.example is not on the allow-list"),
        ("http://example.org.evil.com/x", "not on the allow-list"),
        ("http://sub.example.org/x", "not on the allow-list"),
        ("http://user:pw@example.org/x", "user name or password"),
        ("http://example.org@evil.com/x", "user name or password"),
        ("http://example.org:8080/x", "port"),
        ("http://127.0.0.1/x", "not on the allow-list"),
        ("http:///x", "names no host"),
        ("http://exa mple.org/x", "spaces or control characters"),
        ("http://example.org/\x00", "spaces or control characters"),
        ("http://example.org/" + "a" * 3000, "longer than 2048"),
        ("http://[::1/x", "not a valid URL"),
    ],
)
def test_refused_sound_urls(url, reason):
    with pytest.raises(ValueError, match=r".*") as caught:
        check_sound_url(url, ("example.org",))
    assert reason in str(caught.value)


def test_subdomain_entries():
    assert host_allowed("cdn.example.org", (".example.org",))
    assert host_allowed("example.org", (".example.org",))
    assert not host_allowed("badexample.org", (".example.org",))


def test_playsound_refusal_names_the_allow_list(warble):
    result = warble('PLAYSOUND("http://evil.example/x.mp3")')
    assert str(result.error) == (
        "line 1, column 1: PLAYSOUND: host evil.example is not on the allow-list "
        "(allowed: example.org)"
    )
