"""Secure Boot in the agent: the firmware's SecureBoot variable and its report to the service, and the
distribution's signed shim + grub written to a real ESP (mtools on a FAT file or a disk image): Debian's
real signed binaries from its packages, and an RPM-style /boot/efi.
"""
from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from deployer.bootloader import SIGNED_GRUB_NEEDS, early_cfg, efi_boot_entry_argv, grub_cfg, install_uefi
from deployer.esp import Esp
from deployer.firmware import read_secure_boot
from deployer.grubimage import read_grub_image
from deployer.partition import plan_layout
from deployer.plan import local_plan
from deployer.shim import DEBIAN_GRUB, DEBIAN_MOK_MANAGER, DEBIAN_SHIM, find_shim_chain, planned_uefi_loader
from metalstream.contracts.efivars import (
    ABSENT,
    BIOS,
    SECURE_BOOT_VARIABLE,
    UNMOUNTED,
    SecureBootState,
    bytes_from_od,
    classify,
    secure_boot_from_variable,
)
from metalstream.contracts.events import read_event, read_result
from metalstream.contracts.plan import Kernel
from metalstream.errors import BadInput, OperationFailed

from conftest import require_root, require_tools, run_cli
from fixtures_agent import (
    CACHE,
    DEBIAN_PACKAGES,
    SYNTHETIC_KERNEL,
    build_debian_image,
    esp_files,
    gpt_partitions,
    make_synthetic_tree,
    mounted_partition,
)
from fixtures_images import make_image

GIB = 1 << 30
SIGNED_PACKAGES = ("shim-signed", "shim-helpers-amd64-signed", "grub-efi-amd64-signed")
ON, OFF = bytes([6, 0, 0, 0, 1]), bytes([6, 0, 0, 0, 0])  # attributes NV|BS|RT, then the data byte
KERNELS = [Kernel("6.1.0-21-amd64", "/boot/vmlinuz-6.1.0-21-amd64", "/boot/initrd.img-6.1.0-21-amd64")]


@pytest.fixture(scope="session")
def debian_signed_root() -> Path:
    """A root holding Debian's signed shim, MokManager and grub, extracted from the real packages:
    `apt-get download` through this machine's own apt sources, once, cached under CACHE."""
    require_root()
    require_tools("apt-get", "dpkg-deb")
    out = CACHE / "debian-signed-efi"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "debian-signed-efi.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session may be fetching them right now
        if not (out / DEBIAN_SHIM).is_file():
            work = Path(tempfile.mkdtemp(prefix="signed-efi-", dir=CACHE))
            try:
                done = subprocess.run(["apt-get", "download", *SIGNED_PACKAGES], cwd=work, capture_output=True,
                                      text=True)
                if done.returncode != 0:
                    pytest.fail(f"apt-get download {' '.join(SIGNED_PACKAGES)} failed (is `apt-get update` needed?): "
                                f"{done.stderr[-2000:]}")
                for deb in sorted(work.glob("*.deb")):
                    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "root")], check=True)
                shutil.rmtree(out, ignore_errors=True)
                (work / "root").rename(out)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return out


def _esp(tmp_path: Path) -> Esp:
    """A FAT32 filesystem in a plain file: mtools writes it as it writes an ESP partition."""
    require_tools("mkfs.vfat", "mcopy", "mdir", "mdel")
    image = tmp_path / "esp.vfat"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.vfat", "-F", "32", str(image)], check=True, capture_output=True)
    return Esp(str(image))


def _listing(esp: Esp) -> list[str]:
    """Every file on the ESP (directories left out)."""
    out = subprocess.run(["mdir", "-i", esp.device, "-/", "-b", "::/"], capture_output=True, text=True,
                         env={"MTOOLS_SKIP_CHECK": "1"}, check=True).stdout
    paths = (line.strip().removeprefix("::") for line in out.splitlines() if line.strip())
    return sorted(path for path in paths if not path.endswith("/"))  # mdir -b writes directories with a slash


