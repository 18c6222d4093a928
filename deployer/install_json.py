"""The JSON document `metalstream install --json` prints (pure: built from the plan, the result and what was
read from the target before the install)."""
from __future__ import annotations

from dataclasses import asdict

from metalstream.contracts.plan import Plan

from .install import InstallResult

FORMAT = "metalstream-install-report/1"


def install_report(plan: Plan, result: InstallResult, existing: dict) -> dict:
    """`existing` (deployer.existing.read_existing) is listed under `to_be_destroyed` for a dry run and
    under `destroyed` once the install has written the disk."""
    target, layout = result.target, result.layout
    document = {
        "format": FORMAT,
        "dry_run": result.dry_run,
        "target": {"path": target.path, "size": target.size, "is_file": target.is_file,
                   "sector_size": target.sector_size},
        "image": {"name": plan.image.name, "sha256": plan.image.sha256, "size": plan.image.size,
                  "uncompressed_size": plan.image.uncompressed_size, "urls": list(plan.image.urls)},
        "boot_mode": plan.boot_mode,
        "hostname": plan.hostname,
        "layout": {"disk_size": layout.disk_size, "sector_size": layout.sector_size,
                   "partitions": [{**asdict(p), "size_bytes": layout.length(p), "offset_bytes": layout.offset(p)}
                                  for p in layout.partitions]},
        "sfdisk_script": result.sfdisk_script,
        "root_uuid": result.root_uuid,
        "uefi_loader": result.uefi_loader,
        "to_be_destroyed" if result.dry_run else "destroyed": existing,
    }
    if not result.dry_run:
        stream = result.stream
        document["stream"] = None if stream is None else {
            "bytes_read": stream.bytes_read, "sha256": stream.sha256, "resumes": stream.resumes,
            "failovers": stream.failovers, "origin": stream.origin}
        document["bootloaders"] = list(result.bootloaders)
    return document
