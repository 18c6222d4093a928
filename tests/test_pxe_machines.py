"""Machines (issue 14) through the real Flask app on SQLite and PostgreSQL: CRUD, filters, refusals that
store nothing, the BMC password kept out of every answer, log and audit row, deployments naming a machine,
and the machine's state following its deployment."""
from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import func, select

from fixtures_pxe import PXE_MAC

PASSWORD = "pw-Zq8#unique-7731"
MAC1, MAC2, MAC3 = "52:54:00:aa:00:01", "52:54:00:aa:00:02", "52:54:00:aa:00:03"
REDFISH = {"driver": "redfish", "address": "https://10.0.0.20:8443", "username": "admin", "password": PASSWORD,
           "verify_tls": False, "system_id": "/redfish/v1/Systems/abc-123"}
SUCCESS = {"success": True, "phase": "finish", "error": None, "log": "done", "root_uuid": "1234-abcd"}


def _add(env, body: dict, expect: int = 201) -> dict:
    response = env.client.post("/api/v1/machines", json=body, headers=env.admin)
    assert response.status_code == expect, response.get_json()
    return response.get_json()


def _machine(env, ref: str) -> dict:
    response = env.client.get(f"/api/v1/machines/{ref}", headers=env.read)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _counts(env) -> tuple[int, int]:
    from pxe import db
    with env.service.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(db.machines)).scalar(),
                conn.execute(select(func.count()).select_from(db.machine_macs)).scalar())


def _raw_row(env, machine_id: str):
    from pxe import db
    with env.service.engine.connect() as conn:
        return conn.execute(select(db.machines).where(db.machines.c.id == machine_id)).mappings().first()


# --- CRUD ---------------------------------------------------------------------------------------------

def test_create_show_list_patch_delete(pxe_env):
    created = pxe_env.client.post("/api/v1/machines", headers=pxe_env.admin, json={
        "name": "Node-01", "macs": ["52-54-00-AA-00-01", MAC2], "bmc": REDFISH, "tags": ["rack1", "gpu"]})
    assert created.status_code == 201, created.get_json()
    machine = created.get_json()
    assert created.headers["Location"] == f"/api/v1/machines/{machine['id']}"
    assert machine["name"] == "node-01" and machine["state"] == "ready"
    assert machine["macs"] == [MAC1, MAC2] and machine["tags"] == ["rack1", "gpu"]
    assert machine["bmc"] == {"driver": "redfish", "address": "https://10.0.0.20:8443", "username": "admin",
                              "verify_tls": False, "system_id": "/redfish/v1/Systems/abc-123", "password_set": True}
    assert machine["current_deployment"] is None and machine["last_deployment"] is None
    assert machine["facts"] is None and machine["power_state"] is None
    assert _machine(pxe_env, machine["id"]) == machine == _machine(pxe_env, "node-01") == _machine(pxe_env, "NODE-01")
    listed = pxe_env.client.get("/api/v1/machines", headers=pxe_env.read).get_json()["machines"]
    assert listed == [machine]

    patched = pxe_env.client.patch(f"/api/v1/machines/{machine['id']}", headers=pxe_env.admin,
                                   json={"name": "node-02", "tags": ["rack2"], "bmc": {"username": "ops"}})
    assert patched.status_code == 200, patched.get_json()
    after = patched.get_json()
    assert after["name"] == "node-02" and after["tags"] == ["rack2"] and after["macs"] == [MAC1, MAC2]
    assert after["bmc"] == {**machine["bmc"], "username": "ops"}  # the password stays: not given
    assert pxe_env.service.secrets.unseal(_raw_row(pxe_env, machine["id"])["bmc_password_sealed"]) == PASSWORD
    assert after["updated_at"] >= machine["updated_at"] and after["created_at"] == machine["created_at"]

    patched = pxe_env.client.patch("/api/v1/machines/node-02", headers=pxe_env.admin,
                                   json={"macs": [MAC3], "bmc": {"password": "new-secret"}})
    assert patched.status_code == 200 and patched.get_json()["macs"] == [MAC3]
    assert pxe_env.service.secrets.unseal(_raw_row(pxe_env, machine["id"])["bmc_password_sealed"]) == "new-secret"
    assert _counts(pxe_env) == (1, 1)

    # another driver starts from nothing: the Redfish address, user and password go
    patched = pxe_env.client.patch("/api/v1/machines/node-02", headers=pxe_env.admin,
                                   json={"bmc": {"driver": "ipmi", "address": "10.0.0.21:623"}})
    assert patched.get_json()["bmc"] == {"driver": "ipmi", "address": "10.0.0.21:623", "username": None,
                                         "verify_tls": None, "system_id": None, "password_set": False}
    assert _raw_row(pxe_env, machine["id"])["bmc_password_sealed"] is None

    assert pxe_env.client.delete("/api/v1/machines/node-02", headers=pxe_env.admin).status_code == 204
    missing = pxe_env.client.get(f"/api/v1/machines/{machine['id']}", headers=pxe_env.read)
    assert missing.status_code == 404 and missing.get_json()["field"] == "id"
    assert _counts(pxe_env) == (0, 0)
    assert pxe_env.client.delete("/api/v1/machines/node-02", headers=pxe_env.admin).status_code == 404


