"""The supervisor's power duties (docs/power.md):

* power on: a pending deployment of a machine with a BMC is claimed (conditional UPDATE of
  power_claimed_at), its machine set to boot once from the network and powered on (reset if it is
  already on); `powered_at` records that the BMC accepted it. A BMC failure fails the deployment
  with the BMC's message.
* boot timeout: powered on, but still pending `boot_timeout` seconds later (it never fetched its boot
  script) → failed.
* boot device back to disk after `installed` (best effort, retried; `boot_restored_at` when done).
* power-state refresh: every `power_refresh_interval` seconds each machine with a BMC is asked for its
  power state (machines.power_state / power_checked_at / power_error, claimed through power_claimed_at).

Claims are made in the sweep; the BMC calls run in a small thread pool, so a slow or dead BMC never
holds up the sweep (silent agents, activation checks). `drain()` waits for the calls in flight.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Connection

from . import db, deployments, machines, states, webhooks
from .power import BmcAccess, NoPowerControl, PowerError, driver_for
from .service import Service

log = logging.getLogger("metalstream.pxe.power")

POOL_SIZE = 4  # BMC calls at once from one process's sweeps (per BMC: config.bmc_concurrency)
RESTORE_RETRY = 60.0  # seconds between attempts to set the boot device back to disk
RESTORE_GIVE_UP = 3600.0  # ... for at most this long after `installed`

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_in_flight: set[Future] = set()


def tick(service: Service, now: float | None = None) -> list[Future]:
    """One sweep: fail boot timeouts, claim due work and hand its BMC calls to the pool (not waited for)."""
    now = now if now is not None else time.time()
    config = service.config
    for dep_id in fail_boot_timeouts(service, now):
        log.warning("deployment %s failed: powered on but never network-booted within %g s", dep_id,
                    config.boot_timeout)
    jobs = [(power_on, dep_id, machine_id) for dep_id, machine_id in claim_power_ons(service, now)]
    jobs += [(restore_boot_device, dep_id, machine_id) for dep_id, machine_id in claim_boot_restores(service, now)]
    jobs += [(refresh_power_state, machine_id) for machine_id in claim_power_refreshes(service, now)]
    return [_submit(job[0], service, *job[1:]) for job in jobs]


def drain(timeout: float | None = None) -> None:
    """Wait for the BMC calls handed to the pool so far (tests; a clean shutdown)."""
    with _pool_lock:
        pending = list(_in_flight)
    wait(pending, timeout=timeout)


def _submit(function, *args) -> Future:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="metalstream-power")
        future = _pool.submit(_guarded, function, *args)
        _in_flight.add(future)
    future.add_done_callback(_forget)
    return future


def _forget(future: Future) -> None:
    with _pool_lock:
        _in_flight.discard(future)


def _guarded(function, service: Service, *args) -> None:
    try:
        function(service, *args)
    except Exception:  # a bug or the database: logged; the claim's own timeout brings the work back
        log.exception("power duty %s%s failed", function.__name__, args)


# --- power-on of pending deployments -----------------------------------------------------------------

def _with_bmc():
    return and_(db.machines.c.id == db.deployments.c.machine_id, db.machines.c.bmc_driver != "manual")


def claim_power_ons(service: Service, now: float) -> list[tuple[str, str]]:
    """(deployment id, machine id) of pending deployments of BMC machines that this call claimed."""
    d = db.deployments.c
    with service.engine.connect() as conn:
        due = conn.execute(select(d.id, d.machine_id).select_from(db.deployments.join(db.machines, _with_bmc()))
                           .where(and_(d.state == states.PENDING, d.power_claimed_at.is_(None)))).all()
    claimed = []
    for dep_id, machine_id in due:
        with service.engine.begin() as conn:
            got = conn.execute(update(db.deployments).where(and_(
                d.id == dep_id, d.state == states.PENDING, d.power_claimed_at.is_(None)))
                .values(power_claimed_at=now)).rowcount
        if got == 1:
            claimed.append((dep_id, machine_id))
    return claimed


def power_on(service: Service, dep_id: str, machine_id: str) -> bool:
    """Boot once from the network, then power on (reset if on). True if the BMC accepted it; a BMC failure
    fails the deployment with the BMC's message."""
    try:
        access = machines.bmc_access(service, machine_id)
        bmc = driver_for(access, service.config)
    except NoPowerControl:
        log.info("deployment %s: machine %s has no BMC now; power it on by hand", dep_id, machine_id)
        return False
    where = _describe(access)
    boot_set = False
    try:
        was = bmc.status()
        if not _still_pending(service, dep_id):
            return False
        bmc.set_boot_device("network", once=True)
        boot_set = True
        if was == "on":
            bmc.reset()
        else:
            bmc.power_on()
    except PowerError as exc:
        if boot_set:
            _undo_network_boot(bmc, dep_id)
        reason = f"power-on through the BMC failed: {exc.message}"
        with service.engine.begin() as conn:
            failed = deployments.transition(conn, dep_id, states.FAILED, reason, sources=(states.PENDING,),
                                            error=reason)
        if failed:
            log.warning("deployment %s failed: %s", dep_id, reason)
        return False
    now = time.time()
    how = "reset (it was on)" if was == "on" else "powered on"
    with service.engine.begin() as conn:
        conn.execute(update(db.deployments).where(db.deployments.c.id == dep_id).values(powered_at=now))
        _note(conn, dep_id, f"{where}: boot once from the network, {how}")
        record_power_state(conn, machine_id, "on", None, now)
    log.info("deployment %s: %s: boot once from the network, %s", dep_id, where, how)
    return True


