"""Hardware facts of the machine the agent runs on: CPUs, memory, firmware mode, DMI, disks, NICs.

Read from /proc, /sys, /dev/disk/by-path and udev's database (/run/udev/data) only — no programs — so it
works in the trimmed installer. Parsing is pure (functions over text and dicts, tested on fixture text);
`collect()` is the one part that reads the system. The shape (docs/inspection.md, pxe.inspection checks it):

    {"cpus": {"count", "model"}, "memory_mib" (installed: memory blocks, else MemTotal), "firmware": "uefi"|"bios",
     "dmi": {"vendor", "product", "serial"},
     "disks": [{"name", "size_bytes", "model", "serial", "wwn", "rotational", "by_path"}],
     "nics": [{"mac", "name", "driver", "link", "speed_mbps"}]}

Disk serial is the unit serial number (udev's ID_SCSI_SERIAL or the VPD page in sysfs; virtio and NVMe serials
from sysfs; udev's ID_SERIAL_SHORT last) and the WWN udev's ID_WWN_WITH_EXTENSION or the sysfs wwid — the same
values the disk hints of a deployment match (deployer.disks).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

# Not hardware disks: loop, RAM, optical, compressed-RAM swap, device-mapper, md RAID, network block devices.
SKIP_DISK_PREFIXES = ("loop", "ram", "sr", "zram", "fd", "dm-", "md", "nbd")
# DMI files (/sys/class/dmi/id) → fact key
DMI_FILES = {"sys_vendor": "vendor", "product_name": "product", "product_serial": "serial"}
# Placeholders firmware vendors leave in DMI fields: no value.
_DMI_PLACEHOLDERS = {"", "to be filled by o.e.m.", "default string", "not specified", "none", "system serial number",
                     "0123456789"}


def parse_cpuinfo(text: str) -> dict:
    """{"count", "model"} from /proc/cpuinfo: logical CPUs, and the first model name any architecture gives."""
    count, model = 0, None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "processor" and value.isdigit():
            count += 1
        elif model is None and key in ("model name", "cpu model", "cpu") and value:
            model = value
    return {"count": count or None, "model": model}


def parse_meminfo(text: str) -> int | None:
    """MemTotal in MiB (what the kernel can use: a little below the installed RAM)."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "MemTotal":
            words = value.split()
            if words and words[0].isdigit():
                kib = int(words[0])
                return kib // 1024 if len(words) < 2 or words[1].lower() == "kb" else None
    return None


def memory_blocks_mib(block_size_hex: str | None, online: list[str | None]) -> int | None:
    """Installed RAM in MiB from the memory blocks (/sys/devices/system/memory: block_size_bytes in hex, each
    block's `online`): what the machine was built with, where MemTotal is that less what firmware and the
    kernel keep. None without block information."""
    try:
        block = int((block_size_hex or "").strip(), 16)
    except ValueError:
        return None
    count = sum(1 for state in online if (state or "").strip() == "1")
    return block * count // (1 << 20) if block > 0 and count else None


def firmware_mode(efi_dir_exists: bool) -> str:
    return "uefi" if efi_dir_exists else "bios"


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def dmi_fact(files: dict[str, str | None]) -> dict:
    """{"vendor", "product", "serial"} from the DMI files' texts (None: absent, empty or a placeholder)."""
    out = {}
    for filename, key in DMI_FILES.items():
        value = _clean(files.get(filename))
        out[key] = None if value is None or value.lower() in _DMI_PLACEHOLDERS else value
    return out


def parse_udev_data(text: str) -> dict[str, str]:
    """The properties (`E:KEY=VALUE` lines) of a udev database entry (/run/udev/data/b<major>:<minor>)."""
    props = {}
    for line in text.splitlines():
        if line.startswith("E:"):
            key, sep, value = line[2:].partition("=")
            if sep:
                props[key] = value
    return props


def parse_vpd_serial(raw: bytes | None) -> str | None:
    """The unit serial number from a SCSI VPD page 0x80 (4-byte header, then the serial's length in byte 3)."""
    if not raw or len(raw) < 4 or raw[1] != 0x80:
        return None
    return _clean(raw[4:4 + raw[3]].decode("ascii", "replace"))


def normalize_wwn(wwid: str | None) -> str | None:
    """A sysfs `wwid` as udev writes the WWN: `naa.5000c500a1b2c3d4` → `0x5000c500a1b2c3d4`; NVMe `eui.`/`nguid.`
    identifiers as they are; T10 vendor ids (`t10.…`: vendor + model + serial, not a world-wide name) → None."""
    wwid = _clean(wwid)
    if wwid is None:
        return None
    kind, sep, value = wwid.partition(".")
    kind = kind.lower()
    if sep and kind == "naa":
        return "0x" + value.lower()
    if sep and kind in ("eui", "nguid"):
        return f"{kind}.{value.lower()}"
    return None


_PARTITION_LINK = re.compile(r"-part[0-9]+\Z")


def by_path_links(links: dict[str, str]) -> dict[str, str]:
    """Kernel disk name → its /dev/disk/by-path link, from {link name: name of the device it points to}.
    Partition links (`…-part1`) are left out; of several links for one disk the shortest name wins."""
    found: dict[str, str] = {}
    for link, device in sorted(links.items(), key=lambda item: (len(item[0]), item[0])):
        if _PARTITION_LINK.search(link):
            continue
        found.setdefault(device, f"/dev/disk/by-path/{link}")
    return found


def _flag(value: str | None) -> bool | None:
    value = _clean(value)
    return None if value is None else value == "1"


