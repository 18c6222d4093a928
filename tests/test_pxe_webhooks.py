"""Webhooks against a real HTTP receiver on 127.0.0.1 (tests/fixtures_webhooks.py): every transition of a deployment
arrives in order and signed; a receiver that is down, failing or hanging; secrets; bad input. Deliveries are
driven by calling the deliverer (bounded loops), or by its thread where the point is that it runs on its own."""
from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from sqlalchemy import func, select

from fixtures_pxe import PXE_MAC
from fixtures_webhooks import Receiver, free_port

from pxe import db, deployments, webhook_delivery, webhooks

EVENT = {"phase": "stream", "message": "streaming image", "bytes_done": 100, "bytes_total": 1000, "time": 1.0}
SUCCESS = {"success": True, "phase": "finish", "error": None, "log": "agent log\n", "root_uuid": "0f3c-77aa", "time": 2.0}
FAILURE = {"success": False, "phase": "partition", "error": "no disk matched serial S1", "log": "..."}
OTHER_MAC = "52:54:00:12:34:57"


@pytest.fixture
def env(pxe_env):
    """pxe_env with webhook timings small enough for tests that run in seconds."""
    config = pxe_env.service.config
    config.webhook_timeout, config.webhook_backoff, config.webhook_retry_for = 2.0, 0.02, 3600.0
    return pxe_env


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def subscribe(env, url: str, **fields) -> dict:
    response = env.client.post("/api/v1/webhooks", json={"url": url, **fields}, headers=env.admin)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def drive_to_active(env, mac: str = PXE_MAC) -> str:
    """pending → booting → installing → installed → active, through the API as the agent and the check do it."""
    dep = env.pending(mac)
    agent = _bearer(env.boot_token(mac))
    assert env.client.get("/api/v1/agent/plan", headers=agent).status_code == 200
    assert env.client.post("/api/v1/agent/events", json=EVENT, headers=agent).status_code == 200
    assert env.client.post("/api/v1/agent/result", json=SUCCESS, headers=agent).get_json()["state"] == "installed"
    assert deployments.finish_activation(env.service.engine, dep["id"], True, "host runs image tiny")
    return dep["id"]


def drive_to_failed(env, mac: str) -> str:
    dep = env.pending(mac)
    agent = _bearer(env.boot_token(mac))
    assert env.client.post("/api/v1/agent/result", json=FAILURE, headers=agent).get_json()["state"] == "failed"
    return dep["id"]


def drain(env, done, rounds: int = 500) -> None:
    """Run delivery passes until `done()` (bounded: fails after `rounds` passes)."""
    for _ in range(rounds):
        webhook_delivery.deliver_due(env.service)
        if done():
            return
        time.sleep(0.01)
    raise AssertionError("deliveries did not finish")


def delivery_rows(env) -> list:
    d, e = db.webhook_deliveries, db.webhook_events
    with env.service.engine.connect() as conn:
        return conn.execute(select(d, e.c.type, e.c.seq).select_from(d.join(e, e.c.id == d.c.event_id))
                            .order_by(e.c.seq)).mappings().all()


def pending_count(env) -> int:
    return sum(1 for row in delivery_rows(env) if row["state"] == "pending")


ACTIVE_PATH = ["deployment.pending", "deployment.booting", "deployment.installing", "deployment.installed",
               "deployment.active"]


