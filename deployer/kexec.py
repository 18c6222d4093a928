"""Boot the installed system with kexec instead of a firmware reboot (plan `reboot.method: kexec`).

The decision is pure (`blocker`, `default_entry`, `newest_kernel`, `choose_entry`): whether kexec can
work in this installer, and which kernel, initrd and command line the installed grub would boot. The
rest reads the installed /boot, loads the kernel with kexec-tools (through metalstream.proc) and
executes it once the target is unmounted. Anything that rules kexec out is a reason, reported, and the
agent reboots through the firmware instead; a firmware reboot is what an absent `reboot` asks for.

kexec touches no firmware variable: with UEFI, the installed system's BootOrder (and any BootNext) are
what the bootloader phase left; the next power cycle boots through them as after a firmware reboot.
"""
from __future__ import annotations

import logging
import re
import shlex
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from metalstream import proc
from metalstream.errors import MetalstreamError

log = logging.getLogger("metalstream.agent.kexec")

KEXEC = "kexec"
FIRMWARE = "firmware"
METHODS = (FIRMWARE, KEXEC)
LOCKDOWN = Path("/sys/kernel/security/lockdown")
KEXEC_LOAD_DISABLED = Path("/proc/sys/kernel/kexec_load_disabled")
GRUB_CFG = "grub/grub.cfg"  # below the /boot filesystem's /boot (or its root when /boot is a partition)
_VERSION_PART = re.compile(r"(\d+)|(\D+)")


@dataclass(frozen=True)
class BootEntry:
    """What to boot: paths relative to the /boot filesystem's root (as grub sees them), the command line."""

    kernel: str
    initrd: str | None
    cmdline: str
    source: str  # where it was read: "grub.cfg entry N" or "newest kernel in /boot"


@dataclass(frozen=True)
class RebootChoice:
    method: str  # the method used: kexec or firmware
    reason: str  # why (for a firmware reboot after kexec was asked: why kexec was not possible)


def lockdown_mode(text: str) -> str | None:
    """The active mode of /sys/kernel/security/lockdown (`none [integrity] confidentiality` → integrity)."""
    match = re.search(r"\[(\w+)\]", text)
    return match.group(1) if match else None


def blocker(*, lockdown: str | None, load_disabled: str | None, kexec_path: str | None) -> str | None:
    """Why kexec cannot work in this installer (None: it can). `lockdown` and `load_disabled` are the texts of
    LOCKDOWN and KEXEC_LOAD_DISABLED (None: not present); `kexec_path` where kexec-tools' kexec is (None: not)."""
    mode = lockdown_mode(lockdown or "")
    if mode not in (None, "none"):
        return f"the kernel is locked down ({mode}; Secure Boot): it refuses to load an unverified kernel"
    if (load_disabled or "0").strip() not in ("", "0"):
        return "kexec is disabled (kernel.kexec_load_disabled = 1)"
    if kexec_path is None:
        return "kexec-tools is not in this installer (no kexec command)"
    return None


