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
from storage_plans import GIB, PASSPHRASE, install_specs, luks_on_lvm_plan, lvm_plan, raid1_plan

IMAGE_DIR = Path("/opt/ms/image")


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


def install(name: str, manifest: Path, boot_mode: str, spec, disks: dict[str, str], passphrase) -> dict:
    """The whole install (deployer.install.run_install) of the image at `manifest` with `spec`, then what the
    disks hold: reassembled read-only, /boot's grub.cfg and the root's fstab, crypttab, mdadm.conf."""
    import dataclasses

    from deployer.install import run_install
    from deployer.plan import local_plan

    class Events:
        def __init__(self):
            self.seen = []

        def event(self, phase, message, done=None, total=None):
            if done is None:
                self.seen.append(f"{phase}: {message}")

        def result(self, **kwargs):
            self.seen.append(f"result: {kwargs}")

    events = Events()
    plan = dataclasses.replace(local_plan(str(manifest), boot_mode=boot_mode, hostname=name), storage=spec,
                               encryption_passphrase=passphrase)
    result = {"name": name}
    try:
        done = run_install(plan, disks, events)
        result.update(ok=True, bootloaders=done.bootloaders, configured={k: str(v) for k, v in done.configured.items()},
                      root_uuid=done.root_uuid)
    except Exception:
        result.update(ok=False, error=traceback.format_exc())
    result["events"] = events.seen
    result["after"] = holders()
    result["written"] = read_back(passphrase)
    return result


def read_back(passphrase) -> dict:
    """Assemble/open/activate what the install left (as the target's initramfs would) and read its files."""
    found = {"assemble": sh("mdadm --assemble --scan --readonly 2>&1; udevadm settle")}
    if passphrase:
        for line in sh("blkid -t TYPE=crypto_LUKS -o device").split():
            uuid = sh(f"cryptsetup luksUUID {line}").strip()
            subprocess.run(["cryptsetup", "open", "--readonly", "--key-file=-", line, f"luks-{uuid}"],
                           input=passphrase, text=True, capture_output=True)
    found["vgchange"] = sh("vgchange -ay 2>&1; udevadm settle")
    found["lsblk"] = sh("lsblk -o NAME,TYPE,FSTYPE,MOUNTPOINT")
    for device in sh("blkid -o device").split():
        fstype = sh(f"blkid -o value -s TYPE {device}").strip()
        if fstype not in ("ext4", "xfs", "btrfs"):
            continue
        mount = Path(tempfile.mkdtemp(dir="/tmp"))
        if subprocess.run(["mount", "-o", "ro", device, mount], capture_output=True).returncode != 0:
            continue
        for name in ("grub/grub.cfg", "etc/fstab", "etc/crypttab", "etc/mdadm/mdadm.conf", "etc/mdadm.conf"):
            if (mount / name).is_file():
                found[f"{device}:{name}"] = (mount / name).read_text()
        subprocess.run(["umount", mount])
    sh("vgchange -an; for d in /dev/mapper/luks-*; do cryptsetup close $d; done; mdadm --stop --scan")
    return found


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
    manifests = sorted(IMAGE_DIR.glob("*.json"))
    if manifests:
        for name, (boot_mode, spec, disks, passphrase) in install_specs().items():
            results.append(install(name, manifests[0], boot_mode, spec, disks, passphrase))
    results.append({"name": "logs", "passphrase_logged": any(PASSPHRASE in line for line in records.lines),
                    "lines": len(records.lines), "argv": [line for line in records.lines if "cryptsetup" in line]})
    sys.stdout.write("MS-RESULT " + json.dumps(results) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