def test_every_transition_arrives_in_order_signed(env):
    with Receiver() as receiver:
        hook = subscribe(env, receiver.url)
        secret = hook["secret"]
        assert secret.startswith("whsec_") and len(secret) > 40
        active = drive_to_active(env)
        failed = drive_to_failed(env, OTHER_MAC)
        cancelled = env.pending()["id"]
        assert env.client.delete(f"/api/v1/deployments/{cancelled}", headers=env.admin).status_code == 200
        drain(env, lambda: pending_count(env) == 0)
        got = list(receiver.received)

    by_deployment: dict[str, list[str]] = {}
    for request in got:
        event = request.event
        assert request.signature_valid(secret), request.headers
        assert not request.signature_valid(secret + "x")
        assert request.headers["X-Metalstream-Event-Id"] == event["id"]
        assert request.headers["X-Metalstream-Event-Type"] == event["type"]
        assert request.headers["Content-Type"] == "application/json"
        assert set(event) == {"id", "type", "time", "data"}
        data = event["data"]
        assert event["type"] == f"deployment.{data['state']}"
        assert set(data) == {"deployment_id", "machine_id", "mac", "state", "phase", "message", "error", "image",
                             "time"}
        assert data["image"] == "tiny" and data["machine_id"] is None
        by_deployment.setdefault(data["deployment_id"], []).append(event["type"])
    assert by_deployment[active] == ACTIVE_PATH
    assert by_deployment[failed] == ["deployment.pending", "deployment.booting", "deployment.installing",
                                     "deployment.failed"]
    assert by_deployment[cancelled] == ["deployment.pending", "deployment.cancelled"]
    assert [r.event["type"] for r in got] == ACTIVE_PATH + ["deployment.pending", "deployment.booting",
                                                             "deployment.installing", "deployment.failed",
                                                             "deployment.pending",
                                                             "deployment.cancelled"]  # one receiver: outbox order
    failure = next(r.event["data"] for r in got if r.event["type"] == "deployment.failed")
    assert failure["error"] == "no disk matched serial S1" and failure["mac"] == OTHER_MAC
    assert len({r.event["id"] for r in got}) == len(got)
    shown = env.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=env.read).get_json()["deliveries"]
    assert len(shown) == len(got) and {d["state"] for d in shown} == {"delivered"}
    assert all(d["attempts"] == 1 and d["last_status"] == 204 and d["last_error"] is None for d in shown)
    assert [d["event_id"] for d in shown] == [r.event["id"] for r in reversed(got)]  # newest first


def test_receiver_down_then_back_gets_every_event_once_in_order(env):
    port = free_port()  # nothing listens here yet: connections are refused
    receiver = Receiver(port)
    hook = subscribe(env, receiver.url, secret="s3cret-for-the-test-0123")
    dep = env.pending()
    agent = _bearer(env.boot_token())
    assert env.client.get("/api/v1/agent/plan", headers=agent).status_code == 200
    # three failed attempts of the first event; the later ones wait behind it
    drain(env, lambda: delivery_rows(env)[0]["attempts"] == 3)
    rows = delivery_rows(env)
    assert [r["type"] for r in rows] == ["deployment.pending", "deployment.booting", "deployment.installing"]
    assert rows[0]["attempts"] == 3 and rows[0]["state"] == "pending" and rows[0]["last_status"] is None
    assert rows[0]["last_error"] == "could not connect (Connection refused)"
    assert [r["attempts"] for r in rows[1:]] == [0, 0]
    shown = env.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries?state=pending",
                           headers=env.read).get_json()["deliveries"]
    oldest = shown[-1]
    assert oldest["event_type"] == "deployment.pending" and oldest["attempts"] == 3
    assert oldest["last_error"] == "could not connect (Connection refused)" and oldest["next_attempt_at"] > 0

    with receiver:
        assert env.client.post("/api/v1/agent/result", json=SUCCESS, headers=agent).status_code == 200
        assert deployments.finish_activation(env.service.engine, dep["id"], True, "host runs image tiny")
        drain(env, lambda: pending_count(env) == 0)
    events = [r.event for r in receiver.received]
    assert [e["type"] for e in events] == ACTIVE_PATH
    assert len({e["id"] for e in events}) == len(events) == 5
    assert all(r.signature_valid("s3cret-for-the-test-0123") for r in receiver.received)
    first = delivery_rows(env)[0]
    assert first["attempts"] == 4 and first["state"] == "delivered" and first["last_error"] is None


def test_a_failing_receiver_gets_the_same_event_id_again(env):
    with Receiver(mode="fail") as receiver:
        subscribe(env, receiver.url, event_types=["deployment.pending"])
        env.pending()
        drain(env, lambda: delivery_rows(env)[0]["attempts"] == 2)
        [row] = delivery_rows(env)
        assert (row["attempts"], row["last_status"], row["last_error"]) == (2, 500, "HTTP 500")
        receiver.mode = "ok"
        drain(env, lambda: pending_count(env) == 0)
    [request] = receiver.received
    assert request.event["id"] == row["event_id"]


