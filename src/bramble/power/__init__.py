"""bank_power's drivers and plan, importable without Ansible (the cluster server uses them).

The code lives once, in ``plugins/module_utils/`` (Ansible ships it to bank_power from
there). The three files of this package are symbolic links to those files in the source tree
and copies in the wheel (setuptools follows the links), so the server's container gets the very
code bank_power runs. ``bramble_power`` imports its siblings by their Ansible names
(``ansible.module_utils.bramble_power_drivers``); this package registers its own copies under
those names (only where nothing is registered yet), so no Ansible is needed to import it.
"""

from __future__ import annotations

import sys

from bramble.power import bramble_power_drivers as drivers
from bramble.power import bramble_power_wait as wait

for _module in (drivers, wait):
    sys.modules.setdefault(f"ansible.module_utils.{_module.__name__.rsplit('.', 1)[1]}", _module)

from bramble.power import bramble_power as plan  # noqa: E402 - after the names are registered

__all__ = ["drivers", "plan", "wait"]
