"""The deploy-time part of a kickstart: run its `%pre` sections, then read the `%include`s they wrote and have the
kickstart front end merge their storage commands into the plan's storage (a `Resolver`: the front end itself in
`metalstream install`, the service in the installer, which has no pykickstart).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable

from metalstream.contracts.deployspec import DeferredInclude, DeploySpec
from metalstream.contracts.plan import Plan
from metalstream.errors import BadInput

from .prescripts import run_pre_scripts

log = logging.getLogger("metalstream.pre")

Resolver = Callable[[DeploySpec, list[tuple[DeferredInclude, str]]], DeploySpec]
MAX_INCLUDE_BYTES = 256 * 1024


def include_location(include: DeferredInclude) -> str:
    return f"%include {include.path}" + (f" (kickstart line {include.line})" if include.line else "")


def read_includes(includes: list[DeferredInclude]) -> list[tuple[DeferredInclude, str]]:
    """The text of each deferred include, read on this machine; BadInput located at its `%include`."""
    found = []
    for include in includes:
        path = Path(include.path)
        try:
            data = path.read_bytes() if path.stat().st_size <= MAX_INCLUDE_BYTES else None
        except FileNotFoundError:
            raise BadInput("the %pre did not write it", location=include_location(include)) from None
        except OSError as exc:
            raise BadInput(f"cannot read it: {exc.strerror or exc}", location=include_location(include)) from None
        if data is None:
            raise BadInput(f"larger than {MAX_INCLUDE_BYTES // 1024} KiB: not a kickstart snippet",
                           location=include_location(include))
        try:
            found.append((include, data.decode()))
        except UnicodeDecodeError:
            raise BadInput("not UTF-8 text", location=include_location(include)) from None
    return found


def run_deploy_time(plan: Plan, resolve: Resolver | None, event: Callable[[str, str], None]) -> Plan:
    """Run the plan's `%pre` scripts and resolve its deferred includes; the plan with the storage to install
    (unchanged when it has neither). `event(phase, message)` reports progress."""
    storage = plan.storage
    if storage is None or not (storage.pre_scripts or storage.deferred_includes):
        return plan
    if storage.pre_scripts:
        event("disk", f"running {len(storage.pre_scripts)} %pre script(s)")
        run_pre_scripts(storage.pre_scripts, warn=lambda message: _warn(event, message))
    if not storage.deferred_includes:
        return dataclasses.replace(plan, storage=dataclasses.replace(storage, pre_scripts=[]))
    if resolve is None:
        first = storage.deferred_includes[0]
        raise BadInput("this agent cannot read kickstart storage commands (no kickstart front end here)",
                       location=include_location(first))
    included = read_includes(storage.deferred_includes)
    merged = resolve(storage, included)
    for include, text in included:
        event("disk", f"storage from %include {include.path} ({len(text.splitlines())} lines)")
    # The service could not see this layout: its passphrase rule (pxe.deployment_checks) applies here.
    if plan.encryption_passphrase is None and _encrypts(merged):
        raise BadInput("the layout encrypts devices (--encrypted) but the plan gives no passphrase "
                       "(encryption_passphrase)", location=include_location(storage.deferred_includes[0]))
    if plan.encryption_passphrase is not None and not _encrypts(merged):
        raise BadInput("the plan gives a passphrase but the layout encrypts nothing (no --encrypted): the disks "
                       "would be plaintext", location=include_location(storage.deferred_includes[0]))
    return dataclasses.replace(plan, storage=dataclasses.replace(merged, pre_scripts=[], deferred_includes=[]))


def _encrypts(spec: DeploySpec) -> bool:
    devices = [*spec.partitions, *spec.logvols, *spec.raids, *([spec.autopart] if spec.autopart else [])]
    return any(getattr(device, "encrypted", False) for device in devices)


def _warn(event: Callable[[str, str], None], message: str) -> None:
    log.warning("%s", message)
    event("disk", f"warning: {message}")


def front_end_resolver() -> Resolver:
    """The kickstart front end's merge (tarball_builder, installed with `metalstream install`)."""
    try:
        from tarball_builder.kickstart.fragment import merge_includes
    except ImportError as exc:
        raise BadInput(f"resolving a deferred %include needs the kickstart front end (tarball_builder) "
                       f"installed with metalstream ({exc}); an install over --ssh cannot resolve it",
                       location="plan.storage.deferred_includes") from None
    return merge_includes