def test_retries_end_failed_after_the_retry_window_and_later_events_go_on(env):
    env.service.config.webhook_retry_for = 0.2
    receiver = Receiver()
    subscribe(env, receiver.url)
    env.pending()
    drain(env, lambda: delivery_rows(env)[0]["state"] == "failed")
    first = delivery_rows(env)[0]
    assert first["attempts"] >= 2 and first["next_attempt_at"] is None
    env.service.config.webhook_retry_for = 3600.0
    with receiver:
        env.boot_token()  # booting: a new event, not held back by the failed one
        drain(env, lambda: pending_count(env) == 0)
    assert [e["type"] for e in receiver.events()] == ["deployment.booting"]
    text = env.client.get("/metrics").get_data(as_text=True)
    assert 'metalstream_webhook_deliveries_total{outcome="failed"}' in text
    assert 'metalstream_webhook_deliveries_total{outcome="retry"}' in text
    assert 'metalstream_webhook_deliveries_total{outcome="delivered"}' in text


def test_a_receiver_that_hangs_beyond_the_timeout_is_a_failed_attempt(env):
    env.service.config.webhook_timeout = 0.3
    with Receiver(mode="hang", hang_limit=10) as receiver:
        subscribe(env, receiver.url)
        env.pending()
        webhook_delivery.deliver_due(env.service)
        [row] = delivery_rows(env)
        assert row["state"] == "pending" and row["attempts"] == 1 and row["last_error"] == "no answer within 0.3 s"
        receiver.release()


def test_a_hanging_receiver_does_not_delay_the_deployment(env):
    env.service.config.webhook_timeout = 60.0
    with Receiver(mode="hang", hang_limit=60) as receiver:
        subscribe(env, receiver.url)
        deliverer = webhook_delivery.start(env.service, interval=0.02)
        try:
            dep = env.pending()
            for _ in range(500):  # the deliverer's thread is now stuck in the receiver
                if receiver.in_flight:
                    break
                time.sleep(0.01)
            assert receiver.in_flight == 1
            agent = _bearer(env.boot_token())
            assert env.client.get("/api/v1/agent/plan", headers=agent).status_code == 200
            assert env.client.post("/api/v1/agent/events", json=EVENT, headers=agent).status_code == 200
            assert env.client.post("/api/v1/agent/result", json=SUCCESS, headers=agent).status_code == 200
            assert deployments.finish_activation(env.service.engine, dep["id"], True, "host runs image tiny")
            shown = env.client.get(f"/api/v1/deployments/{dep['id']}", headers=env.read).get_json()
            # the whole deployment happened while the first delivery was still held by the receiver
            assert shown["state"] == "active" and receiver.in_flight == 1 and receiver.received == []
            receiver.release()
            for _ in range(1000):
                if len(receiver.received) == 5:
                    break
                time.sleep(0.01)
        finally:
            receiver.release()
            deliverer.stop(timeout=30)
    assert [e["type"] for e in receiver.events()] == ACTIVE_PATH


def test_concurrent_deliverers_never_send_one_delivery_twice(env):
    with Receiver() as receiver:
        for _ in range(3):
            subscribe(env, receiver.url)
        drive_to_active(env)
        errors = []

        def work():
            try:
                for _ in range(100):
                    webhook_delivery.deliver_due(env.service)
                    if pending_count(env) == 0:
                        return
            except Exception as exc:  # reported below
                errors.append(exc)
        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors and pending_count(env) == 0
    sent = [(r.event["id"], r.headers["X-Metalstream-Signature"]) for r in receiver.received]
    assert len(sent) == 15  # 5 events x 3 subscriptions, each once
    per_event = {}
    for event_id, _ in sent:
        per_event[event_id] = per_event.get(event_id, 0) + 1
    assert sorted(per_event.values()) == [3] * 5
    assert all(row["attempts"] == 1 for row in delivery_rows(env))


