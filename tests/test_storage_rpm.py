"""Issue 13, acceptance 9: the storage layouts on the RPM family.

A small RPM image (kernel, dracut and the storage tools as stand-ins from the repository tests/fixtures_rpm.py
makes) is built once by the real `metalstream build`. For each layout (LVM autopart, LUKS on LVM, RAID1 for /boot,
/ and the ESP over two disks, btrfs with root and home subvolumes) the kickstart is parsed by the real front end
and planned with the planner (sizes only: nothing touches a disk), the plan is the Debian family's plan for the same
layout, and the configure stage runs on the unpacked image as deployer/install.py runs it: fstab, crypttab,
/etc/mdadm.conf (the RPM path) and grub.cfg with dracut's kernel arguments. A real Fedora kernel cannot be booted
here: booting these layouts is shown with Debian images (tests/test_e2e_storage.py).
"""
from __future__ import annotations

import itertools
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from deployer.bootloader import grub_cfg
from deployer.configure import configure_target
from deployer.storage.bootargs import initramfs_kind, storage_kernel_args
from deployer.storage.model import Array, BtrfsVolume, Crypt, LogicalVolume, StoragePlan, TargetDisk, VolumeGroup
from deployer.storage.planner import plan_storage
from metalstream import proc
from metalstream.contracts.plan import ImageRef, Plan
from tarball_builder.backends.rpm import DRACUT_STORAGE_CONF
from tarball_builder.kickstart import lint_kickstart, parse_deploy_kickstart

from conftest import require_root, require_tools, run_cli
from fixtures_rpm import rpm_kickstart

pytestmark = pytest.mark.root
GIB = 1 << 30
PASSPHRASE = "rpm family passphrase 9 (never in the image)"
IMAGE_PACKAGES = ["kernel", "dracut", "mdadm", "lvm2", "cryptsetup", "btrfs-progs", "NetworkManager"]
HEADERS = {"rpm": "%addon org_metalstream_image\nfamily=rpm\nrelease=40\n%end\n",
           "debian": "%addon org_metalstream_image\nfamily=debian\nrelease=bookworm\n%end\n"}

LAYOUTS = {
    "lvm-autopart": ("uefi", ["vda"], "autopart --type=lvm\n"),
    "luks-on-lvm": ("uefi", ["vda"], """\
reqpart
part /boot --size=1024 --fstype=ext4
part pv.01 --size=1 --grow --encrypted --luks-version=luks2
volgroup vg0 pv.01
logvol / --vgname=vg0 --name=root --size=3000 --grow --fstype=xfs
logvol swap --vgname=vg0 --name=swap --size=512
"""),
    "raid1-two-disks": ("both", ["sda", "sdb"], """\
part raid.01 --size=600 --ondisk=sda
part raid.02 --size=600 --ondisk=sdb
part raid.11 --size=1024 --ondisk=sda
part raid.12 --size=1024 --ondisk=sdb
part raid.21 --size=1 --grow --ondisk=sda
part raid.22 --size=1 --grow --ondisk=sdb
raid /boot/efi --level=1 --device=esp --fstype=efi raid.01 raid.02
raid /boot --level=1 --device=boot --fstype=ext4 raid.11 raid.12
raid / --level=1 --device=root --fstype=xfs raid.21 raid.22
"""),
    "btrfs-subvolumes": ("uefi", ["vda"], """\
reqpart
part /boot --size=1024 --fstype=ext4
part swap --size=512
part btrfs.01 --size=1 --grow
btrfs none --label=fedora btrfs.01
btrfs / --subvol --name=root fedora
btrfs /home --subvol --name=home fedora
"""),
}


@pytest.fixture(autouse=True)
def _root_and_tools():
    require_root()
    require_tools("dnf", "rpm", "unshare", "zstd", "tar")


@dataclass(frozen=True)
class RpmImage:
    kickstart: Path  # the image's kickstart (a template)
    repo_url: str
    manifest: dict
    tarball: Path


