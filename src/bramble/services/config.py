"""Configuration files of bramble-server and bramble-agent (TOML), and their secret files.

Every key is described in docs/services-protocol.md (the contract) and docs/server.md.
Errors name the file and the dotted key (``beacon.broadcast``) and say what is expected.
Environment variables ``BRAMBLE_SERVER__<SECTION>__<KEY>`` (``BRAMBLE_AGENT__...`` for the
agent) override single keys; their value is read as a TOML value, else as a string.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

CLUSTER_KEY_MIN = 32
TOKEN_MIN = 16
SECRET_MAX = 4096
SECRETS_DIR = "/etc/bramble/secrets"


class ConfigError(Exception):
    """A configuration or secret file is unusable; the message names the file and the key."""


def _cluster_name(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", value):
        raise ValueError(
            f"{value!r} is not a cluster name: lower-case letters, digits and '-', at most 63"
        )
    return value


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def _url(value: str) -> str:
    if value and not re.fullmatch(r"https?://[^\s]+", value):
        raise ValueError(f"{value!r} is not an http:// or https:// URL (or empty for off)")
    return value


ClusterName = Annotated[str, AfterValidator(_cluster_name)]
IPv4 = Annotated[str, AfterValidator(_ipv4)]
ListenAddress = Annotated[str, AfterValidator(_ip)]
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0, le=86400)]
FilePath = Annotated[str, Field(max_length=4096)]
Url = Annotated[str, AfterValidator(_url), Field(max_length=2048)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- server -------------------------------------------------------------------------------


class ServerSection(_Section):
    cluster: ClusterName
    listen: ListenAddress = "0.0.0.0"  # noqa: S104 - the head serves the whole cluster LAN
    port: Port = 8470
    advertise: IPv4


class ServerBeacon(_Section):
    interval: Seconds = 5.0
    port: Port = 47470
    broadcast: IPv4


class ServerAuth(_Section):
    cluster_key_file: FilePath = f"{SECRETS_DIR}/cluster.key"
    agent_token_file: FilePath = f"{SECRETS_DIR}/agent.token"
    admin_token_file: FilePath = f"{SECRETS_DIR}/admin.token"


class StoreSection(_Section):
    sqlite: FilePath = "/var/lib/bramble/server.db"
    postgres_dsn_file: FilePath = ""


class ModelSection(_Section):
    nodes_file: FilePath = "/etc/bramble/nodes.json"


class HealthSection(_Section):
    interval: Seconds = 10.0
    timeout: Seconds = 2.0
    misses_down: Annotated[int, Field(ge=1, le=1000)] = 3
    concurrency: Annotated[int, Field(ge=1, le=10000)] = 256


class ServerTelemetry(_Section):
    interval: Seconds = 5.0  # what register answers as telemetry_interval
    retention_hours: Annotated[float, Field(gt=0, le=24 * 3660)] = 48
    batch_max: Annotated[int, Field(ge=1, le=1_000_000)] = 5000
    batch_seconds: Seconds = 1.0


class DispatchSection(_Section):
    cpu_threshold: Annotated[float, Field(gt=0, le=100)] = 30.0
    timeout: Seconds = 30.0
    attempts: Annotated[int, Field(ge=1, le=100)] = 3


class ForwarderSection(_Section):
    url: Url = ""
    token_file: FilePath = ""
    queue_max: Annotated[int, Field(ge=1, le=10_000_000)] = 100000


class LimitsSection(_Section):
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 262144
    max_samples_per_post: Annotated[int, Field(ge=1, le=100_000)] = 1000


class ApiSection(_Section):
    public_read: bool = False
    public_metrics: bool = False


class PostSourceSection(_Section):
    """One place Warbles are read from (``[[warble.sources]]``); see docs/warble.md."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
    kind: Literal["mastodon_tag"] = "mastodon_tag"
    url: Url  # the instance, e.g. https://mastodon.example
    hashtag: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,64}$")] = "pi"
    interval: Seconds = 60.0
    page_size: Annotated[int, Field(ge=1, le=40)] = 40
    max_pages: Annotated[int, Field(ge=1, le=20)] = 5
    timeout: Seconds = 10.0
    max_response_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 2 * 1024 * 1024