def test_a_claim_is_exclusive(env):
    subscribe(env, "http://127.0.0.1:9/never")
    env.pending()
    now = time.time()
    assert len(webhook_delivery.claim_due(env.service.engine, now, lease=60)) == 1
    assert webhook_delivery.claim_due(env.service.engine, now, lease=60) == []
    assert len(webhook_delivery.claim_due(env.service.engine, now + 61, lease=60)) == 1  # the lease ran out


def test_event_types_filter_and_disabled_subscriptions(env):
    with Receiver() as failures, Receiver() as everything:
        only = subscribe(env, failures.url, event_types=["deployment.failed", "deployment.failed"])
        assert only["event_types"] == ["deployment.failed"]
        off = subscribe(env, everything.url, enabled=False)
        drive_to_failed(env, OTHER_MAC)
        drain(env, lambda: pending_count(env) == 0)
        assert [e["type"] for e in failures.events()] == ["deployment.failed"] and everything.received == []
        response = env.client.patch(f"/api/v1/webhooks/{off['id']}", json={"enabled": True}, headers=env.admin)
        assert response.status_code == 200 and response.get_json()["enabled"] is True
        env.pending()
        drain(env, lambda: pending_count(env) == 0)
        assert [e["type"] for e in everything.events()] == ["deployment.pending"]


def test_events_are_written_in_the_changes_transaction(env):
    engine = env.service.engine
    with engine.begin() as conn:  # nobody subscribed: nothing is written
        assert webhooks.enqueue(conn, "deployment.pending", {"x": 1}) is None
    subscribe(env, "http://127.0.0.1:9/never")
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            assert webhooks.enqueue(conn, "deployment.pending", {"x": 1})
            raise RuntimeError("the change is rolled back")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.webhook_events)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(db.webhook_deliveries)).scalar() == 0
    with pytest.raises(ValueError):
        with engine.begin() as conn:
            webhooks.enqueue(conn, "deployment.exploded", {})


def test_crud_auth_and_not_found(env):
    for url in ("http://[::1]:8080/h", "http://192.0.2.7/", "https://inventory.example./hook~1/a_b-c+d,e=f:g@h"):
        assert subscribe(env, url)["url"] == url
    created = subscribe(env, "https://inventory.example:8443/hooks?x=1&y=%2F")
    hook_id = created["id"]
    assert created["event_types"] == ["*"] and created["enabled"] is True
    assert env.client.get("/api/v1/webhooks", headers=env.read).get_json()["webhooks"][-1] == {
        k: v for k, v in created.items() if k != "secret"}
    for method, path, body in (("post", "/api/v1/webhooks", {"url": "http://a.example/"}),
                               ("patch", f"/api/v1/webhooks/{hook_id}", {"enabled": False}),
                               ("delete", f"/api/v1/webhooks/{hook_id}", None)):
        response = getattr(env.client, method)(path, json=body, headers=env.read)
        assert response.status_code == 403, (method, response.get_json())
    assert env.client.get("/api/v1/webhooks").status_code == 401
    changed = env.client.patch(f"/api/v1/webhooks/{hook_id}", headers=env.admin,
                               json={"url": "http://10.0.0.9/h", "event_types": ["machine.power.off"],
                                     "secret": "a-new-secret-of-the-right-size"}).get_json()
    assert changed == {**{k: v for k, v in created.items() if k != "secret"}, "url": "http://10.0.0.9/h",
                       "event_types": ["machine.power.off"]}
    for path in ("/api/v1/webhooks/nope", "/api/v1/webhooks/nope/deliveries"):
        response = env.client.get(path, headers=env.read)
        assert response.status_code == 404 and response.get_json()["field"] == "id"
    assert env.client.patch("/api/v1/webhooks/nope", json={}, headers=env.admin).status_code == 404
    bad = env.client.get(f"/api/v1/webhooks/{hook_id}/deliveries?limit=0", headers=env.read)
    assert bad.status_code == 400 and bad.get_json()["field"] == "limit"
    bad = env.client.get(f"/api/v1/webhooks/{hook_id}/deliveries?state=lost", headers=env.read)
    assert bad.status_code == 400 and bad.get_json()["field"] == "state"
    env.pending()
    assert env.client.delete(f"/api/v1/webhooks/{hook_id}", headers=env.admin).status_code == 204
    assert env.client.get(f"/api/v1/webhooks/{hook_id}", headers=env.read).status_code == 404
    remaining = delivery_rows(env)
    assert len(remaining) == 3 and hook_id not in {row["webhook_id"] for row in remaining}