def test_manual_is_the_default_bmc_and_takes_no_credentials(pxe_env):
    machine = _add(pxe_env, {"name": "plain", "macs": [MAC1]})
    assert machine["bmc"] == {"driver": "manual", "address": None, "username": None, "verify_tls": None,
                              "system_id": None, "password_set": False}
    assert machine["tags"] == []
    from pxe import machines
    assert machines.bmc_access(pxe_env.service, machine["id"]) is None


def test_scopes(pxe_env):
    machine = _add(pxe_env, {"name": "n1", "macs": [MAC1]})
    read = pxe_env.read
    assert pxe_env.client.get("/api/v1/machines", headers=read).status_code == 200
    assert pxe_env.client.get("/api/v1/machines/n1", headers=read).status_code == 200
    assert pxe_env.client.post("/api/v1/machines", json={"name": "n2", "macs": [MAC2]}, headers=read).status_code == 403
    assert pxe_env.client.patch("/api/v1/machines/n1", json={"tags": []}, headers=read).status_code == 403
    assert pxe_env.client.delete("/api/v1/machines/n1", headers=read).status_code == 403
    for method in ("get", "post", "patch", "delete"):
        path = "/api/v1/machines" if method in ("get", "post") else f"/api/v1/machines/{machine['id']}"
        assert getattr(pxe_env.client, method)(path, headers={}).status_code == 401
    assert _counts(pxe_env) == (1, 1) and _machine(pxe_env, "n1")["tags"] == []


# --- filters ------------------------------------------------------------------------------------------

FACTS_BIG = {"cpus": {"count": 32, "model": "x"}, "memory_mib": 262144, "firmware": "uefi",
             "disks": [{"name": "sda", "size_bytes": 960 * 10**9}, {"name": "sdb", "size_bytes": 4 * 10**12}],
             "nics": [{"mac": MAC1, "name": "eno1"}]}
FACTS_SMALL = {"cpus": {"count": 2}, "memory_mib": 2048, "firmware": "bios",
               "disks": [{"name": "vda", "size_bytes": 20 * 2**30}]}


def test_list_filters(pxe_env):
    from pxe import machines
    big = _add(pxe_env, {"name": "big", "macs": [MAC1], "tags": ["gpu", "rack1"]})
    small = _add(pxe_env, {"name": "small", "macs": [MAC2], "tags": ["rack1"]})
    _add(pxe_env, {"name": "unknown", "macs": [MAC3]})
    assert machines.set_facts(pxe_env.service.engine, big["id"], FACTS_BIG)
    assert machines.set_facts(pxe_env.service.engine, small["id"], FACTS_SMALL)
    assert not machines.set_facts(pxe_env.service.engine, "0" * 8 + "-0000-0000-0000-" + "0" * 12, FACTS_SMALL)

    def names(query: str) -> list[str]:
        response = pxe_env.client.get(f"/api/v1/machines?{query}", headers=pxe_env.read)
        assert response.status_code == 200, response.get_json()
        return [m["name"] for m in response.get_json()["machines"]]

    assert names("") == ["big", "small", "unknown"]
    assert names("tag=rack1") == ["big", "small"] and names("tag=gpu") == ["big"] and names("tag=none") == []
    assert names("mac=52-54-00-AA-00-02") == ["small"]
    assert names("state=ready") == ["big", "small", "unknown"] and names("state=new") == []
    assert names("min_memory_mib=4096") == ["big"] and names("min_memory_mib=2048") == ["big", "small"]
    assert names("min_disks=2") == ["big"] and names("min_disks=1") == ["big", "small"]
    assert names("min_cpus=4") == ["big"]
    assert names(f"min_disk_bytes={2 * 10**12}") == ["big"]
    assert names("firmware=bios") == ["small"] and names("firmware=uefi&tag=rack1") == ["big"]
    shown = _machine(pxe_env, "big")
    assert shown["facts"] == FACTS_BIG and shown["facts_at"] is not None
    for query, field in (("colour=red", "colour"), ("state=gone", "state"), ("min_disks=-1", "min_disks"),
                         ("min_memory_mib=lots", "min_memory_mib"), ("mac=nope", "mac"), ("firmware=efi", "firmware")):
        response = pxe_env.client.get(f"/api/v1/machines?{query}", headers=pxe_env.read)
        assert response.status_code == 400 and response.get_json()["field"] == field, query


