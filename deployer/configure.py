"""Configure the unpacked target for this machine: fstab, hostname, network, root password, SSH keys,
a fresh machine-id and /etc/metalstream/deployment.json.

Only files are written; nothing of the target is executed (no dracut, grub-mkconfig, os-prober):
the image's pregenerated initramfs is kept. Every path is resolved inside the target root
(metalstream.rootfs), so a symlink in the image never leads a write out of it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from metalstream import proc
from metalstream.contracts.plan import Plan
from metalstream.rootfs import make_dirs, resolve, write_file

from .network import configure_network, network_stack, networkd_files, networkmanager_files  # noqa: F401
from .partition import Layout
from .storage.luks import crypttab_text
from .storage.md import mdadm_conf
from .storage.model import StoragePlan

log = logging.getLogger("metalstream.configure")


def fstab_text(layout: Layout | StoragePlan) -> str:
    if isinstance(layout, StoragePlan):
        entries = [(f.uuid, f.mountpoint, f.fstype, f.options, f.subvol) for f in layout.filesystems]
    else:
        entries = [(p.fs_uuid, p.mountpoint, p.fstype, p.fsoptions, None) for p in layout.partitions if p.fstype]
    lines = ["# /etc/fstab: written by metalstream at deploy time (by filesystem UUID)",
             "# <file system>  <mount point>  <type>  <options>  <dump>  <pass>"]
    for uuid_, mountpoint, fstype, fsoptions, subvol in entries:
        if fstype == "swap":
            lines.append(f"UUID={uuid_}  none  swap  {fsoptions or 'sw'}  0  0")
            continue
        if fstype == "vfat":
            # nofail: a machine booted through BIOS must not hang waiting for its ESP
            lines.append(f"UUID={uuid_}  {mountpoint}  vfat  {fsoptions or 'umask=0077,nofail'}  0  2")
            continue
        if fstype == "btrfs":  # several subvolumes share the UUID; btrfs needs no boot-time fsck
            options = ",".join([*([f"subvol={subvol}"] if subvol else []), fsoptions or "defaults"])
            lines.append(f"UUID={uuid_}  {mountpoint}  btrfs  {options}  0  0")
            continue
        options = fsoptions or ("defaults,errors=remount-ro" if fstype == "ext4" else "defaults")
        passno = 0 if fstype == "xfs" else 1 if mountpoint == "/" else 2
        lines.append(f"UUID={uuid_}  {mountpoint}  {fstype}  {options}  0  {passno}")
    return "\n".join(lines) + "\n"


def mdadm_conf_path(root: Path) -> str:
    """Debian keeps mdadm.conf in /etc/mdadm/, the RPM family in /etc/."""
    debian = resolve(root, "etc/mdadm").is_dir() or resolve(root, "etc/debian_version").exists()
    return "etc/mdadm/mdadm.conf" if debian else "etc/mdadm.conf"


def write_storage_files(root: Path, storage: StoragePlan) -> dict:
    """crypttab and mdadm.conf for the stacks the plan built (the running system's; the initramfs is told on
    the kernel command line: deployer.storage.bootargs)."""
    done = {}
    if storage.crypts:
        write_file(root, "etc/crypttab", crypttab_text(storage.crypts), mode=0o600)
        done["crypttab"] = len(storage.crypts)
    if storage.arrays:
        path = mdadm_conf_path(root)
        make_dirs(root, os.path.dirname(path))
        existing = resolve(root, path)
        write_file(root, path, mdadm_conf(existing.read_text() if existing.is_file() else "", storage.arrays))
        done["mdadm_conf"] = "/" + path
    return done


def set_hostname(root: Path, hostname: str) -> None:
    write_file(root, "etc/hostname", hostname + "\n")
    hosts = resolve(root, "etc/hosts")
    lines = hosts.read_text().splitlines() if hosts.is_file() else ["127.0.0.1\tlocalhost"]
    short = hostname.split(".")[0]
    entry = f"127.0.1.1\t{hostname}" + (f"\t{short}" if short != hostname else "")
    lines = [line for line in lines if not line.startswith("127.0.1.1")] + [entry]
    write_file(root, "etc/hosts", "\n".join(lines) + "\n")


def set_root_password(root: Path, password_hash: str) -> None:
    shadow = resolve(root, "etc/shadow")
    lines = shadow.read_text().splitlines() if shadow.is_file() else []
    found = False
    for i, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == "root" and len(fields) >= 2:
            fields[1] = password_hash
            lines[i] = ":".join(fields)
            found = True
    if not found:
        lines.insert(0, f"root:{password_hash}:19000:0:99999:7:::")
    write_file(root, "etc/shadow", "\n".join(lines) + "\n", mode=None if shadow.exists() else 0o640)


def add_authorized_keys(root: Path, keys: list[str]) -> None:
    os.chmod(make_dirs(root, "root/.ssh", mode=0o700), 0o700)
    path = resolve(root, "root/.ssh/authorized_keys")
    existing = path.read_text().splitlines() if path.is_file() else []
    merged = existing + [k for k in keys if k not in existing]
    write_file(root, "root/.ssh/authorized_keys", "\n".join(merged) + "\n", mode=0o600)


def fresh_machine_id(root: Path) -> str:
    machine_id = uuid.uuid4().hex
    write_file(root, "etc/machine-id", machine_id + "\n", mode=0o444)
    dbus = resolve(root, "var/lib/dbus/machine-id", follow_last=False)
    if not dbus.is_symlink() and dbus.exists():  # a link to /etc/machine-id is right as it is
        write_file(root, "var/lib/dbus/machine-id", machine_id + "\n", mode=0o444)
    return machine_id


class HostKeyForge:
    """`ssh-keygen -A` started into a scratch directory at the beginning of an install, so the tenths of a
    second of CPU an RSA key takes overlap the image stream; `ssh_host_keys` moves the keys in if the target
    wants them.
    A context manager: the generator is stopped and its keys are discarded if they are not used."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.process = None

    def __enter__(self) -> "HostKeyForge":
        if shutil.which("ssh-keygen") is not None:
            (self.scratch / "etc/ssh").mkdir(parents=True, exist_ok=True)
            self.process = proc.spawn(["ssh-keygen", "-A", "-f", self.scratch], stdout=subprocess.DEVNULL)
            # The lowest priority: its CPU then comes from what the stream leaves idle, not from the stream.
            with contextlib.suppress(OSError):  # only an optimisation
                os.setpriority(os.PRIO_PROCESS, self.process.pid, 19)
        return self

    def keys(self) -> list[Path] | None:
        """The generated key files (private and .pub), or None when ssh-keygen is not available here."""
        if self.process is None:
            return None
        proc.wait_checked(self.process)
        return sorted((self.scratch / "etc/ssh").glob("ssh_host_*"))

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            proc.terminate(self.process, grace=2)
        shutil.rmtree(self.scratch, ignore_errors=True)