def _uuids():
    numbers = iter(range(1, 100))
    return lambda: f"00000000-0000-4000-8000-{next(numbers):012d}"


# ---------------------------------------------------------------- the SecureBoot variable


def test_secure_boot_variable_is_four_attribute_bytes_and_one_data_byte():
    assert secure_boot_from_variable(ON, "v") is True and secure_boot_from_variable(OFF, "v") is False
    with pytest.raises(BadInput, match=r"^v: expected 4 attribute bytes and 1 data byte, got 4 bytes"):
        secure_boot_from_variable(ON[:4], "v")
    with pytest.raises(BadInput, match="data byte is 7"):
        secure_boot_from_variable(bytes([6, 0, 0, 0, 7]), "v")
    assert bytes_from_od("   6   0   0   0   1\n", "v") == ON
    with pytest.raises(BadInput, match="not od -tu1 output"):
        bytes_from_od("od: cannot open", "v")


def test_one_classification_and_its_words():
    assert classify(BIOS, "v") == SecureBootState(None, "booted with BIOS (no Secure Boot)")
    assert classify(UNMOUNTED, "v") == SecureBootState(None, "Secure Boot unknown (efivarfs is not mounted)")
    assert classify(ABSENT, "v") == SecureBootState(False, "Secure Boot off (the firmware has no SecureBoot variable)")
    assert classify(ON, "v") == SecureBootState(True, "Secure Boot on")
    assert classify(OFF, "v") == SecureBootState(False, "Secure Boot off")
    assert classify(b"\x06\0", "v") == SecureBootState(
        None, "Secure Boot unknown (v: expected 4 attribute bytes and 1 data byte, got 2 bytes)")


def test_reading_secure_boot_from_efivarfs(tmp_path):
    efivars = tmp_path / "efivars"
    assert read_secure_boot(efivars) == classify(BIOS, "")
    efivars.mkdir()
    assert read_secure_boot(efivars) == classify(UNMOUNTED, "")
    (efivars / "Boot0000-8be4df61-93ca-11d2-aa0d-00e098032b8c").write_bytes(b"\x07\0\0\0entry")
    assert read_secure_boot(efivars) == classify(ABSENT, "")  # UEFI without Secure Boot support
    (efivars / SECURE_BOOT_VARIABLE).write_bytes(ON)
    assert read_secure_boot(efivars) == SecureBootState(True, "Secure Boot on")
    (efivars / SECURE_BOOT_VARIABLE).write_bytes(OFF)
    assert read_secure_boot(efivars) == SecureBootState(False, "Secure Boot off")
    (efivars / SECURE_BOOT_VARIABLE).write_bytes(b"\x06\0")
    state = read_secure_boot(efivars)
    assert state.enabled is None and "got 2 bytes" in state.text


def test_an_unlistable_efivars_directory_is_unknown_not_a_crash():
    """The agent reads the state before its reporter exists: a directory it may search but not list (here:
    mode 0311, read by an unprivileged child process) gives `unknown`, never an exception."""
    efivars = Path(tempfile.mkdtemp(prefix="efivars-"))  # under /tmp, where the child can reach it
    try:
        efivars.chmod(0o311)
        reader, writer = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover (the child)
            try:
                os.close(reader)
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                state = read_secure_boot(efivars)
                os.write(writer, json.dumps([state.enabled, state.text]).encode())
            finally:
                os._exit(0)
        os.close(writer)
        with os.fdopen(reader) as pipe:
            answer = pipe.read()
        os.waitpid(child, 0)
    finally:
        efivars.chmod(0o700)
        efivars.rmdir()
    assert json.loads(answer) == [None, f"Secure Boot unknown ({efivars}: Permission denied)"]


