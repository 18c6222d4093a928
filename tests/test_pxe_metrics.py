"""The ops metrics on /metrics of the real `metalstream serve` (2 gunicorn workers and the TFTP child, in
prometheus_client's multiprocess mode): phase durations and final states from deployments driven through the
agent API, BMC call durations and errors through a Redfish stub, TFTP requests by outcome. The server is shared
by the session, so every check is on the change a test makes."""
from __future__ import annotations

import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from power_stub import RedfishStub


def _samples(server) -> dict[tuple, float]:
    text = requests.get(server.url + "/metrics", timeout=30).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _delta(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def _api(server, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, server.url + path, headers=server.admin, timeout=60, **kwargs)


class Agent:
    def __init__(self, server, mac: str):
        self.url = server.url
        script = requests.get(f"{server.url}/boot/{mac}.ipxe", timeout=30).text
        self.headers = {"Authorization": "Bearer " + script.split("metalstream.token=")[1].split()[0]}
        requests.get(f"{self.url}/api/v1/agent/plan", headers=self.headers, timeout=30).raise_for_status()

    def event(self, phase: str, at: float) -> None:
        requests.post(f"{self.url}/api/v1/agent/events", json={"phase": phase, "message": phase, "time": at},
                      headers=self.headers, timeout=30).raise_for_status()

    def fail(self, phase: str, at: float) -> None:
        body = {"success": False, "phase": phase, "error": "no disk", "log": "", "time": at}
        requests.post(f"{self.url}/api/v1/agent/result", json=body, headers=self.headers,
                      timeout=30).raise_for_status()


def _deploy(server, mac: str) -> dict:
    response = _api(server, "POST", "/api/v1/deployments", json={"mac": mac, "image": server.small_image})
    assert response.status_code == 201, response.text
    return response.json()


def test_phase_durations_and_final_states_from_the_agent_api(pxe_server):
    before = _samples(pxe_server)
    _deploy(pxe_server, "52:54:00:3e:00:01")
    agent = Agent(pxe_server, "52:54:00:3e:00:01")
    t0 = time.time() - 60
    for phase, at in (("start", t0), ("disk", t0 + 2), ("disk", t0 + 3), ("stream", t0 + 5)):
        agent.event(phase, at)
    agent.fail("stream", t0 + 12.5)
    cancelled = _deploy(pxe_server, "52:54:00:3e:00:02")
    assert _api(pxe_server, "DELETE", f"/api/v1/deployments/{cancelled['id']}").status_code == 200
    after = _samples(pxe_server)
    histogram = "metalstream_deployment_phase_duration_seconds"
    for phase, seconds in (("start", 2.0), ("disk", 3.0), ("stream", 7.5)):
        assert _delta(before, after, f"{histogram}_count", phase=phase) == 1, phase
        assert _delta(before, after, f"{histogram}_sum", phase=phase) == pytest.approx(seconds, abs=0.01), phase
    assert _delta(before, after, f"{histogram}_bucket", phase="stream", le="5.0") == 0
    assert _delta(before, after, f"{histogram}_bucket", phase="stream", le="15.0") == 1
    assert _delta(before, after, f"{histogram}_count", phase="mkfs") == 0
    ended = "metalstream_deployments_ended_total"
    assert _delta(before, after, ended, state="failed") == 1
    assert _delta(before, after, ended, state="cancelled") == 1
    assert _delta(before, after, ended, state="active") == 0


def test_bmc_call_durations_and_errors_by_driver_and_kind(pxe_server):
    with RedfishStub(password="pw") as bmc:
        machine = _api(pxe_server, "POST", "/api/v1/machines", json={
            "name": "metrics-bmc", "macs": ["52:54:00:3e:00:03"],
            "bmc": {"driver": "redfish", "address": bmc.url, "username": "admin", "password": "pw"}})
        assert machine.status_code == 201, machine.text
        try:
            before = _samples(pxe_server)
            power = _api(pxe_server, "POST", "/api/v1/machines/metrics-bmc/power", json={"action": "status"})
            assert power.status_code == 200, power.text
            bmc.fail_with = (500, "the BMC is on fire")
            refused = _api(pxe_server, "POST", "/api/v1/machines/metrics-bmc/power", json={"action": "status"})
            assert refused.status_code == 502 and refused.json()["kind"] == "bmc_error"
            attempts = refused.json()["attempts"]
            after = _samples(pxe_server)
        finally:
            bmc.fail_with = None
            _api(pxe_server, "DELETE", "/api/v1/machines/metrics-bmc")
    # at least: the supervisor may poll the machine's power state in between (power duties)
    calls = "metalstream_bmc_call_duration_seconds_count"
    assert _delta(before, after, calls, driver="redfish", operation="status") >= 1 + attempts
    assert _delta(before, after, "metalstream_bmc_call_errors_total", driver="redfish", kind="bmc_error") >= attempts
    assert _delta(before, after, "metalstream_bmc_call_errors_total", driver="redfish", kind="auth") == 0


def test_tftp_requests_by_outcome(pxe_server, tmp_path):
    import tftpy
    before = _samples(pxe_server)
    client = tftpy.TftpClient("127.0.0.1", pxe_server.tftp_port)
    client.download("undionly.kpxe", str(tmp_path / "got"), timeout=2, retries=3)
    for name in ("no-such-file", "efi/no-such-loader.efi"):
        with pytest.raises(tftpy.TftpException):
            client.download(name, str(tmp_path / "refused"), timeout=2, retries=1)
    after = _samples(pxe_server)
    assert _delta(before, after, "metalstream_tftp_requests_total", outcome="sent") == 1
    assert _delta(before, after, "metalstream_tftp_requests_total", outcome="refused") == 2
    assert _delta(before, after, "metalstream_tftp_requests_total", outcome="error") == 0


def test_an_activated_deployment_counts_as_active(pxe_env):
    from pxe import deployments

    def ended(state: str) -> float:
        text = pxe_env.client.get("/metrics").get_data(as_text=True)
        return next((s.value for family in text_string_to_metric_families(text) for s in family.samples
                     if s.name == "metalstream_deployments_ended_total" and s.labels == {"state": state}), 0.0)

    before = ended("active")
    dep = pxe_env.pending()
    agent = {"Authorization": "Bearer " + pxe_env.boot_token()}
    assert pxe_env.client.get("/api/v1/agent/plan", headers=agent).status_code == 200
    result = {"success": True, "phase": "finish", "log": "", "root_uuid": "6f1c2a0e-5b7d-4c3e-9a41-0d2b8e7f6a15"}
    assert pxe_env.client.post("/api/v1/agent/result", json=result, headers=agent).status_code == 200
    assert ended("active") == before
    assert deployments.finish_activation(pxe_env.service.engine, dep["id"], True, "booted from its disk")
    assert ended("active") == before + 1
