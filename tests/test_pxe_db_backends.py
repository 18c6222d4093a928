"""What running on PostgreSQL revealed, kept equal on both databases (every test here runs on SQLite
and on PostgreSQL through `pxe_env`), and the PostgreSQL engine's behaviour when connections die."""
from __future__ import annotations

import pytest

from fixtures_pxe import PXE_MAC

# PostgreSQL refuses NUL in a text parameter outright (SQLite simply matched nothing): every lookup
# key with one must be "not found", never a 500.
NUL_LOOKUPS = {
    "show deployment": ("GET", "/api/v1/deployments/abc%00def", 404),
    "cancel deployment": ("DELETE", "/api/v1/deployments/abc%00def", 404),
    "agent-sized id": ("GET", "/api/v1/deployments/" + "a" * 35 + "%00", 404),
    "log": ("GET", "/api/v1/deployments/" + "a" * 35 + "%00/log", 404),
    "show image": ("GET", "/api/v1/images/ti%00ny", 404),
    "delete image": ("DELETE", "/api/v1/images/ti%00ny", 400),
    "revoke token": ("DELETE", "/api/v1/tokens/ab%00c", 404),
    "revoke long token id": ("DELETE", "/api/v1/tokens/" + "x" * 300, 404),
}


@pytest.mark.parametrize(("method", "path", "status"), list(NUL_LOOKUPS.values()), ids=list(NUL_LOOKUPS))
def test_lookup_keys_no_row_can_have_are_not_found(pxe_env, method, path, status):
    response = pxe_env.client.open(path, method=method, headers=pxe_env.admin)
    assert response.status_code == status, response.get_json()


def test_tokens_with_nul_are_wrong_tokens(pxe_env):
    dep = pxe_env.pending()
    for token in ("msa_ab\x00c_secret", dep["id"][:-1] + "\x00.secret"):
        bearer = {"Authorization": f"Bearer {token}"}
        assert pxe_env.client.get("/api/v1/deployments", headers=bearer).status_code == 401
        assert pxe_env.client.get("/api/v1/agent/plan", headers=bearer).status_code == 401


def test_an_agent_log_and_error_with_nul_are_stored_readably(pxe_env):
    dep = pxe_env.pending()
    agent = {"Authorization": f"Bearer {pxe_env.boot_token()}"}
    result = {"success": False, "phase": "disk", "error": "mkfs said \x00?", "log": "out\x00put\n", "root_uuid": None,
              "time": 1_800_000_000.0}
    response = pxe_env.client.post("/api/v1/agent/result", json=result, headers=agent)
    assert response.status_code == 200, response.get_json()
    shown = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.admin).get_json()
    assert shown["state"] == "failed" and shown["error"] == "mkfs said \ufffd?"
    assert "agent failed in disk: mkfs said \ufffd?" in [e["message"] for e in shown["events"]]
    log = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}/log", headers=pxe_env.admin)
    assert log.get_data(as_text=True) == "out\ufffdput\n"


def test_the_audit_log_records_paths_with_nul_and_long_ones(pxe_env):
    assert pxe_env.client.delete("/api/v1/deployments/abc%00def", headers=pxe_env.admin).status_code == 404
    assert pxe_env.client.delete("/api/v1/tokens/" + "x" * 300, headers=pxe_env.admin).status_code == 404
    entries = pxe_env.client.get("/api/v1/audit?limit=2", headers=pxe_env.admin).get_json()["entries"]
    assert [(e["target"], e["status"]) for e in entries] == [("x" * 200, 404), ("abc\ufffddef", 404)]


def test_big_numbers_and_fractions_round_trip(pxe_env):
    """BIGINT byte counts beyond 32 bits and float times keep every digit on both databases."""
    dep = pxe_env.pending()
    agent = {"Authorization": f"Bearer {pxe_env.boot_token()}"}
    event = {"phase": "stream", "message": "streaming", "bytes_done": (1 << 62) + 1, "bytes_total": (1 << 63) - 1,
             "time": 1_800_000_000.123456}
    assert pxe_env.client.post("/api/v1/agent/events", json=event, headers=agent).status_code == 200
    shown = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.admin).get_json()
    assert (shown["bytes_done"], shown["bytes_total"]) == ((1 << 62) + 1, (1 << 63) - 1)
    assert shown["events"][-1]["time"] == 1_800_000_000.123456


def test_postgresql_connections_the_server_dropped_are_replaced(pg_database, pxe_installer, pxe_image_manifest,
                                                                tmp_path):
    """pool_pre_ping: after the server ended every connection (a restart, a failover), the next request works."""
    from sqlalchemy import create_engine, text

    from pxe import imagestore, tokens
    from pxe.app import create_app
    from pxe.config import ServiceConfig
    url = pg_database()
    app = create_app(ServiceConfig(data_dir=tmp_path / "data", installer=pxe_installer, supervisor_interval=0,
                                   db_url=url))
    engine = app.extensions["metalstream"].engine
    try:
        imagestore.register(engine, tmp_path / "data" / "images", pxe_image_manifest)
        admin = {"Authorization": "Bearer " + tokens.create_api_token(engine, "admin")}
        client = app.test_client()
        body = {"mac": PXE_MAC, "image": "tiny"}
        assert client.post("/api/v1/deployments", json=body, headers=admin).status_code == 201
        killer = create_engine(url, isolation_level="AUTOCOMMIT")  # the pool's idle connection, from outside
        with killer.connect() as conn:
            ended = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
        killer.dispose()
        assert ended >= 1
        listed = client.get("/api/v1/deployments", headers=admin)
        assert listed.status_code == 200 and len(listed.get_json()["deployments"]) == 1
    finally:
        engine.dispose()


def test_without_postgresql_the_cluster_says_to_run_setup(monkeypatch):
    from lab import pg
    monkeypatch.setattr(pg.glob, "glob", lambda pattern: [])
    with pytest.raises(pg.PgClusterError, match=r"run `bash \.ci/setup`"):
        pg.PgCluster.start()


def test_a_database_that_does_not_exist_is_named_not_an_internal_error(pg_database, tmp_path):
    import subprocess

    from sqlalchemy.engine import make_url

    from conftest import METALSTREAM

    url = make_url(pg_database()).set(database="metalstream_nowhere").render_as_string(hide_password=False)
    done = subprocess.run([*METALSTREAM, "token", "create", "--data-dir", tmp_path, "--db", url, "--create",
                           "--comment", "ops"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "internal error" not in done.stderr, done.stderr
    assert "cannot open the database" in done.stderr and "metalstream_nowhere" in done.stderr, done.stderr
    assert "does not exist" in done.stderr, done.stderr
