"""Anaconda semantics kickstarts rely on, and the promise of `ks lint`: every option on a supported command is
carried into a spec, reported as ignored (a warning naming it), or refused (an error at its line)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from metalstream.contracts.deployspec import Bootloader, DeploySpec, PartSpec
from tarball_builder.kickstart import KickstartError, lint_kickstart, parse_kickstart
from tarball_builder.kickstart.adapter import parse
from tarball_builder.kickstart.diagnostics import Findings
from tarball_builder.kickstart.support import COSMETIC, OPTIONS, REFUSED, _spellings, check_options
from tarball_builder.spec import RootPassword, Timezone

from conftest import REPO, run_cli

GOOD = REPO / "tests" / "data" / "ks" / "good"
DEBIAN = "%addon org_metalstream_image\nfamily=debian\nrelease=bookworm\n%end\n"  # lines 1-4
RPM = "%addon org_metalstream_image\nfamily=rpm\nrelease=40\n%end\nurl --url=http://MIRROR/os/\n"  # lines 1-5
PACKAGES = "%packages\nlinux-image-amd64\n%end\n"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q alice@example"


def write(tmp_path: Path, text: str, name: str = "test.ks") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_spin_overrides_its_base_across_include_naming_both_files() -> None:
    spin = parse_kickstart(GOOD / "spin.ks")
    base = str(GOOD / "spin-base.ks")
    assert [(Path(w.file).name, w.line, w.message) for w in spin.warnings] == [
        ("spin.ks", 3, f"part /: overrides the definition at {base}:16"),
        ("spin.ks", 4, f"`timezone`: overrides the definition at {base}:9"),
        ("spin.ks", 5, f"`keyboard`: overrides the definition at {base}:8"),
        ("spin.ks", 6, f"`bootloader`: overrides the definition at {base}:12"),
    ]
    assert spin.deploy.partitions == [PartSpec(mountpoint="swap", fstype="swap", recommended=True, line=17),
                                      PartSpec(mountpoint="/", fstype="xfs", size_mib=6144, grow=True, line=3)]
    assert spin.deploy.bootloader == Bootloader(location="mbr", append="console=ttyS0", timeout=5, line=6)
    assert spin.build.timezone == Timezone(name="Europe/Berlin", utc=True, line=4)
    assert (spin.build.keyboard, spin.build.keyboard_layouts, spin.build.keyboard_switch) == (
        "de", ["de", "us"], ["grp:alt_shift_toggle"])
    assert spin.build.rootpw == RootPassword(password=None, is_crypted=False, lock=True, line=10)
    assert spin.build.packages.names == ["kernel", "vim-enhanced"] and spin.build.packages.groups == ["core"]


def test_ks_lint_cli_names_both_places_of_an_override() -> None:
    result = run_cli("ks", "lint", "tests/data/ks/good/spin.ks")
    assert result.returncode == 0, result.stderr
    assert ("tests/data/ks/good/spin.ks:3: warning: part /: overrides the definition at "
            "tests/data/ks/good/spin-base.ks:16") in result.stderr.splitlines()


@pytest.mark.parametrize("line", ["rootpw --lock --iscrypted locked", "rootpw --lock", "rootpw --lock --plaintext x",
                                  "rootpw --iscrypted --lock '!'"])
def test_locked_root_idiom_is_fine_and_root_ends_locked(tmp_path: Path, line: str) -> None:
    split = parse_kickstart(write(tmp_path, DEBIAN + line + "\n" + PACKAGES))
    assert split.warnings == []
    assert split.build.rootpw.lock and not split.build.rootpw.password and not split.build.rootpw.is_crypted


def test_locked_root_keeps_a_real_hash_for_a_later_unlock(tmp_path: Path) -> None:
    split = parse_kickstart(write(tmp_path, DEBIAN + "rootpw --lock --iscrypted $6$salt$hash\n" + PACKAGES))
    assert split.build.rootpw == RootPassword(password="$6$salt$hash", is_crypted=True, lock=True, line=5)


def test_rootpw_allow_ssh_is_carried(tmp_path: Path) -> None:
    split = parse_kickstart(write(tmp_path, DEBIAN + "rootpw --iscrypted --allow-ssh $6$salt$hash\n" + PACKAGES))
    assert split.build.rootpw.allow_ssh and split.warnings == []


@pytest.mark.parametrize("command", ["auth --enableshadow", "authconfig --enableshadow", "install", "device eth0 e1000"])
def test_removed_command_gets_one_message(tmp_path: Path, command: str) -> None:
    [diagnostic] = lint_kickstart(write(tmp_path, DEBIAN + command + "\n" + PACKAGES))
    name = command.split()[0]
    assert (diagnostic.line, diagnostic.severity) == (5, "error")
    assert diagnostic.message == f"{name} has been removed from the kickstart syntax (F40): delete the line"


def test_later_user_group_and_repo_override_earlier_ones(tmp_path: Path) -> None:
    ks = write(tmp_path, RPM + "user --name=a --uid=1000\nuser --name=a --uid=2000\ngroup --name=g --gid=5\n"
                               "group --name=g --gid=6\nrepo --name=r --baseurl=http://MIRROR/a/\n"
                               "repo --name=r --baseurl=http://MIRROR/b/\n"
                               f'sshkey --username=a "{KEY}"\nsshkey --username=a "{KEY} second"\n'
                               "%packages\nkernel\n%end\n")
    split = parse_kickstart(ks)
    assert [(u.name, u.uid, u.line) for u in split.build.users] == [("a", 2000, 7)]
    assert [(g.name, g.gid) for g in split.build.groups] == [("g", 6)]
    assert [(r.name, r.baseurl) for r in split.build.repos] == [("url", "http://MIRROR/os/"), ("r", "http://MIRROR/b/")]
    assert len(split.build.ssh_keys) == 2  # several keys for one user are normal, not an override
    assert [(w.line, w.message) for w in split.warnings] == [
        (7, f"user a: overrides the definition at {ks}:6"), (9, f"group g: overrides the definition at {ks}:8"),
        (11, f"repo r: overrides the definition at {ks}:10")]


def test_a_later_packages_header_replacing_options_is_a_warning_naming_the_earlier(tmp_path: Path) -> None:
    (tmp_path / "base.inc").write_text("%packages --excludedocs\n@core\n%end\n")
    ks = write(tmp_path, RPM + "%include base.inc\n%packages\nkernel\n%end\n")
    split = parse_kickstart(ks)
    assert not split.build.packages.nodocs
    assert [(w.line, w.message) for w in split.warnings] == [
        (7, f"%packages: this header's options replace those of the header at {tmp_path / 'base.inc'}:1: "
            "--excludedocs no longer apply (repeat them here to keep them)")]


def test_a_refused_deprecated_option_gets_one_message(tmp_path: Path) -> None:
    [diagnostic] = lint_kickstart(write(tmp_path, DEBIAN + "timezone Etc/UTC --ntpservers=192.0.2.1\n" + PACKAGES))
    assert (diagnostic.line, diagnostic.severity) == (5, "error")
    assert diagnostic.message.startswith("timezone --ntpservers: not supported")


def test_empty_packages_means_core_for_rpm(tmp_path: Path) -> None:
    split = parse_kickstart(write(tmp_path, RPM + "bootloader --location=none\n%packages\n%end\n"))
    assert split.build.packages.groups == ["core"] and split.build.packages.names == []
    nocore = parse_kickstart(write(tmp_path, RPM + "%packages --nocore\nkernel\n%end\n"))
    assert nocore.build.packages.groups == [] and nocore.build.packages.names == ["kernel"]


def test_empty_packages_means_the_variants_set_for_debian(tmp_path: Path) -> None:
    split = parse_kickstart(write(tmp_path, DEBIAN + "bootloader --location=none\n%packages\n%end\n"))
    assert (split.build.packages.names, split.build.packages.groups, split.warnings) == ([], [], [])


NO_KERNEL = "no kernel listed: `{}` is installed, as anaconda does"


@pytest.mark.parametrize("family, given, kernel", [
    (RPM, "", "kernel"), (RPM, "vim\n", "kernel"), (RPM, "@core\n-kernel-debug\n", "kernel"),
    (DEBIAN, "", "linux-image-amd64"), (DEBIAN, "systemd-sysv\n", "linux-image-amd64"),
])
def test_a_bootable_image_listing_no_kernel_gets_one_as_anaconda_selects_it(tmp_path: Path, family, given, kernel):
    split = parse_kickstart(write(tmp_path, family + "%packages\n" + given + "%end\n"))
    assert split.build.packages.names[-1] == kernel and split.build.packages.names.count(kernel) == 1
    header = family.count("\n") + 1
    assert [(w.line, w.severity, w.message) for w in split.warnings] == [(header, "warning", NO_KERNEL.format(kernel))]


@pytest.mark.parametrize("family, given", [
    (RPM, "kernel-core\n"), (RPM, "kernel\n"), (RPM, "kernel-rt\n"), (DEBIAN, "linux-image-cloud-amd64\n"),
])
def test_a_listed_kernel_is_kept_and_none_is_added(tmp_path: Path, family, given):
    split = parse_kickstart(write(tmp_path, family + "%packages\n" + given + "%end\n"))
    assert split.build.packages.names == [given.strip()] and split.warnings == []


@pytest.mark.parametrize("bootloader", ["bootloader --location=none\n", "bootloader --disabled\n"])
def test_an_image_never_booted_directly_gets_no_kernel(tmp_path: Path, bootloader):
    for family in (RPM, DEBIAN):
        split = parse_kickstart(write(tmp_path, family + bootloader + "%packages\n%end\n"))
        assert not any(n.startswith(("kernel", "linux-image-")) for n in split.build.packages.names)


@pytest.mark.parametrize("family, kernel", [(RPM, "kernel"), (DEBIAN, "linux-image-amd64")])
def test_a_bootable_image_excluding_the_kernel_is_an_error_at_the_exclusion(tmp_path: Path, family, kernel):
    ks = write(tmp_path, family + f"%packages\nless\n-{kernel}\n%end\n")
    [error] = lint_kickstart(ks)
    assert (error.line, error.severity) == (family.count("\n") + 3, "error")
    assert error.message.startswith(f"%packages: -{kernel}: the image is bootable and needs a kernel")


def test_cosmetic_packages_options_are_warnings_naming_the_option(tmp_path: Path) -> None:
    split = parse_kickstart(write(tmp_path, RPM + "%packages --inst-langs=en --retries=3 --multilib\nkernel\n%end\n"))
    assert [(w.line, w.ignored) for w in split.warnings] == [(6, "%packages --inst-langs"), (6, "%packages --retries")]
    assert split.build.packages.multilib


def test_layout_without_root_is_an_error_no_layout_is_the_default(tmp_path: Path) -> None:
    with pytest.raises(KickstartError) as caught:
        parse_kickstart(write(tmp_path, DEBIAN + "reqpart\npart swap --size=512\n" + PACKAGES))
    assert [(d.line, d.message.split(":")[0]) for d in caught.value.diagnostics] == [(6, "the layout has no `/`")]
    default = parse_kickstart(write(tmp_path, DEBIAN + "clearpart --all\nreqpart --add-boot\n" + PACKAGES))
    assert default.deploy.partitions == [] and default.deploy.autopart is None


@pytest.mark.parametrize("option", ["--size=99999999999999999999", "--size=1 --grow --maxsize=99999999999999999999"])
def test_a_partition_larger_than_gpt_can_address_is_an_error_at_its_line(tmp_path: Path, option) -> None:
    """Caught at lint, not first by the agent's plan reader (the service used to store such a deployment)."""
    with pytest.raises(KickstartError) as caught:
        parse_kickstart(write(tmp_path, DEBIAN + f"part / {option}\n" + PACKAGES))
    assert [(d.line, d.message) for d in caught.value.diagnostics] == [
        (5, f"part /: {option.split()[-1]} MiB is larger than any disk GPT can address (at most 9007199254740992 MiB)")]


