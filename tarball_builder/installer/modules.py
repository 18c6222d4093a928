"""Which kernel modules the installer keeps: a wanted list, closed over the module tree's dependencies.

Pure functions over the text of `modules.dep`, `modules.softdep` and `modules.alias` (what depmod
wrote for the kernel in the build root). The installer must find disks and network on VMs and
common servers and mount what it writes; everything else in /lib/modules stays behind.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

# Module names (shell globs) the installer needs. Dependencies are added from modules.dep.
WANTED_MODULES: tuple[str, ...] = (
    # virtual machines
    "virtio_pci*", "virtio_mmio", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_console", "virtio_rng",
    "vmw_pvscsi", "vmxnet3", "hv_*", "xen-*front", "xen_*front",
    # disk controllers and disks
    "ahci", "ata_piix", "ata_generic", "pata_*", "sata_*", "nvme", "sd_mod", "sr_mod", "sg",
    "megaraid_sas", "mpt3sas", "hpsa", "smartpqi", "aacraid", "mptsas", "mptspi", "isci",
    "usb_storage", "uas", "xhci_pci", "xhci_hcd", "ehci_pci", "ehci_hcd", "ohci_pci", "uhci_hcd",
    "mmc_block", "sdhci_pci",
    # wired network cards
    "e1000", "e1000e", "igb", "igc", "ixgbe", "i40e", "ice", "bnx2", "bnx2x", "bnxt_en", "tg3",
    "r8169", "8139cp", "8139too", "ne2k_pci", "pcnet32", "mlx4_en", "mlx5_core", "qede", "be2net",
    "ena", "gve", "atlantic", "sfc",
    # file systems and what the deployer does with disks
    "ext4", "xfs", "vfat", "fat", "nls_*", "loop", "efivarfs", "crc32c*", "dm_mod",
    # storage stacks of the deploy layouts: software RAID, LVM (thin pools), LUKS, btrfs
    "md_mod", "raid0", "raid1", "raid10", "raid456", "dm_thin_pool", "dm_crypt", "btrfs",
    # the ciphers and hashes of LUKS (cryptsetup's default aes-xts-plain64, anaconda's --cipher choices) and
    # the kernel crypto API's user-space sockets cryptsetup uses to encrypt key slots
    "aes*", "xts", "ecb", "cbc", "essiv", "sha256*", "sha512*", "af_alg", "algif_skcipher", "algif_hash",
)


@dataclass
class ModuleTree:
    """One kernel's module tree: path of each module, its hard and soft dependencies, aliases."""

    paths: dict[str, str] = field(default_factory=dict)  # module name -> path relative to the tree
    deps: dict[str, list[str]] = field(default_factory=dict)  # module name -> module names
    softdeps: dict[str, list[str]] = field(default_factory=dict)  # module name -> names or aliases
    aliases: dict[str, list[str]] = field(default_factory=dict)  # exact alias -> module names


def module_name(path: str) -> str:
    """`kernel/fs/ext4/ext4.ko.zst` -> `ext4`; dashes and underscores are the same to modprobe."""
    base = path.rsplit("/", 1)[-1]
    base = re.sub(r"\.ko(\.(xz|zst|gz))?$", "", base)
    return base.replace("-", "_")


def parse_tree(modules_dep: str, modules_softdep: str = "", modules_alias: str = "") -> ModuleTree:
    tree = ModuleTree()
    for line in modules_dep.splitlines():
        target, sep, rest = line.partition(":")
        if not sep:
            continue
        name = module_name(target.strip())
        tree.paths[name] = target.strip()
        tree.deps[name] = [module_name(p) for p in rest.split()]
    for line in modules_softdep.splitlines():
        words = line.split()
        if len(words) < 3 or words[0] != "softdep":
            continue
        tree.softdeps.setdefault(words[1].replace("-", "_"), []).extend(
            w for w in words[2:] if w not in ("pre:", "post:"))
    for line in modules_alias.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "alias" and not any(c in words[1] for c in "*?["):
            tree.aliases.setdefault(words[1], []).append(words[2].replace("-", "_"))
    return tree


def select(tree: ModuleTree, wanted: tuple[str, ...] | list[str] = WANTED_MODULES) -> list[str]:
    """Paths (relative to the module tree, sorted) of the wanted modules and all they depend on.

    A wanted pattern matching no module is not an error: a kernel may build a driver in, or lack it.
    """
    patterns = [w.replace("-", "_") for w in wanted]
    todo = sorted(name for name in tree.paths if any(fnmatch.fnmatchcase(name, p) for p in patterns))
    chosen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in chosen or name not in tree.paths:
            continue
        chosen.add(name)
        todo.extend(tree.deps.get(name, []))
        for soft in tree.softdeps.get(name, []):
            soft_name = soft.replace("-", "_")
            todo.extend([soft_name] if soft_name in tree.paths else tree.aliases.get(soft, []))
    return sorted(tree.paths[name] for name in chosen)
