"""Several `metalstream serve` replicas on one PostgreSQL behind nginx: simulated machines deploy through
any replica, one replica is killed with SIGKILL in the middle, and nothing is lost or done twice (issue 16):
no agent event, no deployment result, no silence timeout, no webhook delivery, no power-on or boot-device
restore, no power-state refresh and no SSH activation check. Real processes, loopback only."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections import Counter

import pytest
import requests
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from conftest import METALSTREAM
from fixtures_pxe import cli_admin_token, pxe_write_image
from fixtures_webhooks import Receiver
from lab.fleet import FleetOptions, fleet_macs, run_fleet
from lab.nginx import free_port, load_balancer, nginx
from lab.service_proc import ServiceProcess
from power_stub import RedfishStub
from ssh_knock import KnockCounter

MACHINES = 200
SILENT = 10  # machines that die after fetching their plan: each must be failed once, by one replica
WITH_BMC = 10  # machines with a Redfish BMC (tests/power_stub.py): powered on once, boot device restored once
# The fleet is a closed loop (each machine waits for an answer before its next call): when the replicas are
# saturated, every call waits about MACHINES / (calls the replicas answer per second), whatever the pace. On a
# loaded 2-core machine (the suite beside it, two busy loops) single calls waited up to 65 s at 200 machines.
# The silence timer restarts on agent calls only, not on image requests, so a healthy machine's longest gap is
# one image request plus one event: the image comes in one Range request, and the timeout is well above that
# gap. The silent machines go quiet at the start, so they are failed about when a loaded fleet ends.
AGENT_TIMEOUT = 120
EVENT_INTERVAL = 2.0
POWER_REFRESH = 5.0  # seconds between power-state reads of each BMC machine
ACTIVATION_RETRY = 15.0  # the service's default: one SSH activation check per deployment this often
BMC_PASSWORD = "bmc-pw-replicas-4c1d"
REDFISH_ROOT = "/redfish/v1/"  # every BMC operation starts with one GET of the service root


def _replicas(tmp_path, installer, db_url: str, lb_url: str, manifest) -> list[ServiceProcess]:
    replicas = []
    for n in range(3):
        data_dir = tmp_path / f"replica{n}"
        data_dir.mkdir()
        subprocess.run([*METALSTREAM, "image", "add", "--create", "--data-dir", data_dir, "--db", db_url, manifest],
                       check=True, capture_output=True)
        replicas.append(ServiceProcess(data_dir, installer=installer, public_url=lb_url, workers=1,
                                       agent_timeout=AGENT_TIMEOUT,
                                       options=["--db", db_url, "--sweep-interval", "1", "--threads", "16",
                                                "--auth-max-failures", "0", "--power-refresh-interval",
                                                str(POWER_REFRESH), "--bmc-timeout", "10", "--webhook-timeout", "2"]))
    return replicas


def _agent_calls(replica: ServiceProcess) -> int:
    return replica.log_path.read_text(errors="replace").count("/api/v1/agent/events")


def _kill_when_busy(replica: ServiceProcess, done: threading.Event, at: list, ready=lambda: True,
                    calls: int = 20, timeout: float = 120) -> threading.Thread:
    """SIGKILL the replica once it has served `calls` agent events and `ready()` holds: in the middle of
    deployments, however fast this machine gets the fleet through creating and booting."""
    def kill() -> None:
        deadline = time.monotonic() + timeout
        while (_agent_calls(replica) < calls or not ready()) and time.monotonic() < deadline:
            time.sleep(0.1)
        at.append(time.time())
        for pid in replica.pids():  # the master and its workers, as a crash or the OOM killer would
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        done.set()
    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def _query(db_url: str, sql: str) -> list:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).all()
    finally:
        engine.dispose()


def _events(db_url: str) -> tuple[dict[str, list[tuple]], dict[str, str]]:
    rows = _query(db_url, "SELECT deployment_id, state, message, seq, time FROM events ORDER BY id")
    states = dict(_query(db_url, "SELECT id, state FROM deployments"))
    by_deployment: dict[str, list[tuple]] = {dep_id: [] for dep_id in states}
    for dep_id, state, message, seq, when in rows:
        by_deployment[dep_id].append((state, message, seq, when))
    return by_deployment, states


def _settled(db_url: str, outcomes: dict, silent: frozenset, with_bmc: dict, knocks: KnockCounter,
             addresses: dict) -> bool:
    """The background work the fleet left is done: silent machines failed, every outbox delivery sent, every
    BMC machine's boot device restored, every installed deployment checked over SSH at least once."""
    states = dict(_query(db_url, "SELECT id, state FROM deployments"))
    restored = {dep_id for dep_id, at in _query(db_url, "SELECT id, boot_restored_at FROM deployments") if at}
    pending = _query(db_url, "SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'")[0][0]
    return (all(states[outcomes[mac].deployment_id] == "failed" for mac in silent) and pending == 0
            and all(outcomes[mac].deployment_id in restored for mac in with_bmc)
            and all(knocks.count(addresses[mac]) > 0 for mac in outcomes if mac not in silent))


