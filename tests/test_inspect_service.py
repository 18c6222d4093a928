"""Discovery and inspection in the service (real Flask app, SQLite and PostgreSQL): boot selection for unknown MACs,
the facts report making a `new` machine or refreshing one, deployments refreshing their machine's facts, and
refused reports that store nothing."""
from __future__ import annotations

import copy

import pytest

from fixtures_pxe import PXE_MAC

OTHER_MAC = "52:54:00:aa:bb:02"
FACTS = {
    "cpus": {"count": 2, "model": "QEMU Virtual CPU"}, "memory_mib": 1967, "firmware": "uefi",
    "dmi": {"vendor": "QEMU", "product": "Standard PC (Q35 + ICH9, 2009)", "serial": None},
    "disks": [{"name": "vda", "size_bytes": 8 << 30, "model": None, "serial": "DISK-A", "wwn": None,
               "rotational": True, "by_path": "/dev/disk/by-path/pci-0000:00:04.0"},
              {"name": "sda", "size_bytes": 3 << 30, "model": "QEMU HARDDISK", "serial": "DISK-B",
               "wwn": "0x5000c50015ea71ac", "rotational": False, "by_path": None}],
    "nics": [{"mac": PXE_MAC, "name": "ens3", "driver": "virtio_net", "link": True, "speed_mbps": None},
             {"mac": OTHER_MAC, "name": "ens4", "driver": "e1000", "link": False, "speed_mbps": 1000}],
}


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _discovery(env, on: bool = True) -> None:
    env.service.config.discovery = on


def _inspection_token(env, mac: str = PXE_MAC) -> str:
    script = env.client.get(f"/boot/{mac}.ipxe").get_data(as_text=True)
    assert "metalstream.mode=inspect" in script, script
    return script.split("metalstream.token=")[1].split()[0]


def _report(env, token: str, facts=None, **kwargs):
    body = kwargs.pop("body", {"facts": FACTS if facts is None else facts})
    return env.client.post("/api/v1/agent/inspection", json=body, headers=_bearer(token), **kwargs)


def _machines(env) -> list[dict]:
    from pxe import machines

    return machines.list_all(env.service.engine)


def test_without_discovery_an_unknown_mac_boots_locally_as_before(pxe_env):
    for path in (f"/boot/{PXE_MAC}.ipxe", f"/boot/grub/{PXE_MAC}.cfg"):
        script = pxe_env.client.get(path).get_data(as_text=True)
        assert "metalstream.token=" not in script and "metalstream.mode" not in script and "/installer/" not in script
    assert _machines(pxe_env) == []


def test_with_discovery_an_unknown_mac_gets_the_installer_in_inspection_mode(pxe_env):
    _discovery(pxe_env)
    ipxe = pxe_env.client.get(f"/boot/{PXE_MAC}.ipxe").get_data(as_text=True)
    assert "/installer/vmlinuz" in ipxe and "metalstream.mode=inspect" in ipxe
    assert "metalstream.server=http://10.0.2.2:8080" in ipxe and "metalstream.deployment=" not in ipxe
    assert f"inspect {PXE_MAC}" in ipxe
    token = ipxe.split("metalstream.token=")[1].split()[0]
    assert token.startswith("i.") and len(token) <= 200
    grub = pxe_env.client.get(f"/boot/grub/{PXE_MAC}.cfg").get_data(as_text=True)
    assert "metalstream.mode=inspect" in grub and 'menuentry "metalstream: inspect"' in grub
    assert _machines(pxe_env) == []  # booting enlists nothing: the report does


def test_a_report_makes_a_new_machine_with_every_nic(pxe_env):
    _discovery(pxe_env)
    response = _report(pxe_env, _inspection_token(pxe_env))
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["accepted"] is True and answer["created"] is True
    assert answer["machine"]["name"] == "new-525400123456" and answer["machine"]["state"] == "new"
    [machine] = _machines(pxe_env)
    assert machine["id"] == answer["machine"]["id"] and machine["state"] == "new"
    assert sorted(machine["macs"]) == sorted([PXE_MAC, OTHER_MAC])
    assert machine["facts"] == FACTS and machine["facts_at"] is not None
    assert machine["bmc"]["driver"] == "manual"


