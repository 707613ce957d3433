"""The documentation matches the code: every model field is documented."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from bramble.model.schema import ClusterModel, MacFile

ROOT = Path(__file__).resolve().parents[1]


def _fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        names.append(f"{prefix}{name}")
        for inner in _models(field.annotation):
            names += _fields(inner, f"{prefix}{name}.")
    return names


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def test_every_cluster_model_field_is_documented() -> None:
    doc = (ROOT / "docs" / "cluster-model.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z_.\[\]]+)`", doc))
    documented = {name.replace("[]", "") for name in documented}
    missing = []
    for dotted in _fields(ClusterModel) + _fields(MacFile):
        # documented as the full path, as a trailing part of it (``banks[].bank`` in the
        # switches table), or through its own fields (``head.interfaces.cluster``)
        if not any(
            f".{dotted}".endswith(f".{name}") or name.startswith(f"{dotted}.")
            for name in documented
        ):
            missing.append(dotted)
    assert not missing, f"fields missing from docs/cluster-model.md: {missing}"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]
    assert "make run" in first_block
    assert "make test" in first_block
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