def _powered_on(db_url: str) -> int:
    """Deployments whose power-on the BMC accepted and the service recorded."""
    return _query(db_url, "SELECT count(*) FROM deployments WHERE powered_at IS NOT NULL")[0][0]


def _register_bmc_machines(lb_url: str, admin: dict, stubs: dict[str, RedfishStub]) -> None:
    for n, (mac, stub) in enumerate(stubs.items()):
        response = requests.post(f"{lb_url}/api/v1/machines", headers=admin, timeout=30, json={
            "name": f"bmc-node{n}", "macs": [mac],
            "bmc": {"driver": "redfish", "address": stub.url, "username": "admin", "password": BMC_PASSWORD}})
        assert response.status_code == 201, response.text


def _subscribe(lb_url: str, admin: dict, receiver: Receiver) -> str:
    response = requests.post(f"{lb_url}/api/v1/webhooks", headers=admin, timeout=30,
                             json={"url": receiver.url, "event_types": ["*"]})
    assert response.status_code == 201, response.text
    return response.json()["secret"]


def test_three_replicas_lose_and_duplicate_nothing_when_one_is_killed(tmp_path, pxe_installer, pg_database,
                                                                     monkeypatch):
    db_url = pg_database()
    monkeypatch.setenv("METALSTREAM_SECRET_KEY", Fernet.generate_key().decode())  # one key for every replica
    image_dir = tmp_path / "image"
    image_dir.mkdir()
    (image_dir / "fleet.tar.zst").write_bytes(os.urandom(256 * 1024))
    manifest = pxe_write_image(image_dir, "fleet", tarball=image_dir / "fleet.tar.zst")
    lb_port = free_port()
    lb_url = f"http://127.0.0.1:{lb_port}"
    replicas = _replicas(tmp_path, pxe_installer, db_url, lb_url, manifest)
    admin = cli_admin_token(replicas[0].data_dir, db_url)
    macs = fleet_macs(MACHINES)
    silent = frozenset(macs[:SILENT])
    stubs = {mac: RedfishStub(password=BMC_PASSWORD) for mac in macs[SILENT:SILENT + WITH_BMC]}
    powered = {mac: (lambda stub=stub: stub.power == "On") for mac, stub in stubs.items()}
    killed, killed_at = threading.Event(), []
    with Receiver() as receiver, KnockCounter(MACHINES) as knocks:
        for stub in stubs.values():
            stub.__enter__()
        addresses = dict(zip(macs, knocks.addresses()))
        try:
            for replica in replicas:
                replica.start()
            upstreams = [f"127.0.0.1:{replica.port}" for replica in replicas]
            with nginx(tmp_path / "nginx", load_balancer(upstreams, lb_port), probe_path="/boot.ipxe"):
                secret = _subscribe(lb_url, admin, receiver)
                _register_bmc_machines(lb_url, admin, stubs)
                registered_at = time.time()
                _kill_when_busy(replicas[1], done=killed, at=killed_at,
                                ready=lambda: _powered_on(db_url) == WITH_BMC)
                options = FleetOptions(image="fleet", event_interval=EVENT_INTERVAL, range_requests=1)
                started = time.monotonic()
                outcomes, stats = asyncio.run(run_fleet(lb_url, admin, macs, options, silent=silent,
                                                        ssh_addresses=addresses, powered=powered))
                fleet_done = time.monotonic()
                assert killed.is_set(), "the fleet finished before the replica was killed: make it longer"
                deadline = time.monotonic() + AGENT_TIMEOUT + 90
                while time.monotonic() < deadline and not _settled(db_url, outcomes, silent, stubs, knocks,
                                                                    addresses):
                    time.sleep(1)
                print(f"fleet {fleet_done - started:.0f} s, background work settled "
                      f"{time.monotonic() - fleet_done:.0f} s later; calls {stats.summary()}")
        finally:
            for replica in replicas:
                replica.stop()
            stopped_at = time.time()
            for stub in stubs.values():
                stub.__exit__(None, None, None)
        received = list(receiver.received)
    errors = [f"{mac}: {o.result}" for mac, o in outcomes.items() if o.result.startswith("error")]
    assert errors == [] and stats.failures == [], errors[:5]
    assert _agent_calls(replicas[1]) >= 20, "the killed replica served under 20 agent events: the kill proved nothing"
    events, states = _events(db_url)
    finished_after_kill = [mac for mac, o in outcomes.items()
                           if any(state == "installed" and when > killed_at[0]
                                  for state, _, _, when in events[o.deployment_id])]
    assert len(finished_after_kill) > MACHINES // 4, "the fleet was nearly done when the replica died"
    for mac, outcome in outcomes.items():
        stored = events[outcome.deployment_id]
        if mac in silent:
            assert states[outcome.deployment_id] == "failed", mac
            assert sum(1 for _, message, _, _ in stored if "silent" in (message or "")) == 1, (mac, stored)
            continue
        assert outcome.result in ("installed", "installed-before"), (mac, outcome)
        assert states[outcome.deployment_id] == "installed", (mac, states[outcome.deployment_id])
        entered = [state for n, (state, _, _, _) in enumerate(stored) if n == 0 or stored[n - 1][0] != state]
        assert entered.count("installed") == 1 and entered[-1] == "installed", (mac, stored)
        seqs = [seq for _, _, seq, _ in stored if seq is not None]
        assert sorted(seqs) == list(range(1, outcome.events_sent + 1)), (mac, seqs)  # none lost, none twice
    delivered, repeats = _check_webhooks(db_url, received, secret, outcomes, silent)
    refreshes = _check_power(db_url, stubs, outcomes, events, killed_at[0], stopped_at - registered_at)
    checks = _check_activation(db_url, knocks, addresses, outcomes, silent, stopped_at)
    print(f"webhook events delivered {delivered} (repeated {repeats}); power refreshes per BMC machine "
          f"{min(refreshes)}-{max(refreshes)} in {stopped_at - registered_at:.0f} s; SSH activation checks {checks}")


