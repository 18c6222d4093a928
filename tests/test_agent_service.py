"""`metalstream agent` end to end against a fake of the service's agent endpoints (a boundary).

The real command runs in a child process; the fake service records every event and result.
"""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from deployer.plan import local_plan
from metalstream.contracts.plan import ImageRef, Plan

from conftest import METALSTREAM, REPO, public_key_line, require_root, require_tools
from fixtures_images import write_image_manifest
from fixtures_stream import Fault

GiB = 1 << 30
DEPLOY_KEY = public_key_line("deploy@metalstream")


def run_agent(*args: str, cmdline: str | None = None, tmp_path: Path, timeout: float = 900):
    argv = [*METALSTREAM, "agent", "--no-reboot", *args]
    if cmdline is not None:
        path = tmp_path / "cmdline"
        path.write_text(cmdline + "\n")
        argv += ["--cmdline", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=timeout)


def _bad_plan(path: list[str], value) -> dict:
    """A valid plan (from the contract's writer) with one field spoilt."""
    plan = Plan(image=ImageRef("x", "http://h/x.tar.zst", "0" * 64, 1)).to_json()
    target = plan
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return plan


def _plan_for(manifest: Path, image_url: str, service, **overrides) -> dict:
    plan = local_plan(str(manifest), boot_mode="uefi", hostname="node-17", ssh_keys=[DEPLOY_KEY]).to_json()
    plan["deployment_id"] = str(uuid.uuid4())
    plan["image"]["url"] = image_url
    plan["report"] = {"events_url": f"{service.url}/api/v1/agent/events",
                      "result_url": f"{service.url}/api/v1/agent/result"}
    plan.update(overrides)
    return plan


def test_agent_prints_starting_first_reads_cmdline_and_reports_a_bad_plan(fake_service, tmp_path):
    fake_service.state.fail_plan = 2  # the service is still starting: the agent must retry
    fake_service.state.plan = _bad_plan(["image", "sha256"], "nothex")
    token = fake_service.state.token
    done = run_agent(tmp_path=tmp_path,
                     cmdline=f"BOOT_IMAGE=/vmlinuz quiet metalstream.server={fake_service.url} "
                             f"metalstream.token={token} console=ttyS0")
    assert done.stdout.splitlines()[0] == f"metalstream-agent: starting (server={fake_service.url})"
    assert done.returncode == 2, done.stderr
    assert "plan.image.sha256" in done.stderr
    assert fake_service.state.plan_requests == 3
    (result,) = fake_service.state.results
    assert result["success"] is False and result["phase"] == "start"
    assert "plan.image.sha256" in result["error"]
    assert "could not fetch the plan from" in result["log"] and "HTTP 503" in result["log"]
    assert token not in result["log"]
    assert set(fake_service.state.auth_seen) == {f"Bearer {token}"}


def test_agent_options_win_over_cmdline_and_a_rejected_token_fails_clearly(fake_service, tmp_path):
    done = run_agent("--server", fake_service.url, "--token", "wrong-token", tmp_path=tmp_path,
                     cmdline="metalstream.server=http://192.0.2.1:1 metalstream.token=other")
    assert done.stdout.startswith(f"metalstream-agent: starting (server={fake_service.url})\n")
    assert done.returncode == 1
    assert "rejected the agent token (HTTP 401" in done.stderr
    assert fake_service.state.auth_seen[0] == "Bearer wrong-token"


def test_agent_without_server_is_bad_input(tmp_path):
    done = run_agent(tmp_path=tmp_path, cmdline="root=/dev/sda1 quiet")
    assert done.stdout.splitlines() == ["metalstream-agent: starting (server=<none>)"]
    assert done.returncode == 2
    assert "--server: no service URL" in done.stderr and "Traceback" not in done.stderr


def test_agent_failure_before_any_write_reports_the_phase_and_stays(stream_test_image_manifest, fake_service,
                                                                   file_server, tmp_path):
    manifest, tarball = stream_test_image_manifest
    url = file_server.serve("img.tar.zst", tarball)
    fake_service.state.plan = _plan_for(manifest, url, fake_service,
                                        disk_hints={"serial": "NO-SUCH-DISK-SERIAL"})
    done = run_agent("--server", fake_service.url, "--token", fake_service.state.token, tmp_path=tmp_path)
    assert done.returncode != 0
    assert "install FAILED" in done.stdout and "staying in the installer" in done.stdout
    assert "installed; rebooting" not in done.stdout
    (result,) = fake_service.state.results
    assert result["success"] is False and result["phase"] == "disk"
    assert "NO-SUCH-DISK-SERIAL" in result["error"] or "serial" in result["error"]
    assert "metalstream.install" in result["log"]
    assert [e["phase"] for e in fake_service.state.events][:2] == ["start", "disk"]
    assert file_server.state.requests == []  # nothing was downloaded, let alone written


