"""kexec into the installed kernel (deployer.kexec): the decision from the running kernel's state, the entry the
installed grub.cfg boots, the plan field, and the agent's order: install, load, unmount, report, result, kexec.

The agent-level tests install a real (synthetic) image onto a sparse disk; only the calls into the running kernel
(is kexec allowed, load, exec) are replaced: that is the hardware boundary, and this host must not kexec.
"""
from __future__ import annotations

import io
import subprocess
import uuid
from pathlib import Path

import pytest

from deployer import kexec
from metalstream.contracts.plan import ImageRef, Plan
from metalstream.errors import BadInput, CommandError

from conftest import public_key_line, require_root, require_tools

GiB = 1 << 30
UUID = "0b1f4c7e-5a8d-4d3e-9a51-0123456789ab"
METALSTREAM_GRUB_CFG = f"""# written by metalstream at deploy time; no grub-mkconfig ran on this system
set timeout=3
set default=0
insmod part_gpt
insmod ext2
search --no-floppy --fs-uuid --set=root {UUID}

menuentry 'debian-minimal (6.1.0-28-amd64)' --id metalstream-0 {{
\tlinux /boot/vmlinuz-6.1.0-28-amd64 root=UUID={UUID} ro console=ttyS0,115200 'quoted arg'
\tinitrd /boot/initrd.img-6.1.0-28-amd64
}}

menuentry 'debian-minimal (6.1.0-9-amd64)' --id metalstream-1 {{
\tlinux /boot/vmlinuz-6.1.0-9-amd64 root=UUID={UUID} ro
\tinitrd /boot/initrd.img-6.1.0-9-amd64
}}
"""


# ---- what the running kernel allows ----

@pytest.mark.parametrize("lockdown, load_disabled, tool, expected", [
    ("[none] integrity confidentiality\n", "0\n", "/usr/sbin/kexec", None),
    (None, None, "/usr/sbin/kexec", None),  # no securityfs lockdown file, no sysctl: nothing forbids it
    ("none [integrity] confidentiality\n", "0\n", "/usr/sbin/kexec", "locked down (integrity"),
    ("none integrity [confidentiality]\n", "0\n", "/usr/sbin/kexec", "locked down (confidentiality"),
    ("[none] integrity confidentiality\n", "1\n", "/usr/sbin/kexec", "kexec_load_disabled = 1"),
    ("[none] integrity confidentiality\n", "0\n", None, "kexec-tools is not in this installer"),
])
def test_blocker_names_why_kexec_cannot_work(lockdown, load_disabled, tool, expected):
    reason = kexec.blocker(lockdown=lockdown, load_disabled=load_disabled, kexec_path=tool)
    if expected is None:
        assert reason is None
    else:
        assert expected in reason


def test_lockdown_mode_reads_the_bracketed_word():
    assert kexec.lockdown_mode("none [integrity] confidentiality") == "integrity"
    assert kexec.lockdown_mode("[none] integrity confidentiality") == "none"
    assert kexec.lockdown_mode("") is None


def test_system_blocker_reads_this_kernel():
    """On this host: whatever it says, it is one of the known reasons or None (it reads real files)."""
    reason = kexec.system_blocker()
    assert reason is None or any(word in reason for word in ("locked down", "kexec_load_disabled", "kexec-tools"))


# ---- which kernel ----

def test_default_entry_of_the_grub_cfg_metalstream_writes():
    entry = kexec.default_entry(METALSTREAM_GRUB_CFG)
    assert entry == kexec.BootEntry("/boot/vmlinuz-6.1.0-28-amd64", "/boot/initrd.img-6.1.0-28-amd64",
                                    f"root=UUID={UUID} ro console=ttyS0,115200 quoted arg", "grub.cfg entry 0")


def test_default_entry_follows_set_default_by_number_and_by_id():
    by_number = METALSTREAM_GRUB_CFG.replace("set default=0", "set default=1")
    assert kexec.default_entry(by_number).kernel == "/boot/vmlinuz-6.1.0-9-amd64"
    by_id = METALSTREAM_GRUB_CFG.replace("set default=0", 'set default="metalstream-1"')
    entry = kexec.default_entry(by_id)
    assert entry.kernel == "/boot/vmlinuz-6.1.0-9-amd64" and entry.source == "grub.cfg entry 1"


