"""Power actions from the console: what POST /api/v1/machines/<id>/power does for on, off and cycle,
built from the power API's own parts (pxe/views/power.py): its request check, BMC driver and error."""
from __future__ import annotations

import time

from .. import machines
from ..views.common import service

ACTIONS = ("on", "off", "cycle")
NOTICES = {"on": "Power on sent.", "off": "Power off sent.", "cycle": "Power cycle sent."}


def act(machine_id: str, action: str) -> str:
    """Switch the machine's power; its power state afterwards. 409 for a manual machine, 502 when the BMC fails."""
    from .. import power_duties  # the power parts, imported when used
    from ..power import PowerError, driver_for
    from ..schemas.base import parse
    from ..schemas.power import PowerRequest
    from ..views import power as power_api

    svc = service()
    spec = parse(PowerRequest, {"action": action}).model_dump()
    bmc = driver_for(machines.bmc_access(svc, machine_id), svc.config)
    try:
        if spec["action"] == "on":
            bmc.power_on()
        elif spec["action"] == "off":
            bmc.power_off(spec["graceful_timeout"])
        else:
            bmc.reset() if bmc.status() == "on" else bmc.power_on()
        state = bmc.status()
    except PowerError as exc:
        with svc.engine.begin() as conn:
            power_duties.record_power_state(conn, machine_id, None, exc.message, time.time())
        raise power_api.BmcFailed(exc.message, details={"kind": exc.kind, "attempts": exc.attempts}) from None
    with svc.engine.begin() as conn:
        power_duties.record_power_state(conn, machine_id, state, None, time.time())
    return state
