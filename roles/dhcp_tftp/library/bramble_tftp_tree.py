"""Ansible module: the TFTP tree of a bramble cluster (one serial folder per Pi)."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: bramble_tftp_tree
short_description: Keep the per-serial TFTP tree of network-booted Raspberry Pis
description:
  - Makes the TFTP root hold one C(<serial>/) folder per Pi (8 hex digits, the folder the
    Pi 3B+ boot ROM asks for after C(bootcode.bin)), each holding a symbolic link to every
    entry of one shared boot folder, and a per-Pi C(cmdline.txt) only where it differs from
    the shared one. Links C(root_files) (C(bootcode.bin)) at the TFTP root.
  - A serial folder is owned by this module: entries that are not wanted in it are removed.
    Each carries a marker file (C(.bramble-tftp)); with O(prune), marked serial folders of
    Pis no longer listed are removed. Folders without the marker are never removed.
  - Changes only what differs, replaces links and files atomically, supports check and diff
    mode. One call handles a whole cluster (1,050 Pis) in a second, where a loop of file tasks
    would take minutes.
options:
  root:
    description: The TFTP root (created when missing).
    type: path
    required: true
  boot_dir:
    description: The shared boot folder every serial folder links to.
    type: path
    required: true
  pis:
    description:
      - The Pis of the cluster (C(bramble_pis)); each one with a C(serial) gets a folder,
        named by the serial (8 hex digits). Other keys are ignored.
    type: list
    elements: dict
    required: true
  cmdline_overrides:
    description:
      - A Pi's own C(cmdline.txt) content, by Pi name. A Pi without one, or with one equal to
        the shared C(cmdline.txt), links the shared file.
    type: dict
    default: {}
  root_files:
    description: Entries of O(boot_dir) linked at the TFTP root.
    type: list
    elements: str
    default: [bootcode.bin]
  prune:
    description: Remove marked serial folders of Pis that are not in O(pis).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author: bramble
"""

EXAMPLES = r"""
- name: Link every Pi's serial folder to the shared boot files
  bramble_tftp_tree:
    root: /srv/bramble/tftp
    boot_dir: /srv/bramble/boot
    pis:
      - {name: pi-07-03, serial: 4db34690}
      - {name: pi-07-04, serial: 993cf558}
      - {name: pi-07-05, serial: null}
    cmdline_overrides:
      pi-07-04: "console=serial0,115200 root=/dev/nfs nfsroot=10.42.0.1:/srv/bramble/root ro\n"
"""

RETURN = r"""
created:
  description: Serials whose folder was made.
  type: list
  elements: str
  returned: always
updated:
  description: Serials whose folder was changed (links or cmdline.txt).
  type: list
  elements: str
  returned: always
removed:
  description: Serials whose (stale) folder was removed.
  type: list
  elements: str
  returned: always
unmanaged:
  description: Serial-like folders without the marker, left alone.
  type: list
  elements: str
  returned: always
boot_entries:
  description: Entries of the boot folder that every serial folder links to.
  type: list
  elements: str
  returned: always
"""

MARKER = ".bramble-tftp"
CMDLINE = "cmdline.txt"
SERIAL_RE = re.compile(r"^[0-9a-f]{8}$")

# An entry of a folder: ("link", target), ("file", content) or ("other", None).
Entry = tuple[str, str | None]


class TreeError(ValueError):
    """Input that cannot describe a TFTP tree; the message says what to fix."""


@dataclass
class Plan:
    """What differs between the tree on disk and the wanted one."""

    make_root: bool = False
    root_links: dict[str, str] = field(default_factory=dict)
    folders: dict[str, dict[str, Entry]] = field(default_factory=dict)
    removals: dict[str, list[str]] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.make_root or self.root_links or self.created or self.updated or self.removed
        )


