"""`metalstream vm`: lab VMs that network-boot from the service; `metalstream demo` (the end-to-end main job)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from metalstream import proc

from .vm import DEFAULT_LAB_DIR, LabVm, VmSpec, create_disk, mac_for, qemu_argv, read_pid, stop_by_pid_file

lab_dir_option = click.option("--lab-dir", type=click.Path(path_type=Path), default=DEFAULT_LAB_DIR,
                              show_default=True, help="Where VM disks, firmware variables and serial logs live.")


@click.group("vm")
def vm_group() -> None:
    """Lab VMs (qemu) that PXE-boot from the metalstream service.

    Each VM has a fixed MAC derived from its name, so a deployment can be created for it before
    it is powered on. Firmware is UEFI (OVMF) or BIOS (SeaBIOS); acceleration is TCG unless
    --accel kvm is given (KVM is unreliable on some hosts).
    """


@vm_group.command("mac")
@click.argument("name")
def vm_mac(name: str) -> None:
    """Print the MAC address VM NAME will have."""
    VmSpec(name)  # validates the name
    click.echo(mac_for(name))


@vm_group.command("start")
@click.argument("name")
@click.option("--firmware", type=click.Choice(["uefi", "bios"]), default="uefi", show_default=True)
@click.option("--server", "server_url", default="http://10.0.2.2:8080", show_default=True,
              help="Service URL as the guest sees it (10.0.2.2 is the host under qemu user networking).")
@click.option("--disk-size", "disk_size_gib", type=click.IntRange(1, 2048), default=8, show_default=True,
              help="Disk size in GiB (sparse file).")
@click.option("--memory", "memory_mib", type=click.IntRange(256, 65536), default=2048, show_default=True)
@click.option("--ssh-port", type=click.IntRange(1024, 65535), default=None, help="Forward this loopback port to the guest's SSH.")
@click.option("--keep-disk", is_flag=True, help="Reuse the existing disk instead of a fresh empty one.")
@click.option("--accel", type=click.Choice(["tcg", "kvm"]), default="tcg", show_default=True)
@click.option("--background", is_flag=True, help="Return once qemu runs; stop it later with `metalstream vm stop`.")
@lab_dir_option
def vm_start(name, firmware, server_url, disk_size_gib, memory_mib, ssh_port, keep_disk, accel, background, lab_dir) -> None:
    """Power on VM NAME: it network-boots SERVER/boot.ipxe, then its disk."""
    spec = VmSpec(name, firmware=firmware, boot_url=f"{server_url.rstrip('/')}/boot.ipxe", disk_size_gib=disk_size_gib,
                  memory_mib=memory_mib, ssh_port=ssh_port, accel=accel, lab_dir=lab_dir)
    create_disk(spec, fresh=not keep_disk)
    click.echo(f"vm {name}: mac {spec.mac}, firmware {firmware}, disk {spec.disk}, serial log {spec.serial_log}")
    if background:
        spec.extra_args.append("-daemonize")
        proc.run(qemu_argv(spec), timeout=60)
        click.echo(f"vm {name}: running (pid {read_pid(spec.pid_file)})")
        return
    with LabVm(spec) as vm:
        click.echo(f"vm {name}: running; Ctrl-C stops it")
        try:
            while vm.is_running():
                time.sleep(1)
        except KeyboardInterrupt:
            click.echo(f"vm {name}: stopping")


@vm_group.command("stop")
@click.argument("name")
@lab_dir_option
def vm_stop(name: str, lab_dir: Path) -> None:
    """Power off VM NAME (started with --background)."""
    spec = VmSpec(name, lab_dir=lab_dir)
    stopped = stop_by_pid_file(spec.pid_file)
    spec.pid_file.unlink(missing_ok=True)
    click.echo(f"vm {name}: {'stopped' if stopped else 'was not running'}")


@vm_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@lab_dir_option
def vm_list(as_json: bool, lab_dir: Path) -> None:
    """List lab VMs with their MAC and whether they run."""
    rows = []
    for vm_dir in sorted(p for p in lab_dir.glob("*") if p.is_dir()) if lab_dir.exists() else []:
        spec = VmSpec(vm_dir.name, lab_dir=lab_dir)
        rows.append({"name": spec.name, "mac": spec.mac, "running": LabVm(spec).is_running(), "dir": str(vm_dir)})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            click.echo(f"{row['name']:<20} {row['mac']}  {'running' if row['running'] else 'stopped'}")


@click.command("demo")
@click.option("--firmware", type=click.Choice(["uefi", "bios"]), default="uefi", show_default=True)
@click.option("--vm", "vm_name", default="demo-node", show_default=True, help="Lab VM name (its MAC derives from it).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out"),
              show_default=True, help="Where the images are built (reused when their kickstart is unchanged).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("/var/lib/metalstream/demo"), show_default=True, help="The demo service's state.")
@lab_dir_option
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("out/demo-summary.json"), show_default=True, help="Write the phase times here as JSON.")
@click.option("--timeout", "deploy_timeout", type=click.FloatRange(60), default=1800, show_default=True,
              help="Seconds from power-on until the deployment must be active.")
@click.option("--rebuild", is_flag=True, help="Rebuild the images even if they are up to date.")
@click.option("--tls", is_flag=True,
              help="Serve HTTPS with a certificate from a lab CA (kept in DATA_DIR/tls) and deploy with an installer "
                   "that pins that CA (OUT/installer-tls.json): the agent talks only https; iPXE fetches the boot "
                   "scripts, kernel and initramfs over plain HTTP from a second port. Fails unless the access log "
                   "shows no plain-HTTP agent call or image download.")
@click.option("--reboot", "reboot_method", type=click.Choice(["firmware", "kexec"]), default="firmware",
              show_default=True,
              help="How the installer boots the installed system: a firmware reboot, or kexec into the installed "
                   "kernel (the deployment's reboot_method); the summary prints power-on → active either way.")
@click.option("--power", type=click.Choice(["none", "redfish", "ipmi"]), default="none", show_default=True,
              help="redfish | ipmi: the VM is a powered-off libvirt domain (TCG) behind a lab BMC emulator "
                   "(sushy-tools | virtualbmc), registered as a machine with that BMC; the deployment names the "
                   "machine and the service powers it on — nothing else touches the VM after it is defined. "
                   "none: the demo starts a qemu VM itself.")
def demo(firmware, vm_name, out_dir, data_dir, lab_dir, summary_path, deploy_timeout, rebuild, tls,
         reboot_method, power) -> None:
    """The main job: build the Debian image and the installer from kickstarts/, serve them, PXE-boot a
    lab VM, deploy it, wait until it rebooted into the installed system and the service verified it
    over SSH (`active`), then print the time of every phase and write them to --summary, with the
    service's requests by kind and scheme (from its access log).

    Everything it starts (service, VM) is stopped at the end, also on failure or Ctrl-C.
    """
    from .demo import DemoOptions, run_demo
    run_demo(DemoOptions(firmware=firmware, vm_name=vm_name, out_dir=out_dir, data_dir=data_dir, lab_dir=lab_dir,
                         summary_path=summary_path, deploy_timeout=deploy_timeout, rebuild=rebuild, tls=tls,
                         reboot_method=reboot_method, power=power),
             echo=click.echo)


COMMANDS = [vm_group, demo]
