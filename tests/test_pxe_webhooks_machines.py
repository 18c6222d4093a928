"""Machine events through the machines API to a real HTTP receiver: created, updated, state changes following
a deployment, deleted — in order, signed, never carrying the BMC password."""
from __future__ import annotations

import json
import time

from fixtures_pxe import PXE_MAC
from fixtures_webhooks import Receiver

from pxe import deployments, webhook_delivery, webhooks

BMC_PASSWORD = "bmc-pa55word-that-must-not-leak"
SUCCESS = {"success": True, "phase": "finish", "error": None, "log": "agent log\n", "root_uuid": "0f3c-77aa", "time": 2.0}


def _drain(env, receiver, count: int) -> None:
    for _ in range(500):
        webhook_delivery.deliver_due(env.service)
        if len(receiver.received) >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"{len(receiver.received)} of {count} events arrived")


def test_machine_lifecycle_events_arrive_in_order_without_the_bmc_password(pxe_env):
    env = pxe_env
    env.service.config.webhook_backoff = 0.02
    with Receiver() as receiver:
        hook = env.client.post("/api/v1/webhooks", headers=env.admin, json={
            "url": receiver.url, "event_types": [t for t in webhooks.EVENT_TYPES if t.startswith("machine.")]
            + ["deployment.active"]}).get_json()
        made = env.client.post("/api/v1/machines", headers=env.admin, json={
            "name": "node-07", "macs": [PXE_MAC], "tags": ["rack1"],
            "bmc": {"driver": "redfish", "address": "https://10.0.0.20", "username": "admin",
                    "password": BMC_PASSWORD}})
        assert made.status_code == 201, made.get_json()
        machine_id = made.get_json()["id"]
        assert env.client.patch(f"/api/v1/machines/{machine_id}", json={"tags": ["rack2"]},
                                headers=env.admin).status_code == 200
        created = env.client.post("/api/v1/deployments", json={"machine": "node-07", "image": "tiny"},
                                  headers=env.admin)
        assert created.status_code == 201, created.get_json()
        dep_id = created.get_json()["id"]
        agent = {"Authorization": f"Bearer {env.boot_token()}"}
        assert env.client.post("/api/v1/agent/result", json=SUCCESS, headers=agent).status_code == 200
        assert deployments.finish_activation(env.service.engine, dep_id, True, "host runs image tiny")
        assert env.client.delete(f"/api/v1/machines/{machine_id}", headers=env.admin).status_code == 204
        expected = ["machine.created", "machine.updated", "machine.updated", "machine.state.deploying",
                    "machine.updated", "machine.state.deployed", "deployment.active", "machine.deleted"]
        _drain(env, receiver, len(expected))
    events = receiver.events()
    kinds = [e["type"] for e in events]
    # the deployment's transaction announces the deployment first, then its machine's step
    assert kinds[:4] == expected[:4] and sorted(kinds[4:7]) == sorted(expected[4:7]) and kinds[7] == expected[7]
    assert all(r.signature_valid(hook["secret"]) for r in receiver.received)
    assert {e["data"]["machine_id"] for e in events if e["type"].startswith("machine.")} == {machine_id}
    assert events[0]["data"]["name"] == "node-07" and events[0]["data"]["macs"] == [PXE_MAC]
    assert events[0]["data"]["state"] == "ready" and events[1]["data"]["tags"] == ["rack2"]
    deploying = events[3]["data"]
    assert deploying["state"] == "deploying" and deploying["current_deployment_id"] == dep_id
    deployed = next(e["data"] for e in events if e["type"] == "machine.state.deployed")
    assert deployed["last_deployment_id"] == dep_id and deployed["current_deployment_id"] is None
    assert next(e["data"] for e in events if e["type"] == "deployment.active")["machine_id"] == machine_id
    for request in receiver.received:
        assert BMC_PASSWORD not in request.body.decode() + json.dumps(request.headers)
        assert "password" not in request.body.decode()


def test_machine_event_types_follow_what_changed():
    before = {"id": "m", "state": "ready", "power_state": None}
    assert webhooks.machine_event_types(None, before) == ["machine.created"]
    assert webhooks.machine_event_types(before, None) == ["machine.deleted"]
    assert webhooks.machine_event_types(before, dict(before)) == ["machine.updated"]
    after = {**before, "state": "deploying", "power_state": "on"}
    assert webhooks.machine_event_types(before, after) == ["machine.updated", "machine.state.deploying",
                                                           "machine.power.on"]
    assert webhooks.machine_event_types(after, {**after, "power_state": "unknown"}) == ["machine.updated"]
