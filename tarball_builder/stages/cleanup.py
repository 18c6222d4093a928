"""Stage `cleanup`: drop what must not ship, and reset per-machine identity.

Removed: the backend's package caches and lists, logs (files under /var/log are truncated, rotated ones
and the journal removed), /tmp, /var/tmp and /run contents, SSH host keys, random seeds, caches whose
content depends on the build time. /etc/machine-id is kept but emptied (systemd fills it on first boot);
/var/lib/dbus/machine-id points at it. Debian's openssh-server does not recreate host keys by itself, so
a small unit, metalstream-ssh-keygen.service (`ssh-keygen -A` before sshd), is installed and enabled.
"""
from __future__ import annotations

from pathlib import Path

from metalstream import rootfs

from ..context import Backend, BuildContext

# Relative to the root; glob patterns.
REMOVE = [
    "tmp/*", "tmp/.*", "var/tmp/*", "var/tmp/.*", "run/*", "run/.*",
    "etc/ssh/ssh_host_*",
    "var/lib/systemd/random-seed", "var/lib/systemd/credential.secret", "var/lib/urandom/random-seed",
    "var/cache/ldconfig/aux-cache", "var/log/journal/*",
    "var/log/*.gz", "var/log/*.[0-9]", "var/log/*.old", "var/log/**/*.gz", "var/log/**/*.[0-9]",
    "var/cache/man/*", "var/cache/fontconfig/*",
    "etc/.pwd.lock", "etc/*-",  # shadow backups (passwd-, shadow-, ...) hold the pre-build state
    "root/.bash_history", "root/.lesshst", "root/.wget-hsts",
]

SSH_KEYGEN_UNIT = """\
[Unit]
Description=Generate missing SSH host keys (metalstream image first boot)
Before=ssh.service sshd.service
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
"""
UNIT_NAME = "metalstream-ssh-keygen.service"


class CleanupStage:
    name = "cleanup"
    description = "remove caches, logs and machine identity"

    def __init__(self, backend: Backend):
        self.backend = backend

    def run(self, ctx: BuildContext) -> None:
        removed = remove_globs(ctx.root, [*self.backend.cache_globs(), *REMOVE])
        truncate_logs(ctx.root)
        reset_machine_id(ctx)
        resolv = rootfs.resolve(ctx.root, "/etc/resolv.conf", follow_last=False)
        if resolv.is_file() and not resolv.is_symlink() and resolv.stat().st_size == 0:
            resolv.unlink()  # the chroot's placeholder; the deployed machine's DHCP client writes it
        if rootfs.exists(ctx.root, "/usr/sbin/sshd"):
            install_ssh_keygen_unit(ctx)
        ctx.log.info("cleanup removed %d paths", removed)


def remove_globs(root: Path, patterns: list[str]) -> int:
    count = 0
    for pattern in patterns:
        for path in reversed(rootfs.glob(root, pattern)):  # a directory's content before the directory
            rootfs.remove(root, path)
            count += 1
    return count


def truncate_logs(root: Path) -> None:
    """Empty every log file but keep it (and its owner and mode): daemons expect some to exist."""
    for path in rootfs.regular_files(root, "/var/log"):
        rootfs.truncate(root, path)


def reset_machine_id(ctx: BuildContext) -> None:
    if rootfs.resolve(ctx.root, "/etc").is_dir():
        rootfs.write_file(ctx.root, "/etc/machine-id", "", mode=0o444)
    dbus_dir = rootfs.resolve(ctx.root, "/var/lib/dbus")
    if dbus_dir.is_dir():
        dbus_id = dbus_dir / "machine-id"
        if dbus_id.exists() or dbus_id.is_symlink():
            dbus_id.unlink()
        dbus_id.symlink_to("/etc/machine-id")


def install_ssh_keygen_unit(ctx: BuildContext) -> None:
    if not (rootfs.exists(ctx.root, "/usr/bin/systemctl") or rootfs.exists(ctx.root, "/bin/systemctl")):
        return
    rootfs.write_file(ctx.root, f"/etc/systemd/system/{UNIT_NAME}", SSH_KEYGEN_UNIT)
    link = rootfs.writable_path(ctx.root, f"/etc/systemd/system/multi-user.target.wants/{UNIT_NAME}")
    if not link.is_symlink():
        link.symlink_to(f"/etc/systemd/system/{UNIT_NAME}")