@pytest.mark.root
def test_agent_installs_debian_over_a_dropping_connection(debian_image, sparse_disk, fake_service, file_server,
                                                          tmp_path):
    """The whole agent path on a real image: plan, events with bytes, a resumed stream, result, log."""
    require_root()
    require_tools("sfdisk", "mkfs.ext4", "zstd", "tar", "mtools", "grub-mkimage")
    manifest = json.loads(debian_image.read_text())
    tarball = debian_image.parent / manifest["tarball"]
    url = file_server.serve("debian.tar.zst", tarball)
    file_server.fault("debian.tar.zst", Fault(at=manifest["size"] // 3))
    plan = _plan_for(debian_image, url, fake_service)
    fake_service.state.plan = plan
    disk = sparse_disk(4 * GiB)
    done = run_agent("--server", fake_service.url, "--token", fake_service.state.token, "--disk", str(disk),
                     tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == f"metalstream-agent: starting (server={fake_service.url})"
    assert any(line.startswith("[stream] streaming image:") and "MiB/s" in line for line in lines)
    (result,) = fake_service.state.results
    assert result["success"] is True and result["phase"] == "finish" and result["error"] is None
    assert result["root_uuid"]
    assert "resumed" in result["log"] or "interrupted at byte" in result["log"]
    events = fake_service.state.events
    phases = [e["phase"] for e in events]
    order = ["start", "disk", "partition", "mkfs", "stream", "verify", "configure", "bootloader", "finish"]
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == order
    stream_events = [e for e in events if e["phase"] == "stream" and e["bytes_done"] is not None]
    assert stream_events[-1]["bytes_done"] == stream_events[-1]["bytes_total"] == manifest["size"]
    resumes = file_server.ranged_requests()
    assert len(resumes) == 1 and resumes[0]["range"] == f"bytes={manifest['size'] // 3}-"


@pytest.mark.root
def test_agent_reboots_only_after_a_reported_success(stream_test_image, fake_service, file_server, sparse_disk,
                                                     tmp_path):
    """In process, with the reboot action recorded: success → result posted, then one reboot; failure → none."""
    import io

    from deployer.agent import AgentOptions
    from deployer.agent import run_agent as agent_main
    from metalstream.contracts.deployspec import Bootloader, DeploySpec

    require_root()
    require_tools("sfdisk", "mkfs.ext4", "zstd", "tar")
    (tmp_path / stream_test_image.path.name).symlink_to(stream_test_image.path)
    manifest = write_image_manifest(tmp_path / stream_test_image.path.name, "stream-test", family="synthetic",
                                    kernels=[{"version": "0", "kernel": "/boot/vmlinuz-0",
                                              "initramfs": "/boot/initrd.img-0"}])
    url = file_server.serve("img.tar.zst", stream_test_image.path)
    # bootloader --location=none: grub.cfg only, so a kernel-less test image can finish an install.
    storage = DeploySpec(bootloader=Bootloader(location="none")).to_dict()
    reboots = []

    def reboot():
        reboots.append([r["success"] for r in fake_service.state.results])

    for success in (True, False):
        fake_service.state.results.clear()
        sha = stream_test_image.sha256 if success else "f" * 64
        plan = _plan_for(manifest, url, fake_service, storage=storage)
        plan["image"]["sha256"] = sha
        fake_service.state.plan = plan
        out = io.StringIO()
        options = AgentOptions(server=fake_service.url, token=fake_service.state.token, reboot=True,
                               target=str(sparse_disk(4 * GiB)), plan_wait=5)
        code = agent_main(options, out=out, reboot=reboot)
        assert [r["success"] for r in fake_service.state.results] == [success], out.getvalue()
        if success:
            assert code == 0 and reboots == [[True]], out.getvalue()
            assert "installed; rebooting" in out.getvalue()
        else:
            assert code == 1 and reboots == [[True]]  # no second reboot
            (result,) = fake_service.state.results
            assert result["phase"] == "stream" and "sha256" in result["error"]
            assert "staying in the installer" in out.getvalue()


def test_agent_runs_from_the_zipapp_on_debian_python(fake_service, tmp_path):
    """What the installer/rescue system has: Debian's python3 + click/requests/pyudev and the deployer alone."""
    from deployer.remote import build_zipapp

    require_tools("/usr/bin/python3")
    pyz = build_zipapp(tmp_path)
    fake_service.state.plan = _bad_plan(["boot_mode"], "floppy")
    done = subprocess.run(["/usr/bin/python3", "-I", str(pyz), "agent", "--no-reboot", "--server", fake_service.url,
                           "--token", fake_service.state.token], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[0] == f"metalstream-agent: starting (server={fake_service.url})"
    assert done.returncode == 2, done.stderr
    (result,) = fake_service.state.results
    assert result["success"] is False and "plan.boot_mode" in result["error"]


@pytest.mark.root
def test_sigterm_mid_stream_reports_and_releases_everything(stream_test_image_manifest, fake_service, file_server,
                                                            sparse_disk, tmp_path):
    import signal
    import time

    require_root()
    require_tools("sfdisk", "mkfs.ext4", "zstd", "tar")
    manifest, tarball = stream_test_image_manifest
    url = file_server.serve("img.tar.zst", tarball)
    file_server.fault("img.tar.zst", Fault(at=1_000_000, kind="stall", stall_seconds=60))
    fake_service.state.plan = _plan_for(manifest, url, fake_service)
    disk = sparse_disk(4 * GiB)
    agent = subprocess.Popen([*METALSTREAM, "agent", "--no-reboot", "--server", fake_service.url,
                              "--token", fake_service.state.token, "--disk", str(disk)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not any(e["phase"] == "stream" and e["bytes_done"] for e in fake_service.state.events):
            assert agent.poll() is None and time.monotonic() < deadline, agent.communicate()
            time.sleep(0.1)
        time.sleep(0.5)
        agent.send_signal(signal.SIGTERM)
        out, err = agent.communicate(timeout=120)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode == 130, out + err  # SIGTERM unwinds like Ctrl-C: "interrupted", exit 130
    assert "metalstream: interrupted" in err and "Traceback" not in err
    assert "installed; rebooting" not in out
    (result,) = fake_service.state.results
    assert result["success"] is False and result["phase"] == "stream"
    assert "stopped by signal SIGTERM" in result["error"]
    leftover = subprocess.run(["losetup", "-j", str(disk)], capture_output=True, text=True, check=True).stdout
    assert leftover == ""
    assert str(tmp_path) not in Path("/proc/mounts").read_text()
    assert "metalstream-install-" not in Path("/proc/mounts").read_text()