# --- refusals store nothing ---------------------------------------------------------------------------

def test_duplicate_mac_across_machines_is_409_naming_the_mac_and_its_machine(pxe_env):
    first = _add(pxe_env, {"name": "first", "macs": [MAC1, MAC2]})
    before = _counts(pxe_env)
    response = pxe_env.client.post("/api/v1/machines", headers=pxe_env.admin,
                                   json={"name": "second", "macs": [MAC3, "52:54:00:AA:00:02"], "bmc": REDFISH})
    assert response.status_code == 409
    body = response.get_json()
    assert body["field"] == "macs[1]" and body["mac"] == MAC2 and body["machine"] == first["id"]
    assert MAC2 in body["error"] and "first" in body["error"]
    assert _counts(pxe_env) == before
    assert pxe_env.client.get("/api/v1/machines/second", headers=pxe_env.read).status_code == 404

    response = pxe_env.client.post("/api/v1/machines", headers=pxe_env.admin, json={"name": "first", "macs": [MAC3]})
    assert response.status_code == 409 and response.get_json()["field"] == "name"
    assert _counts(pxe_env) == before

    second = _add(pxe_env, {"name": "second", "macs": [MAC3]})
    response = pxe_env.client.patch("/api/v1/machines/second", headers=pxe_env.admin, json={"macs": [MAC3, MAC1]})
    assert response.status_code == 409 and response.get_json()["mac"] == MAC1
    response = pxe_env.client.patch("/api/v1/machines/second", headers=pxe_env.admin, json={"name": "first"})
    assert response.status_code == 409 and response.get_json()["field"] == "name"
    assert _machine(pxe_env, second["id"])["macs"] == [MAC3] and _machine(pxe_env, second["id"])["name"] == "second"


def _bmc(**fields) -> dict:
    return {"name": "bad", "macs": [MAC1], "bmc": fields}