@pytest.fixture(scope="module")
def storage_image(rpm_repo, tmp_path_factory) -> RpmImage:
    """The RPM image with a kernel, dracut and the storage tools, built once by `metalstream build`."""
    base = tmp_path_factory.mktemp("rpm-storage-image")
    ks = rpm_kickstart(base / "msstorage.ks", add=IMAGE_PACKAGES, replace={"bootloader --location=none\n": ""})
    result = run_cli("build", str(ks), "-o", str(base / "out"), "--var", f"repo_url={rpm_repo.url}",
                     "--cache-dir", str(base / "cache"))
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    manifest = json.loads((base / "out/msstorage.json").read_text())
    return RpmImage(ks, rpm_repo.url, manifest, base / "out" / manifest["tarball"])


def unpack(image: RpmImage, dest: Path) -> Path:
    dest.mkdir()
    proc.run(["tar", "--zstd", "--numeric-owner", "-xpf", image.tarball, "-C", dest], timeout=120)
    return dest


def counter_uuids():
    numbers = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(numbers):012d}"


def layout_plan(tmp_path: Path, name: str, family: str, *, counted: bool = False) -> StoragePlan:
    """The layout's kickstart (under the family's add-on) through the front end and the planner; `counted`
    UUIDs let two families' plans be compared whole."""
    mode, disk_names, text = LAYOUTS[name]
    ks = tmp_path / f"{name}-{family}.ks"
    ks.write_text(HEADERS[family] + "clearpart --all --initlabel\n" + text)
    spec = parse_deploy_kickstart(ks)
    disks = [TargetDisk("" if len(disk_names) == 1 else n, f"/dev/{n}", 20 * GIB, names=(n, f"/dev/{n}"))
             for n in disk_names]
    return plan_storage(spec, mode, disks, image_bytes=64 << 20, memory_bytes=2 * GIB,
                        **({"new_uuid": counter_uuids()} if counted else {}))


def stack_shape(plan: StoragePlan) -> list:
    return [[(p.role, p.member, p.fstype, p.mountpoint) for p in d.layout.partitions] for d in plan.disks] + [
        [(type(d).__name__, d.ref) for d in plan.devices],
        [(f.device, f.fstype, f.mountpoint, f.subvol) for f in plan.filesystems]]


@pytest.fixture(scope="module")
def configured(storage_image, tmp_path_factory):
    """layout -> (plan, unpacked and configured root, configure's answer, grub.cfg, kernel arguments)."""
    done = {}
    for name in LAYOUTS:
        base = tmp_path_factory.mktemp(name)
        storage = layout_plan(base, name, "rpm")
        root = unpack(storage_image, base / "root")
        image = ImageRef(storage_image.manifest["name"], str(storage_image.tarball),
                         storage_image.manifest["sha256"], storage_image.manifest["size"],
                         manifest=storage_image.manifest)
        plan = Plan(image=image, boot_mode=LAYOUTS[name][0], hostname="rpm9.example",
                    encryption_passphrase=PASSPHRASE)
        answer = configure_target(root, plan, storage)
        args = storage_kernel_args(storage, initramfs_kind(root))
        cfg = grub_cfg(storage, image.kernels, title=image.name, kernel_args=" ".join(args))
        done[name] = (storage, root, answer, cfg, args)
    return done


def test_image_has_dracut_and_its_storage_modules_config(storage_image, tmp_path):
    packages = {p["name"] for p in storage_image.manifest["packages"]}
    assert {"msdracut", "msmdadm", "mslvm2", "mscryptsetup", "msbtrfs-progs", "mskernel-core",
            "msnetworkmanager"} <= packages
    (kernel,) = storage_image.manifest["kernels"]
    root = unpack(storage_image, tmp_path / "root")
    conf = (root / DRACUT_STORAGE_CONF.lstrip("/")).read_text()
    assert 'add_dracutmodules+=" mdraid lvm crypt btrfs "\n' in conf.splitlines(keepends=True)
    # the stand-in dracut records the configuration it ran with: the builder wrote it before dracut ran
    initramfs = (root / kernel["initramfs"].lstrip("/")).read_text()
    assert f"== {DRACUT_STORAGE_CONF}\n" in initramfs and "mdraid lvm crypt btrfs" in initramfs
    assert initramfs_kind(root) == "dracut"
    assert not (root / "etc/mdadm").exists()


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_lints_clean_in_the_rpm_image_kickstart(storage_image, tmp_path, name):
    """The image kickstart carrying the layout: no warning (the stacks' packages are in %packages)."""
    ks = tmp_path / "with-layout.ks.j2"
    ks.write_text(storage_image.kickstart.read_text() + "clearpart --all --initlabel\n" + LAYOUTS[name][2])
    diagnostics = lint_kickstart(ks, template=True, variables={"repo_url": storage_image.repo_url})
    assert [(d.line, d.message) for d in diagnostics if d.severity != "note"] == []