def folders_of(pis: list[dict[str, Any]], overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """One folder per Pi with a serial: serial checked (8 hex digits, no duplicates)."""
    seen: dict[str, str] = {}
    result = []
    for pi in pis:
        if not pi.get("serial"):
            continue
        name = str(pi.get("name") or pi["serial"])
        serial = str(pi["serial"]).strip().lower()
        if not SERIAL_RE.match(serial):
            raise TreeError(
                f"{name}: serial {pi['serial']!r} is not 8 hex digits; fix it in the cluster's "
                f"macs.yml"
            )
        if serial in seen:
            raise TreeError(f"serial {serial} is claimed by {seen[serial]} and {name}")
        seen[serial] = name
        cmdline = overrides.get(name)
        result.append(
            {"serial": serial, "name": name, "cmdline": None if cmdline is None else str(cmdline)}
        )
    return result


def read_entry(path: str, want_content: bool) -> Entry | None:
    """The entry at ``path`` as the plan compares it; None when nothing is there."""
    if os.path.islink(path):
        return ("link", os.readlink(path))
    if os.path.isfile(path):
        if not want_content:
            return ("file", None)
        with open(path, encoding="utf-8", errors="replace") as handle:
            return ("file", handle.read())
    if os.path.lexists(path):
        return ("other", None)
    return None


def boot_entries(boot_dir: str) -> list[str]:
    """The names in the shared boot folder (hidden names left out)."""
    if not os.path.isdir(boot_dir):
        return []
    return sorted(name for name in os.listdir(boot_dir) if not name.startswith("."))


def wanted_folder(
    folder: dict[str, Any], boot_dir: str, entries: list[str], shared_cmdline: str | None
) -> dict[str, Entry]:
    """The entries one serial folder must hold."""
    wanted: dict[str, Entry] = {name: ("link", os.path.join(boot_dir, name)) for name in entries}
    cmdline = folder.get("cmdline")
    if cmdline is not None and cmdline != shared_cmdline:
        wanted[CMDLINE] = ("file", cmdline)
    wanted[MARKER] = ("file", f"Managed by bramble (dhcp_tftp): TFTP folder of {folder['name']}\n")
    return wanted


def _describe(serial: str, name: str, entry: Entry | None) -> str:
    kind, value = entry if entry else ("absent", None)
    if kind == "link":
        return f"{serial}/{name} -> {value}"
    if kind == "file" and name == CMDLINE:
        return f"{serial}/{name}: {(value or '').rstrip()}"
    return f"{serial}/{name} ({kind})"


def _plan_root_links(plan: Plan, root: str, boot_dir: str, root_files: list[str]) -> None:
    for name in root_files:
        if "/" in name or name in ("", ".", ".."):
            raise TreeError(f"root file {name!r} must be a plain file name")
        target = os.path.join(boot_dir, name)
        current = read_entry(os.path.join(root, name), want_content=False)
        if current != ("link", target):
            plan.root_links[name] = target
            plan.before.append(_describe(".", name, current))
            plan.after.append(_describe(".", name, ("link", target)))


def _plan_folder(plan: Plan, root: str, folder: dict[str, Any], wanted: dict[str, Entry]) -> None:
    serial = folder["serial"]
    path = os.path.join(root, serial)
    present = os.path.isdir(path) and not os.path.islink(path)
    if os.path.islink(path):  # an older layout: the serial linked to a boot folder
        plan.before.append(_describe(serial, "", ("link", os.readlink(path))))
    elif not present and os.path.lexists(path):
        raise TreeError(
            f"{path} ({folder['name']}) exists but is not a folder; remove it and run again"
        )
    changes: dict[str, Entry] = {}
    for name, entry in wanted.items():
        current = read_entry(os.path.join(path, name), want_content=entry[0] == "file")
        if current != entry:
            changes[name] = entry
            plan.before.append(_describe(serial, name, current))
            plan.after.append(_describe(serial, name, entry))
    extra = [name for name in sorted(os.listdir(path)) if name not in wanted] if present else []
    for name in extra:
        current = read_entry(os.path.join(path, name), want_content=name == CMDLINE)
        plan.before.append(_describe(serial, name, current))
    if changes or extra or not present:
        plan.folders[serial] = changes
        plan.removals[serial] = extra
        (plan.updated if present else plan.created).append(serial)


def _plan_stale(plan: Plan, root: str, wanted: set[str], prune: bool) -> None:
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not SERIAL_RE.match(name) or name in wanted or os.path.islink(path):
            continue
        if not os.path.isdir(path):
            continue
        if not os.path.isfile(os.path.join(path, MARKER)):
            plan.unmanaged.append(name)
        elif prune:
            plan.removed.append(name)
            plan.before.append(f"{name}/ (stale folder)")


def plan_tree(
    root: str,
    boot_dir: str,
    folders: list[dict[str, Any]],
    root_files: list[str],
    prune: bool,
) -> Plan:
    """Compare the tree under ``root`` with the wanted one; change nothing."""
    plan = Plan()
    entries = boot_entries(boot_dir)
    shared = read_entry(os.path.join(boot_dir, CMDLINE), want_content=True)
    shared_cmdline = shared[1] if shared and shared[0] == "file" else None
    plan.make_root = not os.path.isdir(root)
    if plan.make_root:
        plan.after.append(f"{root}/ (directory)")
    _plan_root_links(plan, root, boot_dir, root_files)
    for folder in folders:
        _plan_folder(plan, root, folder, wanted_folder(folder, boot_dir, entries, shared_cmdline))
    if not plan.make_root:
        _plan_stale(plan, root, {folder["serial"] for folder in folders}, prune)
    return plan


def _replace_link(path: str, target: str) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.bramble-tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    os.replace(tmp, path)


def _replace_file(path: str, content: str) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.bramble-tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.chmod(tmp, 0o644)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    os.replace(tmp, path)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def apply_plan(root: str, plan: Plan) -> None:
    """Make the changes of ``plan`` on disk."""
    if plan.make_root:
        os.makedirs(root, mode=0o755)
    for name, target in plan.root_links.items():
        _replace_link(os.path.join(root, name), target)
    for serial, changes in plan.folders.items():
        path = os.path.join(root, serial)
        if os.path.islink(path):
            os.unlink(path)
        if not os.path.isdir(path):
            os.mkdir(path, 0o755)
        for name in plan.removals.get(serial, []):
            _remove(os.path.join(path, name))
        for name, (kind, value) in changes.items():
            if kind == "link":
                _replace_link(os.path.join(path, name), str(value))
            else:
                _replace_file(os.path.join(path, name), str(value))
    for serial in plan.removed:
        shutil.rmtree(os.path.join(root, serial))


def main() -> None:  # pragma: no cover - run by Ansible, tested through playbooks
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "boot_dir": {"type": "path", "required": True},
            "pis": {"type": "list", "elements": "dict", "required": True},
            "cmdline_overrides": {"type": "dict", "default": {}},
            "root_files": {"type": "list", "elements": "str", "default": ["bootcode.bin"]},
            "prune": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    root = os.path.abspath(params["root"])
    boot_dir = os.path.abspath(params["boot_dir"])
    try:
        folders = folders_of(params["pis"], params["cmdline_overrides"])
        plan = plan_tree(root, boot_dir, folders, params["root_files"], params["prune"])
        if plan.changed and not module.check_mode:
            apply_plan(root, plan)
    except (TreeError, OSError) as exc:
        module.fail_json(msg=f"TFTP tree {root}: {exc}")
    result: dict[str, Any] = {
        "changed": plan.changed,
        "created": plan.created,
        "updated": plan.updated,
        "removed": plan.removed,
        "unmanaged": plan.unmanaged,
        "boot_entries": boot_entries(boot_dir),
    }
    if module._diff:
        result["diff"] = {
            "before_header": root,
            "after_header": root,
            "before": "".join(f"{line}\n" for line in plan.before),
            "after": "".join(f"{line}\n" for line in plan.after),
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
