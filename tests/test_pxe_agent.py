"""Agent endpoints: plan, events, result; token rules; state machine; silence timeout."""
from __future__ import annotations

import time

from fixtures_pxe import PXE_MAC

EVENT = {"phase": "stream", "message": "streaming image", "bytes_done": 100, "bytes_total": 1000, "time": 1.0}
SUCCESS = {"success": True, "phase": "finish", "error": None, "log": "agent log\n", "root_uuid": "0f3c-77aa",
           "time": 2.0}


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _agent_calls(client, headers):
    return [client.get("/api/v1/agent/plan", headers=headers),
            client.post("/api/v1/agent/events", json=EVENT, headers=headers),
            client.post("/api/v1/agent/result", json=SUCCESS, headers=headers)]


def test_plan_contents(pxe_env):
    dep = pxe_env.pending(hostname="node-17", kernel_args=["console=ttyS0,115200"], boot_mode="bios",
                          disk_hints={"serial": "S1"})
    token = pxe_env.boot_token()
    plan = pxe_env.client.get("/api/v1/agent/plan", headers=_bearer(token)).get_json()
    image = pxe_env.client.get("/api/v1/images/tiny", headers=pxe_env.read).get_json()
    assert plan["format"] == "metalstream-plan/1.4" and plan["deployment_id"] == dep["id"]
    assert plan["image"] == {"name": "tiny", "url": "http://10.0.2.2:8080/images/tiny.tar.zst",
                             "sha256": image["sha256"], "size": image["size"], "manifest": image["manifest"]}
    assert plan["boot_mode"] == "bios" and plan["hostname"] == "node-17" and plan["storage"] is None
    assert plan["disk_hints"]["serial"] == "S1" and plan["disk_hints"]["wwn"] is None
    assert plan["kernel_args"] == "console=ttyS0,115200"
    assert [(n["device"], n["bootproto"]) for n in plan["network"]] == [(None, "dhcp")]
    assert plan["ssh_keys"] == [pxe_env.service.deploy_public_key]
    assert plan["ssh_keys"][0].startswith("ssh-ed25519 ")
    assert plan["report"] == {"events_url": "http://10.0.2.2:8080/api/v1/agent/events",
                              "result_url": "http://10.0.2.2:8080/api/v1/agent/result"}
    shown = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()
    assert shown["state"] == "installing"


def test_events_progress_eta_and_result(pxe_env):
    dep = pxe_env.pending()
    headers = _bearer(pxe_env.boot_token())
    for done in (0, 250, 500):
        response = pxe_env.client.post("/api/v1/agent/events", headers=headers,
                                       json={**EVENT, "bytes_done": done, "time": time.time()})
        assert response.status_code == 200, response.get_json()
        time.sleep(0.05)
    shown = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()
    assert (shown["state"], shown["phase"], shown["bytes_done"], shown["bytes_total"]) == ("installing", "stream",
                                                                                          500, 1000)
    assert shown["eta_seconds"] is not None and shown["eta_seconds"] > 0
    assert [e["bytes_done"] for e in shown["events"] if e["phase"] == "stream"] == [0, 250, 500]
    response = pxe_env.client.post("/api/v1/agent/result", json=SUCCESS, headers=headers)
    assert response.get_json() == {"accepted": True, "state": "installed"}
    shown = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()
    assert shown["state"] == "installed" and shown["root_uuid"] == "0f3c-77aa" and shown["eta_seconds"] is None
    log = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}/log", headers=pxe_env.read)
    assert log.get_data(as_text=True) == "agent log\n"
    # installed is not cancellable, and the MAC is still taken until the activation check decides
    assert pxe_env.client.delete(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.admin).status_code == 409
    assert pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny"}).status_code == 409


def test_failure_result_marks_failed_and_frees_the_mac(pxe_env):
    dep = pxe_env.pending()
    headers = _bearer(pxe_env.boot_token())
    failure = {"success": False, "phase": "partition", "error": "no disk matched serial S1", "log": "..."}
    assert pxe_env.client.post("/api/v1/agent/result", json=failure, headers=headers).get_json()["state"] == "failed"
    shown = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()
    assert shown["state"] == "failed" and shown["error"] == "no disk matched serial S1"
    assert pxe_env.client.get(f"/boot/{PXE_MAC}.ipxe").get_data(as_text=True).count("sanboot") == 1
    assert pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny"}).status_code == 201