@pytest.mark.parametrize("name", LAYOUTS)
def test_rpm_plan_is_the_debian_plan(tmp_path, name):
    rpm, debian = (layout_plan(tmp_path, name, family, counted=True) for family in ("rpm", "debian"))
    assert stack_shape(rpm) == stack_shape(debian)
    assert rpm == debian


def fstab_entries(root: Path) -> list[list[str]]:
    return [line.split() for line in (root / "etc/fstab").read_text().splitlines() if not line.startswith("#")]


def test_every_planned_filesystem_is_in_fstab_by_uuid(configured):
    for name, (storage, root, answer, _cfg, _args) in configured.items():
        entries = fstab_entries(root)
        assert answer["fstab"] is True
        assert len(entries) == len(storage.filesystems), name
        for fs, entry in zip(storage.filesystems, entries):
            assert entry[:3] == [f"UUID={fs.uuid}", fs.mountpoint or "none", fs.fstype], (name, entry)
            if fs.fstype == "btrfs":
                assert entry[3].split(",")[0] == f"subvol={fs.subvol}", (name, entry)
        assert [e[:3] for e in entries if e[2] == "swap"] == [
            [f"UUID={f.uuid}", "none", "swap"] for f in storage.filesystems if f.fstype == "swap"]


def test_lvm_autopart(configured):
    storage, root, answer, cfg, args = configured["lvm-autopart"]
    (group,) = storage.volume_groups
    assert {lv.name for lv in storage.devices if isinstance(lv, LogicalVolume)} == {"root", "swap", "home"}
    assert {(f.mountpoint, f.device) for f in storage.filesystems if f.device.startswith("lv:")} == {
        ("/", f"lv:{group.name}/root"), ("/home", f"lv:{group.name}/home"), (None, f"lv:{group.name}/swap")}
    assert sorted(args) == [f"rd.lvm.lv={group.name}/root", f"rd.lvm.lv={group.name}/swap"]
    assert "crypttab" not in answer and "mdadm_conf" not in answer
    assert not (root / "etc/crypttab").exists() and not (root / "etc/mdadm.conf").exists()
    assert f"root=UUID={storage.root.uuid} ro rd.lvm.lv={group.name}/root rd.lvm.lv={group.name}/swap" in cfg


def test_luks_on_lvm(configured):
    storage, root, answer, cfg, args = configured["luks-on-lvm"]
    (crypt,) = storage.crypts
    assert storage.stack_under(storage.root.device) == ["lv:vg0/root", crypt.ref, "part::3"]
    crypttab = root / "etc/crypttab"
    assert crypttab.read_text().splitlines()[1:] == [f"luks-{crypt.uuid} UUID={crypt.uuid} none luks,discard"]
    assert crypttab.stat().st_mode & 0o777 == 0o600 and answer["crypttab"] == 1
    assert sorted(args) == [f"rd.luks.uuid=luks-{crypt.uuid}", "rd.lvm.lv=vg0/root", "rd.lvm.lv=vg0/swap"]
    assert not [a for a in args if a.startswith("cryptopts=")]  # initramfs-tools' form, not dracut's
    assert f"rd.luks.uuid=luks-{crypt.uuid}" in cfg.split()


def test_no_passphrase_anywhere_in_the_configured_trees(configured):
    for name, (_storage, root, *_rest) in configured.items():
        found = subprocess.run(["grep", "-rlF", "--", PASSPHRASE, str(root)], capture_output=True, text=True)
        assert found.returncode == 1 and found.stdout == "", (name, found.stdout, found.stderr)


