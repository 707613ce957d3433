"""Filters for templates: Pi addresses, MACs, serials and dnsmasq reservations.

Each is a thin wrapper over bramble.model.net, where the rules are documented and tested.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

_net: Any
try:
    from bramble.model import net as _net
except ImportError as _exc:  # reported when a filter is used, with what to do
    _net = None
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None


def _model_net() -> Any:
    if _net is None:
        raise AnsibleFilterError(
            f"the bramble Python package is not importable ({_IMPORT_ERROR}); run `make venv`"
        )
    return _net


def _wrap(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise AnsibleFilterError(f"{name}: {exc}") from None

    call.__name__ = name
    call.__doc__ = func.__doc__
    return call


def slot_ip(network: str, bank: int, slot: int, bank_stride: int = 256) -> str:
    """``'10.42.0.0/16' | bramble_slot_ip(7, 3)`` -> ``10.42.7.3``."""
    return str(_model_net().slot_ip(network, int(bank), int(slot), int(bank_stride)))


def mac(value: str) -> str:
    """``'B8-27-EB-12-34-56' | bramble_mac`` -> ``b8:27:eb:12:34:56``."""
    return str(_model_net().normalize_mac(value))


def serial_suffix(value: str, model: str = "pi3bplus") -> str | None:
    """``'b8:27:eb:b3:46:90' | bramble_serial_suffix`` -> ``b34690`` (None if not derivable)."""
    result = _model_net().serial_suffix_from_mac(value, model)
    return None if result is None else str(result)


def serial(value: str) -> str:
    """``'000000004db34690' | bramble_serial`` -> ``4db34690`` (the TFTP folder name)."""
    return str(_model_net().normalize_serial(value))


def dhcp_host(pi: Mapping[str, Any]) -> str:
    """A Pi from ``bramble_pis`` -> ``dhcp-host=b8:27:eb:..,pi-07-03,10.42.7.3``."""
    if not isinstance(pi, Mapping):
        raise TypeError(f"expected a Pi from bramble_pis (a mapping), got {pi!r}")
    if not pi.get("mac"):
        raise ValueError(f"{pi.get('name', pi)} has no harvested MAC; filter on state first")
    return str(_model_net().dhcp_host_line(pi["mac"], pi["name"], pi["ip"]))


class FilterModule:
    """bramble's filters; each name starts with ``bramble_``."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        table: dict[str, Callable[..., Any]] = {
            "bramble_slot_ip": slot_ip,
            "bramble_mac": mac,
            "bramble_serial_suffix": serial_suffix,
            "bramble_serial": serial,
            "bramble_dhcp_host": dhcp_host,
        }
        return {name: _wrap(name, func) for name, func in table.items()}