def test_forged_agent_calls_are_never_accepted(pxe_env):
    pxe_env.service.config.auth_max_failures = 0  # every forgery must get its 401, not the guard's 429
    a = pxe_env.pending(mac="52:54:00:00:00:0a")
    b = pxe_env.pending(mac="52:54:00:00:00:0b")
    token_a = pxe_env.boot_token("52:54:00:00:00:0a")
    token_b = pxe_env.boot_token("52:54:00:00:00:0b")
    secret_a = token_a.split(".", 1)[1]
    forged = [
        {},  # no token
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {token_a}"},
        _bearer("nonsense"),
        _bearer(f"{a['id']}.wrong-secret-wrong-secret-wrong-secret-wrong"),  # wrong token
        _bearer(f"{b['id']}.{secret_a}"),  # another deployment's secret under b's id
        _bearer(f"{a['id']}.{secret_a[:-1]}"),
        _bearer(f"{a['id']}."),
        _bearer(token_a + "x"),
    ]
    accepted = 0
    for headers in forged:
        for response in _agent_calls(pxe_env.client, headers):
            accepted += response.status_code < 400
            assert response.status_code == 401, (headers, response.get_json())
    assert accepted == 0
    # nothing moved: both deployments are still booting with no events from an agent
    for dep in (a, b):
        shown = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()
        assert shown["state"] == "booting" and shown["phase"] is None
    # a's token finishes a; afterwards it is useless (token after completion), b's still works for b only
    assert pxe_env.client.post("/api/v1/agent/result", json=SUCCESS, headers=_bearer(token_a)).status_code == 200
    after = [r.status_code for r in _agent_calls(pxe_env.client, _bearer(token_a))]
    assert after == [401, 401, 401]
    plan_b = pxe_env.client.get("/api/v1/agent/plan", headers=_bearer(token_b)).get_json()
    assert plan_b["deployment_id"] == b["id"]


def test_token_useless_after_cancel_and_failure(pxe_env):
    dep = pxe_env.pending()
    token = pxe_env.boot_token()
    pxe_env.client.delete(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.admin)
    assert [r.status_code for r in _agent_calls(pxe_env.client, _bearer(token))] == [401, 401, 401]


def test_agent_bad_input(pxe_env):
    pxe_env.pending()
    headers = _bearer(pxe_env.boot_token())
    cases = [
        ({**EVENT, "phase": "dance"}, "phase"),
        ({**EVENT, "extra": 1}, "extra"),
        ({**EVENT, "bytes_done": -5}, "bytes_done"),
        ({**EVENT, "bytes_total": "many"}, "bytes_total"),
        ({**EVENT, "time": "now"}, "time"),
        ("[]", "body"),
    ]
    for body, field in cases:
        kwargs = {"data": body, "content_type": "application/json"} if isinstance(body, str) else {"json": body}
        response = pxe_env.client.post("/api/v1/agent/events", headers=headers, **kwargs)
        assert response.status_code == 400 and response.get_json()["field"] == field, (body, response.get_json())
    results = [
        ({**SUCCESS, "success": "yes"}, "success"),
        ({**SUCCESS, "root_uuid": None}, "root_uuid"),
        ({**SUCCESS, "root_uuid": "x; rm -rf /"}, "root_uuid"),
        ({"success": False, "phase": "mkfs"}, "error"),
        ({**SUCCESS, "phase": "nope"}, "phase"),
    ]
    for body, field in results:
        response = pxe_env.client.post("/api/v1/agent/result", headers=headers, json=body)
        assert response.status_code == 400 and response.get_json()["field"] == field, (body, response.get_json())
    response = pxe_env.client.post("/api/v1/agent/events", headers=headers, data="{", content_type="application/json")
    assert response.status_code == 400 and response.get_json()["field"] == "body"


def test_result_twice_is_refused(pxe_env):
    pxe_env.pending()
    headers = _bearer(pxe_env.boot_token())
    assert pxe_env.client.post("/api/v1/agent/result", json=SUCCESS, headers=headers).status_code == 200
    assert pxe_env.client.post("/api/v1/agent/result", json=SUCCESS, headers=headers).status_code == 401


def test_silent_agent_marks_failed(pxe_env):
    from pxe import supervisor
    dep = pxe_env.pending()
    pxe_env.boot_token()
    supervisor.tick(pxe_env.service, now=time.time() + 10)
    assert pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()["state"] == "booting"
    supervisor.tick(pxe_env.service, now=time.time() + pxe_env.service.config.agent_timeout + 1)
    shown = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()
    assert shown["state"] == "failed" and "silent" in shown["error"]
    assert pxe_env.client.get(f"/boot/{PXE_MAC}.ipxe").get_data(as_text=True).count("metalstream.token") == 0


