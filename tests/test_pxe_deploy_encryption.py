"""Deployments of encrypted and multi-disk layouts (issue 13, plan 1.4) through the real Flask app on SQLite and
PostgreSQL: the LUKS passphrase is taken, stored only as ciphertext, handed to the agent in its plan and nowhere
else (answers, logs, audit, events, webhook payloads, metrics, any other table); an encrypted layout without one,
or one for a layout that encrypts nothing, is refused at `encryption_passphrase` storing nothing; per-disk hints
(`disks`) are checked field by field and only for names the kickstart uses."""
from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import func, select

from fixtures_pxe import PXE_MAC

PASSPHRASE = "luks-Vq7#unique-5519 with spaces"
ENCRYPTED_KS = """\
zerombr
clearpart --all --initlabel --drives=sda,sdb
part /boot/efi --fstype=efi --size=200 --ondisk=sda
part /boot --fstype=ext4 --size=512 --ondisk=sda
part / --fstype=ext4 --size=2000 --grow --encrypted --ondisk=sda
part /srv --fstype=ext4 --size=1000 --grow --encrypted --ondisk=sdb
"""
PLAIN_KS = "zerombr\nclearpart --all --initlabel\npart / --fstype=ext4 --size=2000 --grow --ondisk=sda\n"
DISKS = {"sda": {"serial": "S-ONE"}, "sdb": {"wwn": "0x5000c500a1b2c3d4", "min_size_gib": 10, "rotational": False}}
SUCCESS = {"success": True, "phase": "finish", "error": None, "log": "agent log\n", "root_uuid": "0f3c-77aa",
           "time": 2.0}


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _deployment_count(env) -> int:
    from pxe import db
    with env.service.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(db.deployments)).scalar()


def _sealed(env, dep_id: str) -> str | None:
    from pxe import db
    with env.service.engine.connect() as conn:
        return conn.execute(select(db.deployments.c.encryption_passphrase_sealed)
                            .where(db.deployments.c.id == dep_id)).scalar()


def _refused(env, body: dict, field: str) -> dict:
    before = _deployment_count(env)
    response = env.post_deployment({"mac": PXE_MAC, "image": "tiny", **body})
    assert response.status_code == 400, response.get_json()
    answer = response.get_json()
    assert answer["field"] == field, answer
    assert _deployment_count(env) == before  # nothing stored
    return answer


def test_the_passphrase_reaches_the_agents_plan_and_nothing_else(pxe_env, caplog):
    from pxe import audit, db
    caplog.set_level(logging.DEBUG)
    webhook = pxe_env.client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"},
                                  headers=pxe_env.admin)
    assert webhook.status_code == 201, webhook.get_json()
    answers = []

    def call(method: str, path: str, headers=None, **kwargs):
        response = getattr(pxe_env.client, method)(path, headers=headers or pxe_env.admin, **kwargs)
        answers.append(response.get_data(as_text=True))
        return response

    created = call("post", "/api/v1/deployments", json={"mac": PXE_MAC, "image": "tiny", "kickstart": ENCRYPTED_KS,
                                                         "disks": DISKS, "encryption_passphrase": PASSPHRASE})
    assert created.status_code == 201, created.get_json()
    dep = created.get_json()
    assert dep["encryption_passphrase_set"] is True and "encryption_passphrase" not in dep["request"]
    assert dep["request"]["disks"]["sdb"] == {"serial": None, "wwn": "0x5000c500a1b2c3d4", "by_path": None,
                                              "model": None, "name": None, "min_size_gib": 10,
                                              "max_size_gib": None, "rotational": False}
    shown = call("get", f"/api/v1/deployments/{dep['id']}").get_json()
    assert shown["encryption_passphrase_set"] is True
    listed = call("get", "/api/v1/deployments").get_json()["deployments"]
    assert [d["encryption_passphrase_set"] for d in listed] == [True]

    token = pxe_env.boot_token()
    plan = pxe_env.client.get("/api/v1/agent/plan", headers=_bearer(token)).get_json()
    assert plan["encryption"] == {"passphrase": PASSPHRASE}
    assert plan["disks"]["sda"]["serial"] == "S-ONE" and plan["disks"]["sdb"]["min_size_gib"] == 10
    assert [p["mountpoint"] for p in plan["storage"]["partitions"] if p.get("encrypted")] == ["/", "/srv"]
    events = {"phase": "stream", "message": "streaming image", "bytes_done": 1, "bytes_total": 2, "time": 1.0}
    assert pxe_env.client.post("/api/v1/agent/events", json=events, headers=_bearer(token)).status_code == 200
    assert pxe_env.client.post("/api/v1/agent/result", json=SUCCESS, headers=_bearer(token)).status_code == 200
    call("get", f"/api/v1/deployments/{dep['id']}")
    call("get", f"/api/v1/deployments/{dep['id']}/log")
    call("get", "/api/v1/openapi.json")
    answers.append(pxe_env.client.get("/metrics").get_data(as_text=True))

    sealed = _sealed(pxe_env, dep["id"])
    assert PASSPHRASE not in sealed and pxe_env.service.secrets.unseal(sealed) == PASSPHRASE
    audit_rows = json.dumps(audit.entries(pxe_env.service.engine))
    assert "POST /api/v1/deployments" in audit_rows
    with pxe_env.service.engine.connect() as conn:
        payloads = [row.payload for row in conn.execute(select(db.webhook_events.c.payload))]
        assert {p["state"] for p in payloads} >= {"pending", "booting", "installing", "installed"}
        for text in (*answers, caplog.text, audit_rows, json.dumps(payloads)):
            assert PASSPHRASE not in text
        for table in db.metadata.sorted_tables:  # no other column holds it either
            for row in conn.execute(select(table)).mappings():
                assert PASSPHRASE not in json.dumps({k: str(v) for k, v in row.items()}), table.name


