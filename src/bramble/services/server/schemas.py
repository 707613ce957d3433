"""JSON bodies the REST API accepts (validated strictly) and the OpenAPI document."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bramble.services.config import IPv4, Port
from bramble.services.server.model import Mac

MAX_SOURCE = 65536


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Percent = Annotated[float, Field(ge=0, le=100)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RegisterIn(_Body):
    """An agent announcing itself."""

    mac: Mac
    ip: IPv4
    serial: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{8,16}$")] | None = None
    hostname: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")]
    agent_version: Annotated[str, Field(pattern=r"^[A-Za-z0-9.+_-]{1,64}$")]
    agent_port: Port


class SampleIn(_Body):
    """One telemetry sample."""

    ts: Annotated[float, AfterValidator(_finite), Field(gt=0)]
    cpu_percent: Percent
    mem_used_percent: Percent
    mem_available_bytes: Annotated[int, Field(ge=0, le=2**50)]
    disk_used_percent: Percent
    temp_c: Annotated[float, Field(ge=-100, le=250)] | None


class TelemetryIn(_Body):
    """A batch of samples of one node (its back-fill included)."""

    mac: Mac
    samples: Annotated[list[SampleIn], Field(max_length=100_000)]


class JobIn(_Body):
    """A Warble job submitted by an operator."""

    kind: Literal["warble"]
    source: Annotated[str, Field(min_length=1, max_length=MAX_SOURCE)]
    user: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]


ROLES_DOC = {
    "agent": "agent token",
    "admin": "admin token",
    "read": "admin token, or none when api.public_read = true",
    "metrics": "admin token, or none when api.public_metrics = true",
    "public": "no token",
    "submit": "none when warble.anonymous = true, else the submit token or the admin token",
    "results": "none when warble.public_results = true (the default), else as read",
}


@dataclass(frozen=True)
class Route:
    """One endpoint: what it is, who may call it, what body and query it takes."""

    method: str
    path: str
    role: str
    summary: str
    body: type[BaseModel] | None = None
    query: tuple[str, ...] = ()
    conflict: str | None = None  # when the route can answer 409: why


def openapi(routes: list[Route], version: str) -> dict[str, Any]:
    """OpenAPI 3.1 document of the routes."""
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    error = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for route in routes:
        method, path, role, summary, body = (
            route.method,
            route.path,
            route.role,
            route.summary,
            route.body,
        )
        operation: dict[str, Any] = {
            "summary": summary,
            "description": f"Authentication: {ROLES_DOC[role]}.",
            "responses": {"200": {"description": "success"}},
        }
        if role != "public":
            operation["security"] = (
                [{"bearer": []}]
                if role in ("agent", "admin")
                else [
                    {"bearer": []},
                    {},
                ]
            )
            operation["responses"].update({"401": error, "403": error})
        if body is not None:
            schema = body.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[body.__name__] = schema
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{body.__name__}"}
                    }
                },
            }
            operation["responses"].update({"400": error, "413": error, "422": error})
        params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        operation["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ] + [
            {"name": q, "in": "query", "required": False, "schema": {"type": "integer"}}
            for q in route.query
        ]
        if params:
            operation["responses"]["404"] = error
        if route.conflict:
            operation["responses"]["409"] = {**error, "description": route.conflict}
        paths.setdefault(path, {})[method.lower()] = operation
    schemas["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "bramble-server", "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
