"""`metalstream agent`: what the installer environment runs: fetch the plan, install, report."""
from __future__ import annotations

import signal
import sys

import click

from metalstream.errors import BadInput
from metalstream.tls import INSTALLER_CA_PATH


@click.command("agent")
@click.option("--server", metavar="URL",
              help="The metalstream service, e.g. http://10.0.2.2:8080. "
                   "Default: metalstream.server= on the kernel command line.")
@click.option("--token", metavar="TOKEN",
              help="This deployment's agent token. Default: metalstream.token= on the kernel command line.")
@click.option("--reboot/--no-reboot", default=True, show_default=True,
              help="Reboot into the installed system after a successful install.")
@click.option("--reboot-method", type=click.Choice(["firmware", "kexec"]), default=None,
              help="How to boot the installed system: a firmware reboot, or kexec straight into its kernel "
                   "(falls back to a firmware reboot when kexec is not possible, e.g. under Secure Boot "
                   "lockdown). Default: the plan's `reboot.method` (absent: firmware).")
@click.option("--disk", "target", metavar="DEVICE|FILE",
              help="Install onto this block device or disk image file instead of the disk the plan's "
                   "hints select.")
@click.option("--plan-wait", type=click.FloatRange(min=0), default=300.0, show_default=True, metavar="SECONDS",
              help="How long to keep retrying the plan request while the network comes up.")
@click.option("--ca", metavar="FILE",
              help="Verify the service (plan, events, result, image) with this CA certificate only, and refuse "
                   f"plain http. Default: {INSTALLER_CA_PATH} when the installer was built with --ca; "
                   "otherwise https is checked against the system trust store.")
@click.option("--mode", type=click.Choice(["deploy", "inspect"]), default=None,
              help="deploy: fetch the plan and install; inspect: report this machine's hardware facts to the "
                   "service and power off (--no-reboot: stay up). Default: metalstream.mode= on the kernel "
                   "command line, else deploy.")
@click.option("--cmdline", "cmdline_path", default="/proc/cmdline", show_default=True, hidden=True)
def agent_command(server: str | None, token: str | None, reboot: bool, reboot_method: str | None,
                  target: str | None, plan_wait: float, ca: str | None, mode: str | None, cmdline_path: str) -> int:
    """Run the deployer agent: fetch this machine's plan from the service, install, report, reboot
    (through the firmware, or with kexec into the installed kernel when the plan or --reboot-method asks).

    Progress goes to the console and to the service (events every few seconds); the result carries
    the agent's whole log. After a failure the machine stays in the installer and is not rebooted.
    A service whose TLS certificate does not verify is refused before any disk is touched.
    Exit codes: 0 installed, 1 install failed (or the service was not trusted), 2 no usable server/token/plan.

    With --mode inspect (metalstream.mode=inspect, how discovery boots an unknown machine) it reads this
    machine's hardware facts (/proc, /sys; nothing is written anywhere), posts them and powers off.
    """
    from .agent import AgentOptions, read_kernel_cmdline, run_agent
    from .tls import ca_option_path

    # Stopped by systemd or the operator: unwind like Ctrl-C so mounts and loop devices are released
    # and the service is told which phase was interrupted.
    signal.signal(signal.SIGTERM, _interrupt)

    cmdline = read_kernel_cmdline(cmdline_path) if server is None or token is None or mode is None else {}
    server = server or cmdline.get("server")
    token = token or cmdline.get("token")
    mode = mode or cmdline.get("mode") or "deploy"
    if mode not in ("deploy", "inspect"):
        raise BadInput(f"{mode!r} is not a mode (deploy, inspect)", location="metalstream.mode")
    # The installer boot test waits for this exact prefix: it must be the first line.
    click.echo(f"metalstream-agent: starting (server={server or '<none>'})")
    sys.stdout.flush()
    if not server:
        raise BadInput("no service URL: pass --server or boot with metalstream.server=URL", location="--server")
    if not server.startswith(("http://", "https://")):
        raise BadInput(f"{server!r} is not an http(s) URL", location="--server")
    if not token:
        raise BadInput("no agent token: pass --token or boot with metalstream.token=TOKEN", location="--token")
    if ca is None and INSTALLER_CA_PATH.is_file():
        ca = str(INSTALLER_CA_PATH)
    pinned = ca_option_path(ca)
    if mode == "inspect":
        from .inspect_agent import poweroff_machine, run_inspection

        return run_inspection(server, token, out=sys.stdout, ca=str(pinned) if pinned else None, wait=plan_wait,
                              poweroff=poweroff_machine if reboot else None)
    options = AgentOptions(server=server, token=token, reboot=reboot, target=target, plan_wait=plan_wait,
                           ca=str(pinned) if pinned else None, reboot_method=reboot_method)
    return run_agent(options, out=sys.stdout)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


COMMANDS = [agent_command]