def test_agent_reports_secure_boot_in_its_first_event_and_result(stream_test_image_manifest, fake_service,
                                                                 file_server, tmp_path):
    """The real agent (in process) against the fake service: fails at the disk phase (no disk matches), which
    is enough to post events and a result; what it posts is what the service's contract reader accepts."""
    from deployer.agent import AgentOptions, run_agent

    manifest, tarball = stream_test_image_manifest
    plan = local_plan(str(manifest), boot_mode="uefi").to_json()
    plan["image"]["url"] = file_server.serve("img.tar.zst", tarball)
    plan["disk_hints"]["serial"] = "NO-SUCH-DISK-SERIAL"
    plan["report"] = {"events_url": f"{fake_service.url}/api/v1/agent/events",
                      "result_url": f"{fake_service.url}/api/v1/agent/result"}
    fake_service.state.plan = plan
    efivars = tmp_path / "efivars"
    efivars.mkdir()
    (efivars / SECURE_BOOT_VARIABLE).write_bytes(ON)
    out = io.StringIO()
    code = run_agent(AgentOptions(server=fake_service.url, token=fake_service.state.token, reboot=False,
                                  plan_wait=5), out=out, efivars=efivars)
    assert code != 0, out.getvalue()
    events, (result,) = fake_service.state.events, fake_service.state.results
    assert [e.get("secure_boot") for e in events][:2] == [True, None] and "secure_boot" not in events[1]
    assert read_event(events[0])["secure_boot"] is True and read_event(events[1])["secure_boot"] is None
    assert result["secure_boot"] is True and read_result(result)["secure_boot"] is True
    assert "installer: Secure Boot on" in result["log"]


def test_a_bios_agent_sends_what_it_always_sent(fake_service, tmp_path):
    from deployer.agent import AgentOptions, run_agent

    fake_service.state.plan = {"format": "metalstream-plan/1", "nonsense": True}
    code = run_agent(AgentOptions(server=fake_service.url, token=fake_service.state.token, reboot=False,
                                  plan_wait=5), out=io.StringIO(), efivars=tmp_path / "no-efivars")
    (result,) = fake_service.state.results
    assert code == 2 and "secure_boot" not in result and "installer: booted with BIOS" in result["log"]


# ---------------------------------------------------------------- Debian's real signed shim and grub


def test_debians_signed_grub_has_everything_our_grub_cfg_uses_built_in(debian_signed_root):
    image = read_grub_image((debian_signed_root / DEBIAN_GRUB).read_bytes())
    assert image is not None and image.prefix == "/EFI/debian"
    layout = plan_layout(8 * GIB, "uefi", new_uuid=_uuids())
    cfg = grub_cfg(layout, KERNELS, title="debian", kernel_args="console=ttyS0,115200")
    insmods = {line.split()[1] for line in cfg.splitlines() if line.startswith("insmod ")}
    # grub.cfg's insmods, each /boot filesystem it may name, the serial console and the stub's commands
    needed = insmods | set(SIGNED_GRUB_NEEDS) | {"ext2", "xfs", "btrfs", "serial", "terminal", "gzio"}
    assert needed <= image.modules, needed - image.modules
    assert read_grub_image((debian_signed_root / DEBIAN_SHIM).read_bytes()) is None  # shim is no grub image
    assert read_grub_image(b"mimg" + bytes(40)) is None  # a stray magic is not a module area


