"""``bramble warble run`` as a person would use it, through a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def bramble(*args: str, stdin: str = "", home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_DATA_HOME": str(home / "data"), "USER": "tester"}
    return subprocess.run(
        [sys.executable, "-m", "bramble.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def home(tmp_path):
    return tmp_path


def test_run_file_prints_output_and_exits_0(home):
    program = home / "hello.pi"
    program.write_text('#pi{PRINT("hello cluster")}\n', encoding="utf-8")
    done = bramble("warble", "run", str(program), home=home)
    assert (done.returncode, done.stdout, done.stderr) == (0, "hello cluster\n", "")


def test_run_stdin_with_typographic_quotes(home):
    done = bramble("warble", "run", "-", stdin="#pi{PRINT(\u201chi\u201d)}", home=home)
    assert (done.returncode, done.stdout) == (0, "hi\n")


def test_error_goes_to_stderr_with_exit_1(home):
    source = "#pi{x=1/16.0²*(4.0/(8*k+1)-2.0/(8*k+4)-1.0/(8*k+5)-1.0/(8*k+6)}"
    done = bramble("warble", "run", "-", stdin=source, home=home)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "error: line 1, column 63: missing ')' to close the '(' at line 1, column 15; found '}'\n"
    )
    assert "Traceback" not in done.stderr


def test_save_and_load_persist_in_the_default_store(home):
    assert bramble("warble", "run", "-", stdin='#pi{SAVE("pi",1)}', home=home).returncode == 0
    bump = '#pi{x=LOAD("pi");x++;SAVE("pi",x);PRINT(x)}'
    assert bramble("warble", "run", "-", stdin=bump, home=home).stdout == "2\n"
    assert (home / "data" / "bramble" / "warble.sqlite3").is_file()
    other = home / "other.sqlite3"
    assert bramble("warble", "run", "-", "--store", str(other), stdin=bump, home=home).stdout == (
        "1\n"
    )
    as_bob = bramble("warble", "run", "-", "--user", "bob", stdin=bump, home=home)
    assert as_bob.stdout == "1\n"


def test_lights_and_sound_are_printed_to_stderr(home):
    source = '#pi{LIGHTS(0,255,0,0) PRINT("x") LIGHTS(23,0,255,0) PLAYSOUND("http://example.org/tardis.mp3")}'
    done = bramble("warble", "run", "-", stdin=source, home=home)
    assert done.returncode == 0
    assert done.stdout == "x\n"
    assert done.stderr.splitlines() == [
        "light 0 -> (255,0,0)",
        "light 23 -> (0,255,0)",
        "sound http://example.org/tardis.mp3",
    ]


def test_sound_hosts_option_replaces_the_allow_list(home):
    source = 'PLAYSOUND("https://sounds.test/a.mp3")'
    refused = bramble("warble", "run", "-", stdin=source, home=home)
    assert refused.returncode == 1
    assert "not on the allow-list (allowed: example.org)" in refused.stderr
    allowed = bramble("warble", "run", "-", "--sound-host", "sounds.test", stdin=source, home=home)
    assert allowed.returncode == 0
    assert allowed.stderr == "sound https://sounds.test/a.mp3\n"


def test_limits_apply(home):
    done = bramble("warble", "run", "-", stdin="PRINT(1)\nSETPRECISION(10001)", home=home)
    assert (done.returncode, done.stdout) == (1, "1\n")
    assert (
        done.stderr == "error: line 2, column 1: SETPRECISION: at most 10,000 digits, not 10001\n"
    )


def test_in_process_option(home):
    done = bramble("warble", "run", "-", "--in-process", stdin="PRINT(1+1)", home=home)
    assert (done.returncode, done.stdout) == (0, "2\n")


def test_unreadable_inputs(home):
    missing = bramble("warble", "run", str(home / "nope.pi"), home=home)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: cannot read ")
    binary = home / "binary.pi"
    binary.write_bytes(b"\xff\xfe\x00")
    assert bramble("warble", "run", str(binary), home=home).stderr == (
        f"error: {binary} is not UTF-8 text\n"
    )
    usage = bramble("warble", home=home)
    assert usage.returncode == 2
