"""``bramble-agent``: the command line of the Pi agent (docs/agent.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from aiohttp import web

from bramble.services.agent import AGENT_VERSION
from bramble.services.agent.agent import Agent, AgentSettings, listen_for_beacons
from bramble.services.agent.client import ServerClient
from bramble.services.agent.http import JobLimits, make_app
from bramble.services.agent.identity import Identity, IdentityError, detect
from bramble.services.agent.sampler import FakeCpuSampler, Sampler, SystemSampler
from bramble.services.beacon import BeaconVerifier
from bramble.services.config import (
    AgentConfig,
    AgentSecrets,
    ConfigError,
    load_agent_config,
    load_agent_secrets,
)

log = logging.getLogger("bramble.agent")

DEFAULT_CONFIG = Path("/etc/bramble/agent.toml")
IDENTITY_WAIT = 120.0  # seconds to wait at boot for the interface to get its address


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="bramble-agent",
        description=(
            "The bramble Pi agent: waits for the server's signed UDP beacon, registers this "
            "node (MAC, IP, serial), samples CPU, memory, disk and temperature every "
            "telemetry.interval seconds and posts them (buffering and backing off while the "
            "server is away), and serves GET /health and POST /jobs (Warble jobs only) to the "
            "server. Every setting is in the config file; see docs/agent.md and "
            "docs/services-protocol.md. Single keys can be overridden with environment "
            "variables BRAMBLE_AGENT__<SECTION>__<KEY>."
        ),
    )
    parse.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the agent's TOML config file (default: {DEFAULT_CONFIG})",
    )
    parse.add_argument(
        "--check",
        action="store_true",
        help="check the config file, the secret files and this node's identity, then exit "
        "(0 when all is well, 2 with a message naming the key otherwise)",
    )
    parse.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much to log on standard error (default: INFO; one line per event)",
    )
    parse.add_argument(
        "--test-cpu-file",
        type=Path,
        metavar="PATH",
        help="TEST ONLY: report the CPU percentage written in PATH instead of the real one "
        "(integration tests use it to make a node look busy); never on a real cluster",
    )
    parse.add_argument("--version", action="version", version=f"bramble-agent {AGENT_VERSION}")
    return parse


async def wait_for_identity(interface: str, wait: float = IDENTITY_WAIT) -> Identity:
    """This node's identity, retried once a second while the interface has no address."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return detect(interface)
        except IdentityError as exc:
            if time.monotonic() >= deadline:
                raise
            log.info("waiting for the network: %s", exc)
            await asyncio.sleep(1.0)


async def serve(
    config: AgentConfig, secrets: AgentSecrets, sampler: Sampler, stop: asyncio.Event
) -> None:
    """Run the agent until ``stop`` is set."""
    identity = await wait_for_identity(config.agent.interface)
    settings = AgentSettings(
        agent_port=config.agent.port,
        interval=config.telemetry.interval,
        max_backoff=config.telemetry.max_backoff,
        buffer_samples=config.telemetry.buffer_samples,
    )
    jobs = config.jobs
    limits = JobLimits(jobs.cpu_seconds, jobs.memory_mb, jobs.output_bytes, jobs.wall_seconds)
    verifier = BeaconVerifier(
        key=secrets.cluster_key, cluster=config.agent.cluster, max_skew=config.beacon.max_skew
    )
    async with aiohttp.ClientSession() as session:
        client = ServerClient(session, secrets.agent_token)
        agent = Agent(identity, client, sampler, settings, verifier=verifier)
        runner = web.AppRunner(make_app(agent, secrets.agent_token, limits), access_log=None)
        await runner.setup()
        transport = None
        try:
            await web.TCPSite(runner, config.agent.listen, config.agent.port).start()
            transport = await listen_for_beacons(verifier, [agent], config.beacon.port)
            log.info(
                "%s: agent %s listening on %s:%d, waiting for beacons on UDP %d",
                agent.name, AGENT_VERSION, config.agent.listen, config.agent.port,
                config.beacon.port,
            )  # fmt: skip
            running = asyncio.create_task(agent.run())
            await stop.wait()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        finally:
            if transport is not None:
                transport.close()
            await runner.cleanup()
    log.info("%s: stopped", agent.name)


def make_sampler(test_cpu_file: Path | None) -> Sampler:
    sampler: Sampler = SystemSampler()
    if test_cpu_file is not None:
        log.warning("TEST ONLY: the CPU figure comes from %s", test_cpu_file)
        sampler = FakeCpuSampler(test_cpu_file, sampler)
    return sampler


async def _main(config: AgentConfig, secrets: AgentSecrets, sampler: Sampler) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(config, secrets, sampler, stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s bramble-agent %(levelname)s %(message)s"
    )
    try:
        config = load_agent_config(args.config)
        secrets = load_agent_secrets(config)
        if args.check:
            identity = detect(config.agent.interface)
            print(f"{args.config}: ok; this node is {identity.mac} at {identity.ip}")
            return 0
        asyncio.run(_main(config, secrets, make_sampler(args.test_cpu_file)))
    except (ConfigError, IdentityError) as exc:
        print(f"bramble-agent: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bramble-agent: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
