"""Run commands inside a build root, isolated from the build host.

Every command runs in its own private mount namespace and PID namespace
(`unshare --mount --propagation private --pid --fork --kill-child`). Inside it a small shell
prologue mounts a fresh /proc, /sys (bind), a minimal /dev (tmpfs with the usual nodes, a private
devpts and /dev/shm) and a tmpfs /run into the root, then `chroot`s. Those mounts exist only in that
namespace: the host never sees them and the kernel drops them when the namespace's last process
exits, whether the command succeeded, failed or was killed. The command is PID 1 of its PID
namespace, so every process it leaves behind is killed when it exits: no daemon outlives a command.

While a `Chroot` is open, `/usr/sbin/policy-rc.d` (exit 101) tells Debian maintainer scripts not to
start services, and `SYSTEMD_OFFLINE=1` keeps systemctl from talking to the host's systemd.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from metalstream import proc, rootfs
from metalstream.errors import OperationFailed

# Runs on the host side, in the new namespaces, before chroot. "$1" is the root, the rest is the command.
_PROLOGUE = r"""
set -e
root=$1; shift
for d in proc sys dev run tmp; do [ -d "$root/$d" ] || mkdir -p "$root/$d"; done
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount --rbind /sys "$root/sys"
mount -t tmpfs -o nosuid,mode=0755,size=16m metalstream-dev "$root/dev"
for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
    IFS=: read -r name major minor <<EOF
$node
EOF
    mknod -m 666 "$root/dev/$name" c "$major" "$minor"
done
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o nosuid,nodev,mode=1777 shm "$root/dev/shm"
mount -t tmpfs -o nosuid,nodev,mode=0755 run "$root/run"
# Name resolution for package scripts and %post: the host's resolv.conf, visible only in this namespace.
# An empty placeholder file may be left behind; the cleanup stage removes it.
if [ -d "$root/etc" ] && [ ! -L "$root/etc/resolv.conf" ] && [ -f /etc/resolv.conf ]; then
    [ -e "$root/etc/resolv.conf" ] || : > "$root/etc/resolv.conf"
    mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
fi
if [ "$METALSTREAM_NOCHROOT" = 1 ]; then
    exec "$@"
fi
exec chroot "$root" "$@"
"""

POLICY_RC_D_PATH = "/usr/sbin/policy-rc.d"
POLICY_RC_D = "#!/bin/sh\n# metalstream build: never start services while building an image\nexit 101\n"

# Inside the root the host's environment is not wanted: only these variables (plus the caller's).
_BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TERM": "dumb",
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
    "SYSTEMD_OFFLINE": "1",
    "container": "metalstream-build",
}


class Chroot:
    """Context manager: `with Chroot(root, env={...}) as ch: ch.run([...])`.

    `run` executes a command inside the root; `run_outside` executes a host command (a
    `%post --nochroot` script) with the same mount and PID isolation but without chroot.
    """

    def __init__(self, root: Path, *, env: Mapping[str, str] | None = None):
        self.root = Path(root).resolve()
        self.env = {**_BASE_ENV, **(env or {})}
        self._created_policy = False

    def __enter__(self) -> "Chroot":
        if not self.root.is_dir():
            raise OperationFailed(f"build root {self.root} does not exist")
        policy = rootfs.resolve(self.root, POLICY_RC_D_PATH, follow_last=False)
        if policy.parent.is_dir() and not os.path.lexists(policy):
            rootfs.write_file(self.root, POLICY_RC_D_PATH, POLICY_RC_D, mode=0o755)
            self._created_policy = True
        return self

    def __exit__(self, *exc_info) -> None:
        if self._created_policy:
            rootfs.remove(self.root, POLICY_RC_D_PATH)  # resolved again: the command may have changed the tree
            self._created_policy = False

    def _argv(self, argv: Sequence[str | os.PathLike]) -> list[str]:
        return ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
                "--", "/bin/sh", "-c", _PROLOGUE, "metalstream-chroot", str(self.root),
                *[os.fspath(a) for a in argv]]

    def _env(self, extra: Mapping[str, str] | None, nochroot: bool) -> dict[str, str]:
        env = {**self.env, **(extra or {})}
        env["METALSTREAM_NOCHROOT"] = "1" if nochroot else "0"
        return env

    def run(self, argv: Sequence[str | os.PathLike], *, env: Mapping[str, str] | None = None,
            input: str | None = None, check: bool = True, timeout: float | None = proc.DEFAULT_TIMEOUT,
            ) -> proc.Result:
        """Run argv (paths as seen inside the root) and return its output; CommandError if it fails."""
        return _run_clean_env(self._argv(argv), self._env(env, False), input=input, check=check, timeout=timeout)

    def run_outside(self, argv: Sequence[str | os.PathLike], *, env: Mapping[str, str] | None = None,
                    cwd: Path | None = None, check: bool = True,
                    timeout: float | None = proc.DEFAULT_TIMEOUT) -> proc.Result:
        """Run a host command with the root's mounts in place, isolated like `run` but not chrooted."""
        full_env = self._env(env, True)
        full_env["PATH"] = os.environ.get("PATH", _BASE_ENV["PATH"])
        return _run_clean_env(self._argv(argv), full_env, check=check, timeout=timeout, cwd=cwd)


def _run_clean_env(argv: list[str], env: dict[str, str], **kwargs) -> proc.Result:
    # proc.run merges env into os.environ; `env -i` makes the command see exactly `env`.
    clean = ["env", "-i", *[f"{k}={v}" for k, v in sorted(env.items())], *argv]
    return proc.run(clean, **kwargs)


def for_build(ctx) -> Chroot:
    """The Chroot for a build's root, with the build's SOURCE_DATE_EPOCH in the environment."""
    return Chroot(ctx.root, env={"SOURCE_DATE_EPOCH": str(ctx.source_date_epoch)})
