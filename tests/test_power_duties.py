"""The supervisor's power duties and POST /api/v1/machines/{id}/power, on a real service (Flask, SQLite and
PostgreSQL) in front of a real HTTP server answering like a Redfish BMC (tests/power_stub.py)."""
from __future__ import annotations

import base64
import json
import logging
import socket
import time

import pytest
from sqlalchemy import select

from pxe import db, deployments, machines, power_duties, supervisor
from pxe.power import guard

from fixtures_pxe import PXE_MAC
from power_stub import RedfishStub

PASSWORD = "Pw-for-the-BMC-7d1e"


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(guard, "BACKOFF_BASE", 0.01)


@pytest.fixture
def stub():
    with RedfishStub(password=PASSWORD) as server:
        yield server


def register(env, address: str, *, name: str = "node1", password: str = PASSWORD, mac: str = PXE_MAC,
             driver: str = "redfish") -> str:
    bmc = ({"driver": "manual"} if driver == "manual" else
           {"driver": driver, "address": address, "username": "admin", "password": password})
    return machines.create(env.service.engine, env.service.secrets, name=name, macs=[mac], bmc=bmc)["id"]


def deploy(env, machine: str) -> dict:
    response = env.post_deployment({"machine": machine, "image": "tiny"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def sweep(env, now: float | None = None) -> None:
    supervisor.tick(env.service, now)
    power_duties.drain(timeout=60)


def row(env, dep_id: str):
    return deployments.get_row(env.service.engine, dep_id)


def machine_row(env, machine_id: str):
    return machines.get_row(env.service.engine, machine_id)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_deployment_of_a_bmc_machine_is_powered_on_once_booting_from_the_network(pxe_env, stub):
    machine = register(pxe_env, stub.url)
    dep = deploy(pxe_env, machine)
    sweep(pxe_env)
    assert stub.actions() == [
        ("PATCH", {"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}),
        ("POST", {"ResetType": "On"}),
    ]
    assert stub.power == "On"
    stored = row(pxe_env, dep["id"])
    assert stored["state"] == "pending" and stored["powered_at"] is not None
    assert machine_row(pxe_env, machine)["power_state"] == "on"
    events = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()["events"]
    assert events[-1]["message"] == f"redfish BMC {stub.url}: boot once from the network, powered on"
    sweep(pxe_env)  # claimed once: a second sweep does not power it again
    assert len(stub.actions()) == 2


def test_a_machine_that_is_already_on_is_reset(pxe_env, stub):
    stub.power = "On"
    deploy(pxe_env, register(pxe_env, stub.url))
    sweep(pxe_env)
    assert [body for _, body in stub.actions()][1] == {"ResetType": "ForceRestart"}


def test_mac_only_and_manual_deployments_are_left_to_the_operator(pxe_env, stub):
    register(pxe_env, "", driver="manual")
    dep = pxe_env.pending()
    sweep(pxe_env)
    assert stub.requests == [] and row(pxe_env, dep["id"])["power_claimed_at"] is None


def test_a_bmc_answering_500_fails_the_deployment_with_its_message_and_leaves_the_machine_as_it_was(pxe_env, stub):
    stub.fail_actions_with = (500, "Internal controller fault: fan bus hung")
    machine = register(pxe_env, stub.url)
    dep = deploy(pxe_env, machine)
    sweep(pxe_env)
    stored = row(pxe_env, dep["id"])
    assert stored["state"] == "failed"
    assert stored["error"].startswith(f"power-on through the BMC failed: Redfish {stub.url}: HTTP 500: "
                                      "Internal controller fault: fan bus hung (after 3 attempts)")
    assert stored["powered_at"] is None and stored["open_mac"] is None
    assert stub.power == "Off" and stub.boot["BootSourceOverrideTarget"] == "None"
    assert [m for m, _ in stub.actions()] == ["PATCH"] * 3  # the boot override, refused; no power-on tried
    assert machine_row(pxe_env, machine)["state"] == "failed"


def test_a_wrong_password_fails_the_deployment_at_once_with_the_bmcs_words(pxe_env, stub):
    pxe_env.service.config.power_refresh_interval = 0  # only the power-on asks the BMC
    dep = deploy(pxe_env, register(pxe_env, stub.url, password="not-it"))
    sweep(pxe_env)
    stored = row(pxe_env, dep["id"])
    assert stored["state"] == "failed"
    assert stored["error"].endswith("HTTP 401: Invalid username or password for this BMC")
    assert [p for _, p, _ in stub.requests].count("/redfish/v1/Systems") == 1
    assert stub.actions() == []


def test_an_unreachable_bmc_fails_the_deployment_after_bounded_retries(pxe_env):
    dep = deploy(pxe_env, register(pxe_env, f"http://127.0.0.1:{closed_port()}"))
    sweep(pxe_env)
    stored = row(pxe_env, dep["id"])
    assert stored["state"] == "failed" and "unreachable" in stored["error"] and "after 3 attempts" in stored["error"]


def test_powered_on_but_never_network_booted_fails_after_the_boot_timeout(pxe_env, stub):
    slow = deploy(pxe_env, register(pxe_env, stub.url))
    sweep(pxe_env)
    timeout = pxe_env.service.config.boot_timeout
    powered_at = row(pxe_env, slow["id"])["powered_at"]
    sweep(pxe_env, now=powered_at + timeout - 1)
    assert row(pxe_env, slow["id"])["state"] == "pending"
    sweep(pxe_env, now=powered_at + timeout + 1)
    stored = row(pxe_env, slow["id"])
    assert stored["state"] == "failed"
    assert stored["error"] == f"powered on through the BMC but never network-booted within {timeout:g} s"


def test_a_machine_that_network_booted_is_not_failed_by_the_boot_timeout(pxe_env, stub):
    dep = deploy(pxe_env, register(pxe_env, stub.url))
    sweep(pxe_env)
    pxe_env.boot_token()  # the machine fetched its boot script: booting
    sweep(pxe_env, now=row(pxe_env, dep["id"])["powered_at"] + pxe_env.service.config.boot_timeout + 1)
    assert row(pxe_env, dep["id"])["state"] == "booting"


def installed(env, dep_id: str) -> None:
    engine = env.service.engine
    deployments.mint_boot_token(engine, dep_id, boot_path="ipxe", path_label="iPXE")
    deployments.agent_seen(engine, deployments.get_row(engine, dep_id), "10.0.2.15")
    deployments.record_result(engine, deployments.get_row(engine, dep_id),
                              {"success": True, "phase": "finish", "log": "", "error": None, "root_uuid": None},
                              check_after=time.time() + 3600)


def test_after_installed_the_machine_boots_its_disk_again(pxe_env, stub):
    dep = deploy(pxe_env, register(pxe_env, stub.url))
    sweep(pxe_env)
    installed(pxe_env, dep["id"])
    sweep(pxe_env)
    assert stub.actions()[-1] == ("PATCH", {"Boot": {"BootSourceOverrideTarget": "Hdd",
                                                     "BootSourceOverrideEnabled": "Continuous"}})
    assert row(pxe_env, dep["id"])["boot_restored_at"] is not None
    sweep(pxe_env)
    assert len(stub.actions()) == 3  # done once


def test_a_restore_claimed_with_a_time_before_the_install_is_not_claimed_again(pxe_env, stub):
    """A sweep whose clock was read before the agent's result committed (a slow sweep on another replica)
    claims the restore; the next sweep must see that claim, not one older than the install."""
    dep = deploy(pxe_env, register(pxe_env, stub.url))
    sweep(pxe_env)
    installed(pxe_env, dep["id"])
    installed_at = row(pxe_env, dep["id"])["installed_at"]
    assert power_duties.claim_boot_restores(pxe_env.service, installed_at - 5) == [(dep["id"], dep["machine"])]
    assert power_duties.claim_boot_restores(pxe_env.service, installed_at + 1) == []


def test_setting_the_boot_device_back_is_retried_while_the_bmc_fails(pxe_env, stub):
    dep = deploy(pxe_env, register(pxe_env, stub.url))
    sweep(pxe_env)
    installed(pxe_env, dep["id"])
    stub.fail_actions_with = (503, "busy")
    sweep(pxe_env)
    stored = row(pxe_env, dep["id"])
    assert stored["boot_restored_at"] is None and stored["state"] == "installed"
    events = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()["events"]
    assert "boot device not set back to disk (will retry)" in events[-1]["message"] and "busy" in events[-1]["message"]
    stub.fail_actions_with = None
    sweep(pxe_env, now=time.time() + power_duties.RESTORE_RETRY + 1)
    assert row(pxe_env, dep["id"])["boot_restored_at"] is not None


def test_a_bmc_that_dies_mid_deployment_does_not_stop_the_install_and_says_so(pxe_env, stub):
    machine = register(pxe_env, stub.url)
    dep = deploy(pxe_env, machine)
    sweep(pxe_env)
    stub.__exit__()  # the BMC goes away after the power-on
    installed(pxe_env, dep["id"])
    sweep(pxe_env, now=time.time() + pxe_env.service.config.power_refresh_interval + 1)
    stored = row(pxe_env, dep["id"])
    assert stored["state"] == "installed" and stored["boot_restored_at"] is None
    events = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()["events"]
    assert events[-1]["message"].startswith(f"boot device not set back to disk (will retry): Redfish {stub.url}: "
                                            "unreachable")
    shown = pxe_env.client.get(f"/api/v1/machines/{machine}", headers=pxe_env.read).get_json()
    assert shown["power_state"] == "unknown"
    assert machine_row(pxe_env, machine)["power_error"].startswith(f"Redfish {stub.url}: unreachable")


def test_power_states_are_refreshed_periodically(pxe_env, stub):
    stub.power = "On"
    good = register(pxe_env, stub.url)
    dead = register(pxe_env, f"http://127.0.0.1:{closed_port()}", name="node2", mac="52:54:00:00:00:02")
    sweep(pxe_env)
    assert machine_row(pxe_env, good)["power_state"] == "on" and machine_row(pxe_env, good)["power_error"] is None
    assert machine_row(pxe_env, dead)["power_state"] == "unknown"
    assert "unreachable" in machine_row(pxe_env, dead)["power_error"]
    asked = len(stub.requests)
    sweep(pxe_env)  # not due yet
    assert len(stub.requests) == asked
    stub.power = "Off"
    sweep(pxe_env, now=time.time() + pxe_env.service.config.power_refresh_interval + 1)
    assert machine_row(pxe_env, good)["power_state"] == "off"
    assert machine_row(pxe_env, good)["power_claimed_at"] is None


# --- POST /api/v1/machines/{id}/power --------------------------------------------------------------

def power(env, machine: str, body: dict, headers: dict | None = None):
    return env.client.post(f"/api/v1/machines/{machine}/power", json=body, headers=headers or env.admin)


def test_ops_switch_power_and_boot_device_through_the_api(pxe_env, stub):
    machine = register(pxe_env, stub.url)
    assert power(pxe_env, machine, {"action": "status"}).get_json()["power_state"] == "off"
    answer = power(pxe_env, "node1", {"action": "on", "boot_device": "network"})
    assert answer.status_code == 200
    assert answer.get_json() == {"machine": machine, "action": "on", "boot_device": "network", "power_state": "on"}
    assert power(pxe_env, machine, {"action": "cycle"}).get_json()["power_state"] == "on"
    assert power(pxe_env, machine, {"action": "off", "graceful_timeout": 0}).get_json()["power_state"] == "off"
    assert stub.actions() == [
        ("PATCH", {"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}),
        ("POST", {"ResetType": "On"}), ("POST", {"ResetType": "ForceRestart"}), ("POST", {"ResetType": "ForceOff"})]
    assert pxe_env.client.get(f"/api/v1/machines/{machine}", headers=pxe_env.read).get_json()["power_state"] == "off"


def test_a_bmc_failure_answers_502_with_the_bmcs_message_only(pxe_env, stub):
    machine = register(pxe_env, stub.url)
    stub.fail_with = (500, "Internal controller fault: fan bus hung")
    answer = power(pxe_env, machine, {"action": "on"})
    assert answer.status_code == 502
    body = answer.get_json()
    assert body["error"] == (f"Redfish {stub.url}: HTTP 500: Internal controller fault: fan bus hung "
                             "(after 3 attempts)")
    assert body["kind"] == "bmc_error" and "Traceback" not in answer.get_data(as_text=True)
    assert machine_row(pxe_env, machine)["power_error"] == body["error"]


@pytest.mark.parametrize("body, field", [
    ({}, "action"), ({"action": "explode"}, "action"), ({"action": "on", "boot_device": "usb"}, "boot_device"),
    ({"action": "off", "graceful_timeout": -1}, "graceful_timeout"), ({"action": "off", "graceful_timeout": "5"},
                                                                      "graceful_timeout"),
    ({"action": "on", "force": True}, "force"),
])
def test_bad_power_requests_name_the_field_and_touch_no_bmc(pxe_env, stub, body, field):
    machine = register(pxe_env, stub.url)
    answer = power(pxe_env, machine, body)
    assert answer.status_code == 400 and answer.get_json()["field"] == field
    assert stub.requests == []


def test_power_of_a_manual_or_unknown_machine_or_with_a_read_token(pxe_env, stub):
    manual = register(pxe_env, "", driver="manual")
    assert power(pxe_env, manual, {"action": "status"}).status_code == 409
    assert power(pxe_env, "no-such-machine", {"action": "status"}).status_code == 404
    assert power(pxe_env, manual, {"action": "status"}, pxe_env.read).status_code == 403


def test_the_bmc_password_appears_in_no_log_answer_event_or_metric(pxe_env, stub, caplog):
    caplog.set_level(logging.DEBUG)
    client, admin = pxe_env.client, pxe_env.admin
    hook = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "event_types": ["*"]},
                       headers=admin)
    assert hook.status_code == 201, hook.get_json()
    machine = register(pxe_env, stub.url)
    answers = [power(pxe_env, machine, {"action": "on", "boot_device": "network"})]
    dep = deploy(pxe_env, machine)
    sweep(pxe_env)
    installed(pxe_env, dep["id"])
    sweep(pxe_env, now=time.time() + pxe_env.service.config.power_refresh_interval + 1)
    stub.fail_with = (500, "controller fault")
    answers.append(power(pxe_env, machine, {"action": "cycle"}))
    other = register(pxe_env, stub.url, name="node2", mac="52:54:00:00:00:02", password=PASSWORD + "-wrong")
    answers.append(power(pxe_env, other, {"action": "status"}))
    answers += [client.get(path, headers=admin) for path in (
        "/api/v1/machines", f"/api/v1/machines/{machine}", f"/api/v1/deployments/{dep['id']}", "/api/v1/audit",
        "/metrics")]
    assert [a.status_code for a in answers[:3]] == [200, 502, 502]
    with pxe_env.service.engine.connect() as conn:
        outbox = json.dumps([dict(r) for r in conn.execute(select(db.webhook_events)).mappings()])
        event_log = json.dumps([dict(r) for r in conn.execute(select(db.events)).mappings()])
        stored = json.dumps([dict(r) for r in conn.execute(select(db.machines)).mappings()], default=str)
    assert "machine.power.on" in outbox and "boot once from the network" in event_log
    texts = {"log": caplog.text, "answers": "\n".join(a.get_data(as_text=True) for a in answers),
             "webhook events": outbox, "deployment events": event_log, "machines table": stored}
    basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    for what, text in texts.items():
        assert PASSWORD not in text and basic not in text, what