def test_reinspection_refreshes_the_facts_and_a_used_token_is_refused(pxe_env):
    _discovery(pxe_env)
    first = _inspection_token(pxe_env)
    assert _report(pxe_env, first).status_code == 200
    second = _inspection_token(pxe_env)  # a `new` machine booting again is inspected again
    changed = copy.deepcopy(FACTS)
    changed["memory_mib"] = 4000
    changed["disks"] = changed["disks"][:1]
    response = _report(pxe_env, second, changed)
    assert response.status_code == 200 and response.get_json()["created"] is False
    [machine] = _machines(pxe_env)
    assert machine["facts"]["memory_mib"] == 4000 and len(machine["facts"]["disks"]) == 1
    replay = _report(pxe_env, first)
    assert replay.status_code == 409 and replay.get_json()["field"] == "Authorization"
    assert _machines(pxe_env)[0]["facts"]["memory_mib"] == 4000


def test_macs_already_known_do_not_get_inspected(pxe_env):
    from pxe import machines

    _discovery(pxe_env)
    machines.create(pxe_env.service.engine, None, name="rack1-node1", macs=[OTHER_MAC])  # a ready machine
    script = pxe_env.client.get(f"/boot/{OTHER_MAC}.ipxe").get_data(as_text=True)
    assert "metalstream.mode=inspect" not in script and "metalstream.token=" not in script
    dep = pxe_env.pending()  # deployed by MAC alone, then finished: it boots its disk, never inspection
    pxe_env.client.post(f"/api/v1/deployments/{dep['id']}/cancel", headers=pxe_env.admin)
    script = pxe_env.client.get(f"/boot/{PXE_MAC}.ipxe").get_data(as_text=True)
    assert "metalstream.mode=inspect" not in script


def test_a_nic_owned_by_another_machine_is_left_to_it(pxe_env):
    from pxe import machines

    _discovery(pxe_env)
    machines.create(pxe_env.service.engine, None, name="owner", macs=[OTHER_MAC])
    answer = _report(pxe_env, _inspection_token(pxe_env)).get_json()
    created = machines.get(pxe_env.service.engine, answer["machine"]["id"])
    assert created["macs"] == [PXE_MAC]
    assert machines.get(pxe_env.service.engine, "owner")["macs"] == [OTHER_MAC]


def _without(facts: dict, path: str) -> dict:
    out = copy.deepcopy(facts)
    *parents, last = path.split(".")
    target = out
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    del target[last]
    return out


def _with(facts: dict, path: str, value) -> dict:
    out = copy.deepcopy(facts)
    *parents, last = path.split(".")
    target = out
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    target[int(last) if isinstance(target, list) else last] = value
    return out


BAD_REPORTS = [
    ({"facts": _without(FACTS, "memory_mib")}, "facts.memory_mib"),
    ({"facts": _with(FACTS, "firmware", "coreboot")}, "facts.firmware"),
    ({"facts": _with(FACTS, "cpus.count", -2)}, "facts.cpus.count"),
    ({"facts": _with(FACTS, "cpus.count", True)}, "facts.cpus.count"),
    ({"facts": _with(FACTS, "disks.1.size_bytes", "3G")}, "facts.disks[1].size_bytes"),
    ({"facts": _with(FACTS, "disks.1.size_bytes", 2**64)}, "facts.disks[1].size_bytes"),
    ({"facts": _with(FACTS, "disks.0.serial", "A\nB")}, "facts.disks[0].serial"),
    ({"facts": _with(FACTS, "disks.0.serial", "S" * 300)}, "facts.disks[0].serial"),
    ({"facts": _with(FACTS, "disks.0.name", "../etc")}, "facts.disks[0].name"),
    ({"facts": _with(FACTS, "disks.0.by_path", "/etc/passwd")}, "facts.disks[0].by_path"),
    ({"facts": _with(FACTS, "disks.1.name", "vda")}, "facts.disks[1].name"),
    ({"facts": _with(FACTS, "disks.0.rotational", "yes")}, "facts.disks[0].rotational"),
    ({"facts": _with(FACTS, "disks", [FACTS["disks"][0]] * 300)}, "facts.disks"),
    ({"facts": _with(FACTS, "nics.1.mac", "not-a-mac")}, "facts.nics[1].mac"),
    ({"facts": _with(FACTS, "nics.1.mac", PXE_MAC.upper())}, "facts.nics[1].mac"),
    ({"facts": _with(FACTS, "nics.0.name", "eth0; reboot")}, "facts.nics[0].name"),
    ({"facts": _with(FACTS, "nics.0.speed_mbps", 1.5)}, "facts.nics[0].speed_mbps"),
    ({"facts": _with(FACTS, "nics", [])}, "facts.nics"),  # the booting MAC is missing
    ({"facts": {**FACTS, "gpu": []}}, "facts.gpu"),
    ({"facts": "everything"}, "facts"),
    ({"fact": FACTS}, "fact"),
    ({}, "facts"),
]


