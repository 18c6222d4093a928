"""tarball_builder.chroot: commands run inside the root, isolated, and leave nothing behind."""
from __future__ import annotations

import pytest

from metalstream.errors import CommandError
from tarball_builder.chroot import Chroot

from conftest import require_root, require_tools
from fixtures_build import host_mounts_under, processes_with

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _needs_root():
    require_root()
    require_tools("unshare", "chroot", "findmnt")


def test_command_runs_inside_the_root(busybox_root):
    (busybox_root / "etc/marker").write_text("inside\n")
    with Chroot(busybox_root) as ch:
        result = ch.run(["/bin/cat", "/etc/marker"])
    assert result.stdout == "inside\n"


def test_mounts_exist_only_in_the_private_namespace(busybox_root):
    with Chroot(busybox_root) as ch:
        # Inside: /proc is a fresh procfs of the command's own PID namespace (the command is PID 1).
        inside = ch.run(["/bin/sh", "-c", "cat /proc/self/stat | cut -d' ' -f1; ls /proc/1/exe >/dev/null; "
                                          "mount | cut -d' ' -f3 | sort; echo host-sees:"])
        assert host_mounts_under(busybox_root) == []
        # While a command is running, the host still sees nothing below the root.
        running = ch.run(["/bin/sh", "-c", "sleep 0.2"], check=True)
    mounted = inside.stdout.split()
    for point in ("/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run"):
        assert point in mounted
    assert running.returncode == 0
    assert host_mounts_under(busybox_root) == []


def test_host_never_sees_mounts_during_a_long_command(busybox_root, tmp_path):
    import threading

    seen: list[list[str]] = []
    with Chroot(busybox_root) as ch:
        worker = threading.Thread(target=ch.run, args=(["/bin/sh", "-c", "touch /started; sleep 2"],))
        worker.start()
        for _ in range(50):
            if (busybox_root / "started").exists():
                break
            threading.Event().wait(0.05)
        seen.append(host_mounts_under(busybox_root))
        worker.join()
    assert (busybox_root / "started").exists()
    assert seen == [[]]


def test_failing_command_raises_and_leaves_nothing_mounted(busybox_root):
    with Chroot(busybox_root) as ch:
        with pytest.raises(CommandError) as err:
            ch.run(["/bin/sh", "-c", "echo broken >&2; exit 7"])
    assert err.value.returncode == 7
    assert "broken" in err.value.stderr
    assert host_mounts_under(busybox_root) == []


def test_no_process_outlives_the_command(busybox_root):
    marker = "4242.4242"
    with Chroot(busybox_root) as ch:
        ch.run(["/bin/sh", "-c", f"sleep {marker} & sleep {marker} & echo started"])
        assert processes_with(f"sleep {marker}") == []
    assert processes_with(f"sleep {marker}") == []


def test_services_are_prevented_from_starting(busybox_root):
    with Chroot(busybox_root) as ch:
        result = ch.run(["/bin/sh", "-c", "/usr/sbin/policy-rc.d; echo rc=$?; echo offline=$SYSTEMD_OFFLINE"])
    assert "rc=101" in result.stdout
    assert "offline=1" in result.stdout
    # The guard is removed again: it must not ship in the image.
    assert not (busybox_root / "usr/sbin/policy-rc.d").exists()


def test_host_environment_does_not_leak(busybox_root, monkeypatch):
    monkeypatch.setenv("METALSTREAM_TEST_SECRET", "leak")
    with Chroot(busybox_root, env={"SOURCE_DATE_EPOCH": "1700000000"}) as ch:
        result = ch.run(["/bin/env"])
    assert "METALSTREAM_TEST_SECRET" not in result.stdout
    assert "SOURCE_DATE_EPOCH=1700000000" in result.stdout


def test_run_outside_sees_the_root_mounts_but_runs_host_tools(busybox_root, tmp_path):
    with Chroot(busybox_root) as ch:
        result = ch.run_outside(["sh", "-c", 'test -e "$METALSTREAM_ROOT/proc/self/stat" && echo ok; readlink -f /bin/sh'],
                                env={"METALSTREAM_ROOT": str(busybox_root)})
    assert result.stdout.splitlines()[0] == "ok"
    assert host_mounts_under(busybox_root) == []
