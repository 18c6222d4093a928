"""`metalstream machine ...` on a data directory, run as the real command: the password only from a file, a
prompt or the environment, never printed; refusals exit 2 (bad input) or 1 (conflict) and store nothing."""
from __future__ import annotations

import json
import os
import subprocess

from conftest import METALSTREAM

PASSWORD = "cli-pw-Xv93!unique"


def run(data_dir, *args, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*METALSTREAM, "machine", *args, "--data-dir", str(data_dir)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, input=input)


def listed(data_dir) -> list[dict]:
    result = run(data_dir, "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_machine_commands(tmp_path):
    data_dir = tmp_path / "data"
    password_file = tmp_path / "bmc.pw"
    password_file.write_text(PASSWORD + "\n")
    outputs = []

    missing = run(data_dir, "list")
    assert missing.returncode == 2 and "--create" in missing.stderr and not data_dir.exists()

    added = run(data_dir, "add", "node-01", "--create", "--mac", "52:54:00:12:34:56", "--mac", "52-54-00-12-34-57",
                "--tag", "rack1", "--bmc-driver", "redfish", "--bmc-address", "https://10.0.0.20",
                "--bmc-username", "admin", "--bmc-password-file", str(password_file), "--bmc-no-verify-tls", "--json")
    assert added.returncode == 0, added.stderr
    machine = json.loads(added.stdout)
    assert machine["macs"] == ["52:54:00:12:34:56", "52:54:00:12:34:57"] and machine["tags"] == ["rack1"]
    assert machine["bmc"] == {"driver": "redfish", "address": "https://10.0.0.20", "username": "admin",
                              "verify_tls": False, "system_id": None, "password_set": True}
    outputs.append(added)

    shown = run(data_dir, "show", "node-01")
    assert shown.returncode == 0 and json.loads(shown.stdout) == machine
    plain = run(data_dir, "list")
    assert plain.stdout.split("\t")[:4] == ["node-01", "ready", "52:54:00:12:34:56,52:54:00:12:34:57", "redfish"]
    outputs += [shown, plain]

    from pxe import machines
    from pxe.config import ServiceConfig
    from pxe.service import Service
    service = Service.open(ServiceConfig(data_dir=data_dir))
    try:
        assert machines.bmc_access(service, machine["id"])["password"] == PASSWORD
        sealed = machines.get_row(service.engine, "node-01")["bmc_password_sealed"]
        assert PASSWORD not in sealed

        # refusals: nothing stored
        for args, code, where in (
                (("--mac", "52:54:00:12:34:99", "--bmc-driver", "ipmi", "--bmc-address", "10.0.0.1;reboot"), 2,
                 "--bmc-address"),
                (("--mac", "52:54:00:12:34:99", "--mac", "nope"), 2, "--mac #2"),
                (("--mac", "52:54:00:12:34:99", "--bmc-address", "10.0.0.1"), 2, "--bmc-driver"),
                (("--mac", "52:54:00:12:34:57"), 1, "52:54:00:12:34:57 already belongs to machine node-01")):
            refused = run(data_dir, "add", "node-02", *args)
            assert refused.returncode == code and where in refused.stderr, refused.stderr
            outputs.append(refused)
        assert [m["name"] for m in listed(data_dir)] == ["node-01"]

        edited = run(data_dir, "edit", "node-01", "--bmc-username", "ops", "--json",
                     env={"METALSTREAM_BMC_PASSWORD": PASSWORD + "-env"})
        assert edited.returncode == 0, edited.stderr
        assert json.loads(edited.stdout)["bmc"]["username"] == "ops"
        assert machines.bmc_access(service, machine["id"])["password"] == PASSWORD + "-env"
        prompted = run(data_dir, "edit", "node-01", "--bmc-password-prompt", "--tag", "rack2",
                       input=f"{PASSWORD}-typed\n{PASSWORD}-typed\n")
        assert prompted.returncode == 0, prompted.stderr
        assert machines.bmc_access(service, machine["id"])["password"] == PASSWORD + "-typed"
        outputs += [edited, prompted]
        renamed = run(data_dir, "edit", "node-01", "--rename", "bad name")
        assert renamed.returncode == 2 and "--rename" in renamed.stderr
    finally:
        service.engine.dispose()

    for result in outputs:
        assert PASSWORD not in result.stdout + result.stderr
    deleted = run(data_dir, "delete", "node-01")
    assert deleted.returncode == 0 and listed(data_dir) == []
    assert run(data_dir, "delete", "node-01").returncode == 1