BAD_BODIES = [
    (_bmc(driver="redfish", address="file:///etc/passwd"), "bmc.address"),
    (_bmc(driver="redfish", address="javascript:alert(1)"), "bmc.address"),
    (_bmc(driver="redfish", address="http://a b"), "bmc.address"),
    (_bmc(driver="redfish", address="http://h/;rm -rf /"), "bmc.address"),
    (_bmc(driver="redfish", address="http://h;rm"), "bmc.address"),
    (_bmc(driver="redfish", address="http://h$(reboot)"), "bmc.address"),
    (_bmc(driver="redfish", address="http://h`id`"), "bmc.address"),
    (_bmc(driver="redfish", address="http://h\nHost: evil"), "bmc.address"),
    (_bmc(driver="redfish", address="http://h\r\n"), "bmc.address"),
    (_bmc(driver="redfish", address="http://user:pw@h"), "bmc.address"),
    (_bmc(driver="redfish", address="http://h/redfish/v1"), "bmc.address"),
    (_bmc(driver="redfish", address="http://h?x=1"), "bmc.address"),
    (_bmc(driver="redfish", address="http://h#frag"), "bmc.address"),
    (_bmc(driver="redfish", address="http://h:0"), "bmc.address"),
    (_bmc(driver="redfish", address="http://h:70000"), "bmc.address"),
    (_bmc(driver="redfish", address="http://999.1.1.1"), "bmc.address"),
    (_bmc(driver="redfish", address="http://[::g]"), "bmc.address"),
    (_bmc(driver="redfish", address="http://" + "a" * 300), "bmc.address"),
    (_bmc(driver="redfish", address="ftp://h"), "bmc.address"),
    (_bmc(driver="redfish", address=""), "bmc.address"),
    (_bmc(driver="redfish"), "bmc.address"),
    (_bmc(driver="ipmi", address="http://10.0.0.1"), "bmc.address"),
    (_bmc(driver="ipmi", address="10.0.0.1;reboot"), "bmc.address"),
    (_bmc(driver="ipmi", address="-H10.0.0.1"), "bmc.address"),
    (_bmc(driver="ipmi", address="h:port"), "bmc.address"),
    (_bmc(driver="ipmi", address="10.0.0.1 -P x"), "bmc.address"),
    (_bmc(driver="ipmi", address="10.0.0.1", verify_tls=True), "bmc.verify_tls"),
    (_bmc(driver="redfish", address="https://h", username="u" * 65), "bmc.username"),
    (_bmc(driver="redfish", address="https://h", password="p" * 129), "bmc.password"),
    (_bmc(driver="ipmi", address="h", password="p" * 21), "bmc.password"),  # IPMI 2.0: at most 20 bytes
    (_bmc(driver="ipmi", address="h", password="a\nb"), "bmc.password"),
    (_bmc(driver="redfish", address="https://h", system_id="../../etc"), "bmc.system_id"),
    (_bmc(driver="redfish", address="https://h", verify_tls="no"), "bmc.verify_tls"),
    (_bmc(driver="manual", address="10.0.0.1"), "bmc.address"),
    (_bmc(driver="wol", address="10.0.0.1"), "bmc.driver"),
    (_bmc(address="10.0.0.1"), "bmc.driver"),
    (_bmc(driver="ipmi", address="h", port=623), "bmc.port"),
    ({"name": "bad", "macs": [MAC1], "bmc": None}, "bmc"),
    ({"name": "bad", "macs": [MAC1], "bmc": "redfish://h"}, "bmc"),
    ({"name": "bad", "macs": []}, "macs"),
    ({"name": "bad", "macs": MAC1}, "macs"),
    ({"name": "bad", "macs": [MAC1, "zz:zz"]}, "macs[1]"),
    ({"name": "bad", "macs": [MAC1, MAC1.upper()]}, "macs[1]"),
    ({"name": "bad", "macs": [MAC1], "tags": ["ok", "not ok"]}, "tags[1]"),
    ({"name": "bad", "macs": [MAC1], "tags": ["x" * 65]}, "tags[0]"),
    ({"name": "bad", "macs": [MAC1], "tags": ["a", "a"]}, "tags[1]"),
    ({"name": "bad name", "macs": [MAC1]}, "name"),
    ({"name": "n" * 65, "macs": [MAC1]}, "name"),
    ({"name": "12345678-1234-1234-1234-123456789abc", "macs": [MAC1]}, "name"),
    ({"macs": [MAC1]}, "name"),
    ({"name": "bad"}, "macs"),
    ({"name": "bad", "macs": [MAC1], "state": "ready"}, "state"),
    ({"name": "bad", "macs": [MAC1], "facts": {}}, "facts"),
    ([], "body"),
]


@pytest.mark.parametrize("body,field", BAD_BODIES, ids=[f"{i}-{field}" for i, (_, field) in enumerate(BAD_BODIES)])
def test_bad_input_is_400_naming_the_field_and_stores_nothing(pxe_env, body, field):
    response = pxe_env.client.post("/api/v1/machines", json=body, headers=pxe_env.admin)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["field"] == field
    assert _counts(pxe_env) == (0, 0)


