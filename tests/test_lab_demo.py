"""The demo's phase accounting (pure: made-up clock marks) and its defaults."""
from pathlib import Path

from lab.demo import DemoOptions, PhaseClock, render_table, summarize


def test_summary_splits_the_deploy_into_phases_between_first_seen_marks():
    clock = PhaseClock(started=0.0, marks={"vm_power_on": 100.0, "partition": 130.0, "stream": 135.0,
                                            "configure": 175.0, "bootloader": 177.0, "installed": 180.0,
                                            "active": 260.0})
    summary = summarize(clock, {"image": 90.0, "installer": 0.0})
    assert summary["phases_seconds"] == {"pxe_to_agent": 30.0, "partition": 5.0, "stream": 40.0, "configure": 2.0,
                                         "bootloader": 3.0, "reboot_to_ssh": 80.0}
    assert summary["deploy_total_seconds"] == 160.0
    assert summary["builds_seconds"] == {"image": 90.0, "installer": 0.0}


def test_missing_phases_stay_empty_instead_of_being_invented():
    clock = PhaseClock(started=0.0, marks={"vm_power_on": 10.0, "stream": 40.0, "installed": 90.0})
    summary = summarize(clock, {})
    assert summary["phases_seconds"]["pxe_to_agent"] == 30.0
    assert summary["phases_seconds"]["partition"] is None
    assert summary["phases_seconds"]["stream"] == 50.0
    assert summary["deploy_total_seconds"] is None
    table = render_table(summary)
    assert "PXE boot → agent start" in table and "      -" not in table.splitlines()[0]


def test_default_kickstarts_are_the_repositorys_own():
    defaults = DemoOptions()
    assert defaults.image_kickstart.is_file(), defaults.image_kickstart
    assert defaults.installer_kickstart.is_file(), defaults.installer_kickstart
    assert defaults.out_dir.parent == Path(__file__).resolve().parents[1]


def test_reboot_event_is_the_agents_last_reboot_message():
    from lab.demo import reboot_event

    dep = {"events": [{"message": "agent started"}, {"message": "reboot: firmware (kexec not possible: x)"},
                      {"message": None}]}
    assert reboot_event(dep) == "reboot: firmware (kexec not possible: x)"
    assert reboot_event({"events": [{"message": "installed"}]}) is None and reboot_event({}) is None