def test_default_entry_is_none_without_a_bootable_entry():
    assert kexec.default_entry("set timeout=3\n") is None
    assert kexec.default_entry(METALSTREAM_GRUB_CFG.replace("set default=0", "set default=7")) is None


def test_newest_kernel_sorts_versions_numerically_and_pairs_the_initrd():
    names = ["config-6.1.0-9-amd64", "vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64", "vmlinuz-6.1.0-28-amd64",
             "initrd.img-6.1.0-28-amd64", "grub", "efi"]
    assert kexec.newest_kernel(names) == ("vmlinuz-6.1.0-28-amd64", "initrd.img-6.1.0-28-amd64")
    rpm = ["vmlinuz-5.14.0-427.el9.x86_64", "initramfs-5.14.0-427.el9.x86_64.img",
           "vmlinuz-0-rescue-0123", "initramfs-0-rescue-0123.img"]
    assert kexec.newest_kernel(rpm) == ("vmlinuz-5.14.0-427.el9.x86_64", "initramfs-5.14.0-427.el9.x86_64.img")
    assert kexec.newest_kernel(["vmlinuz-6.1"]) == ("vmlinuz-6.1", None)
    assert kexec.newest_kernel(["grub", "efi"]) is None


def test_choose_entry_prefers_grub_cfg_then_the_newest_kernel_with_root_by_uuid():
    names = ["vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64", "vmlinuz-6.1.0-28-amd64", "initrd.img-6.1.0-28-amd64"]
    assert kexec.choose_entry(METALSTREAM_GRUB_CFG, names, "/boot", root_uuid=UUID,
                              kernel_args="ignored").source == "grub.cfg entry 0"
    fallback = kexec.choose_entry(None, names, "", root_uuid=UUID, kernel_args="console=ttyS0,115200 quiet")
    assert fallback == kexec.BootEntry("/vmlinuz-6.1.0-28-amd64", "/initrd.img-6.1.0-28-amd64",
                                       f"root=UUID={UUID} ro console=ttyS0,115200 quiet", "newest kernel in /boot")
    assert kexec.choose_entry("set timeout=1\n", [], "/boot", root_uuid=UUID, kernel_args="") is None
    assert kexec.choose_entry(None, names, "/boot", root_uuid=None, kernel_args="") is None


def test_load_argv_uses_the_file_syscall_first_and_passes_the_command_line_as_one_word():
    argv = kexec.load_argv(Path("/m/boot/vmlinuz-6"), Path("/m/boot/initrd.img-6"), "root=UUID=x ro a=b c",
                           file_syscall=True)
    assert argv == ["kexec", "--load", "--kexec-file-syscall", "/m/boot/vmlinuz-6", "--initrd=/m/boot/initrd.img-6",
                    "--command-line=root=UUID=x ro a=b c"]
    assert "--kexec-syscall" in kexec.load_argv(Path("/k"), None, "", file_syscall=False)
    assert not any(a.startswith("--initrd") for a in kexec.load_argv(Path("/k"), None, "", file_syscall=False))


def test_load_refuses_an_entry_whose_files_are_missing(tmp_path):
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot/vmlinuz-1").write_bytes(b"k")
    with pytest.raises(FileNotFoundError, match="initrd.img-1"):
        kexec.load(tmp_path, kexec.BootEntry("/boot/vmlinuz-1", "/boot/initrd.img-1", "ro", "test"))


# ---- the plan field ----

def _plan(**fields) -> Plan:
    return Plan(image=ImageRef("x", "http://h/x.tar.zst", "0" * 64, 1), **fields)


def test_plan_reboot_is_absent_for_firmware_and_read_back_for_kexec():
    firmware = _plan().to_json()
    assert "reboot" not in firmware  # what a 1.2 agent reads: no field it does not know
    assert Plan.from_json(firmware).reboot_method == "firmware"
    document = _plan(reboot_method="kexec").to_json()
    assert document["reboot"] == {"method": "kexec"} and document["format"] == "metalstream-plan/1.4"
    assert Plan.from_json(document).reboot_method == "kexec"


