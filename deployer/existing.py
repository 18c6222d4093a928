"""What is on a target before an install overwrites it: its partition table (sfdisk --json) and, for each
partition, the filesystem found in it (blkid probing at the partition's offset, so an image file needs no
loop device). Reads only; what is reported is what --wipe (or clearpart) destroys."""
from __future__ import annotations

import json
import os
import shutil

from metalstream import proc

from .blockdev import Target


def read_existing(target: Target) -> dict:
    """{"partition_table": "gpt"|"dos"|None, "partitions": [...], "signatures": [...]} for `target`; empty for a
    new image file or a blank disk."""
    if target.is_file and not os.path.exists(target.path):
        return {"partition_table": None, "partitions": [], "signatures": []}
    signatures = _signatures(target.path)
    listed = proc.run(["sfdisk", "--json", target.path], check=False)
    if listed.returncode != 0 or not listed.stdout.strip():  # no partition table sfdisk recognises
        return {"partition_table": None, "partitions": [], "signatures": signatures}
    table = json.loads(listed.stdout)["partitiontable"]
    sector = table.get("sectorsize", target.sector_size)
    partitions = []
    for n, entry in enumerate(table.get("partitions", []), start=1):
        offset, length = entry["start"] * sector, entry["size"] * sector
        partitions.append({
            "number": _number(entry.get("node"), n), "node": entry.get("node"), "start": entry["start"],
            "size": entry["size"], "size_bytes": length, "type": entry.get("type"), "name": entry.get("name"),
            "uuid": entry.get("uuid"), **_filesystem(target.path, offset, length)})
    return {"partition_table": table.get("label"), "partitions": partitions, "signatures": signatures}


def _number(node: str | None, fallback: int) -> int:
    """The partition's number from its node name (disk.img3, /dev/nvme0n1p3 → 3)."""
    tail = ""
    for c in reversed(node or ""):
        if not c.isdigit():
            break
        tail = c + tail
    return int(tail) if tail else fallback


def _signatures(path: str) -> list[dict]:
    out = proc.run(["wipefs", "--no-act", "--json", path], check=False).stdout
    found = json.loads(out).get("signatures", []) if out.strip() else []
    return [{"type": s.get("type"), "offset": s.get("offset"), "uuid": s.get("uuid"), "label": s.get("label")}
            for s in found]


def _filesystem(path: str, offset: int, length: int) -> dict:
    """The filesystem blkid finds in [offset, offset+length) of `path`: fstype, label, fs_uuid (None if none)."""
    if shutil.which("blkid") is None:  # an installer trimmed without it: the table is still listed
        return {"fstype": None, "label": None, "fs_uuid": None}
    probed = proc.run(["blkid", "-p", "-o", "export", "-O", str(offset), "-S", str(length), path], check=False)
    values = dict(line.split("=", 1) for line in probed.stdout.splitlines() if "=" in line)
    return {"fstype": values.get("TYPE"), "label": values.get("LABEL"), "fs_uuid": values.get("UUID")}