BAD_INPUT = [
    ({"url": "javascript:alert(1)"}, "url"),
    ({"url": "file:///etc/passwd"}, "url"),
    ({"url": "ftp://files.example/x"}, "url"),
    ({"url": "gopher://h:70/"}, "url"),
    ({"url": "//no-scheme.example/"}, "url"),
    ({"url": "http://user:pw@inventory.example/"}, "url"),
    ({"url": "http://inventory.example@evil.example/"}, "url"),
    ({"url": "http://h.example/a b"}, "url"),
    ({"url": "http://h.example/a\r\nX-Injected: 1"}, "url"),
    ({"url": "http://h.example/\x00"}, "url"),
    ({"url": "http://h.example/\"><script>alert(1)</script>"}, "url"),
    ({"url": "http://h.example/$(reboot)"}, "url"),
    ({"url": "http://h.example/`id`"}, "url"),
    ({"url": "http://h.example/x;rm -rf"}, "url"),
    ({"url": "http://h.example/'or'1'='1"}, "url"),
    ({"url": "http://h.example/%zz"}, "url"),
    ({"url": "http://h.example/#frag"}, "url"),
    ({"url": "http://h_bad.example/"}, "url"),
    ({"url": "http://h.example:0/"}, "url"),
    ({"url": "http://[::::]/"}, "url"),
    ({"url": "http://" + "a." * 127 + "example/"}, "url"),
    ({"url": "http://h.example:70000/"}, "url"),
    ({"url": "http://ünïcode.example/"}, "url"),
    ({"url": "http://h.example/" + "a" * 2040}, "url"),
    ({"url": 42}, "url"),
    ({}, "url"),
    ({"url": "http://h.example/", "event_types": ["deployment.exploded"]}, "event_types[0]"),
    ({"url": "http://h.example/", "event_types": ["deployment.active", "machine.*"]}, "event_types[1]"),
    ({"url": "http://h.example/", "event_types": []}, "event_types"),
    ({"url": "http://h.example/", "event_types": "deployment.active"}, "event_types"),
    ({"url": "http://h.example/", "secret": "short"}, "secret"),
    ({"url": "http://h.example/", "secret": "has a space in it, long enough"}, "secret"),
    ({"url": "http://h.example/", "secret": "x" * 257}, "secret"),
    ({"url": "http://h.example/", "secret": None}, "secret"),
    ({"url": "http://h.example/", "enabled": "yes"}, "enabled"),
    ({"url": "http://h.example/", "owner": "me"}, "owner"),
]


def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(env):
    for body, field in BAD_INPUT:
        response = env.client.post("/api/v1/webhooks", json=body, headers=env.admin)
        assert response.status_code == 400, (body, response.get_json())
        assert response.get_json()["field"] == field, (body, response.get_json())
    assert env.client.post("/api/v1/webhooks", data="[1", headers={**env.admin, "Content-Type": "application/json"}
                           ).status_code == 400
    with env.service.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.webhooks)).scalar() == 0
    hook = subscribe(env, "http://h.example/ok")
    for body, field in BAD_INPUT:
        patched = env.client.patch(f"/api/v1/webhooks/{hook['id']}", json=body or {"url": None}, headers=env.admin)
        assert patched.status_code == 400 and patched.get_json()["field"] == field, (body, patched.get_json())
    assert env.client.get(f"/api/v1/webhooks/{hook['id']}", headers=env.read).get_json() == {
        k: v for k, v in hook.items() if k != "secret"}