@pytest.mark.parametrize("change,field", [
    ({"bmc": {"address": "javascript:x"}}, "bmc.address"),
    ({"bmc": {"password": "p" * 129}}, "bmc.password"),
    ({"bmc": {"driver": "nope"}}, "bmc.driver"),
    ({"macs": []}, "macs"),
    ({"name": None}, "name"),
    ({"state": "deployed"}, "state"),
    ({"owner": "x"}, "owner"),
])
def test_bad_patch_is_400_and_changes_nothing(pxe_env, change, field):
    machine = _add(pxe_env, {"name": "keep", "macs": [MAC1], "bmc": REDFISH})
    response = pxe_env.client.patch("/api/v1/machines/keep", json=change, headers=pxe_env.admin)
    assert response.status_code == 400 and response.get_json()["field"] == field, response.get_json()
    assert _machine(pxe_env, "keep") == machine


@pytest.mark.parametrize("bmc,address", [
    ({"driver": "redfish", "address": "http://bmc-01.lab.example:8000/"}, "http://bmc-01.lab.example:8000"),
    ({"driver": "redfish", "address": "https://[fd00::20]:8443"}, "https://[fd00::20]:8443"),
    ({"driver": "redfish", "address": "https://10.0.0.20"}, "https://10.0.0.20"),
    ({"driver": "ipmi", "address": "10.0.0.21"}, "10.0.0.21"),
    ({"driver": "ipmi", "address": "bmc-02:6230", "username": "ADMIN", "password": "x y"}, "bmc-02:6230"),
    ({"driver": "ipmi", "address": "fd00::21"}, "fd00::21"),
    ({"driver": "ipmi", "address": "[fd00::21]:623"}, "[fd00::21]:623"),
])
def test_good_bmc_addresses(pxe_env, bmc, address):
    machine = _add(pxe_env, {"name": "ok", "macs": [MAC1], "bmc": bmc})
    assert machine["bmc"]["address"] == address
    assert machine["bmc"]["verify_tls"] is (True if bmc["driver"] == "redfish" else None)


# --- the password -------------------------------------------------------------------------------------

def test_bmc_password_is_only_ciphertext_at_rest_and_never_answered_logged_or_audited(pxe_env, caplog):
    from pxe import audit, machines
    caplog.set_level(logging.DEBUG)
    answers = []

    def call(method: str, path: str, **kwargs):
        response = getattr(pxe_env.client, method)(path, headers=pxe_env.admin, **kwargs)
        answers.append(response.get_data(as_text=True))
        return response

    machine = call("post", "/api/v1/machines", json={"name": "secret", "macs": [MAC1], "bmc": REDFISH}).get_json()
    call("get", "/api/v1/machines")
    call("get", f"/api/v1/machines/{machine['id']}")
    call("patch", "/api/v1/machines/secret", json={"tags": ["t"]})
    call("patch", "/api/v1/machines/secret", json={"bmc": {"password": PASSWORD + "-2"}})
    call("post", "/api/v1/machines", json={"name": "other", "macs": [MAC1], "bmc": REDFISH})  # 409
    call("post", "/api/v1/machines", json={"name": "other", "macs": [MAC2],
                                           "bmc": {**REDFISH, "address": "javascript:x"}})  # 400
    dep = call("post", "/api/v1/deployments", json={"machine": "secret", "image": "tiny"}).get_json()
    call("get", f"/api/v1/deployments/{dep['id']}")
    call("get", "/api/v1/openapi.json")
    answers.append(pxe_env.client.get("/metrics").get_data(as_text=True))

    sealed = _raw_row(pxe_env, machine["id"])["bmc_password_sealed"]
    assert PASSWORD not in sealed and pxe_env.service.secrets.unseal(sealed) == PASSWORD + "-2"
    assert machines.bmc_access(pxe_env.service, machine["id"])["password"] == PASSWORD + "-2"
    audit_rows = json.dumps(audit.entries(pxe_env.service.engine))
    assert "POST /api/v1/machines" in audit_rows and "PATCH /api/v1/machines/<machine_id>" in audit_rows
    for text in (*answers, caplog.text, audit_rows):
        assert PASSWORD not in text
    from pxe import db
    with pxe_env.service.engine.connect() as conn:  # nothing else in the database holds it either
        for table in db.metadata.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                assert PASSWORD not in json.dumps({k: str(v) for k, v in row.items()}), table.name