@pytest.mark.parametrize("body,field", BAD_REPORTS, ids=[field + str(n) for n, (_, field) in enumerate(BAD_REPORTS)])
def test_bad_reports_are_refused_naming_the_field_and_store_nothing(pxe_env, body, field):
    _discovery(pxe_env)
    response = _report(pxe_env, _inspection_token(pxe_env), body=body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["field"] == field
    assert _machines(pxe_env) == []


def test_oversized_reports_and_bad_tokens_are_refused(pxe_env):
    from pxe import inspection

    _discovery(pxe_env)
    token = _inspection_token(pxe_env)
    huge = _with(FACTS, "dmi.vendor", None)
    huge["padding"] = "x" * inspection.MAX_REPORT_BYTES
    response = pxe_env.client.post("/api/v1/agent/inspection", json={"facts": huge}, headers=_bearer(token))
    assert response.status_code == 400 and response.get_json()["field"] == "body"
    secrets = pxe_env.service.secrets
    for bad in (None, "i.forged-but-well-formed-token-text", token[:-4] + "AAAA", "not-a-token",
                inspection.mint_token(secrets, PXE_MAC, now=1.0)):  # expired long ago
        headers = _bearer(bad) if bad else {}
        response = pxe_env.client.post("/api/v1/agent/inspection", json={"facts": FACTS}, headers=headers)
        assert response.status_code == 401, (bad, response.get_json())
    other = inspection.mint_token(secrets, "52:54:00:00:00:99")  # minted for a MAC the report does not list
    response = _report(pxe_env, other)
    assert response.status_code == 400 and response.get_json()["field"] == "facts.nics"
    assert _machines(pxe_env) == []


def test_a_deploying_agent_refreshes_its_machines_facts(pxe_env):
    from pxe import machines

    machine = machines.create(pxe_env.service.engine, None, name="rack1-node7", macs=[PXE_MAC])
    pxe_env.pending()
    token = pxe_env.boot_token()
    response = _report(pxe_env, token)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["machine"]["id"] == machine["id"]
    assert machines.get(pxe_env.service.engine, machine["id"])["facts"] == FACTS
    bad = _report(pxe_env, token, _with(FACTS, "firmware", 7))
    assert bad.status_code == 400 and bad.get_json()["field"] == "facts.firmware"


def test_a_mac_only_deployment_of_an_unregistered_machine_stores_no_facts(pxe_env):
    pxe_env.pending(mac=OTHER_MAC)
    response = _report(pxe_env, pxe_env.boot_token(OTHER_MAC))
    assert response.status_code == 200 and response.get_json()["machine"] is None
    assert _machines(pxe_env) == []


def test_enlistment_is_announced_to_webhook_subscribers(pxe_env):
    import json

    from sqlalchemy import select

    from pxe import db

    response = pxe_env.client.post("/api/v1/webhooks", headers=pxe_env.admin,
                                   json={"url": "http://127.0.0.1:9/hooks", "event_types": ["machine.created"]})
    assert response.status_code == 201, response.get_json()
    _discovery(pxe_env)
    machine = _report(pxe_env, _inspection_token(pxe_env)).get_json()["machine"]
    with pxe_env.service.engine.connect() as conn:
        events = conn.execute(select(db.webhook_events.c.type, db.webhook_events.c.payload)).all()
    assert [event.type for event in events] == ["machine.created"]
    assert machine["id"] in json.dumps(events[0].payload)
