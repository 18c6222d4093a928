"""Deferred %include in a kickstart sent to the service: never read on the server; the agent posts what the %pre
wrote and the service's kickstart front end merges it into the deployment's storage."""
from __future__ import annotations

import json
import threading

import pytest
import requests

from deployer.deferred import run_deploy_time
from deployer.include_service import service_resolver
from metalstream.contracts.plan import Plan
from metalstream.errors import BadInput

from fixtures_pxe import PXE_MAC

PRE_KS = """\
clearpart --all --initlabel
%pre --erroronfail --log=/tmp/pre.log
echo "part / --fstype=xfs --size=2000 --grow" > /tmp/part-include
%end
part /boot/efi --fstype=efi --size=200
%include /tmp/part-include
"""


def _agent(pxe_env) -> dict:
    return {"Authorization": f"Bearer {pxe_env.boot_token()}"}


def test_the_plan_carries_the_pre_and_the_deferred_include(pxe_env):
    pxe_env.pending(kickstart=PRE_KS)
    storage = pxe_env.client.get("/api/v1/agent/plan", headers=_agent(pxe_env)).get_json()["storage"]
    assert storage["deferred_includes"] == [{"path": "/tmp/part-include", "line": 6}]
    [pre] = storage["pre_scripts"]
    assert pre["erroronfail"] is True and pre["log"] == "/tmp/pre.log" and pre["line"] == 2
    assert [p["mountpoint"] for p in storage["partitions"]] == ["/boot/efi"]


def test_the_agent_gets_the_storage_with_the_included_layout_merged(pxe_env):
    dep = pxe_env.pending(kickstart=PRE_KS)
    agent = _agent(pxe_env)
    pxe_env.client.get("/api/v1/agent/plan", headers=agent)
    text = "# written by %pre\npart / --fstype=xfs --size=2000 --grow\npart swap --size=512\n"
    response = pxe_env.client.post("/api/v1/agent/storage", headers=agent, json={
        "includes": [{"path": "/tmp/part-include", "line": 6, "text": text}]})
    assert response.status_code == 200, response.get_json()
    storage = response.get_json()["storage"]
    assert [(p["mountpoint"], p["fstype"], p["line"]) for p in storage["partitions"]] == [
        ("/boot/efi", "efi", 5), ("/", "xfs", 6), ("swap", "swap", 6)]
    assert not storage.get("deferred_includes") and storage["clearpart"]["mode"] == "all"
    assert pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).status_code == 200


def test_a_bad_fragment_is_refused_at_its_path_and_line(pxe_env):
    pxe_env.pending(kickstart=PRE_KS)
    agent = _agent(pxe_env)
    pxe_env.client.get("/api/v1/agent/plan", headers=agent)
    response = pxe_env.client.post("/api/v1/agent/storage", headers=agent, json={
        "includes": [{"path": "/tmp/part-include", "line": 6, "text": "\npart / --fstype=reiserfs --grow\n"}]})
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == "/tmp/part-include:2" and "reiserfs" in body["error"], body


def test_only_the_includes_the_kickstart_defers_are_taken(pxe_env):
    pxe_env.pending(kickstart=PRE_KS)
    agent = _agent(pxe_env)
    for include, field in (({"path": "/tmp/other", "line": 6, "text": "part / --grow\n"}, "includes[0]"),
                           ({"path": "tmp/part-include", "line": 6, "text": ""}, "includes[0].path"),
                           ({"path": "/tmp/part-include", "line": 6, "text": "x" * (256 * 1024 + 1)},
                            "includes[0].text")):
        response = pxe_env.client.post("/api/v1/agent/storage", headers=agent, json={"includes": [include]})
        assert response.status_code == 400 and response.get_json()["field"] == field, response.get_json()


def test_the_storage_endpoint_wants_the_agent_token(pxe_env):
    pxe_env.pending(kickstart=PRE_KS)
    response = pxe_env.client.post("/api/v1/agent/storage", headers=pxe_env.admin, json={
        "includes": [{"path": "/tmp/part-include", "line": 6, "text": "part / --grow\n"}]})
    assert response.status_code == 401


def test_an_include_of_a_server_file_is_deferred_never_read(pxe_env):
    response = pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny",
                                        "kickstart": "part /boot/efi --size=200\n%include /etc/passwd\n"})
    assert response.status_code == 201, response.get_json()
    plan = pxe_env.client.get("/api/v1/agent/plan", headers=_agent(pxe_env)).get_json()
    assert plan["storage"]["deferred_includes"] == [{"path": "/etc/passwd", "line": 2}]
    assert "root:" not in json.dumps(plan) and "root:" not in json.dumps(response.get_json())


def test_a_relative_include_is_refused(pxe_env):
    response = pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny",
                                        "kickstart": "part / --grow\n%include part.ks\n"})
    assert response.status_code == 400
    assert response.get_json()["field"] == "kickstart:2" and "absolute path" in response.get_json()["error"]


def test_a_passphrase_with_a_deferred_layout_is_accepted(pxe_env):
    response = pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny", "kickstart": PRE_KS,
                                        "encryption_passphrase": "correct horse battery"})
    assert response.status_code == 201, response.get_json()
    assert "correct horse" not in json.dumps(response.get_json())


@pytest.fixture
def served(pxe_env):
    """The service of pxe_env over real HTTP on loopback (the agent's requests session talks to it)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, pxe_env.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


def _agent_session(pxe_env) -> requests.Session:
    session = requests.Session()
    session.headers.update(_agent(pxe_env))
    return session


def test_the_agent_runs_the_pre_and_the_service_merges_what_it_wrote(pxe_env, served, tmp_path):
    include = tmp_path / "part-include"
    pxe_env.pending(kickstart=f"%pre --erroronfail\nn=$(ls /sys/block | wc -l)\necho \"part / --fstype=xfs --grow\" "
                              f"> {include}\n%end\npart /boot/efi --fstype=efi --size=200\n%include {include}\n")
    session = _agent_session(pxe_env)
    plan = Plan.from_json(session.get(f"{served}/api/v1/agent/plan", timeout=10).json())
    events = []
    merged = run_deploy_time(plan, service_resolver(session, served, verify=True),
                             lambda phase, message: events.append(message))
    assert [(p.mountpoint, p.fstype) for p in merged.storage.partitions] == [("/boot/efi", "efi"), ("/", "xfs")]
    assert merged.storage.pre_scripts == [] and merged.storage.deferred_includes == []
    assert events[-1] == f"storage from %include {include} (1 lines)"


def test_the_agent_fails_with_the_services_located_refusal(pxe_env, served, tmp_path):
    include = tmp_path / "part-include"
    pxe_env.pending(kickstart=f"%pre\nprintf 'part /srv --size=100\\n' > {include}\n%end\n%include {include}\n")
    session = _agent_session(pxe_env)
    plan = Plan.from_json(session.get(f"{served}/api/v1/agent/plan", timeout=10).json())
    with pytest.raises(BadInput) as caught:
        run_deploy_time(plan, service_resolver(session, served, verify=True), lambda phase, message: None)
    assert str(caught.value).startswith(f"{include}:1: the layout has no `/`")