def test_bmc_access_gives_the_power_drivers_what_they_need(pxe_env):
    from pxe import machines
    from pxe.errors import NotFound
    machine = _add(pxe_env, {"name": "power", "macs": [MAC1], "bmc": REDFISH})
    assert machines.bmc_access(pxe_env.service, machine["id"]) == {
        "driver": "redfish", "address": "https://10.0.0.20:8443", "username": "admin", "password": PASSWORD,
        "verify_tls": False, "system_id": "/redfish/v1/Systems/abc-123"}
    ipmi = _add(pxe_env, {"name": "ipmi", "macs": [MAC2], "bmc": {"driver": "ipmi", "address": "10.0.0.9"}})
    assert machines.bmc_access(pxe_env.service, ipmi["id"]) == {
        "driver": "ipmi", "address": "10.0.0.9", "username": None, "password": None, "verify_tls": None,
        "system_id": None}
    with pytest.raises(NotFound):
        machines.bmc_access(pxe_env.service, "nope")


# --- deployments of machines --------------------------------------------------------------------------

def _boot_and_install(env, mac: str, dep_id: str, success: bool = True) -> None:
    token = env.boot_token(mac)
    assert token.startswith(dep_id + ".")
    auth = {"Authorization": f"Bearer {token}"}
    assert env.client.get("/api/v1/agent/plan", headers=auth).status_code == 200
    result = SUCCESS if success else {**SUCCESS, "success": False, "phase": "disk", "error": "no disk matches"}
    response = env.client.post("/api/v1/agent/result", json=result, headers=auth)
    assert response.status_code == 200, response.get_json()


def _state(env, ref: str) -> tuple[str, dict | None, dict | None]:
    machine = _machine(env, ref)
    return machine["state"], machine["current_deployment"], machine["last_deployment"]


def test_deployment_by_machine_id_and_name(pxe_env):
    machine = _add(pxe_env, {"name": "target", "macs": [MAC1]})
    by_id = pxe_env.post_deployment({"machine": machine["id"], "image": "tiny"})
    assert by_id.status_code == 201, by_id.get_json()
    dep = by_id.get_json()
    assert dep["machine"] == machine["id"] and dep["mac"] == MAC1 and dep["request"]["machine"] == machine["id"]
    assert _state(pxe_env, "target") == ("deploying", {"id": dep["id"], "state": "pending"}, None)
    # one open deployment per machine: a second is refused, by name too
    again = pxe_env.post_deployment({"machine": "target", "image": "tiny"})
    assert again.status_code == 409 and again.get_json()["field"] == "mac"
    assert pxe_env.client.delete(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.admin).status_code == 200
    assert _state(pxe_env, "target") == ("ready", None, {"id": dep["id"], "state": "cancelled"})
    by_name = pxe_env.post_deployment({"machine": "Target", "mac": MAC1.upper(), "image": "tiny"})
    assert by_name.status_code == 201 and by_name.get_json()["machine"] == machine["id"]
    listed = pxe_env.client.get("/api/v1/deployments", headers=pxe_env.read).get_json()["deployments"]
    assert {d["machine"] for d in listed} == {machine["id"]}


def test_deployment_naming_a_machine_refusals(pxe_env):
    _add(pxe_env, {"name": "two", "macs": [MAC1, MAC2]})
    _add(pxe_env, {"name": "busy", "macs": [MAC3]})
    cases = [
        ({"machine": "nobody", "image": "tiny"}, 404, "machine"),
        ({"machine": "two", "image": "tiny"}, 400, "mac"),  # two MACs: which one network-boots?
        ({"machine": "two", "mac": MAC3, "image": "tiny"}, 400, "mac"),
        ({"machine": None, "mac": MAC1, "image": "tiny"}, 400, "machine"),
        ({"machine": 7, "image": "tiny"}, 400, "machine"),
        ({"image": "tiny"}, 400, "mac"),
    ]
    for body, status, field in cases:
        response = pxe_env.post_deployment(body)
        assert response.status_code == status and response.get_json()["field"] == field, (body, response.get_json())
    assert pxe_env.client.get("/api/v1/deployments", headers=pxe_env.read).get_json()["deployments"] == []
    assert pxe_env.post_deployment({"machine": "two", "mac": MAC2, "image": "tiny"}).status_code == 201
    # a second open deployment of one machine through its other MAC (MAC-only) is refused too
    response = pxe_env.post_deployment({"mac": MAC1, "image": "tiny"})
    assert response.status_code == 409 and response.get_json()["field"] == "machine"
    assert len(pxe_env.client.get("/api/v1/deployments", headers=pxe_env.read).get_json()["deployments"]) == 1


