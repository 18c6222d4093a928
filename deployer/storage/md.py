"""mdadm command lines for the planned RAID arrays, and the target's mdadm.conf lines.

Arrays are created with `--homehost=any`: the installer's host name is not the target's, and an array
created for another host assembles as a "foreign" /dev/md127; `any` makes it local everywhere. No
`--assume-clean`: the initial resync runs in the background while the image streams (writes reach every
member meanwhile) and `mdadm --stop` records how far it got, so the target's kernel finishes it. Skipping it
would leave the members' never-written blocks different (RAID1: `check` counts mismatches; RAID4/5/6: wrong
parity, so a degraded array would rebuild garbage).
"""
from __future__ import annotations

from .model import Array


def create_argv(array: Array, members: list[str]) -> list[str]:
    active = len(members) - array.spares
    return ["mdadm", "--create", f"/dev/md/{array.name}", "--run", "--quiet", f"--metadata={array.metadata}",
            f"--level={array.level}", f"--raid-devices={active}", f"--spare-devices={array.spares}",
            *([f"--chunk={array.chunk_kib}"] if array.chunk_kib and array.level != "raid1" else []),
            f"--name={array.name}", "--homehost=any", f"--uuid={array.uuid}", *members]


def stop_argv(array: Array) -> list[str]:
    return ["mdadm", "--stop", f"/dev/md/{array.name}"]


def array_line(array: Array) -> str:
    """mdadm.conf's ARRAY line: assembled by UUID, named as created (name=any:NAME)."""
    return f"ARRAY /dev/md/{array.name} metadata={array.metadata} UUID={array.uuid} name=any:{array.name}"


def mdadm_conf(existing: str, arrays: list[Array]) -> str:
    """`existing` (the image's mdadm.conf, may be empty) with its ARRAY lines replaced by the plan's."""
    kept = [line for line in existing.splitlines() if not line.lstrip().startswith("ARRAY")]
    while kept and not kept[-1].strip():
        kept.pop()
    header = kept or ["# mdadm.conf: arrays written by metalstream at deploy time"]
    return "\n".join([*header, "", *(array_line(a) for a in arrays)]) + "\n"
