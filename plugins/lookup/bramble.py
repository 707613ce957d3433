"""Lookup plugin: fleet data of the bramble cluster model (the Pis, the whole model)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: bramble
short_description: Fleet data of the bramble cluster model
description:
  - Returns data of the cluster model that the bramble inventory plugin read, loaded once per
    run. The inventory plugin defines C(bramble_pis) as C(query('bramble', 'pis')) and
    C(bramble_model) as C(lookup('bramble', 'model')); use those variables.
options:
  _terms:
    description: C(pis) (every Pi as a dict, see docs/cluster-model.md) or C(model) (the whole
      validated cluster.yml with defaults filled in).
    required: true
"""

EXAMPLES = r"""
- name: Count the harvested Pis
  ansible.builtin.debug:
    msg: "{{ query('bramble', 'pis') | selectattr('mac') | list | length }}"
"""

RETURN = r"""
_raw:
  description: For C(pis), one dict per Pi; for C(model), the model as one dict.
  type: list
"""

try:
    from bramble.model import ModelError, load_cluster_cached
except ImportError as _exc:
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None


class LookupModule(LookupBase):  # type: ignore[misc]
    """Returns the Pis or the model of the inventory's cluster."""

    def run(self, terms: list[str], variables: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if _IMPORT_ERROR is not None:
            raise AnsibleLookupError(
                f"the bramble Python package is not importable ({_IMPORT_ERROR}); run `make venv`"
            )
        cluster_vars = (variables or {}).get("bramble_cluster")
        if not isinstance(cluster_vars, dict) or "model_file" not in cluster_vars:
            raise AnsibleLookupError(
                "no bramble cluster model in this inventory: point -i at an inventory folder "
                "holding cluster.yml (see docs/cluster-model.md)"
            )
        try:
            cluster = load_cluster_cached(cluster_vars["model_file"])
        except ModelError as exc:
            raise AnsibleLookupError(str(exc)) from None
        results: list[Any] = []
        for term in terms:
            if term == "pis":
                results.extend(cluster.pi_dicts())
            elif term == "model":
                results.append(cluster.model.model_dump(mode="json"))
            else:
                raise AnsibleLookupError(f"unknown term {term!r}: use 'pis' or 'model'")
        return results