def test_an_encrypted_layout_without_a_passphrase_is_refused_at_the_field(pxe_env):
    answer = _refused(pxe_env, {"kickstart": ENCRYPTED_KS}, "encryption_passphrase")
    assert "kickstart lines 5, 6" in answer["error"] and "--encrypted" in answer["error"]
    autopart = "zerombr\nclearpart --all\nautopart --type=lvm --encrypted\n"
    assert "kickstart line 3" in _refused(pxe_env, {"kickstart": autopart}, "encryption_passphrase")["error"]


@pytest.mark.parametrize("body", [{}, {"kickstart": PLAIN_KS}], ids=["default-layout", "plain-kickstart"])
def test_a_passphrase_for_a_layout_that_encrypts_nothing_is_refused(pxe_env, body):
    answer = _refused(pxe_env, {**body, "encryption_passphrase": PASSPHRASE}, "encryption_passphrase")
    assert "encrypts nothing" in answer["error"] and PASSPHRASE not in json.dumps(answer)


@pytest.mark.parametrize("passphrase", ["", "tab\there", "x" * 513, 42, ["list"]])
def test_malformed_passphrases_are_refused_without_quoting_them(pxe_env, passphrase):
    answer = _refused(pxe_env, {"kickstart": ENCRYPTED_KS, "encryption_passphrase": passphrase},
                      "encryption_passphrase")
    assert str(passphrase) not in answer["error"] or passphrase == ""


@pytest.mark.parametrize("disks, field", [
    ({"sda": {"min_size_gib": -1}}, "disks.sda.min_size_gib"),
    ({"sda": {"min_size_gib": 20, "max_size_gib": 10}}, "disks.sda.min_size_gib"),
    ({"sdb": {"colour": "blue"}}, "disks.sdb.colour"),
    ({"sdb": {"rotational": "maybe"}}, "disks.sdb.rotational"),
    ({"sdb": {"serial": "a\nb"}}, "disks.sdb.serial"),
    ({"sdb": "serial=ABC"}, "disks.sdb"),
    (["sda"], "disks"),
    ({"sdc": {"serial": "S3"}}, "disks.sdc"),  # the kickstart names sda and sdb only
])
def test_bad_disk_hints_are_refused_at_the_field(pxe_env, disks, field):
    _refused(pxe_env, {"kickstart": ENCRYPTED_KS, "encryption_passphrase": PASSPHRASE, "disks": disks}, field)


def test_disk_hints_need_a_kickstart_that_names_disks(pxe_env):
    answer = _refused(pxe_env, {"disks": {"sda": {"serial": "S1"}}}, "disks.sda")
    assert "use disk_hints" in answer["error"]
    dep = pxe_env.pending(kickstart=PLAIN_KS, disks={"sda": {"serial": "S1"}})
    assert dep["encryption_passphrase_set"] is False
    plan = pxe_env.client.get("/api/v1/agent/plan", headers=_bearer(pxe_env.boot_token())).get_json()
    assert plan["disks"]["sda"]["serial"] == "S1" and "encryption" not in plan


def test_a_replay_must_carry_the_same_passphrase(pxe_env):
    body = {"mac": PXE_MAC, "image": "tiny", "kickstart": ENCRYPTED_KS, "encryption_passphrase": PASSPHRASE}
    first = pxe_env.post_deployment(body, **{"Idempotency-Key": "ticket-1"})
    assert first.status_code == 201, first.get_json()
    again = pxe_env.post_deployment(body, **{"Idempotency-Key": "ticket-1"})
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    other = pxe_env.post_deployment({**body, "encryption_passphrase": PASSPHRASE + "!"},
                                    **{"Idempotency-Key": "ticket-1"})
    assert other.status_code == 409 and other.get_json()["field"] == "Idempotency-Key"
    assert PASSPHRASE not in other.get_data(as_text=True)
    assert _deployment_count(pxe_env) == 1
