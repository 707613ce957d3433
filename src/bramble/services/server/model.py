"""The nodes of the cluster model, as the cluster_server role writes them (nodes.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from bramble.services.config import ConfigError

MAC_PATTERN = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"


def normalise_mac(value: str) -> str:
    """Lower-case colon form; the validator has already checked the shape."""
    return value.lower()


Mac = Annotated[str, Field(pattern=MAC_PATTERN), AfterValidator(normalise_mac)]


class ModelNode(BaseModel):
    """One Pi of the cluster model (keys the role may add later are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=63)]
    bank: Annotated[int, Field(ge=1)]
    slot: Annotated[int, Field(ge=1)]
    mac: Mac
    ip: str
    serial: str | None = None


class _Nodes(BaseModel):
    nodes: list[ModelNode]


def load_model_nodes(path: str) -> dict[str, ModelNode]:
    """The model's Pis by MAC; errors name ``model.nodes_file`` and the entry."""
    where = f"model.nodes_file ({path})"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: the file does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot read it as JSON: {exc}") from None
    try:
        nodes = _Nodes.model_validate({"nodes": data}).nodes
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"][1:])
        raise ConfigError(f"{where}: entry {key}: {first['msg']}") from None
    by_mac: dict[str, ModelNode] = {}
    for node in nodes:
        if node.mac in by_mac:
            raise ConfigError(
                f"{where}: MAC {node.mac} is both {by_mac[node.mac].name} and {node.name}"
            )
        by_mac[node.mac] = node
    return by_mac
