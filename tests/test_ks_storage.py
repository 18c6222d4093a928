"""Storage stacks through the kickstart front end: LVM, md RAID, btrfs, LUKS, several disks and %pre are carried
into the deploy spec with their lines, and every layout the agent cannot build as written is an error at its line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from metalstream.contracts.deployspec import (
    AutoPart,
    BtrfsSpec,
    DeferredInclude,
    DeploySpec,
    LogVolSpec,
    PartSpec,
    PreScript,
    RaidSpec,
    VolGroupSpec,
)
from metalstream.contracts.plan import ImageRef, Plan
from tarball_builder.kickstart import lint_kickstart, parse_deploy_kickstart, parse_kickstart

DEBIAN = "%addon org_metalstream_image\nfamily=debian\nrelease=bookworm\n%end\n"  # lines 1-4
RPM = "url --url=http://MIRROR/fedora/releases/40/Everything/x86_64/os/\n"  # line 1
DEBIAN_TOOLS = ("%packages\nlinux-image-amd64\nmdadm\nlvm2\nthin-provisioning-tools\ncryptsetup\ncryptsetup-initramfs\n"
                "btrfs-progs\n%end\n")
BOOT = "part /boot/efi --size=512\npart /boot --size=1024\n"  # lines 5-6 after DEBIAN


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def lint(tmp_path: Path, layout: str, header: str = DEBIAN, packages: str = DEBIAN_TOOLS, name: str = "s.ks"):
    return lint_kickstart(write(tmp_path / name, header + layout + packages))


def errors(diagnostics) -> list[tuple[int, str]]:
    return [(d.line, d.message) for d in diagnostics if d.severity == "error"]


def warnings(diagnostics) -> list[tuple[int, str]]:
    return [(d.line, d.message) for d in diagnostics if d.severity == "warning"]


def deploy(tmp_path: Path, layout: str, header: str = DEBIAN, packages: str = DEBIAN_TOOLS) -> DeploySpec:
    return parse_kickstart(write(tmp_path / "s.ks", header + layout + packages)).deploy


# ------------------------------------------------------------------------------------------------ carried

LVM = BOOT + """\
part pv.01 --size=8192 --grow --ondisk=sda --encrypted --luks-version=luks1 --cipher=aes-xts-plain64
part pv.02 --size=4096 --ondrive=sdb
volgroup vg0 pv.01 pv.02 --pesize=8192 --reserved-percent=5
logvol / --vgname=vg0 --name=root --fstype=xfs --size=4096 --grow --maxsize=20480 --label=root
logvol swap --vgname=vg0 --name=swap --hibernation
logvol none --vgname=vg0 --name=pool --thinpool --size=4096 --chunksize=128
logvol /srv --vgname=vg0 --name=srv --thin --poolname=pool --size=8192 --fsoptions=noatime
logvol /home --vgname=vg0 --name=home --percent=50 --encrypted
"""


def test_lvm_is_carried_line_by_line(tmp_path: Path) -> None:
    spec = deploy(tmp_path, LVM)
    assert spec.partitions[2:] == [
        PartSpec("pv.01", size_mib=8192, grow=True, ondisk="sda", encrypted=True, luks_version="luks1",
                 cipher="aes-xts-plain64", line=7),
        PartSpec("pv.02", size_mib=4096, ondisk="sdb", line=8)]
    assert spec.volgroups == [VolGroupSpec("vg0", ["pv.01", "pv.02"], pesize_kib=8192, reserved_percent=5, line=9)]
    assert spec.logvols == [
        LogVolSpec("/", "root", "vg0", fstype="xfs", size_mib=4096, grow=True, max_size_mib=20480, label="root",
                   line=10),
        LogVolSpec("swap", "swap", "vg0", fstype="swap", recommended=True, hibernation=True, line=11),
        LogVolSpec("none", "pool", "vg0", size_mib=4096, thinpool=True, chunksize_kib=128, line=12),
        LogVolSpec("/srv", "srv", "vg0", size_mib=8192, thin=True, poolname="pool", fsoptions="noatime", line=13),
        LogVolSpec("/home", "home", "vg0", percent=50, encrypted=True, line=14)]
    assert spec.stacked


@pytest.mark.parametrize(("written", "level"), [("1", "raid1"), ("RAID1", "raid1"), ("raid1", "raid1"),
                                                ("0", "raid0"), ("5", "raid5"), ("RAID6", "raid6"), ("10", "raid10")])
def test_raid_levels_in_any_spelling(tmp_path: Path, written: str, level: str) -> None:
    members = "".join(f"part raid.0{i} --size=2048 --ondisk=sd{'abcd'[i]}\n" for i in range(4))
    layout = BOOT + members + f"raid / --level={written} --device=md0 raid.00 raid.01 raid.02 raid.03\n"
    [raid] = deploy(tmp_path, layout).raids
    assert (raid.level, raid.device, raid.members, raid.line) == (level, "md0", ["raid.00", "raid.01", "raid.02",
                                                                               "raid.03"], 11)


RAID = """\
part /boot/efi --size=512 --ondisk=sda
part raid.01 --size=1024 --ondisk=sda
part raid.02 --size=1024 --ondisk=sdb
part raid.03 --size=1024 --ondisk=sdc
raid /boot --level=1 --device=boot --fstype=ext4 --spares=1 raid.01 raid.02 raid.03
part raid.11 --size=4096 --grow --ondisk=sda
part raid.12 --size=4096 --grow --ondisk=sdb
raid pv.01 --level=RAID1 --device=md1 --chunksize=512 --encrypted raid.11 raid.12
volgroup vg0 pv.01
logvol / --vgname=vg0 --name=root --size=2048 --grow
"""


def test_raid_arrays_and_an_array_as_physical_volume(tmp_path: Path) -> None:
    spec = deploy(tmp_path, RAID)
    assert spec.raids == [
        RaidSpec("/boot", "boot", "raid1", ["raid.01", "raid.02", "raid.03"], spares=1, fstype="ext4", line=9),
        RaidSpec("pv.01", "md1", "raid1", ["raid.11", "raid.12"], chunksize_kib=512, encrypted=True, line=12)]
    assert spec.volgroups == [VolGroupSpec("vg0", ["pv.01"], line=13)]
    assert [p.ondisk for p in spec.partitions] == ["sda", "sda", "sdb", "sdc", "sda", "sdb"]


BTRFS = """\
part /boot --size=1024
part btrfs.01 --size=4096 --grow --ondisk=sda
part btrfs.02 --size=4096 --grow --ondisk=sdb
btrfs none --data=raid1 --metadata=1 --label=fedora btrfs.01 btrfs.02
btrfs / --subvol --name=root LABEL=fedora
btrfs /home --subvol --name=home fedora
part btrfs.03 --size=2048
btrfs /data --label=data btrfs.03
btrfs /data/www --subvol --name=www /data
"""


def test_btrfs_volumes_and_subvolumes_by_label_or_mount_point(tmp_path: Path) -> None:
    spec = deploy(tmp_path, BTRFS)
    assert spec.btrfs == [
        BtrfsSpec("none", members=["btrfs.01", "btrfs.02"], data_level="raid1", metadata_level="raid1",
                  label="fedora", line=8),
        BtrfsSpec("/", subvol=True, name="root", volume="fedora", line=9),
        BtrfsSpec("/home", subvol=True, name="home", volume="fedora", line=10),
        BtrfsSpec("/data", members=["btrfs.03"], label="data", line=12),
        BtrfsSpec("/data/www", subvol=True, name="www", volume="/data", line=13)]


@pytest.mark.parametrize(("line", "autopart"), [
    ("autopart --type=lvm --nohome", AutoPart(scheme="lvm", nohome=True, noswap=False, line=5)),
    ("autopart --type=thinp --noswap", AutoPart(scheme="thinp", nohome=False, noswap=True, line=5)),
    ("autopart --type=btrfs --encrypted --luks-version=luks2 --cipher=aes-xts-plain64",
     AutoPart(scheme="btrfs", nohome=False, noswap=False, encrypted=True, luks_version="luks2",
              cipher="aes-xts-plain64", line=5)),
    ("autopart --nolvm --encrypted", AutoPart(scheme="plain", nohome=False, noswap=False, encrypted=True, line=5)),
])
def test_autopart_schemes_and_encryption(tmp_path: Path, line: str, autopart: AutoPart) -> None:
    assert deploy(tmp_path, line + "\n").autopart == autopart


def test_autopart_without_type_says_it_makes_plain_partitions(tmp_path: Path) -> None:
    assert warnings(lint(tmp_path, "autopart\n")) == [
        (5, "autopart without --type makes plain partitions here (anaconda's default is LVM): say which with "
            "--type=plain, lvm, thinp or btrfs")]


def test_every_stacked_spec_round_trips_through_the_plan(tmp_path: Path) -> None:
    image = ImageRef(name="x", url="http://127.0.0.1/x.tar.zst", sha256="0" * 64, size=1)
    for layout in (LVM, RAID, BTRFS, "autopart --type=thinp --encrypted\n", PRE):
        spec = parse_kickstart(write(tmp_path / "r.ks", DEBIAN + layout + DEBIAN_TOOLS)).deploy
        assert DeploySpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
        plan = Plan(image=image, storage=spec, boot_mode="uefi", encryption_passphrase="not-in-the-kickstart")
        assert Plan.from_json(plan.to_json()).storage == spec


def test_lines_are_those_of_the_included_file(tmp_path: Path) -> None:
    write(tmp_path / "layout.inc", "# the layout\n" + RAID)
    spec = deploy(tmp_path, "%include layout.inc\n")
    assert [r.line for r in spec.raids] == [6, 9]
    write(tmp_path / "bad.inc", "part /boot --size=1024\npart raid.01 --size=1024\nraid / --level=1 --device=md0 raid.01\n")
    [error] = [d for d in lint(tmp_path, "%include bad.inc\n") if d.severity == "error"]
    assert (Path(error.file).name, error.line, error.message) == ("bad.inc", 3, "raid /: RAID1 needs at least 2 "
                                                                               "members, 1 given")


# ----------------------------------------------------------------------------------- %pre and deferred includes

PRE = """\
%pre --interpreter=/usr/bin/bash --erroronfail --log=/tmp/pre.log
echo "part / --size=4096 --grow" > /tmp/part-include
%end
%include /tmp/part-include
"""


def test_pre_sections_and_the_includes_they_write_are_carried(tmp_path: Path) -> None:
    spec = deploy(tmp_path, PRE)
    assert spec.pre_scripts == [PreScript(script='echo "part / --size=4096 --grow" > /tmp/part-include\n',
                                          interpreter="/usr/bin/bash", erroronfail=True, log="/tmp/pre.log", line=5)]
    assert spec.deferred_includes == [DeferredInclude("/tmp/part-include", line=8)]
    assert spec.partitions == [] and spec.autopart is None


def test_a_deploy_kickstart_carries_pre_and_deferred_includes_too(tmp_path: Path) -> None:
    spec = parse_deploy_kickstart(write(tmp_path / "d.ks", PRE))
    assert [s.line for s in spec.pre_scripts] == [1] and spec.deferred_includes == [DeferredInclude("/tmp/part-include", 4)]


def test_names_a_deferred_include_may_define_are_not_errors(tmp_path: Path) -> None:
    layout = PRE + "part /boot --size=1024\nvolgroup vg0 pv.01\nlogvol / --vgname=vg0 --name=root --size=1 --grow\n"
    diagnostics = lint(tmp_path, layout)
    assert errors(diagnostics) == []
    assert (8, "%include /tmp/part-include: deferred to deploy time (written by %pre at "
               f"{tmp_path / 's.ks'}:5)") in warnings(diagnostics)


def test_a_pre_interpreter_must_be_an_absolute_path(tmp_path: Path) -> None:
    assert errors(lint(tmp_path, "%pre --interpreter=bash\ntrue\n%end\npart / --size=1 --grow\n")) == [
        (5, "%pre --interpreter=bash: the interpreter must be an absolute path (e.g. /bin/bash, /usr/bin/python3)")]


# ------------------------------------------------------------------------------------------------- errors

GRUB = "grub here reads /boot from a plain partition or an md RAID1 of ext4/xfs"
TWO_RAID = "part raid.01 --size=1024\npart raid.02 --size=1024\n"  # lines 7-8 after BOOT

BAD = [
    ("raid1-one-member", BOOT + "part raid.01 --size=1024\nraid / --level=1 --device=md0 raid.01\n",
     [(8, "raid /: RAID1 needs at least 2 members, 1 given")]),
    ("raid5-two-members", BOOT + TWO_RAID + "raid / --level=5 --device=md0 raid.01 raid.02\n",
     [(9, "raid /: RAID5 needs at least 3 members, 2 given")]),
    ("raid6-spares", BOOT + TWO_RAID + "part raid.03 --size=1024\npart raid.04 --size=1024\n"
                     "raid / --level=6 --device=md0 --spares=1 raid.01 raid.02 raid.03 raid.04\n",
     [(11, "raid /: RAID6 needs at least 4 members besides its 1 spare(s), 3 given")]),
    ("raid10-three", BOOT + TWO_RAID + "part raid.03 --size=1024\nraid / --level=10 --device=md0 raid.01 raid.02 "
                     "raid.03\n", [(10, "raid /: RAID10 needs at least 4 members, 3 given")]),
    ("raid0-one", BOOT + "part raid.01 --size=1024\nraid / --level=0 --device=md0 raid.01\n",
     [(8, "raid /: RAID0 needs at least 2 members, 1 given")]),
    ("member-unused", BOOT + "part / --size=1 --grow\npart pv.01 --size=1024\n",
     [(8, "part pv.01: no volgroup uses pv.01")]),
    ("member-twice", BOOT + TWO_RAID + "raid / --level=1 --device=md0 raid.01 raid.02\n"
                     "raid /srv --level=1 --device=md1 raid.01 raid.02\n",
     [(10, "raid /srv: already used: raid.01 at {ks}:9, raid.02 at {ks}:9")]),
    ("member-defined-twice", BOOT + TWO_RAID + "part pv.01 --size=1024\nraid pv.01 --level=1 --device=md0 raid.01 "
                             "raid.02\nvolgroup vg pv.01\nlogvol / --vgname=vg --name=root --size=1\n",
     [(10, "raid pv.01: pv.01 is already defined at {ks}:9")]),
    ("member-undefined", BOOT + "part pv.01 --size=1024\nvolgroup vg pv.01 pv.02\n"
                         "logvol / --vgname=vg --name=root --size=1\n",
     [(8, "volgroup vg: not defined: pv.02 (add `part NAME ...` or `raid NAME ...`)")]),
    ("member-of-the-wrong-kind", BOOT + "part raid.01 --size=1024\nvolgroup vg raid.01\n"
                                 "logvol / --vgname=vg --name=root --size=1\n",
     [(8, "volgroup vg: raid.01: not volgroup members (those are named pv.NN)")]),
    ("logvol-in-undefined-vg", BOOT + "part / --size=1 --grow\nlogvol /srv --vgname=vg9 --name=srv --size=1\n",
     [(8, "logvol /srv: volume group vg9 is not defined: add `volgroup vg9 pv.NN`")]),
    ("thin-without-pool", BOOT + "part pv.01 --size=1024\nvolgroup vg pv.01\nlogvol / --vgname=vg --name=root "
                          "--size=100\nlogvol /srv --vgname=vg --name=srv --thin --poolname=root --size=100\n",
     [(10, "logvol /srv: --poolname=root: volume group vg has no thin pool of that name (`logvol none --thinpool "
           "--name=root ...`)")]),
    ("subvolume-outside-a-volume", BOOT + "part / --size=1 --grow\nbtrfs /srv --subvol --name=srv LABEL=data\n",
     [(8, "btrfs /srv: data is not a btrfs volume of this layout (name a `btrfs` volume by its --label or mount "
          "point)")]),
    ("mount-point-twice", BOOT + "part / --size=1 --grow\npart pv.01 --size=1024\nvolgroup vg pv.01\n"
                          "logvol /boot/efi --vgname=vg --name=esp --size=100\n",
     [(10, "logvol /boot/efi: /boot/efi is already mounted from `part` at {ks}:5"),
      (10, f"logvol /boot/efi: cannot be on LVM: {GRUB}")]),
    ("boot-on-lvm", "part / --size=1 --grow\npart pv.01 --size=1024\nvolgroup vg pv.01\n"
                    "logvol /boot --vgname=vg --name=boot --size=100\n",
     [(8, f"logvol /boot: cannot be on LVM: {GRUB}")]),
    ("boot-encrypted", "part /boot --size=1024 --encrypted\npart / --size=1 --grow\n",
     [(5, f"part /boot: cannot be encrypted: {GRUB}")]),
    ("boot-on-btrfs", "part / --size=1 --grow\npart btrfs.01 --size=1024\nbtrfs /boot --label=b btrfs.01\n",
     [(7, f"btrfs /boot: cannot be on btrfs: {GRUB}")]),
    ("esp-on-raid0", "part / --size=1 --grow\n" + "part raid.01 --size=512\npart raid.02 --size=512\n"
                     "raid /boot/efi --level=0 --device=esp raid.01 raid.02\n",
     [(8, f"raid /boot/efi: cannot be on RAID0: {GRUB}")]),
    ("boot-on-encrypted-members", "part / --size=1 --grow\npart raid.01 --size=512 --encrypted\n"
                                  "part raid.02 --size=512 --encrypted\nraid /boot --level=1 --device=boot raid.01 raid.02\n",
     [(8, f"raid /boot: cannot be on LUKS: {GRUB}")]),
    ("root-on-lvm-without-boot", "part pv.01 --size=1024 --grow\nvolgroup vg pv.01\n"
                                 "logvol / --vgname=vg --name=root --size=1 --grow\n",
     [(7, f"/ is on LVM and the layout has no /boot: add `part /boot --size=1024` or `reqpart --add-boot` ({GRUB})")]),
    ("root-on-btrfs-without-boot", "part btrfs.01 --size=1024\nbtrfs / --label=r btrfs.01\n",
     [(6, f"/ is on btrfs and the layout has no /boot: add `part /boot --size=1024` or `reqpart --add-boot` ({GRUB})")]),
    ("lv-larger-than-vg", BOOT + "part pv.01 --size=1024\npart pv.02 --size=1024\nvolgroup vg pv.01 pv.02\n"
                          "logvol / --vgname=vg --name=root --size=2049\n",
     [(10, "logvol /: --size=2049 MiB is larger than volume group vg (at most 2048 MiB from its fixed-size members)")]),
    ("lvs-larger-than-raid1-vg", BOOT + TWO_RAID + "raid pv.01 --level=1 --device=md0 raid.01 raid.02\n"
                                 "volgroup vg pv.01 --reserved-space=24\n"
                                 "logvol / --vgname=vg --name=root --size=500\nlogvol /srv --vgname=vg --name=srv "
                                 "--size=501\n",
     [(12, "logvol /srv: volume group vg holds at most 1000 MiB (its members have fixed sizes) and its volumes need "
           "1001 MiB by this line")]),
    ("passphrase", BOOT + "part / --size=1 --grow --encrypted --passphrase=hunter2\n",
     [(7, "part --passphrase: not supported: the passphrase comes from the deploy plan (`encryption.passphrase`), "
          "never from the kickstart, which is stored with the image and in the service")]),
    ("backuppassphrase", BOOT + "part / --size=1 --grow --encrypted --backuppassphrase\n",
     [(7, "part --backuppassphrase: not supported: escrow certificates and backup passphrases are not supported")]),
    ("luks-options-without-encrypted", BOOT + "part / --size=1 --grow --luks-version=luks2\n",
     [(7, "part /: --luks-version and --cipher need --encrypted")]),
    ("fstype-on-a-logvol", BOOT + "part pv.01 --size=1024\nvolgroup vg pv.01\n"
                           "logvol / --vgname=vg --name=root --size=1 --fstype=vfat\n",
     [(9, "logvol /: unsupported --fstype=vfat here (supported: ext4, xfs, swap)")]),
    ("btrfs-raid1-one-member", "part /boot --size=1024\npart btrfs.01 --size=1024\n"
                               "btrfs / --data=raid1 --label=r btrfs.01\n",
     [(7, "btrfs /: --data=raid1 needs at least 2 members, 1 given")]),
    ("ondisk-not-in-only-use", "ignoredisk --only-use=sda\npart / --size=1 --grow --ondisk=sdb\n",
     [(6, "part /: --ondisk=sdb is not among `ignoredisk --only-use=sda`")]),
    ("autopart-encrypted-noboot", "autopart --type=plain --encrypted --noboot\n",
     [(5, f"autopart --noboot: the plain encrypted layout needs its plain /boot: {GRUB}")]),
    ("member-with-a-file-system", BOOT + "part / --size=1 --grow\npart pv.01 --size=1 --fstype=xfs\n",
     [(8, "part pv.01: --fstype=xfs: a pv. member partition is lvmpv (or give no --fstype)")]),
]


@pytest.mark.parametrize(("layout", "expected"), [(layout, expected) for _n, layout, expected in BAD],
                         ids=[name for name, _l, _e in BAD])
def test_a_layout_the_agent_cannot_build_as_written_is_an_error_at_its_line(tmp_path: Path, layout: str,
                                                                            expected: list) -> None:
    ks = tmp_path / "s.ks"
    got = errors(lint(tmp_path, layout))
    assert got == [(line, message.format(ks=ks)) for line, message in expected]


# ------------------------------------------------------------------------------------------------- warnings

def test_encrypted_needs_the_passphrase_in_the_plan_said_once_as_a_note(tmp_path: Path) -> None:
    diagnostics = lint(tmp_path, LVM)
    assert [(d.line, d.severity, d.message) for d in diagnostics] == [
        (7, "note", "--encrypted: the deploy plan must carry `encryption.passphrase` (the agent refuses a plan "
                    "without one; the kickstart never holds it)")]
    assert lint_kickstart(tmp_path / "s.ks", strict=True) == diagnostics  # not a problem of the kickstart
    assert parse_kickstart(tmp_path / "s.ks", strict=True).deploy.logvols[-1].encrypted


@pytest.mark.parametrize(("header", "packages", "expected"), [
    (DEBIAN, "%packages\nlinux-image-amd64\n%end\n",
     [(7, "LUKS", "cryptsetup, cryptsetup-initramfs"), (9, "LVM", "lvm2"),
      (12, "LVM thin provisioning", "thin-provisioning-tools")]),
    (RPM, "%packages\nkernel\ncryptsetup\n%end\n",
     [(9, "LVM", "lvm2"), (12, "LVM thin provisioning", "device-mapper-persistent-data")]),
])
def test_a_stack_whose_tools_the_image_lacks_is_a_warning_at_its_first_line(tmp_path: Path, header: str,
                                                                             packages: str, expected: list) -> None:
    layout = LVM if header == DEBIAN else "\n\n\n" + LVM  # the same line numbers after the shorter RPM header
    got = [(line, message) for line, message in warnings(lint(tmp_path, layout, header, packages))
           if "%packages lacks" in message]
    assert got == [(line, f"the layout uses {stack} but %packages lacks {missing}: the image's initramfs could not "
                          f"bring the {stack} stack up at boot (add {missing})") for line, stack, missing in expected]


def test_raid_without_mdadm_names_the_groups_that_may_bring_it(tmp_path: Path) -> None:
    got = warnings(lint(tmp_path, "\n\n\n" + BOOT + TWO_RAID + "raid / --level=1 --device=md0 raid.01 raid.02\n",
                        RPM, "%packages\n@core\n@server-product\nkernel\n%end\n"))
    assert got == [(9, "the layout uses RAID but %packages lacks mdadm (unless @server-product brings it): the "
                       "image's initramfs could not bring the RAID stack up at boot (add mdadm)")]


def test_two_members_of_a_redundant_array_on_one_disk_is_a_warning(tmp_path: Path) -> None:
    layout = BOOT + "part raid.01 --size=1024 --ondisk=sda\npart raid.02 --size=1024 --ondrive=sda\n" \
                    "raid / --level=1 --device=md0 raid.01 raid.02\n"
    assert warnings(lint(tmp_path, layout)) == [
        (9, "raid /: raid.01 and raid.02 are both on sda: the array does not survive losing that disk")]


# --------------------------------------------------------------------------------------------------- the CLI

def test_ks_lint_prints_the_stacks_and_the_json_carries_them(tmp_path: Path) -> None:
    ks = write(tmp_path / "c.ks", DEBIAN + RAID + PRE.replace("/tmp/part-include", "/tmp/more") + DEBIAN_TOOLS)
    done = run_cli("ks", "lint", "--json", str(ks))
    assert done.returncode == 0, done.stderr
    storage = [line.split(": storage: ", 1)[1] for line in done.stderr.splitlines() if ": storage: " in line]
    assert storage == [
        "RAID1 boot of raid.01, raid.02, raid.03, 1 spare(s) -> /boot (ext4) (line 9)",
        "RAID1 md1 of raid.11, raid.12, LUKS -> pv.01 (line 12)",
        "LVM vg0 on pv.01 (LUKS): root -> / (line 13)",
        "%pre /usr/bin/bash (line 15): run on the machine before the disks are chosen",
        "%include /tmp/more (line 18): read on the machine at deploy time"]
    document = json.loads(done.stdout)["deploy"]
    assert [r["device"] for r in document["raids"]] == ["boot", "md1"]
    assert document["volgroups"][0]["pvs"] == ["pv.01"] and document["logvols"][0]["mountpoint"] == "/"
    assert document["deferred_includes"] == [{"path": "/tmp/more", "line": 18}]
    assert document["pre_scripts"][0]["interpreter"] == "/usr/bin/bash"


def test_reqpart_add_boot_gives_a_stacked_root_its_plain_boot(tmp_path):
    """`reqpart --add-boot` makes the plain /boot grub reads, so / may sit on btrfs, LVM or LUKS."""
    from tarball_builder.kickstart import parse_deploy_kickstart

    ks = tmp_path / "deploy.ks"
    ks.write_text("zerombr\nclearpart --all --initlabel\nreqpart --add-boot\npart btrfs.01 --size=3000 --grow\n"
                  "btrfs none --label=system btrfs.01\nbtrfs / --subvol --name=root system\n")
    spec = parse_deploy_kickstart(ks)
    assert spec.reqpart_add_boot and [b.name for b in spec.btrfs if b.subvol] == ["root"]