def test_debian_chain_goes_where_grub_install_puts_it(debian_signed_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(debian_signed_root / "usr", root / "usr")
    layout = plan_layout(8 * GIB, "uefi", new_uuid=_uuids())
    esp = _esp(tmp_path)
    esp.put_file(debian_signed_root / "usr/lib/shim/fbx64.efi.signed", "/EFI/BOOT/fbx64.efi")  # an old install's
    work = tmp_path / "work"
    work.mkdir()
    installed = install_uefi(root, layout, esp, work)
    assert installed.description == "shim + signed grub (debian, EFI/debian)"  # nothing lacking in the signed grub
    assert installed.loader == "\\EFI\\debian\\shimx64.efi"
    assert _listing(esp) == ["/EFI/BOOT/BOOTX64.EFI", "/EFI/BOOT/grub.cfg", "/EFI/BOOT/grubx64.efi",
                             "/EFI/BOOT/mmx64.efi", "/EFI/debian/grub.cfg", "/EFI/debian/grubx64.efi",
                             "/EFI/debian/mmx64.efi", "/EFI/debian/shimx64.efi"]  # and no fbx64.efi
    shim, grub = (root / DEBIAN_SHIM).read_bytes(), (root / DEBIAN_GRUB).read_bytes()
    mok_manager = (root / DEBIAN_MOK_MANAGER).read_bytes()
    for directory, loader in (("/EFI/debian", "shimx64.efi"), ("/EFI/BOOT", "BOOTX64.EFI")):
        assert esp.read(f"{directory}/{loader}") == shim and esp.read(f"{directory}/grubx64.efi") == grub
        assert esp.read(f"{directory}/mmx64.efi") == mok_manager
        assert esp.read(f"{directory}/grub.cfg") == early_cfg(layout).encode()


def test_a_shipped_boot_csv_is_copied_and_a_missing_mok_manager_is_left_out(debian_signed_root, tmp_path):
    root = tmp_path / "root"
    for relative in (DEBIAN_SHIM, DEBIAN_GRUB):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(debian_signed_root / relative, root / relative)
    csv = "shimx64.efi,debian,,This is the boot entry for debian\n".encode("utf-16")
    (root / "usr/lib/shim/BOOTX64.CSV").write_bytes(csv)
    esp = _esp(tmp_path)
    install_uefi(root, plan_layout(8 * GIB, "uefi", new_uuid=_uuids()), esp, tmp_path)
    assert esp.read("/EFI/debian/BOOTX64.CSV") == csv
    assert not any(path.endswith("mmx64.efi") for path in _listing(esp))


def _root_with_real_shim_and_built_grub(debian_signed_root: Path, tmp_path: Path, modules: tuple[str, ...]) -> Path:
    """An image root with Debian's real signed shim and, as its signed grub, one built with just `modules`."""
    require_tools("grub-mkimage")
    root = tmp_path / "root"
    (root / "usr/lib/shim").mkdir(parents=True)
    shutil.copy(debian_signed_root / DEBIAN_SHIM, root / DEBIAN_SHIM)
    (root / DEBIAN_GRUB).parent.mkdir(parents=True)
    subprocess.run(["grub-mkimage", "-O", "x86_64-efi", "-p", "/EFI/debian", "-o", str(root / DEBIAN_GRUB),
                    *modules], check=True)
    return root


def test_xfs_boot_is_flagged_when_the_signed_grub_lacks_it(debian_signed_root, tmp_path):
    """The check reads the signed grub's own module list: a grub without xfs gets a clear warning."""
    from metalstream.contracts.deployspec import DeploySpec, PartSpec

    root = _root_with_real_shim_and_built_grub(debian_signed_root, tmp_path,
                                               ("part_gpt", "ext2", "search", "configfile", "normal", "linux", "test",
                                                "echo"))
    layout = plan_layout(8 * GIB, "uefi", DeploySpec(reqpart=True, partitions=[PartSpec("/", fstype="xfs", grow=True)]),
                         new_uuid=_uuids())
    installed = install_uefi(root, layout, _esp(tmp_path), tmp_path)
    assert installed.description == ("shim + signed grub (debian, EFI/debian); the signed grub lacks built-in xfs: "
                                     "with Secure Boot on it cannot load them from disk")


def test_a_secure_boot_plan_refuses_a_signed_grub_lacking_what_grub_cfg_needs(debian_signed_root, tmp_path):
    """With Secure Boot asked for, the same grub without xfs fails the bootloader phase, naming the module,
    before anything is written to the ESP (the installed system could not boot)."""
    from metalstream.contracts.deployspec import DeploySpec, PartSpec

    root = _root_with_real_shim_and_built_grub(debian_signed_root, tmp_path,
                                               ("part_gpt", "ext2", "search", "configfile", "normal", "linux", "echo"))
    layout = plan_layout(8 * GIB, "uefi", DeploySpec(reqpart=True, partitions=[PartSpec("/", fstype="xfs", grow=True)]),
                         new_uuid=_uuids())
    esp = _esp(tmp_path)
    with pytest.raises(OperationFailed, match=r"^the plan asks for Secure Boot but the image's signed grub "
                                              r"\(shim \+ signed grub \(debian, EFI/debian\)\) lacks built-in test, "
                                              r"xfs, which grub.cfg needs"):
        install_uefi(root, layout, esp, tmp_path, require_signed=True)
    assert not esp.exists("/EFI")  # nothing was written


# ---------------------------------------------------------------- the RPM family's /boot/efi


def _rpm_boot_efi(tree: Path, vendor: str = "fedora") -> dict[str, bytes]:
    """What shim-x64 and grub2-efi-x64 put under /boot/efi (synthetic contents, real layout)."""
    files = {f"EFI/{vendor}/shimx64.efi": b"MZ rpm shim", f"EFI/{vendor}/grubx64.efi": b"MZ rpm signed grub",
             f"EFI/{vendor}/mmx64.efi": b"MZ rpm MokManager",
             f"EFI/{vendor}/BOOTX64.CSV": "shimx64.efi,Fedora,,This is the boot entry for Fedora\n".encode("utf-16"),
             f"EFI/{vendor}/grub.cfg": b"# the stub the package wrote for the build host's /boot\n",
             "EFI/BOOT/BOOTX64.EFI": b"MZ rpm shim", "EFI/BOOT/fbx64.efi": b"MZ rpm fallback"}
    for relative, data in files.items():
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_bytes(data)
    return files


def test_rpm_chain_from_the_images_boot_efi(tmp_path):
    image_esp = tmp_path / "boot-efi"
    files = _rpm_boot_efi(image_esp, "rocky")
    (image_esp / "EFI/Linux").mkdir()  # another directory without a shim is not the vendor's
    esp = _esp(tmp_path)
    esp.put_tree(image_esp)  # what the configure phase did with the image's /boot/efi
    layout = plan_layout(8 * GIB, "uefi", new_uuid=_uuids())
    root = tmp_path / "root"
    root.mkdir()
    installed = install_uefi(root, layout, esp, tmp_path, image_esp=image_esp)
    assert (installed.description, installed.loader) == ("shim + signed grub (rpm, EFI/rocky)",
                                                         "\\EFI\\rocky\\shimx64.efi")
    assert _listing(esp) == ["/EFI/BOOT/BOOTX64.EFI", "/EFI/BOOT/grub.cfg", "/EFI/BOOT/grubx64.efi",
                             "/EFI/BOOT/mmx64.efi", "/EFI/rocky/BOOTX64.CSV", "/EFI/rocky/grub.cfg",
                             "/EFI/rocky/grubx64.efi", "/EFI/rocky/mmx64.efi",
                             "/EFI/rocky/shimx64.efi"]  # no fbx64.efi under EFI/BOOT
    assert esp.read("/EFI/BOOT/BOOTX64.EFI") == files["EFI/rocky/shimx64.efi"]
    assert esp.read("/EFI/BOOT/grubx64.efi") == files["EFI/rocky/grubx64.efi"]
    assert esp.read("/EFI/rocky/BOOTX64.CSV") == files["EFI/rocky/BOOTX64.CSV"]
    assert esp.read("/EFI/rocky/grub.cfg") == early_cfg(layout).encode()  # RHEL's grub reads its own directory


def test_no_chain_without_both_halves_and_a_secure_boot_plan_refuses_unsigned_grub(tmp_path):
    image_esp = tmp_path / "boot-efi"
    (image_esp / "EFI/fedora").mkdir(parents=True)
    (image_esp / "EFI/fedora/shimx64.efi").write_bytes(b"MZ")  # a shim without its grub
    root = tmp_path / "root"
    (root / "usr/lib/shim").mkdir(parents=True)
    (root / "usr/lib/shim/shimx64.efi.signed").write_bytes(b"MZ")
    assert find_shim_chain(root, image_esp) is None
    with pytest.raises(OperationFailed, match="the plan asks for Secure Boot but the image has no signed shim"):
        install_uefi(root, plan_layout(8 * GIB, "uefi"), Esp("/nonexistent"), tmp_path, image_esp=image_esp,
                     require_signed=True)


def test_nvram_entry_and_dry_run_wording():
    assert efi_boot_entry_argv("/dev/sda", 1, "debian-sb", "\\EFI\\debian\\shimx64.efi") == [
        "efibootmgr", "--quiet", "--create", "--disk", "/dev/sda", "--part", "1", "--label", "debian-sb",
        "--loader", "\\EFI\\debian\\shimx64.efi"]
    assert planned_uefi_loader({"shim": True, "uefi_grub": True, "bios_grub": False}).startswith("shim + signed grub")
    assert planned_uefi_loader({"shim": False, "uefi_grub": True, "bios_grub": True}).startswith("grub-mkimage")
    assert planned_uefi_loader({"shim": False, "uefi_grub": False, "bios_grub": True}).startswith("none")
    assert planned_uefi_loader(None).startswith("decided from the image")


# ---------------------------------------------------------------- whole installs onto disk image files


def _image_with(tmp_path: Path, name: str, extra) -> Path:
    root = tmp_path / f"{name}-root"
    root.mkdir()
    make_synthetic_tree(root)
    extra(root)
    kernels = [{"version": SYNTHETIC_KERNEL, "kernel": f"/boot/vmlinuz-{SYNTHETIC_KERNEL}",
                "initramfs": f"/boot/initrd.img-{SYNTHETIC_KERNEL}"}]
    return make_image(root, tmp_path / f"{name}-out", name, family="synthetic", kernels=kernels)


@pytest.mark.root
def test_install_debian_signed_chain_onto_a_disk_image(debian_signed_root, sparse_disk, agent_workdir, tmp_path):
    require_tools("sfdisk", "losetup", "mkfs.ext4", "mkfs.vfat", "mcopy", "mdir", "zstd", "tar")
    manifest = _image_with(tmp_path, "debian-sb", lambda root: shutil.copytree(debian_signed_root / "usr",
                                                                               root / "usr", dirs_exist_ok=True))
    dry = run_cli("install", str(manifest), "--to", str(tmp_path / "never.img"), "--size", "4G", "--boot", "uefi",
                  "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "UEFI loader chain: shim + signed grub from the image" in dry.stdout
    disk = sparse_disk(4 * GIB)
    done = run_cli("install", str(manifest), "--to", str(disk), "--boot", "uefi")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installed: shim + signed grub (debian, EFI/debian)" in done.stdout
    assert "efibootmgr" not in done.stdout  # a disk image file never gets an NVRAM entry
    esp_part = gpt_partitions(disk)[0]
    files = esp_files(disk, esp_part)
    assert {"/EFI/debian/shimx64.efi", "/EFI/debian/grubx64.efi", "/EFI/debian/mmx64.efi", "/EFI/debian/grub.cfg",
            "/EFI/BOOT/BOOTX64.EFI", "/EFI/BOOT/grubx64.efi", "/EFI/BOOT/mmx64.efi",
            "/EFI/debian/blob.bin"} <= set(files)  # blob.bin: the image's own /boot/efi content
    assert not any(f.endswith("fbx64.efi") for f in files)


@pytest.mark.root
def test_install_rpm_layout_onto_a_disk_image(sparse_disk, agent_workdir, tmp_path):
    require_tools("sfdisk", "losetup", "mkfs.ext4", "mkfs.vfat", "mcopy", "mdir", "zstd", "tar")
    manifest = _image_with(tmp_path, "rpm-sb", lambda root: _rpm_boot_efi(root / "boot/efi", "almalinux"))
    assert json.loads(manifest.read_text())["bootloader"]["shim"] is True
    disk = sparse_disk(4 * GIB)
    done = run_cli("install", str(manifest), "--to", str(disk), "--boot", "both")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installed: grub-bios-setup i386-pc, shim + signed grub (rpm, EFI/almalinux)" in done.stdout
    parts = gpt_partitions(disk)
    files = esp_files(disk, parts[1])
    assert {"/EFI/almalinux/shimx64.efi", "/EFI/almalinux/grubx64.efi", "/EFI/almalinux/mmx64.efi",
            "/EFI/almalinux/BOOTX64.CSV", "/EFI/almalinux/grub.cfg", "/EFI/BOOT/BOOTX64.EFI", "/EFI/BOOT/grubx64.efi",
            "/EFI/BOOT/mmx64.efi"} <= set(files)
    assert "/EFI/BOOT/fbx64.efi" not in files
    with mounted_partition(disk, parts[2], agent_workdir / "rpm-sb-root") as root:
        assert list((root / "boot/efi").iterdir()) == []  # the mount point, left empty


# ---------------------------------------------------------------- booting it with Secure Boot enforced

OVMF_SECURE_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
OVMF_MS_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")  # Microsoft's keys enrolled, Secure Boot on


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.e2e
def test_ovmf_with_secure_boot_enforced_boots_the_installed_debian(sparse_disk, agent_workdir):
    """A real Debian image with its signed packages, installed by the agent's code onto a disk image (no NVRAM
    entry: the firmware takes the removable path, shim → EFI/BOOT/grubx64.efi → EFI/debian/grub.cfg), boots to
    a login prompt under OVMF's Secure Boot build; the kernel says Secure Boot is on."""
    require_tools("sfdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "zstd", "tar", "qemu-system-x86_64")
    assert OVMF_SECURE_CODE.exists() and OVMF_MS_VARS.exists(), "ovmf package missing: run .ci/setup"
    manifest = build_debian_image(packages=(*DEBIAN_PACKAGES, *SIGNED_PACKAGES))
    disk = sparse_disk(4 * GIB)
    done = run_cli("install", str(manifest), "--to", str(disk), "--boot", "uefi", "--hostname", "sbnode",
                   "--kernel-args", "console=ttyS0,115200")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installed: shim + signed grub (debian, EFI/debian)" in done.stdout
    variables = agent_workdir / "OVMF_VARS_4M.ms.fd"
    shutil.copy(OVMF_MS_VARS, variables)
    log = agent_workdir / "secure-boot-serial.log"
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35,smm=on", "-m", "1024", "-smp", "2",
         "-global", "driver=cfi.pflash01,property=secure,value=on",
         "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_SECURE_CODE}",
         "-drive", f"if=pflash,format=raw,unit=1,file={variables}", "-drive", f"file={disk},format=raw,if=virtio",
         "-net", "none", "-serial", f"file:{log}", "-display", "none", "-monitor", "none"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 600  # TCG with SMM: about 80 s here when idle
        text = ""
        while time.monotonic() < deadline and qemu.poll() is None and "login:" not in text:
            time.sleep(2)
            text = log.read_text(errors="replace") if log.exists() else ""
    finally:
        qemu.kill()
        qemu.wait()
        qemu.stderr.close()
        variables.unlink(missing_ok=True)
    assert "sbnode login:" in text, text[-3000:]
    assert "secureboot: Secure boot enabled" in text
    grub_output = text.split("EFI stub:")[0]  # what the firmware, shim and grub printed before the kernel ran
    assert "error:" not in grub_output  # no insmod (or anything else) the signed grub refused
