"""The split of a kickstart into the build spec and the deploy spec, compared as dataclasses."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from metalstream.contracts.deployspec import (
    AutoPart,
    Bootloader,
    ClearPart,
    DeploySpec,
    IgnoreDisk,
    NetworkDevice,
    PartSpec,
    SshKey,
)
from tarball_builder.kickstart import KickstartError, parse_kickstart
from tarball_builder.spec import (
    BuildSpec,
    Distribution,
    Firewall,
    Group,
    Packages,
    Repo,
    RootPassword,
    Script,
    Timezone,
    User,
)

from conftest import REPO

GOOD = REPO / "tests" / "data" / "ks" / "good"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q alice@example"
FULL_VARS = {"mirror": "http://mirror.invalid/f40", "host": "node-1"}


@pytest.fixture(scope="module")
def full():
    return parse_kickstart(GOOD / "full.ks.j2", variables=FULL_VARS)


def test_full_build_spec(full) -> None:
    assert full.build == BuildSpec(
        distribution=Distribution(family="rpm", release="40", variant=None, components=[], arch="x86_64", line=2),
        repos=[Repo(name="url", baseurl="http://mirror.invalid/f40/os/", line=8),
               Repo(name="updates", baseurl="http://mirror.invalid/f40/updates/", cost=50,
                    excludepkgs=["foo*", "bar"], install=True, line=9)],
        packages=Packages(names=["kernel", "vim-enhanced"], groups=["^minimal-environment", "core"],
                          excluded_names=["dracut-config-rescue", "plymouth"], excluded_groups=[], nodocs=True,
                          exclude_weakdeps=True, default=False, line=26),
        lang="de_DE.UTF-8",
        keyboard="de",
        timezone=Timezone(name="Europe/Berlin", utc=True, ntpservers=[], line=12),
        selinux="permissive",
        services_enabled=["sshd", "chronyd"],
        services_disabled=["kdump"],
        firewall=Firewall(enabled=True, services=["ssh"], ports=["8080:tcp"], trusts=["eth1"], line=15),
        rootpw=RootPassword(password="$6$salt$hashhashhash", is_crypted=True, lock=False, line=16),
        users=[User(name="alice", groups=["wheel", "ops"], password="$6$x$y", is_crypted=True, shell="/bin/bash",
                    uid=1500, gid=1500, gecos="Alice A", line=18)],
        groups=[Group(name="ops", gid=1500, line=17)],
        ssh_keys=[SshKey(user="alice", key=KEY, line=19)],
        post=[Script(body='print("hello")\n', interpreter="/usr/bin/python3", nochroot=False, error_on_fail=True,
                     log="/root/post.log", line=35),
              Script(body="echo outside\n", interpreter="/bin/sh", nochroot=True, error_on_fail=False, line=39)],
    )


def test_full_deploy_spec_lines_of_included_file_are_its_own(full) -> None:
    # Lines 2-9 are lines of full-layout.inc, the %include'd file; network lines are full.ks.j2 lines.
    assert full.deploy == DeploySpec(
        ignoredisk=IgnoreDisk(only_use=["sda"], ignore=[], line=2),
        clearpart=ClearPart(mode="all", drives=["sda"], partitions=[], initlabel=True, disklabel="gpt", line=4),
        zerombr=True,
        reqpart=True,
        reqpart_add_boot=True,
        autopart=None,
        partitions=[PartSpec(mountpoint="/", fstype="xfs", size_mib=4096, grow=True, max_size_mib=20480,
                             ondisk="sda", label="root", fsoptions="noatime", line=6),
                    PartSpec(mountpoint="swap", fstype="swap", size_mib=1024, line=7),
                    PartSpec(mountpoint="/boot/efi", fstype="efi", size_mib=600, line=8)],
        bootloader=Bootloader(location="mbr", append="console=ttyS0,115200 quiet", timeout=3, boot_drive="sda", line=9),
        network=[NetworkDevice(device="link", bootproto="dhcp", hostname="node-1", line=23),
                 NetworkDevice(device="eth1", bootproto="static", ip="192.0.2.10", netmask="255.255.255.0",
                               gateway="192.0.2.1", nameservers=["192.0.2.53", "192.0.2.54"], mtu=9000,
                               onboot=False, line=24)],
        hostname="node-1",
        ssh_keys=[SshKey(user="alice", key=KEY, line=19)],
    )


def test_split_metadata_and_json_round_trip(full) -> None:
    assert full.warnings == []
    assert full.source == str(GOOD / "full.ks.j2")
    expanded = (GOOD / "full.ks.j2").read_text().replace("{{ mirror }}", FULL_VARS["mirror"]).replace("{{ host }}", "node-1")
    include_line = "%include full-layout.inc\n"
    expanded = expanded.replace(include_line, (GOOD / "full-layout.inc").read_text())
    assert full.sha256 == hashlib.sha256(expanded.encode()).hexdigest()
    # Other components read the specs back from JSON (deploy plan, build stages).
    assert DeploySpec.from_dict(full.deploy.to_dict()) == full.deploy


def test_build_and_deploy_ssh_keys_are_separate_objects(full) -> None:
    full.deploy.ssh_keys[0].user = "changed"
    assert full.build.ssh_keys[0].user == "alice"


def test_autopart_and_hostname_only_network(tmp_path: Path) -> None:
    ks = tmp_path / "auto.ks"
    ks.write_text(
        "%addon org_metalstream_image\nfamily=debian\nrelease=bookworm\n%end\n"
        "autopart --type=plain --fstype=ext4 --nohome\n"
        "network --hostname=db-2.example.org\n"
        "%packages\nlinux-image-amd64\n%end\n")
    split = parse_kickstart(ks)
    assert split.deploy.autopart == AutoPart(fstype="ext4", scheme="plain", nohome=True, noswap=False, line=5)
    assert split.deploy.network == []
    assert split.deploy.hostname == "db-2.example.org"
    assert split.build.distribution == Distribution(family="debian", release="bookworm", components=["main"], line=1)
    assert split.build.repos == []  # Debian without repo lines: the build machine's own apt sources


def test_autopart_lvm_is_carried_as_the_lvm_scheme_and_warns_without_lvm2(tmp_path: Path) -> None:
    ks = tmp_path / "lvm.ks"
    ks.write_text("%addon org_metalstream_image\nfamily=debian\nrelease=bookworm\n%end\n"
                  "autopart --type=lvm\n%packages\nlinux-image-amd64\n%end\n")
    split = parse_kickstart(ks)
    assert (split.deploy.autopart.scheme, split.deploy.autopart.line) == ("lvm", 5)
    assert [(d.line, d.severity) for d in split.warnings] == [(5, "warning")]
    assert "the layout uses LVM but %packages lacks lvm2" in split.warnings[0].message


def test_debian_minimal_sample() -> None:
    split = parse_kickstart(REPO / "kickstarts" / "debian-minimal.ks")
    build, deploy = split.build, split.deploy
    assert (build.distribution.family, build.distribution.release, build.distribution.variant) == ("debian", "bookworm", "minbase")
    assert build.repos == []
    for package in ("linux-image-amd64", "systemd-sysv", "udev", "openssh-server", "grub-pc-bin",
                    "grub-efi-amd64-bin", "grub2-common", "initramfs-tools", "zstd", "ca-certificates"):
        assert package in build.packages.names
    assert build.rootpw.lock and not build.rootpw.password
    assert {"ssh", "systemd-networkd"} <= set(build.services_enabled)
    assert build.post and "systemd/network" in build.post[0].body and build.post[0].error_on_fail
    assert deploy.reqpart and [(p.mountpoint, p.fstype, p.grow) for p in deploy.partitions] == [("/", "ext4", True)]
    assert "console=ttyS0,115200" in deploy.bootloader.append
    assert split.warnings == []


def test_fedora_minimal_sample_mirror_is_a_template_variable() -> None:
    path = REPO / "kickstarts" / "fedora-minimal.ks.j2"
    default = parse_kickstart(path)
    assert default.build.distribution.family == "rpm" and default.build.distribution.release == "40"
    assert default.build.repos[0].baseurl.startswith("file:///")
    given = parse_kickstart(path, variables={"fedora_repo_url": "http://mirror.invalid/fedora/40/os/"})
    assert given.build.repos[0].baseurl == "http://mirror.invalid/fedora/40/os/"
    assert given.sha256 != default.sha256
    packages = given.build.packages
    assert "core" in packages.groups
    assert {"kernel", "dracut-config-generic", "grub2-efi-x64", "shim-x64", "grub2-pc", "openssh-server",
            "NetworkManager"} <= set(packages.names)
    assert given.deploy.reqpart and given.deploy.partitions[0].mountpoint == "/" and given.deploy.bootloader


def test_installer_sample_has_the_agent_and_its_tools() -> None:
    split = parse_kickstart(REPO / "kickstarts" / "installer.ks")
    assert split.build.distribution.family == "debian"
    assert {"linux-image-amd64", "python3", "python3-requests", "python3-pyudev", "python3-click", "gdisk",
            "fdisk", "e2fsprogs", "xfsprogs", "dosfstools", "mtools", "grub-pc-bin", "grub-efi-amd64-bin",
            "grub2-common", "efibootmgr", "zstd", "tar", "udev", "iproute2", "kexec-tools", "busybox", "kmod",
            "util-linux", "ca-certificates"} <= set(split.build.packages.names)
    assert "openssh-server" not in split.build.packages.names
    assert split.deploy == DeploySpec()


def test_deploy_time_kickstart_needs_no_addon_or_packages(tmp_path: Path) -> None:
    from tarball_builder.kickstart import parse_deploy_kickstart

    ks = tmp_path / "host.ks"
    ks.write_text("clearpart --all --initlabel\npart / --fstype=ext4 --size=8192 --grow\n"
                  "network --hostname={{ host }}\nsshkey --username=root \"%s\"\n" % KEY)
    deploy = parse_deploy_kickstart(ks, variables={"host": "rack1-07"}, template=True)
    assert deploy.hostname == "rack1-07"
    assert deploy.partitions == [PartSpec(mountpoint="/", fstype="ext4", size_mib=8192, grow=True, line=2)]
    assert deploy.ssh_keys == [SshKey(user="root", key=KEY, line=4)]
    ks.write_text("part / --fstype=ntfs --size=1\n")
    with pytest.raises(KickstartError) as caught:
        parse_deploy_kickstart(ks)
    assert [(d.line, d.severity) for d in caught.value.diagnostics] == [(1, "error")]
