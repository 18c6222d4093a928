"""Background duties of the service: fail deployments whose agent went silent (or whose machine fetched a
first-stage loader over TFTP and then asked for nothing), run activation checks.

`tick()` does one sweep and is what tests call; `start()` runs it every `supervisor_interval` seconds
in a daemon thread of each gunicorn worker. Work is claimed through conditional UPDATEs, so several
workers sweeping at once never check one host twice or fail one deployment twice.
"""
from __future__ import annotations

import logging
import threading
import time

from . import activation, deployments, firststage_store, imagestore, power_duties
from .errors import NotFound
from .service import Service

log = logging.getLogger("metalstream.pxe.supervisor")


def tick(service: Service, now: float | None = None) -> None:
    config = service.config
    given, now = now, now if now is not None else time.time()
    for dep_id in deployments.reap_silent(service.engine, config.agent_timeout, now):
        log.warning("deployment %s failed: agent silent for more than %s s", dep_id, config.agent_timeout)
    for dep_id in firststage_store.reap_silent_after_first_stage(service.engine, config.agent_timeout, now):
        log.warning("deployment %s failed: its machine fetched a first-stage loader over TFTP and then asked for "
                    "nothing for more than %s s", dep_id, config.agent_timeout)
    for row in deployments.claim_activation_checks(service.engine, config.activation_retry, now):
        check_one(service, row, now)
    # BMC calls run in its own threads: a slow BMC does not hold up this sweep. Its claims take the time they
    # are made (unless a test gives one): the checks above can take seconds, and a claim stamped that much
    # earlier looks expired that much sooner to other replicas.
    power_duties.tick(service, given)


def check_one(service: Service, row, now: float) -> None:
    config = service.config
    request = row["request"]
    address = request.get("ssh_address") or (f"{row['agent_address']}:22" if row["agent_address"] else None)
    if address is None:
        deployments.finish_activation(service.engine, row["id"], False, "no address known to reach the host over SSH")
        return
    try:
        image = imagestore.get(service.engine, row["image_name"])
    except NotFound:
        deployments.finish_activation(service.engine, row["id"], False, f"image {row['image_name']} was deleted")
        return
    expected = activation.expected_for(row, image)
    try:
        host = activation.check_host(address, config.ssh_user, config.deploy_key, expected, root=config.activation_root)
        ok, message = host.ok, host.message
    except activation.Unreachable as exc:
        if now - (row["installed_at"] or now) > config.activation_timeout:
            deployments.finish_activation(service.engine, row["id"], False,
                                          f"host not reachable over SSH within {config.activation_timeout:g} s: {exc}")
        else:
            deployments.note_activation_attempt(service.engine, row["id"], f"waiting for SSH: {exc}")
        return
    deployments.finish_activation(service.engine, row["id"], ok, message, host.secure_boot)
    log.info("deployment %s activation check: %s", row["id"], message)


def start(service: Service) -> threading.Thread | None:
    interval = service.config.supervisor_interval
    if interval <= 0:
        return None

    def loop() -> None:
        while True:
            time.sleep(interval)
            try:
                tick(service)
            except Exception:  # keep sweeping; the next tick may succeed (e.g. the database was busy)
                log.exception("supervisor sweep failed")

    thread = threading.Thread(target=loop, name="metalstream-supervisor", daemon=True)
    thread.start()
    return thread