def _check_webhooks(db_url: str, received: list, secret: str, outcomes: dict, silent: frozenset) -> tuple[int, int]:
    """Every outbox event arrived, each outbox row was delivered once; a repeat (a delivery in flight on the
    killed replica, sent again when its claim ran out) carries the same event id."""
    outbox = {event_id: (event_type, state) for event_id, event_type, state in _query(db_url, (
        "SELECT e.id, e.type, d.state FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"))}
    assert len(outbox) == len(_query(db_url, "SELECT id FROM webhook_deliveries"))  # one subscription
    assert {state for _, state in outbox.values()} == {"delivered"}, Counter(s for _, s in outbox.values())
    arrived = Counter(r.headers["X-Metalstream-Event-Id"] for r in received)
    assert set(arrived) == set(outbox), (len(arrived), len(outbox))
    assert all(r.signature_valid(secret) and r.event["id"] == r.headers["X-Metalstream-Event-Id"]
               and r.event["type"] == outbox[r.event["id"]][0] for r in received)
    repeated = [event_id for event_id, n in arrived.items() if n > 1]
    assert sum(arrived.values()) - len(arrived) <= 1, repeated  # one subscription: one delivery in flight
    announced = Counter((r.event["data"].get("deployment_id"), r.event["type"]) for r in received
                        if r.event["type"].startswith("deployment."))
    for mac, outcome in outcomes.items():
        final = "deployment.failed" if mac in silent else "deployment.installed"
        assert (outcome.deployment_id, final) in announced, (mac, final)
    return len(arrived), sum(arrived.values()) - len(arrived)


def _check_power(db_url: str, stubs: dict[str, RedfishStub], outcomes: dict, events: dict, killed_at: float,
                 watched_for: float) -> list[int]:
    """Each BMC machine: one network boot override and one power-on before its deployment booted, one boot
    device restore after it was installed, and its power state read once per refresh interval, not once per
    replica."""
    powered = dict(_query(db_url, "SELECT id, powered_at FROM deployments"))
    counts = []
    for mac, stub in stubs.items():
        resets = [body for method, body in stub.actions() if method == "POST"]
        overrides = [(body["Boot"]["BootSourceOverrideTarget"], body["Boot"]["BootSourceOverrideEnabled"])
                     for method, body in stub.actions() if method == "PATCH"]
        assert resets == [{"ResetType": "On"}], (mac, resets)
        assert overrides == [("Pxe", "Once"), ("Hdd", "Continuous")], (mac, overrides)
        assert powered[outcomes[mac].deployment_id] < killed_at, mac
        notes = [message for _, message, _, _ in events[outcomes[mac].deployment_id]
                 if "redfish BMC" in (message or "")]
        assert notes == [f"redfish BMC {stub.url}: boot once from the network, powered on",
                         f"redfish BMC {stub.url}: boot device set back to disk"], (mac, notes)
        refreshes = sum(1 for method, path, _ in stub.requests if method == "GET" and path == REDFISH_ROOT) - 4
        assert 1 <= refreshes <= watched_for / POWER_REFRESH + 1, (mac, refreshes, watched_for)
        counts.append(refreshes)
    return counts


def _check_activation(db_url: str, knocks: KnockCounter, addresses: dict, outcomes: dict, silent: frozenset,
                      stopped_at: float) -> int:
    """Each installed deployment was checked over SSH at least once and at most once per retry interval."""
    installed_at = dict(_query(db_url, "SELECT id, installed_at FROM deployments"))
    for mac, outcome in outcomes.items():
        if mac in silent:
            assert knocks.count(addresses[mac]) == 0, mac
            continue
        window = stopped_at - installed_at[outcome.deployment_id]
        assert 1 <= knocks.count(addresses[mac]) <= window // ACTIVATION_RETRY + 1, (mac, window)
    return sum(knocks.count(address) for address in addresses.values())