def test_mac_only_deployment_keeps_working_and_links_to_the_macs_machine(pxe_env):
    alone = pxe_env.pending()  # PXE_MAC: no machine
    assert alone["machine"] is None
    machine = _add(pxe_env, {"name": "owner", "macs": [MAC1]})
    linked = pxe_env.pending(mac=MAC1)
    assert linked["machine"] == machine["id"]
    assert _state(pxe_env, "owner")[:2] == ("deploying", {"id": linked["id"], "state": "pending"})
    assert PXE_MAC not in _machine(pxe_env, "owner")["macs"]


def test_machine_state_follows_its_deployment_to_active(pxe_env):
    from pxe import deployments
    machine = _add(pxe_env, {"name": "flow", "macs": [MAC1]})
    dep = pxe_env.post_deployment({"machine": "flow", "image": "tiny"}).get_json()
    token = pxe_env.boot_token(MAC1)
    assert _state(pxe_env, "flow") == ("deploying", {"id": dep["id"], "state": "booting"}, None)
    auth = {"Authorization": f"Bearer {token}"}
    pxe_env.client.get("/api/v1/agent/plan", headers=auth)
    assert _state(pxe_env, "flow")[1] == {"id": dep["id"], "state": "installing"}
    assert pxe_env.client.post("/api/v1/agent/result", json=SUCCESS, headers=auth).status_code == 200
    assert _state(pxe_env, "flow") == ("deploying", {"id": dep["id"], "state": "installed"}, None)
    deleting = pxe_env.client.delete("/api/v1/machines/flow", headers=pxe_env.admin)  # still open: installed
    assert deleting.status_code == 409 and deleting.get_json()["deployment"] == dep["id"]
    assert deployments.finish_activation(pxe_env.service.engine, dep["id"], True, "host runs image tiny")
    assert _state(pxe_env, "flow") == ("deployed", None, {"id": dep["id"], "state": "active"})
    # the next deployment of a deployed machine
    second = pxe_env.post_deployment({"machine": machine["id"], "image": "tiny"}).get_json()
    assert _state(pxe_env, "flow") == ("deploying", {"id": second["id"], "state": "pending"},
                                       {"id": dep["id"], "state": "active"})


def test_machine_fails_with_its_deployment_and_recovers(pxe_env):
    from pxe import deployments
    _add(pxe_env, {"name": "flaky", "macs": [MAC1]})
    dep = pxe_env.post_deployment({"machine": "flaky", "image": "tiny"}).get_json()
    _boot_and_install(pxe_env, MAC1, dep["id"], success=False)
    assert _state(pxe_env, "flaky") == ("failed", None, {"id": dep["id"], "state": "failed"})
    assert pxe_env.client.patch("/api/v1/machines/flaky", json={"state": "ready"},
                                headers=pxe_env.admin).get_json()["state"] == "ready"
    # a silent agent: the reaper fails the deployment and the machine with it
    dep = pxe_env.post_deployment({"machine": "flaky", "image": "tiny"}).get_json()
    pxe_env.boot_token(MAC1)
    row = deployments.get_row(pxe_env.service.engine, dep["id"])
    assert deployments.reap_silent(pxe_env.service.engine, 10, now=row["last_seen_at"] + 11) == [dep["id"]]
    assert _state(pxe_env, "flaky") == ("failed", None, {"id": dep["id"], "state": "failed"})
    # an activation check that fails
    dep = pxe_env.post_deployment({"machine": "flaky", "image": "tiny"}).get_json()
    _boot_and_install(pxe_env, MAC1, dep["id"])
    assert deployments.finish_activation(pxe_env.service.engine, dep["id"], False, "no answer on port 22")
    assert _state(pxe_env, "flaky") == ("failed", None, {"id": dep["id"], "state": "failed"})