def test_part_swap_recommended_and_hibernation(tmp_path: Path) -> None:
    split = parse_kickstart(write(tmp_path, DEBIAN + "part / --size=2048 --grow\npart swap --hibernation\n" + PACKAGES))
    assert split.deploy.partitions[1] == PartSpec(mountpoint="swap", fstype="swap", recommended=True, hibernation=True,
                                                  line=6)


def test_autopart_hibernation_and_noboot_are_carried(tmp_path: Path) -> None:
    split = parse_kickstart(write(tmp_path, DEBIAN + "autopart --type=plain --hibernation --noboot\n" + PACKAGES))
    assert (split.deploy.autopart.hibernation, split.deploy.autopart.noboot) == (True, True)


# --- every option of every supported command is honoured, ignored with a named warning, or refused ----------

def _option_strings(name: str) -> set[str]:
    parsed = parse("", Findings("x.ks"))
    return {s for a in parsed.handler.commands[name]._getParser()._actions for s in a.option_strings}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_the_option_table_names_real_options(name: str) -> None:
    known = _option_strings(name)
    for table in (OPTIONS[name], COSMETIC.get(name, {}), REFUSED.get(name, {})):
        assert set(table) <= known, set(table) - known


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_no_option_is_dropped_silently(name: str) -> None:
    parsed = parse("", Findings("x.ks"))
    for option in sorted(_option_strings(name)):
        findings = Findings("x.ks")
        check_options(parsed, name, 1, [f"{option}=x"], findings)
        if OPTIONS[name] & set(_spellings(parsed, name)[option]):
            assert findings.items == [], option
            continue
        [finding] = findings.items
        assert finding.severity == "error" or finding.ignored == f"{name} {option}", (option, finding)


