"""The served service (gunicorn workers) delivers webhooks from a thread of its own: nothing in the test drives
the deliverer."""
from __future__ import annotations

import time

import requests

from fixtures_webhooks import Receiver


def test_the_served_service_delivers_from_its_own_thread(pxe_server):
    api, admin = f"{pxe_server.url}/api/v1", pxe_server.admin
    with Receiver() as receiver:
        made = requests.post(f"{api}/webhooks", headers=admin, timeout=30, json={
            "url": receiver.url, "event_types": ["deployment.pending", "deployment.cancelled"]})
        assert made.status_code == 201, made.text
        hook = made.json()
        try:
            created = requests.post(f"{api}/deployments", headers=admin, timeout=30,
                                    json={"mac": "52:54:00:77:00:01", "image": pxe_server.small_image})
            assert created.status_code == 201, created.text
            dep_id = created.json()["id"]
            assert requests.delete(f"{api}/deployments/{dep_id}", headers=admin, timeout=30).status_code == 200
            for _ in range(600):
                if len(receiver.received) >= 2:
                    break
                time.sleep(0.05)
            deliveries = requests.get(f"{api}/webhooks/{hook['id']}/deliveries", headers=admin, timeout=30).json()
        finally:
            requests.delete(f"{api}/webhooks/{hook['id']}", headers=admin, timeout=30)
    events = receiver.events()
    assert [(e["type"], e["data"]["deployment_id"]) for e in events] == [("deployment.pending", dep_id),
                                                                         ("deployment.cancelled", dep_id)]
    assert all(r.signature_valid(hook["secret"]) for r in receiver.received)
    assert [d["state"] for d in deliveries["deliveries"]] == ["delivered", "delivered"]
    assert hook["secret"] not in pxe_server.log_path.read_text()