def test_secrets_appear_nowhere_but_the_create_answer_and_the_signature(env, caplog):
    caplog.set_level(logging.DEBUG)
    given = "given-secret-" + "q" * 20
    with Receiver() as receiver, Receiver(mode="fail") as failing:
        made = subscribe(env, receiver.url)
        generated = made["secret"]
        kept = subscribe(env, failing.url, secret=given)
        assert kept["secret"] == given
        answers = [json.dumps(made), json.dumps(kept)]
        drive_to_active(env)
        drain(env, lambda: len(receiver.received) == 5)  # meanwhile the failing receiver's attempts are logged
        for path in ("/api/v1/webhooks", f"/api/v1/webhooks/{made['id']}", f"/api/v1/webhooks/{kept['id']}",
                     f"/api/v1/webhooks/{made['id']}/deliveries", f"/api/v1/webhooks/{kept['id']}/deliveries",
                     "/api/v1/audit", "/metrics"):
            answers.append(env.client.get(path, headers=env.admin).get_data(as_text=True))
        answers.append(env.client.patch(f"/api/v1/webhooks/{kept['id']}", json={"secret": given + "2"},
                                        headers=env.admin).get_data(as_text=True))
        bodies = [r.body.decode() + json.dumps(r.headers) for r in receiver.received]
    assert "not delivered" in caplog.text  # the failing attempt was logged
    for secret in (generated, given, given + "2"):
        for text in answers[2:] + bodies + [caplog.text]:
            assert secret not in text
    assert generated in answers[0] and given in answers[1]
    with env.service.engine.connect() as conn:
        dump = [json.dumps([list(map(str, row)) for row in conn.execute(select(table)).all()])
                for table in db.metadata.sorted_tables]
        sealed = dict(conn.execute(select(db.webhooks.c.id, db.webhooks.c.secret_sealed)).all())
    assert all(secret not in text for secret in (generated, given, given + "2") for text in dump)
    assert env.service.secrets.unseal(sealed[made["id"]]) == generated
    assert env.service.secrets.unseal(sealed[kept["id"]]) == given + "2"


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    claim = webhook_delivery.Claim(1, "w", "http://x/", "", "e-1", "deployment.active", 1.5, {"a": 1}, 0, 0.0)
    body = webhook_delivery.body_of(claim)
    assert json.loads(body) == {"id": "e-1", "type": "deployment.active", "time": 1.5, "data": {"a": 1}}
    # the value a receiver computes by hand with Python's hmac module (docs/webhooks.md)
    import hashlib
    import hmac
    expected = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhook_delivery.signature("k" * 16, "1700000000", body) == f"sha256={expected}"


def test_backoff_doubles_with_jitter_and_is_capped():
    import random
    rng = random.Random(7)
    for attempts, full in ((1, 5.0), (2, 10.0), (3, 20.0), (20, webhook_delivery.MAX_BACKOFF)):
        delays = [webhook_delivery.backoff(attempts, 5.0, rng) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays) and len(set(delays)) > 1


def test_serve_refuses_a_retry_window_under_an_hour(tmp_path):
    import subprocess

    from conftest import METALSTREAM
    result = subprocess.run([*METALSTREAM, "serve", "--data-dir", tmp_path, "--webhook-retry-for", "600"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--webhook-retry-for" in result.stderr and "600" in result.stderr


def test_prune_forgets_ended_deliveries_and_unused_events_after_the_retention(env):
    with Receiver() as receiver:
        subscribe(env, receiver.url)
        env.pending()
        drain(env, lambda: pending_count(env) == 0)
    subscribe(env, "http://127.0.0.1:9/never")
    env.boot_token()  # booting: delivered to nobody yet (the first receiver is gone, the second never was)
    engine, later = env.service.engine, time.time() + webhook_delivery.RETENTION + 1
    assert webhook_delivery.prune(engine, time.time()) == 0  # nothing is old enough
    assert webhook_delivery.prune(engine, later) == 1  # the delivered one; pending ones stay, whatever their age
    assert sorted((r["type"], r["state"]) for r in delivery_rows(env)) == [("deployment.booting", "pending"),
                                                                          ("deployment.booting", "pending")]
    with engine.connect() as conn:
        assert list(conn.execute(select(db.webhook_events.c.type)).scalars()) == ["deployment.booting"]