# Layouts for the storage stacks' options ({...}: options of one line).
_LV = ("part /boot --size=500\npart pv.01 --size=100 --grow\nvolgroup vg pv.01 {vg}\n"
       "logvol / --vgname=vg --name=root --size=1000 {lv}")
_THIN = ("part /boot --size=500\npart pv.01 --size=100 --grow\nvolgroup vg pv.01\n"
         "logvol none --vgname=vg --name=pool --thinpool --size=2000 {pool}\n"
         "logvol / --vgname=vg --name=root --thin --poolname=pool --size=1000")
_RAID = ("part /boot --size=500\npart raid.01 --size=100 --grow\npart raid.02 --size=100 --grow\n"
         "raid / --device=md0 raid.01 raid.02 {raid}")
_BTRFS = ("part /boot --size=500\npart btrfs.01 --size=100 --grow\nbtrfs none --label=fs {volume} btrfs.01\n"
          "btrfs / --subvol --name=root fs")

# Each honoured option: a line with it and a variant without it (or with another value) give different specs.
HONOURED = [
    ("url --url", "url --url=http://MIRROR/a/", "url --url=http://MIRROR/b/"),
    ("url --mirrorlist", "url --mirrorlist=http://MIRROR/a", "url --mirrorlist=http://MIRROR/b"),
    ("url --metalink", "url --metalink=http://MIRROR/a", "url --metalink=http://MIRROR/b"),
    ("repo --name", "repo --name=a --baseurl=http://MIRROR/", "repo --name=b --baseurl=http://MIRROR/"),
    ("repo --baseurl", "repo --name=a --baseurl=http://MIRROR/a", "repo --name=a --baseurl=http://MIRROR/b"),
    ("repo --mirrorlist", "repo --name=a --mirrorlist=http://MIRROR/a", "repo --name=a --mirrorlist=http://MIRROR/b"),
    ("repo --metalink", "repo --name=a --metalink=http://MIRROR/a", "repo --name=a --metalink=http://MIRROR/b"),
    ("repo --cost", "repo --name=a --baseurl=http://MIRROR/ --cost=5", "repo --name=a --baseurl=http://MIRROR/"),
    ("repo --excludepkgs", "repo --name=a --baseurl=http://MIRROR/ --excludepkgs=x", "repo --name=a --baseurl=http://MIRROR/"),
    ("repo --includepkgs", "repo --name=a --baseurl=http://MIRROR/ --includepkgs=x", "repo --name=a --baseurl=http://MIRROR/"),
    ("repo --install", "repo --name=a --baseurl=http://MIRROR/ --install", "repo --name=a --baseurl=http://MIRROR/"),
    ("keyboard --vckeymap", "keyboard --vckeymap=de", "keyboard --vckeymap=fr"),
    ("keyboard --xlayouts", "keyboard --vckeymap=de --xlayouts=de,us", "keyboard --vckeymap=de --xlayouts=de"),
    ("keyboard --switch", "keyboard --xlayouts=de,us --switch=grp:alt_shift_toggle", "keyboard --xlayouts=de,us"),
    ("timezone --utc", "timezone Europe/Berlin --utc", "timezone Europe/Berlin"),
    ("selinux --disabled", "selinux --disabled", "selinux --permissive"),
    ("selinux --enforcing", "selinux --enforcing", "selinux --permissive"),
    ("services --enabled", "services --enabled=sshd", "services --enabled=chronyd"),
    ("services --disabled", "services --disabled=sshd", "services --disabled=chronyd"),
    ("firewall --disabled", "firewall --disabled", "firewall --enabled"),
    ("firewall --port", "firewall --enabled --port=22:tcp", "firewall --enabled"),
    ("firewall --trust", "firewall --enabled --trust=eth1", "firewall --enabled"),
    ("firewall --service", "firewall --enabled --service=http", "firewall --enabled"),
    ("firewall --ssh", "firewall --enabled --ssh", "firewall --enabled"),
    ("firewall --remove-service", "firewall --enabled --remove-service=cockpit", "firewall --enabled"),
    ("firewall --use-system-defaults", "firewall --use-system-defaults", "firewall --enabled"),
    ("rootpw --iscrypted", "rootpw --iscrypted $6$a$b", "rootpw --plaintext $6$a$b"),
    ("rootpw --lock", "rootpw --lock", "rootpw --plaintext x"),
    ("rootpw --allow-ssh", "rootpw --iscrypted --allow-ssh $6$a$b", "rootpw --iscrypted $6$a$b"),
    ("user --homedir", "user --name=a --homedir=/srv/a", "user --name=a"),
    ("user --iscrypted", "user --name=a --iscrypted --password=$6$a$b", "user --name=a --password=$6$a$b"),
    ("user --password", "user --name=a --iscrypted --password=$6$a$b", "user --name=a"),
    ("user --shell", "user --name=a --shell=/bin/zsh", "user --name=a"),
    ("user --uid", "user --name=a --uid=1001", "user --name=a"),
    ("user --lock", "user --name=a --lock", "user --name=a"),
    ("user --gecos", "user --name=a --gecos=A", "user --name=a"),
    ("user --gid", "user --name=a --gid=1001", "user --name=a"),
    ("user --groups", "user --name=a --groups=wheel", "user --name=a"),
    ("group --gid", "group --name=g --gid=5", "group --name=g"),
    ("sshkey --username", f'sshkey --username=a "{KEY}"', f'sshkey --username=b "{KEY}"'),
    ("ignoredisk --drives", "ignoredisk --drives=sdb", "ignoredisk --drives=sdc"),
    ("ignoredisk --only-use", "ignoredisk --only-use=sda", "ignoredisk --only-use=sdb"),
    ("clearpart --all", "clearpart --all", "clearpart --none"),
    ("clearpart --linux", "clearpart --linux", "clearpart --none"),
    ("clearpart --initlabel", "clearpart --all --initlabel", "clearpart --all"),
    ("clearpart --drives", "clearpart --all --drives=sda", "clearpart --all"),
    ("clearpart --list", "clearpart --list=sda1", "clearpart --all"),
    ("reqpart --add-boot", "reqpart --add-boot", "reqpart"),
    ("autopart --fstype", "autopart --type=plain --fstype=xfs", "autopart --type=plain"),
    ("autopart --nohome", "autopart --type=plain --nohome", "autopart --type=plain"),
    ("autopart --noswap", "autopart --type=plain --noswap", "autopart --type=plain"),
    ("autopart --noboot", "autopart --type=plain --noboot", "autopart --type=plain"),
    ("autopart --hibernation", "autopart --type=plain --hibernation", "autopart --type=plain"),
    ("part --fstype", "part / --size=100 --fstype=xfs", "part / --size=100 --fstype=ext4"),
    ("part --grow", "part / --size=100 --grow", "part / --size=100"),
    ("part --maxsize", "part / --size=100 --grow --maxsize=200", "part / --size=100 --grow"),
    ("part --ondisk", "part / --size=100 --ondisk=sda", "part / --size=100"),
    ("part --size", "part / --size=100", "part / --size=200"),
    ("part --fsoptions", "part / --size=100 --fsoptions=noatime", "part / --size=100"),
    ("part --label", "part / --size=100 --label=root", "part / --size=100"),
    ("part --recommended", "part / --size=100\npart swap --recommended", "part / --size=100\npart swap --size=100"),
    ("part --hibernation", "part / --size=100\npart swap --hibernation", "part / --size=100\npart swap --recommended"),
    ("autopart --type", "autopart --type=lvm", "autopart --type=plain"),
    ("autopart --encrypted", "autopart --type=lvm --encrypted", "autopart --type=lvm"),
    ("autopart --luks-version", "autopart --encrypted --luks-version=luks1", "autopart --encrypted"),
    ("autopart --cipher", "autopart --encrypted --cipher=aes-xts-plain64", "autopart --encrypted"),
    ("part --encrypted", "part /boot --size=500\npart / --size=100 --encrypted", "part /boot --size=500\npart / --size=100"),
    ("part --luks-version", "part / --size=100\npart /srv --size=100 --encrypted --luks-version=luks1",
     "part / --size=100\npart /srv --size=100 --encrypted"),
    ("part --cipher", "part / --size=100\npart /srv --size=100 --encrypted --cipher=aes-xts-plain64",
     "part / --size=100\npart /srv --size=100 --encrypted"),
    ("volgroup --pesize", _LV.format(vg="--pesize=8192", lv=""), _LV.format(vg="", lv="")),
    ("volgroup --reserved-space", _LV.format(vg="--reserved-space=100", lv=""), _LV.format(vg="", lv="")),
    ("volgroup --reserved-percent", _LV.format(vg="--reserved-percent=5", lv=""), _LV.format(vg="", lv="")),
    ("logvol --vgname", _LV.format(vg="", lv="").replace("=vg", "=a").replace("vg pv", "a pv"), _LV.format(vg="", lv="")),
    ("logvol --name", _LV.format(vg="", lv=""), _LV.format(vg="", lv="").replace("=root", "=slash")),
    ("logvol --fstype", _LV.format(vg="", lv="--fstype=xfs"), _LV.format(vg="", lv="--fstype=ext4")),
    ("logvol --size", _LV.format(vg="", lv=""), _LV.format(vg="", lv="").replace("=1000", "=2000")),
    ("logvol --grow", _LV.format(vg="", lv="--grow"), _LV.format(vg="", lv="")),
    ("logvol --maxsize", _LV.format(vg="", lv="--grow --maxsize=3000"), _LV.format(vg="", lv="--grow")),
    ("logvol --percent", _LV.format(vg="", lv="").replace("--size=1000", "--percent=50"), _LV.format(vg="", lv="")),
    ("logvol --label", _LV.format(vg="", lv="--label=root"), _LV.format(vg="", lv="")),
    ("logvol --fsoptions", _LV.format(vg="", lv="--fsoptions=noatime"), _LV.format(vg="", lv="")),
    ("logvol --encrypted", _LV.format(vg="", lv="--encrypted"), _LV.format(vg="", lv="")),
    ("logvol --luks-version", _LV.format(vg="", lv="--encrypted --luks-version=luks1"),
     _LV.format(vg="", lv="--encrypted")),
    ("logvol --cipher", _LV.format(vg="", lv="--encrypted --cipher=aes-xts-plain64"), _LV.format(vg="", lv="--encrypted")),
    ("logvol --recommended", _LV.format(vg="", lv="") + "\nlogvol swap --vgname=vg --name=swap --recommended",
     _LV.format(vg="", lv="") + "\nlogvol swap --vgname=vg --name=swap --size=100"),
    ("logvol --hibernation", _LV.format(vg="", lv="") + "\nlogvol swap --vgname=vg --name=swap --hibernation",
     _LV.format(vg="", lv="") + "\nlogvol swap --vgname=vg --name=swap --recommended"),
    ("logvol --thinpool", _THIN.format(pool=""), _LV.format(vg="", lv="")),
    ("logvol --thin", _THIN.format(pool=""), _LV.format(vg="", lv="")),
    ("logvol --poolname", _THIN.format(pool=""), _THIN.format(pool="").replace("=pool", "=tp")),
    ("logvol --chunksize", _THIN.format(pool="--chunksize=128"), _THIN.format(pool="")),
    ("raid --level", _RAID.format(raid="--level=1"), _RAID.format(raid="--level=0")),
    ("raid --device", _RAID.format(raid="--level=1"), _RAID.format(raid="--level=1").replace("md0", "md1")),
    ("raid --spares", _RAID.format(raid="--level=1 --spares=1 raid.03") + "\npart raid.03 --size=100",
     _RAID.format(raid="--level=1 raid.03") + "\npart raid.03 --size=100"),
    ("raid --fstype", _RAID.format(raid="--level=1 --fstype=xfs"), _RAID.format(raid="--level=1 --fstype=ext4")),
    ("raid --chunksize", _RAID.format(raid="--level=0 --chunksize=64"), _RAID.format(raid="--level=0")),
    ("raid --label", _RAID.format(raid="--level=1 --label=root"), _RAID.format(raid="--level=1")),
    ("raid --fsoptions", _RAID.format(raid="--level=1 --fsoptions=noatime"), _RAID.format(raid="--level=1")),
    ("raid --encrypted", _RAID.format(raid="--level=1 --encrypted"), _RAID.format(raid="--level=1")),
    ("raid --luks-version", _RAID.format(raid="--level=1 --encrypted --luks-version=luks1"),
     _RAID.format(raid="--level=1 --encrypted")),
    ("raid --cipher", _RAID.format(raid="--level=1 --encrypted --cipher=aes-xts-plain64"),
     _RAID.format(raid="--level=1 --encrypted")),
    ("btrfs --data", _BTRFS.format(volume="--data=single"), _BTRFS.format(volume="")),
    ("btrfs --metadata", _BTRFS.format(volume="--metadata=single"), _BTRFS.format(volume="")),
    ("btrfs --label", _BTRFS.format(volume=""), _BTRFS.format(volume="").replace("=fs", "=data").replace(" fs", " data")),
    ("btrfs --subvol", _BTRFS.format(volume=""), "part /boot --size=500\npart btrfs.01 --size=100 --grow\n"
                                                 "btrfs / --label=fs btrfs.01"),
    ("btrfs --name", _BTRFS.format(volume=""), _BTRFS.format(volume="").replace("=root", "=slash")),
    ("bootloader --append", "bootloader --append=quiet", "bootloader"),
    ("bootloader --location", "bootloader --location=none", "bootloader --location=mbr"),
    ("bootloader --timeout", "bootloader --timeout=3", "bootloader"),
    ("bootloader --boot-drive", "bootloader --boot-drive=sda", "bootloader"),
    ("bootloader --disabled", "bootloader --disabled", "bootloader"),
]
_EQUAL_TO_DEFAULT = {"autopart --type", "autopart --nolvm", "selinux --permissive", "firewall --enabled",
                     "firewall --ftp", "firewall --http", "firewall --smtp", "rootpw --plaintext", "user --plaintext",
                     "user --name", "group --name", "timezone --isUtc", "clearpart --none", "clearpart --disklabel"}


