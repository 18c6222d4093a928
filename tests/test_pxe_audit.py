"""The audit log of mutating API calls, and the guard against guessing tokens (issue 17)."""
from __future__ import annotations

import json
import time

from fixtures_pxe import PXE_MAC

BAD_TOKEN = {"Authorization": "Bearer msa_000000000000_not-the-secret"}


def _audit(pxe_env, **query) -> list[dict]:
    response = pxe_env.client.get("/api/v1/audit", headers=pxe_env.admin, query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["entries"]


def _token_id(headers: dict) -> str:
    return headers["Authorization"].split("_")[1]


def test_every_mutating_call_is_recorded_with_token_target_and_outcome(pxe_env):
    created = pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny"}).get_json()
    pxe_env.post_deployment({"mac": "nonsense", "image": "tiny"})
    pxe_env.client.delete(f"/api/v1/deployments/{created['id']}", headers=pxe_env.admin)
    token = pxe_env.client.post("/api/v1/tokens", json={"scope": "read"}, headers=pxe_env.admin).get_json()["token"]
    pxe_env.client.post("/api/v1/deployments", json={"mac": PXE_MAC, "image": "tiny"}, headers=pxe_env.read)
    pxe_env.client.delete("/api/v1/images/tiny", headers=BAD_TOKEN)
    pxe_env.client.get("/api/v1/deployments", headers=pxe_env.admin)  # a read: not audited
    rows = [(e["token_id"], e["action"], e["target"], e["status"]) for e in reversed(_audit(pxe_env))]
    admin, reader = _token_id(pxe_env.admin), _token_id(pxe_env.read)
    assert rows == [
        (admin, "POST /api/v1/deployments", created["id"], 201),
        (admin, "POST /api/v1/deployments", None, 400),
        (admin, "DELETE /api/v1/deployments/<dep_id>", created["id"], 200),
        (admin, "POST /api/v1/tokens", token.split("_")[1], 201),
        (reader, "POST /api/v1/deployments", None, 403),
        (None, "DELETE /api/v1/images/<name>", "tiny", 401),
    ]
    entries = _audit(pxe_env)
    assert all(e["client"] == "127.0.0.1" and abs(e["time"] - time.time()) < 60 for e in entries)
    assert token.split("_", 2)[2] not in json.dumps(entries)  # tokens by id only, never the secret (which may hold "_")


def test_the_audit_log_is_for_admins_and_pages(pxe_env):
    for _ in range(3):
        pxe_env.client.post("/api/v1/tokens", json={"scope": "read"}, headers=pxe_env.admin)
    assert pxe_env.client.get("/api/v1/audit", headers=pxe_env.read).status_code == 403
    assert pxe_env.client.get("/api/v1/audit").status_code == 401
    assert len(_audit(pxe_env, limit=2)) == 2
    assert _audit(pxe_env, since=time.time() + 60) == []
    for query, field in (({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"since": "nan"}, "since"),
                         ({"colour": "1"}, "colour")):
        response = pxe_env.client.get("/api/v1/audit", headers=pxe_env.admin, query_string=query)
        assert response.status_code == 400 and response.get_json()["field"] == field


def _metric(pxe_env, sample: str) -> float:
    """A sample's value on /metrics (counters are per process, so tests compare before and after)."""
    for line in pxe_env.client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def test_repeated_wrong_tokens_block_the_address_for_a_while(pxe_env):
    from pxe import authguard
    limit = pxe_env.service.config.auth_max_failures
    failures_before = _metric(pxe_env, 'metalstream_auth_failures_total{kind="api"}')
    blocks_before = _metric(pxe_env, "metalstream_auth_blocks_total")
    for _ in range(limit):
        assert pxe_env.client.get("/api/v1/images", headers=BAD_TOKEN).status_code == 401
    refused = pxe_env.client.get("/api/v1/images", headers=pxe_env.admin)
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= pxe_env.service.config.auth_block
    agent = pxe_env.client.get("/api/v1/agent/plan", headers={"Authorization": "Bearer x.y"})
    assert agent.status_code == 429
    assert pxe_env.client.get("/boot.ipxe").status_code == 200  # no token, no guard: machines still boot
    assert _metric(pxe_env, 'metalstream_auth_failures_total{kind="api"}') == failures_before + limit
    assert _metric(pxe_env, "metalstream_auth_blocks_total") == blocks_before + 1
    later = time.time() + pxe_env.service.config.auth_block + 1
    authguard.check_not_blocked(pxe_env.service.engine, "127.0.0.1", now=later)  # raises while blocked


def test_failures_spread_over_time_do_not_block(pxe_env):
    from pxe import authguard
    config, engine = pxe_env.service.config, pxe_env.service.engine
    start = time.time()
    for n in range(3 * config.auth_max_failures):
        authguard.record_failure(engine, config, "192.0.2.7", "api", now=start + n * config.auth_window / 5)
    authguard.check_not_blocked(engine, "192.0.2.7", now=start + 3 * config.auth_max_failures * config.auth_window / 5)
    assert pxe_env.client.get("/api/v1/images", headers=pxe_env.admin).status_code == 200


def test_serve_can_turn_the_guard_off_and_the_guard_holds_across_workers(tmp_path, pxe_installer):
    import requests

    from lab.service_proc import ServiceProcess
    for options, expected in ((["--workers", "2"], {401, 429}), (["--auth-max-failures", "0"], {401})):
        service = ServiceProcess(tmp_path / options[-1], installer=pxe_installer, options=options)
        with service:
            statuses = [requests.get(f"{service.url}/api/v1/images", headers=BAD_TOKEN, timeout=10).status_code
                        for _ in range(15)]
        assert set(statuses) == expected, (options, statuses)
        assert statuses[:10] == [401] * 10