class WarbleSection(_Section):
    anonymous: bool = False  # POST /api/v1/warbles without a token
    submit_token_file: FilePath = ""  # a token for submitters (besides the admin token)
    public_results: bool = True  # GET /api/v1/warbles and /leaderboard without a token
    max_source_chars: Annotated[int, Field(ge=16, le=65536)] = 10000
    rate_per_minute: Annotated[float, Field(gt=0, le=60000)] = 6.0  # per user and per address
    rate_burst: Annotated[int, Field(ge=1, le=10000)] = 3
    max_queue_age: Seconds = 600.0  # a Warble waits this long for an idle node, then fails
    max_queued: Annotated[int, Field(ge=1, le=10000)] = 1000
    reference_digits: Annotated[int, Field(ge=10, le=100_000)] = 10000
    sources: list[PostSourceSection] = []


class PowerSection(_Section):
    """``POST /api/v1/power`` through bank_power's drivers (docs/server.md "Power")."""

    enabled: bool = False  # off: the power request answers 501
    model_file: FilePath = "/etc/bramble/power.json"  # banks, power, controllers, switches
    secrets_file: FilePath = ""  # JSON {credentials name: secret}; mode 0600
    controller_timeout: Seconds = 5.0  # one controller request
    request_timeout: Seconds = 120.0  # a whole power request (then 504)
    settle: Annotated[float, Field(ge=0, le=600)] = 2.0  # after switches, between groups
    cycle_delay: Annotated[float, Field(ge=0, le=600)] = 3.0  # off-to-on pause of a cycle
    switches: bool = True  # power a group's network switches before it


class ServerConfig(_Section):
    """The whole of server.toml."""

    server: ServerSection
    beacon: ServerBeacon
    auth: ServerAuth = ServerAuth()
    store: StoreSection = StoreSection()
    model: ModelSection = ModelSection()
    health: HealthSection = HealthSection()
    telemetry: ServerTelemetry = ServerTelemetry()
    dispatch: DispatchSection = DispatchSection()
    forwarder: ForwarderSection = ForwarderSection()
    limits: LimitsSection = LimitsSection()
    api: ApiSection = ApiSection()
    warble: WarbleSection = WarbleSection()
    power: PowerSection = PowerSection()


# --- agent --------------------------------------------------------------------------------


class AgentSection(_Section):
    cluster: ClusterName
    listen: ListenAddress = "0.0.0.0"  # noqa: S104 - the server reaches agents on the LAN
    port: Port = 8471
    interface: Annotated[str, Field(max_length=15, pattern=r"^[A-Za-z0-9_.:@-]*$")] = ""


class AgentBeacon(_Section):
    port: Port = 47470
    max_skew: Seconds = 30.0


class AgentAuth(_Section):
    cluster_key_file: FilePath = f"{SECRETS_DIR}/cluster.key"
    agent_token_file: FilePath = f"{SECRETS_DIR}/agent.token"


class AgentTelemetry(_Section):
    interval: Seconds = 5.0
    max_backoff: Seconds = 60.0
    buffer_samples: Annotated[int, Field(ge=1, le=1_000_000)] = 720


class JobsSection(_Section):
    cpu_seconds: Annotated[int, Field(ge=1, le=3600)] = 10
    memory_mb: Annotated[int, Field(ge=16, le=4096)] = 128
    output_bytes: Annotated[int, Field(ge=256, le=16 * 1024 * 1024)] = 65536
    wall_seconds: Annotated[int, Field(ge=1, le=3600)] = 30


class AgentConfig(_Section):
    """The whole of agent.toml."""

    agent: AgentSection
    beacon: AgentBeacon = AgentBeacon()
    auth: AgentAuth = AgentAuth()
    telemetry: AgentTelemetry = AgentTelemetry()
    jobs: JobsSection = JobsSection()


# --- loading ------------------------------------------------------------------------------

_Config = TypeVar("_Config", ServerConfig, AgentConfig)

_PATH_KEYS = {
    "auth": ("cluster_key_file", "agent_token_file", "admin_token_file"),
    "store": ("sqlite", "postgres_dsn_file"),
    "model": ("nodes_file",),
    "forwarder": ("token_file",),
    "warble": ("submit_token_file",),
    "power": ("model_file", "secrets_file"),
}