def test_silence_timeout_is_applied_by_the_sweeper_never_by_a_read(tmp_path, pxe_installer, pxe_image_manifest):
    from pxe import imagestore, supervisor, tokens
    from pxe.app import create_app
    from pxe.config import ServiceConfig
    app = create_app(ServiceConfig(data_dir=tmp_path / "d", installer=pxe_installer, supervisor_interval=0,
                                   agent_timeout=0.2))
    svc = app.extensions["metalstream"]
    imagestore.register(svc.engine, svc.config.image_dir, pxe_image_manifest)
    admin = {"Authorization": "Bearer " + tokens.create_api_token(svc.engine, "admin")}
    client = app.test_client()
    dep = client.post("/api/v1/deployments", json={"mac": PXE_MAC, "image": "tiny"}, headers=admin).get_json()
    client.get(f"/boot/{PXE_MAC}.ipxe")
    time.sleep(0.5)
    assert client.get(f"/api/v1/deployments/{dep['id']}", headers=admin).get_json()["state"] == "booting"
    assert client.get("/api/v1/deployments", headers=admin).get_json()["deployments"][0]["state"] == "booting"
    supervisor.tick(svc)
    shown = client.get(f"/api/v1/deployments/{dep['id']}", headers=admin).get_json()
    assert shown["state"] == "failed" and "silent" in shown["error"]


def test_state_machine_is_enforced_on_illegal_transitions():
    from pxe import states
    assert states.allowed("pending", "booting") and states.allowed("installing", "installed")
    for current, new in (("pending", "installed"), ("pending", "active"), ("installed", "installing"),
                         ("installed", "cancelled"), ("active", "failed"), ("failed", "pending"),
                         ("cancelled", "booting"), ("booting", "installed")):
        assert not states.allowed(current, new), (current, new)
    assert set(states.sources_for("cancelled")) == {"pending", "booting", "installing"}
    assert states.eta_seconds(250, 1000, 100.0, 110.0) == 30.0
    assert states.eta_seconds(0, 1000, 100.0, 110.0) is None


def test_served_plan_is_accepted_by_the_agents_plan_parser(pxe_env):
    """Contract check across components: deployer.plan.Plan.from_json takes what the service serves."""
    from test_pxe_api import DEPLOY_KS

    from metalstream.contracts.plan import Plan
    for i, extra in enumerate(({}, {"kickstart": DEPLOY_KS, "hostname": "n1", "kernel_args": ["quiet"],
                                    "root_password_hash": "$6$saltsalt$" + "a" * 86, "boot_mode": "uefi",
                                    "disk_hints": {"serial": "S1", "min_size_gib": 4}})):
        mac = f"52:54:00:00:02:0{i}"
        dep = pxe_env.pending(mac=mac, **extra)
        plan = pxe_env.client.get("/api/v1/agent/plan", headers=_bearer(pxe_env.boot_token(mac))).get_json()
        parsed = Plan.from_json(plan)
        assert parsed.deployment_id == dep["id"] and parsed.image.sha256 == plan["image"]["sha256"]


def test_the_agents_http_reporter_drives_a_deployment_on_the_real_server(pxe_server):
    """deployer.report.HttpReporter (what the agent uses) against `metalstream serve`."""
    import requests

    from deployer.report import HttpReporter
    mac = "52:54:00:aa:00:20"
    dep = requests.post(f"{pxe_server.url}/api/v1/deployments", json={"mac": mac, "image": "small"},
                        headers=pxe_server.admin, timeout=10).json()
    script = requests.get(f"{pxe_server.url}/boot/{mac}.ipxe", timeout=10).text
    token = script.split("metalstream.token=")[1].split()[0]
    plan = requests.get(f"{pxe_server.url}/api/v1/agent/plan", headers=_bearer(token), timeout=10).json()
    reporter = HttpReporter(plan["report"]["events_url"], plan["report"]["result_url"], token, interval=0)
    reporter.event("start", "agent started")
    reporter.event("stream", "streaming image", 50, 100)
    assert reporter.events_failed == 0 and reporter.events_sent == 2
    assert reporter.result(success=True, phase="finish", root_uuid="abcd-1234", log="agent log")
    shown = requests.get(f"{pxe_server.url}/api/v1/deployments/{dep['id']}", headers=pxe_server.admin,
                         timeout=10).json()
    assert shown["state"] == "installed" and shown["bytes_done"] == 50 and shown["root_uuid"] == "abcd-1234"
    assert [e["phase"] for e in shown["events"] if e["state"] == "installing"][-2:] == ["start", "stream"]
    assert not reporter.result(success=True, phase="finish", root_uuid="abcd-1234", log="")  # token is void now
