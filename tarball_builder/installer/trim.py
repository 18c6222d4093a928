"""What of the build root goes into the installer initramfs: the userland minus what never runs there.

`keep(path)` is a pure rule over a root-relative path; `files_to_copy(root, modules)` walks a root
and applies it. Kernel modules are chosen separately (tarball_builder.installer.modules); only the
selected ones and the files depmod needs to rebuild the index are kept.
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path

# Whole trees that are dropped (root-relative, no leading slash, shell globs allowed). The directory
# itself stays (empty) when it is a well-known mount point or state directory; its content goes.
DROPPED_TREES: tuple[str, ...] = (
    "boot",  # the kernel ships beside the initramfs; Debian's own initrd is not needed
    "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/i18n",
    "usr/share/lintian", "usr/share/bug", "usr/share/common-licenses", "usr/share/bash-completion",
    "usr/share/zsh", "usr/share/doc-base", "usr/share/menu", "usr/share/pixmaps", "usr/share/gdb",
    "usr/share/initramfs-tools", "usr/share/perl", "usr/lib/x86_64-linux-gnu/perl",
    "usr/share/perl5", "usr/lib/x86_64-linux-gnu/perl5",
    "etc/initramfs-tools", "usr/lib/udev/hwdb.d",
    "var/lib/apt", "var/lib/dpkg", "var/cache", "var/log", "var/tmp", "tmp", "run",
    "usr/lib/firmware",  # (glibc's gconv stays: mtools converts file names to codepage 850 with iconv)
    # Python: test suites and tools that never run in the installer.
    "usr/lib/python3.*/test", "usr/lib/python3.*/idlelib", "usr/lib/python3.*/tkinter",
    "usr/lib/python3.*/turtledemo", "usr/lib/python3.*/lib2to3", "usr/lib/python3.*/ensurepip",
    "usr/lib/python3.*/pydoc_data",
    # Secure Boot network boot: the signed loaders ship beside the kernel (loaders.py), not in here.
    "usr/lib/shim", "usr/lib/grub/x86_64-efi-signed", "usr/share/shim",
    # Nothing in the installer installs packages or runs perl (its modules above are gone already).
    "usr/lib/apt", "etc/apt", "usr/lib/x86_64-linux-gnu/perl-base",
    # Time zones: the installer runs in UTC (KEPT_INSIDE); iconv: mtools needs codepage 850 only (KEPT_INSIDE).
    "usr/share/zoneinfo", "usr/lib/x86_64-linux-gnu/gconv",
    # grub's platform modules: the deployer builds the target's boot images from the *target's* own module
    # directory (deployer.bootloader), so the installer's copy never runs; grub-bios-setup lives there (KEPT_INSIDE).
    "usr/lib/grub/i386-pc", "usr/lib/grub/x86_64-efi",
    # dmeventd's plugins, p11-kit's modules, python's sqlite3 (see DROPPED_FILES: storage, unused libraries)
    "usr/lib/x86_64-linux-gnu/device-mapper", "usr/lib/x86_64-linux-gnu/pkcs11", "usr/lib/python3.*/sqlite3",
)
# Kept although inside a dropped tree (directories on the way included).
KEPT_INSIDE: frozenset[str] = frozenset({
    "usr/share/zoneinfo", "usr/share/zoneinfo/Etc", "usr/share/zoneinfo/Etc/UTC", "usr/share/zoneinfo/UTC",
    "usr/lib/x86_64-linux-gnu/gconv", "usr/lib/x86_64-linux-gnu/gconv/gconv-modules",
    "usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache", "usr/lib/x86_64-linux-gnu/gconv/gconv-modules.d",
    "usr/lib/x86_64-linux-gnu/gconv/gconv-modules.d/gconv-modules-extra.conf",
    "usr/lib/x86_64-linux-gnu/gconv/IBM850.so",
    "usr/lib/grub/i386-pc", "usr/lib/grub/i386-pc/grub-bios-setup",
})
# Single files dropped (globs): ICU only serves xfs_scrub, which the deployer never runs; udev's
# hardware database only adds vendor names, not the ID_SERIAL/ID_WWN/ID_PATH the disk hints use.
DROPPED_FILES: tuple[str, ...] = (
    "usr/lib/x86_64-linux-gnu/libicu*", "usr/sbin/xfs_scrub", "usr/sbin/xfs_scrub_all",
    "usr/lib/udev/hwdb.bin", "etc/udev/hwdb.bin",
    # shim-signed's tools: nothing in the installer changes MOK state (Secure Boot state is read from efivarfs).
    "usr/bin/mokutil", "usr/sbin/update-secureboot-policy",
    # apt and perl: their programs and libraries (nothing the agent or /init runs uses them).
    "usr/bin/apt", "usr/bin/apt-*", "usr/lib/x86_64-linux-gnu/libapt-*",
    "usr/bin/perl*", "usr/lib/x86_64-linux-gnu/libperl.so*",
    # grub's tools for other jobs (rescue media, fonts, layouts, netboot trees, passwords, old configs): the
    # deployer builds its images with grub-mkimage and grub-bios-setup.
    "usr/bin/grub-fstest", "usr/bin/grub-glue-efi", "usr/bin/grub-kbdcomp", "usr/bin/grub-menulst2cfg",
    "usr/bin/grub-mkfont", "usr/bin/grub-mklayout", "usr/bin/grub-mknetdir", "usr/bin/grub-mkpasswd-pbkdf2",
    "usr/bin/grub-mkrescue", "usr/bin/grub-mkstandalone", "usr/bin/grub-mount", "usr/bin/grub-render-label",
    "usr/bin/grub-script-check", "usr/bin/grub-syslinux2cfg", "usr/sbin/grub-macbless",
    # Storage stacks: the installer creates them (mkfs.btrfs, btrfs, mdadm, lvm, cryptsetup) and never converts,
    # images, tunes or rescues them, runs external-metadata (IMSM/DDF) arrays, polls or monitors LVs (its
    # lvm.conf says monitoring = 0: dmeventd, its plugins and their liblvm2cmd stay behind), nor verity/integrity.
    "usr/bin/btrfs-convert", "usr/bin/btrfs-image", "usr/bin/btrfstune", "usr/bin/btrfs-map-logical",
    "usr/bin/btrfs-find-root", "usr/bin/btrfs-select-super", "usr/sbin/mdmon", "usr/sbin/lvmpolld",
    "usr/sbin/dmeventd", "usr/lib/x86_64-linux-gnu/liblvm2cmd.so*",
    "usr/lib/x86_64-linux-gnu/libdevmapper-event-lvm2*", "usr/sbin/veritysetup", "usr/sbin/integritysetup",
    # Libraries and files nothing here loads (found by reading every ELF file's NEEDED entries and grepping for
    # dlopen'ed names): GnuTLS and its crypto and PKCS#11 libraries (apt's, dropped above), Berkeley DB (iproute2's
    # arpd, PAM's userdb, python's dbm) and SQLite (python's sqlite3): the agent uses neither; grub's font is for
    # grub-install, which the deployer does not run; pzstd: the agent streams with zstd.
    "usr/lib/x86_64-linux-gnu/libgnutls*", "usr/lib/x86_64-linux-gnu/libp11-kit*", "usr/lib/x86_64-linux-gnu/libtasn1*",
    "usr/lib/x86_64-linux-gnu/libnettle*", "usr/lib/x86_64-linux-gnu/libhogweed*",
    "usr/lib/x86_64-linux-gnu/libdb-5*", "usr/sbin/arpd", "usr/lib/x86_64-linux-gnu/security/pam_userdb.so",
    "usr/lib/python3.*/lib-dynload/_dbm.*", "usr/lib/x86_64-linux-gnu/libsqlite3*",
    "usr/lib/python3.*/lib-dynload/_sqlite3.*", "usr/share/grub/unicode.pf2", "usr/bin/pzstd",
    # Automatic assembly and activation: the installer never starts an old array or volume group it finds on a
    # disk by itself (they would hold the disks the agent wipes); the agent starts exactly what it builds.
    "usr/lib/udev/rules.d/64-md-raid-assembly.rules", "usr/lib/udev/rules.d/69-lvm.rules",
)
# Directories kept (empty) although their content is dropped.
KEPT_EMPTY: frozenset[str] = frozenset({"var/cache", "var/log", "var/tmp", "tmp", "run"})
# Inside /lib/modules/VERSION only these depmod inputs are kept, plus the selected modules.
MODULE_TREE_FILES: frozenset[str] = frozenset({"modules.order", "modules.builtin", "modules.builtin.modinfo"})
MODULES_DIR = "usr/lib/modules"


def keep(path: str) -> bool:
    """Whether a root-relative path (not a module tree entry) ships in the initramfs."""
    if path in KEPT_EMPTY or path in KEPT_INSIDE:
        return True
    if "__pycache__" in path.split("/"):  # recompiled, without timestamps, after the deployer is added
        return False
    if any(fnmatch.fnmatchcase(path, pattern) for pattern in DROPPED_FILES):
        return False
    return not any(fnmatch.fnmatchcase(path, tree) or fnmatch.fnmatchcase(path, tree + "/*")
                   for tree in DROPPED_TREES)


def modules_dir(root: Path) -> str:
    """Root-relative path of the module directory (`usr/lib/modules`, or `lib/modules` without usrmerge)."""
    if (root / "lib").is_symlink() or not (root / "lib/modules").is_dir():
        return MODULES_DIR
    return "lib/modules"


def files_to_copy(root: Path, kernel_version: str, module_paths: list[str]) -> list[str]:
    """Sorted root-relative paths to copy: kept userland, the kernel's selected modules and their dirs."""
    mods = modules_dir(root)
    tree = f"{mods}/{kernel_version}"
    keep_in_tree = {f"{tree}/{p}" for p in module_paths} | {f"{tree}/{f}" for f in MODULE_TREE_FILES}
    # Parent directories of every kept module, so the copy recreates them.
    for path in list(keep_in_tree):
        parent = path.rsplit("/", 1)[0]
        while parent.startswith(tree + "/") and parent not in keep_in_tree:
            keep_in_tree.add(parent)
            parent = parent.rsplit("/", 1)[0]
    keep_in_tree.add(tree)
    chosen: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        for name in sorted(dirnames + filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if rel == mods or rel.startswith(mods + "/"):
                ok = rel == mods or rel in keep_in_tree
            else:
                ok = keep(rel)
            if not ok:
                if name in dirnames:
                    dirnames.remove(name)  # do not descend into a dropped tree
                continue
            chosen.append(rel)
            if name in dirnames and rel in KEPT_EMPTY:
                dirnames.remove(name)
    return sorted(chosen)
