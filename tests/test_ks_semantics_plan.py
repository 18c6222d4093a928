"""What the kickstart split produces is accepted by the consumers without building or deploying: the agent's partition
planner (swap sized from memory as anaconda does) and the RPM backend's dnf plan (empty %packages = @core)."""
from __future__ import annotations

from pathlib import Path

import pytest

from deployer.partition import MIB, plan_layout, recommended_swap_mib
from deployer.plan import memory_bytes
from metalstream.contracts.deployspec import AutoPart, DeploySpec, PartSpec
from metalstream.errors import BadInput
from tarball_builder.backends.rpm_plan import dnf_conf, plan_install
from tarball_builder.kickstart import parse_kickstart

from conftest import REPO

GOOD = REPO / "tests" / "data" / "ks" / "good"
GIB = 1 << 30
DISK = 64 * GIB
RPM = "%addon org_metalstream_image\nfamily=rpm\nrelease=40\n%end\nurl --url=http://MIRROR/os/\n"


@pytest.mark.parametrize(("memory_mib", "swap_mib", "hibernation_mib"), [
    (1024, 2048, 3072),          # below 2 GiB: twice the memory
    (2048, 2048, 4096),          # 2-8 GiB: the memory
    (6144, 6144, 12288),
    (8192, 4096, 12288),         # 8-64 GiB: half of it
    (32768, 16384, 49152),
    (65536, 4096, 69632),        # above 64 GiB: 4 GiB
    (262144, 4096, 266240),
])
def test_recommended_swap_follows_anaconda(memory_mib: int, swap_mib: int, hibernation_mib: int) -> None:
    assert recommended_swap_mib(memory_mib) == swap_mib
    assert recommended_swap_mib(memory_mib, hibernation=True) == hibernation_mib


def swap_of(storage: DeploySpec, memory: int | None) -> int:
    layout = plan_layout(DISK, "uefi", storage, memory_bytes=memory)
    return layout.length(layout.by_role("swap")) // MIB


def test_part_swap_recommended_is_sized_from_the_machines_memory() -> None:
    storage = DeploySpec(reqpart=True, partitions=[PartSpec(mountpoint="/", size_mib=2048, grow=True),
                                                   PartSpec(mountpoint="swap", recommended=True)])
    assert swap_of(storage, 4 * GIB) == 4096
    assert swap_of(storage, 16 * GIB) == 8192
    storage.partitions[1].hibernation = True
    assert swap_of(storage, 16 * GIB) == 8192 + 16384


def test_swap_from_memory_without_the_memory_is_refused_at_its_place() -> None:
    storage = DeploySpec(reqpart=True, partitions=[PartSpec(mountpoint="/", size_mib=2048, grow=True),
                                                   PartSpec(mountpoint="swap", recommended=True, line=9)])
    with pytest.raises(BadInput) as caught:
        plan_layout(DISK, "uefi", storage)
    assert caught.value.location == "storage.partitions[1] (kickstart line 9)"


def test_autopart_hibernation_and_noboot() -> None:
    hibernating = DeploySpec(autopart=AutoPart(noswap=False, hibernation=True))
    assert swap_of(hibernating, 4 * GIB) == 4096 + 4096
    plain = DeploySpec(autopart=AutoPart(noswap=False))
    assert swap_of(plain, 4 * GIB) == 1024  # without --hibernation autopart's swap keeps its fixed size
    with_boot = DeploySpec(reqpart=True, reqpart_add_boot=True, autopart=AutoPart())
    assert plan_layout(DISK, "uefi", with_boot).by_role("boot") is not None
    with_boot.autopart.noboot = True
    assert plan_layout(DISK, "uefi", with_boot).by_role("boot") is None


def test_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        8152412 kB\nMemFree:          123 kB\n")
    assert memory_bytes(meminfo) == 8152412 * 1024
    assert memory_bytes(tmp_path / "absent") is None
    assert memory_bytes() > 0  # this machine's own /proc/meminfo


def test_the_spin_sample_is_accepted_by_the_planner_and_the_rpm_backend(tmp_path: Path) -> None:
    split = parse_kickstart(GOOD / "spin.ks")
    layout = plan_layout(DISK, "both", split.deploy, memory_bytes=2 * GIB)
    assert [(p.role, p.fstype) for p in layout.partitions] == [("biosboot", None), ("esp", "vfat"),
                                                                ("swap", "swap"), ("root", "xfs")]
    assert layout.length(layout.by_role("swap")) // MIB == 2048
    plan = plan_install(split.build, ks="spin.ks", root=tmp_path / "root", confdir=tmp_path / "dnf")
    assert plan.argv[plan.argv.index("install") + 1:] == ["kernel", "vim-enhanced", "@core"]


def test_empty_rpm_packages_installs_core(tmp_path: Path) -> None:
    ks = tmp_path / "empty.ks"
    ks.write_text(RPM + "%packages\n%end\n")
    build = parse_kickstart(ks).build
    plan = plan_install(build, ks=str(ks), root=tmp_path / "root", confdir=tmp_path / "dnf")
    assert plan.argv[plan.argv.index("install") + 1:] == ["kernel", "@core"]  # bootable: anaconda adds the kernel


def test_multilib_becomes_dnfs_policy(tmp_path: Path) -> None:
    ks = tmp_path / "multilib.ks"
    ks.write_text(RPM + "%packages --multilib\nkernel\n%end\n")
    assert "multilib_policy=all\n" in dnf_conf(parse_kickstart(ks).build.packages)
    ks.write_text(RPM + "%packages\nkernel\n%end\n")
    assert "multilib_policy" not in dnf_conf(parse_kickstart(ks).build.packages)
