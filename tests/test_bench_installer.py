"""bench/installer.py's pure parts: sizes from the installer manifest, times from the deployment's events."""
from __future__ import annotations

from bench.installer import BEFORE_TRIM, deployment_times, event_time, installer_size, table_rows
from bench.stats import figure

MANIFEST = {"kernel": {"size": 8_000_000}, "initramfs": {"size": 50_000_000}, "initramfs_uncompressed_size": 190_000_000,
            "file_count": 6000, "module_count": 218, "kernel_version": "6.1.0-57-amd64"}


def test_installer_size_compares_with_the_size_before_the_trims():
    size = installer_size(MANIFEST)
    assert size["total_bytes"] == 58_000_000
    assert size["of_before"] == round(58_000_000 / (BEFORE_TRIM["kernel_bytes"] + BEFORE_TRIM["initramfs_bytes"]), 3)
    assert size["goal"] == "<= 0.85" and size["met"] is True
    bigger = installer_size({**MANIFEST, "initramfs": {"size": 70_000_000}})
    assert bigger["met"] is False


def test_times_come_from_the_first_event_of_each_state():
    dep = {"events": [{"state": "pending", "time": 100.0}, {"state": "booting", "time": 112.5},
                      {"state": "booting", "time": 150.0}, {"state": "installing", "time": 171.0},
                      {"state": "installing", "time": 250.0}, {"state": "installed", "time": 320.0}]}
    assert event_time(dep, "booting") == 112.5 and event_time(dep, "active") is None
    assert deployment_times(dep, 100.0, 400.04) == {"to_boot_script": 12.5, "to_agent_first_request": 71.0,
                                                    "to_active": 300.0, "installed_to_active": 80.0}
    assert deployment_times({"events": []}, 100.0, None) == {"to_boot_script": None, "to_agent_first_request": None,
                                                             "to_active": None, "installed_to_active": None}


def test_table_rows_name_each_figure_and_its_goal():
    boot = {**figure([60.0, 70.0], 1), "goal": "<= 120", "met": True, "to_boot_script": figure([10.0, 12.0], 1)}
    record = {"size": installer_size(MANIFEST), "boot_to_agent_seconds": boot,
              "reboot": {"power_on_to_active_seconds": {"kexec": figure([200.0]), "firmware": figure([230.0])},
                         "installed_to_active_seconds": {"kexec": figure([70.0]), "firmware": figure([100.0])},
                         "kexec_saves_seconds": 30.0, "goal": ">= 0", "met": True}}
    rows = table_rows(record, lambda fig: f"{fig['median']:.1f} s", lambda r: "met" if r.get("met") else "NOT MET")
    assert [row[0] for row in rows] == ["installer kernel + initramfs", "installer boot → agent's 1st request",
                                        "power-on → active, kexec vs firmware", "installed → active, kexec vs firmware"]
    assert rows[2][1] == "200.0 s" and rows[3][1] == "70.0 s" and rows[3][3] == "30.0 s saved"
