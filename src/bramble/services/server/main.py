"""Command line of bramble-server: read the config, check it, or run the server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import resource
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from bramble import __version__
from bramble.services.config import (
    ConfigError,
    ServerConfig,
    ServerSecrets,
    load_server_config,
    load_server_secrets,
)
from bramble.services.server.api import make_app
from bramble.services.server.core import ClusterServer
from bramble.services.server.dashboard import set_power_hook
from bramble.services.server.model import load_model_nodes
from bramble.services.server.power import PowerSwitcher, load_power
from bramble.services.server.store import open_store

log = logging.getLogger("bramble.server")
# connections waiting to be accepted (the kernel caps it at net.core.somaxconn): a fleet
# woken by one beacon connects at once; an overflow costs an agent a SYN retry (1, 3, 7 s...)
LISTEN_BACKLOG = 4096
DEFAULT_CONFIG = "/etc/bramble/server.toml"
# open files per node: its kept-alive health connection, its agent's telemetry connection
FILES_PER_NODE = 2
FILES_SPARE = 256  # the store, the beacon, operators, dashboards

DESCRIPTION = """\
The bramble cluster server, run on the head. It broadcasts a signed UDP beacon so agents
find it, keeps the node registry (SQLite, or PostgreSQL when [store] postgres_dsn_file is
set), checks every agent's health, ingests telemetry in batches (history kept
[telemetry] retention_hours; optionally forwarded to an ORDS-style URL), serves Prometheus
metrics, and dispatches Warble jobs to nodes under [dispatch] cpu_threshold percent CPU.
"""
EPILOG = """\
Every key of the config file is optional except server.cluster, server.advertise and
beacon.broadcast; see docs/server.md and docs/services-protocol.md. A key can be overridden
from the environment: BRAMBLE_SERVER__<SECTION>__<KEY>=value (a TOML value), e.g.
BRAMBLE_SERVER__SERVER__PORT=9000. Secrets (cluster key, tokens, PostgreSQL DSN) are read
from the files the config names, which must not be readable by others (mode 0600 or 0640).
Exit status: 0 success, 2 bad config or secrets, 1 other failure.
"""


def parser() -> argparse.ArgumentParser:
    """The argument parser (its --help documents every option)."""
    ap = argparse.ArgumentParser(
        prog="bramble-server",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--config",
        "-c",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"the TOML config file (default {DEFAULT_CONFIG})",
    )
    ap.add_argument(
        "--check-config",
        action="store_true",
        help="read and check the config, its secret files and the nodes file, print a "
        "summary and exit (0 when usable, 2 when not); opens no socket or store",
    )
    ap.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much to log to standard error (default INFO)",
    )
    ap.add_argument("--version", action="version", version=f"bramble-server {__version__}")
    return ap


@dataclass
class Running:
    """A started server: its state and the port the API listens on."""

    server: ClusterServer
    port: int
    runner: web.AppRunner

    async def stop(self) -> None:
        """Stop accepting requests, finish the background work, close the store."""
        await self.runner.cleanup()
        await self.server.stop()


def open_file_limit(nodes: int) -> int:
    """Raise the soft open-file limit to the hard one (the container's ``--ulimit nofile``,
    systemd's LimitNOFILE; a shell often starts at 1024); warn when it is too low for
    ``nodes`` agents, each with kept-alive connections. The limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    wanted = FILES_PER_NODE * nodes + FILES_SPARE
    if soft < wanted:
        log.warning(
            "open-file limit %d is below the %d that %d nodes need (kept-alive connections): "
            "raise it (cluster_server_nofile, podman --ulimit nofile, LimitNOFILE)",
            soft,
            wanted,
            nodes,
        )
    return int(soft)


async def start(config: ServerConfig, secrets: ServerSecrets) -> Running:
    """Open the store, start the server and its API (port 0 picks a free port)."""
    model = load_model_nodes(config.model.nodes_file)
    open_file_limit(len(model))
    power = load_power(config.power)
    loop = asyncio.get_running_loop()
    store = await loop.run_in_executor(None, open_store, config.store.sqlite, secrets.postgres_dsn)
    family = socket.AF_INET6 if ":" in config.server.listen else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    server = ClusterServer(config, secrets, store, model)
    if power is not None:
        set_power_hook(server, PowerSwitcher(power, model))
    runner = web.AppRunner(make_app(server), access_log=None, handle_signals=False)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.server.listen, config.server.port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
        port = int(sock.getsockname()[1])
        server.api_port = port
        await server.start()
        await runner.setup()
        await web.SockSite(runner, sock, backlog=LISTEN_BACKLOG).start()  # its default: 128
        server.start_beacon()
    except BaseException:
        sock.close()
        await runner.cleanup()
        await server.stop()
        raise
    log.info(
        "API on %s:%d, beacon to %s:%d every %g s",
        config.server.listen,
        port,
        config.beacon.broadcast,
        config.beacon.port,
        config.beacon.interval,
    )
    return Running(server, port, runner)


@contextlib.asynccontextmanager
async def running(config: ServerConfig, secrets: ServerSecrets) -> AsyncIterator[Running]:
    """``start`` and, whatever happens, ``stop``."""
    handle = await start(config, secrets)
    try:
        yield handle
    finally:
        await handle.stop()


async def serve(config: ServerConfig, secrets: ServerSecrets) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(config, secrets):
        await stop.wait()
        log.info("signal received: shutting down")


def check(config: ServerConfig, path: str) -> None:
    """Check secrets and the nodes file; print what the server would do."""
    secrets = load_server_secrets(config)
    model = load_model_nodes(config.model.nodes_file)
    power = load_power(config.power)
    store = "PostgreSQL" if secrets.postgres_dsn else f"SQLite {config.store.sqlite}"
    print(
        f"{path}: OK: cluster {config.server.cluster}, API {config.server.listen}:"
        f"{config.server.port}, beacon {config.beacon.broadcast}:{config.beacon.port}, "
        f"{len(model)} nodes in the model, store {store}, forwarder "
        f"{config.forwarder.url or 'off'}, {power.summary() if power else 'power off'}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bramble-server`` console script."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_server_config(Path(args.config))
        if args.check_config:
            check(config, args.config)
            return 0
        secrets = load_server_secrets(config)
        asyncio.run(serve(config, secrets))
    except ConfigError as exc:
        print(f"bramble-server: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bramble-server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