@pytest.mark.parametrize("value, location", [
    ({"method": "warm"}, "plan.reboot.method"),
    ({"method": "kexec", "delay": 3}, "plan.reboot.delay"),
    ("kexec", "plan.reboot"),
])
def test_plan_reboot_refuses_what_it_does_not_know(value, location):
    document = _plan().to_json()
    document["reboot"] = value
    with pytest.raises(BadInput) as caught:
        Plan.from_json(document)
    assert caught.value.location == location


# ---- the agent: install, then kexec (or the firmware reboot, and why) ----

class FakeKernel:
    """The running kernel's side of kexec: what it allows, what it was asked to load, whether it jumped."""

    def __init__(self, blocked: str | None = None, load_fails: bool = False):
        self.blocked = blocked
        self.load_fails = load_fails
        self.loaded: list[tuple[kexec.BootEntry, bytes, bytes | None, list]] = []
        self.executed: list[tuple[int, int]] = []
        self.unloaded = 0
        self.service = None

    def ops(self):
        from deployer.agent import KexecOps

        return KexecOps(blocker=lambda: self.blocked, load=self.load, execute=self.execute, unload=self.unload)

    def load(self, boot_root: Path, entry: kexec.BootEntry) -> str:
        if self.load_fails:
            raise CommandError(["kexec", "--load"], 1, "Cannot determine the file type of the kernel")
        kernel = (boot_root / entry.kernel.lstrip("/")).read_bytes()
        initrd = (boot_root / entry.initrd.lstrip("/")).read_bytes() if entry.initrd else None
        self.loaded.append((entry, kernel, initrd, list(self.service.state.results)))
        return "kexec_file_load"

    def execute(self) -> None:
        self.executed.append((len(self.service.state.events), len(self.service.state.results)))

    def unload(self) -> None:
        self.unloaded += 1


def _install_with(synthetic_image, fake_service, file_server, sparse_disk, kernel: FakeKernel, *,
                  reboot_method: str | None = "kexec", option: str | None = None):
    import json

    from deployer.agent import AgentOptions, run_agent
    from deployer.plan import local_plan
    from metalstream.contracts.deployspec import Bootloader, DeploySpec

    manifest = json.loads(synthetic_image.read_text())
    url = file_server.serve("synthetic.tar.zst", synthetic_image.parent / manifest["tarball"])
    plan = local_plan(str(synthetic_image), boot_mode="uefi", hostname="node-17",
                      ssh_keys=[public_key_line("deploy@metalstream")]).to_json()
    plan.update(deployment_id=str(uuid.uuid4()), storage=DeploySpec(bootloader=Bootloader(location="none")).to_dict(),
                kernel_args="console=ttyS0,115200",
                report={"events_url": f"{fake_service.url}/api/v1/agent/events",
                        "result_url": f"{fake_service.url}/api/v1/agent/result"})
    plan["image"]["url"] = url
    if reboot_method:
        plan["reboot"] = {"method": reboot_method}
    fake_service.state.plan = plan
    kernel.service = fake_service
    reboots: list[int] = []
    out = io.StringIO()
    options = AgentOptions(server=fake_service.url, token=fake_service.state.token, target=str(sparse_disk(4 * GiB)),
                           plan_wait=5, reboot_method=option)
    code = run_agent(options, out=out, reboot=lambda: reboots.append(len(fake_service.state.results)),
                     kexec_ops=kernel.ops())
    reboot_events = [e["message"] for e in fake_service.state.events if e["message"].startswith("reboot:")]
    return code, out.getvalue(), reboot_events, reboots


def _kexec_mounts() -> list[str]:
    listing = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if "metalstream-kexec-" in line]


@pytest.fixture
def install_tools():
    require_root()
    require_tools("sfdisk", "mkfs.ext4", "mkfs.vfat", "zstd", "tar", "mcopy")