def _grub_words(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def default_entry(grub_cfg: str) -> BootEntry | None:
    """The entry the installed grub.cfg boots by default (`set default=N` or an entry `--id`; entry 0 without
    one): its `linux` kernel and arguments and its `initrd`. None when the file has no usable entry."""
    default = "0"
    entries: list[dict] = []
    current: dict | None = None
    for raw in grub_cfg.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = _grub_words(line)
        if current is None:
            if words[0] == "set" and len(words) > 1 and words[1].startswith("default="):
                default = words[1].partition("=")[2].strip("\"'")
            elif words[0] == "menuentry":
                ident = words[words.index("--id") + 1] if "--id" in words[:-1] else None
                current = {"id": ident}
                entries.append(current)
            continue
        if words[0] == "}":
            current = None
        elif words[0] in ("linux", "linuxefi") and len(words) > 1:
            current["kernel"], current["args"] = words[1], words[2:]
        elif words[0] in ("initrd", "initrdefi") and len(words) > 1:
            current["initrd"] = words[1]
    usable = [(n, e) for n, e in enumerate(entries) if e.get("kernel")]
    chosen = next(((n, e) for n, e in usable if e["id"] is not None and e["id"] == default), None)
    if chosen is None and default.isdigit():
        chosen = next(((n, e) for n, e in usable if n == int(default)), None)
    if chosen is None:
        return None
    number, entry = chosen
    return BootEntry(entry["kernel"], entry.get("initrd"), " ".join(entry["args"]), f"grub.cfg entry {number}")


def version_key(version: str) -> tuple:
    """Sort key for kernel versions (`6.1.0-10-amd64` after `6.1.0-9-amd64`)."""
    return tuple((0, int(num)) if num else (1, text) for num, text in _VERSION_PART.findall(version))


def newest_kernel(names: list[str]) -> tuple[str, str | None] | None:
    """(vmlinuz-V, its initrd or None) of the newest kernel among the file names of a /boot directory: Debian's
    `initrd.img-V` or the RPM family's `initramfs-V.img`. Rescue kernels are skipped."""
    present = set(names)
    versions = [n.removeprefix("vmlinuz-") for n in names if n.startswith("vmlinuz-") and "rescue" not in n]
    if not versions:
        return None
    version = max(versions, key=version_key)
    initrd = next((n for n in (f"initrd.img-{version}", f"initramfs-{version}.img") if n in present), None)
    return f"vmlinuz-{version}", initrd


def choose_entry(grub_cfg: str | None, boot_names: list[str], boot_prefix: str, *, root_uuid: str | None,
                 kernel_args: str) -> BootEntry | None:
    """What to kexec: the installed grub.cfg's default entry; without one, the newest kernel in /boot with
    `root=UUID=ROOT ro` and the plan's kernel arguments (as metalstream writes grub.cfg). `boot_prefix` is
    where /boot is on its filesystem ("/boot", or "" when /boot is a partition of its own)."""
    if grub_cfg:
        entry = default_entry(grub_cfg)
        if entry is not None:
            return entry
    newest = newest_kernel(boot_names)
    if newest is None or root_uuid is None:
        return None
    kernel, initrd = newest
    cmdline = " ".join(["root=UUID=" + root_uuid, "ro", *kernel_args.split()])
    return BootEntry(f"{boot_prefix}/{kernel}", f"{boot_prefix}/{initrd}" if initrd else None, cmdline,
                     "newest kernel in /boot")


def load_argv(kernel: Path, initrd: Path | None, cmdline: str, *, file_syscall: bool) -> list[str]:
    """`kexec --load`: with kexec_file_load (the kernel parses the image and passes the EFI state itself), or
    the older kexec_load where that syscall is missing."""
    return [KEXEC, "--load", "--kexec-file-syscall" if file_syscall else "--kexec-syscall", str(kernel),
            *([f"--initrd={initrd}"] if initrd else []), f"--command-line={cmdline}"]


# --- touching the system: everything below reads the running kernel's state, mounts, or runs kexec ---

def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def system_blocker() -> str | None:
    return blocker(lockdown=_read(LOCKDOWN), load_disabled=_read(KEXEC_LOAD_DISABLED), kexec_path=shutil.which(KEXEC))


@contextmanager
def mounted_readonly(device: str, fstype: str | None) -> Iterator[Path]:
    """`device` mounted read-only on a temporary directory; unmounted (and the directory removed) on exit."""
    where = Path(tempfile.mkdtemp(prefix="metalstream-kexec-"))
    try:
        proc.run(["mount", "-o", "ro", *(["-t", fstype] if fstype else []), device, where], timeout=120)
        try:
            yield where
        finally:
            proc.run(["umount", where], timeout=120)
    finally:
        where.rmdir()


def load(boot_root: Path, entry: BootEntry) -> str:
    """Load `entry` (paths below `boot_root`, the mounted /boot filesystem) into the kernel for `kexec -e`;
    returns how it was loaded. Raises MetalstreamError when neither syscall accepts it."""
    kernel = boot_root / entry.kernel.lstrip("/")
    initrd = boot_root / entry.initrd.lstrip("/") if entry.initrd else None
    for path in filter(None, (kernel, initrd)):
        if not path.is_file():
            raise FileNotFoundError(f"{path.relative_to(boot_root)} is not on the installed /boot filesystem")
    try:
        proc.run(load_argv(kernel, initrd, entry.cmdline, file_syscall=True), timeout=120)
        return "kexec_file_load"
    except MetalstreamError as exc:
        log.warning("kexec_file_load refused %s (%s); trying kexec_load", kernel.name, exc)
    proc.run(load_argv(kernel, initrd, entry.cmdline, file_syscall=False), timeout=120)
    return "kexec_load"


def unload() -> None:
    proc.run([KEXEC, "--unload"], check=False, timeout=60)


def execute() -> None:
    """Jump into the loaded kernel (only returns when that failed): through systemd when it runs (it stops the
    services and unmounts first), else at once; the installer's filesystems are all in RAM and the target is
    already unmounted and synced."""
    if Path("/run/systemd/system").is_dir():
        proc.run(["systemctl", "kexec"], timeout=120)
        return
    proc.run([KEXEC, "--exec"], timeout=60)