def disk_fact(name: str, attrs: dict[str, str | None], udev: dict[str, str], by_path: str | None,
              vpd_pg80: bytes | None = None) -> dict | None:
    """One disk from its sysfs attributes (`size`, `serial`, `device/model`, `device/serial`, `device/wwid`,
    `wwid`, `queue/rotational`), udev's properties and its by-path link. None for a disk of size 0 (an empty
    card reader, a detached device)."""
    sectors = _clean(attrs.get("size"))
    if sectors is None or not sectors.isdigit() or int(sectors) == 0:
        return None
    model = (udev.get("ID_MODEL") or "").replace("_", " ").strip() or _clean(attrs.get("device/model"))
    # The unit serial number (SCSI VPD page 0x80) before udev's ID_SERIAL_SHORT: for a SCSI disk with a WWN, udev
    # derives ID_SERIAL from the WWN (page 0x83) and keeps the real serial in ID_SCSI_SERIAL.
    serial = (_clean(udev.get("ID_SCSI_SERIAL")) or parse_vpd_serial(vpd_pg80) or _clean(attrs.get("serial"))
              or _clean(attrs.get("device/serial")) or _clean(udev.get("ID_SERIAL_SHORT")))
    wwn = (_clean(udev.get("ID_WWN_WITH_EXTENSION")) or _clean(udev.get("ID_WWN"))
           or normalize_wwn(attrs.get("wwid")) or normalize_wwn(attrs.get("device/wwid")))
    return {"name": name, "size_bytes": int(sectors) * 512,  # sysfs counts 512-byte units on every disk
            "model": model, "serial": serial, "wwn": wwn, "rotational": _flag(attrs.get("queue/rotational")),
            "by_path": by_path}


def nic_fact(name: str, attrs: dict[str, str | None], driver: str | None) -> dict:
    """One NIC from its sysfs attributes (`address`, `operstate`, `carrier`, `speed`). `link`: carrier (or, where
    the driver has none, operstate up); `speed_mbps`: None when unknown (link down, virtual NICs say -1)."""
    carrier = _flag(attrs.get("carrier"))
    operstate = _clean(attrs.get("operstate"))
    link = carrier if carrier is not None else (None if operstate in (None, "unknown") else operstate == "up")
    speed = _clean(attrs.get("speed"))
    speed_mbps = int(speed) if speed is not None and speed.isdigit() and int(speed) > 0 else None
    return {"mac": (_clean(attrs.get("address")) or "").lower() or None, "name": name, "driver": driver,
            "link": link, "speed_mbps": speed_mbps}


# --- reading the running system ----------------------------------------------------------------------------

def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:  # absent, or the driver refuses (speed of a down link: EINVAL)
        return None


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


DISK_ATTRS = ("size", "serial", "wwid", "device/model", "device/serial", "device/wwid", "queue/rotational")
NIC_ATTRS = ("address", "operstate", "carrier", "speed")


def read_disks(sysfs: Path = Path("/sys"), dev: Path = Path("/dev"), udev_data: Path = Path("/run/udev/data")) -> list:
    links = {}
    by_path_dir = dev / "disk" / "by-path"
    if by_path_dir.is_dir():
        for link in by_path_dir.iterdir():
            links[link.name] = os.path.basename(os.readlink(link))
    paths = by_path_links(links)
    disks = []
    block = sysfs / "block"
    for entry in sorted(block.iterdir()) if block.is_dir() else []:
        name = entry.name
        if name.startswith(SKIP_DISK_PREFIXES):
            continue
        attrs = {attr: _read(entry / attr) for attr in DISK_ATTRS}
        number = _clean(_read(entry / "dev"))
        udev = parse_udev_data(_read(udev_data / f"b{number}") or "") if number else {}
        fact = disk_fact(name, attrs, udev, paths.get(name), _read_bytes(entry / "device" / "vpd_pg80"))
        if fact is not None:
            disks.append(fact)
    return disks


def read_nics(sysfs: Path = Path("/sys")) -> list:
    """Physical NICs only: those with a device link (no loopback, bridges, bonds, veths, VLANs), no wireless."""
    nics = []
    net = sysfs / "class" / "net"
    for entry in sorted(net.iterdir()) if net.is_dir() else []:
        if not (entry / "device").exists() or (entry / "wireless").exists() or (entry / "phy80211").exists():
            continue
        driver_link = entry / "device" / "driver"
        driver = os.path.basename(os.readlink(driver_link)) if driver_link.is_symlink() else None
        nics.append(nic_fact(entry.name, {attr: _read(entry / attr) for attr in NIC_ATTRS}, driver))
    return nics


def _memory_mib(memory: Path) -> int | None:
    if not memory.is_dir():
        return None
    return memory_blocks_mib(_read(memory / "block_size_bytes"),
                             [_read(block / "online") for block in memory.glob("memory[0-9]*")])


def collect(sysfs: Path = Path("/sys"), proc: Path = Path("/proc"), dev: Path = Path("/dev"),
            udev_data: Path = Path("/run/udev/data")) -> dict:
    """The facts of this machine (see the module docstring for the shape)."""
    dmi_dir = sysfs / "class" / "dmi" / "id"
    return {
        "cpus": parse_cpuinfo(_read(proc / "cpuinfo") or ""),
        "memory_mib": (_memory_mib(sysfs / "devices" / "system" / "memory")
                       or parse_meminfo(_read(proc / "meminfo") or "")),
        "firmware": firmware_mode((sysfs / "firmware" / "efi").is_dir()),
        "dmi": dmi_fact({filename: _read(dmi_dir / filename) for filename in DMI_FILES}),
        "disks": read_disks(sysfs, dev, udev_data),
        "nics": read_nics(sysfs),
    }