@pytest.mark.root
def test_agent_loads_the_installed_default_kernel_then_reports_and_kexecs(
        install_tools, synthetic_image, fake_service, file_server, sparse_disk):
    from fixtures_agent import SYNTHETIC_KERNEL

    kernel = FakeKernel()
    code, out, reboot_events, reboots = _install_with(synthetic_image, fake_service, file_server, sparse_disk, kernel)
    assert code == 0, out
    (result,) = fake_service.state.results
    assert result["success"] is True and result["root_uuid"]
    (entry, kernel_bytes, initrd_bytes, results_at_load), = kernel.loaded
    # The kernel grub.cfg boots by default, read from the installed /boot, with the root by its UUID.
    assert entry.kernel == f"/boot/vmlinuz-{SYNTHETIC_KERNEL}" and entry.initrd == f"/boot/initrd.img-{SYNTHETIC_KERNEL}"
    assert entry.source == "grub.cfg entry 0"
    assert entry.cmdline.split()[:2] == [f"root=UUID={result['root_uuid']}", "ro"]
    assert "console=ttyS0,115200" in entry.cmdline.split()
    assert kernel_bytes == b"not really a kernel\n" and initrd_bytes == b"not really an initramfs\n"
    assert results_at_load == []  # loaded before the result: the reboot event still reaches the service
    (message,) = reboot_events
    assert message.startswith(f"reboot: kexec (/boot/vmlinuz-{SYNTHETIC_KERNEL} + /boot/initrd.img-{SYNTHETIC_KERNEL}")
    assert kernel.executed == [(len(fake_service.state.events), 1)]  # after the event and the result
    assert reboots == [] and "rebooting (kexec)" in out
    assert not _kexec_mounts(), "the target must be unmounted before kexec"


@pytest.mark.root
@pytest.mark.parametrize("blocked, load_fails, expected", [
    ("the kernel is locked down (integrity; Secure Boot): it refuses to load an unverified kernel", False,
     "kexec not possible: the kernel is locked down (integrity"),
    (None, True, "kexec not possible: loading the installed kernel failed"),
])
def test_agent_falls_back_to_a_firmware_reboot_and_says_why(
        install_tools, synthetic_image, fake_service, file_server, sparse_disk, blocked, load_fails, expected):
    kernel = FakeKernel(blocked=blocked, load_fails=load_fails)
    code, out, reboot_events, reboots = _install_with(synthetic_image, fake_service, file_server, sparse_disk, kernel)
    assert code == 0, out
    (message,) = reboot_events
    assert message.startswith("reboot: firmware (") and expected in message
    assert kernel.executed == [] and reboots == [1]  # one firmware reboot, after the result
    assert kernel.unloaded == (1 if load_fails else 0)
    assert not _kexec_mounts()


@pytest.mark.root
def test_agent_option_overrides_the_plan_and_a_plan_without_reboot_means_firmware(
        install_tools, synthetic_image, fake_service, file_server, sparse_disk):
    kernel = FakeKernel()
    code, out, reboot_events, reboots = _install_with(synthetic_image, fake_service, file_server, sparse_disk, kernel,
                                                      reboot_method=None)
    assert code == 0 and reboot_events == ["reboot: firmware (as the plan asks)"] and reboots == [1]
    assert kernel.loaded == []
    fake_service.state.results.clear()
    fake_service.state.events.clear()
    code, out, reboot_events, reboots = _install_with(synthetic_image, fake_service, file_server, sparse_disk, kernel,
                                                      reboot_method=None, option="kexec")
    assert code == 0 and len(kernel.loaded) == 1 and reboot_events[0].startswith("reboot: kexec (")


@pytest.mark.root
def test_a_bug_while_choosing_the_reboot_still_posts_the_result_and_reboots_through_the_firmware(
        install_tools, synthetic_image, fake_service, file_server, sparse_disk):
    class Broken(FakeKernel):
        def ops(self):
            from deployer.agent import KexecOps

            def blocker():
                raise RuntimeError("a bug")
            return KexecOps(blocker=blocker, load=self.load, execute=self.execute, unload=self.unload)

    kernel = Broken()
    code, out, reboot_events, reboots = _install_with(synthetic_image, fake_service, file_server, sparse_disk, kernel)
    assert code == 0 and reboot_events == [] and kernel.executed == []
    (result,) = fake_service.state.results
    assert result["success"] is True and reboots == [1]
