"""Run inside the installer VM (tests/storage_apply_vm.py boots it): apply each hand-built StoragePlan with
the real tools on the VM's disks and image files, record what the system shows while it is applied and after
the teardown, and print it as one `MS-RESULT {json}` line on the console.

    python3 -m storage_apply_checks      (PYTHONPATH holds this directory and the repo's packages)
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

from deployer.storage.apply import apply_storage
from storage_plans import GIB, PASSPHRASE, luks_on_lvm_plan, lvm_plan, raid1_plan


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def sh(command: str) -> str:
    done = subprocess.run(command, shell=True, capture_output=True, text=True)
    return done.stdout + done.stderr


def holders() -> dict:
    """What the stacks could leave behind: md arrays, device-mapper devices, loops, mounts of the work dir."""
    return {"mdstat": sh("cat /proc/mdstat"), "dm": sh("dmsetup ls"), "loops": sh("losetup -a"),
            "mounts": sh("grep /tmp/apply /proc/mounts")}


def scenario(name: str, plan, passphrase, evidence: list[str]) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"apply-{name}-", dir="/tmp"))
    result = {"name": name}
    try:
        with apply_storage(plan, passphrase, work) as applied:
            result["devices"] = applied.devices
            result["while"] = {command: sh(command.format(root=applied.root)) for command in evidence}
            (applied.root / "etc").mkdir(exist_ok=True)
            (applied.root / "etc/written").write_text(name)
        result["ok"] = True
    except Exception:
        result["ok"] = False
        result["error"] = traceback.format_exc()
    result["after"] = holders()
    return result


def main() -> int:
    records = Records()
    logging.getLogger().addHandler(records)
    logging.getLogger().setLevel(logging.DEBUG)
    results = [holders() | {"name": "before"}]
    results.append(scenario("lvm", lvm_plan("/dev/vda"), None, [
        "lvs --noheadings -o lv_name,vg_name,lv_size,segtype --units m vgsys",
        "findmnt -R -n -o TARGET,SOURCE,FSTYPE {root}",
        "swapon --show", "blkid -o export /dev/mapper/vgsys-swap"]))
    for image in ("/tmp/a.img", "/tmp/b.img"):
        Path(image).unlink(missing_ok=True)
    results.append(scenario("raid1", raid1_plan("/tmp/a.img", "/tmp/b.img", 2 * GIB), None, [
        "cat /proc/mdstat", "mdadm --detail --scan", "findmnt -R -n -o TARGET,SOURCE,FSTYPE {root}",
        "realpath /dev/md/root",
        "mdadm --detail /dev/md/root"]))
    luks = luks_on_lvm_plan("/dev/vdb")
    results.append(scenario("luks", luks, PASSPHRASE, [
        "cryptsetup luksDump /dev/vdb3", "lvs --noheadings -o lv_name,vg_name vgcrypt",
        "findmnt -R -n -o TARGET,SOURCE,FSTYPE {root}", "dmsetup ls"]))
    results.append({"name": "logs", "passphrase_logged": any(PASSPHRASE in line for line in records.lines),
                    "lines": len(records.lines), "argv": [line for line in records.lines if "cryptsetup" in line]})
    sys.stdout.write("MS-RESULT " + json.dumps(results) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
