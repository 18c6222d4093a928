"""deployer.inspect: the parsers on fixture text, the readers on a sysfs-shaped tree and on this host's real /sys."""
from __future__ import annotations

import json
import os
from pathlib import Path

from deployer import inspect
from deployer.agent_cli import agent_command

CPUINFO_X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz
flags\t\t: fpu vme

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz

"""
CPUINFO_S390 = "vendor_id       : IBM/S390\n# processors    : 2\nprocessor 0: version = FF\n"
MEMINFO = "MemTotal:        2015092 kB\nMemFree:         1800000 kB\n"


def test_cpuinfo_counts_processors_and_takes_the_model():
    assert inspect.parse_cpuinfo(CPUINFO_X86) == {"count": 2, "model": "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz"}
    assert inspect.parse_cpuinfo("processor : 0\ncpu model : MIPS 24Kc V7.4\n") == {"count": 1,
                                                                                   "model": "MIPS 24Kc V7.4"}
    assert inspect.parse_cpuinfo("") == {"count": None, "model": None}
    assert inspect.parse_cpuinfo(CPUINFO_S390)["model"] is None


def test_meminfo_total_in_mib():
    assert inspect.parse_meminfo(MEMINFO) == 1967
    assert inspect.parse_meminfo("MemFree: 10 kB\n") is None
    assert inspect.parse_meminfo("MemTotal: lots\n") is None


def test_memory_blocks_give_the_installed_ram():
    assert inspect.memory_blocks_mib("8000000\n", ["1\n"] * 12) == 1536
    assert inspect.memory_blocks_mib("8000000", ["1", "0", None]) == 128  # offline blocks are not counted
    assert inspect.memory_blocks_mib(None, ["1"]) is None and inspect.memory_blocks_mib("zz", ["1"]) is None
    assert inspect.memory_blocks_mib("8000000", []) is None


def test_firmware_and_dmi_placeholders():
    assert inspect.firmware_mode(True) == "uefi" and inspect.firmware_mode(False) == "bios"
    assert inspect.dmi_fact({"sys_vendor": "QEMU\n", "product_name": "Standard PC (Q35 + ICH9, 2009)\n",
                             "product_serial": "To Be Filled By O.E.M.\n"}) == {
        "vendor": "QEMU", "product": "Standard PC (Q35 + ICH9, 2009)", "serial": None}
    assert inspect.dmi_fact({}) == {"vendor": None, "product": None, "serial": None}


def test_udev_data_vpd_and_wwn():
    props = inspect.parse_udev_data("S:disk/by-id/wwn-0x5000c500a1b2c3d4\nE:ID_SERIAL_SHORT=Z1X2\n"
                                    "E:ID_WWN=0x5000c500a1b2c3d4\nG:systemd\nE:ID_MODEL=ST2000NM0055-1V4\n")
    assert props == {"ID_SERIAL_SHORT": "Z1X2", "ID_WWN": "0x5000c500a1b2c3d4", "ID_MODEL": "ST2000NM0055-1V4"}
    assert inspect.parse_vpd_serial(b"\x00\x80\x00\x06SER-01trailing") == "SER-01"
    assert inspect.parse_vpd_serial(b"\x00\x83\x00\x06SER-01") is None  # another page
    assert inspect.parse_vpd_serial(b"\x00\x80") is None
    assert inspect.normalize_wwn("naa.5000C500A1B2C3D4\n") == "0x5000c500a1b2c3d4"
    assert inspect.normalize_wwn("eui.0025388B91B2C3D4") == "eui.0025388b91b2c3d4"
    assert inspect.normalize_wwn("t10.ATA     QEMU HARDDISK   QM00001") is None
    assert inspect.normalize_wwn(None) is None


def test_by_path_links_skip_partitions_and_prefer_the_short_name():
    links = {"pci-0000:00:04.0": "vda", "virtio-pci-0000:00:04.0": "vda", "pci-0000:00:04.0-part1": "vda1",
             "pci-0000:00:05.0-scsi-0:0:0:0": "sda", "pci-0000:00:05.0-scsi-0:0:0:0-part15": "sda15"}
    assert inspect.by_path_links(links) == {"vda": "/dev/disk/by-path/pci-0000:00:04.0",
                                            "sda": "/dev/disk/by-path/pci-0000:00:05.0-scsi-0:0:0:0"}


def test_disk_fact_prefers_udev_then_sysfs():
    scsi = inspect.disk_fact("sda", {"size": "3907029168\n", "device/model": "QEMU HARDDISK   \n",
                                     "device/wwid": "naa.5000c500a1b2c3d4\n", "queue/rotational": "0\n"},
                             {}, "/dev/disk/by-path/pci-0000:00:05.0-scsi-0:0:0:0", b"\x00\x80\x00\x04S-01")
    assert scsi == {"name": "sda", "size_bytes": 3907029168 * 512, "model": "QEMU HARDDISK", "serial": "S-01",
                    "wwn": "0x5000c500a1b2c3d4", "rotational": False,
                    "by_path": "/dev/disk/by-path/pci-0000:00:05.0-scsi-0:0:0:0"}
    virtio = inspect.disk_fact("vda", {"size": "2097152", "serial": "VIRTIO-A\n", "queue/rotational": "1"},
                               {"ID_SERIAL_SHORT": "VIRTIO-A", "ID_WWN_WITH_EXTENSION": "0x5000cafe00000001"}, None)
    assert (virtio["serial"], virtio["wwn"]) == ("VIRTIO-A", "0x5000cafe00000001")
    assert (virtio["model"], virtio["rotational"]) == (None, True)
    # a SCSI disk with a WWN: udev's ID_SERIAL_SHORT is made from the WWN; the unit serial is ID_SCSI_SERIAL
    with_wwn = {"ID_SERIAL_SHORT": "5000c50015ea71ac", "ID_SCSI_SERIAL": "ENLIST-B-0001",
                "ID_WWN": "0x5000c50015ea71ac"}
    assert inspect.disk_fact("sda", {"size": "8"}, with_wwn, None)["serial"] == "ENLIST-B-0001"
    without_scsi_serial = {"ID_SERIAL_SHORT": "5000c50015ea71ac"}
    assert inspect.disk_fact("sda", {"size": "8"}, without_scsi_serial, None,
                             b"\x00\x80\x00\x0dENLIST-B-0001")["serial"] == "ENLIST-B-0001"
    assert inspect.disk_fact("sda", {"size": "8"}, without_scsi_serial, None)["serial"] == "5000c50015ea71ac"
    assert inspect.disk_fact("sdb", {"size": "0"}, {}, None) is None  # an empty card reader
    assert inspect.disk_fact("sdc", {"size": None}, {}, None) is None


def test_nic_fact_link_and_speed():
    up = inspect.nic_fact("eno1", {"address": "0C:C4:7A:00:00:01\n", "operstate": "up\n", "carrier": "1\n",
                                   "speed": "10000\n"}, "ixgbe")
    assert up == {"mac": "0c:c4:7a:00:00:01", "name": "eno1", "driver": "ixgbe", "link": True, "speed_mbps": 10000}
    down = inspect.nic_fact("eno2", {"address": "0c:c4:7a:00:00:02", "operstate": "down", "carrier": None,
                                     "speed": None}, "ixgbe")
    assert (down["link"], down["speed_mbps"]) == (False, None)
    virtio = inspect.nic_fact("ens3", {"address": "52:54:00:00:00:01", "operstate": "up", "carrier": "1",
                                       "speed": "-1"}, "virtio_net")
    assert (virtio["link"], virtio["speed_mbps"]) == (True, None)


def _tree(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def test_collect_reads_a_sysfs_shaped_tree(tmp_path):
    sysfs, procfs, dev, udev = tmp_path / "sys", tmp_path / "proc", tmp_path / "dev", tmp_path / "udev"
    _tree(procfs, {"cpuinfo": CPUINFO_X86, "meminfo": MEMINFO})
    _tree(sysfs, {
        "firmware/efi/fw_platform_size": "64\n",
        "class/dmi/id/sys_vendor": "Supermicro\n", "class/dmi/id/product_name": "SYS-1029P\n",
        "class/dmi/id/product_serial": "S123\n",
        "block/sda/size": "2048\n", "block/sda/dev": "8:0\n", "block/sda/device/model": "SSD 860\n",
        "block/sda/queue/rotational": "0\n",
        "block/loop0/size": "2048\n", "block/zram0/size": "2048\n", "block/sr0/size": "2048\n",
        "block/ram0/size": "2048\n",
        "class/net/eno1/address": "0c:c4:7a:00:00:01\n", "class/net/eno1/operstate": "up\n",
        "class/net/eno1/carrier": "1\n", "class/net/eno1/speed": "1000\n",
        "class/net/lo/address": "00:00:00:00:00:00\n",
        "drivers/igb/.keep": "", "devices/eno1dev/.keep": "",
    })
    (sysfs / "class/net/eno1/device").symlink_to(sysfs / "devices/eno1dev")
    (sysfs / "devices/eno1dev/driver").symlink_to(sysfs / "drivers/igb")
    _tree(udev, {"b8:0": "E:ID_SERIAL_SHORT=S3Z9NB0K\nE:ID_WWN=0x5002538e40000001\n"})
    (dev / "disk/by-path").mkdir(parents=True)
    (dev / "disk/by-path/pci-0000:00:17.0-ata-1").symlink_to("../../sda")
    facts = inspect.collect(sysfs, procfs, dev, udev)
    assert facts == {
        "cpus": {"count": 2, "model": "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz"}, "memory_mib": 1967,
        "firmware": "uefi", "dmi": {"vendor": "Supermicro", "product": "SYS-1029P", "serial": "S123"},
        "disks": [{"name": "sda", "size_bytes": 2048 * 512, "model": "SSD 860", "serial": "S3Z9NB0K",
                   "wwn": "0x5002538e40000001", "rotational": False,
                   "by_path": "/dev/disk/by-path/pci-0000:00:17.0-ata-1"}],
        "nics": [{"mac": "0c:c4:7a:00:00:01", "name": "eno1", "driver": "igb", "link": True, "speed_mbps": 1000}],
    }
    json.dumps(facts)  # what the agent posts


def test_collect_on_this_host_matches_sysfs():
    facts = inspect.collect()
    assert facts["cpus"]["count"] == os.cpu_count()
    assert facts["firmware"] == ("uefi" if Path("/sys/firmware/efi").is_dir() else "bios")
    memory = Path("/sys/devices/system/memory")
    if memory.is_dir():
        online = sum((block / "online").read_text().strip() == "1" for block in memory.glob("memory[0-9]*"))
        assert facts["memory_mib"] == int((memory / "block_size_bytes").read_text(), 16) * online >> 20
    else:
        assert facts["memory_mib"] == int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    expected_disks = sorted(d.name for d in Path("/sys/block").iterdir()
                            if not d.name.startswith(inspect.SKIP_DISK_PREFIXES)
                            and int((d / "size").read_text()) > 0)
    assert [d["name"] for d in facts["disks"]] == expected_disks
    for disk in facts["disks"]:
        assert disk["size_bytes"] == int(Path(f"/sys/block/{disk['name']}/size").read_text()) * 512
        serial_file = Path(f"/sys/block/{disk['name']}/serial")
        if serial_file.exists() and serial_file.read_text().strip():
            assert disk["serial"] is not None
    physical = sorted(n.name for n in Path("/sys/class/net").iterdir() if (n / "device").exists())
    assert [n["name"] for n in facts["nics"]] == physical
    for nic in facts["nics"]:
        assert nic["mac"] == Path(f"/sys/class/net/{nic['name']}/address").read_text().strip().lower()


def test_agent_inspect_mode_without_a_server_says_so(tmp_path):
    from click.testing import CliRunner

    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 metalstream.token=i.abc metalstream.mode=inspect\n")
    result = CliRunner().invoke(agent_command, ["--cmdline", str(cmdline)])
    assert result.exit_code != 0 and "metalstream.server" in str(result.exception) + result.output
    cmdline.write_text("metalstream.server=http://127.0.0.1:9 metalstream.token=i.abc metalstream.mode=dance\n")
    result = CliRunner().invoke(agent_command, ["--cmdline", str(cmdline)])
    assert "'dance' is not a mode" in str(result.exception) + result.output


def test_summary_line():
    from deployer.inspect_agent import summary

    line = summary({"cpus": {"count": 2, "model": "X"}, "memory_mib": 2048, "firmware": "uefi",
                    "disks": [{"name": "vda", "size_bytes": 8 << 30, "serial": "A1"}],
                    "nics": [{"name": "ens3", "mac": "52:54:00:00:00:01"}]})
    assert line == "2 CPU(s) (X), 2048 MiB, uefi; disks: vda 8.0 GiB serial=A1; NICs: ens3 52:54:00:00:00:01"
