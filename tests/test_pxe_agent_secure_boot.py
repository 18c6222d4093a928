"""The service stores how the installer booted (the agent's `secure_boot`): from its first event, from its
result, and nothing at all from an agent that does not say (BIOS, or an agent older than the field)."""
from __future__ import annotations

from fixtures_pxe import PXE_MAC

EVENT = {"phase": "start", "message": "installing image tiny", "time": 1.0, "seq": 1}
SUCCESS = {"success": True, "phase": "finish", "error": None, "log": "agent log\n", "root_uuid": "0f3c-77aa",
           "time": 2.0}


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _stored(pxe_env, dep_id: str):
    from pxe import deployments
    return deployments.get_row(pxe_env.service.engine, dep_id)["installer_secure_boot"]


def test_first_event_then_result_store_the_installers_secure_boot(pxe_env):
    dep = pxe_env.pending()
    headers = _bearer(pxe_env.boot_token())
    response = pxe_env.client.post("/api/v1/agent/events", json={**EVENT, "secure_boot": True}, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert _stored(pxe_env, dep["id"]) is True
    later = {"phase": "disk", "message": "choosing the disk", "time": 1.5, "seq": 2}  # later events do not say
    assert pxe_env.client.post("/api/v1/agent/events", json=later, headers=headers).status_code == 200
    assert _stored(pxe_env, dep["id"]) is True
    assert pxe_env.client.post("/api/v1/agent/result", json=SUCCESS, headers=headers).status_code == 200
    assert _stored(pxe_env, dep["id"]) is True  # a result without the field keeps what the event said


def test_result_says_off(pxe_env):
    dep = pxe_env.pending()
    headers = _bearer(pxe_env.boot_token())
    response = pxe_env.client.post("/api/v1/agent/result", json={**SUCCESS, "secure_boot": False}, headers=headers)
    assert response.get_json()["state"] == "installed"
    assert _stored(pxe_env, dep["id"]) is False


def test_an_agent_that_does_not_say_leaves_it_unknown(pxe_env):
    dep = pxe_env.pending()
    headers = _bearer(pxe_env.boot_token())
    assert pxe_env.client.post("/api/v1/agent/events", json={**EVENT, "secure_boot": None}, headers=headers)\
        .status_code == 200
    assert pxe_env.client.post("/api/v1/agent/result", json=SUCCESS, headers=headers).status_code == 200
    assert _stored(pxe_env, dep["id"]) is None


def test_secure_boot_must_be_a_boolean(pxe_env):
    pxe_env.pending(mac=PXE_MAC)
    headers = _bearer(pxe_env.boot_token())
    for path, body in (("events", {**EVENT, "secure_boot": "yes"}), ("result", {**SUCCESS, "secure_boot": 1})):
        response = pxe_env.client.post(f"/api/v1/agent/{path}", json=body, headers=headers)
        assert response.status_code == 400 and response.get_json()["field"] == "secure_boot", response.get_json()