def _still_pending(service: Service, dep_id: str) -> bool:
    row = deployments.get_row(service.engine, dep_id)
    return row is not None and row["state"] == states.PENDING


def _undo_network_boot(bmc, dep_id: str) -> None:
    """After a failed power-on: the next boot goes to the disk again, not to the network (best effort)."""
    try:
        bmc.set_boot_device("disk", once=True)
    except PowerError as exc:
        log.warning("deployment %s: could not take back the network boot: %s", dep_id, exc.message)


def fail_boot_timeouts(service: Service, now: float) -> list[str]:
    """Fail pending deployments powered on more than boot_timeout seconds ago, and those whose power-on was
    claimed but never finished (the process that claimed it died) within the same time plus the BMC budget."""
    config = service.config
    d = db.deployments.c
    budget = config.boot_timeout + 4 * config.bmc_timeout * max(1, config.bmc_retries)
    with service.engine.connect() as conn:
        rows = conn.execute(select(d.id, d.powered_at).where(and_(d.state == states.PENDING, or_(
            d.powered_at < now - config.boot_timeout,
            and_(d.powered_at.is_(None), d.power_claimed_at < now - budget))))).all()
    failed = []
    for dep_id, powered_at in rows:
        reason = (f"powered on through the BMC but never network-booted within {config.boot_timeout:g} s"
                  if powered_at is not None else "power-on through the BMC never finished (the service restarted?)")
        with service.engine.begin() as conn:
            if deployments.transition(conn, dep_id, states.FAILED, reason, sources=(states.PENDING,), error=reason):
                failed.append(dep_id)
    return failed


# --- boot device back to disk after installed --------------------------------------------------------

def claim_boot_restores(service: Service, now: float) -> list[tuple[str, str]]:
    """Deployments this service powered on that reached `installed` and whose machine still boots from the
    network: claimed (power_claimed_at moved to now, and never to before installed_at: a claim made with a
    `now` older than the install would still look unclaimed to the next sweep) for one attempt every
    RESTORE_RETRY seconds."""
    d = db.deployments.c
    with service.engine.connect() as conn:
        due = conn.execute(select(d.id, d.machine_id, d.power_claimed_at, d.installed_at)
                           .select_from(db.deployments.join(db.machines, _with_bmc()))
                           .where(and_(d.installed_at.is_not(None), d.installed_at > now - RESTORE_GIVE_UP,
                                       d.powered_at.is_not(None), d.boot_restored_at.is_(None),
                                       or_(d.power_claimed_at < d.installed_at,
                                           d.power_claimed_at <= now - RESTORE_RETRY)))).all()
    claimed = []
    for dep_id, machine_id, seen, installed_at in due:
        with service.engine.begin() as conn:
            got = conn.execute(update(db.deployments).where(and_(
                d.id == dep_id, d.boot_restored_at.is_(None), d.power_claimed_at == seen))
                .values(power_claimed_at=max(now, installed_at))).rowcount
        if got == 1:
            claimed.append((dep_id, machine_id))
    return claimed