def ssh_host_keys(root: Path, forge: HostKeyForge | None = None) -> bool:
    """Fresh SSH host keys for this machine when the image has sshd but (rightly) ships none."""
    ssh_dir = resolve(root, "etc/ssh")
    if not (ssh_dir / "sshd_config").is_file() or any(ssh_dir.glob("ssh_host_*_key")):
        return False
    keys = forge.keys() if forge else None
    if keys:
        for key in keys:
            write_file(root, f"etc/ssh/{key.name}", key.read_text(), mode=0o644 if key.suffix == ".pub" else 0o600)
        return True
    if shutil.which("ssh-keygen") is None:
        log.warning("ssh-keygen not found: the target has sshd but no host keys (sshd may not start)")
        return False
    proc.run(["ssh-keygen", "-A", "-f", root])
    return True


def configure_target(root: Path, plan: Plan, layout: Layout | StoragePlan,
                     host_keys: HostKeyForge | None = None) -> dict:
    """Apply the plan's per-machine settings to the unpacked tree at `root`; returns what was done.
    `layout`: the single disk's layout, or the whole StoragePlan (also writes crypttab and mdadm.conf)."""
    storage = plan.storage
    hostname = plan.hostname or (storage.hostname if storage else None)
    network = plan.network or (storage.network if storage else [])
    keys = list(plan.ssh_keys) + [k.key for k in (storage.ssh_keys if storage else []) if k.user == "root"]
    write_file(root, "etc/fstab", fstab_text(layout))
    done = {"fstab": True, "machine_id": fresh_machine_id(root)}
    if isinstance(layout, StoragePlan):
        done.update(write_storage_files(root, layout))
    if hostname:
        set_hostname(root, hostname)
        done["hostname"] = hostname
    done["network"] = configure_network(root, network)
    done["ssh_host_keys"] = ssh_host_keys(root, host_keys)
    if plan.root_password_hash:
        set_root_password(root, plan.root_password_hash)
        done["root_password"] = True
    if keys:
        add_authorized_keys(root, keys)
        done["ssh_keys"] = len(keys)
    deployment = {"deployment_id": plan.deployment_id, "image": plan.image.name, "sha256": plan.image.sha256,
                  "root_uuid": layout.root.uuid if isinstance(layout, StoragePlan) else layout.root.fs_uuid}
    write_file(root, "etc/metalstream/deployment.json", json.dumps(deployment, indent=2) + "\n")
    return done
