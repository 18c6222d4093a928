"""Several `metalstream serve` replicas on one PostgreSQL behind nginx: simulated machines deploy through
any replica, one replica is killed with SIGKILL in the middle, and nothing is lost or done twice
(issue 16). Real processes, loopback only."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time

import pytest
from sqlalchemy import create_engine, text

from conftest import METALSTREAM
from fixtures_pxe import cli_admin_token, pxe_write_image
from lab.fleet import FleetOptions, fleet_macs, run_fleet
from lab.nginx import free_port, load_balancer, nginx
from lab.service_proc import ServiceProcess

MACHINES = 120
SILENT = 10  # machines that die after fetching their plan: each must be failed once, by one replica
# The fleet is a closed loop (each machine waits for an answer before its next call), so a call waits about
# MACHINES / (what the replicas answer per second). On a loaded 2-core machine that reached 25 s per call,
# and a healthy machine's gap between two events (two image Range requests and an event) passed a 20 or 30 s
# silence timeout: it was failed as silent and its next event answered 401. Fewer machines, a slower pace
# and a timeout well above that gap keep the test about what it proves (nothing lost, nothing twice).
AGENT_TIMEOUT = 60
EVENT_INTERVAL = 2.0


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
                                                "--auth-max-failures", "0"]))
    return replicas


def _agent_calls(replica: ServiceProcess) -> int:
    return replica.log_path.read_text(errors="replace").count("/api/v1/agent/events")


def _kill_when_busy(replica: ServiceProcess, done: threading.Event, at: list,
                    calls: int = 20, timeout: float = 120) -> threading.Thread:
    """SIGKILL the replica once it has served `calls` agent events: in the middle of deployments, however
    fast this machine gets the fleet through creating and booting."""
    def kill() -> None:
        deadline = time.monotonic() + timeout
        while _agent_calls(replica) < calls and time.monotonic() < deadline:
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


def _events(db_url: str) -> tuple[dict[str, list[tuple]], dict[str, str]]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT deployment_id, state, message, seq, time FROM events ORDER BY id")).all()
            states = dict(conn.execute(text("SELECT id, state FROM deployments")).all())
    finally:
        engine.dispose()
    by_deployment: dict[str, list[tuple]] = {dep_id: [] for dep_id in states}
    for dep_id, state, message, seq, when in rows:
        by_deployment[dep_id].append((state, message, seq, when))
    return by_deployment, states


def test_three_replicas_lose_and_duplicate_nothing_when_one_is_killed(tmp_path, pxe_installer, pg_database):
    db_url = pg_database()
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
    killed, killed_at = threading.Event(), []
    try:
        for replica in replicas:
            replica.start()
        upstreams = [f"127.0.0.1:{replica.port}" for replica in replicas]
        with nginx(tmp_path / "nginx", load_balancer(upstreams, lb_port), probe_path="/boot.ipxe"):
            _kill_when_busy(replicas[1], done=killed, at=killed_at)
            options = FleetOptions(image="fleet", event_interval=EVENT_INTERVAL)
            outcomes, stats = asyncio.run(run_fleet(lb_url, admin, macs, options, silent=silent))
            assert killed.is_set(), "the fleet finished before the replica was killed: make it longer"
            deadline = time.monotonic() + AGENT_TIMEOUT + 30
            while time.monotonic() < deadline:  # the surviving replicas' sweepers fail the silent ones
                events, states = _events(db_url)
                if all(states[outcomes[mac].deployment_id] == "failed" for mac in silent):
                    break
                time.sleep(1)
    finally:
        for replica in replicas:
            replica.stop()
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
        assert sum(1 for state, _, _, _ in stored if state == "installed") == 1, (mac, stored)
        seqs = [seq for _, _, seq, _ in stored if seq is not None]
        assert sorted(seqs) == list(range(1, outcome.events_sent + 1)), (mac, seqs)  # none lost, none twice