def restore_boot_device(service: Service, dep_id: str, machine_id: str) -> bool:
    try:
        access = machines.bmc_access(service, machine_id)
        bmc = driver_for(access, service.config)
        bmc.set_boot_device("disk", once=False)
    except NoPowerControl:
        return False
    except PowerError as exc:
        log.warning("deployment %s: boot device not set back to disk (will retry): %s", dep_id, exc.message)
        with service.engine.begin() as conn:
            _note(conn, dep_id, f"boot device not set back to disk (will retry): {exc.message}")
        return False
    with service.engine.begin() as conn:
        conn.execute(update(db.deployments).where(db.deployments.c.id == dep_id).values(boot_restored_at=time.time()))
        _note(conn, dep_id, f"{_describe(access)}: boot device set back to disk")
    return True


# --- power-state refresh -----------------------------------------------------------------------------

def claim_power_refreshes(service: Service, now: float) -> list[str]:
    """Machines with a BMC whose power state is older than power_refresh_interval, each claimed by this call
    (a claim older than the interval is taken over: its process died)."""
    interval = service.config.power_refresh_interval
    if interval <= 0:
        return []
    m = db.machines.c
    stale = now - interval
    with service.engine.connect() as conn:
        due = conn.execute(select(m.id, m.power_claimed_at).where(and_(
            m.bmc_driver != "manual",
            or_(m.power_checked_at.is_(None), m.power_checked_at <= stale),
            or_(m.power_claimed_at.is_(None), m.power_claimed_at <= stale)))).all()
    claimed = []
    for machine_id, seen in due:
        unchanged = m.power_claimed_at.is_(None) if seen is None else m.power_claimed_at == seen
        with service.engine.begin() as conn:
            got = conn.execute(update(db.machines).where(and_(m.id == machine_id, unchanged))
                               .values(power_claimed_at=now)).rowcount
        if got == 1:
            claimed.append(machine_id)
    return claimed


def refresh_power_state(service: Service, machine_id: str) -> str | None:
    """Ask the BMC and store the answer (or its error); the power state, or None if the BMC failed."""
    state, error = None, None
    try:
        state = driver_for(machines.bmc_access(service, machine_id), service.config).status()
    except NoPowerControl:
        error = None
    except PowerError as exc:
        error = exc.message
    with service.engine.begin() as conn:
        record_power_state(conn, machine_id, state or ("unknown" if error else None), error, time.time())
    return state


def record_power_state(conn: Connection, machine_id: str, state: str | None, error: str | None, now: float) -> None:
    """Store what the BMC said (state "on"/"off"/"unknown", or its error) and release the refresh claim;
    a change of power state is announced (machine.power.<state>)."""
    m = db.machines.c
    before = conn.execute(select(db.machines).where(m.id == machine_id)).mappings().first()
    if before is None:
        return
    values = {"power_checked_at": now, "power_error": db.storable_text(error) if error else None,
              "power_claimed_at": None}
    if state is not None:
        values["power_state"] = state
    conn.execute(update(db.machines).where(m.id == machine_id).values(**values))
    if state is not None and state != before["power_state"]:
        after = conn.execute(select(db.machines).where(m.id == machine_id)).mappings().first()
        webhooks.machine_events(conn, before, after)


def _note(conn: Connection, dep_id: str, message: str) -> None:
    """An event in the deployment's history that does not change its state."""
    state = conn.execute(select(db.deployments.c.state).where(db.deployments.c.id == dep_id)).scalar()
    conn.execute(db.events.insert().values(deployment_id=dep_id, time=time.time(), state=state, phase=None,
                                           message=db.storable_text(message)))


def _describe(access: dict | BmcAccess | None) -> str:
    if isinstance(access, dict):
        access = BmcAccess.from_dict(access)
    return f"{access.driver} BMC {access.address}" if access else "BMC"