def _describe(error: Mapping[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind == "extra_forbidden":
        return f"{key}: unknown key (see docs/services-protocol.md for the keys)"
    value = error.get("input")
    shown = "" if isinstance(value, dict) or kind == "value_error" else f" (got {value!r})"
    return f"{key}: {message.removeprefix('Value error, ')}{shown}"


def _env_overrides(data: dict[str, Any], prefix: str, environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix) :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"environment variable {name}: expected {prefix}<SECTION>__<KEY>")
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        section = data.setdefault(parts[0], {})
        if not isinstance(section, dict):
            raise ConfigError(f"environment variable {name}: {parts[0]} is not a table")
        section[parts[1]] = value


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Relative file names in the config are relative to the config file's folder."""
    for section, keys in _PATH_KEYS.items():
        table = data.get(section)
        if not isinstance(table, dict):
            continue
        for key in keys:
            value = table.get(key)
            if isinstance(value, str) and value and not os.path.isabs(value):
                table[key] = str(base / value)


def _load(
    model: type[_Config], path: Path, prefix: str, environ: Mapping[str, str] | None
) -> _Config:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _env_overrides(data, prefix, os.environ if environ is None else environ)
    _resolve_paths(data, path.parent.absolute())
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(error) for error in exc.errors()]
        raise ConfigError(f"{path}: " + f"\n{path}: ".join(lines)) from None


def load_server_config(path: Path, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Read and validate server.toml (plus ``BRAMBLE_SERVER__*`` overrides)."""
    return _load(ServerConfig, path, "BRAMBLE_SERVER__", environ)


def load_agent_config(path: Path, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read and validate agent.toml (plus ``BRAMBLE_AGENT__*`` overrides)."""
    return _load(AgentConfig, path, "BRAMBLE_AGENT__", environ)


# --- secrets ------------------------------------------------------------------------------


def read_secret(path: str, key: str, *, min_length: int = TOKEN_MIN) -> str:
    """The stripped text of a secret file named by config key ``key``.

    Refused when missing, not a regular file, readable or writable by others or writable by
    the group (use mode 0600 or 0640), empty, shorter than ``min_length`` or absurdly long.
    """
    where = f"{key} ({path or 'not set'})"
    if not path:
        raise ConfigError(f"{where}: no secret file is configured")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{where}: the secret file does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the secret file: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{where}: not a regular file")
    if info.st_mode & 0o027:
        raise ConfigError(
            f"{where}: mode {stat.S_IMODE(info.st_mode):04o} lets others read or the group "
            "write it; use 0600 or 0640"
        )
    if info.st_size > SECRET_MAX:
        raise ConfigError(f"{where}: larger than {SECRET_MAX} bytes; is it the right file?")
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read the secret file: {exc}") from None
    if not text:
        raise ConfigError(f"{where}: the secret file is empty")
    if len(text) < min_length:
        raise ConfigError(
            f"{where}: the secret is {len(text)} characters; at least {min_length} are needed"
        )
    return text


@dataclass(frozen=True)
class AgentSecrets:
    """What an agent proves itself with."""

    cluster_key: bytes
    agent_token: str


@dataclass(frozen=True)
class ServerSecrets:
    """What the server signs and authenticates with."""

    cluster_key: bytes
    agent_token: str
    admin_token: str
    postgres_dsn: str | None = None
    forwarder_token: str | None = None
    submit_token: str | None = None  # warble.submit_token_file


def load_agent_secrets(config: AgentConfig) -> AgentSecrets:
    """Read the agent's secret files, checking each."""
    auth = config.auth
    return AgentSecrets(
        cluster_key=read_secret(
            auth.cluster_key_file, "auth.cluster_key_file", min_length=CLUSTER_KEY_MIN
        ).encode(),
        agent_token=read_secret(auth.agent_token_file, "auth.agent_token_file"),
    )


def load_server_secrets(config: ServerConfig) -> ServerSecrets:
    """Read the server's secret files, checking each; optional ones only when configured."""
    auth = config.auth
    agent_token = read_secret(auth.agent_token_file, "auth.agent_token_file")
    admin_token = read_secret(auth.admin_token_file, "auth.admin_token_file")
    if agent_token == admin_token:
        raise ConfigError(
            "auth.admin_token_file and auth.agent_token_file hold the same token; "
            "every agent could act as an operator"
        )
    dsn_file, fwd_file = config.store.postgres_dsn_file, config.forwarder.token_file
    return ServerSecrets(
        cluster_key=read_secret(
            auth.cluster_key_file, "auth.cluster_key_file", min_length=CLUSTER_KEY_MIN
        ).encode(),
        agent_token=agent_token,
        admin_token=admin_token,
        postgres_dsn=read_secret(dsn_file, "store.postgres_dsn_file", min_length=1)
        if dsn_file
        else None,
        forwarder_token=read_secret(fwd_file, "forwarder.token_file", min_length=1)
        if fwd_file
        else None,
        submit_token=read_secret(submit_file, "warble.submit_token_file")
        if (submit_file := config.warble.submit_token_file)
        else None,
    )
