"""YAML reading for the cluster model: duplicate keys are errors, line numbers on demand."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bramble.model.errors import ModelError


class _DuplicateKeyError(Exception):
    def __init__(self, key: object, line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key
        self.line = line


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader (libyaml's when present) refusing a key given twice in one mapping."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key; construct_mapping reports it
            continue
        if duplicate:
            raise _DuplicateKeyError(key, key_node.start_mark.line + 1)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def load_yaml(path: Path) -> Any:
    """Parse one YAML document; every failure becomes a ModelError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a safe loader subclass
    except _DuplicateKeyError as exc:
        where = ".".join(str(p) for p in path_of_key(path, exc.key, exc.line)) or str(exc.key)
        raise ModelError(
            f"{path}:{exc.line}: {where}: key {exc.key!r} is given twice in one mapping; keep one"
        ) from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ModelError(f"{path}:{line}: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ModelError(f"{path}: not valid YAML: {exc}") from None


def _compose(path: Path) -> yaml.Node | None:
    try:
        return yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def line_of(path: Path, loc: Sequence[str | int]) -> int | None:
    """The line (1-based) of ``loc`` in the file: of its key when it ends in a key."""
    node = _compose(path)
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(
                ((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), None
            )
            if pair is None:
                return node.start_mark.line + 1
            line = pair[0].start_mark.line + 1
            node = pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return node.start_mark.line + 1
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def path_of_key(path: Path, key: object, line: int) -> list[str | int]:
    """The path of the mapping key ``key`` written on ``line`` (1-based), or []."""

    def walk(node: yaml.Node, trail: list[str | int]) -> list[str | int] | None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value in node.value:
                name = getattr(key_node, "value", None)
                if key_node.start_mark.line + 1 == line and name == str(key):
                    return [*trail, str(name)]
                found = walk(value, [*trail, str(name)])
                if found:
                    return found
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                found = walk(item, [*trail, index])
                if found:
                    return found
        return None

    root = _compose(path)
    return (walk(root, []) or []) if root is not None else []
