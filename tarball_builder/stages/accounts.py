"""Stage `accounts`: groups, users, root password and SSH keys from the build spec.

The image's own shadow tools (groupadd, useradd, usermod) run inside the root. Plain-text passwords
are hashed here with SHA-512 crypt (`openssl passwd -6`); the salt is derived from the kickstart's
sha256 and the user name so the same kickstart gives the same image (a different kickstart, a different salt).
"""
from __future__ import annotations

import hashlib
import os
import string

from metalstream import proc, rootfs
from metalstream.errors import BadInput, CommandError

from ..chroot import Chroot, for_build
from ..context import BuildContext
from .util import where

ROOT_SSH_DROPIN = "/etc/ssh/sshd_config.d/01-permitrootlogin.conf"
SALT_ALPHABET = string.ascii_letters + string.digits + "./"


class AccountsStage:
    name = "accounts"
    description = "create groups and users, set the root password, install SSH keys"

    def run(self, ctx: BuildContext) -> None:
        spec = ctx.build
        if not (spec.groups or spec.users or spec.rootpw or spec.ssh_keys):
            return
        with for_build(ctx) as chroot:
            for group in spec.groups:
                if _lookup(ctx, "/etc/group", group.name) is None:
                    _checked(chroot, ["groupadd", *(["-g", str(group.gid)] if group.gid is not None else []),
                                      group.name], where(ctx, group.line))
            for user in spec.users:
                add_user(ctx, chroot, user)
            if spec.rootpw:
                set_password(ctx, chroot, "root", spec.rootpw.password, spec.rootpw.is_crypted,
                             spec.rootpw.lock, where(ctx, spec.rootpw.line))
        if spec.rootpw and spec.rootpw.allow_ssh:
            permit_root_ssh_login(ctx)
        for key in spec.ssh_keys:
            add_ssh_key(ctx, key.user, key.key, where(ctx, key.line))


def permit_root_ssh_login(ctx: BuildContext) -> None:
    """`rootpw --allow-ssh`, as anaconda writes it: a drop-in sshd reads before sshd_config's own settings."""
    rootfs.write_file(ctx.root, ROOT_SSH_DROPIN, "PermitRootLogin yes\n")


def add_user(ctx: BuildContext, chroot: Chroot, user) -> None:
    loc = where(ctx, user.line)
    if _lookup(ctx, "/etc/passwd", user.name) is not None:
        raise BadInput(f"user {user.name!r} already exists in the image", location=loc)
    for group in user.groups:
        if _lookup(ctx, "/etc/group", group) is None:
            _checked(chroot, ["groupadd", group], loc)
    argv = ["useradd", "-m"]
    if user.gid is not None:
        if _lookup(ctx, "/etc/group", user.name) is None:
            _checked(chroot, ["groupadd", "-g", str(user.gid), user.name], loc)
        argv += ["-g", user.name]
    if user.uid is not None:
        argv += ["-u", str(user.uid)]
    if user.groups:
        argv += ["-G", ",".join(user.groups)]
    if user.gecos:
        argv += ["-c", user.gecos]
    if user.homedir:
        argv += ["-d", user.homedir]
    if user.shell:
        argv += ["-s", user.shell]
    _checked(chroot, [*argv, user.name], loc)
    if user.password is not None or user.lock:
        set_password(ctx, chroot, user.name, user.password, user.is_crypted, user.lock, loc)


def set_password(ctx: BuildContext, chroot: Chroot, name: str, password: str | None, is_crypted: bool,
                 lock: bool, loc: str) -> None:
    if password is not None:
        hashed = password if is_crypted else hash_password(password, _salt(ctx.kickstart.sha256, name))
        _checked(chroot, ["chpasswd", "-e"], loc, input=f"{name}:{hashed}\n")  # stdin: no hash in argv or logs
    if lock:
        _checked(chroot, ["usermod", "-L", name], loc)


def hash_password(password: str, salt: str) -> str:
    return proc.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password + "\n").stdout.strip()


def _salt(kickstart_sha256: str, user: str) -> str:
    digest = hashlib.sha256(f"{kickstart_sha256}:{user}".encode()).digest()
    return "".join(SALT_ALPHABET[b % len(SALT_ALPHABET)] for b in digest[:16])


def add_ssh_key(ctx: BuildContext, user: str, key: str, loc: str) -> None:
    entry = _lookup(ctx, "/etc/passwd", user)
    if entry is None:
        raise BadInput(f"sshkey: user {user!r} does not exist in the image", location=loc)
    uid, gid, home = int(entry[2]), int(entry[3]), entry[5]
    ssh_dir = rootfs.make_dirs(ctx.root, f"{home}/.ssh", mode=0o700)
    os.chown(ssh_dir, uid, gid)
    ssh_dir.chmod(0o700)
    keys = rootfs.resolve(ctx.root, f"{home}/.ssh/authorized_keys")
    existing = keys.read_text() if keys.is_file() else ""
    if key.strip() not in existing.splitlines():
        existing += key.strip() + "\n"
    rootfs.write_file(ctx.root, f"{home}/.ssh/authorized_keys", existing, mode=0o600, owner=(uid, gid))


def _lookup(ctx: BuildContext, db: str, name: str) -> list[str] | None:
    path = rootfs.resolve(ctx.root, db)
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return None


def _checked(chroot: Chroot, argv: list[str], loc: str, input: str | None = None) -> None:
    try:
        chroot.run(argv, input=input)
    except CommandError as exc:
        raise BadInput(f"{argv[0]} failed: {exc.stderr.strip() or exc}", location=loc) from exc
