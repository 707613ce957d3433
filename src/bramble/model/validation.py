"""Turns pydantic validation errors into messages naming the file, line, key and the fix."""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from bramble.model.errors import ModelError
from bramble.model.yamlio import line_of


def dotted(loc: Sequence[str | int]) -> str:
    """``('power', 'groups', 0, 'banks')`` -> ``power.groups[0].banks``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The schema class that holds the last key of ``loc``, for listing its allowed keys."""
    current: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if _is_model(current) else None
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if _is_model(current) else None


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _unwrap(annotation: Any) -> Any:
    """The model class inside ``list[X]``, ``X | None`` or ``Annotated[...]``, if any."""
    for _ in range(8):
        if _is_model(annotation):
            return annotation
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (typing.Union, types.UnionType, list, typing.Annotated) and args:
            models = [a for a in args if _is_model(_unwrap(a))]
            annotation = models[0] if models else args[0]
        else:
            return annotation
    return annotation


def _describe(error: Any, root: type[BaseModel]) -> str:
    loc = error["loc"]
    kind = error["type"]
    if kind == "extra_forbidden":
        holder = _model_at(root, loc[:-1])
        allowed = ", ".join(holder.model_fields) if holder else "see docs/cluster-model.md"
        return f"unknown key {loc[-1]!r} (allowed here: {allowed})"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind.startswith("literal_"):
        return f"{message} (got {error['input']!r})"
    if kind in {"model_type", "dict_type"}:
        return f"expected a mapping of keys, got {type(error['input']).__name__}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{message} (got {error['input']!r})"
    return message


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: Any, path: Path) -> M:
    """Validate ``data`` read from ``path``; raise ModelError listing every error found."""
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        found: dict[str, int] = {}
        for error in exc.errors():
            loc = error["loc"]
            line = line_of(path, loc)
            where = f"{path}:{line}" if line else str(path)
            found.setdefault(f"{where}: {dotted(loc)}: {_describe(error, model)}", line or 0)
        lines = sorted(found, key=found.__getitem__)
        count = len(lines)
        head = f"{path}: {count} problem{'s' if count > 1 else ''} in the cluster model:"
        raise ModelError("\n".join([head, *(f"  - {line}" for line in lines)])) from None
