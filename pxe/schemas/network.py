"""A host's network device in a deployment request: the model is made from metalstream.contracts.network's
NetworkDevice (one definition of the fields); the contracts reader checks each device and the list."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from metalstream.contracts import rules
from metalstream.contracts.network import BOOTPROTOS, NetworkDevice, check_network, read_network_device

from .base import HERE, checked, model_of

MAX_NETWORK_DEVICES = 64
NetworkDeviceModel = model_of(
    NetworkDevice, "One of the host's network devices (docs/agent.md); checked by metalstream.contracts.network.",
    bootproto=(Literal[BOOTPROTOS], "dhcp"), vlan_id=(Annotated[int | None, Field(ge=1, le=4094)], None))


@checked
def read_network(value: Any) -> list[dict] | None:
    """The request's `network`: each device and the devices together, as `metalstream install` reads them."""
    if value is None:
        return None
    items = rules.expect_list(value, HERE, max_items=MAX_NETWORK_DEVICES)
    devices = check_network([read_network_device(item, f"{HERE}[{i}]") for i, item in enumerate(items)], HERE)
    return [device.to_json() for device in devices]


def as_json(devices: list[BaseModel]) -> list[dict]:
    """The devices as the contracts write them (fields added later only when set)."""
    return [device.model_dump(exclude_unset=True) for device in devices]