def test_delete_refused_while_open_and_macs_locked(pxe_env):
    _add(pxe_env, {"name": "busy", "macs": [MAC1]})
    dep = pxe_env.post_deployment({"machine": "busy", "image": "tiny"}).get_json()
    response = pxe_env.client.delete("/api/v1/machines/busy", headers=pxe_env.admin)
    assert response.status_code == 409 and dep["id"] in response.get_json()["error"]
    response = pxe_env.client.patch("/api/v1/machines/busy", json={"macs": [MAC2]}, headers=pxe_env.admin)
    assert response.status_code == 409 and response.get_json()["field"] == "macs"
    response = pxe_env.client.patch("/api/v1/machines/busy", json={"state": "ready"}, headers=pxe_env.admin)
    assert response.status_code == 409 and response.get_json()["state"] == "deploying"
    tagged = pxe_env.client.patch("/api/v1/machines/busy", json={"tags": ["ok"]}, headers=pxe_env.admin)
    assert tagged.status_code == 200
    assert _counts(pxe_env) == (1, 1) and _machine(pxe_env, "busy")["macs"] == [MAC1]
    pxe_env.client.delete(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.admin)
    assert pxe_env.client.delete("/api/v1/machines/busy", headers=pxe_env.admin).status_code == 204
    # the deployment outlives its machine and still names it
    assert pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()["machine"] == \
        dep["machine"]


def test_an_enlisted_new_machine_can_be_taken_into_use_or_deployed(pxe_env):
    from pxe import machines
    from pxe.errors import Conflict
    engine = pxe_env.service.engine
    new = machines.create(engine, None, name="new-525400aa0001", macs=[MAC1], state="new", facts=FACTS_SMALL)
    assert new["state"] == "new" and new["facts"] == FACTS_SMALL and new["facts_at"] is not None
    assert machines.find_by_mac(engine, "52:54:00:AA:00:01")["id"] == new["id"]
    assert machines.find_by_mac(engine, MAC2) is None and machines.find_by_mac(engine, "junk") is None
    with pytest.raises(Conflict):
        machines.create(engine, None, name="new-525400aa0001", macs=[MAC2], state="new")
    with engine.begin() as conn:  # inside the caller's transaction
        assert machines.find_by_mac(conn, MAC1)["name"] == "new-525400aa0001"
        other = machines.create(conn, None, name="new-525400aa0002", macs=[MAC2], state="new")
    assert _machine(pxe_env, other["id"])["state"] == "new"
    dep = pxe_env.post_deployment({"machine": new["id"], "image": "tiny"}).get_json()
    assert _state(pxe_env, new["id"])[:2] == ("deploying", {"id": dep["id"], "state": "pending"})
    response = pxe_env.client.patch(f"/api/v1/machines/{other['id']}", json={"state": "ready"}, headers=pxe_env.admin)
    assert response.get_json()["state"] == "ready"
    response = pxe_env.client.patch(f"/api/v1/machines/{other['id']}", json={"state": "ready"}, headers=pxe_env.admin)
    assert response.status_code == 200  # already ready: nothing to do


# --- concurrency: the database decides ----------------------------------------------------------------

def _race(count: int, work) -> list:
    import threading
    barrier, results = threading.Barrier(count), [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 (the outcome is what the test reads)
            results[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_registrations_of_one_mac_make_one_machine(pxe_env):
    from pxe import machines
    from pxe.errors import Conflict
    results = _race(6, lambda i: machines.create(pxe_env.service.engine, None, name=f"racer-{i}", macs=[MAC1]))
    made = [r for r in results if isinstance(r, dict)]
    assert len(made) == 1 and all(isinstance(r, Conflict) and r.details["mac"] == MAC1
                                  for r in results if r is not made[0]), results
    assert _counts(pxe_env) == (1, 1)


def test_concurrent_deployments_of_one_machine_through_two_macs_make_one(pxe_env):
    from pxe import deployments
    from pxe.errors import Conflict
    machine = _add(pxe_env, {"name": "twice", "macs": [MAC1, MAC2]})
    results = _race(2, lambda i: deployments.create(pxe_env.service.engine, {"mac": (MAC1, MAC2)[i], "image": "tiny"},
                                                    None, None, machine_id=machine["id"]))
    made = [r for r in results if isinstance(r, tuple)]
    assert len(made) == 1 and any(isinstance(r, Conflict) for r in results), results
    assert _state(pxe_env, "twice")[1] == {"id": made[0][0]["id"], "state": "pending"}
    assert len(pxe_env.client.get("/api/v1/deployments", headers=pxe_env.read).get_json()["deployments"]) == 1