def test_raid1_two_disks(configured):
    storage, root, answer, cfg, args = configured["raid1-two-disks"]
    arrays = {a.name: a for a in storage.devices if isinstance(a, Array)}
    assert sorted(arrays) == ["boot", "esp", "root"] and arrays["esp"].metadata == "1.0"
    assert all(a.level == "raid1" and len(a.members) == 2 for a in arrays.values())
    assert [[p.role for p in d.layout.partitions] for d in storage.disks] == [["biosboot", *["member"] * 3]] * 2
    assert answer["mdadm_conf"] == "/etc/mdadm.conf" and not (root / "etc/mdadm").exists()
    lines = [line for line in (root / "etc/mdadm.conf").read_text().splitlines() if line.startswith("ARRAY")]
    assert sorted(lines) == sorted(f"ARRAY /dev/md/{a.name} metadata={a.metadata} UUID={a.uuid} name=any:{a.name}"
                                   for a in arrays.values())
    assert args == [f"rd.md.uuid={arrays['root'].uuid}"]
    assert {(f.mountpoint, f.device) for f in storage.filesystems} == {
        ("/boot/efi", "md:esp"), ("/boot", "md:boot"), ("/", "md:root")}
    assert "insmod mdraid1x" in cfg.splitlines()
    boot = next(f for f in storage.filesystems if f.mountpoint == "/boot")
    assert f"search --no-floppy --fs-uuid --set=root {boot.uuid}" in cfg.splitlines()


def test_btrfs_subvolumes(configured):
    storage, root, answer, cfg, args = configured["btrfs-subvolumes"]
    (volume,) = [d for d in storage.devices if isinstance(d, BtrfsVolume)]
    assert (volume.label, volume.subvolumes) == ("fedora", ("root", "home"))
    btrfs = {e[1]: e for e in fstab_entries(root) if e[2] == "btrfs"}
    assert btrfs["/"][:4] == [f"UUID={volume.uuid}", "/", "btrfs", "subvol=root,defaults"]
    assert btrfs["/home"][:4] == [f"UUID={volume.uuid}", "/home", "btrfs", "subvol=home,defaults"]
    assert args == ["rootflags=subvol=root"]
    assert f"root=UUID={volume.uuid} ro rootflags=subvol=root" in cfg


def test_grub_cfg_boots_the_image_kernel_with_dracut_arguments(configured, storage_image):
    (kernel,) = storage_image.manifest["kernels"]
    version = kernel["version"]
    for name, (storage, root, _answer, cfg, args) in configured.items():
        prefix = "" if any(f.mountpoint == "/boot" for f in storage.filesystems) else "/boot"
        linux = [line.strip() for line in cfg.splitlines() if line.strip().startswith("linux ")]
        assert linux == [f"linux {prefix}/vmlinuz-{version} root=UUID={storage.root.uuid} ro {' '.join(args)}"], name
        assert f"\tinitrd {prefix}/initramfs-{version}.img" in cfg.splitlines(), name
        assert not [a for a in args if a.startswith("cryptopts=")], name
        assert all(a.startswith(("rd.luks.uuid=", "rd.md.uuid=", "rd.lvm.lv=", "rootflags=")) for a in args), name


def test_deployment_record_names_the_root(configured, storage_image):
    for name, (storage, root, answer, *_rest) in configured.items():
        record = json.loads((root / "etc/metalstream/deployment.json").read_text())
        assert (record["image"], record["root_uuid"]) == ("msstorage", storage.root.uuid), name
        assert (root / "etc/hostname").read_text() == "rpm9.example\n"
        assert answer["network"] == "networkmanager"
        assert list((root / "etc/NetworkManager/system-connections").iterdir())


def test_stacks_are_as_planned(configured):
    kinds = {name: {type(d).__name__ for d in storage.devices} for name, (storage, *_rest) in configured.items()}
    assert kinds == {"lvm-autopart": {VolumeGroup.__name__, LogicalVolume.__name__},
                     "luks-on-lvm": {Crypt.__name__, VolumeGroup.__name__, LogicalVolume.__name__},
                     "raid1-two-disks": {Array.__name__},
                     "btrfs-subvolumes": {BtrfsVolume.__name__}}