def test_every_honoured_option_has_an_example() -> None:
    covered = {option for option, _with, _without in HONOURED} | _EQUAL_TO_DEFAULT
    honoured = {f"{name} {option}" for name, options in OPTIONS.items() if name != "partition" for option in options}
    assert honoured <= covered, honoured - covered


def _specs(path: Path) -> dict:
    split = parse_kickstart(path)
    return {"build": split.build.to_dict(), "deploy": split.deploy.to_dict()}


@pytest.mark.parametrize(("option", "given", "variant"), HONOURED, ids=[o for o, _g, _v in HONOURED])
def test_honoured_option_reaches_the_spec(tmp_path: Path, option: str, given: str, variant: str) -> None:
    packages = "%packages\nkernel\n%end\n"
    a = _specs(write(tmp_path, RPM + given + "\n" + packages, "a.ks"))
    b = _specs(write(tmp_path, RPM + variant + "\n" + packages, "b.ks"))
    assert a != b, option


def test_unknown_option_spelling_is_resolved_through_pykickstart(tmp_path: Path) -> None:
    ks = write(tmp_path, DEBIAN + "part / --size=2048 --grow --usepart=sda1\nbootloader --location=none\n" + PACKAGES)
    [diagnostic] = lint_kickstart(ks)
    assert (diagnostic.line, diagnostic.message) == (5, "part --usepart: not supported: partitions are always created anew")


def test_deploy_spec_without_the_new_swap_fields_still_reads() -> None:
    spec = DeploySpec.from_dict({"partitions": [{"mountpoint": "swap", "size_mib": 512}], "autopart": None})
    assert spec.partitions[0] == PartSpec(mountpoint="swap", size_mib=512, recommended=False, hibernation=False)
