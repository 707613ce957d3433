"""Server and agent config files: defaults, strictness, error messages, env, secret files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bramble.services.config import (
    ConfigError,
    load_agent_config,
    load_agent_secrets,
    load_server_config,
    load_server_secrets,
    read_secret,
)

ROOT = Path(__file__).resolve().parents[2]
MINIMAL_SERVER = """
[server]
cluster = "lab"
advertise = "10.42.0.1"
[beacon]
broadcast = "10.42.255.255"
"""


def write(tmp_path: Path, text: str, name: str = "server.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def secret(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_minimal_server_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load_server_config(write(tmp_path, MINIMAL_SERVER), environ={})
    assert (config.server.port, config.beacon.port, config.beacon.interval) == (8470, 47470, 5.0)
    assert (config.health.misses_down, config.dispatch.cpu_threshold) == (3, 30.0)
    assert config.limits.max_body_bytes == 262144
    assert config.auth.admin_token_file == "/etc/bramble/secrets/admin.token"  # noqa: S105
    assert config.forwarder.url == ""


def test_the_documented_examples_load(tmp_path: Path) -> None:
    config = load_server_config(ROOT / "docs" / "examples" / "server.toml", environ={})
    assert config.server.cluster == "lab"
    protocol = (ROOT / "docs" / "services-protocol.md").read_text(encoding="utf-8")
    blocks = [block.split("```")[0] for block in protocol.split("```toml\n")[1:]]
    server = load_server_config(write(tmp_path, blocks[0]), environ={})
    assert server.server.port == 8470
    agent = load_agent_config(write(tmp_path, blocks[1], "agent.toml"), environ={})
    assert agent.telemetry.buffer_samples == 720


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL_SERVER + "[health]\nmisses_down = 0\n", "health.misses_down"),
        (MINIMAL_SERVER + "[health]\nmises_down = 3\n", "health.mises_down: unknown key"),
        (MINIMAL_SERVER + "[telemetry]\nbatch_max = '10'\n", "telemetry.batch_max"),
        (MINIMAL_SERVER.replace('"10.42.0.1"', '"10.42.0.256"'), "server.advertise"),
        (MINIMAL_SERVER.replace('broadcast = "10.42.255.255"', ""), "beacon.broadcast: required"),
        (MINIMAL_SERVER.replace('"lab"', '"Lab Cluster"'), "server.cluster"),
        (MINIMAL_SERVER + "[forwarder]\nurl = 'ftp://x'\n", "forwarder.url"),
        (MINIMAL_SERVER + "[server\n", "not valid TOML"),
    ],
)
def test_bad_server_configs_name_the_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_server_config(path, environ={})
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_server_config(tmp_path / "absent.toml", environ={})


def test_environment_overrides_one_key(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_SERVER)
    config = load_server_config(
        path,
        environ={
            "BRAMBLE_SERVER__SERVER__PORT": "9000",
            "BRAMBLE_SERVER__FORWARDER__URL": "http://o/x",
        },
    )
    assert config.server.port == 9000
    assert config.forwarder.url == "http://o/x"
    with pytest.raises(ConfigError, match="BRAMBLE_SERVER__PORT"):
        load_server_config(path, environ={"BRAMBLE_SERVER__PORT": "1"})
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_server_config(path, environ={"BRAMBLE_SERVER__SERVER__PORT": "0"})


def test_agent_config_and_relative_secret_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[agent]\ncluster = "lab"\n[auth]\ncluster_key_file = "k"\nagent_token_file = "t"\n',
        "agent.toml",
    )
    config = load_agent_config(path, environ={})
    assert config.agent.port == 8471
    assert config.jobs.memory_mb == 128
    assert config.auth.cluster_key_file == str(tmp_path / "k")
    secret(tmp_path / "k", "x" * 32 + "\n")
    secret(tmp_path / "t", "token-0123456789abcdef", 0o640)
    loaded = load_agent_secrets(config)
    assert loaded.cluster_key == b"x" * 32
    assert loaded.agent_token == "token-0123456789abcdef"  # noqa: S105
    with pytest.raises(ConfigError, match=r"agent\.interface"):
        load_agent_config(
            write(tmp_path, '[agent]\ncluster = "lab"\ninterface = "a b"\n'), environ={}
        )


@pytest.mark.parametrize(
    ("content", "mode", "expected"),
    [
        (None, 0o600, "does not exist"),
        ("", 0o600, "empty"),
        ("short", 0o600, "at least 16"),
        ("y" * 40, 0o644, "mode 0644"),
        ("y" * 40, 0o660, "mode 0660"),
        ("y" * 5000, 0o600, "larger than"),
    ],
)
def test_bad_secret_files_are_refused_with_key_and_file(
    tmp_path: Path, content: str | None, mode: int, expected: str
) -> None:
    path = tmp_path / "agent.token"
    if content is not None:
        secret(path, content, mode)
    with pytest.raises(ConfigError) as error:
        read_secret(str(path), "auth.agent_token_file")
    assert "auth.agent_token_file" in str(error.value)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_server_secrets(tmp_path: Path) -> None:
    key = secret(tmp_path / "cluster.key", "k" * 31)
    agent = secret(tmp_path / "agent.token", "a" * 20)
    admin = secret(tmp_path / "admin.token", "a" * 20)
    text = MINIMAL_SERVER + (
        f'[auth]\ncluster_key_file = "{key}"\nagent_token_file = "{agent}"\n'
        f'admin_token_file = "{admin}"\n'
    )
    config = load_server_config(write(tmp_path, text), environ={})
    with pytest.raises(ConfigError, match="same token"):
        load_server_secrets(config)
    secret(admin, "b" * 20)
    with pytest.raises(ConfigError, match=r"auth.cluster_key_file .* at least 32"):
        load_server_secrets(config)
    secret(key, "k" * 32)
    loaded = load_server_secrets(config)
    assert (loaded.admin_token, loaded.postgres_dsn, loaded.forwarder_token) == (
        "b" * 20,
        None,
        None,
    )
