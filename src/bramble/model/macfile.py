"""The harvested-MAC file (macs.yml): one line per Pi, sorted, so diffs stay readable."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bramble.model import net
from bramble.model.schema import MacEntry, MacFile
from bramble.model.validation import validate
from bramble.model.yamlio import load_yaml

HEADER = """\
# bramble MAC file: which Pi (MAC and serial) sits in which bank slot.
# Written by mac_harvest; one line per Pi, sorted by bank and slot (docs/cluster-model.md).
---
"""


def read_mac_file(path: Path) -> list[MacEntry]:
    """The entries of a MAC file; a missing file means nothing has been harvested yet."""
    if not path.exists():
        return []
    data: MacFile = validate(MacFile, load_yaml(path), path)
    return list(data.macs)


def dump_mac_file(entries: Iterable[MacEntry]) -> str:
    """The canonical text of a MAC file: normalised values, sorted by bank and slot."""
    rows = sorted(entries, key=lambda e: (e.bank, e.slot))
    if not rows:
        return HEADER + "macs: []\n"
    lines = [HEADER + "macs:"]
    for entry in rows:
        fields = f'bank: {entry.bank}, slot: {entry.slot}, mac: "{net.normalize_mac(entry.mac)}"'
        if entry.serial is not None:
            fields += f', serial: "{net.normalize_serial(entry.serial)}"'
        lines.append(f"  - {{{fields}}}")
    return "\n".join(lines) + "\n"


def write_mac_file(path: Path, entries: Iterable[MacEntry]) -> bool:
    """Write the MAC file atomically if its text changes; True when it changed."""
    text = dump_mac_file(entries)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
