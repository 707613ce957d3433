"""``POST /api/v1/power`` carried out by bank_power's own code (``bramble.power``).

With ``[power] enabled`` the server reads ``power.model_file`` (the cluster model's banks,
power groups and budget, controllers and switches, as the cluster_server role writes them) and
``power.secrets_file`` (the controllers' credentials by the model's ``credentials`` names) and
switches a power group the way the bank_power module does: the same drivers, the same plan
(switches before banks), the same power budget (Pis of groups that read back on count, an
unreadable controller counts as on) and the same read-back (a relay that does not follow is
reported as stuck). Nothing is copied: ``bramble.power`` is plugins/module_utils.

One request runs at a time (a second one is refused with 409 while it runs); each controller
request is bounded by ``controller_timeout`` and the whole request by ``request_timeout``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from bramble.model.schema import Banks, Controller, Power, Switch
from bramble.power import plan
from bramble.services.config import ConfigError, PowerSection, read_secret
from bramble.services.server.dashboard import PowerFailed, PowerResult
from bramble.services.server.model import ModelNode


class PowerModel(BaseModel):
    """The part of the cluster model power requests need (other keys are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    banks: Banks
    power: Power
    controllers: list[Controller]
    switches: list[Switch] = []


@dataclass(frozen=True)
class PowerSetup:
    """What ``[power]`` configures: the model (as bank_power takes it) and the secrets."""

    section: PowerSection
    model: dict[str, Any]
    credentials: dict[str, str]

    def summary(self) -> str:
        groups = self.model["power"]["groups"]
        return (
            f"power on: {len(groups)} group(s) on {len(self.model['controllers'])} "
            f"controller(s), budget {self.model['power']['budget']} Pis"
        )


def _read_model(path: str) -> PowerModel:
    where = f"power.model_file ({path})"
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(16 * 1024 * 1024)
    except FileNotFoundError:
        raise ConfigError(f"{where}: the file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read it: {exc}") from None
    try:
        found = PowerModel.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        key = ".".join(str(p) for p in first["loc"]) or "the file"
        raise ConfigError(f"{where}: {key}: {first['msg']}") from None
    names = {c.name for c in found.controllers}
    used = [(f"power group {g.id}", g.controller) for g in found.power.groups]
    used += [(f"switch {s.name}", s.power.controller) for s in found.switches if s.power]
    for what, name in used:
        if name not in names:
            raise ConfigError(f"{where}: {what} names controller {name!r}, which is not listed")
    return found


def _read_credentials(section: PowerSection, wanted: set[str]) -> dict[str, str]:
    if not section.secrets_file:
        if wanted:
            raise ConfigError(
                f"power.secrets_file: not set, but controllers need {sorted(wanted)}; write them "
                'as JSON {"name": "secret"} to a file of mode 0600 and name it here'
            )
        return {}
    text = read_secret(section.secrets_file, "power.secrets_file", min_length=2)
    where = f"power.secrets_file ({section.secrets_file})"
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f'{where}: not JSON (expected {{"name": "secret", ...}})') from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()
    ):
        raise ConfigError(f"{where}: expected an object of non-empty strings by name")
    missing = sorted(wanted - set(data))
    if missing:
        raise ConfigError(f"{where}: no secret for {missing} (named by the model's controllers)")
    return dict(data)


def load_power(section: PowerSection) -> PowerSetup | None:
    """The checked ``[power]`` setup, None when it is off; ConfigError names what is wrong."""
    if not section.enabled:
        return None
    found = _read_model(section.model_file)
    wanted = {c.credentials for c in found.controllers if c.credentials}
    return PowerSetup(section, found.model_dump(mode="json"), _read_credentials(section, wanted))


class PowerSwitcher:
    """The server's power hook: ``await switcher(group, action)`` -> PowerResult."""

    def __init__(self, setup: PowerSetup, nodes: Mapping[str, ModelNode]) -> None:
        self.setup = setup
        self.pis = [
            {"name": n.name, "bank": n.bank, "slot": n.slot, "mac": n.mac} for n in nodes.values()
        ]
        self._busy = asyncio.Lock()

    def _request(self, group: int, action: str) -> plan.Request:
        section = self.setup.section
        return plan.Request(
            model=self.setup.model,
            state=action,
            groups=[group],
            pis=self.pis,
            credentials=self.setup.credentials,
            switches=section.switches,
            settle=section.settle,
            cycle_delay=section.cycle_delay,
            controller_timeout=section.controller_timeout,
        )

    async def __call__(self, group: int, action: str) -> PowerResult:
        groups = {int(g["id"]): g for g in self.setup.model["power"]["groups"]}
        if group not in groups:
            raise PowerFailed(404, f"no power group {group} in the model (groups {sorted(groups)})")
        if self._busy.locked():
            raise PowerFailed(409, "another power request is still running; try again after it")
        await self._busy.acquire()
        runner = plan.Runner(self._request(group, action))
        work = asyncio.ensure_future(asyncio.to_thread(runner.run))
        work.add_done_callback(self._finished)
        limit = self.setup.section.request_timeout
        try:
            outcome = await asyncio.wait_for(asyncio.shield(work), limit)
        except TimeoutError:
            raise PowerFailed(
                504,
                f"no outcome within {limit:g} s (power.request_timeout) from controller "
                f"{groups[group]['controller']}; it may still finish: check the events and state",
            ) from None
        except plan.PlanError as exc:
            raise PowerFailed(409, str(exc).removeprefix("refused: ")) from None
        if outcome.failed:
            messages = [outcome.failed[name] for name in sorted(outcome.failed)]
            slow = any("timed out" in m or " within " in m for m in messages)
            raise PowerFailed(504 if slow else 502, "; ".join(messages))
        banks = tuple(sorted(int(b) for b in groups[group]["banks"]))
        return PowerResult(banks, _describe(outcome, self.setup.model))

    def _finished(self, work: asyncio.Future[Any]) -> None:
        """The lock is held until the thread ends, even when the answer has gone (504)."""
        self._busy.release()
        if not work.cancelled():
            work.exception()  # retrieved: a late failure is not logged as unhandled


def _describe(outcome: plan.Outcome, model: dict[str, Any]) -> str:
    """One line for the event log: what was switched, and the Pis on against the budget."""
    done = [
        f"{a['controller']}:{a['outlet']} {a['action']}"
        + (f" (switch {a['switch']})" if a.get("switch") else "")
        for a in outcome.actions
    ]
    text = "switched " + ", ".join(done) if done else "already in that state: nothing switched"
    if outcome.pis_on is not None:
        text += f"; {outcome.pis_on} of {model['power']['budget']} budgeted Pis on"
    for warning in outcome.warnings:
        text += f"; {warning}"
    return text
